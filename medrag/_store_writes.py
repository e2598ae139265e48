"""The store's writes: encoding texts, checking a whole call, and writing records with their full vectors.

A write of :class:`~medrag.store.MatryoshkaChroma` checks every entry first (``_store_checks.py``),
skips ids already stored when asked (resumable ingest, without re-encoding them), encodes the rest,
and upserts each record with its coarse vector (HNSW) and its packed full vector (metadata) in one
call, inside a write generation (``_store_generation.py``). A re-add of an existing id replaces the
record, as langchain-chroma users expect. Deletes and updates go through the same path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import numbers
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document

from medrag._chroma_client import _filter_keys
from medrag._store_checks import (_check_documents, _check_ids, _check_int, _check_metadata, _check_no_nul,
                                  _entry_names, _no_extra, _plain, _vector_rows)
from medrag._store_contract import FULL_KEY
from medrag.embeddings import check_utf8 as _check_utf8
from medrag.embeddings import validate_texts
from medrag.encoder import is_encoder
from medrag.encoding import stderr_is_terminal
from medrag.errors import DimensionError, InvalidInputError, MedragError, StoreError, _WriteStopped, checked_arguments
from medrag.flags import check_flag
from medrag.vector_codec import pack_rows

logger = logging.getLogger("medrag.store")  # the store's messages keep one logger name

#: Records a write sends to Chroma per call (an ``add_texts`` without ``batch_size``; a copy, a repair).
_WRITE_BATCH = 1000
#: A write of at least this many records shows a progress bar when stderr is a terminal (a reindex too; a repair
#: from ten times as many).
_PROGRESS_MIN = 1000
#: With a progress bar, a write's texts are encoded this many at a time, so the bar moves during a
#: long first write (the coarse stage is fitted on 4,096 texts written as one batch: minutes on a CPU).
_PROGRESS_SLICE = 256
#: An async write's texts are encoded this many at a time (or the encoder's ``batch_size``), and it
#: stops between two slices when its task is cancelled (:meth:`MatryoshkaChroma.aadd_texts`); a model
#: encodes one call at a time, and a service's search waited for a whole write batch (up to 4,096
#: texts: 13-18 s on 2 cores for 600) behind it (user tryout). A sync write makes one call per batch
#: (an API embedder batches its requests; the truncation warning counts the whole batch).
_SHARE_SLICE = 64


def _content_hash(text: str, metadata: dict[str, Any]) -> str:
    payload = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _same_metadata(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """Whether a stored record's metadata (the store's keys aside) is ``given`` (None values: no key)."""
    return ({k: v for k, v in stored.items() if k != FULL_KEY}
            == {k: _plain(v) for k, v in given.items() if v is not None})

class RecordWrites:
    """The write part of :class:`~medrag.store.MatryoshkaChroma` (see the module docstring).

    A mixin: it holds no state of its own. Every attribute its methods use is set in
    ``MatryoshkaChroma.__init__`` (``tests/test_architecture.py`` checks it), so that one place lists a
    store's state."""

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        self._check_process()
        emb = self._encoder
        if is_encoder(emb):
            rows = emb.encode_queries(texts) if query else emb.encode_documents(texts)
        elif query:
            rows = [emb.embed_query(t) for t in texts]
        else:
            rows = emb.embed_documents(texts)
        vecs = _vector_rows(rows, self._full_dim)
        if vecs.ndim != 2 or vecs.shape != (len(texts), self._full_dim):
            raise DimensionError(
                f"the embeddings returned shape {vecs.shape}, expected ({len(texts)}, {self._full_dim})"
            )
        if not np.isfinite(vecs).all():
            raise MedragError("the embeddings returned NaN or infinite values")
        # the norms in float64: valid float32 vectors of huge or tiny values (1e20, 1e-25) overflowed to inf or
        # underflowed to 0 in float32 and were refused as "all-zero vectors" (user tryout)
        norms = np.linalg.norm(vecs.astype(np.float64), axis=1, keepdims=True)
        return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)  # float32, as vecs

    def _encode_in_slices(self, texts: list[str], *, query: bool, progress: Callable[[int], Any] | None) -> np.ndarray:
        """:meth:`_encode`: in one call; with ``progress``, one call per :data:`_PROGRESS_SLICE` texts,
        each reported to ``progress``; in an async write, one call per :data:`_SHARE_SLICE` texts (the
        encoder's ``batch_size`` if larger: a GPU user's larger batch keeps its throughput), and a
        cancelled one stops between two slices (:meth:`aadd_texts`), before its batch is written."""
        sliced = progress is not None or getattr(self._stop, "event", None) is not None
        if not texts or not sliced:
            return self._encode(texts, query=query)
        step = max(_PROGRESS_SLICE if progress is not None else _SHARE_SLICE,
                   int(getattr(self._encoder, "batch_size", 0) or 0))
        parts = []
        for start in range(0, len(texts), step):
            self._check_stop()
            parts.append(self._encode(texts[start:start + step], query=query))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts)

    def _check_stop(self) -> None:
        """Stop the write this thread runs for a cancelled :meth:`aadd_texts` (:class:`_WriteStopped`)."""
        event = getattr(self._stop, "event", None)
        if event is not None and event.is_set():
            raise _WriteStopped

    @staticmethod
    def content_id(text: str, metadata: dict[str, Any] | None = None) -> str:
        """A deterministic id for a text and its metadata (SHA-256 based, 32 hex chars).

        ``None`` values count as absent keys, as Chroma stores them: ``{"page": None}`` and ``{}``
        are one record (they were two ids, so re-adding a text without its empty field stored it
        twice); numpy values (a pandas row's) count as the Python values :meth:`add_texts` stores.

        Raises:
            InvalidInputError: ``text`` is not a str, or ``metadata`` not a dict.
        """
        if not isinstance(text, str):
            raise InvalidInputError(f"content_id takes the text (a str), got {type(text).__name__}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputError(f"content_id takes the metadata as a dict or None, got {type(metadata).__name__}")
        kept = {k: _plain(v) for k, v in (metadata or {}).items() if v is not None}  # np.int64(3) is stored as 3
        return _content_hash(text, kept)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        skip_existing: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Encode texts once and write them (coarse vector + packed full vector per record).

        The whole call is validated before the first write (texts, ids, metadata keys and
        values as Chroma checks them, batch size; errors name the index in the call): a
        rejected call changes nothing stored. An existing id is *replaced*: text, vectors and
        metadata (keys absent from the new metadata are removed, as langchain-chroma does); when
        its text is unchanged it keeps its stored vectors, unencoded, so a metadata-only change
        costs no model call.
        When the same id appears twice in one call, the last one wins.

        **Idempotent ingest.** Texts added without ids get a content id
        (:meth:`content_id`: SHA-256 of text and metadata; ``deterministic_ids=False`` gives
        random UUIDs instead). A content id that is already stored holds this very text and
        metadata, so it is skipped *without being encoded*; ``skip_existing=True`` does the
        same for caller ids (resuming an ingest keyed by your own ids). Re-running an
        interrupted ingest therefore neither duplicates nor re-encodes what was stored.

        Writing goes batch by batch: a failure during a later batch (the model or Chroma
        raising, embeddings that return an all-zero vector, which only encoding reveals, the
        process killed) leaves the earlier batches stored, each record complete.

        Example::

            >>> ids = store.add_texts(["Ferritine basse.", "CRP élevée."], [{"src": "cours"}] * 2)
            >>> store.add_texts(["Ferritine basse.", "CRP élevée."], [{"src": "cours"}] * 2) == ids
            True

        Args:
            texts: the texts (non-empty strings).
            metadatas: one metadata dict per text (values as Chroma accepts: str, int, float,
                bool, None or non-empty lists of one of those types; floats finite). Keys may not
                be empty, start with ``$`` or ``#``, or start with ``_medrag`` (reserved).
            ids: one id per text (``None`` entries or no list: content ids, or random UUIDs with
                ``deterministic_ids=False``).
            batch_size: texts encoded (one model call) and upserted (one Chroma call) together;
                default 1,000, capped by the client's ``get_max_batch_size()``. While a fitted
                coarse projection waits for its first write, the first batch holds
                :func:`medrag.coarse.fit_sample_size` texts (4,096) to fit it on.
            show_progress: tqdm progress bar (default: for 1,000 texts or more, when stderr is a
                terminal); with it, texts
                are encoded 256 at a time so that it moves during a large batch.
            skip_existing: skip caller ids already stored (content ids are always skipped).

        Returns:
            The ids, in the order of ``texts``.

        Raises:
            InvalidInputError: empty or non-UTF-8 text (or one that is only the model's prompt),
                length mismatch, invalid metadata or id, bad ``batch_size``; an all-zero vector
                from the embeddings (that batch is not written).
            StoreLockedError: another process has this embedded persist directory open.
            StoreConnectionError: the Chroma server could not be reached.
        """
        _no_extra(kwargs, "add_texts()")
        skip_existing = check_flag("skip_existing", skip_existing)  # "false" skipped the update in silence
        check_flag("show_progress", show_progress, none=True)
        # a blank text named by its index in this call only: LangChain's index() adds in batches of 100, so a
        # blank page 130 of a PDF loader's documents was "index 30" (user tryout): its id and source too
        texts = validate_texts(texts, one_text_hint="wrap a single text in a list: [text]",
                               describe=lambda i: _entry_names(i, ids, metadatas),
                               blank_hint="; leave empty documents out before adding them (LangChain: "
                                          "[d for d in docs if d.page_content.strip()]): nothing was written")
        check = getattr(self._encoder, "check_texts", None)  # what the model cannot encode ("passage: " alone)
        if callable(check):
            check(texts)
        n = len(texts)
        batch = _WRITE_BATCH if batch_size is None else _check_int("batch_size", batch_size)
        if batch < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch}")
        if metadatas is None:
            metadatas = [{} for _ in texts]
        if isinstance(metadatas, dict):
            raise InvalidInputError("metadatas must be a list with one dict per text, got one dict")
        if hasattr(metadatas, "to_dict") and hasattr(metadatas, "columns"):  # iterating it gave its column names
            raise InvalidInputError("metadatas must be a list with one dict per text, got a DataFrame: pass "
                                    "df.to_dict('records')")
        metadatas = list(metadatas)
        if len(metadatas) != n:
            raise InvalidInputError(f"got {len(metadatas)} metadatas for {n} texts")
        if ids is not None and not isinstance(ids, (str, bytes)):
            ids = list(ids)  # once: an iterator of ids read here for the errors' names was empty below
        named = ids if isinstance(ids, list) else []
        for i, md in enumerate(metadatas):  # named by its id too: a pandas user looks for the doc_id, not a position
            metadatas[i] = _check_metadata(md, i, named[i] if i < len(named) and isinstance(named[i], str) else None)
        if ids is None:
            ids = [None] * n  # type: ignore[list-item]
        if isinstance(ids, (str, bytes)):
            raise InvalidInputError(f"ids must be a list with one id per text, not a bare string: write [{ids!r}]")
        ids = list(ids)
        if len(ids) != n:
            raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
        generated = [id_ is None for id_ in ids]
        for i, id_ in enumerate(ids):
            if id_ is None:
                ids[i] = self.content_id(texts[i], metadatas[i]) if self._deterministic_ids else str(uuid.uuid4())
            elif not isinstance(id_, str) or not id_:
                raise InvalidInputError(f"id at index {i} must be a non-empty string, got {id_!r}" + (
                    " (ids from a column of numbers: pass them as text, df['id'].astype(str).tolist())"
                    if isinstance(id_, numbers.Number) and not isinstance(id_, bool) else ""))
            else:
                _check_utf8(id_, f"id at index {i}")
                _check_no_nul(id_, i)
                ids[i] = str(id_)  # numpy's np.str_ (ids from an array) as plain str
        if n == 0:
            return []
        if self._deterministic_ids:
            self._keep_legacy_content_ids(ids, texts, metadatas, generated)
        self._check_writer()
        # Upsert semantics inside one call too: the last occurrence of an id wins.
        last = {id_: i for i, id_ in enumerate(ids)}
        order = [i for i, id_ in enumerate(ids) if last[id_] == i]
        repeated = [i for i, id_ in enumerate(ids) if last[id_] != i and not generated[i]]
        if repeated:  # a doc_id twice in an export is a data problem: one of the rows was lost in silence (user tryout)
            logger.warning("%d id(s) given more than once in this call (e.g. %r at indexes %d and %d): the last "
                           "text of each is stored, the earlier ones are not", len({ids[i] for i in repeated}),
                           ids[repeated[0]], repeated[0], last[ids[repeated[0]]])
        skippable = {i for i in order if skip_existing or (generated[i] and self._deterministic_ids)}

        max_batch = self._max_batch()
        batch = min(batch, max_batch)
        show = show_progress if show_progress is not None else len(order) >= _PROGRESS_MIN and stderr_is_terminal()
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc=f"adding to {self._collection_name}", unit="text")
        self._fit_progress = bar is not None  # the learned coarse fit shows its own bar (it took a silent minute)
        # a coarse projection still to fit is fitted on the first batch, whatever batch_size ("auto":
        # when this call holds enough texts to decide "learned"; else it decides "none" on the first batch)
        auto_none = self._rotation_kind == "auto" and len(order) < self._auto_needed
        size = batch if auto_none else min(self.next_write_size(batch), max_batch)
        try:
            start = 0
            while start < len(order):
                self._check_stop()
                idx = order[start : start + size]
                stored = self._stored_metadatas([ids[i] for i in idx])
                # a content id is skipped only while it holds its text and metadata (update_documents
                # may have rewritten it); a caller id with skip_existing whenever it is stored
                recheck = [ids[i] for i in idx if i in skippable and generated[i] and ids[i] in stored]
                stored_texts = self._stored_texts(recheck) if recheck else {}
                todo = [i for i in idx if not (i in skippable and ids[i] in stored and (
                    not generated[i] or (stored_texts.get(ids[i]) == texts[i]
                                         and _same_metadata(stored[ids[i]], metadatas[i]))))]
                encoded = self._write(todo, ids, texts, metadatas, stored,
                                      progress=None if bar is None else bar.update) if todo else 0
                if bar is not None and len(idx) > encoded:
                    bar.update(len(idx) - encoded)
                start, size = start + len(idx), batch
        finally:
            if bar is not None:
                bar.close()
            self._fit_progress = False
            self._lexical.write_done()
        return ids

    def _keep_legacy_content_ids(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]],
                                 generated: list[bool]) -> None:
        """Until December 4 a content id hashed ``None`` metadata values too: a record stored under
        such an id keeps it (it is then skipped as unchanged) instead of being stored a second time."""
        legacy = [(i, _content_hash(texts[i], metadatas[i])) for i, new in enumerate(generated)
                  if new and any(v is None for v in metadatas[i].values())]
        if not legacy:  # the common case: no None value, no read
            return
        step = self._max_batch()
        for start in range(0, len(legacy), step):
            chunk = legacy[start:start + step]
            found = self._stored_metadatas([old for _, old in chunk])
            for i, old in chunk:
                if old in found:
                    ids[i] = old

    def _stored_metadatas(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The metadata of those ids that are already stored (one Chroma ``get``)."""
        res = self._chroma_call("read existing records", self._collection.get, ids=ids, include=["metadatas"])
        return {id_: md or {} for id_, md in zip(res["ids"], res["metadatas"])}

    def _stored_texts(self, ids: list[str]) -> dict[str, str]:
        """The texts of those ids that are stored (one Chroma ``get``)."""
        res = self._chroma_call("read existing records", self._collection.get, ids=ids, include=["documents"])
        return {id_: text for id_, text in zip(res["ids"], res["documents"])}

    def _write(self, idx: list[int], ids: list[str], texts: list[str], metadatas: list[dict[str, Any]],
               stored: dict[str, dict[str, Any]], progress: Callable[[int], Any] | None = None) -> int:
        """Encode one batch (one model call; with ``progress``, one call per :data:`_PROGRESS_SLICE`
        texts or the encoder's ``batch_size`` if larger, each reported to ``progress``) and upsert it
        (one Chroma call); returns how many texts were encoded and reported. A stored record whose
        text is unchanged keeps its stored vectors, unencoded: a metadata-only change (a new field,
        an edited value) costs no model call."""
        kept = self._reusable_vectors({ids[i]: texts[i] for i in idx if ids[i] in stored}, stored)
        fresh = [i for i in idx if ids[i] not in kept]
        vectors: dict[str, tuple[bytes, np.ndarray | None]] = dict(kept)
        full = np.zeros((0, self._full_dim), dtype=np.float32)
        if fresh:
            full = self._encode_in_slices([texts[i] for i in fresh], query=False, progress=progress)
            zero = np.flatnonzero(~full.any(axis=1))
            if zero.size:  # no direction: stored, its packed vector read as corrupt and broke every search reaching it
                first = fresh[int(zero[0])]
                raise InvalidInputError(f"the embeddings returned an all-zero vector for the text at index {first} "
                                        f"({texts[first][:60]!r}; {zero.size} such text(s) in this batch), which "
                                        "cannot be compared by cosine; check the embedding model (or the precomputed "
                                        "vector) for that text. Nothing of this batch was written")
            if self._rotation_kind != "none" and self._rotation is None:
                self._settle_coarse_stage(full, [texts[i] for i in fresh])
            vectors.update(zip([ids[i] for i in fresh], zip(pack_rows(full, self._encoding), [None] * len(fresh))))
        fresh_ids = [ids[i] for i in fresh]
        raw = [vectors[ids[i]][0] for i in idx]
        packed = [base64.b64encode(r).decode("ascii") for r in raw]
        records = []
        for i, p in zip(idx, packed):
            # Chroma's upsert merges metadata; None removes a key: a re-add replaces the record.
            dropped = {key: None for key in stored.get(ids[i], {}) if key not in metadatas[i] and key != FULL_KEY}
            records.append({**dropped, **metadatas[i], FULL_KEY: p})
        batch_ids = [ids[i] for i in idx]
        batch_texts = [texts[i] for i in idx]
        with self._write_guard:
            # projected under the guard: another thread's write may have settled the stage differently
            # (_confirm_coarse_stage) since this batch was encoded
            if fresh_ids:
                vectors.update(zip(fresh_ids, ((vectors[id_][0], c) for id_, c in zip(fresh_ids, self._coarse(full)))))
            coarse = np.stack([vectors[ids[i]][1] for i in idx]).astype(np.float32, copy=False)
            # The generation is bumped before the write; one upsert writes the coarse vector, the
            # text and the full vector of each record together: no record is visible without its full vector.
            with self._generation_write() as generation:
                try:
                    if self._sidecar is not None:  # before the record: a kill never leaves a record without its copy
                        self._sidecar.put(self._cid, batch_ids, raw, batch_texts, [metadatas[i] for i in idx])
                    self._forget_in_other_copy(batch_ids)
                    self._chroma_call("write records", self._collection.upsert, ids=batch_ids, embeddings=coarse,
                                      documents=batch_texts, metadatas=records)
                except BaseException:
                    if self._sidecar is not None:  # the records may still hold their old values: read them from Chroma
                        try:
                            self._sidecar.delete(self._cid, batch_ids)
                            self._advance_stamp(generation)  # in step again: the rows left match the records
                        except StoreError as cleanup:  # the write's own error is the one to report; the copy
                            # stays behind its stamp, so the next open rebuilds it from the records
                            logger.warning("the vector copy could not be cleaned after the failed write: %s", cleanup)
                    raise
            if self._sidecar is not None:
                self._advance_stamp(generation)
            self._lexical.upserted(generation, batch_ids, batch_texts)
            if self._unconfirmed is not None and fresh_ids:
                recorded, self._unconfirmed = self._unconfirmed, None
                self._confirm_coarse_stage(recorded, fresh_ids, full)
        return len(fresh) if progress is not None else 0

    def _reusable_vectors(self, text_of: dict[str, str], stored: dict[str, dict[str, Any]]
                          ) -> dict[str, tuple[bytes, np.ndarray]]:
        """Packed full vector and coarse vector, as stored, of the stored records (``text_of``: id ->
        the text about to be written; ``stored``: their metadatas, already read) whose stored text is
        that text and whose stored vectors are sound (the collection's contract guarantees they come
        from this model). Nothing while the coarse stage waits to be fitted."""
        if not text_of:
            return {}
        if self._rotation_kind != "none" and self._rotation is None:
            self._load_rotation()
        if not self.rotation_fitted:
            return {}
        res = self._chroma_call("read existing records", self._collection.get, ids=list(text_of),
                                include=["documents", "embeddings"])
        coarse_of = {id_: np.asarray(e, dtype=np.float32) for id_, e in zip(res["ids"], res["embeddings"])}
        # the same text, and a packed vector medrag wrote (every record medrag writes carries one in
        # its metadata; one written by another tool has none and is encoded, as its error message advises)
        same = [id_ for id_, text in zip(res["ids"], res["documents"])
                if text == text_of.get(id_) and FULL_KEY in (stored.get(id_) or {})]
        blobs = self._full_blobs(same, stored) if same else {}
        readable = [id_ for id_ in same if blobs.get(id_) is not None]
        if not readable:
            return {}
        _, bad = self._decode_readable([blobs[id_] for id_ in readable])  # a corrupt one is encoded again
        corrupt = {readable[j] for j in bad}
        return {id_: (blobs[id_], coarse_of[id_]) for id_ in readable if id_ not in corrupt
                and coarse_of[id_].shape == (self._coarse_dim,) and np.isfinite(coarse_of[id_]).all()}

    def delete(self, ids: list[str] | None = None, *, where: dict[str, Any] | None = None,
               where_document: dict[str, Any] | None = None, unicode_spellings: bool = True,
               **kwargs: Any) -> bool | None:
        """Delete records by id, by filter, or the records of those ids that match a filter (as
        langchain-chroma passes ``where`` / ``where_document`` to Chroma). Unknown ids are ignored
        (a documented no-op).

        Example::

            store.delete(["fer", "tsh"])                    # by id
            store.delete(where={"status": "retracted"})     # every record matching a filter
            store.delete(["fer", "tsh"], where={"src": "a"})  # of those ids, the ones matching it

        Args:
            ids: the ids to delete (a list; use :meth:`delete_collection` to drop everything).
            where: a Chroma metadata filter; with ``ids``, only those of them that match it.
            where_document: a Chroma document filter (``{"$contains": "..."}``), likewise.
            unicode_spellings: a filter's strings match both their Unicode spellings (NFC, NFD:
                :mod:`medrag.unicode_filters`); False matches them as written, byte for byte (two
                folders whose names differ only in spelling, ``Médecine`` typed and copied from macOS).

        Returns:
            True.

        Raises:
            InvalidInputError: neither ids nor a non-empty filter, a bare string for ``ids``,
                an unknown keyword argument, or a filter Chroma rejects (nothing deleted).
        """
        _no_extra(kwargs, "delete()")
        unicode_spellings = check_flag("unicode_spellings", unicode_spellings)
        if ids is None and not where and not where_document:
            raise InvalidInputError("delete() needs a list of ids or a non-empty where= / where_document= filter; "
                                    "use delete_collection() to remove the whole collection")
        if ids is not None:
            ids = _check_ids(ids)
            for i, id_ in enumerate(ids):
                _check_utf8(id_, f"id at index {i}")
            ids = list(dict.fromkeys(ids))  # an id named twice is deleted once (Chroma refuses repeats)
        if ids is not None and not ids:
            return True
        # only the records that exist (and match): deleting nothing writes nothing, so derived data
        # (the lexical index, the vector copy, other clients' caches) is not made stale for nothing.
        # Looked up in batches: one get of 40,000 ids exceeds SQLite's limit of query variables.
        filters = {k: v for k, v in (("where", where), ("where_document", where_document)) if v}
        if ids is None:
            ids = self._chroma_call("find the records to delete", self._collection.get, where=where or None,
                                    where_document=where_document or None, include=[],
                                    user_filters=unicode_spellings)["ids"]
            nothing = "no stored record matches the filter"
        else:
            nothing = f"none of the {len(ids)} id(s) given is stored" + (" and matches the filter" if filters else "")
            ids = self._matching_ids(ids, where, where_document, "find the records to delete",
                                     unicode_spellings=unicode_spellings)
        if not ids:
            # an erasure that deletes nothing must not pass unnoticed (a misspelt key, a number stored as
            # text: user tryout); still True: LangChain's indexing API takes False for a failure
            # the filter's keys, not its values: a value may be a patient's identifier, kept out of the logs
            keys = sorted({key for f in filters.values() for key in _filter_keys(f)})
            logger.warning("delete() deleted nothing in collection %r: %s%s. Check the ids, or the filter's keys and "
                           "the types of its values (a number stored as text matches only as text)",
                           self._collection_name, nothing, f" (keys: {', '.join(keys)})" if keys else "")
        if ids:
            self._check_writer()
            max_batch = self._max_batch()
            try:
                for start in range(0, len(ids), max_batch):
                    batch = ids[start : start + max_batch]
                    with self._write_guard:
                        with self._generation_write() as generation:
                            # the copies first: one that cannot be written stops the delete before Chroma's
                            # (a copy without a record's row reads that record from Chroma)
                            self._forget_in_other_copy(batch)
                            if self._sidecar is not None:
                                self._sidecar.delete(self._cid, batch)
                            self._chroma_call("delete records", self._collection.delete, ids=batch)
                        if self._sidecar is not None:
                            self._advance_stamp(generation)
                        self._lexical.deleted(generation, batch)
            finally:
                self._lexical.write_done()
        return True

    @checked_arguments
    def update_documents(self, ids: Sequence[str], documents: Sequence[Document]) -> None:
        """Replace the text and metadata of existing records (re-encoded), as langchain-chroma's
        ``update_documents``; the whole record is replaced, no old metadata key survives.

        Args:
            ids: the ids of the records to replace, one per document.
            documents: their new contents.

        Raises:
            InvalidInputError: ``ids`` and ``documents`` differ in length, or an id is not stored
                (nothing is written: :meth:`add_documents` adds new records).
        """
        ids = _check_ids(ids)
        documents = _check_documents(documents)
        if len(ids) != len(documents):
            raise InvalidInputError(f"{len(ids)} ids for {len(documents)} documents: give one id per document")
        if not ids:
            return
        stored = set(self.get(ids=list(dict.fromkeys(ids)), include=[])["ids"])
        missing = [i for i in ids if i not in stored]
        if missing:
            raise InvalidInputError(f"update_documents: {len(missing)} id(s) not stored (e.g. {missing[:3]}); nothing "
                                    "was written. Use add_documents to add new records")
        self.add_texts([d.page_content for d in documents], metadatas=[dict(d.metadata or {}) for d in documents],
                       ids=ids)

    @checked_arguments
    def update_document(self, document_id: str, document: Document) -> None:
        """Replace one stored record: :meth:`update_documents` with one id."""
        self.update_documents([document_id], [document])

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """:meth:`add_texts` in an executor thread, stopped by the task's cancellation.

        LangChain's default ran the whole write in a thread that nothing stops: a request timed out
        (``asyncio.wait_for``) or cancelled kept writing for minutes, held the model so that searches
        waited, and wrote back records a rollback ``adelete`` had just removed (user tryout). Here a
        cancellation stops the write at its next slice of texts (:data:`_SHARE_SLICE`) or batch and
        **waits for it to stop** before ``CancelledError`` reaches the caller: what is stored then is
        the batches written before the cancellation, each whole (as after a kill), and nothing more is
        written afterwards. A rerun with the same ids (or content ids) completes it.

        Args:
            texts / metadatas / ids / kwargs: as :meth:`add_texts`.
        """
        return await self._cancellable(self.add_texts, texts, metadatas, ids=ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """:meth:`add_documents` in an executor thread, stopped by the task's cancellation as
        :meth:`aadd_texts` is."""
        return await self._cancellable(self.add_documents, documents, **kwargs)

    async def _cancellable(self, write: Callable[..., list[str]], *args: Any, **kwargs: Any) -> list[str]:
        """Run ``write`` in an executor thread; on cancellation, stop it (:meth:`_check_stop`) and wait
        for it before re-raising."""
        import asyncio

        from langchain_core.runnables.config import run_in_executor

        stop = threading.Event()

        def run() -> list[str]:
            self._stop.event = stop
            try:
                return write(*args, **kwargs)
            finally:
                self._stop.event = None

        future = asyncio.ensure_future(run_in_executor(None, run))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            try:  # the slice or batch under way ends; nothing is written after this returns
                await asyncio.shield(future)
            except _WriteStopped:
                pass
            except Exception as exc:  # noqa: BLE001 - the cancellation is what the caller hears about
                logger.warning("the cancelled write to collection %r failed as it stopped: %s",
                               self._collection_name, exc)
            raise
