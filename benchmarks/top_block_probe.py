"""Probe: encoder-level training on 2 CPU cores -- the default recipe, then the encoder's last block trained too.

The head recipe (``configs/medrag_head.yaml``, "head-h", the default until December 6) trains a linear
head over the frozen e5-small's final vector, and falls below the base on the drug leaflets
(docs/results.md): every
data, batch and loss change of the head traded the leaflets against the other domains. The issue's
other lever, training the encoder itself (LoRA or full), costs ~17 s per step of 32 pairs on 2 cores
for the whole encoder and had never been measured. This probe measures the cheapest encoder-level
change: the encoder's **last transformer block** trained with the head. The hidden states entering
that block (output of block 11 of 12) are computed once with the base model and cached, so a
training step runs one block of twelve.

Each candidate is *linear probing then fine-tuning* (LP-FT, Kumar et al., ICLR 2022, "Fine-Tuning
can Distort Pretrained Features and Underperform Out-of-Distribution"): first the shipped recipe
(the head alone, 40 epochs on the frozen features, exactly ``layer_pool_probe``'s ``final=12:40``),
then a few epochs of the last block and the head together with the same losses (MatryoshkaLoss(MNRL)
+ distillation of the frozen base's full-size similarities, the config's weights and temperature),
the block at its own small learning rate. Starting from a trained head keeps the early gradients
from distorting the block's features (the paper's reason), and the distillation term holds the
full-size similarities near the base's (the leaflets, never trained on, are the check).

Usage (from the repository root; minutes of encoding the first time, cached in
``$MEDRAG_CACHE/block_states`` and reported as ``features_seconds``; each run's ``seconds`` in the report)::

    python benchmarks/top_block_probe.py --candidate head-h=0 --candidate lpft-1=1:5e-5 \\
        --out docs/results/top_block_probe_val_1.json

A candidate is ``NAME=EPOCHS[:BLOCK_LR[:HEAD_LR[:RANK]]]``: block-training epochs after the head
(0: the shipped recipe alone), the block's learning rate (default 5e-5), the head's in that phase
(default 1e-4), and the LoRA rank on the block's six linear layers (default 0: the whole block
trains). A LoRA-trained block is what the packaged-adapter format (:mod:`medrag.adapters`: LoRA
deltas folded into the base's weights, then the final linear layer) can ship as it is.
"""

from __future__ import annotations

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
from _script import ScriptParser, positive_int, run_script, suite_data_root  # noqa: E402
from layer_pool_probe import (CONFIG, DIMS, _rounded, add_probe_arguments, parse_candidates, run_row,  # noqa: E402
                              summarise_runs, train_head)

from finetune.top_block import TopBlockEncoder, cached_states, train_block, unit  # noqa: E402

def parse_candidate(spec: str) -> tuple[str, int, float, float, int]:
    """``NAME=EPOCHS[:BLOCK_LR[:HEAD_LR[:RANK]]]`` -> (name, epochs, block lr, head lr, LoRA rank or 0);
    SystemExit otherwise."""
    try:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        if not 1 <= len(parts) <= 4:
            raise ValueError
        epochs = int(parts[0])
        block_lr = float(parts[1]) if len(parts) > 1 else 5e-5
        head_lr = float(parts[2]) if len(parts) > 2 else 1e-4
        rank = int(parts[3]) if len(parts) > 3 else 0
    except ValueError:
        raise SystemExit(f"--candidate {spec!r}: expected NAME=EPOCHS[:BLOCK_LR[:HEAD_LR[:RANK]]], "
                         "e.g. lpft-1=1:5e-5 or lora16=2:5e-4:1e-4:16") from None
    if (not name or epochs < 0 or rank < 0
            or not (block_lr > 0 and head_lr > 0 and np.isfinite(block_lr) and np.isfinite(head_lr))):
        raise SystemExit(f"--candidate {spec!r}: a name, epochs >= 0, learning rates > 0 and a rank >= 0")
    return name, epochs, block_lr, head_lr, rank


def main(argv: Sequence[str] | None = None) -> int:
    parser = ScriptParser(__file__, __doc__.split("\n\n")[0])
    add_probe_arguments(parser, "NAME=EPOCHS[:BLOCK_LR[:HEAD_LR[:RANK]]], e.g. lpft-1=1:5e-5 (repeatable; see the "
                                "module's docstring)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
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
    torch.set_num_threads(args.threads)
    finetuner = MatryoshkaFinetuner(cfg)
    finetuner.dataset = load_dataset_from_config(cfg)
    pairs, _ = finetuner.training_pairs()
    model = load_model("bundled:multilingual-e5-small", device="cpu")
    fingerprint = model_fingerprint(model)
    qprompt, pprompt = prompt_texts(model.prompts)

    t0 = time.perf_counter()
    train_q = cached_states(model, fingerprint, [p.question for p in pairs], qprompt, cfg.query_max_length)
    train_p = cached_states(model, fingerprint, [p.answer for p in pairs], pprompt, cfg.passage_max_length)
    suite = build_suite(args.part, pilot=True, data_root=data_root, max_passages=args.max_passages)
    suite_states = {
        name: (cached_states(model, fingerprint, list(d.task.queries.values()), qprompt, model.max_seq_length),
               cached_states(model, fingerprint, list(d.task.corpus.values()), pprompt, model.max_seq_length))
        for name, d in suite.domains.items()}
    features_seconds = time.perf_counter() - t0

    base = TopBlockEncoder(model)
    # the cached path reproduces the base model: 16 suite passages encoded both ways
    domain = next(iter(suite.domains))
    texts = list(suite.domains[domain].task.corpus.values())[:16]
    direct = model.encode(texts, prompt=pprompt, convert_to_numpy=True, normalize_embeddings=True)
    cached = base.encode(suite_states[domain][1].first(16))
    check = float(np.abs(direct - cached).max())
    if check > 5e-3:
        raise SystemExit(f"the cached block path differs from the base model by {check:.2g}: not a valid probe")
    teacher_q, teacher_p = base.encode(train_q), base.encode(train_p)
    suite_base = {name: (base.encode(q), base.encode(d)) for name, (q, d) in suite_states.items()}

    report: dict = {"config": str(CONFIG.relative_to(REPO)), "part": args.part, "pairs": len(pairs), "seeds": args.seeds,
                    "choice_domains": list(suite.choice_domains), "features_seconds": round(features_seconds, 1),
                    "cached_path_max_abs_difference": check,
                    "command": "python benchmarks/top_block_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "candidates": {}}

    def score(encode) -> dict[str, dict[str, float]]:
        per: dict[str, dict[str, float]] = {}
        for name, (q, d) in suite_states.items():
            res = evaluate_vectors(suite.domains[name].task, encode(name, 0, q), encode(name, 1, d), DIMS, ("ndcg@10",))
            per[name] = {str(dim): float(r.means["ndcg@10"]) for dim, r in res.items()}
        return per

    base_run = run_row("base", 0, score(lambda name, side, states: suite_base[name][side]), suite.choice_domains, 0.0)
    report["base"] = {"macro": base_run["macro"], **base_run["domains"]}
    for name, epochs, block_lr, head_lr, rank in candidates:
        runs = []
        for seed in args.seeds:
            t = time.perf_counter()
            head = train_head(cfg, pairs, teacher_q, teacher_p, teacher_q, teacher_p, (12,), int(cfg.epochs), seed)
            encoder = TopBlockEncoder(model)
            encoder.head = head
            if epochs:
                train_block(cfg, pairs, encoder, train_q, train_p, teacher_q, teacher_p, epochs, block_lr, head_lr, seed,
                            rank)
                per = score(lambda name_, side, states: encoder.encode(states))
            else:  # the block is the base's: score from the base's vectors
                with torch.no_grad():
                    per = score(lambda name_, side, states: unit(head(torch.from_numpy(suite_base[name_][side])).numpy()))
            runs.append(run_row(name, seed, per, suite.choice_domains, time.perf_counter() - t))
        report["candidates"][name] = {"block_epochs": epochs, "block_lr": block_lr, "head_lr": head_lr,
                                      "lora_rank": rank, "runs": runs, **summarise_runs(runs, suite.domains)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = _rounded(report)
    for name, _, block_lr, head_lr, _ in candidates:  # not rounded to 4 decimals (5e-5 was written 0.0001)
        written["candidates"][name].update(block_lr=block_lr, head_lr=head_lr)
    args.out.write_text(json.dumps(written, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
