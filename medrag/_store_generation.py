"""Write generations: how other processes and the data kept beside a store learn of its writes.

Every write of :class:`~medrag.store.MatryoshkaChroma` bumps a counter in the collection metadata
(:data:`~medrag._store_contract.GENERATION_KEY`) before it writes and records it as landed
(:data:`~medrag._store_contract.COMMITTED_KEY`) after. The data derived beside an embedded store (the
SQLite copy of the full vectors, ``_store_sidecar.py``; the BM25 index, ``medrag.lexical.sidecar``)
stamp the generation they hold, so an opening or a search sees that they lag and rebuilds them; and
a process whose Chroma vector index was loaded before another process wrote is told so (Chroma's
embedded client never reloads it). This module also holds the one-process lock of an embedded folder
as the store takes it (``_store_lock.py``), and the check against a forked process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from medrag._chroma_client import _fork_error, _persist_directory
from medrag._chroma_errors import translate_chroma_error
from medrag._store_checks import _LEGACY_HNSW_PREFIX
from medrag._store_contract import _C, COMMITTED_KEY, FULL_KEY, GENERATION_KEY, _b64, _document
from medrag._store_lock import held_in_this_process, locked_error
from medrag._store_sidecar import SIDECAR_NAME, VectorSidecar
from medrag.errors import MedragError, StoreError

logger = logging.getLogger("medrag.store")  # the store's messages keep one logger name

#: (persist directory, collection id) -> the write generation that this process's Chroma vector index
#: holds. Chroma's embedded client loads a collection's HNSW index once per process and never sees
#: another process's later writes (a store closed, then written by another process): searches then
#: miss those records, while ``len`` and ``get`` count them.
_INDEX_GENERATION: dict[tuple[str, str], int] = {}
#: The (key, generation) pairs warned about: once each (generations only grow, so an index is stale
#: exactly while the collection's generation is not the one recorded above).
_INDEX_WARNED: set[tuple[str, str, int]] = set()
_INDEX_GUARD = threading.Lock()


class WriteGenerations:
    """The write-generation part of :class:`~medrag.store.MatryoshkaChroma` (see the module docstring).

    A mixin: it holds no state of its own. Every attribute its methods use is set in
    ``MatryoshkaChroma.__init__`` (``tests/test_architecture.py`` checks it), so that one place lists a
    store's state."""

    def _check_process(self) -> None:
        """Refuse, rather than hang, in a process forked after this embedded store opened; and, on a
        server's client, rather than answer wrong: forked workers share the parent's HTTP connection
        and read each other's replies (gunicorn --preload: other queries' results, in silence: user tryout)."""
        if self._pid != os.getpid():
            if self._embedded:
                raise _fork_error(f"this store was opened in process {self._pid}, which then forked")
            raise StoreError(
                f"this store was opened in process {self._pid}, which then forked: forked processes share its "
                "Chroma server connection and read each other's replies (wrong results). Create the "
                "chromadb.HttpClient and the MatryoshkaChroma in each worker, after the fork (gunicorn: without "
                "--preload, or in a post_fork hook; multiprocessing: in the worker function)")

    def _check_writer(self) -> None:
        """Refuse to write to an embedded persist directory that another process has open."""
        if not self._take_lock():
            raise locked_error(self._lock.directory, self._lock.holder())

    def _take_lock(self) -> bool:
        """Hold the persist directory's lock (no-op for servers and in-memory clients)."""
        if self._lock is None or self._lock.held:
            return True
        if not self._lock.acquire():
            return False
        weakref.finalize(self, self._lock.release)  # released when the store is collected
        self._check_index_fresh(force=True)  # another process may have written while this one let go
        return True

    def _index_key(self) -> tuple[str, str] | None:
        """This collection's key in :data:`_INDEX_GENERATION` (embedded persistent clients only)."""
        persist, collection = _persist_directory(self._client), getattr(self, "_collection", None)
        return None if persist is None or collection is None else (os.path.realpath(persist), str(collection.id))

    def _check_index_fresh(self, force: bool = False) -> None:
        """Warn when another process wrote to this embedded store after this process loaded its
        vector index: Chroma's embedded client keeps searching the index it loaded, so searches miss
        those records (``len`` and ``get`` see them). Only read while no store of this process holds
        the folder's lock (holding it, no other medrag process writes), or once to learn the
        generation; ``force``: read now (the lock was just taken back)."""
        key = self._index_key()
        if key is None:
            return
        if not force and key in _INDEX_GENERATION and held_in_this_process(key[0]):
            return  # nothing new to warn about: no other medrag process writes while this one holds the lock
        current = self.write_generation
        with _INDEX_GUARD:
            if _INDEX_GENERATION.setdefault(key, current) == current or (*key, current) in _INDEX_WARNED:
                return
            _INDEX_WARNED.add((*key, current))
        logger.warning(
            "another process wrote to the embedded Chroma store %s (collection %r) after this process had loaded "
            "its vector index: Chroma's embedded client does not reload it, so this process's dense searches "
            "(similarity_search, MMR, the dense side of hybrid_search) miss those records; len(), get() and "
            "hybrid_search's BM25 side see them. Once the other process has closed the store, a write from this "
            "process catches up on the writes still in Chroma's log (fewer than the index's sync_threshold, 1,000 by "
            "default), a new process on all of them; for several processes at once, serve the folder with a Chroma "
            "server (chroma run --path %s) and connect every process with chromadb.HttpClient",
            key[0], self._collection_name, key[0])

    def _note_own_write(self, generation: int) -> None:
        """After this process's write ``generation`` (it holds the lock: no other process wrote), its
        index holds it: Chroma's local segment applies the log since its last entry on a write, the
        other processes' writes included, so an index that missed them has caught up."""
        key = self._index_key()
        if key is not None:
            with _INDEX_GUARD:
                _INDEX_GENERATION[key] = generation

    def _index_may_be_stale(self) -> bool:
        """True when this process loaded this collection's vector index before another process wrote to
        it (see :meth:`_check_index_fresh`): then it lacks those records' vectors."""
        key = self._index_key()
        if key is None:
            return False
        with _INDEX_GUARD:
            seen = _INDEX_GENERATION.get(key)
        return seen is not None and seen != self.write_generation

    @property
    def write_generation(self) -> int:
        """The collection's write generation: an int bumped *before* every write (each add,
        upsert or delete batch), stored in the collection metadata under ``medrag:generation``
        and re-read from the collection on each access, so writes by other clients and
        processes are seen.

        Data derived beside the store (a lexical index, a vector sidecar) records the
        generation it was built from; a different generation now means it may be stale and
        must be rebuilt. Because the bump precedes the write, a build that reads the
        generation first and the records second is never newer than its generation says.
        Two clients writing at the same instant may bump to the same value (Chroma has no
        compare-and-set); the value still changes, which is all a staleness check needs.

        Example::

            >>> g = store.write_generation
            >>> store.add_texts(["Hémoglobine glyquée à 7 %."], ids=["hba1c"])
            ['hba1c']
            >>> store.write_generation > g
            True
        """
        return int(self._current_metadata().get(GENERATION_KEY, 0))

    def _collection_exists(self) -> bool:
        """Whether the collection this store opened still exists (another store object or client may
        have deleted it, and made another of the same name: not this one)."""
        from chromadb.errors import NotFoundError

        try:
            found = self._client.get_collection(name=self._collection_name, embedding_function=None)
        except (NotFoundError, ValueError):
            return False
        except Exception as exc:
            raise translate_chroma_error(exc, "read the collection", self._collection_name) from exc
        return str(found.id) == self._cid

    def _current_metadata(self) -> dict[str, Any]:
        """A copy of the collection metadata as stored now (other clients' changes included), without
        Chroma's legacy ``hnsw:*`` keys: written back by ``modify``, ``hnsw:space`` reads to Chroma as a
        request to change the distance and fails every write (the configuration holds them anyway)."""
        current = self._chroma_call("read the collection metadata", self._client.get_collection,
                                    name=self._collection_name, embedding_function=None)
        return {k: v for k, v in (current.metadata or {}).items() if not k.startswith(_LEGACY_HNSW_PREFIX)}

    @contextlib.contextmanager
    def _generation_write(self) -> Iterator[int]:
        """One write batch's generation, under the write guard: bumped before the body (which
        writes), counted in flight during it, committed after it, whether it landed or failed."""
        generation = self._bump_generation()
        self._write_guard.in_flight += 1
        try:
            yield generation
        finally:
            self._write_guard.in_flight -= 1
            self._commit_generation(generation)
            self._note_own_write(generation)

    def generation_state(self) -> tuple[int, int]:
        """``(generation, committed)``: the write generation (:attr:`write_generation`) and the last
        one whose write has landed, read in one call. They differ while a write is in flight (its
        generation is bumped, its records not yet written), or after a client died between the two.

        A rebuild of derived data that reads the records while they differ may miss that write,
        so it must not call itself fresh for the bumped generation
        (:class:`medrag.lexical.sidecar.LexicalSidecar` checks this).
        """
        meta = self._current_metadata()
        generation = int(meta.get(GENERATION_KEY, 0))
        committed = meta.get(COMMITTED_KEY)
        return generation, generation if committed is None else int(committed)

    def _commit_generation(self, generation: int) -> None:
        """After a write (landed or failed: the records are settled either way): record ``generation``
        as committed, unless another client has bumped since (its own commit will follow).

        Limits (Chroma has no compare-and-set): with several clients of one server writing at the
        same instant, a faster write's commit can be recorded while a slower earlier one is still in
        flight, and this read-modify-write of the metadata can overwrite a bump made in between; a
        lexical index rebuilt at that instant can then miss that write until the next one."""
        try:
            meta = self._current_metadata()
            if int(meta.get(GENERATION_KEY, 0)) != generation or meta.get(COMMITTED_KEY) == generation:
                return
            meta[COMMITTED_KEY] = generation
            self._chroma_call("record the committed write", self._collection.modify, metadata=meta)
        except MedragError as exc:  # readers then wait a little before they trust a rebuild (sidecar.py)
            logger.warning("could not record write %d of collection %r as committed (%s)", generation,
                           self._collection_name, exc)

    def _bump_generation(self) -> int:
        """Increment the write generation; called before every write to the collection. Returns the new one.
        The first write also records the current fingerprint over an earlier medrag's (:meth:`_check_contract`)."""
        meta = self._current_metadata()
        meta[GENERATION_KEY] = generation = int(meta.get(GENERATION_KEY, 0)) + 1
        legacy = self._legacy_fingerprint
        if legacy is not None and meta.get(_C["fingerprint"]) == legacy[0]:
            logger.info("collection %r recorded the legacy fingerprint %s of this model; recording %s",
                        self._collection_name, *legacy)
            meta[_C["fingerprint"]] = legacy[1]
        # modify() replaces the whole collection metadata: the contract is written back with it
        self._chroma_call("bump the write generation", self._collection.modify, metadata=meta)
        self._legacy_fingerprint = None
        return generation

    def _sync_sidecar(self) -> None:
        """Rebuild the vector sidecar from the records when its stamp is not the collection's
        write generation (a write it did not see: another tool, or a kill mid-write)."""
        assert self._sidecar is not None
        with self._write_guard:
            self._rebuild_sidecar_if_stale()

    def _rebuild_sidecar_if_stale(self) -> None:
        assert self._sidecar is not None
        generation = self.write_generation
        if self._sidecar.stamp(self._cid) == generation:
            return
        total = len(self)
        if total:  # a new collection's copy just starts empty ("rebuilding ... from its 0 records": tryout)
            logger.info("rebuilding the vector sidecar of %r from its %d records", self._collection_name, total)
        self._sidecar.drop(self._cid)
        batch = self._max_batch()
        for offset in range(0, total, batch):
            res = self._chroma_call("read records", self._collection.get, limit=batch, offset=offset,
                                    include=["metadatas", "documents"])
            keep = []  # a record without a readable vector is read (and named) from Chroma
            for id_, text, md in zip(res["ids"], res["documents"], res["metadatas"]):
                blob = _b64(md[FULL_KEY]) if md and FULL_KEY in md else None
                if blob is not None:
                    keep.append((id_, blob, text, _document(id_, text, md).metadata))
            if keep:
                ids_, blobs, texts, metas = (list(col) for col in zip(*keep))
                self._sidecar.put(self._cid, ids_, blobs, texts, metas)
        self._sidecar.set_stamp(self._cid, generation)

    def _advance_stamp(self, generation: int) -> None:
        """Stamp the copy with ``generation`` (just bumped by this write, under the write guard) only
        when it was in step before the write: after a write it did not see (another store of this
        process without a copy, raw chromadb), it stays behind, and the next open rebuilds it."""
        assert self._sidecar is not None
        if self._sidecar.stamp(self._cid) == generation - 1:
            self._sidecar.set_stamp(self._cid, generation)

    def _forget_in_other_copy(self, ids: list[str]) -> None:
        """A store without a copy (``vector_sidecar=False``) that writes to a folder whose copy
        other stores of this process read removes the written ids' rows from it (they then read
        those records from Chroma), so no search returns an old text."""
        # no copy of its own, whatever the reason (vector_sidecar=False, closed, or opened while another
        # process held the folder): a store opened since then may read the folder's copy
        if self._sidecar is not None or self._lock is None or not self._lock.held:
            return
        if self._other_copy is None:
            if not (self._lock.directory / SIDECAR_NAME).is_file():
                return
            self._other_copy = VectorSidecar(self._lock.directory)
        self._other_copy.delete(self._cid, ids)
