"""evaluation: retrieval metrics per Matryoshka size, reports, plots, and store-level evaluation.

Imports are lazy; see the submodules:

- :mod:`evaluation.task`: :class:`IRTask`, the queries / corpus / relevance judgements of one evaluation;
- :mod:`evaluation.metrics`: NDCG@k, MRR@k, MAP@k, Recall@k, per query, from ranked lists;
- :mod:`evaluation.retrieval`: :func:`evaluate_embeddings`, every metric at every size from one encoding.
"""
