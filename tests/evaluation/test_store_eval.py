"""Store-level evaluation: the exact funnel, the harness (on an exact in-memory double of the store API),
and the real :class:`medrag.MatryoshkaChroma` when it is installed."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from evaluation.retrieval import rank_documents
from evaluation.store_eval import exact_funnel, evaluate_store
from medrag import PrecomputedEmbeddings

from .helpers import TEXTS, counting, tiny_task

HAVE_STORE = importlib.util.find_spec("medrag.store") is not None


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def testexact_funnel_with_every_candidate_is_flat_search():
    rng = np.random.default_rng(0)
    d, q = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=16))
    ids = [f"d{i}" for i in range(50)]
    flat = rank_documents(q[None], d, ids, 10)[0]
    assert exact_funnel(unit(q[:4]), q, unit(d[:, :4]), d, ids, candidates=50, k=10) == flat


def testexact_funnel_reranks_only_the_coarse_candidates():
    # coarse (the sign of the first coordinate) keeps a and b; full size prefers c, which the cut removed
    ids = ["a", "b", "c"]
    full = unit(np.array([[0.9, 0.1], [0.8, 0.6], [-0.1, 1.0]]))
    q = unit(np.array([0.1, 1.0]))
    coarse = unit(full[:, :1])
    assert exact_funnel(unit(q[:1]), q, coarse, full, ids, candidates=2, k=3) == ["b", "a"]
    assert exact_funnel(unit(q[:1]), q, coarse, full, ids, candidates=3, k=3)[0] == "c"


def test_precomputed_copy_returns_given_vectors_without_encoding(tiny_embeddings):
    emb = counting(tiny_embeddings)
    qv = {TEXTS[0]: np.full(128, 0.5, dtype=np.float32)}
    fed = PrecomputedEmbeddings(queries=qv, fallback=emb)
    np.testing.assert_array_equal(fed.encode_queries([TEXTS[0]])[0], qv[TEXTS[0]])
    assert emb.calls == []
    fed.encode_documents([TEXTS[1]])  # unknown text: really encoded
    assert len(emb.calls) == 1
    assert fed.fingerprint == tiny_embeddings.fingerprint


class ExactStore:
    """An exact, in-memory implementation of the store API that store_eval relies on (test double)."""

    created: list = []

    def __init__(self, ids, full, embedding, coarse_dim, candidates):
        self.ids, self.full, self.embedding = ids, full, embedding
        self.coarse_dim, self.candidates = coarse_dim, candidates
        self.deleted = False
        ExactStore.created.append(self)

    @classmethod
    def from_texts(cls, texts, embedding, metadatas=None, *, ids, collection_name, coarse_dim=16, candidates=100):
        from medrag import truncate_embeddings

        full = embedding.encode_documents(list(texts))
        store = cls(list(ids), full, embedding, coarse_dim, candidates)
        store.coarse = truncate_embeddings(full, coarse_dim)
        return store

    def similarity_search_with_score(self, query, k=4, candidates=None):
        from langchain_core.documents import Document
        from medrag import truncate_embeddings

        q = self.embedding.encode_queries([query])[0]
        order = exact_funnel(truncate_embeddings(q, self.coarse_dim), q, self.coarse, self.full, self.ids,
                              candidates or self.candidates, k)
        return [(Document(page_content="", id=i), 0.0) for i in order]

    def delete_collection(self):
        self.deleted = True


def test_harness_on_an_exact_store(tiny_embeddings, monkeypatch):
    fake = types.ModuleType("medrag.store")
    fake.MatryoshkaChroma = ExactStore
    monkeypatch.setitem(sys.modules, "medrag.store", fake)
    emb = counting(tiny_embeddings)
    task = tiny_task(8)
    res = evaluate_store(emb, task, coarse_dim=64, candidates=3, encode_sample=2, metrics=["ndcg@3", "recall@1"])
    store = ExactStore.created[-1]
    assert store.deleted and store.candidates == 3
    # the store saw the very same vectors: its ranking is the exact funnel's
    for m in res.metrics:
        np.testing.assert_allclose(res.methods["store"].per_query[m], res.methods["funnel_exact"].per_query[m])
    assert res.settings["candidates"] == 3 and res.settings["queries"] == 8
    # queries and corpus encoded once (+2 timed encodes), not again by the store
    assert [n for n, _ in emb.calls] == [8, 8, 1, 1]
    for name in ("flat", "coarse", "store", "funnel_exact"):
        m = res.methods[name]
        assert m.latencies_ms.size == 8 and 0 <= m.p50_ms <= m.p95_ms
    assert res.encode_ms.size == 2
    assert res.ndcg_gap("flat", "ndcg@3") == 0.0
    d = res.to_dict()
    assert set(d["methods"]) == {"flat", "funnel_exact", "store", "coarse"}  # the double has no hybrid search
    assert d["encode_latency_ms"]["n"] == 2
    md = res.to_markdown()
    assert "| store |" in md and "p95 ms" in md and "(query encoding)" in md
    # a sweep over candidates on the same index; with every document as candidate the funnel is flat search
    swept = evaluate_store(tiny_embeddings, task, coarse_dim=64, candidates=3, sweep=[len(task.corpus), 3],
                           encode_sample=0, metrics=["ndcg@3"])
    assert [r["candidates"] for r in swept.sweep] == [3, len(task.corpus)]
    for row in swept.sweep:
        assert row["store"] == row["funnel_exact"]
    assert swept.sweep[-1]["store_gap"] == pytest.approx(0.0, abs=1e-12)
    assert "Candidates sweep" in swept.to_markdown()
    with pytest.raises(ValueError, match="below k"):
        evaluate_store(tiny_embeddings, task, candidates=5)
    # with every document as a candidate the funnel is flat search
    full = evaluate_store(tiny_embeddings, task, coarse_dim=64, candidates=len(task.corpus), encode_sample=0,
                          metrics=["ndcg@3", "mrr@3"])
    assert full.ndcg_gap("store", "ndcg@3") == pytest.approx(0.0, abs=1e-12)


@pytest.mark.skipif(not HAVE_STORE, reason="store not available (medrag.store lands with the store issue)")
@pytest.mark.integration
def test_real_store_funnel_matches_flat_search(e5_embeddings):
    from medrag.qa.task import IRTask
    from tests.tiny_model import SENTENCES

    docs = list(dict.fromkeys(SENTENCES))[1:8]
    pairs = [(f"Que sait-on de ceci : {d[:40]} ?", d) for d in docs]
    res = evaluate_store(e5_embeddings, IRTask.from_pairs(pairs), encode_sample=3)
    assert res.ndcg_gap("store") <= 0.002
    # the real store also runs its hybrid search (BM25 fused with the funnel)
    assert res.methods["store_hybrid"].latencies_ms.size == len(pairs) and "| store_hybrid |" in res.to_markdown()
    assert res.methods["store"].means["ndcg@10"] == pytest.approx(res.methods["funnel_exact"].means["ndcg@10"],
                                                                  abs=0.002)


def test_flat_scores_equal_evaluate_models_full_size(tiny_embeddings, tmp_path):
    """flat ranked one query at a time and evaluate_models all at once: float32 rounding (~5e-7) flipped
    near-ties, and the same vectors scored 0.6229 and 0.6264 NDCG@10 in one report (audit)."""
    import json

    from evaluation.cache import EmbeddingCache
    from evaluation.data import load_task
    from evaluation.evaluator import evaluate_models

    rows = [{"question": f"Quelle est la dose maximale de médicament numéro {i} chez l'adulte ?",
             "answer": f"La dose maximale du médicament {i} est de {i + 1} g par jour."} for i in range(40)]
    path = tmp_path / "ev.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    task = load_task(path, question_column="question", answer_column="answer", eval_fraction=0.5)
    full = tiny_embeddings.full_dim
    report = evaluate_models([tiny_embeddings], task, dims=[full], cache=EmbeddingCache(enabled=False),
                             n_bootstrap=20, n_resamples=20)
    result = evaluate_store(tiny_embeddings, task, encode_sample=0, candidates=20,
                            store_kwargs={"full_encoding": "float32"})
    assert result.methods["flat"].means["ndcg@10"] == report.models[0].score(full)


def test_a_spec_evaluates_like_evaluate_models_and_a_path_is_no_task(tiny_model_dir, tmp_path):
    """evaluate_store("bundled:...", task) failed with AttributeError ('str' has no encode_queries), though
    evaluate_models takes specs; a path as the task, or a dict to load_task, failed with AttributeError /
    TypeError (user tryout)."""
    from evaluation.data import load_task
    from evaluation.evaluator import evaluate_models
    from medrag.errors import DataError, InvalidInputError

    task = tiny_task(6)
    res = evaluate_store(str(tiny_model_dir), task, coarse_dim=32, candidates=20, encode_sample=0)
    assert 0.0 <= res.methods["store"].means["ndcg@10"] <= 1.0
    with pytest.raises(InvalidInputError, match="embeddings must be a model spec or an encoder"):
        evaluate_store(42, task)
    with pytest.raises(InvalidInputError, match=r"task must be an IRTask, got str; read the file with "
                                                r"evaluation.data.load_task\('pairs.jsonl'\)"):
        evaluate_models([str(tiny_model_dir)], "pairs.jsonl")
    with pytest.raises(InvalidInputError, match="task must be an IRTask"):
        evaluate_store(str(tiny_model_dir), {"queries": {}})
    with pytest.raises(DataError, match=r"load_task reads a dataset path or id, got dict; .* IRTask\(queries"):
        load_task({"queries": {}})


@pytest.mark.skipif(not HAVE_STORE, reason="store not available")
def test_the_coarse_baselines_use_the_stores_fitted_projection(tiny_embeddings):
    """A corpus of 1,000 passages got a learned projection in the store while coarse and funnel_exact
    used the first 64 coordinates: the store beat the exact funnel meant to bound it (user tryout)."""
    from medrag.qa.task import IRTask

    task = IRTask.from_pairs([(f"Quelle dose du médicament {i} chez l'enfant de {i % 7} ans ?",
                               f"Le médicament {i} se donne à {i % 5 + 1} mg/kg, {i % 3 + 1} fois par jour.")
                              for i in range(40)], name="doses")
    res = evaluate_store(tiny_embeddings, task, coarse_dim=16, candidates=10, encode_sample=0,
                         store_kwargs={"coarse_rotation": "pca", "full_encoding": "float32"})
    assert res.settings["coarse_rotation"] == "pca" and "stage 'pca'" in res.to_markdown()
    # exact search over 40 passages: the store is the exact funnel, ranked with the same projection
    for m in res.metrics:
        np.testing.assert_allclose(res.methods["store"].per_query[m], res.methods["funnel_exact"].per_query[m],
                                   atol=1e-6)
    plain = evaluate_store(tiny_embeddings, task, coarse_dim=16, candidates=10, encode_sample=0,
                           store_kwargs={"coarse_rotation": "none", "full_encoding": "float32"})
    assert plain.settings["coarse_rotation"] == "none"
    assert any(not np.allclose(res.methods["coarse"].per_query[m], plain.methods["coarse"].per_query[m])
               for m in res.metrics)
