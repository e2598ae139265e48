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

Your own passages and judgements: a **BEIR folder** (Thakur et al., 2021; the format of most public
retrieval benchmarks): ``corpus.jsonl`` (``{"_id", "title", "text"}``: every passage, judged or
not), ``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id corpus-id score``,
tab-separated with a header line, or TREC's ``query-id 0 corpus-id score``), graded or binary
(:func:`load_beir`). The queries are those judged in the split with a grade > 0; a passage's
title, when it has one, is put before its text. From Python, build an :class:`IRTask` directly.

Example::

    >>> from evaluation.data import load_task
    >>> task = load_task("../shared/data/frenchmedmcqa")          # the test split
    >>> len(task.queries), len(task.corpus)
    (620, 618)
"""

from __future__ import annotations

import logging
import math
import os
import shlex
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.pairs import (ANSWER_COLUMN, EVAL_FRACTION, QUESTION_COLUMN, SPLIT_SEED,
                             load_frenchmedmcqa, load_qa_dataset)
from medrag.qa.sample import load_sample_corpus
from medrag.qa.task import IRTask
from medrag.text_checks import is_blank

logger = logging.getLogger(__name__)


#: The ``--data`` value of medrag's own French medical sample corpus (:mod:`medrag.qa.sample`).
SAMPLE_SOURCE = "medrag:sample"

#: Endings of data files: a source ending so is a local path, never an ``org/name`` hub id.
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".xlsx", ".xls", ".arrow", ".ndjson",
                 ".gz", ".zip", ".bz2", ".xz")

#: The options of :func:`load_task` that only a pairs file or a hub dataset reads.
PAIRS_OPTIONS = ("question_column", "answer_column", "eval_fraction", "split_seed")
#: The suffixes of a file of pairs (named by :func:`check_data_folder`).
PAIRS_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet")


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
    if os.fspath(source) == SAMPLE_SOURCE or is_split_folder(source) or is_beir_folder(source):
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
    if not isinstance(source, (str, os.PathLike)):  # a dict failed with TypeError inside Path()
        raise DataError(f"load_task reads a dataset path or id, got {type(source).__name__}; for your own queries, "
                        "passages and judgements build an IRTask(queries, corpus, qrels) (medrag.qa.task)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be an int >= 1 (or None for every pair), got {limit!r}")
    if os.fspath(source) == SAMPLE_SOURCE:
        return _sample_task(split, limit)
    path = Path(source).expanduser()
    if not path.exists() and looks_like_path(source):  # a mistyped path is not a hub id (org/name)
        raise DataError(f"{os.fspath(source)} does not exist: check the path (a BEIR folder of your own passages, "
                        f"a FrenchMedMCQA folder or a .jsonl/.json/.csv/.tsv/.parquet file of pairs); a hub dataset id "
                        f"has the form org/name")
    if path.is_file() and split not in (None, "all"):
        raise DataError(f"{path} is one file of pairs, with no split named {split!r}: drop the split (--split) to "
                        "hold out a share of its questions (eval_fraction / --eval-fraction), or evaluate every "
                        "pair of a dedicated evaluation file (split='all', --split all)")
    check_data_folder(path)
    if path.is_dir() and is_beir_folder(path):
        return load_beir(path, split=split or "test", limit=limit)
    if path.is_dir():
        split = split or "test"
        if split == "all":  # "all" is a pairs file's whole content; this folder's files are its splits
            found = sorted(f.stem for f in path.glob("*.json"))
            raise DataError(f"{path} is a folder of splits ({', '.join(found) or 'no .json file'}), not one file of "
                            "pairs: --split all evaluates every pair of a pairs file; name a split "
                            "(--split test, dev or train)")
        if not (path / f"{split}.json").is_file():
            raise DataError(f"{path} has no {split}.json: expected a FrenchMedMCQA folder (train/dev/test.json) or "
                            "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
        pairs = load_frenchmedmcqa(path, train_splits=(), eval_split=split).eval
        name = f"{path.name}/{split}"
    elif split == "all":
        pairs = load_qa_dataset(source, question_column=question_column, answer_column=answer_column,
                                eval_fraction=0.0).train
        name = f"{path.name or os.fspath(source)} (all pairs)"
    else:
        local = path.exists() or os.fspath(source).startswith((".", "/", "~"))
        if not local and "/" not in os.fspath(source):
            raise DataError(f"dataset {os.fspath(source)!r} not found: pass a BEIR folder (corpus.jsonl, "
                            "queries.jsonl, qrels/<split>.tsv), a FrenchMedMCQA folder, a pairs file "
                            "(.jsonl/.json/.csv/.tsv/.parquet) or a hub dataset id (org/name)")
        if local and not (isinstance(eval_fraction, (int, float)) and not isinstance(eval_fraction, bool)
                          and 0 < eval_fraction < 1):
            # 0 was "the file is too small", 1 named the Python parameter alone (user tryout)
            raise DataError(f"eval_fraction (--eval-fraction) is the held-out share of the questions of "
                            f"{path.name}, in (0, 1), got {eval_fraction!r}; to score every pair: split='all' "
                            "(--split all)")
        try:
            ds = load_qa_dataset(source, question_column=question_column, answer_column=answer_column,
                                 eval_fraction=eval_fraction, seed=split_seed, eval_split=split)
        except DataError as exc:
            if local or getattr(exc, "hub_dataset", None) is None:
                raise
            # the pairs-file advice alone (the loader's, shared with finetune) left out what an
            # evaluation also reads (user tryout)
            raise DataError(f"{exc}, or a BEIR folder of your own passages and judgements (corpus.jsonl, "
                            "queries.jsonl, qrels/<split>.tsv)") from exc
        pairs = ds.eval
        name = f"{path.name if local else os.fspath(source)} (held out: {ds.split_method})"
    if not pairs:
        raise DataError(f"{os.fspath(source)}: no held-out pair to evaluate on"
                        + (": the file is too small for a held-out share of its questions; evaluate every pair "
                           "(split='all', --split all)" if path.is_file() else ""))
    if limit:
        pairs = pairs[:limit]
    task = IRTask.from_pairs(((p.question, p.answer) for p in pairs), name=name)
    logger.info("evaluation task %s: %d queries, %d documents", name, len(task.queries), len(task.corpus))
    return task


#: The files of a BEIR folder (:func:`load_beir`).
BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels")


def is_split_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds FrenchMedMCQA-style split files (``train.json``, ``dev.json`` or ``test.json``)."""
    path = Path(folder).expanduser()
    return path.is_dir() and any((path / f"{split}.json").is_file() for split in ("train", "dev", "test"))


def check_data_folder(source: str | os.PathLike[str]) -> None:
    """Refuse a folder that is neither a BEIR folder nor a FrenchMedMCQA folder, naming the pairs files
    it holds: a folder holding one .jsonl of pairs got "drop --question-column", then "a folder of
    splits", then "no test.json", each fix leading to the next error (user tryout)."""
    path = Path(source).expanduser()
    if not path.is_dir() or is_beir_folder(path) or is_split_folder(path):
        return
    beir = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels") if (path / name).exists()]
    packed = sorted(p.name for p in path.iterdir() if p.name in ("corpus.jsonl.gz", "queries.jsonl.gz"))
    if beir or packed:  # "pass one file of pairs, e.g. corpus.jsonl" led to a second error (user tryout)
        missing = [name for name in ("corpus.jsonl", "queries.jsonl") if not (path / name).is_file()]
        raise DataError(f"{os.fspath(source)} looks like a BEIR folder but has no {' and no '.join(missing)}"
                        + (f" (only {', '.join(packed)}: decompress it, e.g. gunzip -k "
                           f"{shlex.quote((path / packed[0]).as_posix())})" if packed else "")
                        + ": a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    files = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(PAIRS_SUFFIXES))
    raise DataError(f"{os.fspath(source)} is a folder, but neither a BEIR folder (corpus.jsonl, queries.jsonl, "
                    "qrels/<split>.tsv) nor a FrenchMedMCQA folder (train/dev/test.json)"
                    + (f"; pass one file of pairs, e.g. {shlex.quote((path / files[0]).as_posix())}" if files else
                       "; pass one .jsonl/.json/.csv/.tsv/.parquet file of pairs"))


def is_beir_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a BEIR dataset (``corpus.jsonl`` and ``queries.jsonl``)."""
    path = Path(folder).expanduser()
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def _jsonl_texts(path: Path, what: str, title: bool) -> tuple[dict[str, str], list[str]]:
    """``_id -> text`` of a BEIR ``corpus.jsonl`` / ``queries.jsonl`` (``title`` put before the text)
    and the ids of the records left out as blank (title and text both blank: public BEIR corpora hold
    a few), which a log line names."""
    from medrag.qa.pairs import json_objects

    out: dict[str, str] = {}
    blank: list[str] = []
    with path.open("rb") as lines:  # streamed; a BOM, bad UTF-8, blank lines, bad JSON: json_objects
        for n, row in json_objects(lines, str(path)):
            if "_id" not in row or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{n}: a {what} needs \"_id\" and a \"text\" string, got {sorted(row)}")
            key = str(row["_id"])  # numbers in some BEIR files: the qrels' ids are read as strings
            if key in out:
                raise DataError(f"{path}:{n}: the {what} id {key!r} appears twice")
            head = row.get("title") if title else None
            text = row["text"].strip()
            text = f"{head.strip()} {text}".strip() if isinstance(head, str) and head.strip() else text
            if is_blank(text):
                blank.append(key)
                continue
            out[key] = text
    if blank:
        logger.warning("%s: %d %s(s) with %s left out, e.g. %s", path, len(blank), what,
                       "neither title nor text" if title else "a blank text", blank[:3])
    if not out:
        raise DataError(f"{path} holds no {what}")
    return out, blank


#: Names of the score column that mark a qrels file's first line as a header: BEIR's, and those of
#: other tools and hand-made files (``query-id corpus-id relevance``, ``qid docid rel``).
_SCORE_HEADERS = frozenset({"score", "relevance", "rel", "grade", "label", "judgement", "judgment", "relevant"})


def _qrels(path: Path) -> dict[str, dict[str, float]]:
    """The judgements of a BEIR ``qrels/<split>.tsv``: ``query-id<TAB>corpus-id<TAB>score`` (an optional
    header line) or TREC's ``query-id 0 corpus-id score``."""
    out: dict[str, dict[str, float]] = {}
    where: dict[tuple[str, str], int] = {}  # (query, passage) -> its line, for a conflicting repeat
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    first = next((n for n, line in enumerate(lines, 1) if line.strip()), 0)  # after blank lines (user tryout)
    for n, line in enumerate(lines, 1):
        line = line.strip()  # a trailing tab read as an empty fourth field
        if not line:
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if n == first and fields[-1].strip().lower() in _SCORE_HEADERS:
            continue  # BEIR's header ("score"), or another tool's name for that column (user tryout)
        if len(fields) == 4:  # TREC: qid iteration docid grade
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DataError(f"{path}, line {n}: expected query-id, corpus-id and score (or TREC's 4 columns), "
                            f"got {len(fields)} field(s): {line[:80]!r}")
        qid, did, score = (f.strip() for f in fields)
        try:
            grade = float(score)
        except ValueError:
            header = " (a header line names its last column 'score')" if n == first else ""
            raise DataError(f"{path}, line {n}: the score {score!r} is not a number{header}") from None
        if not math.isfinite(grade):  # a NaN or -inf grade dropped its query as "no relevant passage"
            raise DataError(f"{path}, line {n}: the score {score!r} is not a finite number; grade the passage "
                            "0 (not relevant) or more")
        grade = int(grade) if grade.is_integer() else grade
        earlier = out.setdefault(qid, {}).get(did)
        if earlier is not None and earlier != grade:  # the last one won in silence (2 then 0: the query vanished)
            raise DataError(f"{path}, line {n}: query {qid!r} and passage {did!r} were graded {earlier} on line "
                            f"{where[qid, did]} and {grade} here; keep one judgement per pair")
        out[qid][did] = grade
        where[qid, did] = n
    return out


def load_beir(folder: str | os.PathLike[str], split: str = "test", limit: int | None = None) -> IRTask:
    """The task of a BEIR folder: its judged queries of ``split`` against its whole corpus.

    Args:
        folder: holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: the judgements file (``test``, ``dev``, ``train``...).
        limit: keep the first ``limit`` judged queries (in the qrels file's order).

    Raises:
        DataError: a missing file or split, a malformed line (named with its number), non-UTF-8 text,
            judgements naming unknown query ids, or no query judged relevant to anything.

    Queries judged in ``split`` with no grade > 0 (BEIR keeps grade-0 lines for "judged not
    relevant") are left out, as BEIR and trec_eval do, with a log line; graded judgements weigh NDCG
    (:class:`~medrag.qa.task.IRTask`). A judgement of a passage absent from the corpus (or left out
    as blank) is dropped with a warning; BEIR keeps it in the ideal ranking, so BEIR's NDCG of such a
    query can be a little lower.
    """
    path = Path(folder).expanduser()
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        found = sorted(f.stem for f in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
        raise DataError(f"{path}: no qrels/{split}.tsv (the BEIR judgements of split {split!r}); "
                        + (f"its splits: {', '.join(found)} (--split)" if found else "add a qrels folder with "
                           "<split>.tsv files of query-id, corpus-id, score"))
    corpus, _ = _jsonl_texts(path / "corpus.jsonl", "passage", title=True)
    all_queries, blank = _jsonl_texts(path / "queries.jsonl", "query", title=False)
    judged = _qrels(qrels_file)
    blank_judged = sorted(set(judged) & set(blank))
    if blank_judged:  # "absent from queries.jsonl" contradicted the line that had just left it out (user tryout)
        raise DataError(f"{path / 'queries.jsonl'}: {len(blank_judged)} query(s) judged in {qrels_file.name} have a "
                        f"blank text, e.g. {blank_judged[:3]}: write their text, or remove their judgements")
    unknown = sorted(set(judged) - set(all_queries))
    if unknown:
        raise DataError(f"{qrels_file} judges {len(unknown)} query id(s) absent from queries.jsonl, e.g. {unknown[:3]}")
    # a judgement of a passage absent from corpus.jsonl (public BEIR sets hold a few, e.g. ArguAna:
    # beir-cellar/beir#101) is dropped with a warning: no model can retrieve it
    absent = sorted({d for g in judged.values() for d, v in g.items() if v > 0 and d not in corpus})
    never_relevant = {q for q, g in judged.items() if not any(v > 0 for v in g.values())}
    dropped = sum(1 for g in judged.values() for d, v in g.items() if v > 0 and d not in corpus)
    if absent:
        logger.warning("%s judges %d passage(s) absent from corpus.jsonl (or left out as blank), e.g. %s: those "
                       "judgements are dropped", qrels_file, len(absent), absent[:3])
        judged = {q: {d: v for d, v in g.items() if d in corpus} for q, g in judged.items()}
    relevant = {q: g for q, g in judged.items() if any(v > 0 for v in g.values())}
    # told apart: a query judged relevant to absent passages only was reported as one "with no relevant
    # passage", and the report itself said nothing of the queries left out (user tryout)
    left_out = {"no_relevant_judgement": len(never_relevant),
                "relevant_passages_absent": len(judged) - len(relevant) - len(never_relevant)}
    if never_relevant:
        logger.warning("%s: %d judged quer%s with no passage judged relevant left out (as BEIR and trec_eval do)",
                       qrels_file, len(never_relevant), "y" if len(never_relevant) == 1 else "ies")
    if left_out["relevant_passages_absent"]:
        logger.warning("%s: %d quer%s whose relevant passages are all absent from corpus.jsonl left out", qrels_file,
                       left_out["relevant_passages_absent"], "y" if left_out["relevant_passages_absent"] == 1 else "ies")
    if not relevant:
        raise DataError(f"{qrels_file}: no query has a passage judged relevant (score > 0)")
    qids = list(relevant)[:limit] if limit else list(relevant)
    task = IRTask({q: all_queries[q] for q in qids}, corpus, {q: relevant[q] for q in qids},
                  name=f"{path.name}/{split}",
                  extra={"format": "beir", "judged_queries": len(judged), "left_out_queries": left_out,
                         "dropped_judgements_of_absent_passages": dropped})
    logger.info("evaluation task %s: %d queries, %d documents%s", task.name, len(task.queries), len(task.corpus),
                " (graded)" if task.graded else "")
    return task
