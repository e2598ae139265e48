"""Question -> answer pairs for fine-tuning and evaluation: loading, validation, leak-free splits.

Sources:

- a Hugging Face hub dataset id (the seed's data, ``ilyass20/MedAnalyzer``, columns ``anchor`` /
  ``positive``) -- needs network the first time;
- a local file: ``.jsonl``, ``.json`` (a list of objects, or ``{"data": [...]}``), ``.csv`` (comma, semicolon or tab: read from the header), ``.tsv``, ``.parquet``;
- FrenchMedMCQA's original JSON files (:func:`load_frenchmedmcqa`): question -> the text of its
  correct option(s) joined with ``"; "``, its wrong options as hard negatives.

Every loader returns a :class:`QADataset`: the train and eval pairs, what was dropped, and the
evaluation task (held-out distinct questions against every distinct held-out answer).

Example::

    >>> from medrag.qa import load_qa_dataset
    >>> ds = load_qa_dataset("pairs.jsonl", question_column="question", answer_column="answer")
    >>> print(ds.summary())
    >>> task = ds.eval_task()      # a medrag.qa.IRTask

Why split by question: a question asked twice (or with several answers) on both sides of the
split would let the model memorise the test queries; every pair of one question stays on one side.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import statistics
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.errors import DataError

from medrag.qa.task import IRTask

# datasets and pyarrow (heavy) are imported only to read a hub dataset or a parquet file.
if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

#: The seed's training data on the Hugging Face hub (French medical Q/A, ``anchor`` / ``positive``).
DEFAULT_HUB_DATASET = "ilyass20/MedAnalyzer"
#: Defaults shared by ``medrag finetune`` and ``medrag evaluate``, so both hold out the same pairs:
#: the columns of a pairs file, the held-out share of distinct questions and the seed of that split.
QUESTION_COLUMN = "anchor"
ANSWER_COLUMN = "positive"
EVAL_FRACTION = 0.1
#: The training splits of a FrenchMedMCQA folder by default (and of ``medrag finetune``'s
#: ``train_splits``): train and dev. The validation suite's FrenchMedMCQA val part is ``dev.json``:
#: a model to be chosen on the suite trains on ``("train",)``.
DEFAULT_TRAIN_SPLITS: tuple[str, ...] = ("train", "dev")
SPLIT_SEED = 42
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class QAPair:
    """One training example: a question, a passage that answers it, optional hard negatives
    (passages that look relevant but do not answer it)."""

    question: str
    answer: str
    negatives: tuple[str, ...] = ()


@dataclass
class DataStats:
    """What loading kept and dropped."""

    rows: int = 0
    empty_dropped: int = 0
    duplicates_dropped: int = 0

    def merge(self, other: "DataStats") -> "DataStats":
        return DataStats(self.rows + other.rows, self.empty_dropped + other.empty_dropped,
                         self.duplicates_dropped + other.duplicates_dropped)


@dataclass
class QADataset:
    """Train and eval pairs plus provenance.

    Attributes:
        train: the training pairs.
        eval: the held-out pairs (no question of ``eval`` appears in ``train``).
        name: a label (source path or hub id).
        stats: rows read, empty rows and duplicate pairs dropped.
        split_method: how train/eval were obtained (``"dataset splits"``, ``"by question, 10%"``...).
        eval_name: the label of the eval pairs' own source (a separate eval file); None: ``name``'s.
        loaded_from: the data settings of the fine-tuning config it was read from
            (``finetune.data.load_dataset_from_config``), so a run given it knows its config describes
            it; None for a dataset built otherwise.
    """

    train: list[QAPair]
    eval: list[QAPair]
    name: str = "dataset"
    stats: DataStats = field(default_factory=DataStats)
    split_method: str = ""
    eval_name: str | None = None
    loaded_from: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def eval_task(self, name: str | None = None) -> "IRTask":
        """The evaluation task: distinct held-out questions as queries, distinct held-out answers
        as the corpus, each question relevant to its own answer(s)."""
        if not self.eval:
            raise DataError(f"{self.name}: no evaluation pairs (set an eval split or eval_fraction > 0)")
        # a separate eval file is named, not the training file (user tryout: "train.jsonl (eval)")
        return IRTask.from_pairs(((p.question, p.answer) for p in self.eval),
                                 name=name or self.eval_name or f"{self.name} (eval)")

    def has_negatives(self) -> bool:
        return any(p.negatives for p in self.train)

    def to_hf_dataset(self, split: str = "train", num_negatives: int = 0, seed: int = 42) -> "Dataset":
        """A ``datasets.Dataset`` with columns ``anchor``, ``positive`` and ``negative_1..k``.

        With ``num_negatives=k``, each row carries exactly k hard negatives (the loss needs a fixed
        column count): its own first k (in a seeded shuffle); a row with fewer repeats its own, and
        a row with none gets answers of other training questions drawn at random (seeded), which
        is what in-batch negatives would give it anyway.
        """
        from datasets import Dataset

        pairs = self.train if split == "train" else self.eval
        if not pairs:
            raise DataError(f"{self.name}: the {split} split is empty")
        data: dict[str, list[str]] = {"anchor": [p.question for p in pairs], "positive": [p.answer for p in pairs]}
        if num_negatives > 0:
            rng = random.Random(seed)
            answers = sorted({p.answer for p in pairs})
            own_answers: dict[str, set[str]] = {}
            for p in pairs:
                own_answers.setdefault(p.question, set()).add(p.answer)
            cols: list[list[str]] = [[] for _ in range(num_negatives)]
            for p in pairs:
                own = list(p.negatives)
                rng.shuffle(own)
                if not own:  # answers of other questions: another answer of this one is a positive, not a negative
                    others = [t for t in answers if t not in own_answers[p.question]] or answers
                    own = [rng.choice(others) for _ in range(num_negatives)]
                chosen = [own[i % len(own)] for i in range(num_negatives)]
                for i, text in enumerate(chosen):
                    cols[i].append(text)
            for i, col in enumerate(cols, 1):
                data[f"negative_{i}"] = col
        return Dataset.from_dict(data)

    def summary(self) -> str:
        """A few lines: counts, lengths, what was dropped, how the split was made."""
        # with a separate eval file, "dataset: train.jsonl / rows read: 338" counted its 118 rows as the
        # training file's 220 (user tryout)
        lines = [f"dataset: {self.name}" + (f" + eval file {self.eval_name}" if self.eval_name else "")]
        s = self.stats
        lines.append(f"  rows read: {s.rows}{' (both files)' if self.eval_name else ''}; empty dropped: "
                     f"{s.empty_dropped}; duplicate pairs dropped: {s.duplicates_dropped}")
        lines.append(f"  split: {self.split_method}")
        for label, pairs in (("train", self.train), ("eval", self.eval)):
            if not pairs:
                lines.append(f"  {label}: 0 pairs")
                continue
            q_len = [len(p.question) for p in pairs]
            a_len = [len(p.answer) for p in pairs]
            n_neg = sum(len(p.negatives) for p in pairs)
            lines.append(
                f"  {label}: {len(pairs)} pairs, {len({p.question for p in pairs})} distinct questions, "
                f"{len({p.answer for p in pairs})} distinct answers, {n_neg} hard negatives; "
                f"median length (chars) question {statistics.median(q_len):.0f}, answer {statistics.median(a_len):.0f}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- public loaders


def load_qa_dataset(
    source: str | os.PathLike[str] = DEFAULT_HUB_DATASET,
    *,
    question_column: str = QUESTION_COLUMN,
    answer_column: str = ANSWER_COLUMN,
    negatives_column: str | None = None,
    eval_source: str | os.PathLike[str] | None = None,
    eval_fraction: float = EVAL_FRACTION,
    seed: int = SPLIT_SEED,
    train_split: str | Sequence[str] = "train",
    eval_split: str | None = None,
    optional_splits: Sequence[str] = (),
) -> QADataset:
    """Load question -> answer pairs from a local file or a hub dataset, validate, split.

    Args:
        source: a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.tsv`` / ``.parquet`` file, or a hub dataset id.
        question_column / answer_column: the columns holding the question and the answer passage.
        negatives_column: optional column of hard negatives (a list of texts, or one text).
        eval_source: a separate file or hub id for evaluation; when given, nothing is split off ``source``.
        eval_fraction: share of *distinct questions* held out when there is no eval source or split.
        seed: seeds the split (the same seed and data give the same split).
        train_split / eval_split: split names of a hub dataset (``train_split``: one, or several
            trained on together); ``eval_split=None`` uses ``test``, ``validation`` or ``dev`` when
            the dataset has one that is not a training split, else splits the training rows by question.
        optional_splits: training splits skipped when the source lacks them (a file has no splits;
            ``medrag finetune``'s default ``train_splits`` name FrenchMedMCQA's ``dev``), where any
            other missing split is an error.

    Raises:
        DataError: unreadable file (path and line), missing columns (naming those found), no usable rows.
    """
    name = os.fspath(source)
    if question_column == answer_column or negatives_column in (question_column, answer_column):
        # each question then "retrieved" itself: every metric 1.0 at every size, in silence (user tryout)
        raise DataError(f"the question, answer{' and negatives' if negatives_column else ''} columns must differ "
                        f"(question {question_column!r}, answer {answer_column!r}"
                        f"{f', negatives {negatives_column!r}' if negatives_column else ''}): name each column "
                        "once (--question-column, --answer-column)")
    kw = dict(question_column=question_column, answer_column=answer_column, negatives_column=negatives_column)
    if eval_source is not None:
        train_rows, _ = _read_source(source, train_split, None, optional_splits)
        try:
            eval_rows, _ = _read_source(eval_source, eval_split or "train", None)
        except DataError as exc:  # "data file nope.jsonl does not exist" did not say it was the eval file (user tryout)
            raise DataError(f"eval file: {exc}") from None
        train, s1 = _to_pairs(train_rows, name, **kw)
        evals, s2 = _to_pairs(eval_rows, os.fspath(eval_source), **kw)
        ds = QADataset(train, evals, name, s1.merge(s2), f"separate eval source {os.fspath(eval_source)}",
                       eval_name=os.fspath(eval_source))
    else:
        train_rows, eval_rows = _read_source(source, train_split, eval_split, optional_splits)
        if eval_rows is not None:
            train, s1 = _to_pairs(train_rows, name, **kw)
            evals, s2 = _to_pairs(eval_rows, name, **kw)
            ds = QADataset(train, evals, name, s1.merge(s2), "the dataset's own splits")
        else:
            pairs, stats = _to_pairs(train_rows, name, **kw)
            train, evals = split_by_question(pairs, eval_fraction, seed)
            if evals and not train:  # "no training pairs left after validation" read as a data defect
                raise DataError(f"{name}: eval_fraction {eval_fraction:g} holds out every one of its "
                                f"{len({p.question for p in evals})} question(s), leaving none to train on: "
                                "lower it (--eval-fraction)")
            ds = QADataset(train, evals, name, stats, f"by question, {eval_fraction:.0%} held out (seed {seed})")
    _drop_leaked(ds)
    if not ds.train:
        raise DataError(f"{name}: no training pairs left after validation")
    _warn_answers_repeating_questions(ds, question_column, answer_column)
    logger.info("%s", ds.summary())
    return ds


def _warn_answers_repeating_questions(ds: QADataset, question_column: str, answer_column: str) -> None:
    """Warn when half the pairs or more have an answer that repeats its question: a file whose answer
    column holds the questions again (an export mix-up) scored 1.0 at every size, each question
    finding itself, and trains nothing (user tryout; the same column named twice is refused)."""
    pairs = [*ds.train, *ds.eval]
    same = sum(same_text_key(p.question) == same_text_key(p.answer) for p in pairs)
    if pairs and same * 2 >= len(pairs):
        logger.warning("%s: %d of %d pairs have an answer that repeats its question (columns %r and %r): each "
                       "question finds itself (every metric near 1.0) and training learns nothing; check that "
                       "the answer column holds the answer passages", ds.name, same, len(pairs), question_column,
                       answer_column)


def load_frenchmedmcqa(
    folder: str | os.PathLike[str],
    train_splits: Sequence[str] = DEFAULT_TRAIN_SPLITS,
    eval_split: str | None = "test",
) -> QADataset:
    """FrenchMedMCQA's original files as retrieval pairs (Labrak et al., 2023).

    Each record (``question``, ``answers`` {a..e: text}, ``correct_answers`` [letters]) gives one
    pair: the question -> the text(s) of its correct option(s), sorted by letter and joined with
    ``"; "``; its wrong options become the pair's hard negatives. About 10% of the questions ask
    for the *false* statement, so their "answer" is a false fact: kept, as in the upstream data.

    Args:
        folder: the folder holding ``train.json``, ``dev.json``, ``test.json``.
        train_splits: files used for training.
        eval_split: the file held out for evaluation (``None``: no eval pairs).

    Example::

        >>> ds = load_frenchmedmcqa("../shared/data/frenchmedmcqa")
        >>> task = ds.eval_task()
        >>> len(task.queries), len(task.corpus)
        (620, 618)
    """
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"{folder} is a file, not a FrenchMedMCQA folder (train/dev/test.json); for a pairs file "
                        "use data_format pairs (--data-format pairs) or auto")
    if not folder.is_dir():
        raise DataError(f"FrenchMedMCQA folder {folder} does not exist")
    train: list[QAPair] = []
    stats = DataStats()
    for split in train_splits:
        pairs, s = _mcqa_pairs(folder / f"{split}.json")
        train += pairs
        stats = stats.merge(s)
    evals: list[QAPair] = []
    if eval_split:
        evals, s = _mcqa_pairs(folder / f"{eval_split}.json")
        stats = stats.merge(s)
    train, extra = _dedupe(train)
    stats.duplicates_dropped += extra
    ds = QADataset(train, evals, f"frenchmedmcqa[{'+'.join(train_splits)} -> {eval_split}]", stats,
                   f"upstream files: train {'+'.join(train_splits)}, eval {eval_split}")
    _drop_leaked(ds)
    if train_splits and not ds.train:
        overlap = [t for t in train_splits if t == eval_split]
        raise DataError(f"FrenchMedMCQA {folder}: no training pair left"
                        + (f": the eval split {eval_split!r} is also a training split, and its questions are kept "
                           "out of training (pass train splits other than the eval split)" if overlap else ""))
    logger.info("%s", ds.summary())
    return ds


def split_by_question(pairs: Sequence[QAPair], eval_fraction: float, seed: int = 42) -> tuple[list[QAPair], list[QAPair]]:
    """Hold out ``eval_fraction`` of the distinct questions, with all of their pairs.

    The choice depends only on the question texts and the seed (a hash ranks the questions, the
    first ``eval_fraction`` of them are held out), so it does not change when rows are reordered or
    repeated. Spellings of one question in NFC and NFD (:func:`same_text_key`) are one question,
    ranked by its first spelling in sorted order: a question written one way keeps its rank.
    Adding questions changes it: a new question can rank among the held-out ones and push one out, and the count held out grows with the file. A model trained on a file's training
    split must be scored on that same file's held-out split, not on the held-out split of a grown
    file (which may hold questions it trained on): keep the file, or an ``eval_data`` file apart.
    """
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 <= eval_fraction < 1:
        raise DataError(f"eval_fraction must be a number in [0, 1), got {eval_fraction!r}")
    keys = [same_text_key(p.question) for p in pairs]
    spellings: dict[str, set[str]] = {}
    for key, p in zip(keys, pairs):
        spellings.setdefault(key, set()).add(p.question)
    # ranked by the hash of a question's first spelling in sorted order: a question written one way only
    # (every file before December 5's NFC keys) keeps its rank, and so its side of the split
    questions = sorted(spellings, key=lambda q: hashlib.sha256(f"{seed}\x00{min(spellings[q])}".encode()).hexdigest())
    n_eval = round(len(questions) * eval_fraction)
    if eval_fraction > 0 and n_eval == 0 and len(questions) > 1:
        n_eval = 1
    held = set(questions[:n_eval])
    return ([p for key, p in zip(keys, pairs) if key not in held],
            [p for key, p in zip(keys, pairs) if key in held])


#: The key of a fine-tuning run's ``training_info.json`` (and of an adapter it exported) naming the
#: dataset passed to it in Python (``MatryoshkaFinetuner(cfg, dataset=...)``) instead of the data its
#: config names: its training questions cannot be told from any file, which ``medrag evaluate`` says.
DATA_GIVEN_KEY = "data_given"


def data_file_record(source: str | os.PathLike[str]) -> dict[str, str] | None:
    """The absolute path and sha256 of the local pairs file ``source``; None for a hub id or a folder.

    A fine-tuning run records it (``training_info.json``'s ``data_file``) so that ``medrag evaluate``
    knows the file it held questions out of when it is named from another folder, by another
    relative path, or copied: the config keeps ``data`` as it was typed.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "sha256": digest.hexdigest()}


def csv_delimiter(header: str) -> str:
    """The delimiter that splits the header line into the most columns: ``","``, else ``";"`` (French
    Excel writes ";"-separated CSV, and a column name may hold a comma: ``question;"note, libre"``),
    else a tab (a spreadsheet's "tab-separated" export, often saved as ``.csv``: it read as one column).

    >>> csv_delimiter('question;answer;"note, libre"'), csv_delimiter("question,answer"), csv_delimiter("text")
    (';', ',', ',')
    >>> csv_delimiter("question" + chr(9) + "answer") == chr(9)  # a tab
    True
    """
    def columns(delimiter: str) -> int:
        return len(next(csv.reader([header.rstrip("\r\n")], delimiter=delimiter), []))

    return max((",", ";", "\t"), key=columns)  # the first of equals: "," for a one-column header


def json_objects(lines: Iterable[str] | Iterable[bytes], source: str | os.PathLike[str]
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines text, in order. Lines may be
    bytes (a file opened in binary): each is decoded as UTF-8, so a record that is not UTF-8 is
    named by its line. A BOM before the first line is dropped, bytes or text.

    The one JSON Lines parser of the data layer (pairs files, the sample, the French medical text,
    ``medrag index``), so every reader names the file and line of a bad record the same way.

    Raises:
        DataError: a line that is not valid JSON, or not a JSON object.

    Example::

        >>> [obj for _, obj in json_objects(['{"a": 1}', '', '{"a": 2}'], "x.jsonl")]
        [{'a': 1}, {'a': 2}]
    """
    for lineno, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{source}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line); "
                                f"{UTF8_ADVICE}") from None
        elif lineno == 1:  # a text file read as "utf-8" keeps a BOM (Windows tools write one)
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            # the column too: "Invalid control character at" said nowhere where (user tryout)
            raise DataError(f"{source}:{lineno}: not valid JSON ({exc.msg}: column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


#: Rows of a Parquet file converted at a time by :func:`iter_records`.
PARQUET_BATCH_ROWS = 4096


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.tsv`` / ``.parquet`` file as dicts.

    Raises:
        DataError: missing file, unknown suffix, or a line/row that cannot be parsed (path and line).
    """
    return list(iter_records(path))


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """:func:`read_records`, one row at a time: JSONL and CSV are streamed and Parquet is read a
    batch of rows at a time, so the first rows cost no read of the whole file (``medrag index`` reads
    the first record of a source to check it before the model loads). A row that cannot be parsed
    raises when it is reached.

    Raises:
        DataError: as :func:`read_records`.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"data file {path} is a folder; pass one .jsonl/.json/.csv/.tsv/.parquet file")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    try:
        if suffix == ".jsonl":
            with path.open(encoding="utf-8-sig") as fh:  # -sig: Excel and Windows tools write a BOM
                for _, obj in json_objects(fh, path):
                    yield obj
        elif suffix == ".json":
            text = path.read_text(encoding="utf-8-sig")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}: column {exc.colno})") from None
            if isinstance(obj, dict) and isinstance(obj.get("data"), list):
                obj = obj["data"]
            if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
                raise DataError(f"{path}: expected a JSON list of objects (or {{\"data\": [...]}})")
            yield from obj
        elif suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = fh.readline()
                fh.seek(0)
                # strict: a stray quote is an error, not every following row swallowed into one field
                # a .tsv is tab-separated whatever its header (a one-column header read as commas: review)
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else csv_delimiter(header), strict=True)
                _allow_long_csv_fields()
                n = 0
                try:
                    names = reader.fieldnames or []
                    repeated = sorted({n for n in names if names.count(n) > 1})
                    if repeated:  # DictReader would keep the last column of each name, in silence
                        raise DataError(f"{path}:1: the header names the column(s) {', '.join(map(repr, repeated))} "
                                        "more than once; rename them so that each field has one column")
                    for row in reader:
                        if None in row:
                            raise DataError(f"{path}:{reader.line_num}: more fields than the header's "
                                            f"{len(names)} columns")
                        if None in row.values():  # DictReader's filler for missing cells (an empty cell is "")
                            # a file without a header row: its first row was read as the column names
                            shown = ", ".join(repr(x[:40]) for x in names[:4])
                            raise DataError(f"{path}:{reader.line_num}: fewer fields than the header's {len(names)} "
                                            f"columns ({sum(v is not None for v in row.values())}); a row may "
                                            "leave a cell empty, not out. The first line is read as the header "
                                            f"(columns {shown}): a file without one needs a first line naming the "
                                            "columns, e.g. question;answer")
                        n += 1
                        yield row
                except csv.Error as exc:
                    hint = (" (a quoted field is never closed: check the quotes from the last row read on)"
                            if "end of data" in str(exc) else "")
                    raise DataError(f"{path}:{reader.line_num}: {exc}{hint}; {n} rows read before it") from None
        else:  # .parquet
            import pyarrow.parquet as pq

            try:
                batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)
                for batch in batches:
                    yield from batch.to_pylist()
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
                raise DataError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except OSError as exc:  # permissions, I/O errors: a one-line error, not a traceback
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None



# --------------------------------------------------------------------------- internals


#: What to do with a data file that is not UTF-8 (most often a French Windows or Excel export, cp1252).
UTF8_ADVICE = ('save it as UTF-8 (a Windows or Excel export: iconv -f cp1252 -t utf-8 FILE > FILE_utf8, or '
               'Excel\'s "CSV UTF-8" format)')


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    """The error for a file that is not UTF-8, naming the line and the byte in the *file* (a text
    reader decodes in blocks: ``exc.start`` counts from the start of the block it was decoding)."""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as whole:  # decoded at once: the offset is the file's
        line = data.count(b"\n", 0, whole.start) + 1
        return DataError(f"{path}:{line}: not UTF-8 text ({whole.reason} at byte {whole.start} of the file); "
                         f"{UTF8_ADVICE}")
    except OSError:
        pass
    return DataError(f"{path}: not UTF-8 text ({exc.reason}); {UTF8_ADVICE}")


def _allow_long_csv_fields() -> None:
    """Lift the csv module's 131,072-character field limit (a whole document in one cell is a record,
    as it is in JSONL); the largest value the platform's C long takes."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _read_source(source: str | os.PathLike[str], train_split: str | Sequence[str], eval_split: str | None,
                 optional_splits: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Rows of the training split(s), and of an eval split when the source has one (else None)."""
    splits = [train_split] if isinstance(train_split, str) else list(train_split) or ["train"]
    s = os.fspath(source)
    if not s.strip():
        raise DataError("empty data path: pass a .jsonl/.json/.csv/.tsv/.parquet file or a hub dataset id")
    p = Path(s).expanduser()
    if p.exists() or p.suffix.lower() in LOCAL_SUFFIXES or s.startswith((".", "/", "~")):
        rows = read_records(p)  # a missing file says so first
        named = [name for name in (*[t for t in splits if t != "train" and t not in optional_splits], eval_split)
                 if name]
        if named:  # a file has no named splits: the names were ignored, and the user never knew
            raise DataError(f"{p} is one file of pairs, with no split named {named[0]!r}: drop the split option "
                            "(a share of the questions is held out: eval_fraction / --eval-fraction), pass a "
                            "separate evaluation file (eval_data / --eval-data), or evaluate every pair "
                            "(medrag evaluate --split all)")
        return rows, None
    return _read_hub(s, splits, eval_split, optional_splits)


def _unloadable(dataset_id: str, message: str) -> DataError:
    """The error for a hub dataset that cannot be loaded; its ``hub_dataset`` attribute names the id, so
    a caller that reads other formats too adds them to the advice (``medrag evaluate``: a BEIR folder)
    without matching the message's words."""
    error = DataError(message)
    error.hub_dataset = dataset_id  # type: ignore[attr-defined]
    return error


def _read_hub(dataset_id: str, train_splits: Sequence[str], eval_split: str | None,
              optional_splits: Sequence[str] = ()):
    from medrag.models import hub_unreachable

    unreachable = hub_unreachable()
    if unreachable and not _dataset_cached(dataset_id):  # otherwise ~30 s of retried requests, then this error
        raise _unloadable(dataset_id, f"cannot load hub dataset {dataset_id!r}: the hub cannot be reached "
                                      f"({unreachable}) and the dataset is not in the HF cache; without network, pass "
                                      "a local .jsonl/.json/.csv/.tsv/.parquet file instead")
    try:
        from datasets import load_dataset

        dd = load_dataset(dataset_id)
    except Exception as exc:  # noqa: BLE001 - network, missing repo, offline mode: one clear message
        raise _unloadable(dataset_id, f"cannot load hub dataset {dataset_id!r} ({type(exc).__name__}: {exc}); without "
                                      "network, pass a local .jsonl/.json/.csv/.tsv/.parquet file instead") from exc
    missing = [t for t in train_splits if t not in dd and t not in optional_splits]
    if missing:
        raise DataError(f"hub dataset {dataset_id!r} has no split {missing[0]!r}; splits: {sorted(dd)}")
    used = [t for t in train_splits if t in dd]  # every one trained on (only the first was, in silence)
    if not used:
        raise DataError(f"hub dataset {dataset_id!r} has none of the training splits {list(train_splits)}; "
                        f"splits: {sorted(dd)}")
    if eval_split is None:  # never a split trained on (dev was the eval split while listed for training)
        eval_split = next((s for s in ("test", "validation", "dev") if s in dd and s not in used), None)
    elif eval_split not in dd:
        raise DataError(f"hub dataset {dataset_id!r} has no split {eval_split!r}; splits: {sorted(dd)}")
    elif eval_split in used:
        raise DataError(f"hub dataset {dataset_id!r}: the split {eval_split!r} is both trained on and evaluated on; "
                        "drop it from the training splits or pass another eval split")
    return [row for t in used for row in dd[t]], (list(dd[eval_split]) if eval_split else None)


def _dataset_cached(dataset_id: str) -> bool:
    """Whether the HF hub cache or the datasets cache holds ``dataset_id`` (a download made earlier)."""
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"datasets--{dataset_id.replace('/', '--')}"
    datasets_home = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
    return hub.is_dir() or (datasets_home / dataset_id.replace("/", "___")).is_dir()


def _to_pairs(rows: Iterable[dict[str, Any]], name: str, *, question_column: str, answer_column: str,
              negatives_column: str | None) -> tuple[list[QAPair], DataStats]:
    rows = list(rows)
    if not rows:
        raise DataError(f"{name}: no rows")
    found: list[str] = []
    for r in rows:
        found += [k for k in r if k not in found]
    wanted = [question_column, answer_column] + ([negatives_column] if negatives_column else [])
    missing = [c for c in wanted if c not in found]
    if missing:
        if {"question", "answers", "correct_answers"} <= set(found) and Path(str(name)).is_file():  # FrenchMedMCQA's
            raise DataError(f"{name} is a FrenchMedMCQA file (question, answers, correct_answers): pass its folder "
                            f"({Path(str(name)).parent}, holding train.json, dev.json and test.json), whose "
                            "questions are paired with their correct options")
        raise DataError(f"{name}: missing column(s) {missing}; columns found: {found}. "
                        "Map yours with question_column= / answer_column= (CLI: --question-column ...)")
    # rows naming a column otherwise (half a JSONL file "question", half "anchor") were dropped as "empty"
    lacking = [(i, c) for i, r in enumerate(rows, 1) for c in (question_column, answer_column) if c not in r]
    if lacking:
        i, column = lacking[0]
        others = len({j for j, _ in lacking}) - 1  # "nor do 0 other row(s)" read oddly (user tryout)
        raise DataError(f"{name}: row {i} (records counted from 1, blank lines left out) has no {column!r} key "
                        f"(its keys: {', '.join(map(str, rows[i - 1]))})"
                        + (f", nor do {others} other row(s): the rows name their columns differently; give every "
                           "row the same keys" if others else
                           "; every other row has it: fix that row or remove it"))
    stats = DataStats(rows=len(rows))
    pairs: list[QAPair] = []
    empty_rows: list[int] = []  # the first few, named: "dropped 3 row(s)" said not which (user tryout)
    for i, r in enumerate(rows, 1):
        for column in (question_column, answer_column):
            value = r.get(column)
            if not (value is None or isinstance(value, str) or (isinstance(value, float) and value != value)):
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise DataError(f"{name}: row {i}: {column} is {type(value).__name__} {shown}, not text; every "
                                "question and answer must be a string (quote numbers)")
        q, a = _text(r.get(question_column)), _text(r.get(answer_column))
        if not q or not a:
            stats.empty_dropped += 1
            if len(empty_rows) < 5:
                empty_rows.append(i)
            continue
        negs: tuple[str, ...] = ()
        if negatives_column:
            raw = r.get(negatives_column)
            items = raw if isinstance(raw, (list, tuple)) else ([] if raw is None else _split_negatives(raw))
            bad = next((x for x in items if not (x is None or isinstance(x, str) or (isinstance(x, float) and x != x))),
                       None)
            if bad is not None:  # 7, {"id": 3}, True became the training texts '7', "{'id': 3}", 'True'
                raise DataError(f"{name}: row {i}: {negatives_column} holds {type(bad).__name__} {bad!r:.40}, not text; "
                                "hard negatives are texts")
            negs = tuple(dict.fromkeys(t for t in (_text(x) for x in items) if t and t != a))
        pairs.append(QAPair(q, a, negs))
    pairs, dups = _dedupe(pairs)
    stats.duplicates_dropped = dups
    if stats.empty_dropped:
        logger.warning("%s: dropped %d row(s) with an empty question or answer (row%s %s%s; rows are records counted "
                       "from 1, blank lines left out)", name, stats.empty_dropped, "s" if len(empty_rows) > 1 else "",
                       ", ".join(map(str, empty_rows)), ", ..." if stats.empty_dropped > len(empty_rows) else "")
    if dups:
        logger.info("%s: dropped %d exact duplicate pair(s)", name, dups)
    if not pairs:
        raise DataError(f"{name}: every one of the {len(rows)} rows has an empty question or answer")
    return pairs, stats


def _split_negatives(raw: Any) -> list[Any]:
    if isinstance(raw, str) and raw.strip().startswith("["):
        try:
            val = json.loads(raw)
            if isinstance(val, list):
                return val
        except json.JSONDecodeError:
            pass
    return [raw]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from CSV/parquet
        return ""
    return str(value).strip()


def same_text_key(text: str) -> str:
    """The key under which two spellings of one text are the same: its NFC form (an accented
    question pasted from macOS is often NFD, which compares unequal to the NFC one typed elsewhere).

    The texts themselves are kept as written (the tokenizers normalise them); duplicates, the
    held-out split and the leak check compare these keys.

    >>> same_text_key("e\u0301") == same_text_key("\u00e9")
    True
    """
    return unicodedata.normalize("NFC", text)


def _dedupe(pairs: list[QAPair]) -> tuple[list[QAPair], int]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in pairs:
        key = (same_text_key(p.question), same_text_key(p.answer))
        if key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out, len(pairs) - len(out)


def _drop_leaked(ds: QADataset) -> None:
    """Remove from train the pairs whose question is also an eval question (no leakage)."""
    held = {same_text_key(p.question) for p in ds.eval}
    before = len(ds.train)
    ds.train = [p for p in ds.train if same_text_key(p.question) not in held]
    if len(ds.train) != before:
        ds.split_method += f"; {before - len(ds.train)} train pair(s) whose question is in eval removed"
        logger.warning("%s: removed %d training pair(s) whose question also appears in the eval split",
                       ds.name, before - len(ds.train))


def is_frenchmedmcqa_folder(source: str | os.PathLike[str]) -> bool:
    p = Path(source).expanduser()
    return p.is_dir() and (p / "train.json").is_file() and (p / "test.json").is_file()


def _mcqa_pairs(path: Path) -> tuple[list[QAPair], DataStats]:
    rows = read_records(path)
    stats = DataStats(rows=len(rows))
    pairs = []
    for i, r in enumerate(rows):
        try:
            options = {str(k): _text(v) for k, v in dict(r["answers"]).items()}
            correct = sorted({str(c) for c in r["correct_answers"]})
            question = _text(r["question"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: record {i} is not a FrenchMedMCQA record (needs question, answers, "
                            f"correct_answers; found {sorted(r)}): {exc!r}") from None
        unknown = [c for c in correct if c not in options]
        if unknown:
            raise DataError(f"{path}: record {i} lists correct answer(s) {unknown} absent from its options {sorted(options)}")
        answer = "; ".join(options[c] for c in correct if options[c])
        if not question or not answer:
            stats.empty_dropped += 1
            continue
        negatives = tuple(dict.fromkeys(t for k, t in sorted(options.items()) if k not in correct and t and t != answer))
        pairs.append(QAPair(question, answer, negatives))
    pairs, dups = _dedupe(pairs)
    stats.duplicates_dropped = dups
    return pairs, stats
