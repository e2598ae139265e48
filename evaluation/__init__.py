"""evaluation: retrieval metrics per Matryoshka size, reports, plots, and store-level evaluation.

Imports are lazy; see the submodules:

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
