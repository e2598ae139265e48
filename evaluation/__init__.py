"""evaluation: retrieval metrics per Matryoshka size, reports, plots, and store-level evaluation.

Example::

    >>> from evaluation import evaluate_models, load_task
    >>> report = evaluate_models(["bundled:multilingual-e5-small", "bundled:medrag-e5-small-fr"],
    ...                          load_task("../shared/data/frenchmedmcqa"))
    >>> paths = report.write("reports/compare")

Imports are lazy: ``import evaluation`` loads neither torch nor Chroma; each name of ``__all__``
is loaded from its submodule on first access. The submodules:

- :mod:`medrag.qa.task`: :class:`IRTask`, the queries / corpus / relevance judgements of one evaluation;
- :mod:`evaluation.data`: :func:`load_task`, the held-out task of a dataset (through :mod:`medrag.qa`);
- :mod:`evaluation.metrics`: NDCG@k, MRR@k, MAP@k, Recall@k, per query, from ranked lists;
- :mod:`evaluation.retrieval`: every metric at every size from one full-size encoding;
- :mod:`evaluation.cache`: :class:`EmbeddingCache`, full-size vectors on disk (no re-encoding);
- :mod:`evaluation.stats`: bootstrap confidence intervals, paired permutation / bootstrap tests;
- :mod:`evaluation.recommend`: the seed's three size tiers, and writing them into ``matryoshka.json``;
- :mod:`evaluation.evaluator`: :func:`evaluate_models`, all of the above for one or more models;
- :mod:`evaluation.report`: :class:`EvaluationReport`, the seed's table as Markdown / CSV / JSON, the report folder;
- :mod:`evaluation.plots`: the metric against size (log2), one line per model, CI bands;
- :mod:`evaluation.store_eval`: :func:`evaluate_store`, the two-stage store against flat and coarse search;
- :mod:`evaluation.cli`: ``medrag evaluate``.
"""

from __future__ import annotations

from medrag._exports import lazy_exports as _lazy_exports

_EXPORTS = {
    "load_task": "evaluation.data",
    "evaluate_models": "evaluation.evaluator",
    "EvaluationReport": "evaluation.report",
    "EmbeddingCache": "evaluation.cache",
    "evaluate_suite": "evaluation.suite",
    "SuiteReport": "evaluation.suite",
    "evaluate_store": "evaluation.store_eval",
    "evaluate_hybrid": "evaluation.hybrid",
    "recommend_sizes": "evaluation.recommend",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, __all__)
