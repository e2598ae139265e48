"""Every ``medrag finetune`` flag says what it does, from the one place each setting is written."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Literal, get_args, get_origin, get_type_hints

from finetune import config as config_module
from finetune.cli import add_arguments
from finetune.config import FinetuneConfig, unwrap_optional
from medrag.cli import build_parser


def _finetune_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["finetune"]


def test_every_config_field_has_help():
    missing = [f.name for f in fields(FinetuneConfig) if not str(f.metadata.get("help", "")).strip()]
    assert missing == []


def test_every_finetune_flag_has_help_naming_its_default():
    parser = _finetune_parser()
    flags = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(flags) >= {f.name for f in fields(FinetuneConfig)}
    for dest, action in flags.items():  # --device too: the docs' commands use it (it was hidden: audit)
        assert action.help and action.help is not argparse.SUPPRESS, dest
    for f in fields(FinetuneConfig):
        assert flags[f.name].help.startswith(f.metadata["help"]) and "(default: " in flags[f.name].help
    text = parser.format_help()  # renders: no stray '%' in any help
    assert "--learning-rate" in text and "peak learning rate (default: 5e-05)" in " ".join(text.split())


def test_python_m_finetune_has_the_same_flags():
    from medrag.command import new_parser

    standalone = new_parser("python -m finetune", None)  # -v/--verbose, as `medrag finetune ... -v` takes it too
    add_arguments(standalone)
    ours = {a.dest: a.help for a in standalone._actions if a.option_strings}
    theirs = {a.dest: a.help for a in _finetune_parser()._actions if a.option_strings}
    assert ours == theirs


def test_choice_lists_are_the_literals():
    hints = get_type_hints(FinetuneConfig)
    literal_args = {}
    for f in fields(FinetuneConfig):
        target, _ = unwrap_optional(hints[f.name])
        if get_origin(target) is Literal:
            literal_args[f.name] = get_args(target)
    assert literal_args["loss"] == config_module.LOSSES
    assert literal_args["batch_sampler"] == config_module.SAMPLERS
    assert literal_args["precision"] == config_module.PRECISIONS
    assert literal_args["report_to"] == config_module.REPORT_TO
    assert literal_args["data_format"] == config_module.DATA_FORMATS
    # shown in --help as {a,b}; checked with the config's values (exit code 1), not by argparse's choices
    shown = {a.dest: a.metavar for a in _finetune_parser()._actions if a.option_strings}
    assert {k: shown[k] for k in literal_args} == {k: "{" + ",".join(map(str, v)) + "}" for k, v in literal_args.items()}


def test_the_help_text_reads_as_plain_text():
    """No Sphinx markup (``:class:``, double backticks) nor an empty '(default: )' in ``--help``."""
    text = _finetune_parser().format_help()
    assert ":class:" not in text and "``" not in text and "(default: )" not in text
    assert "a thin layer over MatryoshkaFinetuner" in text and "--mixture" in text
