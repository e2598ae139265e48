"""``medrag finetune --config FILE [--field value ...]``: a thin layer over :class:`MatryoshkaFinetuner`.

Every :class:`~finetune.config.FinetuneConfig` field is a flag (``learning_rate`` -> ``--learning-rate``);
flags override the config file, which overrides the defaults. Examples::

    medrag finetune --config configs/frenchmedmcqa_default.yaml --epochs 3 --output-dir runs/mcqa
    medrag finetune --data pairs.jsonl --question-column question --answer-column answer
    medrag finetune --config configs/frenchmedmcqa_default.yaml --check      # data, plan and config, no training
    torchrun --nproc_per_node 2 -m finetune --config configs/frenchmedmcqa_default.yaml   # data parallel

Errors in the data or the config end with one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import MISSING, Field, fields
from typing import Literal, get_args, get_origin, get_type_hints

import yaml

from finetune.config import FinetuneConfig, unwrap_optional
from finetune.data import load_dataset_from_config
from finetune.model_card import score_table
from finetune.preflight import check_run, model_trained_dims
from finetune.training import MatryoshkaFinetuner, check_learnable
from medrag.command import new_parser, run_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML, TOML or JSON config file (flags override it)")
    p.add_argument("--check", action="store_true",
                   help="load and validate the data, print its summary (with the mixture's pairs), what the run trains "
                        "(phases, losses) and the config (file and flags, as given: the "
                        "run sorts dims and fills them from the model), do not train")
    hints = get_type_hints(FinetuneConfig)
    for f in fields(FinetuneConfig):
        if f.name == "resume":
            continue
        target, _ = unwrap_optional(hints[f.name])
        kw: dict = {"dest": f.name, "default": None}
        if get_origin(target) is Literal:  # checked with the config file's values (exit code 1, one line),
            # not by argparse's choices (exit code 2), as the README says of every finetune flag
            kw["metavar"] = "{" + ",".join(map(str, get_args(target))) + "}"
        elif get_origin(target) is list:
            kw["nargs"] = "+"
        elif target is bool:
            kw.update(nargs="?", const="true", metavar="BOOL")
        p.add_argument("--" + f.name.replace("_", "-"), **kw, help=field_help(f))
    p.add_argument("--resume", dest="resume", action="store_const", const=True, default=None,
                   help=field_help(next(f for f in fields(FinetuneConfig) if f.name == "resume")))


def field_help(f: Field) -> str:
    """A config field's help (its ``metadata["help"]``) with its default, escaped for argparse."""
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    shown = ("none" if default is None or default == [] else " ".join(map(str, default)) if isinstance(default, list)
             else default)
    return f"{f.metadata['help']} (default: {shown})".replace("%", "%%")


def _plain(doc: str) -> str:
    """A module docstring as ``--help`` text: without the Sphinx roles and double backticks."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "").replace("::\n", ":\n")


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("finetune", help="Matryoshka fine-tuning on question -> answer pairs, scored per size",
                       description=_plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if getattr(args, f.name, None) is not None}
    return FinetuneConfig.from_file(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_run(cfg, create=False)  # folders and tracker before reading the data (the run checks again, creating)
    dataset = load_dataset_from_config(cfg)
    if args.check:
        print(dataset.summary())
        if cfg.mixture or cfg.max_train_pairs:  # what the run trains on, not only data's pairs
            pairs, counts = MatryoshkaFinetuner(cfg, dataset=dataset).training_pairs()
            print(f"  trained on: {len(pairs)} pairs ({', '.join(f'{name} {n}' for name, n in counts.items())}; "
                  "duplicates and eval questions dropped" + (f", capped at {cfg.max_train_pairs}"
                                                             if cfg.max_train_pairs else "") + ")")
        else:  # pairs the run refuses (one distinct answer) passed --check (user tryout)
            check_learnable(dataset.train)
        print(_truncation_lines(cfg, dataset.train))
        print("\n".join(cfg.plan(model_dims=model_trained_dims(cfg.model))))
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), end="")
        return 0
    if not logging.getLogger("medrag.qa.pairs").isEnabledFor(logging.INFO):  # with -v the loader logged it
        print(dataset.summary(), file=sys.stderr)
    result = MatryoshkaFinetuner(cfg, dataset=dataset).run()
    if result.scores_after:
        print(score_table(result.scores_before, result.scores_after))
    session = (f" (resumed from step {result.resumed_from_step}: {result.global_step - result.resumed_from_step} steps "
               "this session)" if result.resumed_from_step else "")
    print(f"trained {result.global_step} steps{session} in {result.train_seconds:.0f} s "
          f"({result.samples_per_second:.2f} samples/s); model saved to {result.output_dir}")
    return 0


def _truncation_lines(cfg: FinetuneConfig, pairs) -> str:
    """``--check``'s count of the training texts longer than the token caps (the run logs it too); a
    local model is loaded for its tokenizer (seconds), a hub model is left to the run (no download)."""
    from finetune.truncation import count_truncated, describe, training_caps
    from medrag.bundled import BUNDLED_SPEC
    from medrag.models import load_model

    spec = cfg.model or BUNDLED_SPEC
    if _needs_download(spec):
        return "  token lengths: counted when the run loads the model (--check downloads nothing)"
    model = load_model(spec, device="cpu")
    count = count_truncated(model, pairs, *training_caps(cfg, model.max_seq_length))
    lines = describe(count, cfg)
    if not lines:
        return (f"  token lengths: every question and passage of {count.pairs} pairs fits the caps "
                f"({count.query_cap} / {count.passage_cap} tokens)")
    return "\n".join(f"  token lengths: {line}" for line in lines)


def _needs_download(spec: str) -> bool:
    """Whether loading ``spec`` may download: a hub id, or an adapter folder over a hub model (review)."""
    from pathlib import Path

    from medrag.adapters import read_adapter_config
    from medrag.errors import ModelLoadError
    from medrag.models import check_model_spec

    kind = check_model_spec(spec)
    if kind == "adapter":
        try:
            base = read_adapter_config(Path(spec).expanduser())["base_model"]
        except ModelLoadError:
            return True  # the run says what is wrong with it
        return not isinstance(base, str) or _needs_download(base)
    return kind == "hub"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m finetune``: same flags and exit codes as ``medrag finetune``."""
    parser = new_parser("python -m finetune", _plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return run_command(parser, argv, name="finetune")
