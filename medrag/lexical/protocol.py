"""The interface every lexical index behind :class:`~medrag.store.MatryoshkaChroma` implements.

The store keeps Chroma's records as the source of truth; a lexical index is *derived* data:
it records the store's write generation it was built at (``generation``) and the analyzer
it was built with (``signature``), and the store rebuilds it from the records when either
differs. :class:`~medrag.lexical.bm25.BM25Index` (in-process, ``bm25s``) is the
implementation shipped; a server-side sparse index (Chroma Cloud's BM25 search through
``Collection.search`` over a sparse-vector key) fits the same methods, see ``docs/store.md``.

Example::

    >>> from medrag.lexical.bm25 import BM25Index
    >>> index: LexicalIndex = BM25Index()
    >>> index.add(["a"], ["La ferritine basse traduit une carence en fer."])
    >>> index.search("ferritine", k=1)[0]
    ['a']
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LexicalIndex(Protocol):
    """Keyword search over the store's documents, by id."""

    #: The analyzer's fingerprint; an index with another signature is rebuilt.
    signature: str
    #: The store write generation this index reflects (``None``: unknown, treat as stale).
    generation: int | None

    def __len__(self) -> int:
        """Number of documents indexed."""

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ids``; an id already indexed is replaced (upsert)."""

    def delete(self, ids: Sequence[str]) -> None:
        """Forget ``ids`` (unknown ids are ignored)."""

    def search(self, query: str, k: int, ids: Collection[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` best-scoring ids for ``query`` (only those in ``ids`` when given) and their scores,
        best first; documents sharing no term with the query are not returned."""

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` atomically."""
