"""Coarse-stage projections of the two-stage store: what stage 1 indexes instead of the raw prefix.

A model that is not Matryoshka-trained (the base e5-small, e5-large, bge-m3, API embeddings) keeps
little of its ranking in its first coordinates, so ``MatryoshkaChroma`` can index a fitted
projection ``normalise((x - mean) @ matrix)`` of each full vector instead (``coarse_rotation=``):

- :func:`fit_pca`: the first ``dim`` principal components of the corpus's vectors (centred, no
  whitening): keeps the most variance, knows nothing of what a search ranks.
- :func:`fit_learned`: a Matryoshka-Adaptor-style map (Yoon et al., "Matryoshka-Adaptor:
  Unsupervised and Supervised Tuning for Smaller Embedding Dimensions", EMNLP 2024), initialised
  as the PCA and trained, on the corpus's own vectors and without labels, so that the ranking of
  the corpus by the coarse vectors reproduces the ranking by the full vectors: each sampled
  passage serves as a query, and the row-wise KL divergence between the softmax of its full-size
  similarities to the other passages and that of its coarse similarities is minimised. The store
  needs exactly this (the true top hits must land among the stage-1 candidates). Measured in
  ``docs/benchmarks.md``, "Coarse stage": it lifts recall@10 of the base e5-small far above its
  raw prefix and its PCA; on a Matryoshka-trained model it adds little.

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
from dataclasses import dataclass

import numpy as np

from medrag.errors import CollectionMismatchError, InvalidInputError

logger = logging.getLogger(__name__)

#: Settings of :func:`fit_learned`, chosen on the validation questions (``docs/benchmarks.md``).
LEARNED_STEPS = 10
LEARNED_TEMPERATURE = 0.05
LEARNED_LEARNING_RATE = 1e-3
LEARNED_BATCH = 512
#: At most this many vectors are fitted on (a seeded sample of larger inputs): the fit holds an
#: ``n x n`` similarity matrix (64 MB at this size).
LEARNED_MAX_VECTORS = 4096
#: Vectors needed per coarse dimension to fit each kind of projection.
MIN_VECTORS_PER_DIM = {"pca": 2, "learned": 8}


def min_vectors(kind: str, dim: int) -> int:
    """How many vectors fitting a ``kind`` (``"pca"``, ``"learned"``) projection of size ``dim`` needs."""
    return MIN_VECTORS_PER_DIM[kind] * dim


def fit_sample_size(kind: str, dim: int) -> int:
    """How many texts the store's first write holds when it fits a ``kind`` projection of size
    ``dim``: twice the minimum (1,024 for ``"learned"`` at 64 dims, 2,048 at 128: about the sample
    sizes measured in docs/benchmarks.md, "Coarse stage")."""
    return 2 * min_vectors(kind, dim)


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


def fit_learned(vectors: np.ndarray, dim: int, *, steps: int = LEARNED_STEPS,
                temperature: float = LEARNED_TEMPERATURE, learning_rate: float = LEARNED_LEARNING_RATE,
                batch: int = LEARNED_BATCH, seed: int = 0) -> CoarseProjection:
    """A projection trained so that coarse similarities rank the corpus like full-size ones.

    Args:
        vectors: ``(n, full_dim)`` full vectors of the corpus (normalised here); ``n >= 8 * dim``; a
            seeded sample of :data:`LEARNED_MAX_VECTORS` of them when there are more.
        dim: the coarse size.
        steps: optimisation steps, each on ``batch`` of ``vectors`` as queries against all of them (few:
            the objective ranks passages by passages, a stand-in for questions, and training it
            longer fits it at the questions' expense; chosen on validation questions).
        temperature: softmax temperature on cosines, full and coarse alike.
        learning_rate: Adam's step size, from the PCA initialisation.
        batch: queries per step.
        seed: the order of the queries (the fit is deterministic for a given seed and input).

    Returns:
        The trained :class:`CoarseProjection` (its ``mean`` is the PCA's).
    """
    import torch
    import torch.nn.functional as F

    vectors = _check(vectors, dim, min_vectors("learned", dim))
    if len(vectors) > LEARNED_MAX_VECTORS:
        keep = np.random.default_rng(seed).choice(len(vectors), LEARNED_MAX_VECTORS, replace=False)
        vectors = vectors[np.sort(keep)]
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    pca = fit_pca(vectors, dim)
    x = torch.from_numpy(vectors)
    centred = x - torch.from_numpy(pca.mean)
    matrix = torch.from_numpy(pca.matrix.copy()).requires_grad_(True)
    optimizer = torch.optim.Adam([matrix], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    n = len(vectors)
    with torch.no_grad():
        full_logits = (x @ x.T) / temperature
        full_logits.fill_diagonal_(float("-inf"))  # a passage is not its own neighbour
        target = F.log_softmax(full_logits, dim=1)
        target.fill_diagonal_(0.0)
    order = torch.zeros(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < min(batch, n):
            order = torch.randperm(n, generator=generator)
        rows, order = order[:batch], order[batch:]
        coarse = F.normalize(centred @ matrix, dim=1)
        logits = coarse[rows] @ coarse.T / temperature
        logits[torch.arange(len(rows)), rows] = float("-inf")
        log_p = F.log_softmax(logits, dim=1)
        log_p = log_p.masked_fill(torch.isinf(log_p), 0.0)
        t = target[rows]
        loss = (t.exp() * (t - log_p)).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logger.info("fitted a learned %d-dim coarse projection on %d vectors (%d steps, final KL %.4f)",
                dim, n, steps, float(loss.detach()))
    return CoarseProjection(pca.mean, np.ascontiguousarray(matrix.detach().numpy(), dtype=np.float32))


__all__ = ["CoarseProjection", "fit_pca", "fit_learned", "fit_sample_size", "min_vectors"]
