"""The evaluation report: the seed's comparison table as Markdown/CSV/JSON, per-size metrics with
confidence intervals, recommendations, and a folder that holds them all with the plot.

The seed report's table compares a base ("initial") and a fine-tuned ("final") model size by size::

    | Dimension | Score Initial | Score Final | Gain |

:meth:`EvaluationReport.comparison_table` produces it for any two evaluated models (plus the
p-value of the paired test, which the seed lacked). :meth:`EvaluationReport.write` writes:

- ``report.json``: every number (per-size means and intervals of every metric, tests, tiers,
  timings, settings, task hash, the exact command);
- ``report.md``: the tables in Markdown;
- ``comparison.csv`` (two models or more: the baseline against every other model, both named) and ``metrics.csv`` (long format: model, size, metric, mean, CI);
- ``per_query.csv``: every metric of every query at every size, per model;
- ``ndcg10_vs_size.png`` (:func:`evaluation.plots.plot_metric_vs_size`);
- with rankings kept (``run_depth``, ``medrag evaluate --export-runs``): ``run_<model>_<size>.trec``,
  one TREC run per model (numbered in the report's order from 1) and size (``qid Q0 docid rank score
  tag``), and ``qrels.trec``, the task's judgements (``qid 0 docid grade``), which trec_eval and ranx
  read: a reviewer recomputes any metric, or fuses the runs with another system's, without medrag.

Example::

    >>> report = evaluate_models(["bundled:multilingual-e5-small", "models/ft"], task)
    >>> print(report.comparison_table(fmt="markdown"))
    >>> paths = report.write("reports/run1")
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation.plots import plot_metric_vs_size
from evaluation.stats import format_p_value, holm_adjusted
from medrag import __version__
from medrag.errors import InvalidInputError, UnknownNameError

logger = logging.getLogger(__name__)


class WarningLog(logging.Handler):
    """Keeps the text of every warning logged while a report is made (by the thread that makes it),
    to write them into it.

    :func:`~evaluation.evaluator.evaluate_models` and :func:`~evaluation.suite.evaluate_suite` put
    what they log into their report's ``warnings`` (a report made from Python left them on stderr
    only: user tryout); ``medrag evaluate`` keeps a whole run's, its data checks included.

    Example::

        with WarningLog() as log:
            ...  # anything that logs through medrag, evaluation or finetune
        log.messages  # each warning once, in order
    """

    #: the loggers whose warnings qualify a report (the library's, the evaluation's, a fine-tune's checks)
    LOGGERS = ("medrag", "evaluation", "finetune")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._thread = threading.get_ident()  # another thread's warnings are its own report's (review)

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            try:
                message = " ".join(record.getMessage().split())
            except Exception:  # a record whose arguments do not format: logging itself reports it
                return
            if message not in self.messages:
                self.messages.append(message)
        if not getattr(record, "_medrag_last_resort", False) and not self._shown_elsewhere(record) \
                and logging.lastResort is not None and record.levelno >= logging.lastResort.level:
            # a script without logging set up saw library warnings on stderr through logging's last
            # resort, which a handler of ours alone would silence: they still go there (once, with
            # nested logs: evaluate_suite's and its evaluate_models')
            record._medrag_last_resort = True
            logging.lastResort.handle(record)

    @staticmethod
    def _shown_elsewhere(record: logging.LogRecord) -> bool:
        """Whether a handler other than a :class:`WarningLog` is on ``record``'s way up, whatever its
        level: logging's last resort serves only a record that meets no handler at all (a handler
        set to ERROR hides warnings on purpose: review)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(not isinstance(h, WarningLog) for h in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False

    def __enter__(self) -> "WarningLog":
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


def records_warnings(fn):
    """Decorate a function returning a report (a ``warnings`` list): the warnings logged during the
    call are added to it, after those it already holds."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        with WarningLog() as log:
            report = fn(*args, **kwargs)
        report.warnings.extend(m for m in log.messages if m not in report.warnings)
        return report

    return wrapper


def warnings_markdown(warnings: Sequence[str]) -> list[str]:
    """The lines of a report's warnings section (none without warnings): a report.md shown without the
    terminal's stderr read a model's scores on its own training questions as a gain (user tryout)."""
    if not warnings:
        return []
    return ["**Warnings** (logged when this report was made; they qualify the numbers below):", "",
            *(f"- {w}" for w in warnings), ""]


@dataclass
class EvaluationReport:
    """The results of :func:`evaluation.evaluator.evaluate_models`.

    Attributes:
        task_info: name, sizes and content hash of the task.
        metrics: the metrics measured.
        primary_metric: the metric of the comparison table, tests and recommendations.
        models: one :class:`~evaluation.evaluator.ModelResult` per model, the first being the baseline.
        comparisons: other model label -> size -> metric -> paired test against the baseline.
        settings: bootstrap, test and cache settings.
        command: the command line that produced the report, if any.
        store: model label -> :class:`~evaluation.store_eval.StoreEvalResult` (``medrag evaluate --store``).
        hybrid: model label -> :class:`~evaluation.hybrid.HybridEvalResult` (``medrag evaluate --hybrid``).
        query_ids: the task's query ids, in the order of the per-query arrays.
        query_texts: the queries themselves, in that order (``per_query.csv``: which question failed).
        warnings: the warnings logged while the report was made (:func:`~evaluation.evaluator.evaluate_models`:
            texts longer than the model's window, fewer than 30 queries...; ``medrag evaluate`` adds its
            own, a model scored on questions it trained on...), kept with the numbers they qualify.
        qrels: query id -> document id -> grade, the task's judgements; kept with the rankings
            (``run_depth``) and written as ``qrels.trec`` beside the runs.
    """

    task_info: dict[str, Any]
    metrics: list[str]
    primary_metric: str
    models: list
    comparisons: dict[str, dict[int, dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    store: dict[str, Any] = field(default_factory=dict)
    hybrid: dict[str, Any] = field(default_factory=dict)
    query_ids: list[str] = field(default_factory=list)
    query_texts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    qrels: dict[str, dict[str, float]] = field(default_factory=dict)

    # ------------------------------------------------------------------ data

    def model(self, label_or_index: str | int = 0):
        """A model's results by label or position."""
        if isinstance(label_or_index, int):
            if not -len(self.models) <= label_or_index < len(self.models):
                raise UnknownNameError(f"no model at position {label_or_index}; the report has {len(self.models)}")
            return self.models[label_or_index]
        for m in self.models:
            if m.label == label_or_index:
                return m
        raise UnknownNameError(f"no model {label_or_index!r} in the report; models: {[m.label for m in self.models]}")

    def comparison_rows(self, metric: str | None = None, initial: str | int = 0,
                        final: str | int = 1) -> list[dict[str, Any]]:
        """Rows of the seed table: dimension, score_initial, score_final, gain, gain_pct, p_value, and
        p_holm, the p-value adjusted for testing the comparison at every size (Holm, over the sizes with
        a test: :func:`evaluation.stats.holm_adjusted`)."""
        metric = metric or self.primary_metric
        if metric not in self.metrics:  # a bare KeyError (plot_metric_vs_size refused it properly)
            raise InvalidInputError(f"metric {metric!r} was not measured; this report has {', '.join(self.metrics)}")
        a, b = self.model(initial), self.model(final)
        tests = self.comparisons.get(b.label, {}) if a is self.models[0] else {}
        rows = []
        for dim in sorted(set(a.sizes) & set(b.sizes), reverse=True):
            s0, s1 = a.score(dim, metric), b.score(dim, metric)
            test = tests.get(dim, {}).get(metric)
            rows.append({"dimension": dim, "score_initial": s0, "score_final": s1, "gain": s1 - s0,
                         "gain_pct": 100 * (s1 - s0) / s0 if s0 else float("nan"),
                         "p_value": test.p_value if test is not None else None})
        holm = _holm_by_key({r["dimension"]: r["p_value"] for r in rows if r["p_value"] is not None})
        return [{**r, "p_holm": holm.get(r["dimension"])} for r in rows]

    def to_dict(self) -> dict[str, Any]:
        """Every number of the report, JSON-ready."""
        models = []
        for m in self.models:
            models.append({
                "label": m.label, "spec": m.spec, "fingerprint": m.fingerprint, "full_dim": m.full_dim,
                "timings": m.timings,
                "recommendations": {**m.recommendations.to_dict(), "metric": m.recommendations.metric,
                                    "balanced_tolerance": m.recommendations.balanced_tolerance,
                                    "edge_tolerance": m.recommendations.edge_tolerance},
                "sizes": {str(dim): {metric: m.cis[dim][metric].to_dict() for metric in self.metrics}
                          for dim in sorted(m.sizes, reverse=True)},
                "vs_largest_size": _with_holm({str(dim): t.to_dict()
                                               for dim, t in sorted(m.size_tests.items(), reverse=True)}),
            })
        comparisons = {}
        for label, per_dim in self.comparisons.items():
            sizes: dict[str, dict[str, Any]] = {str(dim): {} for dim in sorted(per_dim, reverse=True)}
            for metric in dict.fromkeys(m for tests in per_dim.values() for m in tests):  # Holm per metric
                adjusted = _with_holm({str(dim): tests[metric].to_dict() for dim, tests in per_dim.items()
                                       if metric in tests})
                for dim, test in adjusted.items():
                    sizes[dim][metric] = test
            comparisons[label] = {"baseline": self.models[0].label, "sizes": sizes}
        return {"medrag_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": self.command, "task": self.task_info, "metrics": self.metrics,
                "primary_metric": self.primary_metric, "settings": self.settings, "models": models,
                "comparisons": comparisons, "warnings": list(self.warnings),
                "store": {label: res.to_dict() for label, res in self.store.items()},
                "hybrid": {label: res.to_dict() for label, res in self.hybrid.items()}}

    # ------------------------------------------------------------------ tables

    def comparison_table(self, metric: str | None = None, fmt: str = "markdown", initial: str | int = 0,
                         final: str | int = 1) -> str:
        """The seed's table (Dimension | Score Initial | Score Final | Gain) plus the paired p-value.

        Args:
            metric: the metric compared (default: the primary metric, NDCG@10).
            fmt: ``"markdown"``, ``"csv"`` or ``"json"``.
            initial / final: the two models, by label or position (default: first and second).
        """
        if len(self.models) < 2:
            raise InvalidInputError("the comparison table needs two models; use metrics_table() for one")
        rows = self.comparison_rows(metric, initial, final)
        data = _data_table(rows, fmt, ["dimension", "score_initial", "score_final", "gain", "gain_pct", "p_value",
                                       "p_holm"])
        if data is not None:
            return data
        lines = ["| Dimension | Score Initial | Score Final | Gain | p-value | p (Holm) |",
                 "|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            p = "n/a" if r["p_value"] is None else format_p_value(r["p_value"])
            holm = "n/a" if r["p_holm"] is None else format_p_value(r["p_holm"])
            lines.append(f"| {r['dimension']} | {r['score_initial']:.4f} | {r['score_final']:.4f} | "
                         f"{r['gain']:+.4f} ({r['gain_pct']:+.1f}%) | {p} | {holm} |")
        a, b = self.model(initial), self.model(final)
        only = [f"{m.label}: {', '.join(map(str, sorted(set(m.sizes) - set(o.sizes), reverse=True)))}"
                for m, o in ((a, b), (b, a)) if set(m.sizes) - set(o.sizes)]
        if only:  # a size one model lacks has no row: say so rather than drop it silently
            lines.append(f"\nSizes scored for one model only (in its own table): {'; '.join(only)}")
        return "\n".join(lines)

    def comparisons_csv(self, metric: str | None = None) -> str:
        """Every comparison of the report as CSV (comparison.csv): the baseline against each other model,
        one row per model and size, the two models named (``initial``, ``final``)."""
        if len(self.models) < 2:
            raise InvalidInputError("the comparison table needs two models; use metrics_table() for one")
        rows = [{"initial": self.models[0].label, "final": other.label, **row}
                for other in self.models[1:] for row in self.comparison_rows(metric, 0, other.label)]
        return _csv(["initial", "final", "dimension", "score_initial", "score_final", "gain", "gain_pct", "p_value",
                     "p_holm"], rows)

    def metrics_rows(self) -> list[dict[str, Any]]:
        """Long format: one row per model, size and metric, with the mean and the CI."""
        rows = []
        for m in self.models:
            for dim in sorted(m.sizes, reverse=True):
                for metric in self.metrics:
                    ci = m.cis[dim][metric]
                    rows.append({"model": m.label, "dimension": dim, "metric": metric, "mean": ci.mean,
                                 "ci_low": ci.low, "ci_high": ci.high})
        return rows

    def per_query_table(self) -> str:
        """CSV of every per-query value: ``model, dimension, query_id, query`` and one column per
        metric (for your own tests or plots; the query ids are those of the task, see :class:`IRTask`,
        hashes of the texts for a pairs file: the ``query`` column says which question each row is)."""
        rows = []
        for m in self.models:
            for dim in sorted(m.sizes, reverse=True):
                pq = m.sizes[dim].per_query
                ids = self.query_ids or [str(i) for i in range(len(pq[self.metrics[0]]))]
                texts = self.query_texts if len(self.query_texts) == len(ids) else [""] * len(ids)
                for i, qid in enumerate(ids):
                    rows.append({"model": m.label, "dimension": dim, "query_id": qid, "query": texts[i],
                                 **{x: float(pq[x][i]) for x in self.metrics}})
        return _csv(["model", "dimension", "query_id", "query", *self.metrics], rows)

    def metrics_table(self, fmt: str = "markdown", model: str | int | None = None) -> str:
        """Every metric at every size with its CI, per model (Markdown), or the long rows (CSV/JSON)."""
        rows = self.metrics_rows()
        if model is not None:
            label = self.model(model).label
            rows = [r for r in rows if r["model"] == label]
        data = _data_table(rows, fmt, ["model", "dimension", "metric", "mean", "ci_low", "ci_high"])
        if data is not None:
            return data
        level = int(round(100 * self.settings.get("confidence", 0.95)))
        out = []
        for m in self.models if model is None else [self.model(model)]:
            out.append(f"**{m.label}** (mean [{level}% CI]; p: paired test of {self.primary_metric} vs size "
                       f"{max(m.sizes)})\n")
            top = "full" if max(m.sizes) == m.full_dim else str(max(m.sizes))  # --sizes 128 64: vs 128
            out.append("| Dimension | " + " | ".join(self.metrics) + f" | p vs {top} |")
            out.append("|---:|" + "---:|" * (len(self.metrics) + 1))
            for dim in sorted(m.sizes, reverse=True):
                cells = [f"{m.cis[dim][x].mean:.4f} [{m.cis[dim][x].low:.3f}, {m.cis[dim][x].high:.3f}]"
                         for x in self.metrics]
                p = format_p_value(m.size_tests[dim].p_value) if dim in m.size_tests else "-"
                out.append(f"| {dim} | " + " | ".join(cells) + f" | {p} |")
            out.append("")
        return "\n".join(out).rstrip()

    def recommendations_table(self) -> str:
        """The three tiers per model, in Markdown."""
        r0 = self.models[0].recommendations
        lines = [f"Recommended sizes from {r0.metric}: max = best size; balanced = smallest within "
                 f"{100 * r0.balanced_tolerance:g}% of the best; edge (resource-limited) = smallest within "
                 f"{100 * r0.edge_tolerance:g}%.\n",
                 "| Model | max | balanced | edge |", "|---|---:|---:|---:|"]
        for m in self.models:
            r = m.recommendations
            lines.append(f"| {m.label} | {r.max} | {r.balanced} | {r.edge} |")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The whole report as a Markdown document."""
        t = self.task_info
        parts = [f"# Retrieval evaluation: {t['name']}", "",
                 f"{t['queries']} queries, {t['corpus']} documents (task hash `{t['content_hash']}`)"
                 f"{', graded relevance (NDCG gains are the grades)' if t.get('graded') else ''}; "
                 f"metrics: {', '.join(self.metrics)}.", ""]
        if isinstance(t.get("data"), dict):
            data = t["data"]
            parts += [f"Data: `{data.get('path')}`" + (f" (sha256 `{data['sha256'][:16]}`)" if data.get("sha256") else ""),
                      ""]
        left = _left_out_line(t)
        if left:
            parts += [left, ""]
        parts += warnings_markdown(self.warnings)
        if "n_bootstrap" in self.settings:  # said in report.json only (user tryout)
            parts += [f"Intervals: {round(100 * self.settings.get('confidence', 0.95))}% percentile bootstrap over "
                      f"queries ({self.settings['n_bootstrap']:,} resamples).", ""]
        if self.command:
            parts += ["Command:", "", f"    {self.command}", ""]
        if len(self.models) >= 2:
            for other in self.models[1:]:
                parts += [f"## {self.primary_metric}: {self.models[0].label} (initial) vs {other.label} (final)", "",
                          self.comparison_table(final=other.label), "",
                          f"p-value: two-sided paired {self.settings.get('test', 'permutation')} test over queries.", ""]
        parts += ["## All metrics", "", self.metrics_table(), "", "## Recommendations", "",
                  self.recommendations_table(), ""]
        for label, res in self.store.items():
            parts += [f"## Store-level retrieval: {label}", "", res.to_markdown(), ""]
        for label, res in self.hybrid.items():
            parts += [f"## Lexical, dense and hybrid: {label}", "", res.to_markdown(self.primary_metric), ""]
        return "\n".join(parts)

    # ------------------------------------------------------------------ files

    def file_names(self, plot: bool = True) -> list[str]:
        """The names of the files :meth:`write` writes."""
        runs = list(self._run_files())
        return report_file_names(len(self.models), self.primary_metric, plot) + runs + ([_QRELS_FILE] if runs else [])

    def _run_files(self) -> dict[str, tuple[int, int]]:
        """The TREC run files of the rankings kept: file name -> (model number from 1, size)."""
        return {f"run_{i}_{dim}.trec": (i, dim) for i, m in enumerate(self.models, 1)
                for dim in sorted(m.sizes, reverse=True) if getattr(m.sizes[dim], "run", None) is not None}

    def trec_run(self, label_or_index: str | int, dim: int) -> str:
        """A model's ranking at size ``dim`` as a TREC run (``qid Q0 docid rank score tag`` lines, best
        first per query), as ``run_<model>_<size>.trec`` holds it; needs the rankings kept (``run_depth``).

        Raises:
            InvalidInputError: no ranking was kept for that model and size.
        """
        model = self.model(label_or_index)
        result = model.sizes.get(dim)
        if result is None or getattr(result, "run", None) is None:
            raise InvalidInputError(f"no ranking kept for {model.label!r} at size {dim}: evaluate with run_depth "
                                    "(medrag evaluate --export-runs)")
        tag = re.sub(r"\s+", "_", f"{model.label}@{dim}")
        return "".join(f"{qid} Q0 {doc} {rank} {score:.8f} {tag}\n"
                       for i, qid in enumerate(self.query_ids)
                       for rank, (doc, score) in enumerate(result.run.ranked(i), 1))

    def trec_qrels(self) -> str:
        """The task's judgements as TREC qrels (``qid 0 docid grade`` lines), as ``qrels.trec`` holds them."""
        return "".join(f"{qid} 0 {doc} {int(g) if float(g).is_integer() else g}\n"
                       for qid, grades in self.qrels.items() for doc, g in grades.items())

    def write(self, out_dir: str | os.PathLike[str], plot: bool = True) -> dict[str, Path]:
        """Write the report folder (see the module doc) and return name -> path."""
        from medrag.command import check_writable_dir

        out = Path(out_dir).expanduser()
        check_report_folder(out, self.file_names(plot))
        check_writable_dir(out, "the report folder")  # a file there was a raw FileExistsError
        earlier = earlier_report_files(out)
        paths = {"json": out / "report.json", "markdown": out / "report.md", "metrics_csv": out / "metrics.csv"}
        # the files this run writes, so that a later run in this folder removes these and nothing else
        record = {**self.to_dict(), "files": self.file_names(plot)}
        paths["json"].write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        paths["metrics_csv"].write_text(self.metrics_table(fmt="csv"), encoding="utf-8")
        paths["per_query_csv"] = out / "per_query.csv"
        paths["per_query_csv"].write_text(self.per_query_table(), encoding="utf-8")
        if len(self.models) >= 2:
            paths["comparison_csv"] = out / "comparison.csv"
            paths["comparison_csv"].write_text(self.comparisons_csv(), encoding="utf-8")
        if plot:
            paths["plot"] = plot_metric_vs_size(self, out / f"{self.primary_metric.replace('@', '')}_vs_size.png")
        runs = self._run_files()
        for name, (i, dim) in runs.items():
            paths[name] = out / name
            paths[name].write_text(self.trec_run(i - 1, dim), encoding="utf-8")
        if runs:
            paths["qrels"] = out / _QRELS_FILE
            paths["qrels"].write_text(self.trec_qrels(), encoding="utf-8")
        remove_stale_report_files(out, paths.values(), earlier)
        logger.info("report written to %s", out)
        return paths


def _holm_by_key(p_values: dict[Any, float]) -> dict[Any, float]:
    """Holm's adjustment of one family of p-values (one comparison at every size), keyed as given."""
    return dict(zip(p_values, holm_adjusted(list(p_values.values()))))


def _with_holm(tests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Paired tests of one family (their ``to_dict()``, by size), each with ``p_holm`` added."""
    holm = _holm_by_key({k: t["p_value"] for k, t in tests.items()})
    return {k: {**t, "p_holm": holm[k]} for k, t in tests.items()}


#: The tables a report writes (the comparison with two models or more), and the name of its plot.
_TABLE_FILES = ("report.json", "report.md", "metrics.csv", "per_query.csv")
_COMPARISON_FILE = "comparison.csv"
_PLOT_NAME = re.compile(r"[a-z0-9]+_vs_size\.png")
#: The TREC files of the rankings kept (``run_depth``): one run per model and size, the judgements.
_RUN_NAME = re.compile(r"run_[0-9]+_[0-9]+\.trec")
_QRELS_FILE = "qrels.trec"


def report_file_names(n_models: int, primary_metric: str, plot: bool = True) -> list[str]:
    """The files a report of ``n_models`` models writes (the comparison with two or more, the plot)."""
    return ([*_TABLE_FILES] + ([_COMPARISON_FILE] if n_models >= 2 else [])
            + ([f"{primary_metric.replace('@', '')}_vs_size.png"] if plot else []))


def holds_report(out: Path) -> bool:
    """Whether ``out`` holds a report of an earlier evaluation: its report.json or suite.json, read
    as one (any file of that name passed: a user's ``{}`` let their own metrics.csv be overwritten)."""
    return (_report_json(out / "report.json", "medrag_version") is not None
            or _report_json(out / "suite.json", "macro") is not None)


def _report_json(path: Path, key: str) -> dict[str, Any] | None:
    """``path`` read as a JSON object with the keys a report of that name writes, else None."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and key in data and "created" in data else None


def check_report_folder(out: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Refuse a report folder holding files of ``names`` (those a report is about to write) that no
    earlier evaluation wrote (no report.json or suite.json beside them): a user's own ``report.md``
    or ``metrics.csv`` was overwritten in silence. A new or empty folder, or an earlier report's
    folder, is fine.

    Raises:
        InvalidInputError: naming the files and what to do.
    """
    folder = Path(out).expanduser()
    if not folder.is_dir() or holds_report(folder):
        return
    taken = sorted(n for n in set(names) if (folder / n).exists())
    if taken:
        raise InvalidInputError(f"{folder} holds {', '.join(taken)}, which no earlier medrag evaluate wrote (no "
                                "report.json or suite.json that medrag evaluate wrote is there): the report would "
                                "overwrite them; pass a new or empty folder (--out)")


def earlier_report_files(out: Path) -> set[str]:
    """The names of the report files an earlier evaluation wrote into ``out``, read off what it
    recorded: a report.json's ``files`` (names a report writes only; an earlier version's report:
    those its primary metric and number of models imply), a suite.json's tables and the hybrid
    suite tables beside it. Empty where no report is (a user's
    folder). Read before a new run writes: :func:`remove_stale_report_files` removes what it lists
    and the new run did not write, and nothing else (every ``*_vs_size.png`` and ``suite.*`` was
    removed, a user's own ``latency_vs_size.png`` and ``suite.md`` notes too: user tryout)."""
    out = Path(out)
    names: set[str] = set()
    report = _report_json(out / "report.json", "medrag_version")
    if report is not None and isinstance(report.get("files"), list):  # recorded since December 6
        # only names a report writes: an edited or crafted report.json must not delete other files
        names |= {n for n in report["files"] if isinstance(n, str) and _is_report_file_name(n)}
    elif report is not None:  # an earlier version's report: the names its settings imply
        metric = report.get("primary_metric")
        models = report.get("models")
        names |= set(report_file_names(len(models) if isinstance(models, list) else 2,
                                       metric if isinstance(metric, str) else "ndcg@10"))
    if _report_json(out / "suite.json", "macro") is not None:
        names |= {"suite.md", "suite.json"} | {f.name for f in out.iterdir()
                                               if re.fullmatch(r"hybrid_suite(_[0-9]+)?\.(md|json)", f.name)}
    return names


def _is_report_file_name(name: str) -> bool:
    """Whether ``name`` is a plain file name of the kind :meth:`EvaluationReport.write` writes."""
    return (name in (*_TABLE_FILES, _COMPARISON_FILE, _QRELS_FILE) or _PLOT_NAME.fullmatch(name) is not None
            or _RUN_NAME.fullmatch(name) is not None)


def trec_file_names(out: str | os.PathLike[str]) -> list[str]:
    """The names of the TREC files (runs, judgements) a report with rankings writes that ``out``
    already holds: :func:`check_report_folder` refuses them in a folder no report wrote (the sizes,
    hence the run names, are known only once the models are loaded)."""
    folder = Path(out).expanduser()
    if not folder.is_dir():
        return []
    return sorted(f.name for f in folder.iterdir() if f.name == _QRELS_FILE or _RUN_NAME.fullmatch(f.name))


def check_trec_ids(ids: Iterable[str], what: str) -> None:
    """Refuse ids that a TREC file cannot hold: its fields are separated by whitespace, so an id with a
    space (a file path, a title used as id) would shift every field after it.

    >>> check_trec_ids(["q1", "q 2"], "query")
    Traceback (most recent call last):
    ...
    medrag.errors.InvalidInputError: query id 'q 2' holds whitespace, which separates the fields of a TREC run or qrels file: give the task ids without it to export runs
    """
    for id_ in ids:
        if not id_ or re.search(r"\s", id_):
            raise InvalidInputError(f"{what} id {id_!r} holds whitespace, which separates the fields of a TREC run "
                                    "or qrels file: give the task ids without it to export runs")


def remove_stale_report_files(out: Path, written: Iterable[Path], earlier: Iterable[str]) -> None:
    """A report folder used again: remove the report files an earlier run wrote and this one did not (a
    plot, a comparison of two models, a suite's tables), which would sit beside this report as if they were
    its own. ``earlier``: the names the earlier run wrote (:func:`earlier_report_files`, read before this
    run wrote); other files are the user's and stay."""
    names = {p.name for p in written}
    for name in sorted(set(earlier) - names):
        f = out / name
        if f.is_file():
            f.unlink()
            logger.info("removed %s, written by an earlier run in %s", f.name, out)


def _data_table(rows: list[dict[str, Any]], fmt: str, columns: list[str]) -> str | None:
    """``rows`` as JSON or CSV; ``None`` for Markdown (the caller formats it); an error for other formats."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt != "markdown":
        raise InvalidInputError(f"unknown table format {fmt!r}: use markdown, csv or json")
    return None


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in columns})
    return buf.getvalue()


def _left_out_line(task_info: dict) -> str:
    """What a BEIR folder's loader left out of the task (judged queries, judgements), as a sentence;
    empty when nothing was."""
    left = task_info.get("left_out_queries") or {}
    dropped = task_info.get("dropped_judgements_of_absent_passages") or 0
    parts = []
    if left.get("no_relevant_judgement"):
        parts.append(f"{left['no_relevant_judgement']} with no passage judged relevant")
    if left.get("relevant_passages_absent"):
        parts.append(f"{left['relevant_passages_absent']} whose relevant passages are all absent from the corpus")
    line = ""
    if parts:
        line = f"Of {task_info.get('judged_queries')} judged queries, left out: {'; '.join(parts)}."
    if dropped:
        line += (" " if line else "") + f"{dropped} relevance judgement(s) of passages absent from the corpus dropped."
    return line
