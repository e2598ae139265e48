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

A scanned PDF has no text layer: it gives an empty text (OCR it first, e.g. ``ocrmypdf``).

Example::

    >>> reflow("2. Posologie\\nLa ferritine basse signe une carence mar-\\ntiale ; un anti-\\ninflammatoire\\n"
    ...        "est évité.\\n- fer oral")
    '2. Posologie\\nLa ferritine basse signe une carence martiale ; un anti-inflammatoire est évité.\\n- fer oral'
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

from medrag.errors import DataError

logger = logging.getLogger(__name__)

#: What ``pip install`` brings the PDF reader.
PDF_EXTRA = "pip install 'medrag[pdf]'  (or: pip install pypdf)"

#: A word cut at a line's end: letters, a hyphen, the line break, letters.
_CUT_WORD = re.compile(r"(\w+)-[ \t]*\n[ \t]*(\w+)")
_WORDS = re.compile(r"\w+")
#: A word written with a hyphen on one line (``anti-inflammatoire``; ``a-b-c`` gives ``a-b`` and ``b-c``).
_HYPHENATED = re.compile(r"(?=\b(\w+-\w+)\b)")
#: First elements of French compounds, whose hyphen a line's end does not remove (``anti-`` /
#: ``inflammatoire``, ``sous-`` / ``cutanée``): a word cut after one of them keeps its hyphen unless the
#: document writes the word whole elsewhere. Short elements that are also common first syllables
#: (``pré-sente``, ``pro-duit``, ``sur-veillance``, ``mi-nute``) are left out: rejoined.
COMPOUND_HEADS = frozenset("""anti auto avant bien contre demi entre extra grand hyper hypo infra inter
    intra micro mini multi non post pseudo quasi semi sous super supra trans ultra vice""".split())
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


def reflow(text: str) -> str:
    """``text`` with the line breaks of a printed page removed inside paragraphs and the words cut at
    a line's end rejoined (see the module docstring): a line is joined to the previous one when that
    one does not end a sentence (``.``, ``!``, ``?``, ``:``, ``;``), is not a heading (in capitals, or
    a short line of its own starting with a capital: :data:`HEADING_LENGTH`; a Markdown ``#`` heading)
    and the line goes on in lowercase, with ``(`` or ``«``, or with a number that does not start an item (:data:`_ITEM`).
    Items, headings, blank lines and the lines of a Markdown code block (between fences of three
    backticks or tildes) keep their breaks; the rows of a table are joined (a PDF's text layer does not say which lines are cells)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    vocabulary = {w.lower() for w in _WORDS.findall(text)}
    # the hyphenated words the text writes on one line, read once (the whole text lowered and searched
    # again for each cut word made a long .txt file quadratic: 300 KB wrapped at 70 characters, 5.5 s);
    # a cut form written inside one of them counts ("abdomino-pelvien" in "abdomino-pelvienne")
    hyphenated = "\n".join(sorted({w.lower() for w in _HYPHENATED.findall(text)}))
    written: dict[str, bool] = {}

    def join(match: re.Match[str]) -> str:
        head, tail = match.group(1), match.group(2)
        whole, form = head + tail, f"{head}-{tail}".lower()
        compound = head.lower() in COMPOUND_HEADS or any(c.isdigit() for c in head + tail) or tail[:1].isupper()
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


def pdf_text(path: str | os.PathLike[str]) -> str:
    """The reflowed text of every page of the PDF at ``path``, pages separated by a blank line
    (``""`` for a PDF without a text layer).

    Raises:
        DataError: pypdf is not installed (naming the install command), or the file cannot be read
            as a PDF (damaged, or encrypted with a password), naming the file.
    """
    if not pdf_available():
        raise DataError(f"{path}: reading PDF files needs pypdf: {PDF_EXTRA}")
    import pypdf
    from pypdf.errors import DependencyError

    pypdf_log = logging.getLogger("pypdf")  # its recoveries ("EOF marker not found") named no file: ours do
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(Path(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DataError(f"{path}: the PDF is encrypted with a password; save a decrypted copy (qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DataError:
        raise
    except DependencyError as exc:  # AES encryption (even with an empty password) needs the cryptography package
        raise DataError(f"{path}: this PDF's encryption needs the cryptography package: pip install 'pypdf[crypto]' "
                        f"({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file raises anything from pypdf (AttributeError too)
        raise DataError(f"{path}: cannot read it as a PDF ({type(exc).__name__}: {exc})") from None
    finally:
        pypdf_log.setLevel(level)
    return "\n\n".join(t for t in (reflow(p) for p in pages) if t)


__all__ = ["PDF_EXTRA", "pdf_available", "pdf_text", "reflow"]
