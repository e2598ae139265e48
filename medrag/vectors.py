"""Matryoshka vector arithmetic: truncating full-size embeddings to a smaller size.

Kept free of LangChain and torch so that training and evaluation code can use it anywhere.

Example::

    >>> import numpy as np
    >>> from medrag.vectors import truncate_embeddings
    >>> truncate_embeddings(np.array([[3.0, 4.0, 12.0]]), 2)
    array([[0.6, 0.8]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from medrag.errors import DimensionError, InvalidInputError


def truncate_embeddings(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Keep the first ``dim`` coordinates of each row and re-normalise to unit length.

    Args:
        vectors: a ``(n, full)`` or ``(full,)`` float array.
        dim: the size to keep, ``1 <= dim <= full``.

    Returns:
        A new float32 array of shape ``(n, dim)`` (or ``(dim,)``); zero rows stay zero.

    Raises:
        InvalidInputError: ``vectors`` not a 1-d or 2-d array of numbers, or holding NaN or
            infinite values; ``dim`` not an int.
        DimensionError: ``dim`` outside ``1..full``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise InvalidInputError(f"dim must be an int, got {dim!r}")
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:  # strings, ragged rows, None inside
        raise InvalidInputError(f"vectors must be a (n, dim) or (dim,) array of numbers: {exc}") from None
    if arr.ndim not in (1, 2):
        raise InvalidInputError(f"vectors must be a (n, dim) or (dim,) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("vectors hold NaN or infinite values")
    if not 1 <= dim <= arr.shape[-1]:
        raise DimensionError(f"cannot truncate vectors of size {arr.shape[-1]} to {dim}")
    out = arr[..., :dim].copy()
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
