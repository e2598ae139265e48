"""How every medrag command runs: parse, set up logging, call the subcommand, turn library errors
into one line on stderr.

``medrag`` (:mod:`medrag.cli`), ``python -m finetune`` (:mod:`finetune.cli`) and ``python -m evaluation``
(:mod:`evaluation.cli`) all end in
:func:`run_command`, so they share flags (``-v``), exit codes and error format. It lives in the
core package, which imports neither ``finetune`` nor ``evaluation``, so both can use it.

Library warnings (texts truncated by the model, ...) are printed as one line,
``<command>: warning: <message>``, like the errors.

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
import difflib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn
from pathlib import Path

from medrag.errors import DataError, InvalidInputError, MedragError, ModelLoadError

if TYPE_CHECKING:
    from medrag.embeddings import MatryoshkaEmbeddings


#: What argparse takes for a negative number, not a flag: its own ``-1`` and ``-0.5`` (Python 3.11's
#: pattern) and scientific notation, ``-1e-4`` (the configs write learning rates as ``1.0e-4``):
#: ``--learning-rate -1e-4`` was "expected one argument" (exit 2), not the value check.
NEGATIVE_NUMBER = re.compile(r"^-(?:\d+|\d*\.\d+|\d+\.?\d*[eE][-+]?\d+|\d*\.\d+[eE][-+]?\d+)$")

#: The arguments of the command line being parsed (:meth:`OneLineErrorParser.parse_args`), for the
#: errors of its subcommands' parsers.
_ARGV: list[str] = []


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors (a mistyped flag, a value of the wrong type) are one line naming
    ``--help``, not the whole usage block; exit code 2, as argparse's. Its subcommands' parsers are
    of this class too (``add_subparsers`` makes them with the parent's class). A negative number in
    scientific notation is a value (:data:`NEGATIVE_NUMBER`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # no prefix matching: `--lr 1e-3` was taken for --lr-scheduler ("lr_scheduler must be one of"), and
        # a mistyped `--learning-rat` was accepted; a flag is given whole (user tryout)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        dashed = [a for a in _ARGV if a.startswith("-") and a not in self._option_string_actions
                  and a.split("=")[0] not in self._option_string_actions and not NEGATIVE_NUMBER.match(a)]
        if message.startswith("the following arguments are required:") and dashed:
            # `medrag search "-CRP"`: argparse read the query as an option and asked for one (user tryout)
            message += f"; a value that starts with '-' goes after '--' (-- \"{dashed[0]}\")"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
                   ) -> argparse.Namespace:
        """As argparse's, but an unknown flag is reported by the subcommand it was given to, with the
        nearest known flag: argparse reported ``medrag finetune --lerning-rate`` as the top command's
        ("see medrag --help", which does not list the subcommand's flags)."""
        _ARGV[:] = list(sys.argv[1:] if args is None else args)  # what error() reads for its '--' hint
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._chosen_subparser(namespace)
            flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
            hints = [hint for e in extras if e.startswith("--") and (hint := _nearest_flag(e.split("=")[0], flags))]
            parser.error(f"unrecognized arguments: {' '.join(extras)}"
                         + (f" (did you mean {', '.join(hints)}?)" if hints else ""))
        _refuse_blank_options(self._chosen_subparser(namespace), namespace)
        return namespace

    def _chosen_subparser(self, namespace: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the subcommand ``namespace`` ran (nested ones too), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
                if chosen is not None:
                    return chosen._chosen_subparser(namespace) if isinstance(chosen, OneLineErrorParser) else chosen
        return self


def _nearest_flag(typed: str, flags: Sequence[str]) -> str | None:
    """The flag ``typed`` (``--lerning-rate``) most likely meant: one whose words' initials it is
    (``--lr``, ``--bs``: the usual short names), else the closest spelling (compared without the
    dashes, which made any flag look alike: ``--nosuch`` was "did you mean --epochs?")."""
    initials = [f for f in flags if "-" in f[2:] and "".join(w[0] for w in f[2:].split("-")) == typed[2:]]
    if initials:  # --lr: --learning-rate or --lora-rank
        return " or ".join(initials[:3])
    close = difflib.get_close_matches(typed[2:], [f[2:] for f in flags], n=1)
    return "--" + close[0] if close else None


def _refuse_blank_options(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
    """A usage error for an option given an empty value (``--out "$OUT"`` with ``OUT`` unset): it was
    taken as the current folder (a report scattered there, embeddings cached there) or named ``.`` in
    the error (user tryout). An option whose default is empty may be given empty."""
    for action in parser._actions:
        if not action.option_strings or not action.dest or action.dest == argparse.SUPPRESS:
            continue
        value = getattr(namespace, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if value != action.default and any(isinstance(v, str) and not v.strip() for v in values):
            # a list of medrag finetune is cleared with `none` (`""` did it, undocumented: review)
            clear = "; `none` clears a config file's list" if isinstance(value, list) and \
                parser.prog.endswith("finetune") else ""
            parser.error(f"{action.option_strings[-1]} is empty (an unset shell variable?): give "
                         f"it a value, or leave the option out{clear}")


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
    try:
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print(f"{name or parser.prog}: interrupted", file=sys.stderr)
        return 130
    label = name or " ".join(p for p in (parser.prog, getattr(args, "command", None)) if p)
    handler = logging.StreamHandler()
    handler.setFormatter(_CommandFormatter(label))
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        handlers=[handler])
    for name in NOTICE_LOGGERS:  # shown without -v: a first run was silent for its minute of model building
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
    # a library warning (texts truncated, ...) is one line too, not the file, line and source line
    # Python prints under it; restored afterwards, for a caller that runs commands in-process
    format_before = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: f"{label}: warning: {message}\n"
    term_before = _stop_on_sigterm()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away (| head) shows here, not as "Exception ignored" at exit
        return code
    except MedragError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 1
    except _Terminated:
        # a command that writes (args.writes unset) says where it stands; one that only reads, that it stopped
        print(f"{label}: terminated (SIGTERM)" + ("; what was written is kept: run the command again to go on"
                                                  if getattr(args, "writes", True) else ""), file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine's side (a full disk, permissions, an unwritable place): one line too
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            # `medrag search ... | head -1`: the reader has what it wanted; no error line, the shell's SIGPIPE
            # status (a broken pipe elsewhere, a worker or a socket, stays an error)
            _stdout_to_devnull()
            return 141
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{label}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = format_before
        if term_before is not None:
            signal.signal(signal.SIGTERM, term_before)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, Kubernetes, ``kill``) during a command: raised where the command is,
    so that it unwinds as after Ctrl-C (its locks released, its files closed) and says so; the
    default action ended ``medrag index`` at once, exit 143 without a word (ops tryout)."""


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` while a command runs; returns the handler to put
    back, or None where it is left alone (not the main thread; an application's own handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    return signal.signal(signal.SIGTERM, terminate)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``poll`` reports an error on it)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll (Windows), a stdout without a descriptor
        return False


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the interpreter's flush at exit does not raise on the closed
    pipe again (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured in tests)
        pass


#: Loggers whose information every command shows (one line each, without ``-v``): the one-time
#: building of a model into the cache (a first ``medrag demo`` said nothing for a minute: user tryout),
#: and the earlier builds a new one leaves there (review: README promised it, only ``-v`` showed it).
NOTICE_LOGGERS = ("medrag.bundled", "medrag.adapters")


class _CommandFormatter(logging.Formatter):
    """Library log lines of a command: a warning reads as the command's (``medrag index: warning: ...``,
    as Python warnings and errors do); ``-v``'s information keeps its level and logger name."""

    def __init__(self, label: str) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.label = label

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.WARNING:
            return f"{self.label}: warning: {record.getMessage()}"
        if record.levelno == logging.INFO and record.name in NOTICE_LOGGERS:
            return f"{self.label}: {record.getMessage()}"
        return super().format(record)


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
        # an existing folder cannot be written to; a missing one cannot be made in the folder above it
        what = "cannot write to the folder" if existing == folder else "cannot create the folder"
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InvalidInputError(f"{flag} {folder}: {what} ({existing} is not writable)")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing))
        except OSError as exc:
            raise InvalidInputError(f"{flag} {folder}: {what}{'' if existing == folder else f' in {existing}'} "
                                    f"({exc.strerror}); pass a folder you can write to") from None
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"{flag} {folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{flag} {folder} is not writable; pass a folder you can write to")


def lexical_weight_argument(text: str) -> float | str:
    """``--lexical-weight``'s type: ``auto`` (a weight per query) or a number (its range is checked
    with the other cheap arguments, so the message names the option)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"pass a number in [0, 1] (0 = dense only) or auto, got {text!r}") from None


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """``--query-prompt-name`` / ``--document-prompt-name``: the prompts of a model that saved them under
    other names than medrag's (``s2p_query``); it was indexed and evaluated from the shell without
    them, with a warning that named a Python argument only (user tryout)."""
    parser.add_argument("--query-prompt-name", default=None, metavar="NAME",
                        help="the model's prompt to put before queries (default: its 'query' prompt, if any)")
    parser.add_argument("--document-prompt-name", default=None, metavar="NAME",
                        help="the model's prompt to put before passages (default: its first of 'passage', "
                             "'document', 'corpus', if any)")


def add_store_location_arguments(parser: argparse.ArgumentParser, persist_help: str) -> None:
    """The flags of the commands that open a store (``medrag index``, ``medrag search``): ``--persist-dir``
    or ``--host``/``--port``, and ``--collection``; :func:`check_store_location` checks them."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--persist-dir", help=persist_help)
    where.add_argument("--host", help="host of a Chroma server (chroma run); with --port. A server that asks for a "
                       "token: set CHROMA_CLIENT_AUTH_PROVIDER=chromadb.auth.token_authn.TokenAuthClientProvider and "
                       "CHROMA_CLIENT_AUTH_CREDENTIALS=<token> in the environment (chromadb reads them)")
    # default None, read as 8000 once checked: a --port 8000 given with --persist-dir was not told
    # apart from the default and was ignored in silence (user tryout)
    parser.add_argument("--port", type=int, default=None, help="port of the Chroma server (default 8000)")
    parser.add_argument("--ssl", action="store_true", help="connect to the Chroma server over HTTPS")
    parser.add_argument("--tenant", help="the server's tenant (default: Chroma's default_tenant)")
    parser.add_argument("--database", help="the server's database (default: Chroma's default_database)")
    parser.add_argument("--collection", default="medrag", help="collection name (default medrag)")


#: The Chroma server's port when ``--host`` comes without ``--port`` (Chroma's own default).
DEFAULT_PORT = 8000


def check_store_location(args: argparse.Namespace) -> None:
    """Refuse ``--port`` without ``--host`` (it would be ignored), a ``--persist-dir`` that is a file,
    and a ``--collection`` name Chroma refuses: before any model loads."""
    # an empty --persist-dir/--host/--tenant/--database ("$DB" with DB unset) is a usage error of the parser
    if args.port is not None and not 1 <= args.port <= 65535:
        raise InvalidInputError(f"--port must be a TCP port in 1..65535, got {args.port}")
    server_only = [flag for flag, given in (("--port", args.port is not None), ("--ssl", args.ssl),
                                            ("--tenant", args.tenant is not None),
                                            ("--database", args.database is not None)) if given]
    if args.persist_dir and server_only:
        raise InvalidInputError(f"{', '.join(server_only)}: for a Chroma server: pass {'it' if len(server_only) == 1 else 'them'} "
                                "with --host, not with --persist-dir")

    if args.persist_dir and Path(args.persist_dir).exists() and not Path(args.persist_dir).is_dir():
        raise InvalidInputError(f"--persist-dir {args.persist_dir} is a file; pass a folder")
    from medrag._store_checks import _check_collection_name

    _check_collection_name(args.collection, "--collection")


def server_place(args: argparse.Namespace) -> str:
    """How messages name the server of ``--host`` (with its tenant and database when given)."""
    scheme = "https://" if args.ssl else ""
    within = "/".join(x for x in (args.tenant, args.database) if x)
    return f"the store at {scheme}{args.host}:{args.port or DEFAULT_PORT}{f' ({within})' if within else ''}"


def open_server(args: argparse.Namespace) -> Any:
    """The ``chromadb.HttpClient`` of ``--host``/``--port``/``--ssl``/``--tenant``/``--database`` (a
    token, if the server asks for one, comes from chromadb's environment variables: see ``--host``);
    a connection failure is a one-line :class:`MedragError`."""
    import chromadb

    from medrag._chroma_errors import translate_chroma_error

    extra = {k: v for k, v in (("tenant", args.tenant), ("database", args.database)) if v is not None}
    try:
        return chromadb.HttpClient(host=args.host, port=args.port or DEFAULT_PORT, ssl=args.ssl, **extra)
    except Exception as exc:
        raise translate_chroma_error(exc, f"open {server_place(args)}") from exc


def collection_names(client: Any, where: str) -> list[str]:
    """The collections of the store ``client`` opens (chromadb 0.5 lists names, 1.x objects); a
    Chroma failure is a :class:`MedragError` saying it could not open ``where``."""
    from medrag._chroma_errors import translate_chroma_error

    try:
        return [c if isinstance(c, str) else c.name for c in client.list_collections()]
    except Exception as exc:
        raise translate_chroma_error(exc, f"open {where}") from exc


def recorded_model(client: Any, collection: str, renewable: bool = False) -> str:
    """The model spec the existing ``collection`` records (``medrag:model``); a :class:`DataError`
    saying what to do when it was built with embeddings medrag cannot load (no fingerprint).

    A packaged model's earlier weights, which ship on under another spec, are that spec, except in
    an empty collection that ``renewable`` says the store will create again (an embedded folder:
    :meth:`MatryoshkaChroma._renew_if_empty`): nothing is stored under them, so the current weights
    fill it (an old run killed before its first write left it, and ``medrag index`` filled it with
    the superseded weights: upgrade tryout)."""
    from medrag._chroma_errors import translate_chroma_error
    from medrag.store import CONTRACT_KEYS

    try:
        found = client.get_collection(collection, embedding_function=None)
        meta = found.metadata or {}
    except Exception as exc:
        raise translate_chroma_error(exc, "read the collection", collection) from exc
    spec = meta.get(CONTRACT_KEYS["model"])
    fingerprint = meta.get(CONTRACT_KEYS["fingerprint"])
    if not isinstance(spec, str) or not spec or not fingerprint:
        raise DataError(f"collection {collection!r} records no model medrag can load ({spec!r}): it was built with "
                        "other embeddings (langchain-chroma, or MatryoshkaChroma with an Embeddings object of yours), "
                        "which the shell cannot load; index its source into another --collection")
    if spec.startswith("bundled:"):  # built with earlier weights of a packaged model, shipped on under another name
        from medrag.adapters import former_weights_spec

        former = former_weights_spec(spec, str(fingerprint))
        if former and renewable and _holds_nothing(found):
            logging.getLogger(__name__).info(
                "collection %r records the earlier weights of %s but holds nothing: it is made again with %s's "
                "current weights", collection, spec, spec)
        elif former:
            logging.getLogger(__name__).warning(
                "collection %r was built with the earlier weights of %s, which now ship as %s: using %s (reindex "
                "into a new --collection to use the new weights)", collection, spec, former, former)
            return former
    return spec


def _holds_nothing(collection: Any) -> bool:
    """Whether ``collection`` holds no record (an unreadable count is not read as empty)."""
    try:
        return collection.count() == 0
    except Exception:  # noqa: BLE001 - the store's own open reports an unreadable collection
        return False


def collection_prompts(client: Any, collection: str) -> tuple[dict[str, str], str] | None:
    """The prompts the existing ``collection`` records its vectors were encoded with (``medrag:prompts``)
    and the fingerprint of the model that encoded them; None for a collection made before medrag
    recorded them."""
    from medrag._chroma_errors import translate_chroma_error
    from medrag.store import CONTRACT_KEYS, recorded_prompts

    try:
        meta = client.get_collection(collection, embedding_function=None).metadata or {}
    except Exception as exc:
        raise translate_chroma_error(exc, "read the collection", collection) from exc
    prompts = recorded_prompts(meta.get(CONTRACT_KEYS["prompts"]))
    return None if prompts is None else (prompts, str(meta.get(CONTRACT_KEYS["fingerprint"]) or ""))


def store_embeddings(args: argparse.Namespace, recorded: str | None,
                     prompts: tuple[dict[str, str], str] | None = None) -> "MatryoshkaEmbeddings":
    """The embeddings ``medrag index``/``search`` open a collection with: ``--model`` when given (a
    local folder made absolute, so the collection records a path that works from any folder), else
    the model the collection records (``recorded``), else medrag's default. When the model is the
    one that encoded the collection (its fingerprint), with the prompts the collection records
    (``prompts``, :func:`collection_prompts`): the same weights under another folder name, or with
    their model card left out, got other prompts and their vectors no longer matched the stored ones
    (user tryout); another model keeps its own (the store then names the difference)."""
    from medrag.embeddings import MatryoshkaEmbeddings, adopt_prompts

    model = args.model
    if model and Path(model).exists():
        model = str(Path(model).resolve())
    names = {"query_prompt_name": getattr(args, "query_prompt_name", None),
             "document_prompt_name": getattr(args, "document_prompt_name", None)}
    try:
        emb = MatryoshkaEmbeddings(model or recorded, device=args.device, show_progress=False, **names)
        # prompt names given: those (the store names a difference from the recorded ones)
        # the current fingerprint first: the ~90 legacy ids are computed only for an earlier medrag's collection
        if prompts is not None and not any(names.values()) and (prompts[1] == emb.fingerprint
                                                                or prompts[1] in emb.legacy_fingerprints):
            adopt_prompts(emb, prompts[0])
        return emb
    except ModelLoadError as exc:
        if model or recorded is None:
            raise
        raise ModelLoadError(f"the collection records the model {recorded!r}, which does not load from here ({exc}); "
                             "pass --model with where that model is now") from exc
