"""The vector sidecar's SQLite layout: read time of the rerank's rows and file size, per layout.

The store's copy of the packed full vectors (``medrag/_store_sidecar.py``) is read once per
query: ``SELECT id, vec ... WHERE collection = ? AND id IN (100 ids)``. This script builds the
same table with N random rows of the packed size of a 384-dim (388 bytes) and a 1024-dim (1,028
bytes) int8 vector, in each candidate layout, and times that read over random id sets:

* ``without-rowid``: ``PRIMARY KEY (collection, id) WITHOUT ROWID`` (the first layout);
* ``rowid``: an ordinary table with ``UNIQUE (collection, id)`` (the layout used now);
* each with and without a memory map (``PRAGMA mmap_size``), at SQLite's default 4 KB pages.

Usage::

    python benchmarks/sidecar_layout.py --rows 100000 --out benchmarks/results/sidecar_layout_100k.json
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import ScriptParser, positive_int, run_script  # noqa: E402

LAYOUTS = {
    "without-rowid": "CREATE TABLE vectors (collection TEXT NOT NULL, id TEXT NOT NULL, vec BLOB NOT NULL, "
                     "PRIMARY KEY (collection, id)) WITHOUT ROWID",
    "rowid": "CREATE TABLE vectors (collection TEXT NOT NULL, id TEXT NOT NULL, vec BLOB NOT NULL, "
             "UNIQUE (collection, id))",
}
COLLECTION = "0" * 8 + "-0000-0000-0000-" + "0" * 12  # a UUID-sized key, as the store writes


def build(path: Path, layout: str, rows: int, size: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(LAYOUTS[layout])
    rng = random.Random(0)
    db.execute("BEGIN")
    db.executemany("INSERT INTO vectors VALUES (?, ?, ?)",
                   ((COLLECTION, f"{i:032x}", rng.randbytes(size)) for i in range(rows)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def read_ms(path: Path, rows: int, mmap: bool, reads: int, k: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    if mmap:
        db.execute(f"PRAGMA mmap_size={1 << 30}")
    ids = [f"{i:032x}" for i in range(rows)]
    rng = random.Random(1)
    marks = ",".join("?" * k)
    times = []
    for _ in range(reads):
        part = rng.sample(ids, k)
        t = time.perf_counter()
        got = dict(db.execute(f"SELECT id, vec FROM vectors WHERE collection = ? AND id IN ({marks})",
                              [COLLECTION, *part]))
        times.append(time.perf_counter() - t)
        assert len(got) == k
    db.close()
    return round(1000 * statistics.median(times), 3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--rows", type=positive_int, default=100_000, help="rows in the table")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[388, 1028], help="row sizes in bytes")
    parser.add_argument("--reads", type=positive_int, default=300, help="timed reads per layout")
    parser.add_argument("--k", type=positive_int, default=100, help="rows per read (the rerank's candidates; at most --rows)")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.k > args.rows:
        parser.error(f"--k {args.k} is more than --rows {args.rows}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for layout in LAYOUTS:
                path = Path(tmp) / f"{layout}-{size}.sqlite3"
                build(path, layout, args.rows, size)
                row = {"row_bytes": size, "layout": layout, "file_mb": round(os.path.getsize(path) / 1e6, 1),
                       "read_ms": read_ms(path, args.rows, False, args.reads, args.k),
                       "read_ms_mmap": read_ms(path, args.rows, True, args.reads, args.k)}
                results.append(row)
                print(json.dumps(row), flush=True)
                path.unlink()
    report = {"rows": args.rows, "k": args.k, "reads": args.reads, "cores": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
