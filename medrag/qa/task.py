"""The data of one retrieval evaluation: queries, a corpus, and which documents answer which query.

Example::

    >>> from medrag.qa.task import IRTask
    >>> task = IRTask.from_pairs([("Qu'est-ce que la TSH ?", "La TSH est une hormone hypophysaire."),
    ...                           ("Que mesure la CRP ?", "La CRP mesure l'inflammation.")])
    >>> len(task.queries), len(task.corpus)
    (2, 2)
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medrag.errors import DataError
from medrag.text_checks import is_blank


@dataclass
class IRTask:
    """Queries, corpus and relevance judgements, binary or graded.

    Attributes:
        queries: query id -> text.
        corpus: document id -> text.
        qrels: query id -> ids of the relevant documents. Given as sets, lists or tuples of ids
            (a repeated id counts once: grade 1) or as grades, BEIR / TREC style (``{"d1": 2, "d2": 1,
            "d3": 0}``: a grade <= 0 is not relevant); held as sets of the relevant ids.
        name: a label for reports.
        grades: (computed) query id -> relevant document id -> grade (1 for a set). NDCG weighs each
            hit by its grade (linear gains, as trec_eval, pytrec_eval, BEIR and ranx do), so a
            highly relevant passage ranked first scores more than a partly relevant one; MRR, MAP and
            recall count every grade > 0 as relevant. A copy of a graded task passes ``task.grades``
            as ``qrels`` (``task.qrels`` holds the ids only).

    Raises:
        DataError: no queries, an empty corpus, judgements of a query id not in ``queries`` or of a
            document id not in ``corpus``, a grade that is not a finite number, or a query without a
            relevant document.
    """

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, set[str]]
    name: str = "task"
    extra: dict = field(default_factory=dict)
    grades: dict[str, dict[str, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.queries:
            raise DataError(f"evaluation task {self.name!r} has no queries")
        if not self.corpus:
            raise DataError(f"evaluation task {self.name!r} has an empty corpus")
        for side, mapping in (("query", self.queries), ("document", self.corpus)):
            if not isinstance(mapping, dict):
                raise DataError(f"evaluation task {self.name!r}: the {side} texts must be a dict of id -> text, got "
                                f"{type(mapping).__name__}")
            # a number id (a spreadsheet's) never matched the judgements once the ranking made it a string:
            # NDCG 0 in silence; a number or None text failed deep in the cache
            bad_id = next((i for i in mapping if not isinstance(i, str)), None)
            if bad_id is not None:
                raise DataError(f"evaluation task {self.name!r}: {side} ids must be strings, got {bad_id!r} "
                                f"({type(bad_id).__name__}); convert them, e.g. {{str(k): v for k, v in ...}}")
            bad = next((i for i, text in mapping.items() if not isinstance(text, str)), None)
            if bad is not None:
                raise DataError(f"evaluation task {self.name!r}: the text of {side} {bad!r} is "
                                f"{type(mapping[bad]).__name__}, not a string")
            # an empty text failed at the first encode as "text at index N is empty", naming no id
            blank = next((i for i, text in mapping.items() if is_blank(text)), None)
            if blank is not None:
                raise DataError(f"evaluation task {self.name!r}: the text of {side} {blank!r} is empty; "
                                f"give it a text or leave it out")
        self.grades = _relevant_grades(self.qrels, self.queries)
        self.qrels = {q: set(g) for q, g in self.grades.items()}
        missing = [q for q in self.queries if not self.qrels.get(q)]
        if missing:
            raise DataError(f"{len(missing)} queries have no relevant document, e.g. {missing[:3]}: leave them out "
                            "of queries (trec_eval and BEIR skip them), or judge a relevant document for each")
        unknown = {d for docs in self.qrels.values() for d in docs} - set(self.corpus)
        if unknown:
            raise DataError(f"relevance judgements name {len(unknown)} ids absent from the corpus, e.g. {sorted(unknown)[:3]}")

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], name: str = "task",
                   extra_corpus: Iterable[str] = ()) -> "IRTask":
        """Build a task from (question, answer) pairs.

        Distinct questions become queries and distinct answers the corpus (plus ``extra_corpus``
        as distractors); a question asked several times is relevant to each of its answers. Two
        spellings of one text in different Unicode forms (NFC, NFD) are one text.
        Ids are stable hashes of the texts, so the same data gives the same ids.
        """
        if isinstance(pairs, (str, bytes, dict)) or type(pairs).__name__ == "DataFrame":
            raise DataError(f"from_pairs takes (question, answer) pairs, got a {type(pairs).__name__}; from a "
                            "DataFrame: IRTask.from_pairs(df[['question', 'answer']].itertuples(index=False))")
        queries: dict[str, str] = {}
        corpus: dict[str, str] = {}
        qrels: dict[str, set[str]] = {}
        for n, pair in enumerate(pairs):
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
                raise DataError(f"pair {n} is {pair!r}: each pair is (question, answer)")
            question, answer = pair
            for what, text in (("question", question), ("answer", answer)):
                if not isinstance(text, str) or is_blank(text):  # NaN / None from a DataFrame row, an int
                    raise DataError(f"pair {n}: the {what} is {text!r}, not a text")
            qid, did = _id("q", question), _id("d", answer)
            queries.setdefault(qid, question)  # a text spelled twice (NFC, NFD) keeps its first spelling
            corpus.setdefault(did, answer)
            qrels.setdefault(qid, set()).add(did)
        if isinstance(extra_corpus, (str, bytes, dict)):  # a string was added as one distractor per character
            raise DataError(f"extra_corpus takes a list of distractor texts, got a {type(extra_corpus).__name__}"
                            f"{f'; one text: extra_corpus=[{extra_corpus[:30]!r}...]' if isinstance(extra_corpus, str) else ''}")
        for n, text in enumerate(extra_corpus):
            if not isinstance(text, str) or is_blank(text):
                raise DataError(f"extra_corpus item {n} is {text!r}, not a text")
            corpus.setdefault(_id("d", text), text)
        return cls(queries=queries, corpus=corpus, qrels=qrels, name=name)

    @property
    def graded(self) -> bool:
        """Some judgement has a grade other than 1 (NDCG then differs from binary NDCG)."""
        return any(g != 1 for grades in self.grades.values() for g in grades.values())

    def content_hash(self) -> str:
        """A hash of the queries, corpus and judgements (for caches keyed by data)."""
        parts: list[Any] = [sorted(self.queries.items()), sorted(self.corpus.items()),
                            sorted((q, sorted(d)) for q, d in self.qrels.items())]
        if self.graded:  # binary tasks keep the hash they had before grades were kept
            parts.append(sorted((q, sorted(g.items())) for q, g in self.grades.items()))
        payload = json.dumps(parts, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def check_task(task: object, name: str = "task") -> IRTask:
    """``task`` itself when it is an :class:`IRTask`, else an :class:`~medrag.errors.InvalidInputError`
    saying how to make one (a path given instead failed deep inside with ``AttributeError``)."""
    if isinstance(task, IRTask):
        return task
    from medrag.errors import InvalidInputError

    hint = (f"; read the file with evaluation.data.load_task({str(task)!r})" if isinstance(task, (str, os.PathLike))
            else "; build one with IRTask(queries, corpus, qrels) or IRTask.from_pairs(pairs)")
    raise InvalidInputError(f"{name} must be an IRTask, got {type(task).__name__}{hint}")


def _relevant_grades(qrels: Any, queries: dict[str, str]) -> dict[str, dict[str, float]]:
    """``qrels`` as the grades of the relevant ids: a set's ids grade 1 (a repeated id once: it counted
    twice in recall's denominator), BEIR / TREC grades <= 0 dropped (they were scored as relevant)."""
    if not isinstance(qrels, Mapping):
        raise DataError(f"relevance judgements must map query ids to document ids, got {type(qrels).__name__}")
    # a number id was "absent from the queries" (or the corpus) though "1" was there (user tryout);
    # mixed types failed sorting the unknown ones (TypeError)
    bad_id = next((q for q in qrels if not isinstance(q, str)), None)
    if bad_id is None:
        bad_id = next((d for docs in qrels.values() if isinstance(docs, Iterable) and not isinstance(docs, (str, bytes))
                       for d in docs if not isinstance(d, str)), None)
    if bad_id is not None:
        raise DataError(f"relevance judgements: ids must be strings, as the queries' and the corpus' are, got "
                        f"{bad_id!r} ({type(bad_id).__name__}); convert them, e.g. "
                        "{str(q): {str(d): g for d, g in docs.items()} for q, docs in qrels.items()}")
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise DataError(f"relevance judgements name {len(unknown)} query ids absent from the queries, e.g. "
                        f"{unknown[:3]}: judge only the task's queries (or add those queries)")
    out: dict[str, dict[str, float]] = {}
    for qid, docs in qrels.items():
        if isinstance(docs, Mapping):
            bad = [(d, g) for d, g in docs.items()
                   if isinstance(g, bool) or not isinstance(g, numbers.Real) or not math.isfinite(g)]
            if bad:
                raise DataError(f"relevance judgements of query {qid!r}: grades must be finite numbers, got {bad[:3]}")
            out[qid] = {d: (int(g) if float(g).is_integer() else float(g)) for d, g in docs.items() if g > 0}
        elif isinstance(docs, (str, bytes)) or not isinstance(docs, Iterable):
            raise DataError(f"relevance judgements of query {qid!r}: pass a set of document ids or a mapping "
                            f"id -> grade, not {docs!r}")
        else:
            out[qid] = dict.fromkeys(docs, 1)
    return out


def _id(prefix: str, text: str) -> str:
    """A stable id of ``text``, the same for its NFC and NFD spellings (an accented question pasted
    from macOS is often NFD; the same key as :func:`medrag.qa.pairs.same_text_key`'s: an NFC text's
    id is unchanged)."""
    return prefix + hashlib.sha1(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()[:12]
