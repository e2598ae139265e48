"""MatryoshkaChroma under LangChain's incremental indexing API (``langchain_core.indexing.index``)."""

import chromadb
import pytest
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index

from medrag import InvalidInputError, MatryoshkaChroma
from tests.medrag.test_store import FakeMatryoshkaEmbeddings


def _docs(n: int, source: str = "protocole.pdf") -> list[Document]:
    return [Document(f"Page {i} : la ferritine est dosée avant toute supplémentation martiale.",
                     metadata={"source": source, "page": i}) for i in range(n)]


@pytest.fixture
def setup(tmp_path):
    store = MatryoshkaChroma("idx", FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"), candidates=10)
    manager = InMemoryRecordManager("medrag/idx")
    manager.create_schema()
    yield store, manager
    store.close()


def test_index_keeps_the_store_and_the_record_manager_in_step(setup):
    store, manager = setup
    docs = _docs(150)
    assert index(docs, manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")["num_added"] == 150
    assert index(docs, manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")["num_skipped"] == 150
    changed = docs[:120] + [Document("Page 0 : la CRP est dosée à J3.", metadata={"source": "protocole.pdf", "page": 0})]
    result = index(changed, manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert (result["num_added"], result["num_deleted"]) == (1, 30)
    assert sorted(store.get()["ids"]) == sorted(manager.list_keys()) and len(store) == 121
    assert store.hybrid_search("CRP J3", k=1, lexical_weight=1.0)[0].page_content.startswith("Page 0 : la CRP")


def test_a_blank_page_is_named_by_its_id_and_source_not_its_place_in_a_batch(setup):
    """A loader's blank page 130 stopped index() with "text at index 30" (its place in index()'s batch of
    100), naming neither the document nor what to do (user tryout). Nothing of that batch is written."""
    store, manager = setup
    docs = _docs(150)
    docs[130] = Document("  \n", metadata={"source": "scan.pdf", "page": 7})
    with pytest.raises(InvalidInputError, match=r"text at index 30 \(id '[0-9a-f-]+', source 'scan.pdf', page 7\) "
                                                r"is empty .*leave empty documents out before adding them"):
        index(docs, manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert len(store) == 100 and sorted(store.get()["ids"]) == sorted(manager.list_keys())


def test_a_blank_text_is_named_by_its_index_alone_without_ids_nor_metadata():
    store = MatryoshkaChroma("blank", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(InvalidInputError, match=r"^text at index 1 is empty or holds only whitespace"):
        store.add_texts(["CRP", " "])
    store.delete_collection()
