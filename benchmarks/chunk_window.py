"""Chunks over the model's token window: how many word-count chunking makes, and what they hide from dense search.

``medrag index`` cuts documents into sentence windows of about ``--chunk-words`` words. A model
encodes only the first ``max_seq_length`` tokens of a text (512 for e5, prompt and title
included), and French medical text dense in numbers, units and codes takes far more tokens per word
than prose, so some word-count chunks overflow: what follows the window is searchable by its words
(BM25) but not by its meaning. Since December 5 ``medrag index`` cuts chunks to the model's window
(``max_tokens="model"``, :func:`medrag.chunking.chunk_text`).

Two measures, on ``../shared/data/french-medical-text`` chunked as ``medrag index --id-field id``
does (the leaflets with ``--title-field product``), with and without the window:

1. **Counts** per corpus: chunks, chunks over the window, tokens beyond it, and words no chunk's
   vector encodes (past the window, and not repeated by the next chunk's overlap).
2. **A known-item probe** (``--probe-docs``, leaflets only: the corpus where chunks overflow): from
   sampled leaflets that have a chunk over the window, the query is the first ``--query-words``
   words past the window in such a chunk that the next chunk does not repeat (its overlap repeats
   the chunk's last sentence): words no chunk's vector encodes, at least :data:`MIN_QUERY_WORDS`
   of them, found in no other sampled leaflet; the relevant passages are the chunks holding them; the corpus is every chunk of the sampled leaflets, chunked each way. Dense search with
   the model at full size: recall@1, recall@10, MRR@10.

Usage::

    python benchmarks/chunk_window.py --probe-docs 60 --out benchmarks/results/chunk_window.json
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import (RESULTS, ScriptParser, add_data_root_argument, non_negative_int, positive_int,  # noqa: E402
                     require_data, run_script, suite_data_root)
from medrag.chunking import CHUNK_OVERLAP, CHUNK_WORDS, chunk_text  # noqa: E402

#: A probe query is a run of at least this many words that no chunk's vector encodes.
MIN_QUERY_WORDS = 6
#: The corpora of ``french-medical-text`` and the field ``medrag index --title-field`` would name.
CORPORA = {"leaflets": ("drug_leaflets.jsonl.gz", "product"), "cases": ("clinical_cases_pamj.jsonl.gz", None),
           "abstracts": ("pubmed_abstracts_morfitt.jsonl.gz", None)}


def read_documents(folder: Path, name: str) -> list[tuple[str, str | None]]:
    """``(text, title)`` of every document of one corpus."""
    file, title_field = CORPORA[name]
    with gzip.open(folder / file, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["text"], " ".join(str(r[title_field]).split()) if title_field and r.get(title_field) else None)
            for r in rows if str(r.get("text") or "").strip()]


def chunks_of(text: str, title: str | None, emb, window: int | None, chunk_words: int, overlap: int) -> list[str]:
    """The chunks ``medrag index`` stores for one document (title prefixed), cut to ``window`` or not."""
    def count(chunk: str) -> int:
        return emb.count_tokens([f"{title} : {chunk}" if title else chunk])[0]

    pieces = chunk_text(text, chunk_words, overlap, max_tokens=window, count_tokens=count if window else None)
    return [p if not title or p.startswith(title) else f"{title} : {p}" for p in pieces]


def lost_words(chunk: str, next_chunk: str | None, emb, window: int) -> list[str]:
    """The words of ``chunk`` past the model's window that ``next_chunk`` does not hold either
    (its overlap repeats the end of ``chunk``): words no chunk's vector encodes."""
    words = chunk.split()
    lo, hi = 0, len(words)  # the first word whose prefix reaches the window
    while lo < hi:
        mid = (lo + hi) // 2
        if emb.count_tokens([" ".join(words[:mid])])[0] < window:
            lo = mid + 1
        else:
            hi = mid
    tail = words[lo:]
    k = 0
    while k < len(tail) and " ".join(tail[k:]) not in (next_chunk or ""):
        k += 1
    return tail[:k]


def probe(docs: list[tuple[str, str | None]], emb, window: int, args) -> dict:
    """The known-item probe (module docstring) on ``docs``: scores with and without the window."""
    plain = [chunks_of(t, title, emb, None, args.chunk_words, args.overlap) for t, title in docs]
    texts = [" ".join(t.split()) for t, _ in docs]
    queries = []
    for chunks in plain:
        for i, chunk in enumerate(chunks):
            if emb.count_tokens([chunk])[0] > window:
                lost = lost_words(chunk, chunks[i + 1] if i + 1 < len(chunks) else None, emb, window)
                q = " ".join(lost[:args.query_words])
                # boilerplate that other leaflets repeat ("Si vous avez d'autres questions...") is no known item
                if len(lost) >= MIN_QUERY_WORDS and sum(q in t for t in texts) == 1:
                    queries.append(q)
    cut = [chunks_of(t, title, emb, window, args.chunk_words, args.overlap) for t, title in docs]
    qv = emb.encode_queries(queries)
    out = {"queries": len(queries)}
    for name, per_doc in (("words only (before)", plain), ("cut to the window (now)", cut)):
        passages = [c for chunks in per_doc for c in chunks]
        with warnings.catch_warnings():  # the chunks over the window are truncated: what is measured
            warnings.simplefilter("ignore", UserWarning)
            pv = emb.encode_documents(passages)
        ranks = np.argsort(-(qv @ pv.T), axis=1)[:, :10]
        r1 = r10 = mrr = 0.0
        for q, row in zip(queries, ranks):
            hits = [j for j, p in enumerate(row) if q in passages[p]]
            r1 += bool(hits and hits[0] == 0)
            r10 += bool(hits)
            mrr += 1 / (hits[0] + 1) if hits else 0.0
        n = max(len(queries), 1)
        out[name] = {"passages": len(passages), "recall@1": round(r1 / n, 4), "recall@10": round(r10 / n, 4),
                     "mrr@10": round(mrr / n, 4)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ScriptParser(__file__, __doc__.split("\n\n")[0])
    add_data_root_argument(parser)
    parser.add_argument("--model", default=None, help="model spec (default: medrag's default model)")
    parser.add_argument("--chunk-words", type=positive_int, default=CHUNK_WORDS, help="as medrag index's")
    parser.add_argument("--overlap", type=non_negative_int, default=CHUNK_OVERLAP, help="as medrag index's")
    parser.add_argument("--probe-docs", type=non_negative_int, default=120,
                        help="leaflets with a chunk over the window sampled for the probe (0: counts only)")
    parser.add_argument("--query-words", type=positive_int, default=20, help="words of a probe query")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's sample")
    parser.add_argument("--out", default=str(RESULTS / "chunk_window.json"), help="JSON file written")
    args = parser.parse_args(argv)
    folder = require_data(Path(suite_data_root(args.data_root)) / "french-medical-text", "french-medical-text",
                          "--data-root")
    from medrag import MatryoshkaEmbeddings

    emb = MatryoshkaEmbeddings(args.model, show_progress=False)
    window = emb.max_tokens
    if window is None:
        raise SystemExit(f"{emb.spec} cannot count tokens: nothing to measure")
    t0 = time.perf_counter()
    result: dict = {"model": emb.spec, "window": window, "chunk_words": args.chunk_words, "overlap": args.overlap,
                    "command": "python benchmarks/chunk_window.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "corpora": {}}
    overflowing: list[tuple[str, str | None]] = []
    for name in CORPORA:
        docs = read_documents(folder, name)
        row = {"documents": len(docs)}
        for label, cap in (("words only (before)", None), ("cut to the window (now)", window)):
            counts: list[int] = []
            lost = 0  # words past a chunk's window that the next chunk does not repeat (none once cut)
            for doc in docs:
                chunks = chunks_of(doc[0], doc[1], emb, cap, args.chunk_words, args.overlap)
                doc_counts = emb.count_tokens(chunks)
                counts += doc_counts
                found = [i for i, n in enumerate(doc_counts) if n > window]
                lost += sum(len(lost_words(chunks[i], chunks[i + 1] if i + 1 < len(chunks) else None, emb, window))
                            for i in found)
                if found and cap is None and name == "leaflets":
                    overflowing.append(doc)
            over = [n for n in counts if n > window]
            row[label] = {"chunks": len(counts), "over_window": len(over), "tokens_beyond": sum(n - window for n in over),
                          "max_tokens": max(counts), "mean_tokens": round(float(np.mean(counts)), 1)}
            if cap is None:
                row[label]["words_never_encoded"] = lost
        row["documents_with_a_chunk_over"] = len(overflowing) if name == "leaflets" else None
        result["corpora"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    if args.probe_docs:
        sample = random.Random(args.seed).sample(overflowing, min(args.probe_docs, len(overflowing)))
        result["probe"] = {"documents": len(sample), "query_words": args.query_words, "seed": args.seed,
                           **probe(sample, emb, window, args)}
        print("probe", json.dumps(result["probe"]), file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - t0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
