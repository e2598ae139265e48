"""What the installed package declares: its licence and every third-party module its code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGES = ("medrag", "evaluation", "finetune")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()


def test_every_third_party_module_imported_is_a_declared_dependency():
    """pyarrow (Parquet records files), huggingface_hub, pydantic and httpx were imported by medrag's own
    code but reached an install only through other packages' requirements (packaging tryout)."""
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for extra in ("pdf", "wandb", "tensorboard") for r in project["optional-dependencies"][extra]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for top in {m.split(".")[0] for m in modules} - set(PACKAGES) - set(sys.stdlib_module_names):
                    # a module not installed here (tomli on 3.11) is named by its own name
                    names = {_name(d) for d in distributions.get(top, [top])}
                    if not names & (declared | optional):
                        undeclared.append(f"{path.relative_to(REPO)}: {top}")
    assert undeclared == []


def test_the_licence_is_shipped_with_the_package():
    project = _project()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
