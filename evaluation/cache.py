"""An on-disk cache of full-size embeddings, so re-running an evaluation does not re-encode.

Encoding is the slow part of an evaluation (tens of seconds to minutes per model on a CPU),
while scoring every size from cached vectors takes well under a second. The cache key is
everything that determines the vectors: the model's fingerprint (:func:`medrag.model_fingerprint`,
which changes with any retraining), which side (query / document), the prompt text applied,
the model's token cap (``max_seq_length``) and a hash of the texts in order. A changed model,
prompt, cap or dataset is a cache miss, never a stale hit. (The cap joined the key on December 5:
vectors cached before are encoded again once. So did the modules after the transformer, through the
fingerprint: two poolings of the same weights had one; files under a model's older fingerprints are
not read, as they cannot tell such models apart.)

Example::

    >>> from medrag import MatryoshkaEmbeddings
    >>> from evaluation.cache import EmbeddingCache
    >>> cache = EmbeddingCache("/tmp/emb-cache")
    >>> emb = MatryoshkaEmbeddings()
    >>> vecs = cache.encode(emb, ["Que mesure la CRP ?"], side="query")   # encodes, then stores
    >>> vecs = cache.encode(emb, ["Que mesure la CRP ?"], side="query")   # read from disk
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from medrag.bundled import cache_dir
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.encoder import MatryoshkaEncoder
from medrag.errors import InvalidInputError, MedragError

logger = logging.getLogger(__name__)

Side = Literal["query", "document"]


def _encode_quietly(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    """``encode(texts)`` without the library's per-call truncation warning (:func:`_warn_truncated`
    logs one per set, which a report records, on cached runs too)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*exceed the model's max_seq_length")
        return encode(texts)


def _warn_truncated(embeddings: MatryoshkaEncoder, texts: list[str], side: Side) -> None:
    """Log how many of ``texts`` exceed the model's token window (scored on their first tokens only):
    ``medrag evaluate`` writes it into the report. The library's own warning went to stderr only and
    was not given at all when the vectors came from the cache (user tryout: NDCG@10 0.99 on whole
    leaflets scored on their first 400 words, and report.md did not say)."""
    count = getattr(embeddings, "count_tokens", None)
    max_len = getattr(embeddings, "max_tokens", None)
    if count is None or not isinstance(max_len, int):
        return
    # a token covers at least one UTF-8 byte: only texts longer than the window in bytes can overflow
    long = [t for t in texts if len(t.encode("utf-8")) > max_len - 2]
    if not long:
        return
    try:
        n = sum(1 for tokens in count(long, kind=side) if tokens > max_len)
    except MedragError:  # no tokenizer to count with
        return
    if n:
        what = "queries" if side == "query" else "passages"
        advice = ("shorten them" if side == "query" else
                  "cut them into chunks (medrag index and medrag.indexing.chunk_text cut chunks to the window)")
        logger.warning("%d of %d %s exceed the window of %s (%d tokens) and were scored on their first %d tokens "
                       "only: %s", n, len(texts), what, embeddings.spec, max_len, max_len, advice)


def _text_digest(texts: list[str]) -> str:
    """A digest of ``texts`` in order (the truncation check's memo; not the file key, whose files stay valid)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$MEDRAG_CACHE/embeddings``, else the platform's user cache dir for medrag + ``/embeddings``."""
    return cache_dir() / "embeddings"


class EmbeddingCache:
    """Full-size unit vectors on disk, one ``.npy`` file per (model, side, prompt, texts).

    Args:
        folder: where to keep the files (default: :func:`default_cache_dir`).
        enabled: ``False`` turns the cache into a pass-through (``--no-cache``).

    Attributes:
        hits / misses: counts since creation (reported in the evaluation JSON).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, enabled: bool = True) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._truncation_checked: set[tuple[str, str, str]] = set()

    def key(self, embeddings: MatryoshkaEncoder, texts: list[str], side: Side) -> str:
        """The cache key of encoding ``texts`` on ``side`` with ``embeddings``."""
        fingerprint = embeddings.fingerprint
        prompt_name, prompt = _prompt(embeddings, side)
        h = hashlib.sha256()
        # the token cap too: model.max_seq_length = 6 changed the vectors and the cache returned the full-length ones
        max_len = getattr(getattr(embeddings, "model", None), "max_seq_length", None)
        h.update(json.dumps([fingerprint, side, prompt_name, prompt, embeddings.full_dim,
                             max_len if isinstance(max_len, int) else None]).encode())
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        return f"{fingerprint}-{side}-{h.hexdigest()[:20]}"

    def encode(self, embeddings: MatryoshkaEncoder, texts: list[str], side: Side) -> np.ndarray:
        """Vectors of ``texts`` (queries or documents), from the cache or by encoding them (then stored).

        ``embeddings`` is any :class:`medrag.encoder.MatryoshkaEncoder`; its ``fingerprint`` keys the files.
        """
        if side not in ("query", "document"):
            raise InvalidInputError(f"side must be 'query' or 'document', got {side!r}")
        texts = list(texts)
        vecs = self._vectors(embeddings, texts, side)
        # cached or not: a report's numbers depend on it; counted once per model and texts (the store and
        # hybrid evaluations ask for the same vectors again)
        key = (embeddings.fingerprint, side, _text_digest(texts))
        if key not in self._truncation_checked:
            self._truncation_checked.add(key)
            _warn_truncated(embeddings, texts, side)
        return vecs

    def _vectors(self, embeddings: MatryoshkaEncoder, texts: list[str], side: Side) -> np.ndarray:
        encode = embeddings.encode_queries if side == "query" else embeddings.encode_documents
        if not self.enabled:
            return _encode_quietly(encode, texts)
        path = self.folder / f"{self.key(embeddings, texts, side)}.npy"
        if path.is_file():
            try:
                vecs = np.load(path, allow_pickle=False)
                if vecs.shape == (len(texts), embeddings.full_dim):
                    self.hits += 1
                    logger.info("embedding cache hit: %s (%d %s vectors)", path.name, len(texts), side)
                    return vecs
                logger.warning("ignoring cached %s: shape %s, expected %s", path, vecs.shape,
                               (len(texts), embeddings.full_dim))
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable cache file %s: %s", path, exc)
        self.misses += 1
        vecs = _encode_quietly(encode, texts)
        self._store(path, vecs)
        return vecs

    def _store(self, path: Path, vecs: np.ndarray) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.asarray(vecs, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk must not fail the evaluation
            logger.warning("could not write embedding cache %s: %s", path, exc)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r}, enabled={self.enabled})"


def _prompt(encoder: MatryoshkaEncoder, side: Side) -> tuple[str | None, str]:
    """The prompt (name, text) a :class:`medrag.MatryoshkaEmbeddings` puts before the texts of ``side``:
    it decides the vectors as much as the weights do, and it can be chosen per instance. Any other
    encoder's fingerprint alone identifies its vectors."""
    if not isinstance(encoder, MatryoshkaEmbeddings):
        return None, ""
    name = encoder.query_prompt_name if side == "query" else encoder.document_prompt_name
    return name, (encoder.model.prompts or {}).get(name or "", "")
