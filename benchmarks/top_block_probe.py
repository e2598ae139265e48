"""Probe: encoder-level training on 2 CPU cores -- the default recipe, then the encoder's last block trained too.

The shipped default (``configs/medrag_default.yaml``, "head-h") trains a linear head over the frozen
e5-small's final vector, and falls below the base on the drug leaflets (docs/results.md): every
data, batch and loss change of the head traded the leaflets against the other domains. The issue's
other lever, training the encoder itself (LoRA or full), costs ~17 s per step of 32 pairs on 2 cores
for the whole encoder and was never measured. This probe measures the cheapest encoder-level
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

import copy
import hashlib
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _script import ScriptParser, positive_int, run_script, suite_data_root  # noqa: E402
from layer_pool_probe import (CONFIG, DIMS, _rounded, add_probe_arguments, parse_candidates, run_row,  # noqa: E402
                              summarise_runs, train_head, unit)

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

#: The cached hidden layer: the input of the encoder's last block (e5-small has 12).
CACHED_LAYER = 11
#: AdamW's weight decay on a whole trained block (torch's default, on every parameter of the block,
#: biases and norms included; the loop's config has 0 and never decays 1-D parameters). LoRA
#: matrices are not decayed.
FULL_BLOCK_WEIGHT_DECAY = 0.01


class TokenStates:
    """Variable-length token states of a list of texts: ``flat`` ``(tokens, width)`` float16 rows and
    ``offsets`` (``len(texts) + 1``): text ``i`` holds rows ``offsets[i]:offsets[i + 1]``."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat, self.offsets = flat, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def first(self, n: int) -> "TokenStates":
        """The states of the first ``n`` texts."""
        return TokenStates(self.flat[:self.offsets[n]], self.offsets[:n + 1])

    def batch(self, idx: Sequence[int]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Padded float32 states ``(b, longest, width)`` and the 0/1 mask ``(b, longest)``."""
        import torch

        lengths = [int(self.offsets[i + 1] - self.offsets[i]) for i in idx]
        states = np.zeros((len(idx), max(lengths), self.flat.shape[1]), np.float32)
        mask = np.zeros((len(idx), max(lengths)), np.float32)
        for row, (i, n) in enumerate(zip(idx, lengths)):
            states[row, :n] = self.flat[self.offsets[i]:self.offsets[i] + n]
            mask[row, :n] = 1.0
        return torch.from_numpy(states), torch.from_numpy(mask)


def token_states(model: "SentenceTransformer", texts: list[str], prompt: str, max_length: int,
                 batch_size: int = 32) -> TokenStates:
    """The base encoder's hidden states entering its last block (``hidden_states[CACHED_LAYER]``),
    per token of every text (prompt included, truncated at ``max_length``), as float16."""
    import torch
    from tqdm.auto import tqdm

    encoder, tokenizer = model[0].auto_model, model.tokenizer
    per_text: list[np.ndarray | None] = [None] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths, less padding
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="block states", unit="batch", mininterval=10):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompt + texts[i] for i in idx], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            hidden = encoder(**enc, output_hidden_states=True).hidden_states[CACHED_LAYER]
            lengths = enc["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                per_text[i] = hidden[row, :lengths[row]].numpy().astype(np.float16)
    offsets = np.zeros(len(texts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(a) for a in per_text])
    return TokenStates(np.concatenate(per_text), offsets)


def cached_states(model: "SentenceTransformer", fingerprint: str, texts: list[str], prompt: str,
                  max_length: int) -> TokenStates:
    """:func:`token_states`, read from or written to ``$MEDRAG_CACHE/block_states`` (one file per text
    list, prompt and cap; an unreadable file is computed again)."""
    from medrag.bundled import cache_dir

    key = hashlib.sha256(json.dumps([fingerprint, prompt, max_length, CACHED_LAYER, texts]).encode()).hexdigest()[:24]
    path = cache_dir() / "block_states" / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                states = TokenStates(f["flat"], f["offsets"])
            if len(states) == len(texts):
                return states
        except (OSError, ValueError, KeyError):
            pass
        logging.getLogger(__name__).warning("recomputing the unreadable cache file %s", path)
    states = token_states(model, texts, prompt, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp.npz")  # concurrent runs never share a temp file
    np.savez(tmp, flat=states.flat, offsets=states.offsets)
    tmp.replace(path)
    return states


def lora_linear(base: "torch.nn.Linear", rank: int, alpha: float) -> "torch.nn.Module":
    """A module computing ``base(x) + (alpha / rank) * x A^T B^T``, ``A`` ``(rank, in)`` and ``B``
    ``(out, rank)``, ``B`` zero at the start (the base layer exactly), as peft initialises LoRA (Hu et
    al., 2021); ``base`` frozen."""
    import math

    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base.requires_grad_(False)
            self.lora_A = torch.nn.Parameter(torch.empty(rank, base.in_features))
            torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            self.scale = alpha / rank

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    return LoRALinear()


def add_block_lora(block: "torch.nn.Module", rank: int, alpha: float = 32.0) -> dict[str, "torch.nn.Module"]:
    """Replace the block's linear layers named by ``finetune.lora.DEFAULT_TARGETS`` by LoRA layers,
    freezing everything else of the block; returns them by their name inside the block."""
    import torch

    from finetune.lora import DEFAULT_TARGETS

    block.requires_grad_(False)
    names = [n for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)
             and any(n == t or n.endswith("." + t) for t in DEFAULT_TARGETS)]
    wrapped = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        wrapped[name] = lora_linear(getattr(parent, child), rank, alpha)
        setattr(parent, child, wrapped[name])
    return wrapped


class TopBlockEncoder:
    """The encoder's last block (a copy), mean pooling and unit normalisation -- the base model's
    output from the cached states -- optionally followed by a linear head."""

    def __init__(self, model: "SentenceTransformer") -> None:
        self.block = copy.deepcopy(model[0].auto_model.encoder.layer[-1]).float()
        self.head: torch.nn.Linear | None = None

    def __call__(self, states: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        import torch

        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(states.dtype).min
        out = self.block(states, attention_mask=additive)
        out = out[0] if isinstance(out, tuple) else out
        pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled if self.head is None else self.head(pooled)

    def encode(self, states: TokenStates, batch_size: int = 64) -> np.ndarray:
        """Unit-normalised outputs of every text, in order (no gradient)."""
        import torch

        self.block.eval()
        order = np.argsort(np.diff(states.offsets), kind="stable")
        out = np.zeros((len(states), self.head.out_features if self.head is not None else states.flat.shape[1]),
                       np.float32)
        with torch.no_grad():
            for start in range(0, len(states), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self(*states.batch(idx)).numpy()
        return unit(out)


def train_block(cfg: "FinetuneConfig", pairs: "list[QAPair]", encoder: TopBlockEncoder, q_states: TokenStates,
                p_states: TokenStates, teacher_q: np.ndarray, teacher_p: np.ndarray, epochs: int, block_lr: float,
                head_lr: float, seed: int, rank: int = 0, micro_batch: int = 64,
                dims: tuple[int, ...] = DIMS) -> None:
    """Train ``encoder``'s block and head together: the loop's losses (MatryoshkaLoss(MNRL) + the
    distillation of the base's similarities, the config's weights and temperature) on the loop's
    batches without duplicate texts (``cfg.batch_size``), AdamW (a whole block with
    :data:`FULL_BLOCK_WEIGHT_DECAY`), warm-up then linear decay. A batch's
    forward runs in micro-batches of ``micro_batch`` texts (memory); the loss is the batch's. ``rank``
    > 0 trains LoRA matrices of that rank on the block's linear layers instead of the whole block."""
    import torch

    from finetune.loop import no_duplicate_batches, warmup_linear_schedule
    from finetune.losses import matryoshka_contrastive_loss, similarity_distillation_loss

    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = encoder.head
    if rank:
        add_block_lora(encoder.block, rank)
    encoder.block.train()
    block_params = [p for p in encoder.block.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": block_params, "lr": block_lr, "weight_decay": 0.0 if rank else FULL_BLOCK_WEIGHT_DECAY},
        {"params": [head.weight], "lr": head_lr, "weight_decay": cfg.weight_decay},
        {"params": [head.bias], "lr": head_lr, "weight_decay": 0.0}])
    plan: list[list[int]] = []
    for _ in range(epochs):
        plan += no_duplicate_batches(pairs, cfg.batch_size, rng)
    scheduler = warmup_linear_schedule(optimizer, len(plan), cfg.warmup_ratio)
    t_q, t_p = torch.from_numpy(teacher_q), torch.from_numpy(teacher_p)
    weights, temp = cfg.matryoshka_weights, cfg.distill_temperature
    params = [p for group in optimizer.param_groups for p in group["params"]]
    from tqdm.auto import tqdm

    for batch in tqdm(plan, desc="block training", unit="step", mininterval=30):
        q = torch.cat([encoder(*q_states.batch(batch[i:i + micro_batch])) for i in range(0, len(batch), micro_batch)])
        p = torch.cat([encoder(*p_states.batch(batch[i:i + micro_batch])) for i in range(0, len(batch), micro_batch)])
        a, b = t_q[batch], t_p[batch]
        loss = cfg.contrastive_weight * matryoshka_contrastive_loss(q, p, dims, weights)
        loss = loss + cfg.distill_weight * (
            similarity_distillation_loss(q, p, a @ b.T, dims, weights, temp)
            + similarity_distillation_loss(p, p, b @ b.T, dims, weights, temp, mask_diagonal=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
    encoder.block.eval()


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
