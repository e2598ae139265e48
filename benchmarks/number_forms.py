"""Numbers and units of time typed another way than the passage writes them: BM25 with analyzer version 6 against version 4.

French medical text writes thousands with spaces (``1 personne sur 10 000``, ``100 000 UI``,
``265 000 plaquettes/mm3``) and without (``1000 mg``), doses per day as ``g/j``, ``g/jour`` or ``g par
jour``, durations as ``24 h`` or ``24 heures``; a user types either. Analyzer version 4 read ``10 000``
as the terms ``10`` and ``000``, ``j`` and ``h`` as their own terms, so a query typing the other form
missed the passage; version 5 reads ``10000`` for both (``join_thousands``), version 6 gives ``j``,
``h``, ``min`` the terms of ``jour``, ``heure``, ``minute`` (``unit_words``). The suite has no
labelled queries of this kind, so they are made from the passages (a known-item search): for each
passage of the suite's part and each kind of form it holds, the query is the window of ``--window``
words around its first such form, with the form retyped (``10 000`` <-> ``10000``, ``/j`` ->
`` par jour``, ``/jour`` and `` par jour`` -> ``/j``, ``24 h`` <-> ``24 heures``); the passage it came
from is the one relevant document, among all the domain's passages. Scored as written and
retyped, with version 6 (the default) and version 4 (``join_thousands=False, unit_words=False``):
recall@1 and MRR@10.

Usage::

    python benchmarks/number_forms.py --part val --pilot --max-queries 300 --max-passages 3000 \\
        --out benchmarks/results/number_forms_val.json
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, ScriptParser, _integer, add_suite_arguments, load_suite, run_script  # noqa: E402
from medrag.lexical.analyzer import UNITS, AnalyzerOptions  # noqa: E402
from medrag.lexical.bm25 import BM25Index  # noqa: E402

#: A spaced-thousands number, not inside a word or a code.
SPACED = re.compile(r"(?<![\w.,:/-])\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\d.,:]|[^\W\d_])")
#: A number of 4 to 7 digits written without spaces, not a year (19xx, 20xx), not inside a word or a
#: code (``12553I``, ``17025:2005``), a unit glued after it allowed (``1000mg``).
UNSPACED = re.compile(r"(?<![\w.,:/-])(?!(?:19|20)\d\d(?!\d))\d{4,7}(?![\d.,:])(?=(?:%s)?(?![^\W\d_]))"
                      % "|".join(sorted(UNITS, key=len, reverse=True)), re.IGNORECASE)


#: A dose per day after a word (``mg/j``, ``comprimés/jour``, ``g par jour``).
PER_DAY = re.compile(r"(?<=[^\W\d_])(?:/j|/jours?|[ \u00a0]par[ \u00a0]jour)(?![\w/])")
#: Hours after a number (``24 h``, ``24h``, ``24 heures``).
HOURS = re.compile(r"(?<=\d)(?:[ \u00a0]?h|[ \u00a0]heures?)(?![\w/])")


def retype_number(text: str) -> str:
    """``10 000`` <-> ``10000``."""
    if any(c in text for c in " \u00a0\u202f"):
        return re.sub(r"[ \u00a0\u202f]", "", text)
    head = len(text) % 3 or 3  # 10000 -> 10 000
    return " ".join([text[:head]] + [text[i:i + 3] for i in range(head, len(text), 3)])


def retype_per_day(text: str) -> str:
    """``/j`` -> `` par jour``; ``/jour`` and `` par jour`` -> ``/j``."""
    return " par jour" if text == "/j" else "/j"


def retype_hours(text: str) -> str:
    """``24 h`` -> ``24 heures`` and back."""
    return " h" if "heure" in text else " heures"


#: Each kind of form: its pattern and how it is retyped.
KINDS = {"spaced": (SPACED, retype_number), "unspaced": (UNSPACED, retype_number),
         "per day": (PER_DAY, retype_per_day), "hours": (HOURS, retype_hours)}


def retype(match: re.Match) -> str:
    """The other spelling of a matched form (``KINDS``)."""
    return next(fn for pattern, fn in KINDS.values() if pattern is match.re)(match.group())


def known_items(corpus: dict[str, str], window: int) -> list[dict]:
    """One query per passage and kind of form it holds (``KINDS``): the ``window`` words around its
    first form of that kind, as written and retyped."""
    items = []
    for pid, text in corpus.items():
        spans = [(t.start(), t.end()) for t in re.finditer(r"\S+", text)]
        for kind, (pattern, fn) in KINDS.items():
            m = pattern.search(text)
            if m is None:
                continue
            first = next(i for i, (_, e) in enumerate(spans) if e > m.start())  # the word holding its start
            last = max(i for i, (b, _) in enumerate(spans) if b < m.end()) if m.end() > m.start() else first
            lo, hi = spans[max(0, first - window // 2)][0], spans[min(len(spans) - 1, last + window - window // 2)][1]
            items.append({"id": pid, "kind": kind, "form": m.group(), "written": text[lo:hi],
                          "retyped": text[lo:m.start()] + fn(m.group()) + text[m.end():hi]})
    return items


def version4_index() -> BM25Index:
    """BM25 over version 4's reading (``join_thousands=False, unit_words=False``: the differences of
    versions 5 and 6)."""
    return BM25Index(replace(AnalyzerOptions(), join_thousands=False, unit_words=False))


def score(index: BM25Index, items: list[dict], field: str) -> dict[str, float]:
    """Recall@1 and MRR@10 of the items' source passages for their ``field`` query."""
    ranks = []
    for item in items:
        ids = index.search(item[field], 10)[0]
        ranks.append(ids.index(item["id"]) + 1 if item["id"] in ids else 0)
    ranks = np.array(ranks)
    return {"recall@1": float((ranks == 1).mean()) if len(ranks) else 0.0,
            "mrr@10": float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else 0.0,
            "n": int(len(ranks))}


def window_size(value: str) -> int:
    """argparse type: a query window of 2 words or more (one before the number at least)."""
    return _integer(value, 2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    add_suite_arguments(parser)
    parser.add_argument("--window", type=window_size, default=8, help="words of the query around the number (2 or more)")
    parser.add_argument("--out", default=str(RESULTS / "number_forms.json"), help="the JSON written")
    args = parser.parse_args(argv)
    suite = load_suite(args)
    results: dict = {}
    for domain, dom in suite.domains.items():
        items = known_items(dom.task.corpus, args.window)
        if not items:
            continue
        indexes = {"version 6": BM25Index(), "version 4": version4_index()}
        for index in indexes.values():
            index.add(list(dom.task.corpus), list(dom.task.corpus.values()))
        results[domain] = {"passages": len(dom.task.corpus), "examples": items[:3]}
        for kind in KINDS:
            chosen = [i for i in items if i["kind"] == kind]
            if chosen:
                results[domain][kind] = {f"{v}, {field}": score(index, chosen, field)
                                         for v, index in indexes.items() for field in ("written", "retyped")}
    print(f"\nKnown-item BM25 search, suite {args.part}{' (pilot)' if args.pilot else ''}, query = {args.window} words "
          "around the form; recall@1 / MRR@10\n")
    print("| domain | form in the passage | queries | v4 written | v6 written | v4 retyped | v6 retyped |\n|" + "---|" * 7)
    for domain, r in results.items():
        for kind in KINDS:
            if kind in r:
                c = r[kind]
                cells = [f"{c[k]['recall@1']:.3f} / {c[k]['mrr@10']:.3f}" for k in
                         ("version 4, written", "version 6, written", "version 4, retyped", "version 6, retyped")]
                print(f"| {domain} | {kind} | {c['version 6, written']['n']} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"suite": suite.settings | {"part": args.part, "pilot": args.pilot},
                                          "window": args.window, "domains": results}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
