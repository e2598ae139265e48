"""How every medrag command runs: parse, set up logging, call the subcommand, turn library errors
into one line on stderr.

``medrag`` (:mod:`medrag.cli`) and ``python -m finetune`` (:mod:`finetune.cli`) both end in
:func:`run_command`, so they share flags (``-v``), exit codes and error format. It lives in the
core package, which imports neither ``finetune`` nor ``evaluation``, so both can use it.

Exit codes: 0 success (or what the subcommand returns), 1 a :class:`medrag.MedragError` (its message
on one line, no traceback: the message says what to do) or an ``OSError`` (disk full,
permissions), 130 interrupted (Ctrl-C), 2 a usage error (argparse).

Example::

    >>> import argparse
    >>> from medrag.command import new_parser, run_command
    >>> parser = new_parser("demo-tool", "A tool.")
    >>> parser.set_defaults(func=lambda args: 0, command="hello")
    >>> run_command(parser, [])
    0
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import NoReturn
from pathlib import Path

from medrag.errors import InvalidInputError, MedragError


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors (a mistyped flag, a value of the wrong type) are one line naming
    ``--help``, not the whole usage block; exit code 2, as argparse's. Its subcommands' parsers are
    of this class too (``add_subparsers`` makes them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def new_parser(prog: str, description: str | None, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the flags every medrag command has (``-v/--verbose``) and one-line
    usage errors (:class:`OneLineErrorParser`)."""
    parser = OneLineErrorParser(prog=prog, description=description, **kwargs)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *, name: str | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run ``args.func(args)``.

    Args:
        parser: a parser from :func:`new_parser` whose (sub)commands set ``func``.
        argv: the arguments (default: ``sys.argv[1:]``).
        name: how error lines start (``"<name>: error: ..."``); default ``"<prog> <command>"``.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    label = name or " ".join(p for p in (parser.prog, getattr(args, "command", None)) if p)
    try:
        return int(args.func(args) or 0)
    except MedragError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine's side (a full disk, permissions, an unwritable place): one line too
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{label}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


#: Name prefix of the folder :func:`check_writable_dir` makes and removes to probe a parent folder.
PROBE_PREFIX = ".medrag-probe-"


def check_writable_dir(folder: Path, flag: str, create: bool = True) -> None:
    """Make ``folder`` (a directory) or raise a one-line :class:`InvalidInputError` saying why not:
    the commands' output folders (``--dir``, ``--out``) are checked before any model loads, not when
    the results are written at the end. ``create=False`` checks without making anything lasting:
    the nearest existing folder above it must be a directory where a folder can be made (a probe
    folder is made and removed there: ``os.access`` says yes to root even on ``/proc``)."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{flag} {folder} is a file; pass a folder (it is created if missing)")
    if not create:
        existing = next((p for p in [folder, *folder.absolute().parents] if p.exists()), None)
        if existing is None or not existing.is_dir():
            raise InvalidInputError(f"{flag} {folder}: cannot create the folder ({existing} is a file)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InvalidInputError(f"{flag} {folder}: cannot create the folder ({existing} is not writable)")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing))
        except OSError as exc:
            raise InvalidInputError(f"{flag} {folder}: cannot create the folder in {existing} ({exc.strerror}); "
                                    "pass a folder you can write to") from None
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"{flag} {folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{flag} {folder} is not writable; pass a folder you can write to")


def add_store_location_arguments(parser: argparse.ArgumentParser, persist_help: str) -> None:
    """The flags of the commands that open a store (``medrag index``, ``medrag search``): ``--persist-dir``
    or ``--host``/``--port``, and ``--collection``; :func:`check_store_location` checks them."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--persist-dir", help=persist_help)
    where.add_argument("--host", help="host of a Chroma server (chroma run); with --port")
    parser.add_argument("--port", type=int, default=8000, help="port of the Chroma server (default 8000)")
    parser.add_argument("--collection", default="medrag", help="collection name (default medrag)")


def check_store_location(args: argparse.Namespace) -> None:
    """Refuse ``--port`` without ``--host`` (it would be ignored)."""
    if args.persist_dir and args.port != 8000:
        raise InvalidInputError("--port is for a Chroma server: pass it with --host, not with --persist-dir")
