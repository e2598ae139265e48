"""``medrag finetune`` / ``python -m finetune``: one-line errors with exit code 1, --check, a tiny run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.cli import main as finetune_main
from medrag.cli import main as medrag_main
from tests.finetune.helpers import write_jsonl

REPO = Path(__file__).resolve().parents[2]


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("main, prefix", [(medrag_main, "medrag finetune: error: "),
                                          (lambda argv: finetune_main(argv[1:]), "finetune: error: ")])
def test_missing_columns_exit_1_with_one_line(tmp_path, capsys, main, prefix):
    data = write_jsonl(tmp_path / "p.jsonl", [{"q": "x", "a": "y"}])
    assert main(["finetune", "--data", str(data), "--output-dir", str(tmp_path / "o")]) == 1
    line = _one_error_line(capsys)
    assert line.startswith(prefix) and "missing column(s) ['anchor', 'positive']" in line
    assert "columns found: ['q', 'a']" in line


def test_bad_line_bad_config_and_missing_file_exit_1(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"anchor": "q", "positive": "a"}\n{oops}\n')
    assert medrag_main(["finetune", "--data", str(bad)]) == 1
    assert f"{bad}:2: not valid JSON" in _one_error_line(capsys)

    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nbatch_sise: 4\n")
    assert medrag_main(["finetune", "--config", str(cfg)]) == 1
    line = _one_error_line(capsys)
    assert "unknown config key(s) ['batch_sise']; did you mean 'batch_size' for 'batch_sise'?" in line
    assert "learning_rate" not in line  # the ~70 known keys are not listed

    assert medrag_main(["finetune", "--config", str(tmp_path / "none.yaml")]) == 1
    assert "does not exist" in _one_error_line(capsys)

    assert medrag_main(["finetune", "--data", str(tmp_path / "none.jsonl")]) == 1
    assert "does not exist" in _one_error_line(capsys)

    assert medrag_main(["finetune", "--data", str(bad), "--learning-rate", "0"]) == 1
    assert "learning_rate must be > 0" in _one_error_line(capsys)
    # scientific notation, as the configs write learning rates: argparse took -1e-4 for a flag (exit 2,
    # "expected one argument"; tryout)
    assert medrag_main(["finetune", "--data", str(bad), "--learning-rate", "-1e-4"]) == 1
    assert "learning_rate must be > 0" in _one_error_line(capsys)

    # a choice flag: argparse's exit code 2, where `engine: foo` in a config file gave 1 (user tryout)
    assert medrag_main(["finetune", "--data", str(bad), "--engine", "foo"]) == 1
    assert "engine must be one of ['trainer', 'loop'], got 'foo'" in _one_error_line(capsys)


def test_check_prints_the_summary_and_the_resolved_config(tmp_path, capsys, pairs_file, tiny_model_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("question_column: question\nanswer_column: answer\nepochs: 3\n")
    assert medrag_main(["finetune", "--config", str(cfg), "--data", str(pairs_file), "--epochs", "5", "--check",
                        "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "rows read: 32; empty dropped: 0; duplicate pairs dropped: 0" in out
    assert re.search(r"token lengths: every question and passage of \d+ pairs fits the caps \(64 / 64 tokens\)", out)
    assert "epochs: 5.0" in out and "loss: auto" in out
    assert "plan: the sentence-transformers Trainer" in out and "trains: the whole encoder, 5 epochs" in out
    assert "phase 2" not in out
    assert medrag_main(["finetune", "--config", str(cfg), "--data", str(pairs_file), "--check", "--model",
                        "intfloat/multilingual-e5-small"]) == 0  # a hub model: nothing downloaded to count
    assert "token lengths: counted when the run loads the model" in capsys.readouterr().out
    adapter = tmp_path / "adapter"  # an adapter over a hub model would download its base too (review)
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model": "intfloat/multilingual-e5-small"}))
    assert medrag_main(["finetune", "--config", str(cfg), "--data", str(pairs_file), "--check", "--model",
                        str(adapter)]) == 0
    assert "token lengths: counted when the run loads the model" in capsys.readouterr().out
    # passages of whole sections were trained on their first tokens, and nothing said so (user tryout)
    long = write_jsonl(tmp_path / "long.jsonl", [{"anchor": f"question {i} ?", "positive": f"Réponse {i}. "
                                                  + ("La ferritine basse traduit une carence. " * 30 if i % 2 else "")}
                                                 for i in range(20)])
    assert medrag_main(["finetune", "--data", str(long), "--check", "--model", str(tiny_model_dir), "--engine",
                        "loop", "--eval-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert ("token lengths: 10 of 20 training passages (answers) (50.0%) are longer than the 64 tokens trained on "
            "(prompt included): the model learns from their first 64 tokens only; raise passage_max_length") in out


def test_check_refuses_pairs_the_run_refuses(tmp_path, capsys):
    """Pairs sharing one answer passed --check; the run refused them after the model had loaded and left
    an empty output folder (user tryout)."""
    data = tmp_path / "dups.jsonl"
    data.write_text("\n".join(json.dumps({"anchor": f"question {i} ?", "positive": "La même réponse."})
                              for i in range(20)), encoding="utf-8")
    assert medrag_main(["finetune", "--data", str(data), "--output-dir", str(tmp_path / "o"), "--check"]) == 1
    assert "the training pairs hold 1 distinct answer(s)" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_check_describes_the_mixture_and_both_phases(tmp_path, capsys, tiny_model_dir, pairs_file):
    """--check printed data's 32 pairs and the config only: not the pairs the mixture adds, nor that
    the run trains the final layer, then the encoder's last block (user tryout)."""
    assert medrag_main(["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column",
                        "answer", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"), "--engine",
                        "loop", "--freeze-encoder", "--rotation", "pca_centered", "--distill-weight", "3",
                        "--mixture", "sample:10", "--top-block-epochs", "2", "--check"]) == 0
    out = capsys.readouterr().out
    trained = next(line for line in out.splitlines() if "trained on:" in line)
    own = int(re.search(r"train: (\d+) pairs", out).group(1))  # data's train split
    assert "sample 10;" in trained and f"trained on: {own + 10} pairs" in trained and f"pairs.jsonl {own}," in trained
    assert "phase 1: the final linear layer (pca_centered initialisation) over the frozen encoder" in out
    assert "MatryoshkaLoss(MNRL) x1 + self-distillation of the frozen base x3" in out
    assert "phase 2: the encoder's last block (LoRA rank 16, alpha 32, lr 0.002)" in out and "2 epochs" in out
    assert not (tmp_path / "o").exists()


def test_cli_trains_the_tiny_model(tmp_path, capsys, tiny_model_dir, pairs_file):
    out = tmp_path / "model"
    argv = ["finetune", "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
            "--model", str(tiny_model_dir), "--device", "cpu", "--output-dir", str(out), "--batch-size", "8",
            "--epochs", "1", "--max-seq-length", "32", "--eval-fraction", "0.25", "--checkpoints", "false"]
    assert medrag_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| Dimension | Initial ndcg@10 | Final ndcg@10 | Gain |" in printed and "| 64 |" in printed
    assert f"model saved to {out}" in printed
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 3


def test_evaluate_from_another_folder_follows_the_split_of_a_run_given_a_relative_data_path(
        tmp_path, monkeypatch, caplog, capsys, tiny_model_dir, pairs_file):
    """``medrag finetune --data pairs.jsonl --split-seed 7`` run in one folder recorded ``data`` as
    typed: ``medrag evaluate --data /abs/pairs.jsonl`` from another folder (or a copy of the file)
    did not know the file and scored the model on split seed 42, its training questions among them."""
    import shutil

    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(pairs_file, tmp_path / "work" / "pairs.jsonl")
    out = tmp_path / "model"
    monkeypatch.chdir(tmp_path / "work")
    assert medrag_main(["finetune", "--data", "pairs.jsonl", "--question-column", "question", "--answer-column",
                        "answer", "--model", str(tiny_model_dir), "--device", "cpu", "--output-dir", str(out),
                        "--batch-size", "8", "--epochs", "1", "--max-seq-length", "32", "--eval-fraction", "0.25",
                        "--split-seed", "7", "--checkpoints", "false"]) == 0
    record = json.loads((out / "training_info.json").read_text())["data_file"]
    assert record["path"] == str((tmp_path / "work" / "pairs.jsonl").resolve()) and len(record["sha256"]) == 64
    monkeypatch.chdir(tmp_path / "elsewhere")
    shutil.copy(pairs_file, tmp_path / "elsewhere" / "copy.jsonl")
    for data in (str(tmp_path / "work" / "pairs.jsonl"), "copy.jsonl"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="evaluation.cli"):
            assert medrag_main(["evaluate", "--model", str(out), "--data", data, "--question-column", "question",
                                "--answer-column", "answer", "--out", f"r-{Path(data).stem}",
                                "--no-cache", "--sizes", "64", "--metrics", "ndcg@10", "--bootstrap", "20",
                                "--no-plot", "--device", "cpu"]) == 0
        assert "25% held out (seed 7)" in capsys.readouterr().out
        assert "held out (split seed 7, eval fraction 0.25), as its finetune_config.yaml records" in caplog.text
    # another file under the name the config records, in this folder: not the run's data
    write_jsonl(tmp_path / "elsewhere" / "pairs.jsonl",
                [{"question": f"question {i} ?", "answer": f"réponse {i % 5}"} for i in range(20)])
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert medrag_main(["evaluate", "--model", str(out), "--data", "pairs.jsonl", "--question-column", "question",
                            "--answer-column", "answer", "--out", "r-other", "--no-cache", "--sizes", "64", "--metrics",
                            "ndcg@10", "--bootstrap", "20", "--no-plot", "--device", "cpu"]) == 0
    assert "10% held out (seed 42)" in capsys.readouterr().out and "finetune_config.yaml records" not in caplog.text


def test_python_dash_m_finetune_exit_code(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"q": "x"}])
    proc = subprocess.run([sys.executable, "-m", "finetune", "--data", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("finetune: error: ") and "columns found: ['q']" in lines[0]


@pytest.mark.parametrize("verbose", [False, True])
def test_the_data_summary_is_shown_once(tmp_path, capsys, caplog, tiny_model_dir, pairs_file, verbose):
    """With -v the loader logged it and the command printed it again."""
    argv = ["finetune", *(["-v"] if verbose else []), "--data", str(pairs_file), "--question-column", "question",
            "--answer-column", "answer", "--model", str(tiny_model_dir), "--device", "cpu",
            "--output-dir", str(tmp_path / "m"), "--batch-size", "8", "--max-steps", "1", "--eval-fraction", "0.25",
            "--checkpoints", "false", "--evaluate-before", "false", "--evaluate-after", "false"]
    with caplog.at_level("INFO" if verbose else "WARNING"):
        assert medrag_main(argv) == 0
    shown = capsys.readouterr().err + caplog.text
    assert shown.count("dataset: ") == 1, shown
