"""The SQLite copy of the records (full vectors, texts, metadata) beside an embedded folder (medrag._store_sidecar)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from medrag import MatryoshkaChroma, MedragError
from medrag._store_sidecar import LAYOUT_VERSION, SIDECAR_NAME, VectorSidecar

from .test_store import FakeMatryoshkaEmbeddings

TEXTS = [f"note {i} : hémoglobine {i % 13} g/dL" for i in range(300)]


def test_a_file_of_the_first_layout_is_rebuilt_from_the_records(tmp_path) -> None:
    """A sidecar written by an earlier medrag (WITHOUT ROWID table, user_version 0) whose stamp even
    matches the collection: the store must not trust it, but empty it and rebuild it from the records."""
    emb = FakeMatryoshkaEmbeddings(128)
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    ids = store.add_texts(TEXTS, show_progress=False)
    cid, generation = str(store.collection.id), store.write_generation
    store.close()
    del store
    (tmp_path / SIDECAR_NAME).unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / (SIDECAR_NAME + suffix)).unlink(missing_ok=True)
    old = sqlite3.connect(tmp_path / SIDECAR_NAME)
    old.execute("CREATE TABLE vectors (collection TEXT NOT NULL, id TEXT NOT NULL, vec BLOB NOT NULL, "
                "PRIMARY KEY (collection, id)) WITHOUT ROWID")
    old.execute("CREATE TABLE stamps (collection TEXT PRIMARY KEY, generation INTEGER)")
    old.executemany("INSERT INTO vectors VALUES (?, ?, ?)", [(cid, i, b"\x00" * 132) for i in ids])  # wrong vectors
    old.execute("INSERT INTO stamps VALUES (?, ?)", (cid, generation))
    old.commit()
    old.close()

    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))

    got = store.get_full_vectors(ids[:5])
    np.testing.assert_allclose(got, emb.encode_documents(TEXTS[:5]), atol=0.02)
    db = sqlite3.connect(tmp_path / SIDECAR_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LAYOUT_VERSION
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == len(TEXTS)
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'vectors'").fetchone()[0]
    assert "WITHOUT ROWID" not in sql
    db.close()
    store.close()


def test_put_replaces_and_get_returns_only_stored_ids(tmp_path) -> None:
    side = VectorSidecar(tmp_path)
    side.put("c1", ["a", "b"], [b"1", b"2"], ["texte a", None], [{"k": 1, "old": "x"}, None])
    side.put("c1", ["a"], [b"3"], ["texte a2"], [{"k": 2}])  # the same (collection, id): replaced, not merged
    side.put("c2", ["a"], [b"4"], ["autre"], [{}])
    assert side.get("c1", ["a", "b", "zz"]) == {"a": b"3", "b": b"2"}
    assert side.records("c1", ["a", "b", "zz"]) == {"a": ("texte a2", {"k": 2}), "b": (None, {})}
    assert side.get("c2", ["a"]) == {"a": b"4"}
    side.delete("c1", ["b"])
    assert side.get("c1", ["a", "b"]) == {"a": b"3"} and side.records("c1", ["b"]) == {}
    side.set_stamp("c1", 7)
    side.drop("c1")
    assert side.get("c1", ["a"]) == {} and side.stamp("c1") is None and side.get("c2", ["a"]) == {"a": b"4"}
    side.close()
    reopened = VectorSidecar(tmp_path)  # the same layout version: rows are kept
    assert reopened.get("c2", ["a"]) == {"a": b"4"} and reopened.records("c2", ["a"]) == {"a": ("autre", {})}
    reopened.close()


def test_put_rejects_rows_of_unequal_lengths(tmp_path) -> None:
    side = VectorSidecar(tmp_path)
    with pytest.raises(ValueError):
        side.put("c1", ["a", "b"], [b"1", b"2"], ["x"], [{}, {}])
    assert side.get("c1", ["a", "b"]) == {}
    side.close()


METADATAS = [
    {"source": "notice été", "page": 3, "score": 0.25, "valide": True, "codes": ["E11", "E78.5"], "poids": [1.5, 2.0]},
    {},
    {"grand": 2**53 + 1, "négatif": -7, "vide": ""},
]


def _search(store: MatryoshkaChroma, query: str) -> list[tuple[str, str, dict, float]]:
    return [(d.id, d.page_content, d.metadata, round(s, 6)) for d, s in store.similarity_search_with_score(query, k=6)]


def test_a_search_reads_texts_and_metadata_from_the_copy_in_one_chroma_call(tmp_path, monkeypatch) -> None:
    """On an embedded store a query is one Chroma call (stage 1): the final k's texts and metadata
    come from the copy, equal to what Chroma returns, a re-add's replaced metadata included."""
    import chromadb

    emb = FakeMatryoshkaEmbeddings(128)
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    metas = [METADATAS[i % 3] for i in range(60)]
    ids = store.add_texts(TEXTS[:60], metas, ids=[f"n{i}" for i in range(60)], show_progress=False)
    store.add_texts([TEXTS[0]], [{"statut": "corrigé"}], ids=[ids[0]], show_progress=False)  # replaces n0's metadata
    plain = MatryoshkaChroma("notes", emb, client=chromadb.PersistentClient(str(tmp_path)), vector_sidecar=False)
    calls: list[str] = []
    for name in ("get", "query"):
        real = getattr(store.collection, name)
        monkeypatch.setattr(store.collection, name,
                            lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    for q in TEXTS[:6]:
        calls.clear()
        got = _search(store, q)
        assert calls == ["query"]
        assert got == _search(plain, q)
    assert _search(store, TEXTS[0])[0][1:3] == (TEXTS[0], {"statut": "corrigé"})
    doc = store.similarity_search(TEXTS[2], k=1)[0]  # every metadata type, as written
    assert (doc.id, doc.page_content, doc.metadata) == (ids[2], TEXTS[2], METADATAS[2])
    store.close()


def test_a_rejected_write_leaves_searches_on_the_stored_record(tmp_path, monkeypatch) -> None:
    """The copy is written before the record; when Chroma then rejects the write, the copy's new
    rows are removed, so searches still show the record Chroma holds (its old text)."""
    emb = FakeMatryoshkaEmbeddings(128)
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    store.add_texts(TEXTS[:20], ids=[f"n{i}" for i in range(20)], show_progress=False)

    def refuse(**kwargs):
        raise ValueError("refused by the server")

    monkeypatch.setattr(store.collection, "upsert", refuse)
    with pytest.raises(MedragError, match="refused"):
        store.add_texts(["un texte qui ne sera pas écrit"], [{"v": 1}], ids=["n3"], show_progress=False)
    monkeypatch.undo()
    hit = store.similarity_search(TEXTS[3], k=1)[0]
    assert (hit.id, hit.page_content, hit.metadata) == ("n3", TEXTS[3], {})
    store.close()


def _hit(store: MatryoshkaChroma, query: str) -> tuple[str, str, dict]:
    doc = store.similarity_search(query, k=1)[0]
    return doc.id, doc.page_content, doc.metadata


def _held(store: MatryoshkaChroma, id_: str) -> tuple[str, str, dict]:
    doc = store.get_by_ids([id_])[0]  # what Chroma holds
    return doc.id, doc.page_content, doc.metadata


def test_a_key_set_to_none_is_absent_from_searches_as_in_chroma(tmp_path) -> None:
    """Chroma drops a key whose value is None (an upsert's way to remove a key); the copy must too."""
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(128), persist_directory=str(tmp_path))
    store.add_texts([TEXTS[0]], [{"a": 1, "b": None, "z": -0.0}], ids=["n0"], show_progress=False)
    assert _hit(store, TEXTS[0]) == _held(store, "n0") == ("n0", TEXTS[0], {"a": 1, "z": 0.0})
    store.add_texts([TEXTS[0]], [{"a": None}], ids=["n0"], show_progress=False)
    assert _hit(store, TEXTS[0]) == _held(store, "n0") == ("n0", TEXTS[0], {})
    store.close()


def test_a_write_by_a_store_without_the_copy_is_never_hidden_by_it(tmp_path) -> None:
    """Another store of the same process on the folder, opened with vector_sidecar=False, re-adds an
    id: the store reading the copy must return the new text at once, after its own next write, and
    after a reopen (the copy's stamp must not be advanced past a write the copy did not see)."""
    emb = FakeMatryoshkaEmbeddings(128)
    a = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    a.add_texts(["texte ancien"], [{"v": 1}], ids=["x"], show_progress=False)
    b = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path), vector_sidecar=False)
    b.add_texts(["texte nouveau"], [{"v": 2}], ids=["x"], show_progress=False)
    new = ("x", "texte nouveau", {"v": 2})
    assert _hit(a, "texte nouveau") == _held(a, "x") == new
    a.add_texts(["autre"], ids=["y"], show_progress=False)
    assert _hit(a, "texte nouveau") == new
    b.delete(["y"])
    assert all(d.id != "y" for d in a.similarity_search("autre", k=2))
    a.close()
    b.close()
    del a, b
    import gc

    gc.collect()
    again = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    assert _hit(again, "texte nouveau") == new
    assert float(again.get_full_vectors(["x"])[0] @ emb.encode_documents(["texte nouveau"])[0]) > 0.999
    again.close()


def test_concurrent_writes_of_one_id_leave_the_copy_and_chroma_in_step(tmp_path, monkeypatch) -> None:
    """Two threads re-add the same id; the first one's Chroma write is slow. Its steps (copy, then
    Chroma) must not interleave with the second's, or the copy ends with one text and Chroma the other."""
    import threading
    import time

    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(128), persist_directory=str(tmp_path))
    store.add_texts(["graine"], ids=["x"], show_progress=False)
    real, first_in = store.collection.upsert, threading.Event()

    def slow_upsert(**kwargs):
        if kwargs["documents"] == ["texte A"]:
            first_in.set()
            time.sleep(0.3)  # the second thread writes meanwhile, if nothing stops it
        return real(**kwargs)

    monkeypatch.setattr(store.collection, "upsert", slow_upsert)
    a = threading.Thread(target=store.add_texts, args=(["texte A"],), kwargs={"ids": ["x"], "show_progress": False})
    a.start()
    assert first_in.wait(10)
    store.add_texts(["texte B"], ids=["x"], show_progress=False)
    a.join()
    assert _hit(store, "texte B") == _held(store, "x") == ("x", "texte B", {})
    store.close()


def test_a_damaged_row_of_the_copy_is_read_from_chroma(tmp_path) -> None:
    """The copy is derived data: a row whose metadata no longer parses is skipped, and the search
    returns the record as Chroma holds it."""
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(128), persist_directory=str(tmp_path))
    store.add_texts(TEXTS[:20], [{"i": i} for i in range(20)], ids=[f"n{i}" for i in range(20)], show_progress=False)
    db = sqlite3.connect(tmp_path / SIDECAR_NAME)
    db.execute("UPDATE vectors SET meta = '{not json' WHERE id = 'n4'")
    db.commit()
    db.close()
    assert _hit(store, TEXTS[4]) == _held(store, "n4") == ("n4", TEXTS[4], {"i": 4})
    store.close()


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


def test_a_damaged_copy_file_is_rebuilt_when_the_store_opens(tmp_path, caplog) -> None:
    """It raised sqlite3.DatabaseError ("file is not a database") from the constructor: the store could
    not be opened, though the copy is derived data."""
    emb = FakeMatryoshkaEmbeddings(128)
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    store.add_texts(TEXTS[:50], ids=[f"t{i}" for i in range(50)])
    before = _search(store, "hémoglobine 7")
    store.close()
    del store
    for suffix in ("-wal", "-shm"):
        (tmp_path / (SIDECAR_NAME + suffix)).unlink(missing_ok=True)
    (tmp_path / SIDECAR_NAME).write_bytes(b"ceci n'est pas une base SQLite" * 100)
    with caplog.at_level("WARNING"):
        store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    assert "is damaged" in caplog.text and store._sidecar is not None
    assert _search(store, "hémoglobine 7") == before
    store.close()


def test_a_copy_that_cannot_be_written_stops_the_write_with_advice(tmp_path) -> None:
    """A read-only copy (or a full disk) raised raw sqlite3.OperationalError, and a delete failed after
    deleting the records from Chroma, whose full vectors the copy still returned."""
    from medrag.errors import StoreError

    emb = FakeMatryoshkaEmbeddings(128)
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path))
    store.add_texts(TEXTS[:20], ids=[f"t{i}" for i in range(20)])
    store._sidecar._db.close()
    store._sidecar._db = sqlite3.connect(f"file:{tmp_path / SIDECAR_NAME}?mode=ro", uri=True,
                                         check_same_thread=False, isolation_level=None)
    for call in (lambda: store.delete(["t5"]), lambda: store.add_texts(["nouveau"], ids=["n"])):
        with pytest.raises(StoreError, match="vector copy .* could not be written.*vector_sidecar=False"):
            call()
    assert len(store) == 20 and "t5" in store.get(ids=["t5"])["ids"]  # nothing deleted, nothing added
    assert store.get_full_vectors(["t5"]).shape == (1, 128)


def test_a_killed_index_save_leaves_no_temporary_file_for_long(tmp_path) -> None:
    """A kill between the temporary write and the rename left a copy of the whole index each time,
    kept forever (even after the collection was deleted)."""
    import os
    import time

    from medrag.lexical.sidecar import index_file

    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(128), persist_directory=str(tmp_path))
    store.add_texts(TEXTS[:20])
    store.hybrid_search("hémoglobine", k=2)
    path = index_file(tmp_path, str(store.collection.id))
    old, young = (path.parent / f"{path.name}abc_1234.tmp", path.parent / f"{path.name}def_5678.tmp")
    mine = path.parent / f"{path.name}-mine.tmp"  # not a save's name: never touched
    for leftover in (old, young, mine):
        leftover.write_bytes(b"x" * 100)
    os.utime(mine, (time.time() - 3600, time.time() - 3600))
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    store.add_texts(TEXTS[20:25])  # saves the index
    assert not old.exists() and young.exists()  # a young one may be another thread's save in progress
    store.delete_collection()
    assert not young.exists() and not path.exists() and mine.exists()


def test_sidecars_opened_by_threads_at_once_all_open(tmp_path) -> None:
    """Stores opened by threads at once (asyncio.gather of afrom_texts) failed now and then with
    "database is locked": SQLite's busy handler does not cover the journal-mode switch and the table
    creation racing another connection's (2 fresh folders in 30 with 8 threads; CI saw it once)."""
    import threading

    failures: list[str] = []
    for run in range(60):
        folder = tmp_path / f"f{run}"
        folder.mkdir()
        barrier = threading.Barrier(8)

        def open_copy(folder=folder, barrier=barrier) -> None:
            barrier.wait()
            try:
                VectorSidecar(folder)
            except Exception as exc:  # noqa: BLE001 (the failure is what the test reports)
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

        threads = [threading.Thread(target=open_copy) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert failures == []
