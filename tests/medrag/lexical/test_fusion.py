"""Weighted RRF and min-max fusion."""

from __future__ import annotations

import pytest

from medrag.errors import InvalidInputError
from medrag.lexical.fusion import fuse, fused_scores, ranks

DENSE = {"a": 0.90, "b": 0.85, "c": 0.10}
LEX = {"c": 12.0, "d": 6.0, "b": 5.0}


def test_rrf_formula() -> None:
    s = fused_scores(DENSE, LEX, lexical_weight=0.25, method="rrf")
    assert s["b"] == pytest.approx(0.75 / 62 + 0.25 / 63)
    assert s["d"] == pytest.approx(0.25 / 62)
    assert s["a"] == pytest.approx(0.75 / 61)


def test_weight_extremes_reproduce_each_ranking() -> None:
    assert fuse(DENSE, LEX, lexical_weight=0.0, method="rrf")[:3] == ["a", "b", "c"]
    assert fuse(DENSE, LEX, lexical_weight=1.0, method="rrf")[:3] == ["c", "d", "b"]
    assert fuse(DENSE, LEX, lexical_weight=0.0, method="minmax")[:3] == ["a", "b", "c"]
    assert fuse(DENSE, LEX, lexical_weight=1.0, method="minmax") == ["c", "d", "b", "a"]  # b ties a at 0: lexical order


def test_equal_weight_rrf_rewards_agreement() -> None:
    assert fuse({"a": 0.9, "b": 0.8}, {"x": 9.0, "b": 5.0}, lexical_weight=0.5, method="rrf")[0] == "b"


def test_minmax_uses_score_gaps() -> None:
    s = fused_scores({"a": 1.0, "b": 0.0}, {"b": 1.0, "a": 0.9}, lexical_weight=0.5, method="minmax")
    assert s == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    s = fused_scores({"a": 3.0}, {}, lexical_weight=0.5, method="minmax")
    assert s == {"a": 0.5}


def test_k_and_ranks() -> None:
    assert len(fuse(DENSE, LEX, lexical_weight=0.5, k=2)) == 2
    assert ranks({"x": 1.0, "y": 3.0}) == {"y": 1, "x": 2}
    assert fuse({}, {}, lexical_weight=0.3) == []


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, float("nan")])
def test_bad_weight(bad) -> None:
    with pytest.raises(InvalidInputError):
        fuse(DENSE, LEX, lexical_weight=bad)


def test_bad_method() -> None:
    with pytest.raises(InvalidInputError):
        fuse(DENSE, LEX, lexical_weight=0.5, method="combmnz")
    with pytest.raises(InvalidInputError):
        fuse(DENSE, LEX, lexical_weight=0.5, rrf_k=-1)


def test_lexical_weight_1_orders_every_match_before_the_non_matches() -> None:
    """Min-max gives the weakest BM25 match 0, like a candidate sharing no term with the query; at
    lexical_weight=1 ("lexical only") the tie used to be broken by the dense order, a non-match first."""
    dense = {"b": 0.5, "a": 0.2, "c": 0.1}
    lexical = {"c": 0.255, "a": 0.197}  # b shares no term with the query
    assert fuse(dense, lexical, lexical_weight=1.0, method="minmax") == ["c", "a", "b"]
    assert fuse(dense, lexical, lexical_weight=1.0, method="rrf") == ["c", "a", "b"]
    assert fuse(dense, lexical, lexical_weight=0.0, method="minmax") == ["b", "a", "c"]  # dense only
    assert fuse(dense, lexical, lexical_weight=0.5, method="minmax")[-1] == "a"  # weak on both sides


def test_the_default_fusion_is_the_stores() -> None:
    """fuse() defaulted to RRF while the store fuses with min-max: the same call ranked otherwise."""
    from medrag.lexical.fusion import DEFAULT_FUSION

    assert DEFAULT_FUSION == "minmax"
    assert fuse(DENSE, LEX, lexical_weight=0.2) == fuse(DENSE, LEX, lexical_weight=0.2, method="minmax")
    assert fused_scores(DENSE, LEX, lexical_weight=0.2) == fused_scores(DENSE, LEX, lexical_weight=0.2, method="minmax")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_refused(bad) -> None:
    """With min-max one NaN dense score made every fused score NaN, in an arbitrary order."""
    with pytest.raises(InvalidInputError, match="not finite"):
        fuse({"a": bad, "b": 0.5}, LEX, lexical_weight=0.2)
    with pytest.raises(InvalidInputError, match="lexical"):
        fuse(DENSE, {"c": bad}, lexical_weight=0.2, method="rrf")


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True])
def test_bad_k(bad) -> None:
    """k=-1 silently dropped the last id."""
    with pytest.raises(InvalidInputError, match="k must be"):
        fuse(DENSE, LEX, lexical_weight=0.2, k=bad)


def test_numpy_weights() -> None:
    import numpy as np

    assert fuse(DENSE, LEX, lexical_weight=np.float32(0.25)) == fuse(DENSE, LEX, lexical_weight=0.25)


def test_auto_weight_follows_the_lexical_confidence() -> None:
    from medrag.lexical.fusion import AUTO_WEIGHT_RANGE, check_lexical_weight, lexical_confidence, query_weight

    low, high = AUTO_WEIGHT_RANGE
    assert 0 < low < high <= 1
    assert query_weight("auto", 0.0) == pytest.approx(low) and query_weight("auto", 1.0) == pytest.approx(high)
    assert query_weight("auto", 0.25) < query_weight("auto", 0.75)
    assert query_weight("auto", 7.0) == pytest.approx(high) and query_weight("auto", -1.0) == pytest.approx(low)
    assert query_weight(0.3, 0.9) == 0.3 and check_lexical_weight("auto") == "auto" and check_lexical_weight(1) == 1.0
    assert check_lexical_weight("AUTO") == check_lexical_weight(" Auto") == "auto"  # as the CLI takes it
    assert lexical_confidence(3.0, 4.0) == pytest.approx(0.75)
    # nothing matched, or no bound: no confidence (never a division by zero or a NaN weight)
    for best, bound in ((0.0, 0.0), (1.0, 0.0), (float("nan"), 2.0), (1.0, float("inf"))):
        assert lexical_confidence(best, bound) == 0.0


@pytest.mark.parametrize("bad", ["dense", "0.3", "", None, True])
def test_bad_lexical_weight_setting(bad) -> None:
    from medrag.lexical.fusion import check_lexical_weight, query_weight

    with pytest.raises(InvalidInputError, match="'auto'"):
        check_lexical_weight(bad)
    with pytest.raises(InvalidInputError):
        query_weight(bad, 0.5)


def test_first_ids_lead_in_fused_order_and_only_with_the_auto_weight() -> None:
    """An identifier lookup's holders come before every other candidate, each group in fused order."""
    from medrag.lexical.fusion import fused_ranking, lookup_holders

    dense = {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.05}
    lexical = {"c": 2.0, "d": 1.0}
    assert fuse(dense, lexical, lexical_weight=0.3) == ["a", "b", "c", "d"]
    assert fuse(dense, lexical, lexical_weight=0.3, first={"c", "d"}) == ["c", "d", "a", "b"]
    order, scores = fused_ranking(dense, lexical, lexical_weight=0.3, first={"d"})
    assert order == ["d", "a", "b", "c"] and scores == fused_scores(dense, lexical, lexical_weight=0.3)
    assert fuse(dense, lexical, lexical_weight=0.3, first={"zz"}) == ["a", "b", "c", "d"]  # not a candidate
    assert lookup_holders("auto", frozenset({"c"})) == {"c"} and lookup_holders("AUTO", frozenset({"c"})) == {"c"}
    assert lookup_holders(0.3, frozenset({"c"})) is None and lookup_holders("auto", frozenset()) is None
