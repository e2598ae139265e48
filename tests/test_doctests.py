"""The ``>>>`` examples of the small pure modules run under ``python -m pytest`` (pyproject's
``testpaths`` + ``--doctest-modules``); this keeps that list valid."""

from __future__ import annotations

import sys

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pytest_options() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]


def test_doctest_modules_are_collected():
    options = _pytest_options()
    assert "--doctest-modules" in options["addopts"].split()
    modules = [p for p in options["testpaths"] if p.endswith(".py")]
    assert len(modules) >= 10
    for path in modules:
        text = (REPO / path).read_text(encoding="utf-8")
        assert ">>>" in text, f"{path} is listed for doctests but has no example"

