"""Turn a QA dataset (a FrenchMedMCQA folder, a pairs file, a hub id) into an :class:`IRTask`.

The task follows the seed's protocol: the held-out questions are the queries, every distinct
answer of the held-out split is the corpus, and a question is relevant to its own answer(s).

Example::

    >>> from evaluation.data import load_task
    >>> task = load_task("../shared/data/frenchmedmcqa")          # the test split
    >>> len(task.queries), len(task.corpus)
    (620, 618)

.. note:: MERGE POINT. The canonical loaders live in ``finetune.data`` (``load_qa_dataset``,
   ``load_frenchmedmcqa``), written in parallel. :func:`load_task` uses them when they can be
   imported (:func:`_load_via_finetune`) and otherwise falls back to the two small readers below
   (FrenchMedMCQA folders and local JSONL/JSON/CSV pairs files), which define the same protocol.
   Once ``finetune.data`` is merged the fallback readers can be deleted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from medrag.errors import DataError
from evaluation.task import IRTask

logger = logging.getLogger(__name__)

#: Column pairs tried, in order, when a pairs file does not use the given column names.
_COLUMN_GUESSES = (("anchor", "positive"), ("question", "answer"), ("query", "passage"), ("query", "positive"))


def load_task(source: str | os.PathLike[str], *, split: str = "test", question_column: str = "anchor",
              answer_column: str = "positive", limit: int | None = None) -> IRTask:
    """The evaluation task of a dataset.

    Args:
        source: a FrenchMedMCQA folder (``train.json``/``dev.json``/``test.json``), a local JSONL,
            JSON or CSV file of question/answer pairs, or (through ``finetune.data``) a hub id or other format.
        split: for FrenchMedMCQA folders, the held-out split (``"test"``).
        question_column / answer_column: the columns of a pairs file.
        limit: keep only the first ``limit`` records (quick runs, tests).

    Raises:
        DataError: a missing or unreadable source, or nothing usable in it.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    via = _load_via_finetune(source, split, question_column, answer_column, limit)
    if via is not None:
        return via
    path = Path(source).expanduser()
    if path.is_dir():
        return _frenchmedmcqa_task(path, split, limit)
    if path.is_file():
        return _pairs_file_task(path, question_column, answer_column, limit)
    raise DataError(
        f"dataset {os.fspath(source)!r} not found: pass a FrenchMedMCQA folder or a JSONL/JSON pairs file "
        "(hub ids need the finetune package's loaders)"
    )


def _load_via_finetune(source, split, question_column, answer_column, limit) -> IRTask | None:
    """MERGE POINT: delegate to ``finetune.data`` when present; ``None`` means "use the fallback"."""
    try:
        from finetune import data as ft_data  # noqa: F401
    except ImportError:
        return None
    # The finetune loaders' exact return type is not fixed yet; switch this adapter to them at merge
    # (expected: ``load_frenchmedmcqa(folder, eval_split=split)`` / ``load_qa_dataset(source, ...)``
    # returning an object whose eval IRTask is built from the held-out pairs).
    getter = None
    path = Path(source).expanduser()
    if path.is_dir() and hasattr(ft_data, "load_frenchmedmcqa"):
        getter = lambda: ft_data.load_frenchmedmcqa(path, eval_split=split)  # noqa: E731
    elif hasattr(ft_data, "load_qa_dataset"):
        getter = lambda: ft_data.load_qa_dataset(source, question_column=question_column,  # noqa: E731
                                                 answer_column=answer_column)
    if getter is None:
        return None
    dataset = getter()
    for name in ("eval_task", "ir_task", "to_ir_task"):
        method = getattr(dataset, name, None)
        if callable(method) and limit is None:
            return method()
    pairs = getattr(dataset, "eval_pairs", None)
    if pairs is None:
        return None
    pairs = list(pairs)[:limit] if limit else list(pairs)
    return IRTask.from_pairs(((str(q), str(a)) for q, a in pairs), name=Path(os.fspath(source)).name or "dataset")


# ---------------------------------------------------------------------- fallback readers


def frenchmedmcqa_pairs(records: list[dict]) -> list[tuple[str, str]]:
    """(question, correct option texts joined with ``"; "``) for each FrenchMedMCQA record."""
    pairs = []
    for i, rec in enumerate(records):
        try:
            question = rec["question"].strip()
            answer = "; ".join(rec["answers"][c].strip() for c in rec["correct_answers"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"FrenchMedMCQA record {i} lacks question/answers/correct_answers: {exc!r}") from exc
        if question and answer:
            pairs.append((question, answer))
    return pairs


def _frenchmedmcqa_task(folder: Path, split: str, limit: int | None) -> IRTask:
    path = folder / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{folder} has no {split}.json: expected a FrenchMedMCQA folder (train/dev/test.json)")
    records = _read_json(path)
    if not isinstance(records, list):
        raise DataError(f"{path} is not a JSON list of FrenchMedMCQA records")
    pairs = frenchmedmcqa_pairs(records[:limit] if limit else records)
    if not pairs:
        raise DataError(f"{path} holds no usable question")
    return IRTask.from_pairs(pairs, name=f"{folder.name}/{split}")


def _pairs_file_task(path: Path, question_column: str, answer_column: str, limit: int | None) -> IRTask:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON: {exc}") from exc
    elif path.suffix.lower() == ".json":
        rows = _read_json(path)
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):
            rows = rows["data"]
    elif path.suffix.lower() == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} here (use .jsonl, .json or .csv)")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path} holds no list of objects")
    columns = _pick_columns(rows[0], question_column, answer_column, path)
    pairs = [(str(r[columns[0]]).strip(), str(r[columns[1]]).strip()) for r in rows[:limit] if
             r.get(columns[0]) and r.get(columns[1])]
    pairs = [(q, a) for q, a in pairs if q and a]
    if not pairs:
        raise DataError(f"{path} holds no non-empty {columns[0]}/{columns[1]} pair")
    return IRTask.from_pairs(pairs, name=path.stem)


def _pick_columns(row: dict, question: str, answer: str, path: Path) -> tuple[str, str]:
    if question in row and answer in row:
        return question, answer
    for q, a in _COLUMN_GUESSES:
        if q in row and a in row:
            logger.info("%s: using columns %r/%r", path, q, a)
            return q, a
    raise DataError(f"{path}: no columns {question!r}/{answer!r} (found {sorted(row)}); "
                    "pass --question-column/--answer-column")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
