"""FinetuneConfig: defaults, YAML/TOML/JSON files, CLI-style overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import ConfigError, FinetuneConfig
from finetune.training import resolve_loss, resolve_precision

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_chosen_recipe():
    cfg = FinetuneConfig()
    assert (cfg.loss, cfg.batch_size, cfg.mini_batch_size, cfg.gradient_accumulation_steps) == ("auto", 64, 16, 1)
    assert (cfg.hard_negatives, cfg.batch_sampler) == (0, "no_duplicates")
    assert (cfg.learning_rate, cfg.epochs, cfg.warmup_ratio, cfg.max_seq_length) == (5e-5, 1.0, 0.1, 128)
    assert cfg.precision == "auto"


def test_default_config_file_spells_out_the_defaults():
    cfg = FinetuneConfig.from_file(CONFIGS / "frenchmedmcqa_default.yaml")
    differ = {k for k, v in cfg.to_dict().items() if v != getattr(FinetuneConfig(), k)}
    assert differ == {"data", "eval_split", "dims"}
    assert cfg.dims == [384, 256, 128, 64, 32]


def test_seed_configs_keep_the_seed_recipe():
    for name in ("seed.yaml", "frenchmedmcqa_seed.yaml"):
        cfg = FinetuneConfig.from_file(CONFIGS / name)
        assert (cfg.loss, cfg.batch_size, cfg.gradient_accumulation_steps) == ("mnrl", 4, 16)
        assert (cfg.learning_rate, cfg.epochs, cfg.hard_negatives, cfg.batch_sampler) == (2e-5, 1.0, 0, "batch_sampler")


def test_overrides_beat_the_file_and_strings_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rate: 3.0e-5\ndims: [128, 64]\n")
    cfg = FinetuneConfig.from_file(path, {"epochs": "1.5", "batch_size": "8", "dims": "64,32",
                                          "checkpoints": "false", "max_seq_length": "none", "loss": "mnrl"})
    assert (cfg.epochs, cfg.learning_rate, cfg.batch_size, cfg.dims) == (1.5, 3e-5, 8, [64, 32])
    assert cfg.checkpoints is False and cfg.max_seq_length is None and cfg.loss == "mnrl"


def test_toml_with_or_without_a_finetune_table_and_json(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('[finetune]\nepochs = 4\nloss = "cached_mnrl"\n')
    b = tmp_path / "b.toml"
    b.write_text("epochs = 5\n")
    c = tmp_path / "c.json"
    c.write_text('{"epochs": 6}')
    assert FinetuneConfig.from_file(a).epochs == 4 and FinetuneConfig.from_file(a).loss == "cached_mnrl"
    assert FinetuneConfig.from_file(b).epochs == 5
    assert FinetuneConfig.from_file(c).epochs == 6


@pytest.mark.parametrize("name, text", [("c.json", '{"epochs": 6}'), ("c.toml", "epochs = 6\n"), ("c.yaml", "epochs: 6\n")])
def test_a_config_saved_with_a_bom_is_read(tmp_path, name, text):
    """Notepad's UTF-8 starts with a BOM: JSON refused it ("Unexpected UTF-8 BOM"), TOML said "Invalid
    statement" (new-user tryout)."""
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + text.encode())
    assert FinetuneConfig.from_file(path).epochs == 6
    path.write_bytes("\ufeff".encode() + b"epochs\xff")  # a bad byte is named at its place in the file
    with pytest.raises(ConfigError, match="at byte 9"):
        FinetuneConfig.from_file(path)


def test_save_and_read_back(tmp_path):
    cfg = FinetuneConfig(epochs=3, dims=[64], run_name="x")
    for name in ("c.yaml", "c.yml", "c.json"):
        assert FinetuneConfig.from_file(cfg.save(tmp_path / name)) == cfg


@pytest.mark.parametrize("name", ["c.toml", "c.txt", "c"])
def test_save_refuses_a_format_it_would_not_read_back(tmp_path, name):
    """save("c.toml") wrote JSON under a .toml name, which from_file then could not parse."""
    with pytest.raises(ConfigError, match=r"use a \.yaml, \.yml or \.json file"):
        FinetuneConfig().save(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_a_key_written_twice_is_named_with_the_file(tmp_path):
    for name, text in (("c.yaml", "epochs: 1\nepochs: 2\n"), ("c.json", '{"epochs": 1, "epochs": 2}')):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError, match=rf"^config file {path}: the key 'epochs' is written twice"):
            FinetuneConfig.from_file(path)


@pytest.mark.parametrize("text, suffix, message", [
    ("epochs: 1\nlearnig_rate: 1\n", ".yaml", r"unknown config key\(s\) \['learnig_rate'\]"),
    ("epochs: [1\n", ".yaml", "cannot be parsed"),
    ("epochs = \n", ".toml", "cannot be parsed"),
    ("- 1\n- 2\n", ".yaml", "must hold a mapping"),
    ("epochs: 1\n", ".ini", "use .yaml, .yml, .toml or .json"),
    ("batch_size: 2.5\n", ".yaml", "batch_size must be int, got 2.5"),
    ("loss: triplet\n", ".yaml", "loss must be one of"),
    ("checkpoints: maybe\n", ".yaml", "checkpoints must be true or false"),
    ("learning_rate: -1\n", ".yaml", "learning_rate must be > 0"),
    ("warmup_ratio: 1.5\n", ".yaml", r"warmup_ratio must be in \[0, 1\)"),
    ("data: null\n", ".yaml", "data cannot be empty"),
    ("dims: 12\n", ".yaml", "dims must be a list"),
    # accepted, then ignored in silence without lora_rank (user tryout)
    ("engine: loop\nlora_layers: 3\nlora_alpha: 8\n", ".yaml",
     r"lora_alpha, lora_layers set\(s\) LoRA, which is off: set lora_rank > 0"),
    ("lora_dropout: 0.3\n", ".yaml", r"lora_dropout set\(s\) LoRA, which is off"),
])
def test_bad_config_files(tmp_path, text, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        FinetuneConfig.from_file(tmp_path / "nope.yaml")


def test_loss_auto_is_plain_mnrl_on_cpu_and_cached_on_gpu():
    assert resolve_loss("auto", cpu=True) == "mnrl"
    assert resolve_loss("auto", cpu=False) == "cached_mnrl"
    assert resolve_loss("cached_mnrl", cpu=True) == "cached_mnrl"
    assert resolve_loss("mnrl", cpu=False) == "mnrl"


def test_cpu_training_is_fp32_whatever_is_asked():
    for p in ("auto", "bf16", "fp16", "fp32"):
        assert resolve_precision(p, cpu=True) == "fp32"


@pytest.mark.parametrize("name", ["wandb", "tensorboard"])
def test_report_to_needs_its_package(name, monkeypatch):
    import importlib.util

    from finetune.preflight import check_report_to as _report_to

    assert _report_to("none") == ["none"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod in ("wandb", "tensorboard", "tensorboardX") else real(mod, *a))
    with pytest.raises(ConfigError, match=rf"report_to='{name}' needs the {name} package: pip install 'medrag\[{name}\]'"):
        _report_to(name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: object())
    assert _report_to(name) == [name]


def test_a_parse_error_is_one_line(tmp_path):
    """PyYAML's message spans several lines (the CLI promises one)."""
    path = tmp_path / "c.yaml"
    path.write_text("epochs: [1\nlr: 2\n")
    with pytest.raises(ConfigError) as err:
        FinetuneConfig.from_file(path)
    assert "\n" not in str(err.value) and "cannot be parsed" in str(err.value)


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": float("inf")}, "learning_rate must be finite"),
    ({"epochs": float("nan")}, "epochs must be finite"),
    ({"matryoshka_weights": [1.0, float("inf")], "dims": [64, 32], "engine": "loop"}, "finite"),
    ({"max_steps": 0}, "max_steps must be -1"),
    ({"max_steps": -5}, "max_steps must be -1"),
    ({"seed": -1}, "seed must be between"),
    ({"save_total_limit": 0}, "save_total_limit must be >= 1"),  # the engines read 0 differently (audit)
    ({"split_seed": -1}, "split_seed must be between"),
    ({"eval_batch_size": 0}, "eval_batch_size must be >= 1"),
    ({"logging_steps": 0}, "logging_steps must be >= 1"),
    ({"lr_scheduler": "bogus"}, "lr_scheduler must be one of"),
    ({"lr_scheduler": "cosine", "engine": "loop"}, "linear schedule"),
    ({"eval_fraction": None}, "eval_fraction cannot be empty"),
    ({"dims": ["abc"]}, "each item of dims must be int, got 'abc'"),
    ({"dims": [64.5]}, "each item of dims must be int, got 64.5"),
    ({"dims": "1.5"}, "each item of dims must be int"),
    ({"dims": [64, 64], "matryoshka_weights": [3.0, 5.0]}, "dims must not repeat a size"),  # the 3 was dropped
])
def test_values_the_run_would_fail_on_are_config_errors(changes, message):
    """Each passed `--check` and the constructor, then failed mid-run with a traceback (or, for a
    non-finite learning rate, saved a model of NaN weights with exit code 0)."""
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**changes)


def test_the_python_api_coerces_like_the_cli():
    """FinetuneConfig(dims="64") trained sizes [128, 6, 4]: the string was iterated."""
    assert FinetuneConfig(dims="64").dims == [64]
    assert FinetuneConfig(dims=["64,32"]).dims == [64, 32]
    assert FinetuneConfig(batch_size="8").batch_size == 8
    assert FinetuneConfig(train_splits="train").train_splits == ["train"]


def test_output_dir_that_is_a_file_or_the_models_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        FinetuneConfig(output_dir=str(tmp_path / "notes.txt"))
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="would overwrite it"):
        FinetuneConfig(model=str(tmp_path / "model"), output_dir=str(tmp_path / "model" / "."))


@pytest.mark.parametrize("change, message", [
    (dict(engine="loop", dims=[64, 32], matryoshka_weights=[1.0, -2.0]), "matryoshka_weights must be > 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(engine="loop", lora_rank=4, lora_alpha=0), "lora_alpha must be > 0"),
    (dict(suite_max_passages=0), "suite_max_passages must be >= 1"),
    (dict(batch_size=1), "batch_size must be >= 2: .*in-batch negatives"),
    (dict(engine="loop", batch_size=1), "batch_size must be >= 2"),
])
def test_out_of_range_values_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**change)


def test_batch_size_1_is_allowed_with_hard_negatives():
    assert FinetuneConfig(batch_size=1, hard_negatives=2).batch_size == 1


@pytest.mark.parametrize("option, value", [("report_to", "tensorboard"), ("gradient_accumulation_steps", 4),
                                           ("hard_negatives", 2), ("loss", "cached_mnrl"), ("mini_batch_size", 8),
                                           ("batch_sampler", "batch_sampler"), ("precision", "bf16"),
                                           ("max_seq_length", 64), ("run_name", "x")])
def test_the_loop_refuses_options_it_would_ignore(option, value):
    with pytest.raises(ConfigError, match=rf"{option} is/are used by engine: trainer only"):
        FinetuneConfig(engine="loop", **{option: value})
    FinetuneConfig(engine="trainer", **{option: value})  # the Trainer uses it


def test_the_loop_accepts_the_trainer_defaults_and_mnrl():
    assert FinetuneConfig(engine="loop", loss="mnrl", report_to="none").loss == "mnrl"


def test_dims_none_from_the_cli_is_no_value():
    from finetune.cli import add_arguments, config_from_args
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert config_from_args(p.parse_args(["--dims", "none"])).dims is None
    assert config_from_args(p.parse_args(["--dims", "64", "32"])).dims == [64, 32]


@pytest.mark.parametrize("name, text, expected", [
    ("c.yaml", "data: a.jsonl\nepochs: 2\ndata: b.jsonl\n", "the key 'data' is written twice (line 3)"),
    ("c.json", '{"data": "a.jsonl", "data": "b.jsonl"}', "the key 'data' is written twice"),
    ("c.toml", "epochs = 3\n[finetune]\nepochs = 2\n", "a [finetune] table and settings outside it (epochs)"),
    ("c.yaml", "data: [a.jsonl]\n", "data must be text, got a list: ['a.jsonl']"),
    ("c.json", '{"question_column": ["question"]}', "question_column must be text, got a list"),
])
def test_config_files_that_said_two_things_are_refused(tmp_path, name, text, expected):
    """A second ``data:`` line replaced the first in silence; a list for a text setting became the
    text "['a.jsonl']" (then "cannot load hub dataset"); a [finetune] table beside loose settings was
    read as two unknown keys (audit)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        FinetuneConfig.from_file(path)
    assert expected in str(info.value)


def test_a_finetune_table_beside_other_tools_tables_is_read(tmp_path):
    """``[finetune]`` was read only when it was the file's only table (``unknown config key(s)
    ['finetune', 'tool']`` beside a ``[tool.other]`` table) (audit)."""
    path = tmp_path / "c.toml"
    path.write_text("[finetune]\nepochs = 2\n[tool.other]\nx = 1\n", encoding="utf-8")
    assert FinetuneConfig.from_file(path).epochs == 2


def test_yaml_merge_keys_still_work_beside_the_repeated_key_check(tmp_path):
    """The repeated-key check refused YAML's merge key ``<<: *base`` (review)."""
    path = tmp_path / "c.yaml"
    path.write_text("base: &b\n  epochs: 2\nrun:\n  <<: *b\n  batch_size: 8\n", encoding="utf-8")
    from finetune.config import read_config_file

    assert read_config_file(path)["run"] == {"epochs": 2, "batch_size": 8}


def test_none_clears_a_config_files_list(tmp_path):
    """`--mixture none` was refused ("unknown training source 'none'") though --help shows the default as
    none; only the undocumented `--mixture ""` cleared the shipped config's list (user tryout)."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("engine: loop\nmixture: [sample, cases]\ndistill_corpus: [cases]\n")
    for word in ("none", "None", ""):
        cfg = FinetuneConfig.from_file(cfg_file, {"mixture": [word], "distill_corpus": [word]})
        assert cfg.mixture == [] and cfg.distill_corpus == []
    assert FinetuneConfig.from_file(cfg_file, {"dims": ["none"]}).dims is None  # an optional list: none
    cfg_file.write_text("engine: loop\nmixture:\ndistill_corpus: null\n")  # YAML's empty values alike (review)
    assert FinetuneConfig.from_file(cfg_file).mixture == [] == FinetuneConfig.from_file(cfg_file).distill_corpus


def test_few_training_pairs_are_warned_about(caplog):
    """Three pairs trained without a word, and the one held-out question scored 1.0 (user tryout)."""
    from finetune.training import FEW_PAIRS, check_learnable
    from medrag.qa.pairs import QAPair

    with caplog.at_level("WARNING"):
        check_learnable([QAPair(f"q{i}", f"a{i}") for i in range(3)])
    assert "only 3 training pairs" in caplog.text and "medrag evaluate --model BASE --model OUTPUT" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_learnable([QAPair(f"q{i}", f"a{i}") for i in range(FEW_PAIRS)])
    assert not caplog.text
