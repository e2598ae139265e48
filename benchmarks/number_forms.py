"""Numbers typed another way than the passage writes them: BM25 with analyzer version 5 against version 4.

French medical text writes thousands with spaces (``1 personne sur 10 000``, ``100 000 UI``,
``265 000 plaquettes/mm3``) and without (``1000 mg``); a user types either. Analyzer version 4
read ``10 000`` as the terms ``10`` and ``000``, so a query typed ``10000`` missed a passage writing
``10 000`` and the reverse; version 5 reads ``10000`` for both (``join_thousands``). The suite has
no labelled queries of this kind, so they are made from the passages (a known-item search): for
each passage of the suite's part that writes such a number, the query is the window of
``--window`` words around it, with that number retyped the other way (``10 000`` <-> ``10000``);
the passage it came from is the one relevant document, among all the domain's passages. Scored
as written and retyped, with version 5 (the default) and version 4 (``join_thousands=False``):
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


def retype(match: re.Match) -> str:
    """The other spelling of a matched number."""
    text = match.group()
    if any(c in text for c in " \u00a0\u202f"):
        return re.sub(r"[ \u00a0\u202f]", "", text)
    digits = text  # 10000 -> 10 000
    head = len(digits) % 3 or 3
    return " ".join([digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)])


def known_items(corpus: dict[str, str], window: int) -> list[dict]:
    """One query per passage holding a spaced or unspaced number of 4+ digits: the ``window`` words
    around its first such number, as written and retyped."""
    items = []
    for pid, text in corpus.items():
        forms = [m for pattern in (SPACED, UNSPACED) for m in [pattern.search(text)] if m]
        if not forms:
            continue
        m = min(forms, key=lambda x: x.start())
        words = text[:m.start()].split()
        before = words[len(words) - window // 2:]  # window >= 2: at least one word before
        after_text = text[m.end():]
        after = after_text.split()[:window - len(before)]
        glued = "" if after_text[:1].isspace() or not after_text else after.pop(0) if after else ""
        kind = "spaced" if SPACED.fullmatch(m.group()) else "unspaced"
        head = " ".join(before) + (" " if before else "")
        tail = glued + (" " + " ".join(after) if after else "")
        items.append({"id": pid, "kind": kind, "form": m.group(),
                      "written": head + m.group() + tail, "retyped": head + retype(m) + tail})
    return items


def version4_index() -> BM25Index:
    """BM25 over version 4's reading of numbers (``join_thousands=False``: its only difference)."""
    return BM25Index(replace(AnalyzerOptions(), join_thousands=False))


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
        indexes = {"version 5": BM25Index(), "version 4": version4_index()}
        for index in indexes.values():
            index.add(list(dom.task.corpus), list(dom.task.corpus.values()))
        results[domain] = {"passages": len(dom.task.corpus), "examples": items[:3]}
        for kind in ("spaced", "unspaced"):
            chosen = [i for i in items if i["kind"] == kind]
            if chosen:
                results[domain][kind] = {f"{v}, {field}": score(index, chosen, field)
                                         for v, index in indexes.items() for field in ("written", "retyped")}
    print(f"\nKnown-item BM25 search, suite {args.part}{' (pilot)' if args.pilot else ''}, query = {args.window} words "
          "around the form; recall@1 / MRR@10\n")
    print("| domain | form in the passage | queries | v4 written | v5 written | v4 retyped | v5 retyped |\n|" + "---|" * 7)
    for domain, r in results.items():
        for kind in ("spaced", "unspaced"):
            if kind in r:
                c = r[kind]
                cells = [f"{c[k]['recall@1']:.3f} / {c[k]['mrr@10']:.3f}" for k in
                         ("version 4, written", "version 5, written", "version 4, retyped", "version 5, retyped")]
                print(f"| {domain} | {kind} | {c['version 5, written']['n']} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"suite": suite.settings | {"part": args.part, "pilot": args.pilot},
                                          "window": args.window, "domains": results}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
