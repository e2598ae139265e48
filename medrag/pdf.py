"""The text of PDF files, for indexing: ``medrag index`` reads the ``.pdf`` files of a folder.

Hospital protocols, drug leaflets (the ANSM publishes them as PDFs) and guidelines come as PDFs.
Their text layer is read by pypdf (BSD licence, pure Python; ``pip install 'medrag[pdf]'``), then
*reflowed*: a PDF's text comes as the lines of the printed page, a sentence wrapped over several
lines and words hyphenated at the line's end ("carence mar-" / "tiale"). medrag's chunker ends a
sentence at a line break, and the BM25 analyzer would index ``mar`` and ``tial``; so :func:`reflow` joins a line to the next one unless it ends a
sentence or the next one starts an item, and rejoins a word cut at a line's end without its hyphen
(``mar-`` / ``tiale`` -> ``martiale``), unless the cut follows the first element of a compound
(:data:`COMPOUND_HEADS`: ``anti-`` / ``inflammatoire`` stays a compound) or the document writes the
hyphenated form elsewhere.

A folder's ``.txt`` and ``.md`` files are reflowed too: exports from hospital software and e-mail
clients wrap their paragraphs at 70-80 characters the same way (a line that is a unit, an item, a
heading or a table row, keeps its break).

A PDF is read page by page (:func:`pdf_pages`): the lines printed at the top or bottom of most pages
(a running header or footer: ``CHU de Nantes – Protocole PHA-012 – version 3 – page 2/5``) are taken
out of the text's flow and kept once (:func:`strip_running_lines`: they cut sentences in two and put
another page's number into a chunk: user tryout); a word cut at a page's end is rejoined with the
next page's first word; and :func:`pdf_text` joins the pages with :data:`PAGE_BREAK` (a form feed, as
``pdftotext`` writes), which the chunker reads as a space (a sentence goes on over a page break) and
``medrag index`` reads as a page break (each chunk's ``page`` and ``page_end``).

A scanned PDF has no text layer: it gives an empty text (OCR it first, e.g. ``ocrmypdf``); a
scanned page among text pages gives an empty page.

Example::

    >>> reflow("2. Posologie\\nLa ferritine basse signe une carence mar-\\ntiale ; un anti-\\ninflammatoire\\n"
    ...        "est évité.\\n- fer oral")
    '2. Posologie\\nLa ferritine basse signe une carence martiale ; un anti-inflammatoire est évité.\\n- fer oral'
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from medrag.errors import DataError, InvalidInputError, UnreadablePdfError

logger = logging.getLogger(__name__)

#: What ``pip install`` brings the PDF reader.
PDF_EXTRA = "pip install 'medrag[pdf]'  (or: pip install 'pypdf[crypto]')"

#: A word cut at a line's end: letters, a hyphen, the line break, letters.
_CUT_WORD = re.compile(r"\b(\w+)-[ \t]*\n[ \t]*(\w+)")  # \b: a long run of letters was quadratic
_WORDS = re.compile(r"\w+")
#: A word written with a hyphen on one line (``anti-inflammatoire``; ``a-b-c`` gives ``a-b`` and ``b-c``).
_HYPHENATED = re.compile(r"(?=\b(\w+-\w+)\b)")
#: First elements of French compounds, whose hyphen a line's end does not remove (``anti-`` /
#: ``inflammatoire``, ``sous-`` / ``cutanée``) unless the document writes the word whole elsewhere and
#: not hyphenated. Short elements that are also common first syllables (``pré-sente``, ``pro-duit``,
#: ``sur-veillance``, ``mi-nute``) are left out: rejoined. Of these, the :data:`JOINED_HEADS` are
#: written joined to the next element in medical French (``antibiotique``, ``hypoglycémie``,
#: ``intraveineuse``): a word cut after one of them is rejoined unless the vowels joined would read as one sound
#: or a doubled letter (:func:`_vowels_meet`).
COMPOUND_HEADS = frozenset("""anti auto avant bien contre demi entre extra grand hyper hypo infra inter
    intra micro mini multi non post pseudo quasi semi sous super supra trans ultra vice""".split())
#: The :data:`COMPOUND_HEADS` that the 1990 spelling rules, and the medical vocabulary, join to the next
#: element (``anticoagulant``, ``hyperkaliémie``, ``intramusculaire``, ``multirésistant``,
#: ``transaminases``) except where the vowels joined would read as one sound or double
#: (``anti-inflammatoire``, ``auto-immune``, ``intra-utérin``): a word cut after one was kept
#: hyphenated, so ``hypo-glycémie`` matched no query
#: for ``hypoglycémie`` (user tryout). The others keep their hyphen (``contre-indication``,
#: ``sous-cutanée``, ``non-réponse``, ``post-opératoire``).
JOINED_HEADS = frozenset("anti auto extra hyper hypo infra inter intra micro mini multi super supra trans ultra".split())
#: Words that make a hyphenated compound with the word before or after them (``au-delà``,
#: ``ci-dessous``, ``c'est-à-dire``, ``peut-être``, ``vis-à-vis``, ``celui-ci``): a line's end after
#: their hyphen keeps it.
_FUNCTION_HEADS = frozenset("au ci là peut vis celui celle ceux celles est".split())
_FUNCTION_TAILS = frozenset("delà dessous dessus dedans dehors devant derrière là ci être dire même mêmes à "
                            "il elle ils elles on t vis bas haut".split())
#: Vowels that, written side by side, read as one sound (``ai``, ``au``, ``ei``, ``eu``, ``oi``,
#: ``ou``, ``ui``) or a doubled letter: where French keeps a compound's hyphen.
_DIGRAPHS = frozenset("ai au ei eu oi ou ui aa ee ii oo uu".split())
#: A line that starts an item, not the rest of a sentence: a dash or a bullet, ``1.``, ``2)``, ``a)``,
#: ``ii.``, followed by a space (``1.5 mg`` goes on a sentence).
_ITEM = re.compile(r"(?:[-–—•·▪◦*]|\d+[.)]|[a-zA-Z][.)]|[ivxIVX]+[.)])(?=\s|$)")
_SENTENCE_END = tuple(".!?:;")
#: A line of its own (after a sentence's end, a blank line, a heading or an item), starting with a
#: capital and shorter than this share of the page's width (the 80th percentile of the text's line
#: lengths: the lines that wrap a paragraph are nearly as long as the page) is a heading
#: (``Posologie`` over a paragraph). Needs :data:`HEADING_MIN_LINES` lines for the width to mean anything.
HEADING_LENGTH = 0.5
HEADING_MIN_LINES = 5


def pdf_available() -> bool:
    """Whether pypdf is installed (``medrag index`` reads ``.pdf`` files then)."""
    return importlib.util.find_spec("pypdf") is not None


#: The fences of a Markdown code block (backticks or tildes: CommonMark's two kinds).
_FENCES = ("```", "~~~")


def _vowels_meet(head: str, tail: str) -> bool:
    """Whether joining ``head`` and ``tail`` would write two vowels that read as one sound or a doubled
    vowel (``anti`` + ``inflammatoire``, ``intra`` + ``utérin``, ``micro`` + ``organisme``), where the
    compound keeps its hyphen; ``hypo`` + ``albuminémie`` (``oa``) is written joined."""
    plain = unicodedata.normalize("NFD", (head[-1:] + tail[:1]).lower())
    return "".join(c for c in plain if not unicodedata.combining(c)) in _DIGRAPHS


def reflow(text: str, document: str | None = None) -> str:
    """``text`` with the line breaks of a printed page removed inside paragraphs and the words cut at
    a line's end rejoined (see the module docstring): a line is joined to the previous one when that
    one does not end a sentence (``.``, ``!``, ``?``, ``:``, ``;``), is not a heading (in capitals, or
    a short line of its own starting with a capital: :data:`HEADING_LENGTH`; a Markdown ``#`` heading)
    and the line goes on in lowercase, with ``(`` or ``«``, or with a number that does not start an item (:data:`_ITEM`).
    Items, headings, blank lines and the lines of a Markdown code block (between fences of three
    backticks or tildes) keep their breaks; the rows of a table are joined (a PDF's text layer does not say which lines are cells).

    ``document``: the whole document ``text`` is a page of, whose words decide how a word cut at a
    line's end is rejoined (the plural ``antibiotiques`` on another page counts); default ``text``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _reflow(text, *_lexicon(text if document is None else document))


def _lexicon(document: str) -> tuple[Counter[str], str, Counter[str]]:
    """What :func:`reflow` reads of a document to rejoin cut words: its words, lowercased, counted, and the
    hyphenated words it writes on one line, one per line (read once: the whole text lowered and
    searched again for each cut word made a long .txt file quadratic, 300 KB wrapped at 70
    characters, 5.5 s; a cut form written inside one of them counts, ``abdomino-pelvien`` in
    ``abdomino-pelvienne``)."""
    cuts: Counter[str] = Counter()  # the halves of the words cut at a line's end, which the words count too
    for match in _CUT_WORD.finditer(document):
        cuts.update((match.group(1).lower(), match.group(2).lower()))
    return (Counter(w.lower() for w in _WORDS.findall(document)),
            "\n".join(sorted({w.lower() for w in _HYPHENATED.findall(document)})), cuts)


def _reflow(text: str, vocabulary: Counter[str], hyphenated: str, cuts: Counter[str]) -> str:
    """:func:`reflow` of ``text`` (``\\n`` line ends) with its document's :func:`_lexicon`."""
    written: dict[str, bool] = {}

    def join(match: re.Match[str]) -> str:
        head, tail = match.group(1), match.group(2)
        whole, form = head + tail, f"{head}-{tail}".lower()
        lower, after = head.lower(), tail.lower()
        if lower in JOINED_HEADS:
            compound = _vowels_meet(head, tail)
        elif lower in COMPOUND_HEADS or after in _FUNCTION_TAILS:
            compound = True  # sous-cutanée, au-delà, ci-dessous, c'est-à-dire, peut-être
        elif lower in _FUNCTION_HEADS:  # au-/delà, not au-/riculaire nor ci-/profloxacine (review)
            compound = vocabulary[after] > cuts[after]
        else:  # two words the document writes elsewhere than in its cut words: temps-dépendant; a
            # syllable cut (mar-tiale), even made twice, is not two words (review)
            compound = vocabulary[lower] > cuts[lower] and vocabulary[after] > cuts[after]
        compound = compound or any(c.isdigit() for c in head + tail) or tail[:1].isupper()
        if form not in written:
            written[form] = form in hyphenated
        keep = written[form] or (compound and whole.lower() not in vocabulary)
        return f"{head}-{tail}" if keep else whole

    lines = _CUT_WORD.sub(join, text).split("\n")
    lengths = sorted(len(x.strip()) for x in lines if x.strip())
    short = HEADING_LENGTH * lengths[int(0.8 * (len(lengths) - 1))] if len(lengths) >= HEADING_MIN_LINES else 0.0
    # each output line as its printed lines (joined once at the end: a paragraph grown by string
    # concatenation made a long unpunctuated .txt file quadratic), with what the rules read of it
    out: list[list[str]] = []
    alone: list[bool] = []  # the line in out is one printed line that starts a paragraph (a heading can be one)
    capitals: list[bool] = []  # every printed line of it in capitals
    letters: list[bool] = []  # it holds a letter

    def start(line: str, single: bool) -> None:
        out.append([line])
        alone.append(single)
        capitals.append(line == line.upper())
        letters.append(any(c.isalpha() for c in line))

    start(lines[0].strip(), True)
    fenced = out[0][0].startswith(_FENCES)  # inside a Markdown code block: its lines are kept as they are
    for line in lines[1:]:
        line = line.strip()
        first, last = out[-1][0], out[-1][-1]
        if fenced or line.startswith(_FENCES):
            fenced = fenced != line.startswith(_FENCES)  # a fence opens or closes the block
            start(line, True)
            continue
        heading = first.startswith(("#", *_FENCES)) or letters[-1] and (  # "## Posologie" (review)
            capitals[-1] or (alone[-1] and first[:1].isupper() and len(first) < short))
        goes_on = bool(line) and not _ITEM.match(line) and (line[0].islower() or line[0] in "(«" or line[0].isdigit())
        if last and goes_on and not heading and not last.endswith(_SENTENCE_END):
            out[-1].append(line)
            alone[-1] = False
            capitals[-1] = capitals[-1] and line == line.upper()
            letters[-1] = letters[-1] or any(c.isalpha() for c in line)
        else:
            start(line, not last or last.endswith(_SENTENCE_END) or heading or bool(_ITEM.match(first)))
    return "\n".join(" ".join(parts) for parts in out).strip()


#: What :func:`pdf_text` writes between two pages: a form feed (``pdftotext``'s page break), a space
#: to the chunker and a page break to ``medrag index`` (each chunk's ``page`` / ``page_end``).
PAGE_BREAK = "\f"
#: The lines at each end of a page where a running header or footer is looked for: a hospital
#: protocol's header often holds 3 or 4 lines (hospital, department, protocol and title, version), and
#: some files write the footer before the page's text, after the header.
RUNNING_ZONE = 6
#: A line printed at the same place among the :data:`RUNNING_ZONE` first or last lines of at least
#: this share of the pages with text, and of 3 pages or more (2 for a line holding a page number:
#: ``page 1/2``, ``- 1 -``), is a running header or footer.
RUNNING_SHARE = 0.5
#: A page number as headers and footers print it in a line of words: ``page 2``, ``p. 2/5``,
#: ``Page 2 sur 5`` (:data:`_LONE_NUMBER`: a line of its own).
_PAGE_NUMBER = re.compile(r"(?i)\b(?:page|p\.|pg\.?)\s*(\d+)(?:\s*(?:/|sur|of|de)\s*\d+)?")
#: The ends of a sentence: a line ending with one is text, not a header or a footer.
_SENTENCE_STOPS = (".", "!", "?", ";")
#: In a 2-page PDF, a line at the same place among the last lines of both pages is a footer when it
#: holds this many characters (``Ne pas diffuser hors CHU``), not when it is a table's cell (``Créatinine``).
FOOTER_MIN_CHARS = 20
#: A number alone on its line (``2``, ``- 2 -``, ``2/5``): a page number when it is the page's.
_LONE_NUMBER = re.compile(r"\W*(\d+)(?:\s*(?:/|sur)\s*\d+)?\W*")
#: A page's last word cut at the page's end, and the next page's first word (``anti-`` / ``TNF`` too).
_PAGE_END_CUT = re.compile(r"(\w+)-[ \t]*$")
_PAGE_START_WORD = re.compile(r"^[ \t]*([^\W\d_]\w*)")


#: What a file named .pdf that is not a PDF often is, by its first bytes.
_NOT_PDF = ((b"<!doctype html", "a web page (HTML)"), (b"<html", "a web page (HTML)"),
            (b"pk\x03\x04", "a ZIP file (a Word .docx?)"), (b"\xd0\xcf\x11\xe0", "an old Office file (a Word .doc?)"),
            (b"{\\rtf", "an RTF file"))


def _check_pdf_header(path: Path) -> None:
    """Refuse a file without the ``%PDF-`` header in its first 1,024 bytes (where the format allows
    it), naming what it looks like: a web page saved as .pdf was told "cannot read it as a PDF (Stream
    has ended unexpectedly)", as a truncated PDF is (user tryout)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as exc:
        raise UnreadablePdfError(f"{path}: cannot read it ({exc.strerror or exc})", "damaged") from None
    if b"%PDF-" in head:
        return
    if not head:
        raise UnreadablePdfError(f"{path}: not a PDF: the file is empty", "damaged")
    start = head.lstrip().lower()
    kind = next((name for magic, name in _NOT_PDF if start.startswith(magic)), None)
    raise UnreadablePdfError(f"{path}: not a PDF: {kind or 'no %PDF- header'} (it starts with {head[:16]!r})",
                             "not_pdf")


def _with_form_values(text: str, page: Any) -> str:
    """``text`` (a page's text layer) followed by the values filled into the page's text fields, one
    ``- name : value`` line each: a filled form's values are not in the text layer, so a request form's
    drug and dose (``molecule : linézolide 600 mg x 2/j``) were not indexed (user tryout)."""
    lines = []
    try:
        for ref in page.get("/Annots") or []:
            widget = ref.get_object()
            if widget.get("/Subtype") != "/Widget":
                continue
            field, settings = widget, {}
            for _ in range(16):  # a widget inherits its field's type, name and value (nested fields; no loop)
                for key in ("/FT", "/T", "/V"):
                    settings.setdefault(key, field.get(key))
                parent = field.get("/Parent")
                if parent is None:
                    break
                field = parent.get_object()
            value = settings.get("/V")
            if settings.get("/FT") == "/Tx" and isinstance(value, str) and value.strip():
                name = settings.get("/T")
                value = " ".join(value.split())  # an item of its own line: not joined to the next by reflow
                lines.append(f"- {name} : {value}" if isinstance(name, str) and name.strip() else f"- {value}")
    except Exception as exc:  # noqa: BLE001 - a malformed annotation costs its values, not the page's text
        logger.debug("form fields of a page not read: %s: %s", type(exc).__name__, exc)
    return "\n".join([text, *dict.fromkeys(lines)]) if lines else text


def _running_key(line: str, page: int) -> str:
    """A line as a running header or footer is compared: a page number as ``#`` and its offset from
    the page's number (``page 2/5`` on page 2 is ``page 3/5`` on page 3: both ``#0``; a number alone
    on its line only when it is the page's, ``2`` on page 2 or 3: a dose, a table's cell or a list's
    ``1.`` repeated on several pages is text), NFC, spaces collapsed, lowercase."""
    text = " ".join(unicodedata.normalize("NFC", line).split())
    alone = _LONE_NUMBER.fullmatch(text)
    if alone is not None:
        offset = page - int(alone.group(1))
        return f"#{offset}" if 0 <= offset <= 2 else text.lower()
    return _PAGE_NUMBER.sub(lambda m: f"#{page - int(m.group(1))}", text).lower()


def strip_running_lines(pages: list[str]) -> list[str]:
    """``pages`` (the raw text of each page) with their running headers and footers taken out of the
    text's flow: a line printed at the same place among the first or last :data:`RUNNING_ZONE` lines
    of :data:`RUNNING_SHARE` of the pages with text, and of 3 pages or more (2 for a line holding a
    page number, and for a line of :data:`FOOTER_MIN_CHARS` at the bottom of both pages of a 2-page
    PDF), with only such lines between it and the page's edge; page numbers compared by their offset
    from the page's (``page 2/5`` on page 2 is ``page 3/5`` on page 3; doses and lab values are
    compared as written). A line that ends a sentence (``.``, ``!``, ``?``, ``;``) and holds no page
    number is a running line only when every page (3 or more) prints it: pages of one layout (a
    drug's card per page) repeat their text lines at the same places on most pages.

    Nothing printed is lost but the copies: a header (a line nearer the top of the pages than their
    bottom) is kept where it is first printed: at the top of page 1 (the protocol's name and version
    stay with the document's first chunk), or on a later page (an annex's title, a table's column
    headings) after the sentence or the word that goes on from the page before; a footer (a warning
    not to share the document, a line holding the protocol's version and page) is moved, once, to
    the end of the last page with text (where it was, it cut the sentence going on to the next page).

    >>> pages = [f"CHU – PHA-012 – page {n}/3\\nTexte {n}\\nNe pas diffuser" for n in (1, 2, 3)]
    >>> strip_running_lines(pages)
    ['CHU – PHA-012 – page 1/3\\nTexte 1', 'Texte 2', 'Texte 3\\nNe pas diffuser']
    """
    if isinstance(pages, str) or not all(isinstance(p, str) for p in pages):
        raise InvalidInputError("strip_running_lines takes a list of the pages' texts (str), e.g. "
                                "[page.extract_text() for page in reader.pages]")
    lines = [p.replace("\r\n", "\n").replace("\r", "\n").split("\n") for p in pages]
    filled = [[i for i, line in enumerate(page) if line.strip()] for page in lines]
    with_text = [n for n, f in enumerate(filled) if f]
    if len(with_text) < 2:
        return pages

    def zone(n: int) -> list[tuple[str, int, int]]:
        """``(side, place, line index)`` of page ``n``'s first and last RUNNING_ZONE lines."""
        return [(side, place, i) for side, order in (("top", filled[n][:RUNNING_ZONE]),
                                                     ("bottom", filled[n][::-1][:RUNNING_ZONE]))
                for place, i in enumerate(order)]

    keys = {(n, i): _running_key(lines[n][i], n + 1) for n in with_text for _, _, i in zone(n)}
    counts: dict[tuple[str, int, str], int] = {}  # (side, place, key) -> pages printing that line there
    for n in with_text:
        for side, place, i in zone(n):
            counts[side, place, keys[n, i]] = counts.get((side, place, keys[n, i]), 0) + 1
    share = math.ceil(RUNNING_SHARE * len(with_text))
    two_pages = len(with_text) == 2

    def needed(side: str, key: str) -> int:
        # a line holding a page number is a header or a footer from 2 pages on (page 1 often has its own
        # layout); another needs 3 pages (a 2-page table's rows and section headings are text), but the
        # same last lines of both pages of a 2-page PDF, lines of words and not a table's cells, are its
        # footer (moved, not dropped)
        footer_of_two = two_pages and side == "bottom" and len(key) >= FOOTER_MIN_CHARS
        return max(2 if "#" in key or footer_of_two else 3, share)

    # a line ending a sentence, without a page number, on every page (a dose reminder) and not only on most
    # of them: pages of one layout (a drug's card per page) repeat their text lines at the same places
    running = {(side, place, key) for (side, place, key), count in counts.items()
               if count >= needed(side, key) and ("#" in key or not key.endswith(_SENTENCE_STOPS)
                                                  or count == len(with_text) > 2)}
    if not running:
        return pages
    # a line running at both ends (short pages) is the side where it sits nearer: a header or a footer
    at: dict[str, dict[str, int]] = {}  # key -> side -> the nearest place to the page's edge it runs at
    for side, place, key in running:
        sides = at.setdefault(key, {})
        sides[side] = min(place, sides.get(side, place))
    footer = {key for key, sides in at.items() if sides.get("bottom", RUNNING_ZONE) < sides.get("top", RUNNING_ZONE)}
    last = with_text[-1]
    kept: set[str] = set()  # the running lines already kept (or moved) once, by their text
    moved: list[tuple[int, int, str]] = []  # footers, once each: (page, line, text)
    out = []
    for n, (page, raw) in enumerate(zip(lines, pages)):
        drop: set[int] = set()
        header: list[int] = []  # the headers kept on this page, first printed here
        for side in ("top", "bottom"):
            order = filled[n][:RUNNING_ZONE] if side == "top" else filled[n][::-1][:RUNNING_ZONE]
            for place, i in enumerate(order):
                key = keys.get((n, i))
                if (side, place, key) not in running:
                    break  # only running lines between a running line and the page's edge
                if i in drop or i in header:  # a short page's line is in both zones
                    continue
                text = " ".join(page[i].split())
                if not _worth_keeping(text):
                    drop.add(i)  # a page number alone ("- 2 -", "Page 2/5"): nothing to keep
                elif key in footer:
                    drop.add(i)
                    if key not in kept:
                        kept.add(key)
                        moved.append((n, i, text))
                elif key in kept:
                    drop.add(i)  # a copy
                else:
                    kept.add(key)
                    header.append(i)
        body = [line for i, line in enumerate(page) if i not in drop and i not in header]
        if header and n != with_text[0] and out and not _ends_sentence(out[-1]):
            # the sentence or the word going on from the page before goes first (it read "la dose est de
            # Annexe : tableau des doses 1 g...", "néphro-Molécule": review), then the kept headers
            cut = next((k for k, line in enumerate(body) if _ends_sentence(line)), None)
            if cut is not None:
                body = body[:cut + 1] + [page[i] for i in sorted(header)] + body[cut + 1:]
            else:
                body = body + [page[i] for i in sorted(header)]
        elif header:
            body = [page[i] for i in sorted(header)] + body
        out.append("\n".join(body) if drop or header else raw)
    if moved:  # in the order they were printed (the bottom zone is read from the last line up: a 2-line
        # dose reminder was moved with its lines reversed, user tryout)
        out[last] = "\n".join([out[last].rstrip("\n"), *(text for _, _, text in sorted(moved))])
    return out


def _worth_keeping(line: str) -> bool:
    """Whether a running line holds more than its page number (``PHA-012 v3 – page 2/5``, not
    ``Page 2/5`` or ``- 2 -``)."""
    if _LONE_NUMBER.fullmatch(line):
        return False
    return sum(c.isalpha() for c in _PAGE_NUMBER.sub("", line)) >= 2


def _ends_sentence(text: str) -> bool:
    """Whether ``text``'s last non-blank line ends a sentence (or is a heading's ``:``)."""
    stripped = text.rstrip()
    return not stripped or stripped.endswith((*_SENTENCE_STOPS, ":"))


def _rejoin_across_pages(pages: list[str]) -> list[str]:
    """A word cut at a page's end (``néphro-`` / ``toxicité``, ``anti-`` / ``TNF``) and the next
    page's first word: that word moved to the end of the first page, on a line of its own, so that
    :func:`reflow` rejoins the word there (as it does at a line's end)."""
    pages = list(pages)
    for i in range(len(pages) - 1):
        head = pages[i].rstrip()
        tail = pages[i + 1].lstrip()
        if not _PAGE_END_CUT.search(head[-200:]):  # the page's end only (a long run of letters was quadratic)
            continue
        first = _PAGE_START_WORD.match(tail)
        if first is None:
            continue
        pages[i] = head + "\n" + first.group(1)
        pages[i + 1] = tail[first.end():].lstrip(" \t")
    return pages


def pdf_pages(path: str | os.PathLike[str], scanned: list[int] | None = None) -> list[str]:
    """The reflowed text of each page of the PDF at ``path`` (``""`` for a page without a text
    layer), running headers and footers out of the text's flow, kept once (:func:`strip_running_lines`),
    words cut at a page's end rejoined. ``scanned``: a list that receives the numbers (1-based) of the pages without a text
    layer (a page left empty by the headers dropped, e.g. a figure's page, is not one).

    Raises:
        DataError: pypdf is not installed (naming the install command), or (:class:`UnreadablePdfError`,
            with its cause) the file cannot be read
            as a PDF (damaged, or encrypted with a password), naming the file.
    """
    if not pdf_available():
        raise DataError(f"{path}: reading PDF files needs pypdf: {PDF_EXTRA}")
    import pypdf
    from pypdf.errors import DependencyError

    _check_pdf_header(Path(path))
    pypdf_log = logging.getLogger("pypdf")  # its recoveries ("EOF marker not found") named no file: ours do
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(Path(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadablePdfError(f"{path}: the PDF is encrypted with a password; save a decrypted copy "
                                     "(qpdf --decrypt --password=PASSWORD in.pdf out.pdf)", "password")
        pages = [_with_form_values(page.extract_text() or "", page) for page in reader.pages]
    except DataError:
        raise
    except DependencyError as exc:  # AES encryption (even with an empty password) needs the cryptography package
        raise UnreadablePdfError(f"{path}: this PDF's encryption needs the cryptography package: pip install "
                                 f"'pypdf[crypto]' ({exc})", "crypto") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file raises anything from pypdf (AttributeError too)
        raise UnreadablePdfError(f"{path}: cannot read it as a PDF ({type(exc).__name__}: {exc})", "damaged") from None
    finally:
        pypdf_log.setLevel(level)
    # a form feed inside a page would read as one more page break (every later citation one page off)
    pages = [page.replace(PAGE_BREAK, "\n").replace("\r\n", "\n").replace("\r", "\n") for page in pages]
    if scanned is not None:
        scanned.extend(n for n, page in enumerate(pages, 1) if not page.strip())
    pages = _rejoin_across_pages(strip_running_lines(pages))
    lexicon = _lexicon("\n".join(pages))  # a cut word's other forms are read on every page
    return [_reflow(p, *lexicon) if p.strip() else "" for p in pages]


def pdf_text(path: str | os.PathLike[str]) -> str:
    """The pages of :func:`pdf_pages` joined by :data:`PAGE_BREAK` (``""`` for a PDF without a text
    layer: no page has text).

    Raises:
        DataError: as :func:`pdf_pages`.
    """
    pages = pdf_pages(path)
    return PAGE_BREAK.join(pages) if any(pages) else ""


__all__ = ["COMPOUND_HEADS", "JOINED_HEADS", "PAGE_BREAK", "PDF_EXTRA", "pdf_available", "pdf_pages", "pdf_text",
           "reflow", "strip_running_lines"]
