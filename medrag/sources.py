"""The sources ``medrag index`` reads, as documents: a records file (JSONL, also ``.jsonl.gz``, JSON, CSV,
TSV or Parquet: a document per record) or a folder of ``.txt``/``.md``/``.pdf`` files (a document per file).

:func:`iter_documents` yields each document as ``(document key, text, metadata)``, which
:func:`medrag.indexing.index_corpus` chunks and stores. A folder's files are read as UTF-8 (or UTF-16/32
with their BOM), hard-wrapped lines reflowed (:func:`medrag.pdf.reflow`), its PDFs through
:mod:`medrag.pdf`; every file that cannot be read is skipped and named, with its reason. A record's
fields are kept as ``--metadata-fields`` says, converted by type (``year:int``, ``date:date``:
:data:`FIELD_TYPES`); :func:`check_field_names` and :func:`check_metadata_fields` check those names
before a model loads. The public names are also importable from :mod:`medrag.indexing`, as before
(``medrag.indexing.iter_documents``).

**Folders.** A folder's file is the document ``{"source": its relative path, "folder": the
folder's absolute path}``; its chunk ids hash both, so two folders indexed into one collection
keep their files apart even where relative paths repeat (``a/notes.txt``, ``b/notes.txt``), and
re-indexing or pruning one touches only its own files. A moved folder is another source:
its copies from the old place stay until deleted (``store.delete(where={"folder": OLD_PATH})``),
unless it is indexed under a stable name (``--folder-name``) that stands for its path.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrag.chunking import CHUNK_KEYS
from medrag.embeddings import is_utf8
from medrag.markdown import parse_markdown
from medrag.pdf import PAGE_BREAK, PDF_EXTRA, pdf_available, pdf_pages, reflow
from medrag.text_checks import is_blank
from medrag.errors import DataError, InvalidInputError, UnreadablePdfError
from medrag.qa.pairs import iter_records, json_objects
from medrag.qa.sample import is_sample_header
from medrag._store_checks import check_metadata_key

logger = logging.getLogger("medrag.indexing")  # the indexer's messages keep one logger name

#: The metadata key of a folder's files (their folder): a record field of that name would make a
#: records file's chunks read as a folder's, never replaced nor pruned by their own source.
FOLDER_KEY = "folder"
#: File suffixes read as records (one document per record).
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet")
#: File suffixes read as one document per file when SOURCE is a folder (``.pdf``: with pypdf,
#: :mod:`medrag.pdf`).
TEXT_SUFFIXES = (".txt", ".md")
FOLDER_SUFFIXES = (*TEXT_SUFFIXES, ".pdf")


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
