"""Which of a model's prompts to use for queries and for passages.

e5 models were trained with ``query: `` before questions and ``passage: `` before documents.
sentence-transformers >= 6.2 adds an *empty* ``"document"`` prompt to models that saved only
``"passage"``, and its ``encode_document()`` prefers it, so e5 passages would silently lose their
prefix (about -0.02 NDCG@10 on a French set). medrag therefore picks prompt names explicitly,
``"document"`` last, everywhere: embeddings, training and evaluation.

Example::

    >>> from medrag.prompts import DOCUMENT_PROMPT_NAMES, pick_prompt_name
    >>> pick_prompt_name({"query": "query: ", "document": "", "passage": "passage: "}, DOCUMENT_PROMPT_NAMES)
    'passage'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Prompt names tried, in order, for queries.
QUERY_PROMPT_NAMES: tuple[str, ...] = ("query",)
#: Prompt names tried, in order, for passages ("document" last, see the module docstring).
DOCUMENT_PROMPT_NAMES: tuple[str, ...] = ("passage", "document", "corpus")


def pick_prompt_name(prompts: Mapping[str, str] | None, candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` that names a non-empty prompt, else ``None``."""
    prompts = prompts or {}
    return next((name for name in candidates if prompts.get(name)), None)


def prompt_texts(prompts: Mapping[str, str] | None) -> tuple[str, str]:
    """The (query, passage) prompt strings, ``""`` where the model has none."""
    prompts = prompts or {}
    q = pick_prompt_name(prompts, QUERY_PROMPT_NAMES)
    p = pick_prompt_name(prompts, DOCUMENT_PROMPT_NAMES)
    return (prompts[q] if q else ""), (prompts[p] if p else "")
