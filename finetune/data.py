"""The training data a :class:`finetune.config.FinetuneConfig` names, read through :mod:`medrag.qa`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from finetune.config import DATA_FORMATS
from medrag.errors import DataError
from medrag.qa.pairs import (QADataset, is_frenchmedmcqa_folder, json_objects, load_frenchmedmcqa, load_qa_dataset,
                             read_records)


def load_dataset_from_config(cfg: Any) -> QADataset:
    """The dataset a :class:`finetune.config.FinetuneConfig` describes (``data_format`` picks the loader)."""
    fmt = cfg.data_format
    if fmt == "auto":
        fmt = "frenchmedmcqa" if is_frenchmedmcqa_folder(cfg.data) else "pairs"
    if fmt == "frenchmedmcqa":
        return load_frenchmedmcqa(cfg.data, train_splits=tuple(cfg.train_splits), eval_split=cfg.eval_split or "test")
    if fmt != "pairs":
        raise DataError(f"unknown data_format {cfg.data_format!r}: use one of {DATA_FORMATS}")
    for source in (cfg.data, cfg.eval_data):
        if source:
            check_text_values(source, (cfg.question_column, cfg.answer_column))
    return load_qa_dataset(
        cfg.data, question_column=cfg.question_column, answer_column=cfg.answer_column,
        negatives_column=cfg.negatives_column, eval_source=cfg.eval_data, eval_fraction=cfg.eval_fraction,
        seed=cfg.seed, train_split=cfg.train_splits[0] if cfg.train_splits else "train",
        eval_split=cfg.eval_split,
    )


def check_text_values(source: str | os.PathLike[str], columns: Sequence[str]) -> None:
    """Refuse a local JSON/JSONL/parquet file whose question or answer is not text: ``{"question": 12}``
    or ``{"answer": {"a": 1}}`` would otherwise train on ``"12"`` and ``"{'a': 1}"``. CSV cells are
    always text; hub datasets and missing files are left to the loader. A missing or null value is
    allowed, NaN included (``json.dumps`` writes a missing value so; the loader drops the row as empty).

    Raises:
        DataError: the file, the row (the line of a ``.jsonl``) and the column of the first non-text value.
    """
    path = Path(os.fspath(source)).expanduser()
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".jsonl", ".json", ".parquet"):
        return
    for where, row in _numbered_rows(path, suffix):
        for column in columns:
            value = row.get(column)
            if value is not None and not isinstance(value, str) and not (isinstance(value, float) and value != value):
                raise DataError(f"{path}:{where}: {column} is {type(value).__name__} {_short(value)}, not text; "
                                "every question and answer must be a string (quote numbers)")


def _numbered_rows(path: Path, suffix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if suffix == ".jsonl":
        try:
            with path.open(encoding="utf-8-sig") as fh:
                for lineno, obj in json_objects(fh, path):
                    if isinstance(obj, dict):
                        yield str(lineno), obj
        except UnicodeDecodeError:
            return  # the loader reports it
        return
    for i, row in enumerate(read_records(path), 1):
        yield f"row {i}", row


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
