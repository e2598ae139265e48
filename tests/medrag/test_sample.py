"""The shipped French sample: its consistency, the multi-relevant format (v2), and the loader's checks."""

from __future__ import annotations

import json
import re

import pytest

from medrag.errors import DataError, InvalidInputError, UnknownNameError
from medrag.qa.sample import FORMAT_VERSION, SAMPLE_VERSION, SPLITS, load_sample_corpus

HEADER = {"format": "medrag-sample", "format_version": 2, "sample_version": 7}
#: The second passages that issue 13 names, checked by reading both passages (question -> also relevant).
ISSUE_PAIRS = {
    ("cond-006", 2): "lab-038", ("lab-038", 1): "cond-006", ("cond-054", 2): "lab-062",
    ("cond-089", 1): "lab-041", ("lab-041", 2): "cond-089", ("cond-052", 2): "lab-088",
    ("lab-076", 2): "cond-021", ("cond-057", 1): "lab-004",
}


def _passage(pid: str, split: str = "train", questions: list | None = None, text: str | None = None) -> dict:
    return {"passage_id": pid, "topic": "t", "split": split, "passage": text or f"Texte du passage {pid}.",
            "questions": questions if questions is not None else [f"Question sur {pid} ?"]}


def _write(path, records: list[dict], header: dict | None = HEADER):
    lines = ([json.dumps(header, ensure_ascii=False)] if header else []) + [json.dumps(r, ensure_ascii=False)
                                                                           for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- the shipped sample


def test_sample_corpus_shape_and_split():
    corpus = load_sample_corpus()
    ids = corpus.ids()
    assert len(ids) == len(set(ids)) == 193
    assert corpus.version == SAMPLE_VERSION == 2 and corpus.format_version == FORMAT_VERSION
    assert len(corpus.pairs()) == 399
    for p in corpus.passages:
        assert 40 <= len(p.passage.split()) <= 150, p.passage_id
        assert p.questions and all(q.strip() for q in p.questions)
        assert p.split in SPLITS
        assert re.fullmatch(r"(lab|cond)-\d{3}", p.passage_id)
    train = {a for _, a in corpus.pairs("train")}
    evals = {a for _, a in corpus.pairs("eval")}
    assert not train & evals  # split by passage: no leakage
    assert len(corpus.pairs("eval")) == 75 and len(corpus.pairs("train")) == 324


def test_every_question_and_judgement_is_consistent():
    corpus = load_sample_corpus()
    ids = set(corpus.ids())
    questions = [q for _, q, _ in corpus.judgements()]
    assert len(questions) == len(set(questions)), "a question is written twice: merge its judgements instead"
    qids = [qid for qid, _, _ in corpus.judgements()]
    assert len(qids) == len(set(qids))
    for qid, _, relevant in corpus.judgements():
        assert relevant[0] == qid.split("/")[0]  # the passage it was written for comes first
        assert len(set(relevant)) == len(relevant) and set(relevant) <= ids


def test_questions_are_not_copies_of_their_passage():
    for p in load_sample_corpus().passages:
        for q in p.questions:
            assert q.rstrip(" ?") not in p.passage, (p.passage_id, q)


def test_the_pairs_named_in_issue_13_are_marked_both_ways_where_both_answer():
    corpus = load_sample_corpus()
    for (pid, n), other in ISSUE_PAIRS.items():
        assert other in corpus.passage(pid).relevant_ids(n - 1), (pid, n, other)
    multi = [rel for _, _, rel in corpus.judgements() if len(rel) > 1]
    assert 8 <= len(multi) <= 30  # marked where a second passage answers, not everywhere


def test_corrected_facts_of_sample_v2():
    """The two factual errors and the hCG imprecision that issue 13 reported stay fixed."""
    corpus = load_sample_corpus()
    cmml = corpus.passage("lab-016").passage
    assert "0,5 G/L" in cmml and "10 %" in cmml and "trois mois" not in cmml
    hba1c = corpus.passage("lab-039").passage
    assert "sous-estimée" in hba1c and "faussement élevée en cas de carence en fer non traitée." in hba1c
    hcg = corpus.passage("lab-098")
    assert "35 à 50 %" in hcg.passage and "doublant" not in hcg.passage
    assert "doublé" in hcg.questions[0] and "absence de doublement" in hcg.passage  # question and passage agree
    assert "fluindione" not in corpus.passage("lab-076").passage.split("(AVK, comme la ")[1].split(";")[0]


# ---------------------------------------------------------------- the multi-relevant task


def test_task_has_every_relevant_passage_and_passage_ids():
    corpus = load_sample_corpus()
    task = corpus.task("train")
    assert len(task.queries) == 324 and len(task.corpus) == 193
    assert task.qrels["cond-006/q2"] == {"cond-006", "lab-038"}
    assert task.qrels["lab-038/q1"] == {"lab-038", "cond-006"}
    assert task.qrels["cond-006/q1"] == {"cond-006", "lab-036"}
    assert task.corpus["lab-038"] == corpus.passage("lab-038").passage
    assert task.extra["sample_version"] == SAMPLE_VERSION and f"v{SAMPLE_VERSION}" in task.name
    evaluation = corpus.task("eval")
    assert len(evaluation.queries) == 75 and set(evaluation.corpus) == set(corpus.ids())
    assert len(corpus.task("eval", limit=5).queries) == 5
    with pytest.raises(InvalidInputError, match="split"):
        corpus.task("test")
    with pytest.raises(InvalidInputError, match="split"):
        corpus.pairs("dev")
    with pytest.raises(UnknownNameError, match="lab-999"):
        corpus.passage("lab-999")
    with pytest.raises(InvalidInputError, match="limit"):
        corpus.task("eval", limit=0)


def test_evaluation_data_source_uses_all_relevant_passages():
    from evaluation.data import load_task

    task = load_task("medrag:sample", split="train")
    assert task.qrels["lab-076/q2"] == {"lab-076", "cond-021"}
    assert sum(len(r) > 1 for r in task.qrels.values()) >= 8
    assert task.content_hash() == load_sample_corpus().task("train").content_hash()


def test_cross_split_judgement_counts_in_evaluation_but_never_in_training_pairs(tmp_path):
    records = [_passage("a-001", "train", [{"question": "Q1 ?", "also_relevant": ["a-002"]}]),
               _passage("a-002", "eval", ["Q2 ?"])]
    corpus = load_sample_corpus(_write(tmp_path / "s.jsonl", records))
    # evaluating the train questions: the eval passage is in the corpus and answers Q1
    assert corpus.task("train").qrels == {"a-001/q1": {"a-001", "a-002"}}
    # training pairs: only the passage the question was written for
    assert corpus.pairs("train") == [("Q1 ?", "Texte du passage a-001.")]


# ---------------------------------------------------------------- loader: formats and bad files


def test_a_version_1_file_still_loads(tmp_path):
    corpus = load_sample_corpus(_write(tmp_path / "v1.jsonl", [_passage("a-001"), _passage("a-002", "eval")],
                                       header=None))
    assert corpus.version == 1 and corpus.format_version == 1
    assert corpus.passages[0].also_relevant == () and corpus.passages[0].relevant_ids(0) == ("a-001",)
    assert corpus.task("eval").qrels == {"a-002/q1": {"a-002"}}


@pytest.mark.parametrize("records, header, match", [
    ([_passage("a-001", questions=[{"question": "Q ?", "also_relevant": ["a-404"]}])], HEADER,
     r"'a-404'.*no passage of the file"),
    ([_passage("a-001", questions=[{"question": "Q ?", "also_relevant": ["a-001"]}])], HEADER, "its own passage"),
    ([_passage("a-001", questions=[{"question": "Q ?", "also_relevant": "a-002"}]), _passage("a-002")], HEADER,
     "list of passage ids"),
    ([_passage("a-001", questions=[{"question": "Q ?", "also_relevant": ["a-002", "a-002"]}]), _passage("a-002")],
     HEADER, "twice"),
    ([_passage("a-001", questions=[{"question": "Q ?", "also_relevant": ["a-002"]}]), _passage("a-002")], None,
     "format-2 header"),
    ([_passage("a-001"), _passage("a-001")], HEADER, r"duplicate passage id.*a-001"),
    ([_passage("a-001", split="test")], HEADER, "split 'test'"),
    ([_passage("a-001", questions=[])], HEADER, "non-empty list of questions"),
    ([_passage("a-001", questions=["  "])], HEADER, "empty or non-text question"),
    ([_passage("a-001")], {**HEADER, "format_version": 3}, "newer than this medrag reads"),
    ([_passage("a-001")], {"format_version": 2}, "sample_version"),
    ([{"passage_id": "a-001", "topic": "t", "split": "train", "questions": ["Q ?"]}], HEADER, r"missing field.*passage"),
    # a first passage without its id was read as a bad header line (audit)
    ([{"topic": "t", "split": "eval", "passage": "La TSH.", "questions": ["TSH ?"]}], None,
     r"bad.jsonl:1: missing field\(s\) \['passage_id'\]"),
    # one question under a train and an eval passage: a training pair and an evaluation query at once (audit);
    # the NFD spelling of the same question too
    ([_passage("a-001", questions=["Qu'est-ce que la TSH ?"]), _passage("a-002", "eval", ["Qu'est-ce que la TSH ?"])],
     HEADER, r"asked of a-001 \(train\) and of a-002 \(eval\)"),
    ([_passage("a-001", questions=["Fièvre ?"]), _passage("a-002", "eval", ["Fie\u0300vre ?"])], HEADER, "asked of a-001"),
])
def test_bad_files_raise_a_clear_data_error(tmp_path, records, header, match):
    path = _write(tmp_path / "bad.jsonl", records, header=header)
    with pytest.raises(DataError, match=match):
        load_sample_corpus(path)


def test_unreadable_or_invalid_json_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_sample_corpus(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(HEADER) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_sample_corpus(bad)


# ---------------------------------------------------------------- caches keyed on the content


def test_a_new_sample_version_changes_the_evaluation_cache_keys(tiny_embeddings, tmp_path):
    """The embedding cache keys on the texts and the task hash on texts + judgements: a corrected
    passage is re-encoded; a judgement-only change re-scores without re-encoding."""
    from evaluation.cache import EmbeddingCache

    v1 = load_sample_corpus(_write(tmp_path / "v1.jsonl", [_passage("a-001", text="Ancien texte."),
                                                           _passage("a-002", "eval")], header=None))
    v2 = load_sample_corpus(_write(tmp_path / "v2.jsonl", [_passage("a-001", text="Texte corrigé."),
                                                           _passage("a-002", "eval")]))
    v2_marks = load_sample_corpus(_write(tmp_path / "v2m.jsonl", [
        _passage("a-001", text="Texte corrigé."),
        _passage("a-002", "eval", [{"question": "Question sur a-002 ?", "also_relevant": ["a-001"]}])]))
    cache = EmbeddingCache(tmp_path / "cache")

    def doc_key(corpus):
        return cache.key(tiny_embeddings, list(corpus.task("eval").corpus.values()), "document")

    assert doc_key(v1) != doc_key(v2)
    assert v1.task("eval").content_hash() != v2.task("eval").content_hash()
    assert doc_key(v2) == doc_key(v2_marks)  # same texts: the vectors are still valid
    assert v2.task("eval").content_hash() != v2_marks.task("eval").content_hash()
