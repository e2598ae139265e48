"""Encodings kept on disk until a new collection's first write is stored.

A new :class:`~medrag.store.MatryoshkaChroma` collection fits its coarse stage on its first write,
which therefore holds the first 4,096 chunks (:meth:`~medrag.store.MatryoshkaChroma.next_write_size`):
they are all encoded before anything is stored, so a ``medrag index`` killed meanwhile lost tens of
minutes of a CPU's work, and its rerun encoded them again (user tryout). :class:`CheckpointedEncoder`
wraps the store's encoder for that first write: it encodes in slices and saves each slice's vectors
under the cache root (``$MEDRAG_CACHE/index-checkpoints/``, outside the store: a failed run that
removes the collection it created keeps them), keyed by the store's location, the collection and
the model's fingerprint; a rerun reads them back instead of encoding those texts again, and the
folder is removed once the first write is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Texts encoded (and saved) per slice: a kill loses at most one slice's encoding.
SLICE = 256  # or the encoder's batch_size when larger
FOLDER = "index-checkpoints"


def checkpoint_folder(store: Any, cache_root: Path) -> Path | None:
    """The folder keeping ``store``'s first-write encodings, or None for an in-memory client (its data
    dies with the process: nothing to resume)."""
    from medrag._chroma_client import _persist_directory

    client = store._client
    persist = _persist_directory(client)
    if persist is not None:
        where = "embedded:" + os.path.realpath(persist)
    else:
        try:
            settings = client.get_settings()
        except Exception:  # a client without settings: no stable location to key on
            return None
        host = getattr(settings, "chroma_server_host", None)
        if not host:
            return None
        where = (f"server:{host}:{getattr(settings, 'chroma_server_http_port', '')}:"
                 f"{getattr(client, 'tenant', '')}:{getattr(client, 'database', '')}")
    key = "\x00".join([where, store._collection_name, *encoding_identity(store._encoder)])
    return cache_root / FOLDER / hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def encoding_identity(encoder: Any) -> list[str]:
    """What decides a document's vector besides its text: the weights' fingerprint, and, where the
    encoder has them, its document prompt and token window (the fingerprint hashes neither: a rerun
    with another prompt must not read the first run's vectors back: review)."""
    parts = [str(encoder.fingerprint)]
    name = getattr(encoder, "document_prompt_name", None)
    prompts = getattr(getattr(encoder, "model", None), "prompts", None)
    if name is not None or prompts:
        parts.append(f"prompt={name}:{(prompts or {}).get(name) if name else ''}")
    try:
        parts.append(f"max_tokens={getattr(encoder, 'max_tokens', None)}")
    except Exception:  # noqa: BLE001  (a property that cannot answer: left out of the key)
        pass
    return parts


class CheckpointedEncoder:
    """A :class:`~medrag.encoder.MatryoshkaEncoder` that saves the document vectors it encodes in
    ``folder`` and reads back those saved by an earlier, interrupted run (see the module docstring).

    Args:
        inner: the encoder that encodes (its ``spec``, ``fingerprint``, sizes and query side are used as they are).
        folder: where the slices are saved (one ``.npz`` file each, written whole or not at all).
    """

    def __init__(self, inner: Any, folder: Path) -> None:
        self.inner = inner
        self.folder = folder
        self.reused = 0
        self._saving = True  # off after a failed save: the checkpoint is a help, never a reason to fail
        self._vectors: dict[str, np.ndarray] = {}
        try:
            parts = sorted(folder.glob("part-*.npz")) if folder.is_dir() else []
        except OSError as exc:
            logger.warning("cannot read the kept encodings in %s (%s): the first write is encoded whole", folder, exc)
            parts = []
        for part in parts:
            try:
                with np.load(part) as data:
                    keys, vectors = data["keys"].tolist(), data["vectors"]
            except Exception as exc:  # noqa: BLE001  (a damaged slice is encoded again, not fatal)
                logger.debug("ignoring the unreadable checkpoint slice %s: %s", part, exc)
                continue
            if vectors.ndim == 2 and len(keys) == len(vectors) and vectors.shape[1] == inner.full_dim:
                self._vectors.update(zip(keys, vectors))
            else:
                logger.debug("ignoring the checkpoint slice %s: %d keys for vectors of shape %s", part, len(keys),
                             vectors.shape)
        self._kept = frozenset(self._vectors)  # read from an interrupted run: what `reused` counts
        self._parts = 0
        if self._vectors:
            logger.info("%d encodings of an interrupted first write found in %s: not encoded again",
                        len(self._vectors), folder)

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def full_dim(self) -> int:
        return self.inner.full_dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def __getattr__(self, name: str) -> Any:  # batch_size, check_texts, dims...: the inner encoder's
        if name == "inner":  # not set yet (a copy, a pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """The vectors of ``texts``: saved ones read back, the others encoded in slices, each saved."""
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._vectors))
        # a text this run encoded already (a repeated header in a later slice) is not "reused" (review)
        self.reused += sum(1 for k in keys if k in self._kept)
        first_text = dict(zip(keys, texts))
        step = max(SLICE, int(getattr(self.inner, "batch_size", 0) or 0))  # a GPU's larger batch kept (review)
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            rows = np.asarray(self.inner.encode_documents([first_text[k] for k in batch]), dtype=np.float32)
            self._save(batch, rows)
            self._vectors.update(zip(batch, rows))
        if not keys:
            return np.zeros((0, self.full_dim), np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def _save(self, keys: list[str], rows: np.ndarray) -> None:
        """Write one slice (to a temporary name, then renamed: a kill leaves it whole or absent); a
        failure (an unwritable cache, a full disk) is logged once and saving stops."""
        if not self._saving:
            return
        self._parts += 1
        # named by process too: two runs on one server collection overwrote each other's slices (review)
        final = self.folder / f"part-{os.getpid()}-{self._parts:06d}.npz"
        tmp = self.folder / f".tmp-{os.getpid()}-{final.name}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.asarray(keys), vectors=rows)
            os.replace(tmp, final)
        except OSError as exc:
            self._saving = False
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            logger.warning("cannot keep the first write's encodings in %s (%s): indexing goes on, but a run "
                           "interrupted before that write is stored will encode them again", self.folder, exc)

    def remove(self) -> None:
        """Delete the saved slices (the first write is stored)."""
        shutil.rmtree(self.folder, ignore_errors=True)
