"""An in-process BM25 index on ``bm25s`` with the French medical analyzer.

``bm25s`` (Lù, 2024, "BM25S: Orders of magnitude faster lexical search via eager sparse
scoring") precomputes every document-term BM25 score into a sparse matrix, so a query is a
sum of a few matrix columns in numpy. It has no incremental update, so this index keeps
each document's analysed terms (as vocabulary ids) and rebuilds the score matrix lazily, at
the first search after a change: analysis, the expensive part, is never redone, and a
batch of writes costs one rebuild. The matrix is computed here in a few vectorised numpy
steps with bm25s's Lucene formulas (bm25s's own builder loops over documents in Python,
much slower on a large corpus) and handed to ``bm25s.BM25`` for query scoring. Deleted or replaced documents leave the matrix at that
rebuild. ``docs/benchmarks.md`` gives the measured build rate, rebuild time and size.

The whole index (ids, vocabulary, terms, generation, collection id, analyzer signature) is one
``.npz`` file written to a temporary name and renamed, so a crash leaves the previous file
whole; a file that cannot be read back whole and consistent raises :class:`LexicalIndexError`
(the store then rebuilds it). Searches may run in threads while another thread writes: each
query is scored against one immutable state of the matrix (:class:`QueryScores`).

Example::

    >>> index = BM25Index()
    >>> index.add(["p1", "p2"], ["L'HbA1c mesure l'équilibre glycémique.", "La TSH explore la thyroïde."])
    >>> ids, scores = index.search("hba1c glycémie", k=2)
    >>> ids
    ['p1']
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import numbers
import os
import re
import tempfile
import threading
import time
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medrag.errors import InvalidInputError, LexicalIndexError
from medrag.file_modes import apply_umask
from medrag.lexical.analyzer import QUERY_SIDE_OPTIONS, TOKEN_CACHE_LIMIT, AnalyzerOptions, FrenchMedicalAnalyzer

logger = logging.getLogger(__name__)

#: Version of the on-disk layout (2: ids and vocabulary as one UTF-8 blob each with end offsets; 1 stored
#: them as fixed-width unicode arrays, every string padded to the longest: one 4,000-character token,
#: a URL or a PDF extraction's run of letters, made a 0.7 MB index 320 MB, rewritten at every write).
#: Files of version 1 still load (and are written as version 2 at the next save).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


#: The shortest term (after stemming) read that way, and the shortest it may be read as: shorter
#: words have too many neighbours one edit away (``fer``, ``foie``), as in the typo rules of search
#: engines (Meilisearch: one typo from 5 letters).
TYPO_MIN_CHARS = 5
#: Longer terms are not read that way (the spellings one edit away grow with the square of the
#: length; no French medical word is this long).
TYPO_MAX_CHARS = 30
#: At most this many unknown terms of one query are read that way (a pasted paragraph of words no
#: passage holds would cost a little each: every spelling one edit from the term is looked up).
TYPO_MAX_TERMS = 8
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

#: A term naming one thing exactly: letters and digits mixed, 4 characters or more (an ATC code
#: ``n02be01``, a lot ``4a21b``, ``hba1c``, ``cyp3a4``, ``her2``; not ``b12`` nor ``cd4``, nor the
#: terms of a hyphenated word, ``covid-19``), or a number of 5 digits or more (a CIP code
#: ``3400936379848``, ``100000``).
_IDENTIFIER = re.compile(r"\d{5,}|(?=[a-z0-9]*\d)(?=[a-z0-9]*[a-z])[a-z0-9]{4,}")
#: Letters-and-digits terms that are French words glued to a number, not codes: ordinals (``2eme``,
#: ``1ere``), ages and durations (``18ans``, ``6mois``, ``3jours``), products of numbers (``3x10``) (review).
_NOT_IDENTIFIER = re.compile(r"\d+(?:e|er|ere|eme|emes|nd|nde|ans?|mois|jours?|semaines?|heures?|x\d+)")


def is_identifier_term(term: str) -> bool:
    """Whether an analyzer term is a code (:data:`_IDENTIFIER`): what makes a query a lookup
    (:attr:`QueryScores.holders`).

    >>> [t for t in ("n02be01", "3400936379848", "hba1c", "b12", "1000", "covid-19", "2eme", "18ans") if is_identifier_term(t)]
    ['n02be01', '3400936379848', 'hba1c']
    """
    return _IDENTIFIER.fullmatch(term) is not None and _NOT_IDENTIFIER.fullmatch(term) is None


def _one_edit(term: str) -> set[str]:
    """Every string one edit from ``term``: a character deleted, two adjacent ones swapped, one
    replaced or one inserted (Damerau's four errors, which make most typing errors; Norvig's
    spelling corrector's ``edits1``), over a-z and ``term``'s own characters."""
    letters = set(_LETTERS) | set(term)
    splits = [(term[:i], term[i:]) for i in range(len(term) + 1)]
    return ({a + b[1:] for a, b in splits if b}
            | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in letters}
            | {a + c + b for a, b in splits for c in letters}) - {term}


def _typo_candidate(term: str) -> bool:
    """Whether an unknown ``term`` is read as a held spelling: letters only, from
    :data:`TYPO_MIN_CHARS` to :data:`TYPO_MAX_CHARS` of them."""
    return TYPO_MIN_CHARS <= len(term) <= TYPO_MAX_CHARS and term.isalpha()


def _held_spelling(term: str, held) -> str:
    """The held term one edit from ``term`` (a :func:`_typo_candidate`) that most documents hold
    (``held(t)``: how many; the alphabetically first on a tie); ``term`` itself when none is held.
    Never a term shorter than :data:`TYPO_MIN_CHARS`. (A typo near a word's end can change what the
    stemmer strips, ``vascularittes`` -> ``vascularitt`` against ``vascular``; reading the stems of
    the typed word's edits that begin ``term`` found those, but read correct words that no passage
    holds as a shorter relative, ``caractéristique`` as ``caractère``, ``réponse`` as ``responsable``,
    and pushed exam-option corpora past the hybrid weight's bound: docs/results.md, "Queries with a
    typing error".)"""
    candidates = _one_edit(term)
    best, most = term, 0
    for candidate in sorted(candidates):
        if len(candidate) < TYPO_MIN_CHARS:
            continue
        n = held(candidate)
        if n > most:
            best, most = candidate, n
    return best


#: A letter standing alone after a word (``HÉPATITE C``): not after a number (``11 E``, an ordinal),
#: in parentheses (``(S)``), elided (``D'``) or abbreviated (``N. SP.``).
_LONE_LETTER = re.compile(r"(?<=[^\W\d_]{2}[ \u00a0])[^\W\d_](?![\w)'’.])")


@dataclass(frozen=True)
class QueryScores:
    """BM25 of one query against every document of one state of a :class:`BM25Index`
    (:meth:`BM25Index.query_scores`): ``values[i]`` is the score of ``order[i]``. Writes made
    after it was computed do not change it, so :meth:`BM25Index.top` reads ids consistently.
    ``bound`` is the most any document could score: the sum of the idf of the scored query terms
    (each term adds idf * tf / (tf + ...) < idf), what :func:`medrag.lexical.fusion.lexical_confidence`
    divides the best score by."""

    values: np.ndarray
    order: list[str]
    pos: dict[str, int]
    bound: float = 0.0
    #: When the query is an identifier lookup (codes, :func:`is_identifier_term`, make up at least
    #: half of its scored terms): the ids of the documents holding every one of its codes (a hybrid
    #: search with the ``"auto"`` weight ranks them first: :func:`medrag.lexical.fusion.fused_ranking`).
    #: ``None`` for any other query.
    holders: frozenset[str] | None = None
    #: The query words no document holds that were scored as a held term one edit away
    #: (:attr:`BM25Index.typo_tolerance`), as ``(word as typed, term scored)`` pairs in query order:
    #: ``(("cortisol", "cortison"),)`` in a store that holds cortisone but not cortisol. A correct
    #: word the store lacks is read so too, so a search says so (``medrag search --hybrid``).
    read_as: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Matrix:
    model: object
    order: list[str]
    pos: dict[str, int]
    n_terms: int


class BM25Index:
    """BM25 (Lucene variant, ``k1``/``b``) over documents analysed by :class:`FrenchMedicalAnalyzer`.

    Implements :class:`~medrag.lexical.protocol.LexicalIndex`.

    >>> index = BM25Index(AnalyzerOptions(keep_acronyms=True))
    >>> index.add(["x"], ["Relais des AVK par héparine."])
    >>> index.search("avk", k=3)[0], len(index)
    (['x'], 1)
    """

    def __init__(self, options: AnalyzerOptions | None = None, *, k1: float = 1.2, b: float = 0.75,
                 generation: int | None = None, collection: str | None = None) -> None:
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (k1, b))
        if not numeric or not (0 < k1 < math.inf and 0 <= b <= 1):  # NaN fails both comparisons
            raise InvalidInputError(f"BM25 needs numbers k1 > 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        self.analyzer = FrenchMedicalAnalyzer(options)
        self.k1, self.b = float(k1), float(b)
        self.generation = generation
        #: The id of the Chroma collection indexed (a file found at a path is only used for it).
        self.collection = collection
        self._vocab: dict[str, int] = {}
        self._token_ids: dict[str, tuple[int, ...]] = {}  # surface token -> term ids (see _term_ids)
        self._rows: dict[str, np.ndarray] = {}  # id -> term ids (int32), insertion-ordered
        self._bm25: _Matrix | None = None  # the matrix of the current rows (None: rebuilt at the next search)
        self._lock = threading.RLock()  # writes, the matrix build and saves; searches read a _Matrix

    @property
    def typo_tolerance(self) -> bool:
        """Whether a query term no document holds is read as a held term one edit away
        (:meth:`query_terms`; ``AnalyzerOptions.typo_tolerance``): a query-side setting, which the
        index, its file and its signature do not depend on."""
        return self.analyzer.options.typo_tolerance

    @property
    def signature(self) -> str:
        """The analyzer's signature plus the BM25 parameters."""
        return f"{self.analyzer.signature}:bm25-{self.k1:g}-{self.b:g}"

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._rows

    @property
    def ids(self) -> list[str]:
        """The indexed ids, in insertion order."""
        return list(self._rows)

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ids`` (an id already indexed is replaced)."""
        if isinstance(ids, str) or isinstance(texts, str):  # "ab" would index the ids "a" and "b"
            raise InvalidInputError("add() takes lists of ids and texts, not a single string; pass [id], [text]")
        if len(ids) != len(texts):
            raise InvalidInputError(f"add() got {len(ids)} ids for {len(texts)} texts; pass one id per text")
        with self._lock:
            # every text analysed before the first row changes: a bad text (not a str) adds nothing
            rows = [np.array(self._term_ids(text or ""), dtype=np.int32) for text in texts]
            for id_, row in zip(ids, rows):
                self._rows.pop(id_, None)  # a replaced id moves to the end, like a new one
                self._rows[id_] = row
            if ids:
                self._bm25 = None

    def _term_ids(self, text: str) -> list[int]:
        """The vocabulary ids of ``text``'s terms, in order (new terms join the vocabulary).

        Cached per surface token: a token always gives the same terms and a term keeps its id, so
        after the first few thousand texts indexing a text is one regex scan and one dict lookup
        per token (this cache is what brings the build to the rate in ``docs/benchmarks.md``)."""
        cache, analyzer = self._token_ids, self.analyzer
        out: list[int] = []
        for token in analyzer.tokens(text):
            tids = cache.get(token)
            if tids is None:
                vocab = self._vocab
                tids = tuple(vocab.setdefault(term, len(vocab)) for term in analyzer.token_terms(token))
                if len(cache) < TOKEN_CACHE_LIMIT:
                    cache[token] = tids
            out.extend(tids)
        return out

    def delete(self, ids: Sequence[str]) -> None:
        """Forget ``ids``; unknown ids are ignored."""
        if isinstance(ids, str):  # "12" would delete the ids "1" and "2"
            raise InvalidInputError(f"delete() takes a list of ids, not a single string: write [{ids!r}]")
        with self._lock:
            removed = [self._rows.pop(id_) for id_ in ids if id_ in self._rows]
            if removed:
                self._bm25 = None

    def _matrix(self) -> _Matrix | None:
        """The bm25s model over the current documents (rebuilt after a change); ``None`` when empty."""
        with self._lock:
            if self._bm25 is None and self._rows:
                import bm25s

                order = list(self._rows)
                n_terms = len(self._vocab)
                model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
                model.scores = _score_matrix(list(self._rows.values()), n_terms, self.k1, self.b)
                model.vocab_dict = dict(self._vocab)
                model.unique_token_ids_set = set(range(n_terms))
                model.nonoccurrence_array = None
                self._bm25 = _Matrix(model, order, {id_: i for i, id_ in enumerate(order)}, n_terms)
            return self._bm25 if self._rows else None

    def scores(self, query: str) -> dict[str, float]:
        """Every document's BM25 score for ``query`` that is above zero, by id."""
        ids, scores = self.search(query, k=max(len(self), 1))
        return dict(zip(ids, scores.tolist()))

    def search(self, query: str, k: int, ids: Collection[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` best ids for ``query`` (restricted to ``ids`` when given) and their BM25 scores, best first.

        Documents sharing no term with the query are left out, so fewer than ``k`` may come back.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        if isinstance(ids, str):  # "ab" would restrict the search to the ids "a" and "b"
            raise InvalidInputError(f"ids must be a collection of ids, not a single string: write [{ids!r}]")
        return self.top(self.query_scores(query), k, ids)

    def query_terms(self, query: str) -> list[str]:
        """The terms ``query`` is scored on, in order: its analyzer terms that the indexed documents hold.

        A query word whose case is ambiguous has two readings
        (:meth:`~medrag.lexical.analyzer.FrenchMedicalAnalyzer.other_reading`): a short word in
        capitals is an acronym to the analyzer, a lowercase or capitalised one a word. So a query
        typed with caps lock, ``ANÉMIE`` or ``FIÈVRE``, missed the passages writing ``anémie`` or
        ``fièvre`` (or found only the odd heading written in capitals), and an acronym or a product
        name typed in lowercase, ``ains`` or ``smecta``, missed the passages writing them in
        capitals. Such a word is scored on the reading that more of the indexed documents hold (a
        stopword, dropped, counts as the most frequent reading). In a query that has lowercase
        letters, a word written in capitals is meant as an acronym: it keeps that reading unless
        no document holds it. A lowercase stopword stays one (``ta``, ``sa``: write ``TA``, ``SA``).
        In a query typed with caps lock, a lone letter after a word (``HÉPATITE C``, ``VITAMINE D``;
        not ``A`` or ``Y``, nor a letter after a number, in parentheses, elided or abbreviated:
        ``11 E``, ``(S)``, ``D'``, ``N.``) is the letter, as ``hépatite C`` reads it, not the
        stopword ``c``, when a document holds it; so is a lowercase one after a word that is not a
        stopword (``hépatite c``, ``carence vitamine d``: the letter lost to the stopword made BM25
        rank hepatitis A first: user tryout), unless it is an elision typed without its apostrophe
        (``traitement d attaque``, ``hépatite c est grave``).

        With :attr:`typo_tolerance` (the default), a query term that no indexed document holds, of
        :data:`TYPO_MIN_CHARS` letters or more and without digits, is read as the held term one edit
        away (a letter deleted, inserted, replaced, or two swapped) that most documents hold:
        ``amoxiciline`` finds ``amoxicilline``. A term the documents hold is never changed, nor an
        acronym (a word of up to 6 letters typed in capitals), a number or a code (``HbA1c`` is not
        ``HbA2c``).

        >>> index = BM25Index()
        >>> index.add(["a", "b", "c", "d"], ["Anémie ferriprive sous AINS.", "TSH élevée, hypothyroïdie.",
        ...                                  "Anémie et grossesse.", "ANÉMIE"])  # d: a heading in capitals
        >>> index.query_terms("ANÉMIE SOUS AINS"), index.query_terms("ains"), index.query_terms("Anémie et AINS")
        (['anem', 'sous', 'ains'], ['ains'], ['anem', 'ains'])
        >>> index.query_terms("TSH ÉLEVÉE"), index.query_terms("le foie")
        (['tsh', 'elev'], [])
        >>> index.add(["e", "f"], ["Le traitement de l'hépatite C.", "Le vaccin contre l'hépatite B."])
        >>> index.query_terms("HÉPATITE C"), index.query_terms("hépatite C"), index.query_terms("PROPOSITION(S)")
        (['hepat', 'c'], ['hepat', 'c'], [])
        >>> index.query_terms("traitement hépatite c"), index.query_terms("traitement c est l hépatite")
        (['trait', 'hepat', 'c'], ['trait', 'hepat'])
        >>> index.query_terms("hypothyroidie"), index.query_terms("hypotyroïdie")  # a letter left out
        (['hypothyroid'], ['hypothyroid'])
        """
        return [term for term, _ in self._query_term_ids(query, self._matrix())]

    def _query_term_ids(self, query: str, matrix: _Matrix | None,
                        read_as: list[tuple[str, str]] | None = None) -> list[tuple[str, int]]:
        """:meth:`query_terms` with their column ids, read from one snapshot of the matrix; the words
        read as another held term are appended to ``read_as`` (:attr:`QueryScores.read_as`)."""
        if not isinstance(query, str):
            raise InvalidInputError(f"the query must be a str, got {type(query).__name__}")
        if matrix is None:
            return []
        analyzer, vocab, n_terms = self.analyzer, self._vocab, matrix.n_terms
        indptr = matrix.model.scores["indptr"]  # CSC by term: a term's documents are one slice

        def held(term: str) -> int:
            """How many indexed documents hold ``term``."""
            i = vocab.get(term)
            return int(indptr[i + 1] - indptr[i]) if i is not None and i < n_terms else 0

        def documents(terms: Sequence[str]) -> float:
            """How many documents hold the reading's most frequent term (a stopword reading: all of them)."""
            return max(map(held, terms)) if terms else math.inf

        acronyms_meant = any(c.islower() for c in query)  # not typed with caps lock
        # caps lock: the analyzer lowercases the shouted text, so "HÉPATITE C" lost its C to the stopword c;
        # a lone letter is found by its place, so "PROTÉINE S ... PROPOSITION(S)" reads only the first S
        text, spans = analyzer.token_spans(query)
        # typed in lowercase: "hépatite c", "vitamine d" are letters too (user tryout), elisions are not
        letters = ({start for i, (_, start) in enumerate(spans) if _typed_letter(analyzer, text, spans, i)}
                   if acronyms_meant else {m.start() for m in _LONE_LETTER.finditer(text)})
        out: list[tuple[str, int]] = []
        corrected = 0  # unknown terms read as a held spelling (at most TYPO_MAX_TERMS)
        for token, start in spans:
            terms = analyzer.token_terms(token)
            if not terms and start in letters:
                letter = analyzer.token_terms(token.upper())  # the letter's term ("C" in "hépatite C"), or ()
                terms = letter if letter and held(letter[0]) else terms
            other = analyzer.other_reading(token) if terms else None  # a lowercase stopword stays one
            if other is not None and other != terms and not _one_letter(other, token):
                mine, theirs = documents(terms), documents(other)
                if _one_letter(terms, token):  # "vs" stemmed to "v": the letter's term ("facteur V"), not the word
                    mine = 0
                if (mine == 0 < theirs) if acronyms_meant and token.isupper() else theirs > mine:
                    terms = other
            # an acronym (up to 6 capitals) is exact
            if self.typo_tolerance and not (token.isupper() and len(token) <= 6) and not all(map(held, terms)):
                read = []
                for t in terms:
                    if corrected < TYPO_MAX_TERMS and not held(t) and _typo_candidate(t):
                        corrected += 1
                        typed, t = t, _held_spelling(t, held)
                        if read_as is not None and t != typed and (token, t) not in read_as:
                            read_as.append((token, t))
                    read.append(t)
                terms = tuple(read)
            out.extend((t, vocab[t]) for t in terms if held(t))
        return out

    def query_scores(self, query: str) -> QueryScores:
        """BM25 of ``query`` against every indexed document (for :meth:`top`), scored on
        :meth:`query_terms`."""
        matrix = self._matrix()  # one snapshot for the terms and their scores
        if matrix is None:
            return QueryScores(np.zeros(0, dtype=np.float32), [], {})
        read_as: list[tuple[str, str]] = []
        scored = self._query_term_ids(query, matrix, read_as)
        terms = [i for _, i in scored]  # held terms only: each has a column
        values = (matrix.model.get_scores_from_ids(terms) if terms
                  else np.zeros(len(matrix.order), dtype=np.float32))
        indptr = matrix.model.scores["indptr"]
        df = indptr[np.asarray(terms, dtype=np.int64) + 1] - indptr[np.asarray(terms, dtype=np.int64)]
        n = len(matrix.order)  # the idf of _score_matrix; a repeated query term counts each time, as in values
        bound = float(np.log1p((n - df + 0.5) / (df + 0.5)).sum())
        codes = sorted({i for term, i in scored if is_identifier_term(term)})
        holders = None
        # a lookup: codes are half of the query's terms or more (those no document holds counted too: "quelle est
        # la cible de l'HbA1c" is a question); its documents holding every code the index knows
        if codes and 2 * len(codes) >= len(set(self.analyzer.analyze_many([query])[0])):
            indices = matrix.model.scores["indices"]
            rows = set(indices[indptr[codes[0]]:indptr[codes[0] + 1]].tolist())
            for c in codes[1:]:
                rows &= set(indices[indptr[c]:indptr[c + 1]].tolist())
            holders = frozenset(matrix.order[r] for r in rows)
        return QueryScores(values, matrix.order, matrix.pos, bound, holders, tuple(read_as))

    def top(self, scores: QueryScores, k: int, ids: Collection[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` best ids of a :meth:`query_scores` result with a positive score (among ``ids`` when given)."""
        values, pos = scores.values, scores.pos
        if ids is not None:
            rows = np.fromiter((pos[i] for i in dict.fromkeys(ids) if i in pos), dtype=np.int64)
            rows = rows[values[rows] > 0]
        else:
            rows = np.flatnonzero(values > 0)
        if rows.size > k:  # every row scoring at least the k-th best: ties at the cut go to the earlier row,
            kth = -np.partition(-values[rows], k - 1)[k - 1]  # as in the full ranking (argpartition's pick was arbitrary)
            rows = rows[values[rows] >= kth]
        rows = rows[np.lexsort((rows, -values[rows]))][:k]
        return [scores.order[i] for i in rows], values[rows].astype(np.float32)

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (one ``.npz`` file, replaced atomically; a store checks a path
        it is given with :func:`check_index_path` first). Only the terms of the indexed texts are
        written: nothing of a deleted text stays in the file."""
        path = Path(path)
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder; pass the path of the index file to write, e.g. {path / 'bm25.npz'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            ids, rows, vocab = list(self._rows), list(self._rows.values()), list(self._vocab)
            meta = {"format": FORMAT_VERSION, "signature": self.signature, "generation": self.generation,
                    "collection": self.collection, "options": _options_json(self.analyzer.options),
                    "k1": self.k1, "b": self.b}
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
        # only the terms of the indexed texts: a deleted text's terms (a name, a patient number)
        # stay in the vocabulary in memory, but are not written (the right to erasure: user tryout)
        used = np.bincount(flat, minlength=len(vocab)) > 0
        if not used.all():
            flat = (np.cumsum(used) - 1)[flat].astype(np.int32)
            vocab = [term for term, keep in zip(vocab, used) if keep]
        buffer = io.BytesIO()
        id_blob, id_ends = _pack_strings(ids)
        vocab_blob, vocab_ends = _pack_strings(vocab)
        np.savez(buffer, meta=np.array(json.dumps(meta)), ids=id_blob, id_ends=id_ends, vocab=vocab_blob,
                 vocab_ends=vocab_ends, lengths=lengths, terms=flat)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            apply_umask(Path(tmp))  # mkstemp makes it 0600: other users of the folder could not read it
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "BM25Index":
        """Read an index written by :meth:`save`; a missing, unreadable, damaged or inconsistent file
        (or one of another format or analyzer version) raises :class:`LexicalIndexError`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
                    raise LexicalIndexError(f"{path}: lexical index format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                                            f"expected one of {READABLE_FORMATS}; it will be rebuilt")
                if meta["format"] == 1:
                    ids, vocab = data["ids"].tolist(), data["vocab"].tolist()
                else:
                    ids = _unpack_strings(data["ids"], data["id_ends"], path)
                    vocab = _unpack_strings(data["vocab"], data["vocab_ends"], path)
                lengths, flat = data["lengths"], data["terms"]
            options = meta["options"]
            index = cls(AnalyzerOptions(**{**options, "extra_stopwords": tuple(options["extra_stopwords"])}),
                        k1=meta["k1"], b=meta["b"], generation=meta["generation"], collection=meta.get("collection"))
            if index.signature != meta["signature"]:
                raise LexicalIndexError(f"{path}: built by another analyzer version ({meta['signature']}); "
                                        "it will be rebuilt")
            if (lengths.ndim != 1 or len(lengths) != len(ids) or len(set(ids)) != len(ids) or (lengths < 0).any()
                    or int(lengths.sum()) != len(flat) or (flat.size and not 0 <= int(flat.min()) <= int(flat.max()) < len(vocab))):
                raise LexicalIndexError(f"{path}: inconsistent lexical index (ids, lengths and terms disagree); "
                                        "it will be rebuilt")
            index._vocab = {term: i for i, term in enumerate(vocab)}
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            index._rows = dict(zip(ids, np.split(flat.astype(np.int32), bounds[1:-1])))
        except LexicalIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
            raise LexicalIndexError(f"cannot read the lexical index {path}: {type(exc).__name__}: {exc}") from exc
        return index


#: The first letter of a word an elided letter stands before (a vowel or a mute h): "traitement d attaque",
#: "patient n a pas" typed without the apostrophe are elisions, not the letters D and N.
_ELIDES_BEFORE = re.compile(r"[aeiouyhàâäéèêëîïôöùûüÿœæ]", re.IGNORECASE)
#: The words ``c'`` is elided before (``c'est``, ``c'était``, ``c'en``); before any other, ``c`` is the
#: letter (``hépatite c aiguë``, ``hépatite c et grossesse``).
_C_ELIDED_BEFORE = frozenset({"est", "etait", "était", "etaient", "étaient", "en", "eut", "eût"})
#: What may follow a lone letter typed in lowercase for it to be the letter: a space, a sentence's
#: punctuation, the end, or a full stop ending the query ("n°39", "c/", "d-", "N. sp." are not letters).
_LETTER_ENDS = re.compile(r"\s|[,;:?!]|\.?\s*$")


def _typed_letter(analyzer: FrenchMedicalAnalyzer, text: str, spans: Sequence[tuple[str, int]], i: int) -> bool:
    """Whether token ``i`` of a query typed in lowercase is a lone letter meant as the letter (``c`` of
    ``hépatite c``, ``d`` of ``carence vitamine d``): a lowercase letter after a space and a word that
    is not a stopword, not followed by another character of a word, and not an elision typed without
    its apostrophe (``traitement d attaque``, ``hépatite c est grave``, ``de l anémie``): ``c`` before
    a form of *être* or *en*, another letter before a word starting with a vowel or an ``h`` but
    ``et`` (no elision precedes it: ``vitamine d et calcium``)."""
    token, start = spans[i]
    if len(token) != 1 or not token.islower() or i == 0 or text[start - 1] not in " \u00a0" \
            or not analyzer.token_terms(spans[i - 1][0]) or not _LETTER_ENDS.match(text, start + 1):
        return False
    if i + 1 == len(spans):
        return True
    following = spans[i + 1][0].lower()
    if token == "c":
        return following not in _C_ELIDED_BEFORE
    return following == "et" or not _ELIDES_BEFORE.match(following)


def _one_letter(terms: Sequence[str], token: str) -> bool:
    """Whether a token of several letters reads as one letter's term (``VS`` in lowercase is
    stemmed to ``v``, the term of the lone capital of "facteur V"): not a reading of that token."""
    return len(token) > 1 and len(terms) == 1 and len(terms[0]) == 1


def _pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``strings`` as one UTF-8 byte array and the end offset of each (no padding: a fixed-width
    unicode array costs 4 bytes x the longest string for every one)."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    ends = np.cumsum(np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded)))
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), ends


def _unpack_strings(blob: np.ndarray, ends: np.ndarray, path: Path) -> list[str]:
    """The strings :func:`_pack_strings` packed (:class:`LexicalIndexError` when the offsets do not fit the blob)."""
    if blob.dtype != np.uint8 or blob.ndim != 1 or ends.ndim != 1 or (not ends.size and blob.size) or (ends.size and (
            int(ends[-1]) != blob.size or (np.diff(ends) < 0).any() or int(ends[0]) < 0)):
        raise LexicalIndexError(f"cannot read the lexical index {path}: its string offsets do not match their "
                                "blob; it will be rebuilt")
    raw = blob.tobytes()
    starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts.tolist(), ends.tolist())]


def is_index_file(path: str | Path) -> bool:
    """Whether ``path`` may be replaced by a new index: a file :meth:`BM25Index.save` wrote (an
    ``.npz`` zip holding its ``meta``, whatever its version), one damaged since (a zip that no longer
    reads), or an empty file; not another zip nor any other file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
        if not head:
            return True
        if head != b"PK\x03\x04":
            return False
        with zipfile.ZipFile(path) as archive:
            return "meta.npy" in archive.namelist()
    except zipfile.BadZipFile:
        return True  # a zip that does not read: an index damaged (truncated, a flipped byte), rebuilt
    except OSError:
        return False


def check_index_path(path: str | Path) -> None:
    """Refuse ``path`` as where a lexical index is written when it is a folder, or an existing file
    that is not a lexical index (writing there would destroy it).

    Raises:
        InvalidInputError: naming the path and what to pass instead.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; pass the path of the index file to write, e.g. {path / 'bm25.npz'}")
    if path.exists() and not is_index_file(path):
        raise InvalidInputError(f"{path} exists and is not a medrag lexical index (a file of yours, or a store's "
                                "database): it would be overwritten; pass a new path, e.g. one ending in .npz")


def _score_matrix(rows: list[np.ndarray], n_terms: int, k1: float, b: float) -> dict:
    """BM25 (Lucene variant) document-term scores as the CSC arrays bm25s scores queries with.

    score(d, t) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)), idf(t) = ln(1 + (N - df + .5) / (df + .5)),
    the formulas of bm25s's ``method="lucene"`` (Kamphuis et al., ECIR 2020).
    """
    n_docs = len(rows)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=n_docs)
    flat = np.concatenate(rows).astype(np.int64) if n_docs else np.zeros(0, dtype=np.int64)
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys = flat * n_docs + docs
    keys.sort()  # by term, then document
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if keys.size else np.zeros(0, np.int64)
    pairs, tf = keys[starts], np.diff(np.append(starts, keys.size))
    term, doc = np.divmod(pairs, n_docs)
    df = np.bincount(term, minlength=n_terms)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    avg = max(float(lengths.mean()), 1e-9) if n_docs else 1.0
    data = idf[term] * tf / (tf + k1 * (1 - b + b * lengths[doc] / avg))
    indptr = np.concatenate([[0], np.cumsum(df)])
    return {"data": data.astype(np.float32), "indices": doc.astype(np.int32), "indptr": indptr.astype(np.int64),
            "num_docs": n_docs}


def _options_json(options: AnalyzerOptions) -> dict:
    """The analysis options a file records (not the query-side ``typo_tolerance``)."""
    return {**{k: v for k, v in asdict(options).items() if k not in QUERY_SIDE_OPTIONS},
            "extra_stopwords": list(options.extra_stopwords)}


#: A temporary file of :meth:`BM25Index.save` older than this was left by a killed process (a save
#: writes its file in seconds), and is removed by the next save of that index or its deletion.
STALE_TEMPORARY_SECONDS = 600


def remove_stale_temporaries(path: str | Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Delete the temporary files a killed :meth:`BM25Index.save` of ``path`` left beside it (each the
    size of the whole index; a kill between the write and the rename leaked one every time) that are
    older than ``older_than`` seconds (a younger one may be another thread's save in progress);
    return how many."""
    path = Path(path)
    removed = 0
    now = time.time()
    shape = re.compile(re.escape(path.name) + r"[a-z0-9_]{8}\.tmp")  # mkstemp's: the name, 8 characters, .tmp
    for tmp in path.parent.glob(f"{glob.escape(path.name)}*.tmp"):
        if not shape.fullmatch(tmp.name):  # another file that starts with this index's name
            continue
        try:
            if now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                removed += 1
        except OSError:  # gone meanwhile, or not ours to delete: left
            continue
    return removed
