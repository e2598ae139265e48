"""Hand-computed cases for each ranking metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import max_k, mean_metrics, parse_metric, per_query_metrics
from evaluation.retrieval import evaluate_vectors, rank_documents
from medrag.qa.task import IRTask


def one(ranking, relevant, metric):
    return float(per_query_metrics([ranking], [set(relevant)], [metric])[metric][0])


def test_ndcg_single_relevant_at_rank_3():
    # DCG = 1/log2(4) = 0.5; IDCG = 1
    assert one(["a", "b", "c"], {"c"}, "ndcg@10") == pytest.approx(0.5)


def test_ndcg_two_relevant():
    # relevant at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    assert one(["a", "b", "c"], {"a", "c"}, "ndcg@10") == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_ndcg_cutoff_ignores_hits_below_k_and_caps_ideal():
    assert one(["x", "y", "a"], {"a"}, "ndcg@2") == 0.0
    # 3 relevant but k=1: ideal DCG counts one document, so a hit at rank 1 scores 1
    assert one(["a", "x"], {"a", "b", "c"}, "ndcg@1") == 1.0


def test_mrr():
    assert one(["x", "y", "a", "b"], {"a", "b"}, "mrr@10") == pytest.approx(1 / 3)
    assert one(["x", "y", "a"], {"a"}, "mrr@2") == 0.0
    assert one(["a"], {"a"}, "mrr@10") == 1.0


def test_map():
    # relevant at ranks 2 and 4 of 2 relevant: (1/2 + 2/4) / 2 = 0.5
    assert one(["x", "a", "y", "b"], {"a", "b"}, "map@100") == pytest.approx(0.5)
    # one of the two relevant documents retrieved, at rank 1: (1/1) / 2
    assert one(["a", "x"], {"a", "b"}, "map@100") == pytest.approx(0.5)
    # normalised by min(#relevant, k): k=1, hit at rank 1 -> 1
    assert one(["a", "b"], {"a", "b"}, "map@1") == pytest.approx(1.0)


def test_recall():
    assert one(["a", "x", "b"], {"a", "b", "c"}, "recall@2") == pytest.approx(1 / 3)
    assert one(["a", "x", "b"], {"a", "b", "c"}, "recall@3") == pytest.approx(2 / 3)
    assert one(["x", "a"], {"a"}, "recall@1") == 0.0


def test_precision():
    # 2 of the top 4 relevant: 2/4, whatever the number of relevant documents
    assert one(["a", "x", "b", "y"], {"a", "b", "c"}, "precision@4") == pytest.approx(0.5)
    assert one(["a", "x", "b", "y"], {"a", "b", "c"}, "precision@1") == 1.0
    # a ranking shorter than k still divides by k (trec_eval's P_k, ranx's precision@k)
    assert one(["a", "x"], {"a"}, "precision@10") == pytest.approx(0.1)
    assert one(["x", "y"], {"a"}, "precision@2") == 0.0


def test_precision_matches_ranx():
    ranx = pytest.importorskip("ranx")
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 2}}
    rankings = [["d1", "d2", "d3", "d4"], ["d4", "d3", "d1", "d2"]]
    run = ranx.Run({q: {d: float(4 - j) for j, d in enumerate(r)} for q, r in zip(("q1", "q2"), rankings)})
    ours = per_query_metrics(rankings, [qrels["q1"], qrels["q2"]], ["precision@1", "precision@3"])
    for m in ("precision@1", "precision@3"):
        assert ours[m] == pytest.approx(ranx.evaluate(ranx.Qrels(qrels), run, m, return_mean=False)), m


def test_several_queries_and_means():
    out = per_query_metrics([["a", "b"], ["b", "a"]], [{"a"}, {"a"}], ["mrr@10", "recall@1"])
    np.testing.assert_allclose(out["mrr@10"], [1.0, 0.5])
    assert mean_metrics(out) == {"mrr@10": 0.75, "recall@1": 0.5}


def test_metric_names():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert max_k(["ndcg@10", "recall@100", "mrr@5"]) == 100
    assert parse_metric("precision@5") == ("precision", 5)
    for bad in ("ndcg", "hits@10", "ndcg@0", "ndcg@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)
    with pytest.raises(ValueError, match="no relevant"):
        per_query_metrics([["a"]], [set()], ["ndcg@10"])


def test_rank_documents_orders_by_score_and_breaks_ties_by_corpus_order():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.0]])
    assert rank_documents(q, docs, ["d0", "d1", "d2", "d3"], k=3) == [["d0", "d2", "d3"]]
    assert rank_documents(q, docs, ["d0", "d1", "d2", "d3"], k=10) == [["d0", "d2", "d3", "d1"]]


def test_evaluate_vectors_truncates_per_size():
    # At size 1 only the sign of the first coordinate is left: the query then prefers b over a.
    task = IRTask(queries={"q": "q"}, corpus={"a": "a", "b": "b"}, qrels={"q": {"a"}})
    qv = np.array([[0.6, 0.8]])
    dv = np.array([[-0.2, 0.98], [1.0, 0.0]])
    res = evaluate_vectors(task, qv, dv, [2, 1], ["mrr@10"])
    assert res[2].means["mrr@10"] == 1.0
    assert res[1].means["mrr@10"] == 0.5


# -- malformed relevance judgements given to the Python API (they were scored wrongly)

def _two_doc_task(qrels):
    return IRTask({"q1": "question"}, {"d1": "answer", "d2": "other"}, qrels)


_Q = np.array([[1.0, 0.0]], dtype=np.float32)
_D = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # d1 ranked first, d2 second


def test_duplicate_judgements_count_once():
    """{"q1": ["d1", "d1"]} gave recall@10 = 0.5 for a perfect ranking."""
    res = evaluate_vectors(_two_doc_task({"q1": ["d1", "d1"]}), _Q, _D, [2], ["recall@10", "ndcg@10"])
    assert res[2].means == {"recall@10": 1.0, "ndcg@10": 1.0}


def test_numpy_grades_are_numbers():
    task = _two_doc_task({"q1": {"d1": np.int64(1), "d2": np.float32(0.0)}})
    assert task.qrels == {"q1": {"d1"}}


def test_graded_judgements_of_zero_are_not_relevant():
    """BEIR-style {"d1": 1, "d2": 0} counted d2 as relevant (recall@1 0.5 instead of 1)."""
    res = evaluate_vectors(_two_doc_task({"q1": {"d1": 1, "d2": 0}}), _Q, _D, [2], ["recall@1", "ndcg@10"])
    assert res[2].means == {"recall@1": 1.0, "ndcg@10": 1.0}
    # d2 ranked first, the only relevant document d1 second
    res = evaluate_vectors(_two_doc_task({"q1": {"d1": 2, "d2": 0}}), _Q, _D[::-1].copy(), [2], ["mrr@10"])
    assert res[2].means["mrr@10"] == 0.5


def test_graded_judgements_weigh_ndcg_as_trec_eval_and_ranx_do():
    """Grades were flattened to 1: a partly relevant passage ranked above the highly relevant one
    scored NDCG@10 0.92 where ranx (the reference) gives 0.76 (user tryout)."""
    ranx = pytest.importorskip("ranx")
    qrels = {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 3, "d1": 1, "d2": 0}}
    task = IRTask({"q1": "ferritine basse ?", "q2": "TSH ?"}, {f"d{i}": f"texte {i}" for i in range(1, 5)}, qrels)
    assert task.graded and task.qrels == {"q1": {"d1", "d2"}, "q2": {"d3", "d1"}}
    assert task.grades == {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 3, "d1": 1}}
    rankings = [["d2", "d4", "d1", "d3"], ["d1", "d2", "d4", "d3"]]
    metrics = ["ndcg@10", "ndcg@2", "map@10", "recall@2", "mrr@10"]
    ours = per_query_metrics(rankings, [task.grades[q] for q in ("q1", "q2")], metrics)
    run = ranx.Run({q: {d: float(4 - j) for j, d in enumerate(r)} for q, r in zip(("q1", "q2"), rankings)})
    for m in metrics:
        reference = ranx.evaluate(ranx.Qrels(qrels), run, m, return_mean=False)
        assert ours[m] == pytest.approx(reference), m
    assert ours["ndcg@10"][0] == pytest.approx(0.7601875, abs=1e-6)
    # binary judgements give the same numbers as before, and the same cache key
    binary = _two_doc_task({"q1": {"d1"}})
    assert not binary.graded and binary.content_hash() == _two_doc_task({"q1": {"d1": 1}}).content_hash()
    same_ids = IRTask(task.queries, task.corpus, {q: set(ids) for q, ids in task.qrels.items()})
    assert task.content_hash() != same_ids.content_hash()  # grades are part of a graded task's cache key


@pytest.mark.parametrize("qrels, message", [
    ({"q1": {"d1": 0, "d2": -1}}, "no relevant document"),
    ({"q1": {"d1"}, "q9": {"d1"}}, "query ids absent from the queries"),
    ({"q1": {"d1": "yes"}}, "grades must be finite numbers"),
    ({"q1": {"d1": float("nan")}}, "grades must be finite numbers"),
    ({"q1": "d1"}, "not 'd1'"),
    # a number id was "absent from the queries, e.g. [1]" beside the query "1" (user tryout); mixed types
    # failed with TypeError; a number passage id was "absent from the corpus"
    ({1: {"d1"}}, r"ids must be strings.*got 1 \(int\); convert them"),
    ({1: {"d1"}, "q9": {"d1"}}, r"ids must be strings.*got 1 \(int\)"),
    ({"q1": {7: 1}}, r"ids must be strings.*got 7 \(int\)"),
    ({"q1": [7]}, r"ids must be strings.*got 7 \(int\)"),
])
def test_malformed_judgements_are_refused(qrels, message):
    from medrag.errors import DataError

    with pytest.raises(DataError, match=message):  # when the task is made, before any encoding
        _two_doc_task(qrels)


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


def test_ties_at_the_cut_off_follow_corpus_order() -> None:
    """argpartition kept an arbitrary subset of the documents tied at the k-th score (duplicate
    passages): recall@10 could be 0 where the documented rule (corpus order) gives 1."""
    from evaluation.retrieval import top_indices

    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, size=60).astype(np.float64)  # many ties
        expected = sorted(range(60), key=lambda i: (-scores[i], i))[:10]
        assert top_indices(scores, 10).tolist() == expected
    doc_vecs = np.eye(3)[[0, 1, 1, 1, 2]]  # documents 1, 2, 3 tie
    ranked = rank_documents(np.array([[0.0, 1.0, 0.0]]), doc_vecs, ["a", "b", "c", "d", "e"], 2)
    assert ranked == [["b", "c"]]


def test_task_ids_and_texts_must_be_strings() -> None:
    """A number id never matched its judgement once rankings made ids strings (NDCG 0 in silence);
    a number or None text failed deep in the cache (AttributeError)."""
    from medrag.errors import DataError

    with pytest.raises(DataError, match="document ids must be strings, got 1"):
        IRTask(queries={"q": "fer"}, corpus={1: "fer", "d2": "crp"}, qrels={"q": {1}})
    with pytest.raises(DataError, match="query ids must be strings"):
        IRTask(queries={7: "fer"}, corpus={"d": "fer"}, qrels={7: {"d"}})
    with pytest.raises(DataError, match="the text of document 'd' is float"):
        IRTask(queries={"q": "fer"}, corpus={"d": 3.5}, qrels={"q": {"d"}})
    # an empty text failed at the first encode, as "text at index 1 is empty" without its id (audit)
    with pytest.raises(DataError, match="the text of query 'q2' is empty"):
        IRTask(queries={"q1": "fer ?", "q2": " "}, corpus={"d": "fer"}, qrels={"q1": {"d"}, "q2": {"d"}})
    with pytest.raises(DataError, match="the text of document 'd2' is empty"):
        IRTask(queries={"q": "fer ?"}, corpus={"d": "fer", "d2": ""}, qrels={"q": {"d"}})


@pytest.mark.parametrize("pairs, match", [
    ([("q", "a", "x")], "each pair is"), ([("q", None)], "the answer is None"), ([("q", 3)], "the answer is 3"),
    ([("", "a")], "the question is ''"), ("qa", "got a str"), ({"q": "a"}, "got a dict"),
])
def test_from_pairs_names_bad_pairs(pairs, match) -> None:
    """A triple gave "too many values to unpack", a None or int answer an AttributeError, and an
    empty question became a query."""
    from medrag.errors import DataError

    with pytest.raises(DataError, match=match):
        IRTask.from_pairs(pairs)


@pytest.mark.parametrize("extra, match", [
    ("Distracteur glycémie", r"extra_corpus takes a list of distractor texts, got a str; one text: extra_corpus=\["),
    (["ok", "  "], "extra_corpus item 1 is '  ', not a text"), ([None], "extra_corpus item 0 is None"),
    (["ok", "\u2060"], r"extra_corpus item 1 is '\\u2060', not a text"),  # invisible only: blank (review)
])
def test_from_pairs_names_bad_distractors(extra, match) -> None:
    """A string was added as one one-character distractor per letter; blank distractors failed at the encode (audit)."""
    from medrag.errors import DataError

    with pytest.raises(DataError, match=match):
        IRTask.from_pairs([("fer ?", "fer")], extra_corpus=extra)


def test_from_pairs_reads_nfc_and_nfd_spellings_as_one_text() -> None:
    """One question in NFC and NFD with two answers became two queries of one answer each, the other
    answer counting as a wrong hit of each, though the split and the dedupe read them as one (user tryout)."""
    import hashlib
    import unicodedata

    question = "Quels sont les symptômes du diabète ?"
    task = IRTask.from_pairs([(question, "La glycémie à jeun."), (unicodedata.normalize("NFD", question),
                                                                   "Une hémoglobine glyquée."),
                              ("CRP ?", unicodedata.normalize("NFD", "Une CRP élevée.")), ("VS ?", "Une CRP élevée.")])
    assert len(task.queries) == 3 and len(task.corpus) == 3
    qid = next(q for q, text in task.queries.items() if text == question)  # the first spelling is kept
    assert len(task.qrels[qid]) == 2
    # an NFC text keeps the id it had
    assert IRTask.from_pairs([("fer ?", "fer")]).queries == {"q" + hashlib.sha1(b"fer ?").hexdigest()[:12]: "fer ?"}


def test_per_query_metrics_refuses_a_string_of_ids_and_repeated_ids() -> None:
    """A relevant "d12" was matched as substrings (NDCG 0.47 for a ranking without d12); a ranking
    that repeats an id scored above 1 (NDCG 1.31, recall 1.5)."""
    from medrag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="set of document ids"):
        per_query_metrics([["d1", "d2"]], ["d12"])
    with pytest.raises(InvalidInputError, match="distinct document ids"):
        per_query_metrics([["d1", "d1", "d2"]], [{"d1", "d2"}])
    assert per_query_metrics([["d1", "d2"]], [["d2"]], ["recall@1", "mrr@10"])["mrr@10"][0] == 0.5
