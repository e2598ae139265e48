"""Training mixtures: named sources of training pairs and of unlabelled text (``mixture`` and
``distill_corpus`` in the config), each optionally capped (``name:N``).

Sources, all read from ``shared_data`` (``../shared/data``) or the package:

- ``frenchmedmcqa``: FrenchMedMCQA's train split (dev and test are the suite's validation and test);
- ``sample``: the shipped sample corpus's train split (its eval split is a suite domain);
- ``cases``, ``abstracts``, ``leaflets``: pairs built by :func:`medrag.qa.french_text.training_pairs`
  from the train documents of the French medical text (split by document: leak-free against the
  suite's val/test documents). As unlabelled text (``distill_corpus``), the same train documents'
  passages (:func:`medrag.qa.french_text.unlabelled_texts`);
- ``medquad``: English question -> answer-passage pairs of MedQuAD (:func:`medrag.qa.medquad.medquad_pairs`;
  not a suite domain, so every pair is usable).

Each source carries its licence (:data:`LICENCES`); the shipped default model is trained only on
sources that allow commercial use (the leaflets are CC BY-NC).

Example::

    from finetune.mixture import mixture_pairs
    pairs, counts = mixture_pairs(["sample", "frenchmedmcqa:500"], shared_data="../shared/data", seed=0)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.pairs import QAPair

logger = logging.getLogger(__name__)

#: Licence of each named source (for model cards).
LICENCES = {
    "frenchmedmcqa": "Apache-2.0 (FrenchMedMCQA, Labrak et al., 2023)",
    "sample": "medrag's own sample (Apache-2.0)",
    "cases": "CC BY 4.0 per source article (Pan African Medical Journal, via E3C)",
    "abstracts": "CC BY-SA 4.0 (MORFITT; share-alike)",
    "leaflets": "CC BY-NC 4.0 (E3C; non-commercial)",
    "medquad": "CC BY 4.0 (MedQuAD, Ben Abacha & Demner-Fushman, 2019; English)",
}
PAIR_SOURCES = tuple(LICENCES)
TEXT_SOURCES = ("cases", "abstracts", "leaflets", "sample")


def parse_source(entry: str) -> tuple[str, int]:
    """``"name:N"`` -> ``(name, N)``; ``"name"`` -> ``(name, 0)`` (no cap).

    >>> parse_source("cases:300")
    ('cases', 300)
    """
    name, _, cap = entry.partition(":")
    name = name.strip().lower()
    try:
        n = int(cap) if cap else 0
    except ValueError:
        raise DataError(f"bad source {entry!r}: use NAME or NAME:COUNT") from None
    if n < 0:
        raise DataError(f"bad source {entry!r}: the count must be >= 0")
    return name, n


def source_pairs(name: str, shared_data: str | Path) -> list[QAPair]:
    """All training pairs of one named source."""
    shared = Path(shared_data)
    if name == "frenchmedmcqa":
        from medrag.qa.pairs import load_frenchmedmcqa

        return load_frenchmedmcqa(shared / "frenchmedmcqa", train_splits=("train",), eval_split=None).train
    if name == "sample":
        from medrag.qa.sample import load_sample_corpus

        return [QAPair(q, p) for q, p in load_sample_corpus().pairs("train")]
    if name in ("cases", "abstracts", "leaflets"):
        return list(_french_text_pairs(name, shared))
    if name == "medquad":
        from medrag.qa.medquad import medquad_pairs

        return list(medquad_pairs(shared / "medquad" / "medquad.jsonl"))
    raise DataError(f"unknown training source {name!r}; known: {', '.join(PAIR_SOURCES)}")


def source_texts(name: str, shared_data: str | Path) -> list[str]:
    """Unlabelled texts of one named source (train documents only)."""
    if name == "sample":
        from medrag.qa.sample import load_sample_corpus

        return [p.passage for p in load_sample_corpus().passages if p.split == "train"]
    if name in ("cases", "abstracts", "leaflets"):
        return list(_french_text_unlabelled(name, Path(shared_data)))
    raise DataError(f"unknown unlabelled-text source {name!r}; known: {', '.join(TEXT_SOURCES)}")


def mixture_pairs(entries: Sequence[str], shared_data: str | Path, seed: int = 42
                  ) -> tuple[list[QAPair], dict[str, int]]:
    """The pairs of every source in ``entries`` (each capped by a seeded draw), and the count per source."""
    out: list[QAPair] = []
    counts: dict[str, int] = {}
    for entry in entries:
        name, cap = parse_source(entry)
        pairs = source_pairs(name, shared_data)
        pairs = _cap(pairs, cap, seed)
        counts[name] = counts.get(name, 0) + len(pairs)
        out += pairs
    return out, counts


def mixture_texts(entries: Sequence[str], shared_data: str | Path, seed: int = 42) -> tuple[list[str], dict[str, int]]:
    """The unlabelled texts of every source in ``entries`` (each capped), and the count per source."""
    out: list[str] = []
    counts: dict[str, int] = {}
    for entry in entries:
        name, cap = parse_source(entry)
        texts = _cap(source_texts(name, shared_data), cap, seed)
        counts[name] = counts.get(name, 0) + len(texts)
        out += texts
    return out, counts


def _cap(items: list, cap: int, seed: int) -> list:
    if not cap or cap >= len(items):
        return list(items)
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(items)), cap))
    return [items[i] for i in idx]


def _french_text_pairs(name: str, shared: Path) -> list[QAPair]:
    from medrag.qa.french_text import training_pairs

    return list(training_pairs(shared / "french-medical-text", sources=[name], commercial_ok=False))


def _french_text_unlabelled(name: str, shared: Path):
    from medrag.qa.french_text import unlabelled_texts

    yield from unlabelled_texts(shared / "french-medical-text", sources=[name], commercial_ok=False)


__all__ = ["mixture_pairs", "mixture_texts", "source_pairs", "source_texts", "parse_source", "LICENCES",
           "PAIR_SOURCES", "TEXT_SOURCES"]
