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

The weight is fixed per call, or ``"auto"``: per query, from how fully the best lexical match
covers the query (:func:`lexical_confidence`: its BM25 over the most any document could score for
the query's terms, in [0, 1]). Each term counts by its idf, so a best match that lacks the query's
rare term (a drug name, an analyte) scores low however many common words it shares, and each term
counts by its saturation (tf against the passage's length). A query matched whole by a short
passage leans on BM25 (towards ``AUTO_WEIGHT_RANGE[1]``); one whose terms no passage holds together
stays near ``AUTO_WEIGHT_RANGE[0]``, so BM25 does not override the dense ranking where no passage
matches the query (exam options, lay paraphrases). It does not measure rarity itself: a one-word
query's confidence is that word's saturation in its best passage, common word or not. The
confidence is a score-based query performance predictor (the top retrieval score, as in the
predictors of Shtok et al., ACM TOIS 2012, normalised here by its bound) used to weight the fusion
per query, as Hsu and Tzeng's DAT (2025) does with an LLM's judgement instead. On the validation
suite the weight follows the kind of query more than the single query (median weight about 0.30
for leaflet queries, which name a product and a section; 0.23-0.25 for exam questions, case
reports and abstracts), and it beats every fixed weight that keeps all sets within 0.01 of
dense-only (``docs/results.md``, "A weight per query"). The range was chosen with min-max fusion;
with RRF it applies as it is.

**Identifier lookups.** A query made mostly of codes (a CIP ``3400936379848``, an ATC
``N02BE01``, ``HbA1c``, ``CYP3A4``: :func:`medrag.lexical.bm25.is_identifier_term`, at least half
of its scored terms) is a lookup: with ``"auto"``, the candidates holding every one of its codes
come first, in fused order, then the others. The weight alone could not do it: a code's BM25
confidence is its saturation in its best passage (about 0.45 for a code written once), so the
weight stayed near 0.3, and min-max fusion ranked the one passage holding the code below passages
the dense side liked more (a user tryout: 4th of 4). The suite's queries are sentences: the rule
fires on 3 of its 3,859 val queries (leaflet queries naming the product ``L114``, whose passages,
the relevant ones among them, it ranks first) and on none of its 3,626 test queries
(``benchmarks/lookup_queries.py``), so its numbers are those of the weight alone, within those 3.

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
from collections.abc import Collection, Mapping

import numpy as np

from medrag.errors import InvalidInputError

#: The fusion methods :func:`fuse` knows.
FUSION_METHODS = ("rrf", "minmax")
#: The RRF constant (Cormack et al. 2009).
RRF_K = 60
#: The lexical weight that is chosen per query (:func:`query_weight`).
AUTO_WEIGHT = "auto"
#: The weights ``"auto"`` moves between: the weight of a query whose lexical confidence is 0, and
#: the one it tends to at confidence 1 (chosen on the suite's val part with min-max fusion and the
#: default model, ``benchmarks/auto_weight.py``: ``docs/results.md``, "A weight per query").
AUTO_WEIGHT_RANGE = (0.2, 0.4)
#: The default fusion and lexical weight of ``MatryoshkaChroma``'s hybrid search, chosen on the
#: validation suite's val part (``docs/results.md``, "Hybrid retrieval"): min-max fusion (it beat
#: RRF at every weight with the base model), and the weight setting with the best macro NDCG@10
#: averaged over sizes with no set of the suite (the report-only sample included) more than 0.01
#: below dense-only at any size, measured with medrag's default model: fixed weights 0.1..0.8
#: (0.2 won), then ``"auto"`` ranges beside them (0.2-0.4 won, also over 0.2 fixed).
#: Re-run ``benchmarks/auto_weight.py`` when the default model changes.
DEFAULT_FUSION = "minmax"
DEFAULT_LEXICAL_WEIGHT: float | str = AUTO_WEIGHT


def check_weight(lexical_weight: float) -> float:
    """``lexical_weight`` as a float in [0, 1], or an :class:`InvalidInputError` saying what to pass."""
    if isinstance(lexical_weight, bool) or not isinstance(lexical_weight, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(lexical_weight) <= 1.0
    ):
        raise InvalidInputError(f"lexical_weight must be a number in [0, 1] (0 = dense only), got {lexical_weight!r}")
    return float(lexical_weight)


def check_lexical_weight(lexical_weight: float | str) -> float | str:
    """A number in [0, 1] (as a float) or ``"auto"`` (any case: ``medrag search --lexical-weight AUTO``
    took it), or an :class:`InvalidInputError` saying what to pass."""
    if isinstance(lexical_weight, str) and lexical_weight.strip().lower() == AUTO_WEIGHT:
        return AUTO_WEIGHT
    if isinstance(lexical_weight, str):
        raise InvalidInputError(f"lexical_weight must be a number in [0, 1] (0 = dense only) or {AUTO_WEIGHT!r} "
                                f"(chosen per query), got {lexical_weight!r}")
    try:
        return check_weight(lexical_weight)
    except InvalidInputError:
        raise InvalidInputError(f"lexical_weight must be a number in [0, 1] (0 = dense only) or {AUTO_WEIGHT!r} "
                                f"(chosen per query), got {lexical_weight!r}") from None


def lexical_confidence(best_score: float, bound: float) -> float:
    """How fully BM25's best match covers a query: its score over ``bound``, the most any document could score.

    Each query term adds at most its idf to a document's BM25 (Lucene's variant: idf * tf / (tf +
    k1 * ...), below idf), so ``bound`` is the sum of the idf of the query's scored terms
    (:attr:`medrag.lexical.bm25.QueryScores.bound`) and the ratio lies in [0, 1] (clipped: float32
    sums may round past it): near 1 when the best match holds every term, several times for its
    length; low when it lacks the query's high-idf terms. 0 when nothing matched.

    >>> lexical_confidence(3.0, 4.0), lexical_confidence(0.0, 0.0)
    (0.75, 0.0)
    """
    if not (bound > 0 and math.isfinite(bound)) or not math.isfinite(best_score):
        return 0.0
    return min(1.0, max(0.0, best_score / bound))


def query_weight(lexical_weight: float | str, confidence: float,
                 weight_range: tuple[float, float] = AUTO_WEIGHT_RANGE) -> float:
    """The weight fused for one query: ``lexical_weight`` itself, or for ``"auto"`` the point of
    ``weight_range`` (low, high: the weights at confidence 0 and 1) that the query's
    :func:`lexical_confidence` gives (linear).

    >>> query_weight(0.3, 0.9), query_weight("auto", 0.0), round(query_weight("auto", 0.5), 3)
    (0.3, 0.2, 0.3)
    """
    if check_lexical_weight(lexical_weight) != AUTO_WEIGHT:
        return float(lexical_weight)
    low, high = (check_weight(w) for w in weight_range)
    return low + (high - low) * min(1.0, max(0.0, float(confidence)))


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
                  method: str = DEFAULT_FUSION, rrf_k: int = RRF_K, first: Collection[str] | None = None
                  ) -> tuple[list[str], dict[str, float]]:
    """Every id of both rankings ordered by fused score, and the fused scores (:func:`fused_scores`).

    Ties keep the order of the heavier side's ranking (the dense one when ``lexical_weight <= 0.5``),
    then the other's: the one tie rule of :func:`fuse` and of the store's hybrid search. The ids of
    ``first`` (the documents holding an identifier lookup's codes, :func:`lookup_holders`) come
    before all others, each group in fused order.

    >>> fused_ranking({"a": 0.9, "b": 0.1}, {"b": 2.0}, lexical_weight=1.0)[0]
    ['b', 'a']
    >>> fused_ranking({"a": 0.9, "b": 0.1}, {"b": 2.0}, lexical_weight=0.3, first={"b"})[0]
    ['b', 'a']
    """
    scores = fused_scores(dense, lexical, lexical_weight=lexical_weight, method=method, rrf_k=rrf_k)
    by_dense, by_lexical = sorted(dense, key=lambda i: -dense[i]), sorted(lexical, key=lambda i: -lexical[i])
    order = list(dict.fromkeys([*by_lexical, *by_dense] if lexical_weight > 0.5 else [*by_dense, *by_lexical]))
    position = {i: p for p, i in enumerate(order)}
    lead = set(first or ())
    return sorted(scores, key=lambda i: (i not in lead, -scores[i], position[i])), scores


def fuse(dense: Mapping[str, float], lexical: Mapping[str, float], *, lexical_weight: float,
         method: str = DEFAULT_FUSION, rrf_k: int = RRF_K, k: int | None = None,
         first: Collection[str] | None = None) -> list[str]:
    """The ids of both rankings ordered by fused score (the first ``k`` when given); ties and
    ``first`` as in :func:`fused_ranking`."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise InvalidInputError(f"k must be a positive int or None (every id), got {k!r}")
    ranked, _ = fused_ranking(dense, lexical, lexical_weight=lexical_weight, method=method, rrf_k=rrf_k, first=first)
    return ranked if k is None else ranked[:k]


def lookup_holders(lexical_weight: float | str, holders: Collection[str] | None) -> Collection[str] | None:
    """The ids an ``"auto"`` weight puts first: those holding every code of an identifier lookup
    (:attr:`medrag.lexical.bm25.QueryScores.holders`); ``None`` for a fixed weight, which is the
    caller's choice of how much BM25 counts, or a query that is no lookup.

    >>> lookup_holders("auto", {"a"}), lookup_holders(0.3, {"a"}), lookup_holders("auto", None)
    ({'a'}, None, None)
    """
    return holders if check_lexical_weight(lexical_weight) == AUTO_WEIGHT and holders else None


def _minmax(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {i: 1.0 for i in scores}
    return {i: (s - lo) / (hi - lo) for i, s in scores.items()}
