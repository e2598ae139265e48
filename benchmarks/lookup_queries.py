"""How many of the validation suite's queries the identifier-lookup rule of hybrid search touches.

With ``lexical_weight="auto"`` a query made mostly of codes (at least half of its scored terms are
:func:`medrag.lexical.bm25.is_identifier_term`: an ATC or CIP code, ``HbA1c``, a 5-digit number)
ranks the candidates holding all its codes first (:func:`medrag.lexical.fusion.fused_ranking`).
The rule was written for lookups a user tryout typed (``3400936379848``, ``ATC N02BE01``), which
the suite does not hold; this script counts, per domain, the suite's queries that are lookups and
those whose codes some passage holds together (the only ones whose ranking the rule can change),
with every such query named (its id and codes). No model is needed: BM25 over each domain's passages.

Usage::

    python benchmarks/lookup_queries.py --part val --out benchmarks/results/lookup_queries_val.json
    python benchmarks/lookup_queries.py --part test --out benchmarks/results/lookup_queries_test.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, ScriptParser, add_suite_arguments, load_suite, run_script  # noqa: E402
from medrag.lexical.bm25 import BM25Index, is_identifier_term  # noqa: E402


def count_lookups(suite) -> dict:
    """Per domain: queries, lookups, lookups with holders, and those queries with their codes."""
    out = {}
    for name, domain in suite.domains.items():
        task = domain.task
        index = BM25Index()
        index.add(list(task.corpus), list(task.corpus.values()))
        lookups = []
        for qid, text in task.queries.items():
            scores = index.query_scores(text)
            if scores.holders is not None:
                codes = [t for t in index.query_terms(text) if is_identifier_term(t)]
                lookups.append({"query": qid, "codes": codes, "holders": len(scores.holders)})  # no text: ../shared stays there
        out[name] = {"queries": len(task.queries), "passages": len(task.corpus), "lookups": len(lookups),
                     "lookups_with_holders": sum(1 for x in lookups if x["holders"]), "examples": lookups}
        print(f"{name:13s} {len(task.queries):6d} queries {len(task.corpus):7d} passages  lookups {len(lookups):4d}"
              f"  with holders {out[name]['lookups_with_holders']:4d}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ScriptParser(__file__, __doc__.split("\n\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--out", default=None, help=f"JSON file (default {RESULTS.name}/lookup_queries_PART.json)")
    args = parser.parse_args(argv)
    suite = load_suite(args)
    record = {"part": args.part, "pilot": args.pilot,
              "command": "python benchmarks/lookup_queries.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "domains": count_lookups(suite)}
    out = Path(args.out) if args.out else RESULTS / f"lookup_queries_{args.part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
