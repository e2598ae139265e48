"""The store benchmark's deterministic pieces: chunking, the int8 cache format, the cached embeddings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from medrag.errors import DataError

from tests.conftest import REPO, SHARED_DATA, requires_shared

spec = importlib.util.spec_from_file_location("store_benchmark", REPO / "benchmarks" / "store_benchmark.py")
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)


def test_chunks_are_whole_overlapping_sentences() -> None:
    sents = [f"Sentence number {i} has exactly eight words here." for i in range(40)]
    chunks = sb.chunk_answer(" ".join(sents))
    assert len(chunks) > 1
    for c in chunks[:-1]:
        assert len(c.split()) >= sb.CHUNK_WORDS
    for c in chunks:  # every chunk is a run of whole sentences
        assert c.startswith("Sentence number") and c.endswith("here.")
    # consecutive chunks overlap, and together they cover every sentence
    for a, b in zip(chunks, chunks[1:]):
        assert b.split(" Sentence")[0] in a
    assert all(any(s in c for c in chunks) for s in sents)
    assert sb.chunk_answer("Short answer.") == ["Short answer."]
    long = " ".join(["mot"] * 200)
    assert all(len(p.split()) <= sb.CHUNK_MAX_WORDS for p in sb.sentences(long))


def test_cache_roundtrip_and_cached_embeddings(tmp_path: Path) -> None:
    passages = [f"passage {i}" for i in range(50)]
    questions = [f"question {i} ?" for i in range(5)]
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    scale = np.abs(vecs).max(1) / 127
    np.save(tmp_path / "passages_int8_00.npy", np.rint(vecs / scale[:, None]).astype(np.int8))
    np.save(tmp_path / "passages_scale.npy", scale.astype(np.float32))
    np.save(tmp_path / "queries.npy", vecs[:5])
    manifest = dict(model="m", fingerprint="f", full_dim=32, chunk_words=sb.CHUNK_WORDS,
                    chunk_max_words=sb.CHUNK_MAX_WORDS, shuffle_seed=sb.SHUFFLE_SEED, query_seed=sb.QUERY_SEED,
                    corpus_chunks=50, passages=50, passages_hash=sb.text_hash(passages), queries=5,
                    queries_hash=sb.text_hash(questions), rows_per_file=sb.ROWS_PER_FILE)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    got, q, _ = sb.load_cache(tmp_path, passages, questions, 20)
    assert got.shape == (20, 32) and np.abs((got * vecs[:20]).sum(1) - 1).max() < 1e-3
    with pytest.raises(SystemExit, match="text hash"):
        sb.load_cache(tmp_path, passages[::-1], questions)
    emb = sb.cached_embeddings(passages[:20], got, questions, q, "f")
    np.testing.assert_array_equal(emb.encode_documents([passages[3]])[0], got[3])
    assert emb.embed_query(questions[2]) == q[2].tolist()


@requires_shared
@pytest.mark.integration
def test_medquad_chunking_is_deterministic() -> None:
    data = SHARED_DATA / "medquad" / "medquad.jsonl"
    a, _, qa = sb.load_corpus(data)
    b, _, qb = sb.load_corpus(data)
    assert a == b and qa == qb and len(a) >= 100_000 and len(set(a)) == len(a)


def test_sharded_encoding_resumes_and_grows(tmp_path: Path) -> None:
    """A rerun encodes nothing; a larger N encodes only its new shards (and the partial last one)."""
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)

    texts = [f"texte {'a' * i}" for i in range(10)]
    first = sb.encode_sharded(texts[:7], encode, tmp_path, "t", shard=3)
    assert calls == [3, 3, 1] and first.shape == (7, 2)
    assert np.array_equal(sb.encode_sharded(texts[:7], encode, tmp_path, "t", shard=3), first)
    assert calls == [3, 3, 1]
    grown = sb.encode_sharded(texts, encode, tmp_path, "t", shard=3)
    assert calls == [3, 3, 1, 3, 1] and np.array_equal(grown, encode(texts))
    assert not list(tmp_path.glob("*.tmp.npy"))
    # another process encoded a later shard only: cached_only measures on what exists
    more = [f"autre {i}" for i in range(6)]
    sb.encode_sharded(more[3:], encode, tmp_path, "m", shard=3)
    assert sb.cached_shards(more, tmp_path, "m", shard=3) == [3, 4, 5]
    assert sb.encode_sharded(more, encode, tmp_path, "m", shard=3, cached_only=True).shape == (3, 2)


@requires_shared
def test_suite_queries_take_a_quarter_of_each_choice_domain_deterministically() -> None:
    from medrag.qa.suite import CHOICE_DOMAINS, domain_task

    texts, domains = sb.suite_queries(40, split="dev")
    assert list(dict.fromkeys(domains)) == list(CHOICE_DOMAINS)
    assert all(domains.count(d) == 10 for d in CHOICE_DOMAINS)
    assert (texts, domains) == sb.suite_queries(40, split="dev")
    val = set(domain_task("leaflets", "val", SHARED_DATA).queries.values())
    assert all(t in val for t, d in zip(texts, domains) if d == "leaflets")  # dev -> the suite's val part


def test_funnel_settings_parse_and_reject_bad_items() -> None:
    import argparse

    assert sb._funnel_settings("0/int8,400/float16") == [(0, "int8"), (400, "float16")]
    for bad in ("400", "x/int8", "400/int4", "-1/int8"):
        with pytest.raises(argparse.ArgumentTypeError, match="EF/ENCODING"):
            sb._funnel_settings(bad)
    # french-recall's --store-* lists: refused at parse time, before minutes of loading vectors
    assert sb._ef_list("0,400") == [None, 400]
    assert sb._choice_list("none", "auto")("auto,none") == ["auto", "none"]
    with pytest.raises(argparse.ArgumentTypeError, match="integers"):
        sb._ef_list("400,-1")
    with pytest.raises(argparse.ArgumentTypeError, match="'bogus'"):
        sb._choice_list("none", "auto")("none,bogus")


def test_synthetic_runs_each_funnel_setting_as_its_own_row(tmp_path: Path) -> None:
    """The synthetic benchmark's funnel rows are real stores built with the stated ef_search and
    encoding (read back from the collection each child made; 0 = Chroma's 100, stated explicitly)."""
    out = tmp_path / "syn.json"
    sb.main(["synthetic", "--n", "300", "--dim", "32", "--queries", "5", "--coarse-dim", "8",
                          "--candidates", "20", "--funnel", "0/int8,50/float16", "--workdir", str(tmp_path / "w"),
                          "--out", str(out)])
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["exact", "funnel-ef100-int8", "funnel-ef50-float16", "flat"]
    assert rows["funnel-ef50-float16"]["ef_search"] == 50 and rows["funnel-ef50-float16"]["full_encoding"] == "float16"
    assert rows["funnel-ef100-int8"]["ef_search"] == 100 and rows["funnel-ef100-int8"]["full_encoding"] == "int8"
    assert all(0.0 <= r["recall_at_10"] <= 1.0 for r in rows.values()) and rows["exact"]["recall_at_10"] == 1.0
    assert report["funnel_settings"] == [[0, "int8"], [50, "float16"]]


def test_recall_on_the_medquad_corpus_uses_its_chunks_and_questions(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``french-recall --corpus medquad``: the chunks and questions of ``run`` (same chunking and
    shuffles), cached under their own tag; with as many candidates as chunks the funnel is exact."""
    data = tmp_path / "medquad.jsonl"
    words = "fever cough anemia insulin dosage kidney liver statin migraine asthma".split()
    with data.open("w", encoding="utf-8") as fh:
        for i in range(12):
            answer = " ".join(f"Sentence {j} of answer {i} mentions {words[(i + j) % 10]} and {words[j % 10]} in eight words."
                              for j in range(14))
            fh.write(json.dumps({"question": f"What about {words[i % 10]} number {i}?", "answer": answer,
                                 "source": "test"}) + "\n")
    chunks, _, questions = sb.load_corpus(data)
    out, cache = tmp_path / "recall.json", tmp_path / "cache"
    sb.main(["french-recall", "--corpus", "medquad", "--data", str(data), "--model", str(tiny_model_dir),
             "--chunks", str(len(chunks)), "--queries", "5", "--coarse", "8", "--rotations", "residual",
             "--residual-hidden", "8", "--residual-steps", "2",
             "--candidates", f"5,{len(chunks)}", "--cache", str(cache), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["corpus"] == "medquad" and report["chunks"] == len(chunks) == report["all_chunks"]
    assert report["queries"] == 5 and report["queries_per_domain"] == {"medquad": 5}
    assert [r["stage"] for r in report["rows"]] == ["first 8 coordinates", "residual-8"]
    assert report["residual"] == {"hidden": 8, "steps": 2}
    for row in report["rows"]:
        assert 0.0 <= row["recall"][0] <= 1.0 and row["recall"][1] == 1.0
    assert sorted({f.name.split("-")[0] for f in cache.glob("*.npy")}) == ["medquad"]
    assert len(chunks) > 12 and len(questions) == 12  # several chunks per answer; unique questions


def test_residual_stage_starts_as_the_pca_and_learns_what_a_linear_map_cannot() -> None:
    """The benchmark's non-linear coarse stage (Matryoshka-Adaptor shape): with no step it is the
    PCA stage; trained on queries of the topics that style-dominated passages are about, it ranks
    held-out queries' candidates far better than the PCA and than the linear learned fit."""
    from medrag.coarse import fit_learned, fit_pca
    from tests.medrag.test_coarse import _questions

    passages, fit_queries = _questions(400, seed=1)
    _, held_out = _questions(300, seed=2)
    exact = np.argsort(-(held_out @ passages.T), axis=1)[:, :10]

    def recall(project) -> float:
        first = np.argsort(-(sb._unit(project(held_out)) @ sb._unit(project(passages)).T), axis=1)[:, :20]
        return float(np.mean([len(set(c[np.argsort(-(passages[c] @ held_out[i]))[:10]]) & set(exact[i])) / 10
                              for i, c in enumerate(first)]))

    pca = fit_pca(passages, 4)
    untrained = sb.fit_residual(passages, fit_queries, 4, hidden=64, steps=0)
    assert np.abs(sb._unit(untrained(passages)) - pca.project(passages)).max() < 1e-5
    residual = recall(sb.fit_residual(passages, fit_queries, 4, hidden=64, steps=100))
    linear = recall(fit_learned(passages, 4, queries=fit_queries, steps=100).project)
    assert residual > recall(pca.project) + 0.1 and residual > linear + 0.1  # measured 0.329 vs 0.168 / 0.171


def test_recall_refuses_bad_arguments_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MedQuAD .medquad.jsonl. not found at .*pass --data"):
        sb.main(["french-recall", "--corpus", "medquad", "--data", str(tmp_path / "missing.jsonl")])
    for bad in (["--residual-hidden", "0"], ["--residual-steps", "-1"], ["--queries", "0"]):
        with pytest.raises(SystemExit):
            sb.main(["french-recall", "--corpus", "medquad", "--data", str(tmp_path / "missing.jsonl"), *bad])
