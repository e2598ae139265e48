"""Retrieval scores per Matryoshka size, encoded with the query/passage prompts used in training.

The same computation as :func:`evaluation.retrieval.evaluate_model` (one full-size encoding,
smaller sizes by truncation and re-normalisation, the ``evaluation.metrics`` definitions), but it
takes a bare ``SentenceTransformer``: the fine-tuning path then needs neither LangChain nor
Chroma (a training machine may have only torch and sentence-transformers).

Example::

    >>> from finetune.scoring import score_sizes
    >>> scores = score_sizes(model, dataset.eval_task(), dims=[384, 64])
    >>> scores[64]["ndcg@10"]
    0.17...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from evaluation.task import IRTask

#: The metrics recorded before and after training (NDCG@10 drives ``dimension="auto"``).
TRAINING_METRICS = ("ndcg@10", "mrr@10", "recall@10")

# Same order as medrag.embeddings: "document" last, since sentence-transformers >= 6.2 adds an
# *empty* "document" prompt next to "passage" and would silently drop the e5 "passage: " prefix.
_QUERY_PROMPTS = ("query",)
_DOCUMENT_PROMPTS = ("passage", "document", "corpus")


def prompt_texts(model: "SentenceTransformer") -> tuple[str, str]:
    """The (query, passage) prompt strings of ``model``, ``""`` where it has none."""
    prompts = model.prompts or {}
    query = next((prompts[n] for n in _QUERY_PROMPTS if prompts.get(n)), "")
    passage = next((prompts[n] for n in _DOCUMENT_PROMPTS if prompts.get(n)), "")
    return query, passage


def encode(model: "SentenceTransformer", texts: Sequence[str], prompt: str, batch_size: int = 64,
           show_progress_bar: bool | None = None) -> np.ndarray:
    """Full-size unit float32 vectors of ``texts`` with ``prompt`` prepended (as in training)."""
    show = len(texts) >= 256 if show_progress_bar is None else show_progress_bar
    vecs = model.encode(list(texts), prompt=prompt or None, batch_size=batch_size, convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=show)
    return np.asarray(vecs, dtype=np.float32)


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """First ``dim`` coordinates, re-normalised (as :func:`medrag.truncate_embeddings`)."""
    out = np.array(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def score_sizes(model: "SentenceTransformer", task: "IRTask", dims: Sequence[int],
                metrics: Sequence[str] = TRAINING_METRICS, batch_size: int = 64,
                show_progress_bar: bool | None = None) -> dict[int, dict[str, float]]:
    """Mean of each metric at each size: ``{dim: {metric: value}}``."""
    from evaluation.metrics import max_k, mean_metrics, per_query_metrics
    from evaluation.retrieval import rank_documents

    qprompt, pprompt = prompt_texts(model)
    qids, dids = list(task.queries), list(task.corpus)
    q = encode(model, [task.queries[i] for i in qids], qprompt, batch_size, show_progress_bar)
    d = encode(model, [task.corpus[i] for i in dids], pprompt, batch_size, show_progress_bar)
    relevant = [task.qrels[i] for i in qids]
    out = {}
    for dim in sorted(set(int(x) for x in dims), reverse=True):
        ranked = rank_documents(truncate(q, dim), truncate(d, dim), dids, max_k(metrics))
        out[dim] = mean_metrics(per_query_metrics(ranked, relevant, metrics))
    return out
