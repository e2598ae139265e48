"""Lazy package attributes (PEP 562): a package's public names, each loaded from the module that
defines it on first access, so that ``import medrag`` (and ``import finetune`` / ``import
evaluation``) loads no heavy dependency. One mechanism for the three packages."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 names: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it.
        names: what ``dir(package)`` lists (its ``__all__``).

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # kept: later accesses do not come here
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
