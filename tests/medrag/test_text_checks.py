"""medrag.text_checks: what a blank text is."""

from __future__ import annotations

import pytest

from medrag.text_checks import is_blank


@pytest.mark.parametrize("text", ["", "  \t\n", "\u200b", " \ufeff\u00ad\x00\t", "\u2060\u200d", "\u3000"])
def test_whitespace_control_and_format_characters_alone_are_blank(text):
    assert is_blank(text)


@pytest.mark.parametrize("text", ["fer", "\u200bfer", "\ufeffLa TSH", "42", "?", "\U0001F48A", "\ue000"])
def test_anything_else_is_content(text):
    """Digits, punctuation, an emoji, a private-use character and a BOM before content are texts."""
    assert not is_blank(text)
