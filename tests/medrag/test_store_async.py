"""Async writes stop when their task is cancelled (user tryout: an async web service)."""

from __future__ import annotations

import asyncio
import threading
import time

import chromadb
import pytest

from medrag import MatryoshkaChroma
from tests.medrag.test_store import FakeMatryoshkaEmbeddings

TEXTS = [f"Note {i} : la TSH et la ferritine du patient {i}." for i in range(1200)]


class SlowEmbeddings(FakeMatryoshkaEmbeddings):
    """0.02 s per document call: a write of 1,200 texts takes seconds."""

    def encode_documents(self, texts):
        time.sleep(0.02)
        return super().encode_documents(texts)


@pytest.fixture
def store(tmp_path):
    s = MatryoshkaChroma("notes", SlowEmbeddings(), client=chromadb.PersistentClient(str(tmp_path / "db")),
                         coarse_rotation="none")
    yield s
    s.close()


async def test_a_cancelled_aadd_texts_stops_and_writes_nothing_after_the_cancellation(store):
    """It kept writing after wait_for's timeout, and brought back the records a rollback adelete had
    just removed (350 records 25 s after the rollback, in the tryout)."""
    ids = [f"n{i}" for i in range(len(TEXTS))]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(store.aadd_texts(TEXTS, ids=ids, batch_size=100), timeout=0.5)
    stored = len(store)
    assert 0 < stored < len(TEXTS) and stored % 100 == 0  # whole batches only
    await store.adelete(ids)
    await asyncio.sleep(1.0)
    assert len(store) == 0  # the rollback stands
    assert await store.aadd_texts(TEXTS, ids=ids, batch_size=100) == ids  # a rerun completes it
    assert len(store) == len(TEXTS)


async def test_a_cancelled_aadd_documents_stops_too(store):
    from langchain_core.documents import Document

    docs = [Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)]
    task = asyncio.ensure_future(store.aadd_documents(docs, batch_size=100))
    await asyncio.sleep(0.4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = len(store)
    await asyncio.sleep(0.8)
    assert len(store) == stored < len(TEXTS)
    assert set(store.get()["ids"]) <= {d.id for d in docs}


async def test_async_writes_that_are_not_cancelled_are_add_texts(store):
    ids = await store.aadd_texts(TEXTS[:10], metadatas=[{"i": i} for i in range(10)])
    assert ids == store.add_texts(TEXTS[:10], metadatas=[{"i": i} for i in range(10)])  # content ids: the same
    assert len(store) == 10
    with pytest.raises(Exception, match="got 2 metadatas for 1 texts"):
        await store.aadd_texts(["x"], metadatas=[{}, {}])


def test_a_search_does_not_wait_for_a_whole_write_batch(tmp_path):
    """A service's query encode queued behind the whole document batch of an async write (one model call
    of up to 4,096 texts); it now encodes slices, and a search slips in between two of them."""
    from medrag.encoding import model_lock

    class Model:  # model_lock keys its locks by a weak reference to the model
        pass

    class Locked(FakeMatryoshkaEmbeddings):  # one call at a time, as a real model's lock makes it
        model = Model()

        def encode_documents(self, texts):
            with model_lock(self.model):
                time.sleep(0.002 * len(texts))
                return super().encode_documents(texts)

        def encode_queries(self, texts):
            with model_lock(self.model):
                return super().encode_queries(texts)

    store = MatryoshkaChroma("notes", Locked(), client=chromadb.PersistentClient(str(tmp_path / "db")),
                             coarse_rotation="none")
    writer = threading.Thread(target=lambda: asyncio.run(store.aadd_texts(TEXTS[:1000], batch_size=1000)))
    writer.start()
    time.sleep(0.3)
    start = time.perf_counter()
    store.similarity_search("la TSH", k=1)
    waited = time.perf_counter() - start
    writer.join()
    assert waited < 1.0  # one slice of 64 texts (0.13 s), not the batch's 1,000 (2 s)
    assert len(store) == 1000
    store.close()
