"""Recovering an embedded collection whose Chroma vector index a crash left unreadable.

Chroma's embedded client keeps each collection twice: the records (ids, texts, metadata) in
``chroma.sqlite3``, written in one SQLite transaction per call, and the HNSW vector index in a
folder per segment, persisted every ``sync_threshold`` records by rewriting its files in place
(``index_metadata.pickle`` is truncated, then written). A process killed during that rewrite
leaves the folder unreadable, and from then on *every* call on the collection (``count``,
``get``, ``query``) fails with an ``InternalError`` such as "Error sending backfill request to
compactor: Error constructing hnsw segment reader: Error deserializing pickle file" or "Failed
to apply logs to the hnsw segment writer" (measured: SIGKILL at random moments of a long add,
chromadb 1.5.9; upstream treats it as expected of a kill, chroma-core/chroma#2594). A kill after
the data files were saved but before the id map was leaves a folder that loads, but whose newest
vectors have no id: a search or ``get`` that reaches one fails with "Error finding id" (measured in
CI); :func:`latest_ids` names the records to probe for it. The same message comes from an index a
process loaded before another process wrote (no damage), so the store confirms it in a new process
before it rebuilds anything. The SQLite
records are intact, and a MatryoshkaChroma record carries its full vector in its metadata, so
the coarse vectors can be recomputed without re-encoding anything.

:func:`read_records` reads the records straight from ``chroma.sqlite3`` (read-only, the
collection's metadata segment plus any logged write it had not applied yet);
``MatryoshkaChroma`` then rebuilds the collection through Chroma's API into a temporary
collection, marks it complete, drops the broken one and renames the new one (see
``MatryoshkaChroma._repair_vector_index``). Every step is restartable: a kill before the mark
leaves the broken collection as it was (the next open repairs again), a kill after it leaves a
complete copy that the next open finishes renaming (:data:`REPAIR_SUFFIX`, :data:`COMPLETE_KEY`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Name of the temporary collection a repair builds: ``<collection><REPAIR_SUFFIX>``.
REPAIR_SUFFIX = "__medrag_repair"
#: Collection-metadata key set on the temporary collection once every record is in it.
COMPLETE_KEY = "medrag:repair_complete"

_MISSING_ID = "error finding id"
# Messages of Chroma's embedded (Rust) executor when a collection's HNSW segment cannot be loaded,
# or disagrees with itself: "Error finding id" when its id map (index_metadata.pickle) is older
# than its vectors (the data files were saved, the kill came before the map was).
_SIGNATURES = (
    "hnsw segment",
    "error loading hnsw index",
    "backfill request to compactor",
    "error deserializing pickle file",
    _MISSING_ID,
)
_DOCUMENT_KEY = "chroma:document"
_OPS = {0: "add", 1: "update", 2: "upsert", 3: "delete"}  # chromadb/db/mixins/embeddings_queue.py


def is_vector_index_failure(exc: BaseException) -> bool:
    """True when a Chroma error (or its cause) says the collection's HNSW segment cannot be loaded."""
    return _chain_says(exc, _SIGNATURES)


def is_missing_id(exc: BaseException) -> bool:
    """True when a Chroma error says the vector index holds a vector without an id ("Error finding id"):
    damage on disk, or an index this process loaded before another process wrote (no damage)."""
    return _chain_says(exc, (_MISSING_ID,))


def _chain_says(exc: BaseException, signatures: tuple[str, ...]) -> bool:
    """Whether ``exc`` or an exception of its cause/context chain has one of ``signatures`` in its message."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if any(sig in text for sig in signatures):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


@contextmanager
def _read_only(persist_directory: str) -> Iterator[sqlite3.Connection]:
    path = Path(persist_directory) / "chroma.sqlite3"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def segment_ids(persist_directory: str, collection_id: str) -> list[str]:
    """The ids of a collection's segments (the vector segment's files are in a folder of that name)."""
    with _read_only(persist_directory) as db:
        return [row[0] for row in db.execute("SELECT id FROM segments WHERE collection = ?", (collection_id,))]


def latest_ids(persist_directory: str, collection_id: str, n: int) -> list[str]:
    """The ids of the ``n`` records of a collection added last (highest row ids of its SQLite metadata
    segment: a new record gets the next one, an update keeps its own): the ones a vector index saved
    before its id map lacks. By row id, not ``seq_id``, which has no index (a sort of every row: 4 s
    for a million, review) and was a BLOB in databases of Chroma 0.4-0.5.

    Raises:
        sqlite3.Error: the database is unreadable.
    """
    with _read_only(persist_directory) as db:
        row = db.execute("SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'",
                         (collection_id,)).fetchone()
        if row is None:
            return []
        return [r[0] for r in db.execute("SELECT embedding_id FROM embeddings WHERE segment_id = ? "
                                         "ORDER BY id DESC LIMIT ?", (row[0], n))]


def _value(string: Any, integer: Any, real: Any, boolean: Any) -> Any:
    if string is not None:
        return string
    if integer is not None:
        return int(integer)
    if real is not None:
        return float(real)
    if boolean is not None:
        return bool(boolean)
    return None


def read_records(persist_directory: str, collection_id: str) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Every record of a collection as ``{id: (document, metadata)}``, read from ``chroma.sqlite3``.

    Reads the collection's SQLite metadata segment, then replays the writes still waiting in
    Chroma's log (``embeddings_queue``) past what that segment applied, as Chroma would: add
    and upsert replace or merge (a ``None`` value removes a key), update merges into an
    existing record, delete removes.

    Args:
        persist_directory: the embedded client's folder.
        collection_id: the collection's id (``str(collection.id)``).

    Raises:
        sqlite3.Error: the database is unreadable (then nothing can be recovered from it).
    """
    records: dict[str, tuple[str | None, dict[str, Any]]] = {}
    with _read_only(persist_directory) as db:
        row = db.execute("SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'",
                         (collection_id,)).fetchone()
        if row is None:
            return records
        segment = row[0]
        rowid_to_id: dict[int, str] = {}
        for rowid, embedding_id in db.execute("SELECT id, embedding_id FROM embeddings WHERE segment_id = ?",
                                              (segment,)):
            rowid_to_id[rowid] = embedding_id
            records[embedding_id] = (None, {})
        query = ("SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value FROM {table} m "
                 "JOIN embeddings e ON e.id = m.id WHERE e.segment_id = ?")
        for rowid, key, *values in db.execute(query.format(table="embedding_metadata"), (segment,)):
            document, metadata = records[rowid_to_id[rowid]]
            if key == _DOCUMENT_KEY:
                records[rowid_to_id[rowid]] = (values[0], metadata)
            else:
                metadata[key] = _value(*values)
        for rowid, key, *values in db.execute(query.format(table="embedding_metadata_array") + " ORDER BY m.rowid",
                                              (segment,)):
            records[rowid_to_id[rowid]][1].setdefault(key, []).append(_value(*values))
        applied = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone()
        topic = f"%/{collection_id}"
        pending = db.execute("SELECT operation, id, metadata FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ? "
                             "ORDER BY seq_id", (topic, _seq_id(applied[0] if applied else None)))
        for op, id_, meta_json in pending:
            _replay(records, _OPS.get(op, "?"), id_, json.loads(meta_json) if meta_json else {})
    return records


def _seq_id(value: Any) -> int:
    """A ``max_seq_id`` value: an integer (Chroma 1.x) or big-endian bytes (databases of Chroma 0.4-0.6)."""
    if value is None:
        return -1
    if isinstance(value, (bytes, bytearray, memoryview)):
        return int.from_bytes(bytes(value), "big")
    return int(value)


def _replay(records: dict[str, tuple[str | None, dict[str, Any]]], op: str, id_: str, logged: dict[str, Any]) -> None:
    """Apply one logged write to ``records`` the way Chroma's metadata segment applies it."""
    if op == "delete":
        records.pop(id_, None)
        return
    if op == "update" and id_ not in records:
        return
    document, metadata = records.get(id_, (None, {}))
    if op == "add" and id_ in records:
        return  # Chroma ignores an add of an existing id
    metadata = dict(metadata)
    for key, value in logged.items():
        if key == _DOCUMENT_KEY:
            document = value
        elif value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    records[id_] = (document, metadata)
