"""Uncertainty of retrieval metrics: bootstrap confidence intervals and paired significance tests.

A mean NDCG@10 over a few hundred questions moves by a point or two with the sample of
questions, so differences between sizes or models smaller than that are not evidence.

- :func:`bootstrap_ci`: percentile bootstrap interval of a mean over queries (Efron & Tibshirani,
  1993, *An Introduction to the Bootstrap*, ch. 13): resample the queries with replacement,
  recompute the mean, take the 2.5th and 97.5th percentiles of those means.
- :func:`paired_permutation_test`: the randomization (sign-flip) test on per-query differences
  between two systems (Fisher, 1935; recommended for IR evaluation by Smucker, Allan & Carterette,
  2007, "A comparison of statistical significance tests for information retrieval evaluation",
  CIKM). Under the null hypothesis the two systems are exchangeable on each query, so each
  difference is equally likely to have either sign.
- :func:`paired_bootstrap_test`: the paired bootstrap test (Efron & Tibshirani, 1993, §16.4;
  Sakai, 2006, SIGIR): resample the per-query differences, shift them to mean zero (the null),
  and count resampled means at least as far from zero as the observed one.

Both tests are two-sided and return ``(1 + #extreme) / (1 + n_resamples)``, which is never 0
and is a valid p-value for a Monte Carlo test (Phipson & Smyth, 2010).

Example::

    >>> import numpy as np
    >>> from evaluation.stats import bootstrap_ci, paired_permutation_test
    >>> a = np.array([1.0, 0.5, 0.0, 1.0, 0.63]); b = np.array([0.5, 0.5, 0.0, 0.33, 0.63])
    >>> ci = bootstrap_ci(a, seed=0)
    >>> ci.low <= ci.mean <= ci.high
    True
    >>> paired_permutation_test(a, b, seed=0).p_value > 0.05     # five queries prove little
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medrag.errors import InvalidInputError

#: Default number of resamples: enough for stable 95% percentiles and p-values to ~0.01.
N_BOOTSTRAP = 1000
#: Fewer bootstrap resamples are refused (a percentile interval of 1 resample excluded the mean: a
#: "95% CI" [0.910, 0.910] around 0.850), and fewer than ``ROUGH_BOOTSTRAP`` warned about by the CLI.
MIN_BOOTSTRAP = 10
ROUGH_BOOTSTRAP = 100
N_PERMUTATIONS = 10000
#: Coverage of the confidence intervals.
CONFIDENCE = 0.95
#: The paired tests :func:`paired_test` knows, the default first.
PAIRED_TESTS = ("permutation", "bootstrap")


@dataclass(frozen=True)
class ConfidenceInterval:
    """A mean and its confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired test of ``mean(a) - mean(b)``."""

    mean_diff: float
    p_value: float
    method: str
    n_resamples: int

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_means(values: np.ndarray, n_resamples: int = N_BOOTSTRAP, seed: int | None = 0,
                    chunk: int = 256) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of the last axis of ``values``.

    ``values`` may be ``(n,)`` or ``(m, n)``: several metrics of the same ``n`` queries share the
    same resampled queries, so their intervals are consistent. Returns ``(n_resamples,)`` or
    ``(m, n_resamples)``.
    """
    arr = np.atleast_2d(_finite(values, "values"))
    n = arr.shape[-1]
    if n == 0:
        raise InvalidInputError("cannot bootstrap an empty sample")
    _check_resamples(n_resamples)
    rng = seeded_rng(seed)
    out = np.empty((arr.shape[0], n_resamples))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[:, start:stop] = arr[:, idx].mean(axis=-1)
    return out if np.ndim(values) > 1 else out[0]


def bootstrap_ci(values: np.ndarray, n_resamples: int = N_BOOTSTRAP, confidence: float = CONFIDENCE,
                 seed: int | None = 0) -> ConfidenceInterval:
    """Percentile bootstrap confidence interval of the mean of per-query ``values``.

    Args:
        values: one metric value per query.
        n_resamples: number of bootstrap resamples.
        confidence: the interval's coverage (0.95 for a 95% interval).
        seed: random seed (``None``: fresh randomness); fixed by default so reports are reproducible.
    """
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    arr = _finite(values, "values")
    return percentile_interval(float(arr.mean()), bootstrap_means(arr, n_resamples, seed), confidence)


def percentile_interval(mean: float, resampled_means: np.ndarray, confidence: float = CONFIDENCE) -> ConfidenceInterval:
    """The percentile interval of ``resampled_means`` around ``mean``, widened to hold ``mean``: the
    means of resamples are summed in another order than the sample's, so a metric of the same value
    on every query (``precision@10`` = 0.1) gave an interval 1e-17 above its mean.

    Example::

        >>> percentile_interval(0.1, np.full(100, 0.1000000000000001)).low <= 0.1
        True
    """
    alpha = (1 - confidence) / 2
    low, high = np.quantile(resampled_means, [alpha, 1 - alpha])
    return ConfidenceInterval(mean, min(float(low), mean), max(float(high), mean), confidence)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, n_resamples: int = N_PERMUTATIONS,
                            seed: int | None = 0, chunk: int = 1000) -> PairedTest:
    """Two-sided randomization (sign-flip) test that systems ``a`` and ``b`` have the same mean.

    Args:
        a, b: the same metric for the same queries, in the same order.
        n_resamples: random sign assignments drawn.
        seed: random seed.
    """
    d = _differences(a, b)
    _check_resamples(n_resamples)
    rng = seeded_rng(seed)
    observed = d.mean()
    if not np.any(d):
        return PairedTest(0.0, 1.0, "permutation", n_resamples)
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = 0
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        signs = rng.integers(0, 2, size=(size, d.size)) * 2 - 1
        extreme += int((np.abs(signs @ d / d.size) >= abs(observed) - tol).sum())
    return PairedTest(float(observed), (extreme + 1) / (n_resamples + 1), "permutation", n_resamples)


def paired_bootstrap_test(a: np.ndarray, b: np.ndarray, n_resamples: int = N_BOOTSTRAP * 10,
                          seed: int | None = 0) -> PairedTest:
    """Two-sided paired bootstrap test of ``mean(a) == mean(b)`` (shift method, see module doc)."""
    d = _differences(a, b)
    _check_resamples(n_resamples)
    observed = d.mean()
    if not np.any(d):
        return PairedTest(0.0, 1.0, "bootstrap", n_resamples)
    means = bootstrap_means(d, n_resamples, seed)
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int((np.abs(means - observed) >= abs(observed) - tol).sum())
    return PairedTest(float(observed), (extreme + 1) / (n_resamples + 1), "bootstrap", n_resamples)


def paired_test(a: np.ndarray, b: np.ndarray, method: str = PAIRED_TESTS[0], n_resamples: int | None = None,
                seed: int | None = 0) -> PairedTest:
    """:func:`paired_permutation_test` or :func:`paired_bootstrap_test` by name."""
    if method == "permutation":
        return paired_permutation_test(a, b, n_resamples or N_PERMUTATIONS, seed)
    if method == "bootstrap":
        return paired_bootstrap_test(a, b, n_resamples or N_BOOTSTRAP * 10, seed)
    raise InvalidInputError(f"unknown paired test {method!r}: use 'permutation' or 'bootstrap'")


def _finite(values: Any, what: str) -> np.ndarray:
    """``values`` as float64, or an :class:`InvalidInputError` for NaN / infinite ones (one NaN made a
    paired test report mean_diff nan with p ~ 1e-4, "significant", and an interval of NaN)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be numbers: {exc}") from None
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} hold {int((~np.isfinite(arr)).sum())} NaN or infinite value(s): a "
                                "per-query metric is a number; drop or fix those queries")
    return arr


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (Holm, "A simple sequentially rejective
    multiple test procedure", Scand. J. Statistics 1979), in the given order. A report tests one
    comparison at every size (five or six tests): with raw p-values, one "p < 0.05" among them is
    likely by chance alone; an adjusted p below 0.05 keeps that chance for the whole family at 5%.
    Holm controls it as Bonferroni does, without assuming the tests independent, and rejects more.

    >>> [round(p, 4) for p in holm_adjusted([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    >>> holm_adjusted([])
    []
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def format_p_value(p: float) -> str:
    """A p-value as the reports print it: three decimals, ``<0.001`` below (a permutation test's
    smallest p is about 1 / its resamples, not 0).

    >>> format_p_value(0.04321), format_p_value(0.0)
    ('0.043', '<0.001')
    """
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def seeded_rng(seed: Any) -> np.random.Generator:
    """numpy's generator for ``seed``, an int >= 0 or None; an :class:`InvalidInputError` otherwise
    (numpy's own ``ValueError: expected non-negative integer`` came after all the encoding).

    >>> bool(seeded_rng(0).integers(10) == seeded_rng(0).integers(10))
    True
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InvalidInputError(f"seed must be an int >= 0 or None, got {seed!r}")
    return np.random.default_rng(seed)


def _check_resamples(n_resamples: Any) -> None:
    """Resample counts are ints >= 1 (-5 gave p = -0.25, 2.5 a bare TypeError)."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise InvalidInputError(f"n_resamples must be an int >= 1, got {n_resamples!r}")


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _finite(a, "a"), _finite(b, "b")
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidInputError(f"paired samples must be 1-d and of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise InvalidInputError("cannot test empty samples")
    return a - b
