"""Score models on every domain of the validation suite (:mod:`medrag.qa.suite`) at every size, and
macro-average.

Each model encodes each domain's queries and corpus once, at full size, through the
:class:`~evaluation.cache.EmbeddingCache` (so a model already scored on the same suite, by anyone
sharing the cache, is not re-encoded); smaller sizes are truncations. The choice number is the
**macro-average** of the primary metric over the choice domains (every domain that is not
report-only), size by size: each domain weighs the same whatever its number of queries, so
the thousands of leaflet queries cannot drown the 73 clinical cases (the reason for macro-
averaging across test collections, e.g. BEIR, Thakur et al., 2021).

Against a reference model (the first, by default), every other model gets, per domain and size, the
paired sign-flip test of :mod:`evaluation.stats`, and per size a paired test of the macro-average:
signs are flipped per query within each domain and the macro of the domain means recomputed
(a stratified randomization test), which is cheap because the per-query values are already there.

Example::

    >>> from medrag.qa.suite import build_suite
    >>> from evaluation.suite import evaluate_suite
    >>> suite = build_suite("val", pilot=True)
    >>> report = evaluate_suite(["bundled:multilingual-e5-small"], suite, dims=[384, 64])
    >>> print(report.to_markdown())
    >>> report.write("reports/suite-base")
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.cache import EmbeddingCache
from evaluation.evaluator import evaluate_models
from evaluation.metrics import DEFAULT_METRICS
from evaluation.report import records_warnings, warnings_markdown
from evaluation.stats import N_BOOTSTRAP, N_PERMUTATIONS, PairedTest, format_p_value, seeded_rng
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.encoding import DEFAULT_BATCH_SIZE
from medrag.encoder import is_encoder
from medrag.errors import InvalidInputError
from medrag.qa.suite import ValidationSuite

logger = logging.getLogger(__name__)


@dataclass
class SuiteReport:
    """The suite's scores.

    Attributes:
        part / pilot: which suite.
        domains: domain -> {"queries", "corpus", "report_only", "content_hash", "name"}.
        primary_metric: the metric of the tables and the macro-average.
        models: model labels, the reference first.
        specs: label -> model spec; fingerprints: label -> model fingerprint.
        sizes: label -> evaluated sizes (largest first).
        scores: label -> domain -> size -> metric -> mean.
        macro: label -> size -> macro-average of the primary metric over the choice domains.
        comparisons: label -> domain (or ``"macro"``) -> size -> paired test against the reference.
        timings: label -> domain -> seconds (encoding + scoring), plus ``"total"``.
        command: the command line, if any.
        warnings: the warnings logged while the report was made (a model scored on its training
            questions...), kept with the numbers they qualify.
    """

    part: str
    pilot: bool
    domains: dict[str, dict[str, Any]]
    primary_metric: str
    models: list[str]
    specs: dict[str, str]
    fingerprints: dict[str, str]
    sizes: dict[str, list[int]]
    scores: dict[str, dict[str, dict[int, dict[str, float]]]]
    macro: dict[str, dict[int, float]]
    comparisons: dict[str, dict[str, dict[int, PairedTest]]] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def choice_domains(self) -> list[str]:
        return [d for d, info in self.domains.items() if not info["report_only"]]

    @property
    def macro_domains(self) -> list[str]:
        """The domains the macro-average is over: the choice domains, or every domain of a run that
        has none (e.g. ``--domains sample``), which the tables then say."""
        return self.choice_domains or list(self.domains)

    def table(self, label: str | int = 0, metric: str | None = None) -> str:
        """Markdown table of one model: rows = sizes, columns = domains + macro (report-only marked *)."""
        label = self.models[label] if isinstance(label, int) else label
        metric = metric or self.primary_metric
        cols = list(self.domains)
        head = ["size"] + [f"{d}{' *' if self.domains[d]['report_only'] else ''}" for d in cols] + [
            "macro" if self.choice_domains else "macro (of report-only domains)"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for dim in self.sizes[label]:
            row = [str(dim)] + [f"{self.scores[label][d][dim][metric]:.4f}" for d in cols]
            macro = self.macro[label][dim] if metric == self.primary_metric else \
                float(np.mean([self.scores[label][d][dim][metric] for d in self.macro_domains]))
            lines.append("| " + " | ".join(row + [f"**{macro:.4f}**"]) + " |")
        return "\n".join(lines)

    def comparison_table(self, label: str) -> str:
        """Markdown table of ``label`` minus the reference, per size and domain (p-value of the paired test)."""
        ref = self.models[0]
        cols = list(self.domains) + ["macro"]
        lines = ["| size | " + " | ".join(cols) + " |", "|" + "---:|" * (len(cols) + 1)]
        for dim in self.sizes[label]:
            cells = []
            for d in cols:
                test = self.comparisons.get(label, {}).get(d, {}).get(dim)
                if test is None:
                    cells.append("")
                    continue
                cells.append(f"{test.mean_diff:+.4f} (p={format_p_value(test.p_value)})")
            if any(cells):  # a size the reference model was not scored at has nothing to compare
                lines.append(f"| {dim} | " + " | ".join(cells) + " |")
        return f"{label} minus {ref} ({self.primary_metric})\n\n" + "\n".join(lines)

    def to_markdown(self) -> str:
        out = [f"# Validation suite: part {self.part}{' (pilot)' if self.pilot else ''}, {self.primary_metric}", ""]
        out.append("| domain | queries | passages | in macro |")
        out.append("|---|---:|---:|---|")
        for d, info in self.domains.items():
            in_macro = "yes" if d in self.macro_domains and not info["report_only"] else (
                "no (report-only)" if self.choice_domains else "yes (report-only; no choice domain in this run)")
            out.append(f"| {d} | {info['queries']} | {info['corpus']} | {in_macro} |")
        if self.warnings:
            out += ["", *warnings_markdown(self.warnings)[:-1]]
        for label in self.models:
            t = self.timings.get(label, {})
            out += ["", f"## {label}", "", f"fingerprint {self.fingerprints[label]}; scored in "
                    f"{t.get('total', 0):.0f} s (encoding + scoring; cached encodings cost ~0)", "",
                    self.table(label)]
        for label in self.models[1:]:
            out += ["", "## " + label + " vs " + self.models[0], "", self.comparison_table(label)]
        out += ["", "`*` report-only: shown, not in the macro-average." if self.choice_domains else
                "`*` report-only: this run has no choice domain, so its macro-average is over the report-only "
                "domains (not comparable with a suite macro-average)."]
        if self.command:
            out += ["", f"Command: `{self.command}`"]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part, "pilot": self.pilot, "primary_metric": self.primary_metric,
            "domains": self.domains, "choice_domains": self.choice_domains, "models": self.models,
            "specs": self.specs, "fingerprints": self.fingerprints, "sizes": self.sizes,
            "scores": {m: {d: {str(k): v for k, v in per.items()} for d, per in doms.items()}
                       for m, doms in self.scores.items()},
            "macro": {m: {str(k): v for k, v in per.items()} for m, per in self.macro.items()},
            "comparisons": {m: {d: {str(k): t.to_dict() for k, t in per.items()} for d, per in doms.items()}
                            for m, doms in self.comparisons.items()},
            "timings": self.timings, "settings": self.settings, "command": self.command,
            "warnings": list(self.warnings), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``suite.md`` and ``suite.json`` into ``out_dir`` (created; a folder holding files of
        those names that no earlier evaluation wrote is refused: :func:`evaluation.report.check_report_folder`)."""
        from evaluation.report import check_report_folder

        out = Path(out_dir)
        check_report_folder(out, ["suite.md", "suite.json"])
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "suite.md", "json": out / "suite.json"}
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        return paths


@records_warnings
def evaluate_suite(models: Sequence, suite: ValidationSuite, dims: Sequence[int] | None = None,
                   metrics: Sequence[str] = DEFAULT_METRICS, *, primary_metric: str = "ndcg@10",
                   cache: EmbeddingCache | None = None, labels: Sequence[str] | None = None,
                   n_bootstrap: int = N_BOOTSTRAP, n_resamples: int = N_PERMUTATIONS, seed: int = 0,
                   command: str | None = None, device: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                   show_progress: bool | None = None) -> SuiteReport:
    """Score ``models`` on every domain of ``suite`` at every size.

    Args:
        models: model specs or encoders (:class:`medrag.encoder.MatryoshkaEncoder`); the first is the reference of the
            paired comparisons.
        suite: from :func:`medrag.qa.suite.build_suite`.
        dims: sizes (default: each model's trained sizes).
        metrics / primary_metric: as :func:`evaluation.evaluator.evaluate_models`; the macro-average
            and the tests use ``primary_metric``.
        cache: the embedding cache (default: the user cache; ``EmbeddingCache(enabled=False)`` to always encode).
        labels: names of the models (default: their specs).
        n_bootstrap / n_resamples / seed: per-domain confidence intervals and paired tests.
    """
    if not models:
        raise InvalidInputError("no model to evaluate")
    if not suite.domains:
        raise InvalidInputError("the suite has no domain")
    cache = cache if cache is not None else EmbeddingCache()
    embs = [m if is_encoder(m) else
            MatryoshkaEmbeddings(m, device=device, batch_size=batch_size, show_progress=show_progress)
            for m in models]
    results: dict[str, Any] = {}
    per_query: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    label_list: list[str] = []
    timings: dict[str, dict[str, float]] = {}
    for name, dom in suite.domains.items():
        t0 = time.perf_counter()
        rep = evaluate_models(embs, dom.task, dims=dims, metrics=metrics, primary_metric=primary_metric,
                              cache=cache, n_bootstrap=n_bootstrap, n_resamples=n_resamples, seed=seed,
                              labels=labels, device=device, batch_size=batch_size, show_progress=show_progress)
        logger.info("suite domain %s scored in %.1f s", name, time.perf_counter() - t0)
        results[name] = rep
        label_list = [m.label for m in rep.models]
        for m in rep.models:
            per_query.setdefault(m.label, {})[name] = {dim: r.per_query[primary_metric] for dim, r in m.sizes.items()}
            t = timings.setdefault(m.label, {})
            t[name] = round(m.timings.get("encode_s", 0) + m.timings.get("score_s", 0), 2)
    first = next(iter(results.values()))
    metrics_used = first.metrics
    scores = {lab: {d: {dim: dict(r.sizes[dim].means) for dim in r.sizes}
                    for d, rep in results.items() for r in [rep.model(lab)]} for lab in label_list}
    choice = suite.choice_domains or list(suite.domains)
    macro = {lab: {dim: float(np.mean([scores[lab][d][dim][primary_metric] for d in choice]))
                   for dim in first.model(lab).sizes} for lab in label_list}
    comparisons: dict[str, dict[str, dict[int, PairedTest]]] = {}
    ref = label_list[0]
    for lab in label_list[1:]:
        comp: dict[str, dict[int, PairedTest]] = {}
        for d, rep in results.items():
            comp[d] = {dim: tests[primary_metric] for dim, tests in rep.comparisons.get(lab, {}).items()}
        shared = sorted(set(macro[ref]) & set(macro[lab]), reverse=True)
        comp["macro"] = {dim: macro_paired_test([per_query[lab][d][dim] for d in choice],
                                                [per_query[ref][d][dim] for d in choice], n_resamples, seed)
                         for dim in shared}
        comparisons[lab] = comp
    for lab in label_list:
        timings[lab]["total"] = round(sum(timings[lab].values()), 2)
    domains = {d: {"name": dom.task.name, "queries": len(dom.task.queries), "corpus": len(dom.task.corpus),
                   "report_only": dom.report_only, "content_hash": dom.task.content_hash()}
               for d, dom in suite.domains.items()}
    return SuiteReport(
        part=suite.part, pilot=suite.pilot, domains=domains, primary_metric=primary_metric, models=label_list,
        specs={m.label: m.spec for m in first.models}, fingerprints={m.label: m.fingerprint for m in first.models},
        sizes={lab: sorted(first.model(lab).sizes, reverse=True) for lab in label_list},
        scores=scores, macro=macro, comparisons=comparisons, timings=timings,
        settings=dict(suite.settings, metrics=metrics_used, n_bootstrap=n_bootstrap, n_resamples=n_resamples,
                      seed=seed, cache=str(cache.folder) if cache.enabled else None,
                      cache_hits=cache.hits, cache_misses=cache.misses),
        command=command)


def macro_paired_test(a: Sequence[np.ndarray], b: Sequence[np.ndarray], n_resamples: int = N_PERMUTATIONS,
                      seed: int = 0) -> PairedTest:
    """Two-sided stratified sign-flip test of macro(a) - macro(b), where macro is the mean over domains
    of the mean over that domain's queries; ``a[i]`` and ``b[i]`` are per-query values of domain ``i``.

    Example::

        >>> import numpy as np
        >>> t = macro_paired_test([np.ones(20), np.ones(5)], [np.zeros(20), np.zeros(5)], 2000)
        >>> round(t.mean_diff, 3), t.p_value < 0.01
        (1.0, True)
    """
    if len(a) != len(b) or not a:
        raise InvalidInputError("macro_paired_test needs the same non-empty list of domains for both systems")
    diffs = []
    for x, y in zip(a, b):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.size == 0:
            raise InvalidInputError("per-query arrays of a domain must have the same non-zero length")
        diffs.append(x - y)
    rng = seeded_rng(seed)
    observed = float(np.mean([d.mean() for d in diffs]))
    if not any(np.any(d) for d in diffs):
        return PairedTest(0.0, 1.0, "stratified permutation", n_resamples)
    total = np.zeros(n_resamples)
    for d in diffs:
        for start in range(0, n_resamples, 1000):
            size = min(1000, n_resamples - start)
            signs = rng.integers(0, 2, size=(size, d.size)) * 2 - 1
            total[start:start + size] += (signs * d).mean(axis=1)
    total /= len(diffs)
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int(np.sum(np.abs(total) >= abs(observed) - tol))
    return PairedTest(observed, (1 + extreme) / (1 + n_resamples), "stratified permutation", n_resamples)


__all__ = ["SuiteReport", "evaluate_suite", "macro_paired_test"]
