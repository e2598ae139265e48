"""Every metric at every Matryoshka size from one full-size encoding of queries and corpus.

The corpus and the queries are encoded once at the model's full size; each smaller size is
derived by truncating and re-normalising (:func:`medrag.truncate_embeddings`), which is what a
Matryoshka deployment does, and costs a fraction of re-encoding per size.

Example::

    >>> from medrag import MatryoshkaEmbeddings
    >>> from medrag.qa.task import IRTask
    >>> from evaluation.retrieval import evaluate_model
    >>> task = IRTask.from_pairs([("Qu'est-ce que la TSH ?", "La TSH est une hormone hypophysaire.")])
    >>> results = evaluate_model(MatryoshkaEmbeddings(), task, dims=[384, 64])
    >>> results[64].means["ndcg@10"]
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.metrics import DEFAULT_METRICS, max_k, mean_metrics, per_query_metrics
from medrag.errors import InvalidInputError
from medrag.qa.task import IRTask
from medrag.vectors import truncate_embeddings

logger = logging.getLogger(__name__)

#: Below this many queries an evaluation is warned about: a bootstrap interval of a handful of
#: per-query scores is not a measure of the model.
FEW_QUERIES = 30


def warn_if_few_queries(task: IRTask, scores_for: str = "its scores, intervals and size recommendations",
                        more: str = "") -> bool:
    """Log a warning when ``task`` has fewer than :data:`FEW_QUERIES` queries (a single query scores 0
    or 1 at every size); ``scores_for`` names what those scores feed, ``more`` how the caller's data
    source gives more queries (e.g. an option; empty: none, only more data). Returns whether it warned."""
    if len(task.queries) >= FEW_QUERIES:
        return False
    logger.warning("task %r has %d queries: %s say little (a single query scores 0 or 1); evaluate on %d "
                   "queries or more%s", task.name, len(task.queries), scores_for, FEW_QUERIES,
                   f" ({more})" if more else "")
    return True


@dataclass(frozen=True)
class RankedRun:
    """Each query's top documents at one size, best first, held compactly (a 100-deep run of thousands of
    queries at six sizes would be millions of Python pairs): ``indices[i]`` are positions in ``doc_ids``
    (the corpus's ids, one list shared by every size) and ``scores[i]`` their cosines, for the i-th query.

    >>> run = RankedRun(["a", "b"], np.array([[1, 0]]), np.array([[1.0, 0.6]], dtype=np.float32))
    >>> run.ranked(0)
    [('b', 1.0), ('a', 0.6)]
    """

    doc_ids: Sequence[str]
    indices: np.ndarray
    scores: np.ndarray

    def ranked(self, i: int) -> list[tuple[str, float]]:
        """The i-th query's ``(document id, score)`` pairs, best first (scores as the float32 they are kept as)."""
        return [(self.doc_ids[j], float(str(s))) for j, s in zip(self.indices[i].tolist(), self.scores[i])]


@dataclass
class SizeResult:
    """The metrics of one size: per-query arrays (for confidence intervals and paired tests) and means;
    with ``run_depth`` (:func:`evaluate_vectors`), the ranking itself, in the task's query order (a TREC
    run: :meth:`evaluation.report.EvaluationReport.trec_run`)."""

    dim: int
    per_query: dict[str, np.ndarray]
    run: RankedRun | None = None

    @property
    def means(self) -> dict[str, float]:
        return mean_metrics(self.per_query)


def rank_documents(query_vecs: np.ndarray, doc_vecs: np.ndarray, doc_ids: Sequence[str], k: int,
                   chunk: int = 1024) -> list[list[str]]:
    """Top-``k`` document ids per query by dot product (cosine for unit vectors), best first.

    Ties are broken by corpus order, so results are deterministic.
    """
    indices, _ = rank_with_scores(query_vecs, doc_vecs, k, chunk)
    return np.asarray(doc_ids, dtype=str)[indices].tolist()


def rank_with_scores(query_vecs: np.ndarray, doc_vecs: np.ndarray, k: int,
                     chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_documents` as arrays: per query, the positions of the top-``k`` documents in the
    corpus (int32, best first, ties in corpus order) and their dot products (float32).

    >>> indices, scores = rank_with_scores(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [1.0, 0.0]]), 2)
    >>> indices.tolist(), scores.tolist()
    ([[1, 0]], [[1.0, 0.6000000238418579]])
    """
    k = min(k, len(doc_vecs))
    indices = np.zeros((len(query_vecs), k), dtype=np.int32)
    scores = np.zeros((len(query_vecs), k), dtype=np.float32)
    for start in range(0, len(query_vecs), chunk):
        block = query_vecs[start:start + chunk] @ doc_vecs.T
        for i, row in enumerate(block, start):
            indices[i] = top_indices(row, k)
            scores[i] = row[indices[i]]
    return indices, scores


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """The indices of the ``n`` highest ``scores``, best first, ties broken by index (corpus order).

    ``np.argpartition`` alone keeps an arbitrary subset of the scores tied at the cut-off (duplicate
    passages), so the documented tie rule held inside the top ``n`` but not at its edge: every index
    tied with the ``n``-th score is ordered before the cut.

    >>> top_indices(np.array([0.5, 0.9, 0.5, 0.5]), 2).tolist()
    [1, 0]
    """
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n < len(scores):
        cutoff = scores[np.argpartition(-scores, n - 1)[n - 1]]
        cand = np.flatnonzero(scores >= cutoff)
    else:
        cand = np.arange(len(scores))
    return cand[np.lexsort((cand, -scores[cand]))][:n]


def evaluate_vectors(task: IRTask, query_vecs: np.ndarray, doc_vecs: np.ndarray, dims: Sequence[int],
                     metrics: Sequence[str] = DEFAULT_METRICS, run_depth: int = 0) -> dict[int, SizeResult]:
    """Metrics at each size from full-size vectors ordered as ``task.queries`` / ``task.corpus``; with
    ``run_depth`` > 0, each size's ranking too, ``run_depth`` documents deep (:attr:`SizeResult.run`)."""
    check_run_depth(run_depth)
    qids, dids = list(task.queries), list(task.corpus)
    if len(query_vecs) != len(qids) or len(doc_vecs) != len(dids):
        raise InvalidInputError("vectors do not match the task's queries/corpus")
    relevant = [task.grades[q] for q in qids]  # graded NDCG where the task is graded
    results = {}
    for dim in sorted(set(dims), reverse=True):
        indices, scores = rank_with_scores(truncate_embeddings(query_vecs, dim), truncate_embeddings(doc_vecs, dim),
                                           max(max_k(metrics), run_depth))
        ranked = [[dids[j] for j in row] for row in indices[:, :max_k(metrics)].tolist()]
        run = RankedRun(dids, indices[:, :run_depth], scores[:, :run_depth]) if run_depth else None
        results[dim] = SizeResult(dim, per_query_metrics(ranked, relevant, metrics), run)
    return results


def check_run_depth(run_depth: object) -> int:
    """``run_depth`` (documents kept per query in each size's ranking; 0: none) as given, or an
    :class:`InvalidInputError`."""
    if isinstance(run_depth, bool) or not isinstance(run_depth, int) or run_depth < 0:
        raise InvalidInputError(f"run_depth must be an int >= 0 (0: no ranking kept), got {run_depth!r}")
    return run_depth


def evaluate_model(embeddings, task: IRTask, dims: Sequence[int] | None = None,
                   metrics: Sequence[str] = DEFAULT_METRICS) -> dict[int, SizeResult]:
    """Encode ``task`` once with a :class:`medrag.MatryoshkaEmbeddings` and score every size.

    Args:
        embeddings: the embeddings (query and passage prompts are applied).
        task: queries, corpus, judgements.
        dims: sizes to score (default: the embeddings' allowed sizes).
        metrics: metric names.
    """
    dims = list(dims) if dims is not None else list(embeddings.dims)
    q = embeddings.encode_queries(list(task.queries.values()))
    d = embeddings.encode_documents(list(task.corpus.values()))
    return evaluate_vectors(task, q, d, dims, metrics)
