"""The ``medrag`` command: a thin layer over the same functions the Python API exposes.

Subcommands live beside the code they drive; each module has ``register(subparsers)``
that adds its parser and sets ``func(args) -> int``:

- ``medrag compare``  (this module): embed two texts and print their similarity per size;
- ``medrag demo``     (:mod:`medrag.demo`);
- ``medrag index``    (:mod:`medrag.indexing`);
- ``medrag search``   (:mod:`medrag.searching`);
- ``medrag delete``   (:mod:`medrag.deleting`);
- ``medrag finetune`` (:mod:`finetune.cli`);
- ``medrag evaluate`` (:mod:`evaluation.cli`).

Library errors (:class:`medrag.MedragError`) end the command with one line on stderr and exit code 1
(:func:`medrag.command.run_command`, which ``python -m finetune`` and ``python -m evaluation`` share).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medrag import __version__
from medrag.bundled import DEFAULT_SPEC
from medrag.command import new_parser, run_command
from medrag.embeddings import MatryoshkaEmbeddings, check_utf8
from medrag.errors import InvalidInputError
from medrag.models import check_device
from medrag.text_checks import is_blank
from medrag.vectors import truncate_embeddings

#: Modules that contribute subcommands, in the order of ``medrag --help``.
SUBCOMMAND_MODULES = ("medrag.demo", "medrag.cli", "medrag.indexing", "medrag.searching", "medrag.deleting",
                      "finetune.cli", "evaluation.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("medrag", "Retrieval for French medical RAG.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside the module is a real error
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():  # `medrag index ... -v` as well as `medrag -v index ...`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log at INFO level")
    return parser


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("compare", help="embed a query and passages, print cosine similarity at each size")
    p.add_argument("query", help="the question")
    p.add_argument("passages", nargs="+", help="one or more passages")
    p.add_argument("--model", default=None, help=f"model spec (default: medrag's default model, {DEFAULT_SPEC})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    p.set_defaults(func=_compare, writes=False)


def _compare(args: argparse.Namespace) -> int:
    # named as the command line shows them, and before the model loads ("text at index 0" said neither)
    for what, text in [("the query", args.query), *((f"passage {i}", p) for i, p in enumerate(args.passages, 1))]:
        if is_blank(text):
            raise InvalidInputError(f"{what} is empty; pass a text (an unset shell variable gives an empty argument)")
        check_utf8(text, what, "fix the text")
    check_device(args.device)
    emb = MatryoshkaEmbeddings(args.model, device=args.device)
    q = emb.encode_queries([args.query])
    docs = emb.encode_documents(args.passages)
    print(f"model: {emb.spec} (full size {emb.full_dim})")
    print("size  " + "  ".join(f"passage {i + 1}" for i in range(len(docs))))
    for dim in emb.dims:
        sims = truncate_embeddings(docs, dim) @ truncate_embeddings(q, dim)[0]
        print(f"{dim:>4}  " + "  ".join(f"{s:9.4f}" for s in sims))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medrag`` console script."""
    try:
        parser = build_parser()  # imports every command's module: about a second, where Ctrl-C printed a traceback
    except KeyboardInterrupt:
        print("medrag: interrupted", file=sys.stderr)
        return 130
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
