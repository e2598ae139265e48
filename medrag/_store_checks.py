"""The checks of what callers pass to the store, made before anything is written.

Every ``MatryoshkaChroma`` call checks its whole input first (texts, ids, metadata keys and values
as Chroma will check them, search sizes, retriever arguments, HNSW settings) and raises an
:class:`~medrag.errors.InvalidInputError` that names the entry, call-relative: a rejected call
writes nothing (a NaN inside a list value once made an embedded collection unreadable, and a bad
value at index 250 of a 300-text call left 200 records written). ``medrag index`` and
``medrag search`` use the same checks on their flags before the model loads.

    >>> check_search_sizes(4, 100)
    (4, 100)
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np
from langchain_core.documents import Document

from medrag._store_contract import _HNSW_SETTINGS, FULL_KEY
from medrag.embeddings import check_utf8 as _check_utf8
from medrag.errors import DimensionError, InvalidArgumentError, InvalidInputError, MedragError
from medrag.lexical.fusion import FUSION_METHODS, check_lexical_weight
from medrag.retriever import MatryoshkaRetriever

#: The most results one Chroma query is asked for (its Rust binding takes an unsigned 32-bit count).
_MAX_RESULTS = 2**32 - 1
#: Chroma's collection-name rule (checked here so a bad name fails with a clear message).
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
_INT64 = (-(2**63), 2**63 - 1)


def _entry_names(i: int, ids: Any, metadatas: Any) -> str:
    """What names entry ``i`` of an ``add_texts`` call besides its index: its id and the ``source`` /
    ``page`` of its metadata (a LangChain loader's), when given (``""`` otherwise)."""
    names = []
    if isinstance(ids, (list, tuple)) and i < len(ids) and isinstance(ids[i], str):
        names.append(f"id {ids[i]!r}")
    md = metadatas[i] if isinstance(metadatas, (list, tuple)) and i < len(metadatas) else None
    if isinstance(md, dict):
        names += [f"{key} {md[key]!r}" for key in ("source", "page") if isinstance(md.get(key), (str, int))]
    return f" ({', '.join(names)})" if names else ""


def _plain(value: Any) -> Any:
    """A metadata value or filter as Chroma takes and gives it back: numpy scalars as Python ones;
    tuples, numpy arrays and pandas Series or Index objects (``{"$in": df["year"].unique()}``) as
    lists; dicts (filters) converted value by value."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:  # np.float32(0.965) as 0.965, the value shown,
        # not 0.9649999737739564, which an equality filter on 0.965 missed (user tryout)
        return float(str(value)) if np.isfinite(value) else value.item()
    if isinstance(value, np.generic):
        return value.item()
    if not isinstance(value, (str, bytes)) and callable(getattr(value, "tolist", None)):  # arrays, Series, Index
        return _plain(value.tolist())
    return value


def _vector_rows(rows: Any, dim: int) -> np.ndarray:
    """The embeddings' vectors as a float32 array; a row of another length (a flaky embedding API) or a
    value that is not a number is a :class:`DimensionError` / :class:`MedragError` naming the text."""
    if not isinstance(rows, np.ndarray):
        try:
            rows = list(rows)
        except TypeError as exc:
            raise MedragError(f"the embeddings returned {type(rows).__name__}, not a list of vectors") from exc
        for i, row in enumerate(rows):
            if not hasattr(row, "__len__"):
                raise MedragError(f"the embeddings returned {type(row).__name__} for text {i}, not a vector")
            size = len(row)
            if size != dim:
                raise DimensionError(f"the embeddings returned a vector of {size} values for text {i} "
                                     f"(expected {dim}); check the embedding model or API for that text")
    return _numbers(rows, "the embeddings returned")


def _numbers(values: Any, what: str) -> np.ndarray:
    """``values`` as a float32 array: real numbers of any type (numpy, bool, Decimal, torch, object
    arrays of floats); not text (numeric strings such as ``"0.12"`` were stored as numbers: user
    tryout), None, complex numbers or dates.

    Raises:
        MedragError: ``what`` followed by the first value that is not a number.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MedragError(f"{what} values that are not numbers ({exc})") from exc
    if array.dtype.kind == "O":
        for value in array.ravel():
            if value is None or isinstance(value, (str, bytes, complex)):
                raise MedragError(f"{what} a value that is not a number: {value!r}")
    elif array.dtype.kind not in "fiub":
        first = array.ravel()[0].item() if array.size else None
        raise MedragError(f"{what} values that are not numbers ({array.dtype.name}, e.g. {first!r})")
    try:
        return array.astype(np.float32, copy=False)
    except (TypeError, ValueError, OverflowError) as exc:  # 10**400 in an object array: a raw OverflowError
        raise MedragError(f"{what} values that are not numbers ({exc})") from exc


def check_search_sizes(k: Any, candidates: Any, *, k_name: str = "k",
                       candidates_name: str = "candidates") -> tuple[int, int | None]:
    """Check a search's ``k`` and stage-1 ``candidates`` (None: the store's); return them as ints.

    ``k`` must be >= 1, ``candidates`` (when given) >= ``k``, and neither above what one Chroma
    query can return. The names in the messages are the caller's: ``medrag search`` passes
    ``"--k"`` and ``"--candidates"`` to check its flags before the model loads.

        >>> check_search_sizes(4, None)
        (4, None)
        >>> check_search_sizes(10, 5, k_name="--k", candidates_name="--candidates")
        Traceback (most recent call last):
        ...
        medrag.errors.InvalidInputError: --candidates (5) must be >= --k (10): stage 1 cannot return fewer than k
    """
    k = _check_int(k_name, k)
    if k < 1:
        raise InvalidInputError(f"{k_name} must be >= 1, got {k}")
    if candidates is not None:
        candidates = _check_int(candidates_name, candidates)
        if candidates < k:
            raise InvalidInputError(f"{candidates_name} ({candidates}) must be >= {k_name} ({k}): stage 1 cannot "
                                    "return fewer than k")
    if max(k, candidates or 0) > _MAX_RESULTS:
        raise InvalidInputError(f"{k_name} / {candidates_name} must be at most {_MAX_RESULTS}: "
                                f"{max(k, candidates or 0)} is more than a Chroma query can return")
    return k, candidates


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an int, got {value!r}")
    return int(value)


def _check_collection_name(name: Any, what: str = "collection name") -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid {what} {name!r}: Chroma needs 3-512 characters from [a-zA-Z0-9._-], starting and "
            "ending with a letter or digit, without '..'"
        )


_LEGACY_HNSW_PREFIX = "hnsw:"


#: Chroma's legacy collection-metadata HNSW keys (``collection_metadata={"hnsw:space": "cosine"}``, the
#: langchain-chroma idiom) and the ``hnsw`` configuration settings they stand for
_LEGACY_HNSW_KEYS = {
    "hnsw:space": "space", "hnsw:construction_ef": "ef_construction", "hnsw:M": "max_neighbors",
    "hnsw:search_ef": "ef_search", "hnsw:num_threads": "num_threads", "hnsw:batch_size": "batch_size",
    "hnsw:sync_threshold": "sync_threshold", "hnsw:resize_factor": "resize_factor",
}


def _legacy_hnsw_metadata(metadata: dict[str, Any] | None, hnsw: dict[str, Any] | None
                          ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``collection_metadata``'s ``hnsw:*`` keys moved into ``hnsw`` (checked there like any setting:
    a space other than cosine is refused); stored as metadata they broke every later write.

    >>> _legacy_hnsw_metadata({"hnsw:space": "cosine", "hnsw:search_ef": 800, "team": "x"}, None)
    ({'team': 'x'}, {'space': 'cosine', 'ef_search': 800})
    """
    if not metadata or not any(isinstance(k, str) and k.startswith(_LEGACY_HNSW_PREFIX) for k in metadata):
        return metadata, hnsw
    if hnsw is not None and not isinstance(hnsw, dict):
        return metadata, hnsw  # _check_hnsw names the error
    unknown = [k for k in metadata if isinstance(k, str) and k.startswith(_LEGACY_HNSW_PREFIX)
               and k not in _LEGACY_HNSW_KEYS]
    if unknown:
        raise InvalidInputError(f"unknown collection_metadata key(s) {unknown}: Chroma's HNSW keys are "
                                f"{list(_LEGACY_HNSW_KEYS)}; or pass hnsw={{...}} (e.g. {{'ef_search': 800}})")
    moved = {_LEGACY_HNSW_KEYS[k]: v for k, v in metadata.items() if k in _LEGACY_HNSW_KEYS}
    both = [k for k, v in moved.items() if k in (hnsw or {}) and hnsw[k] != v]
    if both:
        raise InvalidInputError(f"hnsw {both} set twice, differently: in hnsw= and as 'hnsw:' keys of "
                                "collection_metadata; keep one")
    rest = {k: v for k, v in metadata.items() if k not in _LEGACY_HNSW_KEYS}
    return rest, {**moved, **(hnsw or {})}


def _check_hnsw(hnsw: Any) -> dict[str, Any] | None:
    """``hnsw`` as given (a dict or None); a space other than cosine is refused, not overridden."""
    if hnsw is None:
        return None
    if not isinstance(hnsw, dict) or not all(isinstance(k, str) for k in hnsw):
        raise InvalidInputError(f"hnsw must be a dict of Chroma HNSW settings (e.g. {{'ef_search': 800}}), got {hnsw!r}")
    unknown = [k for k in hnsw if k not in _HNSW_SETTINGS]
    if unknown:
        raise InvalidInputError(f"unknown hnsw setting(s) {unknown}: Chroma's are {list(_HNSW_SETTINGS)}")
    if hnsw.get("space", "cosine") != "cosine":
        raise InvalidInputError(f"hnsw space {hnsw['space']!r}: the store always uses 'cosine' (its scores and "
                                "reranking assume normalised vectors); leave 'space' out")
    out: dict[str, Any] = {}
    for key, value in hnsw.items():
        if key == "resize_factor":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
                raise InvalidInputError(f"hnsw resize_factor must be a number > 0, got {value!r}")
            out[key] = float(value)
        elif key != "space":
            out[key] = _check_int(f"hnsw {key}", value)  # None included: leave a setting out for its default
            if out[key] < 1:
                raise InvalidInputError(f"hnsw {key} must be >= 1, got {value!r}")
        else:
            out[key] = value
    return out


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, np.integer)):
        if not _INT64[0] <= int(value) <= _INT64[1]:
            raise InvalidInputError(f"{where} is an int outside the 64-bit range Chroma stores: {value}")
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise InvalidInputError(f"{where} is {value}: Chroma cannot store NaN or infinite floats"
                                    + (" (a missing value: pass None, or leave the key out)" if math.isnan(value) else ""))
    elif isinstance(value, str):
        _check_utf8(value, where)
    else:
        raise InvalidInputError(f"{where} is a {type(value).__name__}; Chroma stores str, int, float, bool, None "
                                f"or a non-empty list of one of the first four{_value_advice(value)}")


def _value_advice(value: Any) -> str:
    """What to store instead of ``value``, for the kinds pandas and databases hand over (user tryout:
    a date, pandas' NA and a numpy array were refused with no way out)."""
    import datetime

    kind = type(value).__name__
    if kind in ("NAType", "NaTType"):  # before the dates: pandas' NaT is a datetime (review)
        return "; for a missing value pass None, or leave the key out"
    if isinstance(value, (datetime.date, datetime.time, np.datetime64)) or kind == "Timestamp":
        return ("; store a date as an ISO string ('2024-03-01', value.isoformat()) or, to filter on a range "
                "with $gte/$lt, as a number such as 20240301")
    if hasattr(value, "tolist"):  # numpy arrays, pandas arrays
        return "; pass value.tolist() (a list of str, int, float or bool)"
    return ""


def check_metadata_key(key: str, where: str) -> None:
    """Refuse a metadata key no record may have: one starting with ``_medrag`` (the store's own
    keys) or with ``$``, ``#`` or ``chroma:`` (Chroma's operators and its own keys). ``medrag
    index`` checks its ``--metadata-fields`` with it before the model loads.

    Raises:
        InvalidInputError: ``where``, then why.
    """
    if key.startswith("_medrag"):
        raise InvalidInputError(f"{where}: keys starting with _medrag are the store's (reserved)")
    if key.startswith(("$", "#", "chroma:")):
        raise InvalidInputError(f"{where}: Chroma refuses metadata keys starting with '$', '#' or 'chroma:'")


def _check_metadata(md: Any, index: int, id_: str | None = None) -> dict[str, Any]:
    """One record's metadata, checked as Chroma will check it (and for what breaks Chroma).

    Non-finite floats are refused anywhere: a NaN inside a list value made the embedded
    collection unreadable ("Error in compaction") even after reopening.
    """
    from chromadb.api.types import validate_metadata

    where = f"metadata at index {index}" + (f" (id {id_!r})" if id_ else "")
    if md is None:
        return {}
    if not isinstance(md, dict):
        raise InvalidInputError(f"{where} is {type(md).__name__}, not a dict")
    if any(isinstance(v, np.generic) or (isinstance(v, (list, tuple)) and any(isinstance(x, np.generic) for x in v))
           for v in md.values()):
        # numpy scalars (a pandas row's values): np.bool_ was refused as "a bool", np.int64 by Chroma
        md = {k: _plain(v) for k, v in md.items()}
    for key, value in md.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"{where} has key {key!r}: keys must be non-empty strings")
        _check_utf8(key, f"{where}, key {key!r}")
        check_metadata_key(key, f"{where} has key {key!r}")
        if isinstance(value, (list, tuple)):
            if not value:
                raise InvalidInputError(f"{where}, key {key!r}: an empty list (Chroma needs at least one value)")
            kinds = {bool if isinstance(v, bool) else str if isinstance(v, str) else
                     int if isinstance(v, (int, np.integer)) else float if isinstance(v, (float, np.floating))
                     else type(v) for v in value}
            if len(kinds) != 1 or not kinds <= {bool, str, int, float}:
                raise InvalidInputError(
                    f"{where}, key {key!r}: a list must hold values of one type among str, int, float, bool; "
                    f"got {sorted(k.__name__ for k in kinds)}"
                )
            for j, v in enumerate(value):
                _check_value(v, f"{where}, key {key!r}, item {j}")
        else:
            _check_value(value, f"{where}, key {key!r}")
    try:
        validate_metadata({**md, FULL_KEY: ""})
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{where} is rejected by Chroma: {exc}") from exc
    return md


def _with_ids(ids: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``ids`` when given (as langchain-core's ``from_documents`` passes them on)."""
    return kwargs if ids is None else {**kwargs, "ids": ids}


def _check_documents(documents: Any) -> list[Document]:
    """``documents`` as a list of LangChain Documents, or an :class:`InvalidInputError` naming the first
    entry that is not one (LangChain's base class raised a bare AttributeError on ``doc.page_content``)."""
    if isinstance(documents, (str, bytes, dict, Document)) or documents is None or not hasattr(documents, "__iter__"):
        raise InvalidInputError("documents must be a list of langchain Document objects, not "
                                f"{'a single ' if documents is not None else ''}{type(documents).__name__}")
    documents = list(documents)
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidInputError(f"document at index {i} is a {type(doc).__name__}, not a langchain Document: "
                                    "write Document(page_content=...)")
    return documents


def _check_ids(ids: Any) -> list[str]:
    """A list of non-empty string ids; a bare string is refused (it would iterate its characters)."""
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(f"ids must be a list of ids, not a bare string: write [{ids!r}]")
    try:
        out = list(ids)
    except TypeError as exc:
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}") from exc
    for i, id_ in enumerate(out):
        if not isinstance(id_, str) or not id_:
            raise InvalidInputError(f"id at index {i} must be a non-empty string, got {id_!r}")
        _check_no_nul(id_, i)
    return [str(id_) for id_ in out]  # numpy's np.str_ (ids from an array) as plain str


def _check_no_nul(id_: str, i: int) -> None:
    """Refuse a NUL in an id: the BM25 sidecar's file (numpy str arrays) would drop a trailing one."""
    if "\x00" in id_:
        raise InvalidInputError(f"id at index {i} holds a NUL character (\\x00): {id_!r}; remove it from the id")


def _check_search_type(search_type: Any) -> str:
    """``search_type`` of :meth:`MatryoshkaChroma.search`, or an :class:`InvalidInputError` listing the four."""
    if search_type not in MatryoshkaRetriever.allowed_search_types:
        raise InvalidInputError(f"search_type must be one of {MatryoshkaRetriever.allowed_search_types}, "
                                f"got {search_type!r}")
    return search_type


#: The arguments :meth:`MatryoshkaChroma.hybrid_search` takes, as ``search_kwargs`` of a hybrid retriever.
HYBRID_KWARGS = ("k", "filter", "lexical_weight", "fusion", "candidates", "lexical_candidates", "where_document")


#: The ``search_kwargs`` each retriever ``search_type`` takes (its search method's arguments).
RETRIEVER_KWARGS = {
    "similarity": ("k", "filter", "candidates", "where_document"),
    "similarity_score_threshold": ("k", "filter", "candidates", "where_document", "score_threshold"),
    "mmr": ("k", "fetch_k", "lambda_mult", "filter", "candidates", "where_document"),
    "hybrid": HYBRID_KWARGS,
}


_SEARCH_METHODS = {"similarity": "similarity_search()", "similarity_score_threshold":
                   "similarity_search_with_relevance_scores()", "mmr": "max_marginal_relevance_search()",
                   "hybrid": "hybrid_search()"}


def _is_unit_interval(value: Any) -> bool:
    """Whether ``value`` is a real number (numpy's too, not a bool) in [0, 1]."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and 0.0 <= float(value) <= 1.0


def _check_retriever_kwargs(search_type: str, search_kwargs: dict[str, Any]) -> None:
    """A retriever's ``search_kwargs`` for ``search_type``: known names, valid values, checked when the
    retriever is built (they failed at its first query, in production; a misspelt name was ignored)."""
    allowed = RETRIEVER_KWARGS[search_type]
    unknown = sorted(set(search_kwargs) - set(allowed))
    if unknown:
        hint = ("; a score threshold needs search_type='similarity_score_threshold'"
                if "score_threshold" in unknown else "")
        raise InvalidInputError(f"search_kwargs {unknown} are not arguments of {_SEARCH_METHODS[search_type]} "
                                f"(search_type={search_type!r} takes {', '.join(allowed)}){hint}")
    for name in ("k", "fetch_k", "lambda_mult"):  # None is no default here: the search itself refused it
        if name in search_kwargs and search_kwargs[name] is None:
            raise InvalidInputError(f"search_kwargs[{name!r}] is None; give a value, or leave it out for the default")
    for name in ("k", "candidates", "lexical_candidates", "fetch_k"):
        value = search_kwargs.get(name)
        if value is not None and _check_int(f"search_kwargs[{name!r}]", value) < 1:
            raise InvalidInputError(f"search_kwargs[{name!r}] must be >= 1, got {value!r}")
    if search_kwargs.get("candidates") is not None:  # below k (MMR: fetch_k): it failed at the first query
        k = search_kwargs.get("k")
        if search_type == "mmr":
            least = max(4 if k is None else k, search_kwargs.get("fetch_k") or 20)
            if search_kwargs["candidates"] < least:
                raise InvalidInputError(f"search_kwargs['candidates'] ({search_kwargs['candidates']}) must be at least "
                                        f"fetch_k and k ({least}): MMR chooses among fetch_k of the candidates")
        else:
            check_search_sizes(4 if k is None else k, search_kwargs["candidates"], k_name="search_kwargs['k']",
                               candidates_name="search_kwargs['candidates']")
    lambda_mult = search_kwargs.get("lambda_mult")
    if lambda_mult is not None and not _is_unit_interval(lambda_mult):
        raise InvalidInputError(f"search_kwargs['lambda_mult'] must be a number in [0, 1], got {lambda_mult!r}")
    if search_kwargs.get("lexical_weight") is not None:
        check_lexical_weight(search_kwargs["lexical_weight"])
    if search_kwargs.get("fusion") is not None and search_kwargs["fusion"] not in FUSION_METHODS:
        raise InvalidInputError(f"unknown fusion {search_kwargs['fusion']!r}; use one of {FUSION_METHODS}")
    for name in ("filter", "where_document"):
        if search_kwargs.get(name) is not None and not isinstance(search_kwargs[name], dict):
            raise InvalidInputError(f"search_kwargs[{name!r}] must be a dict (a Chroma filter), got "
                                    f"{type(search_kwargs[name]).__name__}")


def _check_threshold(threshold: Any, cosine: bool = True, retriever: bool = False) -> float:
    """A relevance score threshold as a float (an int is fine: ``0``, ``1``; NaN is refused: it kept nothing).
    With the default relevance (``cosine``: no ``relevance_score_fn``), one outside [-1, 1] is refused:
    ``75`` (a percentage) kept nothing and ``-2`` everything, in silence."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or math.isnan(threshold):
        raise InvalidInputError(("search_type='similarity_score_threshold' needs a number in "
                                 "search_kwargs={'score_threshold': ...}" if retriever else
                                 "score_threshold needs a number") +
                                f" (a relevance score, cosine in [-1, 1]), got {threshold!r}")
    value = float(threshold)
    if cosine and not -1.0 <= value <= 1.0:
        effect = ("kept nothing" + (f" (for {value:g}%, use {value / 100:g})" if value <= 100 else "")
                  if value > 1 else "kept every hit")
        raise InvalidInputError(f"score_threshold={value:g} is outside [-1, 1], the range of the relevance "
                                f"score (the full-size cosine): it would have {effect}")
    return value


def _no_extra(kwargs: dict[str, Any], method: str) -> None:
    if kwargs:
        raise InvalidArgumentError(f"unexpected argument(s) of {method}: {sorted(kwargs)}")
