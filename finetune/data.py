"""The training data a :class:`finetune.config.FinetuneConfig` names, read through :mod:`medrag.qa`."""

from __future__ import annotations

from typing import Any

from finetune.config import DATA_FORMATS, DEFAULT_TRAIN_SPLITS
from medrag.errors import DataError
from medrag.qa.pairs import QADataset, is_frenchmedmcqa_folder, load_frenchmedmcqa, load_qa_dataset


#: The config settings that decide a run's training and held-out pairs (recorded with an exported adapter).
DATA_SETTINGS = ("data", "data_format", "eval_data", "eval_fraction", "split_seed", "seed", "train_splits",
                 "eval_split")


#: The config settings :func:`load_dataset_from_config` reads: a dataset read with other values is
#: other data (``seed`` draws batches, not the split; the columns change the pairs: review).
LOADER_SETTINGS = ("data", "data_format", "eval_data", "eval_fraction", "split_seed", "train_splits", "eval_split",
                   "question_column", "answer_column", "negatives_column")


def data_settings(cfg: Any, keys: tuple[str, ...] = DATA_SETTINGS) -> dict[str, Any]:
    """The values of ``keys`` (default :data:`DATA_SETTINGS`) in ``cfg``."""
    return {key: getattr(cfg, key) for key in keys}


def load_dataset_from_config(cfg: Any) -> QADataset:
    """The dataset a :class:`finetune.config.FinetuneConfig` describes (``data_format`` picks the loader),
    marked with the settings it was read with (``loaded_from``: :data:`LOADER_SETTINGS`)."""
    dataset = _load(cfg)
    dataset.loaded_from = data_settings(cfg, LOADER_SETTINGS)
    return dataset


def _load(cfg: Any) -> QADataset:
    fmt = cfg.data_format
    if fmt == "auto":
        fmt = "frenchmedmcqa" if is_frenchmedmcqa_folder(cfg.data) else "pairs"
    if fmt == "frenchmedmcqa":
        return load_frenchmedmcqa(cfg.data, train_splits=tuple(cfg.train_splits), eval_split=cfg.eval_split or "test")
    if fmt != "pairs":
        raise DataError(f"unknown data_format {cfg.data_format!r}: use one of {DATA_FORMATS}")
    return load_qa_dataset(
        cfg.data, question_column=cfg.question_column, answer_column=cfg.answer_column,
        negatives_column=cfg.negatives_column, eval_source=cfg.eval_data, eval_fraction=cfg.eval_fraction,
        seed=cfg.split_seed, train_split=tuple(cfg.train_splits) or ("train",), eval_split=cfg.eval_split,
        # the default lists FrenchMedMCQA's dev: used when a hub dataset has it, else left out
        optional_splits=("dev",) if list(cfg.train_splits) == list(DEFAULT_TRAIN_SPLITS) else (),
    )
