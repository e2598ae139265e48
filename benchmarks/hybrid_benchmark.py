"""Hybrid vs dense latency of MatryoshkaChroma, and the lexical index's build rate and size, at N passages.

Lexical side: real French medical text: the leaflets, clinical cases and abstracts of
``../shared/data/french-medical-text`` cut into passages of 60 words (about 117k passages in
all; the first N are used). Dense side: synthetic unit vectors (384 dims, seeded, looked up by
text, so no model runs and the timings are the store's): the funnel's cost does not depend on
what the vectors mean. Queries: 8-word windows of random passages (real French).

Measured: analysis + BM25 matrix build rate (passages/s), the index file size, the rebuild of
the index from the Chroma collection (what a stale index costs), the cost of a write followed
by a hybrid search, and p50/p95 of ``similarity_search`` (dense funnel) and ``hybrid_search``
(k=10, 100 candidates each side) over the queries.

Usage (run it alone: timings on a loaded machine are meaningless)::

    python benchmarks/hybrid_benchmark.py --n 100000 --out benchmarks/results/hybrid_benchmark_100k.json
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, SHARED_DATA, ScriptParser, auto_range, positive_int, require_data, run_script  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "french-medical-text"
FILES = ("drug_leaflets", "clinical_cases_pamj", "pubmed_abstracts_morfitt")
WORDS = 60
DIM = 384


def check_data(data: Path, flag: str = "--data") -> None:
    """A one-line :class:`medrag.DataError` unless ``data`` holds the French corpora's files."""
    for name in FILES:
        require_data(Path(data) / f"{name}.jsonl.gz", "the French medical text", flag)


def passages(n: int, data: Path = DATA) -> list[str]:
    """The first ``n`` 60-word passages of the French corpora in ``data`` (leaflets, cases, abstracts,
    interleaved by file)."""
    check_data(data)
    per_file = []
    for name in FILES:
        chunks = []
        with gzip.open(Path(data) / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                words = json.loads(line)["text"].split()
                chunks += [" ".join(words[i:i + WORDS]) for i in range(0, len(words), WORDS) if len(words[i:i + WORDS]) >= 10]
        per_file.append(chunks)
    out: dict[str, None] = {}
    for i in range(max(map(len, per_file))):  # round-robin over the files, each until it runs out
        for chunks in per_file:
            if i < len(chunks):
                out[chunks[i]] = None
        if len(out) >= n:
            break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} distinct passages available, asked {n}")
    return list(out)[:n]


def window_queries(texts: list[str], n: int, words: int = 8, seed: int = 0) -> list[str]:
    """``n`` queries: a window of ``words`` consecutive words from each of ``n`` random passages."""
    rng = random.Random(seed)
    queries = []
    for t in rng.sample(texts, n):
        split = t.split()
        start = rng.randrange(0, max(1, len(split) - words))
        queries.append(" ".join(split[start:start + words]))
    return queries


class SyntheticEmbeddings:
    """Seeded unit vectors per text (numpy API of MatryoshkaEmbeddings; no model)."""

    full_dim = DIM
    dims = [DIM, 256, 128, 64]
    spec = "synthetic-384"
    fingerprint = "synthetic-384-seed0"

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def _vec(self, text: str) -> np.ndarray:
        v = self._cache.get(text)
        if v is None:
            rng = np.random.default_rng(abs(hash(text)) % (2 ** 32))
            v = rng.standard_normal(DIM).astype(np.float32)
            v /= np.linalg.norm(v)
        return v

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode_documents(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text).tolist()


def pcts(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(s), 2), "p95_ms": round(1000 * s[int(0.95 * (len(s) - 1))], 2)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--n", type=positive_int, default=100_000, help="passages indexed")
    parser.add_argument("--queries", type=positive_int, default=200, help="queries timed (at most --n)")
    parser.add_argument("--k", type=positive_int, default=10, help="results per search")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder of the French medical text (drug_leaflets.jsonl.gz, ...)")
    parser.add_argument("--out", default=str(RESULTS / "hybrid_benchmark.json"), help="the JSON report")
    parser.add_argument("--workdir", default=None, help="temporary folder (default: a new one, removed at the end)")
    args = parser.parse_args(argv)
    if args.queries > args.n:
        parser.error(f"--queries {args.queries} is more than --n {args.n} (one query per sampled passage)")
    check_data(args.data)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from medrag import MatryoshkaChroma
    from medrag.lexical.bm25 import BM25Index
    from medrag.lexical.fusion import DEFAULT_LEXICAL_WEIGHT

    texts = passages(args.n, args.data)
    queries = window_queries(texts, args.queries)
    report: dict = {"n": len(texts), "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1),
                    "queries": len(queries), "k": args.k, "cores": os.cpu_count(),
                    "lexical_weight": DEFAULT_LEXICAL_WEIGHT, **auto_range(DEFAULT_LEXICAL_WEIGHT),
                    "load_average_at_start": os.getloadavg()}

    # 1. the lexical index alone: analysis + matrix, size on disk (imports and the stemmer loaded first)
    warm = BM25Index()
    warm.add(["w"], [texts[0]])
    warm.search("warm", 1)
    index = BM25Index()
    c0, t0 = time.process_time(), time.perf_counter()
    index.add([str(i) for i in range(len(texts))], texts)
    c1, t1 = time.process_time(), time.perf_counter()
    index._matrix()
    c2, t2 = time.process_time(), time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medrag-hybrid-bench-"))
    index.save(work / "lexical.npz")
    report["lexical"] = {"analysis_s": round(t1 - t0, 2), "matrix_s": round(t2 - t1, 2),
                         "analysis_per_s": round(len(texts) / (t1 - t0)), "build_per_s": round(len(texts) / (t2 - t0)),
                         "file_mb": round((work / "lexical.npz").stat().st_size / 2 ** 20, 1),
                         "terms": len(index._vocab),
                         # CPU seconds of this process: what the build costs on a core of its own
                         # (wall time on a shared machine counts the other processes too)
                         "analysis_cpu_s": round(c1 - c0, 2), "matrix_cpu_s": round(c2 - c1, 2),
                         "build_per_cpu_s": round(len(texts) / (c2 - c0))}
    t0 = time.perf_counter()
    lat = [index.search(q, 100) and time.perf_counter() for q in queries[:50]]
    report["lexical"]["search_ms_mean"] = round(1000 * (time.perf_counter() - t0) / 50, 2)
    del index, lat
    print(json.dumps(report, indent=1), flush=True)

    # 2. the store: dense ingest, lexical rebuild from the collection, latencies
    emb = SyntheticEmbeddings()
    emb._cache = dict(zip(texts, emb.encode_documents(texts)))
    store = MatryoshkaChroma("bench", emb, persist_directory=str(work / "chroma"))
    t0 = time.perf_counter()
    store.add_texts(texts, ids=[str(i) for i in range(len(texts))], show_progress=False)
    report["store_ingest_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    store.lexical.rebuild()
    report["lexical_rebuild_from_collection_s"] = round(time.perf_counter() - t0, 2)
    for q in queries[:10]:  # warm-up
        store.similarity_search(q, k=args.k)
        store.hybrid_search(q, k=args.k)
    dense, hybrid, dense_cpu, hybrid_cpu = [], [], [], []
    for q in queries:
        c0, t0 = time.process_time(), time.perf_counter()
        store.similarity_search(q, k=args.k)
        c1, t1 = time.process_time(), time.perf_counter()
        store.hybrid_search(q, k=args.k)
        c2, t2 = time.process_time(), time.perf_counter()
        dense.append(t1 - t0)
        hybrid.append(t2 - t1)
        dense_cpu.append(c1 - c0)
        hybrid_cpu.append(c2 - c1)
    report["dense"] = pcts(dense)
    report["hybrid"] = pcts(hybrid)
    report["dense_cpu"] = pcts(dense_cpu)  # CPU time of this process (Chroma's Rust threads included)
    report["hybrid_cpu"] = pcts(hybrid_cpu)
    report["hybrid_over_dense_p50"] = round(report["hybrid"]["p50_ms"] / report["dense"]["p50_ms"], 2)
    stages = store.search_with_stages(queries[0], k=args.k, hybrid=True).timings
    report["hybrid_stages_ms_one_query"] = {k: round(v, 2) for k, v in stages.items()}
    # 3. a write with the index loaded, then the next hybrid search (incremental update + lazy matrix rebuild)
    t0 = time.perf_counter()
    store.add_texts(["La procalcitonine oriente vers une infection bactérienne."], ids=["new"])
    t1 = time.perf_counter()
    store.hybrid_search("procalcitonine", k=args.k)
    t2 = time.perf_counter()
    report["write_then_search"] = {"add_one_s": round(t1 - t0, 2), "next_hybrid_search_s": round(t2 - t1, 2)}
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(run_script(main))
