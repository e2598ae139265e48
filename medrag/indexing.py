"""Bulk indexing: files -> chunks -> a :class:`~medrag.store.MatryoshkaChroma` store, resumably.

``medrag index SOURCE`` (and :func:`index_corpus`) reads a JSONL (also ``.jsonl.gz``), JSON,
CSV or Parquet file of records, or a folder of ``.txt``/``.md``/``.pdf`` files, cuts every document into
chunks (:func:`chunk_text`), and adds the chunks to an embedded (``--persist-dir``) or server
(``--host``/``--port``) store.

A source is read into documents by :mod:`medrag.sources` (its **Folders.** paragraph: how a
folder's files are keyed), each document is cut into chunks by :mod:`medrag.chunking` (its
**Chunks.** paragraph: sentence windows within the model's token window); this module writes the
chunks into the store, resumably (:func:`index_corpus`), and is the ``medrag index`` command. The
readers' and the chunker's public names are importable from here too, as before
(``medrag.indexing.chunk_text``, ``medrag.indexing.iter_documents``, ...).

**Resumable.** Each chunk's id is derived from its document key (the ``--id-field`` value, the
file's path, or the SHA-256 of the document's text and metadata), its position and its
text, so re-running the same command after a crash or a SIGKILL neither duplicates chunks nor
re-encodes the ones already stored: the store skips stored ids *before* encoding
(``MatryoshkaChroma.add_texts(..., skip_existing=True)``). Chunks are written in batches of
``batch_size``; a kill loses at most the batch being encoded. The one exception is a new
collection's first write, while its coarse stage waits to be fitted (``coarse_rotation``
``"auto"``, the default, or ``"pca"`` / ``"learned"``): it holds
:meth:`~medrag.store.MatryoshkaChroma.next_write_size` chunks (4,096 with the learned projection),
encoded and written as one batch, so a kill before it ends loses those (``--coarse-rotation none``
writes ``batch_size`` from the first).

**Edited documents.** A document with a stable key (``--id-field``, or a folder's file path)
that is indexed again with another text *replaces* its earlier chunks: once its new chunks are
written, the stored chunks of that key that are not among them are deleted (a kill in between
leaves both versions until the next run). Records with the same text and different metadata
are different documents; records identical in text and metadata are stored once.

Example::

    medrag index notices.jsonl --text-field text --persist-dir ./chroma --collection notices
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medrag._store_lock import refuse_if_held_elsewhere
from medrag.bundled import DEFAULT_SPEC
from medrag.chunking import (CHUNK_KEYS, CHUNK_OVERLAP, CHUNK_WORDS, MAX_SENTENCE_WORDS, MAX_WORD_CHARS,
                             MIN_TEXT_TOKENS, PIECE_WORDS, SECTION_KEY, _fitting_trail, check_token_window,
                             chunk_pages, chunk_spans, chunk_text, token_window, word_count)
from medrag.command import (add_prompt_arguments, add_store_location_arguments, check_store_location, check_writable_dir,
                            collection_names, collection_prompts, open_server, recorded_model, server_place,
                            store_embeddings)
from medrag.markdown import markdown_sections
from medrag.sources import (FIELD_TYPES, FOLDER_KEY, FOLDER_SUFFIXES, PDF_CAUSES, RECORD_SUFFIXES, TEXT_SUFFIXES,
                            _check_folder_name, _note_unkept_fields, _typed_field, check_field_names,
                            check_metadata_fields, iter_documents)
from medrag.text_checks import is_blank
from medrag.flags import check_flag
from medrag.errors import CollectionMismatchError, DataError, InvalidInputError
from medrag.models import check_device
from medrag.store import AUTO_LEARNED_MIN_TEXTS, DEFAULT_EF_SEARCH, DEFAULT_FULL_ENCODING, ROTATIONS, MatryoshkaChroma
from medrag.vector_codec import ENCODINGS

logger = logging.getLogger(__name__)

#: Without a terminal (``show_progress=None`` and stderr not a tty), :func:`index_corpus` logs its
#: progress at INFO at most this often (``medrag -v index ... 2>> index.log``).
PROGRESS_LOG_SECONDS = 30.0


@dataclass(frozen=True)
class IndexReport:
    """What :func:`index_corpus` did: documents read, chunks made, chunks written now, chunks
    already stored (skipped without encoding), the store's size afterwards, seconds, chunks that
    repeated another chunk of this run (same document key, position and text: stored once), and
    stale chunks removed (earlier versions of documents indexed again with another text or other
    chunk settings), and stored chunks rewritten because their metadata changed (same text); and
    what was not indexed: a folder's files not read (``not_read``: not UTF-8, unreadable, damaged or
    encrypted PDFs; each named in a warning) and documents without text (``empty``: an empty file or
    record, a scanned PDF without a text layer), whose earlier chunks, if any, are kept."""

    documents: int
    chunks: int
    added: int
    skipped: int
    stored: int
    seconds: float
    duplicates: int = 0
    removed: int = 0
    updated: int = 0
    pruned: int = 0
    #: chunks of the first write whose encodings an interrupted run had kept (not encoded again)
    reused: int = 0
    not_read: int = 0
    empty: int = 0
    #: pages without a text layer in a folder's PDFs that have text on other pages (not indexed)
    scanned_pages: int = 0


def _document_name(meta: dict[str, Any], root: Any, number: int, id_field: str | None, key: str) -> str:
    """How a warning names a document: a folder's file by its path, a record by its number and, with
    ``--id-field``, its id (``document 12`` alone sent a data engineer counting rows: user tryout).

    >>> _document_name({}, None, 12, "doc_id", "1040"), _document_name({}, None, 3, None, "ab12")
    ("document 12 (doc_id '1040')", 'document 3')
    """
    if root:
        return str(meta["source"])
    return f"document {number}" + (f" ({id_field} {key!r})" if id_field is not None else "")


def chunk_id(document_key: str, position: int, chunk: str) -> str:
    """The id of a document's ``position``-th chunk (stable across runs: this is what makes indexing resumable)."""
    payload = json.dumps([document_key, position, chunk], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def index_corpus(source: str | os.PathLike[str], store: Any, *, text_field: str = "text",
                 id_field: str | None = None, metadata_fields: list[str] | None = None,
                 chunk_words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP, max_words: int = MAX_SENTENCE_WORDS,
                 batch_size: int = 512, show_progress: bool | None = None, prune: bool = False,
                 folder_name: str | None = None, title_field: str | None = None,
                 max_tokens: int | Literal["model"] | None = "model", markdown_headings: bool = True) -> IndexReport:
    """Chunk every document of ``source`` and add the chunks to ``store``; resumable.

    Each chunk gets the document's metadata plus ``doc`` (the document key) and ``chunk`` (its
    position). Re-running after an interruption skips the chunks already stored without
    encoding them.

    Example::

        >>> store = MatryoshkaChroma("notices", MatryoshkaEmbeddings(), persist_directory="./chroma")
        >>> index_corpus("drug_leaflets.jsonl.gz", store, id_field="id", metadata_fields=["product"])
        IndexReport(documents=2500, chunks=..., added=..., skipped=0, stored=..., seconds=...)

    Args:
        source: file or folder (:func:`iter_documents`).
        store: a :class:`~medrag.store.MatryoshkaChroma`.
        text_field / id_field / metadata_fields / folder_name: see :func:`iter_documents`.
        title_field: a record field naming the document (a leaflet's product, an article's title):
            every chunk is stored, encoded and BM25-indexed as ``"<title> : <chunk>"`` (a chunk that
            already starts with it is kept as is), and the field is kept in the metadata. Most
            chunks of a document never repeat its name ("Si vous avez pris plus de comprimés que
            vous n'auriez dû..."), so a query naming the product or its substance cannot find them
            by it; the validation suite's leaflet passages carry their product's name this way.
            Records only (a folder's files have no fields); a record without a title is chunked
            as is.
        markdown_headings: a folder's ``.md`` files are chunked section by section
            (:func:`medrag.markdown.markdown_sections`), each chunk stored, encoded and
            BM25-indexed as ``"<heading trail> : <chunk>"`` ("Doliprane 1000 mg > Posologie :
            Prendre un comprimé...") with the trail in its ``section`` metadata, as ``title_field``
            does for records: a chunk deep in a section rarely repeats the headings above it, so a
            question naming them could not find it by them. A trail taking half of the model's token
            window or more loses its outer headings until it fits (the innermost one stays). False
            chunks them as plain text, the
            headings' lines being sentences of the first chunk of their section (medrag before
            December 7: a folder indexed then and indexed again re-encodes its ``.md`` files that
            have headings, as edited documents).
        chunk_words / overlap / max_words: see :func:`chunk_text`.
        max_tokens: the token window chunks are cut to fit, prompt and title included
            (:func:`chunk_text`): ``"model"`` (default) for the store's model's own
            (:attr:`medrag.MatryoshkaEmbeddings.max_tokens`, 512 for the e5 family; no cap for
            embeddings without a tokenizer, such as precomputed vectors), an int for a smaller
            one, ``None`` for word counts alone (the chunks of medrag before December 5: a
            collection indexed then and indexed again re-encodes the documents whose chunks
            overflowed, as edited documents).
        batch_size: chunks encoded and written together (one model call, one Chroma write). When
            the store's coarse projection (``coarse_rotation``) is still to be fitted, the first
            write is larger: :func:`medrag.coarse.fit_sample_size` texts (4,096).
        show_progress: a tqdm bar over chunks, moved after each write (default: when stderr is a
            terminal, and otherwise an INFO log line at most every :data:`PROGRESS_LOG_SECONDS`
            seconds, after a write); the first write of a store that fits its coarse stage
            (thousands of chunks) shows a bar of its own that moves as its chunks are encoded.
        prune: after the whole source is read and written, delete the stored chunks of the
            documents this source no longer holds (files deleted or renamed in a folder, records
            dropped from a file). A folder prunes only its own files; a records file prunes
            every chunk it did not read except folders' files (one records file per collection).

    Raises:
        DataError: unreadable source, or a metadata field in no record (:func:`check_metadata_fields`).
        InvalidInputError: bad chunking settings or batch size, or a ``max_tokens`` int over the
            model's window or with embeddings that cannot count tokens.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    chunk_text("x", chunk_words, overlap, max_words)  # validate the settings before reading anything
    window, count = token_window(getattr(store, "embeddings", None), max_tokens)
    if isinstance(metadata_fields, str):  # "year" would read the fields "y", "e", "a", "r"
        raise InvalidInputError(f"metadata_fields must be a list of field names, not a single string: "
                                f"write [{metadata_fields!r}]")
    check_field_names(metadata_fields)
    if title_field is not None:
        if not isinstance(title_field, str) or not title_field.strip():
            raise InvalidInputError(f"title_field must be a record field name, got {title_field!r}")
        if _typed_field(title_field)[1] is not None:  # "code:int" named no field, and no chunk got a title
            raise InvalidInputError(f"title_field {title_field!r}: a title is text; name the field alone "
                                    f"({_typed_field(title_field)[0]!r})")
        if Path(source).is_dir():
            raise InvalidInputError(f"title_field reads a field of a records file; {source} is a folder, whose files "
                                    "are one document each")
        if title_field not in {_typed_field(f)[0] for f in metadata_fields or []}:
            metadata_fields = [*(metadata_fields or []), title_field]  # kept with each chunk: shown and filterable
    taken = sorted({_typed_field(f)[0] for f in metadata_fields or []} & {*CHUNK_KEYS, FOLDER_KEY})
    if taken:  # they were silently replaced by the chunk's bookkeeping (a filter on them found nothing); a
        # records file's "folder" made its chunks read as a folder's: edits kept the old text, --prune nothing
        raise InvalidInputError(f"metadata field(s) {taken} are the names medrag gives each chunk's document key "
                                f"and position, and a folder file's folder; rename them in the source before indexing")
    check_metadata_fields(source, metadata_fields)
    prune = check_flag("prune", prune)  # "false" would have deleted the chunks of every document not read
    markdown_headings = check_flag("markdown_headings", markdown_headings)
    check_flag("show_progress", show_progress, none=True)
    from tqdm.auto import tqdm

    # a folder's files are keyed by their relative path *within this folder*: the chunk ids hash the
    # folder too, and only this folder's chunks (or ones stored before chunks named their folder) are
    # replaced, so a second folder with the same relative paths does not delete the first one's files
    _check_folder_name(folder_name, Path(source))
    root = (folder_name or Path(source).resolve().as_posix()) if Path(source).is_dir() else None
    t0 = time.perf_counter()
    prune_folder = prune and root is not None  # a folder emptied or all empty is pruned, not refused
    # disable=None: a bar only when stderr is a terminal
    bar = tqdm(desc="indexing", unit="chunk", disable=None if show_progress is None else not show_progress)
    run = _IndexRun(source, store, bar, t0, root=root, id_field=id_field, title_field=title_field,
                    chunk_words=chunk_words, overlap=overlap, max_words=max_words, window=window, count=count,
                    markdown_headings=markdown_headings, batch_size=batch_size, show_progress=show_progress,
                    prune=prune)
    try:
        for key, text, meta in iter_documents(source, text_field=text_field, id_field=id_field,
                                              metadata_fields=metadata_fields, folder_name=folder_name,
                                              skipped=run.not_read, empty_folder=prune, scanned=run.scanned):
            run.add(key, text, meta)
        if run.documents and not run.chunks and not prune_folder:  # before the last flush, which would delete their
            # earlier chunks (a folder pruned keeps an empty file's chunks and drops deleted files')
            raise DataError(f"{source}: its {run.documents} document(s) are all empty (no text); nothing was "
                            "indexed and nothing stored was changed")
        run.flush()
    finally:
        bar.close()
        if run.checkpoint is not None:  # interrupted before the first write was stored: kept for the rerun
            _end_checkpoint(store, run.checkpoint, remove=False)
    if run.documents == 0:
        if not prune_folder:
            raise DataError(f"{source}: no document found")
        # its last file deleted: --prune removes what was stored of the folder (user tryout)
        logger.warning("%s holds no file to index: --prune removes the chunks stored for its files", source)
    run.warn_left_out()
    read = run.read_keys | set(run.not_read)
    pruned = _prune(store, read, root) if prune else 0
    if not prune:
        _note_gone_files(store, read, root, source)
    run.warn_stored_elsewhere()
    stored = len(store)
    report = IndexReport(run.documents, run.chunks, run.added, run.chunks - run.duplicates - run.added - run.updated,
                         stored, time.perf_counter() - t0, run.duplicates, run.removed, run.updated, pruned, run.reused,
                         len(run.not_read), run.empty, len(run.scanned))
    logger.info("%s", report)
    return report


class _IndexRun:
    """The state of one :func:`index_corpus` run: its settings, the chunks waiting for the next write, and
    the counts of its :class:`IndexReport`. :meth:`add` cuts a document into chunks (:meth:`chunk_document`) and
    queues them; once :meth:`flush_size` chunks wait, :meth:`flush` writes them, then deletes the earlier
    versions of their documents."""

    def __init__(self, source: str | os.PathLike[str], store: Any, bar: Any, t0: float, *, root: str | None,
                 id_field: str | None, title_field: str | None, chunk_words: int, overlap: int, max_words: int,
                 window: int | None, count: Callable[[str], int] | None, markdown_headings: bool, batch_size: int,
                 show_progress: bool | None, prune: bool) -> None:
        self.source, self.store, self.bar, self.t0, self.root = source, store, bar, t0, root
        self.id_field, self.title_field, self.markdown_headings = id_field, title_field, markdown_headings
        self.chunk_words, self.overlap, self.max_words = chunk_words, overlap, max_words
        self.window, self.count = window, count
        self.batch_size, self.prune = batch_size, prune
        self.documents = self.chunks = self.duplicates = self.removed = self.updated = self.added = 0
        self.empty = self.long_titles = self.reused = self.textless_pdfs = 0
        self.empty_named: list[str] = []  # the first few, for the warning
        self.seen: set[str] = set()
        self.read_keys: set[str] = set()  # every document key of this run (for prune)
        self.elsewhere: dict[str, set[str]] = {}  # another folder -> this run's document keys stored under it too
        # a folder's files skipped (not UTF-8, unreadable): still in the source, not pruned
        self.not_read: list[str] = []
        self.scanned: list[str] = []  # pages without a text layer of PDFs that have text elsewhere
        self.keys: dict[str, int] = {}  # --id-field values seen this run -> their document's number
        # whether each of the first documents checked is stored under the key of its text alone (None: decided)
        self.text_keyed: list[bool] | None = [] if id_field is None and root is None else None
        self.pending_texts: list[str] = []
        self.pending_meta: list[dict[str, Any]] = []
        self.pending_ids: list[str] = []
        self.pending_docs: dict[str, set[str]] = {}  # stable key -> all its chunk ids (this run's version)
        # no terminal (cron, a container's log): an INFO line at most every PROGRESS_LOG_SECONDS instead, for
        # a run of hours showed nothing between its start and its summary (user tryout)
        self.progress_lines = show_progress is None and bar.disable
        self.last_line = time.perf_counter()
        self.checkpoint = _first_write_checkpoint(store)  # a new collection's first write survives a kill

    def flush_size(self) -> int:
        """A coarse projection still to fit is fitted on the store's first write: hold that many chunks
        (add_texts then writes them as one batch)."""
        size = getattr(self.store, "next_write_size", None)
        return size(self.batch_size) if size is not None else self.batch_size

    def settle_text_keys(self) -> None:
        """Refuse the run, before its first write, when every document checked is stored under the key of
        its text alone (:func:`_refuse_text_keyed_copies`)."""
        found, self.text_keyed = self.text_keyed, None
        if found and all(found):
            _refuse_text_keyed_copies(self.source, len(found), self.prune)

    def chunk_document(self, key: str, text: str, meta: dict[str, Any]
                       ) -> tuple[list[str], list[str | None], list[tuple[int, int]], bool]:
        """The chunks of the document ``key`` as they are stored (a record's title or a ``.md`` section's
        heading trail before each), the section trail of each (None outside a ``.md`` file's sections),
        a folder's PDF's chunks' first and last pages, and whether the document is such a PDF."""
        count, window, root, title_field = self.count, self.window, self.root, self.title_field
        chunk_words, overlap, max_words = self.chunk_words, self.overlap, self.max_words
        title = meta.get(title_field) if title_field is not None else None
        if title is not None and not isinstance(title, bool) and not is_blank(str(title)):  # a number: its text
            title = " ".join(str(title).split())
        else:
            title = None
        markdown = self.markdown_headings and root is not None and key.lower().endswith(".md")
        if markdown:
            sections = [(_fitting_trail(h, count, window), body) for h, body in markdown_sections(text)]
        else:
            sections = [(title, text)]
        pieces, trails = [], []
        pages: list[tuple[int, int]] = []  # a PDF's chunks: their first and last page
        pdf = root is not None and key.lower().endswith(".pdf")
        long_title = False
        for head, body in sections:
            # the window holds the title too (counted on every chunk: one that starts with it keeps one
            # copy), unless it takes half of it or more: every run of words would then overflow, one chunk a word
            counter = count
            if count is not None and head is not None:
                if count(f"{head} :") * 2 < window:  # type: ignore[operator]
                    counter = lambda chunk, t=head: count(f"{t} : {chunk}")  # noqa: E731
                elif not long_title:
                    long_title, self.long_titles = True, self.long_titles + 1
                    if self.long_titles == 1:  # a folder's file by its name: "document 1" said nothing (user tryout)
                        logger.warning("%s: the %s of %s takes half of the model's %d-token window or "
                                       "more: its chunks are cut without counting it, and the model reads only "
                                       "the window's worth of title and chunk", self.source,
                                       title_field or "innermost heading",
                                       _document_name(meta, root, self.documents, self.id_field, key), window)
            spans = chunk_spans(body, chunk_words, overlap, max_words, max_tokens=window, count_tokens=counter)
            cut = [chunk for chunk, _, _ in spans]
            if pdf:  # a PDF is one section (no heading): its chunks' words locate them on its pages
                pages += chunk_pages(body, spans)
            if head is not None:
                # a chunk that starts with the title as a word keeps one copy ("Anémies..." is not "Anémie")
                cut = [p if p == head or p.startswith(head + " ") else f"{head} : {p}" for p in cut]
            pieces += cut
            trails += [head if markdown else None] * len(cut)  # a record's title is no section
        if not pieces and markdown:  # headings alone (a table of contents): indexed as its text
            pieces = chunk_text(text, chunk_words, overlap, max_words, max_tokens=window, count_tokens=count)
            trails = [None] * len(pieces)
        return pieces, trails, pages, pdf

    def add(self, key: str, text: str, meta: dict[str, Any]) -> None:
        """Cut a document of the source into chunks and queue those not seen yet in this run, writing them
        once :meth:`flush_size` wait; refuse an ``--id-field`` value seen before."""
        self.documents += 1
        documents, root, id_field, source = self.documents, self.root, self.id_field, self.source
        pieces, trails, pages, pdf = self.chunk_document(key, text, meta)
        if not pieces:
            self.empty += 1
            if pdf and not text:  # no text layer: iter_documents named it, with OCR advice (warned twice before)
                self.textless_pdfs += 1
            elif len(self.empty_named) < 3:
                self.empty_named.append(_document_name(meta, root, documents, id_field, key))
        id_key = key if root is None else f"{root}/{key}"
        ids = [chunk_id(id_key, position, chunk) for position, chunk in enumerate(pieces)]
        if self.text_keyed is not None and meta and pieces:  # a document without metadata keeps its text's key
            self.text_keyed.append(_stored_under_text_key(self.store, text, key))
            if len(self.text_keyed) >= TEXT_KEY_CHECKS:
                self.settle_text_keys()
        if id_field is not None:
            if key in self.keys:
                # the documents before it are stored, as the message says; not a new collection's first
                # write, which decides (and fits) its coarse stage for good: on the 20 documents read so far,
                # "auto" chose the raw prefix where the whole file got the learned stage (user tryout)
                first = not getattr(self.store, "rotation_fitted", True)
                if not first:
                    self.flush()
                raise DataError(f"{source}: document {documents} has the {id_field} {key!r} of document "
                                f"{self.keys[key]}: the {id_field} values must be unique (a document's chunks are "
                                "keyed by it, so a repeated one would replace the earlier document). "
                                + ("Nothing was written (a new collection's first write fits its coarse stage on "
                                   "the chunks it holds, so it waits for them). " if first else
                                   "Nothing of this document was written; the earlier ones are stored. ")
                                + "Fix the input or pass another --id-field")
            self.keys[key] = documents
        # every key, content keys too: the same document chunked otherwise (--chunk-words, --overlap)
        # replaces its earlier chunks instead of adding a second copy; an empty document keeps them (a
        # null text in a broken export deleted the stored document, while the warning said "not indexed")
        if pieces:
            self.pending_docs[key] = set(ids)
        self.read_keys.add(key)
        for position, (chunk, id_, trail) in enumerate(zip(pieces, ids, trails)):
            # a PDF chunk says where to read it (user tryout: nothing but the file; the running header
            # in a chunk named another page)
            where = {"page": pages[position][0], "page_end": pages[position][1]} if pdf and pages else {}
            self.chunks += 1
            if id_ in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(id_)
            self.pending_texts.append(chunk)
            self.pending_meta.append({**meta, "doc": key, "chunk": position}
                                     | ({SECTION_KEY: trail} if trail is not None else {}) | where)
            self.pending_ids.append(id_)
            if len(self.pending_texts) >= self.flush_size():
                self.flush()

    def flush(self) -> None:
        """Write the chunks waiting (:meth:`write_pending`), then delete the earlier versions of their
        documents (:meth:`remove_earlier_versions`)."""
        if self.text_keyed is not None:
            self.settle_text_keys()
        if self.pending_texts:
            self.write_pending()
        if self.pending_docs:  # after the new chunks are stored: the earlier versions' chunks go
            self.remove_earlier_versions()

    def write_pending(self) -> None:
        """Write the chunks waiting that are new or changed, in one write; the stored ones skipped unencoded."""
        store, source, bar, batch_size = self.store, self.source, self.bar, self.batch_size
        pending_texts, pending_meta, pending_ids = self.pending_texts, self.pending_meta, self.pending_ids
        # a stored chunk whose metadata changed (a new --metadata-fields, an edited value) is rewritten:
        # skip_existing alone kept the old metadata, and filters kept matching stale values
        # one read tells the stored chunks (skipped unencoded) from the new and the changed (one write)
        found = store.get(ids=pending_ids, include=["metadatas", "documents"])
        stored_meta = dict(zip(found["ids"], found["metadatas"]))
        # a chunk's text changed outside medrag index (update_document from Python) kept its id, which
        # hashes the source's text: "already stored" for ever, --prune too (user tryout); written again
        at = {id_: i for i, id_ in enumerate(pending_ids)}
        changed_text = {id_ for id_, text in zip(found["ids"], found["documents"]) if text != pending_texts[at[id_]]}
        todo = [i for i, id_ in enumerate(pending_ids)
                if id_ not in stored_meta or id_ in changed_text
                or not _same_metadata(stored_meta[id_], pending_meta[i])]
        if changed_text:
            logger.warning("%s: %d stored chunk(s) held another text than the source's (changed outside medrag "
                           "index, e.g. with update_documents; e.g. %s): written again from the source", source,
                           len(changed_text), sorted(changed_text)[0])
        self.updated += sum(1 for i in todo if pending_ids[i] in stored_meta)
        self.added += sum(1 for i in todo if pending_ids[i] not in stored_meta)  # counted, not read off len(store):
        # another client of a server writing meanwhile made it "92 added, -32 already stored" (user tryout)
        if todo:
            # the write that fits the coarse stage holds thousands of chunks (minutes on a CPU): its
            # own bar moves as they are encoded, where this one moves only after each write
            store.add_texts([pending_texts[i] for i in todo], [pending_meta[i] for i in todo],
                            ids=[pending_ids[i] for i in todo], batch_size=batch_size,
                            show_progress=len(todo) > batch_size and not bar.disable)
        bar.update(len(pending_texts))
        pending_texts.clear(), pending_meta.clear(), pending_ids.clear()
        if self.progress_lines and time.perf_counter() - self.last_line >= PROGRESS_LOG_SECONDS:
            self.last_line = time.perf_counter()
            logger.info("indexing %s: %d document(s) read, %d chunk(s): %d added, %d rewritten (%.0f s)", source,
                        self.documents, self.chunks, self.added, self.updated, self.last_line - self.t0)
        checkpoint = self.checkpoint
        if checkpoint is not None and store.rotation_fitted:  # the first write is stored: its encodings too
            _end_checkpoint(store, checkpoint, remove=True)
            self.reused, self.checkpoint = checkpoint.reused, None

    def remove_earlier_versions(self) -> None:
        """Delete the stored chunks of the documents just written that this run's versions do not hold (of
        this run's source only), and note the documents also stored under another folder."""
        store, root, pending_docs = self.store, self.root, self.pending_docs
        # a chunk id hashes its document key, so one set of this run's ids serves every key; ids
        # first (the metadatas bring the packed full vectors along), then the metadatas of the
        # chunks not rewritten only, which tell a folder's file from a record of the same key
        found = store._chroma_call("find the earlier chunks of the documents", store.collection.get,
                                   where={"doc": {"$in": list(pending_docs)}}, include=[])
        current = set().union(*pending_docs.values())
        others = [i for i in found["ids"] if i not in current]
        found = store._chroma_call("read the earlier chunks of the documents", store.collection.get, ids=others,
                                   include=["metadatas"]) if others else {"ids": []}
        stale = [i for i, md in zip(found["ids"], found.get("metadatas") or []) if _of_source(md or {}, root)]
        for md in found.get("metadatas") or []:  # the same files stored under another folder: moved?
            other = (md or {}).get(FOLDER_KEY)
            if root is not None and isinstance(other, str) and other != root:
                self.elsewhere.setdefault(other, set()).add(md.get("doc"))
        if stale:
            store.delete(stale)
            self.removed += len(stale)
        pending_docs.clear()

    def warn_left_out(self) -> None:
        """After the run: warn about the titles or headings too long to count in the window, and the
        documents without text."""
        source, documents = self.source, self.documents
        if self.long_titles > 1:
            logger.warning("%s: %d document(s) had a %s taking half of the model's window or more (the first named "
                           "above)", source, self.long_titles, self.title_field or "innermost heading")
        if self.empty > self.textless_pdfs:
            logger.warning("%s: %d of %d document(s) are empty (no text) and were not indexed; what was stored for "
                           "them earlier is kept (e.g. %s)", source, self.empty - self.textless_pdfs, documents,
                           ", ".join(self.empty_named))

    def warn_stored_elsewhere(self) -> None:
        """After the run: warn when most of a folder's files are also stored under another folder (the
        folder moved or renamed, and indexed again beside its old copy)."""
        source, root, documents = self.source, self.root, self.documents
        if self.added and self.elsewhere:  # a renamed folder was indexed again beside its old copy: every hit twice
            # (user tryout)
            other, keys_there = max(self.elsewhere.items(), key=lambda kv: (len(kv[1]), kv[0]))
            if 2 * len(keys_there) >= documents:
                # a folder named alike in the other Unicode spelling (copied from macOS): a filter matches both
                # spellings by default, so the advice without unicode_spellings=False deleted the new copy too
                # (review)
                exact = ", unicode_spellings=False" if unicodedata.normalize("NFC", other) == \
                    unicodedata.normalize("NFC", root) else ""  # type: ignore[arg-type]
                logger.warning("%s: %d of its %d file(s) are also stored under the folder %s: if the folder was "
                               "moved or renamed, both copies are searched (each hit twice); delete the old one's "
                               "chunks (store.delete(where={'folder': %r}%s)), and index with --folder-name NAME so "
                               "that a later move keeps one source", source, len(keys_there), documents, other, other,
                               exact)


#: How many of a records file's first documents :func:`index_corpus` looks up under the key of their text
#: alone, when metadata fields make the key (two reads by metadata each, before anything is written).
TEXT_KEY_CHECKS = 20


def _stored_under_text_key(store: Any, text: str, key: str) -> bool:
    """Whether the collection holds a document under the key of its ``text`` alone and none under its
    ``key`` (which hashes its metadata fields too): by the documents' ``doc`` metadata, so chunks cut
    otherwise (another --chunk-words, an earlier chunker) are found too."""
    text_key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    if text_key == key:
        return False

    def stored(doc: str) -> bool:
        return bool(store._chroma_call("look up a document", store.collection.get, where={"doc": doc}, limit=1,
                                       include=[])["ids"])

    return stored(text_key) and not stored(key)


def _refuse_text_keyed_copies(source: Any, checked: int, prune: bool) -> None:
    """Refuse, before anything is written, a run that would store a records file's documents a second
    time: with metadata fields (and no id field) a document's key hashes its text and those fields, and
    each of the ``checked`` first documents is stored under the key of its text alone, as a run without
    ``--metadata-fields``, or by a medrag before December 3, stored them (an upgrade tryout re-ran its
    December 2 command and every passage was added again; the warning came after the write). Some of
    them only (a record whose fields were filled in since, another file sharing a text) is no refusal:
    the run's "not in this file" warning names what stays. With ``prune`` the run goes on: the earlier
    copies are removed once it has written the new ones."""
    if prune:
        logger.info("%s: its first %d document(s) are stored under the key of their text alone (indexed without "
                    "--metadata-fields, or by a medrag before December 3): --prune replaces them", source, checked)
        return
    raise DataError(f"{source}: its first {checked} document(s) are stored in this collection under the key of "
                    "their text alone (indexed without --metadata-fields, or by a medrag before December 3); with "
                    "--metadata-fields a document's key holds those fields too, so this run would store them a "
                    "second time. Nothing was written. If this file is the collection's only records file, run it "
                    "again with --prune (the earlier copies are removed, and every document not in this file; every "
                    "chunk is encoded again); otherwise index it into another --collection")


def _first_write_checkpoint(store: Any) -> Any:
    """While ``store``'s first write is pending (its coarse stage is fitted on the first 4,096 chunks,
    all encoded before anything is stored), its encoder wrapped in a
    :class:`~medrag._encoding_checkpoint.CheckpointedEncoder`, which saves their vectors as they are
    encoded, so a killed run's rerun does not encode them again (user tryout: a kill lost up to 4,096
    chunks' encoding); None when nothing is pending, for an in-memory client or LangChain embeddings."""
    from medrag._encoding_checkpoint import CheckpointedEncoder, checkpoint_folder
    from medrag.bundled import cache_dir
    from medrag.encoder import is_encoder
    from medrag.precomputed import PrecomputedEmbeddings

    encoder = getattr(store, "_encoder", None)
    if not is_encoder(encoder) or isinstance(encoder, (PrecomputedEmbeddings, CheckpointedEncoder)):
        return None  # LangChain embeddings, vectors already at hand, or another run of this store keeps them
    folder = checkpoint_folder(store, cache_dir())
    if folder is None:
        return None
    if getattr(store, "rotation_fitted", True):
        # the coarse stage is recorded before the first write's records: a kill in between left the kept
        # encodings of a write this run will not make (review)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        return None
    checkpoint = CheckpointedEncoder(encoder, folder)
    store._encoder = checkpoint
    return checkpoint


def _end_checkpoint(store: Any, checkpoint: Any, *, remove: bool) -> None:
    """Give ``store`` its own encoder back; ``remove``: delete the saved encodings (stored now)."""
    if store._encoder is checkpoint:
        store._encoder = checkpoint.inner
    if remove:
        checkpoint.remove()


def _note_gone_files(store: Any, keep: set[str], root: str | None, source: Any) -> None:
    """Warn about the files stored for the folder ``root`` that it no longer holds (``root`` None: the
    documents of a records file stored in the collection that this file no longer holds): without
    ``--prune`` their chunks stay searchable, and a withdrawn protocol kept coming first with no word
    of it (user tryout; a record dropped from a file, or replaced by its edited version under a
    content key, too)."""
    # each file's first chunk only: reading every chunk's metadata added 40% to a run that changed nothing (review)
    first = {CHUNK_KEYS[1]: 0}
    gone = sorted({doc for _, doc in _stale_chunks(store, keep, root, where={"$and": [{FOLDER_KEY: root}, first]}
                                                   if root is not None else first)})
    if gone and root is not None:
        logger.warning("%s: %d file(s) stored for this folder are no longer in it (e.g. %s): their chunks stay "
                       "searchable; --prune (index_corpus(prune=True)) removes them", source, len(gone),
                       ", ".join(gone[:3]))
    elif gone:
        logger.warning("%s: %d document(s) stored in the collection are not in this file (dropped from it, earlier "
                       "versions of edited records without --id-field, or records of another file; e.g. %s): their "
                       "chunks stay searchable; --prune (index_corpus(prune=True)) removes them, if this file is "
                       "the collection's one records file", source, len(gone), ", ".join(map(str, gone[:3])))


def _same_metadata(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a stored chunk's metadata equals this run's: floats to 12 significant digits (Chroma
    hands some floats back changed in the last digit: 0.9097462559682401 -> 0.90974625596824, which
    re-encoded the chunk on every run).

    >>> _same_metadata({"p": 0.90974625596824, "n": 1}, {"p": 0.9097462559682401, "n": 1})
    True
    >>> _same_metadata({"p": 0.5}, {"p": 0.6}), _same_metadata({"n": 1}, {"n": True})
    (False, False)
    """
    return stored.keys() == new.keys() and all(_same_value(stored[k], v) for k, v in new.items())


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
        return numbers and math.isclose(a, b, rel_tol=1e-12)
    return type(a) is type(b) and a == b


def _of_source(metadata: dict[str, Any], root: str | None) -> bool:
    """Whether a stored chunk belongs to this run's kind of source, so that this run may replace or
    prune it: for a folder ``root``, a file of that folder (its ``folder``; or, for a chunk stored
    before chunks named their folder, a ``source`` equal to its document key: a folder's file keyed
    by its relative path alone); for a records file (``root`` None), any chunk that is not a
    folder's file. (A records file indexed with ``--id-field source`` whose values equal a folder
    file's relative path looks like such an earlier folder chunk: the one case left ambiguous.)"""
    if root is None:
        return "folder" not in metadata
    if "folder" in metadata:
        return metadata["folder"] == root
    return "source" in metadata and metadata.get("source") == metadata.get("doc")


def _prune(store: Any, keep: set[str], root: str | None = None, page: int = 10_000) -> int:
    """Delete the stored chunks of this run's source (:func:`_of_source`: the folder ``root``'s
    files, or for a records file every chunk that is not a folder's) whose document key (``doc``)
    is not in ``keep``; returns how many. Other folders' chunks, and records that ``index_corpus``
    did not write (no ``doc`` key: e.g. added with ``add_texts``), are left alone."""
    stale = [id_ for id_, _ in _stale_chunks(store, keep, root, page)]
    if stale:
        store.delete(stale)
    return len(stale)


def _stale_chunks(store: Any, keep: set[str], root: str | None = None, page: int = 10_000,
                  where: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(id, document key)`` of the stored chunks :func:`_prune` deletes (``where``: read only the
    records matching it)."""
    stale: list[tuple[str, str]] = []
    offset = 0
    folders = tuple(k for k in keep if k.endswith("/"))  # a folder that could not be listed: all kept
    while True:
        found = store.get(where=where, include=["metadatas"], limit=page, offset=offset)
        # only chunks medrag index wrote (they record their document key): texts added otherwise
        # (add_texts) were deleted too
        stale += [(id_, md["doc"]) for id_, md in zip(found["ids"], found["metadatas"])
                  if "doc" in (md or {}) and md["doc"] not in keep and _of_source(md, root)
                  and not str(md["doc"]).startswith(folders)]
        if len(found["ids"]) < page:
            break
        offset += page
    return stale


# ---------------------------------------------------------------------------- CLI


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "index", help="chunk a JSONL/CSV/Parquet file or a folder of .txt/.md/.pdf files into a store (resumable)",
        description="Chunk documents and add them to a MatryoshkaChroma store. Re-running the same command "
                    "after an interruption adds only the missing chunks, without re-encoding stored ones (a new "
                    "collection's first 4,096 chunks, encoded before its first write, are kept under "
                    "$MEDRAG_CACHE/index-checkpoints until that write is stored).")
    p.add_argument("source", help="a .jsonl/.jsonl.gz/.json/.csv/.tsv/.parquet file, or a folder of .txt/.md/.pdf files")
    add_store_location_arguments(p, "folder of an embedded Chroma store (one process at a time)")
    p.add_argument("--model", default=None,
                   help=f"model spec (default: the model an existing collection records, else {DEFAULT_SPEC})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    add_prompt_arguments(p)
    p.add_argument("--text-field", default="text", help="record field holding the text (default text)")
    p.add_argument("--id-field", default=None,
                   help="record field holding a stable document id, unique within the input (a document indexed "
                        "again under the same id, from any file, replaces the stored one); its value is also kept "
                        "in each chunk's metadata, as text (filter {\"id\": \"42\"}, not 42)")
    p.add_argument("--title-field", default=None,
                   help="record field naming the document (a leaflet's product, an article's title): each chunk "
                        "is stored and searched as 'TITLE : chunk', so a query naming it finds every chunk of the "
                        "document (most chunks never repeat it); the field is kept in the metadata too")
    p.add_argument("--markdown-headings", action=argparse.BooleanOptionalAction, default=True,
                   help="a folder's .md files are chunked section by section, each chunk stored and searched as "
                        "'Heading > Sub-heading : chunk' with the trail in its 'section' metadata, so a query naming "
                        "a heading finds the chunks under it (default; --no-markdown-headings: plain text)")
    p.add_argument("--metadata-fields", default="",
                   help="comma-separated record fields copied into metadata; NAME:int (:float, :bool) converts a "
                        "field's values (NAME:str makes a date ISO text and a list JSON text; NAME:date makes a date, "
                        "2023-06-10 or 10/06/2023, the int 20230610, for range filters), as a CSV's are text and a "
                        "filter {\"year\": 2021} matches numbers only (to "
                        "change the fields on a stored collection "
                        "later, index with --id-field: without it a document is its text and metadata, and other "
                        "fields make other documents)")
    p.add_argument("--chunk-words", type=int, default=CHUNK_WORDS, help=f"a chunk closes once it holds at least this many words (default {CHUNK_WORDS})")
    p.add_argument("--overlap", type=int, default=CHUNK_OVERLAP,
                   help=f"sentences of overlap between chunks, at most half a chunk's (default {CHUNK_OVERLAP})")
    p.add_argument("--max-tokens", type=_max_tokens_argument, default="model",
                   help="the token window chunks are cut to fit, prompt and title included: 'model' (default: the "
                        "model's own, 512 for e5), a smaller number, or 'none' for word counts alone (a model "
                        "encodes only a text's first tokens)")
    p.add_argument("--batch-size", type=int, default=512, help="chunks per model call and write (default 512; a new collection's first write holds "
                        "the chunks its coarse stage is fitted on: 4,096 with the default --coarse-rotation)")
    p.add_argument("--coarse-dim", type=int, default=None,
                   help="stage-1 size when the collection is created (default 64, half the full size for a model "
                        "of 64 dims or fewer; an existing collection keeps its own)")
    p.add_argument("--coarse-rotation", choices=(*ROTATIONS, "auto"), default="auto",
                   help="stage-1 projection when the collection is created (default auto: learned when the first "
                        f"write holds {AUTO_LEARNED_MIN_TEXTS:,} chunks or more, else none; an existing collection keeps "
                        "its own): none (the model's first coordinates), learned or pca (fitted on the first batch); "
                        "see docs/store.md")
    p.add_argument("--full-encoding", choices=ENCODINGS, default=None,
                   help=f"how the full vectors are stored when the collection is created (default {DEFAULT_FULL_ENCODING}; "
                        "an existing collection keeps its own; float16 keeps about 0.01 more recall@10 on large "
                        "corpora at up to twice the disk: docs/store.md)")
    p.add_argument("--ef-search", type=int, default=None,
                   help=f"Chroma HNSW ef_search (default {DEFAULT_EF_SEARCH} for a new collection; given for an existing "
                        "one, it is changed there, for processes that open it afterwards; 800 measured a little "
                        "better for 400 candidates on a large corpus: docs/store.md)")
    p.add_argument("--folder-name", default=None,
                   help="for a folder source: a stable name recorded as its documents' 'folder' instead of its absolute "
                        "path, so the folder mounted elsewhere (a container, another machine) or moved is the same "
                        "source (not re-encoded, not stored twice)")
    p.add_argument("--prune", action="store_true",
                   help="after indexing, delete the stored documents this source no longer holds (deleted or renamed "
                        "files, dropped records); a folder prunes only its own files, a records file every record it "
                        "did not read, except those medrag index did not write (one records file per collection)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (drawn on a terminal; otherwise, with -v, a progress line at most every "
                        f"{PROGRESS_LOG_SECONDS:.0f} s)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 1 when a file of a folder was not read (not UTF-8, unreadable, a damaged or "
                        "encrypted PDF) or a document or a PDF page gave no text (a scanned PDF or page, an empty "
                        "file or record), after indexing all the others (default: warn, exit 0)")
    p.set_defaults(func=run_index)


def _max_tokens_argument(value: str) -> int | str | None:
    """``--max-tokens``: ``model``, ``none`` (any case) or an int >= 1."""
    word = value.strip().lower()
    if word in ("model", "none"):
        return None if word == "none" else "model"
    try:
        number = int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'model', 'none' or a number of tokens, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def run_index(args: argparse.Namespace) -> int:
    """``medrag index``: cheap checks first, then the model, then the store, then the chunks."""
    from medrag.models import loading_progress

    with loading_progress(not args.no_progress and sys.stderr.isatty()):
        return _run_index(args)


def _count(n: int, noun: str) -> str:
    """``"1 chunk"``, ``"2 chunks"`` (the summary said "1 stale chunks": user tryout)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _remove_created(store: MatryoshkaChroma, persist: Path, created: Path, keep_folder: bool) -> None:
    """Remove what this run wrote into the persist folder for a store it left without records (a
    Chroma database, the lock, the vector copy): that folder if the run made it, else only its content
    (``keep_folder``: it was empty before), after closing the store's client so that no open database
    of the process points into it; then the parent folders the run made (up to ``created``), each only
    while it is empty: another run may have made its own store beside this one meanwhile (the whole
    highest folder made was deleted, with it)."""
    import shutil

    try:
        store.close()
        store.client.close()
        shutil.rmtree(persist)
        if keep_folder:
            persist.mkdir()
        for parent in persist.parents if persist != created else ():
            try:
                parent.rmdir()  # only an empty folder
            except OSError:
                break
            if parent == created:
                break
        logger.info("what this run wrote in %s was removed", persist)
    except Exception as exc:
        logger.warning("could not remove what this run wrote in %s: %s", persist, exc)


def _run_index(args: argparse.Namespace) -> int:
    if not args.source.strip():  # "$SRC" with SRC unset would index the current folder
        raise DataError("SOURCE is empty: pass a data file or a folder of .txt/.md/.pdf files")
    source = Path(args.source)
    if not source.exists():
        raise DataError(f"{source} does not exist: pass a data file or a folder of .txt/.md/.pdf files")
    if source.is_file() and source.suffix.lower() in FOLDER_SUFFIXES:  # one document: its folder's file
        raise DataError(f"{source}: a {source.suffix.lower()} file is one document of a folder: index the folder "
                        f"holding it ({source.resolve().parent}), or a folder of its own holding it")
    if source.is_file() and not source.name.lower().endswith(RECORD_SUFFIXES):
        raise DataError(f"{source}: unsupported file type; use a folder of .txt/.md/.pdf files or one of "
                        f"{', '.join(RECORD_SUFFIXES)}")
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--ef-search", args.ef_search, 1),
                               ("--chunk-words", args.chunk_words, 1), ("--overlap", args.overlap, 0),
                               ("--coarse-dim", args.coarse_dim, 1)):
        if value is not None and value < least:
            raise InvalidInputError(f"{flag} must be >= {least}, got {value}")
    check_store_location(args)
    if args.persist_dir:  # checked without creating it: a run that fails before writing leaves nothing behind
        check_writable_dir(Path(args.persist_dir), "--persist-dir", create=False)
        refuse_if_held_elsewhere(args.persist_dir)  # before the model loads (the store would only warn on opening)
    check_device(args.device)
    fields = [f.strip() for f in args.metadata_fields.split(",") if f.strip()]
    check_field_names(fields)
    if source.is_dir():
        ignored = [flag for flag, given in (("--text-field", args.text_field != "text"), ("--id-field", args.id_field),
                                            ("--metadata-fields", fields), ("--title-field", args.title_field))
                   if given]
        if ignored:
            raise InvalidInputError(f"{', '.join(ignored)} read(s) the fields of a records file; {source} is a folder, "
                                    "whose files are one document each (metadata: their relative path and the folder)")
    # the first document proves the source readable (fields, JSON) and not empty before the model loads
    if next(iter_documents(source, text_field=args.text_field, id_field=args.id_field, metadata_fields=fields,
                           warn=False, folder_name=args.folder_name, empty_folder=args.prune),
            None) is None and not (args.prune and source.is_dir()):  # a folder emptied: --prune removes its chunks
        raise DataError(f"{source}: no document found; nothing was indexed")
    if args.title_field is not None:
        if _typed_field(args.title_field)[1] is not None:
            raise InvalidInputError(f"--title-field {args.title_field}: a title is text; name the field alone "
                                    f"({_typed_field(args.title_field)[0]})")
        if args.title_field not in {_typed_field(f)[0] for f in fields}:
            fields = [*fields, args.title_field]  # a misspelled title field is named below, before the model loads
    check_metadata_fields(source, fields)
    if not source.is_dir():
        _note_unkept_fields(source, {args.text_field, args.id_field, *(_typed_field(f)[0] for f in fields)})
    import chromadb  # heavy: only an actual indexing run opens a client

    # absolute: chromadb shares one client per path string, and "db" means another folder after a chdir
    persist = str(Path(args.persist_dir).resolve()) if args.persist_dir else None
    # the highest folder of the persist path this run makes (or the persist folder, if it is empty):
    # emptied again if the run writes nothing
    created, was_empty = None, False
    if persist:
        created = next((p for p in reversed([Path(persist), *Path(persist).parents]) if not p.exists()), None)
        if created is None and not any(Path(persist).iterdir()):
            created, was_empty = Path(persist), True
    client = None
    if args.host:
        client = open_server(args)
    elif (Path(persist) / "chroma.sqlite3").is_file():  # an existing store: its collection may record a model
        try:
            client = chromadb.PersistentClient(path=persist)
        except Exception as exc:  # a damaged store: MatryoshkaChroma's own check names it and what to do
            logger.debug("cannot open %s to read the recorded model: %s", persist, exc)
    place = server_place(args) if args.host else f"the Chroma store in {persist}"
    existed = client is not None and args.collection in collection_names(client, place)
    # an existing collection is opened with the model it records (as medrag search does), not the default
    emb = store_embeddings(args, None if args.model or not existed else recorded_model(client, args.collection,
                                                                                renewable=not args.host),
                           collection_prompts(client, args.collection) if existed else None)
    if args.coarse_dim is not None and args.coarse_dim >= emb.full_dim:  # before the store makes its folder
        raise InvalidInputError(f"--coarse-dim {args.coarse_dim} must be below the model's full size "
                                f"({emb.full_dim}): the coarse stage searches a prefix of the full vectors")
    # an int over the model's window, named so (index_corpus warns about a small one: once, review)
    token_window(emb, args.max_tokens, option="--max-tokens ", warn=False)
    try:
        store = MatryoshkaChroma(args.collection, emb, persist_directory=None if client else persist, client=client,
                                 coarse_dim=args.coarse_dim, coarse_rotation=args.coarse_rotation,
                                 full_encoding=args.full_encoding,
                                 hnsw={"ef_search": args.ef_search} if args.ef_search else None)
    except CollectionMismatchError as exc:  # its advice is the Python API's: say the shell's too
        if "does not match this store (" not in str(exc):  # not a medrag collection, or an older schema:
            # leaving out --model would only fail on the model it records (user tryout)
            raise CollectionMismatchError(f"{exc} From the shell: index into another --collection") from None
        raise CollectionMismatchError(f"{exc} From the shell: leave out --model and the collection settings "
                                      "(--coarse-dim, --coarse-rotation, --full-encoding), and the collection's own "
                                      "are used, or index into another --collection") from None
    try:
        report = index_corpus(source, store, text_field=args.text_field, id_field=args.id_field,
                              metadata_fields=fields, chunk_words=args.chunk_words, overlap=args.overlap,
                              batch_size=args.batch_size, show_progress=False if args.no_progress else None,
                              prune=args.prune, folder_name=args.folder_name, title_field=args.title_field,
                              max_tokens=args.max_tokens, markdown_headings=args.markdown_headings)
    except BaseException:
        # a run that failed before its first write leaves no empty collection, nor a folder it made, behind
        if not existed and store._drop_if_created_empty() and created is not None:
            _remove_created(store, Path(persist), created, keep_folder=was_empty)
        raise
    extra = "".join([f", {report.reused} of them encoded by the interrupted run (not encoded again)"
                     if report.reused else "",
                     f", {report.duplicates} repeated in the input (stored once)" if report.duplicates else "",
                     f", {report.updated} rewritten with changed metadata" if report.updated else "",
                     f", {_count(report.pruned, 'chunk')} of documents no longer in the source pruned"
                     if report.pruned else "",
                     f", {_count(report.removed, 'stale chunk')} of re-indexed documents removed"
                     if report.removed else "",
                     f", {_count(report.not_read, 'file')} not read" if report.not_read else "",
                     f", {_count(report.empty, 'empty document')} not indexed" if report.empty else "",
                     f", {_count(report.scanned_pages, 'PDF page')} without text not indexed"
                     if report.scanned_pages else ""])
    print(f"{_count(report.documents, 'document')} -> {_count(report.chunks, 'chunk')}: {report.added} added, "
          f"{report.skipped} already "
          f"stored (not re-encoded){extra}; collection {args.collection!r} holds {report.stored} records "
          f"({report.seconds:.0f} s)")
    if args.strict and (report.not_read or report.empty or report.scanned_pages):  # every file indexed, whole?
        raise DataError(f"--strict: {_count(report.not_read, 'file')} not read, {_count(report.empty, 'document')} "
                        f"without text and {_count(report.scanned_pages, 'PDF page')} without text (named in the "
                        "warnings above); the others are indexed: fix those files and index again (what is stored "
                        "is reused)")
    return 0


# this module's public names, and the readers' and the chunker's (medrag.sources, medrag.chunking), imported
# from here before they had modules of their own
__all__ = ["CHUNK_KEYS", "CHUNK_OVERLAP", "CHUNK_WORDS", "FIELD_TYPES", "FOLDER_KEY", "FOLDER_SUFFIXES", "IndexReport",
           "MAX_SENTENCE_WORDS", "MAX_WORD_CHARS", "MIN_TEXT_TOKENS", "PDF_CAUSES", "PIECE_WORDS", "PROGRESS_LOG_SECONDS",
           "RECORD_SUFFIXES", "SECTION_KEY", "TEXT_KEY_CHECKS", "TEXT_SUFFIXES", "check_field_names",
           "check_metadata_fields", "check_token_window", "chunk_id", "chunk_pages", "chunk_spans", "chunk_text",
           "index_corpus", "iter_documents", "register", "run_index", "token_window", "word_count"]
