"""Bootstrap confidence intervals and paired tests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evaluation.stats import (bootstrap_ci, bootstrap_means, paired_bootstrap_test, paired_permutation_test,
                              paired_test)


def test_bootstrap_ci_contains_the_mean_and_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.random(300)
    ci = bootstrap_ci(x, n_resamples=4000, seed=0)
    assert ci.low < ci.mean < ci.high
    assert ci.mean == pytest.approx(x.mean())
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert ci.low == pytest.approx(ref.confidence_interval.low, abs=0.006)
    assert ci.high == pytest.approx(ref.confidence_interval.high, abs=0.006)
    # the normal approximation of the standard error of a mean agrees too
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert (ci.high - ci.low) == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_bootstrap_ci_of_a_constant_metric_holds_its_mean():
    """precision@10 = 0.1 on every query: the resamples' means, summed in another order, were
    0.1 and the mean 0.09999999999999999, so the "interval" lay above its mean."""
    from evaluation.stats import percentile_interval

    stacked = np.vstack([np.linspace(0, 1, 8), np.full(8, 0.1)])  # two metrics sharing resamples, as the evaluator
    ci = percentile_interval(float(stacked[1].mean()), bootstrap_means(stacked, 200, 0)[1])
    assert ci.low <= ci.mean <= ci.high
    assert bootstrap_ci(np.full(8, 0.1), n_resamples=200).low <= 0.1


def test_bootstrap_ci_narrows_with_more_queries_and_is_reproducible():
    rng = np.random.default_rng(2)
    small, large = rng.random(50), rng.random(2000)
    w_small = bootstrap_ci(small).high - bootstrap_ci(small).low
    w_large = bootstrap_ci(large).high - bootstrap_ci(large).low
    assert w_large < w_small / 3
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)
    assert bootstrap_ci(np.full(10, 0.25)).low == pytest.approx(0.25)


def test_bootstrap_means_shares_resamples_across_rows():
    x = np.random.default_rng(3).random(40)
    both = bootstrap_means(np.stack([x, 2 * x]), n_resamples=100, seed=0)
    np.testing.assert_allclose(both[1], 2 * both[0])
    np.testing.assert_allclose(both[0], bootstrap_means(x, n_resamples=100, seed=0))


def exact_sign_flip_p(d):
    obs = abs(d.mean())
    flips = [abs((np.array(s) * d).mean()) >= obs - 1e-12 for s in itertools.product([-1, 1], repeat=d.size)]
    return float(np.mean(flips))


def test_permutation_test_matches_exact_enumeration():
    a = np.array([0.9, 0.8, 1.0, 0.7, 0.6, 0.9, 0.5, 1.0, 0.8, 0.4, 0.7, 0.9])
    b = np.array([0.5, 0.8, 0.6, 0.7, 0.7, 0.3, 0.5, 0.9, 0.2, 0.4, 0.6, 0.5])
    exact = exact_sign_flip_p(a - b)
    res = paired_permutation_test(a, b, n_resamples=20000, seed=0)
    assert res.mean_diff == pytest.approx((a - b).mean())
    assert res.p_value == pytest.approx(exact, abs=0.01)
    assert 0.001 < exact < 0.05  # the case is a meaningful one


def test_paired_tests_identical_and_clearly_different():
    rng = np.random.default_rng(4)
    a = rng.random(400)
    assert paired_permutation_test(a, a).p_value == 1.0
    assert paired_bootstrap_test(a, a).p_value == 1.0
    better = np.clip(a + 0.1, 0, 1)
    for method in ("permutation", "bootstrap"):
        res = paired_test(better, a, method=method, n_resamples=2000)
        assert res.p_value == pytest.approx(1 / 2001)  # nothing as extreme: the smallest possible p
        assert res.mean_diff > 0


def test_paired_tests_agree_on_noise():
    rng = np.random.default_rng(5)
    a, b = rng.random(300), rng.random(300)
    p_perm = paired_permutation_test(a, b).p_value
    p_boot = paired_bootstrap_test(a, b).p_value
    assert p_perm > 0.05 and abs(p_perm - p_boot) < 0.1


def test_paired_test_input_errors():
    with pytest.raises(ValueError):
        paired_permutation_test(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        paired_test(np.ones(3), np.ones(3), method="ttest")
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), confidence=1.5)


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


@pytest.mark.parametrize("call, match", [
    (lambda: paired_permutation_test(np.array([1.0, np.nan, 0.5]), np.array([0.5, 0.5, 0.5])), "NaN"),
    (lambda: paired_bootstrap_test(np.array([1.0, 0.2, 0.5]), np.array([0.5, np.inf, 0.5])), "NaN or infinite"),
    (lambda: bootstrap_ci(np.array([1.0, np.nan])), "NaN"),
    (lambda: paired_permutation_test(np.array([1.0, 0.0]), np.array([0.0, 0.0]), n_resamples=-5), "n_resamples"),
    (lambda: paired_permutation_test(np.array([1.0, 0.0]), np.array([0.0, 0.0]), n_resamples=0), "n_resamples"),
    (lambda: bootstrap_ci(np.array([1.0, 0.0]), n_resamples=2.5), "n_resamples"),
    # numpy's bare ValueError (user tryout: `medrag evaluate --seed -1` after all the encoding)
    (lambda: bootstrap_means(np.array([1.0, 0.0]), seed=-1), "seed must be an int >= 0"),
    (lambda: paired_permutation_test(np.array([0.0, 0.0]), np.array([0.0, 0.0]), seed=-1), "seed must be"),
    (lambda: paired_bootstrap_test(np.array([1.0, 0.0]), np.array([0.0, 0.0]), seed=1.5), "seed must be"),
])
def test_bad_samples_and_resample_counts_are_refused(call, match) -> None:
    """One NaN gave mean_diff nan with p ~ 1e-4 ("significant") and a NaN interval; n_resamples=-5 gave
    p = -0.25, 0 gave p = 1, 2.5 a bare TypeError."""
    from medrag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=match):
        call()
