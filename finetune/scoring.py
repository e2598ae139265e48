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

from evaluation.retrieval import evaluate_vectors
from medrag.encoding import encode_texts
from medrag.prompts import prompt_texts as _prompt_texts
from medrag.qa.task import IRTask

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: The metrics recorded before and after training (NDCG@10 drives ``dimension="auto"``).
TRAINING_METRICS = ("ndcg@10", "mrr@10", "recall@10")

def prompt_texts(model: "SentenceTransformer") -> tuple[str, str]:
    """The (query, passage) prompt strings of ``model``, ``""`` where it has none (:mod:`medrag.prompts`)."""
    return _prompt_texts(model.prompts)


def encode(model: "SentenceTransformer", texts: Sequence[str], prompt: str, batch_size: int = 64,
           show_progress_bar: bool | None = None) -> np.ndarray:
    """Full-size unit float32 vectors of ``texts`` with ``prompt`` prepended (as in training):
    :func:`medrag.encoding.encode_texts`, the encoder of :class:`medrag.MatryoshkaEmbeddings` too."""
    return encode_texts(model, texts, prompt=prompt, batch_size=batch_size, show_progress=show_progress_bar)


def score_sizes(model: "SentenceTransformer", task: IRTask, dims: Sequence[int],
                metrics: Sequence[str] = TRAINING_METRICS, batch_size: int = 64,
                show_progress_bar: bool | None = None) -> dict[int, dict[str, float]]:
    """Mean of each metric at each size: ``{dim: {metric: value}}``."""
    qprompt, pprompt = prompt_texts(model)
    q = encode(model, list(task.queries.values()), qprompt, batch_size, show_progress_bar)
    d = encode(model, list(task.corpus.values()), pprompt, batch_size, show_progress_bar)
    return {dim: res.means for dim, res in evaluate_vectors(task, q, d, dims, metrics).items()}
