"""Choosing a Matryoshka size from measured scores: the smallest size that stays within a tolerance.

Both ``MatryoshkaEmbeddings(dimension="auto")`` and the recommended tiers of ``medrag evaluate``
(:mod:`evaluation.recommend`) use :func:`smallest_size_within`, so one rule decides "how small can I
go" everywhere.

**The reference is the best score among the measured sizes** (normally the full size's). A size
"within 1%" is then within 1% of every measured size, the full one included; when a smaller size
happens to outscore the full one (noise on a small evaluation set, or a fine-tune that helped the
small sizes most), the bar rises with it instead of letting an even smaller size through on the
full size's lower score. This is the seed report's definition of its tiers ("within x% of the
best"), and it is stricter than measuring against the full size, never looser.

Example::

    >>> from medrag.sizes import smallest_size_within
    >>> scores = {384: 0.400, 256: 0.399, 128: 0.390, 64: 0.370}
    >>> smallest_size_within(scores, 0.01), smallest_size_within(scores, 0.03), smallest_size_within(scores, 0.0)
    (256, 128, 384)
    >>> smallest_size_within({384: 0.400, 128: 0.410, 64: 0.397}, 0.03)   # 64 is within 3% of 0.400, not of 0.410
    128
"""

from __future__ import annotations

from collections.abc import Mapping

from medrag.errors import InvalidInputError

#: Slack on the comparison, so that a size equal to the floor up to float rounding is kept.
EPSILON = 1e-12


def smallest_size_within(scores: Mapping[int, float], tolerance: float) -> int:
    """The smallest size whose score is at least ``(1 - tolerance)`` times the best score.

    Args:
        scores: size -> metric value (higher is better), e.g. NDCG@10 per size.
        tolerance: the largest relative drop from the best score allowed, in ``[0, 1)``
            (0.01: keep at least 99% of the best). A negative best score (a metric below zero)
            gets the same relative margin below it.

    Raises:
        InvalidInputError: no scores, or a tolerance outside ``[0, 1)``.
    """
    if not scores:
        raise InvalidInputError("no scores to choose a size from")
    if not 0 <= tolerance < 1:
        raise InvalidInputError(f"tolerance must be in [0, 1), got {tolerance}")
    items = {int(d): float(s) for d, s in scores.items()}
    best = max(items.values())
    floor = best * (1 - tolerance) if best >= 0 else best * (1 + tolerance)
    return min(d for d, s in items.items() if s >= floor - EPSILON)
