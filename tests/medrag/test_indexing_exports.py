"""``medrag index`` on the exports of a hospital information system: Parquet dates, decimals and
lists, French numbers and dates, CSV ids written as floats, a repeated id before a new collection's
first write (user tryout: a data engineer's pandas exports)."""

from __future__ import annotations

import datetime
import decimal
import logging

import chromadb
import pytest

from medrag import MatryoshkaChroma
from medrag.errors import DataError
from medrag.indexing import index_corpus, iter_documents
from tests.medrag.test_store import FakeMatryoshkaEmbeddings


def _parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_dates_decimals_and_lists_are_kept(tmp_path, caplog):
    """They were left out of every record (exit 0, --strict or not), and a Parquet export indexed over a
    CSV one removed the dates stored from it."""
    src = _parquet(tmp_path / "export.parquet", {
        "text": ["La TSH élevée.", "La CRP monte."],
        "date_redaction": [datetime.datetime(2023, 6, 10), datetime.datetime(2023, 6, 11, 8, 30)],
        "jour": [datetime.date(2023, 6, 10), datetime.date(2023, 6, 12)],
        "montant": [decimal.Decimal("12.50"), decimal.Decimal("3")],
        "tags": [["HTA", "diabète"], ["CRP"]],
    })
    fields = ["date_redaction", "jour", "montant", "tags"]
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        docs = list(iter_documents(src, metadata_fields=fields))
    assert "absent, null" not in caplog.text
    assert [md for _, _, md in docs] == [
        {"date_redaction": "2023-06-10", "jour": "2023-06-10", "montant": 12.5, "tags": ["HTA", "diabète"]},
        {"date_redaction": "2023-06-11T08:30:00", "jour": "2023-06-12", "montant": 3.0, "tags": ["CRP"]}]
    typed = list(iter_documents(src, metadata_fields=["date_redaction:date", "montant:float", "tags:str", "jour:str"]))
    assert typed[0][2] == {"date_redaction": 20230610, "montant": 12.5, "tags": '["HTA", "diabète"]',
                           "jour": "2023-06-10"}
    # NAME:str keeps writing a date-time as it did (another text made other document keys)
    assert list(iter_documents(src, metadata_fields=["date_redaction:str"]))[0][2] == {
        "date_redaction": "2023-06-10T00:00:00"}
    with pytest.raises(DataError, match=r"'date_redaction' is '2023-06-10', not an int.*date_redaction:date"):
        list(iter_documents(src, metadata_fields=["date_redaction:int"]))

    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    index_corpus(src, store, metadata_fields=["date_redaction:date", "tags"])
    found = store.get(where={"$and": [{"date_redaction": {"$gte": 20230611}}, {"tags": {"$contains": "CRP"}}]})
    assert found["documents"] == ["La CRP monte."]
    store.delete_collection()


def test_a_list_mixing_types_is_left_out_before_the_write(tmp_path, caplog):
    src = _parquet(tmp_path / "mixed.parquet", {"text": ["La TSH."], "codes": [["E11", "E11.9"]]})
    assert list(iter_documents(src, metadata_fields=["codes"]))[0][2] == {"codes": ["E11", "E11.9"]}
    from medrag.sources import _storable

    assert not _storable([1, "a"]) and not _storable([]) and _storable([1, 2]) and not _storable([True, 1])


def test_french_dates_and_numbers_of_a_csv(tmp_path):
    src = tmp_path / "export.csv"
    src.write_text("text;jour;pages\nLa TSH élevée.;10/06/2023;5,0\nLa CRP monte.;2023-06-11;3\n", encoding="utf-8")
    docs = list(iter_documents(src, metadata_fields=["jour:date", "pages:int"]))
    assert [md for _, _, md in docs] == [{"jour": 20230610, "pages": 5}, {"jour": 20230611, "pages": 3}]
    thousands = tmp_path / "thousands.csv"
    thousands.write_text("text;pages\nLa TSH.;1,000\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'pages' is '1,000', not an int"):  # a thousand, or 1,0: not guessed
        list(iter_documents(thousands, metadata_fields=["pages:int"]))
    bad = tmp_path / "bad.csv"
    bad.write_text("text;jour\nLa TSH.;31/02/2023\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'jour' is '31/02/2023', not a date.*DD/MM/YYYY"):
        list(iter_documents(bad, metadata_fields=["jour:date"]))


def test_csv_ids_written_as_floats_are_counted(tmp_path, caplog):
    """A pandas export whose id column had a gap wrote 1000.0: only Parquet's floats were counted, and
    the next export without the gap stored every note a second time, in silence."""
    src = tmp_path / "export.csv"
    src.write_text("doc_id,text\n1000.0,La TSH élevée.\n1001.0,La CRP monte.\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        docs = list(iter_documents(src, id_field="doc_id"))
    assert [key for key, _, _ in docs] == ["1000.0", "1001.0"]  # keyed as written: stored ids stay valid
    assert "2 'doc_id' value(s) are whole numbers stored as floats (e.g. '1000.0')" in caplog.text
    assert "exported as integers ('1000')" in caplog.text


def test_a_repeated_id_before_a_new_collections_first_write_writes_nothing(tmp_path):
    """The documents read before the repeated id were written as the collection's first write, which
    decided its coarse stage ("auto": the raw prefix) on them for good."""
    src = tmp_path / "export.jsonl"
    rows = [f'{{"id": "d{i}", "text": "Note {i} : la TSH du patient."}}' for i in range(30)] + [
        '{"id": "d3", "text": "Une note en double."}']
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.PersistentClient(str(tmp_path / "db")))
    assert store.coarse_rotation == "auto"
    with pytest.raises(DataError, match=r"has the id 'd3' of document 4.*Nothing was written \(a new collection"):
        index_corpus(src, store, id_field="id")
    assert len(store) == 0 and store.coarse_rotation == "auto"  # still to decide, on the whole fixed file


def test_add_texts_names_a_repeated_id(caplog):
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        store.add_texts(["La TSH.", "La CRP.", "La CRP monte."], ids=["1", "2", "2"])
    assert len(store) == 2
    assert "1 id(s) given more than once in this call (e.g. '2' at indexes 1 and 2)" in caplog.text
    assert store.add_texts(["La ferritine."], metadatas=[{"k": 1}], ids=iter(["3"])) == ["3"]  # an iterator of ids
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        store.add_texts(["La TSH.", "La TSH."])  # content ids: the same text twice is one record, no warning
    assert "more than once" not in caplog.text
    with pytest.raises(Exception, match=r"astype\(str\)"):
        store.add_texts(["La TSH."], ids=[11])
    store.delete_collection()


def test_a_pandas_rows_metadata_errors_name_its_id_and_float32_values_keep_their_shown_value():
    import numpy as np

    from medrag.errors import InvalidInputError

    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(InvalidInputError, match=r"metadata at index 1 \(id 'doc-1040'\)"):
        store.add_texts(["La TSH.", "La CRP."], metadatas=[{"score": 0.5}, {"score": float("nan")}],
                        ids=["doc-1039", "doc-1040"])
    assert len(store) == 0
    store.add_texts(["La TSH."], metadatas=[{"score": np.float32(0.965)}], ids=["a"])
    assert store.get(where={"score": 0.965})["ids"] == ["a"]
    assert store.get(where={"score": np.float32(0.965)})["ids"] == ["a"]
    store.delete_collection()


def test_warnings_name_a_record_by_its_id(tmp_path, caplog):
    """They said "document 12": a data engineer counted rows to find doc_id 1040."""
    src = tmp_path / "export.csv"
    src.write_text("doc_id,text\n1039,La TSH élevée.\n1040,\n", encoding="utf-8")
    store = MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        index_corpus(src, store, id_field="doc_id")
    assert "(e.g. document 2 (doc_id '1040'))" in caplog.text
    store.delete_collection()
