"""Training pairs from MedQuAD (English): a health question -> the first passage of its answer.

MedQuAD (Ben Abacha & Demner-Fushman, BMC Bioinformatics 2019; CC BY 4.0, commercial use allowed with
attribution) holds 16,335 question -> answer pairs from NIH sites (``../shared/data/medquad/medquad.jsonl``,
one object a line: ``question``, ``answer``, ``source``). Its questions name an entity and an aspect
("What are the symptoms of Glaucoma ?", "What are the treatments for X ?") and its answers are that
document's section: the shape of the French drug-leaflet queries ("DOLIPRANE 1000 mg : grossesse et
allaitement" -> the section), for which medrag has no commercially usable French training pairs. The
multilingual encoder maps both languages into one space, so English pairs of that shape can teach a
French model's small Matryoshka prefixes to keep the entity and the aspect (measured on the
validation suite: docs/results.md).

The builder:

- drops the question echo that opens many answers ("What causes X? Mutations in ..." -> "Mutations in
  ..."): a passage that starts with its own question makes the pair a string match;
- keeps the answer's first chunk of whole sentences of at most ``max_words`` words (the chunker of
  :mod:`medrag.qa.french_text`, so passages are as long as the French ones);
- drops pairs whose passage is shorter than ``min_words`` words, questions whose entity is missing
  in the source ("What is (are)  ?") and exact duplicate pairs;
- returns the pairs in a seeded shuffle.

Example::

    >>> from medrag.qa.medquad import medquad_pairs
    >>> pairs = medquad_pairs("../shared/data/medquad/medquad.jsonl")   # doctest: +SKIP
    >>> pairs[0].source, pairs[0].licence                                # doctest: +SKIP
    ('medquad', 'CC BY 4.0')

Statistics: ``python -m medrag.qa.medquad --stats [--data FILE]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.french_text import MAX_WORDS, SourcedPair, chunk_words
from medrag.qa.pairs import json_objects

logger = logging.getLogger(__name__)

SOURCE = "medquad"
LICENCE = "CC BY 4.0"
#: Shortest passage kept (words): a one-line answer ("See the full article") teaches nothing.
MIN_WORDS = 20

# "What causes X? ", "How might X be treated? " at the very start of an answer: a question word, then at
# most 150 characters without a sentence end or a colon ("22q11.2" is no sentence end), then "?".
_ECHO = re.compile(r"^\s*(?:what|how|who|whose|which|why|when|where|is|are|was|were|do|does|did|can|could|"
                   r"should|will|would|may|might|has|have)\b(?:[^?.!:\n]|\.(?=\S)){0,150}\?\s+", re.IGNORECASE)
# "What is (are)  ?": a question whose entity is missing in the source.
_NO_ENTITY = re.compile(r"\(are\)\s*\?$")


#: Where the shared data keeps MedQuAD, relative to the repository root (as :mod:`medrag.qa.french_text`).
DEFAULT_PATH = Path("..") / "shared" / "data" / "medquad" / "medquad.jsonl"


def strip_question_echo(answer: str) -> str:
    """The answer without a leading question sentence (one that starts with a question word).

    >>> strip_question_echo("What causes X? Mutations in the Y gene cause X.")
    'Mutations in the Y gene cause X.'
    >>> strip_question_echo("X is a rare disease. Is it inherited? Rarely.")
    'X is a rare disease. Is it inherited? Rarely.'
    >>> strip_question_echo("These resources address X: - Society: How is X diagnosed? Read on.")[:15]
    'These resources'
    """
    return _ECHO.sub("", answer, count=1)


def medquad_pairs(path: str | os.PathLike[str] | None = None, *, max_words: int = MAX_WORDS,
                  min_words: int = MIN_WORDS, seed: int = 0) -> list[SourcedPair]:
    """Question -> first answer passage pairs of MedQuAD.

    Args:
        path: the JSON Lines file (default :data:`DEFAULT_PATH`).
        max_words: the passage length cap, in words (whole sentences).
        min_words: drop pairs whose passage is shorter.
        seed: seeds the order of the returned pairs.

    Returns:
        :class:`~medrag.qa.french_text.SourcedPair` objects with ``source="medquad"``, the licence, and
        ``doc_id`` the record's document (its ``source`` without the ``#`` fragment).

    Raises:
        DataError: a missing file, a line that is not a JSON object, or a record without a
            ``question`` or ``answer`` string.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise DataError(f"MedQuAD file not found: {path} (expected ../shared/data/medquad/medquad.jsonl)")
    pairs: list[SourcedPair] = []
    seen: set[tuple[str, str]] = set()
    with open(path, "rb") as fh:  # bytes: json_objects names a line that is not UTF-8 (a bare UnicodeDecodeError)
        for lineno, rec in json_objects(fh, path):
            question, answer = rec.get("question"), rec.get("answer")
            if not isinstance(question, str) or not isinstance(answer, str):
                raise DataError(f"{path}:{lineno}: a MedQuAD record needs 'question' and 'answer' strings")
            question = " ".join(question.split())
            chunks = chunk_words(strip_question_echo(answer), max_words=max_words)
            if not question or not chunks or _NO_ENTITY.search(question):
                continue
            passage = chunks[0]
            if len(passage.split()) < min_words or (question, passage) in seen:
                continue
            seen.add((question, passage))
            doc = str(rec.get("source", "")).split("#", 1)[0]
            pairs.append(SourcedPair(question, passage, (), SOURCE, LICENCE, doc, "qa"))
    random.Random(seed).shuffle(pairs)
    logger.info("medquad: %d pairs from %s", len(pairs), path)
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medrag.qa.medquad --stats``: counts and lengths of the pairs."""
    p = argparse.ArgumentParser(prog="python -m medrag.qa.medquad", description="MedQuAD training pairs: statistics")
    p.add_argument("--stats", action="store_true", help="print counts and lengths (the default action)")
    p.add_argument("--data", help=f"the JSON Lines file (default: {DEFAULT_PATH})")
    args = p.parse_args(argv)
    try:
        pairs = medquad_pairs(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: no usable pair in {args.data or DEFAULT_PATH} (answers of >= {MIN_WORDS} words needed)",
              file=sys.stderr)
        return 1
    q_words = [len(p.question.split()) for p in pairs]
    p_words = [len(p.answer.split()) for p in pairs]
    docs = len({p.doc_id for p in pairs})
    print(f"medquad: {len(pairs)} pairs from {docs} documents; question words median "
          f"{statistics.median(q_words):.0f}, passage words median {statistics.median(p_words):.0f} "
          f"(max {max(p_words)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["medquad_pairs", "strip_question_echo", "DEFAULT_PATH", "SOURCE", "LICENCE", "MIN_WORDS"]
