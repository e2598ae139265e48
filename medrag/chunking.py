"""The chunker of ``medrag index``: a document's text cut into overlapping chunks of whole sentences, each fitting
the model's token window.

:func:`medrag.indexing.index_corpus` cuts every document with :func:`chunk_spans` (:func:`chunk_text`'s
chunks, each with where it lies in its document; :func:`chunk_pages`: on which pages of a PDF) to the
token window that :func:`token_window` reads off a store's embeddings. Also here: the metadata keys
medrag gives each chunk (:data:`CHUNK_KEYS`, :data:`SECTION_KEY`). The public names are also importable
from :mod:`medrag.indexing`, as before (``medrag.indexing.chunk_text``).

**Chunks.** Sentence-aware word windows: a document is split into sentences (after ``.``,
``!``, ``?``, ``;`` or a line break; a sentence longer than ``max_words`` is cut), consecutive
sentences are packed into a chunk until it holds at least ``chunk_words`` words, and the next
chunk starts ``overlap`` sentences (at most half of its sentences) before the end of the
previous one. Defaults (120 words, 1 sentence of overlap) keep a chunk around 150 e5 tokens,
inside the 512-token window of the e5/bge families with room for the ``passage:`` prompt;
retrieval studies on fixed-size windows (e.g. Kamradt's chunking comparisons, LlamaIndex's
evaluations) find 100-250 words a robust range for QA passages. A folder's ``.md`` files are
chunked section by section, each chunk led by its heading trail (``markdown_headings``,
:mod:`medrag.markdown`).

Example::

    >>> from medrag.chunking import chunk_text
    >>> chunk_text("Une phrase. Une autre phrase.", chunk_words=2, overlap=0)
    ['Une phrase.', 'Une autre phrase.']
"""

from __future__ import annotations

import bisect
import itertools
import logging
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from medrag.errors import InvalidInputError
from medrag.markdown import heading_trail
from medrag.pdf import PAGE_BREAK
from medrag.text_checks import is_blank

logger = logging.getLogger("medrag.indexing")  # the indexer's messages keep one logger name

#: Default chunk size in words (a chunk closes once it holds at least this many).
CHUNK_WORDS = 120
#: Metadata keys every chunk gets: its document key and its position in the document.
CHUNK_KEYS = ("doc", "chunk")
#: The metadata key of a folder's ``.md`` chunk that sits under headings: their trail
#: ("Doliprane 1000 mg > Posologie"), also written before the chunk's text.
SECTION_KEY = "section"
#: Default overlap, in sentences, between consecutive chunks of a document.
CHUNK_OVERLAP = 1
#: Sentences longer than this many words are cut into pieces of this size.
MAX_SENTENCE_WORDS = 200
#: A run of characters without whitespace longer than this (a pasted base64 blob, a text without
#: spaces) is cut into pieces of this size, each counted as :data:`PIECE_WORDS` words: otherwise it
#: is one "word" that no chunk size limits, and the model truncates it and everything after it in
#: its chunk. Words up to this length count as one word, as before (the French medical corpus of
#: ``../shared``, tables and URLs included, has none longer than 174 characters: its chunks are
#: unchanged). A piece counts as many words as its characters would make in French text.
MAX_WORD_CHARS = 200
PIECE_WORDS = 30

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\s*\n\s*")


def chunk_text(text: str, chunk_words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP,
               max_words: int = MAX_SENTENCE_WORDS, *, drop_repeats: bool = True, max_tokens: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> list[str]:
    """Cut ``text`` into overlapping chunks of whole sentences (see the module docstring).

    Args:
        text: the document.
        chunk_words: a chunk closes once it holds at least this many words (the last one may hold fewer).
        overlap: sentences repeated at the start of the next chunk (0 for none; at most half of
            the previous chunk's sentences are repeated, whatever this value).
        max_words: sentences longer than this are cut into pieces of this many words (a run of
            more than :data:`MAX_WORD_CHARS` characters without whitespace is first cut into
            pieces of that many characters, each counting :data:`PIECE_WORDS` words).
        drop_repeats: no chunk inside the previous one: when the sentences the overlap repeats
            already hold ``chunk_words`` words (a short sentence, then one of ``chunk_words`` words
            or more), the next chunk starts after the previous one instead of repeating them. Off,
            such a chunk is written again (the chunker before December 4, kept for the store
            benchmark's fixed corpus).
        max_tokens / count_tokens: the model's token window and a function that counts the tokens
            a chunk takes in it (e.g. ``lambda c: emb.count_tokens([c])[0]`` with
            ``max_tokens=emb.max_tokens``, :meth:`medrag.MatryoshkaEmbeddings.count_tokens`); give
            both or neither. A chunk over the window drops its last sentences until it fits (they
            start the next chunk), and a sentence over it alone is cut into the longest runs of
            words that fit: a model encodes only the first ``max_tokens`` tokens of a text, and
            what follows would be searchable by its words (BM25) but not by its meaning. Word
            counts alone overflow on text dense in numbers, units and codes (drug leaflets:
            ``benchmarks/chunk_window.py``, docs/benchmarks.md). A single word over the window
            stays whole.

    Returns:
        The chunks, whitespace-normalised; ``[]`` for a blank text.
    """
    return [chunk for chunk, _, _ in chunk_spans(text, chunk_words, overlap, max_words, drop_repeats=drop_repeats,
                                                 max_tokens=max_tokens, count_tokens=count_tokens)]


def chunk_spans(text: str, chunk_words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP,
                max_words: int = MAX_SENTENCE_WORDS, *, drop_repeats: bool = True, max_tokens: int | None = None,
                count_tokens: Callable[[str], int] | None = None) -> list[tuple[str, int, int]]:
    """:func:`chunk_text`'s chunks, each with the positions of its first word and after its last one
    among the words of ``text`` (:func:`word_count` counts them: a run of more than
    :data:`MAX_WORD_CHARS` characters counts its pieces): where a chunk lies in its document, e.g. on
    which pages of a PDF (``medrag index``'s ``page`` / ``page_end``).

    Example::

        chunk_spans("Un. Deux trois. Quatre.", chunk_words=2, overlap=0)
        # [('Un. Deux trois.', 0, 3), ('Quatre.', 3, 4)]
    """
    for name, value in (("chunk_words", chunk_words), ("overlap", overlap), ("max_words", max_words)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy ints too
            raise InvalidInputError(f"{name} must be an int, got {value!r}")
    if chunk_words < 1 or max_words < 1 or overlap < 0:
        raise InvalidInputError(f"need chunk_words >= 1, max_words >= 1, overlap >= 0; got {chunk_words}, "
                                f"{max_words}, {overlap}")
    check_token_window(max_tokens, count_tokens)
    sentences: list[list[str]] = []
    weights: list[list[int]] = []  # words each word of a sentence counts for
    starts: list[int] = []  # the position of each sentence's first word among the text's words
    position = 0
    for raw in _SENTENCE_END.split(text):
        sentence: list[str] = []
        weight: list[int] = []
        total = 0  # sum(weight)
        for word in raw.split():
            if is_blank(word):
                continue  # zero-width or control characters alone (U+200B, a BOM, NUL) are no word
            pieces = [word] if len(word) <= MAX_WORD_CHARS else [
                word[j : j + MAX_WORD_CHARS] for j in range(0, len(word), MAX_WORD_CHARS)]
            for piece in pieces:
                w = 1 if len(pieces) == 1 else PIECE_WORDS
                if sentence and total + w > max_words:  # a sentence longer than max_words is cut here
                    sentences.append(sentence)
                    weights.append(weight)
                    starts.append(position - len(sentence))
                    sentence, weight, total = [], [], 0
                sentence.append(piece)
                weight.append(w)
                total += w
                position += 1
        if sentence:
            sentences.append(sentence)
            weights.append(weight)
            starts.append(position - len(sentence))

    def over(first: int, last: int) -> bool:  # sentences[first:last] as one chunk overflow the window
        joined = " ".join(w for s in sentences[first:last] for w in s)
        return max_tokens is not None and count_tokens(joined) > max_tokens  # type: ignore[misc]

    chunks: list[tuple[str, int, int]] = []
    start = previous_end = 0
    while start < len(sentences):
        end, count = start, 0
        while end < len(sentences) and count < chunk_words:
            count += sum(weights[end])
            end += 1
        if max_tokens is not None:
            while end - start > 1 and over(start, end):
                end -= 1
            if end <= previous_end:  # cut to the window, it would sit inside the previous chunk: no overlap
                start = previous_end
                continue
            if over(start, end):  # one sentence over the window: cut into runs of words that fit
                runs = _fit_words(sentences[start], max_tokens, count_tokens)  # type: ignore[arg-type]
                sentences[start:end] = [sentences[start][a:b] for a, b in runs]
                weights[start:end] = [weights[start][a:b] for a, b in runs]
                starts[start:end] = [starts[start] + a for a, _ in runs]
                end = start + 1
        chunks.append((" ".join(w for s in sentences[start:end] for w in s), starts[start],
                       starts[end - 1] + len(sentences[end - 1])))
        previous_end = end
        if end >= len(sentences):
            break
        # the overlap is capped at half the chunk's sentences: an overlap as long as the chunk stepped
        # one sentence per chunk and stored every sentence up to ``overlap`` times (1 and the default
        # chunk sizes are unchanged by the cap)
        start = max(end - overlap, start + max(1, (end - start) // 2))
        if drop_repeats and sum(sum(w) for w in weights[start:end]) >= chunk_words:
            start = end  # the repeated sentences alone would fill the next chunk: it would add nothing
    return chunks


def word_count(text: str) -> int:
    """How many words :func:`chunk_spans` counts positions over in ``text`` (a run of more than
    :data:`MAX_WORD_CHARS` characters without whitespace: its pieces)."""
    return sum(1 if len(w) <= MAX_WORD_CHARS else -(-len(w) // MAX_WORD_CHARS) for w in text.split() if not is_blank(w))


def chunk_pages(text: str, spans: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """The first and last page (1-based, as a PDF reader numbers them) of each chunk of
    :func:`chunk_spans`, ``text`` being pages joined by :data:`medrag.pdf.PAGE_BREAK`.

    Example::

        text = "Un. Deux\\ftrois. Quatre."  # two pages
        chunk_pages(text, chunk_spans(text, chunk_words=2, overlap=0))  # [(1, 2), (2, 2)]
    """
    bounds = list(itertools.accumulate(word_count(page) for page in text.split(PAGE_BREAK)))
    return [(bisect.bisect_right(bounds, first) + 1, bisect.bisect_right(bounds, max(first, end - 1)) + 1)
            for _, first, end in spans]


def check_token_window(max_tokens: int | None, count_tokens: Callable[[str], int] | None) -> None:
    """Refuse a token window :func:`chunk_text` cannot use: both or neither of ``max_tokens`` (an
    int >= 1) and ``count_tokens`` (a function of a text)."""
    if max_tokens is None and count_tokens is None:
        return
    if max_tokens is None or count_tokens is None:
        raise InvalidInputError("max_tokens and count_tokens go together: give both (the model's window and a "
                                "function counting a chunk's tokens) or neither")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not callable(count_tokens):
        raise InvalidInputError(f"count_tokens must be a function of a text returning its token count, got "
                                f"{count_tokens!r}")


def _fit_words(words: list[str], max_tokens: int, count_tokens: Callable[[str], int]) -> list[tuple[int, int]]:
    """``words`` cut into consecutive runs ``(start, end)``, each the longest that fits ``max_tokens``
    (found by bisection; a single word over the window is a run of its own)."""
    runs: list[tuple[int, int]] = []
    start = 0
    while start < len(words):
        lo, hi = start + 1, len(words)  # lo always fits (or is one word): the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(" ".join(words[start:mid])) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        runs.append((start, lo))
        start = lo
    return runs


#: Below this many tokens of text per chunk (the window less the model's prompt and special tokens),
#: ``max_tokens`` makes chunks of a few words: a warning says so.
MIN_TEXT_TOKENS = 32


def token_window(embeddings: Any, max_tokens: int | Literal["model"] | None = "model", *,
                 option: str = "max_tokens=", warn: bool = True) -> tuple[int | None, Callable[[str], int] | None]:
    """The ``(max_tokens, count_tokens)`` pair :func:`chunk_text` cuts chunks with, for a store's
    ``embeddings`` (see :func:`index_corpus`'s ``max_tokens``); ``(None, None)`` for no cap.
    ``option`` names the setting in the errors (``medrag index``: ``"--max-tokens "``); ``warn=False``
    leaves the warning about a window of a few tokens to a later call (``medrag index`` checks first).

    Raises:
        InvalidInputError: ``max_tokens`` is not ``"model"``, ``None`` or an int >= 1; an int with
            embeddings that cannot count tokens, or over the model's window.
    """
    if max_tokens is None:
        return None, None
    if max_tokens != "model" and (isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral)
                                  or max_tokens < 1):
        raise InvalidInputError(f"max_tokens must be 'model', None or an int >= 1, got {max_tokens!r}")
    window = getattr(embeddings, "max_tokens", None)
    if not isinstance(window, int) or not callable(getattr(embeddings, "count_tokens", None)):
        if max_tokens == "model":
            logger.info("the store's embeddings (%s) cannot count tokens: chunks are cut by words only",
                        type(embeddings).__name__)
            return None, None
        raise InvalidInputError(f"max_tokens={max_tokens}: the store's embeddings ({type(embeddings).__name__}) "
                                "cannot count tokens; pass max_tokens=None to cut chunks by words only")
    if max_tokens != "model" and max_tokens > window:
        raise InvalidInputError(f"{option}{max_tokens} is over the model's window of {window} tokens: what "
                                f"follows its first {window} tokens would not be encoded; pass at most {window}")
    count = lambda chunk: embeddings.count_tokens([chunk])[0]  # noqa: E731
    if max_tokens != "model" and warn:
        room = int(max_tokens) - (count("x") - 1)  # the prompt's and the special tokens' share of the window
        if room < MIN_TEXT_TOKENS:  # --max-tokens 5: one-word chunks, the whole index rebuilt (user tryout)
            logger.warning("a token window of %d (--max-tokens, max_tokens=) leaves %d token(s) of text per chunk "
                           "beside the model's prompt and special tokens: chunks of a few words, which no search "
                           "reads well; pass 'model' (its window, %d) unless you mean it", max_tokens, max(room, 0), window)
    return (window if max_tokens == "model" else int(max_tokens)), count


def _fitting_trail(headings: tuple[str, ...], count: Callable[[str], int] | None, window: int | None) -> str | None:
    """A section's heading trail for its chunks (None without headings): its outer headings dropped
    while it takes half of the model's token window or more (a deep trail of long headings left the
    model mostly headings to read: review); the innermost heading is always kept."""
    while count is not None and window is not None and len(headings) > 1 \
            and count(f"{heading_trail(headings)} :") * 2 >= window:
        headings = headings[1:]
    return heading_trail(headings) or None
