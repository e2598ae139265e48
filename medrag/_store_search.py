"""The store's search: the funnel (coarse HNSW candidates, full-size rerank), hybrid search, MMR, retrievers.

Stage 1 asks Chroma's HNSW index for ``candidates`` ids with the query's coarse vector; stage 2
reads the candidates' full vectors (the embedded store's local copy, or the records' metadata) and
scores them exactly; the texts are read for the returned ``k`` only (``docs/store.md`` gives the
measured reasons). Hybrid search fuses the funnel's candidates with BM25's
(:mod:`medrag.lexical.hybrid`). These are the LangChain ``VectorStore`` search methods of
:class:`~medrag.store.MatryoshkaChroma`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from medrag._store_checks import (_MAX_RESULTS, _check_ids, _check_int, _check_retriever_kwargs, _check_search_type,
                                  _check_threshold, _is_unit_interval, _no_extra, _numbers, check_search_sizes)
from medrag._store_contract import FULL_KEY, _b64, _document
from medrag.embeddings import check_utf8 as _check_utf8
from medrag.errors import (CollectionMismatchError, DimensionError, InvalidArgumentError, InvalidInputError,
                           MedragError, checked_arguments)
from medrag.flags import check_flag
from medrag.lexical.hybrid import hybrid_candidates
from medrag.lexical.sidecar import LexicalSidecar
from medrag.retriever import MatryoshkaRetriever
from medrag.text_checks import is_blank
from medrag.vector_codec import encoded_size, unpack_rows


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


class FunnelSearch:
    """The search part of :class:`~medrag.store.MatryoshkaChroma` (see the module docstring).

    A mixin: it holds no state of its own. Every attribute its methods use is set in
    ``MatryoshkaChroma.__init__`` (``tests/test_architecture.py`` checks it), so that one place lists a
    store's state."""

    @property
    def lexical_weight(self) -> float | str:
        """Default weight of the lexical side in :meth:`hybrid_search` (0 = dense only; ``"auto"``: per query)."""
        return self._lexical_weight

    @property
    def lexical(self) -> LexicalSidecar:
        """The hybrid search's lexical index manager (``store.lexical.index()`` gives a fresh BM25 index)."""
        return self._lexical

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
