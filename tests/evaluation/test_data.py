"""Evaluation tasks from FrenchMedMCQA folders, pairs files, through the finetune loaders."""

from __future__ import annotations

import json

import pytest

from medrag.errors import DataError

from evaluation.data import load_task
from tests.conftest import SHARED_DATA, requires_shared

RECORDS = [
    {"id": "1", "question": "Quel organe produit l'insuline ?", "answers": {"a": "Le foie", "b": "Le pancréas"},
     "correct_answers": ["b"]},
    {"id": "2", "question": "Quels sont des anticoagulants ?",
     "answers": {"a": "L'héparine", "b": "La warfarine", "c": "Le paracétamol"}, "correct_answers": ["b", "a"]},
    {"id": "3", "question": "Quel organe produit le glucagon ?", "answers": {"a": "Le pancréas", "b": "Le rein"},
     "correct_answers": ["a"]},
]


def test_frenchmedmcqa_folder(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(RECORDS[:1]), encoding="utf-8")
    task = load_task(tmp_path)
    # 3 questions; "Le pancréas" answers two of them and is one document; options joined in letter order
    assert len(task.queries) == 3 and len(task.corpus) == 2
    assert sorted(task.corpus.values()) == ["L'héparine; La warfarine", "Le pancréas"]
    assert sum(len(v) for v in task.qrels.values()) == 3
    assert task.name == f"{tmp_path.name}/test"
    assert len(load_task(tmp_path, split="dev").queries) == 1
    assert len(load_task(tmp_path, limit=1).queries) == 1
    with pytest.raises(DataError, match="train.json"):
        load_task(tmp_path, split="train")


def test_pairs_file_held_out_share_and_all(tmp_path):
    rows = [{"anchor": f"question {i}", "positive": f"réponse {i}"} for i in range(40)]
    rows.append({"anchor": "question 0", "positive": "autre réponse"})  # a question with two answers
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    everything = load_task(path, split="all")
    assert len(everything.queries) == 40 and len(everything.corpus) == 41
    held = load_task(path)  # the 10% of questions that finetune holds out, with the same seed
    assert len(held.queries) == 4
    from medrag.qa import load_qa_dataset

    ft = load_qa_dataset(path)
    assert set(held.queries.values()) == {p.question for p in ft.eval}
    assert load_task(path, split_seed=7).queries != held.queries
    assert len(load_task(path, eval_fraction=0.5).queries) == 20
    # 0 was "the file is too small", 1 named the Python parameter alone, 0.99 spoke of training pairs
    # (user tryout)
    for share in (0, 1):
        with pytest.raises(DataError, match=r"eval_fraction \(--eval-fraction\) is the held-out share .* got "
                                            rf"{share}; to score every pair: split='all' \(--split all\)"):
            load_task(path, eval_fraction=share)
    with pytest.raises(DataError, match="eval_fraction 0.99 holds out every one of its 40 question.s., leaving none "
                                        r"to train on: lower it \(--eval-fraction\)"):
        load_task(path, eval_fraction=0.99)


def test_other_formats_and_columns(tmp_path):
    other = tmp_path / "qa.csv"
    other.write_text('q,doc\n"x, 1",y\nz,w\n', encoding="utf-8")
    task = load_task(other, split="all", question_column="q", answer_column="doc")
    assert sorted(task.queries.values()) == ["x, 1", "z"]
    with pytest.raises(DataError, match="anchor"):
        load_task(other, split="all")


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="not found"):
        load_task("no-such-thing")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError):
        load_task(bad, split="all")
    with pytest.raises(DataError, match="limit"):
        load_task(bad, limit=0)
    # a folder holding a pairs file: named as such (user tryout: "drop --question-column", then "a folder of
    # splits", then "no test.json")
    with pytest.raises(DataError, match="neither a BEIR folder .* nor a FrenchMedMCQA folder .*; pass one file of "
                                        "pairs, e.g. .*/bad.jsonl"):
        load_task(tmp_path)
    (tmp_path / "dev.json").write_text("[]")
    with pytest.raises(DataError, match="no test.json"):  # a FrenchMedMCQA folder without the split asked
        load_task(tmp_path)


@requires_shared
def test_real_frenchmedmcqa_test_split():
    task = load_task(SHARED_DATA / "frenchmedmcqa")
    assert (len(task.queries), len(task.corpus)) == (620, 618)
    assert task.name == "frenchmedmcqa/test"
    from medrag.qa import load_frenchmedmcqa

    assert task.content_hash() == load_frenchmedmcqa(SHARED_DATA / "frenchmedmcqa").eval_task().content_hash()


def test_the_shipped_sample_is_a_data_source():
    from evaluation.data import load_task
    from medrag.errors import DataError

    task = load_task("medrag:sample")
    assert len(task.queries) == 75 and len(task.corpus) == 193
    assert len(load_task("medrag:sample", split="train", limit=10).queries) == 10
    import pytest

    with pytest.raises(DataError, match="splits"):
        load_task("medrag:sample", split="test")


@pytest.mark.parametrize("limit", ["5", 2.5, True, 0])
def test_a_limit_that_is_not_a_positive_int_is_a_data_error(tmp_path, limit):
    """load_task(limit="5") raised a TypeError; limit=True was taken as 1."""
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="limit must be an int >= 1"):
        load_task(path, limit=limit)


def test_a_split_name_on_a_pairs_file_is_a_data_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(f'{{"anchor": "q{i}", "positive": "a{i}"}}\n' for i in range(20)), encoding="utf-8")
    with pytest.raises(DataError, match="no split named 'bogus'"):
        load_task(path, split="bogus")
    assert len(load_task(path, split="all").queries) == 20


@pytest.mark.parametrize("source", ["shared/data/frenchmedmca", "d/p.txt", "data/pairs.jsonl", "./x", "../y/z"])
def test_a_mistyped_local_path_is_not_taken_for_a_hub_id(source, monkeypatch):
    """They were read as hub dataset ids ("cannot load hub dataset ... hub cannot be reached")."""
    import medrag.qa.pairs

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked for a local path")

    monkeypatch.setattr(medrag.qa.pairs, "_read_hub", no_hub)
    with pytest.raises(DataError, match=f"{source} does not exist: check the path"):
        load_task(source)


def test_split_all_on_a_frenchmedmcqa_folder_names_its_splits(tmp_path):
    """It said "has no all.json: expected a FrenchMedMCQA folder" of a FrenchMedMCQA folder (user tryout)."""
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match=r"folder of splits \(dev, test, train\).*name a split"):
        load_task(tmp_path, split="all")


def test_a_split_of_a_pairs_file_names_the_evaluate_options(tmp_path):
    """The hint named eval_data / --eval-data, which medrag evaluate does not have."""
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps({"anchor": "q", "positive": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_task(path, split="test")
    assert "--split all" in str(err.value) and "eval-data" not in str(err.value) and "eval_data" not in str(err.value)


def test_unused_options_by_source(tmp_path):
    from evaluation.data import PAIRS_OPTIONS, unused_options

    (tmp_path / "test.json").write_text("[]")
    assert unused_options("medrag:sample", None) == PAIRS_OPTIONS == unused_options(tmp_path, "test")
    assert unused_options(tmp_path / "other", "test") == ()  # not a folder of splits: check_data_folder names it
    assert unused_options(tmp_path / "p.jsonl", "all") == ("eval_fraction", "split_seed")
    assert unused_options(tmp_path / "p.jsonl", None) == () == unused_options("org/name", "test")


# ------------------------------------------------------------------ BEIR folders (user tryout, December 6)


def _beir(folder, qrels_lines, queries=None):
    folder.mkdir()
    corpus = [{"_id": "d1", "title": "Ferritine", "text": "La ferritine basse signe une carence martiale."},
              {"_id": "d2", "title": "", "text": "La TSH explore la thyroïde."},
              {"_id": 3, "text": "Passage jamais jugé : horaires de la cafétéria."}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in corpus) + "\n",
                                         encoding="utf-8")
    queries = queries or [{"_id": "q1", "text": "ferritine basse ?"}, {"_id": "q2", "text": "TSH ?"},
                          {"_id": "q3", "text": "question sans réponse"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in queries),
                                          encoding="utf-8")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels_lines) + "\n")
    return folder


def test_a_beir_folder_is_the_users_own_passages_and_graded_judgements(tmp_path, caplog):
    """A BEIR folder ("has no test.json: expected a FrenchMedMCQA folder"): the way to score one's own
    passages, distractors included, with graded judgements (user tryout)."""
    folder = _beir(tmp_path / "beir", ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q1\td2\t1", "q2\td2\t1",
                                       "q3\td1\t0"])
    with caplog.at_level("WARNING"):
        task = load_task(folder)
    assert task.queries == {"q1": "ferritine basse ?", "q2": "TSH ?"}  # q3: judged, nothing relevant: left out
    assert "1 judged query with no passage judged relevant left out" in caplog.text
    assert task.corpus["d1"] == "Ferritine La ferritine basse signe une carence martiale."  # the title first
    assert task.corpus["d2"] == "La TSH explore la thyroïde." and "3" in task.corpus  # unjudged passages stay
    assert task.grades == {"q1": {"d1": 2, "d2": 1}, "q2": {"d2": 1}} and task.graded
    assert len(load_task(folder, limit=1).queries) == 1
    assert load_task(_beir(tmp_path / "again", ["q1\td1\t2", "q1\td1\t2.0", "q2\td2\t1"])).grades == {
        "q1": {"d1": 2}, "q2": {"d2": 1}}  # the same judgement twice is one
    # TREC's four columns read alike
    trec = _beir(tmp_path / "trec", ["q1 0 d1 2", "q1 0 d2 1", "q2 0 d2 1"])
    assert load_task(trec).grades == task.grades


@pytest.mark.parametrize("qrels, split, message", [
    (["q1\td1\t1"], "dev", "no qrels/dev.tsv (the BEIR judgements of split 'dev'); its splits: test (--split)"),
    (["q1\td1"], "test", "line 1: expected query-id, corpus-id and score"),
    (["q1\td1\toui"], "test", "line 1: the score 'oui' is not a number"),
    (["q9\td1\t1"], "test", "judges 1 query id(s) absent from queries.jsonl"),
    (["q1\td1\t0"], "test", "no query has a passage judged relevant"),
    # a NaN or -inf grade dropped its query as "no relevant passage"; inf was refused later, unnamed
    (["q1\td1\tnan", "q2\td2\t1"], "test", "line 1: the score 'nan' is not a finite number"),
    (["q2\td2\t1", "q1\td1\t-inf"], "test", "line 2: the score '-inf' is not a finite number"),
    # the last of two different grades won in silence (2 then 0: the query vanished)
    (["q1\td1\t2", "q2\td2\t1", "q1\td1\t0"], "test",
     "line 3: query 'q1' and passage 'd1' were graded 2 on line 1 and 0 here"),
])
def test_a_malformed_beir_folder_is_named(tmp_path, qrels, split, message):
    folder = _beir(tmp_path / "beir", qrels)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_task(folder, split=split)


def test_a_beir_file_that_is_not_utf8_or_not_json_is_named(tmp_path):
    folder = _beir(tmp_path / "beir", ["q1\td1\t1"])
    (folder / "corpus.jsonl").write_bytes('{"_id": "d1", "text": "fi\xe8vre"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"corpus.jsonl:1: not UTF-8 text"):
        load_task(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"_id": "d2"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:2: a passage needs \"_id\" and a \"text\""):
        load_task(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"_id": "d1", "text": "bis"}\n')
    with pytest.raises(DataError, match="corpus.jsonl:2: the passage id 'd1' appears twice"):
        load_task(folder)


def test_beir_folders_as_public_sets_write_them(tmp_path, caplog):
    """Refused before the review: ArguAna judges a passage absent from its corpus (beir-cellar/beir#101),
    some corpora hold a record with neither title nor text, qrels lines with a trailing tab, a BOM."""
    folder = _beir(tmp_path / "beir", ["query-id\tcorpus-id\tscore\t", "q1\td1\t1\t", "q1\tgone\t1", "q2\tgone\t2",
                                       "q2\td2\t1"])
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"_id": "empty", "title": "", "text": "  "}\n')
    (folder / "queries.jsonl").write_bytes("\ufeff".encode() + (folder / "queries.jsonl").read_bytes())
    with caplog.at_level("WARNING"):
        task = load_task(folder)
    assert task.grades == {"q1": {"d1": 1}, "q2": {"d2": 1}} and "empty" not in task.corpus
    assert "judges 1 passage(s) absent from corpus.jsonl" in caplog.text
    assert "1 passage(s) with neither title nor text left out" in caplog.text


def test_the_queries_a_beir_folder_leaves_out_are_told_apart_and_recorded(tmp_path, caplog, tiny_model_dir):
    """A query judged relevant to absent passages only was reported as one "with no relevant passage",
    and report.md / report.json said nothing of the queries left out (user tryout)."""
    from evaluation.cache import EmbeddingCache
    from evaluation.evaluator import evaluate_models

    folder = _beir(tmp_path / "beir", ["q1\td1\t2", "q1\tgone\t1", "q2\td2\t1", "q3\tnowhere\t2", "q3\td1\t0"],
                   queries=[{"_id": "q1", "text": "ferritine basse ?"}, {"_id": "q2", "text": "TSH ?"},
                            {"_id": "q3", "text": "question sans réponse"}, {"_id": "q4", "text": "autre"}])
    (folder / "qrels" / "test.tsv").open("a").write("q4\td2\t0\n")
    with caplog.at_level("WARNING"):
        task = load_task(folder)
    assert set(task.queries) == {"q1", "q2"}
    assert "1 judged query with no passage judged relevant left out" in caplog.text  # q4
    assert "1 query whose relevant passages are all absent from corpus.jsonl left out" in caplog.text  # q3
    report = evaluate_models([str(tiny_model_dir)], task, dims=[64], n_bootstrap=20, n_resamples=20,
                             cache=EmbeddingCache(enabled=False))
    info = report.to_dict()["task"]
    assert info["judged_queries"] == 4 and info["dropped_judgements_of_absent_passages"] == 2
    assert info["left_out_queries"] == {"no_relevant_judgement": 1, "relevant_passages_absent": 1}
    text = report.to_markdown()
    assert ("Of 4 judged queries, left out: 1 with no passage judged relevant; 1 whose relevant passages are all "
            "absent from the corpus. 2 relevance judgement(s) of passages absent from the corpus dropped.") in text
    assert "graded relevance" in text and "95% percentile bootstrap over queries (20 resamples)" in text


def test_a_judged_blank_query_and_another_header_are_named(tmp_path, caplog):
    """A judged query with a blank text was "left out" then "absent from queries.jsonl" (two messages
    contradicting each other), and a header naming its score column ``relevance`` was read as data
    (user tryout)."""
    queries = [{"_id": "q1", "text": "  "}, {"_id": "q2", "text": "TSH ?"}, {"_id": "q3", "text": ""}]
    folder = _beir(tmp_path / "blank", ["q1\td1\t1", "q2\td2\t1"], queries=queries)
    with pytest.raises(DataError, match=r"1 query\(s\) judged in test.tsv have a blank text, e.g. \['q1'\]"):
        load_task(folder)
    with caplog.at_level("WARNING"):  # an unjudged blank query is left out, said as such
        task = load_task(_beir(tmp_path / "unjudged", ["q2\td2\t1"], queries=queries))
    assert list(task.queries) == ["q2"] and "2 query(s) with a blank text left out" in caplog.text
    for header in ("query-id\tcorpus-id\trelevance", "qid docid rel"):
        folder = _beir(tmp_path / header.split()[-1], [header, "q1\td1\t2", "q2\td2\t1"])
        assert load_task(folder).grades == {"q1": {"d1": 2}, "q2": {"d2": 1}}
    folder = _beir(tmp_path / "other", ["query corpus pertinence", "q1\td1\t2"])
    with pytest.raises(DataError, match="line 1: the score 'pertinence' is not a number .a header line names"):
        load_task(folder)
    # a blank line before the header: "line 2: the score 'score' is not a number", without the hint (tryout)
    folder = _beir(tmp_path / "blank-first", ["", " ", "query-id\tcorpus-id\tscore", "q1\td1\t2"])
    assert load_task(folder).grades == {"q1": {"d1": 2}}
    folder = _beir(tmp_path / "blank-other", ["", "query corpus pertinence", "q1\td1\t2"])
    with pytest.raises(DataError, match="line 2: the score 'pertinence' is not a number .a header line names"):
        load_task(folder)


def test_answers_that_repeat_their_questions_are_warned_about(tmp_path, caplog):
    """A file whose answer column held the questions again scored 1.0 at every size in silence (user
    tryout); a few such pairs among real ones are left alone."""
    rows = [{"anchor": f"question {i} ?", "positive": f"question {i} ?"} for i in range(20)]
    path = tmp_path / "same.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with caplog.at_level("WARNING"):
        load_task(path, split="all")
    assert "20 of 20 pairs have an answer that repeats its question (columns 'anchor' and 'positive')" in caplog.text
    rows[3:] = [{"anchor": f"question {i} ?", "positive": f"réponse {i}."} for i in range(3, 20)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_task(path, split="all")
    assert "repeats its question" not in caplog.text


def test_a_beir_folder_missing_a_file_is_named_as_one(tmp_path):
    """A BEIR folder without queries.jsonl (or with corpus.jsonl.gz) was told to "pass one file of pairs,
    e.g. corpus.jsonl", which failed next with "missing column(s) ['anchor', 'positive']" (user tryout)."""
    import gzip
    import shutil

    from evaluation.data import check_data_folder

    folder = _beir(tmp_path / "beir", ["q1\td1\t1"])
    (folder / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"looks like a BEIR folder but has no queries\.jsonl: a BEIR folder holds"):
        check_data_folder(folder)
    packed = _beir(tmp_path / "packed", ["q1\td1\t1"])
    with open(packed / "corpus.jsonl", "rb") as src, gzip.open(packed / "corpus.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (packed / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=r"has no corpus\.jsonl \(only corpus\.jsonl\.gz: decompress it, e\.g\. "
                                        r"gunzip -k .*corpus\.jsonl\.gz\)"):
        check_data_folder(packed)


def test_a_hub_dataset_that_cannot_load_names_the_beir_folder_too(monkeypatch):
    """The loader's advice (shared with finetune) named the pairs files only, not the BEIR folder an
    evaluation of one's own passages and judgements needs (user tryout)."""
    import medrag.models

    monkeypatch.setattr(medrag.models, "hub_unreachable", lambda: "no network (test)")
    with pytest.raises(DataError, match=r"cannot load hub dataset 'nobody/no-such-set'.*\.tsv/\.parquet file instead, "
                                        r"or a BEIR folder .*qrels/<split>\.tsv"):
        load_task("nobody/no-such-set")


def test_the_beir_advice_does_not_depend_on_the_loaders_wording(monkeypatch):
    """It was added by matching the start of the shared loader's message: a reworded message would have
    dropped it in silence (read-through)."""
    import medrag.qa.pairs as pairs

    def reworded(dataset_id, *args, **kwargs):
        raise pairs._unloadable(dataset_id, f"the hub refused {dataset_id!r}")

    monkeypatch.setattr(pairs, "_read_hub", reworded)
    with pytest.raises(DataError, match=r"the hub refused 'nobody/no-such-set', or a BEIR folder"):
        load_task("nobody/no-such-set")
    monkeypatch.setattr(pairs, "_read_hub", lambda *a, **k: (_ for _ in ()).throw(DataError("hub dataset x has no "
                                                                                            "split 'train'")))
    with pytest.raises(DataError, match=r"^hub dataset x has no split 'train'$"):  # another error: no advice
        load_task("nobody/no-such-set")
