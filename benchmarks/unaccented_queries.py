"""Queries typed without accents: dense, BM25 and hybrid NDCG@10 per size, version 2's analyzer options against the defaults.

Users on a phone or a keyboard without French accents type ``creatinine elevee`` for
``créatinine élevée``. This script scores the validation suite twice, with its queries as
written and with every query accent-folded (the passages as they are), for the dense funnel's
ranking (exact cosine at each size), BM25 alone and the hybrid fusion at the store's defaults,
with version 2's analyzer options (stem before folding, glued units whole: ``fold_before_stem=False,
split_units=False``) and the defaults. Encodings come from the evaluator's
cache (``$MEDRAG_CACHE/embeddings``); the folded queries are encoded once.

Usage::

    python benchmarks/unaccented_queries.py --part val --pilot --max-queries 100 --max-passages 300 \\
        --out benchmarks/results/unaccented_queries_val.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import (RESULTS, ScriptParser, add_suite_arguments, auto_range, hybrid_row, lexical_weight,  # noqa: E402
                     load_suite, print_hybrid_table, run_script, suite_data_root)
from medrag.lexical.analyzer import ANALYZER_VERSION, AnalyzerOptions, fold_accents  # noqa: E402
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT  # noqa: E402

#: The analyzers compared: version 2's behaviour (stem, then fold; glued units whole) and the defaults.
ANALYZERS = {"version 2's options": {"fold_before_stem": False, "split_units": False},
             f"default (version {ANALYZER_VERSION})": {}}


def unaccented(suite):
    """A copy of ``suite`` whose queries are accent-folded (ids, passages and judgements unchanged)."""
    from medrag.qa.suite import SuiteDomain

    domains = {name: SuiteDomain(name, replace(dom.task, queries={q: fold_accents(t) for q, t in dom.task.queries.items()}),
                                 dom.report_only)
               for name, dom in suite.domains.items()}
    return replace(suite, domains=domains)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--model", default=None, help="the model spec (default: medrag's default model)")
    parser.add_argument("--weight", type=lexical_weight, default=DEFAULT_LEXICAL_WEIGHT,
                        help="the hybrid's lexical weight: auto (a weight per query) or a number (the store's "
                             "default; the recorded JSONs ran at 0.2, 0.4 was chosen with bundled:multilingual-e5-small)")
    parser.add_argument("--out", default=str(RESULTS / "unaccented_queries.json"), help="the JSON written")
    args = parser.parse_args(argv)
    data_root = suite_data_root(args.data_root)

    from evaluation.hybrid import evaluate_hybrid_suite
    from medrag import MatryoshkaEmbeddings

    suite = load_suite(args, data_root)
    embeddings = MatryoshkaEmbeddings(args.model)
    rows: dict[str, dict] = {}
    for queries, variant in (("as written", suite), ("without accents", unaccented(suite))):
        for name, change in ANALYZERS.items():
            res = evaluate_hybrid_suite(embeddings, variant, weights=[args.weight], method=DEFAULT_FUSION,
                                        options=replace(AnalyzerOptions(), **change))
            rows[f"{queries}, {name}"] = hybrid_row(res, args.weight)
    print_hybrid_table(rows, "queries, analyzer", suite, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "command": " ".join(sys.argv), "suite": suite.settings | {"part": args.part, "pilot": args.pilot},
        "model": args.model or "the default model (load_model(None))",
        "fusion": DEFAULT_FUSION, "weight": args.weight, **auto_range(args.weight), "choice_domains": suite.choice_domains,
        "analyzers": {name: asdict(replace(AnalyzerOptions(), **change)) for name, change in ANALYZERS.items()},
        "ndcg@10": rows}, indent=1))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
