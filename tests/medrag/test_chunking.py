"""The chunker (``medrag.chunking``): sentence windows, their overlap, runs without whitespace, the token window."""

from __future__ import annotations

import pytest

from medrag import MatryoshkaEmbeddings
from medrag.chunking import chunk_text, token_window
from medrag.errors import InvalidInputError
from tests.medrag.test_indexing import DOC
from tests.medrag.test_store import FakeMatryoshkaEmbeddings


def test_chunks_are_whole_overlapping_sentences() -> None:
    chunks = chunk_text(DOC, chunk_words=12, overlap=1)
    assert len(chunks) > 2
    for c in chunks[:-1]:
        assert len(c.split()) >= 12
    for a, b in zip(chunks, chunks[1:]):  # the last sentence of a chunk opens the next one
        assert a.endswith(b.split(". ")[0].split(" ; ")[0].split("\n")[0]) or b.split()[0] in a
    assert " ".join(DOC.split()).endswith(chunks[-1])
    assert chunk_text(DOC, chunk_words=1000) == [" ".join(DOC.split())]
    assert chunk_text("   ") == []
    long = " ".join(["mot"] * 450)
    assert [len(c.split()) for c in chunk_text(long, chunk_words=10, overlap=0, max_words=200)] == [200, 200, 50]
    with pytest.raises(InvalidInputError):
        chunk_text(DOC, chunk_words=0)


def test_text_without_whitespace_is_cut_so_what_follows_is_embedded() -> None:
    """100,000 characters without a space were one "word", hence one chunk the model truncates, and the
    sentence after it shared that chunk: it was never embedded."""
    blob = "x" * 100_000
    chunks = chunk_text(blob + " La ferritine basse traduit une carence en fer.", chunk_words=120, overlap=0)
    assert max(len(c) for c in chunks) < 1_300  # a sentence is cut at max_words (200 words = 6 pieces of 200 characters)
    assert "".join(c.replace(" ", "") for c in chunks).startswith(blob)  # nothing lost
    assert chunks[-1].endswith("La ferritine basse traduit une carence en fer.") and len(chunks[-1]) < 1_300
    assert chunk_text("a" * 450 + " b.", chunk_words=120) == [" ".join(["a" * 200, "a" * 200, "a" * 50, "b."])]
    assert chunk_text("c" * 200 + " d.", chunk_words=120) == ["c" * 200 + " d."]  # up to 200 characters: a word


def test_an_overlap_as_long_as_the_chunk_is_capped_at_half_of_it() -> None:
    """--overlap 50 on 9-word sentences stepped one sentence per chunk: 987 chunks, 13x the words (found in review)."""
    text = " ".join(f"Phrase numéro {i} sur le bilan martial du patient." for i in range(100))
    # 5 sentences a chunk: overlaps 1 and 2 step 4 and 3 sentences, as before the cap
    assert [len(chunk_text(text, chunk_words=40, overlap=o)) for o in (0, 1, 2)] == [20, 25, 33]
    capped = chunk_text(text, chunk_words=40, overlap=50)
    assert capped == chunk_text(text, chunk_words=40, overlap=3)  # at most 2 of a chunk's 5 sentences repeated
    assert len(capped) == 49 and sum(len(c.split()) for c in capped) < 2.5 * len(text.split())  # was 987 chunks


def test_no_chunk_sits_inside_the_previous_one() -> None:
    """A short sentence before a long one: the one-sentence overlap made the next chunk that long
    sentence alone, already whole in the previous chunk (2% of the shared French corpus's chunks)."""
    long = " ".join(f"mot{i}" for i in range(130)) + "."
    chunks = chunk_text("Introduction courte. " + long + " Conclusion finale.")
    assert chunks == ["Introduction courte. " + long, "Conclusion finale."]
    cut = chunk_text("Titre. " + " ".join(f"w{i}" for i in range(500)) + " Fin.")
    assert [len(c.split()) for c in cut] == [201, 200, 101]
    assert chunk_text("Un deux. Trois quatre cinq six. Sept huit. Neuf dix onze douze.", 3, 3) == [
        "Un deux. Trois quatre cinq six.", "Sept huit. Neuf dix onze douze."]
    for text in ("Introduction courte. " + long + " Conclusion finale.",
                 "Titre. " + " ".join(f"w{i}" for i in range(500)) + " Fin.", DOC):
        for words in (3, 12, 120):
            chunks = chunk_text(text, words)
            assert not any(b in a for a, b in zip(chunks, chunks[1:])), (words, chunks)
    # the chunker before the fix, kept for the store benchmark's fixed corpus
    assert chunk_text("Introduction courte. " + long + " Conclusion finale.", drop_repeats=False)[1] == long


def _words(text: str) -> int:
    """A token counter for the window tests: two tokens of prompt, then one a word."""
    return 2 + len(text.split())


def test_chunks_are_cut_to_the_token_window() -> None:
    """Word counts alone overflowed the model's window on dense text (a 256-word leaflet chunk took 805
    e5 tokens): its end was not encoded."""
    plain = chunk_text(DOC, chunk_words=30, overlap=1)
    assert max(_words(c) for c in plain) > 12
    cut = chunk_text(DOC, chunk_words=30, overlap=1, max_tokens=12, count_tokens=_words)
    assert all(_words(c) <= 12 for c in cut) and len(cut) > len(plain)
    # every word is still in a chunk, in order (overlapping sentences repeat)
    words = " ".join(DOC.split()).split()
    assert set(words) <= {w for c in cut for w in c.split()}
    assert cut[0].split()[:3] == words[:3] and cut[-1].split()[-2:] == words[-2:]
    # a window nothing overflows changes nothing
    assert chunk_text(DOC, chunk_words=30, overlap=1, max_tokens=1000, count_tokens=_words) == plain
    # a sentence over the window alone is cut into the longest runs that fit; a word over it stays whole
    long = " ".join(f"mot{i}" for i in range(25))
    assert [len(c.split()) for c in chunk_text(long, max_tokens=10, count_tokens=_words)] == [8, 8, 8, 1]
    assert chunk_text("anticonstitutionnellement", max_tokens=2, count_tokens=lambda t: 5) == [
        "anticonstitutionnellement"]


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": 12}, "max_tokens and count_tokens go together"),
    ({"count_tokens": _words}, "max_tokens and count_tokens go together"),
    ({"max_tokens": 0, "count_tokens": _words}, "max_tokens must be an int >= 1"),
    ({"max_tokens": True, "count_tokens": _words}, "max_tokens must be an int >= 1"),
    ({"max_tokens": 12, "count_tokens": 3}, "count_tokens must be a function"),
])
def test_a_bad_token_window_is_refused(kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        chunk_text(DOC, **kwargs)


def test_the_token_window_of_embeddings_without_a_tokenizer(caplog) -> None:
    fake = FakeMatryoshkaEmbeddings()
    assert token_window(fake, None) == (None, None)
    with caplog.at_level("INFO", logger="medrag.indexing"):
        assert token_window(fake, "model") == (None, None)
    assert "cannot count tokens: chunks are cut by words only" in caplog.text
    with pytest.raises(InvalidInputError, match="cannot count tokens; pass max_tokens=None"):
        token_window(fake, 32)
    for bad in ("Model", 0, 2.5, True):
        with pytest.raises(InvalidInputError, match="max_tokens must be 'model', None or an int >= 1"):
            token_window(fake, bad)


def test_a_window_leaving_a_few_tokens_of_text_is_warned_about(tiny_model_dir, caplog) -> None:
    """--max-tokens 5 rebuilt the index into one-word chunks without a word (user tryout)."""
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))
    overhead = emb.count_tokens(["x"])[0] - 1
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert token_window(emb, 5, option="--max-tokens ")[0] == 5
    assert f"a token window of 5 (--max-tokens, max_tokens=) leaves {max(5 - overhead, 0)} token(s)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        token_window(emb, overhead + 32)
        token_window(emb, "model")
    assert caplog.text == ""


def test_a_chunk_cut_to_the_window_never_sits_inside_the_previous_one() -> None:
    """The window cut [s0, s1] to fit, the overlap restarted at s1, and [s1, s2] overflowing again
    left the chunk [s1], already stored (review: 35 of 12,349 leaflet chunks)."""
    text = "a1 a2 a3. b1 b2 b3. c0 c1 c2 c3 c4 c5 c6 c7. d1 d2."
    cut = chunk_text(text, chunk_words=5, overlap=1, max_tokens=9, count_tokens=_words)
    assert all(_words(c) <= 9 for c in cut)
    for a, b in zip(cut, cut[1:]):
        assert b not in a, cut
    assert cut == ["a1 a2 a3. b1 b2 b3.", "c0 c1 c2 c3 c4 c5 c6", "c7. d1 d2."]
