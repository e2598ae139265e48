"""Evaluate one or more models at every Matryoshka size, with confidence intervals and paired tests.

This is what ``medrag evaluate`` runs. Each model encodes the queries and the corpus once, at
full size (through an :class:`~evaluation.cache.EmbeddingCache`, so a second run does not
re-encode); every smaller size is derived by truncation and re-normalisation. For each size it
reports every metric's mean with a bootstrap 95% interval, tests each size against the model's
largest evaluated size, tests every model against the first (the baseline) size by size, and
recommends sizes in the seed's three tiers.

Example::

    >>> from evaluation.data import load_task
    >>> from evaluation.evaluator import evaluate_models
    >>> task = load_task("../shared/data/frenchmedmcqa")
    >>> report = evaluate_models(["bundled:multilingual-e5-small", "models/e5-small-medical"], task)
    >>> print(report.comparison_table())          # Dimension | Score Initial | Score Final | Gain
    >>> report.write("reports/e5-small")           # tables, JSON, plot
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evaluation.cache import EmbeddingCache
from evaluation.metrics import DEFAULT_METRICS, PRIMARY_METRIC, parse_metric
from evaluation.report import EvaluationReport, check_trec_ids, records_warnings
from evaluation.recommend import BALANCED_TOLERANCE, EDGE_TOLERANCE, Recommendations, recommend_sizes
from evaluation.retrieval import FEW_QUERIES, SizeResult, check_run_depth, evaluate_vectors, warn_if_few_queries  # noqa: F401 (FEW_QUERIES: its old home)
from evaluation.stats import (CONFIDENCE, MIN_BOOTSTRAP, N_BOOTSTRAP, N_PERMUTATIONS, PAIRED_TESTS,
                              ConfidenceInterval, PairedTest, bootstrap_means, paired_test, percentile_interval,
                              seeded_rng)
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.encoder import is_encoder
from medrag.encoding import DEFAULT_BATCH_SIZE
from medrag.errors import DimensionError, InvalidInputError
from medrag.metadata import default_dims
from medrag.qa.task import IRTask, check_task

logger = logging.getLogger(__name__)


@dataclass
class ModelResult:
    """Everything measured for one model.

    Attributes:
        label: the name used in tables (the spec, made unique).
        spec: the model spec.
        fingerprint: :func:`medrag.model_fingerprint` of the model.
        full_dim: the model's full size.
        sizes: size -> per-query metrics and means.
        cis: size -> metric -> bootstrap confidence interval of the mean.
        size_tests: size -> paired test of the primary metric against the largest evaluated size.
        recommendations: the three tiers, from the primary metric.
        timings: seconds spent encoding and scoring.
    """

    label: str
    spec: str
    fingerprint: str
    full_dim: int
    sizes: dict[int, SizeResult]
    cis: dict[int, dict[str, ConfidenceInterval]]
    size_tests: dict[int, PairedTest]
    recommendations: Recommendations
    timings: dict[str, float] = field(default_factory=dict)
    primary_metric: str = PRIMARY_METRIC

    def score(self, dim: int, metric: str | None = None) -> float:
        """The mean ``metric`` (default: the evaluation's primary metric) at size ``dim``.

        Raises:
            InvalidInputError: a size or metric that was not evaluated (naming those that were).
        """
        metric = self.primary_metric if metric is None else metric
        if dim not in self.sizes:
            raise InvalidInputError(f"{self.label}: size {dim!r} was not evaluated; sizes: {sorted(self.sizes, reverse=True)}")
        means = self.sizes[dim].means
        if metric not in means:
            raise InvalidInputError(f"{self.label}: metric {metric!r} was not measured; metrics: {sorted(means)}")
        return means[metric]


@records_warnings
def evaluate_models(
    models: Sequence,
    task: IRTask,
    dims: Sequence[int] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    primary_metric: str = PRIMARY_METRIC,
    cache: EmbeddingCache | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
    test: str = PAIRED_TESTS[0],
    n_resamples: int | None = None,
    balanced_tolerance: float = BALANCED_TOLERANCE,
    edge_tolerance: float = EDGE_TOLERANCE,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    command: str | None = None,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    more_queries: str = "",
    run_depth: int = 0,
):
    """Evaluate ``models`` on ``task`` and return an :class:`~evaluation.report.EvaluationReport`.

    Args:
        models: model specs (anything :func:`medrag.load_model` accepts, such as a fine-tuned folder)
            or encoders (:class:`medrag.encoder.MatryoshkaEncoder`: a :class:`medrag.MatryoshkaEmbeddings`...).
            The first is the baseline ("initial") of comparisons.
        task: the queries, corpus and judgements.
        dims: sizes to evaluate (default: each model's trained sizes, or the seed's list up to its size).
        metrics: metric names (``ndcg@10``, ``mrr@10``, ``map@100``, ``precision@10``, ``recall@k``...).
        primary_metric: the metric of the comparison table, tests and recommendations.
        cache: embedding cache (default: one in :func:`~evaluation.cache.default_cache_dir`);
            ``EmbeddingCache(enabled=False)`` to always encode.
        n_bootstrap / confidence: bootstrap resamples and coverage of the intervals.
        test / n_resamples: the paired test (``"permutation"`` or ``"bootstrap"``) and its resamples.
        balanced_tolerance / edge_tolerance: relative tolerances of the recommended tiers.
        seed: random seed of the bootstrap and tests (reports are reproducible).
        labels: names of the models in tables (default: their specs).
        command: the command line that produced the report (recorded in its JSON).
        device / batch_size / show_progress: passed to :class:`medrag.MatryoshkaEmbeddings` for specs.
        more_queries: how the task's source gives more queries, added to the warning about a task of
            fewer than 30 (the CLI names its options where they apply).
        run_depth: keep each model's ranking at each size, this many documents per query (0: none),
            for :meth:`~evaluation.report.EvaluationReport.write` to write as TREC run files beside the
            task's judgements (``medrag evaluate --export-runs``): trec_eval, ranx or a fused run of
            another system score them the same way.
    """
    if isinstance(models, (str, bytes)) or is_encoder(models):
        raise InvalidInputError("models is a list of model specs or encoders (e.g. [spec]), got one model")
    check_task(task)
    models = list(models)
    if not models:
        raise InvalidInputError("no model to evaluate")
    # generators: the length check consumed them (labels then fell back to the specs in silence)
    labels = list(labels) if labels is not None and not isinstance(labels, str) else labels
    dims = list(dims) if dims is not None and not isinstance(dims, (str, bytes)) and hasattr(dims, "__iter__") else dims
    if labels is not None and len(labels) != len(models):
        raise InvalidInputError(f"{len(labels)} labels for {len(models)} models: give one label per model")
    for label in labels or ():  # as the CLI's --label: a '|' split the Markdown tables' cells
        if not isinstance(label, str) or not label.strip() or "|" in label:
            raise InvalidInputError(f"label {label!r}: a label is a non-empty text without '|' (which separates "
                                    "the tables' columns)")
    if dims is not None and (not isinstance(dims, list) or not dims or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in dims)):
        raise InvalidInputError(f"dims must be a non-empty list of sizes >= 1 (or None: the trained sizes), got {dims!r}")
    if check_run_depth(run_depth):  # before any encoding: the TREC files could not hold them
        check_trec_ids(task.queries, "query")
        check_trec_ids(task.corpus, "document")
    seeded_rng(seed)  # a negative seed failed in the bootstrap, after every model had encoded the task
    for name, value in (("n_bootstrap", n_bootstrap), ("n_resamples", n_resamples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    if n_bootstrap < MIN_BOOTSTRAP:  # as the CLI's --bootstrap: 1 resample made a zero-width "95% CI"
        raise InvalidInputError(f"n_bootstrap={n_bootstrap}: a confidence interval needs at least {MIN_BOOTSTRAP} "
                                f"resamples (default {N_BOOTSTRAP})")
    metrics = list(dict.fromkeys(metrics))
    for m in metrics:
        parse_metric(m)
    if primary_metric not in metrics:
        metrics.insert(0, primary_metric)
    parse_metric(primary_metric)
    recommend_sizes({1: 1.0}, balanced_tolerance, edge_tolerance)  # validates the tolerances before any work
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    if test not in PAIRED_TESTS:
        raise InvalidInputError(f"unknown paired test {test!r}: use one of {PAIRED_TESTS}")
    n_resamples = n_resamples or (N_PERMUTATIONS if test == "permutation" else 10 * N_BOOTSTRAP)
    warn_if_few_queries(task, more=more_queries)
    cache = cache if cache is not None else EmbeddingCache()
    labels = list(labels) if labels is not None else []
    results: list[ModelResult] = []
    for i, model in enumerate(models):
        emb = model if is_encoder(model) else MatryoshkaEmbeddings(
            model, device=device, batch_size=batch_size, show_progress=show_progress)
        if show_progress is not None and isinstance(emb, MatryoshkaEmbeddings) and emb.show_progress != show_progress:
            emb = emb.with_dimension(emb.dimension)  # a copy: the caller's object keeps its setting
            emb.show_progress = show_progress
        trained = list(getattr(emb, "dims", None) or default_dims(emb.full_dim))  # dims: optional encoder member
        sizes = sorted({int(d) for d in (dims if dims is not None else trained)}, reverse=True)
        bad = [d for d in sizes if not 1 <= d <= emb.full_dim]
        if bad:
            raise DimensionError(f"sizes {bad} are outside 1..{emb.full_dim} for model {emb.spec!r}")
        untrained = [d for d in sizes if d not in trained]
        if untrained and dims is not None:
            # a model without matryoshka.json was never trained at any size: its list is the default one
            recorded = getattr(emb, "metadata", True) is not None
            logger.warning("sizes %s are not %s of %s (%s: %s); they are evaluated by truncation anyway",
                           untrained, "trained sizes" if recorded else "among the sizes", emb.spec,
                           "trained" if recorded else "it records no trained size; the default list", trained)
        label = labels[i] if i < len(labels) else emb.spec
        if label in {r.label for r in results}:
            label = f"{label} #{i + 1}"
        logger.info("evaluating %s (%s) at sizes %s on %d queries / %d documents", label, emb.fingerprint,
                    sizes, len(task.queries), len(task.corpus))
        t0 = time.perf_counter()
        q = cache.encode(emb, list(task.queries.values()), side="query")
        d = cache.encode(emb, list(task.corpus.values()), side="document")
        t1 = time.perf_counter()
        per_size = evaluate_vectors(task, q, d, sizes, metrics, run_depth)
        t2 = time.perf_counter()
        cis = {dim: _cis(res, metrics, n_bootstrap, confidence, seed) for dim, res in per_size.items()}
        top = max(sizes)
        size_tests = {dim: paired_test(per_size[dim].per_query[primary_metric], per_size[top].per_query[primary_metric],
                                       test, n_resamples, seed) for dim in sizes if dim != top}
        recs = recommend_sizes({dim: r.means[primary_metric] for dim, r in per_size.items()},
                               balanced_tolerance, edge_tolerance, primary_metric)
        results.append(ModelResult(label, emb.spec, emb.fingerprint, emb.full_dim, per_size, cis, size_tests, recs,
                                   {"encode_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3)}, primary_metric))

    comparisons: dict[str, dict[int, dict[str, PairedTest]]] = {}
    base = results[0]
    for other in results[1:]:
        shared = sorted(set(base.sizes) & set(other.sizes), reverse=True)
        comparisons[other.label] = {
            dim: {m: paired_test(other.sizes[dim].per_query[m], base.sizes[dim].per_query[m], test, n_resamples, seed)
                  for m in metrics}
            for dim in shared
        }
    settings = {"n_bootstrap": n_bootstrap, "confidence": confidence, "test": test,
                "n_resamples": n_resamples, "seed": seed, "balanced_tolerance": balanced_tolerance,
                "edge_tolerance": edge_tolerance, "cache": str(cache.folder) if cache.enabled else None,
                "cache_hits": cache.hits, "cache_misses": cache.misses}
    return EvaluationReport(task_info=_task_info(task), metrics=metrics, primary_metric=primary_metric,
                            models=results, comparisons=comparisons, settings=settings, command=command,
                            query_ids=list(task.queries), query_texts=list(task.queries.values()),
                            qrels={q: dict(task.grades[q]) for q in task.queries} if run_depth else {})


def _cis(res: SizeResult, metrics: Sequence[str], n_bootstrap: int, confidence: float,
         seed: int) -> dict[str, ConfidenceInterval]:
    stacked = np.stack([res.per_query[m] for m in metrics])
    means = bootstrap_means(stacked, n_bootstrap, seed)  # the same resampled queries for every metric
    return {m: percentile_interval(float(stacked[j].mean()), means[j], confidence) for j, m in enumerate(metrics)}


def _task_info(task: IRTask) -> dict:
    n_rel = [len(v) for v in task.qrels.values()]
    # what a BEIR folder's loader left out (evaluation.data.load_beir): the report alone tells it
    provenance = {k: task.extra[k] for k in ("judged_queries", "left_out_queries", "dropped_judgements_of_absent_passages")
                  if k in task.extra}
    return {"name": task.name, "queries": len(task.queries), "corpus": len(task.corpus),
            "relevant_per_query": round(sum(n_rel) / len(n_rel), 4), "graded": task.graded,
            "content_hash": task.content_hash(), **provenance}
