"""Which BM25 library under medrag's lexical index: bm25s (chosen) against rank_bm25 and SQLite FTS5.

The same N real French passages (``hybrid_benchmark.passages``: leaflets, cases and abstracts cut
into 60-word windows) are analysed once by medrag's French medical analyzer; each library then
indexes the same analysed terms, so only the library differs:

- ``bm25s`` through :class:`medrag.lexical.bm25.BM25Index` (sparse matrix of precomputed scores,
  Lucene BM25, k1 = 1.2, b = 0.75);
- ``rank_bm25.BM25Okapi`` (pure Python; what LangChain's ``BM25Retriever`` uses), k1 = 1.2, b = 0.75
  (skipped when ``rank_bm25`` is not installed: ``pip install rank_bm25``);
- SQLite FTS5 (in Python's standard library; its ``bm25()`` ranking, k1 = 1.2, b = 0.75, hard-coded
  in SQLite) over the terms joined by spaces.

Measured: the index build from analysed terms (seconds), its size, the p50 of one query's top 100
(8-word windows of random passages, analysed), and the overlap of each library's top 10 with bm25s's.

Usage::

    python benchmarks/lexical_libraries.py --n 100000 --queries 50 --out benchmarks/results/lexical_libraries_100k.json
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import ScriptParser, positive_int, run_script  # noqa: E402
from hybrid_benchmark import DATA, check_data, passages, window_queries  # noqa: E402


def _p50(fn, queries) -> tuple[float, list]:
    out, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        lat.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(lat), 2), out


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--n", type=positive_int, default=100_000, help="passages indexed")
    parser.add_argument("--queries", type=positive_int, default=50, help="queries timed (at most --n)")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder of the French medical text (drug_leaflets.jsonl.gz, ...)")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.queries > args.n:
        parser.error(f"--queries {args.queries} is more than --n {args.n} (one query per sampled passage)")
    check_data(args.data)

    from medrag.lexical.analyzer import FrenchMedicalAnalyzer
    from medrag.lexical.bm25 import BM25Index

    texts = passages(args.n, args.data)
    raw_queries = window_queries(texts, args.queries)
    analyzer = FrenchMedicalAnalyzer()
    t0 = time.perf_counter()
    terms = [analyzer(t) for t in texts]
    analysis_s = time.perf_counter() - t0
    queries = [analyzer(q) for q in raw_queries]
    report: dict = {"n": len(texts), "queries": len(queries), "analysis_s": round(analysis_s, 2),
                    "load_average_at_start": os.getloadavg(), "libraries": {}}
    work = Path(tempfile.mkdtemp(prefix="medrag-lexlib-"))

    # bm25s through BM25Index, fed the analysed terms (its own analysis is measured in hybrid_benchmark)
    import bm25s  # noqa: F401 (imported before the clock starts)

    index = BM25Index()
    t0 = time.perf_counter()
    vocab = index._vocab
    for i, row in enumerate(terms):
        index._rows[str(i)] = np.array([vocab.setdefault(w, len(vocab)) for w in row], dtype=np.int32)
    index._matrix()
    build = time.perf_counter() - t0
    index.save(work / "bm25s.npz")

    def bm25s_top(q: list[str]) -> list[int]:
        ids = [vocab[w] for w in q if w in vocab]
        return [int(x) for x in index.top(index._score_term_ids(ids), 100)[0]]

    p50, ref = _p50(bm25s_top, queries)
    report["libraries"]["bm25s"] = {"build_s": round(build, 2), "file_mb": round((work / "bm25s.npz").stat().st_size / 2**20, 1),
                                    "p50_ms": p50, "top10_overlap_with_bm25s": 1.0}

    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        report["libraries"]["rank_bm25"] = "not installed (pip install rank_bm25)"
    else:
        t0 = time.perf_counter()
        okapi = BM25Okapi(terms, k1=1.2, b=0.75)
        build = time.perf_counter() - t0

        def okapi_top(q: list[str]) -> list[int]:
            scores = okapi.get_scores(q)
            return [int(i) for i in np.argsort(-scores)[:100]]

        p50, got = _p50(okapi_top, queries[: max(5, len(queries) // 5)])  # slow: a fifth of the queries
        report["libraries"]["rank_bm25"] = {"build_s": round(build, 2), "file_mb": None, "p50_ms": p50,
                                            "top10_overlap_with_bm25s": _overlap(got, ref)}

    db = sqlite3.connect(work / "fts5.db")
    t0 = time.perf_counter()
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize = \"unicode61 remove_diacritics 0 tokenchars ',%\u2030-'\")")
    db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", ((i, " ".join(row)) for i, row in enumerate(terms)))
    db.commit()
    build = time.perf_counter() - t0

    def fts_top(q: list[str]) -> list[int]:
        if not q:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(q))
        return [r[0] for r in db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 100", (match,))]

    p50, got = _p50(fts_top, queries)
    db.close()
    report["libraries"]["sqlite_fts5"] = {"build_s": round(build, 2), "file_mb": round((work / "fts5.db").stat().st_size / 2**20, 1),
                                          "p50_ms": p50, "top10_overlap_with_bm25s": _overlap(got, ref)}
    report["load_average_at_end"] = os.getloadavg()
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def _overlap(got: list[list[int]], ref: list[list[int]]) -> float:
    return round(float(np.mean([len(set(g[:10]) & set(r[:10])) / 10 for g, r in zip(got, ref)])), 3)


if __name__ == "__main__":
    raise SystemExit(run_script(main))
