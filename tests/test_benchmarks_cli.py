"""The benchmark scripts' command lines (benchmarks/*.py through benchmarks/_script.py): missing data
or a nonsensical option ends in one line on stderr and exit code 1 or 2, never a traceback; --help
lists user-facing choices only, each option with a help text; default outputs sit in the repository.
No model loads and no real data is read: every run stops at its checks."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks"
SCRIPTS = ("analyzer_ablation", "auto_weight", "chunk_window", "default_model_sweep", "finetune_sweep", "hybrid_benchmark", "index_resume",
           "langchain_anchor", "layer_pool_probe", "lexical_libraries", "lookup_queries", "number_forms", "query_case", "sidecar_layout",
           "store_benchmark", "top_block_probe", "typo_queries", "unaccented_queries")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit code of ``python benchmarks/<name>.py ARGV`` (as its ``__main__`` runs it) and its stderr."""
    module = load(name)
    code = module.run_script(module.main, argv)
    return code, capsys.readouterr().err


def assert_one_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "error: " in err
    for fragment in fragments:
        assert fragment in err, err


def missing_data_args(name: str, missing: Path, tmp_path: Path) -> list[str]:
    return {
        "analyzer_ablation": ["--data-root", str(missing)],
        "auto_weight": ["--data-root", str(missing)],
        "chunk_window": ["--data-root", str(missing)],
        "number_forms": ["--data-root", str(missing)],
        "default_model_sweep": ["--data-root", str(missing)],
        "finetune_sweep": ["--data", str(missing), "--out", str(tmp_path / "out")],
        "hybrid_benchmark": ["--data", str(missing)],
        "index_resume": ["--data", str(missing), "--out", str(tmp_path / "out.json")],
        "langchain_anchor": ["--data-root", str(missing)],
        "layer_pool_probe": ["--candidate", "final=12:40", "--out", str(tmp_path / "out.json"), "--data-root",
                             str(missing)],
        "lexical_libraries": ["--data", str(missing)],
        "lookup_queries": ["--data-root", str(missing)],
        "query_case": ["--data-root", str(missing)],
        "store_benchmark": ["chunks", "--data", str(missing / "medquad.jsonl")],
        "top_block_probe": ["--candidate", "head-h=0", "--out", str(tmp_path / "out.json"), "--data-root", str(missing)],
        "unaccented_queries": ["--data-root", str(missing)],
        "typo_queries": ["--data-root", str(missing)],
    }[name]


@pytest.mark.parametrize("name", [s for s in SCRIPTS if s != "sidecar_layout"])  # the sidecar reads no data
def test_missing_data_is_one_line_and_exit_code_1(name, tmp_path, capsys):
    missing = tmp_path / "no-shared-data"
    code, err = run(name, missing_data_args(name, missing, tmp_path), capsys)
    assert code == 1
    assert_one_line(err, f"{name}.py: error: ", str(missing), "not found", "pass --")


def test_store_benchmark_french_corpus_reads_the_shared_constant(tmp_path, capsys, monkeypatch):
    module = load("store_benchmark")
    monkeypatch.setattr(module, "SHARED_DATA", tmp_path / "shared")
    assert module.run_script(module.main, ["french-recall", "--cache", str(tmp_path / "cache")]) == 1
    assert_one_line(capsys.readouterr().err, str(tmp_path / "shared" / "french-medical-text"))
    assert not (tmp_path / "cache").exists()  # stopped before any work


BAD_VALUES = [
    ("analyzer_ablation", ["--max-queries", "0"], "--max-queries"),
    ("analyzer_ablation", ["--max-passages", "-3"], "--max-passages"),
    ("default_model_sweep", ["--max-passages", "0"], "--max-passages"),
    ("default_model_sweep", ["--check-n", "-1"], "--check-n"),
    ("finetune_sweep", ["--data", "x", "--out", "y", "--repeats", "0"], "--repeats"),
    ("finetune_sweep", ["--data", "x", "--out", "y", "--dims", "384", "0"], "--dims"),
    ("finetune_sweep", ["--data", "x", "--out", "y", "--max-steps", "0"], "--max-steps"),
    ("finetune_sweep", ["--data", "x", "--out", "y", "--recipes", "nope"], "--recipes"),
    ("hybrid_benchmark", ["--n", "0"], "--n"),
    ("hybrid_benchmark", ["--queries", "-5"], "--queries"),
    ("hybrid_benchmark", ["--n", "10", "--queries", "20"], "--queries"),
    ("hybrid_benchmark", ["--k", "0"], "--k"),
    ("index_resume", ["--out", "x", "--chunks", "0"], "--chunks"),
    ("index_resume", ["--out", "x", "--kills", "-1"], "--kills"),
    ("langchain_anchor", ["--sizes", "384", "0"], "--sizes"),
    ("langchain_anchor", ["--weight", "2"], "--weight"),
    ("layer_pool_probe", ["--candidate", "final=12:40", "--out", "x", "--max-passages", "0"], "--max-passages"),
    ("layer_pool_probe", ["--candidate", "x", "--out", "x"], "--candidate"),
    ("top_block_probe", ["--candidate", "x", "--out", "x"], "--candidate"),
    ("top_block_probe", ["--candidate", "a=1:0", "--out", "x"], "--candidate"),
    ("top_block_probe", ["--candidate", "a=1:1e-4:1e-4:-2", "--out", "x"], "--candidate"),
    ("top_block_probe", ["--candidate", "a=0", "--candidate", "a=1", "--out", "x"], "--candidate"),
    ("top_block_probe", ["--candidate", "a=0", "--out", "x", "--threads", "0"], "--threads"),
    ("lexical_libraries", ["--n", "0"], "--n"),
    ("lexical_libraries", ["--n", "5", "--queries", "6"], "--queries"),
    ("sidecar_layout", ["--rows", "0"], "--rows"),
    ("sidecar_layout", ["--k", "-1"], "--k"),
    ("sidecar_layout", ["--rows", "10", "--k", "20"], "--k"),
    ("sidecar_layout", ["--sizes", "388", "0"], "--sizes"),
    ("store_benchmark", ["synthetic", "--n", "0"], "--n"),
    ("store_benchmark", ["layouts", "--candidates", "0"], "--candidates"),
    ("store_benchmark", ["run", "--sizes", "10000,0"], "--sizes"),
    ("store_benchmark", ["french-recall", "--coarse", "0,64"], "--coarse"),
    ("store_benchmark", ["french-recall", "--chunks", "-1"], "--chunks"),
    ("store_benchmark", ["pack", "--out", "x", "--check", "-1"], "--check"),
    ("query_case", ["--max-passages", "0"], "--max-passages"),
    ("unaccented_queries", ["--max-queries", "0"], "--max-queries"),
    ("unaccented_queries", ["--weight", "1.5"], "--weight"),
    ("unaccented_queries", ["--weight", "automatic"], "--weight"),
    ("auto_weight", ["--pilots", "300"], "--pilots"),
    ("auto_weight", ["--pilots", "0x3000"], "--pilots"),
    ("auto_weight", ["--lows", "1.2"], "--lows"),
    ("number_forms", ["--window", "1"], "--window"),
    ("chunk_window", ["--probe-docs", "-1"], "--probe-docs"),
    ("chunk_window", ["--query-words", "0"], "--query-words"),
    ("typo_queries", ["--weight", "2"], "--weight"),
    ("typo_queries", ["--max-queries", "0"], "--max-queries"),
]


@pytest.mark.parametrize("name,argv,option", BAD_VALUES, ids=[f"{n}{' '.join(a)}" for n, a, _ in BAD_VALUES])
def test_nonsensical_values_are_refused_naming_the_option(name, argv, option, capsys):
    code, err = run(name, argv, capsys)
    assert code == 2
    assert_one_line(err, f"{name}.py", option, "--help")


def parsers_of(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> list[argparse.ArgumentParser]:
    """The parser ``main`` builds (and its subcommands'), caught at ``parse_args``."""
    module = load(name)
    seen: list[argparse.ArgumentParser] = []

    def catch(self, args=None, namespace=None):
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(module.ScriptParser, "parse_args", catch)
    assert module.run_script(module.main, argv) == 0
    parser = seen[0]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for s in subs for p in s.choices.values())]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_a_help_text(name, monkeypatch):
    for parser in parsers_of(name, [], monkeypatch):
        bare = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
        assert bare == [], f"{parser.prog}: {bare}"


@pytest.mark.parametrize("name", ["analyzer_ablation", "hybrid_benchmark", "langchain_anchor", "query_case",
                                  "unaccented_queries"])
def test_default_out_is_in_the_repository(name, monkeypatch):
    out = parsers_of(name, [], monkeypatch)[0].get_default("out")
    assert Path(out).is_absolute() and Path(out).parent == REPO / "benchmarks" / "results"


def help_text(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    module = load(name)
    assert module.run_script(module.main, ["--help"]) == 0
    return capsys.readouterr().out


def test_help_shows_defaults(capsys):
    out = " ".join(help_text("hybrid_benchmark", capsys).split())
    assert "passages indexed (default: 100000)" in out
    assert "results per search (default: 10)" in out


def test_store_benchmark_help_lists_user_facing_commands_only(capsys):
    out = help_text("store_benchmark", capsys)
    assert "french-recall" in out and "synthetic" in out
    assert not re.search(r"(?<![\w-])_[a-z]", out), out
    code, err = run("store_benchmark", ["nope"], capsys)
    assert code == 2 and "_measure" not in err and "_synthetic_one" not in err
    assert_one_line(err, "invalid choice")


def test_store_benchmark_still_parses_its_internal_commands():
    module = load("store_benchmark")
    args = module.internal_parser().parse_args(
        ["_measure", "--method", "a", "--cache", "c", "--data", "d", "--workdir", "w", "--result", "r",
         "--candidates", "10,20", "--n", "5", "--coarse-dim", "4", "--queries", "3", "--batch", "2"])
    assert (args.cmd, args.n, args.candidates) == ("_measure", 5, "10,20")
    assert "_measure" not in module.build_parser().format_help()


@pytest.fixture
def no_heavy_work(monkeypatch):
    """default_model_sweep's suite and base model must not load: everything cheap is checked first."""
    import medrag.qa.suite

    def refuse(*args, **kwargs):
        raise AssertionError("the suite loaded before the arguments were checked")

    monkeypatch.setattr(medrag.qa.suite, "build_suite", refuse)


@pytest.mark.parametrize("argv,fragment", [
    (["--candidate", "nameonly"], "NAME=DIR"),
    (["--candidate", "a=/nonexistent/model"], "no modules.json"),
    (["--interpolate", "a=/nonexistent/model:0.5"], "no modules.json"),
    (["--interpolate", "a=dir:2"], "ALPHA"),
    (["--check-model", "/nonexistent/model"], "--check-model"),
    (["--train-config", "/nonexistent.yaml"], "--train-config"),
    (["--domains", "nope"], "--domains"),
])
def test_default_model_sweep_checks_arguments_before_loading(argv, fragment, capsys, no_heavy_work):
    code, err = run("default_model_sweep", argv, capsys)
    assert code == 2
    assert_one_line(err, fragment)


def test_default_model_sweep_refuses_a_candidate_without_a_head_before_loading(tmp_path, capsys, no_heavy_work):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Transformer",
                                                      "path": ""}]))
    code, err = run("default_model_sweep", ["--candidate", f"a={folder}"], capsys)
    assert code == 1
    assert_one_line(err, "no Dense layer")


def test_run_script_turns_failures_into_one_line(capsys):
    sys.path.insert(0, str(BENCH))
    try:
        import _script
    finally:
        sys.path.remove(str(BENCH))
    from medrag.errors import StoreError

    def failing(error: BaseException):
        def main(argv=None):
            raise error
        return main

    cases = [(StoreError("the store\nis locked"), 1, "the store is locked"),
             (FileNotFoundError(2, "No such file or directory", "/x"), 1, "No such file or directory (/x)"),
             (SystemExit("only 3 passages"), 1, "only 3 passages"),
             (subprocess.CalledProcessError(3, ["python", "child"]), 1, "exit code 3"),
             (KeyboardInterrupt(), 130, "interrupted")]
    for error, code, message in cases:
        assert _script.run_script(failing(error)) == code
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert _script.run_script(failing(SystemExit(2))) == 2
    assert _script.run_script(lambda argv=None: 0) == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        _script.run_script(failing(ZeroDivisionError()))


def test_scripts_run_from_another_folder_end_in_one_line(tmp_path):
    """The real command line, run from outside the repository: no traceback either way."""
    script = str(BENCH / "hybrid_benchmark.py")
    bad = subprocess.run([sys.executable, script, "--n", "0"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert_one_line(bad.stderr, "--n")
    missing = subprocess.run([sys.executable, script, "--data", str(tmp_path / "none")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert_one_line(missing.stderr, str(tmp_path / "none"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_docstrings_cite_files_of_the_repository(name):
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split())
    if not tracked:
        pytest.skip("not a git checkout")
    tree = ast.parse((BENCH / f"{name}.py").read_text(encoding="utf-8"))
    docs = " ".join(ast.get_docstring(n) or "" for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)))
    cited = re.findall(r"(?<![\w/.$])((?:benchmarks|docs|configs|medrag|tests)/[\w./-]+\.(?:json|md|yaml|py))", docs)
    assert [c for c in cited if c not in tracked] == []


def test_unaccented_queries_folds_the_queries_only():
    from medrag.qa.suite import SuiteDomain, ValidationSuite
    from medrag.qa.task import IRTask

    task = IRTask({"q1": "Créatinine élevée ?"}, {"d1": "La créatinine élevée.", "d2": "Fièvre"}, {"q1": {"d1"}}, "t")
    suite = ValidationSuite("val", True, {"leaflets": SuiteDomain("leaflets", task),
                                          "sample": SuiteDomain("sample", task, report_only=True)})
    folded = load("unaccented_queries").unaccented(suite)
    assert folded.domains["leaflets"].task.queries == {"q1": "Creatinine elevee ?"}
    assert folded.domains["leaflets"].task.corpus == task.corpus and folded.domains["leaflets"].task.qrels == task.qrels
    assert folded.domains["sample"].report_only and folded.part == "val" and folded.pilot
    assert task.queries == {"q1": "Créatinine élevée ?"}  # the original suite is untouched


def _tiny_task():
    from medrag.qa.task import IRTask

    corpus = {"fer": "La ferritine basse signe une anémie par carence en fer.", "ains": "Les AINS et l'ulcère.",
              "tsh": "La TSH explore la thyroïde."}
    return IRTask({"q1": "Anémie et fer ?", "q2": "AINS"}, corpus, {"q1": {"fer"}, "q2": {"ains"}}, "t")


def test_query_case_scores_the_retyped_queries_with_and_without_the_other_case_reading():
    module = load("query_case")
    task = _tiny_task()
    reading, plain = module.BM25Index(), module.AnalyzerTermsIndex()
    for index in (reading, plain):
        index.add(list(task.corpus), list(task.corpus.values()))
    capitals = module.FORMS["capitals"]
    assert capitals("Anémie et fer ?") == "ANÉMIE ET FER ?" and module.FORMS["lowercase"]("AINS") == "ains"
    assert plain.query_terms("ANÉMIE") == [] and reading.query_terms("ANÉMIE") == ["anem"]
    runs = module.top10(task, reading, capitals)
    assert runs == [["fer"], ["ains"]] and module.ndcg(task, runs) == 1.0
    assert module.ndcg(task, module.top10(task, plain, module.FORMS["lowercase"])) == 0.5  # 'ains' -> 'ain'
    assert module.overlap([["a", "b"]], [["b", "c"]]) == 0.5 and module.overlap([[]], [[]]) == 1.0


def test_analyzer_ablation_whitespace_index_scores_a_task():
    """The whitespace baseline replaces the index's analyzer: it must answer everything BM25Index asks."""
    module = load("analyzer_ablation")
    task = _tiny_task()
    assert module.lexical_ndcg(task, module.WhitespaceIndex()) == 0.5  # 'Anémie' is not 'anémie'
    assert module.lexical_ndcg(task, module.BM25Index()) == 1.0


def test_auto_weight_scores_fixed_and_auto_settings_on_the_same_candidates(tiny_embeddings):
    """Fixed weights and "auto" ranges ranked as the store fuses them; the rule's summary per setting."""
    from medrag.qa.suite import SuiteDomain, ValidationSuite
    from tests.evaluation.helpers import tiny_task

    module = load("auto_weight")
    assert module.pilot_size("300x3000") == (300, 3000) and module.label((0.2, 0.4)) == "auto 0.2-0.4"
    suite = ValidationSuite("val", True, {"a": SuiteDomain("a", _tiny_task()), "b": SuiteDomain("b", tiny_task(4)),
                                          "s": SuiteDomain("s", tiny_task(3), report_only=True)})
    scores = module.score_pilot(tiny_embeddings, suite, [0.0, 1.0, (0.2, 0.2), (0.2, 0.4)], sizes=(64, 32))
    confidence = scores.pop("confidence")
    assert set(confidence) == {"a", "b", "s"} and all(0 <= c["p10"] <= c["p50"] <= c["p90"] <= 1 for c in confidence.values())
    assert set(scores) == {"dense", "fixed 0", "fixed 1", "auto 0.2-0.2", "auto 0.2-0.4"}
    assert scores["fixed 0"] == scores["dense"]  # weight 0 is dense-only, candidate for candidate
    summary = module.summarise(scores, ["a", "b"], sizes=(64, 32), rule_sizes=(64,))
    assert summary["dense"]["worst_drop"]["drop"] == 0.0
    assert summary["fixed 1"]["macro"]["64"] == pytest.approx(
        (scores["fixed 1"]["a"]["64"] + scores["fixed 1"]["b"]["64"]) / 2)
    assert scores["fixed 1"]["a"]["64"] == 1.0  # BM25 alone answers the tiny lexical task


def test_number_forms_retypes_numbers_and_units_and_version_4_reads_them_apart():
    module = load("number_forms")
    spaced, unspaced = module.SPACED.search("sur 10 000 patients"), module.UNSPACED.search("1000 mg")
    assert module.retype(spaced) == "10000" and module.retype(unspaced) == "1 000"
    assert module.UNSPACED.search("1000mg")  # a unit glued after it is still a number
    for not_a_dose in ("en 2010", "ISO 17025:2005", "ref 12553I", "YS-1-18097-A"):  # years, codes
        assert module.UNSPACED.search(not_a_dose) is None, not_a_dose
    assert [module.retype_per_day(f) for f in ("/j", "/jour", " par jour")] == [" par jour", "/j", "/j"]
    assert module.retype_hours(" h") == " heures" and module.retype_hours(" heures") == " h"
    text = "La dose est de 3 g/j pendant 24 h puis 100 000 UI par mois."
    items = {i["kind"]: i for i in module.known_items({"a": text, "b": "Sans nombre."}, 6)}
    assert set(items) == {"spaced", "per day", "hours"}
    assert items["spaced"]["written"] == "24 h puis 100 000 UI par mois." and "100000 UI" in items["spaced"]["retyped"]
    assert "3 g par jour pendant" in items["per day"]["retyped"] and "24 heures puis" in items["hours"]["retyped"]
    assert module.known_items({"a": "un deux trois quatre 10 000 UI"}, 2)[0]["written"] == "quatre 10 000 UI"
    v4, v6 = module.version4_index(), module.BM25Index()
    assert v4.analyzer("100 000 UI, 3 g/j") == ["100", "000", "ui", "3", "g", "j"]
    assert v6.analyzer("100 000 UI, 3 g/j") == ["100000", "ui", "3", "g", "jour"]
    for index in (v4, v6):
        index.add(["a", "b"], [text, "tout autre chose"])
    assert module.score(v4, list(items.values()), "written") == {"recall@1": 1.0, "mrr@10": 1.0, "n": 3}
    retyped = items["spaced"]["retyped"]
    assert "100000" in v6.query_terms(retyped) and "100000" not in v4.query_terms(retyped)


def test_chunk_window_counts_and_probes_a_small_corpus(tiny_model_dir, tmp_path, capsys):
    """The tiny model's window is 64 tokens: word-count chunks of 120 words overflow it, chunks cut to
    it do not, and the probe's queries (sentences beyond the window) are found where they are encoded."""
    import gzip
    import json

    folder = tmp_path / "data" / "french-medical-text"
    folder.mkdir(parents=True)
    sentences = [f"La posologie numero {i} du produit {chr(97 + i % 26)} est de {i} mg par jour chez l'adulte."
                 for i in range(60)]
    rows = {"drug_leaflets.jsonl.gz": [{"product": f"PRODUIT {d}", "text": " ".join(sentences[d * 20:(d + 1) * 20])}
                                       for d in range(3)],
            "clinical_cases_pamj.jsonl.gz": [{"text": "Un patient de 40 ans. Il a de la fièvre."}],
            "pubmed_abstracts_morfitt.jsonl.gz": [{"text": "Une étude. Elle conclut."}]}
    for name, items in rows.items():
        with gzip.open(folder / name, "wt", encoding="utf-8") as f:
            f.write("\n".join(json.dumps(r) for r in items))
    out = tmp_path / "out.json"
    code, err = run("chunk_window", ["--data-root", str(tmp_path / "data"), "--model", str(tiny_model_dir),
                                     "--probe-docs", "3", "--query-words", "8", "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    leaflets = result["corpora"]["leaflets"]
    assert result["window"] == 64 and leaflets["documents_with_a_chunk_over"] == 3
    assert leaflets["words only (before)"]["over_window"] > 0 and leaflets["cut to the window (now)"]["over_window"] == 0
    assert leaflets["words only (before)"]["words_never_encoded"] > 0
    assert leaflets["cut to the window (now)"]["chunks"] > leaflets["words only (before)"]["chunks"]
    probe = result["probe"]
    assert probe["queries"] > 0 and probe["documents"] == 3
    assert probe["cut to the window (now)"]["recall@10"] >= probe["words only (before)"]["recall@10"]


def test_typo_queries_misspell_the_rarest_held_word_of_each_query():
    import random

    from medrag.qa.suite import SuiteDomain, ValidationSuite
    from medrag.qa.task import IRTask

    module = load("typo_queries")
    for seed in range(50):
        word = module.typo("amoxicilline", random.Random(seed))
        assert word != "amoxicilline" and word[0] == "a" and abs(len(word) - 12) <= 1
    corpus = {"d1": "La metformine et le diabète.", "d2": "Le diabète chez le patient.", "d3": "Le patient et la glycémie."}
    task = IRTask({"q1": "Diabète traité par metformine", "q2": "ANTIBIOTIQUES du foie", "q3": "le foie"},
                  corpus, {"q1": {"d1"}, "q2": {"d2"}, "q3": {"d3"}}, "t")
    suite = ValidationSuite("val", True, {"cases": SuiteDomain("cases", task)})
    written, typed = module.misspelt(suite, seed=1)
    # q1: 'metformine' (held by one passage) is rarer than 'diabète' (two); q2 has only a word in capitals
    # and a short one, q3 no word of 7 letters: both left out
    assert list(typed.domains["cases"].task.queries) == ["q1"] == list(written.domains["cases"].task.queries)
    misspelt = typed.domains["cases"].task.queries["q1"]
    assert misspelt.startswith("Diabète traité par m") and "metformine" not in misspelt
    assert typed.domains["cases"].task.qrels == {"q1": {"d1"}} and task.queries["q1"] == "Diabète traité par metformine"
    assert module.misspelt(suite, seed=1)[1].domains["cases"].task.queries == typed.domains["cases"].task.queries


def test_lookup_queries_counts_the_queries_made_mostly_of_codes():
    from medrag.qa.suite import SuiteDomain, ValidationSuite
    from medrag.qa.task import IRTask

    task = IRTask({"q1": "ATC N02BE01", "q2": "Que soigne le paracétamol ?", "q3": "3400000000000"},
                  {"p1": "Paracétamol, code ATC N02BE01.", "p2": "Le paracétamol soigne la douleur."},
                  {"q1": {"p1"}, "q2": {"p2"}, "q3": {"p1"}}, name="t")
    counted = load("lookup_queries").count_lookups(ValidationSuite("val", False, {"x": SuiteDomain("x", task)}))
    assert counted["x"]["lookups"] == 1 and counted["x"]["lookups_with_holders"] == 1  # q3: no passage holds it
    assert counted["x"]["examples"] == [{"query": "q1", "codes": ["n02be01"], "holders": 1}]
