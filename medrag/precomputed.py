"""Embeddings for vectors you already have: look texts up instead of running a model.

Use it to index vectors computed elsewhere (a GPU job, a cache, another process) into
:class:`medrag.MatryoshkaChroma`, or to feed an evaluation the very vectors it already
encoded. It implements :class:`medrag.encoder.MatryoshkaEncoder` (and LangChain's
``Embeddings``), so the store records the identity (``spec``, ``fingerprint``) of the model that
made the vectors, and a store built from precomputed vectors can later be searched with that
model itself.

Example::

    >>> import numpy as np
    >>> from medrag import PrecomputedEmbeddings
    >>> emb = PrecomputedEmbeddings(documents={"La CRP mesure l'inflammation.": np.array([0.6, 0.8, 0.0])},
    ...                             queries={"Que mesure la CRP ?": np.array([1.0, 0.0, 0.0])},
    ...                             spec="my-model", fingerprint="0123abcd")
    >>> emb.full_dim, emb.encode_queries(["Que mesure la CRP ?"]).shape
    (3, (1, 3))
    >>> emb.encode_documents(["inconnu"])
    Traceback (most recent call last):
    ...
    medrag.errors.InvalidInputError: no precomputed document vector for 1 text(s), e.g. 'inconnu'; pass fallback= an encoder (e.g. the MatryoshkaEmbeddings that made the vectors) to encode unknown texts
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from medrag.embeddings import validate_texts
from medrag.encoder import MatryoshkaEncoder
from medrag.errors import DimensionError, InvalidInputError
from medrag.metadata import default_dims
from medrag.vectors import truncate_embeddings


def _as_float32(value: Any, side: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"a precomputed {side} vector is not a list of numbers: {exc}") from exc


class _Table:
    """Text -> row of one float32 matrix (the vectors as given)."""

    def __init__(self, vectors: Mapping[str, Any], side: str) -> None:
        if not isinstance(vectors, Mapping):
            raise InvalidInputError(f"{side}s= maps each text to its vector (a dict), got {type(vectors).__name__}; "
                                    "for parallel lists use PrecomputedEmbeddings.from_arrays")
        rows = []
        for text, vector in vectors.items():
            row = _as_float32(vector, side)
            if row.ndim == 2 and row.shape[0] == 1:
                row = row[0]  # one text's vector as a (1, d) row, as models return it
            if row.ndim != 1 or row.shape[0] == 0:
                raise DimensionError(f"the precomputed {side} vector of {str(text)[:60]!r} has shape {row.shape}: "
                                     "one text's vector is a 1-D list of numbers")
            rows.append(row)
        sizes = {r.shape[0] for r in rows}
        if len(sizes) > 1:
            raise DimensionError(f"the precomputed {side} vectors have different sizes {sorted(sizes)}")
        self._set(list(vectors), np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32), side)

    @classmethod
    def from_arrays(cls, texts: Sequence[str], matrix: Any, side: str) -> "_Table":
        table = object.__new__(cls)
        if isinstance(texts, (str, bytes)):  # "ab" read as the texts "a" and "b"
            raise InvalidInputError(f"{side}_texts must be a list of texts, not a single string: write [{texts!r}]")
        matrix = _as_float32(matrix, side)  # no copy when it is float32 already
        texts = list(texts)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or (texts and matrix.shape[1] == 0):
            raise DimensionError(f"{len(texts)} {side} texts but vectors of shape {matrix.shape}: one row per text")
        table._set(texts, matrix, side)
        return table

    def _set(self, texts: list[str], matrix: np.ndarray, side: str) -> None:
        if texts:  # a text that is not a str, or empty, could never be looked up (encode_* refuse it)
            try:
                validate_texts(texts)
            except InvalidInputError as exc:
                raise InvalidInputError(f"precomputed {side} texts: {exc}") from exc
        self.index = {text: i for i, text in enumerate(texts)}
        self.matrix = matrix
        if not np.isfinite(self.matrix).all():
            bad = next(t for t, i in self.index.items() if not np.isfinite(self.matrix[i]).all())
            raise InvalidInputError(f"the precomputed {side} vector of {bad[:60]!r} has NaN or infinite values")
        if self.index:  # a zero vector has no direction: stored, it broke every search that reached it
            zero = np.flatnonzero(~self.matrix.any(axis=1))
            if zero.size:
                bad = next(t for t, i in self.index.items() if i == zero[0])
                raise InvalidInputError(f"the precomputed {side} vector of {bad[:60]!r} is all zeros "
                                        f"({zero.size} such vector(s)): a vector with no direction cannot be "
                                        "compared by cosine; encode that text again")

    @property
    def dim(self) -> int | None:
        return int(self.matrix.shape[1]) if self.index else None


class PrecomputedEmbeddings(Embeddings):
    """Vectors looked up by text, as an encoder (:class:`~medrag.encoder.MatryoshkaEncoder`).

    Args:
        documents / queries: text -> full-size vector of that text as a passage / as a query, as
            the model returned it (unit norm); ``encode_*`` return them as given, in float32 (the
            store normalises what it indexes). The two sides are separate because a model prompts
            them differently.
        spec / fingerprint: the model that made the vectors (recorded by the store, which then
            refuses another model). Default: the fallback's; required without one.
        dims: the model's trained sizes (default: the fallback's, else the seed's sizes up to the
            full size); the full size is always among them.
        matryoshka_trained: whether the model was trained with a Matryoshka loss, so that its
            leading coordinates already rank well (default: the fallback's, else False). The
            store's learned coarse fit trains briefly for such a model and longer for another
            (:func:`medrag.coarse.learned_steps`).
        fallback: an encoder (e.g. the :class:`medrag.MatryoshkaEmbeddings` that made the vectors)
            for texts not in the tables; ``None``: an unknown text is an error.
        dimension: the size returned by the LangChain methods ``embed_documents``/``embed_query``
            (default: the full size); ``encode_*`` always return the full size.

    Raises:
        InvalidInputError: no vector and no fallback, no ``spec``/``fingerprint`` without a
            fallback, or a NaN / infinite vector.
        DimensionError: vectors of different sizes, or not of the fallback's full size.
    """

    def __init__(self, documents: Mapping[str, Any] | None = None, queries: Mapping[str, Any] | None = None, *,
                 spec: str | None = None, fingerprint: str | None = None, dims: Sequence[int] | None = None,
                 fallback: MatryoshkaEncoder | None = None, dimension: int | None = None,
                 matryoshka_trained: bool | None = None) -> None:
        self._documents = _Table(documents or {}, "document")
        self._queries = _Table(queries or {}, "query")
        self._finish(spec, fingerprint, dims, fallback, dimension, matryoshka_trained)

    @classmethod
    def from_arrays(cls, document_texts: Sequence[str] = (), document_vectors: Any = None,
                    query_texts: Sequence[str] = (), query_vectors: Any = None, *, spec: str | None = None,
                    fingerprint: str | None = None, dims: Sequence[int] | None = None,
                    fallback: MatryoshkaEncoder | None = None, dimension: int | None = None,
                    matryoshka_trained: bool | None = None) -> "PrecomputedEmbeddings":
        """The same from parallel lists of texts and ``(n, full_dim)`` matrices (row ``i`` is text ``i``'s vector).

        float32 matrices are used in place, not copied (a large cache stays in memory once).

        Args:
            document_texts: the passages whose vectors ``document_vectors`` holds, in its row order.
            document_vectors: an ``(len(document_texts), full_dim)`` array (``None``: no documents).
            query_texts: the queries whose vectors ``query_vectors`` holds, in its row order.
            query_vectors: an ``(len(query_texts), full_dim)`` array (``None``: no queries).
            spec, fingerprint, dims, fallback, dimension, matryoshka_trained: as for the constructor.
        """
        empty = np.zeros((0, 0), dtype=np.float32)
        obj = cls.__new__(cls)
        obj._documents = _Table.from_arrays(document_texts, empty if document_vectors is None else document_vectors,
                                            "document")
        obj._queries = _Table.from_arrays(query_texts, empty if query_vectors is None else query_vectors, "query")
        obj._finish(spec, fingerprint, dims, fallback, dimension, matryoshka_trained)
        return obj

    def _finish(self, spec: str | None, fingerprint: str | None, dims: Sequence[int] | None,
                fallback: MatryoshkaEncoder | None, dimension: int | None, matryoshka_trained: bool | None) -> None:
        if fallback is not None and not all(callable(getattr(fallback, m, None))
                                            for m in ("encode_documents", "encode_queries")):
            raise InvalidInputError("fallback must be an encoder such as MatryoshkaEmbeddings(spec), got "
                                    f"{type(fallback).__name__}")
        sizes = {d for d in (self._documents.dim, self._queries.dim) if d is not None}
        if len(sizes) > 1:
            raise DimensionError(f"the precomputed document and query vectors differ in size: {sorted(sizes)}")
        if fallback is not None:
            sizes.add(int(fallback.full_dim))
        if not sizes:
            raise InvalidInputError("PrecomputedEmbeddings needs vectors (documents= / queries=) or a fallback encoder")
        if len(sizes) > 1:
            raise DimensionError(f"the precomputed vectors and the fallback disagree on the full size: {sorted(sizes)}")
        self.full_dim: int = sizes.pop()
        if fallback is None and (not spec or not fingerprint):
            raise InvalidInputError("pass spec= and fingerprint= naming the model that made the vectors "
                                    "(the store records them), or fallback= that model's encoder")
        self.fallback = fallback
        self.spec: str = spec or fallback.spec
        self._fingerprint = fingerprint
        fallback_dims = getattr(fallback, "dims", None)  # optional member of the encoder protocol
        if dims is not None and not (isinstance(dims, (list, tuple, set, frozenset)) and dims and all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) and 1 <= d <= self.full_dim for d in dims)):
            raise DimensionError(f"dims must be sizes between 1 and the full size {self.full_dim}, got {dims!r}")
        # the full size is always one (as in matryoshka.json): the store reranks at it
        self.dims: list[int] = sorted({self.full_dim, *(int(d) for d in (dims or fallback_dims or
                                                                        default_dims(self.full_dim)))}, reverse=True)
        if matryoshka_trained is not None and not isinstance(matryoshka_trained, (bool, np.bool_)):
            raise InvalidInputError(f"matryoshka_trained must be True, False or None, got {matryoshka_trained!r}")
        self.matryoshka_trained: bool = (bool(matryoshka_trained) if matryoshka_trained is not None
                                         else bool(getattr(fallback, "matryoshka_trained", False)))
        self.dimension = self.full_dim if dimension is None else self._check_dimension(dimension)

    @property
    def fingerprint(self) -> str:
        """The fingerprint given, else the fallback's."""
        return self._fingerprint or self.fallback.fingerprint

    @property
    def legacy_fingerprints(self) -> tuple[str, ...]:
        """The fallback model's legacy fingerprints when no fingerprint was given (else none)."""
        if self._fingerprint or self.fallback is None:
            return ()
        return tuple(getattr(self.fallback, "legacy_fingerprints", ()))

    # ------------------------------------------------------------------ encoder API

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """The given full-size float32 vectors of passages, shape ``(n, full_dim)``."""
        return self._lookup(self._documents, texts, "document")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """The given full-size float32 vectors of queries, shape ``(n, full_dim)``."""
        return self._lookup(self._queries, texts, "query")

    def _lookup(self, table: _Table, texts: Sequence[str], side: str) -> np.ndarray:
        texts = validate_texts(texts)
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        rows = [table.index.get(t) for t in texts]
        known = [i for i, r in enumerate(rows) if r is not None]
        if known:
            out[known] = table.matrix[[rows[i] for i in known]]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            if self.fallback is None:
                raise InvalidInputError(
                    f"no precomputed {side} vector for {len(missing)} text(s), e.g. {texts[missing[0]][:60]!r}; "
                    "pass fallback= an encoder (e.g. the MatryoshkaEmbeddings that made the vectors) to encode "
                    "unknown texts")
            encode = self.fallback.encode_queries if side == "query" else self.fallback.encode_documents
            out[missing] = encode([texts[i] for i in missing])
        return out

    def with_dimension(self, dimension: int) -> "PrecomputedEmbeddings":
        """A copy sharing the same vectors (and fallback), whose LangChain methods return ``dimension``
        coordinates (:class:`~medrag.store.MatryoshkaChroma` takes a full-size one for its
        ``embeddings``, whose query vectors its by-vector searches need)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.dimension = self._check_dimension(dimension)
        return clone

    def _check_dimension(self, dimension: Any) -> int:
        """``dimension`` as an int size in ``1..full_dim``, or a :class:`DimensionError`."""
        if isinstance(dimension, bool) or not isinstance(dimension, numbers.Integral):
            raise DimensionError(f"dimension must be a size (an int; presets such as 'auto' are MatryoshkaEmbeddings' "
                                 f"only), got {dimension!r}")
        if not 1 <= dimension <= self.full_dim:
            raise DimensionError(f"dimension {dimension} is outside 1..{self.full_dim}")
        return int(dimension)

    # ------------------------------------------------------------------ LangChain API

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Passages' vectors at :attr:`dimension` (as given at the full size)."""
        return self._at_dimension(self.encode_documents(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """One query's vector at :attr:`dimension` (as given at the full size)."""
        return self._at_dimension(self.encode_queries([text]))[0].tolist()

    def _at_dimension(self, vecs: np.ndarray) -> np.ndarray:
        return vecs if self.dimension == self.full_dim else truncate_embeddings(vecs, self.dimension)

    def __repr__(self) -> str:
        return (f"PrecomputedEmbeddings(model={self.spec!r}, documents={len(self._documents.index)}, "
                f"queries={len(self._queries.index)}, full_dim={self.full_dim})")
