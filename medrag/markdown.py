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
underline (a line of ``=`` or ``-`` right under a paragraph, which is the heading, levels 1 and 2:
not under a list item or its continuation, a table row, a quote, a fence, indented code or an HTML
line), outside code blocks (fenced with ``` or ``~~~``, or indented by four spaces or a tab), HTML
blocks (``<pre>``, ``<div>``...) and a YAML front matter block at the top of the file; an HTML
comment block (``<!-- ... -->`` from the start of a line) is dropped: it is not shown, and an
author's note or a superseded dose commented out is no text to answer from. The heading text loses
its emphasis markers (``*``, ``` ` ```) and a trailing colon. A front matter's ``title:`` leads every
trail (a static-site or wiki page keeps its title there and starts with its sections), unless the
first heading repeats it.

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
#: The start of an HTML block (CommonMark's kinds 1-6, roughly: a comment, <pre>/<script>/<style>/
#: <textarea>, a declaration, or a block-level tag); its lines are no Markdown.
_HTML_BLOCK = re.compile(r"^ {0,3}<(?:!--|!\[CDATA\[|![A-Za-z]|\?|/?(?:pre|script|style|textarea|address|article|aside|"
                         r"blockquote|details|div|dl|figure|footer|form|h[1-6]|header|hr|li|nav|ol|p|section|summary|"
                         r"table|tbody|td|th|thead|tr|ul)(?:[\s/>]|$))", re.IGNORECASE)
#: What closes the HTML blocks that may hold blank lines (the others end at a blank line).
_HTML_CLOSERS = (("<!--", "-->"), ("<pre", "</pre>"), ("<script", "</script>"), ("<style", "</style>"),
                 ("<textarea", "</textarea>"), ("<![cdata[", "]]>"), ("<?", "?>"))
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
    #: each section's body as runs of lines, each run verbatim (a fenced or indented code block, an
    #: HTML block) or prose: :meth:`text` passes only the prose through its ``body`` function
    runs: list[list[tuple[bool, str]]] = field(default_factory=list, repr=False)

    @property
    def title(self) -> str:
        """The front matter's ``title`` (read as YAML: a wrapped, quoted or escaped title as YAML reads it;
        a number as its text), "" if none, null, or not YAML."""
        if not self.front_matter:
            return ""
        import yaml

        body = "\n".join(self.front_matter.split("\n")[1:-1])
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:  # a front matter that is not YAML (or not ours): no title, the text stays
            return ""
        title = data.get("title") if isinstance(data, dict) else None
        if isinstance(title, bool) or not isinstance(title, (str, int, float)):
            return ""
        return _heading_text(str(title))

    def trails(self) -> list[tuple[tuple[str, ...], str]]:
        """:func:`markdown_sections` of the document."""
        out, open_headings = [], []
        title = self.title
        first_heading = next((heading for level, heading, _ in self.sections if level and heading), "")
        # a static-site or wiki page holds its title in its front matter and starts with its sections: the
        # title leads every trail ("Doliprane > Posologie"), unless the first heading repeats it
        root = (title,) if title and title.casefold() != first_heading.casefold() else ()
        for n, (level, heading, body) in enumerate(self.sections):
            if n == 0 and self.front_matter:  # kept as text: a note's title and tags are searched by
                body = f"{self.front_matter}\n{body}".strip()
            if level:
                while open_headings and open_headings[-1][0] >= level:
                    open_headings.pop()
                if heading:
                    open_headings.append((level, heading))
            out.append((root + tuple(h for _, h in open_headings), body))
        return out

    def text(self, body: Callable[[str], str] = lambda b: b) -> str:
        """The document written back with ATX headings (Setext ones rewritten), each section's body
        passed through ``body`` (:func:`medrag.pdf.reflow` for a folder's files): the front matter
        is kept as it is, and no body can join a heading's line."""
        parts = [(False, self.front_matter)] if self.front_matter else []
        for (level, heading, _), runs in zip(self.sections, self.runs):
            if level:
                parts.append((False, ("#" * level + " " + heading).rstrip()))
            for verbatim, text in runs:
                # code and HTML kept as written: reflowed, "    # exemple" lost the indent that kept it
                # from being a heading, and the next parse took it for one (user tryout)
                text = text if verbatim else body(text)
                if text.strip():
                    parts.append((verbatim, text))
        out = []
        for i, (verbatim, text) in enumerate(parts):
            if i:  # a blank line around a code or HTML block: an HTML block ends at one
                out.append("\n\n" if verbatim or parts[i - 1][0] else "\n")
            out.append(text)
        return "".join(out)


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
    level, heading = 0, ""
    body: list[tuple[bool, str]] = []  # the section's lines, each marked verbatim (code, HTML) or not
    fence: str | None = None  # the opening fence's characters while inside a code block
    html_end: str | None = None  # what closes the HTML block the line is in ("-->", "</pre>"...), or None
    paragraph_start: int | None = None  # where the paragraph the last line belongs to starts in body
    in_item = False  # inside a list item (its continuation lines are no paragraph of their own)
    blank_before = True  # the previous line is blank (or the section's start): indented code may start
    in_code = False  # the last non-blank line was indented code
    in_comment = False  # inside an HTML comment block (its lines are dropped)

    def close(new_level: int, new_heading: str) -> None:
        nonlocal level, heading, paragraph_start, in_item, blank_before, in_code
        runs: list[tuple[bool, str]] = []
        for verbatim, line in body:
            if runs and runs[-1][0] == verbatim:
                runs[-1] = (verbatim, runs[-1][1] + "\n" + line)
            else:
                runs.append((verbatim, line))
        doc.sections.append((level, heading, "\n".join(line for _, line in body).strip()))
        doc.runs.append([(v, t.strip("\n") if v else t.strip()) for v, t in runs if t.strip()])
        body.clear()
        level, heading, paragraph_start, in_item, blank_before, in_code = new_level, new_heading, None, False, True, False

    for line in lines[start:]:
        stripped = line.strip()
        if fence is not None:
            closing = _FENCE.match(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence) \
                    and not stripped[len(closing.group(1)):].strip():
                fence = None
            body.append((True, line))
            continue
        if html_end is not None:
            if (html_end in line.lower()) if html_end else not stripped:  # "": the block ends at a blank line
                html_end = None
            if not in_comment:
                body.append((True, line))
            in_comment = in_comment and html_end is not None
            continue
        opened = _FENCE.match(line)
        if opened:
            fence, paragraph_start = opened.group(1), None
            body.append((True, line))
            continue
        indented = line.startswith(("    ", "\t", " \t", "  \t", "   \t"))  # four columns, a tab counting to them
        if indented and stripped and paragraph_start is None and not in_item and (blank_before or in_code):
            body.append((True, line))  # indented code: "    # exemple" is no heading (user tryout)
            blank_before, in_code = False, True
            continue
        in_code = in_code and not stripped  # a blank line may sit inside indented code
        if _HTML_BLOCK.match(line):  # these kinds of HTML block may interrupt a paragraph (CommonMark 1-6)
            paragraph_start = None
            lower = line.lower().lstrip()
            opener, closer = next(((o, c) for o, c in _HTML_CLOSERS if lower.startswith(o)), ("", ""))
            # a comment or <pre> runs to its closer (blank lines included), another block to a blank line
            html_end = None if closer and closer in lower[len(opener):] else closer
            # a comment is not shown: an author's note or an old dose commented out is not indexed (user tryout)
            in_comment = opener == "<!--" and html_end is not None
            if opener != "<!--":
                body.append((True, line))
            blank_before = False
            continue
        atx = _ATX.match(line)
        if atx:
            close(len(atx.group(1)), _heading_text(atx.group(2)))
            continue
        if _SETEXT.match(line) and paragraph_start is not None:
            # the whole paragraph is the heading (CommonMark), not its last line alone (user tryout)
            underlined = " ".join(text.strip() for _, text in body[paragraph_start:])
            del body[paragraph_start:]
            close(1 if stripped[0] == "=" else 2, _heading_text(underlined))
            continue
        if not stripped:
            paragraph_start, in_item = None, False
        elif _ITEM.match(line):
            paragraph_start, in_item = None, True
        elif in_item or "|" in line or stripped.startswith(">") or _SETEXT.match(line):
            paragraph_start = None  # an item's continuation, a table row, a quote, a rule
        elif paragraph_start is None:
            paragraph_start = len(body)
        blank_before = not stripped
        body.append((False, line))
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
        A front matter's ``title:`` starts every trail, the first item's too, unless the first
        heading is the title again.
    """
    return parse_markdown(text).trails()
