"""The exceptions medrag raises.

Every error the library (``medrag``, ``evaluation``, ``finetune``) raises on purpose is a
:class:`MedragError`, so an application can catch the library's failures in one place. The
subclasses say what went wrong; several also derive from the built-in exception a Python user
would expect (``ValueError`` for bad arguments, ``TypeError`` for an argument a call does not take,
``KeyError`` for an unknown name), so ``except ValueError`` and the like keep working.

Example::

    >>> from medrag.errors import InvalidInputError, MedragError
    >>> issubclass(InvalidInputError, MedragError) and issubclass(InvalidInputError, ValueError)
    True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class MedragError(Exception):
    """Base class of every error raised by medrag."""


class ModelLoadError(MedragError):
    """A model spec could not be resolved or loaded (missing path, no model in a
    folder, hub unreachable, corrupt embedded-model conversion)."""


class InvalidInputError(MedragError, ValueError):
    """An argument or input a call cannot use: an empty text, ``k <= 0``, a NaN vector, a bad batch size,
    an unknown metric name, a confidence outside (0, 1)..."""


class InvalidArgumentError(MedragError, TypeError):
    """A call got an argument it does not take (an unknown keyword argument)."""


class UnknownNameError(MedragError, KeyError):
    """A name looked up in a result does not exist there (a model label absent from a report)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class DimensionError(MedragError, ValueError):
    """A Matryoshka size that the model was not trained for, or a vector of the wrong size."""


class MetadataError(MedragError, ValueError):
    """A Matryoshka metadata file (``matryoshka.json``) is malformed or lacks what was asked of it."""


class CollectionMismatchError(MedragError):
    """A Chroma collection and the embeddings (or store settings) used to open it disagree."""


class StoreError(MedragError):
    """The vector store could not do what was asked: Chroma failed, or another process owns an
    embedded persist directory (see the subclasses)."""


class StoreConnectionError(StoreError, ConnectionError):
    """The Chroma server could not be reached, or the connection dropped during a call."""


class StoreLockedError(StoreError):
    """Another process has the embedded Chroma persist directory open for writing. Chroma's
    embedded client is not multi-process safe: run a Chroma server for several processes."""


class DataError(MedragError, ValueError):
    """A dataset or data file is malformed: missing columns, unreadable rows, nothing left to use."""


class UnreadablePdfError(DataError):
    """A PDF that cannot be read, and why (``cause``): ``"password"`` (encrypted with one),
    ``"crypto"`` (its encryption needs the cryptography package), ``"not_pdf"`` (a web page or a Word
    file named .pdf) or ``"damaged"`` (damaged, truncated or empty). ``medrag index`` warns about a
    folder's unread PDFs one cause at a time, each with its fix."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class ConfigError(MedragError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, impossible value)."""


class _WriteStopped(BaseException):
    """Raised inside a cancelled async write at its next slice or batch boundary
    (``MatryoshkaChroma.aadd_texts``), and caught there: never reaches a caller. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on the way takes it for a failure to report."""


class LexicalIndexError(MedragError):
    """A lexical (BM25) index file is missing, unreadable or was built by another analyzer; the store
    rebuilds it from the collection's records, which stay the source of truth."""


#: Keyword arguments other libraries name otherwise, and what medrag calls them.
_OTHER_NAMES = {"dimensions": "dimension", "filter": "where", "where": "filter", "embedding": "embedding_function",
                "persist_dir": "persist_directory"}


def checked_arguments(function: F) -> F:
    """Decorate a public function or method of fixed signature so that a call it cannot bind (an
    unknown keyword argument, one too many) raises :class:`InvalidArgumentError` instead of Python's
    bare ``TypeError``: every error of the library is a :class:`MedragError`, and the message says
    what the function does take (``MatryoshkaEmbeddings(dimensions=64)``, OpenAI's spelling, now
    names ``dimension``). Nothing runs before the binding fails, and a call that binds costs nothing."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TypeError:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:  # the call itself was wrong, not something inside the function
                # read now, not when decorated: a method that a mixin defines is named as its class's
                # (medrag.store renames the parts' methods MatryoshkaChroma.<name>)
                name = wrapper.__qualname__.removesuffix(".__init__")
                taken = [p for p in signature.parameters if p != "self" and not p.startswith("_")]
                keyword_only = [p for p in taken if signature.parameters[p].kind is inspect.Parameter.KEYWORD_ONLY]
                if keyword_only and len(keyword_only) < len(taken):  # "query, k, filter, *, candidates" (review)
                    taken.insert(taken.index(keyword_only[0]), "*")
                hints = [f"{k}= is {_OTHER_NAMES[k]}=" for k in kwargs
                         if k not in signature.parameters and _OTHER_NAMES.get(k) in signature.parameters]
                raise InvalidArgumentError(f"{name}(): {exc}"
                                           + (f" ({'; '.join(hints)} here)" if hints else "")
                                           + f"; it takes {', '.join(taken) or 'no argument'}") from None
            raise

    return wrapper  # type: ignore[return-value]
