"""`medrag index` killed mid-ingest and resumed, at scale: no duplicate, no re-encoding.

The store issue's target: ``medrag index`` resumes after SIGKILL with no duplicates and no
re-encoding, at 100k chunks with precomputed vectors and at 5k with the real model. This script
builds a corpus of real French medical documents (the leaflets, clinical cases and abstracts of
``../shared/data/french-medical-text``, a fixed shuffle of whole documents, enough of them to
give ``--chunks`` chunks at ``--chunk-words`` words), runs the indexer in a child process,
SIGKILLs it ``--kills`` times at random moments (after a random number of encoded batches plus a
random delay, so inside an encode, an upsert or between them), and re-runs it to completion.

Two encoders:

* ``--vectors precomputed``: :class:`medrag.PrecomputedEmbeddings` over seeded unit vectors
  (384 dims) of every chunk text, built before the runs: the indexer looks vectors up, so the
  measure is the store's and the indexer's, not a model's. Driven through :func:`medrag.indexing.index_corpus`
  (the CLI takes a model spec, not a vector file).
* ``--vectors model``: the ``medrag index`` command itself with the default model
  (``bundled:medrag-e5-small-fr``) on the CPU.

In each run the child prints every batch it encodes; the checks after the last run: the
collection holds exactly the corpus's chunks (one record per (document, position), ids unique),
each resumed run encoded only the chunks missing when it started (``encoded == total - stored``
for the final run; a killed run's encodes are counted up to the kill), a search answers, the coarse
stage was decided once (the store's default "auto": on the first write, 4,096 texts) and every later
run kept it (kind and projection digest recorded after each kill), and 2,000 sampled records' stored
coarse vectors equal the recorded projection of their stored full vectors.

Usage (run it alone; minutes at 100k, about 15 minutes for 5k chunks with the model on 2 cores;
batches of 128 there, so that the 964 chunks after the first write leave room for random kills)::

    python benchmarks/index_resume.py --vectors precomputed --chunks 100000 --out benchmarks/results/index_resume_100k_precomputed.json
    python benchmarks/index_resume.py --vectors model --chunks 5000 --batch-size 128 --out benchmarks/results/index_resume_5k_model.json
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import SHARED_DATA, ScriptParser, positive_int, require_data, run_script  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "french-medical-text"
FILES = ("drug_leaflets", "clinical_cases_pamj", "pubmed_abstracts_morfitt")
DIM = 384

_PRECOMPUTED_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from medrag import MatryoshkaChroma, PrecomputedEmbeddings
from medrag.indexing import index_corpus
corpus, db, texts_file, vectors_file, chunk_words, batch = sys.argv[2:8]
texts = open(texts_file, encoding="utf-8").read().split("\x1e")
emb = PrecomputedEmbeddings.from_arrays(texts, np.load(vectors_file), spec="synthetic-384", fingerprint="5e1f0c0de0384")
real = emb.encode_documents
def encode_documents(batch_texts):
    print("encode", len(batch_texts), flush=True)
    return real(batch_texts)
emb.encode_documents = encode_documents
store = MatryoshkaChroma("medrag", emb, persist_directory=db)
print("start", len(store), flush=True)
report = index_corpus(corpus, store, id_field="id", chunk_words=int(chunk_words), batch_size=int(batch),
                      show_progress=False)
print("done", report.stored, flush=True)
"""

_MODEL_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import medrag.embeddings as E
real = E.MatryoshkaEmbeddings.encode_documents
def encode_documents(self, texts):
    print("encode", len(texts), flush=True)
    return real(self, texts)
E.MatryoshkaEmbeddings.encode_documents = encode_documents
from medrag.cli import main
sys.exit(main(sys.argv[2:]))
"""


def build_corpus(folder: Path, n_chunks: int, chunk_words: int, seed: int, data: Path = DATA
                 ) -> tuple[Path, list[str], int]:
    """Write whole documents of ``data`` (fixed shuffle) until their chunks reach ``n_chunks``; return
    the file, the distinct chunk texts and the number of chunks."""
    from medrag.chunking import chunk_text

    docs = []
    for name in FILES:
        with gzip.open(Path(data) / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            docs += [{"id": f"{name}:{r['id']}", "text": r["text"]} for r in map(json.loads, f) if r["text"].strip()]
    random.Random(seed).shuffle(docs)
    out, texts, total = folder / "corpus.jsonl", {}, 0
    with out.open("w", encoding="utf-8") as f:
        for doc in docs:
            if total >= n_chunks:
                break
            chunks = chunk_text(doc["text"], chunk_words)
            total += len(chunks)
            texts.update(dict.fromkeys(chunks))
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    if total < n_chunks:
        raise SystemExit(f"the corpus gives only {total} chunks at {chunk_words} words; lower --chunk-words")
    return out, list(texts), total


def stored_count(db: Path) -> int:
    if not (db / "chroma.sqlite3").exists():
        return 0
    out = subprocess.run([sys.executable, "-c", "import sys, chromadb\nc = chromadb.PersistentClient(sys.argv[1])\n"
                          "print(c.get_collection('medrag').count() if c.list_collections() else 0)", str(db)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"could not count the records in {db}: {out.stderr[-1000:]}")
    return int(out.stdout.strip() or 0)


def coarse_stage(db: Path) -> dict:
    """The coarse stage the collection records (kind, and a digest of the fitted projection)."""
    if not (db / "chroma.sqlite3").exists():
        return {"kind": None, "projection_sha256": None}
    out = subprocess.run([sys.executable, "-c", "import sys, json, hashlib, chromadb\n"
                          "c = chromadb.PersistentClient(sys.argv[1])\n"
                          "m = dict(c.get_collection('medrag').metadata or {}) if c.list_collections() else {}\n"
                          "d = m.get('medrag:rotation_data')\n"
                          "print(json.dumps({'kind': m.get('medrag:coarse_rotation'),"
                          " 'projection_sha256': d and hashlib.sha256(d.encode()).hexdigest()}))", str(db)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"could not read the collection metadata in {db}: {out.stderr[-1000:]}")
    return json.loads(out.stdout)


def coarse_agreement(col, sample: int, seed: int) -> float:
    """The lowest cosine, over ``sample`` random records, between a record's stored coarse vector and
    the collection's recorded coarse stage applied to its stored full vector (int8 rounding keeps it
    above ~0.98; a record written under another projection would fall near 0)."""
    import base64

    from medrag.coarse import CoarseProjection
    from medrag.vector_codec import decode_rows

    meta = dict(col.metadata)
    full_dim, coarse_dim = int(meta["medrag:full_dim"]), int(meta["medrag:coarse_dim"])
    ids = col.get(include=[])["ids"]
    pick = [ids[i] for i in np.random.default_rng(seed).choice(len(ids), min(sample, len(ids)), replace=False)]
    res = col.get(ids=pick, include=["embeddings", "metadatas"])
    full = decode_rows([m["_medrag_full"] for m in res["metadatas"]], meta["medrag:full_encoding"], full_dim)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    data = meta.get("medrag:rotation_data")
    if data:
        want = CoarseProjection.from_bytes(base64.b64decode(data), full_dim, coarse_dim).project(full)
    else:
        want = full[:, :coarse_dim] / np.linalg.norm(full[:, :coarse_dim], axis=1, keepdims=True)
    stored = np.asarray(res["embeddings"], dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    return float(np.min(np.sum(stored * want, axis=1)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--vectors", choices=("precomputed", "model"), default="precomputed",
                        help="precomputed: seeded vectors looked up by text; model: `medrag index` with the default model")
    parser.add_argument("--chunks", type=positive_int, default=100_000, help="chunks the corpus gives (at least)")
    parser.add_argument("--chunk-words", type=positive_int, default=60, help="words per chunk")
    parser.add_argument("--batch-size", type=positive_int, default=512, help="chunks encoded and written per batch")
    parser.add_argument("--kills", type=positive_int, default=3, help="runs killed (SIGKILL) before the final run")
    parser.add_argument("--seed", type=int, default=0, help="seeds the corpus shuffle, the vectors and the kills")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder of the French medical text (drug_leaflets.jsonl.gz, ...)")
    parser.add_argument("--out", required=True, help="the JSON report")
    parser.add_argument("--workdir", default=None, help="temporary folder (default: a new one, removed at the end)")
    args = parser.parse_args(argv)
    for name in FILES:
        require_data(args.data / f"{name}.jsonl.gz", "the French medical text", "--data")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="medrag-index-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    corpus, texts, total = build_corpus(work, args.chunks, args.chunk_words, args.seed, args.data)
    db = work / "db"
    shutil.rmtree(db, ignore_errors=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    if args.vectors == "precomputed":
        vecs = np.random.default_rng(args.seed).standard_normal((len(texts), DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        (work / "texts.txt").write_text("\x1e".join(texts), encoding="utf-8")
        np.save(work / "vectors.npy", vecs)
        child = work / "child.py"
        child.write_text(_PRECOMPUTED_CHILD)
        cmd = [sys.executable, str(child), str(REPO), str(corpus), str(db), str(work / "texts.txt"),
               str(work / "vectors.npy"), str(args.chunk_words), str(args.batch_size)]
    else:
        child = work / "child.py"
        child.write_text(_MODEL_CHILD)
        cmd = [sys.executable, str(child), str(REPO), "index", str(corpus), "--persist-dir", str(db), "--id-field", "id",
               "--chunk-words", str(args.chunk_words), "--batch-size", str(args.batch_size), "--no-progress",
               "--device", "cpu"]
    from medrag.coarse import fit_sample_size
    from medrag.store import DEFAULT_COARSE_DIM

    # the first write of a new collection holds fit_sample_size texts (4,096: the default "auto"
    # coarse stage decides and fits on it), then batch_size each
    first_write = max(args.batch_size, fit_sample_size("auto", DEFAULT_COARSE_DIM))
    calls = 1 + -(-max(total - first_write, 0) // args.batch_size)
    runs = []
    t_all = time.perf_counter()
    for kill in range(args.kills):
        start = stored_count(db)
        first = first_write if start == 0 else args.batch_size  # encode calls left
        remaining = 1 + -(-max(total - start - first, 0) // args.batch_size)
        target = rng.randrange(1, max(remaining, 2))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        encoded = seen = 0
        while seen < target:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"run {kill}: the indexer ended before it was killed (target batch {target})")
            if line.startswith("encode"):
                seen += 1
                encoded += int(line.split()[1])
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        after = stored_count(db)
        runs.append({"run": kill, "stored_at_start": start, "killed_during_batch": target, "encoded_before_kill": encoded,
                     "stored_after_kill": after, "seconds": round(time.perf_counter() - t0, 1),
                     "coarse_stage": coarse_stage(db)})
        print(json.dumps(runs[-1]), flush=True)
    start = stored_count(db)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=6 * 3600)
    if done.returncode != 0:
        raise SystemExit(f"the final run failed: {done.stderr[-2000:]}")
    encoded = sum(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("encode"))
    final = {"run": "final", "stored_at_start": start, "encoded": encoded, "seconds": round(time.perf_counter() - t0, 1)}
    runs.append(final)
    print(json.dumps(final), flush=True)

    import chromadb

    col = chromadb.PersistentClient(str(db)).get_collection("medrag")
    count = col.count()
    keys, ids = set(), set()
    for offset in range(0, count, 5000):
        res = col.get(limit=5000, offset=offset, include=["metadatas"])
        ids.update(res["ids"])
        keys.update((m["doc"], m["chunk"]) for m in res["metadatas"])
    last = coarse_stage(db)
    decided = [r["coarse_stage"] for r in runs[:-1] if r["coarse_stage"]["kind"] in ("learned", "none")]
    agreement = coarse_agreement(col, 2000, args.seed)
    hits = col.query(query_embeddings=np.eye(1, 64, dtype=np.float32), n_results=5, include=[])["ids"][0]
    checks = {
        "count_equals_chunks": count == total,
        "ids_unique": len(ids) == count,
        "one_record_per_doc_position": len(keys) == count,
        "final_run_encoded_only_the_missing": encoded == total - start,
        "search_answers": len(hits) == 5,
        # once a run's first write decided the coarse stage (and fitted it), every later run kept it
        "coarse_stage_decided": last["kind"] in ("learned", "none"),
        "coarse_stage_kept": all(stage == last for stage in decided),
        "coarse_vectors_match_the_recorded_stage": agreement > 0.95,
    }
    report = {
        "vectors": args.vectors, "chunks": total, "distinct_chunk_texts": len(texts), "chunk_words": args.chunk_words,
        "batch_size": args.batch_size, "first_write": first_write, "encode_calls_uninterrupted": calls, "kills": args.kills, "documents": sum(1 for _ in corpus.open()),
        "runs": runs, "stored": count, "coarse_stage": last,
        "min_cosine_stored_vs_recorded_coarse": round(agreement, 4), "checks": checks, "all_ok": all(checks.values()),
        "total_seconds": round(time.perf_counter() - t_all, 1), "cores": os.cpu_count(),
        "command": " ".join(["python", "benchmarks/index_resume.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("chunks", "stored", "checks", "all_ok", "total_seconds")}, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    if not report["all_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    raise SystemExit(run_script(main))
