"""Candidates for medrag's default model, scored on the validation suite from the base model's vectors.

Every candidate here keeps the embedded e5-small's encoder frozen and changes only a final linear layer
(``freeze_encoder: true`` in the fine-tuning config, or a rotation fitted without training). Their
vectors are therefore ``normalize(W @ base_vector + b)``, computed exactly from the base model's suite
vectors (read from the evaluation's embedding cache, so the base is encoded once for every candidate):
a candidate scores in seconds instead of re-encoding ~15,000 texts on 2 CPU cores. The script also
emulates the store's own fitted rotation (a PCA fitted on each domain's stored passages, applied to
the base model), the comparison the issue asks for before folding a rotation into the shipped model.

``--check-model DIR`` verifies the shortcut: it encodes a few hundred suite texts with the real model
folder and reports the largest deviation from ``normalize(W @ base + b)``.

Usage (from the repository root)::

    python benchmarks/default_model_sweep.py --part val --pilot --domains frenchmedmcqa cases abstracts sample \\
        --candidate head-a=outputs/head-a --out docs/results/sweep_val_pilot_3domains.json

(``outputs/head-a``: a folder ``medrag finetune`` wrote with a frozen-encoder config.)

Candidates: ``base``, ``pca-train`` (uncentred PCA fitted on the base vectors of the training passages
of ``configs/medrag_head.yaml``), ``store-pca`` / ``store-pca-centered`` (fitted on each domain's
corpus: the store's rotation), and any trained folder given with ``--candidate NAME=DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _frozen_head import frozen_head  # noqa: E402
from _script import ScriptParser, add_data_root_argument, positive_int, run_script, suite_data_root  # noqa: E402

DIMS = (384, 256, 128, 64, 32)


def apply(vecs: np.ndarray, head: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    if head is None:
        return vecs
    w, b = head
    out = vecs @ w.T + b
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def interpolate(trained: tuple[np.ndarray, np.ndarray], init: tuple[np.ndarray, np.ndarray],
                alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``alpha * trained + (1 - alpha) * init``, weights and bias alike."""
    return tuple(alpha * t + (1 - alpha) * i for t, i in zip(trained, init))


def score(task, q: np.ndarray, d: np.ndarray) -> dict[int, float]:
    from evaluation.retrieval import evaluate_vectors

    res = evaluate_vectors(task, q, d, DIMS, ("ndcg@10",))
    return {dim: float(r.means["ndcg@10"]) for dim, r in res.items()}


def candidate_arg(spec: str) -> tuple[str, Path]:
    """argparse type of ``--candidate NAME=DIR``: DIR must be a saved sentence-transformers folder."""
    label, _, folder = spec.partition("=")
    if not label or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {spec!r}")
    if not (Path(folder) / "modules.json").is_file():
        raise argparse.ArgumentTypeError(f"{spec!r}: {folder} is not a saved model folder (no modules.json)")
    return label, Path(folder)


def interpolate_arg(spec: str) -> tuple[str, Path, float]:
    """argparse type of ``--interpolate NAME=DIR:ALPHA`` (0 <= ALPHA <= 1, DIR a saved model folder)."""
    label, _, rest = spec.partition("=")
    folder, _, alpha = rest.rpartition(":")
    try:
        weight = float(alpha)
    except ValueError:
        weight = None
    if not label or not folder or weight is None or not 0 <= weight <= 1:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR:ALPHA with 0 <= ALPHA <= 1, got {spec!r}")
    candidate_arg(f"{label}={folder}")
    return label, Path(folder), weight


def main(argv: Sequence[str] | None = None) -> int:
    from medrag.qa.suite import DOMAINS

    p = ScriptParser(__file__, __doc__)
    p.add_argument("--part", default="val", choices=["val", "test"],
                   help="the suite's part: val for choices, test to report once")
    p.add_argument("--pilot", action="store_true", help="cap each domain (the suite's pilot)")
    p.add_argument("--domains", nargs="+", choices=DOMAINS, metavar="DOMAIN",
                   help=f"a subset of the suite's domains, of {' '.join(DOMAINS)} (default: all)")
    p.add_argument("--max-passages", type=positive_int, default=3000, help="pilot cap on passages per domain")
    add_data_root_argument(p)
    p.add_argument("--candidate", action="append", default=[], metavar="NAME=DIR", type=candidate_arg,
                   help="a trained frozen-encoder model folder to score (repeatable)")
    p.add_argument("--interpolate", action="append", default=[], metavar="NAME=DIR:ALPHA", type=interpolate_arg,
                   help="weight-space interpolation (WiSE-FT, Wortsman et al., 2022) of a trained head with its "
                        "initialisation, the centred PCA of the training pairs' passages as the loop fits it (for "
                        "a head trained with --train-config): ALPHA * trained + (1 - ALPHA) * init; needs the "
                        "config's teacher cache")
    p.add_argument("--train-config", default=str(REPO / "configs" / "medrag_head.yaml"),
                   help="fine-tuning config whose training passages the pca-train candidates are fitted on")
    p.add_argument("--no-store", action="store_true", help="skip the store-rotation emulation")
    p.add_argument("--check-model", metavar="SPEC",
                   help="verify the shortcut against the real model (a folder or a bundled: spec)")
    p.add_argument("--check-n", type=positive_int, default=100, help="texts per side per domain for --check-model")
    p.add_argument("--out", help="write the table as JSON here")
    args = p.parse_args(argv)
    # everything that can be checked cheaply, before the suite loads and the base model encodes
    if not Path(args.train_config).is_file():
        p.error(f"--train-config {args.train_config}: no such file")
    if args.check_model and not args.check_model.startswith("bundled:") and not Path(args.check_model).is_dir():
        p.error(f"--check-model {args.check_model}: no such folder (pass a model folder or a bundled: spec)")
    given = {label: frozen_head(folder) for label, folder in args.candidate}  # a folder without a Dense layer stops here
    trained_heads = {label: frozen_head(folder) for label, folder, _ in args.interpolate}
    data_root = suite_data_root(args.data_root)
    logging.basicConfig(level=logging.WARNING)

    from evaluation.cache import EmbeddingCache
    from finetune.rotation import fit_pca_rotation
    from medrag import MatryoshkaEmbeddings
    from medrag.qa.suite import build_suite

    t0 = time.perf_counter()
    suite = build_suite(args.part, pilot=args.pilot, data_root=data_root, domains=args.domains,
                        max_passages=args.max_passages if args.pilot else None)
    base = MatryoshkaEmbeddings("bundled:multilingual-e5-small", batch_size=32)
    cache = EmbeddingCache()
    vecs = {}
    for name, dom in suite.domains.items():
        vecs[name] = (cache.encode(base, list(dom.task.queries.values()), "query"),
                      cache.encode(base, list(dom.task.corpus.values()), "document"))
    print(f"base vectors of {len(vecs)} domains in {time.perf_counter() - t0:.0f} s "
          f"(cache hits {cache.hits}, misses {cache.misses})", file=sys.stderr)

    heads: dict[str, object] = {"base": None}
    train_passages = _training_passage_vectors(args.train_config, base)
    if train_passages is not None:
        heads["pca-train"] = fit_pca_rotation(train_passages, center=False)
        heads["pca-train-centered"] = fit_pca_rotation(train_passages, center=True)
    heads.update(given)
    if args.interpolate:
        # the loop's initialisation exactly: the centred PCA of every training pair's passage (repeats included)
        every_passage = _training_passage_vectors(args.train_config, base, unique=False)
        init = fit_pca_rotation(every_passage, center=True) if every_passage is not None else None
    for label, folder, weight in args.interpolate:
        if init is None:
            raise SystemExit(f"--interpolate {label}={folder}:{weight}: needs the config's teacher cache "
                             f"(the training passages' vectors of {args.train_config})")
        heads[label] = interpolate(trained_heads[label], init, weight)

    table: dict[str, dict] = {}
    for label, head in heads.items():
        per = {n: score(suite.domains[n].task, apply(q, head), apply(d, head)) for n, (q, d) in vecs.items()}
        table[label] = per
    if not args.no_store:
        for label, center in (("store-pca", False), ("store-pca-centered", True)):
            per = {}
            for n, (q, d) in vecs.items():
                head = fit_pca_rotation(d, center=center)  # fitted on the stored passages, as the store does
                per[n] = score(suite.domains[n].task, apply(q, head), apply(d, head))
            table[label] = per
    choice = suite.choice_domains
    rows = []
    header = "| candidate | " + " | ".join(f"macro@{d}" for d in DIMS) + " | " + " | ".join(
        f"{n}@384/64" for n in vecs) + " |"
    rows += [header, "|---|" + "---:|" * (len(DIMS) + len(vecs))]
    out = {"part": args.part, "pilot": args.pilot, "max_passages": args.max_passages,
           "units_version": suite.settings["units_version"], "choice_domains": choice, "dims": list(DIMS),
           "domains": {n: {"queries": len(d.task.queries), "corpus": len(d.task.corpus)} for n, d in suite.domains.items()},
           "candidates": {}}
    for label, per in table.items():
        macro = {dim: float(np.mean([per[n][dim] for n in choice])) for dim in DIMS}
        out["candidates"][label] = {"macro": macro, "domains": per}
        rows.append(f"| {label} | " + " | ".join(f"{macro[d]:.4f}" for d in DIMS) + " | "
                    + " | ".join(f"{per[n][384]:.3f}/{per[n][64]:.3f}" for n in vecs) + " |")
    print("\n".join(rows))
    if args.check_model:
        folder = args.check_model
        if folder.startswith("bundled:"):
            from medrag.models import bundled_folder

            folder = str(bundled_folder(folder))
        out["check"] = _check(Path(folder), suite, vecs, base, args.check_n)
        out["check"]["model"] = args.check_model
        print(f"check of {args.check_model}: {out['check']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


def _training_passage_vectors(config_path: str, base, unique: bool = True) -> np.ndarray | None:
    """The base vectors of the training passages of the config, if its teacher cache holds them: each
    distinct passage once (``unique``), or one row per training pair, as the loop fits its rotation."""
    from finetune.config import FinetuneConfig
    from finetune.loop import TeacherCache, teacher_cache_dir
    from finetune.training import MatryoshkaFinetuner
    from medrag.prompts import prompt_texts

    cfg = FinetuneConfig.from_file(config_path)
    finetuner = MatryoshkaFinetuner(cfg)
    from finetune.data import load_dataset_from_config

    finetuner.dataset = load_dataset_from_config(cfg)
    pairs, _ = finetuner.training_pairs()
    from medrag.models import legacy_model_fingerprints, model_fingerprint

    cache = TeacherCache(teacher_cache_dir(cfg), model_fingerprint(base.model), prompt_texts(base.model.prompts)[1],
                         cfg.passage_max_length, legacy=legacy_model_fingerprints(base.model))
    texts = list(dict.fromkeys(p.answer for p in pairs)) if unique else [p.answer for p in pairs]
    found, missing = cache.lookup(texts)
    rows = [v for v in found if v is not None]
    if len(rows) < 0.5 * len(texts):
        print(f"pca-train skipped: {len(missing)} of {len(texts)} training passages not in the teacher cache",
              file=sys.stderr)
        return None
    return np.stack(rows)


def _check(folder: Path, suite, vecs, base, n: int = 100) -> dict[str, float]:
    """Largest |real - shortcut| over ``n`` queries and ``n`` passages per domain."""
    from medrag import MatryoshkaEmbeddings

    model = MatryoshkaEmbeddings(str(folder), batch_size=32)
    head = frozen_head(folder)
    worst = 0.0
    for name, (q, d) in vecs.items():
        task = suite.domains[name].task
        qt, dt = list(task.queries.values())[:n], list(task.corpus.values())[:n]
        real_q = np.asarray(model.model.encode(qt, prompt_name=model.query_prompt_name, normalize_embeddings=True))
        real_d = np.asarray(model.model.encode(dt, prompt_name=model.document_prompt_name, normalize_embeddings=True))
        worst = max(worst, float(np.abs(real_q - apply(q[:n], head)).max()),
                    float(np.abs(real_d - apply(d[:n], head)).max()))
    return {"max_abs_diff": worst, "texts_per_side_per_domain": n}


if __name__ == "__main__":
    raise SystemExit(run_script(main))
