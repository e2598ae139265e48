"""The encoder's last transformer block trained on cached hidden states (``top_block_epochs``).

A frozen-encoder run (``freeze_encoder``) trains a final linear layer over the base model's vectors.
This second phase then trains the encoder's **last block** (LoRA on its six linear layers) together
with that layer, for a few epochs, with the same losses and batches: *linear probing then
fine-tuning* (LP-FT, Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution": a trained head first keeps the early gradients from distorting
the features; the distillation of the frozen base's similarities holds them near the base's).

Why only the last block, from cached states: on 2 CPU cores a LoRA step over the whole e5-small costs
~17 s per 32 pairs. The hidden states entering the last block do not change while only that block
trains, so they are computed once by the base model (:func:`cached_states`, ``$MEDRAG_CACHE/block_states``)
and a step runs one block of twelve: 256 pairs in 6-13 s. The same states give the base's own vectors
(:class:`TopBlockEncoder` without a head), so the frozen base's teacher vectors cost nothing more.

The trained LoRA matrices ship as they are in medrag's adapter format (:mod:`medrag.adapters`: deltas
folded into the base's weights at load, then the final layer): :func:`block_lora_deltas`.

Example::

    from finetune.top_block import TopBlockEncoder, cached_states, train_block
    q = cached_states(model, fingerprint, questions, "query: ", 64)
    p = cached_states(model, fingerprint, passages, "passage: ", 192)
    encoder = TopBlockEncoder(model)                # the base's vectors from the states
    teacher_q, teacher_p = encoder.encode(q), encoder.encode(p)
    encoder.head = head                             # a trained final linear layer
    wrapped = train_block(cfg, pairs, encoder, q, p, teacher_q, teacher_p, epochs=6, block_lr=2e-3,
                          head_lr=1e-4, seed=42, rank=16)
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import random
import uuid
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

logger = logging.getLogger(__name__)

#: AdamW's weight decay on a whole trained block (torch's default, on every parameter of the block,
#: biases and norms included; the loop's config has 0 and never decays 1-D parameters). LoRA
#: matrices are not decayed.
FULL_BLOCK_WEIGHT_DECAY = 0.01


def encoder_layers(model: "SentenceTransformer") -> "torch.nn.ModuleList":
    """The transformer blocks of the model's encoder (``encoder.layer`` of BERT / XLM-R models).

    Raises:
        ConfigError: the model is not a transformers encoder with mean pooling (the cached-state
            path recomputes the last block, mean pooling and normalisation only).
    """
    from finetune.lora import encoder_model

    inner = encoder_model(model)
    layers = getattr(getattr(inner, "encoder", None), "layer", None)
    pooling = model[1] if len(model) > 1 else None
    mode = getattr(pooling, "pooling_mode_mean_tokens", None)
    if mode is None:  # sentence-transformers >= 5: one pooling_mode string
        mode = getattr(pooling, "pooling_mode", None) == "mean"
    if layers is None or not len(layers) or not mode:
        raise ConfigError("top_block_epochs needs a BERT-like encoder (encoder.layer) with mean pooling, as "
                          f"e5-small; got {type(inner).__name__} with {type(pooling).__name__}")
    return layers


def cached_layer(model: "SentenceTransformer") -> int:
    """The index in ``hidden_states`` of the input of the encoder's last block (11 for e5-small's 12)."""
    return len(encoder_layers(model)) - 1


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


def hidden_state_batches(model: "SentenceTransformer", texts: Sequence[str], prompt: str, max_length: int,
                         batch_size: int = 32, desc: str = "hidden states"):
    """Yield ``(idx, mask, hidden_states)`` per batch of ``texts`` (prompt prepended, truncated at
    ``max_length``), batched by length (less padding): the texts' positions, their 0/1 attention mask
    ``(b, tokens)`` and the encoder's ``hidden_states`` tuple (index 0: the embeddings), on the CPU, no
    gradient. The one encoding loop of the cached-state and layer-pool paths."""
    import torch
    from tqdm.auto import tqdm

    from finetune.lora import encoder_model

    encoder, tokenizer = encoder_model(model), model.tokenizer
    device = next(encoder.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", mininterval=10):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompt + texts[i] for i in idx], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            hidden = encoder(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True).hidden_states
            yield idx, enc["attention_mask"], tuple(h.float().cpu() for h in hidden)


def token_states(model: "SentenceTransformer", texts: list[str], prompt: str, max_length: int,
                 batch_size: int = 32) -> TokenStates:
    """The base encoder's hidden states entering its last block, per token of every text (prompt
    included, truncated at ``max_length``), as float16."""
    from finetune.lora import encoder_model

    layer = cached_layer(model)
    per_text: list[np.ndarray | None] = [None] * len(texts)
    for idx, mask, hidden in hidden_state_batches(model, texts, prompt, max_length, batch_size, "block states"):
        lengths = mask.sum(1).tolist()
        for row, i in enumerate(idx):
            per_text[i] = hidden[layer][row, :lengths[row]].numpy().astype(np.float16)
    offsets = np.zeros(len(texts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(a) for a in per_text])
    width = encoder_model(model).config.hidden_size
    flat = np.concatenate(per_text) if texts else np.zeros((0, width), np.float16)
    return TokenStates(flat, offsets)


def block_states_dir(config: "FinetuneConfig | None" = None) -> Path:
    """Where block states are cached: ``<teacher_cache>/block_states`` when the config names a teacher
    cache, else ``<medrag cache>/block_states``."""
    if config is not None and config.teacher_cache:
        return Path(config.teacher_cache).expanduser() / "block_states"
    from medrag.bundled import cache_dir

    return cache_dir() / "block_states"


def cached_states(model: "SentenceTransformer", fingerprint: str, texts: list[str], prompt: str,
                  max_length: int, folder: Path | None = None) -> TokenStates:
    """:func:`token_states`, read from or written to ``folder`` (default :func:`block_states_dir`: one
    file per model fingerprint, text list, prompt and cap; an unreadable file is computed again)."""
    key = hashlib.sha256(json.dumps([fingerprint, prompt, max_length, cached_layer(model), texts]).encode()
                         ).hexdigest()[:24]
    path = (folder or block_states_dir()) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                states = TokenStates(f["flat"], f["offsets"])
            if len(states) == len(texts):
                return states
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a truncated file is a BadZipFile
            pass
        logger.warning("recomputing the unreadable cache file %s", path)
    states = token_states(model, texts, prompt, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp.npz")  # concurrent runs never share a temp file
    try:
        np.savez(tmp, flat=states.flat, offsets=states.offsets)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
    return states


def lora_linear(base: "torch.nn.Linear", rank: int, alpha: float) -> "torch.nn.Module":
    """A module computing ``base(x) + (alpha / rank) * x A^T B^T``, ``A`` ``(rank, in)`` and ``B``
    ``(out, rank)``, ``B`` zero at the start (the base layer exactly), as peft initialises LoRA (Hu et
    al., 2021); ``base`` frozen."""
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base.requires_grad_(False)
            self.lora_A = torch.nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
            torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
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


def block_lora_deltas(wrapped: dict[str, "torch.nn.Module"], prefix: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{prefix + name + ".weight": (A, B_scaled)}`` of :func:`add_block_lora`'s layers, float32, with
    ``W_merged = W + B_scaled @ A``: the names and form of :mod:`medrag.adapters`."""
    return {f"{prefix}{name}.weight": (m.lora_A.detach().float().cpu().numpy().copy(),
                                       (m.lora_B.detach().float() * m.scale).cpu().numpy())
            for name, m in wrapped.items()}


def merge_block_lora(block: "torch.nn.Module", wrapped: dict[str, "torch.nn.Module"]) -> None:
    """Fold the LoRA deltas into the block's linear weights and put the plain layers back (in place)."""
    import torch

    with torch.no_grad():
        for name, module in wrapped.items():
            module.base.weight.add_((module.lora_B * module.scale) @ module.lora_A)
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            setattr(parent, child, module.base)


def unit(a: np.ndarray) -> np.ndarray:
    """Rows (along the last axis) scaled to unit L2 norm."""
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


class TopBlockEncoder:
    """The encoder's last block (a float32 copy), mean pooling and unit normalisation -- the base
    model's output from the cached states -- optionally followed by a linear ``head``."""

    def __init__(self, model: "SentenceTransformer") -> None:
        self.block = copy.deepcopy(encoder_layers(model)[-1]).float()
        self.head: torch.nn.Linear | None = None

    def __call__(self, states: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        import torch

        device = next(self.block.parameters()).device  # the model's (a GPU run keeps the block there)
        states, mask = states.to(device), mask.to(device)
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
                out[idx] = self(*states.batch(idx)).float().cpu().numpy()
        return unit(out)


def train_block(cfg: "FinetuneConfig", pairs: "Sequence[QAPair]", encoder: TopBlockEncoder, q_states: TokenStates,
                p_states: TokenStates, teacher_q: np.ndarray, teacher_p: np.ndarray, epochs: int, block_lr: float,
                head_lr: float, seed: int, rank: int = 0, dims: Sequence[int] = (384, 256, 128, 64, 32),
                micro_batch: int = 64, alpha: float = 32.0, on_step: "Callable[[float], None] | None" = None,
                max_steps: int = 0) -> dict[str, "torch.nn.Module"]:
    """Train ``encoder``'s block and head together: the loop's losses (MatryoshkaLoss(MNRL) + the
    distillation of the base's similarities, the config's weights and temperature) on the loop's
    batches without duplicate texts (``cfg.batch_size``), AdamW (a whole block with
    :data:`FULL_BLOCK_WEIGHT_DECAY`), warm-up then linear decay. A batch's forward runs in
    micro-batches of ``micro_batch`` texts (memory); the loss is the batch's. ``rank`` > 0 trains LoRA
    matrices of that rank (scale ``alpha / rank``) on the block's linear layers instead of the whole
    block; they are returned by name (:func:`add_block_lora`), still in place. ``on_step`` is given
    each step's loss; ``max_steps`` > 0 cuts the plan there (the schedule decays over the steps run)."""
    import torch
    from tqdm.auto import tqdm

    from finetune.loop import no_duplicate_batches, warmup_linear_schedule
    from finetune.losses import matryoshka_contrastive_loss, similarity_distillation_loss

    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = encoder.head
    wrapped = add_block_lora(encoder.block, rank, alpha) if rank else {}
    encoder.block.train()
    block_params = [p for p in encoder.block.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": block_params, "lr": block_lr, "weight_decay": 0.0 if rank else FULL_BLOCK_WEIGHT_DECAY},
        {"params": [head.weight], "lr": head_lr, "weight_decay": cfg.weight_decay},
        {"params": [head.bias], "lr": head_lr, "weight_decay": 0.0}])
    plan: list[list[int]] = []
    for _ in range(epochs):
        plan += no_duplicate_batches(pairs, cfg.batch_size, rng)
    if max_steps > 0:
        plan = plan[:max_steps]
    scheduler = warmup_linear_schedule(optimizer, len(plan), cfg.warmup_ratio)
    device = next(encoder.block.parameters()).device
    t_q, t_p = torch.from_numpy(teacher_q).to(device), torch.from_numpy(teacher_p).to(device)
    dims = list(dims)
    weights, temp = cfg.matryoshka_weights, cfg.distill_temperature
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for batch in tqdm(plan, desc="block training", unit="step", mininterval=30):
        q = torch.cat([encoder(*q_states.batch(batch[i:i + micro_batch])) for i in range(0, len(batch), micro_batch)])
        p = torch.cat([encoder(*p_states.batch(batch[i:i + micro_batch])) for i in range(0, len(batch), micro_batch)])
        a, b = t_q[batch], t_p[batch]
        loss = cfg.contrastive_weight * matryoshka_contrastive_loss(q, p, dims, weights)
        loss = loss + cfg.distill_weight * (
            similarity_distillation_loss(q, p, a @ b.T, dims, weights, temp)
            + similarity_distillation_loss(p, p, b @ b.T, dims, weights, temp, mask_diagonal=True))
        if not torch.isfinite(loss):
            raise ConfigError(f"the block-training loss became {loss.item()}: lower top_block_learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if on_step is not None:
            on_step(float(loss.detach()))
    encoder.block.eval()
    return wrapped


class TopBlockPhase:
    """The second phase of a frozen-encoder run with ``top_block_epochs``: what ``medrag finetune`` does
    around :func:`train_block`.

    1. :meth:`prepare` (before the frozen-encoder loop): the base's hidden states entering the last
       block for every training question and passage (cached), the base's vectors computed from them
       and written to the loop's teacher cache (the loop then encodes nothing more);
    2. :meth:`train` (after the loop): the block (LoRA) and the model's final layer trained together;
       the LoRA deltas are folded into the model's last block and returned in the adapter's form.

    Args:
        model: the model being fine-tuned (the base, before the loop adds its final layer).
        config: the run's configuration (``top_block_*``, the losses, ``batch_size``, lengths).
        pairs: the training pairs (the loop's).
        dims: the Matryoshka sizes, full size first.
        stop_requested: polled after each block step; when it returns True, :meth:`train` raises
            :class:`KeyboardInterrupt` (Ctrl-C, SIGTERM: the run's final-layer checkpoint and the cached
            states stay, so ``--resume`` starts this phase again at once).
    """

    def __init__(self, model: "SentenceTransformer", config: "FinetuneConfig", pairs: "Sequence[QAPair]",
                 dims: Sequence[int], stop_requested: Callable[[], bool] | None = None) -> None:
        encoder_layers(model)  # a clear error before any encoding when the model does not fit
        from finetune.lora import encoder_model

        width = encoder_model(model).config.hidden_size
        if config.top_block_lora_rank > width:
            raise ConfigError(f"top_block_lora_rank {config.top_block_lora_rank} is above the block's width {width}: "
                              "a LoRA rank is a small fraction of it (16 for e5-small's 384)")
        self.model, self.config, self.pairs, self.dims = model, config, list(pairs), list(dims)
        self.stop_requested = stop_requested or (lambda: False)
        self.q_states: TokenStates | None = None
        self.p_states: TokenStates | None = None
        self.teacher_q: np.ndarray | None = None
        self.teacher_p: np.ndarray | None = None
        self.encoder: TopBlockEncoder | None = None
        #: optimizer steps :meth:`train` ran, and their losses
        self.steps = 0
        self.losses: list[float] = []

    def _cap(self, length: int) -> int:
        top = getattr(self.model, "max_seq_length", None)
        return min(length, top) if top else length

    def prepare(self) -> None:
        """Cache the training texts' block states and compute the base's vectors from them (the
        teacher of both phases: give them to the loop as ``TrainingLoop.teacher``). They are not
        written to the loop's teacher cache: they differ from a full encoding by ~3e-5 (float16
        states), and a frozen-encoder run without this phase must read exact ones."""
        from medrag.models import model_fingerprint

        from finetune.scoring import prompt_texts

        cfg = self.config
        fingerprint = model_fingerprint(self.model)
        qprompt, pprompt = prompt_texts(self.model)
        questions = [p.question for p in self.pairs]
        passages = [p.answer for p in self.pairs]
        folder = block_states_dir(cfg)
        self.q_states = cached_states(self.model, fingerprint, questions, qprompt, self._cap(cfg.query_max_length),
                                      folder)
        self.p_states = cached_states(self.model, fingerprint, passages, pprompt, self._cap(cfg.passage_max_length),
                                      folder)
        base = TopBlockEncoder(self.model)
        self.teacher_q = base.encode(self.q_states).astype(np.float32)
        self.teacher_p = base.encode(self.p_states).astype(np.float32)
        logger.info("block states of %d pairs cached; the teacher vectors computed from them", len(self.pairs))

    def _count_step(self, loss: float) -> None:
        self.steps += 1
        self.losses.append(loss)
        if self.steps % self.config.logging_steps == 0:
            logger.info("block step %d: loss %.4f", self.steps, loss)
        if self.stop_requested():
            raise KeyboardInterrupt

    def train(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Train the last block (LoRA) and the model's final layer; fold the block's deltas into the
        model; return them as ``{encoder weight name: (A, B_scaled)}`` (:func:`block_lora_deltas`)."""
        from finetune.rotation import rotation_layer

        cfg = self.config
        if self.q_states is None:
            raise InvalidInputError("TopBlockPhase.prepare() must run before train()")
        dense = rotation_layer(self.model)
        if dense is None:
            raise ConfigError("top_block_epochs trains the final layer too: the model has none (freeze_encoder)")
        self.encoder = TopBlockEncoder(self.model)
        self.encoder.head = dense.linear  # trained in place: the model's own final layer
        self.encoder.head.requires_grad_(True)
        wrapped = train_block(cfg, self.pairs, self.encoder, self.q_states, self.p_states, self.teacher_q,
                              self.teacher_p, cfg.top_block_epochs, cfg.top_block_learning_rate,
                              cfg.top_block_head_learning_rate, cfg.seed, rank=cfg.top_block_lora_rank,
                              dims=self.dims, alpha=cfg.top_block_lora_alpha, on_step=self._count_step,
                              max_steps=cfg.max_steps if cfg.max_steps > 0 else 0)
        layers = encoder_layers(self.model)
        deltas = block_lora_deltas(wrapped, f"encoder.layer.{len(layers) - 1}.")
        merge_block_lora(self.encoder.block, wrapped)
        layers[-1].load_state_dict(self.encoder.block.state_dict())  # copied into the model's own dtype
        return deltas


__all__ = ["TokenStates", "TopBlockEncoder", "TopBlockPhase", "hidden_state_batches", "token_states", "cached_states", "block_states_dir",
           "cached_layer", "encoder_layers",
           "add_block_lora", "block_lora_deltas", "merge_block_lora", "train_block", "unit",
           "FULL_BLOCK_WEIGHT_DECAY"]
