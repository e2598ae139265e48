"""Losses of the plain training loop (:mod:`finetune.loop`): Matryoshka in-batch contrastive loss and
self-distillation of the frozen base model's full-size similarities into every Matryoshka size.

Two terms, summed over the Matryoshka sizes with per-size weights:

- :func:`matryoshka_contrastive_loss`: MultipleNegativesRankingLoss (InfoNCE over in-batch negatives,
  scale 20 as in sentence-transformers) on the first ``d`` coordinates, re-normalised, for every size
  ``d`` -- what ``MatryoshkaLoss(MNRL)`` computes (Kusupati et al., 2022, "Matryoshka Representation
  Learning");
- :func:`similarity_distillation_loss`: for each row of an in-batch similarity matrix, the KL divergence
  from the teacher's softmax (full-size similarities of the frozen base model) to the student's at size
  ``d``. The teacher ranks the batch with all its dimensions; each small size learns to reproduce that
  ranking, which is what a truncated vector must do in a coarse search. Self-distillation of this kind
  (e.g. "2D Matryoshka Sentence Embeddings", Li et al., 2024; "Matryoshka-Adaptor", Yoon et al., 2024)
  also keeps the full size close to the base model, limiting forgetting when the labelled pairs are few
  or off-domain.

Example::

    >>> import torch
    >>> q, p = torch.randn(8, 384), torch.randn(8, 384)
    >>> loss = matryoshka_contrastive_loss(q, p, dims=[384, 64])
    >>> float(loss) > 0
    True
    >>> t = torch.nn.functional.normalize(torch.randn(8, 384), dim=-1)
    >>> kl = similarity_distillation_loss(p, p, t @ t.T, dims=[384, 64], temperature=0.05, mask_diagonal=True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medrag.errors import ConfigError

#: sentence-transformers' MultipleNegativesRankingLoss scale (cosine * 20 = logits).
CONTRASTIVE_SCALE = 20.0


def size_weights(dims: Sequence[int], weights: Sequence[float] | None) -> list[float]:
    """One weight per size (all 1.0 by default); raises ``ValueError`` on a length mismatch.

    >>> size_weights([384, 64], None)
    [1.0, 1.0]
    """
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims) \
            or len(set(dims)) != len(dims):
        raise ConfigError(f"dims must be distinct sizes >= 1, got {list(dims)}")
    if weights is None or len(weights) == 0:
        return [1.0] * len(dims)
    if len(weights) != len(dims):
        raise ConfigError(f"{len(weights)} Matryoshka weights for {len(dims)} sizes {list(dims)}")
    return [float(w) for w in weights]


def truncate(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` coordinates of each row, re-normalised to unit length."""
    if not 1 <= dim <= x.shape[-1]:  # 1000 on 4-dim vectors computed the full width, -1 dropped a coordinate
        raise ConfigError(f"size {dim} is outside 1..{x.shape[-1]}, the vectors' size")
    return F.normalize(x[:, :dim], p=2, dim=-1)


def matryoshka_contrastive_loss(queries: torch.Tensor, passages: torch.Tensor, dims: Sequence[int],
                                weights: Sequence[float] | None = None,
                                scale: float = CONTRASTIVE_SCALE) -> torch.Tensor:
    """Weighted sum over sizes of InfoNCE on ``queries[i] -> passages[i]`` with in-batch negatives.

    Args:
        queries, passages: ``(batch, full_dim)`` embeddings (any norm); row ``i`` of each is a pair.
        dims: the Matryoshka sizes.
        weights: one per size (default all 1).
        scale: cosine -> logit multiplier (1 / temperature).
    """
    labels = torch.arange(queries.shape[0], device=queries.device)
    total = queries.new_zeros(())
    for dim, w in zip(dims, size_weights(dims, weights)):
        logits = truncate(queries, dim) @ truncate(passages, dim).T * scale
        total = total + w * F.cross_entropy(logits, labels)
    return total


def similarity_distillation_loss(student_a: torch.Tensor, student_b: torch.Tensor, teacher_sim: torch.Tensor,
                                 dims: Sequence[int], weights: Sequence[float] | None = None,
                                 temperature: float = 0.05, mask_diagonal: bool = False) -> torch.Tensor:
    """Weighted sum over sizes of the row-wise KL(teacher || student) of in-batch similarity distributions.

    Args:
        student_a, student_b: ``(n, full)`` and ``(m, full)`` student embeddings; similarities are
            ``a @ b.T`` at each size after truncation and re-normalisation.
        teacher_sim: ``(n, m)`` teacher cosine similarities (full size, no gradient).
        dims, weights: the sizes and their weights.
        temperature: softmax temperature on cosines, for teacher and student alike (0.05 = scale 20,
            the contrastive loss's).
        mask_diagonal: drop ``(i, i)`` (for ``a`` and ``b`` the same texts: self-similarity is always 1).

    Returns:
        The loss, ``sum_d w_d * mean_i KL(p_teacher_i || p_student_i,d)``; 0 for a batch of one.
    """
    if temperature <= 0:
        raise ConfigError("temperature must be > 0")
    n, m = teacher_sim.shape
    if mask_diagonal and n == m:
        if n < 3:  # one other item per row: a softmax over one value carries no signal
            return student_a.new_zeros(())
        mask = True
    else:
        mask = None
    t = teacher_sim.detach().to(student_a.dtype) / temperature
    if mask is not None:
        t = _off_diagonal(t)
    log_pt = F.log_softmax(t, dim=-1)
    pt = log_pt.exp()
    total = student_a.new_zeros(())
    for dim, w in zip(dims, size_weights(dims, weights)):
        s = truncate(student_a, dim) @ truncate(student_b, dim).T / temperature
        if mask is not None:
            s = _off_diagonal(s)
        log_ps = F.log_softmax(s, dim=-1)
        total = total + w * (pt * (log_pt - log_ps)).sum(dim=-1).mean()
    return total


def _off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """``(n, n) -> (n, n - 1)``: each row without its diagonal entry."""
    n = x.shape[0]
    return x.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


__all__ = ["matryoshka_contrastive_loss", "similarity_distillation_loss", "size_weights", "truncate",
           "CONTRASTIVE_SCALE"]
