"""The loop's losses: Matryoshka contrastive loss and similarity distillation, against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medrag.errors import ConfigError
from finetune.losses import matryoshka_contrastive_loss, similarity_distillation_loss, size_weights


def test_contrastive_loss_is_the_sum_of_per_size_infonce():
    torch.manual_seed(0)
    q, p = torch.randn(6, 16), torch.randn(6, 16)
    expected = 0.0
    for dim, w in ((16, 1.0), (4, 0.5)):
        logits = F.normalize(q[:, :dim], dim=-1) @ F.normalize(p[:, :dim], dim=-1).T * 20
        expected += w * F.cross_entropy(logits, torch.arange(6))
    got = matryoshka_contrastive_loss(q, p, [16, 4], [1.0, 0.5])
    assert torch.allclose(got, expected)


def test_distillation_is_zero_when_the_student_is_the_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(8, 32), dim=-1)
    assert float(similarity_distillation_loss(t, t, t @ t.T, [32], mask_diagonal=True)) == pytest.approx(0, abs=1e-6)
    # at 8 dims the truncated similarities differ from the teacher's full-size ones: KL > 0
    assert float(similarity_distillation_loss(t, t, t @ t.T, [8], mask_diagonal=True)) > 1e-3


def test_distillation_matches_a_hand_computed_kl_and_masks_the_diagonal():
    torch.manual_seed(1)
    a, t = torch.randn(5, 12), F.normalize(torch.randn(5, 12), dim=-1)
    teacher = t @ t.T
    tau = 0.1
    rows = []
    for i in range(5):
        keep = [j for j in range(5) if j != i]
        pt = F.softmax(teacher[i, keep] / tau, dim=-1)
        s = F.normalize(a[:, :6], dim=-1)
        ps = F.log_softmax((s[i] @ s[keep].T) / tau, dim=-1)
        rows.append((pt * (pt.log() - ps)).sum())
    expected = torch.stack(rows).mean()
    got = similarity_distillation_loss(a, a, teacher, [6], temperature=tau, mask_diagonal=True)
    assert torch.allclose(got, expected, atol=1e-5)


def test_distillation_gives_gradients_to_the_small_sizes():
    torch.manual_seed(2)
    s = torch.randn(6, 16, requires_grad=True)
    t = F.normalize(torch.randn(6, 16), dim=-1)
    similarity_distillation_loss(s, s, t @ t.T, [4]).backward()
    assert s.grad[:, :4].abs().sum() > 0 and s.grad[:, 4:].abs().sum() == 0


def test_bad_weights_and_temperature_are_rejected():
    with pytest.raises(ConfigError, match="2 Matryoshka weights for 3 sizes"):
        size_weights([8, 4, 2], [1, 1])
    with pytest.raises(ConfigError, match="temperature"):
        similarity_distillation_loss(torch.randn(3, 4), torch.randn(3, 4), torch.eye(3), [4], temperature=0)


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


@pytest.mark.parametrize("dims", [[1000], [0], [-1], [4, 4], []])
def test_impossible_sizes_are_refused(dims):
    """dims=[1000] on 4-dim vectors computed the full width in silence, [0] gave log(n), [-1] dropped the
    last coordinate; a repeated size silently dropped its weight."""
    import torch

    from finetune.losses import matryoshka_contrastive_loss
    from medrag.errors import ConfigError

    q, p = torch.nn.functional.normalize(torch.randn(3, 4), dim=1), torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    with pytest.raises(ConfigError):
        matryoshka_contrastive_loss(q, p, dims=dims)
