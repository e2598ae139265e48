"""evaluation.suite and ``medrag evaluate --suite`` with the tiny model on synthetic fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrag.qa.suite import build_suite

from evaluation.cache import EmbeddingCache
from evaluation.suite import evaluate_suite, macro_paired_test
from tests.conftest import SHARED_DATA, requires_shared
from tests.medrag.french_fixtures import write_data_root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_data_root(tmp_path_factory.mktemp("suite-eval-data"))


def test_macro_paired_test():
    same = macro_paired_test([np.ones(5), np.zeros(3)], [np.ones(5), np.zeros(3)], 500)
    assert same.mean_diff == 0 and same.p_value == 1.0
    t = macro_paired_test([np.full(30, 0.6), np.full(4, 1.0)], [np.full(30, 0.5), np.zeros(4)], 2000)
    # macro = mean of domain means: (0.1 + 1.0) / 2, not the per-query mean (0.2)
    assert t.mean_diff == pytest.approx(0.55) and t.p_value < 0.01
    with pytest.raises(ValueError):
        macro_paired_test([np.ones(2)], [np.ones(3)])


def test_evaluate_suite_macro_and_comparison(root, tiny_embeddings, tmp_path):
    suite = build_suite("val", data_root=root, domains=["frenchmedmcqa", "cases", "abstracts", "sample"])
    cache = EmbeddingCache(tmp_path / "cache")
    report = evaluate_suite([tiny_embeddings, tiny_embeddings], suite, dims=[128, 64], cache=cache,
                            labels=["ref", "other"], n_resamples=200)
    assert report.models == ["ref", "other"] and report.sizes["ref"] == [128, 64]
    choice = ["frenchmedmcqa", "cases", "abstracts"]
    for dim in (128, 64):
        expected = np.mean([report.scores["ref"][d][dim]["ndcg@10"] for d in choice])
        assert report.macro["ref"][dim] == pytest.approx(expected)  # the sample is report-only
        assert report.comparisons["other"]["macro"][dim].mean_diff == 0
    assert cache.misses == 2 * 4 and cache.hits == 2 * 4  # the same model: encoded once per task
    md = report.to_markdown()
    assert "| size | frenchmedmcqa | cases | abstracts | sample * | macro |" in md and "other minus ref" in md
    paths = report.write(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["choice_domains"] == choice and data["macro"]["ref"]["64"] == pytest.approx(report.macro["ref"][64])
    again = evaluate_suite([tiny_embeddings], suite, dims=[64], cache=cache, n_resamples=100)
    assert cache.misses == 8 and again.scores[again.models[0]]["cases"][64] == report.scores["ref"]["cases"][64]


def test_cli_suite(root, tiny_model_dir, tmp_path, capsys):
    from medrag.cli import main

    out = tmp_path / "report"
    rc = main(["evaluate", "--suite", "--pilot", "--max-queries", "4", "--max-passages", "8", "--data-root", str(root),
               "--model", str(tiny_model_dir), "--sizes", "128", "64", "--out", str(out), "--no-cache",
               "--resamples", "100", "--domains", "cases", "leaflets"])
    assert rc == 0
    data = json.loads((out / "suite.json").read_text())
    assert data["pilot"] and data["part"] == "val" and list(data["domains"]) == ["cases", "leaflets"]
    assert all(d["queries"] <= 4 and d["corpus"] <= 8 for d in data["domains"].values())
    assert "--suite" in data["command"] and "macro" in (out / "suite.md").read_text()
    assert main(["evaluate", "--suite", "--data", str(root), "--model", str(tiny_model_dir)]) == 1
    assert main(["evaluate", "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "--suite replaces --data" in err and "give --data" in err


def test_cli_suite_warns_when_a_model_trained_on_frenchmedmcqa_dev(root, tiny_model_dir, tmp_path, caplog):
    """The finetune default trains on FrenchMedMCQA train+dev, and dev is the suite's frenchmedmcqa val:
    311 of its 312 queries were training pairs of such a model, without a word (audit)."""
    import logging
    import shutil

    import yaml

    from medrag.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    args = ["evaluate", "--suite", "--pilot", "--max-queries", "3", "--max-passages", "6", "--data-root", str(root),
            "--model", str(model), "--sizes", "64", "--no-cache", "--resamples", "100", "--domains", "frenchmedmcqa"]
    warning = "was fine-tuned on FrenchMedMCQA's dev.json, the suite's frenchmedmcqa val part"
    for n, (splits, warned) in enumerate(((None, True), (["train", "dev"], True), (["train"], False))):
        config = {"data": str(root / "frenchmedmcqa")} | ({"train_splits": splits} if splits else {})
        (model / "finetune_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="evaluation.cli"):
            assert main(args + ["--out", str(tmp_path / f"report{n}")]) == 0
        assert (warning in caplog.text) is warned, (splits, caplog.text)
        recorded = json.loads((tmp_path / f"report{n}" / "suite.json").read_text())["warnings"]  # not stderr only
        assert any(warning in w for w in recorded) is warned
        assert (warning in (tmp_path / f"report{n}" / "suite.md").read_text()) is warned
    # a relative path recorded by a run in another folder (the shipped configs' ../shared/data/frenchmedmcqa)
    (model / "finetune_config.yaml").write_text(yaml.safe_dump({"data": "../elsewhere/data/frenchmedmcqa"}),
                                                encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evaluation.cli"):
        assert main(args + ["--out", str(tmp_path / "relative")]) == 0
    assert warning in caplog.text
    (model / "finetune_config.yaml").write_text(yaml.safe_dump({"data": str(root / "frenchmedmcqa")}), encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evaluation.cli"):  # the test part is not what it trained on
        assert main(args + ["--part", "test", "--out", str(tmp_path / "test-part")]) == 0
    assert warning not in caplog.text


@requires_shared
@pytest.mark.integration
def test_real_suite_pilot_scores(e5_embeddings, tmp_path):
    suite = build_suite("val", pilot=True, data_root=SHARED_DATA, domains=["leaflets", "cases", "abstracts"],
                        max_queries=20, max_passages=60)
    report = evaluate_suite([e5_embeddings], suite, dims=[384, 64], cache=EmbeddingCache(tmp_path), n_resamples=100)
    label = report.models[0]
    for d in report.domains:
        assert report.scores[label][d][384]["ndcg@10"] > 0.2  # far above chance on every domain
    assert report.macro[label][384] >= report.macro[label][64] - 0.02


def test_a_run_of_report_only_domains_says_what_its_macro_is(root, tiny_model_dir, tmp_path):
    """With --domains sample the macro column was filled with the sample's scores while the footnote
    said report-only domains are not in the macro-average."""
    from medrag.cli import main

    out = tmp_path / "report"
    assert main(["evaluate", "--suite", "--pilot", "--max-queries", "4", "--max-passages", "8",
                 "--model", str(tiny_model_dir), "--sizes", "64", "--out", str(out), "--no-cache",
                 "--resamples", "100", "--domains", "sample"]) == 0  # the sample ships: no --data-root
    text = (out / "suite.md").read_text()
    assert "macro (of report-only domains)" in text and "no choice domain" in text
    assert "not in the macro-average." not in text


def test_the_comparison_table_prints_small_p_values_as_the_reports_do_and_skips_sizes_without_a_test() -> None:
    """The suite printed p=0.000 where the --data report prints <0.001, and a row of empty cells at each
    size the reference model was not scored at (user tryout: a 384-dim model against the 128-dim tiny one)."""
    from evaluation.stats import PairedTest
    from evaluation.suite import SuiteReport

    report = SuiteReport(part="val", pilot=True, domains={"cases": {"report_only": False}}, primary_metric="ndcg@10",
                         models=["ref", "other"], specs={}, fingerprints={}, sizes={"ref": [128, 64], "other": [384, 64]},
                         scores={}, macro={},
                         comparisons={"other": {"cases": {64: PairedTest(0.05, 0.0001, "permutation", 10000)},
                                                "macro": {64: PairedTest(0.05, 0.2, "permutation", 10000)}}})
    table = report.comparison_table("other")
    assert "| 64 | +0.0500 (p=<0.001) | +0.0500 (p=0.200) |" in table and "| 384 |" not in table
