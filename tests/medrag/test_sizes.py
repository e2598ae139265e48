"""One rule for "the smallest size within a tolerance": MatryoshkaEmbeddings(dimension="auto") and the
recommended tiers of the evaluation agree."""

from __future__ import annotations

import pytest

from evaluation.recommend import recommend_sizes
from medrag import MatryoshkaEmbeddings, MatryoshkaMetadata
from medrag.errors import InvalidInputError
from medrag.sizes import smallest_size_within

SCORES = {128: 0.40, 96: 0.41, 64: 0.397, 32: 0.30}


def test_reference_is_the_best_score_not_the_full_size():
    # 64 keeps 99.25% of the full size's 0.40 but only 96.8% of the best (96: 0.41)
    assert smallest_size_within(SCORES, 0.01) == 96
    assert smallest_size_within(SCORES, 0.04) == 64
    assert smallest_size_within(SCORES, 0.0) == 96
    assert smallest_size_within({8: -1.0, 4: -1.05}, 0.1) == 4  # below-zero metrics keep a relative margin


@pytest.mark.parametrize("tolerance", [-0.1, 1.0])
def test_bad_tolerance(tolerance):
    with pytest.raises(InvalidInputError):
        smallest_size_within(SCORES, tolerance)
    with pytest.raises(InvalidInputError):
        smallest_size_within({}, 0.01)


@pytest.mark.parametrize("tolerance", [0.0, 0.01, 0.03, 0.04, 0.5])
def test_auto_and_the_recommended_tiers_agree(tiny_model, tolerance):
    meta = MatryoshkaMetadata(full_dim=128, dims=[128, 96, 64, 32], scores={d: {"ndcg@10": s} for d, s in SCORES.items()})
    auto = MatryoshkaEmbeddings(tiny_model, dimension="auto", metadata=meta, max_quality_loss=tolerance).dimension
    assert auto == recommend_sizes(SCORES, tolerance, tolerance).balanced == smallest_size_within(SCORES, tolerance)
