"""Turn a QA dataset (a FrenchMedMCQA folder, a pairs file, a hub id) into an :class:`IRTask`.

The data is read by the shared loaders (:mod:`medrag.qa`), so ``medrag evaluate``
scores exactly the held-out pairs that ``medrag finetune`` held out. The task follows the seed's
protocol: the held-out questions are the queries, every distinct held-out answer is the corpus,
and a question is relevant to its own answer(s).

Which pairs are held out:

- a FrenchMedMCQA folder: the ``split`` file (default ``test.json``: 620 distinct questions,
  618 distinct answers);
- a local pairs file (``.jsonl``/``.json``/``.csv``/``.parquet``): the share of distinct questions
  that ``finetune`` holds out (``eval_fraction``, ``split_seed``), or every pair with ``split="all"``
  (a dedicated evaluation file);
- a hub dataset: its ``split`` (default: its ``test`` or ``validation`` split, else a held-out share).

Example::

    >>> from evaluation.data import load_task
    >>> task = load_task("../shared/data/frenchmedmcqa")          # the test split
    >>> len(task.queries), len(task.corpus)
    (620, 618)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.pairs import (ANSWER_COLUMN, EVAL_FRACTION, QUESTION_COLUMN, SPLIT_SEED,
                             load_frenchmedmcqa, load_qa_dataset)
from medrag.qa.sample import load_sample_corpus
from medrag.qa.task import IRTask

logger = logging.getLogger(__name__)


#: The ``--data`` value of medrag's own French medical sample corpus (:mod:`medrag.qa.sample`).
SAMPLE_SOURCE = "medrag:sample"

#: Endings of data files: a source ending so is a local path, never an ``org/name`` hub id.
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".xlsx", ".xls", ".arrow", ".ndjson",
                 ".gz", ".zip", ".bz2", ".xz")

#: The options of :func:`load_task` that only a pairs file or a hub dataset reads.
PAIRS_OPTIONS = ("question_column", "answer_column", "eval_fraction", "split_seed")


def looks_like_path(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` can only be a local path, not an ``org/name`` hub dataset id: it starts with
    ``./``, ``../``, ``/`` or ``~``, has two slashes or more, or ends with a data file's extension."""
    s = os.fspath(source)
    return (s.startswith(("./", "../", "/", "~", ".\\", "..\\")) or s.count("/") >= 2 or "\\" in s
            or Path(s).suffix.lower() in FILE_SUFFIXES)


def unused_options(source: str | os.PathLike[str], split: str | None) -> tuple[str, ...]:
    """The options among :data:`PAIRS_OPTIONS` that :func:`load_task` would ignore for ``source``:
    all of them for ``"medrag:sample"`` and a FrenchMedMCQA folder (fixed splits), the held-out share
    (``eval_fraction``, ``split_seed``) with ``split="all"``; none for a pairs file or a hub dataset."""
    if os.fspath(source) == SAMPLE_SOURCE or Path(source).expanduser().is_dir():
        return PAIRS_OPTIONS
    if split == "all":
        return ("eval_fraction", "split_seed")
    return ()


def _sample_task(split: str | None, limit: int | None) -> IRTask:
    """The sample's held-out questions (``split`` "eval", the default, or "train") against all its passages.

    Every passage that answers a question is relevant to it (the sample's ``also_relevant``
    judgements, :meth:`medrag.qa.sample.SampleCorpus.task`), not only the one it was written for.
    """
    split = split or "eval"
    if split not in ("eval", "train"):
        raise DataError(f"the sample corpus has the splits 'train' and 'eval', not {split!r}")
    return load_sample_corpus().task(split, limit=limit)


def load_task(source: str | os.PathLike[str], *, split: str | None = None, question_column: str = QUESTION_COLUMN,
              answer_column: str = ANSWER_COLUMN, eval_fraction: float = EVAL_FRACTION, split_seed: int = SPLIT_SEED,
              limit: int | None = None) -> IRTask:
    """The evaluation task of a dataset.

    Args:
        source: a FrenchMedMCQA folder, a local pairs file, a hub dataset id, or ``"medrag:sample"``
            (the French medical sample shipped with medrag: its eval questions against all 193 passages,
            each question relevant to every passage that answers it).
        split: the held-out split (see the module doc); ``"all"`` evaluates every pair of a pairs file.
        question_column / answer_column: the columns of a pairs file or hub dataset.
        eval_fraction / split_seed: the held-out share of a pairs file without splits (as in ``finetune``).
        limit: keep only the first ``limit`` held-out pairs (quick runs, tests).

    Raises:
        DataError: a missing or unreadable source, missing columns, or no held-out pair.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be an int >= 1 (or None for every pair), got {limit!r}")
    if os.fspath(source) == SAMPLE_SOURCE:
        return _sample_task(split, limit)
    path = Path(source).expanduser()
    if not path.exists() and looks_like_path(source):  # a mistyped path is not a hub id (org/name)
        raise DataError(f"{os.fspath(source)} does not exist: check the path (a FrenchMedMCQA folder or a "
                        f".jsonl/.json/.csv/.parquet file); a hub dataset id has the form org/name")
    if path.is_file() and split not in (None, "all"):
        raise DataError(f"{path} is one file of pairs, with no split named {split!r}: drop the split (--split) to "
                        "hold out a share of its questions (eval_fraction / --eval-fraction), or evaluate every "
                        "pair of a dedicated evaluation file (split='all', --split all)")
    if path.is_dir():
        split = split or "test"
        if split == "all":  # "all" is a pairs file's whole content; this folder's files are its splits
            found = sorted(f.stem for f in path.glob("*.json"))
            raise DataError(f"{path} is a folder of splits ({', '.join(found) or 'no .json file'}), not one file of "
                            "pairs: --split all evaluates every pair of a pairs file; name a split "
                            "(--split test, dev or train)")
        if not (path / f"{split}.json").is_file():
            raise DataError(f"{path} has no {split}.json: expected a FrenchMedMCQA folder (train/dev/test.json)")
        pairs = load_frenchmedmcqa(path, train_splits=(), eval_split=split).eval
        name = f"{path.name}/{split}"
    elif split == "all":
        pairs = load_qa_dataset(source, question_column=question_column, answer_column=answer_column,
                                eval_fraction=0.0).train
        name = f"{path.name or os.fspath(source)} (all pairs)"
    else:
        local = path.exists() or os.fspath(source).startswith((".", "/", "~"))
        if not local and "/" not in os.fspath(source):
            raise DataError(f"dataset {os.fspath(source)!r} not found: pass a FrenchMedMCQA folder, a pairs file "
                            "(.jsonl/.json/.csv/.parquet) or a hub dataset id (org/name)")
        ds = load_qa_dataset(source, question_column=question_column, answer_column=answer_column,
                             eval_fraction=eval_fraction, seed=split_seed, eval_split=split)
        pairs = ds.eval
        name = f"{path.name if local else os.fspath(source)} (held out: {ds.split_method})"
    if not pairs:
        raise DataError(f"{os.fspath(source)}: no held-out pair to evaluate on")
    if limit:
        pairs = pairs[:limit]
    task = IRTask.from_pairs(((p.question, p.answer) for p in pairs), name=name)
    logger.info("evaluation task %s: %d queries, %d documents", name, len(task.queries), len(task.corpus))
    return task
