"""Coarse-stage projections of the two-stage store: what stage 1 indexes instead of the raw prefix.

A model that is not Matryoshka-trained (the base e5-small, e5-large, bge-m3, API embeddings) keeps
little of its ranking in its first coordinates, so ``MatryoshkaChroma`` can index a fitted
projection ``normalise((x - mean) @ matrix)`` of each full vector instead (``coarse_rotation=``):

- :func:`fit_pca`: the first ``dim`` principal components of the corpus's vectors (centred, no
  whitening): keeps the most variance, knows nothing of what a search ranks.
- :func:`fit_learned`: a Matryoshka-Adaptor-style map (Yoon et al., "Matryoshka-Adaptor:
  Unsupervised and Supervised Tuning for Smaller Embedding Dimensions", EMNLP 2024), initialised
  as the PCA and trained so that the ranking of the corpus by the coarse vectors reproduces the
  ranking by the full vectors: for each query, the KL divergence between the softmax of its
  full-size similarities to the passages and that of its coarse similarities is minimised. The
  store needs exactly this (the true top hits must land among the stage-1 candidates). The queries
  are what the store searches with: without real ones, :func:`pseudo_queries` cuts a short span
  from each fitted passage and the store encodes it with the model's *query* prompt (questions are
  short and sit elsewhere in the space than passages; ranking passages by passages, the earlier
  objective, fitted a space that questions need less, and degraded with more steps). Measured in
  ``docs/benchmarks.md``, "Coarse stage": it lifts recall@10 at coarse 64 of the base e5-small and
  of the default model above their raw prefix, their PCA and the passage-as-query fit.

Both give a :class:`CoarseProjection` (a mean and a ``(full_dim, dim)`` matrix), recorded in the
collection contract so that every client projects queries and passages alike.

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> vectors = rng.normal(size=(300, 32)).astype(np.float32)
    >>> projection = fit_pca(vectors, 8)
    >>> projection.project(vectors[:2]).shape
    (2, 8)
    >>> CoarseProjection.from_bytes(projection.to_bytes(), 32, 8) == projection
    True
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import CollectionMismatchError, InvalidInputError

if TYPE_CHECKING:  # torch is imported by the fits themselves
    import torch

logger = logging.getLogger(__name__)

#: Settings of :func:`fit_learned`, chosen on the validation suite's dev questions
#: (``docs/benchmarks.md``, "Coarse stage"): the coarse softmax is softer than the full-size target
#: (the coarse cosines, centred, spread much wider than the full ones). ``LEARNED_STEPS`` suits a
#: Matryoshka-trained model (its PCA start is already good; more steps fit the pseudo-queries at the
#: real questions' expense); ``LEARNED_STEPS_UNTRAINED`` another one (:func:`learned_steps`).
LEARNED_STEPS = 10
LEARNED_STEPS_UNTRAINED = 150
LEARNED_TEMPERATURE = 0.1
LEARNED_TARGET_TEMPERATURE = 0.02
LEARNED_LEARNING_RATE = 1e-3
LEARNED_BATCH = 512
#: The earlier objective's temperature (both sides), used when no queries are given.
PASSAGE_QUERY_TEMPERATURE = 0.05
#: Words in a pseudo-query (:func:`pseudo_queries`): about a question's length.
PSEUDO_QUERY_WORDS = (6, 14)
#: At most this many vectors are fitted on (a seeded sample of larger inputs): the fit holds an
#: ``n x n`` similarity matrix (64 MB at this size); the queries are capped alike.
LEARNED_MAX_VECTORS = 4096
#: Vectors needed per coarse dimension to fit each kind of projection.
MIN_VECTORS_PER_DIM = {"pca": 2, "learned": 8}


def min_vectors(kind: str, dim: int) -> int:
    """How many vectors fitting a ``kind`` (``"pca"``, ``"learned"``) projection of size ``dim`` needs."""
    return MIN_VECTORS_PER_DIM[kind] * dim


def fit_sample_size(kind: str, dim: int) -> int:
    """How many texts the store's first write holds when it fits a ``kind`` projection of size
    ``dim``: :data:`LEARNED_MAX_VECTORS` (4,096, the most :func:`fit_learned` uses), or twice the
    minimum when that is larger. Fitting on 4,096 chunks rather than 1,000 measured +0.02 to +0.03
    recall@10 at coarse 64 / 100 candidates (docs/benchmarks.md, "Coarse stage"). ``"auto"``
    (the store's default, which may become ``"learned"``) counts as ``"learned"``."""
    return max(2 * min_vectors("learned" if kind == "auto" else kind, dim), LEARNED_MAX_VECTORS)


@dataclass(frozen=True, eq=False)
class CoarseProjection:
    """``coarse(x) = normalise((x - mean) @ matrix)``; ``mean`` is ``(full_dim,)``, ``matrix`` ``(full_dim, dim)``."""

    mean: np.ndarray
    matrix: np.ndarray

    @property
    def dim(self) -> int:
        """The coarse size."""
        return int(self.matrix.shape[1])

    def project(self, full: np.ndarray) -> np.ndarray:
        """The unit-length coarse vectors of ``full`` (``(n, full_dim)``); a zero projection stays zero."""
        out = np.ascontiguousarray((np.asarray(full, dtype=np.float32) - self.mean) @ self.matrix, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    def to_bytes(self) -> bytes:
        """float32 ``mean`` then ``matrix`` (row-major): the collection contract's format."""
        return np.concatenate([self.mean.astype(np.float32), self.matrix.astype(np.float32).ravel()]).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, full_dim: int, dim: int) -> "CoarseProjection":
        """Read :meth:`to_bytes`; :class:`CollectionMismatchError` when the size does not match
        ``full_dim`` and ``dim`` (a corrupt or foreign projection)."""
        flat = np.frombuffer(data, dtype=np.float32) if len(data) % 4 == 0 else np.zeros(0, np.float32)
        if flat.size != full_dim * (dim + 1):
            raise CollectionMismatchError(f"{flat.size} floats for a {full_dim} -> {dim} projection ({full_dim * (dim + 1)} expected)")
        return cls(flat[:full_dim].copy(), flat[full_dim:].reshape(full_dim, dim).copy())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CoarseProjection) and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.matrix, other.matrix))


def _check(vectors: np.ndarray, dim: int, minimum: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not 0 < dim <= vectors.shape[1]:
        raise InvalidInputError(f"cannot fit a {dim}-dim projection of vectors shaped {vectors.shape}")
    if len(vectors) < minimum:
        raise InvalidInputError(f"fitting a {dim}-dim coarse projection needs at least {minimum} vectors, got {len(vectors)}")
    if not np.isfinite(vectors).all():
        raise InvalidInputError("cannot fit a coarse projection on NaN or infinite vectors")
    return vectors


def fit_pca(vectors: np.ndarray, dim: int) -> CoarseProjection:
    """The first ``dim`` principal components of ``vectors`` (centred, no whitening); needs ``2 * dim`` vectors."""
    vectors = _check(vectors, dim, min_vectors("pca", dim))
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return CoarseProjection(mean.astype(np.float32), np.ascontiguousarray(vt[:dim].T, dtype=np.float32))


def sample_indices(n: int, seed: int = 0) -> np.ndarray:
    """The rows :func:`fit_learned` fits on out of ``n``: all of them, or a seeded sample of
    :data:`LEARNED_MAX_VECTORS` (sorted). The store takes the same rows of its texts to cut the
    pseudo-queries from, so that each query's passage is among the fitted ones."""
    if n <= LEARNED_MAX_VECTORS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, LEARNED_MAX_VECTORS, replace=False))


def pseudo_queries(texts: Sequence[str], seed: int = 0) -> list[str]:
    """One query-like span per text for :func:`fit_learned`: 6 to 14 consecutive words (the whole
    text when shorter), at a seeded random place, to be encoded with the model's *query* prompt.

    Example::

        >>> text = ("La ferritine basse signe une carence martiale, chez l'adulte comme chez l'enfant ; "
        ...         "la CRP permet d'écarter une inflammation qui la masquerait.")
        >>> span = pseudo_queries([text])[0]
        >>> span in text and 6 <= len(span.split()) <= 14
        True
        >>> pseudo_queries(["Ferritine basse."])
        ['Ferritine basse.']
    """
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = str(text).split()
        n = rng.randint(*PSEUDO_QUERY_WORDS)
        start = rng.randint(0, max(0, len(words) - n))
        out.append(" ".join(words[start:start + n]) or str(text))
    return out


def learned_steps(matryoshka_trained: bool) -> int:
    """The steps of :func:`fit_learned` the store uses for a model of this kind.

    Measured on the validation suite's dev questions over 16,384 French chunks, fitted on 4,096
    (``docs/benchmarks.md``, "Coarse fit steps per model kind"), recall@10 at coarse 64 / 100
    candidates: the base e5-small (not Matryoshka-trained) 0.688 at 10 steps, 0.723 at 30, 0.741 at
    150 (flat from there); the Matryoshka-trained default 0.849 at 10, 0.833 at 30, 0.805 at 150.

    Args:
        matryoshka_trained: whether a Matryoshka loss trained the model (the encoder's
            ``matryoshka_trained``; :class:`medrag.MatryoshkaEmbeddings` reads it from
            ``matryoshka.json``).

    Returns:
        :data:`LEARNED_STEPS` (10) for a Matryoshka-trained model, else
        :data:`LEARNED_STEPS_UNTRAINED` (150).
    """
    return LEARNED_STEPS if matryoshka_trained else LEARNED_STEPS_UNTRAINED


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sample(x: np.ndarray, seed: int) -> np.ndarray:
    return x if len(x) <= LEARNED_MAX_VECTORS else x[sample_indices(len(x), seed)]


def fit_learned(vectors: np.ndarray, dim: int, *, queries: np.ndarray | None = None, steps: int = LEARNED_STEPS,
                temperature: float | None = None, target_temperature: float | None = None,
                learning_rate: float = LEARNED_LEARNING_RATE, batch: int = LEARNED_BATCH,
                seed: int = 0) -> CoarseProjection:
    """A projection trained so that coarse similarities rank the corpus like full-size ones.

    Args:
        vectors: ``(n, full_dim)`` full vectors of the corpus (normalised here); ``n >= 8 * dim``; a
            seeded sample of :data:`LEARNED_MAX_VECTORS` of them when there are more
            (:func:`sample_indices`).
        dim: the coarse size.
        queries: ``(m, full_dim)`` full vectors of queries (real ones, or :func:`pseudo_queries` of
            the passages encoded with the query prompt; the store does the latter). ``None``: each
            passage serves as a query against the others (the unsupervised objective of the paper;
            weaker for questions, see the module docstring). More than
            :data:`LEARNED_MAX_VECTORS` are sampled alike.
        steps: optimisation steps (>= 1), each on ``batch`` queries against all the passages.
        temperature: softmax temperature on the coarse cosines (default
            :data:`LEARNED_TEMPERATURE`, or :data:`PASSAGE_QUERY_TEMPERATURE` without queries).
        target_temperature: softmax temperature on the full-size cosines (default
            :data:`LEARNED_TARGET_TEMPERATURE`, or :data:`PASSAGE_QUERY_TEMPERATURE` without queries).
        learning_rate: Adam's step size, from the PCA initialisation.
        batch: queries per step.
        seed: the samples and the order of the queries (the fit is deterministic for a given seed
            and input).

    Returns:
        The trained :class:`CoarseProjection` (its ``mean`` is the PCA's of the passages).
    """
    import torch
    import torch.nn.functional as F

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be an int >= 1, got {steps!r}")
    for name, value in (("temperature", temperature), ("target_temperature", target_temperature),
                        ("learning_rate", learning_rate)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise InvalidInputError(f"{name} must be a number > 0, got {value!r}")
    vectors = _unit(_sample(_check(vectors, dim, min_vectors("learned", dim)), seed))
    self_queries = queries is None
    if self_queries:
        q = vectors
        default_t = default_target = PASSAGE_QUERY_TEMPERATURE
    else:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != vectors.shape[1] or not len(q):
            raise InvalidInputError(f"queries shaped {q.shape} for passages of {vectors.shape[1]} dims")
        if not np.isfinite(q).all():
            raise InvalidInputError("cannot fit a coarse projection on NaN or infinite query vectors")
        q = _unit(_sample(q, seed + 1))
        default_t, default_target = LEARNED_TEMPERATURE, LEARNED_TARGET_TEMPERATURE
    temperature = default_t if temperature is None else temperature
    target_temperature = default_target if target_temperature is None else target_temperature
    pca = fit_pca(vectors, dim)
    x, xq = torch.from_numpy(vectors), torch.from_numpy(np.ascontiguousarray(q))
    mean = torch.from_numpy(pca.mean)
    matrix = torch.from_numpy(pca.matrix.copy()).requires_grad_(True)
    with torch.no_grad():
        full_logits = (xq @ x.T) / target_temperature
        if self_queries:
            full_logits.fill_diagonal_(float("-inf"))  # a passage is not its own neighbour
        target = F.log_softmax(full_logits, dim=1)
        if self_queries:
            target.fill_diagonal_(0.0)
    loss = kl_steps([matrix], lambda a: F.normalize(a @ matrix, dim=1), x - mean, xq - mean, target,
                    steps=steps, temperature=temperature, learning_rate=learning_rate, batch=batch,
                    generator=torch.Generator().manual_seed(seed), self_queries=self_queries)
    logger.info("fitted a learned %d-dim coarse projection on %d vectors and %s (%d steps, final KL %.4f)",
                dim, len(vectors), "the passages as queries" if self_queries else f"{len(q)} queries", steps,
                loss)
    return CoarseProjection(pca.mean, np.ascontiguousarray(matrix.detach().numpy(), dtype=np.float32))


def kl_steps(parameters: Sequence["torch.Tensor"], coarse: Callable[["torch.Tensor"], "torch.Tensor"],
             passages: "torch.Tensor", queries: "torch.Tensor", target: "torch.Tensor", *, steps: int,
             temperature: float, learning_rate: float = LEARNED_LEARNING_RATE, batch: int = LEARNED_BATCH,
             generator: "torch.Generator | None" = None, self_queries: bool = False) -> float:
    """The optimisation of :func:`fit_learned`, for any coarse map: Adam steps that lower the KL
    divergence between the full-size softmax over the passages (``target``, log-probabilities, one
    row per query) and the coarse one, ``softmax(coarse(query) . coarse(passages) / temperature)``,
    on ``batch`` queries per step (the Matryoshka-Adaptor objective, Yoon et al., EMNLP 2024).
    The store's linear stage and the benchmark's non-linear one (``benchmarks/store_benchmark.py``,
    ``fit_residual``) both train with it.

    Args:
        parameters: the tensors to train (``requires_grad``).
        coarse: maps centred full vectors ``(n, full_dim)`` to unit coarse vectors.
        passages: ``(n, full_dim)`` centred full vectors of the passages.
        queries: ``(m, full_dim)`` centred full vectors of the queries (``passages`` itself when
            ``self_queries``: then a passage is never scored against itself).
        target: ``(m, n)`` log-softmax of the full-size similarities.
        steps: optimisation steps.
        temperature: softmax temperature on the coarse cosines.
        learning_rate: Adam's step size.
        batch: queries per step (a seeded permutation of them, drawn again when used up).
        generator: the torch generator of that permutation (seeded by the caller).
        self_queries: the passages serve as queries.

    Returns:
        The last step's loss.
    """
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(list(parameters), lr=learning_rate)
    m = len(queries)
    order = torch.zeros(0, dtype=torch.long)
    loss = torch.zeros(())
    for _ in range(steps):
        if len(order) < min(batch, m):
            order = torch.randperm(m, generator=generator)
        rows, order = order[:batch], order[batch:]
        coarse_p = coarse(passages)
        coarse_q = coarse_p[rows] if self_queries else coarse(queries[rows])
        logits = coarse_q @ coarse_p.T / temperature
        if self_queries:
            logits[torch.arange(len(rows)), rows] = float("-inf")
        log_p = F.log_softmax(logits, dim=1)
        log_p = log_p.masked_fill(torch.isinf(log_p), 0.0)
        t = target[rows]
        loss = (t.exp() * (t - log_p)).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


__all__ = ["CoarseProjection", "fit_pca", "fit_learned", "fit_sample_size", "kl_steps", "learned_steps", "min_vectors",
           "pseudo_queries", "sample_indices"]
