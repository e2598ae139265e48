"""Fusing a dense and a lexical ranking of the same candidates.

Two methods, both with a per-call ``lexical_weight`` w in [0, 1] (0 = dense only, 1 = lexical only):

- ``"rrf"``: weighted reciprocal rank fusion, score = (1 - w) / (k + rank_dense) + w / (k + rank_lex), k = 60
  (Cormack, Clarke and Büttcher, SIGIR 2009; the k and the weighting of LangChain's
  ``EnsembleRetriever`` and Chroma's ``Rrf``). A candidate missing from one ranking gets nothing from it.
  Rank-based, so it needs no score calibration; it ignores how far ahead the top hit is.
- ``"minmax"``: convex combination of min-max normalised scores, (1 - w) * dense' + w * lexical'
  (Fox and Shaw's CombSUM on normalised scores; the "relative score fusion" of Weaviate). A
  candidate missing from the lexical ranking has lexical score 0, i.e. the worst, which is also
  the score of the weakest match (min-max sends each side's lowest score to 0).

Ties (equal fused scores: at w = 0 or 1, or between candidates at 0 on both sides) keep the order
of the heavier side (the dense one at w <= 0.5), then the other's; so at w = 1 the order is the
lexical one, every match before the candidates that share no term with the query.

Example::

    >>> fuse({"a": 0.9, "b": 0.8}, {"b": 7.0, "c": 3.0}, lexical_weight=0.5, method="rrf")
    ['b', 'a', 'c']
    >>> fuse({"a": 0.9, "b": 0.8}, {"b": 7.0, "c": 3.0}, lexical_weight=0.6)  # the store's fusion, min-max
    ['b', 'a', 'c']
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from medrag.errors import InvalidInputError

#: The fusion methods :func:`fuse` knows.
FUSION_METHODS = ("rrf", "minmax")
#: The RRF constant (Cormack et al. 2009).
RRF_K = 60
#: The default fusion and lexical weight of ``MatryoshkaChroma``'s hybrid search, chosen on the
#: validation suite's val part (``docs/results.md``, "Hybrid retrieval"): min-max fusion (it beat
#: RRF at every weight with the base model), and the lexical weight with the best macro NDCG@10
#: averaged over sizes among 0.1..0.8 with no set of the suite (the report-only sample included)
#: more than 0.01 below dense-only at any size, measured with medrag's default model.
#: Re-run ``medrag evaluate --suite --pilot --hybrid --lexical-weight ...`` when the default model changes.
DEFAULT_FUSION = "minmax"
DEFAULT_LEXICAL_WEIGHT = 0.2


def check_weight(lexical_weight: float) -> float:
    """``lexical_weight`` as a float in [0, 1], or an :class:`InvalidInputError` saying what to pass."""
    if isinstance(lexical_weight, bool) or not isinstance(lexical_weight, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(lexical_weight) <= 1.0
    ):
        raise InvalidInputError(f"lexical_weight must be a number in [0, 1] (0 = dense only), got {lexical_weight!r}")
    return float(lexical_weight)


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1-based ranks of ``scores`` (higher score = better; ties broken by the mapping's order)."""
    ordered = sorted(scores, key=lambda i: -scores[i])
    return {id_: r for r, id_ in enumerate(ordered, start=1)}


def fused_scores(dense: Mapping[str, float], lexical: Mapping[str, float], *, lexical_weight: float,
                 method: str = DEFAULT_FUSION, rrf_k: int = RRF_K) -> dict[str, float]:
    """The fused score of every id in ``dense`` or ``lexical`` (higher is better).

    >>> fused_scores({"a": 1.0}, {"a": 2.0, "b": 1.0}, lexical_weight=0.0)["b"]
    0.0
    """
    w = check_weight(lexical_weight)
    for side, scores in (("dense", dense), ("lexical", lexical)):
        bad = [i for i, v in scores.items() if not math.isfinite(v)]
        if bad:  # min-max would make every fused score NaN, in an arbitrary order
            raise InvalidInputError(f"the {side} scores of {bad[:3]} are not finite numbers (NaN or inf)")
    if method not in FUSION_METHODS:
        raise InvalidInputError(f"unknown fusion method {method!r}; use one of {FUSION_METHODS}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
        raise InvalidInputError(f"rrf_k must be a non-negative int, got {rrf_k!r}")
    ids = list(dict.fromkeys([*dense, *lexical]))
    if method == "rrf":
        rd, rl = ranks(dense), ranks(lexical)
        return {i: (1 - w) * (1.0 / (rrf_k + rd[i]) if i in rd else 0.0)
                + w * (1.0 / (rrf_k + rl[i]) if i in rl else 0.0) for i in ids}
    nd, nl = _minmax(dense), _minmax(lexical)
    return {i: (1 - w) * nd.get(i, 0.0) + w * nl.get(i, 0.0) for i in ids}


def fused_ranking(dense: Mapping[str, float], lexical: Mapping[str, float], *, lexical_weight: float,
                  method: str = DEFAULT_FUSION, rrf_k: int = RRF_K) -> tuple[list[str], dict[str, float]]:
    """Every id of both rankings ordered by fused score, and the fused scores (:func:`fused_scores`).

    Ties keep the order of the heavier side's ranking (the dense one when ``lexical_weight <= 0.5``),
    then the other's: the one tie rule of :func:`fuse` and of the store's hybrid search.

    >>> fused_ranking({"a": 0.9, "b": 0.1}, {"b": 2.0}, lexical_weight=1.0)[0]
    ['b', 'a']
    """
    scores = fused_scores(dense, lexical, lexical_weight=lexical_weight, method=method, rrf_k=rrf_k)
    by_dense, by_lexical = sorted(dense, key=lambda i: -dense[i]), sorted(lexical, key=lambda i: -lexical[i])
    order = list(dict.fromkeys([*by_lexical, *by_dense] if lexical_weight > 0.5 else [*by_dense, *by_lexical]))
    position = {i: p for p, i in enumerate(order)}
    return sorted(scores, key=lambda i: (-scores[i], position[i])), scores


def fuse(dense: Mapping[str, float], lexical: Mapping[str, float], *, lexical_weight: float,
         method: str = DEFAULT_FUSION, rrf_k: int = RRF_K, k: int | None = None) -> list[str]:
    """The ids of both rankings ordered by fused score (the first ``k`` when given); ties as in
    :func:`fused_ranking`."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise InvalidInputError(f"k must be a positive int or None (every id), got {k!r}")
    ranked, _ = fused_ranking(dense, lexical, lexical_weight=lexical_weight, method=method, rrf_k=rrf_k)
    return ranked if k is None else ranked[:k]


def _minmax(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {i: 1.0 for i in scores}
    return {i: (s - lo) / (hi - lo) for i, s in scores.items()}
