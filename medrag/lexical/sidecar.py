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
  read before its bump + 1 is the one it records), and saves it once per write call.

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
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.errors import InvalidInputError, LexicalIndexError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.bm25 import BM25Index

if TYPE_CHECKING:
    from medrag.store import MatryoshkaChroma

logger = logging.getLogger(__name__)

#: Records read per Chroma ``get`` while rebuilding.
_PAGE = 5000


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
        generation = self._store.write_generation
        if self._index is not None and self._index.generation == generation:
            return self._index
        if self.path is not None and self.path.exists():  # another store object may have saved a fresh one
            try:
                loaded = BM25Index.load(self.path)
            except LexicalIndexError as exc:
                logger.warning("%s; rebuilding the lexical index from the collection", exc)
            else:
                if loaded.signature == self.signature and loaded.generation == generation:
                    self._index = loaded
                    return loaded
                logger.info("lexical index %s is stale (generation %s, collection %s; signature %s, wanted %s): "
                            "rebuilding", self.path, loaded.generation, generation, loaded.signature, self.signature)
        return self.rebuild()

    def rebuild(self) -> BM25Index:
        """Rebuild the index from every record of the collection and save it (when it has a path)."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        generation = self._store.write_generation  # read before the records: never newer than it says
        collection = self._store.collection
        total = collection.count()
        index = BM25Index(self.options, generation=generation)
        for offset in tqdm(range(0, total, _PAGE), desc="lexical index", unit="page", disable=total < 50_000):
            res = collection.get(limit=_PAGE, offset=offset, include=["documents"])
            index.add(res["ids"], [t or "" for t in res["documents"]])
        self._index = index
        self.rebuilds += 1
        self._save()
        logger.info("lexical index rebuilt: %d records in %.2fs (generation %d)", len(index),
                    time.perf_counter() - t0, generation)
        return index

    # -- called by the store around its writes -----------------------------------------------

    def upserted(self, generation: int, ids: Sequence[str], texts: Sequence[str]) -> None:
        """The store bumped to ``generation`` then upserted ``texts``: update a fresh in-memory index."""
        if self._follows(generation):
            self._index.add(ids, texts)
            self._index.generation = generation

    def deleted(self, generation: int, ids: Sequence[str]) -> None:
        """The store bumped to ``generation`` then deleted ``ids``."""
        if self._follows(generation):
            self._index.delete(ids)
            self._index.generation = generation

    def write_done(self) -> None:
        """End of one write call: persist the in-memory index (one save per add/delete call)."""
        if self._index is not None:
            self._save()

    def drop(self) -> None:
        """Forget the index and delete its file (the collection was dropped)."""
        self._index = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _follows(self, generation: int) -> bool:
        index = self._index
        if index is None:
            return False
        if index.generation == generation - 1:
            return True
        self._index = None  # someone else wrote in between: rebuild at the next search
        return False

    def _save(self) -> None:
        if self.path is None or self._index is None:
            return
        try:
            self._index.save(self.path)
        except OSError as exc:  # the index can always be rebuilt: a failed save costs time, not data
            logger.warning("could not save the lexical index to %s (%s); it will be rebuilt when needed",
                           self.path, exc)


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


def index_file(persist_directory: str | Path, collection_id: str) -> Path:
    """Where the lexical index of a collection of an embedded folder is kept by default."""
    return Path(persist_directory) / "medrag-lexical" / f"{collection_id}.npz"
