"""Bulk indexing (``medrag index`` / ``medrag.indexing``): resumability, edited and pruned documents, titles and
sections, CLI errors; the chunker's own tests are in test_chunking.py, the readers' in test_sources.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chromadb
import pytest

from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
from medrag.cli import main
from medrag.errors import DataError, InvalidInputError
from medrag.indexing import chunk_id, chunk_text, index_corpus, iter_documents
from tests.medrag.test_store import FakeMatryoshkaEmbeddings

REPO = Path(__file__).resolve().parents[2]

DOC = ("La ferritine basse traduit une carence en fer. Elle précède l'anémie ; la CRP aide à l'interpréter.\n"
       "Un bilan martial comprend fer sérique, transferrine et coefficient de saturation. "
       "Chez la femme enceinte, les besoins augmentent ! Faut-il supplémenter ? Souvent oui.")


def test_chunk_ids_are_stable_and_distinct() -> None:
    assert chunk_id("doc1", 0, "a") == chunk_id("doc1", 0, "a")
    assert len({chunk_id("doc1", 0, "a"), chunk_id("doc1", 1, "a"), chunk_id("doc2", 0, "a"),
                chunk_id("doc1", 0, "b")}) == 4


def _records(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": f"Document {i}. " + DOC, "product": f"P{i % 3}", "n": i} for i in range(n)]


class CountingFake(FakeMatryoshkaEmbeddings):
    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0

    def encode_documents(self, texts):
        self.encoded += len(texts)
        return super().encode_documents(texts)


def test_index_corpus_is_idempotent_and_does_not_re_encode(tmp_path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _records(40)))
    emb = CountingFake()
    store = MatryoshkaChroma("idx", emb, client=chromadb.EphemeralClient())
    first = index_corpus(path, store, id_field="id", metadata_fields=["product"], chunk_words=15, batch_size=16)
    assert first.documents == 40 and first.chunks > 40 and first.added == first.chunks == len(store)
    assert emb.encoded == first.chunks
    again = index_corpus(path, store, id_field="id", metadata_fields=["product"], chunk_words=15, batch_size=16)
    assert (again.added, again.skipped, again.stored) == (0, first.chunks, first.chunks) and emb.encoded == first.chunks
    first_chunk = chunk_text("Document 7. " + DOC, 15)[0]
    hit = store.similarity_search(first_chunk, k=1, filter={"doc": "d7"})[0]  # the fake maps equal texts together
    assert hit.metadata["product"] == "P1" and hit.metadata["chunk"] == 0
    store.delete_collection()


def test_a_kill_before_the_first_write_keeps_the_encodings_for_the_rerun(tmp_path, monkeypatch) -> None:
    """A new collection's first write holds 4,096 chunks (its coarse stage is fitted on them), all encoded
    before anything is stored: a kill meanwhile lost that encoding and the rerun did it again (user tryout:
    tens of minutes on a CPU). Now each slice's vectors are kept in the cache until the first write is
    stored, and the rerun encodes only what the killed run had not."""
    from medrag._encoding_checkpoint import FOLDER, SLICE

    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "notes.jsonl"
    n = 4200
    source.write_text("".join(json.dumps({"id": i, "text": f"Note {i} : ferritine {i % 97}, CRP {i % 13}."}) + "\n"
                              for i in range(n)), encoding="utf-8")

    class KilledAtSlice5(CountingFake):
        def encode_documents(self, texts):
            if self.encoded >= 4 * SLICE:
                raise KeyboardInterrupt  # the kill: nothing after this slice is saved, nothing is stored
            return super().encode_documents(texts)

    store = MatryoshkaChroma("notes", KilledAtSlice5(), persist_directory=str(tmp_path / "db"), coarse_dim=16,
                             coarse_rotation="pca")
    with pytest.raises(KeyboardInterrupt):
        index_corpus(source, store, id_field="id", show_progress=False)
    assert len(store) == 0
    parts = list((tmp_path / "cache" / FOLDER).glob("*/part-*.npz"))
    assert len(parts) == 4
    store.close()
    emb = CountingFake()
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path / "db"), coarse_dim=16, coarse_rotation="pca")
    report = index_corpus(source, store, id_field="id", show_progress=False)
    assert report.added == n and len(store) == n and emb.encoded == n - 4 * SLICE and report.reused == 4 * SLICE
    assert not list((tmp_path / "cache" / FOLDER).glob("*/part-*.npz"))  # removed once the first write is stored
    # the vectors kept are the model's: a search finds its note first
    hit = store.similarity_search("Note 7 : ferritine 7, CRP 7.", k=1)[0]
    assert hit.metadata["id"] == "7"
    store.close()


def test_a_checkpoint_that_cannot_be_written_or_read_never_stops_indexing(tmp_path, monkeypatch, caplog) -> None:
    """The kept encodings are a help: an unwritable cache (a full disk) or a damaged slice must not fail the run."""
    import numpy as np

    from medrag._encoding_checkpoint import CheckpointedEncoder

    emb = CountingFake()
    (tmp_path / "blocked").write_text("a file where the folder should be")
    encoder = CheckpointedEncoder(emb, tmp_path / "blocked" / "ck")
    with caplog.at_level("WARNING", logger="medrag._encoding_checkpoint"):
        vectors = encoder.encode_documents([f"texte {i}" for i in range(600)])
    assert vectors.shape == (600, 128) and np.allclose(vectors[3], emb._vec("texte 3"))
    assert caplog.text.count("cannot keep the first write's encodings") == 1  # once, then saving stops
    good = CheckpointedEncoder(emb, tmp_path / "ck")
    good.encode_documents(["un", "deux"])
    (tmp_path / "ck" / "part-000002.npz").write_bytes(b"not a npz")  # a damaged slice is encoded again
    good.encode_documents(["un", "quatre"])  # "un" again in this run: not "kept from an interrupted run" (review)
    assert good.reused == 0
    (tmp_path / "ck" / "part-damaged.npz").write_bytes(b"not a npz")  # a damaged slice is encoded again
    np.savez(tmp_path / "ck" / "part-otherdim.npz", keys=np.asarray(list(good._vectors)),  # and one of another size
             vectors=np.ones((len(good._vectors), 64), np.float32))
    again = CheckpointedEncoder(CountingFake(), tmp_path / "ck")
    assert again.encode_documents(["un", "trois"]).shape == (2, 128)
    assert again.reused == 1 and again.inner.encoded == 1 and len(list((tmp_path / "ck").glob("part-*.npz"))) == 5


def test_the_kept_encodings_are_keyed_by_what_decides_a_vector(tmp_path, monkeypatch) -> None:
    """The fingerprint hashes the weights, not the document prompt nor the token window: a rerun with
    another prompt read the first run's vectors back (review). A store already fitted removes kept
    encodings of a first write that a kill left after the coarse stage was recorded; a store already
    wrapped by another run is not wrapped twice."""
    from medrag._encoding_checkpoint import CheckpointedEncoder, checkpoint_folder
    from medrag.indexing import _end_checkpoint, _first_write_checkpoint

    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    emb = CountingFake()
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path / "db"), coarse_dim=16, coarse_rotation="pca")
    folder = checkpoint_folder(store, tmp_path / "cache")
    emb.document_prompt_name = "passage"
    assert checkpoint_folder(store, tmp_path / "cache") != folder
    first = _first_write_checkpoint(store)
    assert isinstance(store._encoder, CheckpointedEncoder) and _first_write_checkpoint(store) is None
    first.encode_documents(["une note"])
    assert first.folder.is_dir()
    _end_checkpoint(store, first, remove=False)
    assert store._encoder is emb
    store.add_texts([f"note {i}" for i in range(40)])  # fitted on a small first write (pca needs 32)
    assert store.rotation_fitted and _first_write_checkpoint(store) is None and not first.folder.exists()
    store.close()


def _one_line(capsys, argv, expected) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    return err[0]


def _usage_line(capsys, argv, expected) -> str:
    """A usage error (argparse's exit code 2): one line naming the flag, before anything runs."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    return err[0]


def test_cli_errors_are_one_line_and_come_before_the_model(tmp_path, capsys, monkeypatch) -> None:
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    (tmp_path / "a.docx").write_text("x")
    db = str(tmp_path / "db")
    _one_line(capsys, ["index", str(tmp_path / "nope.jsonl"), "--persist-dir", db], "does not exist")
    _one_line(capsys, ["index", str(tmp_path / "a.docx"), "--persist-dir", db], "unsupported file type")
    _one_line(capsys, ["index", str(tmp_path / "a.docx"), "--persist-dir", db], "unsupported file type")
    (tmp_path / "ok.jsonl").write_text('{"text": "x"}\n')
    ok = ["index", str(tmp_path / "ok.jsonl"), "--persist-dir", db]
    # the flags' names, not the library's parameter names; all before the model loads (found in review)
    _one_line(capsys, [*ok, "--chunk-words", "0"], "--chunk-words must be >= 1, got 0")
    _one_line(capsys, [*ok, "--overlap", "-1"], "--overlap must be >= 0, got -1")
    _one_line(capsys, [*ok, "--coarse-dim", "0"], "--coarse-dim must be >= 1, got 0")
    _one_line(capsys, [*ok, "--collection", "a"], "invalid --collection 'a': Chroma needs 3-512 characters")
    _one_line(capsys, [*ok, "--device", "bogus"], "unknown device 'bogus'")
    assert not Path(db).exists()  # nothing was created by the refused runs
    _one_line(capsys, ["index", str(tmp_path / "ok.jsonl"), "--persist-dir", str(tmp_path / "a.docx")], "is a file")


def test_cli_indexes_a_folder(tiny_model_dir, tmp_path, capsys) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(3):
        (folder / f"n{i}.txt").write_text(f"Note {i}. " + DOC)
    (tmp_path / "bad.jsonl").write_text('{"titre": "x"}\n')
    db = str(tmp_path / "db")
    argv = ["index", str(folder), "--persist-dir", db, "--model", str(tiny_model_dir), "--chunk-words", "20",
            "--collection", "notes", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 documents" in out and "0 already stored" in out
    assert main(argv) == 0
    assert " 0 added" in capsys.readouterr().out
    _one_line(capsys, ["index", str(tmp_path / "bad.jsonl"), "--persist-dir", db, "--model", str(tiny_model_dir),
                       "--collection", "notes"], "no 'text' field")


def test_cli_strict_fails_a_run_that_left_files_out_after_indexing_the_others(tiny_model_dir, tmp_path,
                                                                             capsys) -> None:
    """A file not read (Latin-1) or without text was a warning and exit code 0, so a pipeline could
    not tell a complete index from a partial one (user tryout): the summary counts them, and
    ``--strict`` exits 1 once the others are stored."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Note a. " + DOC)
    (folder / "latin1.txt").write_bytes("Fièvre élevée.".encode("latin-1"))
    (folder / "vide.txt").write_text("")
    db = str(tmp_path / "db")
    argv = ["index", str(folder), "--persist-dir", db, "--model", str(tiny_model_dir), "--no-progress"]
    assert main(argv) == 0
    assert "1 file not read, 1 empty document not indexed" in capsys.readouterr().out
    assert main([*argv, "--strict"]) == 1
    captured = capsys.readouterr()
    assert "0 added, 4 already stored" in captured.out  # a.txt stays indexed
    assert "--strict: 1 file not read, 1 document without text and 0 PDF pages without text" in captured.err
    (folder / "latin1.txt").write_text("Fièvre élevée.")
    (folder / "vide.txt").unlink()
    assert main([*argv, "--strict"]) == 0
    out = capsys.readouterr().out
    assert "1 added" in out and "not read" not in out and "not indexed" not in out


def test_a_run_without_a_terminal_logs_its_progress(tmp_path, caplog, monkeypatch) -> None:
    """With stderr not a terminal the bar is off, and an indexing run of hours logged nothing between
    its start and its summary (user tryout): an INFO line after a write, at most every
    PROGRESS_LOG_SECONDS; none with show_progress=False."""
    import logging

    import medrag.indexing

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"{DOC} Document {i}."}) + "\n" for i in range(6)))
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"),
                             coarse_rotation="none")
    monkeypatch.setattr(medrag.indexing, "PROGRESS_LOG_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="medrag.indexing"):
        report = index_corpus(src, store, batch_size=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("indexing ")]
    assert len(lines) >= 2 and f"{report.documents} document(s) read" in lines[-1], lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medrag.indexing"):
        index_corpus(src, store, batch_size=2, show_progress=False)
    assert not [r for r in caplog.records if r.getMessage().startswith("indexing ")]


def test_cli_index_and_search_reuse_the_model_the_collection_records(tiny_model_dir, tmp_path, capsys,
                                                                     monkeypatch) -> None:
    """A relative --model was recorded as given (search from another folder could not load it), and
    index without --model opened an existing collection with the default model (search used the
    recorded one): found in review."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "work" / "model")
    (tmp_path / "work" / "a.jsonl").write_text('{"text": "La ferritine basse traduit une carence en fer."}\n')
    monkeypatch.chdir(tmp_path / "work")
    argv = ["index", "a.jsonl", "--persist-dir", "db", "--collection", "notes", "--no-progress"]
    assert main([*argv, "--model", "model"]) == 0
    capsys.readouterr()
    import medrag.embeddings

    real = medrag.embeddings.load_model
    monkeypatch.setattr(medrag.embeddings, "load_model", lambda spec, *a, **k: real(spec, *a, **k) if spec == str(
        (tmp_path / "work" / "model").resolve()) else pytest.fail(f"loaded {spec!r}, not the recorded model"))
    assert main(argv) == 0 and " 0 added" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["search", "ferritine", "--persist-dir", "work/db", "--collection", "notes", "--k", "1"]) == 0
    assert "ferritine basse" in capsys.readouterr().out
    _one_line(capsys, ["search", "ferritine", "--persist-dir", "work/db", "--collection", "notes", "--device",
                       "bogus"], "unknown device 'bogus'")  # not "the recorded model does not load from here"
    _one_line(capsys, ["search", "ferritine", "--persist-dir", "work/db", "--collection", "notes", "--hybrid",
                       "--lexical-weight", "2"], "--lexical-weight must be in [0, 1]")
    # another model on the collection: the store's message, and what to do from the shell
    from tests.tiny_model import build_tiny_model

    monkeypatch.setattr(medrag.embeddings, "load_model", real)
    other = build_tiny_model(tmp_path / "other-model", seed=1)
    capsys.readouterr()  # the build's own progress bars
    _one_line(capsys, ["index", "work/a.jsonl", "--persist-dir", "work/db", "--collection", "notes", "--model",
                       str(other)], "From the shell: leave out --model")


def test_a_moved_model_folder_is_recorded_once_the_collection_is_opened_from_its_new_place(
        tiny_model_dir, tmp_path, capsys) -> None:
    """The collection records a local model as an absolute path; once that folder moved, every
    ``medrag search`` needed ``--model`` with the new place, as the record was never updated (review).
    The same model (same fingerprint) opened from its new place is now recorded there."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "a.jsonl").write_text('{"text": "La ferritine basse traduit une carence en fer."}\n')
    db = str(tmp_path / "db")
    search = ["search", "ferritine", "--persist-dir", db, "--collection", "notes", "--k", "1"]
    assert main(["index", str(tmp_path / "a.jsonl"), "--persist-dir", db, "--collection", "notes", "--model",
                 str(tmp_path / "model"), "--no-progress"]) == 0
    (tmp_path / "model").rename(tmp_path / "moved")
    capsys.readouterr()
    _one_line(capsys, search, "pass --model with where that model is now")
    assert main([*search, "--model", str(tmp_path / "moved")]) == 0
    assert main(search) == 0 and "ferritine basse" in capsys.readouterr().out  # no --model needed any more
    meta = chromadb.PersistentClient(db).get_collection("notes").metadata
    assert meta["medrag:model"] == str(tmp_path / "moved")
    # a recorded folder that still exists is kept: another copy of the same model does not replace it
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    assert main([*search, "--model", str(tmp_path / "copy")]) == 0
    assert chromadb.PersistentClient(db).get_collection("notes").metadata["medrag:model"] == str(tmp_path / "moved")


def test_cli_a_damaged_store_is_a_one_line_error(tiny_model_dir, tmp_path, capsys) -> None:
    """Reading the recorded model of an existing store opened a Chroma client outside the store's
    checks: a damaged chroma.sqlite3 was a traceback (found in review)."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "chroma.sqlite3").write_bytes(b"garbage")
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')
    _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(tmp_path / "bad"), "--model",
                       str(tiny_model_dir), "--no-progress"], "chroma.sqlite3 is not a SQLite database")
    assert (tmp_path / "bad" / "chroma.sqlite3").read_bytes() == b"garbage"


def test_cli_a_run_failing_before_its_first_write_leaves_no_empty_collection(tiny_model_dir, tmp_path, capsys) -> None:
    """A bad line past the first record made the run fail after creating the collection: an empty
    collection was left, which kept that run's settings (found in review)."""
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n{"text": "Une autre."}\n{oops\n')
    db = tmp_path / "db"
    argv = ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(db), "--model", str(tiny_model_dir),
            "--collection", "notes", "--coarse-dim", "16", "--no-progress"]
    _one_line(capsys, argv, "a.jsonl:3")
    assert not db.exists()  # nor the folder it made (it held a database, a lock and a vector copy)
    deep = tmp_path / "new" / "deeper" / "db"
    _one_line(capsys, [*argv[:3], str(deep), *argv[4:]], "a.jsonl:3")
    assert not (tmp_path / "new").exists()
    db.mkdir()  # a folder that was there, empty, stays, empty
    _one_line(capsys, argv, "a.jsonl:3")
    assert db.is_dir() and list(db.iterdir()) == []
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')
    assert main(argv[:-3] + ["--coarse-dim", "32", "--no-progress"]) == 0  # the new run's settings apply
    assert chromadb.PersistentClient(str(db)).get_collection("notes").metadata["medrag:coarse_dim"] == 32
    # an existing collection is never deleted by a failed run
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n{oops\n')
    _one_line(capsys, argv[:-3] + ["--no-progress"], "a.jsonl:2")
    assert "notes" in [c.name for c in chromadb.PersistentClient(str(db)).list_collections()]


def test_cli_a_failed_run_removes_only_its_own_store_not_a_folder_shared_since(tiny_model_dir, tmp_path, capsys,
                                                                              monkeypatch) -> None:
    """A run into new/a, new not existing, removed the whole of new when it failed: a store another
    job had made in new/b meanwhile went with it (user tryout)."""
    import medrag.indexing
    from medrag.errors import DataError

    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')

    def sibling_then_fail(*args, **kwargs):
        (tmp_path / "new" / "b").mkdir(parents=True)
        (tmp_path / "new" / "b" / "chroma.sqlite3").write_text("the other job's store")
        raise DataError("interrupted")

    monkeypatch.setattr(medrag.indexing, "index_corpus", sibling_then_fail)
    _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(tmp_path / "new" / "deeper" / "a"),
                       "--model", str(tiny_model_dir), "--no-progress"], "interrupted")
    assert not (tmp_path / "new" / "deeper").exists()  # this run's folders, empty once its store is gone
    assert (tmp_path / "new" / "b" / "chroma.sqlite3").read_text() == "the other job's store"


def test_cli_an_empty_collection_left_by_a_killed_run_takes_the_new_settings(tiny_model_dir, tmp_path) -> None:
    """A run killed before its first write left an empty collection; the next run with --coarse-dim,
    --full-encoding or another --model was refused ("does not match this store") though the docs say an
    empty one takes the new run's settings (user tryout)."""
    from medrag import MatryoshkaEmbeddings

    db = tmp_path / "db"
    MatryoshkaChroma("notes", MatryoshkaEmbeddings(str(tiny_model_dir)), persist_directory=str(db), coarse_dim=16).close()
    (tmp_path / "a.jsonl").write_text('{"text": "Une note sur la ferritine."}\n')
    assert main(["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(db), "--collection", "notes",
                 "--model", str(tiny_model_dir), "--coarse-dim", "32", "--full-encoding", "float16", "--no-progress"]) == 0
    meta = chromadb.PersistentClient(str(db)).get_collection("notes").metadata
    assert (meta["medrag:coarse_dim"], meta["medrag:full_encoding"]) == (32, "float16")


def test_cli_a_coarse_dim_above_the_model_leaves_no_folder(tiny_model_dir, tmp_path, capsys) -> None:
    """--coarse-dim 500 with a smaller model: the store's error named `coarse_dim=` and the run left the
    folder it had made, holding a database and a lock (user tryout)."""
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')
    db = tmp_path / "db"
    _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(db), "--model", str(tiny_model_dir),
                       "--coarse-dim", "500", "--no-progress"], "--coarse-dim 500 must be below the model's full size (128)")
    assert not db.exists()


def test_cli_a_plain_chroma_collection_is_named_with_the_shell_advice_that_works(tiny_model_dir, tmp_path,
                                                                                capsys) -> None:
    """On a langchain-chroma collection the advice was "From the shell: leave out --model ...", which only
    fails differently ("records no model medrag can load") (user tryout)."""
    db = tmp_path / "db"
    chromadb.PersistentClient(str(db)).create_collection("notes").add(ids=["x"], documents=["une note"],
                                                                      embeddings=[[0.1, 0.2]])
    (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')
    err = _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(db), "--collection", "notes",
                             "--model", str(tiny_model_dir), "--no-progress"],
                    "not created by MatryoshkaChroma")
    assert "From the shell: index into another --collection" in err and "leave out --model" not in err


def test_cli_a_folder_another_process_has_open_is_refused_before_the_model(tmp_path, capsys, monkeypatch) -> None:
    """The store only warns when it opens a folder another process holds, and refuses the write:
    ``medrag index`` printed that warning, loaded the model, then failed (found in review). It is now
    one error, before the model loads, and the other process's records are untouched."""
    import medrag.embeddings

    db = tmp_path / "db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]);"
         "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F; from medrag import MatryoshkaChroma as M;"
         "s = M('notes', F(), persist_directory=sys.argv[1]); s.add_texts(['une note']); print('ready', flush=True);"
         "sys.stdin.read()", str(db), str(REPO)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "ready"
        monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        (tmp_path / "a.jsonl").write_text('{"text": "Une note."}\n')
        _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", str(db), "--collection", "notes"],
                  f"another process (pid {holder.pid}) has the embedded Chroma store {db} open; nothing was written")
    finally:
        holder.communicate("", timeout=60)
    assert len(MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), persist_directory=str(db))) == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_misspelled_metadata_field_is_an_error_before_anything_is_stored(tmp_path, capsys, monkeypatch,
                                                                          suffix) -> None:
    """A field in no record was a warning after the whole file was stored without it; indexing again
    with the right name then stored every document twice (keyed by text and metadata) (review)."""
    import medrag.embeddings

    rows = [{"text": "Une note.", "year": 2021}, {"text": "Une autre.", "year": 2022, "service": "cardio"}]
    src = tmp_path / f"notes{suffix}"
    if suffix == ".csv":
        src.write_text("text,year,service\nUne note.,2021,\nUne autre.,2022,cardio\n")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([{**r, "service": r.get("service")} for r in rows]), src)
    else:
        _jsonl(src, rows)
    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    db = tmp_path / "db"
    _one_line(capsys, ["index", str(src), "--persist-dir", str(db), "--metadata-fields", "service,yaer:int"],
              f"{src}: no record has the metadata field 'yaer' (did you mean 'year'?); the records' fields: "
              "service, text, year")
    assert not db.exists()
    store = MatryoshkaChroma("notes", CountingFake(), persist_directory=str(db))
    with pytest.raises(DataError, match="no record has the metadata field 'zzz'; the records"):
        index_corpus(src, store, metadata_fields=["year", "zzz"])
    assert len(store) == 0 and store.embeddings.encoded == 0
    # a field some records lack (the second JSON record alone has "service") is no error
    assert index_corpus(src, store, metadata_fields=["year:int", "service"]).added == 2


def test_cli_warnings_are_one_line(tiny_model_dir, tmp_path) -> None:
    """The truncation warning printed the file, line and source line of the warn() call under it."""
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": DOC * 3}) + "\n")
    run = subprocess.run([sys.executable, "-m", "medrag", "index", str(tmp_path / "a.jsonl"), "--persist-dir",
                          str(tmp_path / "db"), "--model", str(tiny_model_dir), "--chunk-words", "1000",
                          "--max-tokens", "none", "--no-progress"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "exceed" in line]
    assert len(warned) == 1 and warned[0].startswith("medrag index: warning: 1 text(s) exceed"), run.stderr
    assert "UserWarning" not in run.stderr and "warnings.warn" not in run.stderr
    # the library's logged warnings read the same (they printed "WARNING medrag.indexing: ...")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text(DOC)
    (tmp_path / "notes" / "vide.txt").write_text("")
    run = subprocess.run([sys.executable, "-m", "medrag", "index", str(tmp_path / "notes"), "--persist-dir",
                          str(tmp_path / "db2"), "--model", str(tiny_model_dir), "--no-progress"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    assert any(line.startswith("medrag index: warning: ") and "1 of 2 document(s) are empty" in line
               for line in run.stderr.splitlines()), run.stderr
    assert "WARNING medrag" not in run.stderr


def _index_argv(tmp_path, tiny_model_dir, notes: int) -> tuple[list[str], str]:
    """``medrag index`` arguments over a folder of ``notes`` small .txt notes, and the store's folder."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(notes):
        (folder / f"n{i}.txt").write_text(f"Note {i} sur la ferritine {i * 7} et la CRP {i % 9}. " + DOC)
    db = str(tmp_path / "db")
    return ["index", str(folder), "--persist-dir", db, "--model", str(tiny_model_dir), "--chunk-words", "20",
            "--collection", "notes", "--no-progress"], db


def test_cli_coarse_rotation_is_recorded(tiny_model_dir, tmp_path, capsys) -> None:
    argv, db = _index_argv(tmp_path, tiny_model_dir, 40)
    argv += ["--coarse-dim", "16", "--coarse-rotation", "pca"]
    assert main(argv) == 0
    import chromadb

    meta = chromadb.PersistentClient(db).get_collection("notes").metadata
    assert meta["medrag:coarse_rotation"] == "pca" and meta["medrag:rotation_data"]
    capsys.readouterr()
    assert main(argv[:-1] + ["none"]) == 1  # the collection's contract says pca: refused, nothing written
    err = capsys.readouterr().err.strip().splitlines()
    assert "rotation" in err[-1] and "reindex" in err[-1]


def test_cli_full_encoding_and_ef_search_are_recorded(tiny_model_dir, tmp_path, capsys) -> None:
    argv, db = _index_argv(tmp_path, tiny_model_dir, 12)
    argv += ["--full-encoding", "float16", "--ef-search", "800"]
    assert main(argv) == 0
    import chromadb

    collection = chromadb.PersistentClient(db).get_collection("notes")
    assert collection.metadata["medrag:full_encoding"] == "float16"
    assert collection.configuration["hnsw"]["ef_search"] == 800
    capsys.readouterr()
    _one_line(capsys, argv[:-1] + ["0"], "--ef-search must be >= 1")
    # the defaults: a new collection gets the store's (float16 stated here, ef_search 400, "auto" ->
    # "none" for a 12-document corpus); re-running without the flags keeps the collection's own settings
    (tmp_path / "other").mkdir()
    argv, db = _index_argv(tmp_path / "other", tiny_model_dir, 12)
    assert main(argv + ["--full-encoding", "float16"]) == 0
    assert main(argv) == 0
    collection = chromadb.PersistentClient(db).get_collection("notes")
    assert collection.metadata["medrag:full_encoding"] == "float16"
    assert collection.metadata["medrag:coarse_rotation"] == "none"
    assert collection.configuration["hnsw"]["ef_search"] == 400
    # --ef-search on an existing collection changes it there (the rerun adds nothing: same ids)
    assert main(argv + ["--ef-search", "800"]) == 0
    assert chromadb.PersistentClient(db).get_collection("notes").configuration["hnsw"]["ef_search"] == 800


_KILLED_INDEX = r"""
import sys
sys.path.insert(0, sys.argv[1])
import medrag.embeddings as E
real = E.MatryoshkaEmbeddings.encode_documents
def encode_documents(self, texts):  # report each batch, so the test can kill mid-ingest
    print("encode", len(texts), flush=True)
    return real(self, texts)
E.MatryoshkaEmbeddings.encode_documents = encode_documents
from medrag.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _killable_index(tiny_model_dir, tmp_path, n_docs: int, *extra: str):
    """``(cmd, env, total chunks, db folder)`` of a ``medrag index`` run over ``n_docs`` two-chunk
    documents that prints ``encode N`` per encoded batch (:data:`_KILLED_INDEX`)."""
    data = tmp_path / "corpus.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"doc{i}", "text": f"Patient {i}, bilan {i % 17}. " + DOC})
                              for i in range(n_docs)))
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))  # the run cuts chunks to its 64-token window
    total = sum(len(chunk_text(f"Patient {i}, bilan {i % 17}. " + DOC, 30, max_tokens=emb.max_tokens,
                               count_tokens=lambda c: emb.count_tokens([c])[0])) for i in range(n_docs))
    db = tmp_path / "db"
    script = tmp_path / "run_index.py"
    script.write_text(_KILLED_INDEX)
    cmd = [sys.executable, str(script), str(REPO), "index", str(data), "--persist-dir", str(db), "--model",
           str(tiny_model_dir), "--id-field", "id", "--chunk-words", "30", "--batch-size", "100", "--no-progress",
           *extra]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return cmd, env, total, db


@pytest.mark.integration
def test_index_resumes_after_sigkill_without_duplicates_or_re_encoding(tiny_model_dir, tmp_path) -> None:
    """``medrag index`` in a real subprocess, SIGKILLed mid-ingest, then re-run to completion."""
    # batches of 100 from the first ("auto" would fit on 4,096 first)
    cmd, env, total, db = _killable_index(tiny_model_dir, tmp_path, 1500, "--coarse-rotation", "none")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    batches = 0
    while batches < 12:  # kill during the 12th batch (encode or write)
        line = proc.stdout.readline()
        assert line, "the indexer ended before it was killed"
        batches += line.startswith("encode")
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stored = chromadb.PersistentClient(str(db)).get_collection("medrag").count()
    assert 0 < stored < total
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    encoded = sum(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("encode"))
    assert encoded == total - stored, "the resumed run re-encoded stored chunks"
    col = chromadb.PersistentClient(str(db)).get_collection("medrag")
    assert col.count() == total
    docs = col.get(include=["metadatas"])["metadatas"]
    assert len({(m["doc"], m["chunk"]) for m in docs}) == total  # no duplicate chunk


@pytest.mark.integration
def test_index_with_the_default_auto_stage_resumes_after_sigkill(tiny_model_dir, tmp_path) -> None:
    """The default path (``coarse_rotation`` "auto"): the first write (4,096 chunks) decides and
    records the learned stage; a SIGKILL in a later batch, then a re-run, adds the rest without
    duplicates or re-encoding and keeps the projection fitted by the first run."""
    cmd, env, total, db = _killable_index(tiny_model_dir, tmp_path, 2500)  # 5,000 chunks: 4,096, then 100s
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    encoded, later = 0, 0
    while later < 3:  # kill during the 3rd batch after the first write
        line = proc.stdout.readline()
        assert line, "the indexer ended before it was killed"
        if line.startswith("encode"):
            later += encoded >= 4096
            encoded += int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    col = chromadb.PersistentClient(str(db)).get_collection("medrag")
    stored, meta = col.count(), dict(col.metadata)
    assert 4096 <= stored < total
    assert meta["medrag:coarse_rotation"] == "learned" and meta["medrag:rotation_data"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    again = sum(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("encode"))
    assert again == total - stored, "the resumed run re-encoded stored chunks"
    col = chromadb.PersistentClient(str(db)).get_collection("medrag")
    assert col.count() == total
    assert len({(m["doc"], m["chunk"]) for m in col.get(include=["metadatas"])["metadatas"]}) == total
    assert col.metadata["medrag:rotation_data"] == meta["medrag:rotation_data"]  # fitted once, kept


def test_the_default_auto_stage_is_learned_for_a_corpus_indexed_in_one_run(tiny_model_dir, tmp_path) -> None:
    """With the store's defaults, index_corpus's first write holds 4,096 chunks, so a corpus of
    >= 1,000 chunks gets the learned coarse stage (fitted once, on all 1,200 here); a second run
    adds nothing and keeps it."""
    from medrag import MatryoshkaChroma, MatryoshkaEmbeddings

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"Note {i} : ferritine {i} µg/L, CRP {i % 13} mg/L, "
                                                  f"hémoglobine {i % 7} g/dL, bilan {i}."}) for i in range(1200)),
                    encoding="utf-8")
    emb = MatryoshkaEmbeddings(str(tiny_model_dir), device="cpu")
    store = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path / "db"), coarse_dim=8)
    assert store.coarse_rotation == "auto"
    fitted_on = []
    real_fit = store._fit_rotation
    store._fit_rotation = lambda full, texts: fitted_on.append(len(full)) or real_fit(full, texts)
    report = index_corpus(docs, store, batch_size=100, show_progress=False)
    assert report.stored == 1200 and fitted_on == [1200] and store.coarse_rotation == "learned"
    store.close()
    again = MatryoshkaChroma("notes", emb, persist_directory=str(tmp_path / "db"), coarse_dim=8)
    assert index_corpus(docs, again, batch_size=100, show_progress=False).added == 0
    assert again.coarse_rotation == "learned"
    again.close()


def test_the_first_write_is_large_enough_to_fit_the_coarse_projection(tiny_model_dir, tmp_path) -> None:
    """A learned projection needs 8 x coarse_dim texts at the first write; index_corpus makes its
    first write fit_sample_size (4,096) texts, whatever batch_size (a batch of 32 alone would be refused)."""
    from medrag import MatryoshkaChroma, MatryoshkaEmbeddings

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"Note {i} : ferritine {i} µg/L, CRP {i % 13} mg/L, "
                                                  f"hémoglobine {i % 7} g/dL, bilan {i}."}) for i in range(300)),
                    encoding="utf-8")
    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(str(tiny_model_dir), device="cpu"),
                             persist_directory=str(tmp_path / "db"), coarse_dim=8, coarse_rotation="learned")
    assert store.coarse_rotation == "learned" and not store.rotation_fitted
    fitted_on = []
    real_fit = store._fit_rotation
    store._fit_rotation = lambda full, texts: fitted_on.append(len(full)) or real_fit(full, texts)
    report = index_corpus(docs, store, batch_size=32, show_progress=False)
    assert report.stored == 300 and store.rotation_fitted
    assert fitted_on == [300]  # the first write holds fit_sample_size (4,096) texts: all of them, not 32
    store.close()


# ---------------------------------------------------------------------------- December 3 review (each failed before its fix)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_a_document_indexed_again_with_another_text_replaces_its_chunks(tmp_path) -> None:
    """The old version of an edited document (same --id-field value) used to stay searchable."""
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    rows = _records(6)
    index_corpus(_jsonl(tmp_path / "v1.jsonl", rows), store, id_field="id", chunk_words=15, batch_size=4)
    kept = {d.id for d in store.get_by_ids(store.collection.get(where={"doc": {"$ne": "d2"}})["ids"])}
    rows[2] = {**rows[2], "text": "Doliprane : 500 mg toutes les 4 heures, sans dépasser 3 g par jour."}
    report = index_corpus(_jsonl(tmp_path / "v2.jsonl", rows), store, id_field="id", chunk_words=15, batch_size=4)
    d2 = store.collection.get(where={"doc": "d2"}, include=["documents"])
    assert d2["documents"] == [rows[2]["text"]]  # only the new version
    assert report.removed > 0 and report.added == 1 and len(store) == len(kept) + 1
    assert set(store.collection.get(where={"doc": {"$ne": "d2"}})["ids"]) == kept  # the others untouched
    assert [d.page_content for d in store.hybrid_search("Doliprane 500 mg", k=1, lexical_weight=1.0)] == [rows[2]["text"]]
    store.delete_collection()


def test_an_edited_file_of_a_folder_replaces_its_chunks(tmp_path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Note A. " + DOC)
    (folder / "b.txt").write_text("Note B. " + DOC)
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(folder, store, chunk_words=15)
    (folder / "a.txt").write_text("Note A, corrigée : la ferritine se dose à jeun.")
    index_corpus(folder, store, chunk_words=15)
    assert store.collection.get(where={"source": "a.txt"}, include=["documents"])["documents"] == [
        "Note A, corrigée : la ferritine se dose à jeun."]
    store.delete_collection()


def test_typed_metadata_fields_make_csv_values_filterable_as_numbers(tmp_path) -> None:
    """A CSV's values are all text: --metadata-fields year made {"year": 2021} match nothing (found in
    review). year:int / dose:float / actif:bool convert them; a bad value names its row."""
    path = tmp_path / "a.csv"
    path.write_text("text,year,dose,actif\nLa TSH est basse.,2021,\"0,5\",oui\nLa CRP monte.,2019,1.5,false\n"
                    "La ferritine.,,2,1\n")
    docs = list(iter_documents(path, metadata_fields=["year:int", "dose:float", "actif:bool"], warn=False))
    assert [m for _, _, m in docs] == [{"year": 2021, "dose": 0.5, "actif": True},
                                       {"year": 2019, "dose": 1.5, "actif": False}, {"dose": 2.0, "actif": True}]
    assert [m for _, _, m in iter_documents(path, metadata_fields=["year"], warn=False)][0] == {"year": "2021"}
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(path, store, metadata_fields=["year:int"])
    assert [d.page_content for d in store.similarity_search("TSH", k=3, filter={"year": {"$gte": 2020}})] == [
        "La TSH est basse."]
    store.delete_collection()
    path.write_text("text,year\nLa TSH est basse.,2021\nLa CRP monte.,vingt\n")
    with pytest.raises(DataError, match=r"a.csv:row 2: field 'year' is 'vingt', not an int"):
        list(iter_documents(path, metadata_fields=["year:int"]))
    with pytest.raises(InvalidInputError, match=r"\['doc'\]"):
        index_corpus(path, store, metadata_fields=["doc:int"])
    # missing values stay missing (NaN: json.dumps' and pandas'), "2021.0" is an int (pandas' int column with
    # gaps), a value past 64 bits names its record, an object becomes JSON text with :str (not its Python repr)
    path = _jsonl(tmp_path / "m.jsonl", [{"text": "a", "year": float("nan"), "cat": float("nan")},
                                         {"text": "b", "year": "2021.0", "cat": {"x": 1}}])
    assert [m for _, _, m in iter_documents(path, metadata_fields=["year:int", "cat:str"], warn=False)] == [
        {}, {"year": 2021, "cat": '{"x": 1}'}]
    path = _jsonl(tmp_path / "big.jsonl", [{"text": "a", "n": 99999999999999999999}, {"text": "b", "n": "9" * 400}])
    with pytest.raises(DataError, match=r"big.jsonl:1: field 'n' is 99999999999999999999, not an int .*64-bit"):
        list(iter_documents(path, metadata_fields=["n:int"]))


def test_two_folders_with_the_same_file_names_share_a_collection_without_loss(tmp_path) -> None:
    """Indexing b/ after a/ into one collection deleted a/'s files that had the same relative path
    (the document key was the relative path alone, and b's version replaced a's: found in review)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, text in ((a, "Notes du service A : la ferritine basse. "), (b, "Notes du service B : la TSH élevée. ")):
        folder.mkdir()
        (folder / "notes.txt").write_text(text + DOC)
        (folder / f"{folder.name}.txt").write_text(text)
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(a, store, chunk_words=15)
    n_a = len(store)
    report = index_corpus(b, store, chunk_words=15)
    assert report.removed == 0 and len(store) == n_a + report.added
    notes = store.collection.get(where={"source": "notes.txt"}, include=["metadatas", "documents"])
    assert {md["folder"] for md in notes["metadatas"]} == {a.resolve().as_posix(), b.resolve().as_posix()}
    # re-indexing a/ with an edited notes.txt replaces a's chunks only
    (a / "notes.txt").write_text("Notes du service A, corrigées : la ferritine se dose à jeun.")
    report = index_corpus(a, store, chunk_words=15)
    assert report.removed > 0
    by_folder = {}
    for md, doc in zip(*[store.collection.get(where={"source": "notes.txt"}, include=["metadatas", "documents"])[k]
                         for k in ("metadatas", "documents")]):
        by_folder.setdefault(Path(md["folder"]).name, []).append(doc)
    assert by_folder["a"] == ["Notes du service A, corrigées : la ferritine se dose à jeun."]
    assert len(by_folder["b"]) > 1 and by_folder["b"][0].startswith("Notes du service B")
    # prune touches this folder's files only: a's deleted file goes, b's files stay
    (a / "a.txt").unlink()
    before_b = store.collection.get(where={"folder": b.resolve().as_posix()})["ids"]
    report = index_corpus(a, store, chunk_words=15, prune=True)
    assert report.pruned == 1 and store.collection.get(where={"folder": b.resolve().as_posix()})["ids"] == before_b
    assert sorted(md["source"] for md in store.collection.get(where={"folder": a.resolve().as_posix()})["metadatas"]) \
        == ["notes.txt"]
    # a records file whose ids equal a folder's relative path neither replaces nor prunes the folder's file
    records = _jsonl(tmp_path / "r.jsonl", [{"id": "notes.txt", "text": "Une fiche nommée notes.txt."}])
    index_corpus(records, store, id_field="id")
    _jsonl(records, [{"id": "notes.txt", "text": "La fiche notes.txt, corrigée."}])
    report = index_corpus(records, store, id_field="id", prune=True)
    assert report.removed == 1 and report.pruned == 0
    assert store.collection.get(where={"folder": b.resolve().as_posix()})["ids"] == before_b
    assert len(store.collection.get(where={"folder": a.resolve().as_posix()})["ids"]) == 1
    # identical files in two folders are two documents, not one chunk id rewritten back and forth
    same = tmp_path / "same"
    same.mkdir()
    (same / "notes.txt").write_text((a / "notes.txt").read_text())
    n = len(store)
    report = index_corpus(same, store, chunk_words=15)
    assert (report.added, report.updated, report.removed) == (1, 0, 0) and len(store) == n + 1
    store.delete_collection()


def test_a_named_folder_is_the_same_source_wherever_it_is_mounted(tmp_path) -> None:
    """Folder ids hash the folder's absolute path: the same folder seen from a container or another
    machine was re-encoded and stored twice. --folder-name gives it a stable identity."""
    import shutil

    host = tmp_path / "host" / "notes"
    host.mkdir(parents=True)
    (host / "a.txt").write_text("La ferritine basse.")
    (host / "b.txt").write_text("La TSH élevée.")
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(host, store, folder_name="service-notes")
    mounted = tmp_path / "container" / "data"
    shutil.copytree(host, mounted)
    (mounted / "b.txt").unlink()
    report = index_corpus(mounted, store, folder_name="service-notes", prune=True)
    assert (report.added, report.skipped, report.pruned, len(store)) == (0, 1, 1, 1)
    assert store.collection.get()["metadatas"][0]["folder"] == "service-notes"
    with pytest.raises(InvalidInputError, match="names a folder source"):
        index_corpus(_jsonl(tmp_path / "r.jsonl", [{"text": "x"}]), store, folder_name="service-notes")
    with pytest.raises(InvalidInputError, match="non-empty string"):
        list(iter_documents(host, folder_name=" "))
    store.delete_collection()


def test_a_folder_stored_before_chunks_named_their_folder_is_replaced_not_doubled(tmp_path) -> None:
    """Chunks of a folder written by an earlier medrag (ids from the relative path, no ``folder``
    metadata) are the earlier version of the same files: the first run of this version replaces them
    (once re-encoded) instead of keeping both copies; records of a records file are left alone."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("La ferritine basse.")
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    store.add_texts(["La ferritine basse."], [{"source": "a.txt", "doc": "a.txt", "chunk": 0}],
                    ids=[chunk_id("a.txt", 0, "La ferritine basse.")])  # as the earlier version wrote it
    store.add_texts(["Une fiche : a.txt"], [{"doc": "a.txt", "chunk": 0}], ids=["record"])  # --id-field a.txt
    report = index_corpus(folder, store)
    assert (report.added, report.removed) == (1, 1)
    assert sorted(store.collection.get()["ids"]) == sorted(["record", chunk_id(f"{folder.resolve().as_posix()}/a.txt", 0,
                                                                               "La ferritine basse.")])
    store.delete_collection()


def test_same_text_with_other_metadata_is_two_records_and_exact_repeats_are_counted(tmp_path, caplog) -> None:
    """Records with one text and two sources were merged (the first source lost), and the report called
    the repeats of a new collection "already stored"."""
    text = "Surveiller la kaliémie sous IEC."
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    path = _jsonl(tmp_path / "s.jsonl", [{"text": text, "source": "hopital-A", "service": "cardio"},
                                         {"text": text, "source": "hopital-B"}, {"text": text, "source": "hopital-B"}])
    with pytest.raises(DataError, match="no record has the metadata field 'servce'"):  # a misspelled field
        index_corpus(path, store, metadata_fields=["source", "servce"])
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(path, store, metadata_fields=["source", "service"])
    assert sorted(m["source"] for m in store.collection.get()["metadatas"]) == ["hopital-A", "hopital-B"]
    assert (report.added, report.skipped, report.duplicates) == (2, 0, 1)
    assert "'service' is absent" in caplog.text and "2 of 3 records" in caplog.text  # a field some records lack
    assert chunk_id(next(iter_documents(_jsonl(tmp_path / "t.jsonl", [{"text": text}])))[0], 0, text) == \
        chunk_id(__import__("hashlib").sha256(text.encode()).hexdigest()[:24], 0, text)  # no metadata: ids as before
    store.delete_collection()


def test_cli_a_failed_first_fit_does_not_lock_the_store_and_coarse_dim_is_kept(tiny_model_dir, tmp_path, capsys) -> None:
    """--coarse-rotation pca on too few chunks left an empty collection that refused every later run;
    --coarse-dim defaulted to 64 and refused a collection made with another size."""
    argv, db = _index_argv(tmp_path, tiny_model_dir, 3)
    assert main(argv + ["--coarse-rotation", "pca"]) == 1
    assert "coarse_rotation='auto'" in capsys.readouterr().err
    assert main(argv) == 0  # the default auto stage takes over the empty collection
    meta = chromadb.PersistentClient(db).get_collection("notes").metadata
    assert meta["medrag:coarse_rotation"] == "none" and len(chromadb.PersistentClient(db).get_collection("notes").get()["ids"]) > 0
    (tmp_path / "other").mkdir()
    argv2, _ = _index_argv(tmp_path / "other", tiny_model_dir, 3)
    assert main(argv2 + ["--coarse-dim", "16"]) == 0
    capsys.readouterr()
    assert main(argv2) == 0  # an existing collection keeps its own coarse size
    assert " 0 added" in capsys.readouterr().out
    _one_line(capsys, argv2 + ["--port", "1234"], "--host")
    _one_line(capsys, argv2 + ["--port", "8000"], "--host")  # the default's value was taken for no --port (user tryout)


def test_cli_an_unreachable_server_is_named_as_such(tmp_path, capsys) -> None:
    """It was "Chroma rejected the request to connect...": nothing rejected it, nothing answered."""
    from tests.medrag.conftest import _free_port

    (tmp_path / "ok.jsonl").write_text('{"text": "La ferritine basse."}\n')
    _one_line(capsys, ["index", str(tmp_path / "ok.jsonl"), "--host", "127.0.0.1", "--port", str(_free_port())],
              "cannot reach a Chroma server")


def test_cli_a_servers_database_and_tenant(tiny_model_dir, tmp_path, capsys, chroma_server) -> None:
    """`medrag index`/`search` reached only Chroma's default tenant and database, over HTTP: a
    deployment with a database per service, or behind HTTPS, could not use the shell."""
    host, port = chroma_server
    admin = chromadb.AdminClient(chromadb.config.Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI",
                                                          chroma_server_host=host, chroma_server_http_port=port))
    admin.create_database("cardiologie")
    argv, _ = _index_argv(tmp_path, tiny_model_dir, 3)
    at = argv.index("--persist-dir")
    server = argv[:at] + ["--host", host, "--port", str(port)] + argv[at + 2:]
    assert main(server + ["--database", "cardiologie"]) == 0
    capsys.readouterr()
    in_db = chromadb.HttpClient(host=host, port=port, database="cardiologie")
    assert len(in_db.get_collection("notes").get()["ids"]) > 0
    assert "notes" not in [c.name for c in chromadb.HttpClient(host=host, port=port).list_collections()]
    assert main(["search", "ferritine", "--host", host, "--port", str(port), "--database", "cardiologie",
                 "--collection", "notes", "--k", "1"]) == 0
    assert "ferritine" in capsys.readouterr().out
    # a database or a tenant the server lacks, HTTPS to an HTTP server: one line each, before any model
    _one_line(capsys, server + ["--database", "nope"], "Database [nope] not found")
    said = _one_line(capsys, server + ["--tenant", "nope"], "check --tenant/--database")
    assert "not found. The server" in said, said  # a sentence ends before the hint (it ran on: "not found The")
    _one_line(capsys, server + ["--ssl"], "--ssl")
    # server options with a local folder would be ignored
    _one_line(capsys, argv + ["--database", "cardiologie"], "--database: for a Chroma server")
    _one_line(capsys, argv + ["--ssl", "--tenant", "t"], "--ssl, --tenant: for a Chroma server")
    _usage_line(capsys, server + ["--database", " "], "--database is empty")


@pytest.mark.parametrize("flags, bars", [([], True), (["--no-progress"], False)])
def test_cli_no_progress_hides_every_bar_on_a_terminal(tiny_model_dir, tmp_path, capsys, monkeypatch, flags, bars):
    """``--no-progress`` hid medrag's bar but not transformers' "Loading weights" one."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv, _ = _index_argv(tmp_path, tiny_model_dir, 3)
    argv = [a for a in argv if a != "--no-progress"] + flags
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("Loading weights" in err) == bars, err[-500:]
    assert ("indexing" in err) == bars, err[-500:]


def test_cli_source_checks_before_the_model(tmp_path, capsys, monkeypatch) -> None:
    """An empty source was found only after the model loaded (and left an empty collection tied to that
    model); a folder silently ignored --text-field / --id-field / --metadata-fields."""
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    db = tmp_path / "db"
    for name, content in (("empty.jsonl", ""), ("empty.json", "[]"), ("header.csv", "text,id\n")):
        (tmp_path / name).write_text(content)
        _one_line(capsys, ["index", str(tmp_path / name), "--persist-dir", str(db)], "no document found")
    assert not db.exists()
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text(DOC)
    _one_line(capsys, ["index", str(folder), "--persist-dir", str(db), "--id-field", "id"], "is a folder")


def test_index_input_defects(tmp_path, caplog) -> None:
    """Repeated --id-field values replaced earlier documents in silence; a BOM broke JSONL (and stayed
    in .txt texts); a CSV cell over 131,072 characters was refused; a bad byte deep in a JSONL file
    had no line; an unreadable file was a traceback; linked folders were skipped in silence."""
    emb = FakeMatryoshkaEmbeddings()
    import chromadb

    store = MatryoshkaChroma("dups", emb, client=chromadb.PersistentClient(str(tmp_path / "db")), coarse_rotation="none")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"cat": "a", "text": "La TSH élevée."}\n{"cat": "b", "text": "La CRP monte."}\n'
                   '{"cat": "a", "text": "Une HbA1c à 7 %."}\n')
    with pytest.raises(DataError, match=r"document 3 has the cat 'a' of document 1.*must be unique"):
        index_corpus(dup, store, id_field="cat")
    assert sorted(store.get()["documents"]) == ["La CRP monte.", "La TSH élevée."]  # the earlier ones stored

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes("\ufeff".encode() + '{"text": "Une ferritine basse."}\n'.encode())
    assert [t for _, t, _ in iter_documents(bom)] == ["Une ferritine basse."]
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "b.txt").write_bytes("\ufeffLa TSH élevée.".encode())
    assert [t for _, t, _ in iter_documents(folder)] == ["La TSH élevée."]

    long = tmp_path / "long.csv"
    long.write_text("text\n" + "mot " * 40_000 + "\n")
    assert len(next(iter_documents(long))[1]) == 160_000

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "un"}\n' * 3000 + '{"text": "fi\xe8vre"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"bad.jsonl:3001: not UTF-8"):
        list(iter_documents(bad))

    def unreadable(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    other = tmp_path / "other"
    other.mkdir()
    (other / "c.txt").write_text("Une note.")
    (folder / "linked").symlink_to(other, target_is_directory=True)
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert [k for k, _, _ in iter_documents(folder)] == ["b.txt"]
    assert "1 linked folder(s) not followed" in caplog.text
    import pathlib

    with pytest.MonkeyPatch.context() as m:
        m.setattr(pathlib.Path, "read_bytes", unreadable)
        with pytest.raises(DataError, match=r"none of its 1 file\(s\) could be read: b.txt \(cannot read: Permission"):
            list(iter_documents(folder))
        m.setattr(pathlib.Path, "open", unreadable)
        with pytest.raises(DataError, match="long.csv: cannot read"):
            list(iter_documents(long))


def test_a_folder_that_cannot_be_listed_is_named_and_its_stored_files_kept_by_prune(tmp_path, monkeypatch,
                                                                                  caplog) -> None:
    """rglob skips a sub-folder it may not list in silence: --prune then deleted its files' stored chunks
    as gone (review)."""
    import chromadb

    folder = tmp_path / "partage"
    (folder / "prive").mkdir(parents=True)
    (folder / "a.txt").write_text("La ferritine basse signe une carence martiale.")
    (folder / "prive" / "b.txt").write_text("La TSH explore la thyroïde.")
    store = MatryoshkaChroma("partage", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    index_corpus(folder, store, show_progress=False)
    assert {md["doc"] for md in store.get()["metadatas"]} == {"a.txt", "prive/b.txt"}
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "prive":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(folder, store, show_progress=False, prune=True)
    assert report.pruned == 0 and {md["doc"] for md in store.get()["metadatas"]} == {"a.txt", "prive/b.txt"}
    assert "1 folder(s) that cannot be listed skipped (e.g. prive/ (Permission denied))" in caplog.text
    assert "no longer in it" not in caplog.text
    store.delete_collection()


def test_reindexing_restores_a_chunk_whose_text_was_changed_outside_medrag_index(tmp_path, caplog) -> None:
    """A chunk rewritten with update_document kept its id (a hash of the source's text), so every
    later run, --prune too, said "already stored" and the store never matched its source again
    (user tryout): a stored text that differs from the source's is written again, and said."""
    import logging

    from langchain_core.documents import Document

    store = MatryoshkaChroma("notes", CountingFake(), persist_directory=str(tmp_path / "db"), coarse_rotation="none")
    src = tmp_path / "notes.jsonl"
    src.write_text("".join(json.dumps({"id": f"X{i}", "text": f"Le vormaxil {i} mg expose à un risque hémorragique."})
                           + "\n" for i in range(3)))
    index_corpus(src, store, id_field="id", show_progress=False)
    target = store.get(where={"doc": "X1"})
    store.update_document(target["ids"][0], Document("Le plexazine soulage les nausées.",
                                                     metadata=target["metadatas"][0]))
    encoded = store.embeddings.encoded
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        report = index_corpus(src, store, id_field="id", show_progress=False)
    assert report.updated == 1 and report.added == 0 and store.embeddings.encoded == encoded + 1  # that one only
    assert store.get(where={"doc": "X1"})["documents"] == ["Le vormaxil 1 mg expose à un risque hémorragique."]
    assert "1 stored chunk(s) held another text than the source's" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        assert index_corpus(src, store, id_field="id", show_progress=False).updated == 0
    assert "another text" not in caplog.text


def test_reindexing_with_other_chunking_or_metadata_replaces_the_stored_chunks(tmp_path) -> None:
    """Without --id-field, other chunk settings stored every document a second time; with it, changed
    metadata never reached the store (skip_existing kept the old record)."""
    import chromadb

    client = chromadb.PersistentClient(str(tmp_path / "db"))
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=client, coarse_rotation="none")
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"{DOC} Document {i}."}) + "\n" for i in range(3)))
    first = index_corpus(src, store)
    again = index_corpus(src, store, chunk_words=20, overlap=0)
    assert again.removed == first.stored and len(store) == again.chunks  # one copy, the new chunking
    assert index_corpus(src, store, chunk_words=20, overlap=0).added == 0

    by_id = MatryoshkaChroma("ids", CountingFake(), client=client, coarse_rotation="none")
    src.write_text('{"id": "fer", "cat": "fer", "text": "Une ferritine basse."}\n')
    index_corpus(src, by_id, id_field="id")
    report = index_corpus(src, by_id, id_field="id", metadata_fields=["cat"])
    assert report.updated == 1 and report.added == 0 and by_id.get()["metadatas"][0]["cat"] == "fer"
    assert by_id.embeddings.encoded == 1  # the metadata-only change kept the stored vectors (it re-encoded)
    src.write_text('{"id": "fer", "cat": "hematologie", "text": "Une ferritine basse."}\n')
    assert index_corpus(src, by_id, id_field="id", metadata_fields=["cat"]).updated == 1
    assert by_id.similarity_search("ferritine", k=1, filter={"cat": "hematologie"})
    assert index_corpus(src, by_id, id_field="id", metadata_fields=["cat"]).updated == 0  # nothing changed
    # Chroma hands some floats back changed in the last digit: an unchanged input re-encoded them every run
    floats = tmp_path / "floats.jsonl"
    floats.write_text("".join(json.dumps({"id": f"d{i}", "p": 0.9097462559682401 + i / 7, "text": f"Note {i}."}) + "\n"
                              for i in range(20)))
    index_corpus(floats, by_id, id_field="id", metadata_fields=["p"])
    again = index_corpus(floats, by_id, id_field="id", metadata_fields=["p"])
    assert again.updated == 0 and again.skipped == 20


def test_prune_removes_documents_no_longer_in_the_source(tmp_path, caplog) -> None:
    """Files deleted or renamed in an indexed folder stayed in the store for good; without --prune a
    warning names them (user tryout: a withdrawn protocol kept coming first with no word of it)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in (("fer.txt", "Une ferritine basse."), ("tsh.txt", "La TSH élevée."), ("old.txt", "Aspirine.")):
        (folder / name).write_text(text)
    store = MatryoshkaChroma("prune", FakeMatryoshkaEmbeddings(), client=chromadb.PersistentClient(str(tmp_path / "db")),
                             coarse_rotation="none")
    index_corpus(folder, store)
    (folder / "old.txt").unlink()
    (folder / "tsh.txt").rename(folder / "thyroide.txt")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        kept = index_corpus(folder, store)  # without prune: kept, and named
    assert len(store) == 4 and kept.pruned == 0
    assert "2 file(s) stored for this folder are no longer in it (e.g. old.txt, tsh.txt)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(folder, store, prune=True)
        assert report.pruned == 2 and report.added == 0
        index_corpus(folder, store)
    assert "no longer in it" not in caplog.text
    assert sorted(md["source"] for md in store.get()["metadatas"]) == ["fer.txt", "thyroide.txt"]


def test_a_records_file_without_prune_names_the_stored_records_it_dropped(tmp_path, caplog) -> None:
    """A folder's run named its deleted files; a records file's run kept its dropped records
    searchable in silence (user tryout): they are counted and named, and --prune removes them."""
    src = tmp_path / "notes.jsonl"
    rows = [{"id": "fer", "text": "Une ferritine basse."}, {"id": "tsh", "text": "La TSH élevée."},
            {"id": "old", "text": "Aspirine retirée."}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    store = MatryoshkaChroma("records", FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"),
                             coarse_rotation="none")
    store.add_texts(["Ajouté depuis Python."], ids=["py"])  # not medrag index's: never named nor pruned
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        index_corpus(src, store, id_field="id", show_progress=False)
    assert "not in this file" not in caplog.text
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:2]))
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        index_corpus(src, store, id_field="id", show_progress=False)
    assert "1 document(s) stored in the collection are not in this file (dropped from it" in caplog.text
    assert "e.g. old)" in caplog.text and len(store) == 4
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert index_corpus(src, store, id_field="id", prune=True, show_progress=False).pruned == 1
        index_corpus(src, store, id_field="id", show_progress=False)
    assert "not in this file" not in caplog.text and "py" in store.get()["ids"] and len(store) == 3


def test_prune_removes_the_last_documents_of_a_folder(tmp_path, capsys) -> None:
    """A folder whose last file was deleted, or whose files left are all empty, was refused ("holds no
    .txt/.md/.pdf file", "all empty"): a withdrawn protocol stayed searchable (user tryout). Without
    --prune it still is an error, and another folder's chunks are kept."""
    folder, other = tmp_path / "gone", tmp_path / "other"
    folder.mkdir(), other.mkdir()
    (folder / "old.txt").write_text("Le dextropropoxyphène est retiré du marché.")
    (folder / "keep.txt").write_text("La TSH explore la thyroïde.")
    (other / "fer.txt").write_text("Une ferritine basse.")
    store = MatryoshkaChroma("gone", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(),
                             coarse_rotation="none")
    index_corpus(folder, store), index_corpus(other, store)
    (folder / "keep.txt").unlink()
    (folder / "old.txt").write_text("")
    with pytest.raises(DataError, match="all empty"):
        index_corpus(folder, store)
    report = index_corpus(folder, store, prune=True)  # the empty file keeps its chunks, the deleted one goes
    assert report.pruned == 1 and sorted(md["source"] for md in store.get()["metadatas"]) == ["fer.txt", "old.txt"]
    (folder / "old.txt").unlink()
    with pytest.raises(DataError, match="holds no .txt/.md/.pdf file"):
        index_corpus(folder, store)
    assert index_corpus(folder, store, prune=True).pruned == 1
    assert [md["source"] for md in store.get()["metadatas"]] == ["fer.txt"]
    store.delete_collection()


def test_the_cli_prunes_an_emptied_folder(tmp_path, tiny_model_dir, capsys) -> None:
    """``medrag index FOLDER --prune`` refused a folder with no file left before the model loaded."""
    folder, db = tmp_path / "gone", str(tmp_path / "db")
    folder.mkdir()
    (folder / "old.txt").write_text("Le dextropropoxyphène est retiré du marché.")
    argv = ["index", str(folder), "--persist-dir", db, "--model", str(tiny_model_dir), "--no-progress"]
    assert main(argv) == 0
    (folder / "old.txt").unlink()
    assert main(argv) == 1 and "holds no .txt/.md/.pdf file" in capsys.readouterr().err
    assert main([*argv, "--prune"]) == 0
    assert "1 chunk of documents no longer in the source pruned" in capsys.readouterr().out
    assert chromadb.PersistentClient(db).get_collection("medrag").count() == 0


def test_an_emptied_records_file_is_still_refused_with_prune(tmp_path) -> None:
    """A records file's --prune removes every record it did not read: an empty export must not empty the store."""
    store = MatryoshkaChroma("rec", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(), coarse_rotation="none")
    index_corpus(_jsonl(tmp_path / "a.jsonl", [{"text": "Une ferritine basse."}]), store)
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(DataError, match="no document found"):
        index_corpus(tmp_path / "a.jsonl", store, prune=True)
    assert len(store) == 1
    store.delete_collection()


def test_an_emptied_document_keeps_what_was_stored_for_it(tmp_path, caplog) -> None:
    """A null text (a broken export) deleted the document's stored chunks, without --prune, while the
    warning said it was "not indexed" (user tryout)."""
    rows = [{"id": f"doc{i}", "text": f"Note {i} : la ferritine du patient {i} est basse."} for i in range(6)]
    store = MatryoshkaChroma("emptied", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(),
                             coarse_rotation="none")
    index_corpus(_jsonl(tmp_path / "a.jsonl", rows), store, id_field="id")
    broken = [{**r, "text": None} if i % 2 else r for i, r in enumerate(rows)]
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(_jsonl(tmp_path / "b.jsonl", broken), store, id_field="id", prune=True)
    assert report.removed == report.pruned == 0 and len(store) == 6
    assert store.get(where={"doc": "doc1"})["documents"] == [rows[1]["text"]]
    assert "3 of 6 document(s) are empty" in caplog.text and "earlier is kept" in caplog.text


def test_the_counts_are_this_runs_writes_whatever_other_clients_do(tmp_path) -> None:
    """"added" was the change in len(store): another client deleting meanwhile gave "92 added, -32
    already stored" on a server (user tryout)."""
    store = MatryoshkaChroma("counts", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(),
                             coarse_rotation="none")
    store.add_texts([f"Autre texte {i} sur la TSH." for i in range(10)], ids=[f"other{i}" for i in range(10)])
    real_add = store.add_texts

    def add_while_another_client_deletes(*args, **kwargs):
        ids = real_add(*args, **kwargs)
        store.collection.delete(ids=[f"other{i}" for i in range(10)])  # another client, meanwhile
        return ids

    store.add_texts = add_while_another_client_deletes
    rows = [{"text": f"Note {i} : la ferritine du patient {i} est basse."} for i in range(5)]
    report = index_corpus(_jsonl(tmp_path / "a.jsonl", rows), store, batch_size=2)
    assert (report.added, report.skipped, report.stored) == (5, 0, 5)
    again = index_corpus(_jsonl(tmp_path / "a.jsonl", rows), store, batch_size=2)
    assert (again.added, again.skipped) == (0, 5)


def test_nan_metadata_is_left_out_and_the_chunk_keys_are_not_user_fields(tmp_path, caplog) -> None:
    """A NaN score (pandas' missing float) aborted the run with a batch-relative index, and
    --metadata-fields doc,chunk were silently overwritten by each chunk's bookkeeping (found in review)."""
    path = _jsonl(tmp_path / "s.jsonl", [{"text": "La TSH est basse.", "score": 0.5},
                                         {"text": "La CRP est haute.", "score": float("nan")},
                                         {"text": "La ferritine est basse.", "score": float("inf")}])
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(path, store, metadata_fields=["score"])
    assert report.added == 3
    assert sorted(m.get("score", -1) for m in store.collection.get()["metadatas"]) == [-1, -1, 0.5]
    assert "'score' is absent, null, NaN/inf" in caplog.text and "2 of 3 records" in caplog.text
    with pytest.raises(InvalidInputError, match=r"\['chunk', 'doc'\].*rename them"):
        index_corpus(path, store, metadata_fields=["doc", "chunk", "score"])
    # a records file's "folder" made its chunks read as a folder's: an edit kept the old text beside the
    # new one, --prune removed nothing, and a folder named alike pruned them all (user tryout)
    with pytest.raises(InvalidInputError, match=r"\['folder'\].*a folder file's folder; rename them"):
        index_corpus(path, store, metadata_fields=["folder"])
    assert len(store) == 3
    store.delete_collection()


def test_cli_empty_flags_and_source_are_one_line_errors(tmp_path, capsys, monkeypatch) -> None:
    """--persist-dir "" and --host "" (an unset shell variable) gave a traceback, search --persist-dir ""
    made a store in the current folder, and index "" indexed the current folder recursively."""
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "note.txt").write_text("Une note.")
    _usage_line(capsys, ["index", "ok.jsonl", "--persist-dir", ""], "--persist-dir is empty")
    _usage_line(capsys, ["index", "ok.jsonl", "--host", " "], "--host is empty")
    _usage_line(capsys, ["search", "fer", "--persist-dir", ""], "--persist-dir is empty")
    _one_line(capsys, ["index", "", "--persist-dir", "db"], "SOURCE is empty")
    _one_line(capsys, ["index", "ok.jsonl", "--host", "localhost", "--port", "70000"], "--port must be a TCP port")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt", "ok.jsonl"]  # nothing created


def test_an_all_empty_source_is_an_error_and_empty_documents_are_counted(tmp_path, caplog) -> None:
    """A source of empty documents "succeeded" with 0 chunks and an empty collection; empty files were
    counted as documents without a word."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("")
    (folder / "b.md").write_text("  \n")
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(DataError, match="2 document\\(s\\) are all empty"):
        index_corpus(folder, store)
    (folder / "c.txt").write_text("La ferritine basse traduit une carence en fer.")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(folder, store)
    assert report.documents == 3 and report.added == 1
    assert "2 of 3 document(s) are empty" in caplog.text
    # emptied since: refused, and the stored chunk of c.txt is kept (the last flush deleted it first)
    (folder / "c.txt").write_text(" ")
    with pytest.raises(DataError, match="nothing stored was changed"):
        index_corpus(folder, store)
    assert len(store) == 1
    store.delete_collection()


def test_python_api_argument_types(tmp_path) -> None:
    """metadata_fields="year" read the fields y, e, a, r; chunk_words="120" raised a bare TypeError."""
    (tmp_path / "a.jsonl").write_text('{"text": "x", "year": 2020}\n')
    store = MatryoshkaChroma("types", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(InvalidInputError, match=r"\['year'\]"):
        index_corpus(tmp_path / "a.jsonl", store, metadata_fields="year")
    import numpy as np

    assert chunk_text("Un deux trois.", np.int64(2)) == ["Un deux trois."]  # numpy ints, as elsewhere
    for bad in ({"chunk_words": "120"}, {"overlap": None}, {"chunk_words": 2.5}, {"max_words": True}):
        with pytest.raises(InvalidInputError, match="must be an int"):
            index_corpus(tmp_path / "a.jsonl", store, **bad)
    assert len(store) == 0
    store.delete_collection()


# ---------------------------------------------------------------- audit of December 5: bad records


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_null_texts_big_ints_dates_and_lists_are_read_as_users_expect(tmp_path, caplog) -> None:
    """A null text stopped the run (an empty one was skipped); an int beyond 64 bits stopped it at the
    write; NAME:str left a Parquet date or list column out of every record (audit)."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = _write_jsonl(tmp_path / "a.jsonl", ['{"text": "ok."}', '{"text": null}', '{"text": "x.", "m": 12345678901234567890123}'])
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        docs = list(iter_documents(src, metadata_fields=["m"]))
    assert [text for _, text, _ in docs] == ["ok.", "", "x."] and all("m" not in md for _, _, md in docs)
    assert "an int beyond 64 bits" in caplog.text
    pq.write_table(pa.table({"text": ["La TSH.", None], "when": [datetime.date(2024, 3, 1)] * 2,
                             "tags": [["thyroide", "tsh"], []]}), tmp_path / "t.parquet")
    docs = list(iter_documents(tmp_path / "t.parquet", metadata_fields=["when:str", "tags:str"]))
    assert docs[0][1:] == ("La TSH.", {"when": "2024-03-01", "tags": '["thyroide", "tsh"]'})
    assert docs[1][1] == ""
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(src, store, metadata_fields=["m"])
    assert report.added == 2 and "1 of 3 document(s) are empty (no text) and were not indexed; what was stored for them earlier is kept (e.g. document 2)" \
        in caplog.text
    store.delete_collection()


def test_a_folder_with_a_hidden_file_and_a_latin1_file_is_indexed(tmp_path) -> None:
    """A hidden file (or a name that is not UTF-8) beside a Latin-1 file: `medrag index` ended in
    AttributeError: 'set' object has no attribute 'append' (user tryout): the list of skipped documents,
    which --prune keeps, was replaced by the set of hidden files."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "fer.txt").write_text("La ferritine basse traduit une carence en fer.", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("Traitement par lévothyroxine.".encode("latin-1"))
    (folder / ".brouillon.txt").write_text("x", encoding="utf-8")
    with open(os.fsencode(folder) + b"/r\xe9sum\xe9.txt", "wb") as f:  # a Latin-1 file name
        f.write("Résumé.".encode())
    skipped: list[str] = []
    assert [key for key, _, _ in iter_documents(folder, skipped=skipped)] == ["fer.txt"]
    assert skipped == ["latin1.txt"]
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    assert index_corpus(folder, store).added == 1
    store.delete_collection()


def test_adding_an_id_field_later_with_prune_replaces_the_content_keyed_chunks(tmp_path) -> None:
    """A collection indexed without --id-field, then with it: every record got a new key and was stored
    twice, silently (user tryout); docs/store.md says --prune on that run deletes the old keys' chunks."""
    _jsonl(tmp_path / "a.jsonl", [{"id": "r1", "text": "La ferritine basse traduit une carence."},
                                  {"id": "r2", "text": "La TSH élevée oriente vers une hypothyroïdie."}])
    store = MatryoshkaChroma("ids", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    index_corpus(tmp_path / "a.jsonl", store)
    assert index_corpus(tmp_path / "a.jsonl", store, id_field="id").stored == 4  # stored twice
    report = index_corpus(tmp_path / "a.jsonl", store, id_field="id", prune=True)
    assert (report.pruned, report.stored, sorted(md["id"] for md in store.get()["metadatas"])) == (2, 2, ["r1", "r2"])
    store.delete_collection()


def test_a_folder_file_that_is_not_utf8_is_skipped_and_zero_width_text_is_empty(tmp_path, caplog) -> None:
    """One Latin-1 file stopped the whole folder (the README said: skipped with a warning); a text of
    zero-width characters alone was indexed as a chunk (audit)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_bytes("fièvre".encode("latin-1"))
    (folder / "b.txt").write_text("La TSH élevée.", encoding="utf-8")
    (folder / "c.txt").write_text("\u200b \u00a0 \ufeff", encoding="utf-8")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        docs = list(iter_documents(folder))
    assert [key for key, _, _ in docs] == ["b.txt", "c.txt"] and "1 file(s) not UTF-8 text skipped (e.g. a.txt" \
        in caplog.text
    assert chunk_text("\u200b \u00a0 \u3000") == [] and chunk_text("a \u200b b.") == ["a b."]
    assert chunk_text("\x00 \u200b\x01") == []  # control characters alone are no word either
    # a file skipped so is still in the source: --prune keeps its stored chunks (review)
    (folder / "a.txt").write_text("La fièvre.", encoding="utf-8")
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    index_corpus(folder, store)
    (folder / "a.txt").write_bytes("La fièvre.".encode("latin-1"))
    assert index_corpus(folder, store, prune=True).pruned == 0
    assert "a.txt" in {md["source"] for md in store.get()["metadatas"]}
    store.delete_collection()
    # a folder whose files are all skipped names them ("no document found" named neither them nor why)
    only = tmp_path / "latin"
    only.mkdir()
    (only / "x.txt").write_bytes("fièvre".encode("latin-1"))
    with pytest.raises(DataError, match=r"none of its 1 file\(s\) is UTF-8 text \(e\.g\. x\.txt"):
        list(iter_documents(only))


def test_reserved_metadata_field_names_are_refused_before_the_model(tmp_path, capsys, monkeypatch) -> None:
    """``$type`` or ``chroma:document`` failed at the first write, after the model had loaded (audit)."""
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "r.csv").write_text("text,$type,chroma:document\nbonjour,1,2\n", encoding="utf-8")
    for field in ("$type", "chroma:document"):
        assert main(["index", str(tmp_path / "r.csv"), "--persist-dir", str(tmp_path / "db"), "--metadata-fields",
                     field]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"metadata field {field!r}: Chroma refuses" in err[0], err
    assert not (tmp_path / "db").exists()


def test_prune_leaves_records_that_index_did_not_write(tmp_path) -> None:
    """--prune on a records file deleted texts added with add_texts (no document key) (audit)."""
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    store.add_texts(["La ferritine basse traduit une carence en fer.", "La TSH élevée."], ids=["fer", "tsh"])
    src = _write_jsonl(tmp_path / "a.jsonl", ['{"id": "1", "text": "La CRP monte."}', '{"id": "2", "text": "Le fer."}'])
    index_corpus(src, store, id_field="id")
    _write_jsonl(src, ['{"id": "1", "text": "La CRP monte."}'])
    report = index_corpus(src, store, id_field="id", prune=True)
    assert report.pruned == 1 and sorted(store.get(include=[])["ids"])[-2:] == ["fer", "tsh"] and len(store) == 3
    store.delete_collection()


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


def test_the_first_write_shows_its_own_bar_when_indexing_shows_one(tmp_path, monkeypatch) -> None:
    """``medrag index``'s bar moves after each write, and the first write (4,096 chunks when the store
    fits its coarse stage) took minutes on a CPU with the bar at 0: that write now shows the store's
    bar, which moves as the chunks are encoded; later writes and runs without a bar show none."""
    shown = []
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"),
                             coarse_dim=8, coarse_rotation="pca")
    real_add = store.add_texts
    monkeypatch.setattr(store, "add_texts", lambda *a, show_progress=None, **k: shown.append(show_progress)
                        or real_add(*a, show_progress=False, **k))
    rows = [{"text": f"Note {i} : ferritine {i} µg/L, CRP {i % 13} mg/L."} for i in range(300)]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    index_corpus(docs, store, batch_size=50, show_progress=True)
    assert shown == [True]  # one write of all 300 (the fit), with its bar
    docs.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows + [{"text": f"Autre note {i}."}
                                                                                   for i in range(120)]))
    shown.clear()
    index_corpus(docs, store, batch_size=50, show_progress=True)
    assert shown == [False, False, False]  # batches of 50 after the fit: the indexing bar is enough
    shown.clear()
    docs.write_text("\n".join(json.dumps({"text": f"Encore {i}."}) for i in range(300)))
    store2 = MatryoshkaChroma("other", FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"),
                              coarse_dim=8, coarse_rotation="pca")
    monkeypatch.setattr(store2, "add_texts", lambda *a, show_progress=None, **k: shown.append(show_progress))
    index_corpus(docs, store2, batch_size=50, show_progress=False)
    assert shown == [False]
    store.close()
    store2.close()


def test_an_unknown_field_type_is_named_as_such(tmp_path, capsys) -> None:
    """``--metadata-fields year:datetime`` said "no record has the metadata field 'year:datetime' (did you mean
    'year'?)"."""
    docs = tmp_path / "a.jsonl"
    docs.write_text('{"text": "La CRP.", "year": "2021-01-02"}\n')
    _one_line(capsys, ["index", str(docs), "--persist-dir", str(tmp_path / "db"), "--metadata-fields", "year:datetime"],
              "'datetime' is not a type medrag converts to; write year:TYPE with TYPE one of int, float, bool, str, date")
    assert not (tmp_path / "db").exists()


def test_a_server_lost_while_earlier_chunks_are_looked_up_is_a_store_error(tmp_path, monkeypatch) -> None:
    """The lookup of a re-indexed document's earlier chunks called Chroma directly: a lost server was a raw
    httpx.ConnectError traceback from medrag index (server audit)."""
    from chromadb.api.models.Collection import Collection

    from medrag.errors import StoreConnectionError

    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    rows = _records(4)
    index_corpus(_jsonl(tmp_path / "v1.jsonl", rows), store, id_field="id", chunk_words=15, batch_size=4)
    real_get = Collection.get

    def lost(self, *args, **kwargs):
        if "where" in kwargs and "doc" in (kwargs["where"] or {}):
            raise ConnectionError("[Errno 111] Connection refused")
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "get", lost)
    rows[1] = {**rows[1], "text": "Doliprane : 500 mg toutes les 4 heures, sans dépasser 3 g par jour."}
    with pytest.raises(StoreConnectionError, match="lost the Chroma server while trying to find the earlier chunks"):
        index_corpus(_jsonl(tmp_path / "v2.jsonl", rows), store, id_field="id", chunk_words=15, batch_size=4)
    monkeypatch.undo()
    store.delete_collection()


LEAFLET_ROWS = [
    {"id": "L1", "product": "SINTROM 4 mg, comprimé quadrisécable",
     "text": "Prenez le comprimé le soir. Si vous oubliez de prendre une dose, ne la doublez pas. "
             "Prévenez votre médecin avant toute intervention chirurgicale ou dentaire."},
    {"id": "L2", "product": "BISOPROLOL 5 mg, comprimé",
     "text": "Si vous oubliez de prendre une dose, prenez-la dès que possible. N'arrêtez jamais le traitement "
             "brutalement sans l'avis de votre médecin."},
    {"id": "L3", "text": "Une notice sans nom de produit. Elle est découpée telle quelle."},
]


def test_a_title_field_names_the_document_in_every_chunk(tmp_path) -> None:
    """Most chunks of a leaflet never name its product: a query by the product or its substance found the
    "oubli de dose" section of another drug first (quality audit: 37 of 75 top-5 hits by substance, dense)."""
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    report = index_corpus(_jsonl(tmp_path / "l.jsonl", LEAFLET_ROWS), store, id_field="id", title_field="product",
                          chunk_words=12, overlap=0)
    got = store.collection.get(include=["documents", "metadatas"])
    by_doc: dict[str, list[str]] = {}
    for text, md in zip(got["documents"], got["metadatas"]):
        by_doc.setdefault(md["doc"], []).append(text)
        assert ("product" in md) is (md["doc"] != "L3")  # kept as metadata where the record has it
    assert len(by_doc["L1"]) > 1 and all(t.startswith("SINTROM 4 mg, comprimé quadrisécable : ") for t in by_doc["L1"])
    assert all(t.startswith("BISOPROLOL 5 mg, comprimé : ") for t in by_doc["L2"])
    assert by_doc["L3"] == ["Une notice sans nom de produit. Elle est découpée telle quelle."]
    hit = store.hybrid_search("SINTROM oubli de dose", k=1, lexical_weight=1.0)[0]
    assert hit.metadata["doc"] == "L1" and "oubliez" in hit.page_content
    # indexing again without the title replaces the titled chunks (the same documents, other texts)
    again = index_corpus(_jsonl(tmp_path / "l.jsonl", LEAFLET_ROWS), store, id_field="id", chunk_words=12, overlap=0)
    assert again.removed == report.added - 1 and not any(
        t.startswith("SINTROM") for t in store.collection.get(include=["documents"])["documents"])
    with pytest.raises(InvalidInputError, match="title_field reads a field of a records file"):
        index_corpus(tmp_path, store, title_field="product")
    with pytest.raises(InvalidInputError, match="title_field must be a record field name"):
        index_corpus(tmp_path / "l.jsonl", store, title_field=" ")
    with pytest.raises(DataError, match="no record has the metadata field 'prodcut' \\(did you mean 'product'\\?\\)"):
        index_corpus(tmp_path / "l.jsonl", store, title_field="prodcut")
    store.delete_collection()


def test_cli_title_field_errors_come_before_the_model(tmp_path, capsys, monkeypatch) -> None:
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model",
                        lambda *a, **k: pytest.fail("the model was loaded before the arguments were checked"))
    _jsonl(tmp_path / "l.jsonl", LEAFLET_ROWS)
    db = str(tmp_path / "db")
    _one_line(capsys, ["index", str(tmp_path / "l.jsonl"), "--persist-dir", db, "--title-field", "prodcut"],
              "no record has the metadata field 'prodcut' (did you mean 'product'?)")
    _usage_line(capsys, ["index", str(tmp_path / "l.jsonl"), "--persist-dir", db, "--title-field", ""],
                "--title-field is empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("Une note.")
    _one_line(capsys, ["index", str(tmp_path / "notes"), "--persist-dir", db, "--title-field", "product"],
              "--title-field read(s) the fields of a records file")
    assert not Path(db).exists()


def test_a_title_field_with_a_type_is_refused_and_a_number_title_is_its_text(tmp_path) -> None:
    """'code:int' named no record field, so no chunk got a title, in silence; a JSON number title was
    left out (review)."""
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    rows = [{"id": "a", "code": 4012, "text": "Prenez le comprimé le soir."}]
    path = _jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(InvalidInputError, match="title_field 'code:int': a title is text; name the field alone"):
        index_corpus(path, store, id_field="id", title_field="code:int")
    index_corpus(path, store, id_field="id", title_field="code")
    assert store.collection.get(include=["documents"])["documents"] == ["4012 : Prenez le comprimé le soir."]
    store.delete_collection()


def test_index_corpus_cuts_chunks_to_the_models_window(tiny_model_dir, tmp_path) -> None:
    """The default ``max_tokens="model"``: no stored chunk is truncated by the model (the tiny model's
    window is 64 tokens), the title counted; ``None`` keeps word counts alone (and the model warns)."""
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))
    rows = [{"id": "a", "product": "FERRITINE", "text": DOC * 4}]
    store = MatryoshkaChroma("win", emb, client=chromadb.EphemeralClient())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the truncation warning would fail the test
        index_corpus(_jsonl(tmp_path / "a.jsonl", rows), store, id_field="id", title_field="product", chunk_words=60)
    texts = store.collection.get(include=["documents"])["documents"]
    counts = emb.count_tokens(texts)
    assert len(texts) > 1 and max(counts) <= 64 and all(t.startswith("FERRITINE : ") for t in texts)
    assert max(counts) > 40  # filled near the window, not cut to pieces
    store.delete_collection()
    store = MatryoshkaChroma("win", emb, client=chromadb.EphemeralClient())
    with pytest.warns(UserWarning, match="exceed the model's max_seq_length of 64 tokens"):
        index_corpus(tmp_path / "a.jsonl", store, id_field="id", chunk_words=60, max_tokens=None)
    assert max(emb.count_tokens(store.collection.get(include=["documents"])["documents"])) > 64
    # a smaller window of one's own; one over the model's is refused
    index_corpus(tmp_path / "a.jsonl", store, id_field="id", chunk_words=60, max_tokens=32)
    assert max(emb.count_tokens(store.collection.get(include=["documents"])["documents"])) <= 32
    with pytest.raises(InvalidInputError, match="over the model's window of 64 tokens"):
        index_corpus(tmp_path / "a.jsonl", store, max_tokens=100)
    store.delete_collection()


def test_cli_max_tokens(tiny_model_dir, tmp_path, capsys, caplog) -> None:
    for bad, message in (("beaucoup", "expected 'model', 'none' or a number of tokens"), ("0", "must be >= 1")):
        with pytest.raises(SystemExit) as exit_:
            main(["index", str(tmp_path), "--max-tokens", bad])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    _jsonl(tmp_path / "a.jsonl", [{"text": DOC * 4}])
    db = str(tmp_path / "db")
    _one_line(capsys, ["index", str(tmp_path / "a.jsonl"), "--persist-dir", db, "--model", str(tiny_model_dir),
                       "--max-tokens", "100", "--no-progress"], "--max-tokens 100 is over the model's window of 64 tokens")
    assert not Path(db).exists()  # refused before the store made its folder (user tryout: named max_tokens=)
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert main(["index", str(tmp_path / "a.jsonl"), "--persist-dir", db, "--model", str(tiny_model_dir),
                     "--max-tokens", "40", "--no-progress"]) == 0
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))
    texts = chromadb.PersistentClient(db).get_collection("medrag").get(include=["documents"])["documents"]
    assert max(emb.count_tokens(texts)) <= 40
    assert "a token window of" not in caplog.text
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert main(["index", str(tmp_path / "a.jsonl"), "--persist-dir", db, "--model", str(tiny_model_dir),
                     "--max-tokens", "8", "--no-progress"]) == 0
    assert caplog.text.count("a token window of 8") == 1  # once, not from the check and the run (review)


def test_a_title_taking_half_the_window_is_not_counted_and_is_named(tiny_model_dir, tmp_path, caplog) -> None:
    """A title filling the window made every run of words overflow: one chunk a word (review)."""
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))
    rows = [{"id": "a", "product": "ferritine " * 40, "text": DOC}, {"id": "b", "product": "fer " * 40, "text": DOC}]
    store = MatryoshkaChroma("title", emb, client=chromadb.EphemeralClient())
    with caplog.at_level("WARNING", logger="medrag.indexing"), pytest.warns(UserWarning, match="were truncated"):
        report = index_corpus(_jsonl(tmp_path / "t.jsonl", rows), store, id_field="id", title_field="product",
                              chunk_words=60)
    untitled = chunk_text(DOC, 60, max_tokens=64, count_tokens=lambda c: emb.count_tokens([c])[0])
    assert report.chunks == 2 * len(untitled)  # chunked as without a title, not one chunk a word
    assert "the product of document 1 (id 'a') takes half of the model's 64-token window or more" in caplog.text
    assert "2 document(s) had a product taking half of the model's window or more" in caplog.text
    store.delete_collection()


def test_a_chunk_keeps_one_title_only_when_it_starts_with_the_title_as_a_word(tmp_path) -> None:
    """A chunk starting "Anémies..." was taken to start with the title "Anémie" and got none (review)."""
    store = MatryoshkaChroma("idx", CountingFake(), client=chromadb.EphemeralClient())
    rows = [{"id": "a", "product": "Anémie", "text": "Anémies carentielles : le bilan."},
            {"id": "b", "product": "Anémie", "text": "Anémie ferriprive : le bilan."}]
    index_corpus(_jsonl(tmp_path / "t.jsonl", rows), store, id_field="id", title_field="product")
    got = dict(zip(*[store.collection.get(include=["metadatas", "documents"])[k] for k in ("ids", "documents")]))
    assert sorted(got.values()) == ["Anémie : Anémies carentielles : le bilan.", "Anémie ferriprive : le bilan."]
    store.delete_collection()


def test_record_fields_no_chunk_keeps_are_named_before_the_model(tmp_path, capsys, caplog, monkeypatch) -> None:
    """A JSONL's year/topic fields were dropped in silence without --metadata-fields: a later
    --filter on them found nothing, exit 0 (user tryout)."""
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    src = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "Une note sur les AVK.", "year": 2021, "topic": "AVK",
                                         "source": "cours", "tags": ["avk", "inr"], "doc": "x", "chunk": 1,
                                         "": 0, "a,b": 1, "dose:mg": 5}])
    with caplog.at_level("WARNING", logger="medrag"), pytest.raises(AssertionError, match="the model was loaded"):
        main(["index", str(src), "--persist-dir", str(tmp_path / "db"), "--id-field", "id",
              "--metadata-fields", "year:int"])
    said = caplog.text + capsys.readouterr().err
    # advice that works: not medrag's own chunk keys, nor names the flag cannot hold; a list as JSON text (review)
    assert "field(s) source, tags, topic are not kept with the chunks" in said, said
    assert "--metadata-fields source,tags:str,topic" in said and "year" not in said.split("not kept")[0], said


def test_hard_wrapped_text_files_are_reflowed_before_chunking(tmp_path) -> None:
    """A .txt export wrapped at 70 characters: every line break ended a sentence, so chunks began
    mid-sentence, and "mar-"/"tiale" was indexed as "mar" and "tiale" (user tryout). Markdown items,
    headings and table rows keep their lines."""
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "cr.txt").write_text("Le patient présente une carence mar-\ntiale et une anémie ; le traitement\n"
                                   "martial est débuté.\n\nSortie le 3 mars.\n", encoding="utf-8")
    (folder / "protocole.md").write_text("## Conduite à tenir\n1. Vérifier la kaliémie sur un\nprélèvement non "
                                         "hémolysé.\n2. Réaliser un ECG.\n| DFG | dose |\n|---|---|\n## Antécédents\n"
                                         "diabète de type 2\n```\nclairance = (140 - age)\ndfg = ckd_epi(creat)\n```\n"
                                         "puis contrôle\n", encoding="utf-8")
    docs = {key: text for key, text, _ in iter_documents(folder)}
    assert docs["cr.txt"] == ("Le patient présente une carence martiale et une anémie ; le traitement martial est "
                              "débuté.\n\nSortie le 3 mars.")
    assert docs["protocole.md"].splitlines() == ["## Conduite à tenir", "1. Vérifier la kaliémie sur un prélèvement "
                                                 "non hémolysé.", "2. Réaliser un ECG.", "| DFG | dose |", "|---|---|",
                                                 "## Antécédents", "diabète de type 2", "", "```",
                                                 "clairance = (140 - age)", "dfg = ckd_epi(creat)", "```", "",
                                                 "puis contrôle"]  # review: headings, fences (a blank line around)
    chunks = chunk_text(docs["cr.txt"], chunk_words=8, overlap=0)
    assert chunks[0].endswith("une anémie ;") and chunks[1].startswith("le traitement martial")


def test_a_renamed_folder_indexed_again_names_its_old_copy(tmp_path, caplog) -> None:
    """After a rename, a run re-encoded every file beside the old copy, and every hit came twice, with
    no word of it (user tryout). A folder sharing a file name with another is not taken for a move."""
    store = MatryoshkaChroma("moved", FakeMatryoshkaEmbeddings(), client=chromadb.PersistentClient(str(tmp_path / "db")),
                             coarse_rotation="none")
    folder = tmp_path / "protocoles"
    folder.mkdir()
    for name, text in (("fer.txt", "Une ferritine basse."), ("tsh.txt", "La TSH élevée."), ("avk.md", "INR cible.")):
        (folder / name).write_text(text)
    index_corpus(folder, store)
    old = folder.resolve().as_posix()
    folder = folder.rename(tmp_path / "protocoles_2024")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert index_corpus(folder, store).added == 3
    assert f"3 of its 3 file(s) are also stored under the folder {old}" in caplog.text
    assert f"store.delete(where={{'folder': '{old}'}})" in caplog.text
    caplog.clear()
    other = tmp_path / "cardio"
    other.mkdir()
    for name, text in (("fer.txt", "Fer injectable."), ("ecg.txt", "ECG normal."), ("bnp.txt", "BNP élevé.")):
        (other / name).write_text(text)
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        index_corpus(folder, store)  # nothing added
        index_corpus(other, store)  # one name of three shared
    assert "also stored under" not in caplog.text
    store.delete(where={"folder": old})
    assert len(store) == 6


PROTOCOL_MD = ("# Doliprane 1000 mg\n"
               "Paracétamol, antalgique et antipyrétique.\n"
               "## Posologie\n"
               "Prendre un comprimé toutes les six heures. Ne pas dépasser quatre comprimés par jour. "
               "Espacer les prises d'au moins quatre heures. Boire un verre d'eau.\n"
               "### Insuffisance rénale\n"
               "Espacer les prises de huit heures.\n"
               "## Surdosage\n"
               "Risque d'atteinte hépatique : appeler le centre antipoison.\n")


def test_markdown_files_are_chunked_by_section_with_their_heading_trail(tmp_path) -> None:
    """A chunk deep in a Markdown section named neither the drug nor the section ("Ne pas dépasser quatre
    comprimés par jour."): a query "posologie du Doliprane" could not find it by them. Each section's
    chunks now start with their heading trail, kept in the ``section`` metadata too; a .txt file and a
    .md file without headings are chunked as before."""
    folder = tmp_path / "protocoles"
    folder.mkdir()
    (folder / "doliprane.md").write_text(PROTOCOL_MD, encoding="utf-8")
    (folder / "plain.md").write_text("Un texte sans titre. Il reste tel quel.", encoding="utf-8")
    (folder / "notes.txt").write_text("# Pas du Markdown\nUn texte.", encoding="utf-8")
    store = MatryoshkaChroma("mdsec", CountingFake(), client=chromadb.EphemeralClient())
    report = index_corpus(folder, store, chunk_words=6, overlap=0)
    got = store.collection.get(include=["documents", "metadatas"])
    rows = sorted((md["doc"], md["chunk"], md.get("section"), text) for text, md in zip(got["documents"], got["metadatas"]))
    assert rows == [
        ("doliprane.md", 0, "Doliprane 1000 mg", "Doliprane 1000 mg : Paracétamol, antalgique et antipyrétique."),
        ("doliprane.md", 1, "Doliprane 1000 mg > Posologie",
         "Doliprane 1000 mg > Posologie : Prendre un comprimé toutes les six heures."),
        ("doliprane.md", 2, "Doliprane 1000 mg > Posologie",
         "Doliprane 1000 mg > Posologie : Ne pas dépasser quatre comprimés par jour."),
        ("doliprane.md", 3, "Doliprane 1000 mg > Posologie",
         "Doliprane 1000 mg > Posologie : Espacer les prises d'au moins quatre heures."),
        ("doliprane.md", 4, "Doliprane 1000 mg > Posologie", "Doliprane 1000 mg > Posologie : Boire un verre d'eau."),
        ("doliprane.md", 5, "Doliprane 1000 mg > Posologie > Insuffisance rénale",
         "Doliprane 1000 mg > Posologie > Insuffisance rénale : Espacer les prises de huit heures."),
        ("doliprane.md", 6, "Doliprane 1000 mg > Surdosage",
         "Doliprane 1000 mg > Surdosage : Risque d'atteinte hépatique : appeler le centre antipoison."),
        ("notes.txt", 0, None, "# Pas du Markdown Un texte."),
        ("plain.md", 0, None, "Un texte sans titre. Il reste tel quel."),
    ]
    assert report.chunks == 9
    hit = store.hybrid_search("Doliprane posologie maximale par jour", k=1, lexical_weight=1.0)[0]
    assert hit.page_content.endswith("Ne pas dépasser quatre comprimés par jour.")
    assert store.similarity_search("x", k=9, filter={"section": "Doliprane 1000 mg > Surdosage"})[0].metadata["chunk"] == 6
    # indexing again as plain text replaces the sectioned chunks, and back (the same file, other chunks)
    plain = index_corpus(folder, store, chunk_words=6, overlap=0, markdown_headings=False)
    texts = store.collection.get(where={"doc": "doliprane.md"}, include=["documents", "metadatas"])
    assert plain.removed == 7 and all("section" not in md for md in texts["metadatas"])
    assert sorted(texts["documents"])[0].startswith("# Doliprane 1000 mg Paracétamol")
    assert index_corpus(folder, store, chunk_words=6, overlap=0).removed == plain.added
    assert index_corpus(folder, store, chunk_words=6, overlap=0).added == 0  # resumable: nothing encoded again
    with pytest.raises(InvalidInputError, match="markdown_headings"):
        index_corpus(folder, store, markdown_headings="no")
    store.delete_collection()


def test_a_markdown_file_of_headings_alone_is_indexed_as_its_text(tmp_path) -> None:
    """A table of contents (headings, no body) has no section text: indexed as its text, not as an empty file."""
    folder = tmp_path / "toc"
    folder.mkdir()
    (folder / "sommaire.md").write_text("# Protocoles\n## Kaliémie\n## Natrémie\n", encoding="utf-8")
    store = MatryoshkaChroma("toc", CountingFake(), client=chromadb.EphemeralClient())
    assert index_corpus(folder, store).chunks == 1
    assert store.collection.get(include=["documents"])["documents"] == ["# Protocoles ## Kaliémie ## Natrémie"]
    store.delete_collection()


def test_cli_no_markdown_headings_chunks_markdown_as_plain_text(tmp_path, capsys, tiny_model_dir) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "fer.md").write_text("# Fer\nUne ferritine basse.\n## Dose\nUn comprimé.", encoding="utf-8")
    db = tmp_path / "db"
    for flag, expected in (("--no-markdown-headings", ["# Fer Une ferritine basse. ## Dose Un comprimé."]),
                           ("--markdown-headings", ["Fer : Une ferritine basse.", "Fer > Dose : Un comprimé."])):
        assert main(["index", str(folder), "--persist-dir", str(db), "--model", str(tiny_model_dir),
                     "--coarse-rotation", "none", "--no-progress", flag]) == 0
        client = chromadb.PersistentClient(str(db))
        assert sorted(client.get_collection("medrag").get(include=["documents"])["documents"]) == expected
        del client


def test_markdown_front_matter_setext_and_a_long_trail_are_read_as_written(tmp_path, tiny_model_dir) -> None:
    """Review: the whole .md file was reflowed before its sections were cut, so a front matter's lines
    became one heading-like line and a Setext underline was joined to the text; a trail of long headings
    filled the window (it now loses its outer headings until it fits half of it)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "fm.md").write_text("---\ntitle: Doliprane\ndate: 2024-01-01\n---\nAntalgique de palier 1.\n\n"
                                  "Posologie\n=========\nun comprimé le matin,\nun le soir.\n", encoding="utf-8")
    store = MatryoshkaChroma("mdfm", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(folder, store)
    got = store.collection.get(include=["documents", "metadatas"])
    assert sorted(zip(got["documents"], [md.get("section") for md in got["metadatas"]]), key=str) == [
        ("Doliprane : " + "---\ntitle: Doliprane\ndate: 2024-01-01\n--- Antalgique de palier 1.".replace("\n", " "),
         "Doliprane"),
        ("Doliprane > Posologie : un comprimé le matin, un le soir.", "Doliprane > Posologie")]  # the title leads
    store.delete_collection()
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))  # a 64-token window
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "p.md").write_text("# Protocole régional de prise en charge des hyperkaliémies sévères\n"
                               "## Situations cliniques particulières chez l'insuffisant rénal chronique dialysé\n"
                               "### Kayexalate\nUne cuillère mesure.\n", encoding="utf-8")
    store = MatryoshkaChroma("mddeep", emb, client=chromadb.EphemeralClient())
    index_corpus(deep, store)
    (text,) = store.collection.get(include=["documents"])["documents"]
    assert text.endswith("Kayexalate : Une cuillère mesure.") and emb.count_tokens([text])[0] <= emb.max_tokens
    assert not text.startswith("Protocole régional")  # the outer heading went
    store.delete_collection()


def test_a_run_that_would_store_every_document_again_under_metadata_keys_is_refused(tmp_path) -> None:
    """A records file indexed without --metadata-fields (or by a medrag before December 3), then with
    them and no --id-field: every document's key changed, and the run stored all of them a second time
    (upgrade tryout; the "not in this file" warning came after the write). Refused before writing, also
    when the earlier run cut other chunks; --prune replaces them."""
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "id"}, ensure_ascii=False)
                              for r in _records(6)))
    emb = CountingFake()
    store = MatryoshkaChroma("text-keyed", emb, client=chromadb.EphemeralClient())
    first = index_corpus(path, store, chunk_words=15, batch_size=16)
    encoded = emb.encoded
    for words in (15, 20):  # the same chunks, or chunks cut otherwise (an earlier chunker, another --chunk-words)
        with pytest.raises(DataError, match=r"first \d document.* under the key of their text alone .* Nothing was "
                                            "written. If this file is the collection's only records file, run it "
                                            "again with --prune"):
            index_corpus(path, store, metadata_fields=["product"], chunk_words=words, batch_size=16)
        assert len(store) == first.chunks and emb.encoded == encoded
    again = index_corpus(path, store, metadata_fields=["product"], chunk_words=15, batch_size=16, prune=True)
    assert len(store) == first.chunks and again.pruned == first.chunks
    assert {md["product"] for md in store.get()["metadatas"]} == {"P0", "P1", "P2"}
    # the same run again is no copy: it goes on (nothing to write)
    assert index_corpus(path, store, metadata_fields=["product"], chunk_words=15, batch_size=16).added == 0
    store.delete_collection()


def test_some_documents_under_their_text_key_are_no_refusal(tmp_path, caplog) -> None:
    """Review: one stored document under its text's key refused the run, although it was a record whose
    field was filled in since, or another records file's document of the same text (and the advised
    --prune then deleted that other file's documents)."""
    rows = [{k: v for k, v in r.items() if k != "id"} for r in _records(5)]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if not (r["n"] == 0 and k == "product")},
                                         ensure_ascii=False) for r in rows))
    store = MatryoshkaChroma("filled-in", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(path, store, metadata_fields=["product"], chunk_words=15, batch_size=16)  # record 0: no product
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))  # filled in since
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        report = index_corpus(path, store, metadata_fields=["product"], chunk_words=15, batch_size=16)
    assert report.added > 0 and "not in this file" in caplog.text  # the earlier copy of record 0 is named
    other = tmp_path / "other.jsonl"  # another file of the collection, sharing one text with the first
    other.write_text("\n".join(json.dumps({"text": t, "year": 2024}, ensure_ascii=False)
                               for t in [rows[1]["text"], "Une autre note sur la kaliémie et ses causes."]))
    plain = MatryoshkaChroma("shared-text", CountingFake(), client=chromadb.EphemeralClient())
    index_corpus(path, plain, chunk_words=15, batch_size=16)
    assert index_corpus(other, plain, metadata_fields=["year"], chunk_words=15, batch_size=16).added > 0
    store.delete_collection(), plain.delete_collection()


