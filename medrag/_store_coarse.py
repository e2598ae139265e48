"""The store's coarse stage: the first ``coarse_dim`` coordinates, or a projection fitted on the first write.

A new collection's stage 1 searches ``coarse_dim`` (64) coordinates per vector. With
``coarse_rotation`` ``"pca"`` or ``"learned"`` (``"auto"``: learned from 1,000 texts on) they come
from a projection (:mod:`medrag.coarse`) fitted once on the collection's first write (or
``rotation_sample``) and recorded in its metadata (:data:`~medrag._store_contract.ROTATION_KEY`);
refitting means ``reindex``. The reasons and the measured recall are in ``docs/store.md`` and
``docs/benchmarks.md``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence

import numpy as np

from medrag._store_checks import _check_int
from medrag._store_contract import _C, AUTO_LEARNED_MIN_TEXTS, ROTATION_KEY
from medrag.coarse import (LEARNED_STEPS, CoarseProjection, fit_learned, fit_pca, fit_sample_size, learned_steps,
                           min_vectors, pseudo_queries, sample_indices)
from medrag.encoder import is_encoder
from medrag.errors import CollectionMismatchError, DimensionError, InvalidInputError, StoreError, checked_arguments
from medrag.precomputed import PrecomputedEmbeddings

logger = logging.getLogger("medrag.store")  # the store's messages keep one logger name


class CoarseStage:
    """The coarse-stage part of :class:`~medrag.store.MatryoshkaChroma`: fitting, recording and applying
    its stage-1 projection (see the module docstring).

    A mixin: it holds no state of its own. Every attribute its methods use is set in
    ``MatryoshkaChroma.__init__`` (``tests/test_architecture.py`` checks it), so that one place lists a
    store's state."""

    def _encode_pseudo_queries(self, queries: list[str]) -> np.ndarray:
        """The learned coarse fit's pseudo-queries encoded as queries (as documents for LangChain
        embeddings, which have no batch query call), with a progress bar of their own when the write
        shows one: encoding them is most of the fit's time (a minute for 1,000 texts on 2 cores)."""
        query = is_encoder(self._encoder)
        if not self._fit_progress:
            return self._encode(queries, query=query)
        from tqdm.auto import tqdm

        logger.info("fitting the learned coarse stage of %r (once per collection): encoding %d pseudo-queries",
                    self._collection_name, len(queries))
        with tqdm(total=len(queries), desc=f"coarse stage of {self._collection_name} (once)", unit="query") as bar:
            return self._encode_in_slices(queries, query=query, progress=bar.update)

    def _load_rotation(self) -> None:
        """Read a fitted rotation from the collection metadata (None while not fitted yet); an
        ``"auto"`` store first takes the kind another client decided, if one has."""
        meta = self._current_metadata()
        self._adopt_recorded(meta)
        data = meta.get(ROTATION_KEY)
        if not data or self._rotation_kind == "none":
            return
        try:
            self._rotation = CoarseProjection.from_bytes(base64.b64decode(data, validate=True), self._full_dim,
                                                         self._coarse_dim)
        except (ValueError, TypeError, CollectionMismatchError) as exc:
            raise CollectionMismatchError(f"the coarse projection stored in collection {self._collection_name!r} is "
                                          "corrupt; reindex into a new collection") from exc

    @property
    def _auto_needed(self) -> int:
        """Texts the first write of an ``"auto"`` store needs to decide ``"learned"``."""
        return max(AUTO_LEARNED_MIN_TEXTS, min_vectors("learned", self._coarse_dim))

    def _settle_coarse_stage(self, full: np.ndarray, texts: list[str]) -> None:
        """The first write (or ``rotation_sample``) fits the pending coarse stage, or decides
        ``"auto"``, unless another client of the collection did first; under the folder's write
        lock, so that no other write of this process reads it half-decided."""
        with self._write_guard:
            self._load_rotation()
            if self._rotation_kind != "none" and self._rotation is None:
                self._check_writer()  # recording the fitted stage is a write (rotation_sample= in a non-holder)
                self._fit_or_resolve(full, texts)

    @checked_arguments
    def next_write_size(self, batch_size: int) -> int:
        """How many texts the next write should hold: ``batch_size``, or, while the coarse stage
        waits for the first write to be fitted on (or decided, ``"auto"``),
        :func:`medrag.coarse.fit_sample_size` texts (4,096) when that is more. ``add_texts`` sizes
        its first write so; callers that stream texts in (``index_corpus``, :meth:`reindex`)
        gather that many before their first call.

        Args:
            batch_size: texts per write once the coarse stage is fitted (an int >= 1).
        """
        batch_size = _check_int("batch_size", batch_size)
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if self.rotation_fitted:
            return batch_size
        return max(batch_size, fit_sample_size(self._rotation_kind, self._coarse_dim))

    def _fit_or_resolve(self, full: np.ndarray, texts: list[str]) -> None:
        """Fit the pending projection on ``texts``; ``"auto"`` first decides which (see
        :data:`AUTO_LEARNED_MIN_TEXTS`) and records ``"none"`` like a fitted projection."""
        if self._rotation_kind != "auto":
            self._fit_rotation(full, texts)
            return
        needed = self._auto_needed
        kind = "learned" if len(full) >= needed else "none"
        logger.info("coarse_rotation='auto' on %r: %s (the first write holds %d texts; 'learned' needs %d%s)",
                    self._collection_name, kind, len(full), needed,
                    "" if kind == "learned" else ": for a large corpus, write it in one call (LangChain's index(): "
                    "batch_size=4096) or pass rotation_sample=")
        try:
            if kind == "learned":
                self._rotation_kind = kind
                self._fit_rotation(full, texts)
                return
            meta = self._current_metadata()
            if meta.get(_C["rotation"], "none") != "auto":  # another client decided first: use theirs
                self._load_rotation()
                if self._rotation_kind == "learned" and self._rotation is None:  # decided, not recorded yet
                    raise StoreError(f"another client is fitting the coarse stage of {self._collection_name!r}; "
                                     "retry the write")
                return
            meta[_C["rotation"]] = "none"
            self._chroma_call("record the coarse stage", self._collection.modify, metadata=meta)
            self._rotation_kind = "none"  # only once recorded: no record is written under an unrecorded stage
            self._unconfirmed = ("none", None)  # checked after the next write
        except BaseException:
            if self._rotation is None:
                self._rotation_kind = "auto"  # nothing recorded: the next write decides again
            raise

    def _fit_rotation(self, full: np.ndarray, texts: list[str]) -> None:
        """Fit the coarse projection on the full vectors of ``texts`` and record it in the contract
        (before any write). A learned one is fitted for the queries the store will see:
        :func:`medrag.coarse.pseudo_queries` of the texts it fits on, encoded with the query prompt
        (one batch call for a :class:`~medrag.encoder.MatryoshkaEncoder`; LangChain embeddings, which
        have no batch query call, embed them as documents; :class:`~medrag.PrecomputedEmbeddings`
        without a fallback cannot encode them, and the passages serve as queries)."""
        needed = min_vectors(self._rotation_kind, self._coarse_dim)
        if len(full) < needed:
            raise InvalidInputError(
                f"coarse_rotation={self._rotation_kind!r} is fitted on the first batch written, which has {len(full)} "
                f"texts; it needs at least {needed}. Add more texts at once, pass rotation_sample=, or use "
                "coarse_rotation='auto' (medrag index --coarse-rotation auto), which falls back to the raw prefix "
                "for a small first write; an empty collection takes the new setting"
            )
        if self._rotation_kind == "pca":
            rotation = fit_pca(full, self._coarse_dim)
        else:
            keep = sample_indices(len(texts))  # the rows fit_learned uses, and their texts
            full, texts = full[keep], [texts[i] for i in keep]
            try:
                queries = self._encode_pseudo_queries(pseudo_queries(texts))
            except InvalidInputError:  # only vectors looked up by text may lack the spans'
                if not (isinstance(self._encoder, PrecomputedEmbeddings) and self._encoder.fallback is None):
                    raise
                logger.warning("PrecomputedEmbeddings without a fallback has no query vectors for the "
                               "pseudo-queries of the learned coarse fit (medrag.coarse.pseudo_queries): the "
                               "passages serve as queries instead (lower recall measured); pass fallback= the "
                               "model that made the vectors, or give it the spans' query vectors")
                queries = None
            # the steps per model kind were chosen for pseudo-queries; the passages-as-queries
            # objective keeps its own 10 (more degraded it: docs/benchmarks.md, "Coarse stage")
            steps = (LEARNED_STEPS if queries is None
                     else learned_steps(bool(getattr(self._embedding, "matryoshka_trained", False))))
            rotation = fit_learned(full, self._coarse_dim, queries=queries, steps=steps)
        meta = self._current_metadata()
        if meta.get(ROTATION_KEY):  # another client fitted it first: use theirs
            self._load_rotation()
            return
        if meta.get(_C["rotation"], "none") == "none":  # another "auto" client decided "none" first
            self._rotation_kind = "none"
            return
        meta[ROTATION_KEY] = base64.b64encode(rotation.to_bytes()).decode()
        meta[_C["rotation"]] = self._rotation_kind
        self._chroma_call("record the coarse projection", self._collection.modify, metadata=meta)
        self._rotation = rotation
        self._unconfirmed = (self._rotation_kind, meta[ROTATION_KEY])  # checked after the next write
        logger.info("fitted the %s-%d coarse projection of %r on %d vectors", self._rotation_kind, self._coarse_dim,
                    self._collection_name, len(full))

    def coarse_vectors(self, full: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """The stage-1 vectors this store indexes and searches with for full-size vectors: the first
        :attr:`coarse_dim` coordinates, or the collection's fitted projection (:attr:`coarse_rotation`),
        unit length. An exact numpy copy of the funnel (``evaluation.store_eval``) ranks with these.

        Args:
            full: ``(n, full_dim)`` full-size vectors (a single vector as ``(full_dim,)`` too).

        Raises:
            DimensionError: the vectors are not of the store's full size.
            InvalidInputError: a ``"pca"`` or ``"learned"`` stage not fitted yet (nothing written).
        """
        try:
            arr = np.asarray(full, dtype=np.float32)
        except (TypeError, ValueError) as exc:  # ragged rows, text
            raise DimensionError(f"coarse_vectors takes an (n, {self._full_dim}) array of numbers: {exc}") from None
        single = arr.ndim == 1
        arr = arr[None, :] if single else arr
        if arr.ndim != 2 or arr.shape[1] != self._full_dim:
            raise DimensionError(f"coarse_vectors takes vectors of the store's full size {self._full_dim}, got an "
                                 f"array of shape {np.shape(full)}")
        out = self._coarse(arr)
        return out[0] if single else out

    def _coarse(self, full: np.ndarray) -> np.ndarray:
        if self._rotation_kind != "none" and self._rotation is None:
            self._load_rotation()
        if self._rotation is not None:
            return self._rotation.project(full)
        if self._rotation_kind in ("pca", "learned"):
            raise InvalidInputError(f"collection {self._collection_name!r} uses a {self._rotation_kind} coarse stage "
                                    "that is not fitted yet: add texts first (or pass rotation_sample=)")
        # "none", or "auto" before the first write decided: nothing is stored that a projection indexed
        out = np.array(full[:, : self._coarse_dim], dtype=np.float32, copy=True, order="C")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    def _confirm_coarse_stage(self, recorded: tuple[str, str | None], ids: list[str], full: np.ndarray) -> None:
        """After the first write since this store recorded the coarse stage (a fitted projection,
        ``"auto"``'s decision of ``"none"``, or a ``rotation_sample=`` fit at its opening: ``recorded``
        is the kind and the projection's data), check that the collection still records it; if another
        client recorded its own meanwhile, take the recorded stage, project these records (``ids``,
        their ``full`` vectors) with it and rewrite their coarse vectors, under the write guard (the
        caller holds it: the other threads' writes project after it).

        Chroma has no compare-and-set: two server clients making the first write of a new collection
        at once each read "not fitted", each fitted for a minute and recorded theirs, the last one
        winning; the other's records stayed in the HNSW index under a projection no query uses, found
        by nothing (2 runs of 5 with two writers of 1,200 texts: ops tryout). A writer whose read of
        "not fitted" comes before the other's record but whose record lands after this check is not
        caught (a stall between one metadata read and the next write: not seen).
        """
        for _ in range(3):
            meta = self._current_metadata()
            now = (meta.get(_C["rotation"], "none"), meta.get(ROTATION_KEY))
            if now == recorded:
                return
            if now[0] != "none" and now[1] is None:  # reset meanwhile (its records gone with it), or refitting
                return
            self._rotation_kind, self._rotation = now[0], None
            if now[0] != "none":
                self._load_rotation()
            logger.warning("another client recorded its coarse stage of %r (%s) while this one wrote its first "
                           "batch under its own (%s): the %d records of that batch are projected again with the "
                           "recorded one", self._collection_name, now[0], recorded[0], len(ids))
            self._chroma_call("write the coarse vectors again", self._collection.update, ids=ids,
                              embeddings=self._coarse(full))
            recorded = now
        logger.error("the coarse stage of %r kept changing while this client wrote its first batch: several clients "
                     "are making its first write at once, and records may be under a stage no query uses; reindex it "
                     "once the writes are done (MatryoshkaChroma.reindex), and make a new collection's first write "
                     "from one client", self._collection_name)
