"""How the store packs each record's full-size vector into a Chroma metadata string.

Public so that tools reading or writing the same format (the store benchmark's layouts and
vector caches) use this code rather than a copy of it.

The full vector travels with its record (same upsert, same row), so every client that can
read the record (another process, a restart, a Chroma server) reads its full vector too,
and the stage-1 query returns the candidates' full vectors in the same call.

Encodings (chosen by measurement, see ``docs/store.md``):

``int8``
    symmetric per-row int8: ``round(v / max|v| * 127)`` plus the float32 scale, base64.
    ``full_dim + 4`` bytes per record (388 B for e5-small, 1028 B for e5-large). Default.
``float16``
    IEEE half precision, base64: ``2 * full_dim`` bytes.
``float32``
    exact, base64: ``4 * full_dim`` bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from medrag.errors import InvalidInputError

ENCODINGS = ("int8", "float16", "float32")


def encoded_size(encoding: str, dim: int) -> int:
    """Bytes (before base64) that one vector of size ``dim`` takes in ``encoding``."""
    return {"int8": dim + 4, "float16": 2 * dim, "float32": 4 * dim}[encoding]


def quantize_int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: ``(q, scale)`` with ``q = round(v / scale)`` in [-127, 127] and
    ``scale = max|v| / 127`` (1 for a zero row); ``q * scale[:, None]`` approximates ``vectors``.

    Example::

        >>> import numpy as np
        >>> q, scale = quantize_int8(np.array([[0.5, -1.0, 0.25]]))
        >>> q.tolist(), scale.tolist()
        ([[64, -127, 32]], [0.007874015718698502])
    """
    arr = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(arr).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(arr / scale[:, None]), -127, 127).astype(np.int8), scale


def pack_rows(vectors: np.ndarray, encoding: str) -> list[bytes]:
    """Pack each row of a ``(n, dim)`` float array into raw bytes (``encoded_size`` each); the
    store's SQLite copy of the vectors holds these, the records their base64 form."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if encoding == "int8":
        q, scale = quantize_int8(arr)
        raw = np.concatenate([q.view(np.uint8), scale[:, None].view(np.uint8)], axis=1)
    elif encoding == "float16":
        raw = arr.astype(np.float16).view(np.uint8)
    elif encoding == "float32":
        raw = arr.view(np.uint8)
    else:
        raise InvalidInputError(f"unknown full-vector encoding {encoding!r}; use one of {ENCODINGS}")
    return [row.tobytes() for row in raw]


def encode_rows(vectors: np.ndarray, encoding: str) -> list[str]:
    """Pack each row of a ``(n, dim)`` float array into an ASCII (base64) string."""
    return [base64.b64encode(row).decode("ascii") for row in pack_rows(vectors, encoding)]


def unpack_rows(blobs: Sequence[bytes], encoding: str, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: a ``(n, dim)`` float32 array.

    Raises:
        InvalidInputError: a blob is not a vector of this size and encoding.
    """
    size = encoded_size(encoding, dim)
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    if any(len(b) != size for b in blobs):
        raise InvalidInputError(f"stored full vectors are not {encoding} vectors of size {dim}")
    buf = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), size)
    if encoding == "int8":
        q = buf[:, :dim].view(np.int8).astype(np.float32)
        scale = buf[:, dim:].copy().view(np.float32)
        return q * scale
    if encoding == "float16":
        return buf.copy().view(np.float16).astype(np.float32)
    return buf.copy().view(np.float32)


def decode_rows(strings: Sequence[str], encoding: str, dim: int) -> np.ndarray:
    """Inverse of :func:`encode_rows`: a ``(n, dim)`` float32 array.

    Raises:
        InvalidInputError: a string is not a base64 vector of this size and encoding.
    """
    try:
        blobs = [base64.b64decode(s, validate=True) for s in strings]
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"stored full vectors are not base64 {encoding} vectors: {exc}") from None
    return unpack_rows(blobs, encoding, dim)
