"""The French medical sample corpus shipped with medrag (see ``medrag/data/README.md``).

Example::

    >>> from medrag.qa.sample import load_sample_corpus
    >>> corpus = load_sample_corpus()
    >>> len(corpus.passages) >= 190, len(corpus.pairs("eval")) >= 80
    (True, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from medrag.errors import InvalidInputError

SAMPLE_FILE = "french_medical_sample.jsonl"


@dataclass(frozen=True)
class SamplePassage:
    """One passage with the questions it answers."""

    passage_id: str
    topic: str
    split: str
    passage: str
    questions: tuple[str, ...]


@dataclass(frozen=True)
class SampleCorpus:
    """All passages of the sample, in file order."""

    passages: tuple[SamplePassage, ...]

    def pairs(self, split: str | None = None) -> list[tuple[str, str]]:
        """(question, passage) pairs of ``split`` (``"train"``, ``"eval"``, or ``None`` for both)."""
        if split not in (None, "train", "eval"):
            raise InvalidInputError(f"split must be 'train', 'eval' or None, got {split!r}")
        return [(q, p.passage) for p in self.passages if split in (None, p.split) for q in p.questions]

    def texts(self) -> list[str]:
        """Every passage text."""
        return [p.passage for p in self.passages]

    def ids(self) -> list[str]:
        return [p.passage_id for p in self.passages]


def load_sample_corpus() -> SampleCorpus:
    """Read the sample shipped inside the package."""
    text = resources.files("medrag.data").joinpath(SAMPLE_FILE).read_text(encoding="utf-8")
    passages = []
    for line in text.splitlines():
        if line.strip():
            r = json.loads(line)
            passages.append(SamplePassage(r["passage_id"], r["topic"], r["split"], r["passage"], tuple(r["questions"])))
    return SampleCorpus(tuple(passages))
