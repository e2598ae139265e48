"""The embedding cache: a second run does not call the encoder; any change of key re-encodes."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.cache import EmbeddingCache, default_cache_dir
from evaluation.evaluator import evaluate_models

from .helpers import TEXTS, counting, tiny_task


def test_second_encode_is_a_hit(tiny_embeddings, tmp_path):
    emb = counting(tiny_embeddings)
    cache = EmbeddingCache(tmp_path)
    first = cache.encode(emb, TEXTS[:3], side="query")
    assert len(emb.calls) == 1 and cache.misses == 1
    second = cache.encode(emb, TEXTS[:3], side="query")
    assert len(emb.calls) == 1 and cache.hits == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, tiny_embeddings.encode_queries(TEXTS[:3]), atol=1e-6)


def test_key_depends_on_side_texts_order_and_prompt(tiny_embeddings, tmp_path):
    cache = EmbeddingCache(tmp_path)
    k = cache.key(tiny_embeddings, TEXTS[:3], "query")
    assert k == cache.key(tiny_embeddings, TEXTS[:3], "query")
    assert k != cache.key(tiny_embeddings, TEXTS[:3], "document")
    assert k != cache.key(tiny_embeddings, TEXTS[:2], "query")
    assert k != cache.key(tiny_embeddings, TEXTS[:3][::-1], "query")
    other_prompt = tiny_embeddings.with_dimension(tiny_embeddings.dimension)
    other_prompt.query_prompt_name = "passage"
    assert k != cache.key(other_prompt, TEXTS[:3], "query")
    assert k.startswith(tiny_embeddings.fingerprint)


def test_disabled_cache_always_encodes_and_writes_nothing(tiny_embeddings, tmp_path):
    emb = counting(tiny_embeddings)
    cache = EmbeddingCache(tmp_path / "c", enabled=False)
    cache.encode(emb, TEXTS[:2], side="document")
    cache.encode(emb, TEXTS[:2], side="document")
    assert len(emb.calls) == 2 and not (tmp_path / "c").exists()
    with pytest.raises(ValueError):
        cache.encode(emb, TEXTS[:2], side="passage")


def test_corrupt_file_is_re_encoded(tiny_embeddings, tmp_path):
    emb = counting(tiny_embeddings)
    cache = EmbeddingCache(tmp_path)
    cache.encode(emb, TEXTS[:2], side="query")
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"not numpy")
    vecs = cache.encode(emb, TEXTS[:2], side="query")
    assert len(emb.calls) == 2 and vecs.shape == (2, 128)
    assert cache.encode(emb, TEXTS[:2], side="query").shape == (2, 128) and len(emb.calls) == 2


def test_evaluation_rerun_does_not_encode(tiny_embeddings, tmp_path):
    task = tiny_task()
    emb = counting(tiny_embeddings)
    r1 = evaluate_models([emb], task, cache=EmbeddingCache(tmp_path), n_bootstrap=20, n_resamples=20)
    assert len(emb.calls) == 2  # queries and corpus, once each, at full size for every size
    r2 = evaluate_models([emb], task, cache=EmbeddingCache(tmp_path), n_bootstrap=20, n_resamples=20)
    assert len(emb.calls) == 2
    assert r2.settings["cache_hits"] == 2 and r2.settings["cache_misses"] == 0
    assert r1.models[0].cis[64]["ndcg@10"] == r2.models[0].cis[64]["ndcg@10"]


def test_default_dir_follows_medrag_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    assert EmbeddingCache().folder == tmp_path / "embeddings"


def test_a_pooling_change_is_a_miss(tiny_model_dir, tmp_path):
    """The same weights with CLS pooling hit the mean-pooled model's cached vectors (user tryout:
    +0.0000 with the cache, +0.0115 with --no-cache): the fingerprint now hashes the modules, and
    files under a model's older fingerprints (which could not tell them apart) are not read."""
    import json
    import shutil

    from medrag import MatryoshkaEmbeddings

    copy = shutil.copytree(tiny_model_dir, tmp_path / "cls")
    pooling = next(copy.glob("*Pooling/config.json"))
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_mean_tokens": False,
                                   "pooling_mode_cls_token": True, "pooling_mode": "cls"}))
    cache = EmbeddingCache(tmp_path / "cache")
    mean = cache.encode(MatryoshkaEmbeddings(str(tiny_model_dir)), TEXTS[:4], side="document")
    cls = counting(MatryoshkaEmbeddings(str(copy)))
    got = cache.encode(cls, TEXTS[:4], side="document")
    assert cls.calls and not np.allclose(got, mean) and cache.hits == 0


def test_the_token_cap_is_part_of_the_key(tiny_embeddings, tmp_path) -> None:
    """``model.max_seq_length = 6`` changes the vectors, and the cache returned the full-length ones (December 5)."""
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["une phrase assez longue pour être tronquée par un plafond de six jetons"]
    emb = tiny_embeddings.with_dimension(tiny_embeddings.dimension)
    before = cache.encode(emb, texts, "document")
    cap = emb.model.max_seq_length
    try:
        emb.model.max_seq_length = 6
        capped = cache.encode(emb, texts, "document")
    finally:
        emb.model.max_seq_length = cap
    assert cache.hits == 0 and not np.allclose(before, capped)
    assert np.allclose(cache.encode(emb, texts, "document"), before) and cache.hits == 1


def test_labels_and_sizes_may_be_generators(tiny_embeddings, tmp_path) -> None:
    """A generator of labels was consumed by the length check and replaced by the specs in silence; a
    generator of sizes ended in a bare ValueError (December 5)."""
    report = evaluate_models([tiny_embeddings], tiny_task(), dims=(d for d in [128, 64]),
                             labels=(label for label in ["toy"]), cache=EmbeddingCache(tmp_path / "c"), n_bootstrap=10)
    assert [m.label for m in report.models] == ["toy"] and sorted(report.models[0].sizes) == [64, 128]


@pytest.mark.parametrize("enabled", [True, False])
def test_truncated_texts_are_logged_on_every_run_and_warned_once(tiny_embeddings, tmp_path, caplog, enabled):
    """A whole leaflet per passage: the library's truncation warning went to stderr only (not into
    report.md) and was not given at all when the vectors came from the cache (user tryout)."""
    import warnings

    long = " ".join(["la ferritine basse traduit une carence en fer"] * 40)
    texts = [long, "Une phrase courte.", long + " encore"]
    for run in range(2):  # two runs (two processes: a cache each), the second reading the first's files
        cache = EmbeddingCache(tmp_path, enabled=enabled)
        caplog.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the per-call UserWarning is not given on top
            cache.encode(tiny_embeddings, texts, side="document")
        lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(lines) == 1, (run, lines)
        assert lines[0].startswith(f"2 of 3 passages exceed the window of {tiny_embeddings.spec} "
                                   f"({tiny_embeddings.max_tokens} tokens)")
    assert cache.hits == (1 if enabled else 0)  # the second run's
    caplog.clear()
    cache.encode(tiny_embeddings, ["Une phrase courte."], side="query")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_truncation_is_counted_once_per_model_and_texts(tiny_embeddings, tmp_path, monkeypatch):
    """The store and hybrid evaluations ask the cache for the same vectors again: the texts were tokenized
    again each time to count the ones beyond the window."""
    import evaluation.cache as cache_module

    calls = []
    monkeypatch.setattr(cache_module, "_warn_truncated", lambda emb, texts, side: calls.append((len(texts), side)))
    cache = EmbeddingCache(tmp_path)
    for _ in range(3):
        cache.encode(tiny_embeddings, TEXTS[:3], side="document")
    cache.encode(tiny_embeddings, TEXTS[:3], side="query")
    cache.encode(tiny_embeddings, TEXTS[:2], side="document")
    assert calls == [(3, "document"), (3, "query"), (2, "document")]
