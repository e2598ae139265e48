"""Integration: the embedded e5-small on real FrenchMedMCQA questions, cross-checked against ranx."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.cache import EmbeddingCache
from evaluation.data import load_task
from evaluation.evaluator import evaluate_models
from tests.conftest import SHARED_DATA, requires_shared

from .helpers import counting

pytestmark = [pytest.mark.integration, requires_shared, pytest.mark.filterwarnings("ignore:unsafe cast:Warning")]

METRICS = ["ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "recall@100"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One embedding cache for the module: e5-small encodes the task once, not once per test."""
    return tmp_path_factory.mktemp("emb-cache")


@pytest.fixture(scope="module")
def task():
    # 200 test questions: a corpus of ~200 answers, so recall@100 and map@100 are not trivially 1.
    return load_task(SHARED_DATA / "frenchmedmcqa", limit=200)


def test_e5_metrics_match_ranx_at_every_size(e5_embeddings, task, cache_dir):
    ranx = pytest.importorskip("ranx")
    from medrag import truncate_embeddings

    emb = counting(e5_embeddings)
    cache = EmbeddingCache(cache_dir)
    report = evaluate_models([emb], task, metrics=METRICS, cache=cache, n_bootstrap=200, n_resamples=1000)
    # each side encoded at most once (once per cache miss), at full size for every size
    assert len(emb.calls) == cache.misses <= 2
    assert {n for n, _ in emb.calls} <= {len(task.queries), len(task.corpus)}
    result = report.models[0]
    assert sorted(result.sizes) == [64, 128, 256, 384]

    qids, dids = list(task.queries), list(task.corpus)
    q = cache.encode(emb, [task.queries[x] for x in qids], "query")
    d = cache.encode(emb, [task.corpus[x] for x in dids], "document")
    assert len(emb.calls) == cache.misses  # served from the cache
    qrels = ranx.Qrels({qid: {doc: 1 for doc in task.qrels[qid]} for qid in qids})
    for dim in result.sizes:
        scores = truncate_embeddings(q, dim) @ truncate_embeddings(d, dim).T
        run = ranx.Run({qid: {dids[j]: float(scores[i, j]) for j in range(len(dids))} for i, qid in enumerate(qids)})
        ranx.evaluate(qrels, run, METRICS)  # per-query scores are kept in run.scores, by query id
        for m in METRICS:
            ours = result.sizes[dim].per_query[m]
            theirs = np.array([run.scores[m][qid] for qid in qids])
            np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=f"{m} at size {dim}")

    # sanity of the real numbers: better than chance, and the full size is not worse than 64 by chance alone
    chance = 1 / len(task.corpus)
    assert result.score(384, "recall@1") > 10 * chance
    ci = result.cis[384]["ndcg@10"]
    assert ci.low < ci.mean < ci.high and ci.high - ci.low < 0.2


def test_second_run_reads_the_cache_and_reproduces_the_report(e5_embeddings, task, cache_dir, tmp_path):
    first = evaluate_models([e5_embeddings], task, dims=[384, 64], cache=EmbeddingCache(cache_dir),
                            n_bootstrap=100, n_resamples=500)
    emb = counting(e5_embeddings)
    second = evaluate_models([emb], task, dims=[384, 64], cache=EmbeddingCache(cache_dir), n_bootstrap=100,
                             n_resamples=500)
    assert emb.calls == []  # nothing re-encoded
    assert second.to_dict()["models"][0]["sizes"] == first.to_dict()["models"][0]["sizes"]
    paths = second.write(tmp_path / "report")
    assert paths["plot"].stat().st_size > 5000
