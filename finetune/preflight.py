"""Checks made before a fine-tuning run loads a model or trains: where it writes, and what it needs installed.

A run writes the model into ``output_dir`` (overwriting files of those names) and, with ``export_adapter``,
replaces that folder. Both are checked first, so a typo cannot wipe a user's folder or break the base model,
and an unwritable path fails at once instead of after the training:

- ``output_dir`` must be empty, missing, or a previous medrag fine-tuning output (recognised by the files a
  run writes: :data:`RUN_MARKERS`); a previous output is overwritten, with a warning;
- ``export_adapter`` must be empty, missing, or a previous adapter export (only the files an export writes:
  :data:`EXPORT_FILES`), and must not be, hold or sit inside ``output_dir`` or the base model's folder;
- ``model`` must name an existing model folder or a known ``bundled:`` model (hub ids are not looked up),
  and ``device`` a device this machine has;
- ``report_to``'s tracker must be installed;
- without ``dims``, ``matryoshka_weights`` must have one weight per size the model gets.

Example::

    from finetune.preflight import check_run
    check_run(cfg)               # raises ConfigError / InvalidInputError; creates output_dir
    check_run(cfg, create=False) # the same without creating anything (``medrag finetune --check``)
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medrag.bundled import BUNDLED_SPEC
from medrag.command import PROBE_PREFIX, check_writable_dir
from medrag.errors import ConfigError
from medrag.models import check_device, check_model_spec

from finetune.mixture import check_sources

if TYPE_CHECKING:
    from finetune.config import FinetuneConfig

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
INFO_FILENAME = "training_info.json"
CONFIG_FILENAME = "finetune_config.yaml"
#: written in ``checkpoints/`` when a run that keeps its checkpoints ends: ``--resume`` refuses them
FINISHED_FILENAME = "finished.json"
#: a folder holding one of these is the output of an earlier ``medrag finetune`` run (the checkpoints
#: folder alone: an interrupted one, which ``--resume`` continues)
RUN_MARKERS = (CONFIG_FILENAME, INFO_FILENAME, CHECKPOINT_DIR)


def export_files() -> frozenset[str]:
    """The names :func:`finetune.export.export_adapter` writes in its folder."""
    from medrag.adapters import ADAPTER_CONFIG, ADAPTER_FILE

    return frozenset({ADAPTER_FILE, ADAPTER_CONFIG, "matryoshka.json", "README.md"})


def is_finetune_output(folder: Path) -> bool:
    """Whether ``folder`` holds what a previous fine-tuning run wrote."""
    return (folder / CONFIG_FILENAME).is_file() or (folder / INFO_FILENAME).is_file() \
        or (folder / CHECKPOINT_DIR).is_dir()


def is_adapter_export(folder: Path) -> bool:
    """Whether ``folder`` holds only a previous adapter export (its config among them)."""
    from medrag.adapters import ADAPTER_CONFIG

    names = {p.name for p in _entries(folder)}
    return ADAPTER_CONFIG in names and names <= export_files()


def _entries(folder: Path) -> list[Path]:
    """``folder``'s entries, without the probe folders of :func:`medrag.command.check_writable_dir` (another
    rank of a torchrun job may hold one there for an instant)."""
    return [p for p in folder.iterdir() if not p.name.startswith(PROBE_PREFIX)]


def _nonempty_dir(folder: Path) -> bool:
    return folder.is_dir() and bool(_entries(folder))


def _related(a: Path, b: Path) -> str | None:
    """How folder ``a`` sits relative to ``b``: "is", "is inside", "holds", or None."""
    a, b = a.expanduser().resolve(), b.expanduser().resolve()
    if a == b:
        return "is"
    if b in a.parents:
        return "is inside"
    if a in b.parents:
        return "holds"
    return None


def check_export_folder(folder: str | Path, output_dir: str | Path | None = None,
                        base_model: str | None = None) -> None:
    """Refuse an export folder the export would wipe or that would wipe the run's outputs.

    Raises:
        ConfigError: ``folder`` is empty text, a file, a non-empty folder that is not a previous adapter
            export, or the same as / inside / above ``output_dir`` or the base model's folder.
    """
    if not str(folder).strip():
        raise ConfigError("export_adapter is empty; pass the folder to write the adapter to, or drop it")
    path = Path(folder).expanduser()
    for other, what in ((output_dir, "output_dir"), (base_model, "the base model's folder")):
        if other is None or not str(other).strip() or (what != "output_dir" and not Path(other).expanduser().is_dir()):
            continue
        how = _related(path, Path(other))
        if how:
            raise ConfigError(f"export_adapter {folder} {how} {what} ({other}): the export replaces its folder and "
                              "would delete the trained model; pass a separate folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"export_adapter {folder} is a file; pass a folder (it is created if missing)")
    if _nonempty_dir(path) and not is_adapter_export(path):
        raise ConfigError(f"export_adapter {folder} is a folder with other files in it and the export replaces the "
                          "whole folder; pass a new or empty folder (or one holding only a previous adapter export)")


def check_output_dir(cfg: "FinetuneConfig", create: bool = True) -> None:
    """Refuse an ``output_dir`` holding anything but a previous run's output; check it can be written.

    (An empty ``output_dir`` is refused by :meth:`FinetuneConfig.validate`, when the config is made.)

    Raises:
        ConfigError: a non-empty folder that is not a previous fine-tuning output.
        InvalidInputError: the folder cannot be created or written (:func:`medrag.command.check_writable_dir`).
    """
    out = Path(cfg.output_dir).expanduser()
    if _nonempty_dir(out):
        if not is_finetune_output(out):
            raise ConfigError(f"output_dir {cfg.output_dir} is a folder with other files in it (not a previous "
                              "medrag finetune output): the run would overwrite them; pass a new or empty folder")
        # said once, by the run itself; only where a model was saved (a run that failed early left its
        # checkpoints folder alone, and the next run warned about model files that never were: user tryout)
        if not cfg.resume and create and (out / "modules.json").is_file():
            logger.warning("output_dir %s holds a previous fine-tuning output: its model files are overwritten",
                           cfg.output_dir)
    check_writable_dir(out, "output_dir", create=create)


def check_report_to(name: str) -> list[str]:
    """The Trainer's ``report_to`` for ``name``; refuses a tracker that is not installed."""
    if name == "none":
        return ["none"]
    module = {"wandb": "wandb", "tensorboard": "tensorboard"}[name]
    if importlib.util.find_spec(module) is None and not (name == "tensorboard"
                                                         and importlib.util.find_spec("tensorboardX")):
        raise ConfigError(f"report_to={name!r} needs the {module} package: pip install 'medrag[{name}]'")
    return [name]


def model_full_dim(spec: str | None) -> int | None:
    """The output size of the model ``spec`` names, read without loading it: 384 for the embedded
    e5-small (``None``), else the ``matryoshka.json`` of a folder or a packaged ``bundled:`` model or,
    without a Dense layer, a folder's ``config.json`` ``hidden_size``; None when that cannot be told
    cheaply (hub ids)."""
    import json

    if spec is None or spec == BUNDLED_SPEC:
        return 384
    if spec.startswith("bundled:"):  # a packaged adapter: its matryoshka.json sits in the package data
        from medrag.adapters import packaged_models_dir

        spec = str(packaged_models_dir() / spec.split(":", 1)[1])
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        return None
    try:
        meta = folder / "matryoshka.json"
        if meta.is_file():
            return int(json.loads(meta.read_text(encoding="utf-8"))["full_dim"])
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        if any("Dense" in str(m.get("type", "")) for m in modules):
            return None
        return int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_trained_dims(spec: str | None) -> list[int] | None:
    """The sizes the model ``spec`` names was trained at (its ``matryoshka.json``: a folder or a
    packaged ``bundled:`` model), read without loading it; None when it records none."""
    import json

    if spec is None or spec == BUNDLED_SPEC:
        return None
    if spec.startswith("bundled:"):
        from medrag.adapters import packaged_models_dir

        spec = str(packaged_models_dir() / spec.split(":", 1)[1])
    meta = Path(spec).expanduser() / "matryoshka.json"
    try:
        dims = json.loads(meta.read_text(encoding="utf-8"))["dims"] if meta.is_file() else None
        return sorted({int(d) for d in dims}, reverse=True) if dims else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_matryoshka_weights(cfg: "FinetuneConfig", dims: list[int] | None = None) -> None:
    """Without ``dims``, ``matryoshka_weights`` go to the run's sizes in order: refuse a count that differs
    from those sizes (``dims``: the run's; default: computed from the model when it can be read cheaply)."""
    from medrag.metadata import default_dims

    if not cfg.matryoshka_weights or cfg.dims:
        return  # with dims, FinetuneConfig.validate compares the counts
    if dims is None:
        full = model_full_dim(cfg.model)
        if full is None:
            return
        dims = model_trained_dims(cfg.model) or default_dims(full)
    if len(cfg.matryoshka_weights) != len(dims):
        raise ConfigError(f"matryoshka_weights has {len(cfg.matryoshka_weights)} weight(s) but the run trains "
                          f"{len(dims)} sizes {list(dims)}: give one weight per size, or set dims")


def check_top_block_base(spec: str) -> None:
    """Refuse, before anything loads, a model the last-block phase cannot start from: one that already
    ends with a trained final layer (a fine-tuned folder, an adapter export or packaged model with a
    layer), read off its ``modules.json`` or ``adapter_config.json``; the run refuses it too, once loaded.

    Raises:
        ConfigError: naming the model's recorded base when it has one.
    """
    import json

    from medrag.adapters import adapter_folder, read_adapter_config
    from medrag.metadata import MatryoshkaMetadata

    if spec == BUNDLED_SPEC:
        return
    folder = adapter_folder(spec.removeprefix("bundled:")) if spec.startswith("bundled:") else Path(spec).expanduser()
    if not folder.is_dir():
        return  # a hub id: the run checks the loaded model
    base = None
    if (folder / "adapter_config.json").is_file() and not (folder / "modules.json").is_file():
        config = read_adapter_config(folder)
        headed, base = bool(config.get("rotation")), config.get("base_model")
    else:
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # the run's own load names what is wrong
        if not isinstance(modules, list):
            return  # not a module list: the run's own load names what is wrong
        headed = any(isinstance(m, dict) and str(m.get("type", "")).endswith("Dense") for m in modules)
        meta = MatryoshkaMetadata.load(folder) if headed else None
        base = meta.base_model if meta is not None else None
    if headed:
        raise top_block_refusal(spec, base)


def top_block_refusal(spec: str, base: str | None) -> ConfigError:
    """The error for a last-block phase over ``spec``, a model with a trained final layer (``base``: its
    recorded base, named as the model to start from)."""
    return ConfigError(f"top_block_epochs trains the encoder's last block from the base's hidden states, but {spec} "
                       "already ends with a trained final layer (a fine-tuned model): drop top_block_epochs to "
                       "train a new final layer over it, or start from "
                       + (f"its base (--model {base})" if base else "the model it was fine-tuned from"))


def check_run(cfg: "FinetuneConfig", create: bool = True, model_given: bool = False) -> None:
    """Everything a run checks before loading the model (``create=False``: make no folder;
    ``model_given``: a loaded model was passed in, whose sizes ``cfg.model`` does not tell)."""
    check_device(cfg.device)  # an explicit device this machine lacks was ignored: the run trained on the CPU
    if not model_given:
        if cfg.model is not None:  # a misspelled folder or bundled: name failed after the data had loaded
            check_model_spec(cfg.model)
            if cfg.top_block_epochs:  # refused by the run after the data and the scores before (and not by --check)
                check_top_block_base(cfg.model)
        check_matryoshka_weights(cfg)
        check_dims(cfg)
    check_resume(cfg)
    check_data_options(cfg)
    check_output_dir(cfg, create=create)
    check_sources(cfg.mixture, cfg.distill_corpus, cfg.shared_data)
    if cfg.teacher_cache is not None:  # a file there failed after the data and the model had loaded
        check_writable_dir(Path(cfg.teacher_cache).expanduser(), "teacher_cache", create=False)
    if cfg.export_adapter is not None:
        check_export_folder(cfg.export_adapter, cfg.output_dir, cfg.model)
        export = Path(cfg.export_adapter).expanduser()
        if create and export.is_dir() and is_adapter_export(export):  # replaced in silence (user tryout)
            logger.warning("export_adapter %s holds a previous adapter export: it is replaced by this run's",
                           cfg.export_adapter)
        check_writable_dir(Path(cfg.export_adapter).expanduser(), "export_adapter", create=False)
        check_suite_data(cfg)
    check_report_to(cfg.report_to)


#: Settings only a pairs file or a hub dataset reads (a FrenchMedMCQA folder has fixed files and fields).
PAIRS_ONLY = ("question_column", "answer_column", "negatives_column", "eval_data", "eval_fraction", "split_seed")


def check_data_options(cfg: "FinetuneConfig") -> None:
    """Refuse settings the data would ignore in silence: pairs-only settings with a FrenchMedMCQA
    folder (``medrag evaluate`` refuses them too), ``eval_fraction`` / ``split_seed`` with an
    ``eval_data`` file, ``hard_negatives`` on a pairs file without ``negatives_column``, and
    ``negatives_column`` without ``hard_negatives`` (or with the loop engine, which trains none)."""
    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import is_frenchmedmcqa_folder

    fmcqa = cfg.data_format == "frenchmedmcqa" or (cfg.data_format == "auto" and is_frenchmedmcqa_folder(cfg.data))
    defaults = FinetuneConfig()
    given = [name for name in PAIRS_ONLY if getattr(cfg, name) != getattr(defaults, name)] if fmcqa else []
    if given:
        raise ConfigError(f"{', '.join(given)}: not used with the FrenchMedMCQA folder {cfg.data} (fixed files: "
                          "train_splits and eval_split choose them, and fixed fields); drop "
                          f"{'it' if len(given) == 1 else 'them'}")
    # accepted and ignored: an eval file holds nothing out of data; a pairs file has no negatives without the column
    held_out = [name for name in ("eval_fraction", "split_seed") if getattr(cfg, name) != getattr(defaults, name)]
    if cfg.eval_data is not None and held_out:
        raise ConfigError(f"{', '.join(held_out)}: not used with eval_data {cfg.eval_data} (the eval set is that file; "
                          f"nothing is held out of data); drop {'it' if len(held_out) == 1 else 'them'}")
    # an existing pairs file only: a mistyped path is named by the data check ("does not exist")
    if cfg.hard_negatives and not fmcqa and cfg.negatives_column is None and Path(cfg.data).expanduser().is_file():
        raise ConfigError(f"hard_negatives {cfg.hard_negatives}: a pairs file's negatives are read from "
                          "negatives_column; name that column (a list of texts or one text), or drop hard_negatives")
    # the reverse: the column read and counted ("88 hard negatives"), then never trained on (user tryout)
    if cfg.negatives_column is not None and not fmcqa and (cfg.engine == "loop" or not cfg.hard_negatives):
        raise ConfigError(f"negatives_column {cfg.negatives_column!r}: its negatives are trained on with "
                          + ("engine: trainer and hard_negatives >= 1 (engine: loop trains in-batch negatives only)"
                             if cfg.engine == "loop" else "hard_negatives >= 1 (--hard-negatives 1)")
                          + "; set that, or drop negatives_column")


def check_dims(cfg: "FinetuneConfig") -> None:
    """Refuse ``dims`` larger than the model's size when that size can be read without loading it
    (the run refused them after loading the data and the model)."""
    full = model_full_dim(cfg.model) if cfg.dims else None
    too_big = sorted({int(d) for d in cfg.dims or [] if full is not None and int(d) > full}, reverse=True)
    if too_big:
        raise ConfigError(f"dims {too_big} exceed the model's size {full}")


def check_resume(cfg: "FinetuneConfig") -> None:
    """``resume`` needs a checkpoint in ``output_dir/checkpoints``, and a run without it refuses a
    folder holding one (the run said so only once it had made the output folder)."""
    from finetune.loop_checkpoints import latest_checkpoint

    out = Path(cfg.output_dir).expanduser()
    folder = out / CHECKPOINT_DIR
    latest, incomplete = latest_checkpoint(folder)
    if cfg.resume and latest is None:
        if incomplete:
            names = ", ".join(p.name for p in incomplete)
            raise ConfigError(f"nothing to resume: the checkpoints in {folder} are incomplete ({names}: the run was "
                              f"killed while saving them); delete {folder} and run again without --resume")
        raise ConfigError(f"nothing to resume: no checkpoint in {folder}")
    if latest is not None and (folder / FINISHED_FILENAME).is_file():
        # checkpoints kept by keep_checkpoints: --resume trained 0 steps, rewrote the run's timings as
        # 0 samples/s and deleted the checkpoints the user had asked to keep
        raise ConfigError(f"{folder} holds the checkpoints of a finished run (kept by keep_checkpoints)"
                          f"{': there is nothing to resume' if cfg.resume else ''}. To train again in this folder, "
                          f"delete {folder}; or choose another output_dir")
    if (latest is not None or incomplete) and not cfg.resume:
        raise ConfigError(f"{folder} already holds checkpoints; pass --resume to continue that run, or choose "
                          "another output_dir")


def check_suite_data(cfg: "FinetuneConfig") -> None:
    """An export that records the validation suite's scores (``export_scores`` suite or suite_pilot)
    reads the suite from ``shared_data``: refuse before training when its folders are not there (the
    export failed after the whole run)."""
    if cfg.export_scores == "run":
        return
    from medrag.qa.suite import DATA_FOLDERS

    root = Path(cfg.shared_data).expanduser()
    missing = [name for name in DATA_FOLDERS if not (root / name).is_dir()]
    if missing:
        raise ConfigError(f"export_adapter records the validation suite's scores (export_scores: {cfg.export_scores}), "
                          f"read from shared_data {cfg.shared_data}, which lacks {', '.join(missing)}: pass the "
                          "shared data folder as --shared-data, or --export-scores run to record the run's own "
                          "eval split")


__all__ = ["check_run", "check_output_dir", "check_export_folder", "check_report_to", "check_top_block_base",
           "is_finetune_output",
           "is_adapter_export", "RUN_MARKERS"]
