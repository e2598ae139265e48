"""Chroma filters that match a text in both of its Unicode spellings, composed (NFC) and decomposed (NFD).

An accented letter has two spellings: ``é`` as one code point (NFC, what most keyboards type) or as
``e`` followed by a combining accent (NFD, what macOS file names and some PDF extractors give). They
look the same and the model embeds them alike, so search finds a record stored in NFD; but Chroma
compares filters byte for byte, so ``delete(where={"patient": "Hélène Dupré"})`` typed in NFC deleted
nothing of a patient's notes stored in NFD, with a warning that pointed at keys and types (user
tryout: an erasure that erased nothing). Stored texts are left as given (their content ids, and
every store written before, stay valid); each string a filter compares is widened to its two
spellings instead:

- ``{"k": "é"}`` and ``{"k": {"$eq": "é"}}`` become ``{"k": {"$in": [NFC, NFD]}}``; ``$ne`` becomes
  ``$nin``; ``$in`` / ``$nin`` lists get the other spelling of each string;
- ``$contains`` / ``$not_contains`` (a document's text, or a list-valued metadata field) become an
  ``$or`` / ``$and`` of both spellings;
- ``$regex`` / ``$not_regex`` patterns are left as written (decomposing a pattern breaks its
  character classes: ``[éè]``).

A string without accents has one spelling and is left alone, so most filters pass unchanged. A text
that mixes both spellings (rare: pasted from two sources) matches only the spelling of each part.

Example:

    >>> import unicodedata
    >>> nfd = unicodedata.normalize("NFD", "Hélène")
    >>> both_spellings({"patient": "Hélène"}) == {"patient": {"$in": ["Hélène", nfd]}}
    True
    >>> both_spellings({"$contains": "ferritine"}, document=True)   # nothing to widen
    {'$contains': 'ferritine'}
    >>> both_spellings({"$not_contains": "Hélène"}, document=True) == {
    ...     "$and": [{"$not_contains": "Hélène"}, {"$not_contains": nfd}]}
    True
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["MAX_WIDENED_VALUES", "both_spellings", "count_strings", "spellings"]

#: At most this many strings in a widened filter: each is an SQL variable in Chroma's query, and SQLite
#: refuses more than 32,766 in one (a ``$in`` of 17,000 accented names, doubled, failed where Chroma
#: took it as given: review). Above it, a filter is used as given (with a warning, by the store).
MAX_WIDENED_VALUES = 16_000

_LOGICAL = ("$and", "$or")
_EITHER = {"$contains": "$or", "$not_contains": "$and"}  # a text holding one spelling or the other / neither


def spellings(value: str) -> list[str]:
    """``value``'s distinct spellings: as given, then its NFC and NFD forms (one item for plain ASCII).

    >>> spellings("CRP")
    ['CRP']
    >>> len(spellings("fièvre"))
    2
    """
    return list(dict.fromkeys((value, unicodedata.normalize("NFC", value), unicodedata.normalize("NFD", value))))


def both_spellings(where: Any, *, document: bool = False) -> Any:
    """``where`` (a Chroma ``where`` filter, or a ``where_document`` one with ``document=True``) with
    each compared string widened to its NFC and NFD spellings. Anything that is not a well-formed
    filter is returned as given, for Chroma to refuse with its own message."""
    if not isinstance(where, dict):
        return where
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key in _LOGICAL and isinstance(value, list):
            out[key] = [both_spellings(part, document=document) for part in value]
        elif document:
            if key in _EITHER and isinstance(value, str) and len(forms := spellings(value)) > 1:
                return _combined(where, _EITHER[key], [{key: form} for form in forms])
            out[key] = value
        elif (isinstance(value, dict) and len(value) == 1 and (op := next(iter(value))) in _EITHER
              and isinstance(value[op], str) and len(forms := spellings(value[op])) > 1):
            # a list-valued field holding either spelling
            return _combined(where, _EITHER[op], [{key: {op: form}} for form in forms])
        else:
            out[key] = _field(value)
    return out


def _combined(where: dict[str, Any], logical: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """``parts`` joined by ``logical``, in place of a one-key filter; with other keys beside it (a filter
    Chroma refuses), the filter unchanged."""
    return {logical: parts} if len(where) == 1 else where


def _field(condition: Any) -> Any:
    """One metadata field's condition (a bare value, or ``{operator: operand}``), widened."""
    if isinstance(condition, str):
        forms = spellings(condition)
        return condition if len(forms) == 1 else {"$in": forms}
    if not isinstance(condition, dict) or len(condition) != 1:
        return condition
    (op, operand), = condition.items()
    if op in ("$eq", "$ne") and isinstance(operand, str) and len(forms := spellings(operand)) > 1:
        return {"$in" if op == "$eq" else "$nin": forms}
    if op in ("$in", "$nin") and isinstance(operand, list):
        return {op: list(dict.fromkeys(form for item in operand
                                       for form in (spellings(item) if isinstance(item, str) else [item])))}
    return condition


def count_strings(where: Any) -> int:
    """How many strings ``where`` compares (its keys and operators not counted).

    >>> count_strings({"$and": [{"a": {"$in": ["x", "y", 3]}}, {"$contains": "z"}]})
    3
    """
    if isinstance(where, dict):
        return sum(count_strings(v) for v in where.values())
    if isinstance(where, list):
        return sum(count_strings(v) for v in where)
    return int(isinstance(where, str))
