"""``medrag evaluate`` end to end on the tiny model."""

from __future__ import annotations

import json
import shutil

import pytest

from medrag.cli import main
from medrag.metadata import MatryoshkaMetadata

from .helpers import tiny_task


@pytest.fixture()
def pairs_file(tmp_path):
    task = tiny_task(6)
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps({"anchor": task.queries[q], "positive": task.corpus[d]}, ensure_ascii=False)
             for q, ds in task.qrels.items() for d in ds]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_evaluate_two_models_writes_report_and_metadata(tiny_model_dir, pairs_file, tmp_path, capsys):
    base, folder = tmp_path / "base", tmp_path / "ft"  # copies: --write-metadata writes into model folders
    shutil.copytree(tiny_model_dir, base)
    shutil.copytree(tiny_model_dir, folder)
    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(base), "--model", str(folder), "--label", "base", "--label", "ft",
            "--data", str(pairs_file), "--split", "all", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--bootstrap", "100", "--resamples", "200", "--device", "cpu", "--write-metadata"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| Dimension | Score Initial | Score Final | Gain | p-value |" in printed
    assert "| 64 |" in printed and "| ft |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["command"].startswith("medrag evaluate --model ")
    assert "--write-metadata" in data["command"] and "--bootstrap 100" in data["command"]
    assert [m["label"] for m in data["models"]] == ["base", "ft"]
    assert (out / "ndcg10_vs_size.png").stat().st_size > 5000
    # the same weights: identical scores, p = 1
    rows = data["comparisons"]["ft"]["sizes"]
    assert rows["128"]["ndcg@10"]["p_value"] == 1.0
    meta = MatryoshkaMetadata.load(folder)
    assert meta.scores[128]["ndcg@10"] == pytest.approx(data["models"][1]["sizes"]["128"]["ndcg@10"]["mean"])
    assert meta.scores_before[64] == meta.scores[64]
    assert set(meta.recommendations) == {"max", "balanced", "edge"}
    # the base model is a folder too: it gets its own scores, without scores_before
    base_meta = MatryoshkaMetadata.load(base)
    assert base_meta.scores == meta.scores and base_meta.scores_before == {}
    assert printed.count("wrote scores and recommendations") == 2


def test_evaluate_single_model_prints_metrics(tiny_model_dir, pairs_file, tmp_path, capsys):
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all", "--out", str(tmp_path / "r"),
            "--no-cache", "--sizes", "128", "32", "--metrics", "ndcg@10", "recall@1", "--bootstrap", "50",
            "--no-plot", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 32 |" in printed and "recall@1" in printed
    assert not (tmp_path / "r" / "ndcg10_vs_size.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--data", "/nonexistent/data.jsonl"], "does not exist"),
    (["--data", "PAIRS", "--metrics", "bleu@4"], "unknown metric"),
    (["--data", "PAIRS", "--sizes", "4096"], "outside"),
    (["--data", "PAIRS", "--edge-tolerance", "2"], "edge_tolerance"),
])
def test_errors_are_one_line_and_exit_1(tiny_model_dir, pairs_file, tmp_path, capsys, extra, message):
    extra = [str(pairs_file) if e == "PAIRS" else e for e in extra] + ["--split", "all"]
    argv = ["evaluate", "--model", str(tiny_model_dir), "--out", str(tmp_path / "r"), "--no-cache",
            "--device", "cpu", *extra]
    assert main(argv) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("medrag evaluate: error:") and message in errors[0]


def test_store_option_adds_the_store_table(tiny_model_dir, pairs_file, tmp_path, capsys, monkeypatch):
    import sys
    import types

    from .test_store_eval import ExactStore

    fake = types.ModuleType("medrag.store")
    fake.MatryoshkaChroma = ExactStore
    monkeypatch.setitem(sys.modules, "medrag.store", fake)
    out = tmp_path / "r"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "50", "--resamples", "50", "--no-plot",
            "--device", "cpu", "--store", "--candidates", "10", "--candidates-sweep", "10", "12"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "store-level retrieval" in printed and "| funnel_exact |" in printed
    data = json.loads((out / "report.json").read_text())
    store = data["store"][str(tiny_model_dir)]
    assert store["settings"]["candidates"] == 10
    assert [r["candidates"] for r in store["candidates_sweep"]] == [10, 12]
    assert store["methods"]["store"]["means"] == store["methods"]["funnel_exact"]["means"]
    assert "Store-level retrieval" in (out / "report.md").read_text()


def test_store_option_without_the_store_fails_before_encoding(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                             monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "medrag.store", None)  # import of medrag.store raises ImportError
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all", "--out", str(tmp_path / "r"),
            "--no-cache", "--device", "cpu", "--store"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--store needs medrag.store" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--suite", "--write-metadata"], "--write-metadata: not used with --suite"),
    (["--suite", "--confidence", "0.5", "--limit", "2"], "--limit, --confidence: not used with --suite"),
    (["--suite", "--test", "bootstrap"], "--test: not used with --suite"),
    (["--data", "PAIRS", "--pilot"], "--pilot: not used with --data"),
    (["--data", "PAIRS", "--domains", "leaflets"], "--domains: not used with --data"),
    (["--data", "PAIRS", "--candidates", "10"], "--candidates: only used with --store"),
    (["--data", "PAIRS", "--lexical-weight", "0.5"], "--lexical-weight: only used with --hybrid"),
    (["--data", "PAIRS", "--resamples", "0"], "--resamples must be >= 1"),
    (["--data", "PAIRS", "--out", "AFILE"], "is a file"),
])
def test_options_the_run_would_ignore_are_refused_before_the_model(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                                  monkeypatch, extra, expected):
    """They used to be accepted and ignored (--write-metadata with --suite wrote nothing), and an --out that
    is a file raised a traceback after all the encoding."""
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    (tmp_path / "afile").write_text("x")
    extra = [str(pairs_file) if a == "PAIRS" else str(tmp_path / "afile") if a == "AFILE" else a for a in extra]
    argv = ["evaluate", "--model", str(tiny_model_dir), *extra]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "r")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("terminal, flags, bars", [(False, [], False), (True, [], True), (True, ["--no-progress"], False)])
def test_progress_bars_only_on_a_terminal(tiny_model_dir, pairs_file, tmp_path, capsys, monkeypatch,
                                          terminal, flags, bars):
    """``medrag evaluate`` forced its bars, also into log files and CI output."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all",
            "--out", str(tmp_path / "report"), "--no-cache", "--bootstrap", "50", "--device", "cpu", "--no-plot",
            *flags]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("Batches" in err) == bars, err[-500:]  # the encoding bars
    assert ("Loading weights" in err) == bars, err[-500:]  # transformers' own bar followed --no-progress too
    assert "--no-progress" not in json.loads((tmp_path / "report" / "report.json").read_text())["command"]
