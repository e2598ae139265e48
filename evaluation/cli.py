"""``medrag evaluate``: per-size retrieval metrics of one or more models, the seed's comparison table,
confidence intervals, paired tests, recommendations and a plot, written to a report folder.

Examples::

    medrag evaluate --model bundled:multilingual-e5-small --data ../shared/data/frenchmedmcqa
    medrag evaluate --model bundled:multilingual-e5-small --model models/e5-ft \\
        --data ../shared/data/frenchmedmcqa --out reports/e5-ft --write-metadata
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from evaluation.cache import EmbeddingCache
from evaluation.data import check_data_folder, is_beir_folder, load_task, unused_options
from evaluation.evaluator import evaluate_models
from evaluation.hybrid import evaluate_hybrid, evaluate_hybrid_suite
from evaluation.metrics import DEFAULT_METRICS, METRIC_NAMES, PRIMARY_METRIC, max_k, parse_metric
from evaluation.recommend import BALANCED_TOLERANCE, EDGE_TOLERANCE, recommend_sizes, write_metadata
from evaluation.report import (
    WarningLog, check_report_folder, earlier_report_files, remove_stale_report_files, report_file_names,
    trec_file_names,
)
from evaluation.stats import CONFIDENCE, MIN_BOOTSTRAP, N_BOOTSTRAP, N_PERMUTATIONS, PAIRED_TESTS, ROUGH_BOOTSTRAP
from evaluation.store_eval import STORE_METRICS, evaluate_store
from evaluation.suite import evaluate_suite
from medrag.adapters import ADAPTER_CONFIG, TRAINING_RUN_KEY
from medrag.command import add_prompt_arguments, check_writable_dir, lexical_weight_argument, new_parser, run_command
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.encoding import DEFAULT_BATCH_SIZE
from medrag.errors import DataError, MedragError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT
from medrag.qa.suite import build_suite
from medrag.qa.pairs import (
    ANSWER_COLUMN, DATA_GIVEN_KEY, DEFAULT_TRAIN_SPLITS, EVAL_FRACTION, QUESTION_COLUMN, SPLIT_SEED,
    data_file_record, is_frenchmedmcqa_folder,
)
from medrag.store import DEFAULT_COARSE_DIM

logger = logging.getLogger(__name__)


# Every default below is the library's own (imported above), so the CLI and the Python API agree.


#: What ``medrag evaluate --help`` and ``python -m evaluation --help`` say first.
DESCRIPTION = ("Evaluate models at every Matryoshka size on a QA dataset (held-out questions vs all distinct "
               "answers); write tables (Markdown/CSV/JSON), a plot and recommendations to --out.")


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("evaluate", help="retrieval metrics per Matryoshka size, comparison table, CIs, plot",
                       description=DESCRIPTION)
    add_arguments(p)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation``: same flags and exit codes as ``medrag evaluate``."""
    parser = new_parser("python -m evaluation", DESCRIPTION)
    add_arguments(parser)
    return run_command(parser, argv, name="evaluation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``medrag evaluate``'s flags to ``p`` (its subcommand parser, or ``python -m evaluation``'s)."""
    p.add_argument("--model", action="append", required=True, metavar="SPEC",
                   help="model spec (bundled:multilingual-e5-small, a folder, a hub id); repeat to compare, the first "
                        "is the baseline ('initial')")
    p.add_argument("--label", action="append", default=None, help="name of each --model in tables (same order)")
    add_prompt_arguments(p)
    p.add_argument("--data", default=None, metavar="PATH_OR_ID",
                   help="FrenchMedMCQA folder, pairs file (.jsonl/.json/.csv/.tsv/.parquet), BEIR folder (your own "
                        "passages and graded judgements: corpus.jsonl, queries.jsonl, qrels/<split>.tsv), hub "
                        "dataset id, or medrag:sample (the French sample shipped with medrag); or use --suite")
    p.add_argument("--suite", action="store_true",
                   help="score on the validation suite (medrag.qa.suite: frenchmedmcqa, leaflets, cases, abstracts, "
                        "sample) instead of --data; writes suite.md / suite.json to --out")
    p.add_argument("--part", choices=("val", "test"), default="val",
                   help="with --suite: 'val' (every choice) or 'test' (reported once); default val")
    p.add_argument("--pilot", action="store_true",
                   help="with --suite: cap each domain at --max-queries x --max-passages (sweeps on a CPU)")
    p.add_argument("--max-queries", type=int, default=300, help="with --pilot: queries per domain (300)")
    p.add_argument("--max-passages", type=int, default=1500,
                   help="with --pilot: passages per domain (1500: one e5-small model scores the pilot in about 5 min on 2 cores)")
    p.add_argument("--domains", nargs="+", default=None, metavar="DOMAIN",
                   help="with --suite: a subset of frenchmedmcqa leaflets cases abstracts sample")
    p.add_argument("--leaflet-queries", choices=("mixed", "heading", "question"), default="mixed",
                   help="with --suite: phrasing of the leaflet queries (mixed, the suite's setting; the others for studies)")
    p.add_argument("--data-root", default=None,
                   help="with --suite: folder holding frenchmedmcqa/ and french-medical-text/ "
                        "(default: $MEDRAG_DATA or ../shared/data)")
    p.add_argument("--split", default=None,
                   help="held-out split: of a FrenchMedMCQA or BEIR folder (default test) or a hub dataset (default "
                        "test/validation); 'all' evaluates every pair of a pairs file (default: the share of "
                        "questions that finetune holds out)")
    p.add_argument("--eval-fraction", type=float, default=EVAL_FRACTION,
                   help=f"held-out share of distinct questions of a pairs file without splits (as finetune; "
                        f"{EVAL_FRACTION})")
    p.add_argument("--split-seed", type=int, default=SPLIT_SEED,
                   help=f"seed of that held-out split (as finetune; {SPLIT_SEED})")
    p.add_argument("--question-column", default=QUESTION_COLUMN,
                   help=f"question column of a pairs file (default {QUESTION_COLUMN})")
    p.add_argument("--answer-column", default=ANSWER_COLUMN, help=f"answer column of a pairs file (default {ANSWER_COLUMN})")
    p.add_argument("--limit", type=int, default=None, help="use only the first N held-out pairs (quick runs)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="sizes to evaluate (default: trained sizes)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help=f"metrics ({' '.join(f'{b}@k' for b in METRIC_NAMES)})")
    p.add_argument("--primary-metric", default=PRIMARY_METRIC,
                   help=f"metric of the table, tests, plot and recommendations (default {PRIMARY_METRIC})")
    p.add_argument("--out", default="medrag-evaluation", help="report folder (default: ./medrag-evaluation)")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $MEDRAG_CACHE/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="always encode; read and write no cache")
    p.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP,
                   help=f"bootstrap resamples for the CIs (default {N_BOOTSTRAP}; at least {MIN_BOOTSTRAP}, "
                        f"below {ROUGH_BOOTSTRAP} a warning)")
    p.add_argument("--confidence", type=float, default=CONFIDENCE, help=f"CI coverage (default {CONFIDENCE})")
    p.add_argument("--test", choices=PAIRED_TESTS, default=PAIRED_TESTS[0], help="paired test")
    p.add_argument("--resamples", type=int, default=None,
                   help=f"resamples of the paired test (default {N_PERMUTATIONS} permutations, "
                        f"{10 * N_BOOTSTRAP} bootstrap draws)")
    p.add_argument("--balanced-tolerance", type=float, default=BALANCED_TOLERANCE, help="balanced tier: within this "
                   f"relative loss of the best (default {BALANCED_TOLERANCE} = {100 * BALANCED_TOLERANCE:g}%%)")
    p.add_argument("--edge-tolerance", type=float, default=EDGE_TOLERANCE, help="edge tier: within this relative "
                   f"loss (default {EDGE_TOLERANCE} = {100 * EDGE_TOLERANCE:g}%%)")
    p.add_argument("--seed", type=int, default=0, help="random seed of bootstrap and tests")
    p.add_argument("--write-metadata", action="store_true",
                   help="record scores and recommendations in matryoshka.json of each --model that is a folder "
                        "(enables dimension='auto')")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--export-runs", type=int, nargs="?", const=100, default=None, metavar="DEPTH",
                   help="also write each model's ranking at each size as a TREC run, DEPTH documents per query "
                        "(default 100), with the judgements (run_<model>_<size>.trec, qrels.trec): trec_eval or "
                        "ranx recompute any metric from them")
    p.add_argument("--store", action="store_true",
                   help="also evaluate the two-stage store (coarse + rerank) against flat and coarse-only search")
    p.add_argument("--coarse-dim", type=int, default=None,
                   help=f"coarse size of the store (with --store; default {DEFAULT_COARSE_DIM}, half the full size "
                        f"for a model of {DEFAULT_COARSE_DIM} dims or fewer)")
    p.add_argument("--candidates", type=int, default=None,
                   help="candidates passed to the rerank (with --store; default: the store's default)")
    p.add_argument("--candidates-sweep", type=int, nargs="+", default=None, metavar="N",
                   help="with --store: also measure these candidates values on the same index")
    p.add_argument("--hybrid", action="store_true",
                   help="also score BM25 (French medical analyzer) alone and fused with dense search, per size")
    p.add_argument("--lexical-weight", type=lexical_weight_argument, nargs="+", default=None, metavar="W",
                   help="with --hybrid: lexical weights to score, in [0, 1], or auto (a weight per query) "
                        "(default: the store's default)")
    p.add_argument("--fusion", choices=("rrf", "minmax"), default=None,
                   help="with --hybrid: weighted reciprocal rank fusion or min-max score fusion (default: the store's)")
    p.add_argument("--analyzer", action="append", default=None, metavar="OPTION=VALUE",
                   help="with --hybrid: an analyzer option, e.g. keep_acronyms=true, stem=false (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bars (default: bars when stderr is a terminal)")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"encoding batch size (default {DEFAULT_BATCH_SIZE})")
    p.set_defaults(func=_evaluate, _parser=p)
    # the options of one mode default to None, so that "given on the command line" is known (an explicit
    # --part val without --suite is refused too); _fill_defaults puts the library's defaults in afterwards
    for action in p._actions:
        if action.dest in _MODE_ONLY and action.default is not None and action.default is not False:
            _REAL_DEFAULTS[action.dest] = action.default
            action.default = None


#: Options that only one mode reads (a run in another mode refuses them instead of ignoring them).
_SUITE_ONLY = ("part", "pilot", "max_queries", "max_passages", "domains", "leaflet_queries", "data_root")
_DATA_ONLY = ("split", "eval_fraction", "split_seed", "question_column", "answer_column", "limit", "confidence",
              "test", "balanced_tolerance", "edge_tolerance", "write_metadata", "no_plot", "export_runs")
_STORE_ONLY = ("coarse_dim", "candidates", "candidates_sweep")
_HYBRID_ONLY = ("lexical_weight", "fusion", "analyzer")
_PILOT_ONLY = ("max_queries", "max_passages")
_MODE_ONLY = _SUITE_ONLY + _DATA_ONLY + _STORE_ONLY + _HYBRID_ONLY
#: The library defaults of the options above (their argparse default is None).
_REAL_DEFAULTS: dict[str, object] = {}


def _set_options(args: argparse.Namespace):
    """``(action, value)`` of every option set to something else than its default."""
    parser: argparse.ArgumentParser = args._parser
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if action.dest in getattr(args, "_filled", ()):
            continue  # a library default put in by _fill_defaults, not given
        if value is not None and value is not False and value != action.default:
            yield action, value


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars: on when stderr is a terminal (not in logs or CI), off with ``--no-progress``."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _given(args: argparse.Namespace, dests: tuple[str, ...]) -> list[str]:
    """The flags among ``dests`` that were given (mode-only options: given at all, even with the default value)."""
    return [action.option_strings[-1] for action, _ in _set_options(args) if action.dest in dests]


def _fill_defaults(args: argparse.Namespace) -> None:
    """Put the library's default into every mode-only option that was not given (after the checks)."""
    filled = set(getattr(args, "_filled", ()))
    for dest, default in _REAL_DEFAULTS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, list(default) if isinstance(default, list) else default)
            filled.add(dest)
    args._filled = filled


def _them(flags: list[str]) -> str:
    return "them" if len(flags) > 1 else "it"


def _check_values(args: argparse.Namespace) -> None:
    """Values the library would refuse only after the scoring: --lexical-weight, --analyzer, --coarse-dim,
    --candidates (the checks that need the model's size are in :func:`_check_model_sizes`)."""
    piped = [label for label in args.label or () if "|" in label]
    if piped:  # it split the Markdown tables' cells (user tryout)
        raise DataError(f"--label {piped[0]!r}: a label may not hold '|', which separates the tables' columns")
    for flag, value in (("--seed", args.seed), ("--split-seed", args.split_seed)):
        if value is not None and value < 0:  # --seed -1: numpy's traceback after all the encoding
            raise DataError(f"{flag} must be >= 0, got {value}")
    if args.export_runs is not None and args.export_runs < 1:
        raise DataError(f"--export-runs must be >= 1 (documents per query in each run), got {args.export_runs}")
    if args.limit is not None and args.limit < 1:  # the library's "limit must be >= 1" named no flag
        raise DataError(f"--limit must be >= 1 (the number of held-out pairs to score), got {args.limit}")
    bad = [s for s in args.sizes or () if s < 1]
    if bad:
        raise DataError(f"--sizes {' '.join(map(str, bad))}: pass sizes >= 1 (at most the model's full size)")
    # the library checks these too, but after the task and the models were loaded
    for name in [*(args.metrics or ()), *([args.primary_metric] if args.primary_metric else [])]:
        parse_metric(name)
    if args.confidence is not None and not 0 < args.confidence < 1:
        raise DataError(f"--confidence {args.confidence:g}: pass a coverage in (0, 1), e.g. 0.95")
    if args.balanced_tolerance is not None or args.edge_tolerance is not None:
        recommend_sizes({1: 1.0}, BALANCED_TOLERANCE if args.balanced_tolerance is None else args.balanced_tolerance,
                        EDGE_TOLERANCE if args.edge_tolerance is None else args.edge_tolerance)
    repeated = sorted({s for s in args.sizes or () if args.sizes.count(s) > 1})
    if repeated:
        raise DataError(f"--sizes names {', '.join(map(str, repeated))} more than once; give each size once")
    if args.write_metadata and not any(Path(m).expanduser().is_dir() for m in args.model or ()):
        raise DataError("--write-metadata writes into a model folder, and no --model is a local folder "
                        "(the embedded and hub models are read-only here): pass --model PATH, or drop it")
    if args.write_metadata and args.limit is not None:
        # 3 queries against one passage scored 1.0 at every size, and dimension="auto" then chose the smallest
        raise DataError("--write-metadata records the scores dimension='auto' chooses a size from: score the whole "
                        "eval split (drop --limit), or drop --write-metadata")
    if args.write_metadata and args.sizes:  # every trained size is scored, or "auto" chooses among a few
        from medrag.metadata import MatryoshkaMetadata

        for m in args.model or ():
            meta = MatryoshkaMetadata.load(Path(m).expanduser()) if Path(m).expanduser().is_dir() else None
            missing = [d for d in meta.dims if d not in args.sizes] if meta is not None else []
            if missing:
                raise DataError(f"--write-metadata records scores for every trained size of {m} ({meta.dims}); "
                                f"--sizes leaves out {missing}: pass --sizes {' '.join(map(str, meta.dims))}, or "
                                "drop --sizes")
    for w in args.lexical_weight or ():
        if w != "auto" and not 0.0 <= w <= 1.0:
            raise DataError(f"--lexical-weight {w:g}: pass weights in [0, 1] (0 = dense only)")
    if args.analyzer:
        analyzer_options(args.analyzer)
    if args.coarse_dim is not None and args.coarse_dim < 1:
        raise DataError(f"--coarse-dim {args.coarse_dim}: pass a size >= 1 below the model's full size")
    k = max_k(STORE_METRICS)  # the store table's metrics (not --metrics)
    if args.candidates is not None and args.candidates < k:
        raise DataError(f"--candidates {args.candidates} is below {k}, the deepest cut-off of the store's metrics; "
                        f"pass --candidates >= {k}")
    low = [c for c in args.candidates_sweep or () if c < k]
    if low:
        raise DataError(f"--candidates-sweep {' '.join(map(str, low))}: below {k}, the deepest cut-off of the "
                        f"store's metrics; pass values >= {k}")


def _check_model_sizes(args: argparse.Namespace, embeddings: list[MatryoshkaEmbeddings]) -> None:
    """Right after the models load, before any scoring: --sizes within each model's full size (the
    second model's were refused after the first one was encoded), every size a folder without
    matryoshka.json allows among them with --write-metadata, --coarse-dim below the full size."""
    for emb in embeddings:
        above = [s for s in args.sizes or () if s > emb.full_dim]
        if above:
            raise DataError(f"--sizes {' '.join(map(str, above))}: above the full size {emb.full_dim} of {emb.spec}; "
                            "pass sizes every --model has")
    if args.write_metadata and args.sizes:  # a folder without matryoshka.json: it allows the default sizes
        for emb in embeddings:
            folder = Path(str(emb.spec)).expanduser()
            if folder.is_dir() and emb.metadata is None:
                missing = [d for d in emb.dims if d not in args.sizes]
                if missing:  # the matryoshka.json written would allow the --sizes only (dimension=64 refused after)
                    raise DataError(f"--write-metadata records the sizes {emb.spec} allows ({emb.dims}: it has no "
                                    f"matryoshka.json yet), and --sizes leaves out {missing}: pass --sizes "
                                    f"{' '.join(map(str, emb.dims))}, or drop --sizes")
    if args.store and args.coarse_dim is not None:
        for emb in embeddings:
            if not 1 <= args.coarse_dim < emb.full_dim:
                raise DataError(f"--coarse-dim {args.coarse_dim}: must be between 1 and {emb.full_dim - 1} "
                                f"(below the full size {emb.full_dim} of {emb.spec})")


def _check_modes(args: argparse.Namespace) -> None:
    """Refuse options the chosen mode would ignore, and an --out that is a file, before any work."""
    if args.suite:
        unused = _given(args, _DATA_ONLY + _STORE_ONLY)
        if unused:
            raise DataError(f"{', '.join(unused)}: not used with --suite; drop {_them(unused)}")
        if not args.pilot and _given(args, _PILOT_ONLY):
            flags = _given(args, _PILOT_ONLY)
            raise DataError(f"{', '.join(flags)}: only used with --pilot (the capped suite); add --pilot or drop "
                            f"{_them(flags)}")
        if args.domains is not None:  # options of domains this run does not score: accepted and ignored before
            from medrag.qa.suite import DOMAINS

            unknown = [d for d in args.domains if d not in DOMAINS]
            if unknown:  # before the data root: run elsewhere, "--data-root ... is not a folder" came first
                raise DataError(f"--domains {' '.join(unknown)}: unknown domain(s); choose among {' '.join(DOMAINS)}")

            if "leaflets" not in args.domains and _given(args, ("leaflet_queries",)):
                raise DataError("--leaflet-queries: only used with the leaflets domain; add it to --domains or "
                                "drop --leaflet-queries")
    else:
        unused = _given(args, _SUITE_ONLY)
        if unused:
            raise DataError(f"{', '.join(unused)} need{'s' if len(unused) == 1 else ''} --suite; add --suite "
                            f"or drop {_them(unused)}")
        if args.data is not None:
            check_data_folder(args.data)  # before the options it would make look unused
            ignored = set(unused_options(args.data, args.split))
            flags = _given(args, tuple(d for d in _DATA_ONLY if d in ignored))
            if flags:
                kind = "--split all" if ignored == {"eval_fraction", "split_seed"} else \
                    "a BEIR folder (its own queries, passages and judgements)" if is_beir_folder(args.data) else \
                    "a FrenchMedMCQA folder or medrag:sample (fixed splits and columns)"
                raise DataError(f"{', '.join(flags)}: not used with --data {args.data} ({kind}); drop {_them(flags)}")
    if not args.store and _given(args, _STORE_ONLY):
        raise DataError(f"{', '.join(_given(args, _STORE_ONLY))}: only used with --store")
    if not args.hybrid and _given(args, _HYBRID_ONLY):
        raise DataError(f"{', '.join(_given(args, _HYBRID_ONLY))}: only used with --hybrid")
    if args.resamples is not None and args.resamples < 1:
        raise DataError(f"--resamples must be >= 1, got {args.resamples}")
    _check_values(args)
    # checked now (made when the report is written): a path under a file failed after all the scoring
    check_writable_dir(Path(args.out).expanduser(), "--out", create=False)
    if args.cache_dir is not None and not args.no_cache:  # a file there warned once per encoded text set, unnamed
        check_writable_dir(Path(args.cache_dir).expanduser(), "--cache-dir", create=False)
    # a user's own report.md there was overwritten at the end
    n_models = len(args.model or ())
    hybrid = [f"{_hybrid_suite_name(i, n_models)}.{e}" for i in range(n_models) for e in ("md", "json")] \
        if args.hybrid else []
    check_report_folder(args.out, ["suite.md", "suite.json", *hybrid] if args.suite else
                        report_file_names(n_models, args.primary_metric or PRIMARY_METRIC, not args.no_plot)
                        + (trec_file_names(args.out) if args.export_runs else []))


def _hybrid_suite_name(i: int, n_models: int) -> str:
    """The stem of the ``i``-th model's hybrid suite table: ``hybrid_suite`` alone, else numbered."""
    return "hybrid_suite" if n_models == 1 else f"hybrid_suite_{i + 1}"


def _finetune_config(spec: str) -> dict | None:
    """The ``finetune_config.yaml`` that ``medrag finetune`` wrote into the model folder ``spec``, or
    the run settings an adapter it exported records (:func:`_adapter_run`), as a mapping; None when
    there is none (not a fine-tuning output) or it cannot be read."""
    import yaml  # a fine-tuning output's config is YAML; only these checks read one

    config = Path(spec).expanduser() / "finetune_config.yaml"
    if not config.is_file():
        recorded = _adapter_run(Path(spec).expanduser()).get("config")
        return recorded if isinstance(recorded, dict) else None
    try:
        recorded = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        logger.debug("cannot read %s: %s", config, exc)
        return None
    return recorded if isinstance(recorded, dict) else None


def _adapter_run(folder: Path) -> dict:
    """The run record (``config``, ``data_file``, ``eval_data_file``) of an adapter folder exported by
    ``medrag finetune --export-adapter`` (its ``adapter_config.json``); empty for another folder, an
    unreadable config or an adapter exported before December 6, which recorded none."""
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    run = config.get(TRAINING_RUN_KEY) if isinstance(config, dict) else None
    return run if isinstance(run, dict) else {}


def _finetune_split(spec: str, data: str) -> tuple[int, float] | None:
    """``(split seed, eval fraction)`` of the held-out split the ``medrag finetune`` run that made the
    model folder ``spec`` kept out of training, when it trained on the pairs file ``data`` without a
    separate eval file; None otherwise (not a fine-tuning output, other data, unreadable config)."""
    recorded = _finetune_config(spec)
    if recorded is None or recorded.get("eval_data") or not recorded.get("data") \
            or _run_record(Path(spec).expanduser()).get(DATA_GIVEN_KEY) is not None:  # trained on other data
        return None
    try:
        if not _same_data(Path(spec).expanduser(), str(recorded["data"]), data):
            return None
        # split_seed since December 4; before it, the run's seed drew the split
        return int(recorded.get("split_seed", recorded.get("seed", SPLIT_SEED))), \
            float(recorded.get("eval_fraction", EVAL_FRACTION))
    except (OSError, ValueError, TypeError) as exc:
        logger.debug("unreadable split settings in %s: %s", spec, exc)
        return None


def _is_eval_file(spec: str, data: str) -> bool:
    """Whether ``data`` is the ``--eval-data`` file of the fine-tuning that made the folder ``spec``
    (:func:`_recorded_file`; ``training_info.json`` records it since December 6)."""
    recorded = _finetune_config(spec)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("eval_data"), str) \
            or _run_record(Path(spec).expanduser()).get(DATA_GIVEN_KEY) is not None:  # its config is not its data
        return False
    return _recorded_file(Path(spec).expanduser(), "eval_data_file", recorded["eval_data"], data)


def _same_data(folder: Path, recorded: str, data: str) -> bool:
    """Whether ``data`` is the pairs file a fine-tuning run in ``folder`` trained on (:func:`_recorded_file`;
    ``training_info.json`` records it since December 4)."""
    return _recorded_file(folder, "data_file", recorded, data)


def _recorded_file(folder: Path, key: str, typed: str, data: str) -> bool:
    """Whether ``data`` is the file a fine-tuning run in ``folder`` recorded under ``key`` of its
    ``training_info.json`` (:func:`data_file_record`: its absolute path, or its content's sha256 for a
    copy or another path to it), else, for older runs, the path its config records as ``typed``,
    resolved against the current folder."""
    record = _run_record(folder).get(key)
    if isinstance(record, dict) and record.get("path"):
        if record["path"] == str(Path(data).expanduser().resolve()):
            return True
        current = data_file_record(data)  # a copy, or the same file reached through another path
        return current is not None and record.get("sha256") == current["sha256"]
    return Path(typed).expanduser().resolve() == Path(data).expanduser().resolve()


def _run_record(folder: Path) -> dict:
    """A fine-tuning run folder's ``training_info.json``, else the run record of an adapter it
    exported (:func:`_adapter_run`: the same files); empty for any other folder."""
    try:
        info = json.loads((folder / "training_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _adapter_run(folder)
    return info if isinstance(info, dict) else {}


def _follow_finetune_split(args: argparse.Namespace) -> None:
    """Score a fine-tuned model on the questions its run held out: a run's held-out split is its
    own (``split_seed``; before December 4 its ``seed``), and the default --split-seed scored a
    ``--seed 7`` run on its training questions in silence. Without --split-seed/--eval-fraction (or
    with their defaults) the run's split is used, and said; given otherwise, a warning says the scores
    include training questions."""
    if args.split is None and Path(args.data).expanduser().is_file():
        # the eval file of a fine-tuning (--eval-data) is scored whole, as that run scored it (10% of it were)
        evals = [spec for spec in dict.fromkeys(args.model) if _is_eval_file(spec, args.data)]
        if evals:
            args.split = "all"
            logger.warning("scoring every pair of %s, the eval file the fine-tuning of %s used (--eval-data), as "
                           "--split all does", args.data, ", ".join(evals))
            return
    if args.split == "all" or unused_options(args.data, args.split):
        return  # every pair, or fixed splits (FrenchMedMCQA, the sample)
    splits = {spec: split for spec in dict.fromkeys(args.model)
              if (split := _finetune_split(spec, args.data)) is not None}
    current = (args.split_seed, args.eval_fraction)
    given = bool(_given(args, ("split_seed", "eval_fraction")))  # given with another value than the default
    differing = {spec: split for spec, split in splits.items() if split != current}
    if not differing:
        return
    if not given and len(set(splits.values())) == 1:
        args.split_seed, args.eval_fraction = next(iter(splits.values()))
        logger.warning("scoring on the questions the fine-tuning of %s held out (split seed %d, eval fraction %g), "
                       "as its finetune_config.yaml records", ", ".join(splits), args.split_seed, args.eval_fraction)
        return
    for spec, (seed, fraction) in differing.items():
        logger.warning("%s was fine-tuned with the held-out split of split seed %d, eval fraction %g: on this split "
                       "(%d, %g) its scores include questions it trained on; pass --split-seed %d --eval-fraction %g",
                       spec, seed, fraction, args.split_seed, args.eval_fraction, seed, fraction)


def _warn_training_questions(args: argparse.Namespace) -> None:
    """Warn when a model folder's ``medrag finetune`` run trained on the questions this run scores,
    in the cases the held-out split does not cover (user tryout: each was scored in silence): the
    pairs file it trained on every pair of (it had an ``--eval-data`` file), every pair (``--split
    all``) of the file it trained on, or a FrenchMedMCQA split among its training splits."""
    for spec in dict.fromkeys(args.model):
        recorded = _finetune_config(spec)
        if recorded is None or not isinstance(recorded.get("data"), str):
            continue
        folder, data = Path(spec).expanduser(), Path(args.data).expanduser()
        given = _run_record(folder).get(DATA_GIVEN_KEY)
        if given is not None:  # its finetune_config.yaml names other data (review)
            logger.warning("%s was fine-tuned on a dataset passed in Python (%s), not the data its "
                           "finetune_config.yaml names: medrag evaluate cannot tell which questions it trained on; "
                           "make sure %s holds none of them", spec, given, args.data)
            continue
        if data.is_dir() and is_frenchmedmcqa_folder(data):
            # FrenchMedMCQA's splits are fixed: any copy of the data has the same questions in each
            split = args.split or "test"
            if split in _frenchmedmcqa_trained_splits(spec):
                logger.warning("%s was fine-tuned on FrenchMedMCQA's %s split: its scores on it are on questions "
                               "it trained on; evaluate on --split test", spec, split)
            continue
        try:
            same = data.is_file() and _same_data(folder, recorded["data"], args.data)
        except OSError:
            same = False
        if not same:
            continue
        if recorded.get("eval_data"):
            logger.warning("%s was fine-tuned on every pair of %s (its eval set was %s): these scores are on "
                           "questions it trained on; evaluate on %s", spec, args.data, recorded["eval_data"],
                           recorded["eval_data"])
        elif args.split == "all":
            logger.warning("%s was fine-tuned on %s: --split all scores the questions it trained on too; leave "
                           "--split out to score the ones it held out", spec, args.data)


def _evaluate(args: argparse.Namespace) -> int:
    from medrag.models import loading_progress

    with loading_progress(_progress(args)), WarningLog() as warnings:
        # what report.md / report.json record (user tryout: the warnings were on stderr only)
        return _evaluate_checked(args, warnings.messages)


def _evaluate_checked(args: argparse.Namespace, warnings: list[str]) -> int:
    if args.label and len(args.label) != len(args.model):
        raise DataError(f"{len(args.label)} --label for {len(args.model)} --model")
    if args.batch_size < 1:
        raise DataError("--batch-size must be >= 1")
    if args.bootstrap < MIN_BOOTSTRAP:  # --bootstrap 1 printed a "95% CI" [0.910, 0.910] around a mean of 0.850
        raise DataError(f"--bootstrap {args.bootstrap}: a confidence interval needs at least {MIN_BOOTSTRAP} "
                        f"resamples (default {N_BOOTSTRAP})")
    if args.bootstrap < ROUGH_BOOTSTRAP:
        logger.warning("--bootstrap %d: intervals from so few resamples are rough (default %d)", args.bootstrap,
                       N_BOOTSTRAP)
    if args.suite:
        if args.data is not None or args.store:
            raise DataError("--suite replaces --data (and does not run --store); drop one of them")
        if _given(args, ("bootstrap",)):  # it was accepted and its intervals dropped from the suite's tables
            raise DataError("--bootstrap: the suite's tables report means per domain and size, without intervals; "
                            "drop it (run a domain's data with --data for intervals)")
        _check_modes(args)
        from medrag.qa.suite import PACKAGED_DOMAINS, resolve_data_root

        root = resolve_data_root(args.data_root)
        shipped_only = bool(args.domains) and set(args.domains) <= PACKAGED_DOMAINS  # the sample ships with medrag
        if shipped_only and args.data_root is not None:  # accepted and ignored: the sample ships with medrag
            raise DataError(f"--data-root: not used with --domains {' '.join(args.domains)} (packaged with "
                            "medrag); drop it, or add a domain read from the data root")
        if not root.is_dir() and not shipped_only:  # named by its flag, before any model loads
            # the default was named as if --data-root had been passed (user tryout)
            where = (f"--data-root {root}" if args.data_root is not None else
                     f"$MEDRAG_DATA ({root})" if os.environ.get("MEDRAG_DATA") else
                     f"the default data root {root} (relative to the current folder, {Path.cwd()})")
            raise DataError(f"{where} is not a folder: pass --data-root, or set $MEDRAG_DATA to, the folder that holds "
                            "frenchmedmcqa/ and french-medical-text/ (../shared/data from the repository's root)")
        _fill_defaults(args)
        return _evaluate_suite(args, warnings)
    _check_modes(args)
    _fill_defaults(args)
    if args.data is None:
        raise DataError("give --data PATH_OR_ID (a dataset) or --suite (the validation suite)")
    if args.store:  # fail before any encoding when the store (chromadb) cannot be imported
        try:
            import medrag.store  # noqa: F401
        except ImportError as exc:
            raise MedragError(f"--store needs medrag.store (MatryoshkaChroma): {exc}") from exc
    _follow_finetune_split(args)
    _warn_training_questions(args)
    task = load_task(args.data, split=args.split, question_column=args.question_column,
                     answer_column=args.answer_column, eval_fraction=args.eval_fraction,
                     split_seed=args.split_seed, limit=args.limit)
    print(f"task {task.name}: {len(task.queries)} queries, {len(task.corpus)} documents")
    loaded: dict[str, MatryoshkaEmbeddings] = {}  # a spec given twice is loaded once
    for spec in args.model:
        if spec not in loaded:
            loaded[spec] = MatryoshkaEmbeddings(spec, device=args.device, batch_size=args.batch_size,
                                                show_progress=_progress(args),
                                                query_prompt_name=args.query_prompt_name,
                                                document_prompt_name=args.document_prompt_name)
    embeddings = [loaded[spec] for spec in args.model]
    twice = sorted({spec for spec in args.model if args.model.count(spec) > 1})
    if twice:
        logger.warning("--model %s is given more than once: its comparison with itself measures nothing "
                       "(gain 0, p = 1)", ", ".join(twice))
    _check_model_sizes(args, embeddings)
    cache = EmbeddingCache(args.cache_dir, enabled=not args.no_cache)
    # bad metric names, tolerances, confidence, candidates below k: the library raises InvalidInputError
    report = evaluate_models(
        embeddings, task, dims=args.sizes, metrics=args.metrics, primary_metric=args.primary_metric,
        cache=cache, n_bootstrap=args.bootstrap,
        confidence=args.confidence, test=args.test, n_resamples=args.resamples,
        balanced_tolerance=args.balanced_tolerance, edge_tolerance=args.edge_tolerance, seed=args.seed,
        labels=args.label, command=command_line(args), device=args.device, batch_size=args.batch_size,
        show_progress=_progress(args), more_queries=_more_queries(args), run_depth=args.export_runs or 0)
    if args.store:
        for emb, m in zip(embeddings, report.models):
            report.store[m.label] = evaluate_store(emb, task, coarse_dim=args.coarse_dim,
                                                   candidates=args.candidates, cache=cache,
                                                   sweep=args.candidates_sweep or ())
    if args.hybrid:
        options = analyzer_options(args.analyzer or [])
        for emb, m in zip(embeddings, report.models):
            q = cache.encode(emb, list(task.queries.values()), side="query")
            d = cache.encode(emb, list(task.corpus.values()), side="document")
            report.hybrid[m.label] = evaluate_hybrid(
                task, q, d, sorted(m.sizes, reverse=True), weights=args.lexical_weight or [DEFAULT_LEXICAL_WEIGHT],
                method=args.fusion or DEFAULT_FUSION, options=options, metrics=report.metrics, show_progress=_progress(args))
    report.warnings = list(warnings)
    # the data as read, not only as typed ("test.jsonl"): its absolute path, and for a file its sha256, as
    # training_info.json records a run's data (user tryout)
    source = Path(args.data).expanduser()
    if source.exists():
        report.task_info["data"] = data_file_record(source) or {"path": str(source.resolve())}
    paths = report.write(args.out, plot=not args.no_plot)  # it removes an earlier run's report files
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
    for label, res in report.hybrid.items():
        print(f"\nlexical, dense and hybrid, {label}:")
        print(res.to_markdown(report.primary_metric))
    if args.write_metadata:  # at least one --model is a local folder (checked before the models loaded)
        for i, m in enumerate(report.models):
            if Path(m.spec).expanduser().is_dir():
                path = write_metadata(m.spec, m, baseline=report.models[0] if i else None,
                                      task=report.task_info.get("name"), task_details={
                                          "data": str(Path(args.data).expanduser().resolve())
                                          if Path(args.data).expanduser().exists() else args.data,
                                          **{k: report.task_info[k] for k in ("queries", "corpus", "content_hash")
                                             if k in report.task_info}, "command": report.command})
                print(f"wrote scores and recommendations to {path}")
    print(f"\nreport: {Path(args.out).resolve()} ({', '.join(p.name for p in paths.values())})")
    return 0


def _more_queries(args: argparse.Namespace) -> str:
    """The options that give a small task more queries, as the warning about fewer than 30 says them:
    none for fixed splits (a BEIR or FrenchMedMCQA folder, the sample) or every pair of a file (user
    tryout: it advised --eval-fraction, which a BEIR folder refuses, and --split all, already given)."""
    if args.limit is not None:
        return "--limit keeps fewer"
    if unused_options(args.data, args.split):
        return ""
    return (f"a larger held-out share: --eval-fraction, now {args.eval_fraction:g}; or every pair of a dedicated "
            "evaluation file: --split all")


def report_metrics(args: argparse.Namespace) -> list[str]:
    """The metrics of a suite run, the primary one first."""
    return list(dict.fromkeys([args.primary_metric, *args.metrics]))


def analyzer_options(pairs: list[str]):
    """``["keep_acronyms=true", "extra_stopwords=patient,cas"]`` as :class:`medrag.lexical.analyzer.AnalyzerOptions`."""
    known = {f.name: f for f in fields(AnalyzerOptions)}
    values: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise DataError(f"--analyzer {pair!r}: use OPTION=VALUE with OPTION one of {sorted(known)}")
        if key == "extra_stopwords":
            values[key] = tuple(w for w in raw.split(",") if w)
        elif raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            values[key] = raw.lower() in ("true", "1", "yes", "on")
        else:
            raise DataError(f"--analyzer {pair!r}: {key} takes true or false")
    return AnalyzerOptions(**values)


def _frenchmedmcqa_trained_splits(spec: str) -> set[str]:
    """The FrenchMedMCQA splits whose questions the ``medrag finetune`` run that made the model folder
    ``spec`` trained on (its ``finetune_config.yaml``: a FrenchMedMCQA folder as data, its training
    splits, train and dev by default, less its eval split, whose questions the run drops from
    training); empty for another run or data."""
    recorded = _finetune_config(spec)
    if recorded is None or not isinstance(recorded.get("data"), str):
        return set()
    splits = recorded.get("train_splits") or DEFAULT_TRAIN_SPLITS
    data = Path(recorded["data"]).expanduser()
    # the recorded path is as typed (../shared/data/frenchmedmcqa): from another folder, or after the data
    # moved, it reads as the format or the folder's name says
    fmcqa = is_frenchmedmcqa_folder(data) if data.exists() else (
        recorded.get("data_format") == "frenchmedmcqa" or data.name.lower() == "frenchmedmcqa")
    if not fmcqa or not isinstance(splits, (list, tuple)):
        return set()
    return {str(s) for s in splits} - {str(recorded.get("eval_split") or "test")}


def _trained_on_frenchmedmcqa_dev(spec: str) -> bool:
    """Whether that run trained on FrenchMedMCQA's ``dev.json``: the suite's FrenchMedMCQA val part."""
    return "dev" in _frenchmedmcqa_trained_splits(spec)


def _evaluate_suite(args: argparse.Namespace, warnings: list[str]) -> int:
    """``medrag evaluate --suite``: every domain of the validation suite, every size, the macro-average."""
    if args.part == "val" and (args.domains is None or "frenchmedmcqa" in args.domains):
        for spec in dict.fromkeys(args.model):
            if _trained_on_frenchmedmcqa_dev(spec):  # 311 of the 312 val queries were training pairs
                logger.warning("%s was fine-tuned on FrenchMedMCQA's dev.json, the suite's frenchmedmcqa val part: "
                               "its frenchmedmcqa val scores (and the macro-average) include questions it trained "
                               "on; compare it on --part test, or fine-tune with --train-splits train", spec)
    suite = build_suite(args.part, pilot=args.pilot, data_root=args.data_root, domains=args.domains,
                        max_queries=args.max_queries if args.pilot else None,
                        max_passages=args.max_passages if args.pilot else None, leaflet_queries=args.leaflet_queries)
    print(suite.describe())
    loaded: dict[str, MatryoshkaEmbeddings] = {}
    for spec in args.model:
        if spec not in loaded:
            loaded[spec] = MatryoshkaEmbeddings(spec, device=args.device, batch_size=args.batch_size,
                                                show_progress=_progress(args),
                                                query_prompt_name=args.query_prompt_name,
                                                document_prompt_name=args.document_prompt_name)
    report = evaluate_suite([loaded[s] for s in args.model], suite, dims=args.sizes, metrics=args.metrics,
                            primary_metric=args.primary_metric, labels=args.label,
                            cache=EmbeddingCache(args.cache_dir, enabled=not args.no_cache),
                            n_bootstrap=args.bootstrap, n_resamples=args.resamples or 10000, seed=args.seed,
                            command=command_line(args), show_progress=_progress(args))
    hybrid = []
    if args.hybrid:  # scored before anything is written: a failure leaves no half report
        options = analyzer_options(args.analyzer or [])
        for spec in args.model:
            hybrid.append(evaluate_hybrid_suite(
                loaded[spec], suite, dims=args.sizes, weights=args.lexical_weight or [DEFAULT_LEXICAL_WEIGHT],
                method=args.fusion or DEFAULT_FUSION, options=options,
                cache=EmbeddingCache(args.cache_dir, enabled=not args.no_cache), metrics=report_metrics(args),
                primary_metric=report.primary_metric, command=report.command))  # --primary-metric was ignored
    out = Path(args.out).expanduser()
    earlier = earlier_report_files(out)
    report.warnings = list(warnings)
    paths = report.write(out)
    print()
    print(report.to_markdown())
    for i, (label, result) in enumerate(zip(report.models, hybrid)):
        name = _hybrid_suite_name(i, len(report.models))
        result.model = label
        (out / f"{name}.md").write_text(f"# {label}\n\n{result.to_markdown()}\n", encoding="utf-8")
        (out / f"{name}.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
        paths[name] = out / f"{name}.md"
        paths[f"{name}_json"] = out / f"{name}.json"
        print(f"\n{label}:\n{result.to_markdown()}")
    remove_stale_report_files(out, paths.values(), earlier)
    print(f"report: {Path(args.out).resolve()} ({', '.join(p.name for p in paths.values())})")
    return 0


#: Options that change no number of a report: left out of the command it records (the docs say so; a
#: user tryout found -v and --cache-dir there).
_NO_RESULT_OPTIONS = frozenset({"verbose", "cache_dir", "no_cache", "progress"})


def command_line(args: argparse.Namespace) -> str:
    """The canonical ``medrag evaluate ...`` command that reproduces ``args`` (recorded in report.json)."""
    parts = ["medrag", "evaluate"]
    for action, value in _set_options(args):
        if action.dest in _NO_RESULT_OPTIONS:
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
