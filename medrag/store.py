"""A two-stage Chroma vector store: coarse Matryoshka search, full-size rerank.

Stage 1 asks Chroma's HNSW index (cosine) for ``candidates`` ids using the first
``coarse_dim`` coordinates of the query vector (64 by default; optionally after a projection
fitted on the first write, ``coarse_rotation``). Stage 2 scores those candidates exactly against
their full-size vectors and returns the top ``k``. The full vector of each record lives *in the
record itself* (packed into a reserved metadata key, int8 by default), so every client (another
process, a restart, a Chroma server) sees it and one upsert writes a record's coarse and full
vectors together; an embedded store also keeps a local SQLite copy of each record's vector, text
and metadata, so stage 1 asks Chroma for the candidates' ids only and stage 2 reads them locally.
``docs/store.md`` gives the measured reasons for this layout.

Example::

    >>> from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
    >>> store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(), persist_directory="./chroma")
    >>> store.add_texts(["La ferritine basse traduit une carence en fer."], ids=["fer"])
    ['fer']
    >>> [d.id for d in store.similarity_search("carence martiale", k=1)]
    ['fer']

The method examples (here and in the modules of its parts: ``_store_search.py``, ``_store_writes.py``...) use
such a ``store``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
from pathlib import Path
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from medrag.vector_codec import ENCODINGS
from medrag.coarse import CoarseProjection
from medrag._store_lock import DirectoryLock, WriteGuard, folder_write_lock, locked_error, opening_lock
from medrag._store_repair import VectorIndexRepair, segment_ids
from medrag._chroma_errors import translate_chroma_error
from medrag._chroma_client import (_empty, _fork_error, _hnsw_settings, _is_local_client, _persist_directory,
                                   _real_folder, _server_address)
from medrag.unicode_filters import MAX_WIDENED_VALUES, both_spellings, count_strings
from medrag._store_sidecar import SIDECAR_NAME, VectorSidecar
from medrag.embeddings import validate_texts
from medrag.encoder import is_encoder
from medrag.flags import check_flag
from medrag.errors import (CollectionMismatchError, DimensionError, InvalidArgumentError, InvalidInputError, MedragError,
                           StoreConnectionError, StoreError, checked_arguments)
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT, FUSION_METHODS, check_lexical_weight
from medrag.lexical.bm25 import check_index_path, remove_stale_temporaries
from medrag.lexical.sidecar import LexicalSidecar, index_file
# The parts of MatryoshkaChroma, one concern each (docs/architecture.md): the funnel and hybrid search, the writes,
# the coarse stage, the write generations, the vector-index repair.
from medrag._store_search import FunnelHit, FunnelResult, FunnelSearch
from medrag._store_writes import _PROGRESS_MIN, RecordWrites
from medrag._store_coarse import CoarseStage
from medrag._store_generation import WriteGenerations
from medrag._store_checks import (_LEGACY_HNSW_PREFIX, HYBRID_KWARGS, RETRIEVER_KWARGS, _check_collection_name,
                                  _check_documents, _check_hnsw, _check_ids, _check_int, _legacy_hnsw_metadata, _plain,
                                  _with_ids, check_metadata_key, check_search_sizes)
from medrag._store_contract import (AUTO_LEARNED_MIN_TEXTS, COMMITTED_KEY, CONTRACT_KEYS, DEFAULT_CANDIDATES,
                                    DEFAULT_COARSE_DIM, DEFAULT_COLLECTION, DEFAULT_EF_SEARCH, DEFAULT_FULL_ENCODING,
                                    FULL_KEY, GENERATION_KEY, ROTATION_KEY, ROTATIONS, STORE_SCHEMA_VERSION,
                                    UPDATABLE_HNSW, _C, _UNREPORTED_HNSW, _WRITTEN_KEYS, _default_change_hint,
                                    _describe_prompts, _document, _former_weights, _former_weights_hint, _moved_folder,
                                    _named_plain_identity, _plain_class, _plain_identity, _prompts_hint,
                                    _prompts_record, _unwrapped, _user_metadata, default_coarse_dim, recorded_prompts)

# chromadb (heavy: its client, errors and validators) and tqdm are imported where a store uses them.
if TYPE_CHECKING:
    import chromadb

logger = logging.getLogger(__name__)


#: Embedded Chroma clients are made, and their collections first opened, one at a time in a process:
#: chromadb 1.5 builds a local client's shared system lazily, and threads opening stores at once
#: (asyncio.gather of afrom_texts, a threaded server's first requests) all failed ("Could not connect
#: to tenant default_tenant", "'RustBindingsAPI' object has no attribute 'bindings'"), plain chromadb
#: too. A server's client (HttpClient) is not held by it: a slow server would stall every open.
_OPEN_GUARD = threading.RLock()
#: realpath of each embedded persist directory a store opened -> the pid of the process that opened
#: it first. A forked child inherits this table: an entry of another pid is a folder an ancestor
#: had open, whose cached Chroma client hangs in the child (a client anew on that folder too).
_OPENED_FOLDERS: dict[str, int] = {}


class MatryoshkaChroma(FunnelSearch, RecordWrites, CoarseStage, WriteGenerations, VectorIndexRepair, VectorStore):
    """Chroma vector store with Matryoshka funnel search (coarse HNSW, full-size rerank).

    Args:
        collection_name: the Chroma collection (created when missing).
        embedding_function: the embeddings. An encoder (:class:`medrag.encoder.MatryoshkaEncoder`:
            :class:`medrag.MatryoshkaEmbeddings`, :class:`medrag.PrecomputedEmbeddings`) is used
            through its numpy API (``encode_documents``/``encode_queries``: one model call per
            batch gives both sizes) and its ``spec``/``fingerprint`` are recorded. Any other LangChain ``Embeddings`` is accepted when its
            ``embed_documents``/``embed_query`` return *Matryoshka* vectors (whose leading
            coordinates are a usable embedding) of more than ``coarse_dim`` values: those vectors
            are the full size, their first ``coarse_dim`` values the coarse one.
        persist_directory: folder of an embedded ``chromadb.PersistentClient`` (with ``client``,
            refused unless it is that client's own folder); a relative one is resolved once, here, so the store keeps
            working in that folder after an ``os.chdir`` (a client of your own made with a
            relative path does not: Chroma reopens its files from that path).
        client: any chromadb client (``PersistentClient``, ``EphemeralClient``, ``HttpClient``).
            Neither ``client`` nor ``persist_directory``: an in-memory ``EphemeralClient``.
        coarse_dim: size of the stage-1 vectors kept in Chroma's HNSW index. None (default):
            what an existing collection recorded, and :data:`DEFAULT_COARSE_DIM` (64) for a new
            one (an existing collection built with another size used to be refused unless it
            was repeated here); half the full size for a model of 64 dims or fewer.
        candidates: stage-1 candidates per query (default :data:`DEFAULT_CANDIDATES`); each
            search may override it; never fewer than ``k`` are fetched.
        full_encoding: how the full vectors are packed into each record: ``"int8"``
            (``full_dim + 4`` bytes), ``"float16"`` or ``"float32"``. Fixed when the collection
            is created. None (default): what an existing collection recorded, and
            :data:`DEFAULT_FULL_ENCODING` (int8) for a new one; float16 keeps about 0.01 more of
            the exact top 10 at 400 candidates on large corpora, at up to twice the disk.
        deterministic_ids: when True, texts added without ids get an id derived from their
            content and metadata (:meth:`content_id`), so re-adding the same texts is a no-op.
        create_collection_if_not_exists: False to fail if the collection is missing.
        collection_metadata: extra collection metadata stored at creation. Chroma's legacy
            ``hnsw:*`` keys (``{"hnsw:space": "cosine"}``, as langchain-chroma users pass them)
            are read as the ``hnsw`` settings they stand for, not stored.
        hnsw: extra Chroma HNSW settings (``ef_search``, ``max_neighbors``...; the space is
            always cosine; ``ef_search`` defaults to :data:`DEFAULT_EF_SEARCH`, 400, for a new
            collection). On an existing collection, a setting of :data:`UPDATABLE_HNSW` that
            differs from the recorded one is changed in the collection (e.g. a larger
            ``ef_search`` for searches with more candidates; with an embedded client it takes
            effect in processes that have not searched the collection yet, so open the store
            with it before the first search; only the process that owns an embedded folder may
            change it, :class:`StoreLockedError` otherwise); a different ``max_neighbors`` or
            ``ef_construction`` raises :class:`CollectionMismatchError` (they are fixed when the
            graph is built: :meth:`reindex` into a new collection with them). Integer settings
            must be ints >= 1, ``resize_factor`` a number > 0.
        relevance_score_fn: maps a distance to a relevance score (default ``1 - distance``).
        coarse_rotation: ``"auto"`` (default: an existing collection's recorded choice; a new
            one decides on its first write, ``"learned"`` when it holds at least
            :data:`AUTO_LEARNED_MIN_TEXTS` texts (1,000), else ``"none"``), ``"none"`` (stage 1
            indexes the first ``coarse_dim`` coordinates), ``"pca"`` (the first
            ``coarse_dim`` principal components of the corpus's full vectors) or ``"learned"``
            (that PCA trained to rank the corpus for pseudo-queries, spans of the fitted texts
            encoded with the query prompt, like the full vectors do,
            :func:`medrag.coarse.fit_learned`; 10 steps for a model whose encoder says
            ``matryoshka_trained``, 150 for another: :func:`medrag.coarse.learned_steps`; 10 for
            the passages-as-queries fallback of :class:`~medrag.PrecomputedEmbeddings`): a fitted projection moves the information of a model
            that is *not* Matryoshka-trained into the coarse vector, and on a large corpus it helps
            the default model too (``"learned"``: 0.72 -> 0.84 recall@10 at coarse 64 / 100
            candidates on 16,384 French chunks, 0.98 at coarse 128). Fitted once, on
            ``rotation_sample`` when given, else on the first batch written (4,096 texts when
            there are that many; at least ``2 * coarse_dim`` texts for ``"pca"``,
            ``8 * coarse_dim`` for ``"learned"``); recorded in
            the collection contract with the fitted matrix. Refitting means ``reindex`` into a new
            collection. Measured reasons in ``docs/benchmarks.md``, "Coarse stage".
        rotation_sample: texts to fit the projection on (encoded with the document prompt; for
            ``"learned"``, spans of them with the query prompt too).
        vector_sidecar: keep a local SQLite copy of each record's packed full vector, text and
            metadata beside an embedded folder, and read the rerank's vectors and the returned
            texts from it, so that a query is one Chroma call (default: True for an embedded
            ``PersistentClient``; not available for servers). The records keep everything too;
            ``False`` saves the copy's disk (about the texts' size again) at the price of a second
            Chroma call per query (0.94 ms at 100,000 records: ``chroma_calls`` in
            ``benchmarks/results/synthetic_100k_384.json``).
            See ``docs/store.md``, "The rerank path", for the measured reason.
        lexical_analyzer: options of the French medical analyzer of the hybrid search's BM25
            index (:class:`medrag.lexical.analyzer.AnalyzerOptions`; default: the measured defaults).
        lexical_path: where to keep that index (default: beside an embedded store, in memory for
            an in-memory or server client). It is derived data, rebuilt from the records when
            missing, stale or built with another analyzer (:mod:`medrag.lexical.sidecar`). A folder,
            or an existing file that is not a lexical index, is refused (it would be overwritten).
        lexical_weight: default weight of the lexical side in :meth:`hybrid_search`: a number in
            [0, 1] (0 = dense only), or ``"auto"``: a weight per query, higher when BM25's best match
            holds the query's terms (:func:`medrag.lexical.fusion.query_weight`), and a query made
            mostly of codes (``3400936379848``, ``ATC N02BE01``) ranks the passages holding them first
            (an identifier lookup: :mod:`medrag.lexical.fusion`).
        fusion: default fusion of :meth:`hybrid_search`: ``"rrf"`` or ``"minmax"``.

    Raises:
        CollectionMismatchError: the collection was made by another tool, or with another
            model, full size, coarse size or encoding. Nothing is written in that case.
        DimensionError: ``coarse_dim`` is not below the model's full size.
    """

    def __init__(
        self,
        collection_name: str = DEFAULT_COLLECTION,
        embedding_function: Embeddings | None = None,
        persist_directory: str | None = None,
        client: "chromadb.ClientAPI | None" = None,
        coarse_dim: int | None = None,
        candidates: int | None = None,
        *,
        full_encoding: str | None = None,
        deterministic_ids: bool = True,
        create_collection_if_not_exists: bool = True,
        collection_metadata: dict[str, Any] | None = None,
        hnsw: dict[str, Any] | None = None,
        relevance_score_fn: Callable[[float], float] | None = None,
        vector_sidecar: bool | None = None,
        coarse_rotation: str = "auto",
        rotation_sample: Sequence[str] | None = None,
        lexical_analyzer: AnalyzerOptions | None = None,
        lexical_path: str | None = None,
        lexical_weight: float | str = DEFAULT_LEXICAL_WEIGHT,
        fusion: str = DEFAULT_FUSION,
        **kwargs: Any,
    ) -> None:
        import chromadb

        if kwargs:  # langchain-chroma's arguments a user porting code passes, with what replaces them
            hints = {"client_settings": "pass client=chromadb.HttpClient(...) or chromadb.PersistentClient(...)",
                     "embedding": "it is embedding_function=", "persist_dir": "it is persist_directory=",
                     "collection_configuration": "HNSW settings go in hnsw={...}",
                     "chroma_cloud_api_key": "pass client=chromadb.CloudClient(...)"}
            # langchain-chroma's server arguments: a bare "unexpected argument(s)" named no way to connect
            hints |= {k: f"pass client=chromadb.HttpClient({k}=...)" for k in
                      ("host", "port", "ssl", "headers", "tenant", "database")}
            named = "; ".join(f"{k}: {hints[k]}" for k in sorted(kwargs) if k in hints)
            raise InvalidArgumentError(f"unexpected argument(s) of MatryoshkaChroma(): {sorted(kwargs)}"
                                       + (f" ({named})" if named else ""))

        if embedding_function is None:
            raise InvalidInputError("MatryoshkaChroma needs an embedding_function (e.g. medrag.MatryoshkaEmbeddings())")
        if not is_encoder(embedding_function) and not (callable(getattr(embedding_function, "embed_query", None))
                                                       and callable(getattr(embedding_function, "embed_documents", None))):
            hint = (f" (for a model name, pass MatryoshkaEmbeddings({embedding_function!r}))"
                    if isinstance(embedding_function, str) else "")
            raise InvalidInputError("embedding_function must be LangChain embeddings (embed_query / embed_documents), "
                                    f"got {type(embedding_function).__name__}{hint}")
        if collection_metadata is not None and not isinstance(collection_metadata, dict):
            raise InvalidInputError(f"collection_metadata must be a dict or None, got {type(collection_metadata).__name__}")
        if relevance_score_fn is not None and not callable(relevance_score_fn):
            raise InvalidInputError("relevance_score_fn must be a function of the distance (e.g. lambda d: 1 - d), "
                                    f"got {relevance_score_fn!r}")
        deterministic_ids = check_flag("deterministic_ids", deterministic_ids)  # "false" is truthy: content ids, silently
        create_collection_if_not_exists = check_flag("create_collection_if_not_exists", create_collection_if_not_exists)
        vector_sidecar = check_flag("vector_sidecar", vector_sidecar, none=True)
        if lexical_path is not None and not isinstance(lexical_path, (str, os.PathLike)):
            raise InvalidInputError(f"lexical_path must be a path (str or os.PathLike) or None, got "
                                    f"{type(lexical_path).__name__}")
        if lexical_path is not None:  # a folder, or a file that is not an index (a user's, chroma.sqlite3)
            check_index_path(lexical_path)
        if full_encoding is not None and full_encoding not in ENCODINGS:
            raise InvalidInputError(f"full_encoding must be one of {ENCODINGS} or None, got {full_encoding!r}")
        if coarse_rotation not in (*ROTATIONS, "auto"):
            raise InvalidInputError(f"coarse_rotation must be one of {(*ROTATIONS, 'auto')}, got {coarse_rotation!r}")
        self._rotation_kind = coarse_rotation
        self._fit_progress = False  # set by add_texts while its progress bar shows (_encode_pseudo_queries)
        self._rotation_requested = coarse_rotation  # what reset_collection() starts again with
        self._rotation: CoarseProjection | None = None
        self._unconfirmed: tuple[str, str | None] | None = None  # the stage this store recorded (_confirm_coarse_stage)
        # (recorded, current): an earlier medrag's fingerprint of this model, replaced at this store's first write
        self._legacy_fingerprint: tuple[str, str] | None = None
        _check_collection_name(collection_name)
        collection_metadata, hnsw = _legacy_hnsw_metadata(collection_metadata, hnsw)
        hnsw = _check_hnsw(hnsw)
        if persist_directory is not None and not isinstance(persist_directory, (str, os.PathLike)):
            raise InvalidInputError(f"persist_directory must be a folder path (str or Path), got "
                                    f"{type(persist_directory).__name__}")
        self._pid = os.getpid()  # a forked child cannot use an embedded client (_check_process)
        folder = persist_directory if client is None else _persist_directory(client)
        if client is not None and persist_directory is not None and (folder is None or _real_folder(folder)
                                                                      != _real_folder(persist_directory)):
            # langchain-chroma ignores it: the records went to the client's store, not to the folder named
            raise InvalidInputError(
                f"persist_directory={os.fspath(persist_directory)!r} and a client "
                f"({'in-memory or a server' if folder is None else f'of the folder {_real_folder(folder)}'}) "
                "name two places: pass one of them")
        opener = _OPENED_FOLDERS.get(_real_folder(folder)) if folder else None
        if opener is not None and opener != self._pid:
            raise _fork_error(f"this process was forked from process {opener} after that process had opened the "
                              f"embedded Chroma store {folder}")
        if client is None:
            try:
                # absolute: Chroma opens its segment files lazily, so after an os.chdir a relative path
                # failed every write ('Failed to get segments') and the medrag files beside it moved
                with _OPEN_GUARD:
                    if persist_directory:
                        with opening_lock(Path(persist_directory).resolve()):  # one process creates it at a time
                            client = chromadb.PersistentClient(path=str(Path(persist_directory).resolve()))
                    else:
                        client = chromadb.EphemeralClient()
            except Exception as exc:
                if not persist_directory:
                    raise StoreError(f"cannot open an in-memory Chroma store: {exc}") from exc
                database = Path(persist_directory) / "chroma.sqlite3"
                try:
                    damaged = database.is_file() and database.read_bytes()[:16] != b"SQLite format 3\x00"
                except OSError:
                    damaged = False
                if damaged:
                    raise StoreError(f"cannot open the Chroma store in {persist_directory!r}: {database} is not a SQLite "
                                     "database (damaged, or not written by Chroma). Nothing was changed; restore the "
                                     "folder from a backup, or move it away and index again") from exc
                raise StoreError(f"cannot open a Chroma store in {persist_directory!r}: {exc}. "
                                 "persist_directory must be a writable folder (or a path where one can be made)") from exc
        self._client = client
        self._embedded = _is_local_client(client)
        self._lock: DirectoryLock | None = None
        persist = _persist_directory(client)
        if persist is not None:
            _OPENED_FOLDERS.setdefault(_real_folder(persist), self._pid)
        # a write's steps never interleave with another write of this process to the folder
        self._write_guard = folder_write_lock(persist) if persist is not None else WriteGuard()
        self._stop = threading.local()  # .event: the cancellation of the async write this thread runs
        if persist is not None:
            self._lock = DirectoryLock(persist)
            try:
                taken = self._take_lock()
            except StoreError as exc:  # a read-only folder: searches work, writes raise this error again
                logger.warning("%s. This store can search but not write.", exc)
                taken = True
            if not taken:
                logger.warning(
                    "another process (pid %s) has the embedded Chroma store %s open. Chroma's embedded client is "
                    "not multi-process safe: searches here may miss that process's writes, and this process may "
                    "not write. Run a Chroma server (chroma run --path %s) and connect every process with "
                    "chromadb.HttpClient.", self._lock.holder(), persist, persist)
        self._embedding = embedding_function
        # The store draws its own progress bar over a whole add; a MatryoshkaEmbeddings left on
        # its default (a bar per batch of >= 256 texts) is used through a quiet copy sharing the model.
        self._encoder: Any = embedding_function
        if getattr(embedding_function, "show_progress", False) is None and hasattr(embedding_function, "with_dimension"):
            self._encoder = embedding_function.with_dimension(embedding_function.dimension)
            self._encoder.show_progress = False
        self._full_dim = self._probe_full_dim(embedding_function)
        # what ``embeddings`` hands out: a MatryoshkaEmbeddings set to a smaller size gave query vectors
        # that this store's by-vector searches (which rerank at full size) refused
        self._full_embedding: Embeddings = embedding_function
        if hasattr(embedding_function, "with_dimension") and getattr(embedding_function, "dimension", None) not in (
                None, self._full_dim):
            self._full_embedding = embedding_function.with_dimension(self._full_dim)
        self._coarse_dim_given = coarse_dim is not None
        coarse_dim = (_check_int("coarse_dim", coarse_dim) if coarse_dim is not None
                      else default_coarse_dim(self._full_dim))
        if not 1 <= coarse_dim < self._full_dim:
            raise DimensionError(
                f"coarse_dim={coarse_dim} must be between 1 and the model's full size minus one "
                f"({self._full_dim - 1}); the funnel needs a smaller stage-1 vector"
                + ("" if self._coarse_dim_given else f" (a model of {self._full_dim} value(s) cannot have one)")
            )
        allowed = getattr(embedding_function, "dims", None)
        if allowed and coarse_dim not in allowed and self._coarse_dim_given:
            logger.warning("coarse_dim=%d is not a trained Matryoshka size of this model (%s): "
                           "stage-1 recall may drop", coarse_dim, allowed)
        self._coarse_dim = coarse_dim
        self._candidates = _check_int("candidates", candidates) if candidates is not None else DEFAULT_CANDIDATES
        if self._candidates < 1:
            raise InvalidInputError(f"candidates must be >= 1, got {self._candidates}")
        self._encoding = full_encoding
        self._deterministic_ids = bool(deterministic_ids)
        self._collection_name = collection_name
        self.override_relevance_score_fn = relevance_score_fn
        self._lexical_weight = check_lexical_weight(lexical_weight)
        if fusion not in FUSION_METHODS:
            raise InvalidInputError(f"fusion must be one of {FUSION_METHODS}, got {fusion!r}")
        self._fusion = fusion
        writer = persist is not None and self._lock is not None and self._lock.held
        if writer:
            self._finish_interrupted_repair()
        with _OPEN_GUARD if _is_local_client(client) else contextlib.nullcontext():
            self._collection = self._open_collection(collection_name, create_collection_if_not_exists,
                                                     collection_metadata, hnsw)
        self._cid = str(self._collection.id)
        if self._rotation_kind != "none":
            self._load_rotation()
        # a collection replaced (an empty one created again with this store's settings, or one whose
        # vector index was rebuilt): its vector copy and lexical index are dropped below
        broken_id = self._check_vector_index(persist, repair=writer) or self._replaced_id
        # the probe above loaded the index: its generation, or another process's writes (read even while this
        # process holds the lock: another process may have written while none of its stores held it)
        self._check_index_fresh(force=True)
        if self._rotation_kind != "none" and self._rotation is None and rotation_sample is not None:
            sample = validate_texts(rotation_sample)
            self._settle_coarse_stage(self._encode(sample, query=False), sample)
        self._sidecar: VectorSidecar | None = None
        self._other_copy: VectorSidecar | None = None  # see _forget_in_other_copy
        if vector_sidecar and persist is None:
            raise InvalidInputError("vector_sidecar=True needs an embedded persistent client (persist_directory=...)")
        if (vector_sidecar is None or vector_sidecar) and persist is not None and self._lock is not None \
                and self._lock.held:
            # another process owning the folder reads the vectors from the records instead
            self._sidecar = VectorSidecar(persist)
            if broken_id is not None:
                self._sidecar.drop(broken_id)
            self._sync_sidecar()
        self._lexical_path = lexical_path
        self._lexical = LexicalSidecar(self, lexical_analyzer, lexical_path)
        if broken_id is not None and persist is not None and lexical_path is None:
            index_file(persist, broken_id).unlink(missing_ok=True)  # the replaced collection's lexical index

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _probe_full_dim(embedding: Embeddings) -> int:
        if is_encoder(embedding):  # medrag.encoder.MatryoshkaEncoder: it says its full size
            return int(embedding.full_dim)
        # A plain Embeddings: its output size is the full size (one probe call).
        try:
            probe = embedding.embed_query("medrag dimension probe")
        except Exception as exc:  # noqa: BLE001 - an API's ConnectionError, a missing key: raw before
            raise MedragError(f"MatryoshkaChroma() calls {type(embedding).__name__}.embed_query once to learn the "
                              f"vector size, and it failed: {type(exc).__name__}: {exc}; check the embeddings "
                              "(API reachable, key set) and open the store again") from exc
        shape = np.shape(probe)
        if len(shape) != 1:  # a (1, d) array was "a vector of 1 values"
            raise DimensionError(f"{type(embedding).__name__}.embed_query returned an array of shape {shape}; it "
                                 "should return one vector (a list of floats)")
        return shape[0]

    @property
    def _model_identity(self) -> tuple[str, str]:
        emb = _unwrapped(self._embedding)
        if is_encoder(emb):
            spec = str(emb.spec)
            if not spec.startswith("bundled:") and Path(spec).expanduser().is_dir():
                # a relative folder ("out/ft1") did not load from another working folder (medrag search)
                spec = str(Path(spec).expanduser().resolve())
            return spec, str(emb.fingerprint)
        return _plain_identity(emb), ""  # a plain Embeddings has no fingerprint

    def _contract(self) -> dict[str, Any]:
        spec, fingerprint = self._model_identity
        contract = {
            _C["schema"]: STORE_SCHEMA_VERSION,
            _C["model"]: spec,
            _C["fingerprint"]: fingerprint,
            _C["full_dim"]: self._full_dim,
            _C["coarse_dim"]: self._coarse_dim,
            _C["distance"]: "cosine",
            _C["encoding"]: self._encoding,
            _C["rotation"]: self._rotation_kind,
        }
        prompts = _prompts_record(self._embedding)
        if prompts is not None:  # an encoder that says which prompts it puts before the texts
            contract[_C["prompts"]] = prompts
        return contract

    def _open_collection(self, name: str, create: bool, extra_metadata: dict[str, Any] | None,
                         hnsw: dict[str, Any] | None) -> "chromadb.Collection":
        from chromadb.errors import NotFoundError

        existing = self._created_collection = False
        self._replaced_id: str | None = None
        try:
            collection = self._client.get_collection(name=name, embedding_function=None)
            existing = True
        except (NotFoundError, ValueError) as exc:
            if not create:
                raise CollectionMismatchError(
                    f"collection {name!r} does not exist; pass create_collection_if_not_exists=True to create it"
                ) from exc
            self._check_writer()  # creating it is a write: refused while another process has the folder
            if self._encoding is None:
                self._encoding = DEFAULT_FULL_ENCODING
            metadata = {**(extra_metadata or {}), **self._contract(), GENERATION_KEY: 0}
            config = {"hnsw": {"ef_search": DEFAULT_EF_SEARCH, **(hnsw or {}), "space": "cosine"}}
            collection = self._chroma_call(
                "create the collection", self._client.get_or_create_collection,
                name=name, metadata=metadata, configuration=config, embedding_function=None
            )
            self._created_collection = True
        except Exception as exc:
            raise translate_chroma_error(exc, f"open collection {name!r}") from exc
        if existing:
            collection = self._renew_if_empty(collection, extra_metadata, hnsw)
            collection = self._reset_pending_coarse_stage(collection)
            self._adopt_recorded(collection.metadata or {})
        self._check_contract(collection)
        if existing and hnsw:  # a new collection was created with them
            self._update_hnsw(collection, hnsw)
        return collection

    def _update_hnsw(self, collection: "chromadb.Collection", hnsw: dict[str, Any]) -> None:
        """Apply the updatable ``hnsw`` settings that differ from what ``collection`` recorded; refuse
        the fixed ones (Chroma 1.5.9 records a new ``max_neighbors`` without rebuilding the graph, and
        rejects ``ef_construction``), and any change from a process that does not own the folder."""
        recorded = _hnsw_settings(collection)
        fixed = {k: v for k, v in hnsw.items() if k not in UPDATABLE_HNSW and k != "space" and recorded.get(k) != v}
        if fixed:
            raise CollectionMismatchError(
                f"collection {collection.name!r} was built with "
                + ", ".join(f"{k}={recorded.get(k)!r}" for k in fixed)
                + f", not {', '.join(f'{k}={v!r}' for k, v in fixed.items())}: these HNSW settings are fixed when "
                "the graph is built. Nothing was changed. Open it without them, or reindex into a new collection "
                "with MatryoshkaChroma.reindex(..., hnsw={...})."
            )
        changes = {k: v for k, v in hnsw.items()
                   if k in UPDATABLE_HNSW and (k in _UNREPORTED_HNSW or recorded.get(k) != v)}
        if not changes:
            return
        self._check_writer()  # another process owns the folder: nothing changed
        self._chroma_call("change the HNSW settings", collection.modify, configuration={"hnsw": changes})
        logger.info("collection %r: HNSW %s (was %s)", collection.name,
                    ", ".join(f"{k}={v!r}" for k, v in changes.items()),
                    ", ".join(f"{k}={recorded.get(k)!r}" for k in changes))

    def _reset_pending_coarse_stage(self, collection: "chromadb.Collection") -> "chromadb.Collection":
        """An *empty* collection whose fitted coarse stage (``"pca"``/``"learned"``) was never fitted
        (its first write failed, e.g. with too few texts to fit on), or whose ``"auto"`` stage is
        still undecided (nothing written yet), takes this store's ``coarse_rotation`` instead:
        nothing is stored under the old choice, which would otherwise refuse every later write with
        the same too-small batch, or refuse an explicit stage and ask to reindex an empty collection."""
        meta = collection.metadata or {}
        recorded = meta.get(_C["rotation"])
        if (_C["schema"] not in meta or recorded not in ("pca", "learned", "auto") or meta.get(ROTATION_KEY)
                or recorded == self._rotation_kind or (self._lock is not None and not self._lock.held)
                or self._chroma_call("count", collection.count) != 0):
            return collection
        # the rest of the contract first: a store refused for another model wrote nothing ("Nothing was written")
        reset = {**meta, _C["rotation"]: self._rotation_kind}
        self._adopt_recorded(reset)
        self._check_contract(SimpleNamespace(name=collection.name, configuration={"hnsw": _hnsw_settings(collection)},
                                             metadata=reset), record=False)
        self._chroma_call("record the coarse stage", collection.modify, metadata=reset)
        logger.info("collection %r is empty and its %s coarse stage was never %s: it now uses %r", collection.name,
                    recorded, "decided" if recorded == "auto" else "fitted", self._rotation_kind)
        return self._chroma_call("read the collection", self._client.get_collection, name=collection.name,
                                 embedding_function=None)

    def _renew_if_empty(self, collection: "chromadb.Collection", extra_metadata: dict[str, Any] | None,
                        hnsw: dict[str, Any] | None) -> "chromadb.Collection":
        """An existing medrag collection that holds no record and was made with other settings than
        this store's (another model, coarse size or encoding: a run killed before its first write,
        a store opened and never written to) is created again with this store's: nothing is stored
        under the old ones, which would otherwise refuse every open with these settings and ask to
        reindex an empty collection. Its own metadata keys and HNSW settings are kept. Only in an
        embedded folder this process owns (a server's other clients may be about to write to it),
        under the folder's write lock; another store of this process open on the collection must be
        opened again, as after :meth:`reset_collection`."""
        meta = collection.metadata or {}
        if _C["schema"] not in meta or self._lock is None or not self._lock.held:
            return collection
        asked = (self._coarse_dim, self._encoding, self._rotation_kind)
        try:  # as the open would check it: settings left out take the recorded ones; an unsettled coarse
            # stage is _reset_pending_coarse_stage's (it keeps the collection)
            self._adopt_recorded(meta)
            self._rotation_kind = meta.get(_C["rotation"], "none")
            self._check_contract(collection, record=False)
            return collection
        except CollectionMismatchError as exc:
            reason = str(exc).split(" does not match this store (", 1)[-1].split("). Nothing was written", 1)[0]
        finally:
            self._coarse_dim, self._encoding, self._rotation_kind = asked
        with self._write_guard:  # no write of another store of this process between the count and the delete
            try:
                if collection.count() != 0:
                    return collection
            except Exception:  # noqa: BLE001 - an unreadable vector index: the open's own checks report or repair it
                return collection
            return self._renew(collection, extra_metadata, hnsw, reason)

    def _renew(self, collection: "chromadb.Collection", extra_metadata: dict[str, Any] | None,
               hnsw: dict[str, Any] | None, reason: str) -> "chromadb.Collection":
        """Delete the empty ``collection`` and create it again with this store's settings (:meth:`_renew_if_empty`)."""
        meta = collection.metadata or {}
        self._adopt_recorded(meta)  # what was left out is kept
        name, persist = collection.name, _persist_directory(self._client)
        segments = segment_ids(persist, str(collection.id)) if persist is not None else []
        extra = {k: v for k, v in meta.items() if not k.startswith("medrag:")} | (extra_metadata or {})
        recorded = {k: v for k, v in _hnsw_settings(collection).items()
                    if v is not None and k != "space"}
        if self._encoding is None:
            self._encoding = DEFAULT_FULL_ENCODING
        self._chroma_call("delete the empty collection", self._client.delete_collection, name)
        if segments:
            self._remove_segment_folders(persist, segments)
        self._replaced_id = str(collection.id)
        renewed = self._chroma_call(
            "create the collection", self._client.create_collection, name=name,
            metadata={**extra, **self._contract(), GENERATION_KEY: 0},
            configuration={"hnsw": {"ef_search": DEFAULT_EF_SEARCH, **recorded, **(hnsw or {}), "space": "cosine"}},
            embedding_function=None)
        logger.warning("collection %r held no record and was made with other settings (%s): it was created again "
                       "with this store's", name, reason)
        return renewed

    def _adopt_recorded(self, meta: dict[str, Any]) -> None:
        """``coarse_dim=None``, ``full_encoding=None`` and ``coarse_rotation="auto"`` take what an
        existing collection recorded (an unknown value is left to :meth:`_check_contract` to report)."""
        recorded_dim = meta.get(_C["coarse_dim"])
        if (not self._coarse_dim_given and isinstance(recorded_dim, int) and not isinstance(recorded_dim, bool)
                and 1 <= recorded_dim < self._full_dim):
            self._coarse_dim = recorded_dim
        if self._encoding is None:
            recorded = meta.get(_C["encoding"])
            self._encoding = recorded if recorded in ENCODINGS else DEFAULT_FULL_ENCODING
        if self._rotation_kind == "auto" and _C["schema"] in meta:
            recorded = meta.get(_C["rotation"], "none")
            if recorded in (*ROTATIONS, "auto"):
                self._rotation_kind = recorded

    def _check_contract(self, collection: "chromadb.Collection", record: bool = True) -> None:
        meta = collection.metadata or {}
        name = collection.name
        if _C["schema"] not in meta:
            raise CollectionMismatchError(
                f"collection {name!r} was not created by MatryoshkaChroma (no medrag contract in its metadata; "
                "it may be a plain langchain-chroma collection). It is left untouched. Open another collection "
                f"name, or copy it with MatryoshkaChroma.reindex(client, {name!r}, 'new_name', embeddings)."
            )
        if meta[_C["schema"]] != STORE_SCHEMA_VERSION:
            raise CollectionMismatchError(
                f"collection {name!r} has store schema version {meta[_C['schema']]}, this medrag writes "
                f"{STORE_SCHEMA_VERSION}; reindex it into a new collection with MatryoshkaChroma.reindex"
            )
        expected = self._contract()
        problems = []
        for key in ("full_dim", "coarse_dim", "distance", "encoding", "rotation"):
            if meta.get(_C[key], "none" if key == "rotation" else None) != expected[_C[key]]:
                problems.append(f"{key}: collection has {meta.get(_C[key])!r}, this store {expected[_C[key]]!r}")
        stored_fp, fp = meta.get(_C["fingerprint"]) or "", expected[_C["fingerprint"]]
        # a store built by an earlier medrag recorded a plain Embeddings by its class name alone
        named_now = not fp and not stored_fp and _named_plain_identity(meta.get(_C["model"]), expected[_C["model"]])
        legacy = bool(fp and stored_fp and stored_fp != fp
                      and stored_fp in getattr(self._embedding, "legacy_fingerprints", ()))
        same_name, former = False, None
        if (stored_fp != fp and not legacy) or (not fp and not named_now and meta.get(_C["model"]) != expected[_C["model"]]):
            same_name = meta.get(_C["model"]) == expected[_C["model"]] and stored_fp and fp
            former = _former_weights(meta.get(_C["model"]), stored_fp) if same_name else None
            problems.append(
                f"model: collection was built with {meta.get(_C['model'])!r} (fingerprint {stored_fp or 'none'}), "
                f"this store uses {expected[_C['model']]!r} (fingerprint {fp or 'none'})"
                # a model of the same name whose weights differ: another version, or a damaged local copy,
                # where reindexing would rebuild the store with the damaged model
                + (f": this medrag ships new weights under that name; the collection's, the earlier ones, ship "
                   f"as {former!r}" if former else
                   ": the same name with other weights here (another version of the model, or a damaged "
                   "local copy: for a bundled model, delete its folder under $MEDRAG_CACHE/models and it is "
                   "rebuilt)" if same_name else
                   ": a plain Embeddings is recorded by its class and model name, so the same model under "
                   "another name (a tag such as ':latest') counts as another model: open it under the recorded name"
                   if not fp and not stored_fp and _plain_class(meta.get(_C["model"])) == _plain_class(expected[_C["model"]])
                   else "")
            )
        stored_prompts, prompts = meta.get(_C["prompts"]), expected.get(_C["prompts"])
        # a collection made before medrag recorded them is not checked, and records none on opening: the first
        # store to open it could be one with the wrong prompts, which would then refuse the right ones (review)
        prompts_differ = isinstance(stored_prompts, str) and prompts is not None and stored_prompts != prompts
        if prompts_differ:  # the same weights with other prompts give other vectors: a renamed e5 folder lost
            # "query: " / "passage: ", a model loaded by hand had none, and both wrote into the collection (user tryout)
            problems.append(f"prompts: the collection's vectors were encoded with {_describe_prompts(stored_prompts)}, "
                            f"this store's embeddings use {_describe_prompts(prompts)}")
        space = _hnsw_settings(collection).get("space")
        if space not in (None, "cosine"):
            problems.append(f"hnsw space: collection uses {space!r}, the store needs 'cosine'")
        if problems:
            raise CollectionMismatchError(
                f"collection {name!r} does not match this store ({'; '.join(problems)}). Nothing was written. "
                "Open it with the same model and sizes, or reindex into a new collection with MatryoshkaChroma.reindex."
                + (_former_weights_hint(former, name) if former else
                   _default_change_hint(meta.get(_C["model"]), expected[_C["model"]], name))
                + (_prompts_hint(stored_prompts) if prompts_differ else "")
            )
        if not record:  # a check only (before another change is written): the real open records
            return
        updates = {}
        # the same model, recorded by an earlier medrag: the current id is recorded by this store's first write,
        # not by its opening, so that a process that only reads (an upgraded search service) leaves the earlier
        # releases that write beside it working (they refuse the current id: upgrade tryout)
        self._legacy_fingerprint = (stored_fp, fp) if legacy else None
        recorded = meta.get(_C["model"])
        if named_now:  # from now on another model of the same class is told apart
            logger.info("collection %r recorded the embeddings class %r alone; recording %r",
                        name, recorded, expected[_C["model"]])
            updates[_C["model"]] = expected[_C["model"]]
        elif fp and recorded != expected[_C["model"]] and _former_weights(recorded, fp) == expected[_C["model"]]:
            # built with the earlier weights of a packaged model, opened with the spec that ships them now:
            # record that spec, so `medrag search`/`index` without --model load these weights from now on
            logger.info("collection %r recorded %r, whose earlier weights (this model's) now ship as %r; recording it",
                        name, recorded, expected[_C["model"]])
            updates[_C["model"]] = expected[_C["model"]]
        elif fp and recorded != expected[_C["model"]] and _moved_folder(recorded):
            # the same model (same fingerprint) from its new place: `medrag search`/`index` without
            # --model load the recorded spec, which would fail every time
            logger.info("collection %r recorded the model folder %s, which no longer exists; recording %r",
                        name, recorded, expected[_C["model"]])
            updates[_C["model"]] = expected[_C["model"]]
        if stored_prompts is None and prompts is not None:  # made before medrag recorded prompts, or from
            # precomputed vectors (upgrade tryout: nothing said the check was off)
            if self._lock is not None and self._lock.held and self._chroma_call("count", collection.count) == 0:
                # still empty (a run killed before its first write): what this store writes is all it will
                # hold, so its prompts are checked from now on. Only in an embedded folder this process owns:
                # two clients of a server could each record their own (as _renew_if_empty, review)
                logger.info("collection %r is empty and records no prompts; recording this store's", name)
                updates[_C["prompts"]] = prompts
            else:
                logger.info("collection %r records no prompts (made before medrag recorded them, or from "
                            "precomputed vectors): the prompts of what is written to it are not checked", name)
        if updates and (self._lock is None or self._lock.held):
            self._record(collection, updates)

    def _record(self, collection: "chromadb.Collection", updates: dict[str, str]) -> None:
        """Record ``updates`` of the model's identity (a fingerprint an earlier medrag computed, a moved
        model folder) in the collection's metadata, so that the same model opens it from now on."""
        try:
            meta = dict(collection.metadata or {})
            meta.update(updates)
            collection.modify(metadata=meta)
        except Exception as exc:  # noqa: BLE001 - this store works without it; only later openings differ
            logger.warning("could not record %s in collection %r (%s); it keeps the earlier values",
                           ", ".join(updates), collection.name, exc)

    # ------------------------------------------------------------------ crash recovery

    def _delete_if_exists(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        try:
            _empty(self._client.get_collection(name), self._max_batch())
            self._client.delete_collection(name)
        except (NotFoundError, ValueError):
            pass
        except Exception as exc:
            raise translate_chroma_error(exc, f"delete collection {name!r}", name) from exc

    # ------------------------------------------------------------------ properties

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings this store encodes texts and queries with, at the full size the store
        reranks with: ``store.similarity_search_by_vector(store.embeddings.embed_query(q))`` works. For
        a ``MatryoshkaEmbeddings`` built with a smaller ``dimension`` this is a full-size copy sharing
        its model (the store ignores ``dimension``)."""
        return self._full_embedding

    @property
    def client(self) -> "chromadb.ClientAPI":
        """The chromadb client."""
        return self._client

    @property
    def collection(self) -> "chromadb.Collection":
        """The underlying Chroma collection (records carry a reserved ``_medrag_full`` metadata key)."""
        return self._collection

    @property
    def full_dim(self) -> int:
        """Size of the stage-2 (rerank) vectors: the model's full size."""
        return self._full_dim

    @property
    def coarse_dim(self) -> int:
        """Size of the stage-1 vectors in Chroma's HNSW index."""
        return self._coarse_dim

    @property
    def coarse_rotation(self) -> str:
        """The stage-1 projection: ``"none"`` (the first ``coarse_dim`` coordinates), ``"pca"`` or
        ``"learned"``; ``"auto"`` while a new collection waits for its first write to decide."""
        return self._rotation_kind

    @property
    def rotation_fitted(self) -> bool:
        """False while a ``"pca"``, ``"learned"`` or ``"auto"`` stage waits for the first write to be fitted on."""
        return self._rotation_kind == "none" or self._rotation is not None

    @property
    def candidates(self) -> int:
        """Default number of stage-1 candidates per query."""
        return self._candidates

    def __len__(self) -> int:
        return self._chroma_call("count", self._collection.count)

    def __repr__(self) -> str:
        # no Chroma call: a repr in a log line or a debugger must not fail on a server that went away
        persist = _persist_directory(self._client)
        where = (f"persist_directory={persist!r}" if persist is not None
                 else "client='in-memory'" if self._embedded else f"server={_server_address(self._client)!r}")
        return (f"MatryoshkaChroma(collection={self._collection_name!r}, model={self._model_identity[0]!r}, "
                f"full_dim={self._full_dim}, coarse_dim={self._coarse_dim}, coarse_rotation={self._rotation_kind!r}, "
                f"candidates={self._candidates}, {where})")

    def close(self) -> None:
        """Release this store's hold on an embedded persist directory's lock (also done when the
        store is garbage-collected); the store can still read afterwards."""
        if self._lock is not None:
            self._lock.release()
        for copy in (self._sidecar, self._other_copy):
            if copy is not None:
                copy.close()
        # a later write (it takes the lock again) no longer updates the folder's copy, which other
        # stores of this process may read: it removes the written ids' rows from it instead
        self._sidecar = self._other_copy = None

    def __enter__(self) -> "MatryoshkaChroma":
        """``with MatryoshkaChroma(...) as store:`` closes the store (:meth:`close`) at the block's end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ encoding


    # ------------------------------------------------------------------ writing

    @checked_arguments
    def delete_collection(self) -> None:
        """Drop the whole Chroma collection, its lexical index file and its vector copy; the store is
        unusable afterwards, except for :meth:`reset_collection`. With an embedded persistent client the
        collection's vector-index folders are removed too (chromadb 1.5 leaves them on disk, and they
        hold the whole HNSW index). A second call is a no-op, and so is the Chroma part when another
        store object or client deleted the collection first: its vector copy and lexical index here
        are dropped all the same (they held its texts)."""
        if getattr(self, "_deleted", False):
            return
        self._check_writer()
        with self._write_guard:
            gone = not self._collection_exists()
            # deleted elsewhere: the settings this store opened it with (user tryout: reset_collection failed)
            self._recreate_with = self._recreation_settings((self._collection.metadata or {}) if gone else None)
            persist = _persist_directory(self._client)
            segments: list[str] = []
            if persist is not None:
                try:
                    segments = segment_ids(persist, self._cid)
                except Exception as exc:  # noqa: BLE001 - sqlite3 errors: the folders then stay, as Chroma leaves them
                    logger.warning("could not list the index folders of collection %r (%s); they stay in %s",
                                   self._collection_name, exc, persist)
            if not gone:
                self._chroma_call("empty the collection", _empty, self._collection, self._max_batch())
                self._chroma_call("delete the collection", self._client.delete_collection, self._collection_name)
            for copy in (self._sidecar, self._other_copy):
                if copy is not None:
                    copy.drop(self._cid)
            self._lexical.drop()
            self._deleted = True
            if segments:
                self._remove_segment_folders(persist, segments)

    @checked_arguments
    def reset_collection(self) -> None:
        """Delete every record and start the collection again, empty, with the same settings
        (langchain-chroma's ``reset_collection``): the model contract, the coarse size, the full-vector
        encoding, the HNSW settings and your own ``collection_metadata`` keys are kept. A fitted
        coarse stage is not: the store's ``coarse_rotation`` (``"auto"`` by default) is fitted or
        decided again on the next first write, as for a new collection. Also makes a store usable
        again after :meth:`delete_collection` (then with the settings it had).

        Other stores open on the same collection (other processes, server clients) must be opened
        again: the collection they hold was deleted. When another client had already deleted this
        store's collection and created a new one of the same name (a re-index on a server), this
        store opens that one as it is, its records kept (they are another client's): to empty it,
        call ``reset_collection()`` again.

        Raises:
            StoreLockedError: another process has the embedded persist directory open; nothing was deleted.

        Example::

            >>> store.add_texts(["Ferritine basse : carence en fer."], ids=["fer"])
            ['fer']
            >>> store.reset_collection()
            >>> len(store)
            0
        """
        self._check_writer()
        with self._write_guard:
            if not getattr(self, "_deleted", False):
                self.delete_collection()  # also when another store object or client deleted it first
            settings = self._recreate_with
            extra, hnsw = settings
            self._rotation_kind = self._rotation_requested
            self._rotation = None
            self._unconfirmed = None
            self._collection = self._open_collection(self._collection_name, True, extra, hnsw)
            self._deleted = False
            self._cid = str(self._collection.id)
            if self._rotation_kind != "none":
                self._load_rotation()
            if self._sidecar is not None:
                self._rebuild_sidecar_if_stale()
            self._lexical = LexicalSidecar(self, self._lexical.options, self._lexical_path)
        logger.info("collection %r reset: empty, coarse stage %r", self._collection_name, self._rotation_kind)

    def _recreation_settings(self, metadata: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The collection's own metadata keys (not medrag's contract nor Chroma's legacy ``hnsw:*``)
        and its HNSW settings, as :meth:`reset_collection` creates it again with them (``metadata``:
        the collection's as this store opened it; default: as stored now)."""
        metadata = self._current_metadata() if metadata is None else metadata
        extra = {k: v for k, v in metadata.items() if not k.startswith(("medrag:", _LEGACY_HNSW_PREFIX))}
        recorded = _hnsw_settings(self._collection)
        hnsw = {k: v for k, v in recorded.items() if v is not None and k != "space"}
        return extra, hnsw

    # ------------------------------------------------------------------ reading

    @checked_arguments
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents with these ids, in the order asked; unknown ids are skipped.

        Args:
            ids: the ids to fetch.
        """
        ids = list(dict.fromkeys(_check_ids(ids)))
        if not ids:
            return []
        found: dict[str, Document] = {}
        max_batch = self._max_batch()
        for start in range(0, len(ids), max_batch):
            res = self._chroma_call("read records", self._collection.get, ids=ids[start : start + max_batch],
                                    include=["documents", "metadatas"])
            for id_, text, md in zip(res["ids"], res["documents"], res["metadatas"]):
                found[id_] = _document(id_, text, md)
        return [found[i] for i in ids if i in found]

    @checked_arguments
    def get(self, ids: Sequence[str] | None = None, where: dict[str, Any] | None = None,
            limit: int | None = None, offset: int | None = None, where_document: dict[str, Any] | None = None,
            include: Sequence[str] | None = None, unicode_spellings: bool = True) -> dict[str, Any]:
        """Records by id and/or filter, as langchain-chroma's ``Chroma.get``: a dict with Chroma's keys,
        ``ids`` and the ``include``-d fields (default ``documents`` and ``metadatas``; a field not
        included is None, as in Chroma's result). ``embeddings`` are the full-size
        stored vectors (a float32 array, one row per id), not the coarse ones Chroma's index holds; the
        metadatas leave out medrag's reserved keys.

        Example::

            store.get(where={"source": "leaflet"}, limit=10)["ids"]

        Args:
            ids: the ids to read (None: every record, or those matching the filters).
            where: a Chroma metadata filter.
            limit: at most this many records.
            offset: skip this many records first.
            where_document: a Chroma document filter (``{"$contains": "..."}``).
            include: any of ``"documents"``, ``"metadatas"``, ``"embeddings"``.
            unicode_spellings: a filter's strings match both their Unicode spellings (NFC, NFD); False:
                as written (:meth:`delete`).

        Raises:
            InvalidInputError: a bare string for ``ids``, an unknown ``include`` field, a negative limit
                or offset, or a filter Chroma rejects.
        """
        fields = ["documents", "metadatas"] if include is None else list(include)
        if isinstance(include, str) or any(f not in ("documents", "metadatas", "embeddings") for f in fields):
            raise InvalidInputError(f"include must be a list of 'documents', 'metadatas' and 'embeddings', got {include!r}")
        for name, value in (("limit", limit), ("offset", offset)):
            if value is not None and _check_int(name, value) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {value!r}")
        read = functools.partial(self._chroma_call, "read records", self._collection.get, where=where or None,
                                 where_document=where_document or None, include=["documents", "metadatas"],
                                 user_filters=check_flag("unicode_spellings", unicode_spellings))
        if ids is None:
            res = read(limit=limit, offset=offset)
            found = list(zip(res["ids"], res["documents"], res["metadatas"]))
        else:  # in batches (one get of tens of thousands of ids exceeds SQLite's variable limit)
            wanted = list(dict.fromkeys(_check_ids(ids)))
            max_batch = self._max_batch()
            found = []
            for start in range(0, len(wanted), max_batch):
                res = read(ids=wanted[start : start + max_batch])
                found += zip(res["ids"], res["documents"], res["metadatas"])
            found = found[offset or 0:][:limit]
        # Chroma's GetResult keys, a field not included being None (as langchain-chroma returns it)
        out: dict[str, Any] = {"ids": [f[0] for f in found], "embeddings": None, "documents": None, "uris": None,
                               "included": fields, "data": None, "metadatas": None}
        if "documents" in fields:
            out["documents"] = [f[1] for f in found]
        if "metadatas" in fields:
            out["metadatas"] = [_user_metadata(f[2]) for f in found]
        if "embeddings" in fields:
            out["embeddings"] = (self.get_full_vectors(out["ids"]) if out["ids"]
                                 else np.zeros((0, self._full_dim), dtype=np.float32))
        return out

    # ------------------------------------------------------------------ search core


    def _max_batch(self) -> int:
        """The client's largest batch: records per write, ids per read (Chroma caches it)."""
        return int(self._chroma_call("read the batch size", self._client.get_max_batch_size))

    def _chroma_call(self, what: str, fn: Callable[..., Any], *args: Any, user_filters: bool = False,
                     **kwargs: Any) -> Any:
        """Call the Chroma client; turn its failures into :class:`MedragError` subclasses. Filters
        (``where``, ``where_document``) reach Chroma with numpy scalars as Python ones, as writes store them;
        ``user_filters``: they are a caller's, whose strings match both their Unicode spellings
        (:mod:`medrag.unicode_filters`; medrag's own lookups by document key stay exact)."""
        self._check_process()
        given: dict[str, Any] = {}
        for key in ("where", "where_document"):
            if kwargs.get(key) is not None:
                kwargs[key] = given[key] = _plain(kwargs[key])
                if user_filters:
                    kwargs[key] = both_spellings(kwargs[key], document=key == "where_document")
        widened = any(kwargs[k] != v for k, v in given.items())
        if widened and sum(count_strings(kwargs[k]) for k in given) > MAX_WIDENED_VALUES:
            widened = False
            logger.warning("a filter of %d strings: used as given, without the other Unicode spelling of its "
                           "accented ones (a query of more than %d values is refused by SQLite); split it to match "
                           "both", sum(count_strings(v) for v in given.values()), MAX_WIDENED_VALUES)
            kwargs |= given
        try:
            return fn(*args, **kwargs)
        except MedragError:
            raise
        except Exception as exc:
            if widened and isinstance(translate_chroma_error(exc, what), InvalidInputError):
                # a filter Chroma refuses: refused again as the caller wrote it, so its message shows their
                # filter, not the widened one ("got {'p': {'$in': ['Hélène', 'Hélène']}}": review)
                return self._chroma_call(what, fn, *args, **{**kwargs, **given})
            if getattr(self, "_deleted", False):
                raise CollectionMismatchError(
                    f"could not {what}: collection {self._collection_name!r} was deleted by this store's "
                    "delete_collection(); call reset_collection() (or create a new MatryoshkaChroma) to start again") from exc
            raise translate_chroma_error(exc, what, self._collection_name,
                                         _persist_directory(self._client)) from exc

    # ------------------------------------------------------------------ LangChain search API

    # ------------------------------------------------------------------ hybrid search


    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        collection_name: str = DEFAULT_COLLECTION,
        persist_directory: str | None = None,
        client: "chromadb.ClientAPI | None" = None,
        **kwargs: Any,
    ) -> "MatryoshkaChroma":
        """Create (or open) a store and add ``texts`` to it.

        Args:
            texts: the texts.
            embedding: the embeddings (see the class).
            metadatas: one metadata dict per text.
            ids: one id per text (positional too, as langchain-chroma takes it).
            collection_name / persist_directory / client: as in the constructor.
            **kwargs: :meth:`add_texts`' ``batch_size``, ``show_progress`` and ``skip_existing``, and
                the other constructor arguments (``coarse_dim``, ``candidates``...).
        """
        writing = {key: kwargs.pop(key) for key in ("batch_size", "show_progress", "skip_existing") if key in kwargs}
        store = cls(collection_name, embedding, persist_directory, client, **kwargs)
        try:
            store.add_texts(texts, metadatas, ids=ids, **writing)
        except BaseException:
            # a rejected call left an empty collection whose recorded settings refused the corrected call
            store._drop_if_created_empty()
            raise
        return store

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Add LangChain documents (:meth:`add_texts` with their texts, metadata and ids).

        Args:
            documents: ``Document`` objects; a document's ``id``, when any document has one, is its
                record id (an ``ids=`` argument takes precedence).
            **kwargs: :meth:`add_texts`' keyword arguments (``ids``, ``batch_size``...).
        """
        return super().add_documents(_check_documents(documents), **kwargs)

    @classmethod
    def from_documents(cls, documents: list[Document], embedding: Embeddings, ids: list[str] | None = None,
                       **kwargs: Any) -> "MatryoshkaChroma":
        """:meth:`from_texts` with the documents' texts, metadata and ids (see :meth:`add_documents`;
        ``ids``, positional too as langchain-chroma takes it, take precedence)."""
        return super().from_documents(_check_documents(documents), embedding, **_with_ids(ids, kwargs))

    @classmethod
    async def afrom_documents(cls, documents: list[Document], embedding: Embeddings, ids: list[str] | None = None,
                              **kwargs: Any) -> "MatryoshkaChroma":
        """:meth:`from_documents`, run in an executor."""
        return await super().afrom_documents(_check_documents(documents), embedding, **_with_ids(ids, kwargs))

    def _drop_if_created_empty(self) -> bool:
        """Delete the collection if this object created it and nothing was written to it; say whether
        it did. Called while an error is being raised (that error is the one to report: a failure
        here is only logged)."""
        if not self._created_collection:
            return False
        try:
            count = len(self)
        except Exception as exc:  # the server lost: nothing can be checked, nor deleted; say only that
            logger.warning("could not check whether the collection %r this call created holds records (%s); "
                           "it was left as it is (what was written stays: re-run to complete it)",
                           self._collection_name, exc)
            return False
        if count:
            return False
        try:
            self.delete_collection()
            logger.info("the empty collection %r this call created was deleted", self._collection_name)
            return True
        except Exception as exc:
            logger.warning("could not delete the empty collection %r this call created: %s", self._collection_name, exc)
        return False

    @classmethod
    def reindex(
        cls,
        client: "chromadb.ClientAPI",
        source_collection: str,
        collection_name: str,
        embedding_function: Embeddings,
        *,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> "MatryoshkaChroma":
        """Copy the texts, metadatas and ids of any Chroma collection (a plain langchain-chroma
        one, or a medrag one made with another model) into a new MatryoshkaChroma collection,
        re-encoding every text. The source is only read; its records that :meth:`add_texts` would
        refuse (empty, only whitespace or invisible characters, the model's prompt alone) are
        skipped with a warning naming their ids.

        Args:
            client: the chromadb client holding both collections.
            source_collection: the collection to read.
            collection_name: the new collection (must not exist yet, or be a matching medrag one).
            embedding_function: the embeddings of the new store.
            batch_size: records read and written per step.
            **kwargs: other constructor arguments.
        """
        if source_collection == collection_name:
            raise InvalidInputError("reindex needs a new collection name; the source collection is never modified")
        if not callable(getattr(client, "get_collection", None)):
            raise InvalidInputError(f"client must be a chromadb client (e.g. chromadb.PersistentClient(path=...)), "
                                    f"got {type(client).__name__}")
        batch_size = _check_int("batch_size", batch_size)
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        try:
            source = client.get_collection(source_collection, embedding_function=None)
        except Exception as exc:
            err = translate_chroma_error(exc, "open the source collection", source_collection)
            if isinstance(err, StoreConnectionError):
                raise err from exc
            raise InvalidInputError(f"cannot read the source collection {source_collection!r}: {exc}") from exc
        store = cls(collection_name, embedding_function, client=client, **kwargs)
        try:
            store._copy_from(source, source_collection, batch_size)
        except BaseException:
            store._drop_if_created_empty()  # a first write refused (e.g. a zero vector) left an empty collection
            raise
        return store

    def _encodable(self, text: Any) -> bool:
        """Whether :meth:`add_texts` takes ``text``, by its own checks: a source record that it would
        refuse (a blank page that langchain-chroma stored, ``"passage: "`` alone) is skipped by
        :meth:`reindex`, which refused the whole migration on it (user tryout)."""
        check = getattr(self._encoder, "check_texts", None) or validate_texts
        try:
            check([text])
        except InvalidInputError:
            return False
        return True

    def _copy_from(self, source: "chromadb.Collection", source_collection: str, batch_size: int) -> None:
        """:meth:`reindex`'s copy loop: every record of ``source`` re-encoded into this store.

        The source is read by pages of offsets: another client writing to it during the copy can make
        a page skip records (a delete shifts the offsets), and a record deleted after it was copied
        stays here. The source's record count (and, for a medrag source, its write generation) is
        compared before and after; a change is a warning that says to reindex again, into a new
        collection, once nobody writes to the source. A source gone by the end is a warning too:
        every record was read."""
        def read_source(fn: Callable[..., Any], **kwargs: Any) -> Any:
            try:
                return fn(**kwargs)
            except Exception as exc:  # a lost server, a source dropped by another client: the source's name
                raise translate_chroma_error(exc, "read the source collection", source_collection) from exc

        def source_state() -> tuple[int, Any]:
            return read_source(source.count), (source.metadata or {}).get(GENERATION_KEY)

        total, before = source_state()
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"reindex {source_collection}", unit="record", disable=total < _PROGRESS_MIN)
        offset = 0
        dropped: set[str] = set()
        while offset < total:
            size = self.next_write_size(batch_size)
            res = read_source(source.get, limit=size, offset=offset, include=["documents", "metadatas"])
            offset += size
            bar.update(len(res["ids"]))
            keep = [i for i, text in enumerate(res["documents"]) if self._encodable(text)]
            metas = []
            for i in keep:
                md = res["metadatas"][i] or {}
                reserved = [k for k in md if k.startswith("_medrag")]
                dropped.update(k for k in reserved if k not in _WRITTEN_KEYS)
                metas.append({k: v for k, v in md.items() if k not in reserved})
            self.add_texts([res["documents"][i] for i in keep], metas, ids=[res["ids"][i] for i in keep],
                            show_progress=False)
            if len(keep) < len(res["ids"]):
                skipped = [res["ids"][i] for i in sorted(set(range(len(res["ids"]))) - set(keep))]
                logger.warning("reindex skipped %d record(s) of %r without text to encode (empty, only whitespace or "
                               "invisible characters, or only the model's prompt): %s%s", len(skipped),
                               source_collection, skipped[:5], " ..." if len(skipped) > 5 else "")
        bar.close()
        if dropped:
            logger.warning("reindex dropped the metadata key(s) %s of %r: keys starting with '_medrag' are reserved "
                           "by medrag; rename them in the source to keep them", sorted(dropped), source_collection)
        try:
            source = self._client.get_collection(source_collection, embedding_function=None)  # fresh metadata
            after = source_state()
        except Exception as exc:  # noqa: BLE001 - the copy is done: its check cannot be, which is said
            logger.warning("reindex copied %d record(s) of %r but could not read the source again to check that "
                           "no client changed it during the copy (%s)", total, source_collection, exc)
            return
        if after != (total, before):
            logger.warning("the source collection %r changed during the copy (%d records at its start, %d now%s): "
                           "records written meanwhile may be missing here and records deleted meanwhile may remain; "
                           "reindex it again, into a new collection, once no client writes to it", source_collection,
                           total, after[0], "; another client wrote to it" if after[1] != before else "")


def _name_as_store_methods(cls: type) -> None:
    """Name the methods of ``cls``'s parts (the mixins of ``medrag/_store_*.py``) as ``cls``'s own:
    Python's and medrag's argument errors, ``help()`` and tracebacks name ``MatryoshkaChroma.get_full_vectors``,
    not ``FunnelSearch.get_full_vectors``, a class users never meet (review of the split)."""
    for part in cls.__mro__[1:]:
        if not part.__module__.startswith("medrag._store_"):
            continue
        for attr, member in vars(part).items():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            functions = [getattr(member, side, None) for side in ("fget", "fset", "fdel")] \
                if isinstance(member, property) else [member]
            for function in functions:
                while inspect.isfunction(function):  # a decorated method, then the function it wraps
                    function.__qualname__ = f"{cls.__name__}.{attr}"
                    if hasattr(function.__code__, "co_qualname"):  # Python >= 3.11 names the code's in TypeErrors
                        function.__code__ = function.__code__.replace(co_qualname=function.__qualname__)
                    function = getattr(function, "__wrapped__", None)


_name_as_store_methods(MatryoshkaChroma)


def drop_collection(persist_directory: str | os.PathLike[str], name: str) -> bool:
    """Drop the collection ``name`` of an embedded folder with what medrag keeps beside it (its rows
    of the vector copy, its lexical index file, its HNSW folders), whatever model built it (a store
    object needs that model: :meth:`MatryoshkaChroma.delete_collection` is the way for an open store).
    Returns whether it existed.

    Raises:
        StoreLockedError: another process has the folder open (nothing is deleted).
    """
    import chromadb

    folder = Path(persist_directory)
    if not folder.is_dir():
        return False
    lock = DirectoryLock(folder)
    if not lock.acquire():
        raise locked_error(folder.resolve(), lock.holder())
    try:
        client = chromadb.PersistentClient(path=str(folder.resolve()))
        found = [c for c in client.list_collections() if c.name == name]
        if not found:
            return False
        cid = str(found[0].id)
        try:
            segments = segment_ids(str(folder.resolve()), cid)
        except Exception:  # noqa: BLE001 - sqlite3 errors: the folders then stay, as Chroma leaves them
            segments = []
        with folder_write_lock(folder.resolve()):
            _empty(found[0], client.get_max_batch_size())
            client.delete_collection(name)
            if (folder / SIDECAR_NAME).is_file():
                copy = VectorSidecar(folder)
                try:
                    copy.drop(cid)
                finally:
                    copy.close()
            index_file(folder, cid).unlink(missing_ok=True)
            remove_stale_temporaries(index_file(folder, cid), older_than=0)
            MatryoshkaChroma._remove_segment_folders(str(folder.resolve()), segments)
        return True
    finally:
        lock.release()


__all__ = ["MatryoshkaChroma", "FunnelHit", "FunnelResult", "drop_collection", "AUTO_LEARNED_MIN_TEXTS",
           "DEFAULT_CANDIDATES", "DEFAULT_COARSE_DIM", "DEFAULT_EF_SEARCH", "COMMITTED_KEY", "CONTRACT_KEYS",
           "DEFAULT_FULL_ENCODING", "FULL_KEY", "GENERATION_KEY", "ROTATION_KEY", "ROTATIONS", "STORE_SCHEMA_VERSION",
           "HYBRID_KWARGS", "RETRIEVER_KWARGS", "check_metadata_key", "check_search_sizes", "default_coarse_dim",
           "recorded_prompts"]
