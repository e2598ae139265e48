"""What a store's collection records, and the hints its mismatch errors give.

A :class:`~medrag.store.MatryoshkaChroma` collection records the model and layout that built it in
its collection metadata (the *contract*, :data:`CONTRACT_KEYS`): the model's spec and fingerprint,
the full and coarse sizes, the distance, how the full vectors are packed (:data:`FULL_KEY` of each
record), the coarse stage and the prompts. An opening compares the contract with its embeddings
and refuses a mismatch (``CollectionMismatchError``) with advice on what to do; this module holds the
keys, the defaults of a new collection, and the functions that name a model and word that advice.
``medrag.store`` re-exports the public names.

    >>> CONTRACT_KEYS["model"], default_coarse_dim(384)
    ('medrag:model', 64)
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

#: Version of the record and collection layout that :mod:`medrag.store` writes.
STORE_SCHEMA_VERSION = 1
#: Metadata key holding each record's packed full-size vector (never shown to users).
FULL_KEY = "_medrag_full"
#: Collection-metadata keys of the contract.
_C = {
    "schema": "medrag:schema",
    "model": "medrag:model",
    "fingerprint": "medrag:fingerprint",
    "full_dim": "medrag:full_dim",
    "coarse_dim": "medrag:coarse_dim",
    "distance": "medrag:distance",
    "encoding": "medrag:full_encoding",
    "rotation": "medrag:coarse_rotation",
    "prompts": "medrag:prompts",
}
#: The contract's collection-metadata keys, by name (e.g. ``CONTRACT_KEYS["model"]``: the model spec).
CONTRACT_KEYS = _C
#: Collection-metadata key of a fitted coarse rotation (base64 float32: mean, then components).
ROTATION_KEY = "medrag:rotation_data"
#: Coarse stages: ``"none"`` (the first ``coarse_dim`` coordinates) or a fitted projection
#: (:mod:`medrag.coarse`): ``"pca"`` or ``"learned"``.
ROTATIONS = ("none", "pca", "learned")
#: ``coarse_rotation="auto"`` (the default) on a new collection is decided on its first write (or
#: ``rotation_sample``): ``"learned"`` when that holds at least this many texts (and the learned
#: fit's minimum, ``8 * coarse_dim``), else ``"none"``; then recorded like an explicit choice. A
#: learned stage fitted on 1,000 French chunks lifted recall@10 at coarse 64 / 100 candidates from
#: 0.72 to 0.81 for the default model and from 0.37 to 0.65 for the base e5-small on 16,384 chunks;
#: on a smaller corpus the candidates are a large share of it and the raw prefix loses little.
AUTO_LEARNED_MIN_TEXTS = 1000
#: How a new collection stores the full vectors when ``full_encoding`` is not given. int8 over
#: float16: float16 gained 0.01 recall@10 at 400 candidates in real stores of French chunks (int8
#: swaps near ties at rank 10) but took 1,145 instead of 626 MB on disk at 100,000 records of 384
#: dims (its 1,024-character base64 string overflows SQLite's index pages; docs/benchmarks.md,
#: "Store defaults").
DEFAULT_FULL_ENCODING = "int8"
#: Chroma HNSW ``ef_search`` of a new collection when ``hnsw`` does not set it. Chroma's own
#: default (100) answers a 100-candidate query with an approximate top 100 that misses true
#: neighbours: -0.07 recall@10 at coarse 128 on French chunks (docs/benchmarks.md).
DEFAULT_EF_SEARCH = 400
#: Collection-metadata key of the write generation (see :attr:`MatryoshkaChroma.write_generation`).
GENERATION_KEY = "medrag:generation"
#: Collection-metadata key of the last write generation whose write has landed (see
#: :meth:`MatryoshkaChroma.generation_state`); absent in collections made before it (then the generation).
COMMITTED_KEY = "medrag:committed"
#: Chroma HNSW settings that an existing collection can change (``collection.modify``); the others
#: (``max_neighbors``, ``ef_construction``, ``space``) are fixed when the graph is built.
UPDATABLE_HNSW = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
_HNSW_SETTINGS = (*UPDATABLE_HNSW, "max_neighbors", "ef_construction", "space")
#: Of these, the ones Chroma does not report in ``collection.configuration`` (1.5.9): applied when
#: given, never compared.
_UNREPORTED_HNSW = ("num_threads", "batch_size")
#: Stage-1 candidates when neither the constructor nor the call says. Provisional: a trade-off of
#: recall against latency (which grows linearly with it), measured on the embedded e5-small in
#: ``docs/benchmarks.md``; choose per model from the benchmark's candidates/coarse table
#: (``benchmarks/store_benchmark.py run``).
DEFAULT_CANDIDATES = 100
#: Stage-1 (HNSW) size: e5's smallest trained Matryoshka size.
DEFAULT_COARSE_DIM = 64
DEFAULT_COLLECTION = "medrag"
#: The metadata keys medrag writes into records itself (``reindex`` drops them from a source silently).
_WRITTEN_KEYS = frozenset({FULL_KEY})


def _user_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A record's metadata without medrag's reserved keys, keys sorted: Chroma returns them in an order
    that changes from call to call, and a prompt rendering them should not (LLM caches, snapshots)."""
    return {k: (metadata or {})[k] for k in sorted(metadata or {}) if k != FULL_KEY}


def _document(id_: str, text: str | None, metadata: dict[str, Any] | None) -> Document:
    return Document(id=id_, page_content=text or "", metadata=_user_metadata(metadata))


def _b64(packed: Any) -> bytes | None:
    """A base64 metadata string as bytes; None when it is not valid base64."""
    try:
        return base64.b64decode(packed, validate=True)
    except (ValueError, TypeError):
        return None


#: The attributes LangChain's embeddings classes name their model by (HuggingFaceEmbeddings'
#: ``model_name``, OpenAIEmbeddings', OllamaEmbeddings' and MistralAIEmbeddings' ``model``,
#: BedrockEmbeddings' ``model_id``): another size of one model is told apart by the vector size.
_MODEL_ATTRIBUTES = ("model", "model_name", "model_id")


def _unwrapped(embedding: Any) -> Any:
    """The model a caching wrapper encodes with (LangChain's ``CacheBackedEmbeddings`` names it
    ``underlying_embeddings``): a collection records that model, not the wrapper. Recorded as
    "CacheBackedEmbeddings", a store let another model of the same size write into it through the
    wrapper, and refused the model that built it (user tryout)."""
    seen = 0
    while seen < 8 and isinstance(getattr(embedding, "underlying_embeddings", None), Embeddings):
        embedding, seen = embedding.underlying_embeddings, seen + 1
    return embedding


def default_coarse_dim(full_dim: int) -> int:
    """The coarse size of a new collection when ``coarse_dim`` is not given: :data:`DEFAULT_COARSE_DIM`,
    or half the full size for a model of that size or less (a 64-dim model was refused with an error
    about a ``coarse_dim`` its user never set, and ``medrag demo`` could not run it: user tryout).

    >>> default_coarse_dim(384), default_coarse_dim(64), default_coarse_dim(48)
    (64, 32, 24)
    """
    return DEFAULT_COARSE_DIM if full_dim > DEFAULT_COARSE_DIM else max(1, full_dim // 2)


def _prompts_record(embedding: Any) -> str | None:
    """What a collection records of the prompts ``embedding`` puts before queries and passages
    (``MatryoshkaEmbeddings.prompt_texts``): ``{"query": ..., "document": ...}`` as JSON; None for
    embeddings that do not say (a plain LangChain ``Embeddings``, precomputed vectors)."""
    texts = getattr(_unwrapped(embedding), "prompt_texts", None)
    if not (isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts)):
        return None
    return json.dumps({"query": texts[0], "document": texts[1]}, ensure_ascii=False, sort_keys=True)


def recorded_prompts(record: str | None) -> dict[str, str] | None:
    """The prompts a collection recorded (its ``medrag:prompts``), as ``MatryoshkaEmbeddings(prompts=...)``
    takes them; None when it recorded none (or something unreadable).

    >>> recorded_prompts('{"document": "passage: ", "query": "query: "}')
    {'query': 'query: ', 'passage': 'passage: '}
    >>> recorded_prompts(None) is None
    True
    """
    try:
        value = json.loads(record) if isinstance(record, str) else None
    except ValueError:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("query"), str) and isinstance(value.get("document"), str)):
        return None
    return {"query": value["query"], "passage": value["document"]}


def _describe_prompts(record: str) -> str:
    prompts = recorded_prompts(record)
    if prompts is None:
        return f"the prompts {record!r}"
    return " and ".join(f"{'no ' + side + ' prompt' if not text else side + ' prompt ' + repr(text)}"
                        for side, text in (("query", prompts["query"]), ("passage", prompts["passage"])))


def _prompts_hint(record: str) -> str:
    prompts = recorded_prompts(record)
    if prompts is None:
        return ""
    return (f" To keep serving it, give the embeddings the recorded prompts: MatryoshkaEmbeddings(<model>, "
            f"prompts={prompts!r}) (medrag index and medrag search use them themselves); to change them, reindex.")


def _plain_identity(embedding: Any) -> str:
    """What a collection records of a plain LangChain ``Embeddings`` (no fingerprint): its class and,
    where it has one, its model name (``HuggingFaceEmbeddings:intfloat/multilingual-e5-base``). The
    class name alone let two models of one class and one size write into one collection, their vectors
    compared as if of one model (re-read)."""
    identity = type(embedding).__name__
    for attr in _MODEL_ATTRIBUTES:
        try:
            value = getattr(embedding, attr, None)
        except Exception:  # a property that fails: no model name
            value = None
        if isinstance(value, str) and value.strip():
            name = value.strip()
            try:  # a local folder ("models/e5") read from another working folder is the same model (review)
                path = Path(name).expanduser()
                name = str(path.resolve()) if path.exists() else name
            except (OSError, RuntimeError, ValueError):
                pass
            identity += f":{name}"
            break
    return identity


def _plain_class(identity: Any) -> str:
    """The class name of a plain Embeddings' recorded identity (:func:`_plain_identity`)."""
    return str(identity).split(":", 1)[0]


def _named_plain_identity(recorded: Any, identity: str) -> bool:
    """Whether ``recorded`` is the class name alone that an earlier medrag recorded for the plain
    Embeddings whose identity is now ``identity`` (its model name added): the same store, upgraded."""
    return isinstance(recorded, str) and ":" not in recorded and _plain_class(identity) == recorded != identity


def _moved_folder(spec: Any) -> bool:
    """Whether a recorded model ``spec`` is a local folder's absolute path that no longer exists."""
    return isinstance(spec, str) and os.path.isabs(spec) and not os.path.exists(spec)


def _former_weights(spec: Any, fingerprint: str) -> str | None:
    """The packaged spec that ships the earlier weights of bundled model ``spec`` (``fingerprint``), if any."""
    if not (isinstance(spec, str) and spec.startswith("bundled:") and fingerprint):
        return None
    from medrag.adapters import former_weights_spec

    return former_weights_spec(spec, fingerprint)


def _former_weights_hint(former: str, name: str) -> str:
    """A sentence for a collection built with earlier weights of a bundled model that now ship as ``former``."""
    return (f" To keep serving the collection as it is, open it with MatryoshkaEmbeddings({former!r}); to use the new "
            f"weights, reindex it (MatryoshkaChroma.reindex(client, {name!r}, '<new name>', MatryoshkaEmbeddings())).")


def _default_change_hint(stored_spec: Any, spec: str, name: str) -> str:
    """A sentence for a collection built with the *previous* default model and opened with the new one."""
    from medrag.bundled import BUNDLED_SPEC, DEFAULT_SPEC

    if stored_spec != BUNDLED_SPEC or spec != DEFAULT_SPEC or DEFAULT_SPEC == BUNDLED_SPEC:
        return ""
    return (f" medrag's default model changed from {BUNDLED_SPEC!r} to {DEFAULT_SPEC!r}: reindex the collection "
            f"(MatryoshkaChroma.reindex(client, {name!r}, '<new name>', MatryoshkaEmbeddings())) to use "
            f"the new model, or keep the old one with MatryoshkaEmbeddings({BUNDLED_SPEC!r}).")
