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
    assert "| Dimension | Score Initial | Score Final | Gain | p-value | p (Holm) |" in printed
    assert "| 64 |" in printed and "| ft |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["command"].startswith("medrag evaluate --model ")
    assert "--write-metadata" in data["command"] and "--bootstrap 100" in data["command"]
    assert "--cache-dir" not in data["command"]  # changes no number (user tryout)
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
    (["--data", "PAIRS", "--sizes", "4096"], "above the full size 128"),
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
    # accepted and ignored: the suite's tables have no intervals (audit)
    (["--suite", "--bootstrap", "10"], "--bootstrap: the suite's tables report means"),
    # a "95% CI" [0.910, 0.910] around a mean of 0.850 (audit)
    (["--data", "PAIRS", "--bootstrap", "1"], "--bootstrap 1: a confidence interval needs at least 10 resamples"),
    # 3 queries against 1 passage wrote perfect scores that dimension="auto" then chose from (audit)
    (["--data", "PAIRS", "--limit", "3", "--write-metadata"], "score the whole eval split"),
    (["--data", "PAIRS", "--pilot"], "--pilot needs --suite"),
    (["--data", "PAIRS", "--domains", "leaflets"], "--domains needs --suite"),
    (["--data", "PAIRS", "--candidates", "10"], "--candidates: only used with --store"),
    (["--data", "PAIRS", "--lexical-weight", "0.5"], "--lexical-weight: only used with --hybrid"),
    (["--data", "PAIRS", "--resamples", "0"], "--resamples must be >= 1"),
    (["--data", "PAIRS", "--limit", "0"], "--limit must be >= 1"),  # "limit must be", after the model (tryout)
    # numpy's traceback after all the encoding (user tryout)
    (["--data", "PAIRS", "--seed", "-1"], "--seed must be >= 0"),
    (["--suite", "--seed", "-1"], "--seed must be >= 0"),
    (["--data", "PAIRS", "--split-seed", "-1"], "--split-seed must be >= 0"),
    (["--data", "PAIRS", "--out", "AFILE"], "is a file"),
    (["--data", "PAIRS", "--cache-dir", "AFILE"], "afile is a file; pass a folder"),  # a warning per text set (tryout)
    # values the library refused only after all the dense scoring, with its parameter's name
    (["--data", "PAIRS", "--hybrid", "--lexical-weight", "2"], "--lexical-weight 2: pass weights in [0, 1]"),
    (["--data", "PAIRS", "--hybrid", "--lexical-weight", "-0.5"], "--lexical-weight -0.5: pass weights in [0, 1]"),
    (["--data", "PAIRS", "--hybrid", "--analyzer", "stemm=false"], "--analyzer 'stemm=false'"),
    (["--data", "PAIRS", "--hybrid", "--analyzer", "stem=maybe"], "stem takes true or false"),
    (["--data", "PAIRS", "--store", "--coarse-dim", "0"], "--coarse-dim 0"),
    (["--data", "PAIRS", "--store", "--candidates", "5"], "--candidates 5 is below 10"),
    (["--data", "PAIRS", "--store", "--candidates-sweep", "5", "50"], "--candidates-sweep 5: below 10"),
    (["--suite", "--hybrid", "--lexical-weight", "2"], "--lexical-weight 2: pass weights in [0, 1]"),
    # options the data source does not read, given even with their default value
    (["--data", "FOLDER", "--eval-fraction", "0.5", "--question-column", "foo"],
     "--eval-fraction, --question-column: not used with --data"),
    (["--data", "medrag:sample", "--question-column", "zzz"], "--question-column: not used with --data medrag:sample"),
    (["--data", "PAIRS", "--split", "all", "--split-seed", "7", "--eval-fraction", "0.5"],
     "--eval-fraction, --split-seed: not used with --data"),
    (["--data", "PAIRS", "--part", "val"], "--part needs --suite"),
    (["--suite", "--max-queries", "10"], "--max-queries: only used with --pilot"),
    # accepted and ignored before (user tryout)
    (["--suite", "--domains", "sample", "--leaflet-queries", "question"], "--leaflet-queries: only used with the leaflets"),
    (["--suite", "--domains", "foo", "--data-root", "/nonexistent"], "--domains foo: unknown domain(s)"),
    (["--suite", "--domains", "sample", "--data-root", "/nonexistent"], "--data-root: not used with --domains sample"),
    (["--data", "FOLDER", "--split", "all"], "is a folder of splits (test), not one file of pairs"),
    # no --data: the suite's options do not say "not used with --data"
    (["--pilot"], "--pilot needs --suite"),
    (["--part", "test"], "--part needs --suite"),
    # a mistyped local path is not a hub dataset id
    (["--data", "shared/data/frenchmedmca"], "shared/data/frenchmedmca does not exist"),
    (["--data", "d/p.txt"], "d/p.txt does not exist"),
    # the evaluate CLI has no --eval-data: the hint names its own options
    (["--data", "PAIRS", "--split", "test"], "--split all"),
    (["--data", "PAIRS", "--out", "/proc/evalx"], "--out /proc/evalx: cannot create"),
    # accepted before: a blank model name in the tables, a size merged silently
    (["--data", "PAIRS", "--label", "base|v2"], "a label may not hold '|'"),  # it broke the tables (user tryout)
    (["--data", "PAIRS", "--sizes", "64", "64", "32"], "--sizes names 64 more than once"),
    (["--suite", "--data-root", "/nonexistent/shared"], "--data-root /nonexistent/shared is not a folder"),
    # refused by the library after the task and the models were loaded (11-18 s with the real data: audit)
    (["--data", "PAIRS", "--metrics", "ndcg@10", "ndgc@10"], "unknown metric 'ndgc@10'"),
    (["--suite", "--metrics", "ndgc@10"], "unknown metric 'ndgc@10'"),
    (["--data", "PAIRS", "--primary-metric", "mrr"], "unknown metric 'mrr'"),
    (["--data", "PAIRS", "--sizes", "0"], "--sizes 0: pass sizes >= 1"),
    (["--data", "PAIRS", "--confidence", "1.5"], "--confidence 1.5: pass a coverage in (0, 1)"),
    (["--data", "PAIRS", "--edge-tolerance", "0.001"], "edge_tolerance 0.001 is below balanced_tolerance"),
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
    (tmp_path / "fmcqa").mkdir()
    (tmp_path / "fmcqa" / "test.json").write_text("[]")
    subs = {"PAIRS": str(pairs_file), "AFILE": str(tmp_path / "afile"), "FOLDER": str(tmp_path / "fmcqa")}
    extra = [subs.get(a, a) for a in extra]
    argv = ["evaluate", "--model", str(tiny_model_dir), *extra]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "r")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert "not used with --data" not in err[0] or "--data" in extra
    assert "--eval-data" not in err[0]  # medrag evaluate has no such option
    assert not (tmp_path / "r").exists()  # nothing written (--suite --hybrid wrote suite.md, then failed)


def test_coarse_dim_above_the_model_is_refused_before_scoring(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                              monkeypatch):
    """--store --coarse-dim 256 on a 128-dim model failed in the store, after all the dense scoring."""
    import evaluation.cli

    def no_scoring(*a, **k):
        raise AssertionError("scored before --coarse-dim was checked against the model")

    monkeypatch.setattr(evaluation.cli, "evaluate_models", no_scoring)
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all",
            "--out", str(tmp_path / "r"), "--no-cache", "--device", "cpu", "--store", "--coarse-dim", "256"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--coarse-dim 256: must be between 1 and 127" in err[0], err


def test_given_defaults_and_command_line(tiny_model_dir, pairs_file):
    """Mode-only options parse to None (so "given" is known); the library defaults are put in after the
    checks and are not recorded as given in the command line."""
    from evaluation.cli import _fill_defaults, command_line
    from medrag.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d"])
    assert args.part is None and args.eval_fraction is None
    _fill_defaults(args)
    assert args.part == "val" and args.eval_fraction == 0.1
    assert command_line(args) == "medrag evaluate --model m --data d"


def test_three_models_comparison_csv_names_every_pair(tiny_model_dir, pairs_file, tmp_path):
    import csv

    out = tmp_path / "r"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir), "--model", str(tiny_model_dir),
            "--label", "a", "--label", "b", "--label", "c", "--data", str(pairs_file), "--split", "all",
            "--out", str(out), "--no-cache", "--bootstrap", "20", "--resamples", "20", "--no-plot", "--device", "cpu"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert {(r["initial"], r["final"]) for r in rows} == {("a", "b"), ("a", "c")}
    assert len(rows) == 2 * len({r["dimension"] for r in rows})


def test_a_reused_out_folder_keeps_only_this_runs_report_files(tiny_model_dir, pairs_file, tmp_path):
    """An earlier run's hybrid_suite.md/json, suite.md/json stayed beside a new report (and the reverse)."""
    out = tmp_path / "r"
    out.mkdir()
    for name in ("suite.md", "hybrid_suite.md", "hybrid_suite.json", "hybrid_suite_2.json", "notes.txt", "suite_notes.md"):
        (out / name).write_text("earlier")
    (out / "suite.json").write_text(json.dumps({"macro": {}, "created": "2026-12-01T00:00:00+00:00"}))  # a suite's
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all",
            "--out", str(out), "--no-cache", "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "notes.txt", "per_query.csv", "report.json",
                                                     "report.md", "suite_notes.md"]
    # the reverse: a suite run's files replace a --data report's
    from evaluation.report import earlier_report_files, remove_stale_report_files

    remove_stale_report_files(out, [out / "suite.md", out / "suite.json"], earlier=earlier_report_files(out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "suite_notes.md"]
    # a folder no report wrote: files of these names are the user's
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "suite.md").write_text("mine")
    remove_stale_report_files(mine, [], earlier=earlier_report_files(mine))
    assert (mine / "suite.md").exists()


def test_a_reused_out_folder_keeps_the_users_own_files_named_like_report_files(tiny_model_dir, pairs_file, tmp_path):
    """Every ``*_vs_size.png`` and ``suite.*`` of an earlier report's folder was removed, a user's own plot
    and notes too: only what the earlier run recorded writing goes (user tryout)."""
    out = tmp_path / "r"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all",
            "--out", str(out), "--no-cache", "--bootstrap", "20", "--device", "cpu", "--metrics", "ndcg@10", "mrr@10"]
    assert main(argv) == 0
    assert (out / "ndcg10_vs_size.png").is_file()
    for name in ("latency_vs_size.png", "suite.md", "hybrid_suite.md"):
        (out / name).write_text("mine")
    assert main([*argv, "--primary-metric", "mrr@10"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "ndcg10_vs_size.png" not in names and "mrr10_vs_size.png" in names  # the earlier plot is replaced
    assert {"latency_vs_size.png", "suite.md", "hybrid_suite.md"} <= set(names)
    # a run without a plot: the user's own file of the plot's name is not removed by the next (review)
    assert main([*argv, "--no-plot"]) == 0 and "mrr10_vs_size.png" not in {p.name for p in out.iterdir()}
    (out / "ndcg10_vs_size.png").write_text("mine")
    assert main([*argv, "--no-plot", "--primary-metric", "mrr@10"]) == 0
    assert (out / "ndcg10_vs_size.png").read_text() == "mine"
    # an edited report.json lists only names a report writes (review: any plain name was deleted)
    report = json.loads((out / "report.json").read_text())
    (out / "thesis.docx").write_text("mine")
    (out / "report.json").write_text(json.dumps({**report, "files": [*report["files"], "thesis.docx", "..", "x/../y"]}))
    assert main([*argv, "--no-plot"]) == 0 and (out / "thesis.docx").read_text() == "mine"


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


def test_a_model_given_twice_is_warned_about(tiny_model_dir, pairs_file, tmp_path, caplog):
    argv = ["evaluate", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir), "--data", str(pairs_file),
            "--split", "all", "--out", str(tmp_path / "r"), "--no-cache", "--sizes", "32", "--metrics", "ndcg@10",
            "--bootstrap", "20", "--resamples", "20", "--no-plot", "--device", "cpu"]
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main(argv) == 0
    assert "given more than once" in caplog.text and "measures nothing" in caplog.text


def test_write_metadata_without_a_model_folder_is_refused_before_the_model(pairs_file, tmp_path, capsys,
                                                                          monkeypatch):
    """It ran the whole evaluation, then printed "nothing written" with exit code 0."""
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    argv = ["evaluate", "--model", "bundled:multilingual-e5-small", "--data", str(pairs_file), "--split", "all",
            "--out", str(tmp_path / "r"), "--write-metadata"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--write-metadata writes into a model folder" in err[0]


def test_a_fine_tuned_folder_is_scored_on_the_questions_its_run_held_out(tiny_model_dir, pairs_file, tmp_path,
                                                                        capsys, caplog):
    """``medrag finetune --seed 7`` held out the questions of seed 7, and ``medrag evaluate`` scored the
    folder on those of split seed 42, its training questions among them, in silence (audit)."""
    import yaml

    folder = tmp_path / "ft"
    shutil.copytree(tiny_model_dir, folder)
    # written by a run before split_seed existed: its seed drew the split
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": str(pairs_file), "seed": 7,
                                                                 "eval_fraction": 0.5, "eval_data": None}))
    argv = ["evaluate", "--model", str(folder), "--data", str(pairs_file), "--out", str(tmp_path / "r"), "--no-cache",
            "--sizes", "32", "--metrics", "ndcg@10", "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main(argv) == 0
    assert "50% held out (seed 7)" in capsys.readouterr().out
    assert "held out (split seed 7, eval fraction 0.5), as its finetune_config.yaml records" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*argv, "--split-seed", "3"]) == 0
    assert "(seed 3)" in capsys.readouterr().out
    assert "its scores include questions it trained on; pass --split-seed 7 --eval-fraction 0.5" in caplog.text


def test_the_eval_file_of_a_fine_tuning_is_scored_whole(tiny_model_dir, pairs_file, tmp_path, capsys, caplog):
    """After `finetune --eval-data eval.jsonl`, `evaluate --data eval.jsonl` scored 10% of it (user tryout)."""
    import yaml

    folder = tmp_path / "ft"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "train.jsonl"),
                                                                 "eval_data": str(pairs_file)}))
    argv = ["evaluate", "--model", str(folder), "--data", str(pairs_file), "--out", str(tmp_path / "r"), "--no-cache",
            "--sizes", "32", "--metrics", "ndcg@10", "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main(argv) == 0
    assert "the eval file the fine-tuning of" in caplog.text
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["task"]["name"].endswith("(all pairs)")  # every pair, not the 10% held out
    # recorded as typed (relative) by a run elsewhere: training_info.json's record finds it (review)
    from medrag.qa.pairs import data_file_record

    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": "train.jsonl", "eval_data": "data/eval.jsonl"}))
    (folder / "training_info.json").write_text(json.dumps({"eval_data_file": data_file_record(pairs_file)}))
    assert main([str(tmp_path / "r2") if a == str(tmp_path / "r") else a for a in argv]) == 0
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["task"]["name"].endswith("(all pairs)")


def test_scores_on_questions_a_fine_tuned_folder_trained_on_are_named(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                                      caplog):
    """Scored in silence (user tryout): the file a run with --eval-data trained on every pair of, --split
    all on the file it trained on, and a FrenchMedMCQA split among its training splits."""
    import yaml

    folder = tmp_path / "ft"
    shutil.copytree(tiny_model_dir, folder)
    base = ["evaluate", "--model", str(folder), "--out", str(tmp_path / "r"), "--no-cache", "--sizes", "32",
            "--metrics", "ndcg@10", "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": str(pairs_file), "eval_data": "ev.jsonl"}))
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*base, "--data", str(pairs_file)]) == 0
    assert "was fine-tuned on every pair of" in caplog.text and "evaluate on ev.jsonl" in caplog.text
    # and in the report's files: report.md read "+48%" without the warning, on stderr only (user tryout)
    recorded = json.loads((tmp_path / "r" / "report.json").read_text())["warnings"]
    assert any("was fine-tuned on every pair of" in w for w in recorded)
    assert any("queries" in w and "30" in w for w in recorded)  # the few-queries warning too
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "**Warnings**" in markdown and "was fine-tuned on every pair of" in markdown
    from medrag.qa.pairs import data_file_record  # the data as read: absolute path and sha256 (user tryout)

    assert json.loads((tmp_path / "r" / "report.json").read_text())["task"]["data"] == data_file_record(pairs_file)
    assert f"Data: `{pairs_file.resolve()}`" in markdown
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": str(pairs_file), "eval_data": None}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*base, "--data", str(pairs_file), "--split", "all"]) == 0
    assert "--split all scores the questions it trained on too" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):  # its held-out split: no such warning
        assert main([*base, "--data", str(pairs_file)]) == 0
    assert "trained on" not in caplog.text
    assert not any("trained on" in w for w in json.loads((tmp_path / "r" / "report.json").read_text())["warnings"])
    fmcqa = tmp_path / "frenchmedmcqa"
    fmcqa.mkdir()
    from tests.finetune.helpers import mcqa_record

    for split in ("train", "dev", "test"):
        (fmcqa / f"{split}.json").write_text(json.dumps([mcqa_record(i, f"Question {split} {i} ?", [
            "Le fer.", "La CRP.", "La TSH.", "Le sodium.", "Le zinc."], ["a"]) for i in range(4)]))
    # the path as typed, relative to the run's folder (review: compared resolved, it warned from there only)
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": "frenchmedmcqa", "train_splits": ["train", "dev"]}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        main([*base, "--data", str(fmcqa), "--split", "dev"])
    assert "fine-tuned on FrenchMedMCQA's dev split" in caplog.text
    # a run whose eval split was dev dropped its questions from training (review)
    (folder / "finetune_config.yaml").write_text(yaml.safe_dump({"data": "frenchmedmcqa", "eval_split": "dev",
                                                                 "train_splits": ["train", "dev"]}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        main([*base, "--data", str(fmcqa), "--split", "dev"])
    assert "trained on" not in caplog.text


def test_write_metadata_keeps_one_evaluation_and_every_trained_size(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                                   monkeypatch):
    """--write-metadata replaced the scores and kept the fine-tune's scores_before (another task), its
    metric list and no word of the task; with --sizes 64 it deleted the size-128 score, so "auto" chose
    among 64 alone (audit)."""
    folder = tmp_path / "ft"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64], scores={128: {"ndcg@10": 1.0}, 64: {"ndcg@10": 1.0}},
                       scores_before={128: {"ndcg@10": 0.9}, 64: {"ndcg@10": 0.8}},
                       extra={"dataset": "train.jsonl", "metrics": ["ndcg@10"],
                              "suite_domains": {"leaflets": {"128": 0.7}}, "suite_domains_base": {}}).save(folder)
    argv = ["evaluate", "--model", str(folder), "--data", str(pairs_file), "--split", "all", "--out",
            str(tmp_path / "r"), "--no-cache", "--bootstrap", "20", "--no-plot", "--device", "cpu", "--write-metadata"]
    assert main(argv) == 0
    written = MatryoshkaMetadata.load(folder)
    assert sorted(written.scores) == [64, 128] and written.scores_before == {}
    assert written.extra["scored_on"].startswith("pairs.jsonl") and written.extra["dataset"] == "train.jsonl"
    # "scored_on": "beir/test" alone said neither which folder nor how many queries (user tryout)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert written.extra["scored_on_task"] == {"data": str(pairs_file.resolve()), "queries": report["task"]["queries"],
                                               "corpus": report["task"]["corpus"],
                                               "content_hash": report["task"]["content_hash"],
                                               "command": report["command"]}
    # the earlier suite's per-domain scores no longer describe the scores (user tryout)
    assert "suite_domains" not in written.extra and "suite_domains_base" not in written.extra
    assert sorted(written.extra["metrics"]) == sorted(written.scores[128]) and len(written.extra["metrics"]) > 1
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    capsys.readouterr()
    assert main([*argv, "--sizes", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sizes leaves out [128]: pass --sizes 128 64" in err[0]
    assert MatryoshkaMetadata.load(folder).scores == written.scores


def test_write_metadata_into_a_folder_without_matryoshka_json_keeps_its_sizes(tiny_model_dir, pairs_file, tmp_path,
                                                                             capsys):
    """A folder without matryoshka.json allows the default sizes (128 and 64 for the tiny model); --sizes 128
    with --write-metadata wrote dims [128], and dimension=64 was refused afterwards (docs audit)."""
    from medrag import MatryoshkaEmbeddings

    folder = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "matryoshka.json").unlink(missing_ok=True)
    assert MatryoshkaEmbeddings(str(folder), dimension=64).dims == [128, 64]
    argv = ["evaluate", "--model", str(folder), "--data", str(pairs_file), "--split", "all", "--out",
            str(tmp_path / "r"), "--no-cache", "--bootstrap", "20", "--no-plot", "--device", "cpu", "--write-metadata"]
    capsys.readouterr()
    assert main([*argv, "--sizes", "128"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no matryoshka.json yet), and --sizes leaves out [64]: pass --sizes 128 64" in err[0]
    assert not (folder / "matryoshka.json").exists()
    assert main([*argv, "--sizes", "128", "64"]) == 0
    assert MatryoshkaMetadata.load(folder).dims == [128, 64]
    assert MatryoshkaEmbeddings(str(folder), dimension=64).dimension == 64


def test_an_out_folder_with_the_users_own_report_files_is_refused_before_the_model(pairs_file, tmp_path, capsys,
                                                                                  monkeypatch):
    """A user's report.md and metrics.csv in --out were overwritten in silence (audit)."""
    import medrag.embeddings
    from evaluation.report import check_report_folder
    from medrag.errors import InvalidInputError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    (out / "metrics.csv").write_text("a,b\n")
    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["evaluate", "--model", "bundled:multilingual-e5-small", "--data", str(pairs_file), "--split", "all",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds metrics.csv, report.md, which no earlier medrag evaluate wrote" in err[0]
    assert (out / "report.md").read_text() == "my notes"
    with pytest.raises(InvalidInputError, match="no earlier medrag evaluate wrote"):
        check_report_folder(out, ["report.md"])
    check_report_folder(out, ["suite.md"])  # only the files about to be written count
    # a report.json of the user's own (any file of that name passed: audit) is no report
    (out / "report.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="no earlier medrag evaluate wrote") as refused:
        check_report_folder(out, ["metrics.csv", "report.json"])
    assert "no report.json or suite.json beside" not in str(refused.value)  # it is there (tryout: it said so)
    # an earlier report's folder is reused, as before
    (out / "report.json").write_text(json.dumps({"medrag_version": "0", "created": "2026-12-05T00:00:00+00:00"}))
    check_report_folder(out, ["report.md"])
    check_report_folder(tmp_path / "new", ["report.md"])


def test_sizes_beyond_a_second_model_are_refused_before_any_encoding(tiny_model_dir, pairs_file, tmp_path, capsys,
                                                                    monkeypatch):
    """--sizes 128 with a 128-dim and a 64-dim model: the first model was encoded, then the error (audit)."""
    import evaluation.cli
    from tests.tiny_model import build_tiny_model

    small = build_tiny_model(tmp_path / "small", hidden=64)
    monkeypatch.setattr(evaluation.cli, "evaluate_models", lambda *a, **k: pytest.fail("scoring started"))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--model", str(small), "--data", str(pairs_file),
                 "--split", "all", "--sizes", "128", "64", "--out", str(tmp_path / "r"), "--no-cache"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medrag evaluate: error: --sizes 128: above the full size 64 of")


def test_the_suite_on_the_shipped_sample_alone_needs_no_data_root(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """``--suite --domains sample`` outside the repository said "--data-root ../shared/data is not a
    folder", although the sample ships with medrag (audit)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDRAG_DATA", raising=False)
    assert main(["evaluate", "--model", str(tiny_model_dir), "--suite", "--pilot", "--max-queries", "3",
                 "--max-passages", "10", "--domains", "sample", "--out", "s", "--no-cache", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "s" / "suite.json").read_text())["macro"]
    assert main(["evaluate", "--model", str(tiny_model_dir), "--suite", "--domains", "sample", "leaflets",
                 "--out", "s2", "--device", "cpu"]) == 1
    # the default was named as an option never passed (user tryout)
    err = capsys.readouterr().err
    assert "the default data root ../shared/data (relative to the current folder" in err and "--data-root ../" not in err
    monkeypatch.setenv("MEDRAG_DATA", str(tmp_path / "nowhere"))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--suite", "--domains", "leaflets", "--out", "s3"]) == 1
    assert f"$MEDRAG_DATA ({tmp_path / 'nowhere'}) is not a folder: pass --data-root, or set $MEDRAG_DATA" in \
        capsys.readouterr().err


def test_evaluate_a_beir_folder_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    """Your own passages and graded judgements through `medrag evaluate --data FOLDER`."""
    from tests.evaluation.test_data import _beir

    folder = _beir(tmp_path / "beir", ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q1\td2\t1", "q2\td2\t1"])
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(folder), "--out", str(tmp_path / "r"),
                 "--no-cache", "--no-plot", "--bootstrap", "20", "--device", "cpu", "--sizes", "64", "32"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "beir/test" in json.dumps(report)
    # the paired test's column names the largest size scored, not "full" (the model's is 128)
    assert "| p vs 64 |" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(folder), "--question-column", "q",
                 "--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err
    assert "--question-column: not used with --data" in err and "(a BEIR folder (its own queries" in err


def test_the_few_queries_warning_names_only_options_that_apply(tiny_model_dir, pairs_file, tmp_path, caplog):
    """Every small run advised --eval-fraction and --split all: a BEIR folder refuses the first and has
    no qrels/all.tsv for the second, and a --split all run was told to pass it (user tryout)."""
    from tests.evaluation.test_data import _beir

    folder = _beir(tmp_path / "beir", ["q1\td1\t1", "q2\td2\t1"])
    common = ["--model", str(tiny_model_dir), "--no-cache", "--no-plot", "--bootstrap", "20", "--device", "cpu",
              "--sizes", "32", "--metrics", "ndcg@10"]
    runs = {"beir": ["--data", str(folder)], "held out": ["--data", str(pairs_file), "--eval-fraction", "0.5"],
            "all": ["--data", str(pairs_file), "--split", "all"]}
    warnings = {}
    for name, data in runs.items():
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert main(["evaluate", *common, *data, "--out", str(tmp_path / name.replace(" ", "_"))]) == 0
        warnings[name] = " ".join(r.getMessage() for r in caplog.records if "queries or more" in r.getMessage())
    assert all(warnings.values()), warnings
    assert "--eval-fraction" not in warnings["beir"] and "--split all" not in warnings["beir"]
    assert "--eval-fraction, now 0.5" in warnings["held out"] and "--split all" in warnings["held out"]
    assert "--eval-fraction" not in warnings["all"] and "--split all" not in warnings["all"]


def test_a_folder_holding_a_pairs_file_is_named_first(tiny_model_dir, pairs_file, tmp_path, capsys, monkeypatch):
    """--data FOLDER holding one .jsonl: "drop --question-column", then "a folder of splits", then "no
    test.json", each fix leading to the next error (user tryout). One error, before the model loads."""
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    folder = tmp_path / "afolder"
    folder.mkdir()
    shutil.copy(pairs_file, folder / "base.jsonl")
    for extra in (["--question-column", "question", "--answer-column", "answer", "--split", "all"], ["--split", "all"],
                  []):
        assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(folder), *extra,
                     "--out", str(tmp_path / "r")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "neither a BEIR folder" in err[0] and f"e.g. {folder}/base.jsonl" in err[0], err


def test_prompt_names_reach_every_model(tiny_model_dir, pairs_file, tmp_path, capsys):
    """--query-prompt-name / --document-prompt-name: a model's prompts under other names (s2p_query) were
    out of the shell's reach."""
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all", "--out",
            str(tmp_path / "r"), "--no-cache", "--bootstrap", "20", "--no-plot", "--device", "cpu", "--sizes", "64"]
    assert main([*argv, "--query-prompt-name", "s2s_query"]) == 1
    assert "prompt name 's2s_query' is not among the model's prompts" in capsys.readouterr().err
    assert main([*argv, "--query-prompt-name", "passage", "--document-prompt-name", "query"]) == 0


def test_python_m_evaluation_is_medrag_evaluate(tiny_model_dir, pairs_file, tmp_path, capsys):
    """``python -m evaluation`` existed nowhere (``No module named evaluation.__main__``): it now takes
    ``medrag evaluate``'s flags and writes the same report."""
    import argparse
    import subprocess
    import sys
    from pathlib import Path

    from evaluation.cli import main as evaluation_main
    from medrag.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    theirs = {a.dest: a.help for a in sub.choices["evaluate"]._actions if a.option_strings}
    from evaluation.cli import add_arguments
    from medrag.command import new_parser

    standalone = new_parser("python -m evaluation", None)
    add_arguments(standalone)
    assert {a.dest: a.help for a in standalone._actions if a.option_strings} == theirs

    out = tmp_path / "report"
    argv = ["--model", str(tiny_model_dir), "--data", str(pairs_file), "--split", "all", "--out", str(out),
            "--no-cache", "--sizes", "64", "--bootstrap", "50", "--no-plot", "--device", "cpu"]
    assert evaluation_main(argv) == 0
    assert "| 64 |" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["command"].startswith("medrag evaluate --model ")

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "evaluation", "--data", str(pairs_file)], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--model" in proc.stderr and "Traceback" not in proc.stderr


def test_export_runs_writes_trec_runs_that_ranx_scores_as_the_report_does(tiny_model_dir, pairs_file, tmp_path):
    """--export-runs: each model's ranking at each size as a TREC run with the judgements, so that
    trec_eval or ranx recompute the report's numbers without medrag (a reviewer asked for runs to check
    and fuse); a later run without it removes them, and ids a TREC file cannot hold are refused first."""
    ranx = pytest.importorskip("ranx")
    out = tmp_path / "r"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir), "--label", "base",
            "--label", "other model", "--data", str(pairs_file), "--split", "all", "--out", str(out), "--no-cache",
            "--bootstrap", "20", "--resamples", "20", "--no-plot", "--device", "cpu", "--sizes", "32", "16"]
    assert main([*argv, "--export-runs", "5", "--metrics", "ndcg@5", "mrr@5"]) == 0
    report = json.loads((out / "report.json").read_text())
    names = {"run_1_32.trec", "run_1_16.trec", "run_2_32.trec", "run_2_16.trec", "qrels.trec"}
    assert names <= {p.name for p in out.iterdir()} and names <= set(report["files"])
    lines = (out / "run_2_16.trec").read_text().splitlines()
    qids = list(dict.fromkeys(line.split()[0] for line in lines))
    assert len(qids) == report["task"]["queries"]
    first = [line.split() for line in lines if line.split()[0] == qids[0]]
    assert [f[3] for f in first] == ["1", "2", "3", "4", "5"] and {f[1] for f in first} == {"Q0"}
    assert [float(f[4]) for f in first] == sorted((float(f[4]) for f in first), reverse=True)
    assert first[0][5] == "other_model@16"  # the tag: label and size, without the label's space
    qrels = ranx.Qrels.from_file(str(out / "qrels.trec"), kind="trec")
    for i, dim in ((1, 32), (2, 16)):
        run = ranx.Run.from_file(str(out / f"run_{i}_{dim}.trec"), kind="trec")
        scored = ranx.evaluate(qrels, run, ["ndcg@5", "mrr@5"])
        mine = report["models"][i - 1]["sizes"][str(dim)]
        assert scored == pytest.approx({m: mine[m]["mean"] for m in ("ndcg@5", "mrr@5")}, abs=1e-6)
    # the depth caps the run, not the metrics: ndcg@5 is still scored 5 deep
    assert main([*argv, "--export-runs", "3", "--metrics", "ndcg@5", "mrr@5"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["models"][0]["sizes"]["32"]["ndcg@5"] == report["models"][0]["sizes"]["32"]["ndcg@5"]
    assert len((out / "run_1_32.trec").read_text().splitlines()) == 3 * len(qids)
    assert main(argv) == 0  # without --export-runs: the runs and judgements of the earlier run go
    assert not names & {p.name for p in out.iterdir()}
    assert main([*argv, "--export-runs", "0"]) == 1


def test_export_runs_refuses_ids_a_trec_file_cannot_hold_before_encoding(tmp_path):
    """TREC files separate their fields by whitespace: a query or document id holding a space would
    shift every field after it (a file name as document id), so it is refused before any model work."""
    from evaluation.evaluator import evaluate_models
    from medrag.errors import InvalidInputError
    from medrag.qa.task import IRTask

    task = IRTask({"q 1": "ferritine ?"}, {"d1": "la ferritine"}, {"q 1": {"d1"}})
    with pytest.raises(InvalidInputError, match="'q 1' holds whitespace"):
        evaluate_models(["no-such-model"], task, run_depth=10)
    with pytest.raises(InvalidInputError, match="run_depth must be an int >= 0"):
        evaluate_models(["no-such-model"], task, run_depth=-1)


def test_export_runs_refuses_a_folder_holding_the_users_own_trec_files(pairs_file, tmp_path, capsys):
    """A run file's name is known once the model's sizes are: a folder no report wrote that holds a
    ``run_1_16.trec`` of the user's is refused before the model loads, as for the other report files."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "run_1_16.trec").write_text("q1 Q0 d1 1 0.5 mine\n")
    argv = ["evaluate", "--model", "no-such-model", "--data", str(pairs_file), "--split", "all", "--out", str(out),
            "--export-runs"]
    assert main(argv) == 1
    assert "run_1_16.trec" in capsys.readouterr().err
    assert (out / "run_1_16.trec").read_text() == "q1 Q0 d1 1 0.5 mine\n"
