"""What counts as a text with nothing in it, for every entry path (embeddings, store, CLI, tasks).

A text is *blank* when it holds only whitespace, control characters (Unicode category Cc: NUL, a
stray escape) and invisible format characters (Cf: zero-width spaces and joiners, a byte-order mark,
a soft hyphen). ``str.strip`` keeps the last two kinds, so a query of a lone U+200B passed the old
checks and returned arbitrary documents, and ``add_texts`` stored a record with no content. Such
characters carry no meaning on their own: the e5 tokenizer drops some (U+200B, U+FEFF) and reads the
others as unknown or stray tokens. The chunker of ``medrag index`` reads them as no word either.

Example::

    >>> from medrag.text_checks import is_blank
    >>> is_blank(chr(0x200B) + " " + chr(0xFEFF)), is_blank("fer")  # a zero-width space and a BOM
    (True, False)
"""

from __future__ import annotations

import unicodedata


def is_blank(text: str) -> bool:
    """Whether ``text`` is empty or holds only whitespace, control and invisible format characters
    (see the module). It stops at the first other character, so a long text costs nothing."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


__all__ = ["is_blank"]
