"""Checks before a run: the output and export folders are never wiped, --check refuses what a run would,
a Trainer --resume under other settings is refused, a run without scores says how to add them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from finetune.config import ConfigError
from finetune.preflight import check_export_folder, check_output_dir, check_run
from finetune.training import MatryoshkaFinetuner
from medrag.cli import main as medrag_main
from medrag.errors import InvalidInputError
from tests.finetune.conftest import quick_config


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def _previous_export(folder: Path) -> Path:
    from medrag.adapters import ADAPTER_CONFIG, ADAPTER_FILE

    folder.mkdir(parents=True)
    for name in (ADAPTER_FILE, ADAPTER_CONFIG, "matryoshka.json", "README.md"):
        (folder / name).write_text("{}")
    return folder


# ------------------------------------------------------------------ export_adapter (item 1)


def test_an_export_folder_with_user_files_is_refused_and_kept(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="other files in it"):
        check_export_folder(user, tmp_path / "out")
    monkeypatch.chdir(user)  # --export-adapter . emptied the current folder
    with pytest.raises(ConfigError, match="other files in it"):
        check_export_folder(".", tmp_path / "out")
    # the export itself refuses too, before touching anything (the model is never read)
    from finetune.export import export_adapter

    with pytest.raises(ConfigError, match="other files in it"):
        export_adapter(None, user, name="x", base_spec=None, base_fingerprint="", metadata=None, card="")
    assert (user / "notes.txt").read_text() == "keep me"


def test_a_previous_export_is_replaced_with_a_warning(tmp_path, caplog, tiny_model_dir, pairs_file):
    """It was replaced in silence, where a previous output_dir gets a warning (user tryout)."""
    from finetune.preflight import check_run

    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "out", engine="loop", freeze_encoder=True,
                       rotation="pca_centered", export_adapter=str(_previous_export(tmp_path / "old")))
    with caplog.at_level(logging.WARNING, logger="finetune.preflight"):
        check_run(cfg, create=False)
    assert "previous adapter export" not in caplog.text  # --check: said by the run
    with caplog.at_level(logging.WARNING, logger="finetune.preflight"):
        check_run(cfg)
    assert "holds a previous adapter export: it is replaced" in caplog.text


def test_an_export_folder_may_be_new_empty_or_a_previous_export(tmp_path):
    check_export_folder(tmp_path / "new", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    check_export_folder(tmp_path / "empty", tmp_path / "out")
    check_export_folder(_previous_export(tmp_path / "old"), tmp_path / "out")
    (tmp_path / "old" / "extra.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files in it"):
        check_export_folder(tmp_path / "old", tmp_path / "out")


@pytest.mark.parametrize("export, out, how", [("x", "x", "is"), ("x/adapter", "x", "is inside"),
                                              ("x", "x/model", "holds")])
def test_an_export_folder_overlapping_the_output_dir_is_refused(tmp_path, export, out, how):
    with pytest.raises(ConfigError, match=f"export_adapter .* {how} output_dir"):
        check_export_folder(tmp_path / export, tmp_path / out)


def test_cli_refuses_export_equal_to_output_before_training(tmp_path, capsys, tiny_model_dir, pairs_file):
    out = tmp_path / "x"
    argv = ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(tiny_model_dir), "--device", "cpu", "--engine", "loop", "--lora-rank", "2",
            "--export-adapter", str(out), "--output-dir", str(out)]
    assert medrag_main(argv) == 1
    assert "is output_dir" in _one_error_line(capsys)
    assert not out.exists()


# ------------------------------------------------------------------ output_dir (item 2)


def test_empty_output_dir_and_one_inside_the_base_model_are_refused(tmp_path, capsys, tiny_model_dir, pairs_file):
    base = ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(tiny_model_dir), "--device", "cpu"]
    with pytest.raises(SystemExit) as stop:  # a usage error, as every option given an empty value
        medrag_main(base + ["--output-dir", ""])
    assert stop.value.code == 2 and "--output-dir is empty" in _one_error_line(capsys)
    assert medrag_main(base + ["--output-dir", str(tiny_model_dir / "1_Pooling")]) == 1
    assert "inside the folder of the model being fine-tuned" in _one_error_line(capsys)


def test_a_user_folder_as_output_dir_is_refused_before_loading(tmp_path, tiny_model_dir, pairs_file):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my readme")
    cfg = quick_config(tiny_model_dir, pairs_file, out)
    runner = MatryoshkaFinetuner(cfg)
    with pytest.raises(ConfigError, match="not a previous medrag finetune output"):
        runner.run()
    assert runner.model is None  # refused before the model was loaded
    assert (out / "README.md").read_text() == "my readme"


def test_a_previous_output_is_overwritten_with_a_warning(tmp_path, caplog):
    from finetune.config import FinetuneConfig

    out = tmp_path / "old"
    out.mkdir()
    (out / "finetune_config.yaml").write_text("epochs: 1\n")
    (out / "modules.json").write_text("[]")
    with caplog.at_level(logging.WARNING, logger="finetune.preflight"):
        check_output_dir(FinetuneConfig(output_dir=str(out)))
    assert "previous fine-tuning output" in caplog.text
    # a run that failed before saving a model left its checkpoints folder: no model files to warn about (tryout)
    caplog.clear()
    (tmp_path / "failed" / "checkpoints").mkdir(parents=True)
    (tmp_path / "failed" / "checkpoints" / "scores_before.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="finetune.preflight"):
        check_output_dir(FinetuneConfig(output_dir=str(tmp_path / "failed")))
    assert "previous fine-tuning output" not in caplog.text
    # an interrupted run (checkpoints only) is one too: --resume needs it
    (tmp_path / "cut" / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    check_output_dir(FinetuneConfig(output_dir=str(tmp_path / "cut"), resume=True))


def test_an_output_dir_that_cannot_be_created_is_refused_first(tmp_path):
    from finetune.config import FinetuneConfig

    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidInputError, match="output_dir .*afile/sub: cannot create the folder"):
        check_run(FinetuneConfig(output_dir=str(tmp_path / "afile" / "sub")))


# ------------------------------------------------------------------ --check (item 5)


def test_check_refuses_what_a_run_would(tmp_path, capsys, tiny_model_dir, pairs_file, monkeypatch):
    base = ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"), "--check"]
    # the tiny model (128) trains sizes 128 and 64: three weights cannot apply
    assert medrag_main(base + ["--engine", "loop", "--matryoshka-weights", "1", "2", "3"]) == 1
    assert "matryoshka_weights has 3 weight(s) but the run trains 2 sizes [128, 64]" in _one_error_line(capsys)
    assert medrag_main(base + ["--engine", "loop", "--matryoshka-weights", "2", "1"]) == 0
    capsys.readouterr()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == "wandb" else real(mod, *a))
    assert medrag_main(base + ["--report-to", "wandb"]) == 1
    assert "needs the wandb package" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()  # --check creates nothing


@pytest.mark.parametrize("extra, expected", [
    (["--dims", "512", "64"], "dims [512] exceed the model's size 128"),
    (["--resume"], "nothing to resume: no checkpoint in"),
    (["--engine", "loop", "--mixture", "caess"], "unknown training source 'caess' in mixture"),
    (["--engine", "loop", "--distill-corpus", "medquad"], "unknown training source 'medquad' in distill_corpus"),
    (["--engine", "loop", "--mixture", "cases:10"], "mixture source 'cases' reads NOWHERE/french-medical-text, which "
                                                    "does not exist: pass the folder holding the shared data sets as "
                                                    "--shared-data"),
    # accepted and ignored (audit): an eval file holds nothing out; a pairs file's negatives need their column
    (["--eval-data", "other.jsonl", "--eval-fraction", "0.3", "--split-seed", "3"],
     "eval_fraction, split_seed: not used with eval_data other.jsonl"),
    (["--hard-negatives", "2"], "hard_negatives 2: a pairs file's negatives are read from negatives_column"),
    # the reverse: read and counted ("88 hard negatives"), never trained on (user tryout)
    (["--negatives-column", "neg"], "negatives_column 'neg': its negatives are trained on with hard_negatives >= 1"),
    (["--engine", "loop", "--negatives-column", "neg"], "with engine: trainer and hard_negatives >= 1 (engine: loop "
                                                        "trains in-batch negatives only)"),
    # a file as the teacher cache passed --check and failed once the data and the model had loaded
    (["--engine", "loop", "--distill-weight", "1", "--teacher-cache", "AFILE"],
     "teacher_cache AFILE is a file; pass a folder"),
    (["--engine", "loop", "--freeze-encoder", "--rotation", "pca", "--export-adapter", "EXPORT"],
     "export_adapter records the validation suite's scores (export_scores: suite_pilot), read from shared_data "
     "NOWHERE, which lacks frenchmedmcqa, french-medical-text: pass the shared data folder as --shared-data"),
])
def test_check_and_the_run_refuse_before_anything_loads(tmp_path, capsys, tiny_model_dir, pairs_file, monkeypatch,
                                                       extra, expected):
    """These passed --check and failed in the run after the data, the model or the whole training
    (the export read the suite from ../shared/data whatever --shared-data said) (audit)."""
    import medrag.models

    nowhere = str(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("x")
    extra = [e.replace("EXPORT", str(tmp_path / "export")).replace("AFILE", str(tmp_path / "afile")) for e in extra]
    expected = expected.replace("NOWHERE", nowhere).replace("AFILE", str(tmp_path / "afile"))
    base = ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"), "--shared-data", nowhere, *extra]
    assert medrag_main([*base, "--check"]) == 1
    assert expected in _one_error_line(capsys)
    monkeypatch.setattr(medrag.models, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    assert medrag_main(base) == 1
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "export").exists()


def test_a_folder_with_checkpoints_needs_resume_before_anything_loads(tmp_path, capsys, tiny_model_dir, pairs_file,
                                                                      monkeypatch):
    import medrag.models

    (tmp_path / "o" / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    monkeypatch.setattr(medrag.models, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    for check in (["--check"], []):
        assert medrag_main(["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column",
                            "answer", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"),
                            *check]) == 1
        assert "already holds checkpoints; pass --resume" in _one_error_line(capsys)


def _finetune_args(pairs_file, model, out) -> list[str]:
    return ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(model), "--output-dir", str(out)]


@pytest.mark.parametrize("model, extra, expected", [
    ("MISSING", [], "model folder 'MISSING' does not exist"),
    ("bundled:nope", [], "unknown embedded model 'bundled:nope'; available offline: ['bundled:multilingual-e5-small'"),
    ("bundled:multilingual-e5-small", ["--dims", "1024", "64"], "dims [1024] exceed the model's size 384"),
    ("bundled:medrag-e5-small-fr", ["--dims", "1024", "64"], "dims [1024] exceed the model's size 384"),
    ("TINY", ["--device", "banana"], "unknown device 'banana'"),
    ("TINY", ["--device", "cuda:7"], "device 'cuda:7'"),
])
def test_a_bad_model_or_device_is_refused_by_check_and_before_the_data_loads(tmp_path, capsys, tiny_model_dir,
                                                                            pairs_file, monkeypatch, model, extra,
                                                                            expected):
    """These passed --check; the run failed after reading the whole data set (a missing folder, an
    unknown bundled: name, sizes above a bundled model's), or trained on the CPU in silence for a
    device this machine lacks (audit)."""
    import finetune.training
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    missing = str(tmp_path / "missing")
    model = {"MISSING": missing, "TINY": str(tiny_model_dir)}.get(model, model)
    args = _finetune_args(pairs_file, model, tmp_path / "o") + extra
    monkeypatch.setattr(finetune.training, "load_dataset_from_config", lambda *a: pytest.fail("the data was read"))
    for check in (["--check"], []):
        assert medrag_main(args + check) == 1
        assert expected.replace("MISSING", missing) in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def _trainer_checkpoint(folder: Path, step: int, complete: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_a_checkpoint_killed_while_saving_is_skipped_by_resume(tmp_path, tiny_model_dir, pairs_file):
    """A kill while the Trainer saved left checkpoint-24 without its trainer_state.json: --resume
    failed on it ("No such file or directory"); a run with only that one had nothing to say (audit)."""
    from finetune.loop_checkpoints import latest_checkpoint

    ckpt = tmp_path / "o" / "checkpoints"
    _trainer_checkpoint(ckpt / "checkpoint-23", 23, complete=True)
    _trainer_checkpoint(ckpt / "checkpoint-24", 24, complete=False)
    (ckpt / "checkpoint-25").mkdir()  # the loop's are renamed into place when complete: an empty one is not
    assert latest_checkpoint(ckpt) == (ckpt / "checkpoint-23", [ckpt / "checkpoint-25", ckpt / "checkpoint-24"])
    finetuner = MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, tmp_path / "o", resume=True))
    assert finetuner._resume_checkpoint_or_none() == ckpt / "checkpoint-23"
    check_run(quick_config(tiny_model_dir, pairs_file, tmp_path / "o", resume=True), create=False)  # something to resume

    import shutil

    shutil.rmtree(ckpt / "checkpoint-23")
    with pytest.raises(ConfigError, match=r"the checkpoints in .* are incomplete \(checkpoint-25, checkpoint-24: .* "
                                          r"delete .* without --resume"):
        check_run(quick_config(tiny_model_dir, pairs_file, tmp_path / "o", resume=True), create=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        check_run(quick_config(tiny_model_dir, pairs_file, tmp_path / "o"), create=False)


def test_resuming_a_finished_run_is_refused_and_keeps_its_checkpoints(tmp_path, capsys, tiny_model_dir, pairs_file):
    """--resume on a run finished with --keep-checkpoints trained 0 steps, rewrote its timings as
    0 samples/s and deleted the checkpoints it had been asked to keep (audit)."""
    out = tmp_path / "m"
    args = _finetune_args(pairs_file, tiny_model_dir, out) + ["--epochs", "1", "--keep-checkpoints",
                                                             "--evaluate-before", "false"]
    assert medrag_main(args) == 0
    info = (out / "training_info.json").read_text()
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    capsys.readouterr()
    assert medrag_main(args + ["--resume"]) == 1
    assert "holds the checkpoints of a finished run (kept by keep_checkpoints): there is nothing to resume" \
        in _one_error_line(capsys)
    assert (out / "training_info.json").read_text() == info
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == kept
    # decided by the run's own record, not by file times: a copy that rewrote them changes nothing
    import os
    import time

    later = time.time() + 60
    for path in (out / "checkpoints").rglob("*"):
        os.utime(path, (later, later))
    assert medrag_main(args + ["--resume"]) == 1
    assert "finished run" in _one_error_line(capsys)
    assert medrag_main(args) == 1  # without --resume: no "nothing to resume", the same advice
    line = _one_error_line(capsys)
    assert "finished run" in line and "nothing to resume" not in line


# ------------------------------------------------------------------ Trainer --resume (item 6)


def test_a_trainer_resume_under_other_settings_is_refused(tmp_path, tiny_model_dir, pairs_file):
    out = tmp_path / "m"
    MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out, epochs=1, keep_checkpoints=True,
                                     evaluate_before=False, evaluate_after=False)).run()
    assert json.loads((out / "checkpoints" / "run_key.json").read_text())["run_key"]
    (out / "checkpoints" / "finished.json").unlink()  # as a run interrupted after its last checkpoint (a finished one is refused)
    changed = quick_config(tiny_model_dir, pairs_file, out, epochs=1, learning_rate=1e-3, resume=True,
                           evaluate_before=False, evaluate_after=False)
    with pytest.raises(ConfigError, match=r"other training settings \(learning_rate: .* -> 0.001\)"):
        MatryoshkaFinetuner(changed).run()  # run_key.json records the settings: the refusal names the one changed
    key_file = out / "checkpoints" / "run_key.json"
    key_file.write_text(json.dumps({"run_key": json.loads(key_file.read_text())["run_key"]}))  # as before December 7
    with pytest.raises(ConfigError, match="other training settings or data, or by an earlier medrag"):
        MatryoshkaFinetuner(changed).run()


# ------------------------------------------------------------------ no scores (item 9)


def test_a_run_without_eval_set_says_how_to_add_scores(tmp_path, tiny_model_dir, pairs_file, caplog):
    out = tmp_path / "m"
    cfg = quick_config(tiny_model_dir, pairs_file, out, epochs=1, eval_fraction=0.0, checkpoints=False)
    with caplog.at_level(logging.WARNING, logger="finetune.training"):
        MatryoshkaFinetuner(cfg).run()
    assert "dimension='auto') cannot choose a size" in caplog.text
    assert f"medrag evaluate --model {out}" in caplog.text and "--write-metadata" in caplog.text


def test_a_probe_folder_of_another_rank_is_not_a_user_file(tmp_path, tiny_model_dir, pairs_file):
    """Under torchrun every rank checks the folders; one rank's probe (check_writable_dir) must not look
    like a user's file to another."""
    from medrag.command import PROBE_PREFIX

    out, export = tmp_path / "out", tmp_path / "adapter"
    (out / f"{PROBE_PREFIX}abc").mkdir(parents=True)
    (export / f"{PROBE_PREFIX}def").mkdir(parents=True)
    check_output_dir(quick_config(tiny_model_dir, pairs_file, out), create=False)
    check_export_folder(export, out)


def test_the_weights_count_is_checked_against_a_model_passed_in(tmp_path, tiny_model_dir, pairs_file):
    """A loaded model passed to MatryoshkaFinetuner: cfg.model (None) does not tell its sizes, so the
    early check (which assumed e5-small's 4 sizes) is left to the one after loading."""
    from medrag.metadata import default_dims

    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "o", model=None, engine="loop",
                       matryoshka_weights=[1.0] * (len(default_dims(384)) + 1))
    with pytest.raises(ConfigError, match="weight"):
        check_run(cfg, create=False)
    check_run(cfg, create=False, model_given=True)


def test_pairs_options_with_a_frenchmedmcqa_folder_are_refused(tmp_path, capsys):
    """--eval-fraction and --question-column were ignored in silence with a FrenchMedMCQA folder (audit)."""
    folder = tmp_path / "mcqa"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.json").write_text("[]")
    for extra, name in ((["--eval-fraction", "0.3"], "eval_fraction"), (["--question-column", "q"], "question_column")):
        assert medrag_main(["finetune", "--check", "--data", str(folder), "--output-dir", str(tmp_path / "o"),
                            *extra]) == 1
        assert f"{name}: not used with the FrenchMedMCQA folder" in _one_error_line(capsys)


def test_the_last_block_check_leaves_an_odd_modules_json_to_the_load(tmp_path):
    """A modules.json of valid JSON that is no list raised a TypeError traceback from --check (review)."""
    from finetune.preflight import check_top_block_base

    for content in ("5", "null", "{}"):
        (tmp_path / "modules.json").write_text(content)
        check_top_block_base(str(tmp_path))  # the run's own load names what is wrong


def test_a_second_run_into_an_output_dir_being_written_is_refused(tmp_path, tiny_model_dir, pairs_file):
    """Two runs into one --output-dir both exited 0 and left one run's weights beside the other's scores
    and model card (user tryout). A run holds a lock on the folder; another process's run is refused
    before it loads anything, and the lock goes with the run (the same folder runs again after it)."""
    import subprocess
    import sys
    import textwrap

    from finetune.output_lock import OutputLock

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from finetune.output_lock import OutputLock
        with OutputLock({str(out)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        runner = MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out))
        with pytest.raises(ConfigError, match="is being written by another fine-tuning run"):
            runner.run()
        assert runner.model is None and list(out.iterdir()) == []  # nothing loaded, nothing written
    finally:
        holder.communicate("\n", timeout=30)
    with OutputLock(out), pytest.raises(ConfigError, match="output_dir"):  # another open in this process: refused too
        with OutputLock(out):
            pass
    with OutputLock(out):  # released: taken again
        pass


def test_a_file_system_without_flock_warns_instead_of_refusing(tmp_path, monkeypatch, caplog):
    """On NFS a directory opened read-only cannot be flocked (EBADF): every run was refused as if another
    run held the folder (review). Only a held lock refuses; another failure is said and the run goes on."""
    import errno
    import fcntl

    from finetune.output_lock import OutputLock

    def fails(fd, op):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", fails)
    with caplog.at_level(logging.WARNING, logger="finetune.output_lock"), OutputLock(tmp_path):
        pass
    assert "cannot be locked on this file system (Bad file descriptor)" in caplog.text
