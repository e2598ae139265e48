"""Retrieval pairs and passages from raw French medical text: drug leaflets, clinical cases, abstracts.

The folder ``../shared/data/french-medical-text`` (see its README) holds three gzipped JSON Lines
files with no retrieval labels. This module derives them, the same way for training
(:func:`training_pairs`, :func:`unlabelled_texts`) and for the validation suite
(:func:`document_task`, used by :mod:`medrag.qa.suite`):

- **leaflets** (``drug_leaflets.jsonl.gz``, CC BY-NC 4.0): each numbered section and each standard
  sub-section ("Grossesse et allaitement", "Si vous oubliez de prendre ...") becomes a *unit*
  whose query is made from the product's short name and the heading, either as a heading
  ("DOLIPRANE 1000 mg : grossesse et allaitement") or as a question a patient or a pharmacist
  would type ("Peut-on prendre DOLIPRANE 1000 mg pendant la grossesse ou l'allaitement ?"), and
  whose passages are the sub-section's text in chunks. The "Encadré Veuillez lire attentivement..."
  box, the table of contents, the adverse-event reporting paragraph and the marketing-holder
  addresses are boilerplate, identical in every leaflet, and are dropped.
- **cases** (``clinical_cases_pamj.jsonl.gz``, CC BY 4.0 at source): each case report (a text
  with "Cas n° 1 ... Cas n° 2" gives several) -> its opening sentence(s) as the query, its
  continuation as the passages.
- **abstracts** (``pubmed_abstracts_morfitt.jsonl.gz``, MORFITT, CC BY-SA 4.0): the title-like
  opening or first sentence(s) -> the rest of the abstract.

Passages are chunks of whole sentences cut at ``max_words`` words (default 150, about 250
e5 tokens: well inside e5-small's 512-token window, and in the 80-200-word range used for
passage retrieval, e.g. DPR's 100-word passages, Karpukhin et al., 2020). A leaflet passage starts
with the product's short name ("ABELCET 5 mg/ml : ..."), as a RAG chunk carries its document's
title: without it, generic sub-sections (the same pregnancy advice in hundreds of leaflets)
could not be told apart by any model.

Leak-free split by *document*: a stable hash of ``(source, document id)`` puts each document in
``train`` (80%), ``val`` (10%) or ``test`` (10%), so every unit and passage of a document stays
on one side, whatever the order of the files or the other documents.

Example::

    >>> from medrag.qa.french_text import training_pairs, unlabelled_texts
    >>> pairs = training_pairs("../shared/data/french-medical-text", commercial_ok=True)
    >>> sorted({(p.source, p.licence) for p in pairs})     # every pair says where it comes from
    [('abstracts', 'CC BY-SA 4.0'), ('cases', 'CC BY 4.0')]
    >>> texts = list(unlabelled_texts("../shared/data/french-medical-text", commercial_ok=True))

Statistics: ``python -m medrag.qa.french_text --stats [--data DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import logging
import os
import random
import re
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.pairs import QAPair, json_objects
from medrag.qa.task import IRTask

logger = logging.getLogger(__name__)

#: Where the data lies beside a checkout (``../shared/data/french-medical-text``); override with the
#: ``data_dir`` argument or the ``MEDRAG_FRENCH_TEXT`` environment variable.
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "french-medical-text"

LEAFLETS, CASES, ABSTRACTS = "leaflets", "cases", "abstracts"
SOURCES: tuple[str, ...] = (LEAFLETS, CASES, ABSTRACTS)
FILES = {LEAFLETS: "drug_leaflets.jsonl.gz", CASES: "clinical_cases_pamj.jsonl.gz",
         ABSTRACTS: "pubmed_abstracts_morfitt.jsonl.gz"}
#: Licence of each source (the README of the data folder) and whether it allows commercial use.
LICENCES = {LEAFLETS: "CC BY-NC 4.0", CASES: "CC BY 4.0", ABSTRACTS: "CC BY-SA 4.0"}
COMMERCIAL_OK = {LEAFLETS: False, CASES: True, ABSTRACTS: True}

PARTS = ("train", "val", "test")
#: Shares of documents per part (train, val, test).
SPLIT_SHARES = (0.8, 0.1, 0.1)
MAX_WORDS = 150
MIN_WORDS = 25
QUERY_STYLES = ("heading", "question", "mixed", "both")
#: Version of the units the builders make, recorded with every task (``extra["units_version"]``) and
#: suite: 2 since December 5, 2026 (leaflets of the older template, whose table of contents is in
#: upper case, had every unit filed under section 6: 187 of the 2,500 shared leaflets). Results
#: measured on version 1 are reproduced at the commit that recorded them.
UNITS_VERSION = 2


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class FrenchDocument:
    """One document of a source file.

    Attributes:
        source: ``"leaflets"``, ``"cases"`` or ``"abstracts"``.
        doc_id: the file's ``id``.
        text: the raw text.
        title: the product name of a leaflet (empty otherwise).
    """

    source: str
    doc_id: str
    text: str
    title: str = ""

    @property
    def licence(self) -> str:
        return LICENCES[self.source]

    @property
    def part(self) -> str:
        return document_part(self.source, self.doc_id)


@dataclass(frozen=True)
class TextUnit:
    """A query-able piece of a document: its query forms and its passages (chunks).

    Attributes:
        source / doc_id / part: where it comes from.
        unit_id: unique id (document id + position).
        heading: the heading-form query ("ABELCET 5 mg/ml : grossesse et allaitement"), or the
            opening of a case or abstract.
        question: the question-form query (leaflets only; equal to ``heading`` otherwise).
        passages: the unit's text in chunks of whole sentences, in order.
        kind: the leaflet section key ("grossesse", "posologie"...), ``"case"`` or ``"abstract"``.
    """

    source: str
    doc_id: str
    part: str
    unit_id: str
    heading: str
    question: str
    passages: tuple[str, ...]
    kind: str = ""

    def query(self, style: str = "heading", seed: int = 0) -> str:
        """The query in ``style`` (``"heading"``, ``"question"``, or ``"mixed"``: one of the two
        chosen by a stable hash of the unit and ``seed``)."""
        if style == "heading":
            return self.heading
        if style == "question":
            return self.question
        if style == "mixed":
            return self.question if _unit_hash(f"{seed}\x00{self.unit_id}") < 0.5 else self.heading
        raise DataError(f"unknown query style {style!r}; use 'heading', 'question' or 'mixed'")


@dataclass(frozen=True)
class SourcedPair(QAPair):
    """A :class:`~medrag.qa.pairs.QAPair` that says where it comes from and under which licence."""

    source: str = ""
    licence: str = ""
    doc_id: str = ""
    kind: str = ""

    @property
    def commercial_ok(self) -> bool:
        return COMMERCIAL_OK.get(self.source, False)


@dataclass
class SourceStats:
    """Counts and lengths of one source (see :func:`corpus_stats`)."""

    source: str
    documents: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    passages: dict[str, int] = field(default_factory=dict)
    query_words_median: float = 0.0
    passage_words_median: float = 0.0
    passage_words_max: int = 0

    def line(self) -> str:
        parts = " / ".join(f"{p} {self.documents.get(p, 0)}" for p in PARTS)
        return (f"{self.source:9s} [{LICENCES[self.source]}] documents {parts}; units "
                + " / ".join(f"{p} {self.units.get(p, 0)}" for p in PARTS)
                + " (a unit is a query; units asking the same text are one query of the suite)"
                + "; passages " + " / ".join(f"{p} {self.passages.get(p, 0)}" for p in PARTS)
                + f"; median words: query {self.query_words_median:.0f}, passage {self.passage_words_median:.0f}"
                  f" (max {self.passage_words_max})")


# --------------------------------------------------------------------------- split


def document_part(source: str, doc_id: str, shares: Sequence[float] = SPLIT_SHARES) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a document, from a stable hash of its source and id.

    Example::

        >>> document_part("cases", "EN101008") in ("train", "val", "test")
        True
    """
    u = _unit_hash(f"{source}\x00{doc_id}")
    if u < shares[0]:
        return "train"
    return "val" if u < shares[0] + shares[1] else "test"


def _unit_hash(key: str) -> float:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


# --------------------------------------------------------------------------- readers


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``path``, else ``$MEDRAG_FRENCH_TEXT``, else :data:`DEFAULT_DATA_DIR`."""
    return Path(path or os.environ.get("MEDRAG_FRENCH_TEXT") or DEFAULT_DATA_DIR).expanduser()


def read_documents(source: str, folder: str | os.PathLike[str] | None = None) -> list[FrenchDocument]:
    """Every document of one source file (``"leaflets"``, ``"cases"``, ``"abstracts"``).

    Raises:
        DataError: unknown source, missing file, a file that is not gzip, a line that is not a JSON
            object or lacks ``id`` / ``text`` (``product`` for leaflets), an ``id`` already used by
            another line, naming the file and line.
    """
    if source not in FILES:
        raise DataError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    path = data_dir(folder) / FILES[source]
    if not path.is_file():
        raise DataError(f"{path} does not exist: pass the folder of the French medical text "
                        f"(data_dir=... or MEDRAG_FRENCH_TEXT; beside a checkout: {DEFAULT_DATA_DIR})")
    needed = ("id", "text", "product") if source == LEAFLETS else ("id", "text")
    docs: list[FrenchDocument] = []
    seen: dict[str, int] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, row in json_objects(fh, path):
                if any(not isinstance(row.get(k), str) for k in needed):
                    raise DataError(f"{path}:{lineno}: expected a JSON object with string fields {list(needed)}")
                if row["id"] in seen:  # unit and passage ids are built from it: two documents' passages would merge
                    raise DataError(f"{path}:{lineno}: the id {row['id']!r} is already the id of line "
                                    f"{seen[row['id']]}; give every document its own id")
                seen[row["id"]] = lineno
                docs.append(FrenchDocument(source, row["id"], row["text"], row.get("product", "") or ""))
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read as gzipped UTF-8 JSON Lines ({type(exc).__name__}: {exc})") from None
    if not docs:
        raise DataError(f"{path}: no documents")
    return docs


def read_leaflets(folder: str | os.PathLike[str] | None = None) -> list[FrenchDocument]:
    """The drug leaflets (CC BY-NC 4.0)."""
    return read_documents(LEAFLETS, folder)


def read_cases(folder: str | os.PathLike[str] | None = None) -> list[FrenchDocument]:
    """The clinical case reports (CC BY 4.0 at source)."""
    return read_documents(CASES, folder)


def read_abstracts(folder: str | os.PathLike[str] | None = None) -> list[FrenchDocument]:
    """The MORFITT PubMed abstracts (CC BY-SA 4.0)."""
    return read_documents(ABSTRACTS, folder)


# --------------------------------------------------------------------------- sentences and chunks

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[«\"(·\-–A-ZÀÂÄÇÉÈÊËÎÏÔÖÙÛÜ0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a flat text (a full stop, ! or ? followed by a capital, a digit or a bullet).

    Example::

        >>> split_sentences("La TSH est basse. Le patient va bien ! Fin")
        ['La TSH est basse.', 'Le patient va bien !', 'Fin']
    """
    return [s.strip() for s in _SENTENCE_END.split(_clean(text)) if s.strip()]


def chunk_words(text: str, max_words: int = MAX_WORDS, min_words: int = MIN_WORDS) -> list[str]:
    """Chunks of whole sentences of at most ``max_words`` words (a longer sentence is cut by words);
    a last chunk shorter than ``min_words`` joins the previous one when they fit in 1.3x ``max_words``.

    Example::

        >>> chunk_words("Un. Deux trois. Quatre cinq six.", max_words=3, min_words=1)
        ['Un. Deux trois.', 'Quatre cinq six.']
    """
    if max_words < 1:
        raise DataError(f"max_words must be >= 1, got {max_words}")
    pieces: list[list[str]] = []
    for sentence in split_sentences(text):
        words = sentence.split()
        for i in range(0, len(words), max_words):
            pieces.append(words[i:i + max_words])
    chunks: list[list[str]] = []
    for words in pieces:
        if chunks and len(chunks[-1]) + len(words) <= max_words:
            chunks[-1] = chunks[-1] + words
        else:
            chunks.append(list(words))
    if len(chunks) >= 2 and len(chunks[-1]) < min_words and len(chunks[-1]) + len(chunks[-2]) <= 1.3 * max_words:
        tail = chunks.pop()
        chunks[-1] = chunks[-1] + tail
    return [" ".join(c) for c in chunks]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip()


def _words(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------- leaflets

_UP = "A-ZÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŒ"
_BOX = re.compile(r"Encadré\s+Veuillez lire attentivement.*?(?:Voir (?:la )?rubrique 4\.|(?=\s1\.\s))", re.S)
_SECTION = re.compile(rf"(?<![\w,/])([1-6])\s?\.\s+(?=[{_UP}’'][{_UP}’'\-]+\s)")
#: Section 6's heading: today's template, or the older one's (before 2010s QRD updates).
_SECTION_6 = re.compile(r"(?:CONTENU DE L.EMBALLAGE ET AUTRES INFORMATIONS|INFORMATIONS SUPPL[EÉ]MENTAIRES)\s*\.?",
                        re.I)

#: The section each number opens: key, heading form (after "PRODUCT : "), question form ({p} = product).
_SECTIONS = {
    1: ("indications", "indications", "Dans quels cas utiliser {p} ?"),
    2: ("avant", "informations avant utilisation", "Que faut-il savoir avant de prendre {p} ?"),
    3: ("posologie", "posologie et mode d'administration", "Comment prendre {p} et à quelle dose ?"),
    4: ("effets", "effets indésirables", "Quels sont les effets indésirables de {p} ?"),
    5: ("conservation", "conservation", "Comment conserver {p} ?"),
    6: ("composition", "contenu de l'emballage", "Que contient la boîte de {p} ?"),
}
_NEXT_UP = rf"(?=\s+[{_UP}«(·])"
#: Standard sub-headings of the leaflet template: key, pattern, heading form, question form, or None
#: for boilerplate cut out of the section.
_SUBHEADINGS: list[tuple[str, str, str | None, str | None]] = [
    ("contre-indications", r"(?:Ne prenez jamais|N[’']utilisez jamais|Ne donnez jamais|N[’']appliquez jamais)",
     "contre-indications", "Qui ne doit pas prendre {p} ?"),
    ("precautions", r"Avertissements et précautions" + _NEXT_UP, "avertissements et précautions",
     "Quelles précautions prendre avec {p} ?"),
    ("enfants", r"Enfants(?: et adolescents)?" + _NEXT_UP, "enfants et adolescents", "{p} peut-il être donné à un enfant ?"),
    ("interactions", r"Autres médicaments et ", "interactions avec d'autres médicaments",
     "Peut-on prendre {p} avec d'autres médicaments ?"),
    ("aliments", r"avec (?:des|les) aliments(?:,)?(?: et)?(?: des| les)? boissons(?: et (?:de )?l[’']alcool)?",
     "aliments, boissons et alcool", "Peut-on prendre {p} avec de l'alcool ou pendant les repas ?"),
    ("grossesse", r"Grossesse(?:,)?(?: et)? allaitement(?: et fertilité)?" + _NEXT_UP, "grossesse et allaitement",
     "Peut-on prendre {p} pendant la grossesse ou l'allaitement ?"),
    ("conduite", r"Conduite de véhicules et utilisation (?:de|des) machines" + _NEXT_UP,
     "conduite de véhicules et utilisation de machines", "Peut-on conduire en prenant {p} ?"),
    ("sportifs", r"Sportifs" + _NEXT_UP, "sportifs", "{p} est-il compatible avec le sport en compétition ?"),
    ("surdosage", r"Si vous avez (?:pris|utilisé|reçu|appliqué) plus de", "surdosage",
     "Que faire si j'ai pris trop de {p} ?"),
    ("oubli", r"Si vous oubliez (?:de prendre|d[’']utiliser|de)", "oubli d'une dose",
     "Que faire en cas d'oubli d'une dose de {p} ?"),
    ("arret", r"Si vous arrêtez (?:de prendre|d[’']utiliser|le traitement)", "arrêt du traitement",
     "Que se passe-t-il si j'arrête de prendre {p} ?"),
    ("declaration", r"Déclaration des effets secondaires", None, None),
    ("excipients", r"Ce que contient", "composition", "Quelle est la composition de {p} ?"),
    ("presentation", r"(?:Qu[’']est-ce que .{0,150}? et contenu de l[’']emballage extérieur|Aspect de )",
     "aspect et présentation", "À quoi ressemble {p} et comment se présente-t-il ?"),
    ("titulaire", r"Titulaire(?: de l[’']autorisation)?", None, None),
]
# the leading look-ahead rejects most positions at once (every sub-heading starts with one of these)
_SUB_RE = re.compile("(?=[NAEGCSDTQ]|avec )(?:" + "|".join(f"(?P<s{i}>{pat})" for i, (_, pat, _, _)
                                                            in enumerate(_SUBHEADINGS)) + ")")


def product_short_name(product: str, max_words: int = 8) -> str:
    """The product name up to its first comma, at most ``max_words`` words: the name a user types.

    Example::

        >>> product_short_name("DOLIPRANE 1000 mg, comprimé pelliculé Paracétamol")
        'DOLIPRANE 1000 mg'
    """
    return " ".join(_clean(product).split(",")[0].split()[:max_words])


def _section_starts(text: str) -> list[tuple[int, int, int]]:
    """``(number, heading start, body start)`` of a leaflet's numbered sections 1..6, in order.

    The headings are upper case. Today's template lists them in lower case in its table of contents;
    the older one (about 7% of the shared leaflets) lists them in upper case too, so the sections are
    found twice: the table of contents' chain, then the body's. The last complete chain 1..6 is the
    body's (the table of contents' sections hold nothing but the next heading); without one, the
    first chain found, however short.
    """
    matches = list(_SECTION.finditer(text))
    best: list[tuple[int, int, int]] = []
    for first, m in enumerate(matches):
        if m.group(1) != "1":
            continue
        chain: list[tuple[int, int, int]] = []
        want = 1
        for heading in matches[first:]:
            n = int(heading.group(1))
            if n != want:
                continue
            if n == 6:
                m6 = _SECTION_6.match(text, heading.end())
                body = m6.end() if m6 else heading.end()
            else:
                q = text.find("?", heading.end(), heading.end() + 400)
                if q < 0:
                    continue
                body = q + 1
            chain.append((n, heading.start(), body))
            want += 1
            if want > 6:
                break
        if not best or len(chain) == 6:  # a later complete chain: the body after an upper-case contents list
            best = chain
    return best


def leaflet_units(doc: FrenchDocument, max_words: int = MAX_WORDS, min_unit_words: int = 8) -> list[TextUnit]:
    """The units of one leaflet: each numbered section's own text and each standard sub-section.

    A (sub-)section of fewer than ``min_unit_words`` words, or whose text is "Sans objet", is skipped;
    the adverse-event reporting paragraph and the marketing-holder block are cut out.
    """
    text = _clean(doc.text)
    text = _BOX.sub(" ", text, count=1)
    product = product_short_name(doc.title or doc.text[:80])
    starts = _section_starts(text)
    units: list[TextUnit] = []
    part = doc.part
    for i, (n, _, body_start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(text)
        body = text[body_start:end]
        key, head, question = _SECTIONS[n]
        pieces: list[tuple[str, str | None, str | None, str]] = []  # key, heading, question, text
        last_key, last_head, last_q, last_pos = key, head, question, 0
        for m in _SUB_RE.finditer(body):
            pieces.append((last_key, last_head, last_q, body[last_pos:m.start()]))
            j = int(m.lastgroup[1:])
            last_key, _, last_head, last_q = _SUBHEADINGS[j]
            last_pos = m.end()
        pieces.append((last_key, last_head, last_q, body[last_pos:]))
        for k, (ukey, uhead, uq, utext) in enumerate(pieces):
            if uhead is None or uq is None:
                continue
            utext = _strip_heading_tail(_LEAFLET_BOILERPLATE.sub(" ", utext), product)
            if k + 1 < len(pieces) and pieces[k + 1][0] == "aliments":  # "PRODUCT avec des aliments..."
                utext = _strip_trailing_product(utext, product)
            if _words(utext) < min_unit_words or re.match(r"(?i)sans objet", utext):
                continue
            chunks = chunk_words(utext, max_words)
            if not chunks:
                continue
            units.append(TextUnit(LEAFLETS, doc.doc_id, part, f"{doc.doc_id}#{n}.{k}", f"{product} : {uhead}",
                                  uq.format(p=product), tuple(f"{product} : {c}" for c in chunks), ukey))
    return units


_LEAFLET_BOILERPLATE = re.compile(
    r"Si vous avez d[’']autres questions sur l[’']utilisation de ce médicament, demandez plus "
    r"d[’']informations à votre médecin(?:,)? (?:ou à )?(?:votre )?(?:pharmacien)?(?: ou à votre infirmier/ère)?\.?")


def _strip_heading_tail(text: str, product: str) -> str:
    """Drop the end of a sub-heading that names the product ("... jamais ABELCET 5 mg/ml, solution :")."""
    text = text.lstrip(" .:").rstrip(" :")
    first = product.split()[0].lower() if product else ""
    colon = text.find(":", 0, 220)
    if first and colon >= 0 and first in text[:colon].lower():
        text = text[colon + 1:]
    elif first and text.lower().startswith(first):
        # "Si vous oubliez de prendre ABELCET 5 mg, comprimé Prenez ..." without a colon: cut at the
        # first capitalised word after the product's name
        m = re.search(rf"\s(?=[{_UP}][a-zàâäçéèêëîïôöùûü])", text[len(first):220])
        if m:
            text = text[len(first) + m.end():]
    return text.lstrip(" .:").rstrip(" :")


def _strip_trailing_product(text: str, product: str) -> str:
    first = product.split()[0] if product else ""
    i = text.rfind(first) if first else -1
    return text[:i].rstrip(" :") if i >= 0 and len(text) - i < 200 else text


# --------------------------------------------------------------------------- cases and abstracts

_CASE_LABEL = re.compile(r"\b(?:Cas(?: clinique)?\s*(?:n°|N°|no|n o)?\s*\d+|Observation\s*(?:n°|N°)?\s*\d+)\b\s*:?")


def split_cases(text: str) -> list[str]:
    """The case reports of one text: split on "Cas n° 1", "Cas clinique 2", "Observation 1"... when
    there are at least two labels, else the whole text (the labels are removed).

    Example::

        >>> split_cases("Cas n° 1 Un homme de 30 ans. Cas n° 2 Une femme de 40 ans.")
        ['Un homme de 30 ans.', 'Une femme de 40 ans.']
    """
    text = _clean(text)
    labels = list(_CASE_LABEL.finditer(text))
    if len(labels) < 2:
        return [_CASE_LABEL.sub(" ", text, count=1).strip()] if labels and labels[0].start() < 5 else [text]
    out = []
    head = text[:labels[0].start()].strip()
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        out.append(text[m.end():end].strip())
    if _words(head) >= 30:  # an introduction before the first label is a unit of its own
        out.insert(0, head)
    return [c for c in out if c]


def opening_split(text: str, min_query_words: int = 8, max_query_words: int = 60,
                  max_sentences: int = 2) -> tuple[str, str]:
    """(opening, continuation): sentences are taken until the opening has ``min_query_words`` words
    (at most ``max_sentences``); an opening longer than ``max_query_words`` is cut there and the
    rest of its words start the continuation.

    Example::

        >>> opening_split("Titre court. Une femme de 40 ans consulte pour une toux. Elle fume.", 6)
        ('Titre court. Une femme de 40 ans consulte pour une toux.', 'Elle fume.')
    """
    sentences = split_sentences(text)
    taken: list[str] = []
    while sentences and len(taken) < max_sentences and _words(" ".join(taken)) < min_query_words:
        taken.append(sentences.pop(0))
    words = " ".join(taken).split()
    query, spill = " ".join(words[:max_query_words]), words[max_query_words:]
    return query, " ".join(spill + sentences).strip()


def _opening_units(doc: FrenchDocument, texts: Iterable[str], kind: str, max_words: int,
                   min_rest_words: int) -> list[TextUnit]:
    units = []
    part = doc.part
    for k, text in enumerate(texts):
        query, rest = opening_split(text)
        if not query or _words(rest) < min_rest_words:
            continue
        chunks = chunk_words(rest, max_words)
        units.append(TextUnit(doc.source, doc.doc_id, part, f"{doc.doc_id}#{k}", query, query, tuple(chunks), kind))
    return units


def case_units(doc: FrenchDocument, max_words: int = MAX_WORDS, min_rest_words: int = 30) -> list[TextUnit]:
    """One unit per case report of the document: opening sentence(s) -> continuation chunks."""
    return _opening_units(doc, split_cases(doc.text), "case", max_words, min_rest_words)


def abstract_units(doc: FrenchDocument, max_words: int = MAX_WORDS, min_rest_words: int = 30) -> list[TextUnit]:
    """The abstract's title-like opening or first sentence(s) -> the rest, in chunks."""
    return _opening_units(doc, [doc.text], "abstract", max_words, min_rest_words)


_BUILDERS = {LEAFLETS: leaflet_units, CASES: case_units, ABSTRACTS: abstract_units}


def document_units(doc: FrenchDocument, max_words: int = MAX_WORDS) -> list[TextUnit]:
    """The units of a document of any source."""
    return _BUILDERS[doc.source](doc, max_words=max_words)


def build_units(source: str, folder: str | os.PathLike[str] | None = None, *, parts: Sequence[str] = PARTS,
                max_words: int = MAX_WORDS) -> list[TextUnit]:
    """The units of every document of ``source`` whose part is in ``parts``, in file order."""
    if isinstance(parts, str):  # "test" would be read as the parts 't', 'e', 's', 't'
        raise DataError(f"parts must be a list of part names, e.g. ({parts!r},), not a string")
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise DataError(f"unknown part(s) {bad}; use {', '.join(PARTS)}")
    return [u for u in _all_units(source, str(data_dir(folder).resolve()), max_words) if u.part in parts]


@functools.lru_cache(maxsize=12)
def _all_units_cached(source: str, folder: str, max_words: int, stamp: tuple[int, int]) -> tuple[TextUnit, ...]:
    units: list[TextUnit] = []
    for doc in read_documents(source, folder):
        units += document_units(doc, max_words)
    return tuple(units)


def _all_units(source: str, folder: str, max_words: int) -> tuple[TextUnit, ...]:
    """Every unit of a source file, parsed once per process (keyed by the file's size and mtime)."""
    path = Path(folder) / FILES.get(source, "")
    try:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = (-1, -1)
    if stamp[0] < 0:
        return tuple(u for d in read_documents(source, folder) for u in document_units(d, max_words))
    return _all_units_cached(source, folder, max_words, stamp)


# --------------------------------------------------------------------------- training side


def _sources(sources: Sequence[str] | None, commercial_ok: bool) -> list[str]:
    chosen = list(sources) if sources is not None else list(SOURCES)
    bad = [s for s in chosen if s not in SOURCES]
    if bad:
        raise DataError(f"unknown source(s) {bad}; use {', '.join(SOURCES)}")
    return [s for s in chosen if COMMERCIAL_OK[s] or not commercial_ok]


def training_pairs(folder: str | os.PathLike[str] | None = None, *, sources: Sequence[str] | None = None,
                   commercial_ok: bool = False, query_style: str = "mixed", max_words: int = MAX_WORDS,
                   seed: int = 0, part: str = "train") -> list[SourcedPair]:
    """Training pairs from the ``train`` documents: each unit's query -> its first passage.

    Args:
        folder: the data folder (default :func:`data_dir`).
        sources: any of ``"leaflets"``, ``"cases"``, ``"abstracts"`` (default: all three).
        commercial_ok: keep only sources whose licence allows commercial use (drops the CC BY-NC leaflets).
        query_style: leaflet queries as ``"heading"`` ("P : grossesse et allaitement"), ``"question"``,
            ``"mixed"`` (one of the two per unit, by a stable hash with ``seed``) or ``"both"`` (two pairs).
        max_words: passage length (words) of the chunks.
        seed: seeds the ``"mixed"`` choice and the order of the returned pairs (a seeded shuffle,
            so sources are interleaved in batches).
        part: ``"train"`` (default); ``"val"``/``"test"`` are the suite's documents: never train on them.

    Returns:
        :class:`SourcedPair` objects (a :class:`~medrag.qa.pairs.QAPair` with ``source``, ``licence``,
        ``doc_id``, ``kind``); exact duplicate (question, answer) pairs are dropped.
    """
    if query_style not in QUERY_STYLES:
        raise DataError(f"unknown query_style {query_style!r}; use one of {', '.join(QUERY_STYLES)}")
    pairs: list[SourcedPair] = []
    seen: set[tuple[str, str]] = set()
    for source in _sources(sources, commercial_ok):
        for unit in build_units(source, folder, parts=(part,), max_words=max_words):
            styles = ("heading", "question") if query_style == "both" and unit.question != unit.heading else \
                ("heading",) if query_style == "both" else (query_style,)
            for style in styles:
                q = unit.query(style, seed)
                if (q, unit.passages[0]) in seen:
                    continue
                seen.add((q, unit.passages[0]))
                pairs.append(SourcedPair(q, unit.passages[0], (), source, LICENCES[source], unit.doc_id, unit.kind))
    random.Random(seed).shuffle(pairs)
    logger.info("french_text: %d %s pairs from %s (query style %s)", len(pairs), part,
                ", ".join(_sources(sources, commercial_ok)), query_style)
    return pairs


def unlabelled_texts(folder: str | os.PathLike[str] | None = None, *, sources: Sequence[str] | None = None,
                     commercial_ok: bool = False, max_words: int = MAX_WORDS, include_queries: bool = False
                     ) -> Iterator[str]:
    """Passages (and with ``include_queries`` the queries) of the ``train`` documents, for
    self-distillation. Never yields text of a ``val`` or ``test`` document.

    Example::

        >>> texts = list(unlabelled_texts(commercial_ok=True))
    """
    for source in _sources(sources, commercial_ok):
        for unit in build_units(source, folder, parts=("train",), max_words=max_words):
            if include_queries:
                yield unit.heading
                if unit.question != unit.heading:
                    yield unit.question
            yield from unit.passages


# --------------------------------------------------------------------------- evaluation side


def document_task(source: str, part: str, folder: str | os.PathLike[str] | None = None, *,
                  query_style: str = "mixed", max_words: int = MAX_WORDS, seed: int = 0) -> IRTask:
    """The retrieval task of one source on the ``part`` documents (``"val"`` or ``"test"``).

    Queries: every unit of those documents (leaflets in ``query_style``, ``"mixed"`` by default);
    corpus: every passage of those documents, so each query has distractors from the other
    documents (and from its own); relevant: every passage of the query's own unit.
    """
    if query_style == "both":
        raise DataError("query_style 'both' is for training pairs; use 'heading', 'question' or 'mixed'")
    units = build_units(source, folder, parts=(part,), max_words=max_words)
    if not units:
        raise DataError(f"{source}: no units in the {part} documents")
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    text_to_id: dict[str, str] = {}
    for unit in units:
        ids = set()
        for i, passage in enumerate(unit.passages):
            pid = text_to_id.setdefault(passage, f"{unit.unit_id}/{i}")
            corpus.setdefault(pid, passage)
            ids.add(pid)
        qid = unit.unit_id
        queries[qid] = unit.query(query_style, seed)
        qrels[qid] = ids
    # the same query text for two units (two sections with one heading): one query, both relevant
    by_text: dict[str, str] = {}
    for qid in list(queries):
        first = by_text.setdefault(queries[qid], qid)
        if first != qid:
            qrels[first] |= qrels.pop(qid)
            del queries[qid]
    return IRTask(queries, corpus, qrels, name=f"{source} ({part})",
                  extra={"source": source, "part": part, "licence": LICENCES[source], "query_style": query_style,
                         "documents": len({u.doc_id for u in units}), "units_version": UNITS_VERSION})


# --------------------------------------------------------------------------- stats


def corpus_stats(folder: str | os.PathLike[str] | None = None, *, sources: Sequence[str] | None = None,
                 max_words: int = MAX_WORDS) -> list[SourceStats]:
    """Documents, units and passages per part and median lengths, per source."""
    out = []
    for source in _sources(sources, False):
        docs = read_documents(source, folder)
        st = SourceStats(source)
        q_words: list[int] = []
        p_words: list[int] = []
        for doc in docs:
            st.documents[doc.part] = st.documents.get(doc.part, 0) + 1
        for unit in build_units(source, folder, max_words=max_words):
            part = unit.part
            st.units[part] = st.units.get(part, 0) + 1
            st.passages[part] = st.passages.get(part, 0) + len(unit.passages)
            q_words.append(_words(unit.heading))
            p_words += [_words(p) for p in unit.passages]
        st.query_words_median = statistics.median(q_words) if q_words else 0.0
        st.passage_words_median = statistics.median(p_words) if p_words else 0.0
        st.passage_words_max = max(p_words, default=0)
        out.append(st)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medrag.qa.french_text --stats``: print per-source statistics and training-pair counts."""
    parser = argparse.ArgumentParser(prog="python -m medrag.qa.french_text",
                                     description="Statistics of the pairs built from the French medical text.")
    parser.add_argument("--data", default=None, help=f"data folder (default: $MEDRAG_FRENCH_TEXT or {DEFAULT_DATA_DIR})")
    parser.add_argument("--stats", action="store_true", help="print the statistics (the default action)")
    parser.add_argument("--max-words", type=int, default=MAX_WORDS, help=f"passage length in words ({MAX_WORDS})")
    args = parser.parse_args(argv)
    try:
        for st in corpus_stats(args.data, max_words=args.max_words):
            print(st.line())
        for commercial in (False, True):
            pairs = training_pairs(args.data, commercial_ok=commercial, max_words=args.max_words)
            by_source: dict[str, int] = {}
            for p in pairs:
                by_source[p.source] = by_source.get(p.source, 0) + 1
            print(f"training pairs (train documents, commercial_ok={commercial}): {len(pairs)} {by_source}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
