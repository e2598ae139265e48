"""Report tables (Markdown, CSV, JSON), the report folder and the plot."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from evaluation.cache import EmbeddingCache
from evaluation.evaluator import evaluate_models
from evaluation.metrics import per_query_metrics
from evaluation.retrieval import rank_documents
from evaluation.stats import format_p_value

from .helpers import tiny_task


@pytest.fixture(scope="module")
def report(tiny_embeddings, tiny_model_dir):
    # Two different models: the tiny model and a second random model with another seed.
    from medrag import MatryoshkaEmbeddings
    from tests.tiny_model import build_tiny_model

    other_dir = build_tiny_model(tiny_model_dir.parent / "tiny-other", seed=1)
    other = MatryoshkaEmbeddings(str(other_dir), device="cpu")
    return evaluate_models([tiny_embeddings, other], tiny_task(8), labels=["base", "other"],
                           cache=EmbeddingCache(enabled=False), n_bootstrap=200, n_resamples=500,
                           command="medrag evaluate --model a --model b --data x")


def test_numbers_match_an_independent_computation(report, tiny_embeddings):
    task = tiny_task(8)
    q = tiny_embeddings.encode_queries(list(task.queries.values()))
    d = tiny_embeddings.encode_documents(list(task.corpus.values()))
    from medrag import truncate_embeddings

    ranked = rank_documents(truncate_embeddings(q, 64), truncate_embeddings(d, 64), list(task.corpus), 100)
    expected = per_query_metrics(ranked, [task.qrels[x] for x in task.queries], ["ndcg@10"])["ndcg@10"]
    assert report.models[0].score(64) == pytest.approx(expected.mean(), abs=1e-6)
    ci = report.models[0].cis[64]["ndcg@10"]
    assert ci.low <= ci.mean <= ci.high


def test_comparison_table_markdown(report):
    md = report.comparison_table()
    lines = md.splitlines()
    assert lines[0] == "| Dimension | Score Initial | Score Final | Gain | p-value | p (Holm) |"
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["128", "64"]
    row = lines[2].split("|")
    s0, s1 = float(row[2]), float(row[3])
    assert s0 == pytest.approx(report.models[0].score(128), abs=1e-4)
    assert s1 == pytest.approx(report.models[1].score(128), abs=1e-4)
    assert float(row[4].split()[0]) == pytest.approx(s1 - s0, abs=2e-4)  # each printed to 4 decimals


def test_comparison_table_csv_and_json(report):
    rows = list(csv.DictReader(io.StringIO(report.comparison_table(fmt="csv"))))
    as_json = json.loads(report.comparison_table(fmt="json"))
    assert [int(r["dimension"]) for r in rows] == [128, 64] == [r["dimension"] for r in as_json]
    for r, j in zip(rows, as_json):
        assert float(r["gain"]) == pytest.approx(float(r["score_final"]) - float(r["score_initial"]))
        assert float(r["score_initial"]) == pytest.approx(j["score_initial"])
        assert 0 < float(r["p_value"]) <= 1
        test = report.comparisons["other"][int(r["dimension"])]["ndcg@10"]
        assert float(r["p_value"]) == pytest.approx(test.p_value)
    with pytest.raises(ValueError):
        report.comparison_table(fmt="xml")


def test_p_values_are_also_given_adjusted_for_testing_every_size(report):
    """One comparison is tested at every size (five or six tests), and a raw p < 0.05 among them is
    likely by chance alone: each table, CSV and report.json also gives Holm's adjusted p-value over the
    sizes (an earlier tryout: no multiple-comparison correction)."""
    from evaluation.stats import holm_adjusted

    rows = report.comparison_rows()
    raw = [r["p_value"] for r in rows]
    assert [r["p_holm"] for r in rows] == holm_adjusted(raw)
    assert all(h >= p for h, p in zip(holm_adjusted(raw), raw))
    # smallest p times the number of sizes, then never below the one before (Holm's step-down)
    smallest = min(range(len(raw)), key=raw.__getitem__)
    assert rows[smallest]["p_holm"] == pytest.approx(min(1.0, len(raw) * raw[smallest]))
    md = report.comparison_table().splitlines()
    assert md[2].rstrip(" |").rsplit("|", 1)[1].strip() == format_p_value(rows[0]["p_holm"])
    csv_rows = list(csv.DictReader(io.StringIO(report.comparisons_csv())))
    assert [float(r["p_holm"]) for r in csv_rows] == pytest.approx([r["p_holm"] for r in rows])
    data = report.to_dict()
    sizes = data["comparisons"]["other"]["sizes"]
    assert [sizes[str(r["dimension"])]["ndcg@10"]["p_holm"] for r in rows] == pytest.approx([r["p_holm"] for r in rows])
    largest = data["models"][0]["vs_largest_size"]
    assert [v["p_holm"] for v in largest.values()] == pytest.approx(holm_adjusted([v["p_value"] for v in largest.values()]))


def test_metrics_table_has_every_metric_and_size(report):
    rows = list(csv.DictReader(io.StringIO(report.metrics_table(fmt="csv"))))
    assert len(rows) == 2 * 2 * len(report.metrics)
    assert {r["metric"] for r in rows} == set(report.metrics)
    for r in rows:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
    md = report.metrics_table()
    assert "**base**" in md and "**other**" in md and "recall@100" in md


def test_write_folder_json_and_plot(report, tmp_path):
    paths = report.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "metrics.csv", "comparison.csv",
                                                 "per_query.csv", "ndcg10_vs_size.png"}
    per_query = list(csv.DictReader(io.StringIO(paths["per_query_csv"].read_text())))
    assert len(per_query) == 2 * 2 * 8 and set(report.metrics) < set(per_query[0])
    rows64 = [r for r in per_query if r["model"] == "base" and r["dimension"] == "64"]
    assert [r["query_id"] for r in rows64] == list(tiny_task(8).queries)
    # the question of each row, not only its id (a hash for a pairs file; user tryout)
    assert [r["query"] for r in rows64] == list(tiny_task(8).queries.values())
    assert np.mean([float(r["ndcg@10"]) for r in rows64]) == pytest.approx(report.models[0].score(64))
    data = json.loads(paths["json"].read_text())
    assert data["command"] == "medrag evaluate --model a --model b --data x"
    assert data["task"]["queries"] == 8 and data["task"]["content_hash"] == tiny_task(8).content_hash()
    m0 = data["models"][0]
    assert m0["sizes"]["64"]["ndcg@10"]["mean"] == pytest.approx(report.models[0].score(64))
    assert set(m0["recommendations"]) >= {"max", "balanced", "edge"}
    assert "64" in m0["vs_largest_size"] and "64" in data["comparisons"]["other"]["sizes"]
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = paths["markdown"].read_text()
    assert "Score Initial" in md and "Recommendations" in md


def test_plot_other_metric_and_unknown_metric(report, tmp_path):
    from evaluation.plots import plot_metric_vs_size

    path = plot_metric_vs_size(report, tmp_path / "sub" / "mrr.png", metric="mrr@10")
    assert path.stat().st_size > 5000
    with pytest.raises(ValueError):
        plot_metric_vs_size(report, tmp_path / "x.png", metric="ndcg@3")


def test_a_long_task_name_stays_inside_the_plot(report, tmp_path, monkeypatch):
    """A task named after a long file was cut at both edges of the figure (user tryout)."""
    from matplotlib.figure import Figure

    from evaluation.plots import plot_metric_vs_size, wrapped_title

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    monkeypatch.setitem(report.task_info, "name", "questions_test_service_endocrinologie_hopital_2024_version_"
                                                  "finale.jsonl (held out: by question, 10% held out (seed 42))")
    plot_metric_vs_size(report, tmp_path / "long.png")
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()
    title = fig.axes[0].title
    box, frame = title.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, (box, frame)
    assert "endocrinologie" in title.get_text().replace("\n", "")
    assert wrapped_title("a " * 10, 64) == ("a " * 10).strip()  # a short one is left alone


def test_single_model_report_has_no_comparison(tiny_embeddings, tmp_path):
    rep = evaluate_models([tiny_embeddings], tiny_task(), dims=[128, 32], cache=EmbeddingCache(enabled=False),
                          n_bootstrap=50, n_resamples=50)
    assert sorted(rep.models[0].sizes) == [32, 128]
    with pytest.raises(ValueError, match="two models"):
        rep.comparison_table()
    names = {p.name for p in rep.write(tmp_path).values()}
    assert "comparison.csv" not in names and "report.json" in names


def test_writing_into_a_file_is_a_medrag_error(report, tmp_path):
    """The Python API's ``report.write`` on a path that is a file raised a raw FileExistsError (tryout)."""
    from medrag.errors import InvalidInputError

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(InvalidInputError, match="is a file"):
        report.write(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_reused_report_folder_keeps_no_file_of_the_earlier_report(report, tiny_embeddings, tmp_path):
    """A second report into the same --out (one model, no plot) left the first one's plot and
    comparison beside it, as if they were its own."""
    (tmp_path / "notes.txt").write_text("mine")
    report.write(tmp_path)
    single = evaluate_models([tiny_embeddings], tiny_task(), dims=[128, 32], cache=EmbeddingCache(enabled=False),
                             n_bootstrap=20, n_resamples=20)
    single.write(tmp_path, plot=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "notes.txt", "per_query.csv",
                                                          "report.json", "report.md"]
    # a folder no report wrote before: files of those names are the user's, kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "comparison.csv").write_text("a,b")
    (mine / "age_vs_size.png").write_bytes(b"png")
    single.write(mine, plot=False)
    assert (mine / "comparison.csv").read_text() == "a,b" and (mine / "age_vs_size.png").exists()


def test_bad_inputs(tiny_embeddings):
    from medrag.errors import DimensionError

    with pytest.raises(DimensionError):
        evaluate_models([tiny_embeddings], tiny_task(), dims=[256], cache=EmbeddingCache(enabled=False))
    with pytest.raises(ValueError):
        evaluate_models([tiny_embeddings], tiny_task(), metrics=["bleu@4"], cache=EmbeddingCache(enabled=False))
    with pytest.raises(ValueError):
        evaluate_models([], tiny_task())


def test_primary_metric_is_added_and_recommendations_follow_it(tiny_embeddings):
    rep = evaluate_models([tiny_embeddings], tiny_task(), metrics=["recall@1"], primary_metric="mrr@10",
                          cache=EmbeddingCache(enabled=False), n_bootstrap=20, n_resamples=20)
    assert rep.metrics == ["mrr@10", "recall@1"]
    m = rep.models[0]
    scores = {d: m.score(d, "mrr@10") for d in m.sizes}
    assert m.recommendations.metric == "mrr@10"
    assert scores[m.recommendations.max] == max(scores.values())
    assert np.isfinite(m.size_tests[64].p_value)
    assert m.score(64) == scores[64]  # the primary metric by default (it was ndcg@10: a bare KeyError here)


def test_a_size_or_metric_a_model_result_lacks_is_named(report) -> None:
    """``ModelResult.score`` raised bare KeyErrors (user tryout)."""
    from medrag.errors import InvalidInputError

    m = report.models[0]
    with pytest.raises(InvalidInputError, match=r"base: size 999 was not evaluated; sizes: \[128, 64\]"):
        m.score(999)
    with pytest.raises(InvalidInputError, match="metric 'recall@5' was not measured"):
        m.score(64, "recall@5")


@pytest.mark.parametrize("kwargs, expected", [
    ({"models": "bundled:medrag-e5-small-fr"}, "got one model"),
    ({"dims": []}, "dims must be"),
    ({"dims": [64, "32"]}, "dims must be"),
    ({"n_resamples": -1}, "n_resamples"),
    ({"n_bootstrap": 0}, "n_bootstrap"),
    ({"labels": ["a", "b"]}, "2 labels for 1 models"),
    # the CLI refused these, the library did not: a zero-width "95% CI", broken Markdown tables (user tryout)
    ({"n_bootstrap": 1}, "needs at least 10 resamples"),
    ({"labels": ["a|b"]}, "without '|'"),
    ({"labels": [" "]}, "non-empty text"),
])
def test_bad_arguments_are_invalid_input_errors(tiny_embeddings, kwargs, expected):
    """These raised ValueError (max of an empty list), ZeroDivisionError, a message naming the wrong
    argument, or iterated a spec string's characters; extra labels were ignored."""
    from medrag.errors import InvalidInputError

    args = {"models": [tiny_embeddings], "task": tiny_task(), "cache": EmbeddingCache(enabled=False), **kwargs}
    with pytest.raises(InvalidInputError, match=expected):
        evaluate_models(**args)


def test_a_model_position_out_of_range_is_an_unknown_name(report):
    from medrag.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="position 5"):
        report.model(5)


def test_a_task_of_few_queries_is_warned_about(tiny_embeddings, caplog):
    """A 4-pair file held out one query and reported 1.0000 [1.000, 1.000] for every metric, silently."""
    from evaluation.retrieval import FEW_QUERIES
    from medrag.qa.task import IRTask

    with caplog.at_level("WARNING", logger="evaluation.retrieval"):
        evaluate_models([tiny_embeddings], tiny_task(3), cache=EmbeddingCache(enabled=False), n_bootstrap=10,
                        n_resamples=10)
    assert "has 3 queries" in caplog.text and f"{FEW_QUERIES} queries or more" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.retrieval"):
        many = IRTask.from_pairs([(f"question {i}", f"réponse {i}") for i in range(FEW_QUERIES)])
        evaluate_models([tiny_embeddings], many, cache=EmbeddingCache(enabled=False), n_bootstrap=10,
                        n_resamples=10)
    assert "queries or more" not in caplog.text


def test_a_size_only_one_model_has_is_named_under_the_comparison(tiny_embeddings, tiny_model_dir, tmp_path):
    """medrag-e5-small-fr's 32 vanished from a comparison with the base (no 32) without a word."""
    import shutil

    from medrag import MatryoshkaEmbeddings
    from medrag.metadata import MatryoshkaMetadata

    folder = tmp_path / "with-32"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64, 32]).save(folder)
    other = MatryoshkaEmbeddings(str(folder), device="cpu")
    report = evaluate_models([tiny_embeddings, other], tiny_task(8), cache=EmbeddingCache(enabled=False),
                             n_bootstrap=10, n_resamples=10)
    assert 32 in report.models[1].sizes and 32 not in report.models[0].sizes
    md = report.comparison_table()
    assert "| 32 |" not in md and md.splitlines()[-1].endswith(f"{report.models[1].label}: 32")
    assert "one model only" not in report.comparison_table(initial=0, final=0)


def test_a_metric_not_measured_is_named(report) -> None:
    """comparison_table("recall@5") raised a bare KeyError (December 5)."""
    from medrag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="'recall@5' was not measured"):
        report.comparison_table("recall@5")


def test_sizes_of_a_model_without_trained_sizes_are_not_called_trained(tiny_model_dir, tmp_path, caplog):
    """A plain model (no matryoshka.json) was said to have "trained: [128, 64]" (user tryout)."""
    import shutil

    from medrag import MatryoshkaEmbeddings
    from medrag.metadata import MatryoshkaMetadata

    trained = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, trained)
    MatryoshkaMetadata(full_dim=128, dims=[128, 32]).save(trained)
    for folder, expected in ((trained, "(trained: [128, 32])"),
                             (tiny_model_dir, "(it records no trained size; the default list: [128, 64])")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="evaluation.evaluator"):
            evaluate_models([MatryoshkaEmbeddings(str(folder), device="cpu")], tiny_task(4), dims=[100],
                            cache=EmbeddingCache(enabled=False), n_bootstrap=20, n_resamples=20)
        assert expected in caplog.text, caplog.text


def test_a_report_made_from_python_keeps_its_warnings(tiny_embeddings, tmp_path):
    """docs/evaluation.md says report.md and report.json say how many texts were cut at the model's
    window, but a report made with evaluate_models (the documented Python API) left every warning on
    stderr: report.json held "warnings": [] (user tryout)."""
    from medrag.qa.task import IRTask

    long = " ".join(["la ferritine basse traduit une carence en fer"] * 40)
    task = IRTask.from_pairs([("ferritine basse ?", long), ("tsh élevée ?", "La TSH élevée évoque une hypothyroïdie.")],
                             name="long")
    report = evaluate_models([tiny_embeddings], task, dims=[64], cache=EmbeddingCache(enabled=False),
                             n_bootstrap=20, n_resamples=50)
    assert any(w.startswith("1 of 2 passages exceed the window") for w in report.warnings), report.warnings
    assert any("has 2 queries" in w for w in report.warnings)
    report.write(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "report.json").read_text())["warnings"] == report.warnings
    assert "exceed the window" in (tmp_path / "r" / "report.md").read_text()
    again = evaluate_models([tiny_embeddings], task, dims=[64], cache=EmbeddingCache(enabled=False),
                            n_bootstrap=20, n_resamples=50)
    assert again.warnings == report.warnings  # each call its own, not the previous call's too


def test_collecting_a_reports_warnings_leaves_them_on_stderr_once():
    """A script without logging set up saw the library's warnings on stderr (logging's last resort);
    the handler that collects them for the report would have silenced them, and two nested ones
    (evaluate_suite's and its evaluate_models') must not show them twice."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import logging\n"
            "from evaluation.report import WarningLog\n"
            "with WarningLog() as outer, WarningLog() as inner:\n"
            "    logging.getLogger('medrag.store').warning('a library warning')\n"
            "assert outer.messages == inner.messages == ['a library warning']\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("a library warning") == 1
    hidden = ("import logging\nhandler = logging.StreamHandler()\nhandler.setLevel(logging.ERROR)\n"
              "logging.getLogger().addHandler(handler)\n" + code)  # warnings hidden on purpose
    res = subprocess.run([sys.executable, "-c", hidden], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "a library warning" not in res.stderr, res.stderr


def test_a_report_keeps_only_the_warnings_of_its_own_thread():
    """Two evaluations in two threads (or one beside a store serving searches) put each other's
    warnings into their reports: the handler listens to the process-wide loggers (review)."""
    import logging
    import threading

    from evaluation.report import WarningLog

    inside, go_on = threading.Event(), threading.Event()
    other: list[str] = []

    def another_evaluation():
        with WarningLog() as log:
            inside.set()
            go_on.wait(10)
            logging.getLogger("evaluation.cache").warning("the other thread's warning")
        other.extend(log.messages)

    thread = threading.Thread(target=another_evaluation)
    thread.start()
    inside.wait(10)
    with WarningLog() as mine:
        logging.getLogger("medrag.store").warning("this thread's warning")
        go_on.set()
        thread.join(10)
    assert mine.messages == ["this thread's warning"] and other == ["the other thread's warning"]
