"""Dependencies point one way: ``medrag`` (core) <- ``evaluation`` <- ``finetune`` <- the CLI and demo.

Only :mod:`medrag.cli` and :mod:`medrag.demo` (the thin top layer) may import ``evaluation`` or
``finetune``; ``evaluation`` never imports ``finetune``; ``import medrag`` loads neither.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The medrag modules allowed to import the packages that build on medrag.
TOP_LAYER = {"medrag/cli.py", "medrag/demo.py"}


def _imported_packages(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_medrag_imports_neither_evaluation_nor_finetune_outside_the_cli_layer() -> None:
    bad = [f"{p.relative_to(REPO)} imports {sorted(_imported_packages(p) & {'evaluation', 'finetune'})}"
           for p in _files("medrag")
           if str(p.relative_to(REPO)) not in TOP_LAYER and _imported_packages(p) & {"evaluation", "finetune"}]
    assert bad == []


def test_evaluation_never_imports_finetune() -> None:
    bad = [str(p.relative_to(REPO)) for p in _files("evaluation") if "finetune" in _imported_packages(p)]
    assert bad == []


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_medrag_loads_neither_package() -> None:
    res = _run("import medrag, sys; assert 'finetune' not in sys.modules and 'evaluation' not in sys.modules")
    assert res.returncode == 0, res.stderr


@pytest.mark.integration
def test_the_whole_core_api_loads_neither_package() -> None:
    """Every medrag module but the CLI layer, and every public name, without evaluation or finetune."""
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in _files("medrag")
                     if str(p.relative_to(REPO)) not in TOP_LAYER and p.name != "__main__.py")
    code = ("import importlib, sys, medrag\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "for n in medrag.__all__: getattr(medrag, n)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('evaluation', 'finetune'))\n"
            "assert not bad, bad\n")
    res = _run(code)
    assert res.returncode == 0, res.stderr


@pytest.mark.integration
@pytest.mark.parametrize("package,forbidden", [("evaluation", ("finetune",)), ("finetune", ())])
def test_each_package_imports_in_isolation(package: str, forbidden: tuple[str, ...]) -> None:
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in _files(package)
                     if p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
            "assert not bad, bad\n")
    res = _run(code)
    assert res.returncode == 0, res.stderr


def test_every_module_is_in_the_module_map() -> None:
    """A newcomer found 18 modules that docs/architecture.md never named (review: a new contributor's
    tryout); its module map names each one, and a new module must join it."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    mapped = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, flags=re.MULTILINE))
    modules = {str(p.relative_to(REPO)) for package in ("medrag", "evaluation", "finetune") for p in _files(package)
               if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(modules - mapped) == [], "add them to docs/architecture.md's module map"
    assert sorted(mapped - modules) == [], "the module map names modules that no longer exist"


def test_the_store_parts_use_only_the_state_that_the_store_sets_up() -> None:
    """MatryoshkaChroma is split by concern into mixins (``medrag/_store_*.py``); a newcomer reads its
    state in one place, ``__init__``: an attribute that a part assigns must be set up there too."""
    from medrag.store import MatryoshkaChroma

    def assigned(node: ast.AST) -> set[str]:
        names = set()
        for sub in ast.walk(node):
            targets = (sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                       if isinstance(sub, (ast.AnnAssign, ast.AugAssign)) else [])
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        names.add(t.attr)
        return names

    store_tree = ast.parse((REPO / "medrag" / "store.py").read_text(encoding="utf-8"))
    init = next(n for n in ast.walk(store_tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    set_up = assigned(init)
    parts = [cls for cls in MatryoshkaChroma.__mro__[1:] if cls.__module__.startswith("medrag.")]
    assert len(parts) >= 5, parts
    for part in parts:
        tree = ast.parse((REPO / (part.__module__.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == part.__name__)
        assert not [n for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))], f"{part.__name__}: class state"
        missing = sorted(assigned(cls) - set_up)
        assert missing == [], f"{part.__name__} sets {missing}, which MatryoshkaChroma.__init__ does not"
