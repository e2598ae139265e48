"""Training mixtures: named sources of training pairs and of unlabelled text (``mixture`` and
``distill_corpus`` in the config), each optionally capped: ``name:N`` draws N pairs (seeded),
``name:N:documents`` draws whole documents until N pairs (every pair of a drawn document kept, the
last one cut to fit N, so the loop's ``batch_sampling: document`` can put a document's pairs, e.g.
MedQuAD's questions on one disease's symptoms, causes and treatments, in one batch as each other's
negatives). Sources with documents: ``cases``, ``abstracts``, ``leaflets``, ``medquad``.

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
from typing import NamedTuple

from medrag.errors import DataError
from medrag.qa.pairs import QAPair

logger = logging.getLogger(__name__)

#: Licence of each named source (for model cards).
LICENCES = {
    "frenchmedmcqa": "Apache-2.0 (FrenchMedMCQA, Labrak et al., 2023)",
    "sample": "medrag's own sample (CC BY 4.0)",
    "cases": "CC BY 4.0 per source article (Pan African Medical Journal, via E3C)",
    "abstracts": "CC BY-SA 4.0 (MORFITT; share-alike)",
    "leaflets": "CC BY-NC 4.0 (E3C; non-commercial)",
    "medquad": "CC BY 4.0 (MedQuAD, Ben Abacha & Demner-Fushman, 2019; English)",
}
PAIR_SOURCES = tuple(LICENCES)
TEXT_SOURCES = ("cases", "abstracts", "leaflets", "sample")


#: How ``name:N`` caps a source: a draw of pairs, or of whole documents (``name:N:documents``).
DRAWS = ("pairs", "documents")


class Source(NamedTuple):
    """One mixture entry: the source's name, its cap (0: none) and how the cap draws."""

    name: str
    cap: int = 0
    draw: str = "pairs"


def parse_source(entry: str) -> Source:
    """``"name:N"`` -> ``Source(name, N, "pairs")``; ``"name:N:documents"`` draws whole documents;
    ``"name"`` -> no cap.

    >>> parse_source("cases:300")
    Source(name='cases', cap=300, draw='pairs')
    >>> parse_source("medquad:3000:documents").draw
    'documents'
    """
    name, _, rest = entry.partition(":")
    cap, _, draw = rest.partition(":")
    name = name.strip().lower()
    draw = draw.strip().lower() or "pairs"
    try:
        n = int(cap) if cap else 0
    except ValueError:
        raise DataError(f"bad source {entry!r}: use NAME, NAME:COUNT or NAME:COUNT:documents") from None
    if n < 0:
        raise DataError(f"bad source {entry!r}: the count must be >= 0")
    if draw not in DRAWS:
        raise DataError(f"bad source {entry!r}: the draw must be one of {', '.join(DRAWS)}")
    if draw == "documents" and not n:
        raise DataError(f"bad source {entry!r}: a documents draw needs a count (NAME:COUNT:documents)")
    return Source(name, n, draw)


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


#: What each source reads under ``shared_data`` (``sample`` ships with the package).
SOURCE_PATHS = {"frenchmedmcqa": "frenchmedmcqa", "cases": "french-medical-text", "abstracts": "french-medical-text",
                "leaflets": "french-medical-text", "medquad": "medquad/medquad.jsonl"}


def check_sources(mixture: Sequence[str], distill_corpus: Sequence[str], shared_data: str | Path) -> None:
    """Refuse, before anything loads, a ``mixture`` or ``distill_corpus`` entry that is malformed,
    names an unknown source, or whose data is not under ``shared_data``.

    >>> check_sources(["sample:100"], ["sample"], "/nowhere")  # the sample ships with the package
    >>> check_sources(["caess"], [], "/nowhere")
    Traceback (most recent call last):
    ...
    medrag.errors.DataError: unknown training source 'caess' in mixture; known: frenchmedmcqa, sample, cases, abstracts, leaflets, medquad
    """
    for field, entries, known in (("mixture", mixture, PAIR_SOURCES), ("distill_corpus", distill_corpus, TEXT_SOURCES)):
        for entry in entries:
            name = parse_source(entry).name
            if name not in known:
                raise DataError(f"unknown training source {name!r} in {field}; known: {', '.join(known)}")
            if name in SOURCE_PATHS and not (Path(shared_data).expanduser() / SOURCE_PATHS[name]).exists():
                raise DataError(f"{field} source {name!r} reads {Path(shared_data) / SOURCE_PATHS[name]}, which does "
                                "not exist: pass the folder holding the shared data sets as --shared-data "
                                "(shared_data: in a config)")


def mixture_pairs(entries: Sequence[str], shared_data: str | Path, seed: int = 42
                  ) -> tuple[list[QAPair], dict[str, int]]:
    """The pairs of every source in ``entries`` (each capped by a seeded draw), and the count per source."""
    out: list[QAPair] = []
    counts: dict[str, int] = {}
    for entry in entries:
        name, cap, draw = parse_source(entry)
        pairs = source_pairs(name, shared_data)
        if draw == "documents" and pairs and not any(getattr(p, "doc_id", "") for p in pairs):
            raise DataError(f"bad source {entry!r}: the {name} pairs carry no source document; cap it with "
                            f"{name}:{cap} (sources with documents: cases, abstracts, leaflets, medquad)")
        pairs = _cap_documents(pairs, cap, seed) if draw == "documents" else _cap(pairs, cap, seed)
        counts[name] = counts.get(name, 0) + len(pairs)
        out += pairs
    return out, counts


def mixture_texts(entries: Sequence[str], shared_data: str | Path, seed: int = 42) -> tuple[list[str], dict[str, int]]:
    """The unlabelled texts of every source in ``entries`` (each capped), and the count per source."""
    out: list[str] = []
    counts: dict[str, int] = {}
    for entry in entries:
        name, cap, draw = parse_source(entry)
        if draw != "pairs":
            raise DataError(f"bad source {entry!r}: unlabelled texts are capped by count only (NAME:COUNT)")
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


def _cap_documents(pairs: list[QAPair], cap: int, seed: int) -> list[QAPair]:
    """Whole documents (``doc_id``; a pair without one is its own document) in a seeded order until
    ``cap`` pairs; the last document drawn is cut to fit. Pairs keep their source order."""
    if not cap or cap >= len(pairs):
        return list(pairs)
    groups: dict[object, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(getattr(pair, "doc_id", "") or ("pair", i), []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    idx: list[int] = []
    for key in keys:
        idx += groups[key][: cap - len(idx)]
        if len(idx) >= cap:
            break
    return [pairs[i] for i in sorted(idx)]


def _french_text_pairs(name: str, shared: Path) -> list[QAPair]:
    from medrag.qa.french_text import training_pairs

    return list(training_pairs(shared / "french-medical-text", sources=[name], commercial_ok=False))


def _french_text_unlabelled(name: str, shared: Path):
    from medrag.qa.french_text import unlabelled_texts

    yield from unlabelled_texts(shared / "french-medical-text", sources=[name], commercial_ok=False)


__all__ = ["mixture_pairs", "mixture_texts", "source_pairs", "source_texts", "parse_source", "Source", "DRAWS", "LICENCES",
           "PAIR_SOURCES", "TEXT_SOURCES"]
