"""Ranking metrics with binary or graded relevance, per query, as in the IR literature.

Definitions (those of ``trec_eval`` / ``ranx`` / sentence-transformers' InformationRetrievalEvaluator,
except ``map@k``'s normalisation, below):

- ``ndcg@k``: DCG of the top k (gain: the grade of a relevant document at rank r, 1 with binary
  judgements; discount 1/log2(r+1)) divided by the DCG of an ideal ranking of the query's relevant
  documents (Järvelin & Kekäläinen, 2002; linear gains, as trec_eval and ranx).
- The other metrics count every grade > 0 as relevant.
- ``mrr@k``: 1 / rank of the first relevant document in the top k, else 0.
- ``map@k``: average precision over the top k, normalised by min(#relevant, k), as
  sentence-transformers' InformationRetrievalEvaluator does; ``trec_eval`` and ``ranx`` divide by
  #relevant, so the two differ for a query with more than k relevant documents (never for the
  default ``map@100`` on the suite's tasks, whose queries have a few relevant documents each).
- ``recall@k``: share of the query's relevant documents found in the top k.
- ``precision@k``: relevant documents in the top k divided by k (``trec_eval``'s ``P_k`` and ranx's
  ``precision@k``: a ranking shorter than k still divides by k). With one relevant passage per
  query (a pairs file) it is ``recall@k / k``: read it on tasks with several relevant passages.

Example::

    >>> from evaluation.metrics import per_query_metrics
    >>> per_query_metrics([["d2", "d1"]], [{"d1"}], ["mrr@10", "ndcg@10"])
    {'mrr@10': array([0.5]), 'ndcg@10': array([0.63092975])}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from medrag.errors import DataError, InvalidInputError

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "recall@100")
#: The metric families :func:`parse_metric` accepts, each with a cut-off: ``name@k``.
METRIC_NAMES = ("ndcg", "mrr", "map", "precision", "recall")
#: The metric of comparison tables, tests, plots and size recommendations.
PRIMARY_METRIC = "ndcg@10"


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; raise InvalidInputError on an unknown metric."""
    base, _, k = name.partition("@")
    if base not in METRIC_NAMES or not k.isdigit() or int(k) < 1:
        raise InvalidInputError(f"unknown metric {name!r}: use {', '.join(f'{b}@k' for b in METRIC_NAMES)}")
    return base, int(k)


def max_k(metrics: Sequence[str]) -> int:
    """The deepest cut-off the metrics need."""
    return max(parse_metric(m)[1] for m in metrics)


def per_query_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str] | Mapping[str, float]],
                      metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Each metric for each query.

    Args:
        rankings: per query, document ids best first (at least as deep as the deepest cut-off).
        relevant: per query, the set of relevant document ids (non-empty), or their grades
            (``IRTask.grades``: id -> grade > 0). NDCG weighs a hit by its grade (linear gains,
            ``sum(grade / log2(rank + 1))`` over the ideal ordering's, as trec_eval and ranx compute
            it); MRR, MAP, precision and recall count each relevant id once. A set is every grade 1.
        metrics: metric names such as ``"ndcg@10"``.

    Returns:
        metric name -> float array of one value per query.
    """
    if len(rankings) != len(relevant):
        raise InvalidInputError(f"{len(rankings)} rankings but {len(relevant)} relevance sets")
    parsed = [(m, *parse_metric(m)) for m in metrics]
    out = {m: np.zeros(len(rankings), dtype=np.float64) for m in metrics}
    discounts = 1.0 / np.log2(np.arange(2, max_k(metrics) + 2))
    for i, (ranked, rel) in enumerate(zip(rankings, relevant)):
        if isinstance(rel, (str, bytes)) or not isinstance(rel, (set, frozenset, list, tuple, Mapping)):
            # a string was matched as substrings, and its length counted as the relevant documents
            raise InvalidInputError(f"relevant[{i}] must be a set of document ids, got {type(rel).__name__} {rel!r}"[:200])
        grades = ({d: float(g) for d, g in rel.items() if g > 0} if isinstance(rel, Mapping)
                  else dict.fromkeys(rel, 1.0))
        if not grades:
            raise DataError(f"query {i} has no relevant document")
        if isinstance(ranked, (str, bytes)) or len(set(ranked)) != len(ranked):  # a repeat scored above 1
            raise InvalidInputError(f"rankings[{i}] must be a list of distinct document ids")
        hits = np.array([d in grades for d in ranked], dtype=np.float64)
        gains = np.array([grades.get(d, 0.0) for d in ranked], dtype=np.float64)
        ideal_gains = np.sort(np.fromiter(grades.values(), dtype=np.float64))[::-1]
        rel = grades
        for name, base, k in parsed:
            h = hits[:k]
            if base == "ndcg":
                ideal = float((ideal_gains[:k] * discounts[: min(len(ideal_gains), k)]).sum())
                out[name][i] = float((gains[:k] * discounts[: len(h)]).sum() / ideal)
            elif base == "mrr":
                first = np.flatnonzero(h)
                out[name][i] = 1.0 / (first[0] + 1) if first.size else 0.0
            elif base == "map":
                if h.any():
                    precision = np.cumsum(h) / np.arange(1, len(h) + 1)
                    out[name][i] = float((precision * h).sum() / min(len(rel), k))
            elif base == "precision":
                out[name][i] = float(h.sum() / k)
            else:  # recall
                out[name][i] = float(h.sum() / len(rel))
    return out


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """The mean of each per-query metric array."""
    return {m: float(v.mean()) if v.size else math.nan for m, v in per_query.items()}
