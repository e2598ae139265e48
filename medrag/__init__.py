"""medrag: retrieval for French medical RAG applications.

Matryoshka embeddings for LangChain (:class:`MatryoshkaEmbeddings`), a two-stage Chroma
vector store (:class:`MatryoshkaChroma`: coarse 64-dim search, full-size rerank), model
loading that works offline on an embedded default (:func:`load_model`), plus the
``finetune`` and ``evaluation`` packages installed alongside.

Imports are lazy: ``import medrag`` does no work and loads no heavy dependency (LangChain, torch,
Chroma), and never the ``finetune`` or ``evaluation`` packages, which build on medrag. Each public
name is listed once, in ``_EXPORTS``, and loaded from its module on first access.
"""

from medrag._exports import lazy_exports as _lazy_exports

__version__ = "0.1.0"

#: Public name -> the module that defines it; the one place the export list is written.
_EXPORTS = {
    "load_model": "medrag.models",
    "model_fingerprint": "medrag.models",
    "MatryoshkaEmbeddings": "medrag.embeddings",
    "PrecomputedEmbeddings": "medrag.precomputed",
    "MatryoshkaEncoder": "medrag.encoder",
    "truncate_embeddings": "medrag.vectors",
    "MatryoshkaChroma": "medrag.store",
    "MatryoshkaMetadata": "medrag.metadata",
    "BUNDLED_SPEC": "medrag.bundled",
    "DEFAULT_SPEC": "medrag.bundled",
    "MedragError": "medrag.errors",
    "ModelLoadError": "medrag.errors",
    "InvalidInputError": "medrag.errors",
    "InvalidArgumentError": "medrag.errors",
    "UnknownNameError": "medrag.errors",
    "DimensionError": "medrag.errors",
    "MetadataError": "medrag.errors",
    "CollectionMismatchError": "medrag.errors",
    "DataError": "medrag.errors",
    "UnreadablePdfError": "medrag.errors",
    "ConfigError": "medrag.errors",
    "LexicalIndexError": "medrag.errors",
    "StoreError": "medrag.errors",
    "StoreConnectionError": "medrag.errors",
    "StoreLockedError": "medrag.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, __all__)
