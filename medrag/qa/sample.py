"""The French medical sample corpus shipped with medrag (see ``medrag/data/README.md``).

Each passage was written with one to three questions that it answers. Some questions are
also answered by another passage (two passages on HbA1c, say); those extra judgements are
listed in the file, so an evaluation counts either passage as a right answer instead of
penalising a model that ranks the second one first (graded/set-valued relevance as in
TREC-style qrels; Voorhees & Harman, 2005, *TREC: Experiment and Evaluation in IR*, ch. 3).

File format (JSON lines), version 2 (:data:`FORMAT_VERSION`)::

    {"format": "medrag-sample", "format_version": 2, "sample_version": 2}
    {"passage_id": "lab-038", "topic": "glycémie", "split": "train", "passage": "...",
     "questions": ["...", {"question": "...", "also_relevant": ["cond-006"]}]}

The first line is a header; a question is a string, or an object whose ``also_relevant`` lists
the ids of other passages that answer it as well. Version 1 files (no header, questions as
strings only) still load. :data:`SAMPLE_VERSION` is the version of the shipped content: it is
bumped whenever a passage, a question or a judgement changes, and caches built from the
sample (the ``medrag demo`` store) record it so they rebuild.

Splits are by passage: no passage has questions on both sides. A question may still be
judged relevant to a passage of the other split (an eval question that a train passage also
answers). That judgement is kept where it is sound and dropped where it would leak:

- :meth:`SampleCorpus.task` (evaluation) searches every passage of the sample, so a relevant
  passage of the other split is in the corpus and counts as a right answer;
- :meth:`SampleCorpus.pairs` (training pairs) gives each question only the passage it was
  written for, so no eval passage ever becomes a training positive.

Example::

    >>> from medrag.qa.sample import load_sample_corpus
    >>> corpus = load_sample_corpus()
    >>> len(corpus.passages), len(corpus.pairs("eval")), corpus.version
    (193, 75, 2)
    >>> task = corpus.task("eval")          # an IRTask: 75 queries against all 193 passages
    >>> len(task.queries), len(task.corpus)
    (75, 193)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medrag.errors import DataError, InvalidInputError, UnknownNameError
from medrag.qa.pairs import json_objects, same_text_key
from medrag.qa.task import IRTask

logger = logging.getLogger(__name__)

SAMPLE_FILE = "french_medical_sample.jsonl"
#: Version of the shipped sample's content (passages, questions, judgements); see the changelog
#: in ``medrag/data/README.md``. Version 1 is the first release (no header in the file).
SAMPLE_VERSION = 2
#: Newest file format this loader reads: 1 = no header, questions are strings;
#: 2 = a header line, questions may carry ``also_relevant`` passage ids.
FORMAT_VERSION = 2
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class SamplePassage:
    """One passage with the questions it answers.

    Attributes:
        questions: the questions written for this passage.
        also_relevant: per question (same order), the ids of *other* passages that answer it too
            (empty tuples when none; an empty tuple overall means none for every question).
    """

    passage_id: str
    topic: str
    split: str
    passage: str
    questions: tuple[str, ...]
    also_relevant: tuple[tuple[str, ...], ...] = ()

    def relevant_ids(self, index: int) -> tuple[str, ...]:
        """Every passage that answers question ``index``: this one first, then the others."""
        extra = self.also_relevant[index] if self.also_relevant else ()
        return (self.passage_id, *extra)


@dataclass(frozen=True)
class SampleCorpus:
    """All passages of the sample, in file order.

    Attributes:
        passages: the passages.
        version: the content version the file declares (1 for a file without header).
        format_version: the file format version (1 or 2).
    """

    passages: tuple[SamplePassage, ...]
    version: int = SAMPLE_VERSION
    format_version: int = FORMAT_VERSION

    def pairs(self, split: str | None = None) -> list[tuple[str, str]]:
        """(question, passage) pairs of ``split`` (``"train"``, ``"eval"``, or ``None`` for both).

        One pair per question, with the passage it was written for: training pairs (never a
        passage of the other split). For evaluation use :meth:`task`, which also counts the
        other passages that answer a question.
        """
        _check_split(split, allow_none=True)
        return [(q, p.passage) for p in self.passages if split in (None, p.split) for q in p.questions]

    def judgements(self, split: str | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
        """(query id, question, relevant passage ids) of every question of ``split``, in file order.

        The query id is ``"<passage_id>/q<n>"`` (n from 1), stable across versions as long as the
        question keeps its place.
        """
        _check_split(split, allow_none=True)
        return [(f"{p.passage_id}/q{i + 1}", q, p.relevant_ids(i))
                for p in self.passages if split in (None, p.split) for i, q in enumerate(p.questions)]

    def task(self, split: str = "eval", limit: int | None = None) -> IRTask:
        """The retrieval task of ``split``'s questions against every passage, with all relevant passages.

        Document ids are the passage ids; a question relevant to several passages has them all
        in its qrels (a relevant passage of the other split included: it is in the corpus).

        Args:
            split: ``"eval"`` (the held-out questions) or ``"train"``.
            limit: keep only the first ``limit`` questions (quick runs).
        """
        _check_split(split, allow_none=False)
        rows = self.judgements(split)
        if limit is not None:
            if limit < 1:
                raise InvalidInputError(f"limit must be >= 1, got {limit}")
            rows = rows[:limit]
        queries = {qid: q for qid, q, _ in rows}
        qrels = {qid: set(rel) for qid, _, rel in rows}
        corpus = {p.passage_id: p.passage for p in self.passages}
        return IRTask(queries=queries, corpus=corpus, qrels=qrels, name=f"medrag sample v{self.version} ({split})",
                      extra={"sample_version": self.version})

    def texts(self) -> list[str]:
        """Every passage text."""
        return [p.passage for p in self.passages]

    def ids(self) -> list[str]:
        """Every passage id, in file order."""
        return [p.passage_id for p in self.passages]

    def passage(self, passage_id: str) -> SamplePassage:
        """The passage with this id (:class:`~medrag.errors.UnknownNameError`, a ``KeyError``, if there is none)."""
        for p in self.passages:
            if p.passage_id == passage_id:
                return p
        raise UnknownNameError(f"no passage {passage_id!r} in the sample corpus")


def load_sample_corpus(path: str | os.PathLike[str] | None = None) -> SampleCorpus:
    """Read the sample shipped inside the package, or a file in the same format.

    Args:
        path: a sample file (format 1 or 2); default: the one shipped with medrag.

    Raises:
        DataError: a malformed file: bad JSON, a missing field, a duplicate passage id, a split
            other than train/eval, an empty question, an ``also_relevant`` id that is no passage
            of the file (or the question's own passage), or a format newer than this medrag reads.
    """
    if path is None:
        source = f"medrag/data/{SAMPLE_FILE}"
        text = resources.files("medrag.data").joinpath(SAMPLE_FILE).read_text(encoding="utf-8")
    else:
        source = os.fspath(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot read the sample file {source}: {exc}") from exc
    return _parse(text, source)


def is_sample_header(record: dict) -> bool:
    """Whether a JSON record is the header line of a sample file (format 2), not a passage."""
    return "passage_id" not in record and not {"passage", "questions"} & set(record) \
        and {"format_version", "sample_version"} <= set(record)


def _parse(text: str, source: str) -> SampleCorpus:
    records = list(json_objects(text.splitlines(), source))
    format_version, version = 1, 1
    # a first line without passage_id is the header, unless it reads as a passage (then it is named as one)
    if records and "passage_id" not in records[0][1] and not {"passage", "questions"} & set(records[0][1]):
        lineno, header = records.pop(0)
        format_version, version = header.get("format_version"), header.get("sample_version")
        if not isinstance(format_version, int) or not isinstance(version, int):
            raise DataError(f"{source}:{lineno}: the header needs integer 'format_version' and 'sample_version', "
                            f"got {header!r}")
        if format_version > FORMAT_VERSION:
            raise DataError(f"{source}: sample format version {format_version} is newer than this medrag reads "
                            f"({FORMAT_VERSION}): upgrade medrag")
    passages: list[SamplePassage] = []
    wanted: list[tuple[int, str, str, str]] = []  # (line, passage id, question, id it names)
    for lineno, r in records:
        missing = [k for k in ("passage_id", "topic", "split", "passage", "questions") if k not in r]
        if missing:
            raise DataError(f"{source}:{lineno}: missing field(s) {missing}")
        pid = r["passage_id"]
        if r["split"] not in SPLITS:
            raise DataError(f"{source}:{lineno}: passage {pid} has split {r['split']!r}; expected one of {SPLITS}")
        if not isinstance(r["passage"], str) or not r["passage"].strip():
            raise DataError(f"{source}:{lineno}: passage {pid} has an empty text")
        if not isinstance(r["questions"], list) or not r["questions"]:
            raise DataError(f"{source}:{lineno}: passage {pid} needs a non-empty list of questions")
        questions, also = [], []
        for q in r["questions"]:
            if isinstance(q, dict):
                if format_version < 2:
                    raise DataError(f"{source}:{lineno}: question objects need a format-2 header line "
                                    f'({{"format_version": 2, "sample_version": N}})')
                qtext, extra = q.get("question"), q.get("also_relevant", [])
                if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
                    raise DataError(f"{source}:{lineno}: 'also_relevant' of a question of {pid} must be a list of "
                                    f"passage ids, got {extra!r}")
            else:
                qtext, extra = q, []
            if not isinstance(qtext, str) or not qtext.strip():
                raise DataError(f"{source}:{lineno}: passage {pid} has an empty or non-text question: {q!r}")
            if pid in extra:
                raise DataError(f"{source}:{lineno}: question {qtext!r} lists its own passage {pid} in "
                                "'also_relevant'; list only the other passages that answer it")
            if len(set(extra)) != len(extra):
                raise DataError(f"{source}:{lineno}: question {qtext!r} lists a passage twice in 'also_relevant'")
            wanted.extend((lineno, pid, qtext, x) for x in extra)
            questions.append(qtext)
            also.append(tuple(extra))
        passages.append(SamplePassage(pid, r["topic"], r["split"], r["passage"], tuple(questions),
                                      tuple(also) if any(also) else ()))
    ids = [p.passage_id for p in passages]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(f"{source}: duplicate passage id(s) {duplicates}")
    if not passages:
        raise DataError(f"{source}: no passage")
    known = {p.passage_id: p.split for p in passages}
    unknown = [(lineno, pid, q, x) for lineno, pid, q, x in wanted if x not in known]
    if unknown:
        lineno, pid, q, x = unknown[0]
        raise DataError(f"{source}:{lineno}: question {q!r} of {pid} names {x!r} in 'also_relevant', which is no "
                        f"passage of the file ({len(unknown)} unknown id(s) in all): fix the id or remove it")
    where: dict[str, tuple[str, str]] = {}  # question (NFC) -> (split, passage id) where first seen
    for p in passages:
        for q in p.questions:
            split, first = where.setdefault(same_text_key(q), (p.split, p.passage_id))
            if split != p.split:  # a training pair and an evaluation query at once: a leak
                raise DataError(f"{source}: the question {q!r} is asked of {first} ({split}) and of "
                                f"{p.passage_id} ({p.split}); a question belongs to one split: keep it under "
                                "one passage and list the other in its 'also_relevant'")
    crossing = sum(known[x] != known[pid] for _, pid, _, x in wanted)
    if crossing:
        logger.debug("%s: %d judgement(s) name a passage of the other split (kept for evaluation, never "
                      "used as training pairs)", source, crossing)
    return SampleCorpus(tuple(passages), version=version, format_version=format_version)


def _check_split(split: str | None, allow_none: bool) -> None:
    if split in SPLITS or (allow_none and split is None):
        return
    raise InvalidInputError(f"split must be 'train' or 'eval'{' or None' if allow_none else ''}, got {split!r}")
