"""Choose a Matryoshka size for a budget: storage, latency and quality per size.

For each size of the model: bytes per vector (float32 and int8), the storage of N vectors,
the time of an exact search over N vectors of that size (timed on a random matrix of N/100 rows,
at least 1,000, and scaled to N; with one BLAS thread, before the model encodes anything: on a
busy 2-core machine each multi-threaded call waited for a descheduled thread, a fixed cost that the
scaling multiplied by N/rows, so every size timed alike and the script picked size 32), and NDCG@10 on the sample's eval questions. Then picks the
best-scoring size that fits the budget.

Run: python examples/choose_size.py [--n 1000000] [--max-gib 1.0] [--max-ms 50]
"""

import argparse
import time

import contextlib

import numpy as np

from evaluation.evaluator import evaluate_models
from medrag import MatryoshkaEmbeddings, truncate_embeddings
from medrag.qa.sample import load_sample_corpus

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=1_000_000, help="passages you plan to index")
ap.add_argument("--max-gib", type=float, default=1.0, help="vector storage budget (float32), GiB")
ap.add_argument("--max-ms", type=float, default=50.0, help="exact-search latency budget per query, ms")
args = ap.parse_args()
if args.n < 1 or args.max_gib <= 0 or args.max_ms <= 0:  # before the model loads
    ap.error("--n must be >= 1, --max-gib and --max-ms > 0")

try:  # installed with sentence-transformers (scikit-learn); without it, OMP_NUM_THREADS=1 does the same
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

emb = MatryoshkaEmbeddings()
rng = np.random.default_rng(0)
latency = {}
for dim in emb.dims:
    # latency: exact search over random unit vectors of the size, 1/100 of N, scaled up; timed before
    # any encoding, with a random query (the time does not depend on the values)
    sample_n = min(args.n, max(1_000, args.n // 100))
    matrix = truncate_embeddings(rng.standard_normal((sample_n, dim)).astype(np.float32), dim)
    q = truncate_embeddings(rng.standard_normal((1, dim)).astype(np.float32), dim)[0]
    top = min(10, sample_n - 1)  # argpartition needs kth < rows
    times = []
    with threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext():
        np.argpartition(-(matrix @ q), top)[:10]  # warm-up: first-call costs are not the search's
        for _ in range(21):  # the median of many runs: a mean of a few swung 20x on a busy machine
            start = time.perf_counter()
            np.argpartition(-(matrix @ q), top)[:10]
            times.append(time.perf_counter() - start)
    latency[dim] = float(np.median(times)) * 1000 * (args.n / sample_n)

corpus = load_sample_corpus()
report = evaluate_models([emb], corpus.task("eval"), metrics=("ndcg@10",), n_bootstrap=200, n_resamples=200)
rows = [(dim, dim * 4, dim + 4, args.n * dim * 4 / 2**30, latency[dim], report.models[0].score(dim)) for dim in emb.dims]

print(f"{'size':>5} {'B/vec f32':>9} {'B/vec int8':>10} {'GiB f32':>8} {'exact ms':>9} {'NDCG@10':>8}")
for dim, b32, b8, gib, ms, ndcg in rows:
    print(f"{dim:>5} {b32:>9} {b8:>10} {gib:>8.2f} {ms:>9.1f} {ndcg:>8.3f}")
fits = [r for r in rows if r[3] <= args.max_gib and r[4] <= args.max_ms]
if fits:
    best = max(fits, key=lambda r: (r[5], -r[0]))
    print(f"\nWithin {args.max_gib} GiB and {args.max_ms} ms for {args.n:,} passages: size {best[0]} "
          f"(NDCG@10 {best[5]:.3f}). Or index it in MatryoshkaChroma: coarse 64 in HNSW, full size for the rerank.")
else:
    print("\nNo size fits both budgets for exact search: use MatryoshkaChroma (HNSW on 64 dims) or a larger budget.")
