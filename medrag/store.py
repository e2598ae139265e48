"""A two-stage Chroma vector store: coarse Matryoshka search, full-size rerank.

Stage 1 asks Chroma's HNSW index (cosine) for ``candidates`` ids using the first
``coarse_dim`` coordinates of the query vector (64 by default). Stage 2 scores those
candidates exactly against their full-size vectors and returns the top ``k``. The full
vector of each record lives *in the record itself* (packed into a reserved metadata key,
int8 by default), so the stage-1 query returns the candidates' full vectors in the same
call, every client (another process, a restart, a Chroma server) sees them, and one upsert
writes a record's coarse and full vectors together. ``docs/store.md`` gives the measured
reasons for this layout.

Example::

    >>> from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
    >>> store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(), persist_directory="./chroma")
    >>> store.add_texts(["La ferritine basse traduit une carence en fer."])
    >>> store.similarity_search("carence martiale", k=1)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from medrag._store_codec import ENCODINGS, decode_rows, encode_rows
from medrag.embeddings import validate_texts
from medrag.errors import (CollectionMismatchError, DimensionError, InvalidArgumentError, InvalidInputError,
                           MedragError)

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
}
#: Collection-metadata key of the write generation (see :attr:`MatryoshkaChroma.write_generation`).
GENERATION_KEY = "medrag:generation"
#: Stage-1 candidates when neither the constructor nor the call says. Provisional: on the
#: embedded e5-small, which is not Matryoshka-trained, no value up to 1,600 reaches recall@10
#: 0.99 at coarse 64 (``docs/benchmarks.md``), and latency grows linearly with it (about 2.5 ms
#: per 100 on 2 cores). 100 keeps a query within ~3x of plain Chroma; choose per model from the
#: benchmark's candidates/coarse table (``benchmarks/store_benchmark.py run``).
DEFAULT_CANDIDATES = 100
DEFAULT_COLLECTION = "medrag"
_WRITE_BATCH = 1000
_PROGRESS_MIN = 1000


@dataclass(frozen=True)
class FunnelHit:
    """One result of :meth:`MatryoshkaChroma.search_with_stages`.

    Attributes:
        document: the document (internal storage stripped from its metadata).
        score: cosine of the full-size vectors (the rerank score; higher is closer).
        coarse_score: cosine of the coarse vectors (stage 1).
        coarse_rank: 1-based rank among the stage-1 candidates.
    """

    document: Document
    score: float
    coarse_score: float
    coarse_rank: int


@dataclass(frozen=True)
class FunnelResult:
    """Hits, best first, the number of stage-1 candidates, and per-stage milliseconds
    (``embed_ms``, ``coarse_ms``: stage 1, ``rerank_ms``: reading the candidates' full vectors
    and scoring them, ``fetch_ms``: reading the texts of the returned hits)."""

    hits: list[FunnelHit]
    candidates: int
    timings: dict[str, float]


class MatryoshkaChroma(VectorStore):
    """Chroma vector store with Matryoshka funnel search (coarse HNSW, full-size rerank).

    Args:
        collection_name: the Chroma collection (created when missing).
        embedding_function: the embeddings. A :class:`medrag.MatryoshkaEmbeddings` is used
            through its numpy API (``encode_documents``/``encode_queries``: one model call per
            batch gives both sizes). Any other LangChain ``Embeddings`` is accepted when its
            ``embed_documents``/``embed_query`` return *Matryoshka* vectors (whose leading
            coordinates are a usable embedding) of at least ``coarse_dim`` values: those vectors
            are the full size, their first ``coarse_dim`` values the coarse one.
        persist_directory: folder of an embedded ``chromadb.PersistentClient`` (ignored when
            ``client`` is given).
        client: any chromadb client (``PersistentClient``, ``EphemeralClient``, ``HttpClient``).
            Neither ``client`` nor ``persist_directory``: an in-memory ``EphemeralClient``.
        coarse_dim: size of the stage-1 vectors kept in Chroma's HNSW index.
        candidates: stage-1 candidates per query (default :data:`DEFAULT_CANDIDATES`); each
            search may override it; never fewer than ``k`` are fetched.
        full_encoding: how the full vectors are packed into each record: ``"int8"`` (default,
            ``full_dim + 4`` bytes, recall identical to float32 in the benchmark), ``"float16"``
            or ``"float32"``. Fixed when the collection is created.
        deterministic_ids: when True, texts added without ids get an id derived from their
            content and metadata (:meth:`content_id`), so re-adding the same texts is a no-op.
        create_collection_if_not_exists: False to fail if the collection is missing.
        collection_metadata: extra collection metadata stored at creation.
        hnsw: extra Chroma HNSW settings at creation (``ef_search``, ``max_neighbors``...;
            the space is always cosine).
        relevance_score_fn: maps a distance to a relevance score (default ``1 - distance``).

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
        coarse_dim: int = 64,
        candidates: int | None = None,
        *,
        full_encoding: str = "int8",
        deterministic_ids: bool = False,
        create_collection_if_not_exists: bool = True,
        collection_metadata: dict[str, Any] | None = None,
        hnsw: dict[str, Any] | None = None,
        relevance_score_fn: Callable[[float], float] | None = None,
    ) -> None:
        import chromadb

        if embedding_function is None:
            raise InvalidInputError("MatryoshkaChroma needs an embedding_function (e.g. medrag.MatryoshkaEmbeddings())")
        if full_encoding not in ENCODINGS:
            raise InvalidInputError(f"full_encoding must be one of {ENCODINGS}, got {full_encoding!r}")
        if client is None:
            client = chromadb.PersistentClient(path=str(persist_directory)) if persist_directory else chromadb.EphemeralClient()
        self._client = client
        self._embedding = embedding_function
        # The store draws its own progress bar over a whole add; a MatryoshkaEmbeddings left on
        # its default (a bar per batch of >= 256 texts) is used through a quiet copy sharing the model.
        self._encoder: Any = embedding_function
        if getattr(embedding_function, "show_progress", False) is None and hasattr(embedding_function, "with_dimension"):
            self._encoder = embedding_function.with_dimension(embedding_function.dimension)
            self._encoder.show_progress = False
        self._full_dim = self._probe_full_dim(embedding_function)
        coarse_dim = _check_int("coarse_dim", coarse_dim)
        if not 1 <= coarse_dim < self._full_dim:
            raise DimensionError(
                f"coarse_dim={coarse_dim} must be between 1 and the model's full size minus one "
                f"({self._full_dim - 1}); the funnel needs a smaller stage-1 vector"
            )
        allowed = getattr(embedding_function, "dims", None)
        if allowed and coarse_dim not in allowed:
            logger.warning("coarse_dim=%d is not a trained Matryoshka size of this model (%s): "
                           "stage-1 recall may drop", coarse_dim, allowed)
        self._coarse_dim = coarse_dim
        self._candidates = _check_int("candidates", candidates) if candidates is not None else DEFAULT_CANDIDATES
        if self._candidates < 1:
            raise InvalidInputError(f"candidates must be >= 1, got {self._candidates}")
        self._encoding = full_encoding
        self._deterministic_ids = deterministic_ids
        self._collection_name = collection_name
        self.override_relevance_score_fn = relevance_score_fn
        self._collection = self._open_collection(collection_name, create_collection_if_not_exists,
                                                 collection_metadata, hnsw)

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _probe_full_dim(embedding: Embeddings) -> int:
        dim = getattr(embedding, "full_dim", None)
        if isinstance(dim, int) and dim > 0:
            return dim
        # A plain Embeddings: its output size is the full size (one probe call).
        return len(embedding.embed_query("medrag dimension probe"))

    @property
    def _model_identity(self) -> tuple[str, str]:
        emb = self._embedding
        spec = getattr(emb, "spec", None) or type(emb).__name__
        fingerprint = getattr(emb, "fingerprint", None) or ""
        return str(spec), str(fingerprint)

    def _contract(self) -> dict[str, Any]:
        spec, fingerprint = self._model_identity
        return {
            _C["schema"]: STORE_SCHEMA_VERSION,
            _C["model"]: spec,
            _C["fingerprint"]: fingerprint,
            _C["full_dim"]: self._full_dim,
            _C["coarse_dim"]: self._coarse_dim,
            _C["distance"]: "cosine",
            _C["encoding"]: self._encoding,
        }

    def _open_collection(self, name: str, create: bool, extra_metadata: dict[str, Any] | None,
                         hnsw: dict[str, Any] | None) -> "chromadb.Collection":
        from chromadb.errors import NotFoundError

        try:
            collection = self._client.get_collection(name=name, embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            if not create:
                raise CollectionMismatchError(
                    f"collection {name!r} does not exist; pass create_collection_if_not_exists=True to create it"
                ) from exc
            metadata = {**(extra_metadata or {}), **self._contract(), GENERATION_KEY: 0}
            config = {"hnsw": {**(hnsw or {}), "space": "cosine"}}
            collection = self._client.get_or_create_collection(
                name=name, metadata=metadata, configuration=config, embedding_function=None
            )
        self._check_contract(collection)
        return collection

    def _check_contract(self, collection: "chromadb.Collection") -> None:
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
        for key in ("full_dim", "coarse_dim", "distance", "encoding"):
            if meta.get(_C[key]) != expected[_C[key]]:
                problems.append(f"{key}: collection has {meta.get(_C[key])!r}, this store {expected[_C[key]]!r}")
        stored_fp, fp = meta.get(_C["fingerprint"]) or "", expected[_C["fingerprint"]]
        if stored_fp != fp or (not fp and meta.get(_C["model"]) != expected[_C["model"]]):
            problems.append(
                f"model: collection was built with {meta.get(_C['model'])!r} (fingerprint {stored_fp or 'none'}), "
                f"this store uses {expected[_C['model']]!r} (fingerprint {fp or 'none'})"
            )
        space = ((collection.configuration or {}).get("hnsw") or {}).get("space")
        if space not in (None, "cosine"):
            problems.append(f"hnsw space: collection uses {space!r}, the store needs 'cosine'")
        if problems:
            raise CollectionMismatchError(
                f"collection {name!r} does not match this store ({'; '.join(problems)}). Nothing was written. "
                "Open it with the same model and sizes, or reindex into a new collection with MatryoshkaChroma.reindex."
                + _default_change_hint(meta.get(_C["model"]), expected[_C["model"]], name)
            )

    # ------------------------------------------------------------------ properties

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings this store encodes texts and queries with."""
        return self._embedding

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
    def candidates(self) -> int:
        """Default number of stage-1 candidates per query."""
        return self._candidates

    def __len__(self) -> int:
        return self._collection.count()

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
            >>> store.add_texts(["Hémoglobine glyquée à 7 %."])
            >>> store.write_generation > g
            True
        """
        meta = self._client.get_collection(self._collection_name, embedding_function=None).metadata or {}
        return int(meta.get(GENERATION_KEY, 0))

    def _bump_generation(self) -> None:
        """Increment the write generation; called before every write to the collection."""
        current = self._client.get_collection(self._collection_name, embedding_function=None)
        meta = dict(current.metadata or {})
        meta[GENERATION_KEY] = int(meta.get(GENERATION_KEY, 0)) + 1
        self._collection.modify(metadata=meta)  # replaces the whole collection metadata

    # ------------------------------------------------------------------ encoding

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        emb = self._encoder
        numpy_api = getattr(emb, "encode_queries" if query else "encode_documents", None)
        if callable(numpy_api):
            vecs = np.asarray(numpy_api(texts), dtype=np.float32)
        elif query:
            vecs = np.asarray([emb.embed_query(t) for t in texts], dtype=np.float32)
        else:
            vecs = np.asarray(emb.embed_documents(texts), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape != (len(texts), self._full_dim):
            raise DimensionError(
                f"the embeddings returned shape {vecs.shape}, expected ({len(texts)}, {self._full_dim})"
            )
        if not np.isfinite(vecs).all():
            raise MedragError("the embeddings returned NaN or infinite values")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)

    def _coarse(self, full: np.ndarray) -> np.ndarray:
        out = np.array(full[:, : self._coarse_dim], dtype=np.float32, copy=True, order="C")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    # ------------------------------------------------------------------ writing

    @staticmethod
    def content_id(text: str, metadata: dict[str, Any] | None = None) -> str:
        """A deterministic id for a text and its metadata (SHA-256 based, 32 hex chars)."""
        payload = json.dumps([text, metadata or {}], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode texts once and upsert them (coarse vector + packed full vector per record).

        Everything is validated before the first write: a rejected call changes nothing
        stored. Records with an existing id are replaced (upsert); when the same id appears
        twice in one call, the last one wins. Writing goes batch by batch: a failure during
        a later batch (the model or Chroma raising, the process killed) leaves the earlier
        batches stored, each record complete; re-running the same call with the same ids
        completes the add.

        Args:
            texts: the texts (non-empty strings).
            metadatas: one metadata dict per text (values as Chroma accepts: str, int, float,
                bool, None or lists of those); keys starting with ``_medrag`` are reserved.
            ids: one id per text (``None`` entries or no list: random UUIDs, or content ids
                with ``deterministic_ids=True``).
            batch_size: texts encoded (one model call) and upserted (one Chroma call) together;
                default 1,000, capped by the client's ``get_max_batch_size()``.
            show_progress: tqdm progress bar (default: for 1,000 texts or more).

        Returns:
            The ids, in the order of ``texts``.

        Raises:
            ValueError: empty text, length mismatch, invalid metadata or id.
        """
        from chromadb.api.types import validate_metadata

        texts = validate_texts(texts)
        n = len(texts)
        if metadatas is None:
            metadatas = [{} for _ in texts]
        metadatas = list(metadatas)
        if len(metadatas) != n:
            raise InvalidInputError(f"got {len(metadatas)} metadatas for {n} texts")
        for i, md in enumerate(metadatas):
            if md is None:
                metadatas[i] = md = {}
            if not isinstance(md, dict):
                raise InvalidInputError(f"metadata at index {i} is {type(md).__name__}, not a dict")
            reserved = [key for key in md if isinstance(key, str) and key.startswith("_medrag")]
            if reserved:
                raise InvalidInputError(f"metadata at index {i} uses reserved key(s) {reserved}")
            try:
                validate_metadata({**md, FULL_KEY: ""})
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(f"metadata at index {i} is rejected by Chroma: {exc}") from exc
        if ids is None:
            ids = [None] * n  # type: ignore[list-item]
        ids = list(ids)
        if len(ids) != n:
            raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
        for i, id_ in enumerate(ids):
            if id_ is None:
                ids[i] = self.content_id(texts[i], metadatas[i]) if self._deterministic_ids else str(uuid.uuid4())
            elif not isinstance(id_, str) or not id_:
                raise InvalidInputError(f"id at index {i} must be a non-empty string, got {id_!r}")
        if n == 0:
            return []
        # Upsert semantics inside one call too: the last occurrence of an id wins.
        last = {id_: i for i, id_ in enumerate(ids)}
        order = [i for i, id_ in enumerate(ids) if last[id_] == i]

        max_batch = self._client.get_max_batch_size()
        batch = _WRITE_BATCH if batch_size is None else _check_int("batch_size", batch_size)
        if batch < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch}")
        batch = min(batch, max_batch)
        show = show_progress if show_progress is not None else len(order) >= _PROGRESS_MIN
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc=f"adding to {self._collection_name}", unit="text")
        try:
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                full = self._encode([texts[i] for i in idx], query=False)  # one model call per batch
                packed = encode_rows(full, self._encoding)
                # One upsert writes the coarse vector, the text and the full vector of each
                # record together: a record is never visible without its full vector.
                self._bump_generation()
                self._collection.upsert(
                    ids=[ids[i] for i in idx],
                    embeddings=self._coarse(full),
                    documents=[texts[i] for i in idx],
                    metadatas=[{**metadatas[i], FULL_KEY: p} for i, p in zip(idx, packed)],
                )
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete records by id. Unknown ids are ignored (a documented no-op).

        Args:
            ids: the ids to delete (required; use :meth:`delete_collection` to drop everything).

        Returns:
            True.
        """
        if ids is None:
            raise InvalidInputError("delete() needs a list of ids; use delete_collection() to remove the whole collection")
        ids = _check_ids(ids)
        if ids:
            max_batch = self._client.get_max_batch_size()
            for start in range(0, len(ids), max_batch):
                self._bump_generation()
                self._collection.delete(ids=ids[start : start + max_batch])
        return True

    def delete_collection(self) -> None:
        """Drop the whole Chroma collection; the store is unusable afterwards."""
        self._client.delete_collection(self._collection_name)

    # ------------------------------------------------------------------ reading

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents with these ids, in the order asked; unknown ids are skipped.

        Args:
            ids: the ids to fetch.
        """
        ids = list(dict.fromkeys(_check_ids(ids)))
        if not ids:
            return []
        found: dict[str, Document] = {}
        max_batch = self._client.get_max_batch_size()
        for start in range(0, len(ids), max_batch):
            res = self._collection.get(ids=ids[start : start + max_batch], include=["documents", "metadatas"])
            for id_, text, md in zip(res["ids"], res["documents"], res["metadatas"]):
                found[id_] = _document(id_, text, md)
        return [found[i] for i in ids if i in found]

    def get_full_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored full-size vectors of these records, one unit-norm float32 row per id, in
        the order asked (a repeated id gives a repeated row).

        This is the one way the rerank (stage 2), MMR and the hybrid search read full vectors,
        whatever the storage layout.

        Example::

            >>> store.get_full_vectors(["a", "b"]).shape
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
        metas = self._full_metadatas(unique)
        missing = [i for i in unique if i not in metas]
        if missing:
            raise CollectionMismatchError(
                f"{len(missing)} record(s) of collection {self._collection_name!r} do not exist: {missing[:5]}"
            )
        rows = self._decode_full(unique, [metas[i] for i in unique])
        position = {id_: n for n, id_ in enumerate(unique)}
        return rows[[position[i] for i in ids]]

    def _decode_full(self, ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> np.ndarray:
        """Decode and normalise the packed full vectors of records; name any missing or corrupt one."""
        packed = self._packed(ids, metas)
        try:
            full = decode_rows(packed, self._encoding, self._full_dim)
        except (InvalidInputError, ValueError, TypeError):
            full = None
        bad: list[str] = []
        if full is None:  # find the culprits row by row
            full = np.zeros((len(ids), self._full_dim), dtype=np.float32)
            for n, (id_, p) in enumerate(zip(ids, packed)):
                try:
                    full[n] = decode_rows([p], self._encoding, self._full_dim)[0]
                except (InvalidInputError, ValueError, TypeError):
                    bad.append(id_)
        norms = np.linalg.norm(full, axis=1)
        bad += [id_ for id_, ok in zip(ids, np.isfinite(full).all(axis=1) & (norms > 0)) if not ok and id_ not in bad]
        if bad:
            raise CollectionMismatchError(
                f"the stored full vector of record(s) {bad[:5]} in collection {self._collection_name!r} is corrupt "
                f"(not a finite {self._encoding} vector of size {self._full_dim}); delete those ids and add them again"
            )
        return (full / norms[:, None]).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ search core

    def _query_vector(self, embedding: Sequence[float] | np.ndarray) -> np.ndarray:
        try:
            vec = np.asarray(embedding, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DimensionError(f"the query vector is not a list of numbers: {exc}") from exc
        if vec.ndim != 1 or vec.shape[0] != self._full_dim:
            raise DimensionError(
                f"the query vector has shape {vec.shape}; this store needs a full-size vector of "
                f"{self._full_dim} values (the model's full size)"
            )
        if not np.isfinite(vec).all():
            raise InvalidInputError("the query vector contains NaN or infinite values")
        norm = float(np.linalg.norm(vec))
        if norm == 0:
            raise InvalidInputError("the query vector is all zeros")
        return vec / norm

    def _embed_query(self, query: str) -> np.ndarray:
        if not isinstance(query, str):
            raise InvalidInputError(f"the query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise InvalidInputError("the query is empty or whitespace only")
        return self._encode([query], query=True)[0]

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

        Stage 1 asks Chroma for ids and distances only; stage 2 reads the candidates' full
        vectors through :meth:`get_full_vectors`'s storage path. Texts are fetched afterwards,
        for the returned hits only (:meth:`_documents`). A candidate deleted between the two
        stages is dropped.

        When ``stats`` is a dict, it receives each returned candidate's coarse cosine and 1-based
        stage-1 rank (``coarse_scores``, ``coarse_ranks``) and the seconds spent per stage
        (``coarse_s``, ``rerank_s``).
        """
        k = _check_int("k", k)
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        n = self._candidates if candidates is None else _check_int("candidates", candidates)
        if candidates is not None and n < k:
            raise InvalidInputError(f"candidates ({n}) must be >= k ({k}): stage 1 cannot return fewer than k")
        n = max(n, k)
        t0 = time.perf_counter()
        res = self._chroma_call(
            "search", self._collection.query,  # empty filters mean "no filter" (Chroma rejects {})
            query_embeddings=[self._coarse(query[None, :])[0]],
            n_results=n,
            where=filter or None,
            where_document=where_document or None,
            include=["distances"],
        )
        t1 = time.perf_counter()
        ids = list(res["ids"][0])
        distances = np.asarray(res["distances"][0], dtype=np.float64)
        metas = self._full_metadatas(ids)
        keep = [i for i, id_ in enumerate(ids) if id_ in metas]
        ids, distances = [ids[i] for i in keep], distances[keep]
        if not ids:
            if stats is not None:
                stats.update(coarse_scores=np.zeros(0), coarse_ranks=np.zeros(0, int), coarse_s=t1 - t0, rerank_s=0.0)
            return [], np.zeros((0, self._full_dim), np.float32), np.zeros(0, np.float32)
        full = self._decode_full(ids, [metas[i] for i in ids])
        scores = full @ query
        order = np.argsort(-scores, kind="stable")
        if stats is not None:
            stats.update(coarse_scores=1.0 - distances[order], coarse_ranks=np.asarray(keep)[order] + 1,
                         coarse_s=t1 - t0, rerank_s=time.perf_counter() - t1)
        return [ids[i] for i in order], full[order], scores[order]

    def _full_metadatas(self, ids: Sequence[str]) -> dict[str, Any]:
        """The stored metadata (holding the packed full vector) of the ids that exist."""
        out: dict[str, Any] = {}
        max_batch = self._client.get_max_batch_size()
        for start in range(0, len(ids), max_batch):
            res = self._chroma_call("read", self._collection.get, ids=list(ids[start : start + max_batch]),
                                    include=["metadatas"])
            out.update(zip(res["ids"], res["metadatas"]))
        return out

    def _documents(self, ids: Sequence[str]) -> list[Document]:
        """Documents (text + user metadata) of these ids, in order; ids deleted meanwhile give an empty document."""
        found: dict[str, Document] = {}
        if ids:
            res = self._chroma_call("read", self._collection.get, ids=list(dict.fromkeys(ids)),
                                    include=["documents", "metadatas"])
            for id_, text, md in zip(res["ids"], res["documents"], res["metadatas"]):
                found[id_] = _document(id_, text, md)
        return [found.get(i) or Document(id=i, page_content="") for i in ids]

    def _chroma_call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call the Chroma client; turn its failures into :class:`MedragError` subclasses."""
        return fn(**kwargs)

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
        _no_extra(kwargs)
        query = self._query_vector(embedding)
        ids, _, scores = self._funnel(query, k, candidates, filter, where_document)
        return [(doc, float(1.0 - s)) for doc, s in zip(self._documents(ids[:k]), scores[:k])]

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
                           where_document: dict[str, Any] | None = None) -> "FunnelResult":
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
        """
        t0 = time.perf_counter()
        vector = self._embed_query(query)
        embed_s = time.perf_counter() - t0
        stats: dict[str, Any] = {}
        ids, _, scores = self._funnel(vector, k, candidates, filter, where_document, stats=stats)
        t2 = time.perf_counter()
        docs = self._documents(ids[:k])
        hits = [FunnelHit(doc, float(s), float(cs), int(cr))
                for doc, s, cs, cr in zip(docs, scores[:k], stats["coarse_scores"][:k], stats["coarse_ranks"][:k])]
        timings = {"embed_ms": 1000 * embed_s, "coarse_ms": 1000 * stats["coarse_s"],
                   "rerank_ms": 1000 * stats["rerank_s"], "fetch_ms": 1000 * (time.perf_counter() - t2)}
        return FunnelResult(hits, len(ids), timings)

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
            fetch_k: documents (best by full-size score) among which MMR chooses.
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
            fetch_k: documents among which MMR chooses.
            lambda_mult: 1 for relevance only, 0 for diversity only.
            filter: Chroma ``where`` filter (stage 1).
            candidates: stage-1 candidates (default: the larger of the store's and ``fetch_k``).
            where_document: Chroma ``where_document`` filter (stage 1).
        """
        _no_extra(kwargs)
        fetch_k = _check_int("fetch_k", fetch_k)
        k = _check_int("k", k)
        if k < 1 or fetch_k < k:
            raise InvalidInputError(f"need 1 <= k <= fetch_k, got k={k}, fetch_k={fetch_k}")
        if not 0.0 <= lambda_mult <= 1.0:
            raise InvalidInputError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        query = self._query_vector(embedding)
        n = max(candidates if candidates is not None else self._candidates, fetch_k)
        ids, full, _ = self._funnel(query, fetch_k, n, filter, where_document)
        ids, full = ids[:fetch_k], full[:fetch_k]
        picked = maximal_marginal_relevance(query, full, lambda_mult=lambda_mult, k=k)
        return self._documents([ids[i] for i in picked])

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
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
            ids: one id per text.
            collection_name / persist_directory / client: as in the constructor.
            **kwargs: other constructor arguments (``coarse_dim``, ``candidates``...).
        """
        store = cls(collection_name, embedding, persist_directory, client, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

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
        re-encoding every text. The source is only read.

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
        source = client.get_collection(source_collection, embedding_function=None)
        store = cls(collection_name, embedding_function, client=client, **kwargs)
        total = source.count()
        from tqdm.auto import tqdm

        for offset in tqdm(range(0, total, batch_size), desc=f"reindex {source_collection}", unit="batch",
                           disable=total < _PROGRESS_MIN):
            res = source.get(limit=batch_size, offset=offset, include=["documents", "metadatas"])
            keep = [i for i, text in enumerate(res["documents"]) if text]
            metas = [{k: v for k, v in (res["metadatas"][i] or {}).items() if not k.startswith("_medrag")}
                     for i in keep]
            store.add_texts([res["documents"][i] for i in keep], metas, ids=[res["ids"][i] for i in keep],
                            show_progress=False)
            if len(keep) < len(res["ids"]):
                logger.warning("reindex skipped %d record(s) without text", len(res["ids"]) - len(keep))
        return store


def _document(id_: str, text: str | None, metadata: dict[str, Any] | None) -> Document:
    md = {k: v for k, v in (metadata or {}).items() if k != FULL_KEY}
    return Document(id=id_, page_content=text or "", metadata=md)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an int, got {value!r}")
    return int(value)


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
    return out


def _no_extra(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise InvalidArgumentError(f"unexpected search argument(s): {sorted(kwargs)}")


__all__ = ["MatryoshkaChroma", "DEFAULT_CANDIDATES", "FULL_KEY", "GENERATION_KEY", "STORE_SCHEMA_VERSION"]


def _default_change_hint(stored_spec: Any, spec: str, name: str) -> str:
    """A sentence for a collection built with the *previous* default model and opened with the new one."""
    from medrag.bundled import BUNDLED_SPEC, DEFAULT_SPEC

    if stored_spec != BUNDLED_SPEC or spec != DEFAULT_SPEC or DEFAULT_SPEC == BUNDLED_SPEC:
        return ""
    return (f" medrag's default model changed from {BUNDLED_SPEC!r} to {DEFAULT_SPEC!r}: reindex the collection "
            f"(MatryoshkaChroma.reindex(client, {name!r}, '<new name>', MatryoshkaEmbeddings())) to use "
            f"the new model, or keep the old one with MatryoshkaEmbeddings({BUNDLED_SPEC!r}).")
