"""Queries typed in capitals or in lowercase: BM25 NDCG@10 per suite domain, with and without the other-case reading.

The French medical analyzer reads a word of 2-6 letters typed in capitals as an acronym (one
unstemmed term: ``AINS``) and a lowercase or capitalised word as a word (stemmed), so a query typed
with caps lock (``ANÉMIE``, ``FIÈVRE``) or an acronym or a product name typed in lowercase (``ains``,
``smecta``) got terms the passages do not hold. :meth:`medrag.lexical.bm25.BM25Index.query_terms`
reads such a query word both ways and keeps the reading more documents hold. This script scores the
suite's queries as written, without accents, in capitals (with and without their accents, as caps
lock is often typed) and in lowercase, with that reading (``BM25Index``) and without it (the
analyzer's terms alone, as queries were read before): NDCG@10, and how many of the top 10 a retyped
query shares with the query as written (1.0: its case changed nothing). It also counts the queries
whose scored terms change.

Usage::

    python benchmarks/query_case.py --part val --pilot --max-queries 100 --max-passages 300 \\
        --out benchmarks/results/query_case_val.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, ScriptParser, add_suite_arguments, load_suite, run_script  # noqa: E402
from evaluation.metrics import per_query_metrics  # noqa: E402
from medrag.lexical.analyzer import fold_accents  # noqa: E402
from medrag.lexical.bm25 import BM25Index  # noqa: E402

#: How a user may type a query: the suite's text turned by each function.
FORMS: dict[str, Callable[[str], str]] = {
    "as written": lambda q: q,
    "without accents": fold_accents,
    "capitals": str.upper,
    "capitals without accents": lambda q: fold_accents(q).upper(),
    "lowercase": str.lower,
}


class AnalyzerTermsIndex(BM25Index):
    """BM25Index scoring a query on its analyzer terms alone (no other-case reading, as queries were read before)."""

    def _query_term_ids(self, query: str, matrix, read_as=None) -> list[tuple[str, int]]:  # what query_scores reads
        if matrix is None:  # (read_as: no word is read as another term here)
            return []
        vocab = self._vocab
        return [(t, vocab[t]) for t in self.analyzer(query) if vocab.get(t, matrix.n_terms) < matrix.n_terms]


def top10(task, index: BM25Index, form: Callable[[str], str]) -> list[list[str]]:
    """The BM25 top 10 of each of ``task``'s queries, typed as ``form`` makes them."""
    return [index.search(form(q), 10)[0] for q in task.queries.values()]


def ndcg(task, runs: list[list[str]]) -> float:
    return float(per_query_metrics(runs, [task.qrels[q] for q in task.queries], ["ndcg@10"])["ndcg@10"].mean())


def overlap(runs: list[list[str]], written: list[list[str]]) -> float:
    """The mean share of the as-written query's top 10 that ``runs`` hold (1.0 for identical sets)."""
    return float(np.mean([len(set(r) & set(w)) / len(w) if w else float(not r) for r, w in zip(runs, written)]))


def print_table(title: str, table: dict[str, dict[str, float]], cols: list[str], digits: int) -> None:
    """``table`` (row -> column -> value) as a markdown table under ``title``."""
    print(f"\n{title}\n\n| queries, reading | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1))
    for name, r in table.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.{digits}f}" for c in cols) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--out", default=str(RESULTS / "query_case.json"), help="the JSON written")
    args = parser.parse_args(argv)
    suite = load_suite(args)
    rows: dict[str, dict[str, float]] = {}
    agree: dict[str, dict[str, float]] = {}
    changed: dict[str, dict[str, int]] = {}
    for domain, dom in suite.domains.items():
        task = dom.task
        indexes = {"other-case reading": BM25Index(), "analyzer terms only": AnalyzerTermsIndex()}
        for index in indexes.values():
            index.add(list(task.corpus), list(task.corpus.values()))
        written = top10(task, indexes["other-case reading"], FORMS["as written"])
        for form_name, form in FORMS.items():
            for how, index in indexes.items():
                runs = top10(task, index, form)
                rows.setdefault(f"{form_name}, {how}", {})[domain] = ndcg(task, runs)
                agree.setdefault(f"{form_name}, {how}", {})[domain] = overlap(runs, written)
            queries = [form(q) for q in task.queries.values()]
            changed.setdefault(form_name, {})[domain] = sum(
                indexes["other-case reading"].query_terms(q) != indexes["analyzer terms only"].query_terms(q)
                for q in queries)
    choice = suite.choice_domains
    for table in (rows, agree):
        for r in table.values():
            r["macro"] = float(np.mean([r[d] for d in choice]))
    cols = [*suite.domains, "macro"]
    print_table(f"BM25 NDCG@10, suite {args.part}{' (pilot)' if args.pilot else ''}; macro over {', '.join(choice)}",
                rows, cols, 4)
    print_table("Share of the as-written query's BM25 top 10 that the retyped query finds", agree, cols, 3)
    n_queries = {d: len(dom.task.queries) for d, dom in suite.domains.items()}
    print("\nQueries whose scored terms the other-case reading changes (of "
          + ", ".join(f"{d} {n}" for d, n in n_queries.items()) + "):")
    for form_name, counts in changed.items():
        print(f"  {form_name}: " + ", ".join(f"{d} {n}" for d, n in counts.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"suite": suite.settings | {"part": args.part, "pilot": args.pilot},
                                          "choice_domains": choice, "forms": list(FORMS), "ndcg@10": rows,
                                          "top10_overlap_with_as_written": agree,
                                          "queries": n_queries, "queries_with_changed_terms": changed}, indent=1))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
