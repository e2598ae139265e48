"""Filters match a text in both of its Unicode spellings (medrag.unicode_filters, used by the store)."""

import unicodedata

import chromadb
import pytest

from medrag import MatryoshkaChroma
from medrag.unicode_filters import both_spellings, spellings
from tests.medrag.test_store import FakeMatryoshkaEmbeddings


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


NAME = "Hélène Dupré"


def test_spellings_are_the_given_one_then_the_others():
    assert spellings("CRP") == ["CRP"]
    assert spellings(NAME) == [NAME, nfd(NAME)]
    assert spellings(nfd(NAME)) == [nfd(NAME), NAME]  # as given first


@pytest.mark.parametrize(("where", "widened"), [
    ({"patient": NAME}, {"patient": {"$in": [NAME, nfd(NAME)]}}),
    ({"patient": {"$eq": NAME}}, {"patient": {"$in": [NAME, nfd(NAME)]}}),
    ({"patient": {"$ne": NAME}}, {"patient": {"$nin": [NAME, nfd(NAME)]}}),
    ({"patient": {"$in": [NAME, "Léo", "Max", 3]}}, {"patient": {"$in": [NAME, nfd(NAME), "Léo", nfd("Léo"), "Max", 3]}}),
    ({"tags": {"$contains": "fièvre"}}, {"$or": [{"tags": {"$contains": "fièvre"}}, {"tags": {"$contains": nfd("fièvre")}}]}),
    ({"tags": {"$not_contains": "fièvre"}},
     {"$and": [{"tags": {"$not_contains": "fièvre"}}, {"tags": {"$not_contains": nfd("fièvre")}}]}),
    ({"$and": [{"patient": NAME}, {"year": {"$gte": 2020}}]},
     {"$and": [{"patient": {"$in": [NAME, nfd(NAME)]}}, {"year": {"$gte": 2020}}]}),
    ({"source": "notes.txt", "year": 3}, {"source": "notes.txt", "year": 3}),  # nothing to widen
    ({"patient": {"$gt": 3, "$lt": 5}}, {"patient": {"$gt": 3, "$lt": 5}}),  # not one operator: Chroma's to judge
])
def test_a_metadata_filter_is_widened_to_both_spellings(where, widened):
    assert both_spellings(where) == widened


@pytest.mark.parametrize(("where", "widened"), [
    ({"$contains": "Hélène"}, {"$or": [{"$contains": "Hélène"}, {"$contains": nfd("Hélène")}]}),
    ({"$not_contains": "Hélène"}, {"$and": [{"$not_contains": "Hélène"}, {"$not_contains": nfd("Hélène")}]}),
    ({"$regex": "[éè]"}, {"$regex": "[éè]"}),  # a pattern is left as written
    ({"$or": [{"$contains": "CRP"}, {"$contains": "fièvre"}]},
     {"$or": [{"$contains": "CRP"}, {"$or": [{"$contains": "fièvre"}, {"$contains": nfd("fièvre")}]}]}),
    ("not a filter", "not a filter"),
])
def test_a_document_filter_is_widened_to_both_spellings(where, widened):
    assert both_spellings(where, document=True) == widened


@pytest.fixture
def store():
    s = MatryoshkaChroma("nfd", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(), candidates=10)
    # a patient's notes stored in NFD (macOS, a PDF extractor), another's in NFC
    s.add_texts([nfd(f"Compte rendu de Mme {NAME} : hypoglycémie sévère."), "Compte rendu de M. Léo Marchal : HTA."],
                [{"patient": nfd(NAME), "tags": [nfd("hypoglycémie")]}, {"patient": "Léo Marchal", "tags": ["HTA"]}],
                ids=["r1", "r2"])
    yield s
    s.delete_collection()


def test_filters_typed_in_nfc_find_what_was_stored_in_nfd(store):
    """A search found the NFD record, but a filter or a where_document typed in NFC matched nothing
    (user tryout)."""
    assert store.get(where={"patient": NAME})["ids"] == ["r1"]
    assert store.get(where_document={"$contains": "Hélène"})["ids"] == ["r1"]
    assert store.get(where={"tags": {"$contains": "hypoglycémie"}})["ids"] == ["r1"]
    assert store.get(where={"patient": {"$ne": NAME}})["ids"] == ["r2"]
    assert store.get(where_document={"$not_contains": "Hélène"})["ids"] == ["r2"]
    for search in (store.similarity_search, store.hybrid_search, store.max_marginal_relevance_search):
        assert [d.id for d in search("compte rendu", k=4, filter={"patient": NAME})] == ["r1"]
        assert [d.id for d in search("compte rendu", k=4, where_document={"$contains": "Hélène"})] == ["r1"]
    assert [d.id for d in store.hybrid_search("Hélène", k=4, lexical_weight=1.0, filter={"patient": NAME})] == ["r1"]


@pytest.mark.parametrize("how", ["where", "where_document", "ids and where"])
def test_an_erasure_typed_in_nfc_deletes_the_notes_stored_in_nfd(store, how, caplog):
    """delete(where={"patient": ...}) deleted nothing of notes stored in NFD, with a warning about keys and
    types: an RGPD erasure that erased nothing (user tryout)."""
    kwargs = {"where": {"where": {"patient": NAME}}, "where_document": {"where_document": {"$contains": "Hélène"}},
              "ids and where": {"ids": ["r1", "r2"], "where": {"patient": NAME}}}[how]
    with caplog.at_level("WARNING"):
        assert store.delete(**kwargs) is True
    assert store.get()["ids"] == ["r2"] and "deleted nothing" not in caplog.text
    assert "r1" not in [d.id for d in store.hybrid_search("Hélène hypoglycémie", k=4, lexical_weight=1.0)]


def test_two_files_named_alike_in_two_spellings_stay_two_documents(tmp_path):
    """medrag's own lookups by document key stay exact: two files of one folder whose names differ only
    in their spelling (possible on Linux) are two documents; indexing one again keeps the other."""
    from medrag.indexing import index_corpus

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "anémie.txt").write_text("La ferritine basse signe une carence martiale.")
    (folder / nfd("anémie.txt")).write_text("La TSH explore la thyroïde.")
    if len(list(folder.iterdir())) != 2:  # a file system that normalises names (macOS)
        pytest.skip("this file system keeps one spelling of a file name")
    s = MatryoshkaChroma("two", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(), candidates=10)
    index_corpus(folder, s, chunk_words=20, show_progress=False, batch_size=1)
    (folder / "anémie.txt").write_text("La ferritine basse signe une carence martiale, à confirmer.")
    # one file per write: the lookup of one file's earlier chunks must not take the other's for them
    index_corpus(folder, s, chunk_words=20, show_progress=False, prune=True, batch_size=1)
    texts = sorted(s.get()["documents"])
    assert len(texts) == 2 and any("TSH" in t for t in texts) and any("confirmer" in t for t in texts)
    s.delete_collection()


def test_unicode_spellings_false_matches_a_filter_as_written(store):
    """Two folders whose names differ only in spelling (one copied from macOS) are told apart only by
    an exact filter: medrag's advice to delete the old copy deleted the new one too (review)."""
    assert store.get(where={"patient": NAME}, unicode_spellings=False)["ids"] == []
    assert store.get(where={"patient": nfd(NAME)}, unicode_spellings=False)["ids"] == ["r1"]
    store.delete(where={"patient": NAME}, unicode_spellings=False)
    assert len(store) == 2
    store.delete(["r1", "r2"], where={"patient": nfd(NAME)}, unicode_spellings=False)
    assert store.get()["ids"] == ["r2"]


def test_the_advice_for_a_folder_stored_under_its_other_spelling_is_exact(tmp_path, caplog):
    from medrag.indexing import index_corpus

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "fer.txt").write_text("La ferritine basse signe une carence martiale.")
    s = MatryoshkaChroma("moved", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient(), candidates=10)
    index_corpus(folder, s, chunk_words=20, show_progress=False, folder_name=nfd("Médecine"))
    with caplog.at_level("WARNING"):
        index_corpus(folder, s, chunk_words=20, show_progress=False, folder_name="Médecine")
    advice = f"store.delete(where={{'folder': {nfd('Médecine')!r}}}, unicode_spellings=False)"
    assert advice in caplog.text
    s.delete(where={"folder": nfd("Médecine")}, unicode_spellings=False)  # the advice, followed
    assert [md["folder"] for md in s.get()["metadatas"]] == ["Médecine"]
    s.delete_collection()


def test_a_filter_too_long_to_widen_is_used_as_given(store, caplog):
    """A $in of 17,000 accented names, doubled, passed SQLite's limit of variables (review)."""
    names = [f"Hélène {i}" for i in range(17_000)] + [nfd(NAME)]
    with caplog.at_level("WARNING"):
        assert store.get(where={"patient": {"$in": names}})["ids"] == ["r1"]
    assert "used as given, without the other Unicode spelling" in caplog.text


def test_a_refused_filter_is_named_as_the_caller_wrote_it(store):
    from medrag import InvalidInputError

    with pytest.raises(InvalidInputError) as info:
        store.get(where={"patient": NAME, "year": 1})
    assert "$in" not in str(info.value) and "'patient': 'Hélène Dupré'" in str(info.value)
