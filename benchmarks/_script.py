"""What every benchmark script shares: its parser, argument types that refuse nonsense, the data
check, and :func:`run_script`, which ends a failed run with one line on stderr.

Exit codes, as the ``medrag`` command's (:mod:`medrag.command`): 0 success, 2 a bad argument (one
line naming the option), 1 a :class:`medrag.MedragError`, missing data, an ``OSError`` or a script's
own ``SystemExit("message")`` (one line, no traceback; a failed child process too), 130 interrupted.

A script uses it as::

    from _script import ScriptParser, positive_int, run_script

    def main(argv=None):
        parser = ScriptParser(__file__, "What it measures.")
        parser.add_argument("--n", type=positive_int, default=100, help="passages")
        args = parser.parse_args(argv)
        ...

    if __name__ == "__main__":
        raise SystemExit(run_script(main))
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from medrag.command import NEGATIVE_NUMBER
from medrag.errors import DataError, MedragError

#: The repository root (the scripts' default outputs are under it, whatever the current folder).
REPO = Path(__file__).resolve().parents[1]
#: The real data beside the checkout (``../shared/data``), never copied into the repository.
SHARED_DATA = REPO.parent / "shared" / "data"
#: Where the scripts' results are kept (docs/benchmarks.md, docs/results.md cite them there).
RESULTS = REPO / "benchmarks" / "results"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and ends an option's help with its default, unless the
    default is None/False/empty (nothing to show) or the help already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not text or not action.option_strings or "default" in text or default is None or default is False
                or default is argparse.SUPPRESS or default == []):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class ScriptParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` named after the script's file, whose usage errors are one line naming
    ``--help`` (exit code 2); its subcommands' parsers are of this class too."""

    def __init__(self, file: str | None = None, description: str | None = None, **kwargs) -> None:
        if file is not None:
            kwargs.setdefault("prog", Path(file).name)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(description=description, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER  # -1e-4 is a value, not a flag

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (a count, a size)."""
    return _integer(value, 1)


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(value, 0)


def positive_int_list(value: str) -> list[int]:
    """argparse type: comma-separated integers >= 1 (``32,64``)."""
    items = [x.strip() for x in value.split(",")]
    try:
        return [positive_int(x) for x in items]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {value!r}") from None


def positive_int_csv(value: str) -> str:
    """argparse type: comma-separated integers >= 1, kept as the string (for options the script
    splits itself)."""
    positive_int_list(value)
    return value


def unit_float(value: str) -> float:
    """argparse type: a number in [0, 1] (a weight, a share)."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return number


def require_data(path: str | os.PathLike[str], what: str, flag: str | None = None) -> Path:
    """``path`` if it exists; else a :class:`DataError` (exit code 1) saying what is missing and
    how to point the script at it (``flag``: the option that does; None: the path is fixed)."""
    path = Path(path).expanduser()
    if not path.exists():
        fix = f" or pass {flag} with where it is" if flag else ""
        raise DataError(f"{what} not found at {path}: put the shared data beside the checkout ({SHARED_DATA}){fix}")
    return path


def add_data_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-root``, the validation suite's data folder (read back by :func:`suite_data_root`)."""
    parser.add_argument("--data-root", default=None,
                        help="folder holding frenchmedmcqa/ and french-medical-text/ (default: $MEDRAG_DATA, "
                             "else ../shared/data beside the repository)")


def lexical_weight(value: str) -> float | str:
    """argparse type: ``auto`` (a weight per query) or a number in [0, 1]."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return unit_float(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or a number from 0 to 1, got {value!r}") from None


def auto_range(weight: float | str) -> dict:
    """``{"auto_weight_range": [low, high]}`` for a JSON whose weight is ``auto`` (the range may be
    re-chosen later), else nothing."""
    from medrag.lexical.fusion import AUTO_WEIGHT, AUTO_WEIGHT_RANGE

    return {"auto_weight_range": list(AUTO_WEIGHT_RANGE)} if weight == AUTO_WEIGHT else {}


def hybrid_row(result, weight: float | str) -> dict:
    """NDCG@10 of an :func:`evaluation.hybrid.evaluate_hybrid_suite` result at one lexical ``weight``:
    the macro-average of BM25, and of dense and hybrid search per size, and the same per domain."""
    sizes = result.sizes
    return {
        "lexical": result.macro("lexical"),
        "dense": {str(d): result.macro("dense", d) for d in sizes},
        "hybrid": {str(d): result.macro("hybrid", d, weight) for d in sizes},
        "domains": {dom: {"lexical": r.score("lexical", metric="ndcg@10"),
                          "dense": {str(d): r.score("dense", d, metric="ndcg@10") for d in sizes},
                          "hybrid": {str(d): r.score("hybrid", d, weight, "ndcg@10") for d in sizes}}
                    for dom, r in result.domains.items()},
    }


def print_hybrid_table(rows: dict[str, dict], first_column: str, suite, args: argparse.Namespace) -> None:
    """Print ``rows`` (name -> :func:`hybrid_row`) as a markdown table, titled with the suite's
    part and ``args.weight`` (the store's default fusion)."""
    from medrag.lexical.fusion import DEFAULT_FUSION

    sizes = list(next(iter(rows.values()))["dense"])
    print(f"\nMacro NDCG@10 over {', '.join(suite.choice_domains)}, suite {args.part}"
          f"{' (pilot)' if args.pilot else ''}; hybrid: {DEFAULT_FUSION}, w = {args.weight}\n")
    print(f"| {first_column} | BM25 | " + " | ".join(f"dense {d} | hybrid {d}" for d in sizes) + " |")
    print("|---|---|" + "---|---|" * len(sizes))
    for name, r in rows.items():
        print(f"| {name} | {r['lexical']:.4f} | "
              + " | ".join(f"{r['dense'][d]:.4f} | {r['hybrid'][d]:.4f}" for d in sizes) + " |")


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    """The validation suite's options (``--part``, ``--pilot``, ``--max-queries``, ``--max-passages``,
    ``--data-root``), read back by :func:`load_suite`."""
    parser.add_argument("--part", default="val", choices=("val", "test"),
                        help="the suite's part: val for choices, test to report once")
    parser.add_argument("--pilot", action="store_true", help="cap each domain at --max-queries x --max-passages")
    parser.add_argument("--max-queries", type=positive_int, default=300, help="pilot cap on queries per domain")
    parser.add_argument("--max-passages", type=positive_int, default=3000, help="pilot cap on passages per domain")
    add_data_root_argument(parser)


def load_suite(args: argparse.Namespace, data_root: str | None = None):
    """The validation suite that :func:`add_suite_arguments`' options ask for, described on stdout
    (``data_root``: already checked by :func:`suite_data_root`; None: checked here)."""
    from medrag.qa.suite import build_suite

    suite = build_suite(args.part, pilot=args.pilot, data_root=data_root or suite_data_root(args.data_root),
                        max_queries=args.max_queries if args.pilot else None,
                        max_passages=args.max_passages if args.pilot else None)
    print(suite.describe())
    return suite


def suite_data_root(option: str | None) -> str:
    """The validation suite's data folder: ``option`` (``--data-root``), else ``$MEDRAG_DATA``, else
    the shared data beside this checkout, written relative to the current folder (``../shared/data``
    from the repository root, as the recorded results have it); a :class:`DataError` naming
    ``--data-root`` when it is missing."""
    root = option or os.environ.get("MEDRAG_DATA") or os.path.relpath(SHARED_DATA)
    return str(require_data(root, "the suite's data folder", "--data-root"))


def run_script(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)`` and return its exit code; a failure is one line on stderr,
    ``<script>: error: <message>`` (see the module's docstring for the codes). Usage errors
    (argparse's exit 2) and ``--help`` (exit 0) pass through."""
    prog = Path(main.__code__.co_filename).name
    try:
        return int(main(argv) or 0)
    except SystemExit as exc:  # argparse's exits carry a number; a script's own message a string
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        message = str(exc.code)
    except MedragError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:  # a measured child process: it printed its own error above
        message = f"a child process failed (exit code {exc.returncode}); its error is printed above"
    except OSError as exc:  # the machine's side (a missing file, a full disk, permissions)
        message = (exc.strerror or str(exc)) + (f" ({exc.filename})" if exc.filename else "")
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1
