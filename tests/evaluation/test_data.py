"""Loading evaluation tasks from FrenchMedMCQA folders and pairs files."""

from __future__ import annotations

import json

import pytest

from medrag.errors import DataError

from evaluation.data import frenchmedmcqa_pairs, load_task
from tests.conftest import SHARED_DATA, requires_shared

RECORDS = [
    {"id": "1", "question": "Quel organe produit l'insuline ?", "answers": {"a": "Le foie", "b": "Le pancréas"},
     "correct_answers": ["b"]},
    {"id": "2", "question": "Quels sont des anticoagulants ?",
     "answers": {"a": "L'héparine", "b": "La warfarine", "c": "Le paracétamol"}, "correct_answers": ["a", "b"]},
    {"id": "3", "question": "Quel organe produit le glucagon ?", "answers": {"a": "Le pancréas", "b": "Le rein"},
     "correct_answers": ["a"]},
]


def test_frenchmedmcqa_pairs_join_correct_options():
    assert frenchmedmcqa_pairs(RECORDS)[1] == ("Quels sont des anticoagulants ?", "L'héparine; La warfarine")
    with pytest.raises(DataError):
        frenchmedmcqa_pairs([{"question": "x"}])


def test_frenchmedmcqa_folder(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    task = load_task(tmp_path)
    # 3 questions; "Le pancréas" answers two of them and is one document
    assert len(task.queries) == 3 and len(task.corpus) == 2
    assert sum(len(v) for v in task.qrels.values()) == 3
    assert len(load_task(tmp_path, limit=1).queries) == 1
    with pytest.raises(DataError, match="dev.json"):
        load_task(tmp_path, split="dev")


def test_jsonl_and_json_pairs(tmp_path):
    rows = [{"anchor": "q1", "positive": "a1"}, {"anchor": "q2", "positive": "a2"}, {"anchor": "q1", "positive": "a3"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    task = load_task(path)
    assert len(task.queries) == 2 and len(task.corpus) == 3
    assert sorted(len(v) for v in task.qrels.values()) == [1, 2]
    other = tmp_path / "qa.json"
    other.write_text(json.dumps([{"question": "q", "answer": "a"}]), encoding="utf-8")
    assert list(load_task(other).corpus.values()) == ["a"]
    custom = tmp_path / "c.jsonl"
    custom.write_text(json.dumps({"q": "x", "doc": "y"}), encoding="utf-8")
    assert list(load_task(custom, question_column="q", answer_column="doc").queries.values()) == ["x"]
    with pytest.raises(DataError, match="columns"):
        load_task(custom)
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text('anchor,positive\n"q, 1",a1\nq2,a2\n', encoding="utf-8")
    assert sorted(load_task(csv_file).queries.values()) == ["q, 1", "q2"]


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_task(tmp_path / "nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not JSON"):
        load_task(bad)
    txt = tmp_path / "x.txt"
    txt.write_text("anchor,positive\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported"):
        load_task(txt)
    with pytest.raises(DataError):
        load_task(bad, limit=0)


@requires_shared
def test_real_frenchmedmcqa_test_split():
    task = load_task(SHARED_DATA / "frenchmedmcqa")
    assert (len(task.queries), len(task.corpus)) == (620, 618)
    assert task.name == "frenchmedmcqa/test"
