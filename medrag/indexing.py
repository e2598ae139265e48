"""Bulk indexing: files -> chunks -> a :class:`~medrag.store.MatryoshkaChroma` store, resumably.

``medrag index SOURCE`` (and :func:`index_corpus`) reads a JSONL (also ``.jsonl.gz``), JSON,
CSV or Parquet file of records, or a folder of ``.txt``/``.md``/``.pdf`` files, cuts every document into
chunks (:func:`chunk_text`), and adds the chunks to an embedded (``--persist-dir``) or server
(``--host``/``--port``) store.

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

**Folders.** A folder's file is the document ``{"source": its relative path, "folder": the
folder's absolute path}``; its chunk ids hash both, so two folders indexed into one collection
keep their files apart even where relative paths repeat (``a/notes.txt``, ``b/notes.txt``), and
re-indexing or pruning one touches only its own files. A moved folder is another source:
its copies from the old place stay until deleted (``store.delete(where={"folder": OLD_PATH})``),
unless it is indexed under a stable name (``--folder-name``) that stands for its path.

**Chunks.** Sentence-aware word windows: a document is split into sentences (after ``.``,
``!``, ``?``, ``;`` or a line break; a sentence longer than ``max_words`` is cut), consecutive
sentences are packed into a chunk until it holds at least ``chunk_words`` words, and the next
chunk starts ``overlap`` sentences (at most half of its sentences) before the end of the
previous one. Defaults (120 words, 1 sentence of overlap) keep a chunk around 150 e5 tokens,
inside the 512-token window of the e5/bge families with room for the ``passage:`` prompt;
retrieval studies on fixed-size windows (e.g. Kamradt's chunking comparisons, LlamaIndex's
evaluations) find 100-250 words a robust range for QA passages. A folder's ``.md`` files are
chunked section by section, each chunk led by its heading trail (``markdown_headings``,
:mod:`medrag.markdown`).

Example::

    >>> from medrag.indexing import chunk_text
    >>> chunk_text("Une phrase. Une autre phrase.", chunk_words=2, overlap=0)
    ['Une phrase.', 'Une autre phrase.']
    >>> # medrag index notices.jsonl --text-field text --persist-dir ./chroma --collection notices
"""

from __future__ import annotations

import argparse
import bisect
import codecs
import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import itertools
import json
import logging
import math
import numbers
import os
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medrag._store_lock import refuse_if_held_elsewhere
from medrag.bundled import DEFAULT_SPEC
from medrag.command import (add_prompt_arguments, add_store_location_arguments, check_store_location, check_writable_dir,
                            collection_names, collection_prompts, open_server, recorded_model, server_place,
                            store_embeddings)
from medrag.embeddings import is_utf8
from medrag.markdown import heading_trail, markdown_sections, parse_markdown
from medrag.pdf import PAGE_BREAK, PDF_EXTRA, pdf_available, pdf_pages, reflow
from medrag.text_checks import is_blank
from medrag.flags import check_flag
from medrag.errors import CollectionMismatchError, DataError, InvalidInputError, UnreadablePdfError
from medrag.models import check_device
from medrag.qa.pairs import iter_records, json_objects
from medrag.qa.sample import is_sample_header
from medrag.store import (AUTO_LEARNED_MIN_TEXTS, DEFAULT_EF_SEARCH, DEFAULT_FULL_ENCODING, ROTATIONS, MatryoshkaChroma,
                          check_metadata_key)
from medrag.vector_codec import ENCODINGS

logger = logging.getLogger(__name__)

#: Default chunk size in words (a chunk closes once it holds at least this many).
CHUNK_WORDS = 120
#: Metadata keys every chunk gets: its document key and its position in the document.
CHUNK_KEYS = ("doc", "chunk")
#: The metadata key of a folder's files (their folder): a record field of that name would make a
#: records file's chunks read as a folder's, never replaced nor pruned by their own source.
FOLDER_KEY = "folder"
#: The metadata key of a folder's ``.md`` chunk that sits under headings: their trail
#: ("Doliprane 1000 mg > Posologie"), also written before the chunk's text.
SECTION_KEY = "section"
#: Default overlap, in sentences, between consecutive chunks of a document.
CHUNK_OVERLAP = 1
#: Sentences longer than this many words are cut into pieces of this size.
MAX_SENTENCE_WORDS = 200
#: A run of characters without whitespace longer than this (a pasted base64 blob, a text without
#: spaces) is cut into pieces of this size, each counted as :data:`PIECE_WORDS` words: otherwise it
#: is one "word" that no chunk size limits, and the model truncates it and everything after it in
#: its chunk. Words up to this length count as one word, as before (the French medical corpus of
#: ``../shared``, tables and URLs included, has none longer than 174 characters: its chunks are
#: unchanged). A piece counts as many words as its characters would make in French text.
MAX_WORD_CHARS = 200
PIECE_WORDS = 30
#: File suffixes read as records (one document per record).
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet")
#: File suffixes read as one document per file when SOURCE is a folder (``.pdf``: with pypdf,
#: :mod:`medrag.pdf`).
TEXT_SUFFIXES = (".txt", ".md")
FOLDER_SUFFIXES = (*TEXT_SUFFIXES, ".pdf")

#: Without a terminal (``show_progress=None`` and stderr not a tty), :func:`index_corpus` logs its
#: progress at INFO at most this often (``medrag -v index ... 2>> index.log``).
PROGRESS_LOG_SECONDS = 30.0

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\s*\n\s*")


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


def chunk_text(text: str, chunk_words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP,
               max_words: int = MAX_SENTENCE_WORDS, *, drop_repeats: bool = True, max_tokens: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> list[str]:
    """Cut ``text`` into overlapping chunks of whole sentences (see the module docstring).

    Args:
        text: the document.
        chunk_words: a chunk closes once it holds at least this many words (the last one may hold fewer).
        overlap: sentences repeated at the start of the next chunk (0 for none; at most half of
            the previous chunk's sentences are repeated, whatever this value).
        max_words: sentences longer than this are cut into pieces of this many words (a run of
            more than :data:`MAX_WORD_CHARS` characters without whitespace is first cut into
            pieces of that many characters, each counting :data:`PIECE_WORDS` words).
        drop_repeats: no chunk inside the previous one: when the sentences the overlap repeats
            already hold ``chunk_words`` words (a short sentence, then one of ``chunk_words`` words
            or more), the next chunk starts after the previous one instead of repeating them. Off,
            such a chunk is written again (the chunker before December 4, kept for the store
            benchmark's fixed corpus).
        max_tokens / count_tokens: the model's token window and a function that counts the tokens
            a chunk takes in it (e.g. ``lambda c: emb.count_tokens([c])[0]`` with
            ``max_tokens=emb.max_tokens``, :meth:`medrag.MatryoshkaEmbeddings.count_tokens`); give
            both or neither. A chunk over the window drops its last sentences until it fits (they
            start the next chunk), and a sentence over it alone is cut into the longest runs of
            words that fit: a model encodes only the first ``max_tokens`` tokens of a text, and
            what follows would be searchable by its words (BM25) but not by its meaning. Word
            counts alone overflow on text dense in numbers, units and codes (drug leaflets:
            ``benchmarks/chunk_window.py``, docs/benchmarks.md). A single word over the window
            stays whole.

    Returns:
        The chunks, whitespace-normalised; ``[]`` for a blank text.
    """
    return [chunk for chunk, _, _ in chunk_spans(text, chunk_words, overlap, max_words, drop_repeats=drop_repeats,
                                                 max_tokens=max_tokens, count_tokens=count_tokens)]


def chunk_spans(text: str, chunk_words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP,
                max_words: int = MAX_SENTENCE_WORDS, *, drop_repeats: bool = True, max_tokens: int | None = None,
                count_tokens: Callable[[str], int] | None = None) -> list[tuple[str, int, int]]:
    """:func:`chunk_text`'s chunks, each with the positions of its first word and after its last one
    among the words of ``text`` (:func:`word_count` counts them: a run of more than
    :data:`MAX_WORD_CHARS` characters counts its pieces): where a chunk lies in its document, e.g. on
    which pages of a PDF (``medrag index``'s ``page`` / ``page_end``).

    Example::

        chunk_spans("Un. Deux trois. Quatre.", chunk_words=2, overlap=0)
        # [('Un. Deux trois.', 0, 3), ('Quatre.', 3, 4)]
    """
    for name, value in (("chunk_words", chunk_words), ("overlap", overlap), ("max_words", max_words)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy ints too
            raise InvalidInputError(f"{name} must be an int, got {value!r}")
    if chunk_words < 1 or max_words < 1 or overlap < 0:
        raise InvalidInputError(f"need chunk_words >= 1, max_words >= 1, overlap >= 0; got {chunk_words}, "
                                f"{max_words}, {overlap}")
    check_token_window(max_tokens, count_tokens)
    sentences: list[list[str]] = []
    weights: list[list[int]] = []  # words each word of a sentence counts for
    starts: list[int] = []  # the position of each sentence's first word among the text's words
    position = 0
    for raw in _SENTENCE_END.split(text):
        sentence: list[str] = []
        weight: list[int] = []
        total = 0  # sum(weight)
        for word in raw.split():
            if is_blank(word):
                continue  # zero-width or control characters alone (U+200B, a BOM, NUL) are no word
            pieces = [word] if len(word) <= MAX_WORD_CHARS else [
                word[j : j + MAX_WORD_CHARS] for j in range(0, len(word), MAX_WORD_CHARS)]
            for piece in pieces:
                w = 1 if len(pieces) == 1 else PIECE_WORDS
                if sentence and total + w > max_words:  # a sentence longer than max_words is cut here
                    sentences.append(sentence)
                    weights.append(weight)
                    starts.append(position - len(sentence))
                    sentence, weight, total = [], [], 0
                sentence.append(piece)
                weight.append(w)
                total += w
                position += 1
        if sentence:
            sentences.append(sentence)
            weights.append(weight)
            starts.append(position - len(sentence))

    def over(first: int, last: int) -> bool:  # sentences[first:last] as one chunk overflow the window
        joined = " ".join(w for s in sentences[first:last] for w in s)
        return max_tokens is not None and count_tokens(joined) > max_tokens  # type: ignore[misc]

    chunks: list[tuple[str, int, int]] = []
    start = previous_end = 0
    while start < len(sentences):
        end, count = start, 0
        while end < len(sentences) and count < chunk_words:
            count += sum(weights[end])
            end += 1
        if max_tokens is not None:
            while end - start > 1 and over(start, end):
                end -= 1
            if end <= previous_end:  # cut to the window, it would sit inside the previous chunk: no overlap
                start = previous_end
                continue
            if over(start, end):  # one sentence over the window: cut into runs of words that fit
                runs = _fit_words(sentences[start], max_tokens, count_tokens)  # type: ignore[arg-type]
                sentences[start:end] = [sentences[start][a:b] for a, b in runs]
                weights[start:end] = [weights[start][a:b] for a, b in runs]
                starts[start:end] = [starts[start] + a for a, _ in runs]
                end = start + 1
        chunks.append((" ".join(w for s in sentences[start:end] for w in s), starts[start],
                       starts[end - 1] + len(sentences[end - 1])))
        previous_end = end
        if end >= len(sentences):
            break
        # the overlap is capped at half the chunk's sentences: an overlap as long as the chunk stepped
        # one sentence per chunk and stored every sentence up to ``overlap`` times (1 and the default
        # chunk sizes are unchanged by the cap)
        start = max(end - overlap, start + max(1, (end - start) // 2))
        if drop_repeats and sum(sum(w) for w in weights[start:end]) >= chunk_words:
            start = end  # the repeated sentences alone would fill the next chunk: it would add nothing
    return chunks


def word_count(text: str) -> int:
    """How many words :func:`chunk_spans` counts positions over in ``text`` (a run of more than
    :data:`MAX_WORD_CHARS` characters without whitespace: its pieces)."""
    return sum(1 if len(w) <= MAX_WORD_CHARS else -(-len(w) // MAX_WORD_CHARS) for w in text.split() if not is_blank(w))


def chunk_pages(text: str, spans: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """The first and last page (1-based, as a PDF reader numbers them) of each chunk of
    :func:`chunk_spans`, ``text`` being pages joined by :data:`medrag.pdf.PAGE_BREAK`.

    Example::

        text = "Un. Deux\\ftrois. Quatre."  # two pages
        chunk_pages(text, chunk_spans(text, chunk_words=2, overlap=0))  # [(1, 2), (2, 2)]
    """
    bounds = list(itertools.accumulate(word_count(page) for page in text.split(PAGE_BREAK)))
    return [(bisect.bisect_right(bounds, first) + 1, bisect.bisect_right(bounds, max(first, end - 1)) + 1)
            for _, first, end in spans]


def check_token_window(max_tokens: int | None, count_tokens: Callable[[str], int] | None) -> None:
    """Refuse a token window :func:`chunk_text` cannot use: both or neither of ``max_tokens`` (an
    int >= 1) and ``count_tokens`` (a function of a text)."""
    if max_tokens is None and count_tokens is None:
        return
    if max_tokens is None or count_tokens is None:
        raise InvalidInputError("max_tokens and count_tokens go together: give both (the model's window and a "
                                "function counting a chunk's tokens) or neither")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not callable(count_tokens):
        raise InvalidInputError(f"count_tokens must be a function of a text returning its token count, got "
                                f"{count_tokens!r}")


def _fit_words(words: list[str], max_tokens: int, count_tokens: Callable[[str], int]) -> list[tuple[int, int]]:
    """``words`` cut into consecutive runs ``(start, end)``, each the longest that fits ``max_tokens``
    (found by bisection; a single word over the window is a run of its own)."""
    runs: list[tuple[int, int]] = []
    start = 0
    while start < len(words):
        lo, hi = start + 1, len(words)  # lo always fits (or is one word): the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(" ".join(words[start:mid])) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        runs.append((start, lo))
        start = lo
    return runs


def iter_documents(source: str | os.PathLike[str], *, text_field: str = "text", id_field: str | None = None,
                   metadata_fields: list[str] | None = None, warn: bool = True, folder_name: str | None = None,
                   skipped: list[str] | None = None, empty_folder: bool = False,
                   scanned: list[str] | None = None
                   ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(document key, text, metadata)`` for every document of a file or folder.

    Args:
        source: a ``.jsonl``/``.jsonl.gz``/``.json``/``.csv``/``.tsv``/``.parquet`` file of records, or a
            folder whose ``.txt``/``.md`` files (recursively, sorted; hidden ones, named with a
            leading dot or in such a folder, skipped) are one document each, their lines reflowed
            (:func:`medrag.pdf.reflow`: a paragraph wrapped over lines joined, a word cut at a line's
            end rejoined), and its ``.pdf`` files too with pypdf installed (their text layer,
            reflowed, running headers and footers dropped, the pages joined by
            :data:`medrag.pdf.PAGE_BREAK`, a form feed: :mod:`medrag.pdf`; a damaged or encrypted
            one skipped with a warning per cause, a scanned one empty).
        text_field: the record field holding the text.
        id_field: the record field holding a stable document id (default: the SHA-256 of the
            text and the copied metadata, so an edited document is a new one); a text or a number,
            also kept in the chunks' metadata as text.
        metadata_fields: record fields copied into every chunk's metadata (str, int, float,
            bool values; a field that is absent or of another type is left out, and a warning
            says how many records lacked it). ``"year:int"`` (also ``:float``, ``:bool``,
            ``:str``) converts the field's values: a CSV's are all text, and a filter
            ``{"year": 2021}`` matches only numbers; ``:str`` also turns a date into ISO text and
            a list or mapping into JSON text; a value that does not convert is an error
            naming its record; a folder's documents get ``{"source": relative path,
            "folder": the folder's absolute path, or folder_name}``.
            Without ``id_field`` a document is its text and metadata: the same file indexed again
            with other ``metadata_fields`` is another set of documents (the earlier ones stay).
        warn: log the warnings about the source (linked folders not followed, metadata fields
            missing); False for a caller that reads the source twice.
        folder_name: for a folder, the stable name that stands for it in its documents' ``folder``
            (and chunk ids) instead of its absolute path: the same folder mounted elsewhere (a
            container, another machine, a moved folder) is then the same source.
        skipped: a list that receives the document keys of a folder's files skipped as not UTF-8
            text, unreadable (no read rights) or damaged/encrypted PDFs (``index_corpus`` keeps their
            stored chunks when it prunes).
        scanned: a list that receives ``"<file> page <n>"`` for each page without a text layer of a
            folder's PDFs that have text on other pages (scanned pages: not indexed).
        empty_folder: a folder holding no file to read yields nothing instead of raising (a
            ``--prune`` run then removes the chunks of its files, all deleted).

    A null or NaN text is an empty document (skipped and counted, as ``""``); a folder's file
    that is not UTF-8 text, cannot be read or is a damaged PDF is skipped with a warning per reason
    (logged at INFO level, each file is named with its own).

    Raises:
        DataError: a missing source, an unsupported file type, a record without ``text_field``,
            an id that is missing, NaN or not a text or number, a text or value holding a lone
            surrogate (half a character: not storable).
    """
    path = Path(source)
    _check_folder_name(folder_name, path)
    if path.is_dir():
        listing = _FolderListing.walk(path)  # one walk: a hospital share was listed five times
        files = listing.files
        # hidden files and folders (.git, .venv with its thousands of licence .txt files, .obsidian) are
        # not documents: skipped, as ripgrep and LlamaIndex's SimpleDirectoryReader do, and not walked
        hidden = [*listing.hidden_files, *listing.hidden_folders]
        if listing.hidden_files and warn:
            logger.warning("%s: %d file(s) with hidden names skipped (e.g. %s)", path, len(listing.hidden_files),
                           listing.hidden_files[0])
        if listing.hidden_folders and warn:  # every git checkout has one: not worth a warning
            logger.info("%s: hidden folder(s) not walked: %s", path, ", ".join(listing.hidden_folders))
        undecodable = [p for p in files if not is_utf8(p.relative_to(path).as_posix())]
        if undecodable:  # a Latin-1 name (old Windows, Samba shares) cannot be stored as the "source" text
            undecodable_set = set(undecodable)
            files = [p for p in files if p not in undecodable_set]
            if warn:
                logger.warning("%s: %d file(s) whose name is not UTF-8 skipped (e.g. %r): rename them "
                               "(convmv -f latin1 -t utf8) and index again", path, len(undecodable),
                               os.fsencode(undecodable[0].relative_to(path)).decode("utf-8", "backslashreplace"))
        broken = listing.broken
        if broken and warn:
            logger.warning("%s: %d broken link(s) skipped (e.g. %s)", path, len(broken),
                           broken[0].relative_to(path).as_posix().encode("utf-8", "backslashreplace").decode())
        linked = listing.linked
        if linked and warn:  # linked folders are not walked (no loops); say so instead of skipping in silence
            logger.warning("%s: %d linked folder(s) not followed (e.g. %s): pass their targets as sources of "
                           "their own", path, len(linked), linked[0].relative_to(path).as_posix())
        targets = {p.resolve() for p in files if not p.is_symlink()}
        twins = [p for p in files if p.is_symlink() and p.resolve() in targets]
        if twins:  # a link to a file of the folder: the same text twice, two identical hits (user tryout)
            twin_set = set(twins)
            files = [p for p in files if p not in twin_set]
            if warn:
                logger.warning("%s: %d link(s) to files of the same folder skipped (e.g. %s -> %s): their files are "
                               "indexed once, under their own names", path, len(twins),
                               twins[0].relative_to(path).as_posix(), twins[0].resolve().relative_to(path.resolve()).as_posix())
        # a sub-folder this user may not list: the walk cannot enter it, and --prune deleted its files'
        # stored chunks as gone (review); its path (ending with "/") keeps every stored file under it
        unlisted = listing.unlisted
        if skipped is not None:
            skipped.extend(f"{rel}/" for rel, _ in unlisted)
        if warn:
            _warn_skipped(path, [f"{rel}/ ({why})" for rel, why in unlisted], "folder(s) that cannot be listed skipped",
                          "not listable", "give this user read access and index again (their stored files are kept)")
        if warn:  # a hospital folder's .docx, .rtf, .html were left out in silence (user tryout)
            listing.note_other_file_types()
        pdfs = [p for p in files if p.suffix.lower() == ".pdf"]
        if pdfs and not pdf_available():
            if len(pdfs) == len(files):
                raise DataError(f"{path}: its {len(pdfs)} .pdf file(s) need pypdf: {PDF_EXTRA}")
            files = [p for p in files if p.suffix.lower() != ".pdf"]
            if skipped is not None:  # not read is not removed: a --prune run keeps their stored chunks
                skipped.extend(p.relative_to(path).as_posix() for p in pdfs)
            if warn:
                logger.warning("%s: %d .pdf file(s) skipped (e.g. %s): reading them needs pypdf: %s", path, len(pdfs),
                               pdfs[0].relative_to(path).as_posix(), PDF_EXTRA)
        if not files and empty_folder:
            return
        if not files:
            raise DataError(f"{path} holds no {'/'.join(FOLDER_SUFFIXES)} file"
                            + (f" outside hidden folders ({len(hidden)} hidden file(s) or folder(s) skipped, "
                               f"e.g. {hidden[0]})" if hidden else ""))
        root = folder_name or path.resolve().as_posix()
        not_utf8: list[str] = []
        unreadable: list[str] = []  # no read rights, an I/O error
        unreadable_pdf: dict[str, list[str]] = {}  # cause (PDF_CAUSES) -> the files
        no_text_layer: list[str] = []
        scanned_pages: list[str] = []  # PDFs with text whose some pages have none (a scanned table)
        def skip(problems: list[str], rel: str, why: str) -> None:
            """Name a file not read, and keep its stored chunks from --prune (``skipped``)."""
            problems.append(f"{rel} ({why})")
            if skipped is not None:
                skipped.append(rel)

        for f in files:
            rel = f.relative_to(path).as_posix()
            if f.suffix.lower() == ".pdf":
                try:  # read rights first: pdf_text's error advised decrypting or repairing it (review)
                    with open(f, "rb"):
                        pass
                except OSError as exc:
                    skip(unreadable, rel, f"cannot read: {exc.strerror or exc}")
                    continue
                scans: list[int] = []
                try:
                    pages = pdf_pages(f, scanned=scans)
                except UnreadablePdfError as exc:  # damaged or encrypted: skipped and named, as a file not UTF-8 is
                    # each with its own reason, the folder-relative path as the other warnings name files (the
                    # first file's "encrypted" read as every skipped PDF's reason: user tryout); one warning per
                    # cause, each with its own advice (one said "decrypt or repair" for AES files: user tryout)
                    skip(unreadable_pdf.setdefault(exc.cause, []), rel, str(exc).removeprefix(f"{f}: "))
                    continue
                if not any(pages):
                    no_text_layer.append(rel)
                elif scans:  # a scanned page among text pages was left out in silence (user tryout)
                    blank = [str(n) for n in scans]
                    if scanned is not None:
                        scanned.extend(f"{rel} page {n}" for n in scans)
                    scanned_pages.append(f"{rel} (page{'s' if len(blank) > 1 else ''} {', '.join(blank[:10])}"
                                         f"{', ...' if len(blank) > 10 else ''} of {len(pages)})")
                # pages joined by a form feed: index_corpus gives each chunk its pages
                yield rel, PAGE_BREAK.join(pages) if any(pages) else "", {"source": rel, "folder": root}
                continue
            try:
                text = _read_text_file(f)
            except UnicodeDecodeError as exc:
                # one Latin-1 file stopped the whole folder: skipped and named, as the README says
                skip(not_utf8, rel, f"{exc.reason} at byte {exc.start}")
                continue
            except OSError as exc:  # one file without read rights stopped a whole shared drive (user tryout)
                skip(unreadable, rel, f"cannot read: {exc.strerror or exc}")
                continue
            if _mostly_nul(text):  # UTF-16 without its BOM, a binary file named .txt: no search would match it
                skip(not_utf8, rel, "NUL characters: UTF-16 without its BOM, or not a text file")
                continue
            # a few NULs (an old export's padding) are no text: dropped, not stored in chunks; hard-wrapped
            # exports (a line break every 70 characters) reflowed as a PDF's lines are: every break ended a
            # sentence, so chunks began mid-sentence and "mar-"/"tiale" was indexed as two words (user tryout);
            # items, headings, table rows and blank lines keep their breaks
            text = text.replace("\0", "")
            # a Markdown file is reflowed section by section, written back with ATX headings: reflowing it whole
            # joined its front matter's lines, and a Setext underline to the next line (review)
            text = parse_markdown(text).text(reflow) if f.suffix.lower() == ".md" else reflow(text)
            yield rel, text, {"source": rel, "folder": root}
        if not_utf8 and len(not_utf8) == len(files):  # "no document found" named neither the files nor why
            raise DataError(f"{path}: none of its {len(files)} file(s) is UTF-8 text (e.g. {not_utf8[0]}): save them "
                            "as UTF-8 (Windows files: iconv -f cp1252 -t utf-8) and index again")
        failed = [*unreadable, *(p for files_ in unreadable_pdf.values() for p in files_)]
        if failed and len(failed) + len(not_utf8) == len(files):
            raise DataError(f"{path}: none of its {len(files)} file(s) could be read: {failed[0]}"
                            + (f" (and {len(files) - 1} more)" if len(files) > 1 else ""))
        if warn:
            # the warnings gave one example each and no word of the others (user tryout): -v names every file
            _warn_skipped(path, unreadable, "file(s) that cannot be read skipped", "not readable",
                          "give this user read access and index again")
            for cause, (what, advice) in PDF_CAUSES.items():
                _warn_skipped(path, unreadable_pdf.get(cause, []), what, "PDF not read", advice)
            _warn_skipped(path, no_text_layer, ".pdf file(s) without a text layer (scanned pages?): no text indexed",
                          "PDF without text", "OCR them first (e.g. ocrmypdf) and index again")
            _warn_skipped(path, scanned_pages, ".pdf file(s) with pages without a text layer (scanned pages?): "
                          "those pages are not indexed", "PDF pages without text",
                          "OCR them first (e.g. ocrmypdf --skip-text) and index again", kept=False)
            _warn_skipped(path, not_utf8, "file(s) not UTF-8 text skipped", "not UTF-8 text",
                          "save them as UTF-8 (Windows files: iconv -f cp1252 -t utf-8; Latin-1 has no œ) and index again")
        return
    if not path.exists():
        raise DataError(f"{path} does not exist: pass a data file or a folder of .txt/.md/.pdf files")
    name = path.name.lower()
    if not name.endswith(RECORD_SUFFIXES):
        raise DataError(f"{path}: unsupported file type; use a folder of .txt/.md/.pdf files or one of "
                        f"{', '.join(RECORD_SUFFIXES)}")
    lacking: dict[str, int] = {}
    blank_rows = 0  # neither text nor id (with id_field)
    header = 0  # 1 once a sample file's header line was skipped
    first_float_id, n_float_ids = None, 0  # whole-number ids read as floats ("1.0"), for the warning
    typed = [_typed_field(f) for f in metadata_fields or []]
    for n, (where, record) in enumerate(_records(path)):
        if n == 0 and text_field not in record and is_sample_header(record):
            # the header line of medrag's own sample format stopped `medrag index` on the shipped sample
            logger.info("%s: the sample format's header line is not a record: skipped", where)
            header = 1
            continue
        n -= header  # the records before this one, the header not counted (review)
        if text_field not in record:  # "pass --text-field" read oddly when it was passed (user tryout)
            raise DataError(
                f"{where}: no {text_field!r} field (fields: {sorted(record)[:10]}); " + (
                    "name the field that holds the text with --text-field (text_field=), or remove a first line "
                    "that is not a record (a format header)" if n == 0 else
                    f"the {n} record(s) before it have it: every record needs it; fix or remove this one"))
        text = record[text_field]
        if _missing(text):  # null or NaN: how pandas and pyarrow write a missing text; skipped like ""
            text = ""
        if not isinstance(text, str):
            raise DataError(f"{where}: field {text_field!r} is {type(text).__name__}, not text")
        _check_text(text, f"{where}: field {text_field!r}")
        meta = {}
        for field, convert in typed:
            value = record.get(field)
            if convert is not None:  # an empty CSV cell, a NaN (pandas' and json.dumps' missing value): left out
                if value == "" or _missing(value):
                    value = None
                elif convert is str and isinstance(value, (list, tuple, dict, datetime.date, datetime.time)):
                    value = _as_text(value)  # a list column as JSON text, a date as ISO text (as before: a value
                    # written otherwise made other document keys and broke equality filters: review)
                elif convert is datetime.date and isinstance(value, (datetime.date, str)):
                    value = _convert(value, convert, field, where)
                else:
                    value = _plain_value(value)
                    if isinstance(value, (str, int, float, bool)):
                        value = _convert(value, convert, field, where)
            else:
                value = _plain_value(value)
            for text_value in (value if isinstance(value, list) else [value]):
                if isinstance(text_value, str):
                    _check_text(text_value, f"{where}: field {field!r}")
            # left out like a None: a NaN/inf float (pandas' missing value) and an int beyond 64 bits,
            # which Chroma cannot store (the int stopped the run once the model had loaded)
            if _storable(value):
                meta[field] = value
            else:
                lacking[field] = lacking.get(field, 0) + 1
        if id_field is not None:
            value = record.get(id_field)
            if (value == "" or _missing(value)) and is_blank(text):
                # the empty rows a spreadsheet export ends with (";;" from Excel) stopped the run with --id-field,
                # where without it they were empty documents, skipped (user tryout)
                blank_rows += 1
                continue
            if value == "" or _missing(value):  # NaN too: it was the document key "nan"
                raise DataError(f"{where}: no {id_field!r} value (pass another --id-field, or none)")
            if isinstance(value, (dict, list, tuple, set)):  # it was stored as its Python repr
                raise DataError(f"{where}: the {id_field!r} value {value!r} is a {type(value).__name__}; ids are "
                                "text, numbers or dates (pass another --id-field, or none)")
            key = str(value)
            # a Parquet/CSV int column with gaps reads as floats (a CSV's as the text "1000.0": only Parquet's
            # were counted, and the next export without the gap stored every note again: user tryout)
            if (isinstance(value, float) and value.is_integer()) or (
                    isinstance(value, str) and re.fullmatch(r"[+-]?\d+\.0+", value)):
                first_float_id, n_float_ids = first_float_id or key, n_float_ids + 1
            _check_text(key, f"{where}: field {id_field!r}")
            meta.setdefault(id_field, key)
        else:  # the text and the metadata: the same text from two sources is two documents
            # (without metadata the key is the text's hash, as before: existing ids stay valid)
            payload = json.dumps([text, meta], ensure_ascii=False, sort_keys=True) if meta else text
            key = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        yield key, text, meta
    if warn and blank_rows:
        logger.warning("%s: %d record(s) with neither text nor %r value skipped (the empty rows of a spreadsheet "
                       "export?)", path, blank_rows, id_field)
    if warn and first_float_id is not None:
        logger.warning("%s: %d %r value(s) are whole numbers stored as floats (e.g. %r): documents are keyed by them "
                       "as written, so the same ids exported as integers (%r) would be other documents, stored a "
                       "second time; keep one export format, or export the ids as integers or text", path,
                       n_float_ids, id_field, first_float_id, re.sub(r"\.0+$", "", first_float_id))
    for field, count in lacking.items() if warn else ():
        logger.warning("%s: metadata field %r is absent, null, NaN/inf, an int beyond 64 bits or not a "
                       "str/int/float/bool in %d of %d records (left out of their metadata)", path, field, count, n + 1)


def _mostly_nul(text: str) -> bool:
    """Whether NUL characters make up a tenth of ``text`` or more: UTF-16 read without its BOM (a NUL
    between every letter) or a binary file; a few NULs (padding left by an old export) do not make the
    file binary: it is indexed, without them."""
    return text.count("\0") * 10 >= max(len(text), 1)


@dataclass
class _FolderListing:
    """What one walk of a folder finds (:meth:`walk`): hidden folders and folders linked in are not
    entered (a ``.venv`` holds thousands of licence ``.txt`` files; a link may loop)."""

    folder: Path
    files: list[Path] = dataclasses.field(default_factory=list)  # FOLDER_SUFFIXES files (links to files too), sorted
    hidden_files: list[str] = dataclasses.field(default_factory=list)  # relative paths of FOLDER_SUFFIXES files named .*
    hidden_folders: list[str] = dataclasses.field(default_factory=list)  # relative paths of folders named .*, not entered
    broken: list[Path] = dataclasses.field(default_factory=list)  # links of a FOLDER_SUFFIXES name to nothing
    linked: list[Path] = dataclasses.field(default_factory=list)  # links to folders, not followed
    unlisted: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (relative path, reason) of folders not listable
    others: dict[str, int] = dataclasses.field(default_factory=dict)  # other files' suffix -> count, outside Chroma stores
    first_other: Path | None = None

    @classmethod
    def walk(cls, folder: Path) -> "_FolderListing":
        listing = cls(folder)

        def note(exc: OSError) -> None:
            where = Path(exc.filename or folder)
            if where != folder:
                listing.unlisted.append((where.relative_to(folder).as_posix(), exc.strerror or str(exc)))

        stores: set[str] = set()  # Chroma stores kept inside the folder (--persist-dir docs/index), and below
        for top, dirs, names in os.walk(folder, onerror=note):
            here = Path(top)
            # os.path's tests, not Path's: Path.exists() raised PermissionError inside a folder without
            # rights (review), where the walk should go on and name the folder (onerror)
            in_store = top in stores or os.path.exists(os.path.join(top, "chroma.sqlite3"))
            entered = []
            for d in sorted(dirs):
                p = here / d
                if d.startswith("."):
                    listing.hidden_folders.append(p.relative_to(folder).as_posix() + "/")
                elif os.path.islink(p):
                    listing.linked.append(p)
                else:
                    entered.append(d)
                    if in_store:
                        stores.add(os.path.join(top, d))
            dirs[:] = entered
            for name in sorted(names):
                p = here / name
                suffix = p.suffix.lower()
                if suffix in FOLDER_SUFFIXES:
                    if name.startswith("."):
                        listing.hidden_files.append(p.relative_to(folder).as_posix())
                    elif os.path.isfile(p):
                        listing.files.append(p)
                    elif os.path.islink(p) and not os.path.exists(p):
                        listing.broken.append(p)
                elif not name.startswith(".") and not in_store and os.path.isfile(p):
                    # a store's own files were counted as other types and the warning advised converting
                    # them to text (user tryout); notes beside it are still read
                    kind = suffix or "(no suffix)"
                    listing.others[kind] = listing.others.get(kind, 0) + 1
                    listing.first_other = listing.first_other or p.relative_to(folder)
        listing.files.sort()
        listing.hidden_files.sort()
        listing.hidden_folders.sort()
        listing.broken.sort()
        listing.linked.sort()
        listing.unlisted.sort()
        return listing

    def note_other_file_types(self) -> None:
        """Warn about the folder's files that no run reads (types other than :data:`FOLDER_SUFFIXES`,
        outside hidden folders and Chroma stores), counted by suffix."""
        if not self.others:
            return
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.others.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
        first = self.first_other.as_posix() if self.first_other is not None else ""
        logger.warning("%s: %d file(s) of other types not indexed (%s; e.g. %s): medrag reads %s files; convert "
                       "the others to text first (e.g. pandoc -t plain, or a records file)", self.folder,
                       sum(self.others.values()), kinds, first.encode("utf-8", "backslashreplace").decode(),
                       "/".join(FOLDER_SUFFIXES))


#: The causes a folder's PDF is not read for (:attr:`medrag.pdf.UnreadablePdfError.cause`): one
#: warning each, with its own advice.
PDF_CAUSES = {
    "password": (".pdf file(s) encrypted with a password skipped",
                 "save decrypted copies (qpdf --decrypt --password=PASSWORD in.pdf out.pdf) and index again"),
    "crypto": (".pdf file(s) whose encryption needs the cryptography package skipped",
               "pip install 'pypdf[crypto]' (or: pip install cryptography) and index again"),
    "not_pdf": ("file(s) named .pdf that are not PDFs skipped",
                "rename or convert them (a web page or a Word file saved as .pdf) and index again"),
    "damaged": (".pdf file(s) that cannot be read skipped (damaged or truncated?)",
                "repair them (qpdf in.pdf out.pdf) or export them again, and index again"),
}


def _warn_skipped(path: Path, problems: list[str], what: str, label: str, advice: str, kept: bool = True) -> None:
    """One warning for the files of a folder skipped for one reason (their count, the first named),
    and, at INFO level (``-v``), a line naming each (``label``: the reason, short): a hospital
    folder's hundreds of skipped exports were counted, one named (user tryout). ``kept``: the warning
    says that what was stored for them earlier is kept (a protocol replaced by a damaged file stayed
    searchable in its superseded version, and nothing said so: user tryout)."""
    if not problems:
        return
    logger.warning("%s: %d %s (e.g. %s): %s%s%s", path, len(problems), what, problems[0], advice,
                   " (what was stored for them earlier is kept, and still found by searches)" if kept else "",
                   "; -v names them all" if len(problems) > 1 and not logger.isEnabledFor(logging.INFO) else "")
    for problem in problems:
        logger.info("%s: %s: %s", path, label, problem)


def _read_text_file(path: Path) -> str:
    """A folder's ``.txt``/``.md`` file as text: UTF-8 (a BOM dropped), or UTF-16/32 when it starts with
    their BOM (Windows Notepad's "Unicode"; its advice to re-save as Latin-1 made text with a NUL
    between every letter, indexed without a word: user tryout).

    Raises:
        UnicodeDecodeError: neither.
    """
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts with FF FE
        return raw.decode("utf-32")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _missing(value: Any) -> bool:
    """None or a NaN/inf float: a missing value (pandas, pyarrow and ``json.dumps`` write NaN)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _too_big(value: Any) -> bool:
    """An int outside the 64-bit range Chroma stores."""
    return isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63


def _storable(value: Any) -> bool:
    """A metadata value Chroma stores: a str, a finite float, a 64-bit int, a bool, or a non-empty list
    of one of those types (a list item that is text is checked like any text, :func:`_check_text`); a
    list mixing types is left out like any value Chroma refuses, not refused at the write."""
    if isinstance(value, list):
        kinds = {bool if isinstance(v, bool) else int if isinstance(v, int) else type(v) for v in value}
        return len(kinds) == 1 and all(_storable(v) for v in value)
    return isinstance(value, (str, int, float, bool)) and not _missing(value) and not _too_big(value)


def _check_text(value: str, what: str) -> None:
    """A :class:`DataError` naming the record when ``value`` cannot be stored (a lone surrogate, from a
    JSON ``\\ud800`` escape): it stopped the run at the write, naming a position in a batch."""
    if not is_utf8(value):
        bad = next(i for i, c in enumerate(value) if not is_utf8(c))
        raise DataError(f"{what} holds a lone surrogate {value[bad]!r} at position {bad} (half of a character, not "
                        "valid UTF-8 text): fix that record in the source")


def _document_name(meta: dict[str, Any], root: Any, number: int, id_field: str | None, key: str) -> str:
    """How a warning names a document: a folder's file by its path, a record by its number and, with
    ``--id-field``, its id (``document 12`` alone sent a data engineer counting rows: user tryout).

    >>> _document_name({}, None, 12, "doc_id", "1040"), _document_name({}, None, 3, None, "ab12")
    ("document 12 (doc_id '1040')", 'document 3')
    """
    if root:
        return str(meta["source"])
    return f"document {number}" + (f" ({id_field} {key!r})" if id_field is not None else "")


def _plain_value(value: Any) -> Any:
    """A Parquet (or JSON) cell as a value Chroma stores: a date-time as ISO text (a date alone, as a
    CSV writes it, when it is midnight without a time zone), a date as ISO text, a ``Decimal`` as a
    float, a list of one scalar type as a list; anything else unchanged. These columns were left out
    of every record, ``--strict`` or not, and indexing a Parquet export over a CSV one removed the
    dates stored from it (user tryout).

    >>> import decimal
    >>> _plain_value(datetime.datetime(2023, 6, 10)), _plain_value(datetime.datetime(2023, 6, 10, 8, 30))
    ('2023-06-10', '2023-06-10T08:30:00')
    >>> _plain_value(decimal.Decimal("12.50")), _plain_value(("HTA", "diabète")), _plain_value([1, "a"])
    (12.5, ['HTA', 'diabète'], [1, 'a'])
    """
    import decimal

    if isinstance(value, datetime.datetime):
        midnight = value.tzinfo is None and value.time() == datetime.time()
        return value.date().isoformat() if midnight else value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else value
    if isinstance(value, tuple):
        return list(value)
    return value


def _as_text(value: Any) -> Any:
    """A ``NAME:str`` field's non-scalar value as text: a date or time in ISO format, a list or a mapping
    as JSON; anything else unchanged (and then left out)."""
    import datetime

    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def check_field_names(metadata_fields: list[str] | None) -> None:
    """Raise :class:`InvalidInputError` for a metadata field name no record may have as a key
    (:func:`medrag.store.check_metadata_key`): it stopped the run at the first write, after the
    model loaded."""
    for spec in metadata_fields or []:
        name = _typed_field(spec)[0]
        try:
            check_metadata_key(name, f"metadata field {name!r}")
        except InvalidInputError as exc:
            raise InvalidInputError(f"{exc}; rename that column in the source") from None


def _note_unkept_fields(source: Path, kept: set[str | None]) -> None:
    """Warn, naming them, about the first record's fields that no chunk keeps: a ``--filter`` on them
    later finds nothing, with no error to say why (they are kept with ``--metadata-fields``)."""
    first = next(_records(source), None)
    record = first[1] if first else {}
    # fields --metadata-fields can name: not medrag's own chunk keys, not a CSV's unnamed index column,
    # not a name holding the flag's separators; lists and dicts are kept as JSON text (NAME:str)
    unkept = [f if not isinstance(record[f], (list, tuple, dict)) else f"{f}:str" for f in sorted(record)
              if f not in kept and f.strip() and f not in (*CHUNK_KEYS, FOLDER_KEY) and not set(f) & {",", ":"}]
    if unkept:
        shown = unkept[:10]
        logger.warning("%s: the records' field(s) %s are not kept with the chunks; to show them in results and "
                       "filter on them (--filter), index with --metadata-fields %s%s", source,
                       ", ".join(f.split(":")[0] for f in shown), ",".join(shown),
                       f" (and {len(unkept) - 10} more fields)" if len(unkept) > 10 else "")


def check_metadata_fields(source: str | os.PathLike[str], metadata_fields: list[str] | None) -> None:
    """Raise :class:`DataError` when a field of ``metadata_fields`` is in no record of the records
    file ``source`` (a misspelled name), naming the nearest field; nothing for a folder.

    Reads the field names only (a CSV's or Parquet file's columns, every JSON record's keys: far
    cheaper than encoding). Without it a misspelled field was a warning after the whole file was
    stored without it, and indexing again with the right name (without ``id_field``) stored every
    document a second time, as documents are keyed by their text and metadata.
    """
    path = Path(source)
    wanted = [_typed_field(f)[0] for f in metadata_fields or []]
    if not wanted or path.is_dir():
        return
    name = path.name.lower()
    columnar = name.endswith((".csv", ".tsv", ".parquet"))  # every record has every column: the first says it all
    seen: set[str] = set()
    for _, record in _records(path):
        seen.update(record)
        if columnar or seen.issuperset(wanted):
            break
    unknown = [f for f in wanted if f not in seen]
    if unknown and seen:
        name, _, kind = unknown[0].rpartition(":")
        if name in seen:  # "year:date" read as a field of that name ("did you mean 'year'?")
            raise DataError(f"--metadata-fields {unknown[0]!r}: {kind!r} is not a type medrag converts to; write "
                            f"{name}:TYPE with TYPE one of {', '.join(FIELD_TYPES)}, or {name} alone")
        import difflib

        match = difflib.get_close_matches(unknown[0], sorted(seen), n=1)
        raise DataError(f"{path}: no record has the metadata field {unknown[0]!r}"
                        f"{f' (did you mean {match[0]!r}?)' if match else ''}; the records' fields: "
                        f"{', '.join(sorted(seen)[:20])}")


#: ``--metadata-fields name:TYPE`` conversions. ``date`` stores a date as the int ``YYYYMMDD``, which
#: range filters compare (``{"date": {"$gte": 20240301}}``: Chroma's ``$gt``/``$lt`` take numbers only).
FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "date": datetime.date}
_TRUE, _FALSE = ("true", "1", "yes", "oui", "vrai"), ("false", "0", "no", "non", "faux")


def _typed_field(spec: str) -> tuple[str, type | None]:
    """``"year:int"`` -> ``("year", int)``; a name without a known type suffix -> ``(name, None)``."""
    name, _, kind = spec.rpartition(":")
    if name and kind in FIELD_TYPES:
        return name, FIELD_TYPES[kind]
    return spec, None


def _convert(value: str | int | float | bool, kind: type, field: str, where: str) -> Any:
    """A record's scalar ``value`` as ``kind`` (a CSV's text, a number given as a string), or a
    :class:`DataError` naming the record.

    >>> [_convert(v, int, "year", "r") for v in ("2021", "2021.0", 2021.0)]
    [2021, 2021, 2021]
    >>> _convert("0,5", float, "dose", "r"), _convert("oui", bool, "actif", "r"), _convert("5,0", int, "pages", "r")
    (0.5, True, 5)
    >>> [_convert(v, datetime.date, "date", "r") for v in ("2023-06-10", "10/06/2023", "2023-06-10T14:30:00")]
    [20230610, 20230610, 20230610]
    """
    if kind is str:
        return value if isinstance(value, str) else str(value)
    if kind is datetime.date:
        day = _as_date(value)
        if day is not None:
            return day.year * 10000 + day.month * 100 + day.day
        raise DataError(f"{where}: field {field!r} is {value!r}, not a date (--metadata-fields {field}:date reads "
                        "YYYY-MM-DD, an ISO date-time, or the French DD/MM/YYYY); fix the value or leave the type out")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE + _FALSE:
            return text in _TRUE
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        if "," in text and "." not in text:  # a French decimal comma: "0,5"
            text = text.replace(",", ".", 1)
        try:
            return float(text)
        except ValueError:
            pass
    else:  # int; "2021.0" too: pandas writes an int column with gaps as floats
        number: int | float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        else:  # "5.0", and "5,0": pandas' to_csv(decimal=",") writes an int column with gaps so (user tryout);
            # not "1,000", which may be a thousand
            text = str(value).strip()
            if "," in text and "." not in text and not re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", text):
                text = text.replace(",", ".", 1)
            with contextlib.suppress(ValueError):
                number = float(text)
        # Chroma stores 64-bit ints; the range first (a huge int does not convert to a float)
        if number is not None and -2**63 <= number < 2**63 and float(number).is_integer():
            return int(number)
    dated = _as_date(value) is not None and kind is not bool
    raise DataError(f"{where}: field {field!r} is {value!r}, not {'a' if kind is not int else 'an'} {kind.__name__} "
                    f"(--metadata-fields {field}:{kind.__name__}"
                    f"{', a 64-bit int' if kind is int else ''}); "
                    + (f"a date is stored as {field}:date (the int YYYYMMDD, for range filters) or as text (no type)"
                       if dated else "fix the value or leave the type out"))


_DAY_FIRST = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")


def _as_date(value: Any) -> "datetime.date | None":
    """``value`` as a date: a date or date-time (a Parquet column's), ISO text (``2023-06-10``, with a
    time or not), or the French ``10/06/2023`` (day first; ``-`` and ``.`` too); else None.

    >>> _as_date("2023-06-10T08:00:00"), _as_date("10.06.2023"), _as_date("06/31/2023"), _as_date("2023")
    (datetime.date(2023, 6, 10), datetime.date(2023, 6, 10), None, None)
    """
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    with contextlib.suppress(ValueError):
        if re.match(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).date() if len(text) > 10 \
                else datetime.date.fromisoformat(text)
        match = _DAY_FIRST.fullmatch(text)
        if match:
            return datetime.date(int(match[3]), int(match[2]), int(match[1]))
    return None


def _check_folder_name(folder_name: Any, path: Path) -> None:
    """``folder_name`` names a folder source: a non-empty string, and only for a folder."""
    if folder_name is None:
        return
    if not isinstance(folder_name, str) or not folder_name.strip():
        raise InvalidInputError(f"folder_name (--folder-name) must be a non-empty string, got {folder_name!r}")
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"a folder name (--folder-name) names a folder source; {path} is a records file, "
                                "whose documents are keyed by --id-field or their content, not their place")


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line`` or ``file:row``, record) of a records file; JSONL is streamed."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rb") as fh:  # bytes: json_objects decodes each line (a bad one is named, a BOM dropped)
                for lineno, obj in json_objects(fh, path):
                    yield f"{path}:{lineno}", obj
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
        return
    for row, record in enumerate(iter_records(path), 1):
        yield f"{path}:row {row}", record


#: Below this many tokens of text per chunk (the window less the model's prompt and special tokens),
#: ``max_tokens`` makes chunks of a few words: a warning says so.
MIN_TEXT_TOKENS = 32


def token_window(embeddings: Any, max_tokens: int | Literal["model"] | None = "model", *,
                 option: str = "max_tokens=", warn: bool = True) -> tuple[int | None, Callable[[str], int] | None]:
    """The ``(max_tokens, count_tokens)`` pair :func:`chunk_text` cuts chunks with, for a store's
    ``embeddings`` (see :func:`index_corpus`'s ``max_tokens``); ``(None, None)`` for no cap.
    ``option`` names the setting in the errors (``medrag index``: ``"--max-tokens "``); ``warn=False``
    leaves the warning about a window of a few tokens to a later call (``medrag index`` checks first).

    Raises:
        InvalidInputError: ``max_tokens`` is not ``"model"``, ``None`` or an int >= 1; an int with
            embeddings that cannot count tokens, or over the model's window.
    """
    if max_tokens is None:
        return None, None
    if max_tokens != "model" and (isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral)
                                  or max_tokens < 1):
        raise InvalidInputError(f"max_tokens must be 'model', None or an int >= 1, got {max_tokens!r}")
    window = getattr(embeddings, "max_tokens", None)
    if not isinstance(window, int) or not callable(getattr(embeddings, "count_tokens", None)):
        if max_tokens == "model":
            logger.info("the store's embeddings (%s) cannot count tokens: chunks are cut by words only",
                        type(embeddings).__name__)
            return None, None
        raise InvalidInputError(f"max_tokens={max_tokens}: the store's embeddings ({type(embeddings).__name__}) "
                                "cannot count tokens; pass max_tokens=None to cut chunks by words only")
    if max_tokens != "model" and max_tokens > window:
        raise InvalidInputError(f"{option}{max_tokens} is over the model's window of {window} tokens: what "
                                f"follows its first {window} tokens would not be encoded; pass at most {window}")
    count = lambda chunk: embeddings.count_tokens([chunk])[0]  # noqa: E731
    if max_tokens != "model" and warn:
        room = int(max_tokens) - (count("x") - 1)  # the prompt's and the special tokens' share of the window
        if room < MIN_TEXT_TOKENS:  # --max-tokens 5: one-word chunks, the whole index rebuilt (user tryout)
            logger.warning("a token window of %d (--max-tokens, max_tokens=) leaves %d token(s) of text per chunk "
                           "beside the model's prompt and special tokens: chunks of a few words, which no search "
                           "reads well; pass 'model' (its window, %d) unless you mean it", max_tokens, max(room, 0), window)
    return (window if max_tokens == "model" else int(max_tokens)), count


def _fitting_trail(headings: tuple[str, ...], count: Callable[[str], int] | None, window: int | None) -> str | None:
    """A section's heading trail for its chunks (None without headings): its outer headings dropped
    while it takes half of the model's token window or more (a deep trail of long headings left the
    model mostly headings to read: review); the innermost heading is always kept."""
    while count is not None and window is not None and len(headings) > 1 \
            and count(f"{heading_trail(headings)} :") * 2 >= window:
        headings = headings[1:]
    return heading_trail(headings) or None


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
    documents = chunks = duplicates = removed = updated = added = empty = long_titles = reused = textless_pdfs = 0
    empty_named: list[str] = []  # the first few, for the warning
    seen: set[str] = set()
    read_keys: set[str] = set()  # every document key of this run (for prune)
    elsewhere: dict[str, set[str]] = {}  # another folder -> this run's document keys stored under it too
    not_read: list[str] = []  # a folder's files skipped (not UTF-8, unreadable): still in the source, not pruned
    scanned: list[str] = []  # pages without a text layer of PDFs that have text elsewhere
    keys: dict[str, int] = {}  # --id-field values seen this run -> their document's number
    # whether each of the first documents checked is stored under the key of its text alone (None: decided)
    text_keyed: list[bool] | None = [] if id_field is None and root is None else None
    pending_texts: list[str] = []
    pending_meta: list[dict[str, Any]] = []
    pending_ids: list[str] = []
    pending_docs: dict[str, set[str]] = {}  # stable key -> all its chunk ids (this run's version)
    # disable=None: a bar only when stderr is a terminal
    bar = tqdm(desc="indexing", unit="chunk", disable=None if show_progress is None else not show_progress)
    # no terminal (cron, a container's log): an INFO line at most every PROGRESS_LOG_SECONDS instead, for
    # a run of hours showed nothing between its start and its summary (user tryout)
    progress_lines = show_progress is None and bar.disable
    last_line = time.perf_counter()
    checkpoint = _first_write_checkpoint(store)  # a new collection's first write survives a kill

    def flush_size() -> int:
        """A coarse projection still to fit is fitted on the store's first write: hold that many chunks
        (add_texts then writes them as one batch)."""
        size = getattr(store, "next_write_size", None)
        return size(batch_size) if size is not None else batch_size

    def settle_text_keys() -> None:
        """Refuse the run, before its first write, when every document checked is stored under the key of
        its text alone (:func:`_refuse_text_keyed_copies`)."""
        nonlocal text_keyed
        found, text_keyed = text_keyed, None
        if found and all(found):
            _refuse_text_keyed_copies(source, len(found), prune)

    def flush() -> None:
        nonlocal removed, updated, added, checkpoint, reused, last_line
        if text_keyed is not None:
            settle_text_keys()
        if pending_texts:
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
            updated += sum(1 for i in todo if pending_ids[i] in stored_meta)
            added += sum(1 for i in todo if pending_ids[i] not in stored_meta)  # counted, not read off len(store):
            # another client of a server writing meanwhile made it "92 added, -32 already stored" (user tryout)
            if todo:
                # the write that fits the coarse stage holds thousands of chunks (minutes on a CPU): its
                # own bar moves as they are encoded, where this one moves only after each write
                store.add_texts([pending_texts[i] for i in todo], [pending_meta[i] for i in todo],
                                ids=[pending_ids[i] for i in todo], batch_size=batch_size,
                                show_progress=len(todo) > batch_size and not bar.disable)
            bar.update(len(pending_texts))
            pending_texts.clear(), pending_meta.clear(), pending_ids.clear()
            if progress_lines and time.perf_counter() - last_line >= PROGRESS_LOG_SECONDS:
                last_line = time.perf_counter()
                logger.info("indexing %s: %d document(s) read, %d chunk(s): %d added, %d rewritten (%.0f s)", source,
                            documents, chunks, added, updated, last_line - t0)
            if checkpoint is not None and store.rotation_fitted:  # the first write is stored: its encodings too
                _end_checkpoint(store, checkpoint, remove=True)
                reused, checkpoint = checkpoint.reused, None
        if pending_docs:  # after the new chunks are stored: the earlier versions' chunks go
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
                    elsewhere.setdefault(other, set()).add(md.get("doc"))
            if stale:
                store.delete(stale)
                removed += len(stale)
            pending_docs.clear()

    try:
        for key, text, meta in iter_documents(source, text_field=text_field, id_field=id_field,
                                              metadata_fields=metadata_fields, folder_name=folder_name,
                                              skipped=not_read, empty_folder=prune, scanned=scanned):
            documents += 1
            title = meta.get(title_field) if title_field is not None else None
            if title is not None and not isinstance(title, bool) and not is_blank(str(title)):  # a number: its text
                title = " ".join(str(title).split())
            else:
                title = None
            markdown = markdown_headings and root is not None and key.lower().endswith(".md")
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
                        long_title, long_titles = True, long_titles + 1
                        if long_titles == 1:  # a folder's file by its name: "document 1" said nothing (user tryout)
                            logger.warning("%s: the %s of %s takes half of the model's %d-token window or "
                                           "more: its chunks are cut without counting it, and the model reads only "
                                           "the window's worth of title and chunk", source,
                                           title_field or "innermost heading",
                                           _document_name(meta, root, documents, id_field, key), window)
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
            if not pieces:
                empty += 1
                if pdf and not text:  # no text layer: iter_documents named it, with OCR advice (warned twice before)
                    textless_pdfs += 1
                elif len(empty_named) < 3:
                    empty_named.append(_document_name(meta, root, documents, id_field, key))
            id_key = key if root is None else f"{root}/{key}"
            ids = [chunk_id(id_key, position, chunk) for position, chunk in enumerate(pieces)]
            if text_keyed is not None and meta and pieces:  # a document without metadata keeps its text's key
                text_keyed.append(_stored_under_text_key(store, text, key))
                if len(text_keyed) >= TEXT_KEY_CHECKS:
                    settle_text_keys()
            if id_field is not None:
                if key in keys:
                    # the documents before it are stored, as the message says; not a new collection's first
                    # write, which decides (and fits) its coarse stage for good: on the 20 documents read so far,
                    # "auto" chose the raw prefix where the whole file got the learned stage (user tryout)
                    first = not getattr(store, "rotation_fitted", True)
                    if not first:
                        flush()
                    raise DataError(f"{source}: document {documents} has the {id_field} {key!r} of document "
                                    f"{keys[key]}: the {id_field} values must be unique (a document's chunks are "
                                    "keyed by it, so a repeated one would replace the earlier document). "
                                    + ("Nothing was written (a new collection's first write fits its coarse stage on "
                                       "the chunks it holds, so it waits for them). " if first else
                                       "Nothing of this document was written; the earlier ones are stored. ")
                                    + "Fix the input or pass another --id-field")
                keys[key] = documents
            # every key, content keys too: the same document chunked otherwise (--chunk-words, --overlap)
            # replaces its earlier chunks instead of adding a second copy; an empty document keeps them (a
            # null text in a broken export deleted the stored document, while the warning said "not indexed")
            if pieces:
                pending_docs[key] = set(ids)
            read_keys.add(key)
            for position, (chunk, id_, trail) in enumerate(zip(pieces, ids, trails)):
                # a PDF chunk says where to read it (user tryout: nothing but the file; the running header
                # in a chunk named another page)
                where = {"page": pages[position][0], "page_end": pages[position][1]} if pdf and pages else {}
                chunks += 1
                if id_ in seen:
                    duplicates += 1
                    continue
                seen.add(id_)
                pending_texts.append(chunk)
                pending_meta.append({**meta, "doc": key, "chunk": position}
                                    | ({SECTION_KEY: trail} if trail is not None else {}) | where)
                pending_ids.append(id_)
                if len(pending_texts) >= flush_size():
                    flush()
        if documents and not chunks and not prune_folder:  # before the last flush, which would delete their
            # earlier chunks (a folder pruned keeps an empty file's chunks and drops deleted files')
            raise DataError(f"{source}: its {documents} document(s) are all empty (no text); nothing was "
                            "indexed and nothing stored was changed")
        flush()
    finally:
        bar.close()
        if checkpoint is not None:  # interrupted before the first write was stored: kept for the rerun
            _end_checkpoint(store, checkpoint, remove=False)
    if documents == 0:
        if not prune_folder:
            raise DataError(f"{source}: no document found")
        # its last file deleted: --prune removes what was stored of the folder (user tryout)
        logger.warning("%s holds no file to index: --prune removes the chunks stored for its files", source)
    if long_titles > 1:
        logger.warning("%s: %d document(s) had a %s taking half of the model's window or more (the first named above)",
                       source, long_titles, title_field or "innermost heading")
    if empty > textless_pdfs:
        logger.warning("%s: %d of %d document(s) are empty (no text) and were not indexed; what was stored for them "
                       "earlier is kept (e.g. %s)", source, empty - textless_pdfs, documents, ", ".join(empty_named))
    pruned = _prune(store, read_keys | set(not_read), root) if prune else 0
    if not prune:
        _note_gone_files(store, read_keys | set(not_read), root, source)
    if added and elsewhere:  # a renamed folder was indexed again beside its old copy: every hit twice (user tryout)
        other, keys_there = max(elsewhere.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if 2 * len(keys_there) >= documents:
            # a folder named alike in the other Unicode spelling (copied from macOS): a filter matches both
            # spellings by default, so the advice without unicode_spellings=False deleted the new copy too (review)
            exact = ", unicode_spellings=False" if unicodedata.normalize("NFC", other) == \
                unicodedata.normalize("NFC", root) else ""  # type: ignore[arg-type]
            logger.warning("%s: %d of its %d file(s) are also stored under the folder %s: if the folder was moved or "
                           "renamed, both copies are searched (each hit twice); delete the old one's chunks "
                           "(store.delete(where={'folder': %r}%s)), and index with --folder-name NAME so that a "
                           "later move keeps one source", source, len(keys_there), documents, other, other, exact)
    stored = len(store)
    report = IndexReport(documents, chunks, added, chunks - duplicates - added - updated, stored,
                         time.perf_counter() - t0, duplicates, removed, updated, pruned, reused, len(not_read), empty,
                         len(scanned))
    logger.info("%s", report)
    return report


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
