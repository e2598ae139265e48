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
underline (a line of ``=`` or ``-`` right under a line of text, levels 1 and 2), outside fenced
code blocks (``` or ``~~~``) and outside a YAML front matter block at the top of the file. The
heading text loses its emphasis markers (``*``, ``` ` ```) and a trailing colon.

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

__all__ = ["heading_trail", "markdown_sections"]

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)(.*)$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_EMPHASIS = re.compile(r"[*`]+")
_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
#: What joins the headings of a trail (LlamaIndex's MarkdownNodeParser writes its "header_path" with "/",
#: which medical headings hold: "Grossesse/allaitement").
TRAIL_SEPARATOR = " > "


def _heading_text(raw: str) -> str:
    text = _CLOSING_HASHES.sub("", raw)
    text = " ".join(_EMPHASIS.sub("", text).split())
    return text.rstrip(" :").strip()


def heading_trail(headings: tuple[str, ...]) -> str:
    """The headings of a section joined with :data:`TRAIL_SEPARATOR`, outermost first."""
    return TRAIL_SEPARATOR.join(headings)


def markdown_sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """Cut a Markdown text at its headings.

    Args:
        text: the document (line breaks as ``\\n``, ``\\r\\n`` or ``\\r``).

    Returns:
        ``(headings, body)`` for every section in order: ``headings`` is the trail of the headings
        above the section, outermost first (a heading closes every open heading of its level or
        deeper; an empty heading, ``#`` alone, closes them and adds none), ``body`` the section's
        lines without its heading, stripped (it may be empty: a heading followed at once by a
        sub-heading). The first item is the text before the first heading, with the trail ``()``.
        A text without headings is one item, ``((), text.strip())``.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    sections: list[tuple[tuple[str, ...], str]] = []
    open_headings: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None  # the opening fence's characters while inside a code block
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter: its "---" lines are no Setext underline
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                body.extend(lines[: end + 1])
                start = end + 1
                break

    def close(level: int, title: str) -> None:
        sections.append((tuple(h for _, h in open_headings), "\n".join(body).strip()))
        body.clear()
        while open_headings and open_headings[-1][0] >= level:
            open_headings.pop()
        if title:
            open_headings.append((level, title))

    for i in range(start, len(lines)):
        line = lines[i]
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence) \
                    and not line.strip()[len(opened.group(1)):].strip():
                fence = None
            body.append(line)
            continue
        if opened:
            fence = opened.group(1)
            body.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            close(len(atx.group(1)), _heading_text(atx.group(2)))
            continue
        underline = _SETEXT.match(line)
        previous = body[-1] if body else ""
        if underline and previous.strip() and not _ITEM.match(previous) \
                and not previous.lstrip().startswith(("|", ">")) and not _SETEXT.match(previous):
            body.pop()  # the line above is the heading
            close(1 if underline.group(1)[0] == "=" else 2, _heading_text(previous))
            continue
        body.append(line)
    sections.append((tuple(h for _, h in open_headings), "\n".join(body).strip()))
    return sections
