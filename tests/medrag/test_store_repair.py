"""Recovery of an embedded collection whose HNSW files a crash left unreadable (medrag._store_repair).

The damage is made the way a SIGKILL makes it (measured with chromadb 1.5.9: the process died
while Chroma rewrote ``index_metadata.pickle``, leaving it empty), so every test first checks
that plain Chroma can no longer read the collection.
"""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient

from medrag import MatryoshkaChroma
from medrag._store_repair import COMPLETE_KEY, REPAIR_SUFFIX, _replay, _seq_id, is_vector_index_failure, read_records
from medrag.store import FULL_KEY, GENERATION_KEY

from .test_store import REPO, FakeMatryoshkaEmbeddings

N = 1_200
TEXTS = [f"compte rendu {i} : ferritine {i % 97} µg/L, CRP {i % 31} mg/L" for i in range(N)]
METAS = [{"i": i, "ratio": i / 7, "urgent": i % 2 == 0, "tags": ["bio", f"s{i % 3}"]} for i in range(N)]


def _reopen_client(path: Path) -> chromadb.ClientAPI:
    SharedSystemClient.clear_system_cache()  # drop the process's cached client of that folder
    return chromadb.PersistentClient(str(path))


def _build(path: Path, emb: FakeMatryoshkaEmbeddings) -> list[tuple[str, float]]:
    store = MatryoshkaChroma("notes", emb, persist_directory=str(path), hnsw={"sync_threshold": 100})
    store.add_texts(TEXTS, METAS, show_progress=False)
    hits = [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)]
    store.close()
    del store
    return hits


def _break_vector_index(path: Path) -> None:
    pickles = glob.glob(str(path / "*" / "index_metadata.pickle"))
    assert len(pickles) == 1, pickles
    open(pickles[0], "w").close()  # what a kill during Chroma's rewrite of the file leaves
    with pytest.raises(Exception) as info:
        _reopen_client(path).get_collection("notes").count()
    assert is_vector_index_failure(info.value), info.value
    SharedSystemClient.clear_system_cache()


@pytest.fixture
def emb() -> FakeMatryoshkaEmbeddings:
    return FakeMatryoshkaEmbeddings(128)


def test_unreadable_vector_index_is_rebuilt_from_the_records(tmp_path, emb, caplog) -> None:
    path = tmp_path / "db"
    before = _build(path, emb)
    old_segments = {p.name for p in path.iterdir() if p.is_dir() and p.name != "medrag-lexical"}
    client = _reopen_client(path)
    generation = client.get_collection("notes").metadata[GENERATION_KEY]
    SharedSystemClient.clear_system_cache()
    _break_vector_index(path)
    calls = emb.document_calls

    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))

    assert "cannot be read" in caplog.text and "rebuilt: 1200 records" in caplog.text
    assert emb.document_calls == calls, "the repair re-encoded texts it had full vectors for"
    assert len(store) == N
    after = [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)]
    assert after == before
    ids = [MatryoshkaChroma.content_id(TEXTS[i], METAS[i]) for i in (0, 599, N - 1)]
    docs = store.get_by_ids(ids)
    assert [d.page_content for d in docs] == [TEXTS[i] for i in (0, 599, N - 1)]
    assert [d.metadata for d in docs] == [METAS[i] for i in (0, 599, N - 1)]  # ints, floats, bools, lists
    np.testing.assert_allclose(store.get_full_vectors(ids), emb.encode_documents([TEXTS[i] for i in (0, 599, N - 1)]),
                               atol=0.02)
    assert store.collection.metadata[GENERATION_KEY] == generation + 1  # derived indexes are rebuilt
    assert COMPLETE_KEY not in store.collection.metadata
    assert [c.name for c in store.client.list_collections()] == ["notes"]
    folders = {p.name for p in path.iterdir() if p.is_dir() and p.name != "medrag-lexical"}
    assert not folders & old_segments, "the broken HNSW folder was left on disk"
    assert store.hybrid_search("ferritine 12", k=3)
    store.add_texts(["un nouveau compte rendu : troponine 40 ng/L"], show_progress=False)
    assert len(store) == N + 1
    store.close()


def test_a_vector_index_whose_id_map_is_older_than_its_vectors_is_rebuilt(tmp_path, emb, caplog) -> None:
    """The other state a kill leaves (CI, SIGKILL during a long add): the HNSW data files saved, the
    id map (``index_metadata.pickle``) still the previous save's. The folder loads, but every query
    that reaches a newer vector fails with "Error finding id"; the store rebuilds it as above."""
    path = tmp_path / "db"
    store = MatryoshkaChroma("notes", emb, persist_directory=str(path), hnsw={"sync_threshold": 100})
    store.add_texts(TEXTS[:600], METAS[:600], show_progress=False)
    (pickle,) = glob.glob(str(path / "*" / "index_metadata.pickle"))
    old_map = Path(pickle).read_bytes()
    store.add_texts(TEXTS[600:], METAS[600:], show_progress=False)
    before = [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)]
    store.close()
    del store
    # what the killed process did besides: it wrote, so the generation this process saw is old (its
    # index is "stale" by that record, though its client was cleared): the damage is confirmed in a
    # new process and repaired all the same
    collection = _reopen_client(path).get_collection("notes")
    collection.modify(metadata={**collection.metadata, GENERATION_KEY: collection.metadata[GENERATION_KEY] + 1})
    SharedSystemClient.clear_system_cache()
    Path(pickle).write_bytes(old_map)
    with pytest.raises(Exception, match="Error finding id") as info:
        _reopen_client(path).get_collection("notes").query(query_embeddings=np.ones((1, 64), np.float32),
                                                           n_results=50, include=[])
    assert is_vector_index_failure(info.value)
    SharedSystemClient.clear_system_cache()

    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))

    assert "cannot be read" in caplog.text and "rebuilt: 1200 records" in caplog.text
    assert len(store) == N
    after = [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)]
    assert after == before
    store.close()


def test_a_record_without_a_readable_full_vector_is_encoded_again(tmp_path, emb) -> None:
    path = tmp_path / "db"
    _build(path, emb)
    victim = MatryoshkaChroma.content_id(TEXTS[7], METAS[7])
    _reopen_client(path).get_collection("notes").update(ids=[victim], metadatas=[{FULL_KEY: "not base64!"}])
    _break_vector_index(path)
    calls = emb.document_calls

    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))

    assert emb.document_calls == calls + 1 and len(store) == N
    got = store.get_full_vectors([victim])[0]
    assert float(got @ emb.encode_documents([TEXTS[7]])[0]) > 0.999
    store.close()


class _Killed(BaseException):
    """Stands for a SIGKILL at one step of the repair (not an Exception: nothing may catch it)."""


def test_a_repair_killed_before_its_copy_is_complete_starts_over(tmp_path, emb, monkeypatch) -> None:
    path = tmp_path / "db"
    before = _build(path, emb)
    _break_vector_index(path)
    real = MatryoshkaChroma._chroma_call

    def dies_at_the_mark(self, what, fn, *args, **kwargs):
        if what == "mark the repair complete":
            raise _Killed
        return real(self, what, fn, *args, **kwargs)

    monkeypatch.setattr(MatryoshkaChroma, "_chroma_call", dies_at_the_mark)
    with pytest.raises(_Killed):
        MatryoshkaChroma("notes", emb, persist_directory=str(path))
    monkeypatch.setattr(MatryoshkaChroma, "_chroma_call", real)
    client = _reopen_client(path)
    assert sorted(c.name for c in client.list_collections()) == ["notes", "notes" + REPAIR_SUFFIX]
    SharedSystemClient.clear_system_cache()

    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))
    assert [c.name for c in store.client.list_collections()] == ["notes"] and len(store) == N
    assert [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)] == before
    store.close()


def test_a_repair_killed_after_dropping_the_broken_collection_is_finished(tmp_path, emb, monkeypatch) -> None:
    path = tmp_path / "db"
    before = _build(path, emb)
    _break_vector_index(path)

    def dies(*args, **kwargs):
        raise _Killed

    monkeypatch.setattr(MatryoshkaChroma, "_remove_segment_folders", staticmethod(dies))
    with pytest.raises(_Killed):
        MatryoshkaChroma("notes", emb, persist_directory=str(path))
    monkeypatch.undo()
    client = _reopen_client(path)
    assert [c.name for c in client.list_collections()] == ["notes" + REPAIR_SUFFIX]  # only the complete copy
    SharedSystemClient.clear_system_cache()

    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))
    assert [c.name for c in store.client.list_collections()] == ["notes"] and len(store) == N
    assert COMPLETE_KEY not in store.collection.metadata
    assert [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score("ferritine 12 µg/L", k=10, candidates=N)] == before
    store.close()


def test_read_records_matches_what_chroma_returns(tmp_path, emb) -> None:
    path = tmp_path / "db"
    store = MatryoshkaChroma("notes", emb, persist_directory=str(path))
    store.add_texts(TEXTS[:50], METAS[:50], show_progress=False)
    store.delete([MatryoshkaChroma.content_id(TEXTS[3], METAS[3])])
    res = store.collection.get(include=["documents", "metadatas"])
    records = read_records(str(path), str(store.collection.id))
    assert records == {i: (d, m) for i, d, m in zip(res["ids"], res["documents"], res["metadatas"])}
    store.close()


def test_replay_applies_logged_writes_as_chroma_does() -> None:
    records = {"a": ("texte a", {"x": 1, "y": 2})}
    _replay(records, "add", "a", {"chroma:document": "ignored", "x": 9})  # add of an existing id: ignored
    assert records["a"] == ("texte a", {"x": 1, "y": 2})
    _replay(records, "upsert", "a", {"x": 3, "y": None})  # upsert merges; None removes a key
    assert records["a"] == ("texte a", {"x": 3})
    _replay(records, "update", "b", {"x": 1})  # update of a missing id: nothing
    _replay(records, "add", "b", {"chroma:document": "texte b", "z": True})
    _replay(records, "delete", "a", {})
    assert records == {"b": ("texte b", {"z": True})}


def test_is_vector_index_failure_reads_the_cause_chain() -> None:
    inner = RuntimeError("Error executing plan: Error sending backfill request to compactor: "
                         "Failed to apply logs to the hnsw segment writer")
    try:
        try:
            raise inner
        except RuntimeError as exc:
            raise ValueError("wrapped") from exc
    except ValueError as outer:
        assert is_vector_index_failure(outer)
    assert not is_vector_index_failure(RuntimeError("collection does not exist"))


def test_seq_id_reads_both_encodings() -> None:
    assert _seq_id(17000) == 17000 and _seq_id((17000).to_bytes(8, "big")) == 17000 and _seq_id(None) == -1


_WRITER = ("import sys, time; sys.path.insert(0, sys.argv[2]);"
           "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
           "from medrag import MatryoshkaChroma as M;"
           "s = M('notes', F(128), persist_directory=sys.argv[1]);"
           "s.add_texts([f'note {i} : troponine {i} ng/L' for i in range(100)], show_progress=False);"
           "print('written', flush=True); time.sleep(float(sys.argv[3]))")


def _other_process_writes(path: Path, hold_s: float) -> subprocess.Popen:
    """Another process opens the folder, adds 100 records and keeps it for ``hold_s`` seconds."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(REPO), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "written", proc.stderr.read()[-2000:]
    return proc


def _loaded_raw_client(path: Path) -> chromadb.ClientAPI:
    """A client of this process that has loaded the collection's vector index outside medrag."""
    client = _reopen_client(path)
    client.get_collection("notes").query(query_embeddings=np.ones((1, 64), np.float32), n_results=1, include=[])
    return client


def test_an_index_this_process_loaded_before_another_process_wrote_is_not_rebuilt(tmp_path, emb, caplog) -> None:
    """Review: the newest records' vectors are missing from an index loaded before another process
    added them ("Error finding id", no damage): a new process confirms the files are sound, and the
    collection is not rebuilt (a rebuild changed its id, dropping every other client's handle)."""
    path = tmp_path / "db"
    _build(path, emb)
    client = _loaded_raw_client(path)
    cid = client.get_collection("notes").id
    _other_process_writes(path, 0).wait(60)

    store = MatryoshkaChroma("notes", emb, client=client)

    assert "rebuilt" not in caplog.text and store.collection.id == cid and len(store) == N + 100
    assert "another process wrote" in caplog.text  # what this process's searches miss is said
    store.close()


def test_a_reader_opens_while_the_owner_writes(tmp_path, emb) -> None:
    """Review: a process without the folder's lock, whose index misses records the owner just wrote,
    failed to open ("the vector index cannot be read"); it opens, and is warned about the stale index."""
    path = tmp_path / "db"
    _build(path, emb)
    client = _loaded_raw_client(path)
    cid = client.get_collection("notes").id
    owner = _other_process_writes(path, 60)
    try:
        store = MatryoshkaChroma("notes", emb, client=client)
        assert store.collection.id == cid and len(store) == N + 100
    finally:
        owner.kill()
        owner.wait(30)
