"""Store-level evaluation: the retrieval users get through :class:`medrag.MatryoshkaChroma`.

The store answers a query in two stages: a coarse search on the first ``coarse_dim`` (64)
coordinates in Chroma returns ``candidates`` documents, which are re-ranked with the full-size
vectors. This module measures that funnel against the two searches it sits between, on the same
queries, corpus and vectors:

- ``flat``: exact (brute-force numpy) search with full-size vectors, the quality ceiling;
- ``coarse``: exact search with the ``coarse_dim`` vectors only, the quality floor;
- ``funnel_exact``: the funnel computed exactly in numpy (exact coarse top-``candidates`` + rerank),
  which isolates what the candidate cut costs from what Chroma's approximate (HNSW) index costs;

``coarse`` and ``funnel_exact`` use the store's own first stage (``settings["coarse_rotation"]``):
the first ``coarse_dim`` coordinates, or the projection the store fitted on the corpus it indexed
(``coarse_rotation="auto"`` fits one on 1,000 passages or more, as it does in production: from the
passages alone, no query or judgement);
- ``store``: :meth:`MatryoshkaChroma.similarity_search_with_score`, the real thing.

Each method reports the same metrics and per-query latency p50/p95 in milliseconds. Query
encoding is timed once as its own stage (``encode``) and kept out of the search timings: the
vectors are encoded once and handed to the store through :class:`medrag.PrecomputedEmbeddings`
(with the model's identity), so every method ranks the very same vectors.

Example::

    >>> from medrag import MatryoshkaEmbeddings
    >>> from evaluation.data import load_task
    >>> from evaluation.store_eval import evaluate_store
    >>> res = evaluate_store(MatryoshkaEmbeddings(), load_task("../shared/data/frenchmedmcqa"))
    >>> print(res.to_markdown())
    >>> res.ndcg_gap()     # flat - store NDCG@10; the store issue's target is <= 0.002
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evaluation.metrics import max_k, mean_metrics, per_query_metrics
from evaluation.retrieval import rank_documents, top_indices
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.encoder import MatryoshkaEncoder, is_encoder
from medrag.errors import InvalidInputError, MedragError
from medrag.precomputed import PrecomputedEmbeddings
from medrag.qa.task import IRTask, check_task
from medrag.store import default_coarse_dim
from medrag.vectors import truncate_embeddings

logger = logging.getLogger(__name__)

STORE_METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10")
METHODS = ("flat", "funnel_exact", "store", "coarse")


@dataclass
class MethodResult:
    """Metrics and latencies of one search method."""

    name: str
    per_query: dict[str, np.ndarray]
    latencies_ms: np.ndarray

    @property
    def means(self) -> dict[str, float]:
        return mean_metrics(self.per_query)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if self.latencies_ms.size else float("nan")

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 95)) if self.latencies_ms.size else float("nan")


@dataclass
class StoreEvalResult:
    """The methods' results and the settings they ran with."""

    methods: dict[str, MethodResult]
    metrics: list[str]
    settings: dict = field(default_factory=dict)
    encode_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sweep: list[dict] = field(default_factory=list)

    def ndcg_gap(self, method: str = "store", metric: str = "ndcg@10") -> float:
        """``flat - method`` for ``metric``: how much quality the method gives up against exact full-size search."""
        return self.methods["flat"].means[metric] - self.methods[method].means[metric]

    def to_dict(self) -> dict:
        """Every number, JSON-ready. Signs: ``gap_vs_flat`` is ``flat - method`` (the quality given up,
        :meth:`ndcg_gap`), while the candidate sweep's ``store_gap`` and ``funnel_exact_gap`` are
        ``method - flat``, as the Markdown's "Δ vs flat" column shows them (a loss is negative there)."""
        return {"settings": self.settings, "metrics": self.metrics,
                "methods": {name: {"means": m.means, "latency_ms": _latency(m.latencies_ms)}
                            for name, m in self.methods.items()},
                "gap_vs_flat": {name: self.ndcg_gap(name, self.metrics[0]) for name in self.methods},
                "encode_latency_ms": _latency(self.encode_ms), "candidates_sweep": self.sweep}

    def to_markdown(self) -> str:
        s = self.settings
        lines = [f"Store-level evaluation: {s.get('queries')} queries, {s.get('corpus')} documents, "
                 f"coarse_dim={s.get('coarse_dim')} (stage {s.get('coarse_rotation', 'none')!r}), "
                 f"candidates={s.get('candidates')}, model {s.get('model')}.", "",
                 "| Method | " + " | ".join(self.metrics) + f" | Δ{self.metrics[0]} vs flat | p50 ms | p95 ms |",
                 "|---|" + "---:|" * (len(self.metrics) + 3)]
        for name, m in self.methods.items():
            cells = " | ".join(f"{m.means[x]:.4f}" for x in self.metrics)
            delta = m.means[self.metrics[0]] - self.methods["flat"].means[self.metrics[0]]
            lines.append(f"| {name} | {cells} | {delta + 0.0:+.4f} | "
                         f"{m.p50_ms:.2f} | {m.p95_ms:.2f} |")
        if self.encode_ms.size:
            enc = _latency(self.encode_ms)
            lines.append("| (query encoding) | " + " | ".join("-" for _ in self.metrics) +
                         f" | - | {enc['p50']:.2f} | {enc['p95']:.2f} |")
        lines += ["", "Search latencies exclude query encoding (timed separately on "
                  f"{self.encode_ms.size} queries); store = coarse Chroma search + full-size rerank; store_hybrid = "
                  "the store's hybrid_search (BM25 fused with the funnel, default weight)."]
        if self.sweep:
            m0 = self.metrics[0]
            lines += ["", f"Candidates sweep (flat {m0} = {self.methods['flat'].means[m0]:.4f}):", "",
                      f"| candidates | store {m0} | Δ vs flat | funnel_exact {m0} | Δ vs flat | store p50 ms | "
                      "store p95 ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
            for row in self.sweep:
                lines.append(f"| {row['candidates']} | {row['store'][m0]:.4f} | {row['store_gap'] + 0.0:+.4f} | "
                             f"{row['funnel_exact'][m0]:.4f} | {row['funnel_exact_gap'] + 0.0:+.4f} | "
                             f"{row['store_latency_ms']['p50']:.2f} | {row['store_latency_ms']['p95']:.2f} |")
        return "\n".join(lines)


def evaluate_store(embeddings: MatryoshkaEncoder, task: IRTask, *, coarse_dim: int | None = None, candidates: int | None = None,
                   metrics: Sequence[str] = STORE_METRICS, cache=None, store_kwargs: dict | None = None,
                   encode_sample: int = 50, sweep: Sequence[int] = ()) -> StoreEvalResult:
    """Evaluate the two-stage store against flat full-size and coarse-only search.

    Args:
        embeddings: an encoder (:class:`medrag.encoder.MatryoshkaEncoder`, e.g. a
            :class:`medrag.MatryoshkaEmbeddings`) or a model spec; its full size is the rerank size.
        task: queries, corpus, judgements.
        coarse_dim: the store's coarse size (None: the store's default, :func:`medrag.store.default_coarse_dim`).
        candidates: documents passed from the coarse stage to the rerank (default: the store's default;
            the exact funnel then uses the value the store reports, else 100).
        metrics: metric names; the deepest cut-off is the number of results asked of every method.
        cache: an :class:`~evaluation.cache.EmbeddingCache` for the full-size vectors (optional).
        store_kwargs: extra keyword arguments of ``MatryoshkaChroma.from_texts``.
        encode_sample: how many queries to encode one by one to time the ``encode`` stage (0: skip).
        sweep: other ``candidates`` values to measure on the same index (store and exact funnel), e.g.
            ``[25, 50, 200, 400]``, to find the smallest value that meets a quality target.

    Raises:
        MedragError: the store is not installed (``medrag.store`` missing).
    """
    try:  # looked up at call time: the store opens chromadb, and a missing store is reported here
        from medrag.store import MatryoshkaChroma
    except ImportError as exc:
        raise MedragError(f"store-level evaluation needs medrag.store (MatryoshkaChroma): {exc}") from exc

    check_task(task)
    if isinstance(embeddings, (str, os.PathLike)):  # a spec, as evaluate_models takes (it failed with AttributeError)
        embeddings = MatryoshkaEmbeddings(embeddings)
    elif not is_encoder(embeddings):
        raise InvalidInputError(f"embeddings must be a model spec or an encoder (MatryoshkaEmbeddings), got "
                                f"{type(embeddings).__name__}")
    metrics = list(metrics)
    k = max_k(metrics)
    too_small = [c for c in [*sweep, *([candidates] if candidates is not None else [])] if c < k]
    if too_small:
        raise InvalidInputError(f"candidates {too_small} are below k={k}, the deepest metric cut-off")
    qids, dids = list(task.queries), list(task.corpus)
    qtexts, dtexts = [task.queries[q] for q in qids], [task.corpus[d] for d in dids]
    relevant = [task.grades[q] for q in qids]  # graded NDCG where the task is graded
    if cache is not None:
        qv, dv = cache.encode(embeddings, qtexts, "query"), cache.encode(embeddings, dtexts, "document")
    else:
        qv, dv = embeddings.encode_queries(qtexts), embeddings.encode_documents(dtexts)
    full = embeddings.full_dim

    # -- exact baselines, timed per query (search only: vectors are given); ranked as evaluate_vectors
    # ranks them (all queries in one product: one query at a time rounds differently, ~5e-7, and flipped
    # near-ties, so flat and evaluate_models' full size disagreed on the same vectors)
    q_full, d_full = truncate_embeddings(qv, full), truncate_embeddings(dv, full)
    _, flat_ms = _timed_numpy(lambda i: rank_documents(q_full[i:i + 1], d_full, dids, k)[0], len(qids))
    flat_rank = rank_documents(q_full, d_full, dids, k)

    # -- the store, fed the same vectors
    fed = PrecomputedEmbeddings(documents=dict(zip(dtexts, dv)), queries=dict(zip(qtexts, qv)), fallback=embeddings)
    kwargs = dict(store_kwargs or {})
    kwargs.setdefault("coarse_dim", coarse_dim if coarse_dim is not None else default_coarse_dim(full))
    if candidates is not None:
        kwargs.setdefault("candidates", candidates)
    name = f"medrag-eval-{uuid.uuid4().hex[:12]}"
    t0 = time.perf_counter()
    store = MatryoshkaChroma.from_texts(dtexts, embedding=fed, ids=dids, metadatas=[{"doc_id": d} for d in dids],
                                       collection_name=name, **kwargs)
    index_s = time.perf_counter() - t0
    n_cand = int(candidates if candidates is not None else getattr(store, "candidates", None) or 100)
    # the coarse baselines use the store's own first stage: a corpus of 1,000 passages or more gets a
    # fitted projection ("auto": learned), and the first coarse_dim coordinates made funnel_exact a
    # different funnel, below the store it should bound (user tryout: 0.8298 vs the store's 0.8331)
    rotation = str(getattr(store, "coarse_rotation", "none"))
    stage = getattr(store, "coarse_vectors", None)  # a store double without it: the first coarse_dim coordinates
    size = int(getattr(store, "coarse_dim", None) or kwargs["coarse_dim"])
    sweep_rows = []
    try:
        q_coarse, d_coarse = ((stage(q_full), stage(d_full)) if stage is not None
                              else (truncate_embeddings(qv, size), truncate_embeddings(dv, size)))

        def funnel(n: int):
            return _timed_numpy(lambda i: exact_funnel(q_coarse[i], q_full[i], d_coarse, d_full, dids, n, k), len(qids))

        store_rank, store_ms = _store_search(store, qtexts, k, candidates)
        hybrid = hasattr(store, "hybrid_search_with_score")  # a store without hybrid search: skipped
        hybrid_rank, hybrid_ms = _store_search(store, qtexts, k, candidates, hybrid=True) if hybrid else (None, None)
        for n in sorted(set(sweep)):
            s_rank, s_ms = _store_search(store, qtexts, k, n)
            f_rank, _ = funnel(n)
            sweep_rows.append({"candidates": n, "store": mean_metrics(per_query_metrics(s_rank, relevant, metrics)),
                               "funnel_exact": mean_metrics(per_query_metrics(f_rank, relevant, metrics)),
                               "store_latency_ms": _latency(np.asarray(s_ms))})
    finally:
        _drop(store)

    _, coarse_ms = _timed_numpy(lambda i: rank_documents(q_coarse[i:i + 1], d_coarse, dids, k)[0], len(qids))
    coarse_rank = rank_documents(q_coarse, d_coarse, dids, k)
    funnel_rank, funnel_ms = funnel(n_cand)

    methods = {}
    for method, ranked, ms in (("flat", flat_rank, flat_ms), ("funnel_exact", funnel_rank, funnel_ms),
                               ("store", store_rank, store_ms), ("coarse", coarse_rank, coarse_ms),
                               ("store_hybrid", hybrid_rank, hybrid_ms)):
        if ranked is None:
            continue
        methods[method] = MethodResult(method, per_query_metrics(ranked, relevant, metrics), np.asarray(ms))
    encode_ms = []
    for text in qtexts[:encode_sample]:
        t = time.perf_counter()
        embeddings.encode_queries([text])
        encode_ms.append(1000 * (time.perf_counter() - t))
    settings = {"model": embeddings.spec, "fingerprint": embeddings.fingerprint, "queries": len(qids),
                "corpus": len(dids), "coarse_dim": size, "coarse_rotation": rotation, "candidates": n_cand,
                "k": k, "full_dim": full,
                "index_build_s": round(index_s, 3), "task_hash": task.content_hash()}
    flat_score = methods["flat"].means[metrics[0]]
    for row in sweep_rows:
        row["store_gap"] = row["store"][metrics[0]] - flat_score
        row["funnel_exact_gap"] = row["funnel_exact"][metrics[0]] - flat_score
    result = StoreEvalResult(methods, metrics, settings, np.asarray(encode_ms), sweep_rows)
    logger.info("store evaluation: flat %.4f, store %.4f, coarse %.4f %s", methods["flat"].means[metrics[0]],
                methods["store"].means[metrics[0]], methods["coarse"].means[metrics[0]], metrics[0])
    return result


def _store_search(store, qtexts: list[str], k: int, candidates: int | None,
                  hybrid: bool = False) -> tuple[list[list[str]], list[float]]:
    kwargs = {"candidates": candidates} if candidates is not None else {}
    search = store.hybrid_search_with_score if hybrid else store.similarity_search_with_score
    if hybrid:
        store.lexical.index()  # built once before timing, as a deployed store would have it
    ranks, ms = [], []
    for text in qtexts:
        t = time.perf_counter()
        hits = search(text, k=k, **kwargs)
        ms.append(1000 * (time.perf_counter() - t))
        ranks.append([_doc_id(doc) for doc, _score in hits])
    return ranks, ms


def _latency(ms: np.ndarray) -> dict:
    if not ms.size:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "n": int(ms.size)}


def exact_funnel(qc: np.ndarray, qf: np.ndarray, dc: np.ndarray, df: np.ndarray, dids: Sequence,
                 candidates: int, k: int) -> list:
    """The store's two-stage search computed exactly: the top ``candidates`` documents by the coarse
    vectors (exact, no HNSW), re-ranked by the full-size vectors; the ids of the best ``k``.

    Args:
        qc / qf: one query's coarse and full-size vectors (unit norm).
        dc / df: the documents' coarse and full-size matrices (unit rows), in the order of ``dids``.
        dids: the documents' ids (any sequence, e.g. ``range(n)`` for row numbers).
        candidates / k: the stage-1 cut and the number of results; ties keep the lower row first.
    """
    coarse = dc @ qc
    n = min(candidates, len(dids))
    cand = top_indices(coarse, n)
    fine = df[cand] @ qf
    order = cand[np.lexsort((cand, -fine))][:k]
    return [dids[i] for i in order]


def _timed_numpy(fn, n: int) -> tuple[list[list[str]], list[float]]:
    ranks, ms = [], []
    for i in range(n):
        t = time.perf_counter()
        ranks.append(fn(i))
        ms.append(1000 * (time.perf_counter() - t))
    return ranks, ms


def _doc_id(doc) -> str:
    return getattr(doc, "id", None) or (doc.metadata or {}).get("doc_id")


def _drop(store) -> None:
    for name in ("delete_collection", "reset_collection"):
        fn = getattr(store, name, None)
        if callable(fn):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - clean-up must not hide the evaluation result
                logger.debug("could not drop the evaluation collection: %s", exc)
            return
