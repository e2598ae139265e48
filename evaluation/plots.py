"""A metric against Matryoshka size, one line per model, with confidence bands (matplotlib, headless).

The x axis is log2 of the size, because Matryoshka sizes halve (1024, 512, 256...) and quality
changes per halving are what a deployment trades. Uses matplotlib's ``Agg`` backend through an
explicit :class:`~matplotlib.figure.Figure`, so it works on servers without a display and never
changes the global pyplot backend.

Example::

    >>> from evaluation.plots import plot_metric_vs_size
    >>> plot_metric_vs_size(report, "reports/run1/ndcg10_vs_size.png")
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from medrag.errors import InvalidInputError

# matplotlib (heavy) is imported when a plot is drawn.

#: Characters per line of a plot's title: a longer one is wrapped (a task named after a long file was
#: cut at both edges of the figure: user tryout).
TITLE_WIDTH = 64


def wrapped_title(text: str, width: int = TITLE_WIDTH) -> str:
    """``text`` on lines of at most ``width`` characters; a word longer than that (a file name) is cut
    where the line ends."""
    return textwrap.fill(text, width=width, break_long_words=True, break_on_hyphens=False)


def plot_metric_vs_size(report, path: str | os.PathLike[str], metric: str | None = None,
                        title: str | None = None, dpi: int = 120) -> Path:
    """Draw ``metric`` (default: the report's primary metric) against size for each model, write a PNG.

    Args:
        report: an :class:`~evaluation.report.EvaluationReport`.
        path: the PNG file to write (its folder is created).
        metric: the metric to draw.
        title: the figure title (default: metric and task name).
        dpi: resolution.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    metric = metric or report.primary_metric
    if metric not in report.metrics:
        raise InvalidInputError(f"metric {metric!r} was not measured; measured: {report.metrics}")
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    all_dims: set[int] = set()
    level = None
    for m in report.models:
        dims = sorted(m.sizes)
        all_dims.update(dims)
        cis = [m.cis[d][metric] for d in dims]
        level = cis[0].confidence
        line, = ax.plot(dims, [c.mean for c in cis], marker="o", label=m.label)
        ax.fill_between(dims, [c.low for c in cis], [c.high for c in cis], color=line.get_color(), alpha=0.18,
                        linewidth=0)
    ax.set_xscale("log", base=2)
    ticks = sorted(all_dims)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([str(d) for d in ticks])
    ax.set_xlabel("Matryoshka size (dimensions, log2 scale)")
    ax.set_ylabel(metric.upper().replace("@", "@"))
    ax.set_title(wrapped_title(title or f"{metric} vs size: {report.task_info.get('name', '')}"), fontsize="medium")
    ax.grid(True, alpha=0.3)
    band = f"{round(100 * level)}% bootstrap CI bands" if level else ""
    ax.legend(title=band, fontsize="small", title_fontsize="small")
    fig.tight_layout()
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out
