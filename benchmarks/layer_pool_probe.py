"""Probe: the default model's recipe with its head reading the mean pools of several encoder layers.

The head recipe (``configs/medrag_head.yaml``, "head-h", the default until December 6) is a linear layer over the frozen
e5-small's final vector (the mean pool of its last layer), so every size of it is a linear map of
that one vector. This probe keeps everything else of the recipe (frozen encoder, centred PCA
initialisation, MatryoshkaLoss(MNRL) + distillation of the base's full-size similarities, the
loop's batches and schedule, read from the config) and lets the head read the concatenated,
L2-normalised mean pools of other layers too (earlier layers keep more of the surface tokens:
product names, section words). The extra layers' blocks of the head start at zero, so at step 0 a
candidate is the shipped recipe's initialisation.

It is a probe, not a shipping path: the loader (``medrag.adapters``) builds a model whose head reads
the final vector only. Features are computed once per layer set with the base model (training texts
at the config's token caps, the suite's pilot, val or ``--part test``, at the model's own cap) and cached in
``$MEDRAG_CACHE/layer_pools``; each candidate then trains in 10-60 s on 2 cores and is scored exactly.

Usage (from the repository root; ~15 minutes of encoding the first time on 2 idle cores)::

    python benchmarks/layer_pool_probe.py --candidate final=12:40 --candidate layers8-12=8,12:10 \\
        --seeds 42 1 2 --out docs/results/layer_pool_probe_val.json

A candidate is ``NAME=LAYERS:EPOCHS`` (layers 1-12 of e5-small, comma-separated, 12 included;
``final=12:40`` is the shipped recipe, and reproduces its sweep row), optionally ``:WEIGHTS``, the
MatryoshkaLoss and distillation weights of the sizes 384/256/128/64/32 (default: the config's, all 1),
e.g. ``layers8-12-w=8,12:10:1,1,1,2,4``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _script import ScriptParser, add_data_root_argument, positive_int, run_script, suite_data_root  # noqa: E402

from finetune.top_block import hidden_state_batches, unit  # noqa: E402

if TYPE_CHECKING:
    import argparse

    import torch
    from sentence_transformers import SentenceTransformer

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

DIMS = (384, 256, 128, 64, 32)
CONFIG = REPO / "configs" / "medrag_head.yaml"


def parse_candidate(spec: str) -> tuple[str, tuple[int, ...], int, tuple[float, ...] | None]:
    """``NAME=LAYERS:EPOCHS[:WEIGHTS]`` -> (name, layers, epochs, Matryoshka weights or None: the
    config's); SystemExit naming the problem otherwise. WEIGHTS: one loss weight per size of
    384/256/128/64/32, comma-separated (e.g. ``1,1,1,2,4``)."""
    try:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        if len(parts) not in (2, 3):
            raise ValueError
        layers = tuple(sorted({int(x) for x in parts[0].split(",")}))
        epochs = int(parts[1])
        weights = tuple(float(w) for w in parts[2].split(",")) if len(parts) == 3 else None
    except ValueError:
        raise SystemExit(f"--candidate {spec!r}: expected NAME=LAYERS:EPOCHS[:WEIGHTS], e.g. layers8-12=8,12:10 "
                         "or layers8-12-w=8,12:10:1,1,1,2,4") from None
    if not name or epochs < 1 or 12 not in layers or not all(1 <= x <= 12 for x in layers):
        raise SystemExit(f"--candidate {spec!r}: a name, epochs >= 1 and layers within 1-12 including 12")
    if weights is not None and (len(weights) != len(DIMS) or not all(np.isfinite(w) and w > 0 for w in weights)):
        raise SystemExit(f"--candidate {spec!r}: WEIGHTS are {len(DIMS)} numbers > 0, one per size of {DIMS}")
    return name, layers, epochs, weights


def layer_pools(model: "SentenceTransformer", texts: list[str], prompt: str, max_length: int, layers: tuple[int, ...],
                batch_size: int = 32) -> np.ndarray:
    """Attention-masked mean pools of the given hidden layers, ``(len(layers), len(texts), width)``,
    not normalised. Layer L is the output of the L-th transformer block (0: the embeddings), so the
    last layer's pool is what sentence-transformers' mean pooling returns."""
    width = model[0].auto_model.config.hidden_size
    out = np.zeros((len(layers), len(texts), width), np.float32)
    for idx, mask, hidden in hidden_state_batches(model, texts, prompt, max_length, batch_size, "layer pools"):
        mask = mask.unsqueeze(-1).float()
        for j, layer in enumerate(layers):
            out[j, idx] = ((hidden[layer] * mask).sum(1) / mask.sum(1)).numpy()
    return out


def cached_pools(model: "SentenceTransformer", fingerprint: str, texts: list[str], prompt: str, max_length: int,
                 layers: tuple[int, ...]) -> np.ndarray:
    """:func:`layer_pools`, read from or written to ``$MEDRAG_CACHE/layer_pools`` (one file per text
    list, prompt, cap and layer set; an unreadable file is computed again)."""
    from medrag.bundled import cache_dir

    key = hashlib.sha256(json.dumps([fingerprint, prompt, max_length, list(layers), texts]).encode()).hexdigest()[:24]
    path = cache_dir() / "layer_pools" / f"{key}.npy"
    if path.is_file():
        try:
            pools = np.load(path, allow_pickle=False)
            if pools.shape[:2] == (len(layers), len(texts)):
                return pools
        except (OSError, ValueError):
            pass
        logging.getLogger(__name__).warning("recomputing the unreadable cache file %s", path)
    pools = layer_pools(model, texts, prompt, max_length, layers)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp.npy")  # concurrent runs never share a temp file
    np.save(tmp, pools)
    tmp.replace(path)
    return pools


def features(pools: np.ndarray, all_layers: tuple[int, ...], layers: tuple[int, ...]) -> np.ndarray:
    """The head's input: the unit-normalised pools of ``layers``, concatenated (last layer last)."""
    return np.concatenate([unit(pools[all_layers.index(x)]) for x in layers], axis=-1)


def initial_head(final_passages: np.ndarray, layers: tuple[int, ...]) -> "torch.nn.Linear":
    """A ``torch.nn.Linear`` over the concatenated pools: the recipe's centred PCA rotation on the
    last layer's block, zeros on the others (so it starts as the shipped recipe's initialisation)."""
    import torch

    from finetune.rotation import fit_pca_rotation

    width = final_passages.shape[1]
    weight, bias = fit_pca_rotation(final_passages, center=True)
    head = torch.nn.Linear(width * len(layers), weight.shape[0])
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, width * (len(layers) - 1):] = torch.from_numpy(weight)
        head.bias.copy_(torch.from_numpy(bias))
    return head


def train_head(cfg: "FinetuneConfig", pairs: "list[QAPair]", q_in: np.ndarray, p_in: np.ndarray, teacher_q: np.ndarray, teacher_p: np.ndarray,
               layers: tuple[int, ...], epochs: int, seed: int, dims: tuple[int, ...] = DIMS) -> "torch.nn.Linear":
    """The loop's frozen-encoder training (``finetune.loop.TrainingLoop`` with ``freeze_encoder``),
    on the multi-layer input: same losses, batches (no duplicate texts), optimizer groups and
    schedule (``tests/finetune/test_layer_pool_probe.py`` checks that on the last layer alone it
    gives the loop's weights). Settings of the loop it does not reproduce are refused."""
    import torch

    from finetune.loop import no_duplicate_batches, warmup_linear_schedule
    from finetune.losses import matryoshka_contrastive_loss, similarity_distillation_loss

    unsupported = [name for name, on in (("distill_corpus", bool(cfg.distill_corpus)), ("max_steps", cfg.max_steps > 0),
                                         ("batch_sampling", cfg.batch_sampling != "random"),
                                         ("rotation", cfg.rotation != "pca_centered")) if on]
    if unsupported:
        raise SystemExit(f"the probe reproduces the loop without {', '.join(unsupported)}: remove it from the config")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = initial_head(teacher_p, layers)
    optimizer = torch.optim.AdamW([{"params": [head.weight], "weight_decay": cfg.weight_decay},
                                   {"params": [head.bias], "weight_decay": 0.0}], lr=cfg.learning_rate)
    plan: list[list[int]] = []
    for _ in range(epochs):
        plan += no_duplicate_batches(pairs, cfg.batch_size, rng)
    scheduler = warmup_linear_schedule(optimizer, len(plan), cfg.warmup_ratio)
    q_in, p_in = torch.from_numpy(q_in), torch.from_numpy(p_in)
    t_q, t_p = torch.from_numpy(teacher_q), torch.from_numpy(teacher_p)
    weights, temp = cfg.matryoshka_weights, cfg.distill_temperature
    for batch in plan:
        q, p = head(q_in[batch]), head(p_in[batch])
        a, b = t_q[batch], t_p[batch]
        loss = cfg.contrastive_weight * matryoshka_contrastive_loss(q, p, dims, weights)
        loss = loss + cfg.distill_weight * (
            similarity_distillation_loss(q, p, a @ b.T, dims, weights, temp)
            + similarity_distillation_loss(p, p, b @ b.T, dims, weights, temp, mask_diagonal=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(head.parameters()), 1.0)
        optimizer.step()
        scheduler.step()
    return head.eval()


def _mean(scores: list[dict[str, float]]) -> dict[str, float]:
    return {str(d): float(np.mean([s[str(d)] for s in scores])) for d in DIMS}


def add_probe_arguments(parser: "argparse.ArgumentParser", candidate_help: str) -> None:
    """The options every probe of the default's recipe takes: candidates, seeds, the suite's part and
    pilot size, the data folder and the report (this probe's and ``top_block_probe``'s)."""
    parser.add_argument("--candidate", action="append", required=True, help=candidate_help)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="training seeds of every candidate")
    parser.add_argument("--part", choices=("val", "test"), default="val",
                        help="the suite's part: val for choices, test to report a chosen candidate once")
    parser.add_argument("--max-passages", type=positive_int, default=1500, help="suite pilot passages per domain")
    add_data_root_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")


def parse_candidates(parser: "argparse.ArgumentParser", specs: list[str], parse) -> list[tuple]:
    """``parse`` applied to every ``--candidate``; a bad spec or a name given twice is a usage error."""
    try:
        candidates = [parse(c) for c in specs]
    except SystemExit as exc:  # a bad spec is a usage error
        parser.error(str(exc))
    names = [c[0] for c in candidates]
    if len(set(names)) != len(names):
        parser.error(f"--candidate: each name once, got {names}")
    return candidates


def run_row(name: str, seed: int, per: dict[str, dict[str, float]], choice_domains: Sequence[str],
            seconds: float) -> dict:
    """One run's report row (its macro-average over the choice domains and every domain's scores),
    printed as one line with the leaflets beside it."""
    macro = {str(dim): float(np.mean([per[dn][str(dim)] for dn in choice_domains])) for dim in DIMS}
    leaflets = per.get("leaflets")
    print(f"{name:>14} seed {seed:>3}  macro " + " ".join(f"{macro[str(d)]:.3f}" for d in DIMS)
          + ("  leaflets " + " ".join(f"{leaflets[str(d)]:.3f}" for d in (384, 64, 32)) if leaflets else ""),
          flush=True)
    return {"seed": seed, "macro": macro, "domains": per, "seconds": round(seconds, 1)}


def summarise_runs(runs: list[dict], domains: Sequence[str]) -> dict:
    """A candidate's ``mean`` (macro and every domain, over its runs) and ``macro_sd`` (None for one run)."""
    mean = {"macro": _mean([r["macro"] for r in runs])}
    mean.update({domain: _mean([r["domains"][domain] for r in runs]) for domain in domains})
    sd = {str(d): float(np.std([r["macro"][str(d)] for r in runs], ddof=1)) if len(runs) > 1 else None
          for d in DIMS}
    return {"mean": mean, "macro_sd": sd}


def _rounded(value: Any) -> Any:
    """The report with every float rounded to 4 decimals (only when written: means use full precision)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = ScriptParser(__file__, __doc__.split("\n\n")[0])
    add_probe_arguments(parser, "NAME=LAYERS:EPOCHS[:WEIGHTS], e.g. layers8-12=8,12:10 (repeatable; see the "
                                "module's docstring)")
    args = parser.parse_args(argv)
    candidates = parse_candidates(parser, args.candidate, parse_candidate)
    data_root = suite_data_root(args.data_root)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from evaluation.retrieval import evaluate_vectors
    from finetune.config import FinetuneConfig
    from finetune.data import load_dataset_from_config
    from finetune.training import MatryoshkaFinetuner
    from medrag import load_model
    from medrag.models import model_fingerprint
    from medrag.prompts import prompt_texts
    from medrag.qa.suite import build_suite

    cfg = FinetuneConfig.from_file(CONFIG)
    torch.set_num_threads(max(1, cfg.torch_threads))
    finetuner = MatryoshkaFinetuner(cfg)
    finetuner.dataset = load_dataset_from_config(cfg)
    pairs, _ = finetuner.training_pairs()
    model = load_model("bundled:multilingual-e5-small", device="cpu")
    fingerprint = model_fingerprint(model)
    qprompt, pprompt = prompt_texts(model.prompts)
    all_layers = tuple(sorted({x for c in candidates for x in c[1]}))

    t0 = time.perf_counter()
    train_q = cached_pools(model, fingerprint, [p.question for p in pairs], qprompt, cfg.query_max_length, all_layers)
    train_p = cached_pools(model, fingerprint, [p.answer for p in pairs], pprompt, cfg.passage_max_length, all_layers)
    suite = build_suite(args.part, pilot=True, data_root=data_root, max_passages=args.max_passages)
    suite_pools = {
        name: (cached_pools(model, fingerprint, list(d.task.queries.values()), qprompt, model.max_seq_length, all_layers),
               cached_pools(model, fingerprint, list(d.task.corpus.values()), pprompt, model.max_seq_length, all_layers))
        for name, d in suite.domains.items()}
    report: dict = {"config": str(CONFIG.relative_to(REPO)), "part": args.part, "pairs": len(pairs), "seeds": args.seeds,
                    "choice_domains": list(suite.choice_domains), "features_seconds": round(time.perf_counter() - t0, 1),
                    "command": "python benchmarks/layer_pool_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "candidates": {}}
    teacher_q, teacher_p = unit(train_q[-1]), unit(train_p[-1])  # the base's own vectors (last layer)
    for name, layers, epochs, weights in candidates:
        runs = []
        run_cfg = cfg if weights is None else dataclasses.replace(cfg, matryoshka_weights=list(weights))
        for seed in args.seeds:
            t = time.perf_counter()
            head = train_head(run_cfg, pairs, features(train_q, all_layers, layers), features(train_p, all_layers, layers),
                              teacher_q, teacher_p, layers, epochs, seed)
            per: dict[str, dict[str, float]] = {}
            with torch.no_grad():
                for domain, (q, d) in suite_pools.items():
                    qv = unit(head(torch.from_numpy(features(q, all_layers, layers))).numpy())
                    dv = unit(head(torch.from_numpy(features(d, all_layers, layers))).numpy())
                    res = evaluate_vectors(suite.domains[domain].task, qv, dv, DIMS, ("ndcg@10",))
                    per[domain] = {str(dim): float(r.means["ndcg@10"]) for dim, r in res.items()}
            runs.append(run_row(name, seed, per, suite.choice_domains, time.perf_counter() - t))
        report["candidates"][name] = {"layers": list(layers), "epochs": epochs,
                                      "matryoshka_weights": run_cfg.matryoshka_weights, "runs": runs,
                                      **summarise_runs(runs, suite.domains)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_rounded(report), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
