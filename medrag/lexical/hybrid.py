"""Hybrid search on a :class:`~medrag.store.MatryoshkaChroma`: the Matryoshka funnel fused with BM25.

Stage 1 takes the union of two candidate sets: the dense funnel's (Chroma HNSW on the
coarse vectors) and the lexical index's best BM25 hits. Stage 2 scores every candidate on
both sides: the full-size cosine (lexical-only candidates' full vectors are read through
:meth:`~medrag.store.MatryoshkaChroma.get_full_vectors`) and BM25 (candidates sharing no
term with the query have none), then :func:`medrag.lexical.fusion.fused_ranking` merges them
with the call's ``lexical_weight`` (``"auto"``: a weight per query, from BM25's confidence among
the candidates, :func:`medrag.lexical.fusion.query_weight`). Metadata (``filter``) and ``where_document`` filters apply
to both sides: Chroma applies them in stage 1, and lexical candidates are kept only if a
Chroma ``get`` by id with the same filters returns them (the lexical side first over-fetches
4x; when the filter leaves too few of those, the BM25 candidates are ranked among every id the
filter allows, so a selective filter, e.g. one patient or one service, misses none of its matches).

Why: BM25 over French stems finds the exact tokens dense vectors blur (drug names, lab
analytes, units, acronyms), and rank fusion (Cormack et al., SIGIR 2009) lifts NDCG@10 most
where the dense side is weakest, at small Matryoshka sizes (``docs/results.md``).

Example::

    store.hybrid_search("HbA1c cible chez le sujet âgé", k=4, lexical_weight=0.3)
"""

from __future__ import annotations

import logging
import numbers
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.errors import InvalidInputError
from medrag.lexical.fusion import (FUSION_METHODS, RRF_K, check_lexical_weight, fused_ranking, lexical_confidence,
                                   lookup_holders, query_weight)

if TYPE_CHECKING:
    from medrag.store import MatryoshkaChroma

logger = logging.getLogger(__name__)

#: Lexical candidates fetched per wanted one when a filter must be applied afterwards.
FILTER_OVERFETCH = 4


@dataclass
class HybridCandidates:
    """Every stage-2 candidate of one hybrid search, best fused score first (an identifier lookup's
    holders before the others: ``lookup``).

    ``dense_scores`` are full-size cosines; ``coarse_ranks`` the 1-based stage-1 rank (0: a
    lexical-only candidate), ``lexical_scores`` / ``lexical_ranks`` BM25 and its 1-based rank
    among the candidates (NaN / 0: no query term in the document); ``lexical_weight`` the weight
    fused (the call's, or the one ``"auto"`` chose for this query).
    """

    ids: list[str]
    fused: np.ndarray
    dense_scores: np.ndarray
    coarse_scores: np.ndarray
    coarse_ranks: np.ndarray
    lexical_scores: np.ndarray
    lexical_ranks: np.ndarray
    n_dense: int
    n_lexical: int
    lexical_weight: float
    timings: dict[str, float] = field(default_factory=dict)
    #: for an identifier lookup with the ``"auto"`` weight, how many candidates hold all its codes and
    #: were ranked first (:func:`medrag.lexical.fusion.fused_ranking`); 0 otherwise
    lookup: int = 0
    #: the query words no document holds that BM25 scored as a held term one edit away, as
    #: ``(word, term)`` pairs (:attr:`medrag.lexical.bm25.QueryScores.read_as`)
    read_as: tuple[tuple[str, str], ...] = ()


def hybrid_candidates(store: "MatryoshkaChroma", query: str, vector: np.ndarray, k: int, *,
                      lexical_weight: float | str, fusion: str = "rrf", candidates: int | None = None,
                      lexical_candidates: int | None = None, filter: dict[str, Any] | None = None,
                      where_document: dict[str, Any] | None = None) -> HybridCandidates:
    """Run the hybrid funnel for a query text and its (normalised, full-size) vector."""
    setting = check_lexical_weight(lexical_weight)
    if fusion not in FUSION_METHODS:
        raise InvalidInputError(f"unknown fusion {fusion!r}; use one of {FUSION_METHODS}")
    if lexical_candidates is not None:  # numpy ints too, as for k
        if (isinstance(lexical_candidates, bool) or not isinstance(lexical_candidates, numbers.Integral)
                or lexical_candidates < 1):
            raise InvalidInputError(f"lexical_candidates must be a positive int, got {lexical_candidates!r}")
        lexical_candidates = int(lexical_candidates)
    t0 = time.perf_counter()
    stats: dict[str, Any] = {}
    dense_ids, _, dense_full_scores = store._funnel(vector, k, candidates, filter, where_document, stats=stats)
    t1 = time.perf_counter()
    n_lex = lexical_candidates or max(candidates or store.candidates, k)
    index = store.lexical.index()
    filtered = bool(filter) or bool(where_document)
    query_scores = index.query_scores(query)  # BM25 against every document, once
    if query_scores.read_as:  # cortisol read as cortisone's stem: a correct word the store lacks too (at DEBUG:
        # a query's words, a patient's name among them, are not written to a service's logs by default)
        logger.debug("BM25 read %s: no document holds %s", ", ".join(f"{w!r} as {t!r}" for w, t in query_scores.read_as),
                     "that word" if len(query_scores.read_as) == 1 else "those words")
    fetch = n_lex * FILTER_OVERFETCH if filtered else n_lex
    lex_ids, _ = index.top(query_scores, fetch)
    if filtered and lex_ids:
        allowed = set(store._matching_ids(lex_ids, filter, where_document, "filter the lexical candidates"))
        if len(allowed) < n_lex and len(lex_ids) == fetch:
            # a selective filter: the best matches overall are mostly filtered out, so rank the
            # documents the filter allows (one get of their ids) instead of missing its matches
            allowed = set(store._chroma_call("filter the lexical candidates", store.collection.get, include=[],
                                             where=filter or None, where_document=where_document or None,
                                             user_filters=True)["ids"])
            lex_ids, _ = index.top(query_scores, n_lex, ids=allowed)
        lex_ids = [i for i in lex_ids if i in allowed]
    lex_ids = lex_ids[:n_lex]
    in_dense = set(dense_ids)
    # w = 0 is the dense funnel exactly: BM25's candidates would otherwise join the union and could
    # outrank the dense ones on their full-size score (documents stage 1 missed)
    extra = [] if setting == 0 else [i for i in lex_ids if i not in in_dense]
    t2 = time.perf_counter()
    # lexical-only candidates deleted by another thread or client since the index was read are dropped
    extra, extra_full = store._existing_full_vectors(extra)
    extra_scores = extra_full @ vector
    union = [*dense_ids, *extra]
    dense = dict(zip(union, np.concatenate([dense_full_scores, extra_scores]).tolist()))
    lex_u_ids, lex_u_scores = index.top(query_scores, max(len(union), 1), ids=union)
    lexical = dict(zip(lex_u_ids, lex_u_scores.tolist()))
    w = query_weight(setting, lexical_confidence(max(lexical.values(), default=0.0), query_scores.bound))
    first = lookup_holders(setting, query_scores.holders)  # an identifier lookup: its holders first
    order, fused = fused_ranking(dense, lexical, lexical_weight=w, method=fusion, rrf_k=RRF_K, first=first)
    t3 = time.perf_counter()
    coarse_rank = dict(zip(dense_ids, stats.get("coarse_ranks", np.zeros(0, int)).tolist()))
    coarse_score = dict(zip(dense_ids, stats.get("coarse_scores", np.zeros(0)).tolist()))
    lex_rank = {i: r for r, i in enumerate(lex_u_ids, start=1)}
    return HybridCandidates(
        ids=order,
        fused=np.array([fused[i] for i in order], dtype=np.float64),
        dense_scores=np.array([dense[i] for i in order], dtype=np.float32),
        coarse_scores=np.array([coarse_score.get(i, np.nan) for i in order], dtype=np.float64),
        coarse_ranks=np.array([coarse_rank.get(i, 0) for i in order], dtype=int),
        lexical_scores=np.array([lexical.get(i, np.nan) for i in order], dtype=np.float64),
        lexical_ranks=np.array([lex_rank.get(i, 0) for i in order], dtype=int),
        n_dense=len(dense_ids), n_lexical=len(lex_ids), lexical_weight=w,
        lookup=sum(1 for i in order if i in first) if first else 0, read_as=query_scores.read_as,
        timings={"coarse_s": stats.get("coarse_s", t1 - t0), "rerank_s": stats.get("rerank_s", 0.0),
                 "lexical_s": (t2 - t1), "fusion_s": t3 - t2},
    )
