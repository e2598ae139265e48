"""The public API of ``medrag``: ``__all__`` lists exactly the public names, every error is exported,
and every error the library raises is a :class:`medrag.MedragError` (as httpx checks its own)."""

from __future__ import annotations

import ast
import builtins
import inspect
import types
from pathlib import Path

import medrag
import medrag.errors

REPO = Path(__file__).resolve().parents[2]
LIBRARY_PACKAGES = ("medrag", "evaluation", "finetune")
#: Built-in exceptions the library may still raise: the module protocol (``__getattr__``), and
#: process control in the command-line layer.
ALLOWED_BUILTINS = {"AttributeError", "KeyboardInterrupt", "SystemExit"}


def test_all_equals_the_public_names() -> None:
    for name in medrag.__all__:  # resolve every lazy export
        getattr(medrag, name)
    public = {name for name, value in vars(medrag).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert sorted(medrag.__all__) == sorted(public | {"__version__"})
    assert medrag.__all__ == sorted(medrag.__all__[:-1]) + ["__version__"]
    assert dir(medrag) == sorted(medrag.__all__)



def test_the_split_modules_keep_their_public_names() -> None:
    """medrag.store and medrag.indexing were split into parts (December 8); the names users import from
    them stay there: each module's ``__all__`` names what it defines or re-exports, and holds every
    public name it defined before the split."""
    import importlib

    before = {"medrag.store": {"MatryoshkaChroma", "FunnelHit", "FunnelResult", "drop_collection", "CONTRACT_KEYS",
                               "FULL_KEY", "GENERATION_KEY", "COMMITTED_KEY", "ROTATION_KEY", "ROTATIONS",
                               "DEFAULT_CANDIDATES", "DEFAULT_COARSE_DIM", "DEFAULT_EF_SEARCH", "DEFAULT_FULL_ENCODING",
                               "AUTO_LEARNED_MIN_TEXTS", "STORE_SCHEMA_VERSION", "HYBRID_KWARGS", "RETRIEVER_KWARGS",
                               "check_metadata_key", "check_search_sizes", "default_coarse_dim", "recorded_prompts"},
              "medrag.indexing": {"index_corpus", "iter_documents", "chunk_text", "chunk_spans", "chunk_id",
                                  "token_window", "IndexReport", "CHUNK_WORDS", "CHUNK_OVERLAP", "FOLDER_KEY",
                                  "SECTION_KEY", "PROGRESS_LOG_SECONDS", "TEXT_KEY_CHECKS", "register", "run_index"}}
    for name, names in before.items():
        module = importlib.import_module(name)
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], name
        assert sorted(names - set(module.__all__)) == [], name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        medrag.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("medrag.no_such_name did not raise")


def test_every_error_class_is_exported() -> None:
    # a private class (_WriteStopped: a cancelled async write's signal, caught inside the store) is no error a
    # caller sees
    errors = [obj for name, obj in inspect.getmembers(medrag.errors, inspect.isclass)
              if issubclass(obj, BaseException) and obj.__module__ == "medrag.errors" and not name.startswith("_")]
    assert medrag.errors.MedragError in errors and len(errors) >= 9
    for cls in errors:
        assert issubclass(cls, medrag.MedragError), cls
        assert cls.__name__ in medrag.__all__, f"{cls.__name__} is not exported from medrag"
        assert getattr(medrag, cls.__name__) is cls


def test_errors_that_replace_builtins_still_catch_as_them() -> None:
    assert issubclass(medrag.InvalidInputError, ValueError)
    assert issubclass(medrag.ConfigError, ValueError)
    assert issubclass(medrag.DataError, ValueError)
    assert issubclass(medrag.InvalidArgumentError, TypeError)
    assert issubclass(medrag.UnknownNameError, KeyError)
    assert str(medrag.UnknownNameError("no model 'x'")) == "no model 'x'"  # not quoted like a KeyError


def _library_files() -> list[Path]:
    return sorted(p for pkg in LIBRARY_PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_no_exception_class_outside_medrag_errors() -> None:
    defined = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id == "Exception")
                    for b in node.bases):
                defined.append(f"{path.relative_to(REPO)}: {node.name}")
    assert [d for d in defined if not d.startswith("medrag/errors.py")] == []


def test_library_raises_only_medrag_errors() -> None:
    builtin = {name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)}
    offenders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in builtin and exc.id not in ALLOWED_BUILTINS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: raise {exc.id}")
    assert offenders == []
