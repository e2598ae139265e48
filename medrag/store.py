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

The method examples below use such a ``store``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import math
import numbers
import os
import re
import sqlite3
import threading
import time
import weakref
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from medrag.vector_codec import ENCODINGS, encoded_size, pack_rows, unpack_rows
from medrag.coarse import (LEARNED_STEPS, CoarseProjection, fit_learned, fit_pca, fit_sample_size, learned_steps,
                           min_vectors, pseudo_queries, sample_indices)
from medrag._store_lock import (DirectoryLock, WriteGuard, folder_write_lock, held_in_this_process, locked_error,
                                opening_lock)
from medrag._store_repair import (COMPLETE_KEY, REPAIR_SUFFIX, is_missing_id, is_vector_index_failure, latest_ids,
                                  read_records, segment_ids)
from medrag._chroma_errors import translate_chroma_error
from medrag.unicode_filters import MAX_WIDENED_VALUES, both_spellings, count_strings
from medrag._store_sidecar import SIDECAR_NAME, VectorSidecar
from medrag.embeddings import check_utf8 as _check_utf8, validate_texts
from medrag.encoding import stderr_is_terminal
from medrag.text_checks import is_blank
from medrag.encoder import is_encoder
from medrag.precomputed import PrecomputedEmbeddings
from medrag.flags import check_flag
from medrag.errors import (CollectionMismatchError, DimensionError, InvalidArgumentError, InvalidInputError, MedragError,
                           StoreConnectionError, StoreError, _WriteStopped, checked_arguments)
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT, FUSION_METHODS, check_lexical_weight
from medrag.lexical.bm25 import check_index_path, remove_stale_temporaries
from medrag.lexical.hybrid import hybrid_candidates
from medrag.lexical.sidecar import LexicalSidecar, index_file
from medrag.retriever import MatryoshkaRetriever

# chromadb (heavy: its client, errors and validators) and tqdm are imported where a store uses them.
if TYPE_CHECKING:
    import chromadb

logger = logging.getLogger(__name__)

#: Version of the record and collection layout written by this module.
STORE_SCHEMA_VERSION = 1
#: Metadata key holding each record's packed full-size vector (never shown to users).
FULL_KEY = "_medrag_full"
#: Collection-metadata keys of the contract.
_C = {
    "schema": "medrag:schema",
    "model": "medrag:model",
    "fingerprint": "medrag:fingerprint",
    "full_dim": "medrag:full_dim",
    "coarse_dim": "medrag:coarse_dim",
    "distance": "medrag:distance",
    "encoding": "medrag:full_encoding",
    "rotation": "medrag:coarse_rotation",
    "prompts": "medrag:prompts",
}
#: The contract's collection-metadata keys, by name (e.g. ``CONTRACT_KEYS["model"]``: the model spec).
CONTRACT_KEYS = _C
#: Collection-metadata key of a fitted coarse rotation (base64 float32: mean, then components).
ROTATION_KEY = "medrag:rotation_data"
#: Coarse stages: ``"none"`` (the first ``coarse_dim`` coordinates) or a fitted projection
#: (:mod:`medrag.coarse`): ``"pca"`` or ``"learned"``.
ROTATIONS = ("none", "pca", "learned")
#: ``coarse_rotation="auto"`` (the default) on a new collection is decided on its first write (or
#: ``rotation_sample``): ``"learned"`` when that holds at least this many texts (and the learned
#: fit's minimum, ``8 * coarse_dim``), else ``"none"``; then recorded like an explicit choice. A
#: learned stage fitted on 1,000 French chunks lifted recall@10 at coarse 64 / 100 candidates from
#: 0.72 to 0.81 for the default model and from 0.37 to 0.65 for the base e5-small on 16,384 chunks;
#: on a smaller corpus the candidates are a large share of it and the raw prefix loses little.
AUTO_LEARNED_MIN_TEXTS = 1000
#: How a new collection stores the full vectors when ``full_encoding`` is not given. int8 over
#: float16: float16 gained 0.01 recall@10 at 400 candidates in real stores of French chunks (int8
#: swaps near ties at rank 10) but took 1,145 instead of 626 MB on disk at 100,000 records of 384
#: dims (its 1,024-character base64 string overflows SQLite's index pages; docs/benchmarks.md,
#: "Store defaults").
DEFAULT_FULL_ENCODING = "int8"
#: Chroma HNSW ``ef_search`` of a new collection when ``hnsw`` does not set it. Chroma's own
#: default (100) answers a 100-candidate query with an approximate top 100 that misses true
#: neighbours: -0.07 recall@10 at coarse 128 on French chunks (docs/benchmarks.md).
DEFAULT_EF_SEARCH = 400
#: Collection-metadata key of the write generation (see :attr:`MatryoshkaChroma.write_generation`).
GENERATION_KEY = "medrag:generation"
#: Collection-metadata key of the last write generation whose write has landed (see
#: :meth:`MatryoshkaChroma.generation_state`); absent in collections made before it (then the generation).
COMMITTED_KEY = "medrag:committed"
#: Chroma HNSW settings that an existing collection can change (``collection.modify``); the others
#: (``max_neighbors``, ``ef_construction``, ``space``) are fixed when the graph is built.
UPDATABLE_HNSW = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
_HNSW_SETTINGS = (*UPDATABLE_HNSW, "max_neighbors", "ef_construction", "space")
#: Of these, the ones Chroma does not report in ``collection.configuration`` (1.5.9): applied when
#: given, never compared.
_UNREPORTED_HNSW = ("num_threads", "batch_size")
#: Stage-1 candidates when neither the constructor nor the call says. Provisional: a trade-off of
#: recall against latency (which grows linearly with it), measured on the embedded e5-small in
#: ``docs/benchmarks.md``; choose per model from the benchmark's candidates/coarse table
#: (``benchmarks/store_benchmark.py run``).
DEFAULT_CANDIDATES = 100
#: Stage-1 (HNSW) size: e5's smallest trained Matryoshka size.
DEFAULT_COARSE_DIM = 64
DEFAULT_COLLECTION = "medrag"
_WRITE_BATCH = 1000
_PROGRESS_MIN = 1000
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
#: With a progress bar, a write's texts are encoded this many at a time, so the bar moves during a
#: long first write (the coarse stage is fitted on 4,096 texts written as one batch: minutes on a CPU).
_PROGRESS_SLICE = 256
#: An async write's texts are encoded this many at a time (or the encoder's ``batch_size``), and it
#: stops between two slices when its task is cancelled (:meth:`MatryoshkaChroma.aadd_texts`); a model
#: encodes one call at a time, and a service's search waited for a whole write batch (up to 4,096
#: texts: 13-18 s on 2 cores for 600) behind it (user tryout). A sync write makes one call per batch
#: (an API embedder batches its requests; the truncation warning counts the whole batch).
_SHARE_SLICE = 64

#: The most results one Chroma query is asked for (its Rust binding takes an unsigned 32-bit count).
_MAX_RESULTS = 2**32 - 1
#: The metadata keys medrag writes into records itself (``reindex`` drops them from a source silently).
_WRITTEN_KEYS = frozenset({FULL_KEY})
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

#: (persist directory, collection id) -> the write generation that this process's Chroma vector index
#: holds. Chroma's embedded client loads a collection's HNSW index once per process and never sees
#: another process's later writes (a store closed, then written by another process): searches then
#: miss those records, while ``len`` and ``get`` count them.
_INDEX_GENERATION: dict[tuple[str, str], int] = {}
#: The (key, generation) pairs warned about: once each (generations only grow, so an index is stale
#: exactly while the collection's generation is not the one recorded above).
_INDEX_WARNED: set[tuple[str, str, int]] = set()
_INDEX_GUARD = threading.Lock()
#: Chroma's collection-name rule (checked here so a bad name fails with a clear message).
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class FunnelHit:
    """One result of :meth:`MatryoshkaChroma.search_with_stages`.

    Attributes:
        document: the document (internal storage stripped from its metadata).
        score: cosine of the full-size vectors (the rerank score; higher is closer).
        coarse_score: cosine of the coarse vectors (stage 1).
        coarse_rank: 1-based rank among the stage-1 candidates (0: a hybrid search's
            lexical-only candidate, which stage 1's HNSW did not return; its coarse_score is NaN).
        lexical_score: BM25 score (hybrid search only; NaN when the document shares no term with the query).
        lexical_rank: 1-based BM25 rank among the candidates (hybrid search only; 0: no shared term).
        fused_score: the fused score the hybrid ranking is sorted by (hybrid search only).
    """

    document: Document
    score: float
    coarse_score: float
    coarse_rank: int
    lexical_score: float | None = None
    lexical_rank: int | None = None
    fused_score: float | None = None


@dataclass(frozen=True)
class FunnelResult:
    """Hits, best first, the number of stage-1 candidates, and per-stage milliseconds
    (``embed_ms``, ``coarse_ms``: stage 1, ``rerank_ms``: reading the candidates' full vectors
    and scoring them, ``fetch_ms``: reading the texts of the returned hits; a hybrid search adds
    ``lexical_ms``: the BM25 side, and ``fusion_ms``: fusing both sides' scores), and for a hybrid
    search the lexical weight fused (the one ``"auto"`` chose for this query) and, for an
    identifier lookup with ``"auto"``, how many candidates held all its codes and came first
    (``lookup``, :func:`medrag.lexical.fusion.fused_ranking`), and the query words no document
    holds that BM25 scored as a held term one edit away (``read_as``: ``(word, term)`` pairs, e.g.
    ``("cortisol", "cortison")`` in a store holding cortisone but not cortisol; typing errors and
    correct words the store lacks alike: :attr:`medrag.lexical.bm25.QueryScores.read_as`)."""

    hits: list[FunnelHit]
    candidates: int
    timings: dict[str, float]
    lexical_weight: float | None = None
    lookup: int = 0
    read_as: tuple[tuple[str, str], ...] = ()


class MatryoshkaChroma(VectorStore):
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

    def _delete_if_exists(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        try:
            _empty(self._client.get_collection(name), self._max_batch())
            self._client.delete_collection(name)
        except (NotFoundError, ValueError):
            pass
        except Exception as exc:
            raise translate_chroma_error(exc, f"delete collection {name!r}", name) from exc

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

    @property
    def lexical_weight(self) -> float | str:
        """Default weight of the lexical side in :meth:`hybrid_search` (0 = dense only; ``"auto"``: per query)."""
        return self._lexical_weight

    @property
    def lexical(self) -> LexicalSidecar:
        """The hybrid search's lexical index manager (``store.lexical.index()`` gives a fresh BM25 index)."""
        return self._lexical

    # ------------------------------------------------------------------ encoding

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        self._check_process()
        emb = self._encoder
        if is_encoder(emb):
            rows = emb.encode_queries(texts) if query else emb.encode_documents(texts)
        elif query:
            rows = [emb.embed_query(t) for t in texts]
        else:
            rows = emb.embed_documents(texts)
        vecs = _vector_rows(rows, self._full_dim)
        if vecs.ndim != 2 or vecs.shape != (len(texts), self._full_dim):
            raise DimensionError(
                f"the embeddings returned shape {vecs.shape}, expected ({len(texts)}, {self._full_dim})"
            )
        if not np.isfinite(vecs).all():
            raise MedragError("the embeddings returned NaN or infinite values")
        # the norms in float64: valid float32 vectors of huge or tiny values (1e20, 1e-25) overflowed to inf or
        # underflowed to 0 in float32 and were refused as "all-zero vectors" (user tryout)
        norms = np.linalg.norm(vecs.astype(np.float64), axis=1, keepdims=True)
        return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)  # float32, as vecs

    def _encode_pseudo_queries(self, queries: list[str]) -> np.ndarray:
        """The learned coarse fit's pseudo-queries encoded as queries (as documents for LangChain
        embeddings, which have no batch query call), with a progress bar of their own when the write
        shows one: encoding them is most of the fit's time (a minute for 1,000 texts on 2 cores)."""
        query = is_encoder(self._encoder)
        if not self._fit_progress:
            return self._encode(queries, query=query)
        from tqdm.auto import tqdm

        logger.info("fitting the learned coarse stage of %r (once per collection): encoding %d pseudo-queries",
                    self._collection_name, len(queries))
        with tqdm(total=len(queries), desc=f"coarse stage of {self._collection_name} (once)", unit="query") as bar:
            return self._encode_in_slices(queries, query=query, progress=bar.update)

    def _encode_in_slices(self, texts: list[str], *, query: bool, progress: Callable[[int], Any] | None) -> np.ndarray:
        """:meth:`_encode`: in one call; with ``progress``, one call per :data:`_PROGRESS_SLICE` texts,
        each reported to ``progress``; in an async write, one call per :data:`_SHARE_SLICE` texts (the
        encoder's ``batch_size`` if larger: a GPU user's larger batch keeps its throughput), and a
        cancelled one stops between two slices (:meth:`aadd_texts`), before its batch is written."""
        sliced = progress is not None or getattr(self._stop, "event", None) is not None
        if not texts or not sliced:
            return self._encode(texts, query=query)
        step = max(_PROGRESS_SLICE if progress is not None else _SHARE_SLICE,
                   int(getattr(self._encoder, "batch_size", 0) or 0))
        parts = []
        for start in range(0, len(texts), step):
            self._check_stop()
            parts.append(self._encode(texts[start:start + step], query=query))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts)

    def _check_stop(self) -> None:
        """Stop the write this thread runs for a cancelled :meth:`aadd_texts` (:class:`_WriteStopped`)."""
        event = getattr(self._stop, "event", None)
        if event is not None and event.is_set():
            raise _WriteStopped

    def _load_rotation(self) -> None:
        """Read a fitted rotation from the collection metadata (None while not fitted yet); an
        ``"auto"`` store first takes the kind another client decided, if one has."""
        meta = self._current_metadata()
        self._adopt_recorded(meta)
        data = meta.get(ROTATION_KEY)
        if not data or self._rotation_kind == "none":
            return
        try:
            self._rotation = CoarseProjection.from_bytes(base64.b64decode(data, validate=True), self._full_dim,
                                                         self._coarse_dim)
        except (ValueError, TypeError, CollectionMismatchError) as exc:
            raise CollectionMismatchError(f"the coarse projection stored in collection {self._collection_name!r} is "
                                          "corrupt; reindex into a new collection") from exc

    @property
    def _auto_needed(self) -> int:
        """Texts the first write of an ``"auto"`` store needs to decide ``"learned"``."""
        return max(AUTO_LEARNED_MIN_TEXTS, min_vectors("learned", self._coarse_dim))

    def _settle_coarse_stage(self, full: np.ndarray, texts: list[str]) -> None:
        """The first write (or ``rotation_sample``) fits the pending coarse stage, or decides
        ``"auto"``, unless another client of the collection did first; under the folder's write
        lock, so that no other write of this process reads it half-decided."""
        with self._write_guard:
            self._load_rotation()
            if self._rotation_kind != "none" and self._rotation is None:
                self._check_writer()  # recording the fitted stage is a write (rotation_sample= in a non-holder)
                self._fit_or_resolve(full, texts)

    @checked_arguments
    def next_write_size(self, batch_size: int) -> int:
        """How many texts the next write should hold: ``batch_size``, or, while the coarse stage
        waits for the first write to be fitted on (or decided, ``"auto"``),
        :func:`medrag.coarse.fit_sample_size` texts (4,096) when that is more. ``add_texts`` sizes
        its first write so; callers that stream texts in (``index_corpus``, :meth:`reindex`)
        gather that many before their first call.

        Args:
            batch_size: texts per write once the coarse stage is fitted (an int >= 1).
        """
        batch_size = _check_int("batch_size", batch_size)
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if self.rotation_fitted:
            return batch_size
        return max(batch_size, fit_sample_size(self._rotation_kind, self._coarse_dim))

    def _fit_or_resolve(self, full: np.ndarray, texts: list[str]) -> None:
        """Fit the pending projection on ``texts``; ``"auto"`` first decides which (see
        :data:`AUTO_LEARNED_MIN_TEXTS`) and records ``"none"`` like a fitted projection."""
        if self._rotation_kind != "auto":
            self._fit_rotation(full, texts)
            return
        needed = self._auto_needed
        kind = "learned" if len(full) >= needed else "none"
        logger.info("coarse_rotation='auto' on %r: %s (the first write holds %d texts; 'learned' needs %d%s)",
                    self._collection_name, kind, len(full), needed,
                    "" if kind == "learned" else ": for a large corpus, write it in one call (LangChain's index(): "
                    "batch_size=4096) or pass rotation_sample=")
        try:
            if kind == "learned":
                self._rotation_kind = kind
                self._fit_rotation(full, texts)
                return
            meta = self._current_metadata()
            if meta.get(_C["rotation"], "none") != "auto":  # another client decided first: use theirs
                self._load_rotation()
                if self._rotation_kind == "learned" and self._rotation is None:  # decided, not recorded yet
                    raise StoreError(f"another client is fitting the coarse stage of {self._collection_name!r}; "
                                     "retry the write")
                return
            meta[_C["rotation"]] = "none"
            self._chroma_call("record the coarse stage", self._collection.modify, metadata=meta)
            self._rotation_kind = "none"  # only once recorded: no record is written under an unrecorded stage
            self._unconfirmed = ("none", None)  # checked after the next write
        except BaseException:
            if self._rotation is None:
                self._rotation_kind = "auto"  # nothing recorded: the next write decides again
            raise

    def _fit_rotation(self, full: np.ndarray, texts: list[str]) -> None:
        """Fit the coarse projection on the full vectors of ``texts`` and record it in the contract
        (before any write). A learned one is fitted for the queries the store will see:
        :func:`medrag.coarse.pseudo_queries` of the texts it fits on, encoded with the query prompt
        (one batch call for a :class:`~medrag.encoder.MatryoshkaEncoder`; LangChain embeddings, which
        have no batch query call, embed them as documents; :class:`~medrag.PrecomputedEmbeddings`
        without a fallback cannot encode them, and the passages serve as queries)."""
        needed = min_vectors(self._rotation_kind, self._coarse_dim)
        if len(full) < needed:
            raise InvalidInputError(
                f"coarse_rotation={self._rotation_kind!r} is fitted on the first batch written, which has {len(full)} "
                f"texts; it needs at least {needed}. Add more texts at once, pass rotation_sample=, or use "
                "coarse_rotation='auto' (medrag index --coarse-rotation auto), which falls back to the raw prefix "
                "for a small first write; an empty collection takes the new setting"
            )
        if self._rotation_kind == "pca":
            rotation = fit_pca(full, self._coarse_dim)
        else:
            keep = sample_indices(len(texts))  # the rows fit_learned uses, and their texts
            full, texts = full[keep], [texts[i] for i in keep]
            try:
                queries = self._encode_pseudo_queries(pseudo_queries(texts))
            except InvalidInputError:  # only vectors looked up by text may lack the spans'
                if not (isinstance(self._encoder, PrecomputedEmbeddings) and self._encoder.fallback is None):
                    raise
                logger.warning("PrecomputedEmbeddings without a fallback has no query vectors for the "
                               "pseudo-queries of the learned coarse fit (medrag.coarse.pseudo_queries): the "
                               "passages serve as queries instead (lower recall measured); pass fallback= the "
                               "model that made the vectors, or give it the spans' query vectors")
                queries = None
            # the steps per model kind were chosen for pseudo-queries; the passages-as-queries
            # objective keeps its own 10 (more degraded it: docs/benchmarks.md, "Coarse stage")
            steps = (LEARNED_STEPS if queries is None
                     else learned_steps(bool(getattr(self._embedding, "matryoshka_trained", False))))
            rotation = fit_learned(full, self._coarse_dim, queries=queries, steps=steps)
        meta = self._current_metadata()
        if meta.get(ROTATION_KEY):  # another client fitted it first: use theirs
            self._load_rotation()
            return
        if meta.get(_C["rotation"], "none") == "none":  # another "auto" client decided "none" first
            self._rotation_kind = "none"
            return
        meta[ROTATION_KEY] = base64.b64encode(rotation.to_bytes()).decode()
        meta[_C["rotation"]] = self._rotation_kind
        self._chroma_call("record the coarse projection", self._collection.modify, metadata=meta)
        self._rotation = rotation
        self._unconfirmed = (self._rotation_kind, meta[ROTATION_KEY])  # checked after the next write
        logger.info("fitted the %s-%d coarse projection of %r on %d vectors", self._rotation_kind, self._coarse_dim,
                    self._collection_name, len(full))

    def coarse_vectors(self, full: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """The stage-1 vectors this store indexes and searches with for full-size vectors: the first
        :attr:`coarse_dim` coordinates, or the collection's fitted projection (:attr:`coarse_rotation`),
        unit length. An exact numpy copy of the funnel (``evaluation.store_eval``) ranks with these.

        Args:
            full: ``(n, full_dim)`` full-size vectors (a single vector as ``(full_dim,)`` too).

        Raises:
            DimensionError: the vectors are not of the store's full size.
            InvalidInputError: a ``"pca"`` or ``"learned"`` stage not fitted yet (nothing written).
        """
        try:
            arr = np.asarray(full, dtype=np.float32)
        except (TypeError, ValueError) as exc:  # ragged rows, text
            raise DimensionError(f"coarse_vectors takes an (n, {self._full_dim}) array of numbers: {exc}") from None
        single = arr.ndim == 1
        arr = arr[None, :] if single else arr
        if arr.ndim != 2 or arr.shape[1] != self._full_dim:
            raise DimensionError(f"coarse_vectors takes vectors of the store's full size {self._full_dim}, got an "
                                 f"array of shape {np.shape(full)}")
        out = self._coarse(arr)
        return out[0] if single else out

    def _coarse(self, full: np.ndarray) -> np.ndarray:
        if self._rotation_kind != "none" and self._rotation is None:
            self._load_rotation()
        if self._rotation is not None:
            return self._rotation.project(full)
        if self._rotation_kind in ("pca", "learned"):
            raise InvalidInputError(f"collection {self._collection_name!r} uses a {self._rotation_kind} coarse stage "
                                    "that is not fitted yet: add texts first (or pass rotation_sample=)")
        # "none", or "auto" before the first write decided: nothing is stored that a projection indexed
        out = np.array(full[:, : self._coarse_dim], dtype=np.float32, copy=True, order="C")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    # ------------------------------------------------------------------ writing

    @staticmethod
    def content_id(text: str, metadata: dict[str, Any] | None = None) -> str:
        """A deterministic id for a text and its metadata (SHA-256 based, 32 hex chars).

        ``None`` values count as absent keys, as Chroma stores them: ``{"page": None}`` and ``{}``
        are one record (they were two ids, so re-adding a text without its empty field stored it
        twice); numpy values (a pandas row's) count as the Python values :meth:`add_texts` stores.

        Raises:
            InvalidInputError: ``text`` is not a str, or ``metadata`` not a dict.
        """
        if not isinstance(text, str):
            raise InvalidInputError(f"content_id takes the text (a str), got {type(text).__name__}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputError(f"content_id takes the metadata as a dict or None, got {type(metadata).__name__}")
        kept = {k: _plain(v) for k, v in (metadata or {}).items() if v is not None}  # np.int64(3) is stored as 3
        return _content_hash(text, kept)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        skip_existing: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Encode texts once and write them (coarse vector + packed full vector per record).

        The whole call is validated before the first write (texts, ids, metadata keys and
        values as Chroma checks them, batch size; errors name the index in the call): a
        rejected call changes nothing stored. An existing id is *replaced*: text, vectors and
        metadata (keys absent from the new metadata are removed, as langchain-chroma does); when
        its text is unchanged it keeps its stored vectors, unencoded, so a metadata-only change
        costs no model call.
        When the same id appears twice in one call, the last one wins.

        **Idempotent ingest.** Texts added without ids get a content id
        (:meth:`content_id`: SHA-256 of text and metadata; ``deterministic_ids=False`` gives
        random UUIDs instead). A content id that is already stored holds this very text and
        metadata, so it is skipped *without being encoded*; ``skip_existing=True`` does the
        same for caller ids (resuming an ingest keyed by your own ids). Re-running an
        interrupted ingest therefore neither duplicates nor re-encodes what was stored.

        Writing goes batch by batch: a failure during a later batch (the model or Chroma
        raising, embeddings that return an all-zero vector, which only encoding reveals, the
        process killed) leaves the earlier batches stored, each record complete.

        Example::

            >>> ids = store.add_texts(["Ferritine basse.", "CRP élevée."], [{"src": "cours"}] * 2)
            >>> store.add_texts(["Ferritine basse.", "CRP élevée."], [{"src": "cours"}] * 2) == ids
            True

        Args:
            texts: the texts (non-empty strings).
            metadatas: one metadata dict per text (values as Chroma accepts: str, int, float,
                bool, None or non-empty lists of one of those types; floats finite). Keys may not
                be empty, start with ``$`` or ``#``, or start with ``_medrag`` (reserved).
            ids: one id per text (``None`` entries or no list: content ids, or random UUIDs with
                ``deterministic_ids=False``).
            batch_size: texts encoded (one model call) and upserted (one Chroma call) together;
                default 1,000, capped by the client's ``get_max_batch_size()``. While a fitted
                coarse projection waits for its first write, the first batch holds
                :func:`medrag.coarse.fit_sample_size` texts (4,096) to fit it on.
            show_progress: tqdm progress bar (default: for 1,000 texts or more, when stderr is a
                terminal); with it, texts
                are encoded 256 at a time so that it moves during a large batch.
            skip_existing: skip caller ids already stored (content ids are always skipped).

        Returns:
            The ids, in the order of ``texts``.

        Raises:
            InvalidInputError: empty or non-UTF-8 text (or one that is only the model's prompt),
                length mismatch, invalid metadata or id, bad ``batch_size``; an all-zero vector
                from the embeddings (that batch is not written).
            StoreLockedError: another process has this embedded persist directory open.
            StoreConnectionError: the Chroma server could not be reached.
        """
        _no_extra(kwargs, "add_texts()")
        skip_existing = check_flag("skip_existing", skip_existing)  # "false" skipped the update in silence
        check_flag("show_progress", show_progress, none=True)
        # a blank text named by its index in this call only: LangChain's index() adds in batches of 100, so a
        # blank page 130 of a PDF loader's documents was "index 30" (user tryout): its id and source too
        texts = validate_texts(texts, one_text_hint="wrap a single text in a list: [text]",
                               describe=lambda i: _entry_names(i, ids, metadatas),
                               blank_hint="; leave empty documents out before adding them (LangChain: "
                                          "[d for d in docs if d.page_content.strip()]): nothing was written")
        check = getattr(self._encoder, "check_texts", None)  # what the model cannot encode ("passage: " alone)
        if callable(check):
            check(texts)
        n = len(texts)
        batch = _WRITE_BATCH if batch_size is None else _check_int("batch_size", batch_size)
        if batch < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch}")
        if metadatas is None:
            metadatas = [{} for _ in texts]
        if isinstance(metadatas, dict):
            raise InvalidInputError("metadatas must be a list with one dict per text, got one dict")
        if hasattr(metadatas, "to_dict") and hasattr(metadatas, "columns"):  # iterating it gave its column names
            raise InvalidInputError("metadatas must be a list with one dict per text, got a DataFrame: pass "
                                    "df.to_dict('records')")
        metadatas = list(metadatas)
        if len(metadatas) != n:
            raise InvalidInputError(f"got {len(metadatas)} metadatas for {n} texts")
        if ids is not None and not isinstance(ids, (str, bytes)):
            ids = list(ids)  # once: an iterator of ids read here for the errors' names was empty below
        named = ids if isinstance(ids, list) else []
        for i, md in enumerate(metadatas):  # named by its id too: a pandas user looks for the doc_id, not a position
            metadatas[i] = _check_metadata(md, i, named[i] if i < len(named) and isinstance(named[i], str) else None)
        if ids is None:
            ids = [None] * n  # type: ignore[list-item]
        if isinstance(ids, (str, bytes)):
            raise InvalidInputError(f"ids must be a list with one id per text, not a bare string: write [{ids!r}]")
        ids = list(ids)
        if len(ids) != n:
            raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
        generated = [id_ is None for id_ in ids]
        for i, id_ in enumerate(ids):
            if id_ is None:
                ids[i] = self.content_id(texts[i], metadatas[i]) if self._deterministic_ids else str(uuid.uuid4())
            elif not isinstance(id_, str) or not id_:
                raise InvalidInputError(f"id at index {i} must be a non-empty string, got {id_!r}" + (
                    " (ids from a column of numbers: pass them as text, df['id'].astype(str).tolist())"
                    if isinstance(id_, numbers.Number) and not isinstance(id_, bool) else ""))
            else:
                _check_utf8(id_, f"id at index {i}")
                _check_no_nul(id_, i)
                ids[i] = str(id_)  # numpy's np.str_ (ids from an array) as plain str
        if n == 0:
            return []
        if self._deterministic_ids:
            self._keep_legacy_content_ids(ids, texts, metadatas, generated)
        self._check_writer()
        # Upsert semantics inside one call too: the last occurrence of an id wins.
        last = {id_: i for i, id_ in enumerate(ids)}
        order = [i for i, id_ in enumerate(ids) if last[id_] == i]
        repeated = [i for i, id_ in enumerate(ids) if last[id_] != i and not generated[i]]
        if repeated:  # a doc_id twice in an export is a data problem: one of the rows was lost in silence (user tryout)
            logger.warning("%d id(s) given more than once in this call (e.g. %r at indexes %d and %d): the last "
                           "text of each is stored, the earlier ones are not", len({ids[i] for i in repeated}),
                           ids[repeated[0]], repeated[0], last[ids[repeated[0]]])
        skippable = {i for i in order if skip_existing or (generated[i] and self._deterministic_ids)}

        max_batch = self._max_batch()
        batch = min(batch, max_batch)
        show = show_progress if show_progress is not None else len(order) >= _PROGRESS_MIN and stderr_is_terminal()
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc=f"adding to {self._collection_name}", unit="text")
        self._fit_progress = bar is not None  # the learned coarse fit shows its own bar (it took a silent minute)
        # a coarse projection still to fit is fitted on the first batch, whatever batch_size ("auto":
        # when this call holds enough texts to decide "learned"; else it decides "none" on the first batch)
        auto_none = self._rotation_kind == "auto" and len(order) < self._auto_needed
        size = batch if auto_none else min(self.next_write_size(batch), max_batch)
        try:
            start = 0
            while start < len(order):
                self._check_stop()
                idx = order[start : start + size]
                stored = self._stored_metadatas([ids[i] for i in idx])
                # a content id is skipped only while it holds its text and metadata (update_documents
                # may have rewritten it); a caller id with skip_existing whenever it is stored
                recheck = [ids[i] for i in idx if i in skippable and generated[i] and ids[i] in stored]
                stored_texts = self._stored_texts(recheck) if recheck else {}
                todo = [i for i in idx if not (i in skippable and ids[i] in stored and (
                    not generated[i] or (stored_texts.get(ids[i]) == texts[i]
                                         and _same_metadata(stored[ids[i]], metadatas[i]))))]
                encoded = self._write(todo, ids, texts, metadatas, stored,
                                      progress=None if bar is None else bar.update) if todo else 0
                if bar is not None and len(idx) > encoded:
                    bar.update(len(idx) - encoded)
                start, size = start + len(idx), batch
        finally:
            if bar is not None:
                bar.close()
            self._fit_progress = False
            self._lexical.write_done()
        return ids

    def _keep_legacy_content_ids(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]],
                                 generated: list[bool]) -> None:
        """Until December 4 a content id hashed ``None`` metadata values too: a record stored under
        such an id keeps it (it is then skipped as unchanged) instead of being stored a second time."""
        legacy = [(i, _content_hash(texts[i], metadatas[i])) for i, new in enumerate(generated)
                  if new and any(v is None for v in metadatas[i].values())]
        if not legacy:  # the common case: no None value, no read
            return
        step = self._max_batch()
        for start in range(0, len(legacy), step):
            chunk = legacy[start:start + step]
            found = self._stored_metadatas([old for _, old in chunk])
            for i, old in chunk:
                if old in found:
                    ids[i] = old

    def _stored_metadatas(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The metadata of those ids that are already stored (one Chroma ``get``)."""
        res = self._chroma_call("read existing records", self._collection.get, ids=ids, include=["metadatas"])
        return {id_: md or {} for id_, md in zip(res["ids"], res["metadatas"])}

    def _stored_texts(self, ids: list[str]) -> dict[str, str]:
        """The texts of those ids that are stored (one Chroma ``get``)."""
        res = self._chroma_call("read existing records", self._collection.get, ids=ids, include=["documents"])
        return {id_: text for id_, text in zip(res["ids"], res["documents"])}

    def _write(self, idx: list[int], ids: list[str], texts: list[str], metadatas: list[dict[str, Any]],
               stored: dict[str, dict[str, Any]], progress: Callable[[int], Any] | None = None) -> int:
        """Encode one batch (one model call; with ``progress``, one call per :data:`_PROGRESS_SLICE`
        texts or the encoder's ``batch_size`` if larger, each reported to ``progress``) and upsert it
        (one Chroma call); returns how many texts were encoded and reported. A stored record whose
        text is unchanged keeps its stored vectors, unencoded: a metadata-only change (a new field,
        an edited value) costs no model call."""
        kept = self._reusable_vectors({ids[i]: texts[i] for i in idx if ids[i] in stored}, stored)
        fresh = [i for i in idx if ids[i] not in kept]
        vectors: dict[str, tuple[bytes, np.ndarray | None]] = dict(kept)
        full = np.zeros((0, self._full_dim), dtype=np.float32)
        if fresh:
            full = self._encode_in_slices([texts[i] for i in fresh], query=False, progress=progress)
            zero = np.flatnonzero(~full.any(axis=1))
            if zero.size:  # no direction: stored, its packed vector read as corrupt and broke every search reaching it
                first = fresh[int(zero[0])]
                raise InvalidInputError(f"the embeddings returned an all-zero vector for the text at index {first} "
                                        f"({texts[first][:60]!r}; {zero.size} such text(s) in this batch), which "
                                        "cannot be compared by cosine; check the embedding model (or the precomputed "
                                        "vector) for that text. Nothing of this batch was written")
            if self._rotation_kind != "none" and self._rotation is None:
                self._settle_coarse_stage(full, [texts[i] for i in fresh])
            vectors.update(zip([ids[i] for i in fresh], zip(pack_rows(full, self._encoding), [None] * len(fresh))))
        fresh_ids = [ids[i] for i in fresh]
        raw = [vectors[ids[i]][0] for i in idx]
        packed = [base64.b64encode(r).decode("ascii") for r in raw]
        records = []
        for i, p in zip(idx, packed):
            # Chroma's upsert merges metadata; None removes a key: a re-add replaces the record.
            dropped = {key: None for key in stored.get(ids[i], {}) if key not in metadatas[i] and key != FULL_KEY}
            records.append({**dropped, **metadatas[i], FULL_KEY: p})
        batch_ids = [ids[i] for i in idx]
        batch_texts = [texts[i] for i in idx]
        with self._write_guard:
            # projected under the guard: another thread's write may have settled the stage differently
            # (_confirm_coarse_stage) since this batch was encoded
            if fresh_ids:
                vectors.update(zip(fresh_ids, ((vectors[id_][0], c) for id_, c in zip(fresh_ids, self._coarse(full)))))
            coarse = np.stack([vectors[ids[i]][1] for i in idx]).astype(np.float32, copy=False)
            # The generation is bumped before the write; one upsert writes the coarse vector, the
            # text and the full vector of each record together: no record is visible without its full vector.
            with self._generation_write() as generation:
                try:
                    if self._sidecar is not None:  # before the record: a kill never leaves a record without its copy
                        self._sidecar.put(self._cid, batch_ids, raw, batch_texts, [metadatas[i] for i in idx])
                    self._forget_in_other_copy(batch_ids)
                    self._chroma_call("write records", self._collection.upsert, ids=batch_ids, embeddings=coarse,
                                      documents=batch_texts, metadatas=records)
                except BaseException:
                    if self._sidecar is not None:  # the records may still hold their old values: read them from Chroma
                        try:
                            self._sidecar.delete(self._cid, batch_ids)
                            self._advance_stamp(generation)  # in step again: the rows left match the records
                        except StoreError as cleanup:  # the write's own error is the one to report; the copy
                            # stays behind its stamp, so the next open rebuilds it from the records
                            logger.warning("the vector copy could not be cleaned after the failed write: %s", cleanup)
                    raise
            if self._sidecar is not None:
                self._advance_stamp(generation)
            self._lexical.upserted(generation, batch_ids, batch_texts)
            if self._unconfirmed is not None and fresh_ids:
                recorded, self._unconfirmed = self._unconfirmed, None
                self._confirm_coarse_stage(recorded, fresh_ids, full)
        return len(fresh) if progress is not None else 0

    def _confirm_coarse_stage(self, recorded: tuple[str, str | None], ids: list[str], full: np.ndarray) -> None:
        """After the first write since this store recorded the coarse stage (a fitted projection,
        ``"auto"``'s decision of ``"none"``, or a ``rotation_sample=`` fit at its opening: ``recorded``
        is the kind and the projection's data), check that the collection still records it; if another
        client recorded its own meanwhile, take the recorded stage, project these records (``ids``,
        their ``full`` vectors) with it and rewrite their coarse vectors, under the write guard (the
        caller holds it: the other threads' writes project after it).

        Chroma has no compare-and-set: two server clients making the first write of a new collection
        at once each read "not fitted", each fitted for a minute and recorded theirs, the last one
        winning; the other's records stayed in the HNSW index under a projection no query uses, found
        by nothing (2 runs of 5 with two writers of 1,200 texts: ops tryout). A writer whose read of
        "not fitted" comes before the other's record but whose record lands after this check is not
        caught (a stall between one metadata read and the next write: not seen).
        """
        for _ in range(3):
            meta = self._current_metadata()
            now = (meta.get(_C["rotation"], "none"), meta.get(ROTATION_KEY))
            if now == recorded:
                return
            if now[0] != "none" and now[1] is None:  # reset meanwhile (its records gone with it), or refitting
                return
            self._rotation_kind, self._rotation = now[0], None
            if now[0] != "none":
                self._load_rotation()
            logger.warning("another client recorded its coarse stage of %r (%s) while this one wrote its first "
                           "batch under its own (%s): the %d records of that batch are projected again with the "
                           "recorded one", self._collection_name, now[0], recorded[0], len(ids))
            self._chroma_call("write the coarse vectors again", self._collection.update, ids=ids,
                              embeddings=self._coarse(full))
            recorded = now
        logger.error("the coarse stage of %r kept changing while this client wrote its first batch: several clients "
                     "are making its first write at once, and records may be under a stage no query uses; reindex it "
                     "once the writes are done (MatryoshkaChroma.reindex), and make a new collection's first write "
                     "from one client", self._collection_name)

    def _reusable_vectors(self, text_of: dict[str, str], stored: dict[str, dict[str, Any]]
                          ) -> dict[str, tuple[bytes, np.ndarray]]:
        """Packed full vector and coarse vector, as stored, of the stored records (``text_of``: id ->
        the text about to be written; ``stored``: their metadatas, already read) whose stored text is
        that text and whose stored vectors are sound (the collection's contract guarantees they come
        from this model). Nothing while the coarse stage waits to be fitted."""
        if not text_of:
            return {}
        if self._rotation_kind != "none" and self._rotation is None:
            self._load_rotation()
        if not self.rotation_fitted:
            return {}
        res = self._chroma_call("read existing records", self._collection.get, ids=list(text_of),
                                include=["documents", "embeddings"])
        coarse_of = {id_: np.asarray(e, dtype=np.float32) for id_, e in zip(res["ids"], res["embeddings"])}
        # the same text, and a packed vector medrag wrote (every record medrag writes carries one in
        # its metadata; one written by another tool has none and is encoded, as its error message advises)
        same = [id_ for id_, text in zip(res["ids"], res["documents"])
                if text == text_of.get(id_) and FULL_KEY in (stored.get(id_) or {})]
        blobs = self._full_blobs(same, stored) if same else {}
        readable = [id_ for id_ in same if blobs.get(id_) is not None]
        if not readable:
            return {}
        _, bad = self._decode_readable([blobs[id_] for id_ in readable])  # a corrupt one is encoded again
        corrupt = {readable[j] for j in bad}
        return {id_: (blobs[id_], coarse_of[id_]) for id_ in readable if id_ not in corrupt
                and coarse_of[id_].shape == (self._coarse_dim,) and np.isfinite(coarse_of[id_]).all()}

    def delete(self, ids: list[str] | None = None, *, where: dict[str, Any] | None = None,
               where_document: dict[str, Any] | None = None, unicode_spellings: bool = True,
               **kwargs: Any) -> bool | None:
        """Delete records by id, by filter, or the records of those ids that match a filter (as
        langchain-chroma passes ``where`` / ``where_document`` to Chroma). Unknown ids are ignored
        (a documented no-op).

        Example::

            store.delete(["fer", "tsh"])                    # by id
            store.delete(where={"status": "retracted"})     # every record matching a filter
            store.delete(["fer", "tsh"], where={"src": "a"})  # of those ids, the ones matching it

        Args:
            ids: the ids to delete (a list; use :meth:`delete_collection` to drop everything).
            where: a Chroma metadata filter; with ``ids``, only those of them that match it.
            where_document: a Chroma document filter (``{"$contains": "..."}``), likewise.
            unicode_spellings: a filter's strings match both their Unicode spellings (NFC, NFD:
                :mod:`medrag.unicode_filters`); False matches them as written, byte for byte (two
                folders whose names differ only in spelling, ``Médecine`` typed and copied from macOS).

        Returns:
            True.

        Raises:
            InvalidInputError: neither ids nor a non-empty filter, a bare string for ``ids``,
                an unknown keyword argument, or a filter Chroma rejects (nothing deleted).
        """
        _no_extra(kwargs, "delete()")
        unicode_spellings = check_flag("unicode_spellings", unicode_spellings)
        if ids is None and not where and not where_document:
            raise InvalidInputError("delete() needs a list of ids or a non-empty where= / where_document= filter; "
                                    "use delete_collection() to remove the whole collection")
        if ids is not None:
            ids = _check_ids(ids)
            for i, id_ in enumerate(ids):
                _check_utf8(id_, f"id at index {i}")
            ids = list(dict.fromkeys(ids))  # an id named twice is deleted once (Chroma refuses repeats)
        if ids is not None and not ids:
            return True
        # only the records that exist (and match): deleting nothing writes nothing, so derived data
        # (the lexical index, the vector copy, other clients' caches) is not made stale for nothing.
        # Looked up in batches: one get of 40,000 ids exceeds SQLite's limit of query variables.
        filters = {k: v for k, v in (("where", where), ("where_document", where_document)) if v}
        if ids is None:
            ids = self._chroma_call("find the records to delete", self._collection.get, where=where or None,
                                    where_document=where_document or None, include=[],
                                    user_filters=unicode_spellings)["ids"]
            nothing = "no stored record matches the filter"
        else:
            nothing = f"none of the {len(ids)} id(s) given is stored" + (" and matches the filter" if filters else "")
            ids = self._matching_ids(ids, where, where_document, "find the records to delete",
                                     unicode_spellings=unicode_spellings)
        if not ids:
            # an erasure that deletes nothing must not pass unnoticed (a misspelt key, a number stored as
            # text: user tryout); still True: LangChain's indexing API takes False for a failure
            # the filter's keys, not its values: a value may be a patient's identifier, kept out of the logs
            keys = sorted({key for f in filters.values() for key in _filter_keys(f)})
            logger.warning("delete() deleted nothing in collection %r: %s%s. Check the ids, or the filter's keys and "
                           "the types of its values (a number stored as text matches only as text)",
                           self._collection_name, nothing, f" (keys: {', '.join(keys)})" if keys else "")
        if ids:
            self._check_writer()
            max_batch = self._max_batch()
            try:
                for start in range(0, len(ids), max_batch):
                    batch = ids[start : start + max_batch]
                    with self._write_guard:
                        with self._generation_write() as generation:
                            # the copies first: one that cannot be written stops the delete before Chroma's
                            # (a copy without a record's row reads that record from Chroma)
                            self._forget_in_other_copy(batch)
                            if self._sidecar is not None:
                                self._sidecar.delete(self._cid, batch)
                            self._chroma_call("delete records", self._collection.delete, ids=batch)
                        if self._sidecar is not None:
                            self._advance_stamp(generation)
                        self._lexical.deleted(generation, batch)
            finally:
                self._lexical.write_done()
        return True

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

    @checked_arguments
    def update_documents(self, ids: Sequence[str], documents: Sequence[Document]) -> None:
        """Replace the text and metadata of existing records (re-encoded), as langchain-chroma's
        ``update_documents``; the whole record is replaced, no old metadata key survives.

        Args:
            ids: the ids of the records to replace, one per document.
            documents: their new contents.

        Raises:
            InvalidInputError: ``ids`` and ``documents`` differ in length, or an id is not stored
                (nothing is written: :meth:`add_documents` adds new records).
        """
        ids = _check_ids(ids)
        documents = _check_documents(documents)
        if len(ids) != len(documents):
            raise InvalidInputError(f"{len(ids)} ids for {len(documents)} documents: give one id per document")
        if not ids:
            return
        stored = set(self.get(ids=list(dict.fromkeys(ids)), include=[])["ids"])
        missing = [i for i in ids if i not in stored]
        if missing:
            raise InvalidInputError(f"update_documents: {len(missing)} id(s) not stored (e.g. {missing[:3]}); nothing "
                                    "was written. Use add_documents to add new records")
        self.add_texts([d.page_content for d in documents], metadatas=[dict(d.metadata or {}) for d in documents],
                       ids=ids)

    @checked_arguments
    def update_document(self, document_id: str, document: Document) -> None:
        """Replace one stored record: :meth:`update_documents` with one id."""
        self.update_documents([document_id], [document])

    @checked_arguments
    def get_full_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored full-size vectors of these records, one unit-norm float32 row per id, in
        the order asked (a repeated id gives a repeated row).

        This is the one way the rerank (stage 2), MMR and the hybrid search read full vectors,
        whatever the storage layout.

        Example::

            >>> store.get_full_vectors(["fer", "hba1c"]).shape
            (2, 384)

        Args:
            ids: the record ids.

        Raises:
            InvalidInputError: ``ids`` is a bare string or holds a non-string.
            CollectionMismatchError: records that do not exist, that have no full vector
                (written by another tool) or whose stored vector is corrupt; the message names them.
        """
        ids = _check_ids(ids)
        unique = list(dict.fromkeys(ids))
        if not unique:
            return np.zeros((0, self._full_dim), dtype=np.float32)
        found, rows = self._existing_full_vectors(unique)
        if len(found) < len(unique):
            missing = [i for i in unique if i not in set(found)]
            raise CollectionMismatchError(
                f"{len(missing)} record(s) of collection {self._collection_name!r} do not exist: {missing[:5]}"
            )
        position = {id_: n for n, id_ in enumerate(unique)}
        return rows[[position[i] for i in ids]]

    def _existing_full_vectors(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The ids among ``ids`` (distinct) that exist, in order, and their unit full vectors; a
        corrupt stored vector raises :class:`CollectionMismatchError` naming it."""
        blobs = self._full_blobs(ids) if ids else {}
        found = [i for i in ids if i in blobs]
        if not found:
            return [], np.zeros((0, self._full_dim), dtype=np.float32)
        return found, self._decode_full(found, [blobs[i] for i in found])

    def _full_blobs(self, ids: Sequence[str], metas: dict[str, Any] | None = None) -> dict[str, bytes | None]:
        """Packed full vectors of the ids that exist: from the sidecar when there is one, else
        (and for ids it lacks) from the records' metadata (``metas``: as already read, else read
        now). ``None``: a corrupt stored value."""
        found: dict[str, bytes | None] = dict(self._sidecar.get(self._cid, ids)) if self._sidecar is not None else {}
        rest = [i for i in ids if i not in found]
        if rest:
            metas = self._full_metadatas(rest) if metas is None else metas
            present = [i for i in rest if i in metas]
            found.update(zip(present, self._blobs_from_metas(present, [metas[i] for i in present])))
        return found

    def _blobs_from_metas(self, ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> list[bytes | None]:
        return [_b64(p) for p in self._packed(ids, metas)]

    def _decode_readable(self, blobs: Sequence[bytes | None]) -> tuple[np.ndarray, list[int]]:
        """Decode and normalise the packed full vectors that are readable; also return the
        positions of those that are not (zero rows in the result)."""
        size = encoded_size(self._encoding, self._full_dim)
        full = np.zeros((len(blobs), self._full_dim), dtype=np.float32)
        sized = [j for j, b in enumerate(blobs) if b is not None and len(b) == size]
        if sized:
            full[sized] = unpack_rows([blobs[j] for j in sized], self._encoding, self._full_dim)
        norms = np.linalg.norm(full, axis=1)
        ok = np.isfinite(full).all(axis=1) & (norms > 0)
        full[~ok] = 0.0
        full[ok] /= norms[ok, None]
        return full, [j for j in range(len(blobs)) if not ok[j]]

    def _decode_full(self, ids: Sequence[str], blobs: Sequence[bytes | None]) -> np.ndarray:
        """Decode and normalise packed full vectors; name any corrupt one."""
        full, bad = self._decode_readable(blobs)
        if bad:
            raise CollectionMismatchError(
                f"the stored full vector of record(s) {[ids[j] for j in bad][:5]} in collection "
                f"{self._collection_name!r} is corrupt (not a finite {self._encoding} vector of size "
                f"{self._full_dim}); delete those ids and add them again"
            )
        return full

    # ------------------------------------------------------------------ search core

    def _query_vector(self, embedding: Sequence[float] | np.ndarray) -> np.ndarray:
        try:
            vec = _numbers(embedding, "the query vector holds")
        except MedragError as exc:
            raise DimensionError(f"{exc}: a query vector is a list of numbers") from exc
        if vec.ndim != 1 or vec.shape[0] != self._full_dim:
            truncated = vec.ndim == 1 and vec.shape[0] == getattr(self._embedding, "dimension", None)
            raise DimensionError(
                f"the query vector has shape {vec.shape}; this store needs a full-size vector of "
                f"{self._full_dim} values (the model's full size)"
                + (f": {vec.shape[0]} is the size the embeddings were built with (dimension={vec.shape[0]}); make the "
                   "vector with store.embeddings.embed_query(...), which is full size" if truncated else "")
            )
        if not np.isfinite(vec).all():
            raise InvalidInputError("the query vector contains NaN or infinite values")
        norm = float(np.linalg.norm(vec.astype(np.float64)))
        if norm == 0:
            raise InvalidInputError("the query vector is all zeros (check the embedding model or API that made it)")
        return (vec / norm).astype(np.float32)

    def _embed_query(self, query: str) -> np.ndarray:
        if not isinstance(query, str):
            raise InvalidInputError(f"the query must be a string, got {type(query).__name__}")
        if is_blank(query):
            raise InvalidInputError("the query is empty or holds only whitespace or invisible characters")
        _check_utf8(query, "the query", "fix the text")  # not add_texts' "text at index 0 ... decode your source"
        # checked as a given vector is: hybrid_search and search_with_stages ranked by an all-zero query vector
        # (every dense score 0) where similarity_search refused it (user tryout)
        return self._query_vector(self._encode([query], query=True)[0])

    def _funnel(
        self,
        query: np.ndarray,
        k: int,
        candidates: int | None,
        filter: dict[str, Any] | None,
        where_document: dict[str, Any] | None,
        stats: dict[str, Any] | None = None,
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Run both stages; return all candidates' ids, full vectors and cosine scores, best first.

        Stage 1 asks Chroma for the candidates' ids and distances (and, without the local copy,
        their metadatas, which carry the packed full vectors) but not their texts; stage 2
        decodes the full vectors with the same code as :meth:`get_full_vectors`
        (``_decode_full``) and scores them. Texts are read afterwards, for the returned hits
        only (:meth:`_documents`: from the local copy when there is one, else one Chroma
        ``get``). The layout was chosen by measurement (``docs/store.md``, "The rerank path").

        When ``stats`` is a dict, it receives each returned candidate's coarse cosine and 1-based
        stage-1 rank (``coarse_scores``, ``coarse_ranks``) and the seconds spent per stage
        (``coarse_s``, ``rerank_s``).
        """
        k, candidates = check_search_sizes(k, candidates)
        n = max(self._candidates if candidates is None else candidates, k)
        self._check_index_fresh()
        if n > _MAX_RESULTS:  # the store's own default candidates above what Chroma can return
            raise InvalidInputError(f"candidates / k = {n} is more than a Chroma query can return ({_MAX_RESULTS})")
        if self._rotation_kind in ("pca", "learned") and self._rotation is None:
            self._load_rotation()
            if self._rotation is None and self._chroma_call("count", self._collection.count) == 0:
                # nothing written yet, so nothing fitted: an empty collection answers with no results
                if stats is not None:
                    stats.update(coarse_scores=np.zeros(0), coarse_ranks=np.zeros(0, int), coarse_s=0.0, rerank_s=0.0)
                return [], np.zeros((0, self._full_dim), np.float32), np.zeros(0, np.float32)
        t0 = time.perf_counter()
        # Without a sidecar the metadatas carry the packed full vectors: read with the query (one
        # call), unless there are more candidates than one read may name (34,000 raised SQLite's
        # "too many SQL variables"): then read in batches after it
        batched = self._sidecar is None and n > self._max_batch()
        res = self._chroma_call(
            "search", self._collection.query,  # empty filters mean "no filter" (Chroma rejects {})
            query_embeddings=[self._coarse(query[None, :])[0]],
            n_results=n,
            where=filter or None,
            where_document=where_document or None,
            user_filters=True,
            # no documents: texts are read for the hits only; with a sidecar, ids + distances are enough
            include=["distances"] if self._sidecar is not None or batched else ["metadatas", "distances"],
        )
        t1 = time.perf_counter()
        ids = list(res["ids"][0])
        distances = np.asarray(res["distances"][0], dtype=np.float64)
        if self._sidecar is not None:
            blobs = self._full_blobs(ids)  # the get_full_vectors path
        else:
            metas = self._full_metadatas(ids) if batched else self._live_metadatas(ids, res["metadatas"][0])
            live = [id_ for id_ in ids if id_ in metas]
            blobs = dict(zip(live, self._blobs_from_metas(live, [metas[i] for i in live])))
        keep = [i for i, id_ in enumerate(ids) if id_ in blobs]  # a record deleted meanwhile is dropped
        ids, distances = [ids[i] for i in keep], distances[keep]
        if not ids:
            if stats is not None:
                stats.update(coarse_scores=np.zeros(0), coarse_ranks=np.zeros(0, int), coarse_s=t1 - t0, rerank_s=0.0)
            return [], np.zeros((0, self._full_dim), np.float32), np.zeros(0, np.float32)
        full = self._decode_full(ids, [blobs[i] for i in ids])
        scores = np.clip(full @ query, -1.0, 1.0)  # float rounding: a cosine never leaves [-1, 1], a distance [0, 2]
        order = np.argsort(-scores, kind="stable")
        if stats is not None:
            stats.update(coarse_scores=1.0 - distances[order], coarse_ranks=np.asarray(keep)[order] + 1,
                         coarse_s=t1 - t0, rerank_s=time.perf_counter() - t1)
        return [ids[i] for i in order], full[order], scores[order]

    def _max_batch(self) -> int:
        """The client's largest batch: records per write, ids per read (Chroma caches it)."""
        return int(self._chroma_call("read the batch size", self._client.get_max_batch_size))

    def _live_metadatas(self, ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        """The metadatas of a query reply, by id, without the records deleted while Chroma answered
        (another client's delete between its vector search and its metadata read gives ``None``);
        a record that still exists without metadata stays, for :meth:`_packed` to name."""
        out = {id_: md for id_, md in zip(ids, metas) if md is not None}
        gone = [id_ for id_, md in zip(ids, metas) if md is None]
        if gone:
            out.update(self._full_metadatas(gone))
        return out

    def _matching_ids(self, ids: Sequence[str], where: dict[str, Any] | None, where_document: dict[str, Any] | None,
                      action: str = "read", unicode_spellings: bool = True) -> list[str]:
        """The ids among ``ids`` that exist and match the filters, in Chroma's order, looked up in
        batches: one ``get`` of 40,000 ids (or 9,000 with a filter) exceeds SQLite's limit of query
        variables ("too many SQL variables")."""
        lookup = self._max_batch()
        return [found for start in range(0, len(ids), lookup)
                for found in self._chroma_call(action, self._collection.get, ids=list(ids[start:start + lookup]),
                                               where=where or None, where_document=where_document or None,
                                               include=[], user_filters=unicode_spellings)["ids"]]

    def _full_metadatas(self, ids: Sequence[str]) -> dict[str, Any]:
        """The stored metadata (holding the packed full vector) of the ids that exist."""
        out: dict[str, Any] = {}
        max_batch = self._max_batch()
        for start in range(0, len(ids), max_batch):
            res = self._chroma_call("read", self._collection.get, ids=list(ids[start : start + max_batch]),
                                    include=["metadatas"])
            out.update(zip(res["ids"], res["metadatas"]))
        return out

    def _top_documents(self, ids: Sequence[str], k: int) -> list[tuple[int, Document]]:
        """The documents of the first ``k`` ids that still exist, with their positions in ``ids``: a
        hit deleted by another client after the rerank is replaced by the next candidate."""
        out: list[tuple[int, Document]] = []
        start = 0
        while len(out) < k and start < len(ids):
            chunk = ids[start : start + k - len(out)]
            out.extend((start + j, doc) for j, doc in enumerate(self._documents(chunk)) if doc is not None)
            start += len(chunk)
        return out

    def _documents(self, ids: Sequence[str]) -> list[Document | None]:
        """Documents (text + user metadata) of these ids, in order; None for an id deleted meanwhile."""
        found: dict[str, Document] = {}
        unique = list(dict.fromkeys(ids))
        if self._sidecar is not None and unique:  # no second Chroma call per query (docs/store.md)
            for id_, (text, md) in self._sidecar.records(self._cid, unique).items():
                found[id_] = _document(id_, text, md)
        rest = [i for i in unique if i not in found]
        if rest:
            res = self._chroma_call("read", self._collection.get, ids=rest, include=["documents", "metadatas"])
            for id_, text, md in zip(res["ids"], res["documents"], res["metadatas"]):
                found[id_] = _document(id_, text, md)
        return [found.get(i) for i in ids]

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

    def similarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to ``query`` (two-stage search).

        Args:
            query: the query text.
            k: number of documents to return.
            filter: Chroma ``where`` filter, applied in stage 1.
            **kwargs: ``candidates`` (stage-1 size for this call), ``where_document``.
        """
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Like :meth:`similarity_search`, with the cosine *distance* (``1 - cosine``, lower is
        closer, as langchain-chroma returns) of each document's full vector to the query.

        Args:
            query: the query text.
            k: number of documents to return.
            filter: Chroma ``where`` filter, applied in stage 1.
            **kwargs: ``candidates``, ``where_document``.
        """
        return self.similarity_search_by_vector_with_score(self._embed_query(query), k, filter=filter, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None,
                                    **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to a full-size query vector.

        Args:
            embedding: a query vector of the model's full size (use the query prompt:
                ``MatryoshkaEmbeddings.encode_queries``); it is normalised here.
            k: number of documents to return.
            filter: Chroma ``where`` filter, applied in stage 1.
            **kwargs: ``candidates``, ``where_document``.

        Raises:
            DimensionError: the vector is not of the full size.
            ValueError: NaN, infinite or all-zero vector; ``k < 1``; ``candidates < k``.
        """
        return [doc for doc, _ in self.similarity_search_by_vector_with_score(embedding, k, filter=filter, **kwargs)]

    def similarity_search_by_vector_with_score(
        self, embedding: Sequence[float] | np.ndarray, k: int = 4, filter: dict[str, Any] | None = None,
        *, candidates: int | None = None, where_document: dict[str, Any] | None = None, **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_by_vector` with cosine distances (``1 - cosine``).

        Args:
            embedding: full-size query vector.
            k: number of documents to return.
            filter: Chroma ``where`` filter (stage 1).
            candidates: stage-1 candidates for this call (default: the store's).
            where_document: Chroma ``where_document`` filter (stage 1).
        """
        _no_extra(kwargs, "similarity_search()")
        query = self._query_vector(embedding)
        ids, _, scores = self._funnel(query, k, candidates, filter, where_document)
        return [(doc, float(1.0 - scores[i])) for i, doc in self._top_documents(ids, k)]

    @checked_arguments
    def similarity_search_by_vector_with_relevance_scores(
        self, embedding: Sequence[float] | np.ndarray, k: int = 4, filter: dict[str, Any] | None = None,
        *, candidates: int | None = None, where_document: dict[str, Any] | None = None,
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_by_vector` with each document's relevance score (higher is closer:
        the cosine, or ``relevance_score_fn`` of the distance), as
        :meth:`similarity_search_with_relevance_scores` gives for a query text.

        langchain-chroma's method of this name returns the *distance* (lower is closer) despite its
        name; code ported from it that needs distances calls
        :meth:`similarity_search_by_vector_with_score`, which takes the same arguments.
        """
        relevance = self._select_relevance_score_fn()
        return [(doc, relevance(distance)) for doc, distance in self.similarity_search_by_vector_with_score(
            embedding, k, filter, candidates=candidates, where_document=where_document)]

    @checked_arguments
    def similarity_search_with_vectors(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, *,
        candidates: int | None = None, where_document: dict[str, Any] | None = None,
    ) -> list[tuple[Document, np.ndarray]]:
        """:meth:`similarity_search` with each document's stored full-size vector (unit-norm float32,
        as :meth:`get_full_vectors` reads it), as langchain-chroma's method of this name returns.

        Example::

            >>> [(doc.id, vector.shape) for doc, vector in store.similarity_search_with_vectors("ferritine", k=1)]
            [('fer', (384,))]

        Args:
            query: the query text.
            k: number of documents to return.
            filter: Chroma ``where`` filter (stage 1).
            candidates: stage-1 candidates for this call (default: the store's).
            where_document: Chroma ``where_document`` filter (stage 1).
        """
        ids, vectors, _ = self._funnel(self._query_vector(self._embed_query(query)), k, candidates, filter,
                                       where_document)
        return [(doc, vectors[i].copy()) for i, doc in self._top_documents(ids, k)]

    def _packed(self, ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> list[str]:
        """The packed full vectors of records, or a clear error for a record written by another tool."""
        missing = [i for i, md in zip(ids, metas) if not md or FULL_KEY not in md]
        if missing:
            raise CollectionMismatchError(
                f"records {missing[:3]} of collection {self._collection_name!r} have no full-size vector: they "
                "were written by another tool (raw chromadb, langchain-chroma); re-add them through "
                "MatryoshkaChroma, or copy the collection with MatryoshkaChroma.reindex"
            )
        return [md[FULL_KEY] for md in metas]

    def search_with_stages(self, query: str, k: int = 4, filter: dict[str, Any] | None = None, *,
                           candidates: int | None = None,
                           where_document: dict[str, Any] | None = None, hybrid: bool = False,
                           lexical_weight: float | str | None = None, fusion: str | None = None,
                           lexical_candidates: int | None = None, **kwargs: Any) -> "FunnelResult":
        """Search like :meth:`similarity_search`, and show what each stage did.

        Each hit carries its full-size cosine (``score``), its coarse cosine and its rank in
        stage 1; ``timings`` gives milliseconds for the query embedding, stage 1 (Chroma HNSW on
        the coarse vectors) and stage 2 (exact full-size rerank). Useful to tune ``candidates``
        and to monitor a deployment.

        Args:
            query: the query text.
            k: number of hits.
            filter / where_document: Chroma filters (stage 1).
            candidates: stage-1 candidates for this call (default: the store's).
            hybrid: run :meth:`hybrid_search` instead; each hit then also carries its BM25 score
                and rank and its fused score, and ``timings`` a ``lexical_ms`` and ``fusion_ms``.
            lexical_weight / fusion / lexical_candidates: as in :meth:`hybrid_search` (with ``hybrid``).
        """
        _no_extra(kwargs, "search_with_stages()")
        check_flag("hybrid", hybrid)
        t0 = time.perf_counter()
        vector = self._embed_query(query)
        embed_s = time.perf_counter() - t0
        if hybrid:
            found = self._hybrid(query, vector, k, filter, candidates, where_document, lexical_weight, fusion,
                                 lexical_candidates)
            t2 = time.perf_counter()
            hits = [FunnelHit(doc, float(found.dense_scores[i]), float(found.coarse_scores[i]),
                              int(found.coarse_ranks[i]), float(found.lexical_scores[i]), int(found.lexical_ranks[i]),
                              float(found.fused[i])) for i, doc in self._top_documents(found.ids, k)]
            tm = found.timings
            timings = {"embed_ms": 1000 * embed_s, "coarse_ms": 1000 * tm["coarse_s"], "rerank_ms": 1000 * tm["rerank_s"],
                       "lexical_ms": 1000 * tm["lexical_s"], "fusion_ms": 1000 * tm["fusion_s"],
                       "fetch_ms": 1000 * (time.perf_counter() - t2)}
            return FunnelResult(hits, len(found.ids), timings, found.lexical_weight, found.lookup, found.read_as)
        if lexical_weight is not None or fusion is not None or lexical_candidates is not None:
            raise InvalidInputError("lexical_weight, fusion and lexical_candidates need hybrid=True")
        stats: dict[str, Any] = {}
        ids, _, scores = self._funnel(vector, k, candidates, filter, where_document, stats=stats)
        t2 = time.perf_counter()
        hits = [FunnelHit(doc, float(scores[i]), float(stats["coarse_scores"][i]), int(stats["coarse_ranks"][i]))
                for i, doc in self._top_documents(ids, k)]
        timings = {"embed_ms": 1000 * embed_s, "coarse_ms": 1000 * stats["coarse_s"],
                   "rerank_ms": 1000 * stats["rerank_s"], "fetch_ms": 1000 * (time.perf_counter() - t2)}
        return FunnelResult(hits, len(ids), timings)

    # ------------------------------------------------------------------ hybrid search

    def _hybrid(self, query: str, vector: np.ndarray, k: int, filter: dict[str, Any] | None,
                candidates: int | None, where_document: dict[str, Any] | None, lexical_weight: float | str | None,
                fusion: str | None, lexical_candidates: int | None):
        return hybrid_candidates(
            self, query, vector, k, lexical_weight=self._lexical_weight if lexical_weight is None else lexical_weight,
            fusion=self._fusion if fusion is None else fusion, candidates=candidates, lexical_candidates=lexical_candidates,
            filter=filter, where_document=where_document)

    def hybrid_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                      **kwargs: Any) -> list[Document]:
        """The ``k`` best documents by dense (Matryoshka funnel) and lexical (BM25) scores fused.

        Stage 1: the funnel's HNSW candidates union the BM25 index's best hits; stage 2:
        full-size cosine and BM25 for every candidate, fused (:mod:`medrag.lexical.hybrid`).
        Use it for passages (leaflets, case reports, abstracts), where exact tokens (drug
        names, analytes, units, acronyms) matter; on short-option corpora keep the weight low
        (``docs/store.md``).

        Example::

            store.hybrid_search("INR cible sous AVK", k=3, lexical_weight=0.3)

        Args:
            query: the query text.
            k: number of documents.
            filter: Chroma ``where`` filter, applied to both sides.
            **kwargs: ``lexical_weight`` (0 = dense only, 1 = ranked by BM25 alone, documents without a
                query term after the others; ``"auto"``: per query; default: the store's),
                ``fusion`` (``"rrf"`` or ``"minmax"``), ``candidates`` (dense stage 1),
                ``lexical_candidates`` (BM25 stage 1, default: as many as ``candidates``),
                ``where_document``.
        """
        return [doc for doc, _ in self.hybrid_search_with_score(query, k, filter=filter, **kwargs)]

    def hybrid_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None, *,
                                 lexical_weight: float | str | None = None, fusion: str | None = None,
                                 candidates: int | None = None, lexical_candidates: int | None = None,
                                 where_document: dict[str, Any] | None = None,
                                 **kwargs: Any) -> list[tuple[Document, float]]:
        """:meth:`hybrid_search` with each document's fused score (higher is better; its scale
        depends on the fusion: RRF scores are at most 1/61).

        Args:
            query: the query text.
            k: number of documents.
            filter: Chroma ``where`` filter, applied to both sides.
            lexical_weight: 0 = dense only, 1 = ranked by BM25 alone (candidates without a query term
                score 0 and follow, in dense order); ``"auto"``: a weight per query, from BM25's
                confidence (:func:`medrag.lexical.fusion.query_weight`), and for a query made mostly
                of codes (an identifier lookup, :mod:`medrag.lexical.fusion`) the documents holding
                them first, whatever their fused score; ``None``: the store's (:attr:`lexical_weight`).
            fusion: ``"minmax"`` or ``"rrf"``; ``None``: the store's.
            candidates: dense stage-1 candidates; ``None``: the store's (:attr:`candidates`).
            lexical_candidates: BM25 stage-1 candidates; ``None``: as many as ``candidates``.
            where_document: Chroma document filter, applied to both sides.
        """
        _no_extra(kwargs, "hybrid_search()")
        found = self._hybrid(query, self._embed_query(query), k, filter, candidates, where_document, lexical_weight,
                             fusion, lexical_candidates)
        return [(doc, float(found.fused[i])) for i, doc in self._top_documents(found.ids, k)]

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """:meth:`add_texts` in an executor thread, stopped by the task's cancellation.

        LangChain's default ran the whole write in a thread that nothing stops: a request timed out
        (``asyncio.wait_for``) or cancelled kept writing for minutes, held the model so that searches
        waited, and wrote back records a rollback ``adelete`` had just removed (user tryout). Here a
        cancellation stops the write at its next slice of texts (:data:`_SHARE_SLICE`) or batch and
        **waits for it to stop** before ``CancelledError`` reaches the caller: what is stored then is
        the batches written before the cancellation, each whole (as after a kill), and nothing more is
        written afterwards. A rerun with the same ids (or content ids) completes it.

        Args:
            texts / metadatas / ids / kwargs: as :meth:`add_texts`.
        """
        return await self._cancellable(self.add_texts, texts, metadatas, ids=ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """:meth:`add_documents` in an executor thread, stopped by the task's cancellation as
        :meth:`aadd_texts` is."""
        return await self._cancellable(self.add_documents, documents, **kwargs)

    async def _cancellable(self, write: Callable[..., list[str]], *args: Any, **kwargs: Any) -> list[str]:
        """Run ``write`` in an executor thread; on cancellation, stop it (:meth:`_check_stop`) and wait
        for it before re-raising."""
        import asyncio

        from langchain_core.runnables.config import run_in_executor

        stop = threading.Event()

        def run() -> list[str]:
            self._stop.event = stop
            try:
                return write(*args, **kwargs)
            finally:
                self._stop.event = None

        future = asyncio.ensure_future(run_in_executor(None, run))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            try:  # the slice or batch under way ends; nothing is written after this returns
                await asyncio.shield(future)
            except _WriteStopped:
                pass
            except Exception as exc:  # noqa: BLE001 - the cancellation is what the caller hears about
                logger.warning("the cancelled write to collection %r failed as it stopped: %s",
                               self._collection_name, exc)
            raise

    async def ahybrid_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                             **kwargs: Any) -> list[Document]:
        """:meth:`hybrid_search` run in an executor, as LangChain runs its async searches (the store's
        Chroma and BM25 calls block); the same arguments and documents."""
        from langchain_core.runnables.config import run_in_executor

        return await run_in_executor(None, self.hybrid_search, query, k, filter, **kwargs)

    async def ahybrid_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                        **kwargs: Any) -> list[tuple[Document, float]]:
        """:meth:`hybrid_search_with_score` run in an executor; the same arguments and results."""
        from langchain_core.runnables.config import run_in_executor

        return await run_in_executor(None, self.hybrid_search_with_score, query, k, filter, **kwargs)

    def search(self, query: str, search_type: str, **kwargs: Any) -> list[Document]:
        """LangChain's search by type, with ``"hybrid"`` (:meth:`hybrid_search`) beside
        ``"similarity"``, ``"similarity_score_threshold"`` and ``"mmr"``.

        Args:
            query: the query text.
            search_type: one of those four.
            **kwargs: the chosen search's arguments.
        """
        if _check_search_type(search_type) == "hybrid":
            return self.hybrid_search(query, **kwargs)
        return super().search(query, search_type, **kwargs)

    async def asearch(self, query: str, search_type: str, **kwargs: Any) -> list[Document]:
        """:meth:`search`, run in an executor for ``"hybrid"`` (as LangChain runs the other types)."""
        if _check_search_type(search_type) == "hybrid":
            return await self.ahybrid_search(query, **kwargs)
        return await super().asearch(query, search_type, **kwargs)

    def as_retriever(self, **kwargs: Any):
        """A LangChain retriever; ``search_type="hybrid"`` runs :meth:`hybrid_search` (with
        ``search_kwargs`` such as ``{"k": 4, "lexical_weight": 0.3}``), the other types as usual."""
        from pydantic import ValidationError

        given_tags = kwargs.pop("tags", None) or []
        if not isinstance(given_tags, (list, tuple)) or not all(isinstance(t, str) for t in given_tags):
            # "prod" became the tags p, r, o, d (LangChain's own stores refuse it)
            hint = f" such as [{given_tags!r}]" if isinstance(given_tags, str) else ""
            raise InvalidInputError(f"tags must be a list of strings{hint}, got {given_tags!r}")
        tags = [*given_tags, *self._get_retriever_tags()]  # the caller's list is not changed
        kwargs = self._checked_retriever_fields(kwargs)
        if "vectorstore" in kwargs:  # a raw TypeError (two values for one argument) otherwise
            raise InvalidInputError("as_retriever() takes no vectorstore: the retriever searches this store; "
                                    "call as_retriever on the store you want searched")
        unknown = sorted(set(kwargs) - set(MatryoshkaRetriever.model_fields))
        if unknown:  # pydantic ignored them: as_retriever(search_kwarg={"k": 10}) returned 4 documents
            raise InvalidArgumentError(f"as_retriever() got unknown argument(s) {unknown}; it takes search_type, "
                                    "search_kwargs, tags, metadata and the other fields of a LangChain retriever")
        try:
            return MatryoshkaRetriever(vectorstore=self, tags=tags, **kwargs)
        except ValidationError as exc:  # an unknown or mistyped retriever field
            raise InvalidInputError(f"as_retriever() got a bad argument: {exc.errors()[0].get('msg', exc)} "
                                    f"(at {exc.errors()[0].get('loc')})") from exc

    def _checked_retriever_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A retriever's ``search_type`` and ``search_kwargs`` checked for this store (refused when
        the retriever is built, not at its first query in production), with an int threshold as the
        float LangChain's retriever takes. :class:`MatryoshkaRetriever` calls it however it is built:
        :meth:`as_retriever`, directly, or again by LangChain's ``configurable_fields`` (which
        skipped these checks: pydantic's ValidationError, or an error at the first query: user
        tryout)."""
        if "search_kwargs" in fields and fields["search_kwargs"] is None:  # the default, as when left out
            fields = {k: v for k, v in fields.items() if k != "search_kwargs"}
        search_kwargs = fields.get("search_kwargs")
        if search_kwargs is not None and not isinstance(search_kwargs, dict):
            raise InvalidInputError(f"search_kwargs must be a dict such as {{'k': 4}}, got {type(search_kwargs).__name__}")
        search_type = fields.get("search_type", "similarity")
        _check_search_type(search_type)  # pydantic's ValidationError otherwise, not a MedragError
        if search_type == "similarity_score_threshold":
            threshold = self._checked_threshold((search_kwargs or {}).get("score_threshold"), retriever=True)
            # LangChain's retriever takes a float only: 0 and 1 are written as ints
            fields = {**fields, "search_kwargs": {**(search_kwargs or {}), "score_threshold": threshold}}
        _check_retriever_kwargs(search_type, search_kwargs or {})
        return fields

    def similarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                **kwargs: Any) -> list[tuple[Document, float]]:
        """``(document, relevance)`` pairs, best first: relevance is the full-size cosine (``1 - distance``;
        see the class for ``relevance_score_fn``). ``score_threshold=`` keeps the pairs at or above it.

        Args:
            query: the query text.
            k: number of hits.
            **kwargs: ``score_threshold`` (a number), and the arguments of :meth:`similarity_search_with_score`.
        """
        if kwargs.get("score_threshold") is not None:
            kwargs["score_threshold"] = self._checked_threshold(kwargs["score_threshold"])
        return super().similarity_search_with_relevance_scores(query, k, **kwargs)

    async def asimilarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                       **kwargs: Any) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_relevance_scores` (the same checks: a threshold of
        ``"0.5"`` raised a bare ``TypeError`` here and ``True`` returned nothing)."""
        if kwargs.get("score_threshold") is not None:
            kwargs["score_threshold"] = self._checked_threshold(kwargs["score_threshold"])
        return await super().asimilarity_search_with_relevance_scores(query, k, **kwargs)

    def _checked_threshold(self, threshold: Any, retriever: bool = False) -> float:
        """:func:`_check_threshold` with this store's relevance: the cosine's range [-1, 1] checked
        unless the scores are a ``relevance_score_fn`` of the user's."""
        return _check_threshold(threshold, cosine=self.override_relevance_score_fn is None, retriever=retriever)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.override_relevance_score_fn is not None:
            return self.override_relevance_score_fn
        return self._cosine_relevance_score_fn

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        """Maximal marginal relevance on the full-size vectors.

        Args:
            query: the query text.
            k: number of documents to return.
            fetch_k: documents (best by full-size score) among which MMR chooses (raised to ``k``
                when lower, so that a retriever asking for more than 20 documents gets them).
            lambda_mult: 1 for relevance only, 0 for diversity only.
            filter: Chroma ``where`` filter (stage 1).
            **kwargs: ``candidates`` (stage-1 size, at least ``fetch_k``), ``where_document``.
        """
        return self.max_marginal_relevance_search_by_vector(self._embed_query(query), k, fetch_k, lambda_mult,
                                                            filter=filter, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None, *, candidates: int | None = None,
        where_document: dict[str, Any] | None = None, **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` from a full-size query vector.

        Args:
            embedding: full-size query vector.
            k: number of documents to return.
            fetch_k: documents among which MMR chooses (raised to ``k`` when lower).
            lambda_mult: 1 for relevance only, 0 for diversity only.
            filter: Chroma ``where`` filter (stage 1).
            candidates: stage-1 candidates, at least ``fetch_k`` (default: the larger of the
                store's and ``fetch_k``).
            where_document: Chroma ``where_document`` filter (stage 1).
        """
        _no_extra(kwargs, "max_marginal_relevance_search()")
        fetch_k = _check_int("fetch_k", fetch_k)
        k = _check_int("k", k)
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        if fetch_k < 1:  # refused as an MMR retriever's search_kwargs refuse it (it was raised to k here: tryout)
            raise InvalidInputError(f"fetch_k must be >= 1, got {fetch_k}")
        fetch_k = max(fetch_k, k)  # as langchain-chroma, a retriever's k above the default fetch_k (20) is served
        if not _is_unit_interval(lambda_mult):  # numpy's float32 too, as lexical_weight and score_threshold
            raise InvalidInputError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")
        lambda_mult = float(lambda_mult)
        if candidates is not None:
            candidates = _check_int("candidates", candidates)
            if candidates < fetch_k:
                raise InvalidInputError(f"candidates ({candidates}) must be >= fetch_k ({fetch_k}): "
                                        "MMR chooses among fetch_k stage-1 candidates")
        query = self._query_vector(embedding)
        n = max(candidates if candidates is not None else self._candidates, fetch_k)
        ids, full, _ = self._funnel(query, fetch_k, n, filter, where_document)
        ids, full = ids[:fetch_k], full[:fetch_k]
        picked = maximal_marginal_relevance(query, full, lambda_mult=lambda_mult, k=k)
        return [doc for doc in self._documents([ids[i] for i in picked]) if doc is not None]

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


def _entry_names(i: int, ids: Any, metadatas: Any) -> str:
    """What names entry ``i`` of an ``add_texts`` call besides its index: its id and the ``source`` /
    ``page`` of its metadata (a LangChain loader's), when given (``""`` otherwise)."""
    names = []
    if isinstance(ids, (list, tuple)) and i < len(ids) and isinstance(ids[i], str):
        names.append(f"id {ids[i]!r}")
    md = metadatas[i] if isinstance(metadatas, (list, tuple)) and i < len(metadatas) else None
    if isinstance(md, dict):
        names += [f"{key} {md[key]!r}" for key in ("source", "page") if isinstance(md.get(key), (str, int))]
    return f" ({', '.join(names)})" if names else ""


def _user_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A record's metadata without medrag's reserved keys, keys sorted: Chroma returns them in an order
    that changes from call to call, and a prompt rendering them should not (LLM caches, snapshots)."""
    return {k: (metadata or {})[k] for k in sorted(metadata or {}) if k != FULL_KEY}


def _document(id_: str, text: str | None, metadata: dict[str, Any] | None) -> Document:
    return Document(id=id_, page_content=text or "", metadata=_user_metadata(metadata))


def _plain(value: Any) -> Any:
    """A metadata value or filter as Chroma takes and gives it back: numpy scalars as Python ones;
    tuples, numpy arrays and pandas Series or Index objects (``{"$in": df["year"].unique()}``) as
    lists; dicts (filters) converted value by value."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:  # np.float32(0.965) as 0.965, the value shown,
        # not 0.9649999737739564, which an equality filter on 0.965 missed (user tryout)
        return float(str(value)) if np.isfinite(value) else value.item()
    if isinstance(value, np.generic):
        return value.item()
    if not isinstance(value, (str, bytes)) and callable(getattr(value, "tolist", None)):  # arrays, Series, Index
        return _plain(value.tolist())
    return value


def _vector_rows(rows: Any, dim: int) -> np.ndarray:
    """The embeddings' vectors as a float32 array; a row of another length (a flaky embedding API) or a
    value that is not a number is a :class:`DimensionError` / :class:`MedragError` naming the text."""
    if not isinstance(rows, np.ndarray):
        try:
            rows = list(rows)
        except TypeError as exc:
            raise MedragError(f"the embeddings returned {type(rows).__name__}, not a list of vectors") from exc
        for i, row in enumerate(rows):
            if not hasattr(row, "__len__"):
                raise MedragError(f"the embeddings returned {type(row).__name__} for text {i}, not a vector")
            size = len(row)
            if size != dim:
                raise DimensionError(f"the embeddings returned a vector of {size} values for text {i} "
                                     f"(expected {dim}); check the embedding model or API for that text")
    return _numbers(rows, "the embeddings returned")


def _numbers(values: Any, what: str) -> np.ndarray:
    """``values`` as a float32 array: real numbers of any type (numpy, bool, Decimal, torch, object
    arrays of floats); not text (numeric strings such as ``"0.12"`` were stored as numbers: user
    tryout), None, complex numbers or dates.

    Raises:
        MedragError: ``what`` followed by the first value that is not a number.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MedragError(f"{what} values that are not numbers ({exc})") from exc
    if array.dtype.kind == "O":
        for value in array.ravel():
            if value is None or isinstance(value, (str, bytes, complex)):
                raise MedragError(f"{what} a value that is not a number: {value!r}")
    elif array.dtype.kind not in "fiub":
        first = array.ravel()[0].item() if array.size else None
        raise MedragError(f"{what} values that are not numbers ({array.dtype.name}, e.g. {first!r})")
    try:
        return array.astype(np.float32, copy=False)
    except (TypeError, ValueError, OverflowError) as exc:  # 10**400 in an object array: a raw OverflowError
        raise MedragError(f"{what} values that are not numbers ({exc})") from exc


def _content_hash(text: str, metadata: dict[str, Any]) -> str:
    payload = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _same_metadata(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """Whether a stored record's metadata (the store's keys aside) is ``given`` (None values: no key)."""
    return ({k: v for k, v in stored.items() if k != FULL_KEY}
            == {k: _plain(v) for k, v in given.items() if v is not None})


def check_search_sizes(k: Any, candidates: Any, *, k_name: str = "k",
                       candidates_name: str = "candidates") -> tuple[int, int | None]:
    """Check a search's ``k`` and stage-1 ``candidates`` (None: the store's); return them as ints.

    ``k`` must be >= 1, ``candidates`` (when given) >= ``k``, and neither above what one Chroma
    query can return. The names in the messages are the caller's: ``medrag search`` passes
    ``"--k"`` and ``"--candidates"`` to check its flags before the model loads.

        >>> check_search_sizes(4, None)
        (4, None)
        >>> check_search_sizes(10, 5, k_name="--k", candidates_name="--candidates")
        Traceback (most recent call last):
        ...
        medrag.errors.InvalidInputError: --candidates (5) must be >= --k (10): stage 1 cannot return fewer than k
    """
    k = _check_int(k_name, k)
    if k < 1:
        raise InvalidInputError(f"{k_name} must be >= 1, got {k}")
    if candidates is not None:
        candidates = _check_int(candidates_name, candidates)
        if candidates < k:
            raise InvalidInputError(f"{candidates_name} ({candidates}) must be >= {k_name} ({k}): stage 1 cannot "
                                    "return fewer than k")
    if max(k, candidates or 0) > _MAX_RESULTS:
        raise InvalidInputError(f"{k_name} / {candidates_name} must be at most {_MAX_RESULTS}: "
                                f"{max(k, candidates or 0)} is more than a Chroma query can return")
    return k, candidates


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an int, got {value!r}")
    return int(value)


def _b64(packed: Any) -> bytes | None:
    """A base64 metadata string as bytes; None when it is not valid base64."""
    try:
        return base64.b64decode(packed, validate=True)
    except (ValueError, TypeError):
        return None


def _empty(collection: "chromadb.Collection", page: int) -> None:
    """Delete every record of ``collection``, ``page`` ids at a time, before the collection itself:
    chromadb 1.5.9 leaves a deleted collection's list-valued metadata behind, and the records of a
    collection made after it came back holding those keys (a phantom ``tags`` that filters matched)."""
    while True:
        ids = collection.get(include=[], limit=page)["ids"]
        if not ids:
            return
        collection.delete(ids=ids)


def _fork_error(what: str) -> StoreError:
    return StoreError(
        f"{what}: Chroma's embedded client does not work in a forked process (its calls hang). Open the store in "
        "each worker process started afresh (gunicorn: without --preload; multiprocessing: the 'spawn' start "
        "method, multiprocessing.get_context('spawn')), or run a Chroma server (chroma run --path DIR) and have "
        "each worker connect to it (chromadb.HttpClient; medrag search/index: --host, --port)")


def _is_local_client(client: Any) -> bool:
    """Whether ``client`` is an embedded Chroma client (persistent or in memory), not a server's."""
    try:
        return "rust" in str(getattr(client.get_settings(), "chroma_api_impl", "")).lower()
    except Exception:  # noqa: BLE001 - a client-like object without settings: treated as local (guarded)
        return True


def _real_folder(path: str | os.PathLike[str]) -> str:
    """A folder path as the file system resolves it (links followed, absolute). ``~`` is not expanded,
    as neither Chroma's ``PersistentClient`` nor the store expands it: ``"~/db"`` is a folder named
    ``~`` in the working folder to both (review)."""
    return os.path.realpath(os.fspath(path))


def _hnsw_settings(collection: Any) -> dict[str, Any]:
    """A collection's recorded HNSW settings (``space``, ``sync_threshold``...), read from its raw
    configuration: ``collection.configuration`` warns "legacy embedding function config"
    (DeprecationWarning) for every collection made without an embedding function, as medrag's are,
    and that warning reached users' test output at every open (user tryout)."""
    raw = getattr(collection, "configuration_json", None)
    if raw is None:  # a client without it (an older chromadb, a fake)
        raw = getattr(collection, "configuration", None)
    return dict((raw or {}).get("hnsw") or {})


def _filter_keys(where: Any) -> Iterator[str]:
    """The metadata keys and operators a Chroma filter names (for a log line without its values)."""
    if isinstance(where, dict):
        for key, value in where.items():
            yield str(key)
            yield from _filter_keys(value)
    elif isinstance(where, list):
        for item in where:
            yield from _filter_keys(item)


def _persist_directory(client: Any) -> str | None:
    """The folder of an embedded persistent client; None for servers and in-memory clients."""
    try:
        settings = client.get_settings()
    except Exception:
        return None
    if not getattr(settings, "is_persistent", False) or "rust" not in str(getattr(settings, "chroma_api_impl", "")).lower():
        return None
    return getattr(settings, "persist_directory", None) or None


def _server_address(client: Any) -> str:
    """``http(s)://host:port`` of a server's client, from its settings (no request); its type's name otherwise."""
    try:
        settings = client.get_settings()
        host, port = settings.chroma_server_host, settings.chroma_server_http_port
    except Exception:
        return type(client).__name__
    if not host:
        return type(client).__name__
    scheme = "https" if getattr(settings, "chroma_server_ssl_enabled", False) else "http"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def _check_collection_name(name: Any, what: str = "collection name") -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid {what} {name!r}: Chroma needs 3-512 characters from [a-zA-Z0-9._-], starting and "
            "ending with a letter or digit, without '..'"
        )


_LEGACY_HNSW_PREFIX = "hnsw:"
#: Chroma's legacy collection-metadata HNSW keys (``collection_metadata={"hnsw:space": "cosine"}``, the
#: langchain-chroma idiom) and the ``hnsw`` configuration settings they stand for
_LEGACY_HNSW_KEYS = {
    "hnsw:space": "space", "hnsw:construction_ef": "ef_construction", "hnsw:M": "max_neighbors",
    "hnsw:search_ef": "ef_search", "hnsw:num_threads": "num_threads", "hnsw:batch_size": "batch_size",
    "hnsw:sync_threshold": "sync_threshold", "hnsw:resize_factor": "resize_factor",
}


def _legacy_hnsw_metadata(metadata: dict[str, Any] | None, hnsw: dict[str, Any] | None
                          ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``collection_metadata``'s ``hnsw:*`` keys moved into ``hnsw`` (checked there like any setting:
    a space other than cosine is refused); stored as metadata they broke every later write.

    >>> _legacy_hnsw_metadata({"hnsw:space": "cosine", "hnsw:search_ef": 800, "team": "x"}, None)
    ({'team': 'x'}, {'space': 'cosine', 'ef_search': 800})
    """
    if not metadata or not any(isinstance(k, str) and k.startswith(_LEGACY_HNSW_PREFIX) for k in metadata):
        return metadata, hnsw
    if hnsw is not None and not isinstance(hnsw, dict):
        return metadata, hnsw  # _check_hnsw names the error
    unknown = [k for k in metadata if isinstance(k, str) and k.startswith(_LEGACY_HNSW_PREFIX)
               and k not in _LEGACY_HNSW_KEYS]
    if unknown:
        raise InvalidInputError(f"unknown collection_metadata key(s) {unknown}: Chroma's HNSW keys are "
                                f"{list(_LEGACY_HNSW_KEYS)}; or pass hnsw={{...}} (e.g. {{'ef_search': 800}})")
    moved = {_LEGACY_HNSW_KEYS[k]: v for k, v in metadata.items() if k in _LEGACY_HNSW_KEYS}
    both = [k for k, v in moved.items() if k in (hnsw or {}) and hnsw[k] != v]
    if both:
        raise InvalidInputError(f"hnsw {both} set twice, differently: in hnsw= and as 'hnsw:' keys of "
                                "collection_metadata; keep one")
    rest = {k: v for k, v in metadata.items() if k not in _LEGACY_HNSW_KEYS}
    return rest, {**moved, **(hnsw or {})}


def _check_hnsw(hnsw: Any) -> dict[str, Any] | None:
    """``hnsw`` as given (a dict or None); a space other than cosine is refused, not overridden."""
    if hnsw is None:
        return None
    if not isinstance(hnsw, dict) or not all(isinstance(k, str) for k in hnsw):
        raise InvalidInputError(f"hnsw must be a dict of Chroma HNSW settings (e.g. {{'ef_search': 800}}), got {hnsw!r}")
    unknown = [k for k in hnsw if k not in _HNSW_SETTINGS]
    if unknown:
        raise InvalidInputError(f"unknown hnsw setting(s) {unknown}: Chroma's are {list(_HNSW_SETTINGS)}")
    if hnsw.get("space", "cosine") != "cosine":
        raise InvalidInputError(f"hnsw space {hnsw['space']!r}: the store always uses 'cosine' (its scores and "
                                "reranking assume normalised vectors); leave 'space' out")
    out: dict[str, Any] = {}
    for key, value in hnsw.items():
        if key == "resize_factor":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
                raise InvalidInputError(f"hnsw resize_factor must be a number > 0, got {value!r}")
            out[key] = float(value)
        elif key != "space":
            out[key] = _check_int(f"hnsw {key}", value)  # None included: leave a setting out for its default
            if out[key] < 1:
                raise InvalidInputError(f"hnsw {key} must be >= 1, got {value!r}")
        else:
            out[key] = value
    return out


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, np.integer)):
        if not _INT64[0] <= int(value) <= _INT64[1]:
            raise InvalidInputError(f"{where} is an int outside the 64-bit range Chroma stores: {value}")
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise InvalidInputError(f"{where} is {value}: Chroma cannot store NaN or infinite floats"
                                    + (" (a missing value: pass None, or leave the key out)" if math.isnan(value) else ""))
    elif isinstance(value, str):
        _check_utf8(value, where)
    else:
        raise InvalidInputError(f"{where} is a {type(value).__name__}; Chroma stores str, int, float, bool, None "
                                f"or a non-empty list of one of the first four{_value_advice(value)}")


def _value_advice(value: Any) -> str:
    """What to store instead of ``value``, for the kinds pandas and databases hand over (user tryout:
    a date, pandas' NA and a numpy array were refused with no way out)."""
    import datetime

    kind = type(value).__name__
    if kind in ("NAType", "NaTType"):  # before the dates: pandas' NaT is a datetime (review)
        return "; for a missing value pass None, or leave the key out"
    if isinstance(value, (datetime.date, datetime.time, np.datetime64)) or kind == "Timestamp":
        return ("; store a date as an ISO string ('2024-03-01', value.isoformat()) or, to filter on a range "
                "with $gte/$lt, as a number such as 20240301")
    if hasattr(value, "tolist"):  # numpy arrays, pandas arrays
        return "; pass value.tolist() (a list of str, int, float or bool)"
    return ""


def check_metadata_key(key: str, where: str) -> None:
    """Refuse a metadata key no record may have: one starting with ``_medrag`` (the store's own
    keys) or with ``$``, ``#`` or ``chroma:`` (Chroma's operators and its own keys). ``medrag
    index`` checks its ``--metadata-fields`` with it before the model loads.

    Raises:
        InvalidInputError: ``where``, then why.
    """
    if key.startswith("_medrag"):
        raise InvalidInputError(f"{where}: keys starting with _medrag are the store's (reserved)")
    if key.startswith(("$", "#", "chroma:")):
        raise InvalidInputError(f"{where}: Chroma refuses metadata keys starting with '$', '#' or 'chroma:'")


def _check_metadata(md: Any, index: int, id_: str | None = None) -> dict[str, Any]:
    """One record's metadata, checked as Chroma will check it (and for what breaks Chroma).

    Non-finite floats are refused anywhere: a NaN inside a list value made the embedded
    collection unreadable ("Error in compaction") even after reopening.
    """
    from chromadb.api.types import validate_metadata

    where = f"metadata at index {index}" + (f" (id {id_!r})" if id_ else "")
    if md is None:
        return {}
    if not isinstance(md, dict):
        raise InvalidInputError(f"{where} is {type(md).__name__}, not a dict")
    if any(isinstance(v, np.generic) or (isinstance(v, (list, tuple)) and any(isinstance(x, np.generic) for x in v))
           for v in md.values()):
        # numpy scalars (a pandas row's values): np.bool_ was refused as "a bool", np.int64 by Chroma
        md = {k: _plain(v) for k, v in md.items()}
    for key, value in md.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"{where} has key {key!r}: keys must be non-empty strings")
        _check_utf8(key, f"{where}, key {key!r}")
        check_metadata_key(key, f"{where} has key {key!r}")
        if isinstance(value, (list, tuple)):
            if not value:
                raise InvalidInputError(f"{where}, key {key!r}: an empty list (Chroma needs at least one value)")
            kinds = {bool if isinstance(v, bool) else str if isinstance(v, str) else
                     int if isinstance(v, (int, np.integer)) else float if isinstance(v, (float, np.floating))
                     else type(v) for v in value}
            if len(kinds) != 1 or not kinds <= {bool, str, int, float}:
                raise InvalidInputError(
                    f"{where}, key {key!r}: a list must hold values of one type among str, int, float, bool; "
                    f"got {sorted(k.__name__ for k in kinds)}"
                )
            for j, v in enumerate(value):
                _check_value(v, f"{where}, key {key!r}, item {j}")
        else:
            _check_value(value, f"{where}, key {key!r}")
    try:
        validate_metadata({**md, FULL_KEY: ""})
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{where} is rejected by Chroma: {exc}") from exc
    return md


def _with_ids(ids: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``ids`` when given (as langchain-core's ``from_documents`` passes them on)."""
    return kwargs if ids is None else {**kwargs, "ids": ids}


def _check_documents(documents: Any) -> list[Document]:
    """``documents`` as a list of LangChain Documents, or an :class:`InvalidInputError` naming the first
    entry that is not one (LangChain's base class raised a bare AttributeError on ``doc.page_content``)."""
    if isinstance(documents, (str, bytes, dict, Document)) or documents is None or not hasattr(documents, "__iter__"):
        raise InvalidInputError("documents must be a list of langchain Document objects, not "
                                f"{'a single ' if documents is not None else ''}{type(documents).__name__}")
    documents = list(documents)
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidInputError(f"document at index {i} is a {type(doc).__name__}, not a langchain Document: "
                                    "write Document(page_content=...)")
    return documents


def _check_ids(ids: Any) -> list[str]:
    """A list of non-empty string ids; a bare string is refused (it would iterate its characters)."""
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(f"ids must be a list of ids, not a bare string: write [{ids!r}]")
    try:
        out = list(ids)
    except TypeError as exc:
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}") from exc
    for i, id_ in enumerate(out):
        if not isinstance(id_, str) or not id_:
            raise InvalidInputError(f"id at index {i} must be a non-empty string, got {id_!r}")
        _check_no_nul(id_, i)
    return [str(id_) for id_ in out]  # numpy's np.str_ (ids from an array) as plain str


def _check_no_nul(id_: str, i: int) -> None:
    """Refuse a NUL in an id: the BM25 sidecar's file (numpy str arrays) would drop a trailing one."""
    if "\x00" in id_:
        raise InvalidInputError(f"id at index {i} holds a NUL character (\\x00): {id_!r}; remove it from the id")


def _check_search_type(search_type: Any) -> str:
    """``search_type`` of :meth:`MatryoshkaChroma.search`, or an :class:`InvalidInputError` listing the four."""
    if search_type not in MatryoshkaRetriever.allowed_search_types:
        raise InvalidInputError(f"search_type must be one of {MatryoshkaRetriever.allowed_search_types}, "
                                f"got {search_type!r}")
    return search_type


#: The arguments :meth:`MatryoshkaChroma.hybrid_search` takes, as ``search_kwargs`` of a hybrid retriever.
HYBRID_KWARGS = ("k", "filter", "lexical_weight", "fusion", "candidates", "lexical_candidates", "where_document")


#: The ``search_kwargs`` each retriever ``search_type`` takes (its search method's arguments).
RETRIEVER_KWARGS = {
    "similarity": ("k", "filter", "candidates", "where_document"),
    "similarity_score_threshold": ("k", "filter", "candidates", "where_document", "score_threshold"),
    "mmr": ("k", "fetch_k", "lambda_mult", "filter", "candidates", "where_document"),
    "hybrid": HYBRID_KWARGS,
}
_SEARCH_METHODS = {"similarity": "similarity_search()", "similarity_score_threshold":
                   "similarity_search_with_relevance_scores()", "mmr": "max_marginal_relevance_search()",
                   "hybrid": "hybrid_search()"}


def _is_unit_interval(value: Any) -> bool:
    """Whether ``value`` is a real number (numpy's too, not a bool) in [0, 1]."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and 0.0 <= float(value) <= 1.0


def _check_retriever_kwargs(search_type: str, search_kwargs: dict[str, Any]) -> None:
    """A retriever's ``search_kwargs`` for ``search_type``: known names, valid values, checked when the
    retriever is built (they failed at its first query, in production; a misspelt name was ignored)."""
    allowed = RETRIEVER_KWARGS[search_type]
    unknown = sorted(set(search_kwargs) - set(allowed))
    if unknown:
        hint = ("; a score threshold needs search_type='similarity_score_threshold'"
                if "score_threshold" in unknown else "")
        raise InvalidInputError(f"search_kwargs {unknown} are not arguments of {_SEARCH_METHODS[search_type]} "
                                f"(search_type={search_type!r} takes {', '.join(allowed)}){hint}")
    for name in ("k", "fetch_k", "lambda_mult"):  # None is no default here: the search itself refused it
        if name in search_kwargs and search_kwargs[name] is None:
            raise InvalidInputError(f"search_kwargs[{name!r}] is None; give a value, or leave it out for the default")
    for name in ("k", "candidates", "lexical_candidates", "fetch_k"):
        value = search_kwargs.get(name)
        if value is not None and _check_int(f"search_kwargs[{name!r}]", value) < 1:
            raise InvalidInputError(f"search_kwargs[{name!r}] must be >= 1, got {value!r}")
    if search_kwargs.get("candidates") is not None:  # below k (MMR: fetch_k): it failed at the first query
        k = search_kwargs.get("k")
        if search_type == "mmr":
            least = max(4 if k is None else k, search_kwargs.get("fetch_k") or 20)
            if search_kwargs["candidates"] < least:
                raise InvalidInputError(f"search_kwargs['candidates'] ({search_kwargs['candidates']}) must be at least "
                                        f"fetch_k and k ({least}): MMR chooses among fetch_k of the candidates")
        else:
            check_search_sizes(4 if k is None else k, search_kwargs["candidates"], k_name="search_kwargs['k']",
                               candidates_name="search_kwargs['candidates']")
    lambda_mult = search_kwargs.get("lambda_mult")
    if lambda_mult is not None and not _is_unit_interval(lambda_mult):
        raise InvalidInputError(f"search_kwargs['lambda_mult'] must be a number in [0, 1], got {lambda_mult!r}")
    if search_kwargs.get("lexical_weight") is not None:
        check_lexical_weight(search_kwargs["lexical_weight"])
    if search_kwargs.get("fusion") is not None and search_kwargs["fusion"] not in FUSION_METHODS:
        raise InvalidInputError(f"unknown fusion {search_kwargs['fusion']!r}; use one of {FUSION_METHODS}")
    for name in ("filter", "where_document"):
        if search_kwargs.get(name) is not None and not isinstance(search_kwargs[name], dict):
            raise InvalidInputError(f"search_kwargs[{name!r}] must be a dict (a Chroma filter), got "
                                    f"{type(search_kwargs[name]).__name__}")


#: The attributes LangChain's embeddings classes name their model by (HuggingFaceEmbeddings'
#: ``model_name``, OpenAIEmbeddings', OllamaEmbeddings' and MistralAIEmbeddings' ``model``,
#: BedrockEmbeddings' ``model_id``): another size of one model is told apart by the vector size.
_MODEL_ATTRIBUTES = ("model", "model_name", "model_id")


def _unwrapped(embedding: Any) -> Any:
    """The model a caching wrapper encodes with (LangChain's ``CacheBackedEmbeddings`` names it
    ``underlying_embeddings``): a collection records that model, not the wrapper. Recorded as
    "CacheBackedEmbeddings", a store let another model of the same size write into it through the
    wrapper, and refused the model that built it (user tryout)."""
    seen = 0
    while seen < 8 and isinstance(getattr(embedding, "underlying_embeddings", None), Embeddings):
        embedding, seen = embedding.underlying_embeddings, seen + 1
    return embedding


def default_coarse_dim(full_dim: int) -> int:
    """The coarse size of a new collection when ``coarse_dim`` is not given: :data:`DEFAULT_COARSE_DIM`,
    or half the full size for a model of that size or less (a 64-dim model was refused with an error
    about a ``coarse_dim`` its user never set, and ``medrag demo`` could not run it: user tryout).

    >>> default_coarse_dim(384), default_coarse_dim(64), default_coarse_dim(48)
    (64, 32, 24)
    """
    return DEFAULT_COARSE_DIM if full_dim > DEFAULT_COARSE_DIM else max(1, full_dim // 2)


def _prompts_record(embedding: Any) -> str | None:
    """What a collection records of the prompts ``embedding`` puts before queries and passages
    (``MatryoshkaEmbeddings.prompt_texts``): ``{"query": ..., "document": ...}`` as JSON; None for
    embeddings that do not say (a plain LangChain ``Embeddings``, precomputed vectors)."""
    texts = getattr(_unwrapped(embedding), "prompt_texts", None)
    if not (isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts)):
        return None
    return json.dumps({"query": texts[0], "document": texts[1]}, ensure_ascii=False, sort_keys=True)


def recorded_prompts(record: str | None) -> dict[str, str] | None:
    """The prompts a collection recorded (its ``medrag:prompts``), as ``MatryoshkaEmbeddings(prompts=...)``
    takes them; None when it recorded none (or something unreadable).

    >>> recorded_prompts('{"document": "passage: ", "query": "query: "}')
    {'query': 'query: ', 'passage': 'passage: '}
    >>> recorded_prompts(None) is None
    True
    """
    try:
        value = json.loads(record) if isinstance(record, str) else None
    except ValueError:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("query"), str) and isinstance(value.get("document"), str)):
        return None
    return {"query": value["query"], "passage": value["document"]}


def _describe_prompts(record: str) -> str:
    prompts = recorded_prompts(record)
    if prompts is None:
        return f"the prompts {record!r}"
    return " and ".join(f"{'no ' + side + ' prompt' if not text else side + ' prompt ' + repr(text)}"
                        for side, text in (("query", prompts["query"]), ("passage", prompts["passage"])))


def _prompts_hint(record: str) -> str:
    prompts = recorded_prompts(record)
    if prompts is None:
        return ""
    return (f" To keep serving it, give the embeddings the recorded prompts: MatryoshkaEmbeddings(<model>, "
            f"prompts={prompts!r}) (medrag index and medrag search use them themselves); to change them, reindex.")


def _plain_identity(embedding: Any) -> str:
    """What a collection records of a plain LangChain ``Embeddings`` (no fingerprint): its class and,
    where it has one, its model name (``HuggingFaceEmbeddings:intfloat/multilingual-e5-base``). The
    class name alone let two models of one class and one size write into one collection, their vectors
    compared as if of one model (re-read)."""
    identity = type(embedding).__name__
    for attr in _MODEL_ATTRIBUTES:
        try:
            value = getattr(embedding, attr, None)
        except Exception:  # a property that fails: no model name
            value = None
        if isinstance(value, str) and value.strip():
            name = value.strip()
            try:  # a local folder ("models/e5") read from another working folder is the same model (review)
                path = Path(name).expanduser()
                name = str(path.resolve()) if path.exists() else name
            except (OSError, RuntimeError, ValueError):
                pass
            identity += f":{name}"
            break
    return identity


def _plain_class(identity: Any) -> str:
    """The class name of a plain Embeddings' recorded identity (:func:`_plain_identity`)."""
    return str(identity).split(":", 1)[0]


def _named_plain_identity(recorded: Any, identity: str) -> bool:
    """Whether ``recorded`` is the class name alone that an earlier medrag recorded for the plain
    Embeddings whose identity is now ``identity`` (its model name added): the same store, upgraded."""
    return isinstance(recorded, str) and ":" not in recorded and _plain_class(identity) == recorded != identity


def _check_threshold(threshold: Any, cosine: bool = True, retriever: bool = False) -> float:
    """A relevance score threshold as a float (an int is fine: ``0``, ``1``; NaN is refused: it kept nothing).
    With the default relevance (``cosine``: no ``relevance_score_fn``), one outside [-1, 1] is refused:
    ``75`` (a percentage) kept nothing and ``-2`` everything, in silence."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or math.isnan(threshold):
        raise InvalidInputError(("search_type='similarity_score_threshold' needs a number in "
                                 "search_kwargs={'score_threshold': ...}" if retriever else
                                 "score_threshold needs a number") +
                                f" (a relevance score, cosine in [-1, 1]), got {threshold!r}")
    value = float(threshold)
    if cosine and not -1.0 <= value <= 1.0:
        effect = ("kept nothing" + (f" (for {value:g}%, use {value / 100:g})" if value <= 100 else "")
                  if value > 1 else "kept every hit")
        raise InvalidInputError(f"score_threshold={value:g} is outside [-1, 1], the range of the relevance "
                                f"score (the full-size cosine): it would have {effect}")
    return value


def _no_extra(kwargs: dict[str, Any], method: str) -> None:
    if kwargs:
        raise InvalidArgumentError(f"unexpected argument(s) of {method}: {sorted(kwargs)}")


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


def _moved_folder(spec: Any) -> bool:
    """Whether a recorded model ``spec`` is a local folder's absolute path that no longer exists."""
    return isinstance(spec, str) and os.path.isabs(spec) and not os.path.exists(spec)


def _former_weights(spec: Any, fingerprint: str) -> str | None:
    """The packaged spec that ships the earlier weights of bundled model ``spec`` (``fingerprint``), if any."""
    if not (isinstance(spec, str) and spec.startswith("bundled:") and fingerprint):
        return None
    from medrag.adapters import former_weights_spec

    return former_weights_spec(spec, fingerprint)


def _former_weights_hint(former: str, name: str) -> str:
    """A sentence for a collection built with earlier weights of a bundled model that now ship as ``former``."""
    return (f" To keep serving the collection as it is, open it with MatryoshkaEmbeddings({former!r}); to use the new "
            f"weights, reindex it (MatryoshkaChroma.reindex(client, {name!r}, '<new name>', MatryoshkaEmbeddings())).")


def _default_change_hint(stored_spec: Any, spec: str, name: str) -> str:
    """A sentence for a collection built with the *previous* default model and opened with the new one."""
    from medrag.bundled import BUNDLED_SPEC, DEFAULT_SPEC

    if stored_spec != BUNDLED_SPEC or spec != DEFAULT_SPEC or DEFAULT_SPEC == BUNDLED_SPEC:
        return ""
    return (f" medrag's default model changed from {BUNDLED_SPEC!r} to {DEFAULT_SPEC!r}: reindex the collection "
            f"(MatryoshkaChroma.reindex(client, {name!r}, '<new name>', MatryoshkaEmbeddings())) to use "
            f"the new model, or keep the old one with MatryoshkaEmbeddings({BUNDLED_SPEC!r}).")


__all__ = ["MatryoshkaChroma", "AUTO_LEARNED_MIN_TEXTS", "DEFAULT_CANDIDATES", "DEFAULT_COARSE_DIM", "DEFAULT_EF_SEARCH",
           "COMMITTED_KEY", "DEFAULT_FULL_ENCODING", "FULL_KEY", "GENERATION_KEY", "ROTATION_KEY", "ROTATIONS",
           "STORE_SCHEMA_VERSION", "default_coarse_dim", "recorded_prompts"]
