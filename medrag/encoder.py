"""The encoder interface: what the store, the evaluation and the benchmarks need from embeddings.

A :class:`MatryoshkaEncoder` turns texts into **full-size, unit-norm float32 rows** (one model
call serves every Matryoshka size: a smaller size is the first ``d`` coordinates re-normalised,
:func:`medrag.vectors.truncate_embeddings`) and says which model made them. Two classes implement
it: :class:`medrag.MatryoshkaEmbeddings` (a model) and :class:`medrag.PrecomputedEmbeddings`
(vectors you already have). Anything else with these members works too: it is a structural
``typing.Protocol``, nothing to inherit.

Who uses what:

- :class:`medrag.MatryoshkaChroma` encodes through ``encode_documents``/``encode_queries`` and
  records ``spec``, ``fingerprint``, ``full_dim`` in its collection contract (a plain LangChain
  ``Embeddings`` is still accepted: its ``embed_*`` output is taken as the full size);
- :mod:`evaluation` (the cache, :func:`evaluation.evaluator.evaluate_models`,
  :func:`evaluation.store_eval.evaluate_store`) keys cached vectors by ``fingerprint`` and scores
  every size of ``dims``;
- the benchmarks feed the store vectors computed once (:class:`medrag.PrecomputedEmbeddings`).

Example::

    >>> import numpy as np
    >>> from medrag import PrecomputedEmbeddings
    >>> from medrag.encoder import is_encoder
    >>> enc = PrecomputedEmbeddings(documents={"a": np.array([0.6, 0.8])}, spec="toy", fingerprint="0")
    >>> is_encoder(enc), enc.full_dim, enc.encode_documents(["a"]).shape
    (True, 2, (1, 2))
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class MatryoshkaEncoder(Protocol):
    """Texts to full-size Matryoshka vectors, with the identity of the model that makes them.

    Attributes:
        spec: a readable name of the model (a hub id, a folder, ``bundled:...``).
        full_dim: the size of the vectors ``encode_*`` return.
        fingerprint: a short id of the weights (:func:`medrag.model_fingerprint`): the same
            fingerprint, prompt and text must give the same vector. Stores refuse another
            fingerprint; caches key on it.

    Optional: ``dims``, the sizes the model was trained for, descending. Where it is missing the
    evaluation scores the seed's sizes up to ``full_dim`` (:func:`medrag.metadata.default_dims`)
    and the store does not warn about an untrained ``coarse_dim``. ``matryoshka_trained``, a bool:
    whether a Matryoshka loss trained the model (missing: False); the store's learned coarse fit
    trains briefly for such a model and longer for another (:func:`medrag.coarse.learned_steps`).
    ``check_texts(texts)``: raise :class:`~medrag.errors.InvalidInputError` naming the first text
    (by its index) that the encoder cannot encode; the store calls it on a whole ``add_texts`` call
    before its first write (missing: only :func:`medrag.embeddings.validate_texts`' checks run then).
    """

    spec: str
    full_dim: int

    @property
    def fingerprint(self) -> str: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of search queries: float32, shape ``(len(texts), full_dim)``, unit-norm rows."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of passages: float32, shape ``(len(texts), full_dim)``, unit-norm rows."""
        ...


_MEMBERS = ("spec", "full_dim", "fingerprint", "encode_queries", "encode_documents")


def is_encoder(obj: object) -> bool:
    """Whether ``obj`` has every member of :class:`MatryoshkaEncoder`.

    Unlike ``isinstance(obj, MatryoshkaEncoder)`` on Python < 3.12, it does not evaluate properties
    (a model's ``fingerprint`` hashes its weights), it only looks them up.
    """
    for name in _MEMBERS:
        try:
            inspect.getattr_static(obj, name)
        except AttributeError:
            return False
    return callable(getattr(obj, "encode_queries")) and callable(getattr(obj, "encode_documents"))
