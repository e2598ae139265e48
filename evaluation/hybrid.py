"""Lexical, dense and hybrid retrieval scored per size on the same task.

``medrag evaluate --hybrid`` runs this beside the dense evaluation, from the same full-size
encodings (the evaluator's cache): BM25 over the French medical analyzer alone (one row, it
has no size), dense search at each size, and their fusion at each size for one or more
lexical weights. The hybrid ranking is the one :class:`medrag.MatryoshkaChroma` computes with
``search_type="hybrid"``: candidates = the ``depth`` best dense hits at that size union the
``depth`` best BM25 hits; both sides score every candidate (dense cosine at that size, BM25
for candidates sharing a term with the query); :func:`medrag.lexical.fusion.fuse` merges them.

Example::

    from medrag import MatryoshkaEmbeddings
    from medrag.qa.sample import load_sample_corpus
    from evaluation.hybrid import evaluate_hybrid
    emb = MatryoshkaEmbeddings()
    task = load_sample_corpus().task("eval")
    q = emb.encode_queries(list(task.queries.values()))
    d = emb.encode_documents(list(task.corpus.values()))
    result = evaluate_hybrid(task, q, d, dims=[384, 64], weights=[0.3])
    print(result.to_markdown())
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from evaluation.cache import EmbeddingCache
from evaluation.metrics import DEFAULT_METRICS, max_k, mean_metrics, per_query_metrics
from evaluation.retrieval import SizeResult, top_indices
from medrag.errors import InvalidInputError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.bm25 import BM25Index
from medrag.lexical.fusion import (AUTO_WEIGHT, AUTO_WEIGHT_RANGE, DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT, FUSION_METHODS, RRF_K,
                                   check_lexical_weight, fuse, lexical_confidence, lookup_holders,
                                   query_weight)
from medrag.qa.task import IRTask
from medrag.vectors import truncate_embeddings

logger = logging.getLogger(__name__)

#: A scored lexical weight: a number, or ``"auto"`` (a weight per query).
Weight = float | str

#: Candidates taken from each side before fusion (the store's default ``candidates``).
DEFAULT_DEPTH = 100


def weight_order(weight: Weight) -> tuple[int, float]:
    """Sort key of scored weights: the numbers in order, then ``"auto"``."""
    return (1, 0.0) if weight == AUTO_WEIGHT else (0, float(weight))


def weight_label(weight: Weight) -> str:
    """``0.2`` or ``auto``, as the tables write a weight."""
    return AUTO_WEIGHT if weight == AUTO_WEIGHT else f"{weight:g}"


@dataclass
class HybridEvalResult:
    """Per-query metrics of lexical-only, dense and hybrid search.

    Attributes:
        lexical: BM25 alone (size-independent).
        dense: size -> dense search at that size.
        hybrid: lexical weight (a number, or ``"auto"``) -> size -> fused search.
        method / depth / rrf_k: the fusion settings.
        analyzer: the analyzer's options and signature.
        corpus_size: the passages searched (None: not recorded); with ``depth`` or fewer, every
            passage is a candidate on both sides.
    """

    lexical: dict[str, np.ndarray]
    dense: dict[int, SizeResult]
    hybrid: dict[Weight, dict[int, SizeResult]]
    method: str = DEFAULT_FUSION
    depth: int = DEFAULT_DEPTH
    rrf_k: int = RRF_K
    analyzer: dict = field(default_factory=dict)
    corpus_size: int | None = None

    @property
    def sizes(self) -> list[int]:
        return sorted(self.dense, reverse=True)

    def score(self, kind: str, dim: int | None = None, weight: Weight | None = None, metric: str = "ndcg@10") -> float:
        """Mean ``metric`` of ``kind`` (``"lexical"``, ``"dense"`` or ``"hybrid"``)."""
        if kind == "lexical":
            return float(self.lexical[metric].mean())
        if kind == "dense":
            return self.dense[dim].means[metric]
        return self.hybrid[weight][dim].means[metric]

    def to_dict(self) -> dict:
        auto = {"auto_weight_range": list(AUTO_WEIGHT_RANGE)} if AUTO_WEIGHT in self.hybrid else {}
        return {"method": self.method, "depth": self.depth, "corpus_size": self.corpus_size, "rrf_k": self.rrf_k, **auto,
                "analyzer": self.analyzer,
                "lexical": mean_metrics(self.lexical),
                "dense": {str(d): r.means for d, r in sorted(self.dense.items(), reverse=True)},
                "hybrid": {str(w): {str(d): r.means for d, r in sorted(self.hybrid[w].items(), reverse=True)}
                           for w in sorted(self.hybrid, key=weight_order)}}

    def to_markdown(self, metric: str = "ndcg@10") -> str:
        """One row per size: dense, lexical (same every row), hybrid per weight, and hybrid - dense."""
        weights = sorted(self.hybrid, key=weight_order)
        head = ["size", "dense", "lexical"] + [f"hybrid w={weight_label(w)}" for w in weights] + \
               [f"Δ w={weight_label(w)}" for w in weights]
        lex = self.score("lexical", metric=metric)
        fusion = f"rrf (k={self.rrf_k})" if self.method == "rrf" else self.method
        # "300+300 candidates" read oddly on 200 passages (user tryout): every passage is one then
        over = (f"all {self.corpus_size} passages" if self.corpus_size is not None and self.corpus_size <= self.depth
                else f"{self.depth}+{self.depth} candidates")
        lines = [f"{metric}; fusion {fusion} over {over}; "
                 f"analyzer {self.analyzer.get('signature', '?')}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for dim in self.sizes:
            dense = self.score("dense", dim, metric=metric)
            hyb = [self.score("hybrid", dim, w, metric) for w in weights]
            cells = [str(dim), f"{dense:.4f}", f"{lex:.4f}"] + [f"{h:.4f}" for h in hyb] + \
                    [f"{h - dense:+.4f}" for h in hyb]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def lexical_rankings(task: IRTask, options: AnalyzerOptions | None = None, depth: int = DEFAULT_DEPTH,
                     show_progress: bool = False):
    """The BM25 index of ``task.corpus`` and each query's ``depth`` best (id, score) pairs."""
    index = BM25Index(options)
    index.add(list(task.corpus), list(task.corpus.values()))
    runs = [dict(zip(*index.search(text, depth)))
            for text in tqdm(task.queries.values(), desc="BM25", disable=not show_progress)]
    return index, runs


@dataclass
class QueryCandidates:
    """One query's hybrid candidates at one size, as the store's hybrid search scores them.

    Attributes:
        dense_ranking: the ``depth`` best ids by dense cosine at that size, best first.
        dense: every candidate's cosine (candidates: ``dense_ranking`` union BM25's ``depth`` best).
        lexical: the BM25 score of the candidates that share a term with the query.
        confidence: :func:`medrag.lexical.fusion.lexical_confidence` of the best of those scores.
        holders: an identifier lookup's documents holding all its codes
            (:attr:`medrag.lexical.bm25.QueryScores.holders`), ``None`` for another query.
    """

    dense_ranking: list[str]
    dense: dict[str, float]
    lexical: dict[str, float]
    confidence: float
    holders: frozenset[str] | None = None


def candidate_scores(task: IRTask, query_vecs: np.ndarray, doc_vecs: np.ndarray, dim: int, lexical_side,
                     depth: int = DEFAULT_DEPTH, show_progress: bool = False) -> Iterator[QueryCandidates]:
    """:class:`QueryCandidates` of each query of ``task`` (in order) at size ``dim``, from full-size
    vectors ordered as the task and ``lexical_side``, what :func:`lexical_rankings` returned for it."""
    index, lex_runs = lexical_side
    qids, dids = list(task.queries), np.asarray(list(task.corpus))
    position = {d: i for i, d in enumerate(dids)}
    q, d = truncate_embeddings(query_vecs, dim), truncate_embeddings(doc_vecs, dim)
    for start in tqdm(range(0, len(qids), 256), desc=f"hybrid @{dim}", disable=not show_progress):
        scores = q[start:start + 256] @ d.T
        for row, i in zip(scores, range(start, start + len(scores))):
            top = dids[top_indices(row, min(depth, len(dids)))].tolist()
            candidates = list(dict.fromkeys([*top, *lex_runs[i]]))
            # scored again at each size: one query's scores against the whole corpus are not kept
            # (queries x passages floats: gigabytes for a large task)
            lex_scores = index.query_scores(task.queries[qids[i]])
            lex_ids, lex_values = index.top(lex_scores, len(candidates), ids=candidates)
            lexical = dict(zip(lex_ids, lex_values.tolist()))
            yield QueryCandidates(top, {c: float(row[position[c]]) for c in candidates}, lexical,
                                  lexical_confidence(max(lexical.values(), default=0.0), lex_scores.bound),
                                  lex_scores.holders)


def evaluate_hybrid(task: IRTask, query_vecs: np.ndarray, doc_vecs: np.ndarray, dims: Sequence[int], *,
                    weights: Sequence[Weight] = (DEFAULT_LEXICAL_WEIGHT,), method: str = DEFAULT_FUSION, rrf_k: int = RRF_K,
                    depth: int | None = None, options: AnalyzerOptions | None = None,
                    metrics: Sequence[str] = DEFAULT_METRICS, show_progress: bool = False) -> HybridEvalResult:
    """Score lexical, dense and hybrid search at each size from full-size vectors ordered as the task.

    Args:
        task: queries, corpus, judgements.
        query_vecs / doc_vecs: full-size unit vectors in ``task.queries`` / ``task.corpus`` order.
        dims: sizes (each derived by truncation and re-normalisation).
        weights: lexical weights to score (0 = dense only; ``"auto"``: a weight per query, as the store
            computes it from BM25's confidence among the candidates).
        method / rrf_k: fusion (``"rrf"`` or ``"minmax"``).
        depth: candidates from each side (default: :data:`DEFAULT_DEPTH`, or the deepest metric
            cut-off when deeper: ``recall@200`` scores 200 + 200 candidates).
        options: the analyzer's options (default: :class:`AnalyzerOptions`'s defaults).
    """
    weights = list(dict.fromkeys(check_lexical_weight(w) for w in weights))
    if method not in FUSION_METHODS:
        raise InvalidInputError(f"unknown fusion method {method!r}; use one of {FUSION_METHODS}")
    if depth is None:  # recall@200 with --hybrid failed once the dense scores were done (user tryout)
        depth = max(DEFAULT_DEPTH, max_k(metrics))
    if depth < max_k(metrics):
        raise InvalidInputError(f"depth {depth} is below the deepest metric cut-off {max_k(metrics)}")
    qids, dids = list(task.queries), np.asarray(list(task.corpus))
    if len(query_vecs) != len(qids) or len(doc_vecs) != len(dids):
        raise InvalidInputError("vectors do not match the task's queries/corpus")
    relevant = [task.grades[q] for q in qids]  # graded NDCG where the task is graded
    cut = max_k(metrics)
    lexical_side = lexical_rankings(task, options, depth, show_progress)
    lexical = per_query_metrics([list(r)[:cut] for r in lexical_side[1]], relevant, metrics)
    dense: dict[int, SizeResult] = {}
    hybrid: dict[Weight, dict[int, SizeResult]] = {w: {} for w in weights}
    for dim in sorted(set(dims), reverse=True):
        dense_ranked: list[list[str]] = []
        fused: dict[Weight, list[list[str]]] = {w: [] for w in weights}
        for found in candidate_scores(task, query_vecs, doc_vecs, dim, lexical_side, depth, show_progress):
            dense_ranked.append(found.dense_ranking[:cut])
            for w in weights:
                fused[w].append(fuse(found.dense, found.lexical, lexical_weight=query_weight(w, found.confidence),
                                     method=method, rrf_k=rrf_k, k=cut, first=lookup_holders(w, found.holders)))
        dense[dim] = SizeResult(dim, per_query_metrics(dense_ranked, relevant, metrics))
        for w in weights:
            hybrid[w][dim] = SizeResult(dim, per_query_metrics(fused[w], relevant, metrics))
    index = lexical_side[0]
    analyzer = {"signature": index.signature, "options": asdict(index.analyzer.options)}
    return HybridEvalResult(lexical, dense, hybrid, method, depth, rrf_k, analyzer, corpus_size=len(dids))


@dataclass
class HybridSuiteResult:
    """:class:`HybridEvalResult` per domain of the validation suite, and macro-averages over the
    choice domains (``sample`` is report-only).

    ``tasks`` names each domain's task as scored (a pilot's caps included where they cut it:
    ``[pilot 100x300]``) with its query and passage (``corpus``) counts, as ``suite.json`` does; ``model``, ``spec``, ``fingerprint`` and ``command`` say what made
    it: an archived ``hybrid_suite.json`` recorded none of them (user tryout)."""

    part: str
    pilot: bool
    domains: dict[str, HybridEvalResult]
    choice_domains: list[str]
    metric: str = "ndcg@10"
    tasks: dict[str, dict] = field(default_factory=dict)
    model: str | None = None
    spec: str | None = None
    fingerprint: str | None = None
    command: str | None = None

    @property
    def weights(self) -> list[Weight]:
        return sorted(next(iter(self.domains.values())).hybrid, key=weight_order)

    @property
    def sizes(self) -> list[int]:
        return next(iter(self.domains.values())).sizes

    def macro(self, kind: str, dim: int | None = None, weight: Weight | None = None) -> float:
        """Macro-average of ``metric`` over the choice domains."""
        return float(np.mean([self.domains[d].score(kind, dim, weight, self.metric) for d in self.choice_domains]))

    def worst_drop(self, weight: Weight) -> tuple[float, str, int]:
        """The largest loss of hybrid at ``weight`` against dense-only, over every domain and size.

        Every domain counts here, the report-only ones too: the macro-average decides between
        weights, but a default that makes any set worse than dense-only is not a safe default."""
        drops = [(self.domains[d].score("dense", dim, metric=self.metric)
                  - self.domains[d].score("hybrid", dim, weight, self.metric), d, dim)
                 for d in self.domains for dim in self.sizes]
        return max(drops)

    def recommended_weight(self, max_drop: float = 0.01) -> Weight | None:
        """The weight with the best macro ``metric`` averaged over sizes among those that lose at most
        ``max_drop`` against dense-only on every domain (report-only ones too) at every size (``None``: no such weight).
        The rule the store's default lexical weight was chosen by (on the ``val`` part)."""
        ok = [w for w in self.weights if self.worst_drop(w)[0] <= max_drop]
        if not ok:
            return None
        # ties: a number before "auto", the smaller number first
        return max(ok, key=lambda w: (np.mean([self.macro("hybrid", dim, w) for dim in self.sizes]),
                                      *(-x for x in weight_order(w))))

    def to_dict(self) -> dict:
        auto = {"auto_weight_range": list(AUTO_WEIGHT_RANGE)} if AUTO_WEIGHT in self.weights else {}
        return {"model": self.model, "spec": self.spec, "fingerprint": self.fingerprint, "command": self.command,
                "part": self.part, "pilot": self.pilot, "tasks": self.tasks,
                "metric": self.metric, "choice_domains": self.choice_domains,
                "recommended_weight": self.recommended_weight(), **auto,
                "domains": {d: r.to_dict() for d, r in self.domains.items()},
                "macro": {"lexical": self.macro("lexical"),
                          "dense": {str(dim): self.macro("dense", dim) for dim in self.sizes},
                          "hybrid": {str(w): {str(dim): self.macro("hybrid", dim, w) for dim in self.sizes}
                                     for w in self.weights}},
                "worst_drop": {str(w): dict(zip(("drop", "domain", "size"), self.worst_drop(w))) for w in self.weights}}

    def to_markdown(self) -> str:
        """The macro table (size x dense / lexical / hybrid per weight), the worst per-domain drop
        of each weight, then every domain's table."""
        w = self.weights
        head = ["size", "dense", "lexical"] + [f"hybrid w={weight_label(x)}" for x in w]
        lines = [f"## Lexical, dense and hybrid on the suite ({self.part}{', pilot' if self.pilot else ''}): "
                 f"macro {self.metric} over {', '.join(self.choice_domains)}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for dim in self.sizes:
            lines.append("| " + " | ".join([str(dim), f"{self.macro('dense', dim):.4f}", f"{self.macro('lexical'):.4f}"]
                                            + [f"{self.macro('hybrid', dim, x):.4f}" for x in w]) + " |")
        lines += ["", "Largest loss of hybrid against dense-only over domains and sizes (negative: a gain everywhere):", ""]
        for x in w:
            drop, dom, dim = self.worst_drop(x)
            lines.append(f"- w={weight_label(x)}: {drop:+.4f} ({dom} at {dim})")
        best = self.recommended_weight()
        lines += ["", f"Best macro {self.metric} (mean over sizes) with no domain (report-only ones too) more than 0.01 below dense-only: "
                      + (f"w={weight_label(best)}" if best is not None else "none")]
        for name, res in self.domains.items():
            task = self.tasks.get(name)
            lines += ["", f"### {name}", ""]
            if task:
                lines += [f"{task['name']}: {task['queries']} queries, {task['corpus']} passages", ""]
            lines.append(res.to_markdown(self.metric))
        return "\n".join(lines)


def evaluate_hybrid_suite(embeddings, suite, dims: Sequence[int] | None = None, *,
                          weights: Sequence[float] = (DEFAULT_LEXICAL_WEIGHT,), method: str = DEFAULT_FUSION, options: AnalyzerOptions | None = None, cache=None,
                          metrics: Sequence[str] = DEFAULT_METRICS, primary_metric: str | None = None,
                          command: str | None = None, show_progress: bool = False) -> HybridSuiteResult:
    """:func:`evaluate_hybrid` on every domain of a :class:`medrag.qa.suite.ValidationSuite`, from the
    evaluator's embedding cache (a suite already scored by ``medrag evaluate --suite`` is not re-encoded).

    ``primary_metric`` is the metric of the macro table and of the recommended weight (default
    ``ndcg@10`` when scored, else the first of ``metrics``); ``command`` is recorded in the result.

    Example::

        from medrag.qa.suite import build_suite
        res = evaluate_hybrid_suite(MatryoshkaEmbeddings(), build_suite("val", pilot=True), weights=[0.1, 0.3])
        print(res.to_markdown())
    """
    if primary_metric is not None and primary_metric not in metrics:  # before any domain is scored
        raise InvalidInputError(f"the primary metric {primary_metric!r} is not among the metrics scored {list(metrics)}")
    cache = cache if cache is not None else EmbeddingCache()
    sizes = sorted({int(d) for d in (dims if dims is not None else embeddings.dims)}, reverse=True)
    domains: dict[str, HybridEvalResult] = {}
    for name, dom in suite.domains.items():
        q = cache.encode(embeddings, list(dom.task.queries.values()), side="query")
        d = cache.encode(embeddings, list(dom.task.corpus.values()), side="document")
        domains[name] = evaluate_hybrid(dom.task, q, d, sizes, weights=weights, method=method, options=options,
                                        metrics=metrics, show_progress=show_progress)
        logger.info("hybrid suite domain %s done", name)
    metric = primary_metric or (metrics[0] if "ndcg@10" not in metrics else "ndcg@10")
    tasks = {name: {"name": dom.task.name, "queries": len(dom.task.queries), "corpus": len(dom.task.corpus)}
             for name, dom in suite.domains.items()}
    return HybridSuiteResult(suite.part, suite.pilot, domains, suite.choice_domains or list(suite.domains),
                             metric=metric, tasks=tasks, spec=getattr(embeddings, "spec", None),
                             fingerprint=getattr(embeddings, "fingerprint", None), command=command)
