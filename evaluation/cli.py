"""``medrag evaluate``: per-size retrieval metrics of one or more models, the seed's comparison table,
confidence intervals, paired tests, recommendations and a plot, written to a report folder.

Examples::

    medrag evaluate --model bundled:multilingual-e5-small --data ../shared/data/frenchmedmcqa
    medrag evaluate --model bundled:multilingual-e5-small --model models/e5-ft \\
        --data ../shared/data/frenchmedmcqa --out reports/e5-ft --write-metadata
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from evaluation.cache import EmbeddingCache
from evaluation.data import load_task
from evaluation.evaluator import evaluate_models
from evaluation.metrics import DEFAULT_METRICS
from evaluation.recommend import write_metadata
from evaluation.store_eval import evaluate_store
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.errors import DataError, MedragError


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "evaluate", help="retrieval metrics per Matryoshka size, comparison table, CIs, plot",
        description="Evaluate models at every Matryoshka size on a QA dataset (held-out questions vs all distinct "
                    "answers); write tables (Markdown/CSV/JSON), a plot and recommendations to --out.")
    p.add_argument("--model", action="append", required=True, metavar="SPEC",
                   help="model spec (bundled:multilingual-e5-small, a folder, a hub id); repeat to compare, the first "
                        "is the baseline ('initial')")
    p.add_argument("--label", action="append", default=None, help="name of each --model in tables (same order)")
    p.add_argument("--data", default=None, metavar="PATH_OR_ID",
                   help="FrenchMedMCQA folder, pairs file (.jsonl/.json/.csv/.parquet), hub dataset id, "
                        "or medrag:sample (the French sample shipped with medrag); or use --suite")
    p.add_argument("--suite", action="store_true",
                   help="score on the validation suite (medrag.qa.suite: frenchmedmcqa, leaflets, cases, abstracts, "
                        "sample) instead of --data; writes suite.md / suite.json to --out")
    p.add_argument("--part", choices=("val", "test"), default="val",
                   help="with --suite: 'val' (every choice) or 'test' (reported once); default val")
    p.add_argument("--pilot", action="store_true",
                   help="with --suite: cap each domain at --max-queries x --max-passages (sweeps on a CPU)")
    p.add_argument("--max-queries", type=int, default=300, help="with --pilot: queries per domain (300)")
    p.add_argument("--max-passages", type=int, default=3000, help="with --pilot: passages per domain (3000)")
    p.add_argument("--domains", nargs="+", default=None, metavar="DOMAIN",
                   help="with --suite: a subset of frenchmedmcqa leaflets cases abstracts sample")
    p.add_argument("--data-root", default=None,
                   help="with --suite: folder holding frenchmedmcqa/ and french-medical-text/ "
                        "(default: $MEDRAG_DATA or ../shared/data)")
    p.add_argument("--split", default=None,
                   help="held-out split: of a FrenchMedMCQA folder (default test) or a hub dataset (default "
                        "test/validation); 'all' evaluates every pair of a pairs file (default: the share of "
                        "questions that finetune holds out)")
    p.add_argument("--eval-fraction", type=float, default=0.1,
                   help="held-out share of distinct questions of a pairs file without splits (as finetune; 0.1)")
    p.add_argument("--split-seed", type=int, default=42, help="seed of that held-out split (as finetune; 42)")
    p.add_argument("--question-column", default="anchor", help="question column of a pairs file")
    p.add_argument("--answer-column", default="positive", help="answer column of a pairs file")
    p.add_argument("--limit", type=int, default=None, help="use only the first N held-out pairs (quick runs)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="sizes to evaluate (default: trained sizes)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="metrics (ndcg@k mrr@k map@k recall@k)")
    p.add_argument("--primary-metric", default="ndcg@10", help="metric of the table, tests, plot and recommendations")
    p.add_argument("--out", default="medrag-evaluation", help="report folder (default: ./medrag-evaluation)")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $MEDRAG_CACHE/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="always encode; read and write no cache")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default 0.95)")
    p.add_argument("--test", choices=("permutation", "bootstrap"), default="permutation", help="paired test")
    p.add_argument("--resamples", type=int, default=None, help="resamples of the paired test (default 10000)")
    p.add_argument("--balanced-tolerance", type=float, default=0.005, help="balanced tier: within this relative "
                   "loss of the best (default 0.005 = 0.5%%)")
    p.add_argument("--edge-tolerance", type=float, default=0.03, help="edge tier: within this relative loss "
                   "(default 0.03 = 3%%)")
    p.add_argument("--seed", type=int, default=0, help="random seed of bootstrap and tests")
    p.add_argument("--write-metadata", action="store_true",
                   help="record scores and recommendations in matryoshka.json of each --model that is a folder "
                        "(enables dimension='auto')")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--store", action="store_true",
                   help="also evaluate the two-stage store (coarse + rerank) against flat and coarse-only search")
    p.add_argument("--coarse-dim", type=int, default=64, help="coarse size of the store (with --store; default 64)")
    p.add_argument("--candidates", type=int, default=None,
                   help="candidates passed to the rerank (with --store; default: the store's default)")
    p.add_argument("--candidates-sweep", type=int, nargs="+", default=None, metavar="N",
                   help="with --store: also measure these candidates values on the same index")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    p.set_defaults(func=_evaluate, _parser=p)


def _evaluate(args: argparse.Namespace) -> int:
    if args.label and len(args.label) != len(args.model):
        raise DataError(f"{len(args.label)} --label for {len(args.model)} --model")
    for name in ("bootstrap", "batch_size"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1")
    if args.suite:
        if args.data is not None or args.store:
            raise DataError("--suite replaces --data (and does not run --store); drop one of them")
        return _evaluate_suite(args)
    if args.data is None:
        raise DataError("give --data PATH_OR_ID (a dataset) or --suite (the validation suite)")
    if args.store:  # fail before any encoding when the store is not installed
        try:
            import medrag.store  # noqa: F401
        except ImportError as exc:
            raise MedragError(f"--store needs medrag.store (MatryoshkaChroma): {exc}") from exc
    task = load_task(args.data, split=args.split, question_column=args.question_column,
                     answer_column=args.answer_column, eval_fraction=args.eval_fraction,
                     split_seed=args.split_seed, limit=args.limit)
    print(f"task {task.name}: {len(task.queries)} queries, {len(task.corpus)} documents")
    loaded: dict[str, MatryoshkaEmbeddings] = {}  # a spec given twice is loaded once
    for spec in args.model:
        if spec not in loaded:
            loaded[spec] = MatryoshkaEmbeddings(spec, device=args.device, batch_size=args.batch_size,
                                                show_progress=True)
    embeddings = [loaded[spec] for spec in args.model]
    cache = EmbeddingCache(args.cache_dir, enabled=not args.no_cache)
    # bad metric names, tolerances, confidence, candidates below k: the library raises InvalidInputError
    report = evaluate_models(
        embeddings, task, dims=args.sizes, metrics=args.metrics, primary_metric=args.primary_metric,
        cache=cache, n_bootstrap=args.bootstrap,
        confidence=args.confidence, test=args.test, n_resamples=args.resamples,
        balanced_tolerance=args.balanced_tolerance, edge_tolerance=args.edge_tolerance, seed=args.seed,
        labels=args.label, command=command_line(args), device=args.device, batch_size=args.batch_size,
        show_progress=True)
    if args.store:
        for emb, m in zip(embeddings, report.models):
            report.store[m.label] = evaluate_store(emb, task, coarse_dim=args.coarse_dim,
                                                   candidates=args.candidates, cache=cache,
                                                   sweep=args.candidates_sweep or ())
    paths = report.write(args.out, plot=not args.no_plot)
    print()
    if len(report.models) >= 2:
        for other in report.models[1:]:
            print(f"{report.primary_metric}: {report.models[0].label} (initial) vs {other.label} (final)")
            print(report.comparison_table(final=other.label))
            print()
    else:
        print(report.metrics_table())
        print()
    print(report.recommendations_table())
    for label, res in report.store.items():
        print(f"\nstore-level retrieval, {label}:")
        print(res.to_markdown())
    if args.write_metadata:
        written = 0
        for i, m in enumerate(report.models):
            if Path(m.spec).expanduser().is_dir():
                path = write_metadata(m.spec, m, baseline=report.models[0] if i else None)
                print(f"wrote scores and recommendations to {path}")
                written += 1
        if not written:
            print("--write-metadata: no --model is a local folder; nothing written")
    print(f"\nreport: {Path(args.out).resolve()} ({', '.join(p.name for p in paths.values())})")
    return 0


def _evaluate_suite(args: argparse.Namespace) -> int:
    """``medrag evaluate --suite``: every domain of the validation suite, every size, the macro-average."""
    from medrag import MatryoshkaEmbeddings
    from medrag.qa.suite import build_suite

    from evaluation.cache import EmbeddingCache
    from evaluation.suite import evaluate_suite

    suite = build_suite(args.part, pilot=args.pilot, data_root=args.data_root, domains=args.domains,
                        max_queries=args.max_queries, max_passages=args.max_passages)
    print(suite.describe())
    loaded: dict[str, MatryoshkaEmbeddings] = {}
    for spec in args.model:
        if spec not in loaded:
            loaded[spec] = MatryoshkaEmbeddings(spec, device=args.device, batch_size=args.batch_size,
                                                show_progress=True)
    report = evaluate_suite([loaded[s] for s in args.model], suite, dims=args.sizes, metrics=args.metrics,
                            primary_metric=args.primary_metric, labels=args.label,
                            cache=EmbeddingCache(args.cache_dir, enabled=not args.no_cache),
                            n_bootstrap=args.bootstrap, n_resamples=args.resamples or 10000, seed=args.seed,
                            command=command_line(args), show_progress=True)
    paths = report.write(args.out)
    print()
    print(report.to_markdown())
    print(f"report: {Path(args.out).resolve()} ({', '.join(p.name for p in paths.values())})")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The canonical ``medrag evaluate ...`` command that reproduces ``args`` (recorded in report.json)."""
    parser: argparse.ArgumentParser = args._parser
    parts = ["medrag", "evaluate"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        flag = action.option_strings[-1]
        if value is True:
            parts.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for v in value:
                parts += [flag, str(v)]
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
