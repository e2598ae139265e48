"""Validation-suite scores of a trained model, for the ``matryoshka.json`` of an exported adapter.

The shipped model's ``matryoshka.json`` holds the validation suite's macro-average per size
(:mod:`medrag.qa.suite`, part ``val``; ``dimension="auto"`` and the presets read it). With a frozen
encoder (``freeze_encoder``) the model's vectors are exactly ``normalize(W @ base + b)``, so the suite
is scored from the base model's vectors (the evaluation's embedding cache: encoded once for every
candidate) and the trained layer. With the last block trained too (``top_block_epochs``), the suite's
texts go through the base's cached hidden states entering that block (:mod:`finetune.top_block`,
computed once) and the trained block and layer. Otherwise every text is encoded with the trained model.

Example::

    from finetune.suite_scores import suite_macro_scores
    macro, per_domain = suite_macro_scores(model, base_model, frozen_encoder=True, pilot=True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import InvalidInputError

from finetune.scoring import TRAINING_METRICS

if TYPE_CHECKING:
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    from finetune.top_block import TopBlockEncoder

logger = logging.getLogger(__name__)


def suite_macro_scores(model: "SentenceTransformer", base: "SentenceTransformer | None", dims: Sequence[int],
                       *, frozen_encoder: bool, top_block: "TopBlockEncoder | None" = None,
                       states_dir: "Path | None" = None, pilot: bool = True, max_passages: int = 3000,
                       data_root: str | None = None,
                       metrics: Sequence[str] = TRAINING_METRICS
                       ) -> tuple[dict[int, dict[str, float]], dict[str, dict[int, dict[str, float]]]]:
    """``(macro, per_domain)``: the mean over the suite's choice domains of each metric at each size, and
    the per-domain scores (report-only domains included).

    Args:
        model: the trained model (merged; with its final linear layer when ``frozen_encoder``).
        base: the frozen base model (needed when ``frozen_encoder``).
        frozen_encoder: score from the base's cached vectors and the model's final layer.
        top_block: the trained last block and final layer, scored from ``base``'s cached block states
            (replaces ``frozen_encoder``'s path), cached in ``states_dir`` (default
            :func:`finetune.top_block.block_states_dir`).
        pilot: the suite's pilot caps (<= 300 queries x ``max_passages`` passages per domain).
    """
    from evaluation.cache import EmbeddingCache
    from medrag import MatryoshkaEmbeddings
    from medrag.qa.suite import build_suite

    from finetune.rotation import rotation_layer

    suite = build_suite("val", pilot=pilot, data_root=data_root, max_passages=max_passages if pilot else None)
    if top_block is not None:
        return _scores(suite, dims, metrics, _block_encoder(top_block, base, states_dir))
    cache = EmbeddingCache()
    if frozen_encoder:
        dense = rotation_layer(model)
        w = dense.linear.weight.detach().float().cpu().numpy()
        b = dense.linear.bias.detach().float().cpu().numpy()
        encoder = MatryoshkaEmbeddings(base)
    else:
        encoder = MatryoshkaEmbeddings(model)

    def encode(texts: list[str], side: str) -> np.ndarray:
        vecs = cache.encode(encoder, texts, side)
        return _apply(vecs, w, b) if frozen_encoder else vecs

    return _scores(suite, dims, metrics, encode)


def _block_encoder(top_block: "TopBlockEncoder", base: "SentenceTransformer", states_dir: "Path | None"):
    """``encode(texts, side)`` through ``base``'s cached last-block states and ``top_block``."""
    from medrag.models import model_fingerprint
    from medrag.prompts import prompt_texts

    from finetune.top_block import cached_states

    if base is None:
        raise InvalidInputError("top_block scoring needs the base model (its hidden states feed the block)")
    fingerprint = model_fingerprint(base)
    prompts = dict(zip(("query", "document"), prompt_texts(base.prompts)))

    def encode(texts: list[str], side: str) -> np.ndarray:
        return top_block.encode(cached_states(base, fingerprint, texts, prompts[side], base.max_seq_length,
                                                states_dir))

    return encode


def _scores(suite, dims: Sequence[int], metrics: Sequence[str], encode):
    from evaluation.retrieval import evaluate_vectors

    from tqdm.auto import tqdm

    from medrag.encoding import stderr_is_terminal

    per_domain: dict[str, dict[int, dict[str, float]]] = {}
    # minutes per model on a CPU (3,000 passages per domain): the phase after training showed nothing (user tryout)
    logger.info("scoring the validation suite: %d domains, %d texts", len(suite.domains),
                sum(len(d.task.queries) + len(d.task.corpus) for d in suite.domains.values()))
    for name, dom in tqdm(suite.domains.items(), desc="validation suite", unit="domain",
                          disable=not stderr_is_terminal()):
        q = encode(list(dom.task.queries.values()), "query")
        d = encode(list(dom.task.corpus.values()), "document")
        res = evaluate_vectors(dom.task, q, d, dims, metrics)
        per_domain[name] = {dim: dict(r.means) for dim, r in res.items()}
        logger.info("suite %s: ndcg@10 %s", name, {k: round(v["ndcg@10"], 4) for k, v in per_domain[name].items()})
    choice = suite.choice_domains
    macro = {dim: {m: float(np.mean([per_domain[n][dim][m] for n in choice])) for m in metrics} for dim in dims}
    return macro, per_domain


def _apply(vecs: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = vecs @ w.T + b
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


__all__ = ["suite_macro_scores"]
