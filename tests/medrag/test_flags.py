"""check_flag: a public on/off argument is a bool (a string such as "false" is truthy)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medrag.errors import InvalidInputError
from medrag.flags import check_flag


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_bools_pass_as_bools(value) -> None:
    assert check_flag("x", value) is bool(value)


@pytest.mark.parametrize("value", ["false", "True", "", 0, 1, 1.0, [], None])
def test_anything_else_is_refused_by_name(value) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(f"prune must be True or False, got {value!r}")):
        check_flag("prune", value)


def test_none_passes_where_allowed() -> None:
    assert check_flag("show_progress", None, none=True) is None
    with pytest.raises(InvalidInputError, match="show_progress must be True, False or None, got 'no'"):
        check_flag("show_progress", "no", none=True)
