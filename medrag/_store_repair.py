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

import base64
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medrag._chroma_client import _hnsw_settings
from medrag._chroma_errors import translate_chroma_error
from medrag._store_contract import COMMITTED_KEY, FULL_KEY, GENERATION_KEY
from medrag._store_writes import _PROGRESS_MIN, _WRITE_BATCH
from medrag.errors import StoreError
from medrag.vector_codec import pack_rows

logger = logging.getLogger("medrag.store")  # the store's messages keep one logger name

#: Records written last whose vectors an opening reads (a kill can leave the newest vectors without ids).
_PROBED_RECORDS = 64
#: Reads a collection's vector index with a new Chroma client (``MatryoshkaChroma._damage_confirmed``).
_PROBE_SCRIPT = """
import json, sys
request = json.loads(sys.stdin.read())
try:
    import chromadb, numpy as np
    collection = chromadb.PersistentClient(request["path"]).get_collection(request["name"])
    collection.query(query_embeddings=np.eye(1, request["dim"], dtype=np.float32), n_results=1, include=[])
    if request["ids"]:
        collection.get(ids=request["ids"], include=["embeddings"])
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"error": None}))
"""
_PROBE_TIMEOUT_S = 300

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


class VectorIndexRepair:
    """The repair part of :class:`~medrag.store.MatryoshkaChroma`: the opening's check of an
    embedded collection's vector index, and its rebuild from the records (see the module docstring).

    A mixin: it holds no state of its own. Every attribute its methods use is set in
    ``MatryoshkaChroma.__init__`` (``tests/test_architecture.py`` checks it), so that one place lists a
    store's state."""

    def _check_vector_index(self, persist: str | None, repair: bool) -> str | None:
        """Read the collection once through its HNSW index and, in an embedded folder this process owns
        (``repair``), the vectors of the records written last; when a crash left that index unreadable or
        without the ids of its newest vectors (:mod:`medrag._store_repair`), rebuild the collection from
        its records. Returns the id of the collection replaced, None when it was sound.

        The newest records are read only by the folder's owner: a process without the lock can see
        records another process wrote after it loaded the index ("Error finding id" without damage:
        review). Even the owner's own Chroma client may hold an index loaded before another process
        wrote, so that error is confirmed in a new process (:meth:`_damage_confirmed`) before a rebuild."""
        newest: list[str] = []
        try:
            if self._collection.count():
                self._collection.query(query_embeddings=np.eye(1, self._coarse_dim, dtype=np.float32),
                                       n_results=1, include=[])
                newest = self._latest_ids(persist) if repair else []
                if newest:
                    self._collection.get(ids=newest, include=["embeddings"])
            return None
        except Exception as exc:
            if not is_vector_index_failure(exc) or (is_missing_id(exc) and not (repair and persist)):
                raise translate_chroma_error(exc, "read the collection", self._collection_name) from exc
            if persist is None or not repair:
                raise StoreError(
                    f"the vector index of collection {self._collection_name!r} cannot be read ({exc}); its records "
                    "are intact. Open it with an embedded client in a process that owns the folder "
                    "(MatryoshkaChroma(..., persist_directory=...)), which rebuilds the index from them."
                ) from exc
            if is_missing_id(exc):
                confirmed = self._damage_confirmed(persist, newest)
                if confirmed is False or (confirmed is None and self._index_may_be_stale()):
                    # not damage: this process's index was loaded before another process's writes, whose
                    # newest records it lacks (the staleness warning follows); a new process reads the files
                    logger.info("collection %r: this process's vector index lacks records another process "
                                "wrote (%s); its files are sound", self._collection_name, exc)
                    return None
            logger.warning("the vector index of collection %r cannot be read (%s): a process was probably killed "
                           "while Chroma saved it. Rebuilding the collection from its records (nothing is re-encoded)",
                           self._collection_name, exc)
            broken = self._cid
            self._repair_vector_index(persist)
            return broken

    def _damage_confirmed(self, persist: str, newest: list[str]) -> bool | None:
        """Whether a new process, whose Chroma client loads the vector index from the files, fails to
        read it too (True: the files are damaged; False: only this process's loaded index lacks records;
        None: the check could not run). Seconds, paid only after such a failure."""
        import subprocess
        import sys

        request = json.dumps({"path": persist, "name": self._collection_name, "ids": newest, "dim": self._coarse_dim})
        try:
            done = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT], input=request, capture_output=True,
                                  text=True, timeout=_PROBE_TIMEOUT_S, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            logger.warning("could not check collection %r's vector index in a new process (%s)",
                           self._collection_name, exc)
            return None
        error = answer.get("error") if isinstance(answer, dict) else None
        logger.info("collection %r: a new process read its vector index: %s", self._collection_name, error or "sound")
        return bool(error) and is_vector_index_failure(RuntimeError(error))

    def _latest_ids(self, persist: str | None) -> list[str]:
        """The ids of an embedded collection's last-written records (:func:`medrag._store_repair.latest_ids`);
        none for a server, or when the database cannot be read directly (Chroma reads it, and says why)."""
        if persist is None:
            return []
        try:
            return latest_ids(persist, self._cid, _PROBED_RECORDS)
        except sqlite3.Error as exc:
            logger.debug("could not read the newest record ids from %s: %s", persist, exc)
            return []

    def _repair_vector_index(self, persist: str) -> None:
        """Rebuild the collection from the records in ``chroma.sqlite3`` into ``<name>__medrag_repair``,
        mark it complete, drop the broken collection and rename the copy. The coarse vectors are
        recomputed from each record's stored full vector; a record without a readable one is re-encoded."""
        from tqdm.auto import tqdm

        name, tmp = self._collection_name, self._collection_name + REPAIR_SUFFIX
        try:
            records = read_records(persist, self._cid)
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors: nothing can be recovered from that file
            raise StoreError(f"the vector index of collection {name!r} is unreadable and its records could not be "
                             f"read from {persist}/chroma.sqlite3 either ({exc}); restore the folder from a backup "
                             "or re-add the texts into a new folder") from exc
        segments = segment_ids(persist, self._cid)
        meta = dict(self._collection.metadata or {})
        meta[GENERATION_KEY] = meta[COMMITTED_KEY] = int(meta.get(GENERATION_KEY, 0)) + 1  # derived data is rebuilt
        meta.pop(COMPLETE_KEY, None)
        hnsw = {k: v for k, v in _hnsw_settings(self._collection).items() if v is not None}
        self._delete_if_exists(tmp)  # a repair killed before it was complete
        copy = self._chroma_call("create the repair collection", self._client.create_collection, name=tmp,
                                 metadata=meta, configuration={"hnsw": {**hnsw, "space": "cosine"}},
                                 embedding_function=None)
        ids = list(records)
        batch = min(_WRITE_BATCH, self._max_batch())
        skipped = 0
        for start in tqdm(range(0, len(ids), batch), desc=f"repair {name}", unit="batch",
                          disable=len(ids) < 10 * _PROGRESS_MIN):
            chunk = ids[start : start + batch]
            docs = [records[i][0] for i in chunk]
            metas = [records[i][1] for i in chunk]
            full, bad = self._decode_readable(self._blobs_from_metas(chunk, metas))
            if bad:  # no readable full vector: encode the text again, if there is one
                again = [j for j in bad if docs[j]]
                if again:
                    vecs = self._encode([docs[j] for j in again], query=False)
                    full[again] = vecs
                    for j, packed in zip(again, pack_rows(vecs, self._encoding)):
                        metas[j] = {**metas[j], FULL_KEY: base64.b64encode(packed).decode("ascii")}
                lost = set(bad) - set(again)
                keep = [j for j in range(len(chunk)) if j not in lost]
                skipped += len(chunk) - len(keep)
                chunk, docs, metas, full = ([chunk[j] for j in keep], [docs[j] for j in keep],
                                            [metas[j] for j in keep], full[keep])
            if chunk:
                self._chroma_call("write repaired records", copy.upsert, ids=chunk, embeddings=self._coarse(full),
                                  documents=docs, metadatas=[m or None for m in metas])
        if skipped:
            logger.warning("%d record(s) of %r had neither a readable full vector nor a text and were dropped",
                           skipped, name)
        self._chroma_call("mark the repair complete", copy.modify, metadata={**meta, COMPLETE_KEY: True})
        self._chroma_call("drop the broken collection", self._client.delete_collection, name)
        self._remove_segment_folders(persist, segments)
        self._chroma_call("rename the repaired collection", copy.modify, name=name, metadata=meta)
        self._collection = self._chroma_call("open the repaired collection", self._client.get_collection, name=name,
                                             embedding_function=None)
        self._cid = str(self._collection.id)
        logger.warning("collection %r rebuilt: %d records", name, len(ids) - skipped)

    def _finish_interrupted_repair(self) -> None:
        """A repair killed after its copy was complete but before the rename: finish the rename."""
        from chromadb.errors import NotFoundError

        name, tmp = self._collection_name, self._collection_name + REPAIR_SUFFIX
        try:
            copy = self._client.get_collection(name=tmp, embedding_function=None)
        except (NotFoundError, ValueError):
            return
        meta = dict(copy.metadata or {})
        if not meta.pop(COMPLETE_KEY, False):
            return  # incomplete: the broken collection is still there, the next repair starts over
        logger.warning("finishing the interrupted repair of collection %r", name)
        self._delete_if_exists(name)
        self._chroma_call("rename the repaired collection", copy.modify, name=name, metadata=meta)

    @staticmethod
    def _remove_segment_folders(persist: str, segments: Sequence[str]) -> None:
        """Chroma leaves a deleted collection's HNSW folders on disk; remove them (only folders directly in
        ``persist`` named by a segment id)."""
        import shutil

        root = Path(persist).resolve()
        for segment in segments:
            folder = (root / segment).resolve()
            if folder.parent == root and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
