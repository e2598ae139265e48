"""The MedQuAD pair builder (medrag.qa.medquad) on a small fixture file, and on the real file when
``../shared`` is there."""

from __future__ import annotations

import json

import pytest

from medrag.errors import DataError
from medrag.qa.medquad import LICENCE, MIN_WORDS, medquad_pairs, strip_question_echo
from tests.conftest import REPO

LONG = " ".join(f"word{i}" for i in range(40)) + "."


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_pairs_drop_the_question_echo_short_answers_and_duplicates(tmp_path):
    f = _write(tmp_path / "m.jsonl", [
        {"question": "What causes  Foo disease ?", "answer": f"What causes Foo disease? {LONG}", "source": "a/1.xml#1-1"},
        {"question": "What causes  Foo disease ?", "answer": f"What causes Foo disease? {LONG}", "source": "a/1.xml#1-1"},
        {"question": "What is Bar ?", "answer": "See the article.", "source": "a/2.xml#2-1"},
        {"question": "Is Baz inherited ?", "answer": f"{LONG} Is it common? No.", "source": "b/3.xml#3-2"},
    ])
    pairs = medquad_pairs(f, seed=0)
    assert len(pairs) == 2                       # the duplicate and the 3-word answer are gone
    by_q = {p.question: p for p in pairs}
    foo = by_q["What causes Foo disease ?"]      # whitespace of the question normalised
    assert foo.answer.startswith("word0") and "What causes" not in foo.answer
    baz = by_q["Is Baz inherited ?"]
    assert baz.answer.endswith("Is it common? No.")   # only a *leading* question is an echo
    assert {p.source for p in pairs} == {"medquad"} and {p.licence for p in pairs} == {LICENCE}
    assert foo.doc_id == "a/1.xml"
    assert all(len(p.answer.split()) >= MIN_WORDS for p in pairs)


def test_passages_are_capped_in_whole_sentences(tmp_path):
    sentences = " ".join(f"Sentence number {i} is here." for i in range(60))   # 300 words
    pairs = medquad_pairs(_write(tmp_path / "m.jsonl", [{"question": "Q ?", "answer": sentences}]), max_words=50)
    assert len(pairs) == 1
    assert len(pairs[0].answer.split()) <= 50 and pairs[0].answer.endswith(".")


def test_order_is_seeded(tmp_path):
    f = _write(tmp_path / "m.jsonl", [{"question": f"Q{i} ?", "answer": LONG} for i in range(20)])
    assert [p.question for p in medquad_pairs(f, seed=1)] == [p.question for p in medquad_pairs(f, seed=1)]
    assert [p.question for p in medquad_pairs(f, seed=1)] != [p.question for p in medquad_pairs(f, seed=2)]


@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "expected a JSON object"),
    ('{"question": "Q ?"}', "needs 'question' and 'answer' strings"),
    ('{"question": 3, "answer": "x"}', "needs 'question' and 'answer' strings"),
    ("{not json", "not valid JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps({"question": "Q ?", "answer": LONG}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        medquad_pairs(f)
    assert f"{f}:2" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="MedQuAD file not found"):
        medquad_pairs(tmp_path / "nope.jsonl")


def test_questions_without_their_entity_are_dropped(tmp_path):
    f = _write(tmp_path / "m.jsonl", [{"question": "What is (are)  ?", "answer": LONG},
                                      {"question": "What is (are) Foo ?", "answer": LONG}])
    assert [p.question for p in medquad_pairs(f)] == ["What is (are) Foo ?"]


def test_stats_command(tmp_path, capsys):
    from medrag.qa.medquad import main

    assert main(["--data", str(_write(tmp_path / "m.jsonl", [{"question": "Q ?", "answer": LONG}]))]) == 0
    assert "medquad: 1 pairs from 1 documents" in capsys.readouterr().out
    assert main(["--data", str(_write(tmp_path / "s.jsonl", [{"question": "Q ?", "answer": "short"}]))]) == 1
    assert "no usable pair" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "none.jsonl")]) == 2


def test_echo_is_only_stripped_at_the_start():
    assert strip_question_echo("How might X be treated? There is no cure.") == "There is no cure."
    assert strip_question_echo("No question here. Really?") == "No question here. Really?"
    assert strip_question_echo("Is 22q11.2 deletion inherited? Rarely.") == "Rarely."
    listing = "These resources address the diagnosis of X: - Society: How is X Diagnosed? - Clinic."
    assert strip_question_echo(listing) == listing          # an opening sentence, not a question


REAL = REPO.parent / "shared" / "data" / "medquad" / "medquad.jsonl"


@pytest.mark.skipif(not REAL.is_file(), reason="../shared/data/medquad is absent")
def test_real_file_builds_thousands_of_pairs():
    pairs = medquad_pairs(REAL)
    assert len(pairs) > 15_000
    echoes = sum(p.answer.split("?")[0] == p.question.rstrip(" ?") for p in pairs)
    assert echoes == 0
