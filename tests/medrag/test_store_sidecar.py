"""The SQLite copy of the full vectors beside an embedded folder (medrag._store_sidecar)."""

from __future__ import annotations

import sqlite3

import numpy as np

from medrag import MatryoshkaChroma
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
    side.put("c1", ["a", "b"], [b"1", b"2"])
    side.put("c1", ["a"], [b"3"])  # the same (collection, id) again: replaced, not duplicated
    side.put("c2", ["a"], [b"4"])
    assert side.get("c1", ["a", "b", "zz"]) == {"a": b"3", "b": b"2"}
    assert side.get("c2", ["a"]) == {"a": b"4"}
    side.delete("c1", ["b"])
    assert side.get("c1", ["a", "b"]) == {"a": b"3"}
    side.set_stamp("c1", 7)
    side.drop("c1")
    assert side.get("c1", ["a"]) == {} and side.stamp("c1") is None and side.get("c2", ["a"]) == {"a": b"4"}
    side.close()
    reopened = VectorSidecar(tmp_path)  # the same layout version: rows are kept
    assert reopened.get("c2", ["a"]) == {"a": b"4"}
    reopened.close()
