"""medrag: retrieval for French medical RAG applications.

Matryoshka embeddings for LangChain (:class:`MatryoshkaEmbeddings`), a two-stage Chroma
vector store (:class:`MatryoshkaChroma`: coarse 64-dim search, full-size rerank), model
loading that works offline on an embedded default (:func:`load_model`), plus the
``finetune`` and ``evaluation`` packages installed alongside.

Imports are lazy: ``import medrag`` does no work and loads no heavy dependency.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "medrag.models",
    "model_fingerprint": "medrag.models",
    "MatryoshkaEmbeddings": "medrag.embeddings",
    "truncate_embeddings": "medrag.vectors",
    "MatryoshkaChroma": "medrag.store",
    "MatryoshkaMetadata": "medrag.metadata",
    "MedragError": "medrag.errors",
    "ModelLoadError": "medrag.errors",
    "DimensionError": "medrag.errors",
    "MetadataError": "medrag.errors",
    "CollectionMismatchError": "medrag.errors",
    "DataError": "medrag.errors",
    "BUNDLED_SPEC": "medrag.bundled",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from medrag.bundled import BUNDLED_SPEC
    from medrag.embeddings import MatryoshkaEmbeddings
    from medrag.errors import (CollectionMismatchError, DataError, DimensionError, MedragError, MetadataError,
                               ModelLoadError)
    from medrag.metadata import MatryoshkaMetadata
    from medrag.models import load_model, model_fingerprint
    from medrag.store import MatryoshkaChroma
    from medrag.vectors import truncate_embeddings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medrag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
