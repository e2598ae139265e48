"""The LangChain retriever of :class:`~medrag.store.MatryoshkaChroma`: the usual search types plus ``"hybrid"``.

Example::

    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 4, "lexical_weight": 0.3})
    retriever.invoke("Quelle HbA1c cible chez le sujet âgé ?")
"""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStoreRetriever

from medrag.errors import InvalidArgumentError


class MatryoshkaRetriever(VectorStoreRetriever):
    """:class:`~langchain_core.vectorstores.VectorStoreRetriever` with ``search_type="hybrid"``."""

    allowed_search_types: ClassVar[tuple[str, ...]] = ("similarity", "similarity_score_threshold", "mmr", "hybrid")

    def __init__(self, **data: Any) -> None:
        """Build it with :meth:`~medrag.store.MatryoshkaChroma.as_retriever`; built directly, or again by
        LangChain's ``configurable_fields``, its ``search_type`` and ``search_kwargs`` get the same
        checks (:class:`~medrag.errors.InvalidInputError` when they do not fit the store)."""
        check = getattr(data.get("vectorstore"), "_checked_retriever_fields", None)
        if callable(check):
            unknown = sorted(set(data) - set(type(self).model_fields))
            if unknown:  # pydantic ignored them: search_kwarg={"k": 1} returned 4 documents (review)
                raise InvalidArgumentError(f"MatryoshkaRetriever() got unknown argument(s) {unknown}; it takes "
                                           "vectorstore, search_type, search_kwargs, tags, metadata and the other "
                                           "fields of a LangChain retriever")
            data = check(data)
        super().__init__(**data)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        if self.search_type == "hybrid":
            return self.vectorstore.hybrid_search(query, **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        if self.search_type == "hybrid":
            return await self.vectorstore.ahybrid_search(query, **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)
