"""``medrag evaluate`` takes its defaults from the library: the CLI and the Python API cannot drift apart."""

from __future__ import annotations

import inspect

from evaluation.cli import _fill_defaults
from evaluation.data import load_task
from evaluation.evaluator import evaluate_models
from evaluation.store_eval import evaluate_store
from medrag.cli import build_parser
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.store import MatryoshkaChroma


def _defaults(fn) -> dict:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_evaluate_defaults_are_the_librarys():
    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d"])
    _fill_defaults(args)  # the mode-only options parse to None (given or not), then take the library's default
    task, models = _defaults(load_task), _defaults(evaluate_models)
    assert (args.eval_fraction, args.split_seed, args.question_column, args.answer_column) == (
        task["eval_fraction"], task["split_seed"], task["question_column"], task["answer_column"])
    assert args.metrics == list(models["metrics"]) and args.primary_metric == models["primary_metric"]
    assert (args.bootstrap, args.confidence, args.test, args.seed) == (
        models["n_bootstrap"], models["confidence"], models["test"], models["seed"])
    assert (args.balanced_tolerance, args.edge_tolerance, args.batch_size) == (
        models["balanced_tolerance"], models["edge_tolerance"], models["batch_size"])
    assert args.batch_size == _defaults(MatryoshkaEmbeddings.__init__)["batch_size"]
    # None everywhere: the store's default for a new collection, default_coarse_dim(full size): DEFAULT_COARSE_DIM,
    # or half the size of a model of 64 dims or fewer (a 64-dim model was refused a --coarse-dim 64 never given)
    assert args.coarse_dim is _defaults(evaluate_store)["coarse_dim"] is None
    assert _defaults(MatryoshkaChroma.__init__)["coarse_dim"] is None


def test_the_suite_defaults_are_the_librarys_too():
    """evaluate_suite resampled 200 times with batches of 32 where the CLI (and evaluate_models) use
    1,000 and the encoding default: the Python API's intervals were not the command's (audit)."""
    from evaluation.suite import evaluate_suite

    args = build_parser().parse_args(["evaluate", "--model", "m", "--suite"])
    _fill_defaults(args)
    suite, models = _defaults(evaluate_suite), _defaults(evaluate_models)
    for name in ("n_bootstrap", "seed", "batch_size", "metrics", "primary_metric"):
        assert suite[name] == models[name], name
    assert (args.bootstrap, args.batch_size) == (suite["n_bootstrap"], suite["batch_size"])
