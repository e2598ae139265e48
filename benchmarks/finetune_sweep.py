"""Recipe sweep for `medrag finetune`: which levers beat the seed's recipe on FrenchMedMCQA?

Trains the model on FrenchMedMCQA *train* and scores it on *dev* (never on test: test is kept
for the final CPU result runs in docs/results.md) for each recipe below, in fp32 so that the
numbers transfer to CPU training. Writes, after every recipe (so a timeout keeps what finished):

- ``OUT/sweep.json``: per recipe its overrides, NDCG@10/MRR@10/Recall@10 per size, wall time;
- ``OUT/sweep.md``: the NDCG@10 table.

``--time-losses`` times one optimisation-free forward+backward of MatryoshkaLoss over plain MNRL and
over CachedMNRL (mini-batch 16) on the same batch of 64 training pairs, alternating, ``--repeats`` times
(why ``loss="auto"`` picks plain MNRL on CPU; ``OUT/loss_timing.json``).

``--bf16`` instead runs one recipe (``--recipe``, default: the library's default recipe) on
train+dev with evaluation on test in bf16 and records samples/s and peak GPU memory
(``OUT/bf16.json``, ``OUT/bf16.md``).

Usage (GPU)::

    python benchmarks/finetune_sweep.py --data ../shared/data/frenchmedmcqa --model /path/to/e5-small \\
        --out runs/sweep --device cuda
    python benchmarks/finetune_sweep.py --data ../shared/data/frenchmedmcqa --model /path/to/e5-small \\
        --out runs/bf16 --device cuda --bf16

Needs torch, sentence-transformers, transformers, accelerate, datasets, numpy and pyyaml; it does
not import LangChain or Chroma.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import ScriptParser, positive_int, require_data, run_script  # noqa: E402
# medrag and finetune are imported inside each recipe's function: the GPU machine's environment is
# minimal, and torch loads only when a recipe runs.

#: The recipes, as FinetuneConfig overrides on top of BASE. "seed" is the seed report's recipe.
BASE = dict(loss="cached_mnrl", batch_size=64, mini_batch_size=16, gradient_accumulation_steps=1,
            hard_negatives=0, batch_sampler="no_duplicates", epochs=1, learning_rate=2e-5, warmup_ratio=0.1,
            max_seq_length=128)
RECIPES: dict[str, dict] = {  # in priority order: a run cut short by a time limit keeps the first ones
    # the seed report: MNRL, per-device batch 4 x accumulation 16 (3 in-batch negatives per query)
    "seed": dict(loss="mnrl", batch_size=4, gradient_accumulation_steps=16, batch_sampler="batch_sampler",
                 max_seq_length=None),
    # the anchor: CachedMNRL 64 / mini 16, NO_DUPLICATES, warmup 0.1, no hard negatives
    "anchor": dict(),
    "hn1": dict(hard_negatives=1),
    "hn3": dict(hard_negatives=3),
    "lr5e-5": dict(learning_rate=5e-5),
    "lr1e-4": dict(learning_rate=1e-4),
    "hn1_lr5e-5": dict(hard_negatives=1, learning_rate=5e-5),
    "hn1_lr1e-4": dict(hard_negatives=1, learning_rate=1e-4),
    "lr2e-4": dict(learning_rate=2e-4),
    "ep2": dict(epochs=2),
    "ep3": dict(epochs=3),
    "hn1_ep2": dict(hard_negatives=1, epochs=2),
    "ep2_lr5e-5": dict(epochs=2, learning_rate=5e-5),
    "ep2_lr1e-4": dict(epochs=2, learning_rate=1e-4),
    "hn1_ep2_lr1e-4": dict(hard_negatives=1, epochs=2, learning_rate=1e-4),
    "bs128_hn1": dict(batch_size=128, mini_batch_size=32, hard_negatives=1),
    "bs32_hn1": dict(batch_size=32, hard_negatives=1),
    "anchor_sampler_default": dict(batch_sampler="batch_sampler"),
    "anchor_warmup0": dict(warmup_ratio=0.0),
    "lr1e-4_len64": dict(learning_rate=1e-4, max_seq_length=64),
    "mnrl_bs64_hn1": dict(loss="mnrl", hard_negatives=1),
    "seed_lr1e-4": dict(loss="mnrl", batch_size=4, gradient_accumulation_steps=16, batch_sampler="batch_sampler",
                        max_seq_length=None, learning_rate=1e-4),
    "bs128_lr1e-4": dict(batch_size=128, mini_batch_size=32, learning_rate=1e-4),
    "ep4": dict(epochs=4),
    "hn1_ep3": dict(hard_negatives=1, epochs=3),
    "ep3_lr1e-4": dict(epochs=3, learning_rate=1e-4),
    "hn1_ep3_lr5e-5": dict(hard_negatives=1, epochs=3, learning_rate=5e-5),
    "bs32_lr1e-4": dict(batch_size=32, learning_rate=1e-4),
}
DIMS = [384, 256, 128, 64, 32]
METRICS = ("ndcg@10", "mrr@10", "recall@10")


def main(argv: Sequence[str] | None = None) -> int:
    ap = ScriptParser(__file__, __doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="FrenchMedMCQA folder (train.json, dev.json, test.json)")
    ap.add_argument("--model", default=None, help="model spec for medrag.load_model (default: embedded e5-small)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    ap.add_argument("--recipes", nargs="+", default=None, choices=list(RECIPES), metavar="RECIPE",
                    help=f"run only these recipes, in this order (default: all, in the order {' '.join(RECIPES)})")
    ap.add_argument("--dims", nargs="+", type=positive_int, default=DIMS, help="Matryoshka sizes trained and scored")
    ap.add_argument("--bf16", action="store_true", help="one bf16 run on train+dev, eval on test")
    ap.add_argument("--recipe", default="default", choices=["default", *RECIPES], metavar="RECIPE",
                    help="recipe for --bf16: 'default' (FinetuneConfig defaults) or a name from the sweep")
    ap.add_argument("--seed", type=int, default=42, help="training seed of every run")
    ap.add_argument("--max-steps", type=positive_int, default=-1,
                    help="cap each run at this many optimizer steps (smoke tests; default: no cap)")
    ap.add_argument("--time-losses", action="store_true", help="time MNRL vs CachedMNRL on one batch of 64")
    ap.add_argument("--repeats", type=positive_int, default=2, help="repeats for --time-losses")
    args = ap.parse_args(argv)
    require_data(args.data, "the FrenchMedMCQA folder", "--data")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.bf16:
        return run_bf16(args, out)
    if args.time_losses:
        return time_losses(args, out)
    return run_sweep(args, out)


def _config(args, name: str, output_dir: Path, **extra):
    from finetune.config import FinetuneConfig

    overrides = {} if name == "default" else {**BASE, **RECIPES[name]}
    return FinetuneConfig(**{**overrides, "data": args.data, "model": args.model, "dims": args.dims,
                             "device": args.device, "seed": args.seed, "output_dir": str(output_dir),
                             "checkpoints": False, "logging_steps": 1000,
                             "max_steps": args.max_steps, **extra})


def run_sweep(args, out: Path) -> int:
    import torch

    from medrag.qa import load_frenchmedmcqa
    from finetune.training import MatryoshkaFinetuner

    dataset = load_frenchmedmcqa(args.data, train_splits=("train",), eval_split="dev")
    names = args.recipes or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}")
    results_path = out / "sweep.json"
    record = {"data": str(args.data), "train": "train", "eval": "dev", "model": args.model, "dims": args.dims,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu",
              "precision": "fp32", "base": BASE, "runs": {}}
    if results_path.is_file():
        record["runs"] = json.loads(results_path.read_text()).get("runs", {})
    before = None
    for name in names:
        if name in record["runs"]:
            print(f"[{name}] already done, skipped", flush=True)
            continue
        cfg = _config(args, name, out / "models" / name, precision="fp32", tf32=False,
                      evaluate_before=before is None)
        start = time.perf_counter()
        finetuner = MatryoshkaFinetuner(cfg, dataset=dataset)
        result = finetuner.run()
        wall = time.perf_counter() - start
        if before is None:
            before = result.scores_before
            record["before"] = {str(k): v for k, v in before.items()}
        record["runs"][name] = {
            "overrides": RECIPES[name], "wall_seconds": round(wall, 1), "train_seconds": round(result.train_seconds, 1),
            "samples_per_second": round(result.samples_per_second, 2), "steps": result.global_step,
            "final_loss": result.losses[-1] if result.losses else None,
            "scores": {str(k): v for k, v in result.scores_after.items()},
        }
        print(f"[{name}] {result.train_seconds:.1f}s train, NDCG@10 "
              + " ".join(f"{d}:{result.scores_after[d]['ndcg@10']:.4f}" for d in sorted(result.scores_after, reverse=True)),
              flush=True)
        del finetuner, result
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        results_path.write_text(json.dumps(record, indent=2))
        (out / "sweep.md").write_text(sweep_table(record))
        shutil.rmtree(out / "models" / name, ignore_errors=True)  # keep the output small
    print(sweep_table(record))
    return 0


def sweep_table(record: dict) -> str:
    dims = record["dims"]
    head = "| recipe | " + " | ".join(f"NDCG@10 {d}" for d in dims) + " | train s | steps |"
    lines = [f"FrenchMedMCQA train -> dev, {record['device']}, {record['precision']}", "", head,
             "|---|" + "---:|" * (len(dims) + 2)]
    if "before" in record:
        lines.append("| base model | " + " | ".join(f"{record['before'][str(d)]['ndcg@10']:.4f}" for d in dims)
                     + " | | |")
    for name, r in record["runs"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r['scores'][str(d)]['ndcg@10']:.4f}" for d in dims)
                     + f" | {r['train_seconds']} | {r['steps']} |")
    return "\n".join(lines) + "\n"


def time_losses(args, out: Path) -> int:
    import torch

    from finetune.config import FinetuneConfig
    from medrag.qa import load_frenchmedmcqa
    from finetune.scoring import prompt_texts
    from finetune.training import MatryoshkaFinetuner
    from medrag.models import load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pairs = load_frenchmedmcqa(args.data, train_splits=("train",), eval_split=None).train[:64]
    model = load_model(args.model, device=device)
    model.max_seq_length = min(128, model.max_seq_length or 128)  # the default recipe's training length
    qp, pp = prompt_texts(model)
    feats = [model.tokenize([qp + p.question for p in pairs]), model.tokenize([pp + p.answer for p in pairs])]
    feats = [{k: v.to(model.device) if hasattr(v, "to") else v for k, v in f.items()} for f in feats]
    model.train()
    times: dict[str, list[float]] = {"mnrl": [], "cached_mnrl": []}
    for _ in range(args.repeats):
        for name in times:
            loss_fn = MatryoshkaFinetuner(FinetuneConfig(loss=name, mini_batch_size=16)).build_loss(model, args.dims)
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss_fn([dict(f) for f in feats], None).backward()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(round(time.perf_counter() - start, 2))
            print(name, times[name][-1], flush=True)
    rec = {"device": device, "torch_threads": torch.get_num_threads(), "batch": 64, "mini_batch_size": 16,
           "token_lengths": [int(f["input_ids"].shape[1]) for f in feats], "seconds": times,
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    (out / "loss_timing.json").write_text(json.dumps(rec, indent=2))
    print(json.dumps(rec))
    return 0


def run_bf16(args, out: Path) -> int:
    import torch

    from medrag.qa import load_frenchmedmcqa
    from finetune.training import MatryoshkaFinetuner

    if not torch.cuda.is_available() or args.device == "cpu":
        raise SystemExit("--bf16 needs a CUDA GPU")
    dataset = load_frenchmedmcqa(args.data, train_splits=("train", "dev"), eval_split="test")
    cfg = _config(args, args.recipe, out / "model", precision="bf16")
    result = MatryoshkaFinetuner(cfg, dataset=dataset).run()
    rec = {
        "recipe": args.recipe, "config": cfg.to_dict(), "device": torch.cuda.get_device_name(),
        "precision": result.precision, "train_seconds": round(result.train_seconds, 2),
        "samples_per_second": round(result.samples_per_second, 2), "steps": result.global_step,
        "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
        "peak_gpu_memory_gib": round(result.peak_gpu_memory_bytes / 2**30, 3) if result.peak_gpu_memory_bytes else None,
        "before": {str(k): v for k, v in result.scores_before.items()},
        "after": {str(k): v for k, v in result.scores_after.items()},
        "versions": {m: __import__(m).__version__ for m in ("torch", "sentence_transformers", "transformers")},
    }
    (out / "bf16.json").write_text(json.dumps(rec, indent=2))
    from finetune.model_card import score_table

    md = (f"bf16 run, recipe {args.recipe}, {rec['device']}: {rec['train_seconds']} s, "
          f"{rec['samples_per_second']} samples/s, peak GPU memory {rec['peak_gpu_memory_gib']} GiB\n\n"
          + score_table(result.scores_before, result.scores_after) + "\n")
    (out / "bf16.md").write_text(md)
    for name in ("README.md", "matryoshka.json", "training_info.json", "finetune_config.yaml"):
        shutil.copy(out / "model" / name, out / name)
    shutil.rmtree(out / "model")  # the weights are not needed back
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
