"""A local SQLite copy of each record's packed full vector, text and metadata beside an embedded
Chroma folder (the query's read path).

Why: reading the candidates' packed full vectors out of Chroma's metadata costs ~70 us per
candidate on the embedded client (SQLite metadata rows, decoded by Chroma), so stage 2 cost
more than stage 1. One ``SELECT ... WHERE id IN (...)`` on this table costs a few
microseconds per candidate. The texts and metadata of the final k come from here too: a second
Chroma call (a ``get`` of 10 records by id) took 0.94 ms on the embedded client at 100,000 records
(``chroma_calls`` of ``benchmarks/store_benchmark.py synthetic``), the fixed cost of a call, which
left a funnel query 1.4x slower than flat Chroma's single call
(``docs/store.md``, "The rerank path", for the measured numbers).

What it is: a *derived copy*. Every record still carries its text, metadata and packed vector
in Chroma (the source of truth, readable by any client and by a Chroma server started on the
same folder later). The copy is

* written and committed **before** the Chroma record, so a kill never leaves a record whose
  row is missing here;
* keyed by the collection's UUID and the record id (a collection re-created under the same name
  never sees old rows);
* stamped with the collection's write generation after each write the store makes. When the
  store opens a collection whose generation differs from the stamp (a write by another tool or
  process, or a kill between the generation bump and the stamp), it rebuilds the copy from the
  records before using it. Ids missing here are read from Chroma.

Layout: an ordinary rowid table with a unique index on (collection, id). A ``WITHOUT ROWID``
table (the first layout) keeps each row inside the primary-key B-tree, where SQLite stores at most
about 1,000 bytes per row on a 4 KB page: an int8 vector of 1,024 dims (1,028 bytes) spilled into
overflow pages: at 100,000 rows the file took 468 MB and a read of 100 random rows 0.98 ms, against
146 MB and 0.51 ms for the rowid table (memory-mapped, 2 cores; at 384 dims, where rows fit either
way, 58 vs 60 MB and 0.44 vs 0.32 ms): ``python benchmarks/sidecar_layout.py --rows 100000``. The
vector comes first in the row so that the rerank's read stops before the text. The layout version
is ``PRAGMA user_version``; a file of another version is emptied and rebuilt from the records (it
is derived data). Metadata is kept as JSON (Chroma's metadata values: str, int, float, bool and
lists of them, all JSON types; non-finite floats are rejected before anything is written).

Example::

    >>> import tempfile
    >>> side = VectorSidecar(tempfile.mkdtemp())  # a persist folder, e.g. "./chroma"
    >>> side.put("collection-uuid", ["a"], [b"..."], ["Ferritine basse."], [{"source": "bilan"}])
    >>> side.get("collection-uuid", ["a"])
    {'a': b'...'}
    >>> side.records("collection-uuid", ["a"])
    {'a': ('Ferritine basse.', {'source': 'bilan'})}
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medrag.errors import StoreError

logger = logging.getLogger(__name__)

#: File name of the sidecar inside the persist directory.
SIDECAR_NAME = "medrag_vectors.sqlite3"
_CHUNK = 900  # SQLite's default limit of bound parameters is 999
#: Version of the table layout (``PRAGMA user_version``): 2 = rowid table + unique index,
#: 3 = the same with each record's text and metadata.
LAYOUT_VERSION = 3
_MMAP_BYTES = 1 << 30  # address space, not memory: SQLite maps at most the file's size


#: Opening a sidecar file sets its journal mode and may create or reset its tables: several stores
#: opened by threads at once (asyncio.gather of afrom_texts) got "database is locked" from SQLite,
#: whose busy handler does not cover a journal-mode switch or a schema change racing another
#: connection's. Opens within one process take turns; other processes wait through ``connect``'s
#: ``timeout``.
_OPENING = threading.Lock()
#: Seconds a connection waits for another's lock before SQLite answers "database is locked".
BUSY_TIMEOUT_S = 30.0


class VectorSidecar:
    """Packed full vectors, texts and metadata by (collection UUID, id), in
    ``<persist_directory>/medrag_vectors.sqlite3``."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / SIDECAR_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            with _OPENING:
                self._open()
        except sqlite3.DatabaseError as exc:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
            if isinstance(exc, sqlite3.OperationalError):  # read-only, locked, no space: not damage
                raise self._error("be opened", exc) from exc
            # damaged ("file is not a database", "malformed"): derived data, rebuilt from the records
            logger.warning("the store's vector copy %s is damaged (%s): it is rebuilt from the records", self.path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            with self._sqlite("be made again"), _OPENING:
                self._open()

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"the store's vector copy {self.path} could not {what} ({exc}). Free disk space or make "
                          "the file and its folder writable; it is derived data: open the store with "
                          "vector_sidecar=False to go without it, or delete the file to have it rebuilt")

    @contextlib.contextmanager
    def _sqlite(self, what: str) -> Iterator[None]:
        """SQLite errors as a :class:`StoreError` that says what to do (they were raw ``sqlite3`` errors)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    def _open(self) -> None:
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # a deleted row's text and vector are overwritten, not left in a free page (right to erasure)
            self._db.execute("PRAGMA secure_delete=ON")
            # reads through a memory map (benchmarks/sidecar_layout.py: 100 random rows of 100,000 in
            # 0.32 instead of 0.51 ms at 384 dims); the pages are the OS's file cache, shared
            self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version != LAYOUT_VERSION:  # an older layout (or a new file): start empty, rebuilt from the records
                self._db.execute("DROP TABLE IF EXISTS vectors")
                self._db.execute("DROP TABLE IF EXISTS stamps")
                self._db.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (collection TEXT NOT NULL, id TEXT NOT NULL, "
                             "vec BLOB NOT NULL, doc TEXT, meta TEXT NOT NULL, UNIQUE (collection, id))")
            self._db.execute("CREATE TABLE IF NOT EXISTS stamps (collection TEXT PRIMARY KEY, generation INTEGER)")

    def put(self, collection: str, ids: Sequence[str], blobs: Sequence[bytes], documents: Sequence[str | None],
            metadatas: Sequence[Mapping[str, Any] | None]) -> None:
        """Insert or replace rows (a replaced row loses its old metadata), committed when this returns.

        Args:
            collection: the collection's UUID.
            ids, blobs, documents, metadatas: one entry per record: its id, packed full vector,
                text (None: a record without text) and user metadata (without the packed vector).
        """
        rows = [(collection, i, b, d, json.dumps(_as_chroma_returns(m or {}), ensure_ascii=False, allow_nan=False))
                for i, b, d, m in zip(ids, blobs, documents, metadatas, strict=True)]
        with self._lock, self._sqlite("be written"):
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself (a full disk):
                    self._db.execute("ROLLBACK")          # "no transaction is active" hid the real error
                raise

    def get(self, collection: str, ids: Sequence[str]) -> dict[str, bytes]:
        """The rows of those ids that exist."""
        out: dict[str, bytes] = {}
        with self._lock, self._sqlite("be read"):
            for start in range(0, len(ids), _CHUNK):
                part = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(part))
                out.update(self._db.execute(
                    f"SELECT id, vec FROM vectors WHERE collection = ? AND id IN ({marks})", [collection, *part]))
        return out

    def records(self, collection: str, ids: Sequence[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """``{id: (text, metadata)}`` of those ids that exist (a row whose metadata does not parse is
        left out, so the caller reads that record from Chroma)."""
        out: dict[str, tuple[str | None, dict[str, Any]]] = {}
        with self._lock, self._sqlite("be read"):
            for start in range(0, len(ids), _CHUNK):
                part = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(part))
                for id_, doc, meta in self._db.execute(
                        f"SELECT id, doc, meta FROM vectors WHERE collection = ? AND id IN ({marks})", [collection, *part]):
                    try:
                        out[id_] = (doc, json.loads(meta))
                    except ValueError:  # a damaged row of this derived copy: the caller reads the record instead
                        continue
        return out

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._lock, self._sqlite("be written"):
            for start in range(0, len(ids), _CHUNK):
                part = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(part))
                self._db.execute(f"DELETE FROM vectors WHERE collection = ? AND id IN ({marks})", [collection, *part])
            self._forget_old_pages()

    def _forget_old_pages(self) -> None:
        """Copy the write-ahead log into the file and empty it: until then the log still holds the pages
        of deleted rows as they were written, their texts included (a user tryout found an erased
        patient's note in ``medrag_vectors.sqlite3-wal``). Best effort: a reader of another
        connection can keep part of the log until the next checkpoint."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def drop(self, collection: str) -> None:
        """Forget a whole collection (rows and stamp)."""
        with self._lock, self._sqlite("be written"):
            self._db.execute("DELETE FROM vectors WHERE collection = ?", (collection,))
            self._db.execute("DELETE FROM stamps WHERE collection = ?", (collection,))
            self._forget_old_pages()

    def stamp(self, collection: str) -> int | None:
        """The write generation the rows of ``collection`` are known to match (None: never stamped)."""
        with self._lock, self._sqlite("be read"):
            row = self._db.execute("SELECT generation FROM stamps WHERE collection = ?", (collection,)).fetchone()
        return None if row is None else int(row[0])

    def set_stamp(self, collection: str, generation: int) -> None:
        with self._lock, self._sqlite("be written"):
            self._db.execute("INSERT OR REPLACE INTO stamps VALUES (?, ?)", (collection, int(generation)))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _as_chroma_returns(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as Chroma gives it back: a key whose value is None is removed (that is how an
    upsert deletes a key), a float -0.0 reads 0.0."""
    return {key: _chroma_value(value) for key, value in metadata.items() if value is not None}


def _chroma_value(value: Any) -> Any:
    if isinstance(value, float):
        return value + 0.0  # -0.0 + 0.0 == 0.0
    if isinstance(value, list):
        return [_chroma_value(v) for v in value]
    return value
