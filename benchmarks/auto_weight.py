"""A lexical weight per query (``lexical_weight="auto"``): its range chosen on the validation suite.

The hybrid's fixed weight is a compromise between domains: exam options (FrenchMedMCQA), where
BM25 is weak (0.09 NDCG@10) and any weight above 0.2 costs the trained model, and passages
(leaflets, case reports, abstracts), where 0.3-0.4 scores best. ``"auto"`` moves the weight per
query from ``low`` to ``high`` with BM25's confidence, its best candidate's score over the most a
document could score for that query (:func:`medrag.lexical.fusion.lexical_confidence`). This
script scores every (low, high) of a grid beside the fixed weights, on the same candidates as the
store's hybrid search (:func:`evaluation.hybrid.candidate_scores`), and applies the rule the fixed
weight was chosen by (``HybridSuiteResult.recommended_weight``): the best macro NDCG@10 averaged over
the sizes 384/256/128/64 among settings with no set of the suite, the report-only sample included,
more than 0.01 below dense-only at any size (384 to 32). With several pilots (``--pilots``) a setting
must pass the bound on each, and the macro is averaged over them.

Usage (val: choices; the passages are encoded once, then read from the evaluator's cache)::

    python benchmarks/auto_weight.py --part val --pilots 100x300 300x3000 \\
        --out benchmarks/results/auto_weight_val.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import RESULTS, ScriptParser, add_data_root_argument, run_script, suite_data_root, unit_float  # noqa: E402

#: Sizes scored (the suite's); the rule averages the macro over the first four.
SIZES = (384, 256, 128, 64, 32)
RULE_SIZES = (384, 256, 128, 64)
MAX_DROP = 0.01


def pilot_size(value: str) -> tuple[int, int]:
    """argparse type: ``QUERIESxPASSAGES``, e.g. ``300x3000``."""
    try:
        queries, passages = (int(x) for x in value.lower().split("x"))
    except ValueError:
        queries = passages = 0
    if queries < 1 or passages < 1:
        raise argparse.ArgumentTypeError(f"expected QUERIESxPASSAGES such as 300x3000, got {value!r}")
    return queries, passages


def label(setting: float | tuple[float, float]) -> str:
    return f"auto {setting[0]:g}-{setting[1]:g}" if isinstance(setting, tuple) else f"fixed {setting:g}"


def score_pilot(embeddings, suite, settings: list, sizes: Sequence[int] = SIZES) -> dict:
    """NDCG@10 of dense-only and of each setting, per domain and size, and under ``"confidence"`` the
    percentiles of the queries' lexical confidence per domain (size-independent: BM25's best hits
    are always candidates)."""
    from evaluation.cache import EmbeddingCache
    from evaluation.hybrid import candidate_scores, lexical_rankings
    from evaluation.metrics import per_query_metrics
    from medrag.lexical.fusion import fuse, lookup_holders, query_weight

    cache = EmbeddingCache()
    out: dict = {"dense": {}, **{label(s): {} for s in settings}}
    confidence: dict = {}
    for name, dom in suite.domains.items():
        task = dom.task
        q = cache.encode(embeddings, list(task.queries.values()), side="query")
        d = cache.encode(embeddings, list(task.corpus.values()), side="document")
        relevant = [task.qrels[i] for i in task.queries]
        lexical_side = lexical_rankings(task)
        for key in out:
            out[key][name] = {}
        seen: list[float] = []
        for dim in sizes:
            runs: dict[str, list[list[str]]] = {key: [] for key in out}
            for found in candidate_scores(task, q, d, dim, lexical_side):
                runs["dense"].append(found.dense_ranking[:10])
                seen.append(found.confidence)
                for s in settings:
                    w = (query_weight("auto", found.confidence, s) if isinstance(s, tuple) else s)
                    # an "auto" range ranks an identifier lookup's holders first, as the store does (review)
                    first = lookup_holders("auto", found.holders) if isinstance(s, tuple) else None
                    runs[label(s)].append(fuse(found.dense, found.lexical, lexical_weight=w, k=10, first=first))
            for key, ranked in runs.items():
                out[key][name][str(dim)] = float(per_query_metrics(ranked, relevant, ["ndcg@10"])["ndcg@10"].mean())
        confidence[name] = {f"p{q}": float(np.percentile(seen, q)) for q in (10, 50, 90)} | {"mean": float(np.mean(seen))}
    return out | {"confidence": confidence}


def summarise(scores: dict, choice: list[str], sizes: Sequence[int] = SIZES,
              rule_sizes: Sequence[int] = RULE_SIZES) -> dict:
    """Per setting: macro per size, its mean over ``rule_sizes``, and the worst loss against dense-only."""
    dense = scores["dense"]
    rows = {}
    for key, per in scores.items():
        macro = {str(n): float(np.mean([per[d][str(n)] for d in choice])) for n in sizes}
        drop, domain, size = max((dense[d][str(n)] - per[d][str(n)], d, n) for d in per for n in sizes)
        rows[key] = {"macro": macro, "mean": float(np.mean([macro[str(n)] for n in rule_sizes])),
                     "worst_drop": {"drop": float(drop), "domain": domain, "size": size}}
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--part", default="val", choices=("val", "test"), help="val for choices, test to report once")
    parser.add_argument("--pilots", type=pilot_size, nargs="+", default=[(100, 300), (300, 3000)],
                        help="pilot caps, QUERIESxPASSAGES per domain")
    parser.add_argument("--model", default=None, help="the model spec (default: medrag's default model)")
    parser.add_argument("--fixed", type=unit_float, nargs="+", default=[0.1, 0.2, 0.25, 0.3, 0.4],
                        help="fixed weights (0.25: about the mean weight auto gives, a control)")
    parser.add_argument("--lows", type=unit_float, nargs="+", default=[0.1, 0.15, 0.2, 0.25], help="auto's low ends")
    parser.add_argument("--highs", type=unit_float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.8, 1.0],
                        help="auto's high ends")
    add_data_root_argument(parser)
    parser.add_argument("--out", default=str(RESULTS / "auto_weight.json"), help="the JSON written")
    args = parser.parse_args(argv)
    data_root = suite_data_root(args.data_root)

    from medrag import MatryoshkaEmbeddings
    from medrag.lexical.fusion import AUTO_WEIGHT_RANGE
    from medrag.qa.suite import build_suite

    settings: list = list(dict.fromkeys([*args.fixed, *((lo, hi) for lo, hi in itertools.product(args.lows, args.highs)
                                                         if lo < hi)]))  # each once: one ranking per query
    embeddings = MatryoshkaEmbeddings(args.model)
    pilots, choice, suite_settings = {}, None, None
    for queries, passages in args.pilots:
        suite = build_suite(args.part, pilot=True, data_root=data_root, max_queries=queries, max_passages=passages)
        print(suite.describe())
        choice, suite_settings = suite.choice_domains, suite.settings
        scores = score_pilot(embeddings, suite, settings)
        confidence = scores.pop("confidence")
        pilots[f"{queries}x{passages}"] = {"ndcg@10": scores, "summary": summarise(scores, choice),
                                           "confidence": confidence}
        print("lexical confidence per domain (10th / 50th / 90th percentile): "
              + "; ".join(f"{d} {c['p10']:.2f} / {c['p50']:.2f} / {c['p90']:.2f}" for d, c in confidence.items()))
    keys = [label(s) for s in settings]
    passing = [k for k in keys if all(p["summary"][k]["worst_drop"]["drop"] <= MAX_DROP for p in pilots.values())]
    mean = {k: float(np.mean([p["summary"][k]["mean"] for p in pilots.values()])) for k in keys}
    best = max(passing, key=lambda k: mean[k]) if passing else None

    names = list(pilots)
    print(f"\nMacro NDCG@10 over {', '.join(choice)} ({args.part}), mean over sizes {'/'.join(map(str, RULE_SIZES))}, "
          f"and the worst loss of any set against dense-only (384 to 32 dims; bound {MAX_DROP}):\n")
    print("| setting | " + " | ".join(f"{n}: mean | {n}: worst" for n in names) + " | mean of pilots |")
    print("|---|" + "---|---|" * len(names) + "---|")
    for k in ["dense", *keys]:
        cells = []
        for n in names:
            row = pilots[n]["summary"][k]
            w = row["worst_drop"]
            cells += [f"{row['mean']:.4f}", f"{w['drop']:+.4f} ({w['domain']} at {w['size']})"]
        avg = np.mean([pilots[n]["summary"][k]["mean"] for n in names])
        print(f"| {k}{' (chosen)' if k == best else ''} | " + " | ".join(cells) + f" | {avg:.4f} |")
    if args.part == "val":
        print(f"\nchosen: {best} (medrag.lexical.fusion.AUTO_WEIGHT_RANGE is {AUTO_WEIGHT_RANGE})")
    else:  # the test part reports the settings chosen on val; it chooses nothing
        print(f"\ntest part: reported, not chosen on; within the bound on every pilot: {', '.join(passing) or 'none'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "command": "python benchmarks/auto_weight.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "suite": suite_settings | {"part": args.part}, "model": embeddings.spec, "choice_domains": choice,
        "sizes": list(SIZES), "rule_sizes": list(RULE_SIZES), "max_drop": MAX_DROP, "chosen": best if args.part == "val" else None,
        "within_bound": passing,
        "auto_weight_range": list(AUTO_WEIGHT_RANGE), "pilots": pilots}, indent=1))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
