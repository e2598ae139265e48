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



def test_every_import_in_a_docstring_example_names_something_that_exists():
    """Docstring examples that are not doctests (``Example::`` blocks needing a model or data) are
    not run: one imported ``sample_task``, which medrag.qa.sample does not have (audit). Every
    ``from medrag/evaluation/finetune... import NAME`` line of a docstring must import."""
    import ast
    import importlib
    import re

    pattern = re.compile(r"^\s*(?:>>> )?from ((?:medrag|evaluation|finetune)(?:\.\w+)*) import ([\w, ]+)$")
    missing = []
    for package in ("medrag", "evaluation", "finetune"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                doc = ast.get_docstring(node, clean=False) or ""
                for line in doc.splitlines():
                    m = pattern.match(line)
                    if not m:
                        continue
                    module = importlib.import_module(m.group(1))
                    for name in (n.strip() for n in m.group(2).split(",")):
                        if name and not hasattr(module, name):
                            try:
                                importlib.import_module(f"{m.group(1)}.{name}")
                            except ImportError:
                                missing.append(f"{path.relative_to(REPO)}: from {m.group(1)} import {name}")
    assert missing == []


def test_the_examples_of_functions_in_modules_that_need_a_model_run():
    """evaluation.retrieval and evaluation.report are not in pyproject's doctest list (their module
    examples need a model); the ``>>>`` examples of their pure functions run here."""
    import doctest

    import evaluation.report
    import evaluation.retrieval

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for module, name in ((evaluation.retrieval, "rank_with_scores"), (evaluation.retrieval, "top_indices"),
                         (evaluation.retrieval, "RankedRun"),
                         (evaluation.report, "check_trec_ids")):
        tests = doctest.DocTestFinder().find(getattr(module, name), name, globs=vars(module))
        assert tests and tests[0].examples, name
        for test in tests:
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
