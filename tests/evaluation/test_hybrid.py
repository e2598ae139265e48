"""Lexical / dense / hybrid evaluation: fusion extremes, a task where the lexical side must help, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.hybrid import evaluate_hybrid
from medrag.cli import main
from medrag.errors import InvalidInputError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.qa.task import IRTask

from .helpers import tiny_task

ANSWERS = [
    "L'HbA1c reflète l'équilibre glycémique des trois derniers mois.",
    "La TSH est le premier examen de la fonction thyroïdienne.",
    "Sous AVK, l'INR cible est habituellement entre 2 et 3.",
    "La ferritine basse signe une carence martiale.",
    "La metformine est le traitement de première intention du diabète de type 2.",
    "La troponine s'élève dans l'infarctus du myocarde.",
]
QUESTIONS = ["Que mesure l'HbA1c chez le diabétique ?", "Quel examen pour la thyroïde ?", "Quel INR sous AVK ?",
             "Que signifie une ferritine basse ?", "Premier traitement du diabète de type 2 ?",
             "Quel marqueur de l'infarctus ?"]


def _task() -> IRTask:
    return IRTask.from_pairs(zip(QUESTIONS, ANSWERS), name="lexical-friendly")


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_lexical_helps_random_dense_and_extremes_reproduce_each_side() -> None:
    task = _task()
    q, d = _vectors(6, 64, 0), _vectors(6, 64, 1)  # dense vectors carry no signal
    res = evaluate_hybrid(task, q, d, [64, 32], weights=[0.0, 0.5, 1.0], metrics=["ndcg@10", "recall@1"])
    assert res.score("lexical") == pytest.approx(1.0)
    for dim in (64, 32):
        assert res.score("hybrid", dim, 0.0) == pytest.approx(res.score("dense", dim))
        assert res.score("hybrid", dim, 1.0) == pytest.approx(res.score("lexical"))
        assert res.score("hybrid", dim, 0.5) > res.score("dense", dim)
    table = res.to_markdown()
    assert "| 64 |" in table and "hybrid w=0.5" in table
    assert json.dumps(res.to_dict())  # serialisable


def test_perfect_dense_is_kept_at_small_weight() -> None:
    task = _task()
    q = _vectors(6, 32, 2)
    res = evaluate_hybrid(task, q, q.copy(), [32], weights=[0.2], metrics=["ndcg@10"])
    assert res.score("dense", 32) == pytest.approx(1.0)
    assert res.score("hybrid", 32, 0.2) == pytest.approx(1.0)


def test_analyzer_options_change_lexical() -> None:
    task = IRTask.from_pairs([("diabétiques", "Le diabète de l'adulte."), ("thyroïde", "La TSH est basse.")])
    q, d = _vectors(2, 8, 3), _vectors(2, 8, 4)
    stemmed = evaluate_hybrid(task, q, d, [8], weights=[0.5], metrics=["recall@1"])
    raw = evaluate_hybrid(task, q, d, [8], weights=[0.5], metrics=["recall@1"],
                          options=AnalyzerOptions(stem=False))
    assert stemmed.score("lexical", metric="recall@1") > raw.score("lexical", metric="recall@1")
    assert stemmed.analyzer["signature"] != raw.analyzer["signature"]


def test_bad_arguments() -> None:
    task = _task()
    q = _vectors(6, 8, 0)
    with pytest.raises(ValueError):
        evaluate_hybrid(task, q, q, [8], weights=[1.5])
    with pytest.raises(ValueError):
        evaluate_hybrid(task, q, q, [8], method="combmnz")
    with pytest.raises(ValueError):
        evaluate_hybrid(task, q[:2], q, [8])


def test_the_depth_follows_a_deep_metric() -> None:
    """recall@200 with --hybrid failed after the whole dense evaluation: "depth 100 is below the
    deepest metric cut-off 200", a depth no flag sets (user tryout)."""
    task = _task()
    q, d = _vectors(6, 8, 0), _vectors(6, 8, 1)
    res = evaluate_hybrid(task, q, d, [8], weights=[0.5], metrics=["ndcg@10", "recall@200"])
    assert res.depth == 200 and res.score("lexical", metric="recall@200") == pytest.approx(1.0)
    assert evaluate_hybrid(task, q, d, [8], weights=[0.5], metrics=["ndcg@10"]).depth == 100
    # the heading said "over 200+200 candidates" on a corpus of fewer passages (user tryout)
    assert f"over all {len(task.corpus)} passages;" in res.to_markdown() and "200+200" not in res.to_markdown()
    with pytest.raises(ValueError, match="depth 50 is below the deepest metric cut-off 200"):
        evaluate_hybrid(task, q, d, [8], depth=50, metrics=["recall@200"])


def _evaluate_argv(model_dir, tmp_path) -> list[str]:
    """``medrag evaluate --hybrid`` on a pairs file of a tiny task (report in ``tmp_path / "r"``)."""
    task = tiny_task(6)
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"anchor": task.queries[q], "positive": task.corpus[d]}, ensure_ascii=False)
                              for q, ds in task.qrels.items() for d in ds), encoding="utf-8")
    return ["evaluate", "--model", str(model_dir), "--data", str(path), "--split", "all", "--out", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "20", "--no-plot", "--device", "cpu", "--hybrid"]


def test_cli_hybrid(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "r"
    argv = [*_evaluate_argv(tiny_model_dir, tmp_path),
            "--lexical-weight", "0.2", "0.5", "--fusion", "minmax", "--analyzer", "keep_acronyms=true"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lexical, dense and hybrid" in printed and "hybrid w=0.2" in printed
    data = json.loads((out / "report.json").read_text())
    hyb = next(iter(data["hybrid"].values()))
    assert hyb["method"] == "minmax" and set(hyb["hybrid"]) == {"0.2", "0.5"}
    assert hyb["analyzer"]["options"]["keep_acronyms"] is True
    assert "--hybrid" in data["command"]
    assert "Lexical, dense and hybrid" in (out / "report.md").read_text()


def test_cli_bad_analyzer_option(tiny_model_dir, tmp_path) -> None:
    from medrag.errors import DataError

    from evaluation.cli import analyzer_options

    assert analyzer_options(["stem=false", "extra_stopwords=patient,cas"]) == AnalyzerOptions(
        stem=False, extra_stopwords=("cas", "patient"))
    with pytest.raises(DataError):
        analyzer_options(["stemming=false"])
    with pytest.raises(DataError):
        analyzer_options(["stem=maybe"])


def test_hybrid_suite_macro_and_worst_drop(tiny_embeddings) -> None:
    from evaluation.cache import EmbeddingCache
    from evaluation.hybrid import evaluate_hybrid_suite
    from medrag.qa.suite import SuiteDomain, ValidationSuite

    suite = ValidationSuite("val", False, {"a": SuiteDomain("a", _task()), "b": SuiteDomain("b", tiny_task(4)),
                                           "s": SuiteDomain("s", tiny_task(3), report_only=True)})
    res = evaluate_hybrid_suite(tiny_embeddings, suite, [128, 64], weights=[0.0, 0.5],
                                cache=EmbeddingCache(enabled=False), metrics=["ndcg@10"])
    assert res.choice_domains == ["a", "b"] and res.sizes == [128, 64]
    expected = (res.domains["a"].score("hybrid", 64, 0.5) + res.domains["b"].score("hybrid", 64, 0.5)) / 2
    assert res.macro("hybrid", 64, 0.5) == pytest.approx(expected)
    assert res.worst_drop(0.0)[0] == pytest.approx(0.0)
    drop, domain, dim = res.worst_drop(0.5)
    # every set counts against a default weight, the report-only one too
    drops = {(d, n): res.domains[d].score("dense", n) - res.domains[d].score("hybrid", n, 0.5)
             for d in ("a", "b", "s") for n in (128, 64)}
    assert (domain, dim) in drops and drop == pytest.approx(max(drops.values()))
    assert "macro ndcg@10 over a, b" in res.to_markdown() and json.dumps(res.to_dict())
    assert res.recommended_weight(max_drop=1.0) in (0.0, 0.5)
    assert res.recommended_weight(max_drop=-1.0) is None


def test_cli_suite_hybrid(tiny_model_dir, tmp_path, capsys) -> None:
    from tests.medrag.french_fixtures import write_data_root

    root = write_data_root(tmp_path / "data")
    out = tmp_path / "report"
    rc = main(["evaluate", "--suite", "--pilot", "--max-queries", "4", "--max-passages", "8", "--data-root", str(root),
               "--model", str(tiny_model_dir), "--sizes", "128", "64", "--out", str(out), "--no-cache",
               "--resamples", "100", "--domains", "cases", "leaflets", "--hybrid", "--lexical-weight", "0.2", "0.6"])
    assert rc == 0
    data = json.loads((out / "hybrid_suite.json").read_text())
    assert data["choice_domains"] == ["cases", "leaflets"] and set(data["macro"]["hybrid"]) == {"0.2", "0.6"}
    assert "recommended_weight" in data and "Best macro" in (out / "hybrid_suite.md").read_text()
    assert "Lexical, dense and hybrid on the suite" in capsys.readouterr().out
    # an archived hybrid_suite.json said neither which model nor which pilot caps made it (user tryout)
    suite = json.loads((out / "suite.json").read_text())
    assert data["model"] == suite["models"][0] and data["fingerprint"] == suite["fingerprints"][data["model"]]
    assert data["spec"] == suite["specs"][data["model"]] and data["command"] == suite["command"]
    assert "--max-passages 8" in data["command"]
    for domain in ("cases", "leaflets"):  # as suite.json names them: "[pilot 4x8]" where the caps cut a set
        assert data["tasks"][domain] == {k: suite["domains"][domain][k] for k in ("name", "queries", "corpus")}
        assert f"{suite['domains'][domain]['name']}: " in (out / "hybrid_suite.md").read_text()
    assert any("[pilot 4x8]" in t["name"] for t in data["tasks"].values())
    # --primary-metric decides the hybrid tables and the weight too (they stayed on ndcg@10: user tryout)
    rc = main(["evaluate", "--suite", "--pilot", "--max-queries", "4", "--max-passages", "8", "--data-root", str(root),
               "--model", str(tiny_model_dir), "--sizes", "128", "64", "--out", str(tmp_path / "mrr"), "--no-cache",
               "--resamples", "100", "--domains", "cases", "leaflets", "--hybrid", "--primary-metric", "mrr@10"])
    assert rc == 0
    data = json.loads((tmp_path / "mrr" / "hybrid_suite.json").read_text())
    assert data["metric"] == "mrr@10" and "macro mrr@10 over" in (tmp_path / "mrr" / "hybrid_suite.md").read_text()


def test_auto_weight_is_scored_beside_the_numbers() -> None:
    """``"auto"`` scores each query at the weight the store would fuse it with: between the range's ends (no
    query of this task is an identifier lookup: "Que mesure l'HbA1c ?" was one, and put its holders first)."""
    from evaluation.hybrid import weight_label, weight_order
    from medrag.lexical.fusion import AUTO_WEIGHT_RANGE

    task = _task()
    q, d = _vectors(6, 64, 0), _vectors(6, 64, 1)
    low, high = AUTO_WEIGHT_RANGE
    res = evaluate_hybrid(task, q, d, [64], weights=["auto", low, high, "auto"], metrics=["ndcg@10"])
    assert sorted(res.hybrid, key=weight_order) == [low, high, "auto"]  # "auto" once, after the numbers
    assert res.score("hybrid", 64, low) <= res.score("hybrid", 64, "auto") <= res.score("hybrid", 64, high)
    assert "hybrid w=auto" in res.to_markdown() and set(res.to_dict()["hybrid"]) == {str(low), str(high), "auto"}
    assert res.to_dict()["auto_weight_range"] == [low, high]  # a report says which range "auto" was
    assert "auto_weight_range" not in evaluate_hybrid(task, q, d, [64], weights=[0.2]).to_dict()
    assert weight_label(0.2) == "0.2" and weight_label("auto") == "auto"
    with pytest.raises(InvalidInputError, match="'auto'"):
        evaluate_hybrid(task, q, d, [64], weights=["automatic"])


def test_cli_lexical_weight_auto(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "r"
    base = _evaluate_argv(tiny_model_dir, tmp_path)
    assert main([*base, "--lexical-weight", "0.2", "AUTO"]) == 0
    hyb = next(iter(json.loads((out / "report.json").read_text())["hybrid"].values()))
    assert set(hyb["hybrid"]) == {"0.2", "auto"} and "hybrid w=auto" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([*base, "--lexical-weight", "high"])
    assert exc.value.code == 2 and "pass a number in [0, 1] (0 = dense only) or auto, got 'high'" in capsys.readouterr().err
