"""The one place texts become vectors: full-size, unit-norm float32 rows from a sentence-transformers model.

:class:`medrag.MatryoshkaEmbeddings` (and through it the store and the evaluation cache) and the
fine-tuning scores (:mod:`finetune.scoring`) all encode through :func:`encode_texts`, so a vector
means the same thing wherever it was computed: the model's output for ``prompt + text``,
L2-normalised at full size (smaller Matryoshka sizes are derived later by
:func:`medrag.vectors.truncate_embeddings`).

Example::

    >>> from medrag import load_model
    >>> from medrag.encoding import encode_texts
    >>> model = load_model()                                            # medrag-e5-small-fr (offline)
    >>> encode_texts(model, ["Que mesure la CRP ?"], prompt_name="query").shape
    (1, 384)
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.models import embedding_dim

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Inputs at least this long get a progress bar when the caller does not say.
PROGRESS_THRESHOLD = 256
#: Encoding batch size of medrag's embeddings and evaluation (training scores use their own).
DEFAULT_BATCH_SIZE = 32


def encode_texts(model: "SentenceTransformer", texts: Sequence[str], *, prompt_name: str | None = None,
                 prompt: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, show_progress: bool | None = None) -> np.ndarray:
    """Full-size, unit-norm float32 vectors of ``texts``, shape ``(len(texts), full_dim)``.

    Args:
        model: a loaded ``SentenceTransformer`` (:func:`medrag.load_model`).
        texts: the texts, in order.
        prompt_name: one of the model's prompt names (``"query"``, ``"passage"``...), or
        prompt: the prompt text itself (as training uses it); give at most one. Neither: the
            model's default prompt, if it has one.
        batch_size: encoding batch size.
        show_progress: progress bar; ``None`` shows it for :data:`PROGRESS_THRESHOLD` texts or more
            when stderr is a terminal (a service's log file got a bar per call: user tryout).
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    show = len(texts) >= PROGRESS_THRESHOLD and stderr_is_terminal() if show_progress is None else show_progress
    with model_lock(model):
        vecs = model.encode(texts, prompt_name=prompt_name, prompt=prompt or None, batch_size=batch_size,
                            show_progress_bar=show, convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(vecs, dtype=np.float32)


_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> "threading.RLock":
    """The lock every encode of ``model`` holds, shared by all of its users in the process.

    A fast tokenizer keeps its truncation and padding settings in shared state that each call
    sets: a thread counting the tokens of long texts (no truncation) while another encoded made
    the second one feed the model untruncated sequences (RuntimeError: "The expanded size of the
    tensor (384) must match the existing size (64)"), 1 to 4 calls in 240 with 4 threads. Encodes of
    one model therefore run one at a time (torch already uses every core inside one); re-entrant.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: where a default progress bar is drawn (tqdm's ``disable=None``)."""
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
