"""Which analyzer options help French medical BM25: lexical-only NDCG@10 per suite domain, one option changed at a time.

No model runs: BM25 alone over the validation suite's tasks, with the default
:class:`~medrag.lexical.analyzer.AnalyzerOptions` and variants that flip one option, plus the
whitespace split a LangChain ``BM25Retriever`` uses by default (through the same BM25 code, so
only the tokenisation differs). The defaults are chosen on the ``val`` part (macro-average
over the choice domains). Each variant is also scored with its queries typed without accents
(``fold_accents`` on the query text, the passages as they are), as users on a phone or a
keyboard without French accents type them.

Usage::

    python benchmarks/analyzer_ablation.py --part val --pilot --max-queries 100 --max-passages 300 \\
        --out benchmarks/results/analyzer_ablation_val.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, ScriptParser, add_suite_arguments, load_suite, run_script  # noqa: E402
from evaluation.metrics import per_query_metrics  # noqa: E402
from medrag.lexical.analyzer import AnalyzerOptions, FrenchMedicalAnalyzer, fold_accents  # noqa: E402
from medrag.lexical.bm25 import BM25Index  # noqa: E402

VARIANTS = {
    "default": {},
    "no stemming": {"stem": False},
    "no accent folding": {"fold_accents": False},
    "no elision split": {"split_elisions": False},
    "no stopwords": {"stopwords": False},
    "alphanumerics split": {"keep_alphanumeric": False},
    "acronyms stemmed like words": {"keep_acronyms": False},
    "hyphenated compounds whole": {"split_hyphens": False},
    "stemmed before folding (as version 2)": {"fold_before_stem": False},
    "glued units whole": {"split_units": False},
    "both above (version 2's options)": {"fold_before_stem": False, "split_units": False},
    "spaced thousands split (as version 4)": {"join_thousands": False},
    "units of time as symbols (as version 5)": {"unit_words": False},
    "both above (version 4's reading)": {"join_thousands": False, "unit_words": False},
    "no typo tolerance": {"typo_tolerance": False},
}


class WhitespaceAnalyzer:
    """``text.split()`` as an analyzer: each token is its own term (LangChain BM25Retriever's default)."""

    def __call__(self, text: str) -> list[str]:
        return text.split()

    def tokens(self, text: str) -> list[str]:
        return text.split()

    def token_spans(self, text: str) -> tuple[str, list[tuple[str, int]]]:
        return text, [(m.group(), m.start()) for m in re.finditer(r"\S+", text)]

    def token_terms(self, token: str) -> tuple[str, ...]:
        return (token,)

    def other_reading(self, token: str) -> None:
        return None  # case is part of the token: no other reading


class WhitespaceIndex(BM25Index):
    """The same BM25 over ``text.split()`` tokens (LangChain BM25Retriever's default preprocessing)."""

    typo_tolerance = False  # BM25Retriever reads a query as typed

    def __init__(self) -> None:
        super().__init__()
        self.analyzer = WhitespaceAnalyzer()  # type: ignore[assignment]

    @property
    def signature(self) -> str:
        return "whitespace"


def accent_sensitivity(texts, analyzer) -> float:
    """The share of accented word occurrences in ``texts`` whose terms change when the word is
    typed without accents (0 for an analyzer whose terms never depend on accents)."""
    words = Counter(w for t in texts for w in re.findall(r"[^\W\d_]+", t) if not w.isascii())
    changed = sum(n for w, n in words.items() if analyzer(w) != analyzer(fold_accents(w)))
    return changed / max(1, sum(words.values()))


def lexical_ndcg(task, index: BM25Index, fold_queries: bool = False) -> float:
    """BM25 NDCG@10 of ``task`` with ``index`` (empty: the task's passages are added to it); with
    ``fold_queries``, the queries lose their accents first."""
    index.add(list(task.corpus), list(task.corpus.values()))
    runs = [index.search(fold_accents(q) if fold_queries else q, 10)[0] for q in task.queries.values()]
    return float(per_query_metrics(runs, [task.qrels[q] for q in task.queries], ["ndcg@10"])["ndcg@10"].mean())


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--out", default=str(RESULTS / "analyzer_ablation.json"), help="the JSON written")
    args = parser.parse_args(argv)
    suite = load_suite(args)
    rows: dict[str, dict[str, float]] = {}
    unaccented: dict[str, dict[str, float]] = {}
    indexes = {name: lambda change=change: BM25Index(replace(AnalyzerOptions(), **change))
               for name, change in VARIANTS.items()}
    indexes["whitespace split (LangChain default)"] = WhitespaceIndex
    for name, make_index in indexes.items():
        rows[name] = {d: lexical_ndcg(dom.task, make_index()) for d, dom in suite.domains.items()}
        unaccented[name] = {d: lexical_ndcg(dom.task, make_index(), fold_queries=True)
                            for d, dom in suite.domains.items()}
    passages = [p for dom in suite.domains.values() for p in dom.task.corpus.values()]
    sensitivity = {name: accent_sensitivity(passages, FrenchMedicalAnalyzer(replace(AnalyzerOptions(), **change)))
                   for name, change in VARIANTS.items() if "fold_accents" not in change}
    choice = suite.choice_domains
    for name, r in rows.items():
        r["macro"] = float(np.mean([r[d] for d in choice]))
        unaccented[name]["macro"] = float(np.mean([unaccented[name][d] for d in choice]))
        r["macro, queries without accents"] = unaccented[name]["macro"]
    cols = [*suite.domains, "macro", "macro, queries without accents"]
    print(f"\nBM25 NDCG@10, suite {args.part}{' (pilot)' if args.pilot else ''}; macro over {', '.join(choice)}\n")
    print("| analyzer | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |")
    print("\nAccented word occurrences in the passages whose terms change when typed without accents: "
          + ", ".join(f"{name} {share:.1%}" for name, share in sensitivity.items()
                      if name in ("default", "both above (version 2's options)")))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"suite": suite.settings | {"part": args.part, "pilot": args.pilot},
                                          "defaults": asdict(AnalyzerOptions()), "variants": VARIANTS,
                                          "choice_domains": choice, "ndcg@10": rows,
                                          "ndcg@10, queries without accents": unaccented,
                                          "accent_sensitivity": sensitivity}, indent=1))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
