"""The final linear layer of a frozen-encoder model, for the scripts that score it from the base's
cached vectors (``default_model_sweep.py``, ``store_benchmark.py --head``).

A model whose encoder is the embedded e5-small's, untouched, followed by a ``Dense`` layer gives
``normalize(W @ base_vector + b)``: its vectors are computed exactly from the base's, without
re-encoding. A model whose encoder was trained (LoRA, ``top_block_epochs``: the default model since
December 6) does not, and scoring it that way would print wrong numbers: :func:`frozen_head` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def frozen_head(spec: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the final ``Dense`` layer of a frozen-encoder model: a ``bundled:`` adapter or a
    sentence-transformers folder (e.g. ``medrag finetune``'s output); ``SystemExit`` with what to do
    for a model without one or whose encoder was trained."""
    from safetensors.numpy import load_file

    from medrag.adapters import MARKER

    spec = str(spec)
    if spec.startswith("bundled:"):
        from medrag.models import bundled_folder

        _refuse_adapted(spec.split(":", 1)[1], spec)
        folder = bundled_folder(spec)
    else:
        folder = Path(spec)
        if (folder / MARKER).is_file():  # a packaged model as built in the cache
            try:
                name = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("adapter")
            except (OSError, ValueError, AttributeError):
                name = None
            if name:
                _refuse_adapted(name, spec)
        recipe = _recipe(folder)
        if recipe.get("top_block_epochs") or recipe.get("lora_rank") or recipe.get("freeze_encoder") is False:
            raise SystemExit(f"{spec} was trained with its encoder (freeze_encoder false, lora_rank or "
                             "top_block_epochs): its vectors are not a linear map of the base's; score it by encoding "
                             "(medrag evaluate --suite --model ...)")
    modules = json.loads((folder / "modules.json").read_text())
    dense = [m for m in modules if m["type"].endswith("Dense")]
    if not dense:
        raise SystemExit(f"{spec} has no Dense layer (a final linear layer): not a frozen-encoder model; encode it instead")
    if len(dense) > 1:  # a fine-tune of a fine-tuned model: the shortcut would score its first layer alone
        raise SystemExit(f"{spec} has {len(dense)} Dense layers (a fine-tune of a fine-tuned model): its vectors are "
                         "not one linear map of the base's; score it by encoding (medrag evaluate --suite --model ...)")
    tensors = load_file(str(next((folder / dense[0]["path"]).glob("*.safetensors"))))
    return tensors["linear.weight"].astype(np.float32), tensors["linear.bias"].astype(np.float32)


def _refuse_adapted(name: str, spec: str) -> None:
    """SystemExit when packaged model ``name`` adapts the encoder's weights (LoRA deltas)."""
    from medrag.adapters import adapter_folder, packaged_models, read_adapter_config

    if name in packaged_models() and read_adapter_config(adapter_folder(name)).get("adapted_weights"):
        raise SystemExit(f"{spec} adapts the encoder's weights (LoRA): its vectors are not a linear map of the "
                         "base's; score it by encoding (medrag evaluate --suite --model ..., or --model)")


def _recipe(folder: Path) -> dict:
    """The training recipe a ``medrag finetune`` folder recorded (``matryoshka.json``), or ``{}``."""
    try:
        meta = json.loads((folder / "matryoshka.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    recipe = (meta.get("extra") or {}).get("recipe") if isinstance(meta, dict) else None
    return recipe if isinstance(recipe, dict) else {}
