"""LoRA on the encoder's linear layers (peft), and the low-rank weight deltas it trains.

LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") freezes every weight
``W`` and trains ``W + (alpha / r) * B @ A`` with ``A`` of shape ``(r, in)`` and ``B`` of shape
``(out, r)``, ``B`` starting at zero (the model starts as the base). For medrag it does three things:

- it limits forgetting: the base model's behaviour on the French text the pairs do not cover stays
  reachable, which is what the out-of-domain suite rewards;
- the trained part is small (rank 16 on every linear layer of e5-small: 1.3M parameters, 2.6 MB in
  fp16), so it ships inside the wheel as package data and is merged into the embedded base at load
  time (:mod:`medrag.adapters`), with no peft needed there;
- on CPU a step is cheaper: no weight gradients and no optimizer state for the 118M frozen
  parameters (96M of them the word embeddings), and with ``layers`` < all, backpropagation stops at
  the lowest adapted layer.

Example::

    from finetune.lora import add_lora, lora_deltas
    n_trainable = add_lora(model, rank=16, alpha=32)       # model: a SentenceTransformer
    deltas = lora_deltas(model)  # {"encoder.layer.0.attention.self.query.weight": (A, B * alpha / r), ...}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from finetune.config import ConfigError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: The linear layers of a BERT/XLM-R encoder layer (attention q/k/v/output, feed-forward in/out).
DEFAULT_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def encoder_model(model: "SentenceTransformer") -> "torch.nn.Module":
    """The transformers model inside the first sentence-transformers module."""
    first = model[0]
    inner = getattr(first, "auto_model", None) or getattr(first, "model", None)
    if inner is None:
        raise ConfigError(f"LoRA needs a transformers encoder as the first module, got {type(first).__name__}")
    return inner


def target_module_names(inner: "torch.nn.Module", targets: Sequence[str] = DEFAULT_TARGETS,
                        layers: int = 0) -> list[str]:
    """Names of the ``nn.Linear`` modules LoRA adapts: those whose name ends with one of ``targets``
    inside an encoder layer, restricted to the top ``layers`` layers when ``layers > 0``."""
    import torch

    found: list[tuple[int, str]] = []
    for name, module in inner.named_modules():
        match = _LAYER.search(name)
        if not isinstance(module, torch.nn.Linear) or match is None:
            continue
        if any(name == t or name.endswith("." + t) for t in targets):
            found.append((int(match.group(1)), name))
    if not found:
        raise ConfigError(f"no linear layer of the encoder matches the LoRA targets {list(targets)}")
    n_layers = max(i for i, _ in found) + 1
    if layers > n_layers:  # 20 on a 12-layer model trained every layer while the card said "top 20" (user tryout)
        raise ConfigError(f"lora_layers={layers} but the encoder has {n_layers} layers: pass at most {n_layers} "
                          "(0: all of them)")
    lowest = n_layers - layers if layers > 0 else 0
    return [name for i, name in found if i >= lowest]


def add_lora(model: "SentenceTransformer", rank: int, alpha: float, dropout: float = 0.0,
             targets: Sequence[str] = DEFAULT_TARGETS, layers: int = 0) -> int:
    """Freeze the model and inject LoRA adapters (in place); return the number of trainable parameters.

    Modules after the encoder (e.g. a rotation :class:`Dense` layer) keep their own ``requires_grad``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise ConfigError("lora_rank must be >= 1 to add LoRA adapters")
    inner = encoder_model(model)
    names = target_module_names(inner, targets, layers)
    for p in inner.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    inject_adapter_in_model(config, inner)
    trainable = sum(p.numel() for n, p in inner.named_parameters() if "lora_" in n)
    for n, p in inner.named_parameters():
        p.requires_grad_("lora_" in n)
    logger.info("LoRA rank %d alpha %g on %d linear layers: %d trainable parameters", rank, alpha, len(names),
                trainable)
    return trainable


def lora_deltas(model: "SentenceTransformer") -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """``{weight name in the encoder: (A, B_scaled)}`` with ``W_merged = W + B_scaled @ A``.

    Names are the plain transformers parameter names (``encoder.layer.3.attention.self.query.weight``),
    whatever wrapper peft put around the layer.
    """
    import torch

    inner = encoder_model(model)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in inner.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(lora_a, torch.nn.ModuleDict) or "default" not in lora_a:
            continue
        a = module.lora_A["default"].weight.detach().float().cpu()
        b = module.lora_B["default"].weight.detach().float().cpu()
        scale = float(module.scaling["default"])
        out[f"{name}.weight"] = (a.contiguous(), (b * scale).contiguous())
    if not out:
        raise ConfigError("the model has no LoRA adapters to export (train with lora_rank > 0)")
    return out


def has_lora(model: "SentenceTransformer") -> bool:
    """True when the model's encoder carries LoRA adapters."""
    return any("lora_" in n for n, _ in encoder_model(model).named_parameters())


def merge_lora(model: "SentenceTransformer") -> None:
    """Fold the LoRA deltas into the weights and remove the adapters (in place): a plain model again."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = encoder_model(model)
    for name, module in list(inner.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = inner.get_submodule(parent_name) if parent_name else inner
            setattr(parent, child, module.get_base_layer())


__all__ = ["has_lora", "add_lora", "lora_deltas", "merge_lora", "target_module_names", "encoder_model", "DEFAULT_TARGETS"]
