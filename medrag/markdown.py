"""Markdown sections: a document cut at its headings, each section with the trail of headings above it.

A chunk cut from the middle of a Markdown protocol or drug sheet rarely names what it is about:
under ``# Doliprane 1000 mg`` and ``## Posologie``, the chunk "Prendre un comprimé toutes les six
heures, sans dépasser quatre par jour." holds neither the drug nor the word *posologie*, so a
question naming them ("posologie du Doliprane") cannot find it by them, lexically or densely.
:func:`medrag.indexing.index_corpus` therefore chunks a folder's ``.md`` files section by section
and puts each section's heading trail before its chunks ("Doliprane 1000 mg > Posologie : Prendre
un comprimé..."), as it puts a record's ``title_field`` before each of its chunks. The same idea is
LangChain's ``MarkdownHeaderTextSplitter`` (headings kept as each chunk's metadata) and the
"contextual chunk headers" of RAG practice.

What counts as a heading is CommonMark's: an ATX line (``#`` to ``######``, then a space or the
end of the line; up to three spaces before it; closing ``#`` characters dropped) or a Setext
underline (a line of ``=`` or ``-`` right under a line of a paragraph, levels 1 and 2: not under a
list item or its continuation, a table row, a quote, a fence, indented code or an HTML line),
outside fenced code blocks (``` or ``~~~``) and outside a YAML front matter block at the top of
the file. The heading text loses its emphasis markers (``*``, ``` ` ```) and a trailing colon.

Example::

    >>> for headings, body in markdown_sections("# Doliprane\\nIntro.\\n## Posologie\\nUn comprimé.\\n## Effets\\nRares."):
    ...     print(headings, repr(body))
    () ''
    ('Doliprane',) 'Intro.'
    ('Doliprane', 'Posologie') 'Un comprimé.'
    ('Doliprane', 'Effets') 'Rares.'
    >>> heading_trail(("Doliprane", "Posologie"))
    'Doliprane > Posologie'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MarkdownDocument", "heading_trail", "markdown_sections", "parse_markdown"]

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)(.*)$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_EMPHASIS = re.compile(r"[*`]+")
_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
#: What joins the headings of a trail (LlamaIndex's MarkdownNodeParser writes its "header_path" with "/",
#: which medical headings hold: "Grossesse/allaitement").
TRAIL_SEPARATOR = " > "


@dataclass
class MarkdownDocument:
    """A Markdown text as :func:`parse_markdown` reads it.

    Attributes:
        front_matter: the YAML front matter block at the top, its ``---`` lines included ("" if none).
        sections: ``(level, heading, body)`` in order: the text before the first heading has level
            0 and heading ""; an empty heading (``#`` alone) has its level and "".
    """

    front_matter: str = ""
    sections: list[tuple[int, str, str]] = field(default_factory=list)

    def trails(self) -> list[tuple[tuple[str, ...], str]]:
        """:func:`markdown_sections` of the document."""
        out, open_headings = [], []
        for n, (level, heading, body) in enumerate(self.sections):
            if n == 0 and self.front_matter:  # kept as text: a note's title and tags are searched by
                body = f"{self.front_matter}\n{body}".strip()
            if level:
                while open_headings and open_headings[-1][0] >= level:
                    open_headings.pop()
                if heading:
                    open_headings.append((level, heading))
            out.append((tuple(h for _, h in open_headings), body))
        return out

    def text(self, body: Callable[[str], str] = lambda b: b) -> str:
        """The document written back with ATX headings (Setext ones rewritten), each section's body
        passed through ``body`` (:func:`medrag.pdf.reflow` for a folder's files): the front matter
        is kept as it is, and no body can join a heading's line."""
        parts = [self.front_matter] if self.front_matter else []
        for level, heading, text in self.sections:
            if level:
                parts.append(("#" * level + " " + heading).rstrip())
            if text:
                parts.append(body(text))
        return "\n".join(parts)


def _heading_text(raw: str) -> str:
    text = _CLOSING_HASHES.sub("", raw)
    text = " ".join(_EMPHASIS.sub("", text).split())
    return text.rstrip(" :").strip()


def heading_trail(headings: tuple[str, ...]) -> str:
    """The headings of a section joined with :data:`TRAIL_SEPARATOR`, outermost first."""
    return TRAIL_SEPARATOR.join(headings)


def parse_markdown(text: str) -> MarkdownDocument:
    """Read a Markdown text's front matter and sections (see the module docstring).

    Args:
        text: the document (line breaks as ``\\n``, ``\\r\\n`` or ``\\r``).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    doc = MarkdownDocument()
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter: its "---" lines are no Setext underline
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                doc.front_matter = "\n".join(lines[: end + 1])
                start = end + 1
                break
    level, heading, body = 0, "", []
    fence: str | None = None  # the opening fence's characters while inside a code block
    paragraph = False  # the last line is a line of a paragraph (what a Setext underline may follow)
    in_item = False  # inside a list item (its continuation lines are no paragraph of their own)

    def close(new_level: int, new_heading: str) -> None:
        nonlocal level, heading, paragraph, in_item
        doc.sections.append((level, heading, "\n".join(body).strip()))
        body.clear()
        level, heading, paragraph, in_item = new_level, new_heading, False, False

    for line in lines[start:]:
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence) \
                    and not line.strip()[len(opened.group(1)):].strip():
                fence = None
            body.append(line)
            continue
        if opened:
            fence, paragraph = opened.group(1), False
            body.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            close(len(atx.group(1)), _heading_text(atx.group(2)))
            continue
        if _SETEXT.match(line) and paragraph:
            underlined = body.pop()  # the paragraph's line is the heading
            close(1 if line.strip()[0] == "=" else 2, _heading_text(underlined))
            continue
        stripped = line.strip()
        if not stripped:
            paragraph = in_item = False
        elif _ITEM.match(line):
            paragraph, in_item = False, True
        elif in_item or "|" in line or stripped.startswith((">", "<")) or line.startswith(("    ", "\t")) \
                or _SETEXT.match(line):
            paragraph = False  # an item's continuation, a table row, a quote, HTML, indented code, a rule
        else:
            paragraph = True
        body.append(line)
    close(0, "")
    return doc


def markdown_sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """Cut a Markdown text at its headings.

    Args:
        text: the document (line breaks as ``\\n``, ``\\r\\n`` or ``\\r``).

    Returns:
        ``(headings, body)`` for every section in order: ``headings`` is the trail of the headings
        above the section, outermost first (a heading closes every open heading of its level or
        deeper; an empty heading, ``#`` alone, closes them and adds none), ``body`` the section's
        lines without its heading, stripped (it may be empty: a heading followed at once by a
        sub-heading). The first item is the text before the first heading (a YAML front matter block
        included), with the trail ``()``. A text without headings is one item, ``((), text.strip())``.
    """
    return parse_markdown(text).trails()
