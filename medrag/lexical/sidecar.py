"""Keeping a lexical index consistent with a :class:`~medrag.store.MatryoshkaChroma` collection.

Chroma's records are the source of truth; the lexical index is derived data, kept under the
store issue's rule for derived data: it records the collection's write generation
(``medrag:generation``, bumped before every write) it reflects, and any other generation
means stale. So:

- a kill between the Chroma write and the index write leaves an index file with an older
  generation: the next hybrid search rebuilds it from the records, nothing is lost;
- writes by another client of a Chroma server, or another store object on the same folder,
  bump the generation: this store's next hybrid search sees it and rebuilds;
- an index built with other analyzer options (another signature) is rebuilt;
- a store writing while its index is fresh updates the index in place (the generation it
  read before its bump + 1 is the one it records), and saves it once per write call;
- a rebuild runs under the store's write guard (no write of this process, through any store
  object on the same folder, runs in between), and calls itself fresh only when the
  collection's last bumped generation is also *committed* (``medrag:committed``, set after
  each write lands: :meth:`~medrag.store.MatryoshkaChroma.generation_state`). While another
  client's write is in flight the rebuilt index serves that search but is not kept, so the
  next search rebuilds again and sees the write (each such search pays a full rebuild). Chroma
  has no compare-and-set: with several clients writing at the same instant, a faster write's
  commit can be recorded while a slower one is still in flight; an index rebuilt then misses
  that write until the next one. A client that died between its bump and its
  write leaves the two apart: a store that holds its embedded folder's lock (the only writer)
  knows no write is in flight and trusts its rebuild; any other client trusts it once the
  same gap has lasted :data:`SETTLE_SECONDS`.

Where the index lives: beside an embedded store (``<persist_directory>/medrag-lexical/
<collection id>.npz``); for an in-memory or server client, in memory only (built from the
server's documents on the first hybrid search), or at ``lexical_path`` when given. Nothing
is built until the first hybrid search: a dense-only user pays nothing.

Example::

    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(), persist_directory="./chroma")
    store.lexical.index()          # built or loaded, fresh for the current generation
    store.lexical.path
    PosixPath('chroma/medrag-lexical/5f0c...npz')
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.errors import InvalidInputError, LexicalIndexError
from medrag.lexical.analyzer import AnalyzerOptions, FrenchMedicalAnalyzer
from medrag.lexical.bm25 import BM25Index, remove_stale_temporaries

if TYPE_CHECKING:
    from medrag.store import MatryoshkaChroma

logger = logging.getLogger(__name__)

#: Records read per Chroma ``get`` while rebuilding.
_PAGE = 5000
#: Seconds a gap between the bumped and the committed generation may last before a client that
#: is not the folder's only writer takes it for a write that died, not one in flight.
SETTLE_SECONDS = 30.0


class LexicalSidecar:
    """The lexical index of one store: where it lives, whether it is fresh, how it is rebuilt.

    Args:
        store: the store whose records are indexed.
        options: the analyzer's options (default :class:`AnalyzerOptions`).
        path: where to persist the index (default: beside an embedded store; ``None`` for
            in-memory and server clients: kept in memory).
    """

    def __init__(self, store: "MatryoshkaChroma", options: AnalyzerOptions | None = None,
                 path: str | Path | None = None) -> None:
        if options is not None and not isinstance(options, AnalyzerOptions):
            raise InvalidInputError(f"lexical_analyzer must be an AnalyzerOptions, got {type(options).__name__}")
        # A weak reference: the store owns this sidecar, and a cycle would keep the store (and its
        # folder lock) alive after the caller drops it, until the garbage collector runs.
        self._store_ref = weakref.ref(store)
        self.options = options or AnalyzerOptions()
        self.signature = BM25Index(self.options).signature
        self.path = Path(path) if path is not None else _default_path(store)
        self._index: BM25Index | None = None
        self._gap: tuple[int, float] | None = None  # (generation, first seen) of an uncommitted write
        self._dirty = False  # the in-memory index changed since it was saved
        # one save (or removal) of the file at a time in this process, whichever store object on the folder
        # does it: a save whose disk was slow replaced the file written by a delete that returned meanwhile,
        # and the erased text's terms were back on disk (user tryout; two store objects: review)
        self._file_lock = _file_lock(self.path)
        # until then (time.monotonic()), a fresh-looking index is checked against the record count:
        # set by this store's in-place updates when another client may have written at the same instant
        self._verify_until = 0.0
        self.rebuilds = 0  # how many times the index was rebuilt from the records (for tests and monitoring)

    @property
    def _store(self) -> "MatryoshkaChroma":
        store = self._store_ref()
        if store is None:
            raise LexicalIndexError("the store of this lexical index was closed and collected; open the store again")
        return store

    @property
    def loaded(self) -> bool:
        """Whether an index is held in memory (it is then kept up to date by this store's writes)."""
        return self._index is not None

    def index(self) -> BM25Index:
        """The index, fresh for the collection's current write generation (loaded or rebuilt if needed)."""
        store = self._store
        with store._write_guard:  # no write of this process between the check, the records and the save
            generation, committed = store.generation_state()
            if self._index is not None and self._index.generation == generation:
                if time.monotonic() >= self._verify_until or self._count_agrees(self._index, store):
                    return self._index
                self._index = None
            settled = self._settled(generation, committed, store)
            if settled and self.path is not None and self.path.exists():  # another store object may have saved one
                try:
                    loaded = BM25Index.load(self.path)
                except LexicalIndexError as exc:
                    logger.warning("%s; rebuilding the lexical index from the collection", exc)
                else:
                    if (loaded.signature == self.signature and loaded.generation == generation
                            and loaded.collection == self._collection_id(store) and self._count_agrees(loaded, store)):
                        # the query side is not in the file: this store's own (same analysis, same signature)
                        loaded.analyzer = FrenchMedicalAnalyzer(self.options)
                        self._index = loaded
                        return loaded
                    logger.info("lexical index %s is stale (generation %s, wanted %s; collection %s, wanted %s; "
                                "signature %s, wanted %s): rebuilding", self.path, loaded.generation, generation,
                                loaded.collection, self._collection_id(store), loaded.signature, self.signature)
            return self._rebuild(generation if settled else None)

    def rebuild(self) -> BM25Index:
        """Rebuild the index from every record of the collection; keep and save it (when it has a path)
        if the collection's generation is committed, else return it for one search only."""
        store = self._store
        with store._write_guard:
            generation, committed = store.generation_state()
            return self._rebuild(generation if self._settled(generation, committed, store) else None)

    @staticmethod
    def _count_agrees(index: BM25Index, store: "MatryoshkaChroma") -> bool:
        """Whether ``index`` holds as many records as the collection. Chroma has no compare-and-set,
        so two clients writing at one instant can both bump the generation to the same value: the
        one that updated its index in place then labels it with a generation that looks fresh without
        the other's records (found by an audit: an index 6 records short, for good). A count that
        differs is such a lost write (or a record deleted): the index is rebuilt. A lost write that
        leaves the count unchanged (one client adds a record as another deletes one) is not caught.

        One ``count()``, whose cost grows with the collection, so it runs on a loaded index file and, for
        :data:`SETTLE_SECONDS` after each of this store's in-place updates, only where another
        client can write at the same instant (not for the store holding its embedded folder's lock:
        every writer of the folder is in this process, under one write guard)."""
        count = store._chroma_call("count the records", store.collection.count)
        if count == len(index):
            return True
        logger.info("lexical index of generation %s holds %d records, the collection %d (a write by another "
                    "client at the same instant): rebuilding", index.generation, len(index), count)
        return False

    def _settled(self, generation: int, committed: int, store: "MatryoshkaChroma") -> bool:
        """Whether the records as they are now belong to ``generation``: its write is committed, or
        the gap between ``generation`` (bumped) and the committed one is a write that died."""
        if committed == generation:
            return True
        if _only_writer(store) and not store._write_guard.in_flight:
            # the folder's only writer, under its write guard, inside no write: a write died (SIGKILL, power
            # loss). Said once, as a warning (it was an INFO line: user tryout), and settled, so the next
            # opening of the folder does not say it again.
            logger.warning("collection %r: write %d never finished (the process writing it was stopped "
                           "mid-write?): the records are as it left them and the lexical index is rebuilt from "
                           "them; run that write again (the same medrag index command, or your own add or delete) to "
                           "finish it",
                           store._collection_name, generation)
            store._commit_generation(generation)
            return True
        now = time.monotonic()
        if self._gap is None or self._gap[0] != generation:
            self._gap = (generation, now)
        if now - self._gap[1] < SETTLE_SECONDS:
            return False
        logger.warning("collection %r: write generation %d was bumped %.0f s ago and never committed (a client died "
                       "mid-write?); the lexical index is rebuilt from the records as they are", store._collection_name,
                       generation, now - self._gap[1])
        return True

    def _rebuild(self, generation: int | None) -> BM25Index:
        """Rebuild from the records; ``generation`` ``None``: a write is in flight, so the index serves
        this search only (not kept, not saved)."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        store = self._store
        collection = store.collection
        # through the store: a server lost, or the collection dropped by another client, mid-rebuild is a
        # StoreConnectionError / CollectionMismatchError, not httpx's or chromadb's own
        total = store._chroma_call("read the records for the lexical index", collection.count)
        index = BM25Index(self.options, generation=generation, collection=self._collection_id(store))
        for offset in tqdm(range(0, total, _PAGE), desc="lexical index", unit="page", disable=total < 50_000):
            res = store._chroma_call("read the records for the lexical index", collection.get, limit=_PAGE,
                                     offset=offset, include=["documents"])
            index.add(res["ids"], [t or "" for t in res["documents"]])
        self.rebuilds += 1
        if generation is None:
            logger.info("lexical index rebuilt while another client's write is in flight: used for this search only")
            return index
        self._index = index
        self._save()
        logger.info("lexical index rebuilt: %d records in %.2fs (generation %d)", len(index),
                    time.perf_counter() - t0, generation)
        return index

    @staticmethod
    def _collection_id(store: "MatryoshkaChroma") -> str:
        return str(store.collection.id)

    # -- called by the store around its writes -----------------------------------------------

    def upserted(self, generation: int, ids: Sequence[str], texts: Sequence[str]) -> None:
        """The store bumped to ``generation`` then upserted ``texts``: update a fresh in-memory index."""
        if self._follows(generation):
            self._index.add(ids, texts)
            self._index.generation = generation
            self._dirty = True

    def deleted(self, generation: int, ids: Sequence[str]) -> None:
        """The store bumped to ``generation`` then deleted ``ids``."""
        if self._follows(generation):
            self._index.delete(ids)
            self._index.generation = generation
            self._dirty = True

    def write_done(self) -> None:
        """End of one write call: persist the in-memory index if the call changed it (one save per
        add/delete call; a call that wrote nothing, e.g. every text already stored, saves nothing)."""
        if self._index is not None and self._dirty:
            self._save()

    def drop(self) -> None:
        """Forget the index and delete its file (the collection was dropped)."""
        self._index = None
        if self.path is not None:
            with self._file_lock:  # after a save in flight, which would write the file again
                self.path.unlink(missing_ok=True)
                remove_stale_temporaries(self.path, older_than=0)  # a dropped collection's index: none being saved

    def _follows(self, generation: int) -> bool:
        index = self._index
        if index is None:
            self._discard_file()
            return False
        if index.generation == generation - 1:
            if not _only_writer(self._store):  # another client's bump may have collided with this one
                self._verify_until = time.monotonic() + SETTLE_SECONDS
            return True
        self._index = None  # someone else wrote in between: rebuild at the next search
        self._discard_file()
        return False

    def _discard_file(self) -> None:
        """A write this index does not follow makes its file stale (never loaded again: its generation
        is old), and a stale file may hold the terms of a text just deleted or replaced (the right to
        erasure: user tryout): remove it. The next hybrid search rebuilds and saves it."""
        if self.path is not None:
            try:
                with self._file_lock:  # after a save in flight, which would write the stale file again
                    self.path.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("could not remove the stale lexical index %s (%s): it holds the terms of texts "
                               "written over or deleted until the next hybrid search rebuilds it", self.path, exc)

    def _save(self) -> None:
        self._dirty = False
        if self.path is None:
            return
        try:
            with self._file_lock:  # the index is read under it: one a discard dropped is not written back
                if self._index is not None:
                    self._index.save(self.path)  # its state now, newer than when this call began waiting
        except OSError as exc:  # the index can always be rebuilt: a failed save costs time, not data
            logger.warning("could not save the lexical index to %s (%s); it will be rebuilt when needed",
                           self.path, exc)


_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path | None) -> threading.Lock:
    """The lock this process's sidecars hold to write or remove the index file at ``path`` (one per
    file, as :func:`medrag._store_lock.folder_write_lock` is one per folder); ``None``: their own."""
    if path is None:
        return threading.Lock()
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(os.path.realpath(path), threading.Lock())


def _default_path(store: "MatryoshkaChroma") -> Path | None:
    """``<persist_directory>/medrag-lexical/<collection id>.npz`` for an embedded persistent client."""
    try:
        settings: Any = store.client.get_settings()
    except Exception:  # noqa: BLE001 - a client without settings (a fake): keep the index in memory
        return None
    if not getattr(settings, "is_persistent", False) or getattr(settings, "chroma_api_impl", "").endswith("FastAPI"):
        return None
    folder = getattr(settings, "persist_directory", None)
    if not folder:
        return None
    return index_file(folder, str(store.collection.id))


def _only_writer(store: "MatryoshkaChroma") -> bool:
    """Whether ``store`` holds its embedded folder's lock: every writer of its collection is then in this
    process, under one write guard (no write of another client can collide with or hide from it)."""
    lock = getattr(store, "_lock", None)
    return lock is not None and lock.held


def index_file(persist_directory: str | Path, collection_id: str) -> Path:
    """Where the lexical index of a collection of an embedded folder is kept by default."""
    return Path(persist_directory) / "medrag-lexical" / f"{collection_id}.npz"
