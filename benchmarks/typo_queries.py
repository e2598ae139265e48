"""Queries with a typing error in their rarest word: BM25 and hybrid NDCG@10 with and without typo tolerance.

A user types ``amoxiciline``, ``metformne``, ``hypotyroïdie``: the analyzer's term of the misspelt
word is held by no passage, so BM25 loses the query's most specific word, the one its lexical
side is for (drug names, analytes). ``AnalyzerOptions.typo_tolerance`` (the default) reads such a
query term as the held term one edit away that most passages hold
(:meth:`medrag.lexical.bm25.BM25Index.query_terms`). The suite has no misspelt queries, so they
are made from its own: in each query, the word of :data:`MIN_WORD` letters or more (not in
capitals, no digit) whose term is the rarest among the domain's passages gets one typing error
(a letter deleted, two adjacent letters swapped, one replaced or one inserted, never the first
letter; one seeded random draw per query). Those queries are scored as written and with the
typo, with and without typo tolerance; the whole suite as written is scored both ways too (what
the tolerance changes on real queries: their terms that no passage holds). Dense vectors come from
the evaluator's cache (``$MEDRAG_CACHE/embeddings``); the misspelt queries are encoded once.

Usage::

    python benchmarks/typo_queries.py --part val --pilot --max-queries 300 --max-passages 3000 \\
        --out benchmarks/results/typo_queries_val.json
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import (RESULTS, ScriptParser, add_suite_arguments, auto_range, hybrid_row, lexical_weight,  # noqa: E402
                     load_suite, print_hybrid_table, run_script, suite_data_root)
from medrag.lexical.analyzer import AnalyzerOptions, FrenchMedicalAnalyzer  # noqa: E402
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT  # noqa: E402

#: The shortest word given a typo (a short word's typo is often another word).
MIN_WORD = 7
_WORD = re.compile(r"(?<![\w-])[^\W\d_]{%d,}(?![\w-])" % MIN_WORD)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(word: str, rng: random.Random) -> str:
    """``word`` with one typing error (deletion, swap of two adjacent letters that differ,
    replacement or insertion), never at its first letter."""
    while True:
        kind, i = rng.choice(("delete", "swap", "replace", "insert")), rng.randrange(1, len(word))
        if kind == "delete":
            out = word[:i] + word[i + 1:]
        elif kind == "swap" and i + 1 < len(word):
            out = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif kind == "replace":
            out = word[:i] + rng.choice(_LETTERS) + word[i + 1:]
        else:
            out = word[:i] + rng.choice(_LETTERS) + word[i:]
        if out.lower() != word.lower():
            return out


def misspelt(suite, seed: int = 0) -> tuple[object, object]:
    """``(written, typed)``: two copies of ``suite`` holding only the queries that got a typo, as
    written and misspelt (passages and judgements unchanged)."""
    from medrag.qa.suite import SuiteDomain

    analyzer = FrenchMedicalAnalyzer()
    written, typed = {}, {}
    for name, dom in suite.domains.items():
        df: dict[str, int] = {}
        for text in dom.task.corpus.values():
            for term in set(analyzer(text)):
                df[term] = df.get(term, 0) + 1
        changed: dict[str, str] = {}
        for qid, text in dom.task.queries.items():
            words = [m for m in _WORD.finditer(text) if not m.group().isupper()]
            held = [(df[t[0]], -len(m.group()), m.start(), m) for m in words
                    if len(t := analyzer(m.group())) == 1 and df.get(t[0], 0) > 0]
            if not held:
                continue
            m = min(held, key=lambda x: x[:3])[3]
            rng = random.Random(f"{seed}:{name}:{qid}")
            changed[qid] = text[:m.start()] + typo(m.group(), rng) + text[m.end():]
        if not changed:
            continue
        qrels = {q: dom.task.qrels[q] for q in changed}
        keep = replace(dom.task, queries={q: dom.task.queries[q] for q in changed}, qrels=qrels)
        written[name] = SuiteDomain(name, keep, dom.report_only)
        typed[name] = SuiteDomain(name, replace(keep, queries=changed), dom.report_only)
    return replace(suite, domains=written), replace(suite, domains=typed)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--model", default=None, help="the model spec (default: medrag's default model)")
    parser.add_argument("--weight", type=lexical_weight, default=DEFAULT_LEXICAL_WEIGHT,
                        help="the hybrid's lexical weight: auto (a weight per query, the store's default) or a number")
    parser.add_argument("--seed", type=int, default=0, help="seed of the typing errors")
    parser.add_argument("--out", default=str(RESULTS / "typo_queries.json"), help="the JSON written")
    args = parser.parse_args(argv)
    data_root = suite_data_root(args.data_root)

    from evaluation.hybrid import evaluate_hybrid_suite
    from medrag import MatryoshkaEmbeddings

    suite = load_suite(args, data_root)
    written, typed = misspelt(suite, args.seed)
    embeddings = MatryoshkaEmbeddings(args.model)
    rows: dict[str, dict] = {}
    examples = {name: [(written.domains[name].task.queries[q], t) for q, t in list(dom.task.queries.items())[:3]]
                for name, dom in typed.domains.items()}
    for label, variant in (("all queries, as written", suite), ("queries given a typo, as written", written),
                           ("queries given a typo, with it", typed)):
        for tolerance in (False, True):
            res = evaluate_hybrid_suite(embeddings, variant, weights=[args.weight], method=DEFAULT_FUSION,
                                        options=AnalyzerOptions(typo_tolerance=tolerance))
            rows[f"{label}, typo tolerance {'on' if tolerance else 'off'}"] = {
                "queries": {dom: len(variant.domains[dom].task.queries) for dom in res.domains},
                **hybrid_row(res, args.weight)}
    print_hybrid_table(rows, "queries, setting", suite, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "command": " ".join(sys.argv), "suite": suite.settings | {"part": args.part, "pilot": args.pilot},
        "model": args.model or "the default model (load_model(None))", "seed": args.seed, "min_word": MIN_WORD,
        "fusion": DEFAULT_FUSION, "weight": args.weight, **auto_range(args.weight), "choice_domains": suite.choice_domains,
        "analyzer": asdict(AnalyzerOptions()), "examples": examples, "ndcg@10": rows}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
