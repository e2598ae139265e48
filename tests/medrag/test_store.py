"""MatryoshkaChroma: the same tests against an embedded Chroma and a real Chroma server.

The ``client`` fixture is parametrised: ``embedded`` (a ``PersistentClient`` in a temporary
folder) and ``server`` (an ``HttpClient`` to ``chroma run`` started on 127.0.0.1 on a free port
for this module, stopped at the end). langchain-tests' standard suite runs on both too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from medrag import CollectionMismatchError, DimensionError, MatryoshkaChroma, MedragError
from medrag.coarse import CoarseProjection
from medrag.errors import InvalidArgumentError, InvalidInputError, StoreError
from medrag.lexical.sidecar import index_file
from medrag.vector_codec import decode_rows, encode_rows
from medrag._store_contract import _plain_identity
from medrag.store import CONTRACT_KEYS, FULL_KEY
from tests.medrag.conftest import _chroma_exe, _free_port

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers


class FakeMatryoshkaEmbeddings(Embeddings):
    """Deterministic hash-seeded vectors (full 128, any prefix usable), with the numpy API.

    ``seed`` changes every vector and the fingerprint, like another model would.
    """

    def __init__(self, full_dim: int = 128, seed: int = 0) -> None:
        self.full_dim = full_dim
        self.seed = seed
        self.spec = f"fake-{full_dim}-{seed}"
        self.fingerprint = hashlib.sha256(self.spec.encode()).hexdigest()[:16]
        self.document_calls = 0

    def _vec(self, text: str) -> np.ndarray:
        digest = hashlib.sha256(f"{self.seed}:{text}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        v = rng.standard_normal(self.full_dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        self.document_calls += 1
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.full_dim), np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text).tolist()


class PlainEmbeddings(Embeddings):
    """A LangChain Embeddings with no numpy API and no identity attributes."""

    def __init__(self, dim: int = 96) -> None:
        self.inner = FakeMatryoshkaEmbeddings(dim, seed=7)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


@pytest.fixture(params=["embedded", "server"])
def client(request, tmp_path):
    import chromadb

    if request.param == "embedded":
        yield chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    else:
        host, port = request.getfixturevalue("chroma_server")
        yield chromadb.HttpClient(host=host, port=port)


@pytest.fixture
def fake() -> FakeMatryoshkaEmbeddings:
    return FakeMatryoshkaEmbeddings()


def _name() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def store(client, fake) -> MatryoshkaChroma:
    s = MatryoshkaChroma(_name(), fake, client=client)
    yield s
    s.delete_collection()


TEXTS = [f"passage {i}: la ferritine, la CRP et la TSH du patient {i % 17}" for i in range(300)]


def _snapshot(store: MatryoshkaChroma) -> dict:
    res = store.collection.get(include=["documents", "metadatas", "embeddings"])
    return {i: (d, m, np.asarray(e).round(6).tolist())
            for i, d, m, e in zip(res["ids"], res["documents"], res["metadatas"], res["embeddings"])}


# ---------------------------------------------------------------------------- basics


def test_add_and_search_strip_internal_metadata(store: MatryoshkaChroma) -> None:
    ids = store.add_texts(TEXTS[:50], [{"n": i, "tag": "a" if i % 2 else "b"} for i in range(50)])
    assert len(ids) == 50 and len(set(ids)) == 50 and len(store) == 50
    hits = store.similarity_search_with_score(TEXTS[7], k=3)
    assert len(hits) == 3
    top, dist = hits[0]
    assert top.page_content == TEXTS[7] and top.id == ids[7]
    assert top.metadata == {"n": 7, "tag": "a"}
    assert dist == pytest.approx(0.0, abs=1e-3)  # query == passage vector in the fake model
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    for doc in store.get_by_ids(ids[:5]) + [h[0] for h in hits]:
        assert not any(k.startswith("_medrag") for k in doc.metadata)


def test_repr_names_the_collection_model_stages_and_where_the_records_are(client, fake) -> None:
    store = MatryoshkaChroma("repr-store", fake, client=client, coarse_dim=16, candidates=30)
    try:
        text = repr(store)
        assert text.startswith("MatryoshkaChroma(collection='repr-store', ")
        assert "full_dim=128, coarse_dim=16" in text and "candidates=30" in text
        settings = client.get_settings()
        if settings.chroma_server_host:
            assert text.endswith(f"server='http://{settings.chroma_server_host}:{settings.chroma_server_http_port}')")
        else:
            assert text.endswith(f"persist_directory={settings.persist_directory!r})")
    finally:
        store.delete_collection()
    memory = MatryoshkaChroma(_name(), fake)
    try:
        assert repr(memory).endswith("client='in-memory')")
    finally:
        memory.delete_collection()


def test_coarse_vectors_are_what_the_store_indexes(client, fake) -> None:
    from medrag.errors import DimensionError

    store = MatryoshkaChroma(_name(), fake, client=client, coarse_dim=16, coarse_rotation="none")
    try:
        full = fake.encode_documents(["la ferritine", "la TSH"])
        coarse = store.coarse_vectors(full)
        np.testing.assert_allclose(coarse, full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True), atol=1e-6)
        np.testing.assert_allclose(store.coarse_vectors(full[0]), coarse[0], atol=1e-7)
        for bad in (full[:, :64], [[1.0, 2.0], [3.0]], "texte"):
            with pytest.raises(DimensionError, match="coarse_vectors"):
                store.coarse_vectors(bad)
    finally:
        store.delete_collection()


def test_records_hold_their_full_vector(store: MatryoshkaChroma, fake) -> None:
    ids = store.add_texts(TEXTS[:20])
    got = store.get_full_vectors(ids)
    expected = fake.encode_documents(TEXTS[:20])
    assert got.dtype == np.float32 and got.shape == (20, 128)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * expected).sum(1)
    assert cos.min() > 0.9999  # int8 per-row quantisation
    # in the order asked, repeats included
    np.testing.assert_array_equal(store.get_full_vectors([ids[3], ids[0], ids[3]]), got[[3, 0, 3]])
    res = store.collection.get(ids=ids[:1], include=["embeddings"])
    coarse = expected[0, :64] / np.linalg.norm(expected[0, :64])
    np.testing.assert_allclose(res["embeddings"][0], coarse, atol=1e-6)


def test_get_full_vectors_names_missing_and_corrupt_records(client, fake) -> None:
    from medrag import MedragError

    # the records' own copy (the sidecar of an embedded store is tested below)
    store = MatryoshkaChroma(_name(), fake, client=client, vector_sidecar=False)
    ids = store.add_texts(TEXTS[:3])
    with pytest.raises(MedragError, match="nope"):
        store.get_full_vectors([ids[0], "nope"])
    # a record whose packed vector was damaged by another tool
    meta = store.collection.get(ids=[ids[1]], include=["metadatas"])["metadatas"][0]
    store.collection.update(ids=[ids[1]], metadatas=[{**meta, FULL_KEY: meta[FULL_KEY][:-8]}])
    with pytest.raises(MedragError, match=ids[1]):
        store.get_full_vectors(ids)
    with pytest.raises(MedragError, match=ids[1]):  # a search reaching it names it too
        store.similarity_search(TEXTS[1], k=1, candidates=3)
    assert store.get_full_vectors([ids[0], ids[2]]).shape == (2, 128)
    with pytest.raises(MedragError, match="bare string"):
        store.get_full_vectors(ids[0])
    store.delete_collection()


def test_vector_sidecar_matches_the_records_and_recovers_from_a_kill(tmp_path, fake, monkeypatch) -> None:
    """Embedded stores read the rerank's vectors from a local SQLite copy written before each
    record; a write the copy did not see (a kill between the copy and the record) is detected by
    the write generation and the copy is rebuilt from the records when the store reopens."""
    import chromadb

    from medrag._store_sidecar import SIDECAR_NAME

    path = str(tmp_path / "db")
    store = MatryoshkaChroma("side", fake, persist_directory=path)
    assert store._sidecar is not None and (tmp_path / "db" / SIDECAR_NAME).is_file()
    ids = store.add_texts(TEXTS[:40], ids=[f"s{i}" for i in range(40)])
    plain = MatryoshkaChroma("side", fake, client=chromadb.PersistentClient(path), vector_sidecar=False)
    np.testing.assert_array_equal(store.get_full_vectors(ids), plain.get_full_vectors(ids))
    for q in TEXTS[:5]:
        assert ([(d.id, round(x, 6)) for d, x in store.similarity_search_with_score(q, k=5)]
                == [(d.id, round(x, 6)) for d, x in plain.similarity_search_with_score(q, k=5)])
    store.delete(["s0"])
    assert store.similarity_search(TEXTS[0], k=1)[0].id != "s0"
    # a re-add killed after the sidecar write, before the Chroma write
    monkeypatch.setattr(store.collection, "upsert", lambda **kw: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.add_texts(["un tout autre texte"], ids=["s1"])
    monkeypatch.undo()
    del store, plain
    import gc

    gc.collect()
    again = MatryoshkaChroma("side", fake, persist_directory=path)  # stamp != generation: rebuilt
    expected = fake.encode_documents([TEXTS[1]])[0]
    assert float(again.get_full_vectors(["s1"])[0] @ expected) > 0.9999
    assert again.get_by_ids(["s1"])[0].page_content == TEXTS[1]


def test_delete_collection_removes_its_index_folders_and_keeps_the_others(tmp_path, fake) -> None:
    """Chroma's delete_collection leaves the HNSW folder of an embedded collection on disk."""
    path = tmp_path / "db"
    keep = MatryoshkaChroma("keep", fake, persist_directory=str(path), coarse_rotation="none")
    keep.add_texts(TEXTS[:20])
    store = MatryoshkaChroma("gone", fake, persist_directory=str(path), coarse_rotation="none")
    before = {p.name for p in path.iterdir() if p.is_dir()}
    store.add_texts([f"{t} #{i}" for i in range(4) for t in TEXTS], batch_size=1200)  # > sync_threshold 1000
    written = {p.name for p in path.iterdir() if p.is_dir()} - before
    assert written, "the collection's HNSW folder was never persisted: the test would prove nothing"
    store.delete_collection()
    assert {p.name for p in path.iterdir() if p.is_dir()} == before
    assert len(keep.similarity_search(TEXTS[3], k=3)) == 3     # the other collection is untouched
    assert MatryoshkaChroma("gone", fake, persist_directory=str(path))._collection.count() == 0


def test_write_generation_is_bumped_before_every_write(client, fake) -> None:
    from medrag.store import GENERATION_KEY

    store = MatryoshkaChroma(_name(), fake, client=client)
    assert store.write_generation == 0
    store.add_texts(TEXTS[:5], ids=[f"g{i}" for i in range(5)])
    g1 = store.write_generation
    assert g1 >= 1 and store.collection.metadata[GENERATION_KEY] == g1
    store.add_texts(TEXTS[:40], batch_size=10)  # one bump per written batch
    assert store.write_generation == g1 + 4
    store.delete(["g0"])
    assert store.write_generation == g1 + 5
    # another client (another process, a server user) sees the bump, and its writes are seen here
    other = MatryoshkaChroma(store.collection.name, fake, client=client)
    assert other.write_generation == g1 + 5
    other.add_texts(["un autre texte"])
    assert store.write_generation == g1 + 6
    # the rest of the contract and the user's collection metadata survive the bumps
    assert store.collection.metadata["medrag:coarse_dim"] == 64
    # a rejected call writes nothing and bumps nothing
    with pytest.raises(ValueError):
        store.add_texts(["ok", ""])
    assert store.write_generation == g1 + 6
    store.delete_collection()


def test_write_generation_bump_precedes_the_write(client, fake, monkeypatch) -> None:
    """A writer killed between the bump and the write leaves a newer generation, never an older one."""
    store = MatryoshkaChroma(_name(), fake, client=client)
    seen = []
    real_upsert = store.collection.upsert

    def spy(**kwargs):
        seen.append(store.write_generation)
        return real_upsert(**kwargs)

    monkeypatch.setattr(store.collection, "upsert", spy)
    store.add_texts(TEXTS[:3])
    assert seen == [1]
    store.delete_collection()


def test_pca_coarse_rotation_is_fitted_once_and_recorded_in_the_contract(client, fake) -> None:
    from medrag.errors import InvalidInputError
    from medrag.store import ROTATION_KEY

    name = _name()
    store = MatryoshkaChroma(name, fake, client=client, coarse_rotation="pca")
    with pytest.raises(InvalidInputError, match="at least 128"):
        store.add_texts(TEXTS[:50])  # too few to fit a 64-dim PCA: nothing written
    assert len(store) == 0
    # fitted on the first batch, made fit_sample_size (4,096 > batch_size): all 200 texts here
    ids = store.add_texts(TEXTS[:200], batch_size=150)
    meta = client.get_collection(name).metadata
    assert meta["medrag:coarse_rotation"] == "pca" and meta[ROTATION_KEY]
    full = fake.encode_documents(TEXTS[:200])
    mean = full.mean(axis=0)
    _, _, vt = np.linalg.svd(full - mean, full_matrices=False)
    proj = (fake.encode_documents(TEXTS[:1]) - mean) @ vt[:64].T
    stored = np.asarray(store.collection.get(ids=[ids[0]], include=["embeddings"])["embeddings"][0])
    assert abs(abs(float(stored @ (proj[0] / np.linalg.norm(proj[0])))) - 1) < 1e-4  # PCA axes up to sign
    # all candidates: the funnel equals exact full-size search whatever the coarse stage
    q = TEXTS[7]
    exact = np.argsort(-(fake.encode_documents(TEXTS[:200]) @ fake.encode_queries([q])[0]))[:5]
    assert [d.id for d in store.similarity_search(q, k=5, candidates=200)] == [ids[i] for i in exact]
    # a reopened store reads the same rotation; another rotation setting is refused
    again = MatryoshkaChroma(name, fake, client=client, coarse_rotation="pca")
    assert [d.id for d in again.similarity_search(q, k=5, candidates=50)] == \
        [d.id for d in store.similarity_search(q, k=5, candidates=50)]
    with pytest.raises(CollectionMismatchError, match="rotation"):
        MatryoshkaChroma(name, fake, client=client, coarse_rotation="none")
    assert MatryoshkaChroma(name, fake, client=client).coarse_rotation == "pca"  # "auto": the collection's own
    store.delete_collection()
    sampled = MatryoshkaChroma(_name(), fake, client=client, coarse_rotation="pca", rotation_sample=TEXTS[:140])
    sampled.add_texts(TEXTS[:3])  # fitted on the sample, so a small first add is fine
    assert len(sampled) == 3
    sampled.delete_collection()


def test_the_learned_fit_shows_its_progress_when_the_write_does(client, fake, capsys) -> None:
    """A first write of 1,098 texts showed its bar at 100% for a silent minute while the learned
    coarse stage encoded its pseudo-queries (user tryout); it now has a bar of its own, with the
    same result as without one."""
    quiet = MatryoshkaChroma(_name(), fake, client=client, coarse_dim=32, coarse_rotation="learned")
    quiet.add_texts(TEXTS, show_progress=False)
    assert "coarse stage of" not in capsys.readouterr().err
    shown = MatryoshkaChroma(_name(), fake, client=client, coarse_dim=32, coarse_rotation="learned")
    shown.add_texts(TEXTS, show_progress=True)
    err = capsys.readouterr().err
    assert f"coarse stage of {shown.collection.name} (once)" in err and "adding to" in err
    q = TEXTS[3]
    assert [d.id for d in shown.similarity_search(q, k=5, candidates=40)] == \
        [d.id for d in quiet.similarity_search(q, k=5, candidates=40)]


def test_learned_coarse_projection_is_fitted_once_and_recorded(client, fake) -> None:
    from medrag.coarse import fit_learned, learned_steps, pseudo_queries
    from medrag.errors import InvalidInputError
    from medrag.store import ROTATION_KEY

    name = _name()
    store = MatryoshkaChroma(name, fake, client=client, coarse_dim=32, coarse_rotation="learned")
    with pytest.raises(InvalidInputError, match="at least 256"):
        store.add_texts(TEXTS[:200])  # too few for a learned 32-dim projection: nothing written
    assert len(store) == 0
    # fitted on the first batch, made fit_sample_size (4,096 > batch_size): all 300 texts here
    ids = store.add_texts(TEXTS, batch_size=280)
    meta = client.get_collection(name).metadata
    assert meta["medrag:coarse_rotation"] == "learned" and meta[ROTATION_KEY]
    # fitted for the store's queries: spans of the texts, encoded with the query prompt; the fake
    # model is not Matryoshka-trained (no matryoshka_trained attribute): the long fit
    queries = fake.encode_queries(pseudo_queries(TEXTS))
    expected = fit_learned(fake.encode_documents(TEXTS), 32, queries=queries,
                           steps=learned_steps(False)).project(fake.encode_documents(TEXTS[:1]))
    stored = np.asarray(store.collection.get(ids=[ids[0]], include=["embeddings"])["embeddings"][0])
    assert np.allclose(stored, expected[0], atol=1e-4)  # the fit is deterministic
    q = TEXTS[7]
    exact = np.argsort(-(fake.encode_documents(TEXTS) @ fake.encode_queries([q])[0]))[:5]
    assert [d.id for d in store.similarity_search(q, k=5, candidates=300)] == [ids[i] for i in exact]
    again = MatryoshkaChroma(name, fake, client=client, coarse_dim=32, coarse_rotation="learned")
    assert [d.id for d in again.similarity_search(q, k=5, candidates=40)] == \
        [d.id for d in store.similarity_search(q, k=5, candidates=40)]
    with pytest.raises(CollectionMismatchError, match="rotation"):
        MatryoshkaChroma(name, fake, client=client, coarse_dim=32, coarse_rotation="pca")
    store.delete_collection()


MANY = [f"note {i} : ferritine {i % 97} µg/L, CRP {i % 13} mg/L, patient {i % 31}" for i in range(1200)]


def test_a_new_collection_gets_the_measured_defaults(client, fake) -> None:
    """int8 full vectors, HNSW ef_search 400 and the "auto" coarse stage (docs/benchmarks.md,
    "Store defaults"); an explicit setting still wins."""
    from medrag.store import DEFAULT_EF_SEARCH, DEFAULT_FULL_ENCODING

    store = MatryoshkaChroma(_name(), fake, client=client)
    col = client.get_collection(store.collection.name)
    assert col.metadata["medrag:full_encoding"] == DEFAULT_FULL_ENCODING == "int8"
    assert col.configuration["hnsw"]["ef_search"] == DEFAULT_EF_SEARCH == 400
    assert col.metadata["medrag:coarse_rotation"] == store.coarse_rotation == "auto"
    other = MatryoshkaChroma(_name(), fake, client=client, full_encoding="float16", hnsw={"ef_search": 50})
    col = client.get_collection(other.collection.name)
    assert col.metadata["medrag:full_encoding"] == "float16" and col.configuration["hnsw"]["ef_search"] == 50
    store.delete_collection()
    other.delete_collection()


def test_hnsw_settings_reach_an_existing_collection(client, fake) -> None:
    """``hnsw`` on an existing collection: an updatable setting (ef_search) is changed in it, not
    silently ignored; a fixed one (max_neighbors) that differs is refused with nothing changed; the
    recorded value itself is accepted."""
    name = _name()
    store = MatryoshkaChroma(name, fake, client=client)
    store.add_texts(TEXTS)
    hnsw = lambda: client.get_collection(name).configuration["hnsw"]  # noqa: E731
    built = hnsw()["max_neighbors"]
    again = MatryoshkaChroma(name, fake, client=client, hnsw={"ef_search": 800, "max_neighbors": built})
    assert hnsw()["ef_search"] == 800 and hnsw()["max_neighbors"] == built
    assert again.similarity_search(TEXTS[2], k=1)[0].page_content == TEXTS[2]
    with pytest.raises(CollectionMismatchError, match=r"max_neighbors.*fixed when the graph is built.*reindex"):
        MatryoshkaChroma(name, fake, client=client, hnsw={"ef_search": 200, "max_neighbors": built * 2})
    assert hnsw()["ef_search"] == 800 and hnsw()["max_neighbors"] == built  # nothing changed
    with pytest.raises(CollectionMismatchError, match="ef_construction"):
        MatryoshkaChroma(name, fake, client=client, hnsw={"ef_construction": hnsw()["ef_construction"] + 1})
    same = MatryoshkaChroma(name, fake, client=client, hnsw={"space": "cosine", "ef_search": 800})
    assert len(same) == len(TEXTS) and hnsw()["ef_search"] == 800
    store.delete_collection()


def test_legacy_hnsw_collection_metadata_is_read_as_hnsw_settings(client, fake, monkeypatch) -> None:
    """``collection_metadata={"hnsw:space": "cosine"}`` (the langchain-chroma idiom) was stored as
    metadata, and every write, which writes the metadata back, failed with Chroma's "changing the
    distance function ... is not supported", also after reopening: the collection was lost."""
    import medrag.store as store_module

    name = _name()
    store = MatryoshkaChroma(name, fake, client=client, collection_metadata={"hnsw:space": "cosine",
                                                                             "hnsw:search_ef": 800, "team": "x"})
    store.add_texts(TEXTS)
    store.add_texts(["Une phrase de plus."])
    collection = client.get_collection(name)
    assert collection.metadata["team"] == "x" and not any(k.startswith("hnsw:") for k in collection.metadata)
    assert collection.configuration["hnsw"]["ef_search"] == 800
    assert MatryoshkaChroma(name, fake, client=client).similarity_search(TEXTS[2], k=1)[0].page_content == TEXTS[2]
    with pytest.raises(InvalidInputError, match="space 'l2'"):
        MatryoshkaChroma(_name(), fake, client=client, collection_metadata={"hnsw:space": "l2"})
    with pytest.raises(InvalidInputError, match="set twice"):
        MatryoshkaChroma(_name(), fake, client=client, collection_metadata={"hnsw:search_ef": 100},
                         hnsw={"ef_search": 800})
    with pytest.raises(InvalidInputError, match="unknown collection_metadata key"):
        MatryoshkaChroma(_name(), fake, client=client, collection_metadata={"hnsw:spaec": "cosine"})
    # a collection made by an earlier medrag, the key stored: its next write succeeds and drops the key
    monkeypatch.setattr(store_module, "_legacy_hnsw_metadata", lambda metadata, hnsw: (metadata, hnsw))
    old_name = _name()
    MatryoshkaChroma(old_name, fake, client=client, collection_metadata={"hnsw:space": "cosine"})
    assert client.get_collection(old_name).metadata["hnsw:space"] == "cosine"
    monkeypatch.undo()
    MatryoshkaChroma(old_name, fake, client=client).add_texts(TEXTS[:3])
    assert "hnsw:space" not in client.get_collection(old_name).metadata
    store.delete_collection()


def _in_another_process(path: str, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a new Python process, with ``sys.argv[1]`` = ``path``, ``F`` = FakeMatryoshkaEmbeddings,
    ``M`` = MatryoshkaChroma and ``StoreLockedError`` imported."""
    header = ("import sys; sys.path.insert(0, sys.argv[2]);"
              "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
              "from medrag import MatryoshkaChroma as M;"
              "from medrag.errors import StoreLockedError\n")
    return subprocess.run([sys.executable, "-c", header + body, path, str(REPO)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_two_processes_creating_one_store_open_it_one_after_the_other(tmp_path, fake) -> None:
    """Two ``medrag demo`` started together both ran Chroma's table creation on the new folder; one failed
    with "table collections already exists", blamed on the folder's permissions (user tryout). A process
    now waits while another holds the folder's opening lock (held only while Chroma opens it)."""
    import time

    from medrag._store_lock import opening_lock

    path = tmp_path / "new-store"
    with opening_lock(path):
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]);"
                                  "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
                                  "from medrag import MatryoshkaChroma as M;"
                                  "print('OPEN', len(M('race', F(), persist_directory=sys.argv[1])))",
                                  str(path), str(REPO)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO)
        time.sleep(8)  # the imports take a few seconds: it must be waiting, not done
        assert child.poll() is None, child.communicate()
    out, err = child.communicate(timeout=120)  # opened once the lock was let go
    assert "OPEN 0" in out, out + err[-2000:]
    store = MatryoshkaChroma("race", fake, persist_directory=str(path))  # the store it made
    assert len(store) == 0
    store.close()


def test_a_process_that_does_not_own_the_folder_cannot_change_its_hnsw_settings(tmp_path, fake) -> None:
    """The owner's folder is left as it is: the other process gets StoreLockedError, nothing changed."""
    import chromadb

    path = str(tmp_path / "db")
    owner = MatryoshkaChroma("shared", fake, persist_directory=path)
    owner.add_texts(TEXTS[:5])
    out = _in_another_process(
        path,
        "try:\n    M('shared', F(), persist_directory=sys.argv[1], hnsw={'ef_search': 800}); print('CHANGED')\n"
        "except StoreLockedError as e:\n    print('LOCKED', e)\n"
        "print('SAME', len(M('shared', F(), persist_directory=sys.argv[1], hnsw={'ef_search': 400})))")
    assert "LOCKED" in out.stdout and "nothing was written" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "SAME 5" in out.stdout  # the recorded value itself: nothing to change, it opens
    assert chromadb.PersistentClient(path).get_collection("shared").configuration["hnsw"]["ef_search"] == 400
    owner.close()


@pytest.mark.parametrize("bad", ["fast", {"space": "l2"}, {"space": "ip", "ef_search": 10}, {1: 2}, {"ef": 800},
                                 {"ef_search": None}, {"ef_search": 0}, {"max_neighbors": "16"},
                                 {"ef_search": 800.0}, {"ef_search": True}, {"resize_factor": 0}])
def test_bad_hnsw_settings_are_refused_before_anything_is_made(tmp_path, fake, bad) -> None:
    """A non-dict ``hnsw``, an unknown setting, a value of the wrong type or range (None included: leave
    a setting out for its default) or another space is refused (the store used to override the space
    silently)."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path))
    with pytest.raises(InvalidInputError, match="hnsw"):
        MatryoshkaChroma(_name(), fake, client=client, hnsw=bad)
    assert client.list_collections() == []


def test_the_learned_fit_trains_longer_for_a_model_that_is_not_matryoshka_trained(tmp_path, monkeypatch) -> None:
    """10 steps (medrag.coarse.LEARNED_STEPS) when the encoder says ``matryoshka_trained``, 150
    otherwise, a plain LangChain Embeddings included (docs/benchmarks.md, "Coarse fit steps per model kind")."""
    import chromadb

    import medrag._store_coarse as coarse_stage

    steps = []
    real = coarse_stage.fit_learned

    def spy(*args, **kwargs):
        steps.append(kwargs["steps"])
        return real(*args, **{**kwargs, "steps": 1})  # the kind decides the steps; one is enough to run

    monkeypatch.setattr(coarse_stage, "fit_learned", spy)
    client = chromadb.PersistentClient(path=str(tmp_path))
    trained = FakeMatryoshkaEmbeddings()
    trained.matryoshka_trained = True
    for emb in (FakeMatryoshkaEmbeddings(seed=1), trained, PlainEmbeddings()):
        MatryoshkaChroma(_name(), emb, client=client, coarse_dim=16, coarse_rotation="learned").add_texts(MANY[:300])
    assert steps == [150, 10, 150]


def test_defaults_open_a_collection_made_with_other_settings(client, fake) -> None:
    """A collection made with other settings (float16; the raw prefix, the default before "auto")
    opens with the defaults and keeps its own settings; stating another one explicitly is refused."""
    name = _name()
    old = MatryoshkaChroma(name, fake, client=client, full_encoding="float16", coarse_rotation="none")
    old.add_texts(MANY)  # 1,200 texts: "auto" would have chosen learned
    reopened = MatryoshkaChroma(name, fake, client=client)
    assert reopened.coarse_rotation == "none" and reopened.rotation_fitted
    reopened.add_texts(["une note de plus sur la ferritine"])
    assert client.get_collection(name).metadata["medrag:full_encoding"] == "float16"
    assert reopened.similarity_search(MANY[5], k=1)[0].page_content == MANY[5]
    for kwargs in (dict(full_encoding="int8"), dict(coarse_rotation="learned")):
        with pytest.raises(CollectionMismatchError):
            MatryoshkaChroma(name, fake, client=client, **kwargs)
    old.delete_collection()


def test_auto_coarse_stage_is_decided_by_the_first_write_and_recorded(client, fake) -> None:
    """``coarse_rotation="auto"``: a first add of >= 1,000 texts fits the learned projection (the
    whole add up to 4,096 is the first write, whatever batch_size); a smaller one records "none";
    either way later writes and reopened stores keep the decision."""
    from medrag.store import AUTO_LEARNED_MIN_TEXTS, ROTATION_KEY

    assert AUTO_LEARNED_MIN_TEXTS == 1000
    big = MatryoshkaChroma(_name(), fake, client=client)
    assert not big.rotation_fitted
    assert big.next_write_size(100) == 4096  # what index_corpus and reindex gather before their first write
    with pytest.raises(InvalidInputError, match="batch_size"):
        big.next_write_size(0)
    assert big.similarity_search(MANY[0], k=3) == []  # an empty pending store answers
    big.add_texts(MANY, batch_size=100)
    meta = client.get_collection(big.collection.name).metadata
    assert meta["medrag:coarse_rotation"] == big.coarse_rotation == "learned" and meta[ROTATION_KEY]
    assert big.rotation_fitted
    q = MANY[42]
    exact = np.argsort(-(fake.encode_documents(MANY) @ fake.encode_queries([q])[0]))[:5]
    assert [d.page_content for d in big.similarity_search(q, k=5, candidates=1200)] == [MANY[i] for i in exact]
    # every stored coarse vector is the recorded projection of its full vector (also the last batch)
    got = big.collection.get(ids=[big.content_id(MANY[i]) for i in (0, 1199)], include=["embeddings"])
    recorded = CoarseProjection.from_bytes(base64.b64decode(meta[ROTATION_KEY]), 128, 64)
    by_id = dict(zip(got["ids"], got["embeddings"]))
    for i in (0, 1199):
        expected = recorded.project(fake.encode_documents([MANY[i]]))[0]
        assert np.allclose(by_id[big.content_id(MANY[i])], expected, atol=1e-4)
    again = MatryoshkaChroma(big.collection.name, fake, client=client)
    assert again.coarse_rotation == "learned"
    assert [d.id for d in again.similarity_search(q, k=5, candidates=50)] == \
        [d.id for d in big.similarity_search(q, k=5, candidates=50)]

    small = MatryoshkaChroma(_name(), fake, client=client)
    small.add_texts(MANY[:999], batch_size=400)
    assert client.get_collection(small.collection.name).metadata["medrag:coarse_rotation"] == "none"
    small.add_texts(MANY[999:])  # a later large add does not change the decision
    meta = client.get_collection(small.collection.name).metadata
    assert small.coarse_rotation == meta["medrag:coarse_rotation"] == "none" and ROTATION_KEY not in meta
    assert small.next_write_size(100) == 100
    assert small.similarity_search(MANY[1100], k=1)[0].page_content == MANY[1100]

    # two clients on a pending collection: the first write decides for both
    name = _name()
    first, second = MatryoshkaChroma(name, fake, client=client), MatryoshkaChroma(name, fake, client=client)
    first.add_texts(MANY[:10])
    second.add_texts(MANY[10:])  # 1,190 texts, but "none" is already recorded
    assert second.coarse_rotation == "none"
    assert ROTATION_KEY not in client.get_collection(name).metadata
    assert second.similarity_search(MANY[3], k=1)[0].page_content == MANY[3]

    sampled = MatryoshkaChroma(_name(), fake, client=client, rotation_sample=MANY)
    assert sampled.coarse_rotation == "learned" and sampled.rotation_fitted

    # a learned fit that fails (here the pseudo-queries' encoding) records nothing and decides again
    class FailingQueries(FakeMatryoshkaEmbeddings):
        fail = True

        def encode_queries(self, texts):
            if self.fail and len(texts) > 1:
                raise RuntimeError("query encoder down")
            return super().encode_queries(texts)

    flaky = FailingQueries(128)
    retry = MatryoshkaChroma(_name(), flaky, client=client)
    with pytest.raises(RuntimeError, match="down"):
        retry.add_texts(MANY)
    assert len(retry) == 0 and retry.coarse_rotation == "auto"
    assert client.get_collection(retry.collection.name).metadata["medrag:coarse_rotation"] == "auto"
    retry.add_texts(MANY[:20])  # a small first write now: "none", not a refused learned fit
    assert retry.coarse_rotation == "none" and len(retry) == 20
    for store in (big, small, first, sampled, retry):
        store.delete_collection()


def test_auto_writes_nothing_under_a_coarse_stage_it_could_not_record(client, fake, monkeypatch) -> None:
    """When recording the "none" decision fails, nothing is written and the next write decides
    again: no record may sit in the HNSW index under a stage the collection does not record
    (a later store would fit "learned" over raw-prefix records)."""
    store = MatryoshkaChroma(_name(), fake, client=client)
    real = MatryoshkaChroma._chroma_call
    failures = []

    def flaky(self, what, *args, **kwargs):
        if what == "record the coarse stage" and not failures:
            failures.append(what)
            raise StoreError("Chroma went away")
        return real(self, what, *args, **kwargs)

    monkeypatch.setattr(MatryoshkaChroma, "_chroma_call", flaky)
    with pytest.raises(StoreError, match="went away"):
        store.add_texts(MANY[:10])
    assert len(store) == 0 and store.coarse_rotation == "auto"
    store.add_texts(MANY[:10])  # retried: decided and recorded this time
    assert store.coarse_rotation == client.get_collection(store.collection.name).metadata["medrag:coarse_rotation"] == "none"
    assert len(store) == 10
    store.delete_collection()


def test_reindex_fits_the_auto_coarse_stage_on_a_first_write_as_large_as_add_texts_makes(client) -> None:
    """reindex reads its source in pages of batch_size (1,000), but its first write holds up to
    4,096 records like add_texts': at coarse 128 "auto" needs 1,024 texts to choose learned."""
    emb = FakeMatryoshkaEmbeddings(256)
    source = client.get_or_create_collection(_name())
    source.add(ids=[str(i) for i in range(len(MANY))], documents=MANY, embeddings=np.ones((len(MANY), 3)).tolist())
    new = MatryoshkaChroma.reindex(client, source.name, source.name + "-m", emb, coarse_dim=128)
    assert new.coarse_rotation == "learned" and len(new) == len(MANY)
    assert new.similarity_search(MANY[7], k=1)[0].page_content == MANY[7]
    new.delete_collection()
    client.delete_collection(source.name)


def test_a_first_write_raced_by_another_clients_fit_is_projected_again(chroma_server) -> None:
    """Two server clients making the first write of a new collection at once: each read "not fitted",
    fitted its own projection and recorded it, the last record winning, and the other's 1,200
    records stayed under a projection no query uses (found first by their own text 12 times in 60:
    ops tryout). Here the other client records its projection while this one writes its batch."""
    import chromadb

    from medrag.coarse import fit_pca
    from medrag.store import ROTATION_KEY

    host, port = chroma_server
    emb = FakeMatryoshkaEmbeddings(64)
    name = _name()
    writer = MatryoshkaChroma(name, emb, client=chromadb.HttpClient(host=host, port=port), coarse_dim=8,
                              coarse_rotation="pca")
    other = fit_pca(emb.encode_documents([f"autre texte {i}" for i in range(300)]), 8)
    raw = chromadb.HttpClient(host=host, port=port).get_collection(name)
    real_upsert = writer._collection.upsert

    def upsert_then_other_client_records(**kwargs):
        real_upsert(**kwargs)
        raw.modify(metadata={**raw.metadata, ROTATION_KEY: base64.b64encode(other.to_bytes()).decode()})

    writer._collection.upsert = upsert_then_other_client_records
    texts = [f"{TEXTS[i % len(TEXTS)]} (fiche {i})" for i in range(200)]
    writer.add_texts(texts, ids=[str(i) for i in range(200)])
    got = raw.get(ids=["0", "150"], include=["embeddings"])
    assert np.allclose(np.asarray(got["embeddings"]), other.project(emb.encode_documents([texts[0], texts[150]])),
                       atol=1e-5)  # the recorded projection, not the one this client fitted
    reader = MatryoshkaChroma(name, emb, client=chromadb.HttpClient(host=host, port=port))
    assert all(reader.similarity_search(texts[i], k=1)[0].page_content == texts[i] for i in (0, 57, 150, 199))
    reader.delete_collection()


@pytest.mark.parametrize("case", ["auto-learned-raced-by-none", "auto-none-raced-by-learned", "rotation-sample"])
def test_every_recorded_coarse_stage_is_confirmed_after_the_next_write(case) -> None:
    """The first fix confirmed only a fitted projection at the write that fitted it: an "auto" client
    deciding "none" after this one's learned fit (4 of 60 texts found by themselves), a "none"
    decision overtaken by another client's learned fit (2 of 60), and a projection fitted on
    rotation_sample= at the store's opening (6 of 60) kept their records under a stage no query
    uses (review)."""
    import chromadb

    from medrag.coarse import fit_pca
    from medrag.store import CONTRACT_KEYS, ROTATION_KEY

    client, emb, name = chromadb.EphemeralClient(), FakeMatryoshkaEmbeddings(64), _name()
    other = base64.b64encode(fit_pca(emb.encode_documents([f"autre texte {i}" for i in range(300)]), 8).to_bytes()).decode()
    n = {"auto-learned-raced-by-none": 1200, "auto-none-raced-by-learned": 900, "rotation-sample": 400}[case]
    texts = [f"{TEXTS[i % len(TEXTS)]} (fiche {i})" for i in range(n)]
    if case == "rotation-sample":
        writer = MatryoshkaChroma(name, emb, client=client, coarse_dim=8, coarse_rotation="pca",
                                  rotation_sample=[f"{TEXTS[i % len(TEXTS)]} (exemple {i})" for i in range(300)])
    else:
        writer = MatryoshkaChroma(name, emb, client=client, coarse_dim=8)
    raw = client.get_collection(name)
    read_before = {k: v for k, v in raw.metadata.items() if not k.startswith("hnsw:")}
    race = {"auto-learned-raced-by-none": {CONTRACT_KEYS["rotation"]: "none"},
            "auto-none-raced-by-learned": {CONTRACT_KEYS["rotation"]: "learned", ROTATION_KEY: other},
            "rotation-sample": {ROTATION_KEY: other}}[case]
    if case == "rotation-sample":  # the other client's record lands after this one's opening
        raw.modify(metadata={**read_before, **race})
    else:  # ... during its first write (the other client read "not decided" before this one recorded)
        real_upsert = writer._collection.upsert

        def upsert_then_other_client_records(**kwargs):
            real_upsert(**kwargs)
            raw.modify(metadata={**read_before, **race})

        writer._collection.upsert = upsert_then_other_client_records
    writer.add_texts(texts, ids=[str(i) for i in range(n)])
    reader = MatryoshkaChroma(name, emb, client=client)
    assert reader.coarse_rotation == writer.coarse_rotation == race.get(CONTRACT_KEYS["rotation"], "pca")
    assert all(reader.similarity_search(texts[i], k=1)[0].page_content == texts[i] for i in range(0, n, n // 40))
    reader.delete_collection()


def test_a_learned_projection_is_fitted_on_query_encoded_spans_of_the_first_batch(client) -> None:
    """The learned fit's queries are pseudo_queries of the texts through the query prompt (a
    MatryoshkaEncoder's encode_queries), or, for plain LangChain embeddings, one embed_documents
    call on them (no per-text embed_query)."""
    from medrag.coarse import fit_learned, learned_steps, pseudo_queries

    class QueryPrompted(FakeMatryoshkaEmbeddings):  # queries land elsewhere than passages, like e5's
        def encode_queries(self, texts):
            return np.stack([self._vec("query: " + t) for t in texts])

    emb = QueryPrompted(64)
    store = MatryoshkaChroma(_name(), emb, client=client, coarse_dim=8, coarse_rotation="learned")
    store.add_texts(TEXTS[:200], batch_size=16)  # the fit sees the first write: all 200 (< 4,096)
    expected = fit_learned(emb.encode_documents(TEXTS[:200]), 8,  # a fake: not Matryoshka-trained
                           queries=emb.encode_queries(pseudo_queries(TEXTS[:200])), steps=learned_steps(False))
    assert np.allclose(store._rotation.matrix, expected.matrix, atol=1e-5)
    assert np.allclose(store._rotation.mean, expected.mean, atol=1e-6)
    store.delete_collection()

    plain = PlainEmbeddings(64)
    seen: list[list[str]] = []
    real_docs = plain.embed_documents
    plain.embed_documents = lambda texts: seen.append(list(texts)) or real_docs(texts)
    store = MatryoshkaChroma(_name(), plain, client=client, coarse_dim=8, coarse_rotation="learned")
    plain.embed_query = lambda text: pytest.fail("the fit embedded a query one at a time")
    store.add_texts(TEXTS[:200], batch_size=16)
    assert pseudo_queries(TEXTS[:200]) in seen and store.rotation_fitted
    store.delete_collection()


def test_a_large_rotation_sample_cuts_its_pseudo_queries_from_the_fitted_passages(client) -> None:
    """Above 4,096 texts the fit samples its passages; the pseudo-queries come from the same texts."""
    from medrag.coarse import LEARNED_MAX_VECTORS, fit_learned, learned_steps, pseudo_queries, sample_indices

    class QueryPrompted(FakeMatryoshkaEmbeddings):
        def encode_queries(self, texts):
            return np.stack([self._vec("query: " + t) for t in texts])

    emb = QueryPrompted(64)
    sample = [f"Compte rendu {i} : bilan {i % 97}, ferritine {i % 41} µg/L, CRP {i % 13} mg/L, avis {i}."
              for i in range(LEARNED_MAX_VECTORS + 104)]
    store = MatryoshkaChroma(_name(), emb, client=client, coarse_dim=8, coarse_rotation="learned",
                             rotation_sample=sample)
    keep = sample_indices(len(sample))
    fitted = [sample[i] for i in keep]
    expected = fit_learned(emb.encode_documents(fitted), 8, queries=emb.encode_queries(pseudo_queries(fitted)),
                           steps=learned_steps(False))
    assert np.allclose(store._rotation.matrix, expected.matrix, atol=1e-5)
    store.delete_collection()


def test_precomputed_vectors_without_a_fallback_fit_the_learned_projection_on_passages(client, caplog) -> None:
    """PrecomputedEmbeddings without the pseudo-queries' vectors (texts it has no vector for): the
    fit uses the passages as queries, says so, and the first write succeeds; with them, it uses them."""
    from medrag import PrecomputedEmbeddings
    from medrag.coarse import fit_learned, learned_steps, pseudo_queries

    fake = FakeMatryoshkaEmbeddings(64)
    vectors = fake.encode_documents(TEXTS[:200])
    emb = PrecomputedEmbeddings.from_arrays(TEXTS[:200], vectors, spec="fake", fingerprint="0123abcd", dims=[64, 8])
    store = MatryoshkaChroma(_name(), emb, client=client, coarse_dim=8, coarse_rotation="learned")
    with caplog.at_level("WARNING", logger="medrag.store"):
        store.add_texts(TEXTS[:200], batch_size=16)
    assert len(store) == 200 and "passages serve as queries" in caplog.text
    expected = fit_learned(vectors, 8)  # the passages-as-queries objective keeps its 10 steps
    assert np.allclose(store._rotation.matrix, expected.matrix, atol=1e-5)
    store.delete_collection()
    # given the spans' query vectors, it fits for them like an encoder would
    spans = pseudo_queries(TEXTS[:200])
    emb = PrecomputedEmbeddings.from_arrays(TEXTS[:200], vectors, spans, fake.encode_queries(spans), spec="fake",
                                            fingerprint="0123abcd", dims=[64, 8])
    store = MatryoshkaChroma(_name(), emb, client=client, coarse_dim=8, coarse_rotation="learned")
    store.add_texts(TEXTS[:200], batch_size=16)
    expected = fit_learned(vectors, 8, queries=fake.encode_queries(spans), steps=learned_steps(False))
    assert np.allclose(store._rotation.matrix, expected.matrix, atol=1e-5)
    store.delete_collection()


@pytest.mark.parametrize("encoding", ["float32", "int8"])
def test_funnel_with_all_candidates_equals_exact_search(client, fake, encoding) -> None:
    store = MatryoshkaChroma(_name(), fake, client=client, full_encoding=encoding)
    ids = store.add_texts(TEXTS)
    full = fake.encode_documents(TEXTS)
    rng = np.random.default_rng(1)
    for _ in range(10):
        q = rng.standard_normal(fake.full_dim).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = np.argsort(-(full @ q), kind="stable")[:10]
        hits = store.similarity_search_by_vector_with_score(q, k=10, candidates=len(TEXTS))
        if encoding == "float32":
            assert [d.id for d, _ in hits] == [ids[i] for i in exact]
            np.testing.assert_allclose([1 - s for _, s in hits], (full @ q)[exact], atol=1e-5)
        else:  # int8 rerank: same set, scores within quantisation error
            assert len({d.id for d, _ in hits} & {ids[i] for i in exact}) >= 9
            np.testing.assert_allclose(sorted(1 - s for _, s in hits), sorted((full @ q)[exact]), atol=5e-3)
    store.delete_collection()


def test_a_query_that_is_only_the_prompt_is_named_as_the_text(client, tiny_embeddings) -> None:
    """'query: ' through the store said "text at index 0 is only the prompt" (audit): one text, no index."""
    store = MatryoshkaChroma("prompt-only", embedding_function=tiny_embeddings, client=client)
    store.add_texts(TEXTS[:3])
    with pytest.raises(InvalidInputError, match="^the text is only the prompt 'query:': it has no content$"):
        store.similarity_search("query: ")
    store.delete_collection()


def test_a_text_that_is_only_the_prompt_is_refused_before_the_first_write(client, tiny_embeddings) -> None:
    """'passage: ' at index 3 with batch_size=2 (user tryout): texts 0-1 were stored before the error,
    which named index 1 (its place in its batch)."""
    store = MatryoshkaChroma("prompt-only-add", embedding_function=tiny_embeddings, client=client)
    with pytest.raises(InvalidInputError, match="^text at index 3 is only the prompt 'passage:': it has no content$"):
        store.add_texts([*TEXTS[:3], "passage: "], ids=["a", "b", "c", "d"], batch_size=2)
    assert len(store) == 0
    assert store.add_texts(["passage: la ferritine basse"], ids=["p"]) == ["p"]  # with content: the prompt once
    store.delete_collection()


@pytest.mark.parametrize("value", ["false", 0, None])
def test_deterministic_ids_must_be_a_bool(client, fake, value) -> None:
    """deterministic_ids="false" gave content ids, silently (user tryout)."""
    with pytest.raises(InvalidInputError, match="deterministic_ids must be True or False"):
        MatryoshkaChroma("det-ids", fake, client=client, deterministic_ids=value)


@pytest.mark.parametrize("flag", ["create_collection_if_not_exists", "vector_sidecar"])
def test_store_flags_must_be_bools(client, fake, flag) -> None:
    """create_collection_if_not_exists="false" created the collection anyway (user tryout)."""
    with pytest.raises(InvalidInputError, match=f"{flag} must be True"):
        MatryoshkaChroma("flags", fake, client=client, **{flag: "false"})
    assert "flags" not in [c.name for c in client.list_collections()]


def test_skip_existing_must_be_a_bool_and_nothing_is_written(client, fake) -> None:
    """skip_existing="false" was truthy: the update of an existing id was skipped in silence and
    the old text stayed stored (user tryout)."""
    store = MatryoshkaChroma("skip-flag", fake, client=client)
    store.add_texts(["Paracétamol : 4 g par jour au plus."], ids=["doliprane"])
    with pytest.raises(InvalidInputError, match="skip_existing must be True or False, got 'false'"):
        store.add_texts(["Paracétamol : 3 g par jour au plus."], ids=["doliprane"], skip_existing="false")
    with pytest.raises(InvalidInputError, match="show_progress must be True, False or None"):
        store.add_texts(["Paracétamol : 3 g par jour au plus."], ids=["doliprane"], show_progress="no")
    assert store.get_by_ids(["doliprane"])[0].page_content == "Paracétamol : 4 g par jour au plus."
    store.add_texts(["Paracétamol : 3 g par jour au plus."], ids=["doliprane"], skip_existing=np.bool_(False))
    assert store.get_by_ids(["doliprane"])[0].page_content == "Paracétamol : 3 g par jour au plus."


def test_each_batch_is_encoded_once(client, tiny_embeddings) -> None:
    calls = {"docs": 0, "embed": 0}
    orig = tiny_embeddings.encode_documents

    class Counting(type(tiny_embeddings)):
        pass

    emb = tiny_embeddings.with_dimension(64)
    emb.__class__ = Counting

    def encode_documents(texts):
        calls["docs"] += 1
        return orig(texts)

    def embed_documents(texts):  # the store must not call the LangChain list API
        calls["embed"] += 1
        raise AssertionError("embed_documents called")

    emb.encode_documents = encode_documents
    emb.embed_documents = embed_documents
    store = MatryoshkaChroma(_name(), emb, client=client)
    assert store.full_dim == 128 and store.coarse_dim == 64
    store.add_texts(TEXTS[:250], batch_size=100)
    assert calls == {"docs": 3, "embed": 0}
    # The random tiny model's query and passage prompts differ: compare with exact search.
    # The random model's scores are near ties and the store reranks int8-packed vectors, so
    # compare scores (exact float32), not ids: the hit must be the best up to int8 rounding.
    q = emb.encode_queries([TEXTS[3]])[0]
    exact = orig(TEXTS[:250]) @ q
    assert calls["docs"] == 3
    doc = store.similarity_search(TEXTS[3], k=1, candidates=250)[0]
    assert exact[TEXTS.index(doc.page_content)] >= exact.max() - 0.01
    store.delete_collection()


def test_plain_langchain_embeddings_are_accepted(client) -> None:
    emb = PlainEmbeddings(96)
    store = MatryoshkaChroma(_name(), emb, client=client, coarse_dim=32)
    assert store.full_dim == 96
    store.add_texts(TEXTS[:30])
    assert store.similarity_search(TEXTS[4], k=1)[0].page_content == TEXTS[4]
    meta = store.collection.metadata
    assert meta["medrag:model"] == "PlainEmbeddings" and meta["medrag:full_dim"] == 96
    store.delete_collection()


class NamedEmbeddings(PlainEmbeddings):
    """A plain Embeddings naming its model, as HuggingFaceEmbeddings' ``model_name`` does."""

    def __init__(self, model_name: str, seed: int) -> None:
        self.inner = FakeMatryoshkaEmbeddings(96, seed=seed)
        self.model_name = model_name


def test_two_models_of_one_plain_embeddings_class_are_told_apart(client) -> None:
    """The class name alone was recorded: another model of the same class and size wrote into the
    collection, its vectors ranked against the first model's (re-read). A store recorded by the class
    name alone opens with that class and records its model from then on."""
    name = _name()
    store = MatryoshkaChroma(name, NamedEmbeddings("org/model-a", 1), client=client, coarse_dim=32)
    store.add_texts(TEXTS[:5], ids=[f"a{i}" for i in range(5)])
    assert store.collection.metadata["medrag:model"] == "NamedEmbeddings:org/model-a"
    with pytest.raises(CollectionMismatchError, match="'NamedEmbeddings:org/model-a'.*'NamedEmbeddings:org/model-b'"
                       ".*open it under the recorded name"):
        MatryoshkaChroma(name, NamedEmbeddings("org/model-b", 2), client=client, coarse_dim=32)
    folder = Path(__file__).parent  # a local model folder, named relatively from another working folder (review)
    assert _plain_identity(NamedEmbeddings(os.path.relpath(folder), 1)) == f"NamedEmbeddings:{folder.resolve()}"
    assert len(MatryoshkaChroma(name, NamedEmbeddings("org/model-a", 1), client=client, coarse_dim=32).get()["ids"]) == 5
    store.collection.modify(metadata={**store.collection.metadata, "medrag:model": "NamedEmbeddings"})  # an earlier medrag's
    reopened = MatryoshkaChroma(name, NamedEmbeddings("org/model-a", 1), client=client, coarse_dim=32)
    assert reopened.collection.metadata["medrag:model"] == "NamedEmbeddings:org/model-a"
    assert reopened.similarity_search(TEXTS[2], k=1)[0].id == "a2"
    store.delete_collection()


def test_a_filter_on_two_keys_says_how_to_join_them(store: MatryoshkaChroma) -> None:
    """Chroma's "Expected where to have exactly one operator" gave no fix (user tryout)."""
    store.add_texts(TEXTS[:2], [{"source": "cours", "year": 2024}] * 2)
    with pytest.raises(InvalidInputError, match=r"joins them with \$and, e.g. \{'\$and'"):
        store.similarity_search("ferritine", k=1, filter={"source": "cours", "year": 2024})
    assert len(store.similarity_search("ferritine", k=1, filter={"$and": [{"source": "cours"}, {"year": 2024}]})) == 1


def test_filters_apply_in_stage_one(store: MatryoshkaChroma) -> None:
    store.add_texts(TEXTS[:60], [{"parity": i % 2} for i in range(60)])
    hits = store.similarity_search(TEXTS[4], k=5, filter={"parity": 1})
    assert len(hits) == 5 and all(h.metadata["parity"] == 1 for h in hits)
    assert TEXTS[4] not in [h.page_content for h in hits]
    hits = store.similarity_search(TEXTS[4], k=5, where_document={"$contains": "patient 4"})
    assert hits and all("patient 4" in h.page_content for h in hits)


def test_mmr_and_retrievers(store: MatryoshkaChroma) -> None:
    store.add_texts(TEXTS[:40])
    store.add_texts([TEXTS[5]], ids=["dup-5"])  # an exact duplicate of one passage
    mmr = store.max_marginal_relevance_search(TEXTS[5], k=3, fetch_k=10, lambda_mult=0.1)
    assert len(mmr) == 3 and mmr[0].page_content == TEXTS[5]
    assert sum(d.page_content == TEXTS[5] for d in mmr) == 1  # diversity drops the duplicate
    sim = store.as_retriever(search_kwargs={"k": 2}).invoke(TEXTS[9])
    assert [d.page_content for d in sim][0] == TEXTS[9] and len(sim) == 2
    mmr_r = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 8}).invoke(TEXTS[9])
    assert len(mmr_r) == 2 and mmr_r[0].page_content == TEXTS[9]
    thr = store.as_retriever(search_type="similarity_score_threshold",
                             search_kwargs={"k": 5, "score_threshold": 0.9}).invoke(TEXTS[9])
    assert [d.page_content for d in thr] == [TEXTS[9]]  # fake vectors of other texts are ~orthogonal
    rel = store.similarity_search_with_relevance_scores(TEXTS[9], k=2)
    assert rel[0][1] == pytest.approx(1.0, abs=1e-3) and rel[1][1] < 0.9


async def test_async_api(store: MatryoshkaChroma) -> None:
    ids = await store.aadd_texts(TEXTS[:20], ids=[f"a{i}" for i in range(20)])
    assert ids[0] == "a0"
    docs = await store.asimilarity_search(TEXTS[2], k=2)
    assert docs[0].id == "a2"
    assert (await store.aget_by_ids(["a3", "zz"]))[0].page_content == TEXTS[3]
    mmr = await store.amax_marginal_relevance_search(TEXTS[2], k=2, fetch_k=5)
    assert mmr[0].id == "a2"
    await store.adelete(["a2"])
    assert (await store.asimilarity_search(TEXTS[2], k=1))[0].id != "a2"
    got = await asyncio.gather(*(store.asimilarity_search_with_score(TEXTS[i], k=1) for i in range(5, 9)))
    assert [g[0][0].id for g in got] == ["a5", "a6", "a7", "a8"]


def test_from_texts_and_documents(client, fake) -> None:
    name = _name()
    s = MatryoshkaChroma.from_texts(TEXTS[:5], fake, metadatas=[{"i": i} for i in range(5)], ids=list("abcde"),
                                    collection_name=name, client=client, candidates=20)
    assert s.candidates == 20 and s.get_by_ids(["c"])[0].metadata == {"i": 2}
    s2 = MatryoshkaChroma.from_documents([Document(page_content="une autre", metadata={"x": 1}, id="f")], fake,
                                         collection_name=name, client=client)
    assert len(s2) == 6
    # ids positional, as langchain-chroma takes them (code ported from it raised a TypeError: user tryout)
    s3 = MatryoshkaChroma.from_texts(["trois", "quatre"], fake, [{"n": 3}, {"n": 4}], ["t3", "t4"],
                                     collection_name=name, client=client)
    assert s3.get_by_ids(["t4"])[0].metadata == {"n": 4}
    s4 = MatryoshkaChroma.from_documents([Document(page_content="cinq", id="ignored")], fake, ["t5"],
                                         collection_name=name, client=client)
    assert s4.get_by_ids(["t5"])[0].page_content == "cinq" and not s4.get_by_ids(["ignored"])
    s2.delete_collection()


def test_a_relative_persist_directory_survives_a_chdir(tmp_path, fake, monkeypatch) -> None:
    """persist_directory="./store", then os.chdir (a notebook, a server's worker): every write failed
    with Chroma's 'Failed to get segments' and the lexical index would have gone to the new folder."""
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    s = MatryoshkaChroma("reldir", fake, persist_directory="./store")
    monkeypatch.chdir(tmp_path / "elsewhere")
    s.add_texts(["La ferritine basse signe une carence en fer.", "La TSH explore la thyroïde."], ids=["fer", "tsh"])
    assert s.hybrid_search("ferritine", k=1, lexical_weight=1.0)[0].id == "fer"
    assert s.lexical.path is not None and s.lexical.path.is_relative_to(tmp_path / "app" / "store")
    assert s.lexical.path.is_file() and not any((tmp_path / "elsewhere").iterdir())
    s.close()


def test_persistent_reopen_sees_full_vectors(tmp_path, fake) -> None:
    import chromadb

    path = str(tmp_path / "db")
    s = MatryoshkaChroma("persist", fake, persist_directory=path)
    ids = s.add_texts(TEXTS[:30])
    before = s.similarity_search_with_score(TEXTS[3], k=5)
    del s
    code = (
        "import chromadb, sys; sys.path.insert(0, sys.argv[2]);"
        "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
        "from medrag import MatryoshkaChroma as M;"
        "s = M('persist', F(), persist_directory=sys.argv[1]);"
        "print(s.similarity_search(sys.argv[3], k=1)[0].id)"
    )
    out = subprocess.run([sys.executable, "-c", code, path, str(REPO), TEXTS[3]], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == ids[3]
    s = MatryoshkaChroma("persist", fake, client=chromadb.PersistentClient(path))
    after = s.similarity_search_with_score(TEXTS[3], k=5)
    assert [(d.id, round(x, 5)) for d, x in after] == [(d.id, round(x, 5)) for d, x in before]


# ---------------------------------------------------------------------------- contract


def test_reopen_with_other_model_or_sizes_fails_before_writing(client, fake) -> None:
    name = _name()
    s = MatryoshkaChroma(name, fake, client=client)
    s.add_texts(TEXTS[:10], ids=[str(i) for i in range(10)])
    snap = _snapshot(s)
    cases = [
        (dict(embedding_function=FakeMatryoshkaEmbeddings(128, seed=1)), "fingerprint"),
        (dict(embedding_function=FakeMatryoshkaEmbeddings(256)), "full_dim"),
        (dict(embedding_function=fake, coarse_dim=32), "coarse_dim"),
        (dict(embedding_function=fake, full_encoding="float16"), "encoding"),
    ]
    for kwargs, word in cases:
        with pytest.raises(CollectionMismatchError, match=word):
            MatryoshkaChroma(name, client=client, **kwargs)
    assert _snapshot(s) == snap
    assert MatryoshkaChroma(name, fake, client=client).similarity_search(TEXTS[1], k=1)[0].id == "1"
    s.delete_collection()


def test_collection_with_the_legacy_fingerprint_opens_and_is_upgraded(client, fake) -> None:
    """A collection written by an earlier medrag recorded the model's legacy fingerprint (it hashed
    the model's folder): the same model opens it, and its first write records the current fingerprint;
    opening and searching leave the earlier one, which the earlier medrag still writing beside an
    upgraded search service needs (it refuses the current one: upgrade tryout)."""
    name = _name()
    s = MatryoshkaChroma(name, fake, client=client)
    s.add_texts(TEXTS[:10], ids=[str(i) for i in range(10)])
    meta = dict(client.get_collection(name).metadata)
    meta["medrag:fingerprint"] = "0123456789abcdef"  # as the old medrag wrote it
    client.get_collection(name).modify(metadata=meta)
    with pytest.raises(CollectionMismatchError, match="fingerprint"):
        MatryoshkaChroma(name, fake, client=client)

    class Upgraded(FakeMatryoshkaEmbeddings):
        legacy_fingerprints = ("0123456789abcdef",)

    same = Upgraded(128)
    with pytest.raises(CollectionMismatchError, match="coarse_dim"):
        MatryoshkaChroma(name, same, client=client, coarse_dim=32)
    assert client.get_collection(name).metadata["medrag:fingerprint"] == "0123456789abcdef"  # nothing written
    reopened = MatryoshkaChroma(name, same, client=client)
    assert reopened.similarity_search(TEXTS[1], k=1)[0].id == "1"
    assert client.get_collection(name).metadata["medrag:fingerprint"] == "0123456789abcdef"  # a reader: unchanged
    reopened.add_texts(TEXTS[10:11], ids=["10"])
    assert client.get_collection(name).metadata["medrag:fingerprint"] == fake.fingerprint
    assert MatryoshkaChroma(name, fake, client=client).similarity_search(TEXTS[2], k=1)[0].id == "2"
    s.delete_collection()


def test_foreign_collection_is_refused_then_reindexed(client, fake) -> None:
    from langchain_chroma import Chroma

    name = _name()
    plain = Chroma(collection_name=name, embedding_function=fake, client=client)
    plain.add_texts(TEXTS[:25], [{"k": i} for i in range(25)], ids=[f"p{i}" for i in range(25)])
    before = client.get_collection(name).get(include=["documents", "metadatas", "embeddings"])
    with pytest.raises(CollectionMismatchError, match="not created by MatryoshkaChroma"):
        MatryoshkaChroma(name, fake, client=client)
    new = MatryoshkaChroma.reindex(client, name, name + "-m", fake)
    assert len(new) == 25
    doc = new.similarity_search(TEXTS[8], k=1)[0]
    assert (doc.id, doc.metadata) == ("p8", {"k": 8})
    after = client.get_collection(name).get(include=["documents", "metadatas", "embeddings"])
    assert after["ids"] == before["ids"] and after["metadatas"] == before["metadatas"]
    np.testing.assert_array_equal(after["embeddings"], before["embeddings"])
    client.delete_collection(name)
    new.delete_collection()


def test_missing_collection_without_create(client, fake) -> None:
    with pytest.raises(CollectionMismatchError, match="does not exist"):
        MatryoshkaChroma(_name(), fake, client=client, create_collection_if_not_exists=False)


def test_bad_constructor_arguments(fake) -> None:
    with pytest.raises(DimensionError):
        MatryoshkaChroma(_name(), fake, coarse_dim=128)
    with pytest.raises(ValueError, match="full_encoding"):
        MatryoshkaChroma(_name(), fake, full_encoding="int4")
    with pytest.raises(ValueError, match="candidates"):
        MatryoshkaChroma(_name(), fake, candidates=0)
    with pytest.raises(ValueError, match="embedding_function"):
        MatryoshkaChroma(_name())


# ---------------------------------------------------------------------------- consistency and bad input


def test_upsert_and_deterministic_ids(client, fake) -> None:
    s = MatryoshkaChroma(_name(), fake, client=client, deterministic_ids=True)
    ids = s.add_texts(TEXTS[:10], [{"v": 1}] * 10)
    assert ids == s.add_texts(TEXTS[:10], [{"v": 1}] * 10) and len(s) == 10
    assert ids[0] == MatryoshkaChroma.content_id(TEXTS[0], {"v": 1})
    s.add_texts(["nouveau texte", "texte final"], [{"v": 2}, {"v": 3}], ids=[ids[0], ids[0]])
    assert len(s) == 10
    doc = s.get_by_ids([ids[0]])[0]
    assert (doc.page_content, doc.metadata) == ("texte final", {"v": 3})
    full = s.get_full_vectors([ids[0]])[0]
    assert float(full @ fake.encode_documents(["texte final"])[0]) > 0.9999
    s.delete_collection()


def test_rejected_calls_change_nothing(store: MatryoshkaChroma) -> None:
    ids = store.add_texts(TEXTS[:20], [{"n": i} for i in range(20)], ids=[f"r{i}" for i in range(20)])
    snap = _snapshot(store)
    q = np.ones(128, np.float32)
    bad_calls = [
        (lambda: store.similarity_search(TEXTS[0], k=0), ValueError, "k must be"),
        (lambda: store.similarity_search(TEXTS[0], k=-1), ValueError, "k must be"),
        (lambda: store.similarity_search(TEXTS[0], k=5, candidates=4), ValueError, "candidates"),
        (lambda: store.similarity_search(""), ValueError, "empty"),
        (lambda: store.similarity_search("   "), ValueError, "empty"),
        (lambda: store.similarity_search_by_vector(np.full(128, np.nan)), ValueError, "NaN"),
        (lambda: store.similarity_search_by_vector(np.r_[q[:-1], np.inf]), ValueError, "NaN or infinite"),
        (lambda: store.similarity_search_by_vector(q[:64]), DimensionError, "full-size"),
        (lambda: store.similarity_search_by_vector(np.zeros(128)), ValueError, "zeros"),
        (lambda: store.add_texts(["ok", ""], ids=["r1", "x"]), ValueError, "index 1"),
        (lambda: store.add_texts(["ok", "ok2"], [{"a": 1}, {"bad": {"nested": 1}}], ids=["r1", "x"]), ValueError,
         "metadata at index 1"),
        (lambda: store.add_texts(["ok"], [{"bad": object()}], ids=["r1"]), ValueError, "metadata at index 0"),
        (lambda: store.add_texts(["ok"], [{FULL_KEY: "x"}], ids=["r1"]), ValueError, "reserved"),
        (lambda: store.add_texts(["ok", "ok2"], ids=["r1"]), ValueError, "ids"),
        (lambda: store.add_texts(["ok"], [{}, {}]), ValueError, "metadatas"),
        (lambda: store.add_texts(["ok"], ids=[""]), ValueError, "id at index 0"),
        (lambda: store.delete(None), ValueError, "ids"),
        (lambda: store.max_marginal_relevance_search(TEXTS[0], k=2, fetch_k=5, candidates=3), ValueError, "fetch_k"),
    ]
    for call, exc, msg in bad_calls:
        with pytest.raises(exc, match=msg):
            call()
    assert _snapshot(store) == snap
    # Unknown ids: documented no-ops.
    store.delete(["nope", "nada"])
    assert store.get_by_ids(["nope", "r3", "r1"]) == [
        Document(id="r3", page_content=TEXTS[3], metadata={"n": 3}),
        Document(id="r1", page_content=TEXTS[1], metadata={"n": 1}),
    ]
    assert _snapshot(store) == snap and len(ids) == 20


# ---------------------------------------------------------------------------- issue 11 defects


def _still_works(store: MatryoshkaChroma) -> None:
    n = len(store)
    store.get_by_ids(["x"])
    store.similarity_search(TEXTS[0], k=1)
    ids = store.add_texts(["encore un texte"], [{"ok": 1.5}])
    store.delete(ids)
    assert len(store) == n


@pytest.mark.parametrize("metadata", [
    {"v": [1.0, float("nan")]}, {"v": float("nan")}, {"v": float("inf")}, {"v": [float("-inf")]},
    {"v": np.float32("nan")}, {"v": 2**70},
])
def test_defect1_non_finite_metadata_is_refused_before_writing(store: MatryoshkaChroma, metadata) -> None:
    """A NaN inside a list metadata value made the embedded collection unreadable for good;
    a scalar NaN was silently dropped."""
    from medrag.errors import InvalidInputError

    store.add_texts(TEXTS[:3], ids=["a", "b", "c"])
    snap = _snapshot(store)
    with pytest.raises(InvalidInputError, match="metadata at index 1"):
        store.add_texts(["ok", "pas ok"], [{}, metadata])
    assert _snapshot(store) == snap
    _still_works(store)


@pytest.mark.parametrize("bad", ["dollar_key", "hash_key", "surrogate_text", "surrogate_value", "surrogate_key",
                                 "surrogate_id", "empty_list", "mixed_list"])
def test_defect2_whole_call_is_validated_before_the_first_write(store: MatryoshkaChroma, bad) -> None:
    """300 texts, batch_size=100, a bad value at index 250: nothing written, the index named is 250."""
    from medrag.errors import InvalidInputError

    texts = list(TEXTS[:300])
    metas = [{"n": i} for i in range(300)]
    ids = [f"d{i}" for i in range(300)]
    if bad == "dollar_key":
        metas[250] = {"$and": 1}
    elif bad == "hash_key":
        metas[250] = {"#x": 1}
    elif bad == "surrogate_text":
        texts[250] = "texte \ud800 cassé"
    elif bad == "surrogate_value":
        metas[250] = {"n": "valeur \udfff"}
    elif bad == "surrogate_key":
        metas[250] = {"cl\ud800": 1}
    elif bad == "surrogate_id":
        ids[250] = "id-\ud800"
    elif bad == "empty_list":
        metas[250] = {"v": []}
    elif bad == "mixed_list":
        metas[250] = {"v": [1, "a"]}
    with pytest.raises(InvalidInputError, match="index 250"):
        store.add_texts(texts, metas, ids=ids, batch_size=100)
    assert len(store) == 0
    _still_works(store)


def test_defect3_re_adding_an_id_replaces_its_metadata(store: MatryoshkaChroma) -> None:
    """A stale key of the old record must not survive a re-add (and still match filters)."""
    store.add_texts(["Article retiré : ferritine."], [{"status": "retracted", "year": 2001}], ids=["p1"])
    store.add_texts(["Article corrigé : ferritine."], [{"year": 2024}], ids=["p1"])
    doc = store.get_by_ids(["p1"])[0]
    assert (doc.page_content, doc.metadata) == ("Article corrigé : ferritine.", {"year": 2024})
    assert store.similarity_search("ferritine", k=1, filter={"status": "retracted"}) == []
    store.add_documents([Document(page_content="Sans métadonnées.", id="p1")])
    assert store.get_by_ids(["p1"])[0].metadata == {}
    assert len(store.collection.get(where={"year": 2024})["ids"]) == 0


def test_defect4_a_second_process_is_warned_and_cannot_write(tmp_path, fake, caplog) -> None:
    """Chroma's embedded client is not multi-process safe: a lock file per persist directory."""
    import chromadb

    path = str(tmp_path / "db")
    owner = MatryoshkaChroma("shared", fake, persist_directory=path)
    owner.add_texts(TEXTS[:5], ids=[f"o{i}" for i in range(5)])
    # a second store in the same process shares the lock
    same = MatryoshkaChroma("shared", fake, client=chromadb.PersistentClient(path))
    same.add_texts(TEXTS[5:6], ids=["o5"])
    code = (
        "import logging, sys; sys.path.insert(0, sys.argv[2]); logging.basicConfig(level=logging.WARNING);"
        "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
        "from medrag import MatryoshkaChroma as M;"
        "from medrag.errors import StoreLockedError;"
        "s = M('shared', F(), persist_directory=sys.argv[1]);\n"
        "try:\n    s.add_texts(['depuis un autre processus']); print('WROTE')\n"
        "except StoreLockedError as e:\n    print('LOCKED', e)\n"
        "print('COUNT', len(s))"
    )
    run = lambda: subprocess.run([sys.executable, "-c", code, path, str(REPO)], capture_output=True, text=True,
                                 timeout=120, cwd=REPO)
    out = run()
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOCKED" in out.stdout and "chroma run --path" in out.stdout and f"pid {os.getpid()}" in out.stdout
    assert "not multi-process safe" in out.stderr  # the warning when it opened the folder
    assert len(owner) == 6
    # once this process lets go, the other one may write
    owner.close()
    same.close()
    out = run()
    assert "WROTE" in out.stdout and "COUNT 7" in out.stdout, out.stdout + out.stderr[-2000:]
    # and this process takes the lock back on its next write (the other one exited)
    owner.add_texts(TEXTS[7:8], ids=["o7"])
    assert (tmp_path / "db" / "medrag.lock").read_text().strip() == str(os.getpid())


def test_searches_that_miss_another_processs_writes_are_warned(tmp_path, fake, caplog) -> None:
    """A store closed, then written by another process: Chroma's embedded client keeps the index this
    process loaded, so its searches missed the new records without a word (user tryout). They are
    warned about, once per write generation; this process's own writes warn nothing."""
    import logging

    path = str(tmp_path / "db")
    store = MatryoshkaChroma("handoff", fake, persist_directory=path)
    store.add_texts(TEXTS[:4], ids=[f"a{i}" for i in range(4)])
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        store.similarity_search(TEXTS[0], k=1)
        store.add_texts(TEXTS[4:5], ids=["a4"])
        store.similarity_search(TEXTS[0], k=1)
    assert "another process wrote" not in caplog.text
    store.close()
    code = ("import sys; sys.path.insert(0, sys.argv[2]);"
            "from tests.medrag.test_store import FakeMatryoshkaEmbeddings as F;"
            "from medrag import MatryoshkaChroma as M;"
            "s = M('handoff', F(), persist_directory=sys.argv[1]); s.add_texts([sys.argv[3]], ids=['b']);"
            "print('FOUND', [d.id for d in s.similarity_search(sys.argv[3], k=1)])")
    out = subprocess.run([sys.executable, "-c", code, path, str(REPO), TEXTS[7]], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert "FOUND ['b']" in out.stdout, out.stderr[-2000:]
    assert "another process wrote" not in out.stderr  # a process that loads the index after the writes sees them
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        # a new store of this process, which takes the lock back as it opens, is warned too (review)
        MatryoshkaChroma("handoff", fake, persist_directory=path).similarity_search(TEXTS[7], k=1)
        store.similarity_search(TEXTS[7], k=1)
        store.similarity_search(TEXTS[7], k=1)
    warned = [r for r in caplog.records if "another process wrote" in r.getMessage()]
    assert len(warned) == 1 and "chroma run --path" in warned[0].getMessage()
    # a write while the other process holds the folder is refused: the advice says when it helps, and that
    # BM25 sees the records (it "missed" them all: user tryout)
    assert "Once the other process has closed the store, a write from this process" in warned[0].getMessage()
    assert "dense searches" in warned[0].getMessage() and "BM25 side see them" in warned[0].getMessage()
    assert len(store) == 6  # nothing lost: counted, and found by a new process
    # a write of this process brings its index up to date (Chroma applies the log since its last
    # entry): found, and no more warnings (review)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        store.add_texts(TEXTS[8:9], ids=["a8"])
        assert store.similarity_search(TEXTS[7], k=1)[0].id == "b"
    assert "another process wrote" not in caplog.text


def test_opening_and_using_a_store_raises_no_chromadb_deprecation_warning(client, fake) -> None:
    """chromadb's "legacy embedding function config" DeprecationWarning came at every open (medrag read
    ``collection.configuration``), in users' test output where langchain-chroma's store gives none (user tryout)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = _name()
        store = MatryoshkaChroma(name, fake, client=client, hnsw={"sync_threshold": 500})
        store.add_texts(TEXTS[:3])
        store.similarity_search("ferritine", k=2)
        again = MatryoshkaChroma(name, fake, client=client)
        assert len(again) == 3
        store.delete_collection()
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]


class _Cached(Embeddings):
    """What LangChain's ``CacheBackedEmbeddings`` is to a store: an Embeddings that names the model it
    caches ``underlying_embeddings`` (the real class needs the ``langchain`` package)."""

    def __init__(self, underlying: Embeddings) -> None:
        self.underlying_embeddings = underlying

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.underlying_embeddings.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.underlying_embeddings.embed_query(text)


def test_a_caching_wrapper_is_identified_by_the_model_it_caches(tmp_path) -> None:
    """Recorded as "CacheBackedEmbeddings", a collection took another model's vectors through the
    wrapper and refused the model that built it (user tryout)."""
    path = str(tmp_path / "db")
    built_with = FakeMatryoshkaEmbeddings(128, seed=0)
    store = MatryoshkaChroma("notes", _Cached(built_with), persist_directory=path)
    store.add_texts(TEXTS[:3])
    assert store.collection.metadata["medrag:model"] == built_with.spec
    store.close()
    with pytest.raises(CollectionMismatchError):
        MatryoshkaChroma("notes", _Cached(FakeMatryoshkaEmbeddings(128, seed=1)), persist_directory=path)
    again = MatryoshkaChroma("notes", built_with, persist_directory=path)  # the serving process, uncached
    assert len(again) == 3 and again.similarity_search(TEXTS[1], k=1)[0].page_content == TEXTS[1]
    again.close()


def test_a_delete_that_deletes_nothing_is_warned(store: MatryoshkaChroma, caplog) -> None:
    """An erasure with a misspelt key, a value of another type or unknown ids returned True without a
    word, the patient's records still stored (user tryout, right to erasure)."""
    import logging

    store.add_texts(TEXTS[:4], [{"patient_id": "P42", "nip": 7734219881}, {"patient_id": "P7"}, {}, {}],
                    ids=list("abcd"))
    for kwargs, said in [({"where": {"patientid": "P42"}}, "no stored record matches the filter (keys: patientid)"),
                         ({"where": {"nip": "7734219881"}}, "no stored record matches the filter"),
                         ({"ids": ["zz", "yy"]}, "none of the 2 id(s) given is stored. Check"),
                         ({"ids": ["b"], "where": {"patient_id": "P42"}}, "none of the 1 id(s) given is stored and "
                                                                          "matches the filter")]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="medrag.store"):
            assert store.delete(**kwargs) is True
        assert "deleted nothing" in caplog.text and said in caplog.text, (kwargs, caplog.text)
        assert "7734219881" not in caplog.text and "P42" not in caplog.text  # no identifier in the logs
    assert len(store) == 4
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medrag.store"):
        store.delete(where={"patient_id": "P42"})
        store.delete(["b", "nothere"])
    assert "deleted nothing" not in caplog.text and len(store) == 2


def test_an_erased_text_is_gone_from_medrags_files_and_after_the_documented_procedure_from_every_file(
        tmp_path, fake) -> None:
    """docs/store.md, "Erasure": after delete() no file of medrag's holds the text (the vector copy's
    write-ahead log held it: user tryout); Chroma's own log does until the collection is copied
    without it, dropped, and the database vacuumed."""
    import sqlite3

    from chromadb.api.shared_system_client import SharedSystemClient

    path = tmp_path / "db"
    secret = b"Zorbulinek"

    def files_holding_it() -> list[str]:
        return sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.is_file() and secret in f.read_bytes())

    store = MatryoshkaChroma("notes", fake, persist_directory=str(path))
    store.add_texts(TEXTS[:40] + ["Patient Zorbulinek, NIP 7734219881."], [{"p": "x"}] * 40 + [{"p": "P42"}])
    store.hybrid_search("ferritine", k=2)
    assert "medrag_vectors.sqlite3" in " ".join(files_holding_it())  # the copy holds texts
    store.delete(where={"p": "P42"})
    assert files_holding_it() == ["chroma.sqlite3"]  # Chroma's log and free pages only
    copy = MatryoshkaChroma.reindex(store.client, "notes", "notes-v2", fake)
    store.delete_collection()
    assert len(copy) == 40
    copy.close()
    store.close()
    del store, copy
    SharedSystemClient.clear_system_cache()
    with sqlite3.connect(path / "chroma.sqlite3") as db:
        db.execute("VACUUM")
    assert files_holding_it() == []


@pytest.mark.parametrize("bad", [{"$foo": 1}, {"patient_id": {"$eq": ["P1"]}}])
def test_a_malformed_filter_is_explained(store: MatryoshkaChroma, bad) -> None:
    """Chroma said only "Invalid where clause" (user tryout): the error says what a filter is."""
    from medrag.errors import InvalidInputError

    store.add_texts(TEXTS[:2], [{"patient_id": "P1"}, {}])
    for call in (lambda: store.similarity_search("ferritine", filter=bad), lambda: store.delete(where=bad)):
        with pytest.raises(InvalidInputError, match=r"Invalid where clause\. A where filter is .*\$in or \$nin"):
            call()
    assert len(store) == 2


def test_defect5_chroma_failures_are_medrag_errors(store: MatryoshkaChroma, fake, client) -> None:
    from medrag.errors import InvalidInputError, MedragError

    store.add_texts(TEXTS[:5], ids=list("abcde"))
    with pytest.raises(InvalidInputError, match="bare string"):
        store.delete("abc")
    with pytest.raises(InvalidInputError, match="bare string"):
        store.get_by_ids("abc")
    # a NUL in an id: the lexical index file would come back with 'fer' for 'fer\x00' (found in review)
    with pytest.raises(InvalidInputError, match="NUL"):
        store.add_texts(["La ferritine est basse."], ids=["fer\x00"])
    assert len(store) == 5
    for bad_filter in ({"n": {"$gtx": 1}}, {"$and": [{"n": 1}]}, {"n": [1, 2]}):
        with pytest.raises(InvalidInputError, match="Chroma rejected"):
            store.similarity_search("ferritine", filter=bad_filter)
    with pytest.raises(InvalidInputError, match="Chroma rejected"):
        store.similarity_search("ferritine", where_document={"$containz": "x"})
    with pytest.raises(InvalidInputError, match="collection name"):
        MatryoshkaChroma("ab", fake, client=client)
    with pytest.raises(InvalidInputError, match="batch_size"):
        store.add_texts(["x"], batch_size="8")
    with pytest.raises(InvalidInputError, match="UTF-8"):
        store.delete(["\ud800"])
    with pytest.raises(MedragError):
        store.similarity_search("ferritine", filter={"n": "\ud800"})


def test_defect5_persist_directory_on_a_file(tmp_path, fake) -> None:
    from medrag.errors import StoreError

    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(StoreError, match="writable folder"):
        MatryoshkaChroma("notes", fake, persist_directory=str(f))


def test_defect5_server_disconnect_is_a_store_connection_error(tmp_path, fake) -> None:
    import chromadb

    from medrag.errors import StoreConnectionError

    port = _free_port()
    proc = subprocess.Popen([_chroma_exe(), "run", "--path", str(tmp_path / "data"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        store = MatryoshkaChroma("gone", fake, client=chromadb.HttpClient(host="127.0.0.1", port=port))
        store.add_texts(TEXTS[:5])
    finally:
        proc.kill()
        proc.wait(30)
    for call in (lambda: store.similarity_search("ferritine"), lambda: store.add_texts(["x"]), lambda: len(store),
                 lambda: store.delete(["x"]), lambda: store.get_by_ids(["x"]), lambda: store.write_generation):
        with pytest.raises(StoreConnectionError, match="Chroma server"):
            call()


class _FailingFake(FakeMatryoshkaEmbeddings):
    """Raises on the ``fail_at``-th batch, like a process killed mid-ingest."""

    def __init__(self, fail_at: int | None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.encoded = 0

    def encode_documents(self, texts):
        if self.fail_at is not None and self.document_calls + 1 == self.fail_at:
            self.document_calls += 1
            raise RuntimeError("killed")
        self.encoded += len(texts)
        return super().encode_documents(texts)


def test_defect6_re_running_an_interrupted_ingest_neither_duplicates_nor_re_encodes(client) -> None:
    """Default ids are content ids; stored ones are skipped without being encoded."""
    name = _name()
    texts, metas = TEXTS[:100], [{"n": i % 7} for i in range(100)]
    first = MatryoshkaChroma(name, _FailingFake(fail_at=3), client=client)
    with pytest.raises(RuntimeError, match="killed"):
        first.add_texts(texts, metas, batch_size=25)
    assert len(first) == 50
    emb = _FailingFake(fail_at=None)
    again = MatryoshkaChroma(name, emb, client=client)
    ids = again.add_texts(texts, metas, batch_size=25)
    assert len(again) == 100 and emb.encoded == 50 and len(set(ids)) == 100
    assert again.add_texts(texts, metas, batch_size=25) == ids and emb.encoded == 50 and len(again) == 100
    # caller ids: skip_existing=True resumes the same way; without it, a re-add replaces (its
    # vectors are encoded again only where the text changed)
    own = [f"own{i}" for i in range(10)]
    again.add_texts(texts[:5], ids=own[:5])
    emb.encoded = 0
    again.add_texts(texts[:10], ids=own, skip_existing=True)
    assert emb.encoded == 5 and len(again) == 110
    again.add_texts(texts[:10], ids=own)
    assert emb.encoded == 5
    again.add_texts(texts[10:20], ids=own)
    assert emb.encoded == 15 and again.get_by_ids(own[:1])[0].page_content == texts[10]
    again.delete_collection()


def test_blank_queries_and_texts_of_invisible_characters_are_refused(store: MatryoshkaChroma) -> None:
    """A query of a lone U+200B or soft hyphen returned arbitrary documents, and add_texts stored a
    record with no content (review): the checks used ``str.strip``."""
    store.add_texts(TEXTS[:5])
    for query in ("\u200b", "\u00ad", " \ufeff "):
        for search in (store.similarity_search, store.hybrid_search, store.max_marginal_relevance_search):
            with pytest.raises(InvalidInputError, match="invisible"):
                search(query, k=2)
    with pytest.raises(InvalidInputError, match="index 1"):
        store.add_texts(["la ferritine", "\u200b\u2060\ufeff"])
    assert len(store) == 5
    with pytest.raises(InvalidInputError, match="no vectorstore"):  # a raw TypeError before
        store.as_retriever(vectorstore=store)


def test_search_on_empty_store_and_small_collections(store: MatryoshkaChroma) -> None:
    assert store.similarity_search("rien", k=3) == []
    store.add_texts(TEXTS[:2])
    assert len(store.similarity_search("rien", k=10)) == 2


def test_codec_roundtrip() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 384)).astype(np.float32)
    v[3] = 0
    for enc, tol in (("float32", 0), ("float16", 1e-2), ("int8", 2e-2)):
        back = decode_rows(encode_rows(v, enc), enc, 384)
        assert back.shape == v.shape and np.abs(back - v).max() <= tol * np.abs(v).max()
        with pytest.raises(ValueError):
            decode_rows(encode_rows(v[:, :100], enc), enc, 384)


def test_threads_query_while_another_adds(store: MatryoshkaChroma) -> None:
    store.add_texts(TEXTS[:50], ids=[f"base{i}" for i in range(50)])
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0] * 8

    def reader(n: int) -> None:
        rng = random.Random(n)
        try:
            while not stop.is_set():
                i = rng.randrange(50)
                hits = store.similarity_search_with_score(TEXTS[i], k=5)
                assert len(hits) == 5
                assert hits[0][0].id == f"base{i}" and hits[0][1] == pytest.approx(0, abs=1e-3)
                for doc, dist in hits:
                    assert isinstance(doc.page_content, str) and doc.page_content
                    assert FULL_KEY not in doc.metadata and -1e-3 <= dist <= 2 + 1e-3
                counts[n] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        for start in range(50, 300, 25):
            store.add_texts(TEXTS[start:start + 25], batch_size=10)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[0]
    assert all(c > 0 for c in counts) and len(store) == 300


# ---------------------------------------------------------------------------- crash safety

_WORKER = r"""
import sys
sys.path.insert(0, sys.argv[3])
from medrag import MatryoshkaChroma, MatryoshkaEmbeddings, load_model
emb = MatryoshkaEmbeddings(load_model(sys.argv[2], device="cpu"), batch_size=256, show_progress=False)
n = int(sys.argv[4])
texts = [f"document {i} : bilan sanguin, ferritine {i % 101}, CRP {i % 37}, patient {i % 13}" for i in range(n)]
encode = emb.encode_documents
calls = [0]
def encode_documents(texts):  # report each batch, so the test can kill at any stage of the add
    calls[0] += 1
    print("batch", calls[0], len(texts), flush=True)
    return encode(texts)
emb.encode_documents = encode_documents
# the raw prefix: batches of 250 from the first one ("auto" would encode 4,096 first to fit on them)
store = MatryoshkaChroma("crash", emb, persist_directory=sys.argv[1], deterministic_ids=True,
                         coarse_rotation="none")
print("start", len(store), flush=True)
store.add_texts(texts, [{"i": i} for i in range(n)], batch_size=250, show_progress=False)
print("done", len(store), flush=True)
"""


@pytest.mark.integration
def test_sigkill_during_add_then_resume(tmp_path, tiny_model_dir, tiny_embeddings) -> None:
    """A process adding 10,000 texts is SIGKILLed at random moments; the store stays consistent
    and re-running the same add completes it, encoding only what was not stored."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient

    n = 10_000
    path = str(tmp_path / "db")
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    cmd = [sys.executable, str(worker), path, str(tiny_model_dir), str(REPO), str(n)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    rng = random.Random(1234)
    seen_counts = []
    for attempt in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        start = proc.stdout.readline().split()
        assert start[0] == "start" and int(start[1]) == (seen_counts[-1] if seen_counts else 0)
        remaining = (n - int(start[1])) // 250  # stored batches are skipped, not re-encoded
        target = rng.randrange(1, max(remaining, 2))  # kill while batch `target` of the rest runs
        last, one_batch = time.perf_counter(), 0.5
        while (line := proc.stdout.readline().split()[:2]) != ["batch", str(target)]:
            assert proc.poll() is None, "the worker ended early"
            if line[:1] == ["batch"]:  # how long a batch takes on this machine
                last, one_batch = time.perf_counter(), time.perf_counter() - last
        time.sleep(rng.uniform(0.0, one_batch))  # somewhere in that batch's encode or upsert
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # A fresh Chroma client: chromadb caches one per path in a process, and the cached one would
        # not see what the killed worker wrote (Chroma's embedded client is one-process, docs/store.md).
        SharedSystemClient.clear_system_cache()
        store = MatryoshkaChroma("crash", tiny_embeddings, client=chromadb.PersistentClient(path),
                                 deterministic_ids=True)
        res = store.collection.get(include=["metadatas"])
        seen_counts.append(len(res["ids"]))
        # Every record carries a decodable full vector; stage 1 never returns one without it.
        full = decode_rows([m[FULL_KEY] for m in res["metadatas"]], "int8", 128)
        assert np.isfinite(full).all() and (np.linalg.norm(full, axis=1) > 0.5).all()
        if res["ids"]:
            hits = store.similarity_search_with_score("bilan sanguin ferritine", k=10, candidates=200)
            assert len(hits) == min(10, len(res["ids"]))
        store.close()  # let the next worker take the folder's lock (the store may live on until GC)
        del store
    assert max(seen_counts) < n, f"the worker finished before it was killed: {seen_counts}"
    assert max(seen_counts) > 0, f"no batch was committed before the kills: {seen_counts}"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(n)
    encoded = sum(int(line.split()[2]) for line in done.stdout.splitlines() if line.startswith("batch"))
    assert encoded == n - seen_counts[-1], "the resumed add re-encoded stored texts"
    SharedSystemClient.clear_system_cache()
    store = MatryoshkaChroma("crash", tiny_embeddings, client=chromadb.PersistentClient(path), deterministic_ids=True)
    assert len(store) == n
    texts = [f"document {i} : bilan sanguin, ferritine {i % 101}, CRP {i % 37}, patient {i % 13}" for i in (0, 4321, n - 1)]
    ids = [MatryoshkaChroma.content_id(t, {"i": i}) for t, i in zip(texts, (0, 4321, n - 1))]
    got = store.get_full_vectors(ids)
    exp = tiny_embeddings.encode_documents(texts)
    for i in range(len(ids)):
        assert float(got[i] @ exp[i]) / np.linalg.norm(exp[i]) > 0.9999


# ---------------------------------------------------------------------------- langchain-tests


class _Standard(VectorStoreIntegrationTests):
    @staticmethod
    def get_embeddings() -> Embeddings:
        return FakeMatryoshkaEmbeddings(128)


class TestStandardEmbedded(_Standard):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        import chromadb

        store = MatryoshkaChroma(_name(), self.get_embeddings(), client=chromadb.PersistentClient(str(tmp_path / "c")))
        yield store
        store.delete_collection()


class TestStandardServer(_Standard):
    @pytest.fixture
    def vectorstore(self, chroma_server):
        import chromadb

        host, port = chroma_server
        store = MatryoshkaChroma(_name(), self.get_embeddings(), client=chromadb.HttpClient(host=host, port=port))
        yield store
        store.delete_collection()


def test_the_first_batch_is_large_enough_to_fit_the_coarse_projection(tmp_path, fake) -> None:
    """A learned projection needs 8 x coarse_dim texts; the first batch of add_texts holds
    fit_sample_size (4,096) whatever batch_size (a first batch of 16 would be refused or fitted on
    too few), the rest use batch_size."""
    from medrag.coarse import fit_sample_size

    store = MatryoshkaChroma(_name(), fake, persist_directory=str(tmp_path / "db"), coarse_dim=8,
                             coarse_rotation="learned")
    fitted_on, written = [], []
    real_fit, real_write = store._fit_rotation, store._write
    store._fit_rotation = lambda full, texts: fitted_on.append(len(full)) or real_fit(full, texts)
    store._write = lambda idx, *a, **k: written.append(len(idx)) or real_write(idx, *a, **k)
    texts = [f"Compte rendu {i} : ferritine {i % 41} µg/L, CRP {i % 13} mg/L." for i in range(4200)]
    store.add_texts(texts, batch_size=16, show_progress=False)
    first = fit_sample_size("learned", 8)
    assert first == 4096 and fitted_on == [first] and written[0] == first and set(written[1:-1]) == {16}
    assert len(store) == 4200 and store.rotation_fitted
    store.close()


# ---------------------------------------------------------------------------- December 3 review (each failed before its fix)


def test_delete_applies_where_filters_and_refuses_unknown_arguments(store: MatryoshkaChroma) -> None:
    """delete(ids, where=...) used to ignore the filter (and any misspelled keyword) and delete every id."""
    store.add_texts(["ferritine basse", "tsh élevée", "crp haute", "inr cible"],
                    [{"src": "a"}, {"src": "b"}, {"src": "a"}, {"src": "c"}], ids=["1", "2", "3", "4"])
    assert store.delete(["1", "2"], where={"src": "a"}) is True
    assert sorted(d.id for d in store.get_by_ids(["1", "2", "3", "4"])) == ["2", "3", "4"]  # as langchain-chroma
    store.delete(where={"src": "a"})  # every record matching, no ids
    assert sorted(d.id for d in store.get_by_ids(["2", "3", "4"])) == ["2", "4"]
    store.delete(where_document={"$contains": "inr"})
    assert [d.id for d in store.get_by_ids(["2", "4"])] == ["2"]
    assert [d.id for d in store.similarity_search("crp haute", k=4)] == ["2"]  # index, copy and BM25 agree
    assert [d.id for d in store.hybrid_search("crp haute", k=4)] == ["2"]
    with pytest.raises(InvalidArgumentError, match="bogus"):
        store.delete(["2"], bogus=1)
    with pytest.raises(InvalidInputError, match="where"):
        store.delete(where={})  # an empty filter is not "everything"
    with pytest.raises(InvalidInputError):
        store.delete(["2"], where={"$bad": 1})
    assert [d.id for d in store.get_by_ids(["2"])] == ["2"]  # nothing deleted by the refused calls


def test_retriever_tags_are_not_changed_and_may_be_a_tuple(store: MatryoshkaChroma) -> None:
    mine = ["rag"]
    store.as_retriever(tags=mine)
    second = store.as_retriever(tags=mine)
    assert mine == ["rag"] and second.tags.count("MatryoshkaChroma") == 1
    assert store.as_retriever(tags=("rag",)).tags[0] == "rag"


def test_scores_stay_in_their_ranges(client) -> None:
    """A query equal to a stored vector gave a distance of -2.4e-07 (relevance above 1) with float32."""
    fake = FakeMatryoshkaEmbeddings()
    s = MatryoshkaChroma(_name(), fake, client=client, full_encoding="float32", coarse_rotation="none")
    s.add_texts(TEXTS[:50])
    for text in TEXTS[:50]:
        (doc, distance), = s.similarity_search_with_score(text, k=1)
        assert doc.page_content == text and 0.0 <= distance <= 2.0
        assert s.similarity_search_with_relevance_scores(text, k=1)[0][1] <= 1.0
        opposite = (-fake._vec(text)).tolist()
        assert all(0.0 <= d <= 2.0 for _, d in s.similarity_search_by_vector_with_score(opposite, k=3))
    s.delete_collection()


def test_mmr_serves_a_k_above_fetch_k_and_checks_its_arguments(store: MatryoshkaChroma) -> None:
    store.add_texts(TEXTS[:40])
    assert len(store.as_retriever(search_type="mmr", search_kwargs={"k": 25}).invoke(TEXTS[3])) == 25
    for bad in ({"lambda_mult": "0.5"}, {"lambda_mult": None}, {"lambda_mult": 1.5}, {"candidates": "50"},
                {"candidates": 2}, {"k": 0}):
        with pytest.raises(InvalidInputError):
            store.max_marginal_relevance_search(TEXTS[3], **{"k": 3, "fetch_k": 5, **bad})


@pytest.mark.parametrize("rotation", ["pca", "learned"])
def test_an_empty_store_with_a_fitted_coarse_stage_answers_nothing(client, fake, rotation) -> None:
    """Searching before the first write used to raise "not fitted yet"."""
    s = MatryoshkaChroma(_name(), fake, client=client, coarse_rotation=rotation)
    assert s.similarity_search("ferritine", k=3) == []
    assert s.as_retriever().invoke("ferritine") == []
    assert s.hybrid_search("ferritine", k=3) == []
    assert s.search_with_stages("ferritine").hits == []
    s.delete_collection()


def test_more_bad_input_is_a_medrag_error(client, fake) -> None:
    name = _name()
    with pytest.raises(InvalidInputError, match=r"MatryoshkaEmbeddings\('intfloat/multilingual-e5-large'\)"):
        MatryoshkaChroma(name, "intfloat/multilingual-e5-large", client=client)
    for bad in ({"collection_metadata": [("a", 1)]}, {"lexical_path": 5}, {"relevance_score_fn": "cosine"},
                {"vector_sidecar": "no"}):
        with pytest.raises(InvalidInputError, match=next(iter(bad))):
            MatryoshkaChroma(name, fake, client=client, **bad)
    assert name not in [c.name for c in client.list_collections()]  # refused before anything was made
    s = MatryoshkaChroma(name, fake, client=client)
    s.add_texts(TEXTS[:20])
    with pytest.raises(InvalidInputError, match="list of texts"):
        s.add_texts(None)
    with pytest.raises(InvalidArgumentError, match="add_texts"):
        s.add_texts(TEXTS[:2], foo=1)
    with pytest.raises(InvalidArgumentError, match="search_with_stages"):
        s.search_with_stages(TEXTS[0], foo=1)
    with pytest.raises(InvalidInputError, match="hybrid"):
        s.search_with_stages(TEXTS[0], hybrid="no")
    with pytest.raises(InvalidInputError, match="fusion"):
        s.hybrid_search(TEXTS[0], fusion="")
    with pytest.raises(InvalidInputError, match="more than a Chroma query"):
        s.similarity_search(TEXTS[0], candidates=2**70)
    with pytest.raises(InvalidInputError, match="search_type"):
        s.search(TEXTS[0], "semantic")
    assert s.search(TEXTS[0], "hybrid", k=1)[0].page_content == TEXTS[0]
    assert s.search(TEXTS[0], "mmr", k=1)[0].page_content == TEXTS[0]
    s.delete_collection()


async def test_asearch_runs_a_hybrid_search(store: MatryoshkaChroma) -> None:
    store.add_texts(TEXTS[:10])
    assert (await store.asearch(TEXTS[4], "hybrid", k=1))[0].page_content == TEXTS[4]


def test_reindex_checks_its_input_before_making_anything_and_says_what_it_drops(client, fake, caplog) -> None:
    from langchain_chroma import Chroma

    source = _name()
    Chroma(source, embedding_function=PlainEmbeddings(128), client=client).add_texts(
        ["ferritine basse", "tsh élevée"], [{"_medrag_source": "cours", "page": 3}, {"page": 4}], ids=["1", "2"])
    before = sorted(c.name for c in client.list_collections())
    for bad in (0, "500"):
        with pytest.raises(InvalidInputError, match="batch_size"):
            MatryoshkaChroma.reindex(client, source, _name(), fake, batch_size=bad)
    with pytest.raises(InvalidInputError, match="source collection"):
        MatryoshkaChroma.reindex(client, "does-not-exist", _name(), fake)
    with pytest.raises(InvalidInputError, match="chromadb client"):
        MatryoshkaChroma.reindex("/tmp/chroma", source, _name(), fake)
    assert sorted(c.name for c in client.list_collections()) == before
    with caplog.at_level("WARNING", logger="medrag.store"):
        copy = MatryoshkaChroma.reindex(client, source, _name(), fake)
    assert [d.metadata for d in copy.get_by_ids(["1"])] == [{"page": 3}]
    assert "_medrag_source" in caplog.text
    copy.delete_collection()
    client.delete_collection(source)


def test_reindex_skips_the_records_add_texts_would_refuse(tmp_path, tiny_model_dir, caplog) -> None:
    """A langchain-chroma collection holding a blank page (" \n", a zero-width space) stopped the whole
    migration with add_texts' "leave empty documents out" error, which reindex's caller cannot follow:
    reindex only read "" and None as records without text (user tryout). The records add_texts would
    refuse (blank, invisible, the model's prompt alone) are skipped and named, in every batch."""
    import chromadb
    from langchain_chroma import Chroma

    from medrag import MatryoshkaEmbeddings

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    texts = [f"page {i} : la ferritine basse traduit une carence en fer" for i in range(7)]
    texts[2], texts[5], texts[6] = " \n", "\u200b", "passage: "
    Chroma("old", embedding_function=PlainEmbeddings(128), client=client).add_texts(
        texts, ids=[f"p{i}" for i in range(7)])
    embeddings = MatryoshkaEmbeddings(tiny_model_dir, prompts={"query": "query: ", "passage": "passage: "})
    with caplog.at_level("WARNING", logger="medrag.store"):
        new = MatryoshkaChroma.reindex(client, "old", "new", embeddings, batch_size=4)
    assert sorted(d.id for d in new.get_by_ids([f"p{i}" for i in range(7)])) == ["p0", "p1", "p3", "p4"]
    skipped = " ".join(r.getMessage() for r in caplog.records if "reindex skipped" in r.getMessage())
    assert "'p2'" in skipped and "'p5'" in skipped and "'p6'" in skipped


def test_reindex_names_a_lost_server_and_a_source_changed_during_the_copy(client, fake, caplog,
                                                                          monkeypatch) -> None:
    """reindex read its source without the store's error translation (a lost server: a raw
    httpx.ConnectError), and paged it by offsets while another client deleted records it had passed:
    50 records still in the source were never copied, without a word (server audit)."""
    from chromadb.api.models.Collection import Collection

    from medrag.errors import StoreConnectionError

    source = _name()
    src = MatryoshkaChroma(source, fake, client=client)
    src.add_texts([f"Note {i} : ferritine à {i} µg/L." for i in range(30)], ids=[f"s{i:02d}" for i in range(30)])
    real_get = Collection.get

    def lost(self, *args, **kwargs):
        if self.name == source and kwargs.get("offset") is not None:
            raise ConnectionError("[Errno 111] Connection refused")
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "get", lost)
    with pytest.raises(StoreConnectionError, match=f"read the source collection \\(collection '{source}'\\)"):
        MatryoshkaChroma.reindex(client, source, _name(), fake, batch_size=10)
    monkeypatch.undo()
    real_add, calls = MatryoshkaChroma.add_texts, []

    def add_while_another_client_deletes(self, *args, **kwargs):
        if self.collection.name != source and not calls:
            client.get_collection(source).delete(ids=["s00", "s01", "s02"])  # records the copy has passed
        calls.append(1)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(MatryoshkaChroma, "add_texts", add_while_another_client_deletes)
    with caplog.at_level("WARNING", logger="medrag.store"):
        copy = MatryoshkaChroma.reindex(client, source, _name(), fake, batch_size=10)
    monkeypatch.undo()
    assert "changed during the copy (30 records at its start, 27 now" in caplog.text
    assert "reindex it again, into a new collection, once no client writes to it" in caplog.text
    copy.delete_collection()
    # the source dropped by another client once every record was read: the copy is returned, with a warning
    real_add, calls = MatryoshkaChroma.add_texts, []

    def add_then_drop_the_source(self, *args, **kwargs):
        out = real_add(self, *args, **kwargs)
        if self.collection.name != source and not calls:
            client.delete_collection(source)
        calls.append(1)
        return out

    monkeypatch.setattr(MatryoshkaChroma, "add_texts", add_then_drop_the_source)
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.store"):
        copy = MatryoshkaChroma.reindex(client, source, _name(), fake, batch_size=10)
    monkeypatch.undo()
    assert len(copy) == 27 and "could not read the source again to check" in caplog.text
    copy.delete_collection()


def test_the_store_embeddings_give_query_vectors_its_by_vector_searches_take(tiny_embeddings) -> None:
    """With MatryoshkaEmbeddings(dimension=64) (the README's example), ``store.embeddings.embed_query``
    gave 64 values, which every by-vector search refused (langchain-core's contract: the vector comes
    from ``store.embeddings.embed_query``)."""
    import chromadb

    small = tiny_embeddings.with_dimension(64)
    store = MatryoshkaChroma(_name(), small, client=chromadb.EphemeralClient(), coarse_dim=32)
    store.add_texts(TEXTS[:6], ids=[f"t{i}" for i in range(6)])
    vector = store.embeddings.embed_query(TEXTS[2])
    assert len(vector) == 128 and small.dimension == 64  # the user's object is left as it was
    assert store.similarity_search_by_vector(vector, k=1)[0].id == store.similarity_search(TEXTS[2], k=1)[0].id
    assert store.max_marginal_relevance_search_by_vector(vector, k=2, fetch_k=4)
    with pytest.raises(DimensionError, match=r"dimension=64.*store.embeddings.embed_query"):
        store.similarity_search_by_vector(small.embed_query(TEXTS[2]), k=1)
    store.delete_collection()


def test_get_and_update_documents_as_langchain_chroma(store, fake) -> None:
    """``get``, ``update_document(s)`` did not exist (AttributeError for code written for
    langchain-chroma's Chroma), and a call after ``delete_collection`` blamed "another client"."""
    ids = [f"t{i}" for i in range(6)]
    store.add_texts(TEXTS[:6], metadatas=[{"n": i, "status": "draft"} for i in range(6)], ids=ids)
    got = store.get(ids=["t3", "t1", "nope"])
    assert sorted(got["ids"]) == ["t1", "t3"] and got["included"] == ["documents", "metadatas"]
    # Chroma's keys, a field not included None (it was absent: KeyError for code written for langchain-chroma)
    assert set(got) == {"ids", "embeddings", "documents", "uris", "included", "data", "metadatas"}
    assert got["embeddings"] is None and store.get(ids=["t1"], include=["metadatas"])["documents"] is None
    assert all(not k.startswith("_medrag") for md in got["metadatas"] for k in md)
    assert store.get(where={"n": {"$gte": 4}})["ids"] and set(store.get(where={"n": {"$gte": 4}})["ids"]) == {"t4", "t5"}
    assert len(store.get(limit=2)["ids"]) == 2 and len(store.get(ids=ids, offset=4)["ids"]) == 2
    full = store.get(ids=["t2"], include=["embeddings"])
    assert full["embeddings"].shape == (1, 128) and full["documents"] is None and full["metadatas"] is None
    assert np.allclose(full["embeddings"][0], fake.encode_documents([TEXTS[2]])[0], atol=0.02)  # int8 full vector
    with pytest.raises(InvalidInputError, match="include"):
        store.get(include=["distances"])

    store.update_document("t2", Document(page_content="La ferritine mesure les réserves en fer.", metadata={"n": 2}))
    after = store.get(ids=["t2"])
    assert after["documents"] == ["La ferritine mesure les réserves en fer."] and after["metadatas"] == [{"n": 2}]
    assert store.similarity_search("ferritine réserves en fer", k=1, filter={"n": 2})[0].id == "t2"
    with pytest.raises(InvalidInputError, match="not stored.*nothing was written"):
        store.update_documents(["t1", "zz"], [Document(page_content="a"), Document(page_content="b")])
    assert store.get(ids=["t1"])["documents"] == [TEXTS[1]] and len(store) == 6
    with pytest.raises(InvalidInputError, match="one id per document"):
        store.update_documents(["t1"], [])

    store.delete_collection()
    with pytest.raises(CollectionMismatchError, match="deleted by this store's delete_collection"):
        store.similarity_search("fer", k=1)


def test_an_existing_collection_opens_at_its_recorded_coarse_size(client, fake) -> None:
    """A collection built with coarse_dim=32 was refused by ``MatryoshkaChroma(name, emb)`` (64 by
    default) unless the size was repeated: every reader had to know it (``medrag search`` did not)."""
    name = _name()
    MatryoshkaChroma(name, fake, client=client, coarse_dim=32).add_texts(TEXTS, ids=[str(i) for i in range(len(TEXTS))])
    reopened = MatryoshkaChroma(name, fake, client=client)
    assert reopened.coarse_dim == 32 and reopened.similarity_search(TEXTS[3], k=1)[0].id == "3"
    with pytest.raises(CollectionMismatchError, match="coarse_dim"):  # an explicit other size is still refused
        MatryoshkaChroma(name, fake, client=client, coarse_dim=64)
    assert MatryoshkaChroma(_name(), fake, client=client).coarse_dim == 64  # a new one: the default
    reopened.delete_collection()


# ------------------------------------------------------------------ reset_collection


def test_reset_collection_empties_the_store_and_keeps_its_settings(client, fake) -> None:
    """langchain-chroma's ``reset_collection``: every record gone, the same contract, HNSW settings
    and own metadata; the fitted coarse stage is fitted again on the next first write."""
    name = _name()
    store = MatryoshkaChroma(name, fake, client=client, coarse_dim=32, coarse_rotation="pca",
                             collection_metadata={"owner": "biologie"}, hnsw={"ef_search": 123})
    store.add_texts(TEXTS[:80], ids=[f"old{i}" for i in range(80)])
    old_rotation = store.collection.metadata["medrag:rotation_data"]
    assert store.rotation_fitted
    store.reset_collection()
    assert len(store) == 0 and store.similarity_search(TEXTS[0], k=3) == []
    assert not store.rotation_fitted and store.coarse_rotation == "pca" and store.coarse_dim == 32
    meta = client.get_collection(name).metadata
    assert meta["owner"] == "biologie" and meta["medrag:coarse_dim"] == 32
    assert client.get_collection(name).configuration["hnsw"]["ef_search"] == 123
    new = [f"{t} (nouveau)" for t in TEXTS[100:180]]
    store.add_texts(new, ids=[f"new{i}" for i in range(80)])
    assert store.rotation_fitted and store.collection.metadata["medrag:rotation_data"] != old_rotation
    assert store.get_by_ids(["old0"]) == []
    hits = store.similarity_search(new[7], k=3)
    assert hits[0].id == "new7" and all(h.id.startswith("new") for h in hits)
    assert {d.id for d in store.hybrid_search(new[7], k=5)} <= {f"new{i}" for i in range(80)}
    # another store opening the collection sees the reset one
    assert len(MatryoshkaChroma(name, fake, client=client)) == 80
    store.delete_collection()


def test_reset_collection_after_delete_collection_makes_the_store_usable_again(tmp_path, fake) -> None:
    path = str(tmp_path / "db")
    store = MatryoshkaChroma("docs", fake, persist_directory=path, coarse_rotation="none",
                             collection_metadata={"source": "bdpm"})
    store.add_texts(TEXTS[:10], ids=[f"a{i}" for i in range(10)])
    store.hybrid_search(TEXTS[1], k=2)  # the lexical index file is written
    lexical = Path(path) / "medrag-lexical"
    assert any(lexical.iterdir())
    store.delete_collection()
    with pytest.raises(CollectionMismatchError, match="reset_collection"):
        len(store)
    store.reset_collection()
    assert len(store) == 0 and store.collection.metadata["source"] == "bdpm"
    store.add_texts(TEXTS[20:25], ids=[f"b{i}" for i in range(5)])
    assert [d.id for d in store.hybrid_search(TEXTS[22], k=1)] == ["b2"]
    assert store.get_full_vectors(["b2"]).shape == (1, fake.full_dim)  # from the vector copy
    store.close()
    reopened = MatryoshkaChroma("docs", fake, persist_directory=path)
    assert len(reopened) == 5 and reopened.get_by_ids(["a1"]) == []
    assert [d.id for d in reopened.similarity_search(TEXTS[22], k=1)] == ["b2"]


def test_reset_collection_is_refused_to_a_process_that_does_not_own_the_folder(tmp_path, fake) -> None:
    path = str(tmp_path / "db")
    owner = MatryoshkaChroma("shared", fake, persist_directory=path)
    owner.add_texts(TEXTS[:5])
    out = _in_another_process(
        path,
        "s = M('shared', F(), persist_directory=sys.argv[1])\n"
        "try:\n    s.reset_collection(); print('RESET')\n"
        "except StoreLockedError as e:\n    print('LOCKED', e)\n")
    assert "LOCKED" in out.stdout, out.stdout + out.stderr[-2000:]
    assert len(owner) == 5
    owner.close()


# ---------------------------------------------------------------------------- races, close, ported calls


def test_a_record_deleted_while_chroma_answers_is_dropped_not_an_error(client, fake, monkeypatch) -> None:
    """Without the local copy (servers, vector_sidecar=False) a record deleted by another client between
    Chroma's vector search and its metadata read came back with metadata None, and the search failed
    with "written by another tool ... reindex"."""
    s = MatryoshkaChroma(_name(), fake, client=client, vector_sidecar=False)
    ids = s.add_texts(TEXTS[:30])
    real = s._chroma_call
    victims: list[str] = []

    def racing(what, fn, *args, **kwargs):
        res = real(what, fn, *args, **kwargs)
        if what == "search" and not victims:
            victims.append(res["ids"][0][0])
            real("delete", s.collection.delete, ids=victims)  # another client's delete, meanwhile
            res["metadatas"][0][0] = None
        return res

    monkeypatch.setattr(s, "_chroma_call", racing)
    hits = s.similarity_search(TEXTS[3], k=4)
    assert len(hits) == 4 and victims and victims[0] not in [d.id for d in hits]
    assert all(d.page_content for d in hits) and set(d.id for d in hits) <= set(ids)
    monkeypatch.undo()
    s.delete_collection()


def test_a_hit_deleted_after_the_rerank_is_replaced_not_blank(client, fake, monkeypatch) -> None:
    """A hit deleted by another client after the rerank came back as Document(page_content="")."""
    s = MatryoshkaChroma(_name(), fake, client=client)
    other = MatryoshkaChroma(s.collection.name, fake, client=client)
    s.add_texts(TEXTS[:30], ids=[str(i) for i in range(30)])
    real = s._funnel

    def racing(*args, **kwargs):
        found = real(*args, **kwargs)
        other.delete([found[0][0]])
        return found

    monkeypatch.setattr(s, "_funnel", racing)
    searches = {"similarity": lambda q: s.similarity_search(q, k=4),
                "with_score": lambda q: [d for d, _ in s.similarity_search_with_score(q, k=4)],
                "stages": lambda q: [h.document for h in s.search_with_stages(q, k=4).hits],
                "hybrid": lambda q: s.hybrid_search(q, k=4)}
    for n, (name, search) in enumerate(searches.items()):
        hits = search(TEXTS[3 + n])
        assert len(hits) == 4 and all(d.page_content for d in hits), name  # the next candidate fills in
        assert str(3 + n) not in [d.id for d in hits], name  # the exact match was deleted by the race
    hits = s.max_marginal_relevance_search(TEXTS[11], k=4)  # picks among the candidates: one fewer
    assert len(hits) == 3 and all(d.page_content for d in hits)
    monkeypatch.undo()
    s.delete_collection()


def test_writes_after_close_are_seen_by_the_other_stores_of_the_process(tmp_path, fake) -> None:
    """close() dropped the store's copy but not its role: its later writes left the folder's copy,
    which other stores of the process read, with the old text, metadata and vector."""
    d = str(tmp_path / "db")
    a = MatryoshkaChroma("notes", fake, persist_directory=d)
    a.add_texts(["ancien texte sur la ferritine"], [{"v": 1}], ids=["x"])
    b = MatryoshkaChroma("notes", fake, persist_directory=d)
    b.close()
    b.add_texts(["nouveau texte sur la ferritine"], [{"v": 2}], ids=["x"])
    hit = a.similarity_search("nouveau texte sur la ferritine", k=1)[0]
    assert (hit.page_content, hit.metadata) == ("nouveau texte sur la ferritine", {"v": 2})
    np.testing.assert_allclose(a.get_full_vectors(["x"])[0], fake.encode_documents(["nouveau texte sur la ferritine"])[0],
                               atol=0.02)
    b.delete(["x"])
    assert len(a) == 0 and a.similarity_search("ferritine", k=1) == []
    with pytest.raises(CollectionMismatchError, match="do not exist"):
        a.get_full_vectors(["x"])


def test_delete_names_an_id_twice(store: MatryoshkaChroma) -> None:
    """delete(["a", "a"]) failed as a StoreError (Chroma's DuplicateIDError) and deleted nothing."""
    store.add_texts(["ferritine basse", "tsh élevée"], ids=["a", "b"])
    assert store.delete(["a", "a", "missing"]) is True
    assert [d.id for d in store.get_by_ids(["a", "b"])] == ["b"]


def test_score_thresholds_as_ints_and_bad_search_kwargs(store: MatryoshkaChroma) -> None:
    """LangChain's retriever takes a float threshold only: 0 and 1 raised a pydantic ValidationError."""
    store.add_texts(["ferritine basse", "tsh élevée"], ids=["a", "b"])
    for threshold in (0, 1):
        retriever = store.as_retriever(search_type="similarity_score_threshold",
                                       search_kwargs={"score_threshold": threshold, "k": 2})
        expected = [d.id for d, r in store.similarity_search_with_relevance_scores("ferritine basse", k=2) if r >= threshold]
        assert [d.id for d in retriever.invoke("ferritine basse")] == expected
    assert [d.id for d in store.as_retriever(search_type="similarity_score_threshold",
                                             search_kwargs={"score_threshold": 0.99}).invoke("ferritine basse")] == ["a"]
    with pytest.raises(InvalidInputError, match="search_kwargs"):
        store.as_retriever(search_kwargs="k=4")
    with pytest.raises(InvalidInputError, match="bad argument"):
        store.as_retriever(search_type="similarity", metadata="not a dict")
    with pytest.raises(InvalidInputError, match="score_threshold"):
        store.similarity_search_with_relevance_scores("ferritine", score_threshold="0.5")
    assert [d.id for d, _ in store.similarity_search_with_relevance_scores("ferritine basse", k=2,
                                                                          score_threshold=0.99)] == ["a"]


@pytest.mark.parametrize("call, expected", [
    (lambda s: s.get(filter={"a": 1}), r"MatryoshkaChroma.get\(\): .*'filter' \(filter= is where= here\)"),
    (lambda s: s.get_by_ids(["a"], foo=1), r"get_by_ids\(\): .*'foo'; it takes ids"),
    (lambda s: s.update_documents(["a"], [], foo=1), r"update_documents\(\): .*'foo'"),
    (lambda s: s.update_document("a", None, foo=1), r"update_document\(\): .*'foo'"),
    (lambda s: s.get_full_vectors(["a"], foo=1), r"get_full_vectors\(\): .*'foo'"),
    (lambda s: s.reset_collection(foo=1), r"reset_collection\(\): .*'foo'; it takes no argument"),
    (lambda s: s.next_write_size(10, foo=1), r"next_write_size\(\): .*'foo'"),
    (lambda s: __import__("medrag").MatryoshkaEmbeddings(dimensions=64), r"MatryoshkaEmbeddings\(\): .*\(dimensions= is dimension= here\)"),
])
def test_every_unknown_keyword_argument_is_an_invalid_argument_error(fake, call, expected) -> None:
    """Methods of fixed signature raised Python's bare TypeError, outside the MedragError tree the docs
    promise for an unknown keyword argument of any method (user tryout); nothing ran before it."""
    import chromadb

    store = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient(), coarse_rotation="none")
    store.add_texts(["La ferritine basse."], ids=["a"])
    with pytest.raises(InvalidArgumentError, match=expected):
        call(store)
    assert store.get_by_ids(["a"])[0].page_content == "La ferritine basse."
    store.delete_collection()


def test_a_client_and_another_persist_directory_are_refused(tmp_path, fake) -> None:
    """The folder was ignored in silence (langchain-chroma's behaviour): the records went to the client's
    store (user tryout). The client's own folder is fine."""
    import chromadb

    with pytest.raises(InvalidInputError, match="name two places: pass one of them"):
        MatryoshkaChroma("notes", fake, persist_directory=str(tmp_path / "db2"), client=chromadb.EphemeralClient())
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    with pytest.raises(InvalidInputError, match=f"of the folder {tmp_path / 'db'}"):
        MatryoshkaChroma("notes", fake, persist_directory=str(tmp_path / "db2"), client=client)
    store = MatryoshkaChroma("notes", fake, persist_directory=str(tmp_path / "db"), client=client)
    store.close()
    assert not (tmp_path / "db2").exists()
    with pytest.MonkeyPatch.context() as m:  # "~/db" is a folder named "~" to Chroma and the store alike (review)
        m.setenv("HOME", str(tmp_path))
        with pytest.raises(InvalidInputError, match="name two places"):
            MatryoshkaChroma("notes", fake, persist_directory="~/db", client=client)


def test_unknown_constructor_arguments_name_what_replaces_them(tmp_path, fake) -> None:
    """A langchain-chroma argument or a typo raised a plain TypeError, outside the MedragError tree."""
    with pytest.raises(InvalidArgumentError, match="client_settings.*chromadb.HttpClient"):
        MatryoshkaChroma.from_texts(["ferritine"], fake, collection_name="c", client_settings=None)
    # langchain-chroma's host= / port=: a bare "unexpected argument(s)" (user tryout)
    with pytest.raises(InvalidArgumentError, match=r"\['host', 'port'\] \(host: pass client=chromadb.HttpClient\(host="
                                                   r"\.\.\.\); port: pass client=chromadb.HttpClient\(port=\.\.\.\)\)"):
        MatryoshkaChroma("c", fake, host="localhost", port=8000)
    with pytest.raises(InvalidArgumentError, match="persist_directory"):
        MatryoshkaChroma("c", fake, persist_dir=str(tmp_path / "db"))
    with pytest.raises(TypeError):  # still a TypeError for code that catches that
        MatryoshkaChroma("c", fake, colection_metadata={})
    assert not (tmp_path / "db").exists()


def test_update_documents_refuses_strings(store: MatryoshkaChroma) -> None:
    """update_documents(ids, ["text"]) raised AttributeError: 'str' object has no attribute 'page_content'."""
    store.add_texts(["tsh élevée"], ids=["tsh"])
    with pytest.raises(InvalidInputError, match="index 0.*Document"):
        store.update_documents(["tsh"], ["nouveau texte"])
    with pytest.raises(InvalidInputError, match="list of langchain Document"):
        store.update_documents(["tsh"], Document(page_content="nouveau texte"))
    assert store.get_by_ids(["tsh"])[0].page_content == "tsh élevée"


def test_a_content_id_rewritten_by_an_update_is_written_again(store: MatryoshkaChroma, fake) -> None:
    """add_texts skipped a stored content id even when update_document had rewritten the record:
    it returned the id as if the text were stored, and the edited text stayed."""
    text = "La ferritine basse traduit une carence en fer."
    [i] = store.add_texts([text], [{"src": "cours"}])
    calls = fake.document_calls
    assert store.add_texts([text], [{"src": "cours"}]) == [i] and fake.document_calls == calls  # skipped, not encoded
    store.update_document(i, Document(page_content="Texte corrigé.", metadata={"src": "cours"}))
    assert store.add_texts([text], [{"src": "cours"}]) == [i]
    assert (store.get_by_ids([i])[0].page_content, store.get_by_ids([i])[0].metadata) == (text, {"src": "cours"})
    store.update_document(i, Document(page_content=text, metadata={"src": "autre"}))  # metadata only
    store.add_texts([text], [{"src": "cours"}])
    assert store.get_by_ids([i])[0].metadata == {"src": "cours"}
    ids = store.add_texts(["CRP élevée."], [{"tags": ["bio", "urgence"], "n": 2, "x": 0.5, "ok": True}])
    calls = fake.document_calls
    assert store.add_texts(["CRP élevée."], [{"tags": ["bio", "urgence"], "n": 2, "x": 0.5, "ok": True}]) == ids
    assert fake.document_calls == calls


class _TextCounting(FakeMatryoshkaEmbeddings):
    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode_documents(self, texts):
        self.encoded += list(texts)
        return super().encode_documents(texts)


@pytest.mark.parametrize("layout", [{}, {"vector_sidecar": False}, {"full_encoding": "float32"},
                                    {"coarse_rotation": "pca", "coarse_dim": 8}])
def test_a_metadata_only_change_keeps_the_stored_vectors_unencoded(client, layout) -> None:
    """Re-adding a record with its text unchanged and new metadata encoded it again: a new metadata
    field on a whole corpus cost a full encoding (hours on CPU) (audit). It now keeps its stored
    vectors, byte for byte, and writes the new metadata; a changed text is encoded."""
    import chromadb

    emb = _TextCounting()
    store = MatryoshkaChroma(_name(), emb, client=client, **layout)
    ids = [f"d{i}" for i in range(40)]
    store.add_texts(TEXTS[:40], [{"service": "cardio", "old": 1}] * 40, ids=ids)
    before = store.collection.get(ids=ids, include=["embeddings", "metadatas"])
    vectors = store.get_full_vectors(ids)
    emb.encoded.clear()
    texts = TEXTS[:40]
    texts[3] = "un texte corrigé: la ferritine basse du patient 3"
    store.add_texts(texts, [{"service": "néphro", "year": 2024}] * 40, ids=ids)
    assert emb.encoded == [texts[3]]  # only the edited text went through the model
    after = store.collection.get(ids=ids, include=["embeddings", "metadatas"])
    same = [i for i in range(40) if i != 3]
    # Chroma normalises cosine vectors as it stores them: the last float bit may move
    np.testing.assert_allclose(np.asarray(after["embeddings"])[same], np.asarray(before["embeddings"])[same], atol=1e-7)
    np.testing.assert_array_equal(store.get_full_vectors(ids)[same], vectors[same])
    assert [m[k] for m in after["metadatas"] for k in ("service", "year")] == ["néphro", 2024] * 40
    assert all("old" not in m for m in after["metadatas"])  # a re-add still replaces the metadata
    assert store.similarity_search(texts[3], k=1)[0].page_content == texts[3]
    assert store.similarity_search(texts[7], k=1, filter={"service": "néphro"})[0].page_content == texts[7]
    if isinstance(client, chromadb.api.client.Client) and not layout:  # the folder's copy serves the new metadata
        other = MatryoshkaChroma(store.collection.name, FakeMatryoshkaEmbeddings(), client=client)
        assert other.similarity_search(texts[7], k=1)[0].metadata["service"] == "néphro"
    store.delete_collection()


def test_without_a_sidecar_many_candidates_read_their_vectors_in_batches(client, fake, monkeypatch) -> None:
    """With vector_sidecar=False the query read every candidate's metadata at once: about 34,000
    candidates raised SQLite's "too many SQL variables" (audit). Here the batch size is made tiny."""
    store = MatryoshkaChroma(_name(), fake, client=client, vector_sidecar=False)
    store.add_texts(TEXTS[:40], ids=[f"d{i}" for i in range(40)])
    expected = store.similarity_search_with_score(TEXTS[5], k=5, candidates=30)
    small = MatryoshkaChroma(store.collection.name, fake, client=client, vector_sidecar=False)
    monkeypatch.setattr(small.client, "get_max_batch_size", lambda: 7)
    real_get, real_query = small.collection.get, small.collection.query
    read, asked = [], []
    monkeypatch.setattr(small.collection, "get", lambda ids=None, **kw: read.append(len(ids or ())) or real_get(ids=ids, **kw))
    monkeypatch.setattr(small.collection, "query", lambda **kw: asked.append(kw["include"]) or real_query(**kw))
    found = small.similarity_search_with_score(TEXTS[5], k=5, candidates=30)
    assert [(d.id, round(s, 5)) for d, s in found] == [(d.id, round(s, 5)) for d, s in expected]
    assert asked == [["distances"]] and read and max(read) <= 7
    store.delete_collection()


def test_a_record_written_by_another_tool_is_re_added_with_its_text_unchanged(client, fake) -> None:
    """The error for a record without a full vector says to re-add it through MatryoshkaChroma; the
    re-add of the same text then tried to reuse its (missing) stored vector and raised that error
    again (review)."""
    store = MatryoshkaChroma(_name(), fake, client=client)
    store.add_texts(TEXTS[:3], ids=["a", "b", "c"])
    store.collection.upsert(ids=["raw"], documents=[TEXTS[7]], embeddings=[[0.1] * store.coarse_dim])
    store.add_texts([TEXTS[7]], ids=["raw"])
    assert store.similarity_search(TEXTS[7], k=1)[0].id == "raw"
    store.delete_collection()


# ---------------------------------------------------------------------------- LangChain audit (December 4)


async def test_async_relevance_scores_check_the_threshold_as_the_sync_path_does(store: MatryoshkaChroma) -> None:
    """score_threshold="0.5" raised a bare TypeError on the async path and True returned nothing
    (the sync path refused both); NaN kept nothing on either path (audit)."""
    store.add_texts(TEXTS[:5])
    for bad in ("0.5", True, float("nan")):
        with pytest.raises(InvalidInputError, match="needs a number"):
            await store.asimilarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=bad)
        with pytest.raises(InvalidInputError, match="needs a number"):
            store.similarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=bad)
    with pytest.raises(InvalidInputError, match="needs a number"):
        await store.asearch(TEXTS[0], "similarity_score_threshold", score_threshold="0.5")
    hits = await store.asimilarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=np.float32(-1.0))
    assert len(hits) == 2 and hits[0][0].page_content == TEXTS[0]


async def test_a_threshold_outside_the_cosine_range_is_refused_unless_relevance_is_the_users(
        store: MatryoshkaChroma, client, fake) -> None:
    """score_threshold=75 (a percentage) kept nothing and -2 every hit, in silence (re-read); with a
    relevance_score_fn of the user's, its range is theirs."""
    store.add_texts(TEXTS[:5])
    for bad, said in ((75, "for 75%, use 0.75"), (-2, "kept every hit"), (np.float32(1.5), "kept nothing")):
        with pytest.raises(InvalidInputError, match=f"outside \\[-1, 1\\].*{said}"):
            store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": bad})
        with pytest.raises(InvalidInputError, match="outside"):
            store.similarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=bad)
        with pytest.raises(InvalidInputError, match="outside"):
            await store.asimilarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=bad)
    assert len(store.similarity_search_with_relevance_scores(TEXTS[0], k=2, score_threshold=-1)) == 2
    scaled = MatryoshkaChroma(_name(), fake, client=client, relevance_score_fn=lambda d: 100 * (1 - d))
    try:
        scaled.add_texts(TEXTS[:5])
        hits = scaled.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"score_threshold": 99.9, "k": 3}).invoke(TEXTS[0])
        assert [d.page_content for d in hits] == [TEXTS[0]]
    finally:
        scaled.delete_collection()


def test_content_id_of_numpy_metadata_is_the_id_add_texts_gives(store: MatryoshkaChroma) -> None:
    """add_texts stores a pandas row's np.int64 / np.float64 / np.bool_ as Python values, but
    content_id hashed them with default=str: the documented id of a text was not the stored one, and
    get_by_ids(content_id(...)) found nothing; content_id(None) hashed None (user tryout)."""
    md = {"page": np.int64(3), "score": np.float64(0.5), "ok": np.bool_(True), "tags": [np.int64(1), np.int64(2)]}
    [stored] = store.add_texts([TEXTS[0]], [md])
    assert MatryoshkaChroma.content_id(TEXTS[0], md) == stored == MatryoshkaChroma.content_id(
        TEXTS[0], {"page": 3, "score": 0.5, "ok": True, "tags": [1, 2]})
    assert store.get_by_ids([MatryoshkaChroma.content_id(TEXTS[0], md)])[0].page_content == TEXTS[0]
    for bad in (None, 3, b"bytes"):
        with pytest.raises(InvalidInputError, match="content_id takes the text"):
            MatryoshkaChroma.content_id(bad)
    with pytest.raises(InvalidInputError, match="content_id takes the metadata as a dict"):
        MatryoshkaChroma.content_id(TEXTS[0], [("page", 3)])


def test_a_none_metadata_value_does_not_change_the_content_id(store: MatryoshkaChroma) -> None:
    """{"page": None} is stored as no key, but its content id differed from {}'s: re-adding the text
    without the empty field stored it twice. A record stored under the old id keeps it (audit)."""
    first = store.add_texts([TEXTS[0]], [{"page": None, "src": "a"}])
    assert store.add_texts([TEXTS[0]], [{"src": "a"}]) == first and len(store) == 1
    assert first == [MatryoshkaChroma.content_id(TEXTS[0], {"src": "a"})]
    # a record written under the id an earlier medrag gave it (None values hashed)
    import hashlib
    import json

    payload = json.dumps([TEXTS[1], {"page": None}], sort_keys=True, ensure_ascii=False, default=str)
    old = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]
    store.add_texts([TEXTS[1]], [{}], ids=[old])
    assert store.add_texts([TEXTS[1]], [{"page": None}]) == [old] and len(store) == 2
    assert store.add_texts([TEXTS[1]], [{}]) == [MatryoshkaChroma.content_id(TEXTS[1])]  # {}: the new id, as documented
    assert len(store) == 3


def test_an_empty_undecided_auto_collection_takes_an_explicit_coarse_stage(tmp_path, fake) -> None:
    """A collection opened with the default "auto" and closed before any write refused
    coarse_rotation="none" ("reindex into a new collection") though nothing was stored (audit)."""
    MatryoshkaChroma("undecided", fake, persist_directory=str(tmp_path)).close()
    s = MatryoshkaChroma("undecided", fake, persist_directory=str(tmp_path), coarse_rotation="none")
    s.add_texts(TEXTS[:3])
    assert s._collection.metadata[CONTRACT_KEYS["rotation"]] == "none" and len(s) == 3
    s.close()
    with pytest.raises(CollectionMismatchError, match="rotation"):  # decided and written: the contract holds
        MatryoshkaChroma("undecided", fake, persist_directory=str(tmp_path), coarse_rotation="pca")


def test_a_read_only_store_folder_says_what_to_do() -> None:
    """``medrag search`` on a read-only store copy ended with "Chroma failed to open ... attempt to
    write a readonly database" (audit): Chroma's embedded client writes even to read."""
    from chromadb.errors import ChromaError

    from medrag._chroma_errors import translate_chroma_error
    from medrag.errors import StoreError

    class Internal(ChromaError):
        pass

    err = translate_chroma_error(Internal("error returned from database: (code: 8) attempt to write a readonly "
                                          "database"), "open the store")
    assert isinstance(err, StoreError) and "the store's files are read-only" in str(err) and "cp -r" in str(err)


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


class _RecordingBar:
    """A stand-in for tqdm that records its updates."""

    updates: list[int] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.disable = False

    def update(self, n: int) -> None:
        _RecordingBar.updates.append(n)

    def close(self) -> None:
        pass


def test_a_long_write_moves_its_bar_while_it_encodes(tmp_path, monkeypatch) -> None:
    """The first write of a store that fits its coarse stage holds 4,096 texts, encoded in one model
    call: its bar stood still for minutes on a CPU, then jumped to the end. With a bar the texts are
    encoded 256 at a time (the same vectors); without one, in one call."""
    import chromadb

    monkeypatch.setattr("tqdm.auto.tqdm", _RecordingBar)
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    texts = [f"ferritine {i} µg/L" for i in range(600)]
    vectors = {}
    for show in (True, False):
        fake, calls = FakeMatryoshkaEmbeddings(), []
        encode = fake.encode_documents
        fake.encode_documents = lambda batch, encode=encode, calls=calls: calls.append(len(batch)) or encode(batch)
        _RecordingBar.updates = []
        store = MatryoshkaChroma(_name(), fake, client=client)
        ids = store.add_texts(texts, batch_size=1000, show_progress=show)
        assert calls == ([256, 256, 88] if show else [600])
        assert _RecordingBar.updates == ([256, 256, 88] if show else [])
        vectors[show] = store.get_full_vectors(ids)
        if show:  # stored records are not encoded again: the bar still reaches the total
            _RecordingBar.updates = []
            store.add_texts(texts, ids=ids, batch_size=1000, show_progress=True, skip_existing=True)
            assert sum(_RecordingBar.updates) == 600 and calls == [256, 256, 88]
    np.testing.assert_array_equal(vectors[True], vectors[False])


class _ZeroFor(FakeMatryoshkaEmbeddings):
    """Fake embeddings that return an all-zero vector for one text (a broken model, a bad cache)."""

    def __init__(self, zero_text: str) -> None:
        super().__init__()
        self.zero_text = zero_text

    def _vec(self, text: str) -> np.ndarray:
        return np.zeros(self.full_dim, np.float32) if text == self.zero_text else super()._vec(text)


def test_an_all_zero_document_vector_is_refused_before_it_is_written(tmp_path) -> None:
    """It was stored, then read back as a corrupt vector by every search that reached it (and adding
    it again, as the message advised, stored it again)."""
    store = MatryoshkaChroma(_name(), _ZeroFor("VIDE"), persist_directory=str(tmp_path / "db"))
    store.add_texts(["La ferritine basse."], ids=["a"])
    with pytest.raises(InvalidInputError, match=r"all-zero vector for the text at index 1 \('VIDE'"):
        store.add_texts(["La CRP.", "VIDE", "La TSH."], ids=["b", "z", "c"])
    assert store.get()["ids"] == ["a"]  # nothing of the batch written
    assert [d.id for d in store.similarity_search("ferritine", k=4)] == ["a"]
    store.close()


def test_an_all_zero_query_vector_is_refused_by_every_search() -> None:
    """similarity_search refused it; hybrid_search and search_with_stages ranked by it (every dense score
    0: BM25 alone, in silence) (user tryout)."""
    import chromadb

    store = MatryoshkaChroma(_name(), _ZeroFor("VIDE"), client=chromadb.EphemeralClient(), coarse_rotation="none")
    store.add_texts(["La ferritine basse.", "La TSH élevée."])
    for search in (store.similarity_search, store.hybrid_search, store.search_with_stages,
                   store.max_marginal_relevance_search):
        with pytest.raises(InvalidInputError, match="the query vector is all zeros"):
            search("VIDE")
    store.delete_collection()


class _Scaled(FakeMatryoshkaEmbeddings):
    """Valid float32 vectors of huge or tiny values (an unnormalised model's)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def _vec(self, text: str) -> np.ndarray:
        return (super()._vec(text) * self.scale).astype(np.float32)


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_vectors_of_huge_or_tiny_values_are_normalised_not_refused(scale) -> None:
    """Their float32 norm overflowed to inf or underflowed to 0, and they were refused as all-zero vectors."""
    import chromadb

    store = MatryoshkaChroma(_name(), _Scaled(scale), client=chromadb.EphemeralClient(), coarse_rotation="none")
    store.add_texts(["La ferritine basse.", "La TSH élevée."], ids=["a", "b"])
    found = store.similarity_search_with_score("La TSH élevée.", k=1)
    assert found[0][0].id == "b" and found[0][1] == pytest.approx(0.0, abs=1e-3)
    store.delete_collection()


def test_plain_embeddings_that_fail_the_probe_or_return_odd_values_are_named() -> None:
    """The construction probe's ConnectionError came out raw; a (1, d) query array was "a vector of 1
    values"; numeric strings were stored as numbers (user tryout)."""
    import chromadb

    class Down(PlainEmbeddings):
        def embed_query(self, text):
            raise ConnectionError("API unreachable")

    class Nested(PlainEmbeddings):
        def embed_query(self, text):
            return np.asarray([super().embed_query(text)])

    class Strings(PlainEmbeddings):
        def embed_documents(self, texts):
            return [[str(x) for x in row] for row in super().embed_documents(texts)]

    client = chromadb.EphemeralClient()
    with pytest.raises(MedragError, match=r"Down.embed_query once .* ConnectionError: API unreachable"):
        MatryoshkaChroma(_name(), Down(), client=client)
    with pytest.raises(DimensionError, match=r"shape \(1, 96\); it should return one vector"):
        MatryoshkaChroma(_name(), Nested(), client=client)
    store = MatryoshkaChroma(_name(), Strings(), client=client, coarse_rotation="none")
    with pytest.raises(MedragError, match="not numbers"):
        store.add_texts(["La ferritine basse."])
    assert len(store) == 0
    with pytest.raises(DimensionError, match="holds values that are not numbers .*: a query vector is a list of numbers"):
        store.similarity_search_by_vector([str(x) for x in PlainEmbeddings().embed_query("x")])
    for odd in (np.array(["0.5"] * 96, dtype=object), [None] * 96, [complex(1, 1)] * 96, [10**400] * 96):
        with pytest.raises(DimensionError, match="not (a number|numbers)"):  # text, None, complex; a raw OverflowError
            store.similarity_search_by_vector(odd)

    class Objects(PlainEmbeddings):  # numbers of other types are numbers (review: refused by the first fix)
        def embed_documents(self, texts):
            from decimal import Decimal

            rows = super().embed_documents(texts)
            return [np.array(rows[0], dtype=object), [Decimal(repr(x)) for x in rows[1]]]

    store = MatryoshkaChroma(_name(), Objects(), client=client, coarse_rotation="none")
    assert store.add_texts(["La ferritine basse.", "La TSH."], ids=["a", "b"]) == ["a", "b"]


def test_precomputed_vectors_all_zero_or_given_a_bare_string_are_refused() -> None:
    from medrag import PrecomputedEmbeddings

    with pytest.raises(InvalidInputError, match="'b' is all zeros"):
        PrecomputedEmbeddings({"a": [1.0, 0.0], "b": [0.0, 0.0]}, spec="s", fingerprint="f")
    with pytest.raises(InvalidInputError, match="not a single string"):  # it read the texts "a" and "b"
        PrecomputedEmbeddings.from_arrays("ab", np.eye(2), spec="s", fingerprint="f")


def test_a_store_over_smaller_precomputed_embeddings_hands_out_full_size_ones() -> None:
    """``store.embeddings.embed_query`` returned 64 values on a 128-dim store with
    ``PrecomputedEmbeddings(dimension=64)``, which the by-vector searches refused."""
    from medrag import PrecomputedEmbeddings

    fake = FakeMatryoshkaEmbeddings()
    texts = TEXTS[:20]
    emb = PrecomputedEmbeddings.from_arrays(texts, fake.encode_documents(texts), ["ferritine"],
                                            fake.encode_queries(["ferritine"]), spec="s", fingerprint="f", dimension=64)
    store = MatryoshkaChroma(_name(), emb, client=__import__("chromadb").EphemeralClient())
    store.add_texts(texts)
    assert len(emb.embed_query("ferritine")) == 64 and len(store.embeddings.embed_query("ferritine")) == 128
    assert len(store.similarity_search_by_vector(store.embeddings.embed_query("ferritine"), k=2)) == 2
    with pytest.raises(DimensionError):
        emb.with_dimension(129)
    store.delete_collection()


def test_a_rejected_from_texts_leaves_no_collection(tmp_path) -> None:
    """The empty collection it created recorded its settings, and refused the corrected call."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    with pytest.raises(InvalidInputError, match="index 1 is empty"):
        MatryoshkaChroma.from_texts(["La CRP.", ""], FakeMatryoshkaEmbeddings(), collection_name="notes", client=client,
                                    full_encoding="float32")
    assert [c.name for c in client.list_collections()] == []
    store = MatryoshkaChroma.from_texts(["La CRP.", "La TSH."], FakeMatryoshkaEmbeddings(), collection_name="notes",
                                        client=client, full_encoding="float16")
    assert len(store) == 2
    store.add_texts(["La ferritine."])
    with pytest.raises(InvalidInputError):  # an existing collection is never dropped by a rejected call
        MatryoshkaChroma.from_texts([""], FakeMatryoshkaEmbeddings(), collection_name="notes", client=client)
    assert len(MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(), client=client)) == 3


@pytest.mark.parametrize("bad", [["texte"], "texte", None, [{"page_content": "texte"}]])
def test_documents_that_are_not_documents_are_named(bad) -> None:
    """LangChain's base class raised AttributeError ('str' object has no attribute 'id') or TypeError."""
    import chromadb

    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    for call in (lambda: store.add_documents(bad), lambda: asyncio.run(store.aadd_documents(bad)),
                 lambda: MatryoshkaChroma.from_documents(bad, FakeMatryoshkaEmbeddings(), client=store.client),
                 lambda: asyncio.run(MatryoshkaChroma.afrom_documents(bad, FakeMatryoshkaEmbeddings(),
                                                                      client=store.client))):
        with pytest.raises(InvalidInputError, match="langchain Document"):
            call()
    assert len(store) == 0
    assert store.add_documents([Document(page_content="La CRP.", id="crp")]) == ["crp"]


def test_retriever_arguments_are_checked_when_it_is_built() -> None:
    """A misspelt argument was ignored (``search_kwarg={"k": 10}`` gave 4 documents, ``searchtype="mmr"``
    a similarity search); bad ``search_kwargs`` failed only at the first query."""
    import chromadb

    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(InvalidArgumentError, match=r"unknown argument\(s\) \['search_kwarg'\]"):
        store.as_retriever(search_kwarg={"k": 10})
    with pytest.raises(InvalidArgumentError, match="searchtype"):
        store.as_retriever(searchtype="mmr")
    for search_type, kwargs, match in (("similarity", {"k": 0}, "must be >= 1"),
                                       ("similarity", {"kk": 3}, r"\['kk'\] are not arguments of similarity_search"),
                                       ("similarity", {"score_threshold": 0.5}, "needs search_type='similarity_score"),
                                       ("mmr", {"lambda_mult": 5}, r"lambda_mult'\] must be a number in \[0, 1\]"),
                                       ("mmr", {"fetch_k": 0}, "must be >= 1"),
                                       ("similarity_score_threshold", {"score_threshold": 0.2, "k": -1}, ">= 1"),
                                       ("similarity", {"k": 10, "candidates": 5}, "candidates"),
                                       ("mmr", {"fetch_k": 30, "candidates": 25}, "at least fetch_k")):
        with pytest.raises(InvalidInputError, match=match):
            store.as_retriever(search_type=search_type, search_kwargs=kwargs)
    assert store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 8, "lambda_mult": 0.3,
                                                               "filter": {"a": 1}, "candidates": 50})
    with pytest.raises(InvalidInputError, match="fetch_k must be >= 1"):  # the search itself agrees (tryout)
        store.max_marginal_relevance_search("ferritine", fetch_k=0)
    assert store.as_retriever(search_kwargs={"k": 2}, tags=["x"], metadata={"app": "demo"})
    # audit: a None value passed the build and failed at the first query; a string of tags became its letters
    for search_type, kwargs in (("mmr", {"fetch_k": None}), ("similarity", {"k": None}),
                                ("mmr", {"lambda_mult": None})):
        with pytest.raises(InvalidInputError, match=r"\] is None; give a value, or leave it out"):
            store.as_retriever(search_type=search_type, search_kwargs=kwargs)
    with pytest.raises(InvalidInputError, match=r"tags must be a list of strings such as \['prod'\], got 'prod'"):
        store.as_retriever(tags="prod")
    with pytest.raises(InvalidInputError, match="tags must be a list of strings, got 5"):
        store.as_retriever(tags=5)


def test_a_retriever_built_directly_or_reconfigured_gets_the_same_checks() -> None:
    """``MatryoshkaRetriever(vectorstore=store, ...)`` and LangChain's ``configurable_fields`` (which
    builds the retriever again with the new fields) skipped as_retriever's checks: pydantic's
    ValidationError for search_type="bm25", LangChain's "float 0~1" for a threshold of 75, and an
    unknown search_kwargs name failed only at the first query (LangChain tryout)."""
    import chromadb
    from langchain_core.runnables import ConfigurableField

    from medrag.retriever import MatryoshkaRetriever

    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    store.add_texts(TEXTS[:10])
    with pytest.raises(InvalidInputError, match="search_type must be one of"):
        MatryoshkaRetriever(vectorstore=store, search_type="bm25")
    with pytest.raises(InvalidArgumentError, match=r"unknown argument\(s\) \['search_kwarg'\]"):  # review
        MatryoshkaRetriever(vectorstore=store, search_kwarg={"k": 1})
    for built in (MatryoshkaRetriever(vectorstore=store, search_kwargs=None), store.as_retriever(search_kwargs=None)):
        assert len(built.invoke(TEXTS[0])) == 4  # None is the default, as when left out (pydantic's error before)
    with pytest.raises(InvalidInputError, match=r"\['lexical_weight'\] are not arguments of max_marginal"):
        MatryoshkaRetriever(vectorstore=store, search_type="mmr", search_kwargs={"lexical_weight": 0.5})
    direct = MatryoshkaRetriever(vectorstore=store, search_type="similarity_score_threshold",
                                 search_kwargs={"score_threshold": 0})  # an int, as as_retriever takes it
    assert direct.search_kwargs["score_threshold"] == 0.0 and isinstance(direct.search_kwargs["score_threshold"], float)
    retriever = store.as_retriever(search_kwargs={"k": 3}).configurable_fields(
        search_type=ConfigurableField(id="st"), search_kwargs=ConfigurableField(id="sk"))
    assert len(retriever.with_config(configurable={"st": "hybrid", "sk": {"k": 2, "lexical_weight": 0.5}})
               .invoke(TEXTS[0])) == 2
    for configurable, match in (({"st": "bm25"}, "search_type must be one of"),
                                ({"st": "similarity_score_threshold", "sk": {"score_threshold": 75}},
                                 r"outside \[-1, 1\].*use 0.75"),
                                ({"st": "mmr", "sk": {"k": 2, "lexical_weight": 0.5}}, "not arguments of max_marginal")):
        with pytest.raises(InvalidInputError, match=match):
            retriever.with_config(configurable=configurable).invoke(TEXTS[0])
    store.delete_collection()


def test_numpy_floats_are_numbers_for_mmr() -> None:
    """lambda_mult=np.float32(0.5) was refused as "must be a number in [0, 1], got np.float32(0.5)", while
    numpy floats were accepted as lexical_weight and score_threshold (audit)."""
    import chromadb

    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    store.add_texts(TEXTS[:10])
    half = np.float32(0.5)
    plain = [d.page_content for d in store.max_marginal_relevance_search(TEXTS[0], k=3, fetch_k=6, lambda_mult=0.5)]
    assert [d.page_content for d in store.max_marginal_relevance_search(TEXTS[0], k=3, fetch_k=6,
                                                                          lambda_mult=half)] == plain
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 6, "lambda_mult": half})
    assert [d.page_content for d in retriever.invoke(TEXTS[0])] == plain
    for bad in (np.bool_(True), np.float64(1.5), "0.5"):
        with pytest.raises(InvalidInputError, match="lambda_mult must be a number in"):
            store.max_marginal_relevance_search(TEXTS[0], k=3, lambda_mult=bad)
    store.delete_collection()


def test_numpy_metadata_values_are_stored_as_python_values(tmp_path) -> None:
    """``np.bool_`` was refused as "a bool; Chroma stores ... bool", ``np.int64`` by Chroma (a pandas row's values)."""
    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), persist_directory=str(tmp_path / "db"))
    md = {"urgent": np.bool_(True), "year": np.int64(2021), "dose": np.float32(0.5), "codes": [np.int64(1), np.int64(2)]}
    store.add_texts(["La CRP."], [md], ids=["crp"])
    stored = store.get(ids=["crp"])["metadatas"][0]
    assert stored == {"urgent": True, "year": 2021, "dose": 0.5, "codes": [1, 2]}
    assert type(stored["year"]) is int and isinstance(md["year"], np.int64)  # the caller's dict is not changed
    assert [d.id for d in store.similarity_search("CRP", filter={"year": 2021})] == ["crp"]
    with pytest.raises(InvalidInputError, match="the query is not valid UTF-8 text"):
        store.similarity_search("ferritine \udcff")
    store.close()


def _lock_holder(path: str) -> subprocess.Popen:
    """Another process holding ``path``'s lock (as a medrag store there would), until killed."""
    code = ("import fcntl, os, sys, time; p = os.path.join(sys.argv[1], 'medrag.lock');"
            "fd = os.open(p, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX);"
            "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode()); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_store_opened_while_another_process_held_the_folder_keeps_the_copy_true(tmp_path, fake) -> None:
    """Opened while another process held the folder, a store has no copy of its own; once that process
    died, another store of this process took the lock and read the copy, and kept serving the old text
    of a record the first one rewrote."""
    path = str(tmp_path / "db")
    first = MatryoshkaChroma("notes", fake, persist_directory=path)
    first.add_texts(TEXTS[:20], ids=[f"t{i}" for i in range(20)])
    first.close()
    holder = _lock_holder(path)
    try:
        without_copy = MatryoshkaChroma("notes", fake, persist_directory=path)
    finally:
        holder.kill()
        holder.wait()
    with_copy = MatryoshkaChroma("notes", fake, persist_directory=path)
    assert with_copy._sidecar is not None and without_copy._sidecar is None
    without_copy.add_texts(["TEXTE REMPLACÉ zorglub"], ids=["t3"])
    hit = next(d for d in with_copy.similarity_search("TEXTE REMPLACÉ zorglub", k=20) if d.id == "t3")
    assert hit.page_content == "TEXTE REMPLACÉ zorglub"
    np.testing.assert_array_equal(with_copy.get_full_vectors(["t3"]), without_copy.get_full_vectors(["t3"]))
    with_copy.close()


def test_a_process_that_does_not_hold_the_folder_creates_and_fits_nothing(tmp_path, fake) -> None:
    """It created a new collection (and reindex its target) and recorded a coarse projection fitted on
    ``rotation_sample``, while the docs promise StoreLockedError with nothing written."""
    import chromadb

    path = str(tmp_path / "db")
    owner = MatryoshkaChroma("notes", fake, persist_directory=path)
    owner.add_texts(TEXTS[:20])
    MatryoshkaChroma("pending", fake, persist_directory=path, coarse_dim=16, coarse_rotation="pca")
    owner.close()
    holder = _lock_holder(path)
    try:
        from medrag.errors import StoreLockedError

        with pytest.raises(StoreLockedError, match="nothing was written"):
            MatryoshkaChroma("autre", fake, persist_directory=path)
        with pytest.raises(StoreLockedError):
            MatryoshkaChroma("pending", fake, persist_directory=path, coarse_dim=16, coarse_rotation="pca",
                             rotation_sample=TEXTS[:200])
        with pytest.raises(StoreLockedError):
            MatryoshkaChroma.reindex(chromadb.PersistentClient(path), "notes", "copie", fake)
        names = {c.name for c in chromadb.PersistentClient(path).list_collections()}
        assert names == {"notes", "pending"}
        assert MatryoshkaChroma("pending", fake, persist_directory=path).rotation_fitted is False
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_that_cannot_be_opened_leaves_searches_and_names_itself_on_writes(tmp_path, fake, caplog) -> None:
    """A lock file that is a folder (or not writable by this user) raised a raw IsADirectoryError /
    PermissionError from the constructor: the store could not even search."""
    from medrag.errors import StoreError

    path = tmp_path / "db"
    store = MatryoshkaChroma("notes", fake, persist_directory=str(path))
    store.add_texts(TEXTS[:10], ids=[f"t{i}" for i in range(10)])
    store.close()
    (path / "medrag.lock").unlink()
    (path / "medrag.lock").mkdir()
    with caplog.at_level("WARNING"):
        reader = MatryoshkaChroma("notes", fake, persist_directory=str(path))
    assert "can search but not write" in caplog.text
    assert len(reader.similarity_search("ferritine", k=3)) == 3
    with pytest.raises(StoreError, match=r"cannot open the store's lock file .*medrag.lock.*it holds no data"):
        reader.add_texts(["nouveau"])
    assert len(reader) == 10


def test_an_empty_collection_takes_the_settings_of_the_store_that_opens_it(tmp_path, fake, caplog) -> None:
    """A collection left empty (a run killed before its first write, a store never written to) refused
    every open with another coarse size, encoding or model and asked to reindex an empty collection,
    though the `medrag index` docs say an empty one takes the new run's settings (user tryout). It is
    created again with the new settings, keeping its own metadata keys; a refused open of a collection
    that holds records still changes nothing recorded."""
    import chromadb

    path = str(tmp_path / "db")
    first = MatryoshkaChroma("vide", fake, persist_directory=path, coarse_dim=64,
                             collection_metadata={"team": "urgences"}, hnsw={"max_neighbors": 8})
    assert first.hybrid_search("ferritine") == []  # writes the (empty) lexical index file of the old collection
    first.close()
    old_id = str(chromadb.PersistentClient(path).get_collection("vide").id)
    assert index_file(path, old_id).exists()
    other = FakeMatryoshkaEmbeddings(seed=1)
    with caplog.at_level("WARNING", logger="medrag.store"):
        s = MatryoshkaChroma("vide", other, persist_directory=path, coarse_dim=32, full_encoding="float16",
                             coarse_rotation="pca")
    assert "held no record and was made with other settings (" in caplog.text and "coarse_dim" in caplog.text
    meta = s._collection.metadata
    assert (meta["medrag:model"], meta["medrag:coarse_dim"], meta["medrag:full_encoding"],
            meta["medrag:coarse_rotation"], meta["team"]) == (other.spec, 32, "float16", "pca", "urgences")
    assert (s._collection.configuration["hnsw"]["max_neighbors"], str(s._collection.id) != old_id) == (8, True)
    assert not index_file(path, old_id).exists()
    s.add_texts(TEXTS[:80])  # pca fits on the first write: 64 texts at least
    assert s.similarity_search(TEXTS[3], k=1)[0].page_content == TEXTS[3]
    s.close()
    for settings in ({"coarse_dim": 64}, {"full_encoding": "int8"}):  # now it holds records: the contract holds
        with pytest.raises(CollectionMismatchError):
            MatryoshkaChroma("vide", other, persist_directory=path, **settings)
    with pytest.raises(CollectionMismatchError, match="model"):
        MatryoshkaChroma("vide", fake, persist_directory=path)
    meta = chromadb.PersistentClient(path).get_collection("vide").metadata
    assert (meta["medrag:model"], meta["medrag:coarse_dim"]) == (other.spec, 32)
    # the settings left out keep the empty collection's own: nothing to renew
    MatryoshkaChroma("vide2", fake, persist_directory=path, coarse_dim=16).close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.store"):
        assert MatryoshkaChroma("vide2", fake, persist_directory=path).coarse_dim == 16
    assert "held no record" not in caplog.text


def test_the_same_weights_with_another_pooling_are_another_model(tiny_model_dir, tmp_path) -> None:
    """The fingerprint hashed the weights only: a copy of the model with CLS pooling opened a collection
    built with mean pooling and mixed its vectors with the stored ones (user tryout)."""
    import json
    import shutil

    from medrag import MatryoshkaEmbeddings

    copy = shutil.copytree(tiny_model_dir, tmp_path / "cls")
    pooling = next(copy.glob("*Pooling/config.json"))
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_mean_tokens": False,
                                   "pooling_mode_cls_token": True, "pooling_mode": "cls"}))
    path = str(tmp_path / "db")
    MatryoshkaChroma("notes", MatryoshkaEmbeddings(str(tiny_model_dir)), persist_directory=path).add_texts(TEXTS[:3])
    with pytest.raises(CollectionMismatchError, match="model"):
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(str(copy)), persist_directory=path)


def test_a_model_of_the_same_name_with_other_weights_is_named_as_such(tmp_path, fake) -> None:
    """A damaged cached copy of a bundled model loaded under its usual name with another fingerprint:
    the message advised reindexing, which would rebuild the store with the damaged model."""
    path = str(tmp_path / "db")
    MatryoshkaChroma("notes", fake, persist_directory=path).add_texts(TEXTS[:5])
    changed = FakeMatryoshkaEmbeddings(seed=1)
    changed.spec = fake.spec  # the same name, other weights
    with pytest.raises(CollectionMismatchError, match=r"the same name with other weights here .*\$MEDRAG_CACHE/models"):
        MatryoshkaChroma("notes", changed, persist_directory=path)
    with pytest.raises(CollectionMismatchError) as other:  # another model altogether: no such hint
        MatryoshkaChroma("notes", FakeMatryoshkaEmbeddings(seed=2), persist_directory=path)
    assert "same name" not in str(other.value)


def test_async_add_texts_keeps_the_sync_checks() -> None:
    """Overriding aadd_documents made LangChain's base aadd_texts build Documents itself: 2 ids for 3
    texts dropped the third in silence, a bare string stored one record per letter (review)."""
    import chromadb

    store = MatryoshkaChroma(_name(), FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with pytest.raises(InvalidInputError, match="got 2 ids for 3 texts"):
        asyncio.run(store.aadd_texts(["La CRP.", "La TSH.", "La ferritine."], ids=["a", "b"]))
    with pytest.raises(InvalidInputError, match="one string"):
        asyncio.run(store.aadd_texts("abc"))
    assert asyncio.run(store.aadd_texts(["La CRP."], [None], ids=["crp"])) == ["crp"]
    assert len(store) == 1


def test_a_refused_reindex_leaves_no_target_collection(tmp_path) -> None:
    """Its first write refused (here a zero vector) left an empty target whose recorded settings then
    refused the corrected call, as from_texts did (review)."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    source = client.create_collection("plain")
    source.add(ids=["a", "b"], documents=["La CRP.", "VIDE"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(InvalidInputError, match="all-zero vector"):
        MatryoshkaChroma.reindex(client, "plain", "copie", _ZeroFor("VIDE"))
    assert {c.name for c in client.list_collections()} == {"plain"}


def test_a_matryoshka_encoder_without_langchain_methods_is_a_valid_store_model() -> None:
    """The protocol's docs say any object with its members works in the store; the store refused one
    without embed_query / embed_documents (December 5 audit)."""
    import chromadb

    from medrag.encoder import is_encoder

    fake = FakeMatryoshkaEmbeddings()

    class Encoder:
        spec, fingerprint, full_dim, dims = fake.spec, fake.fingerprint, fake.full_dim, [128, 64]

        def encode_documents(self, texts):
            return fake.encode_documents(texts)

        def encode_queries(self, texts):
            return fake.encode_queries(texts)

    assert is_encoder(Encoder())
    store = MatryoshkaChroma(_name(), Encoder(), client=chromadb.EphemeralClient())
    store.add_texts(TEXTS[:10], ids=[f"t{i}" for i in range(10)])
    assert [d.id for d in store.similarity_search(TEXTS[3], k=1)] == ["t3"]


_OPEN_RACE = r'''
import sys, threading
import numpy as np
from langchain_core.embeddings import Embeddings
from medrag import MatryoshkaChroma

class Hashed(Embeddings):
    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]
    def embed_query(self, text):
        v = np.random.default_rng(abs(hash(text)) % 2**32).normal(size=32)
        return (v / np.linalg.norm(v)).tolist()

folder = sys.argv[1] if len(sys.argv) > 1 else None
errors, barrier = [], threading.Barrier(4)
def open_store(i):
    barrier.wait()
    try:
        MatryoshkaChroma(f"race-{i}", Hashed(), persist_directory=folder, coarse_dim=8)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
threads = [threading.Thread(target=open_store, args=(i,)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
print("failures", len(errors), errors)
'''


@pytest.mark.parametrize("persistent", [False, True], ids=["in-memory", "persistent"])
def test_stores_opened_by_threads_at_once_all_open(tmp_path, persistent) -> None:
    """Four threads opening stores at once in a fresh process (asyncio.gather of afrom_texts, a threaded
    server's first requests) all failed inside chromadb ("Could not connect to tenant default_tenant"),
    and the error blamed persist_directory=None (audit)."""
    script = tmp_path / "race.py"
    script.write_text(_OPEN_RACE, encoding="utf-8")
    args = [sys.executable, str(script)] + ([str(tmp_path / "db")] if persistent else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "failures 0 []" in out.stdout, out.stdout[-2000:]


def test_a_relative_model_folder_is_recorded_as_an_absolute_path(tiny_model_dir, tmp_path, monkeypatch):
    """A store built from Python with MatryoshkaEmbeddings("out/ft1") recorded "out/ft1": `medrag search`
    run from another folder then took it for a hub id; `medrag index` records absolute paths (user tryout)."""
    import chromadb

    from medrag import MatryoshkaEmbeddings

    shutil.copytree(tiny_model_dir, tmp_path / "out" / "ft1")
    monkeypatch.chdir(tmp_path)
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings("out/ft1"), client=client, coarse_dim=16)
    store.add_texts(["La ferritine basse signe une carence martiale."])
    recorded = client.get_collection("notes").metadata[CONTRACT_KEYS["model"]]
    assert recorded == str((tmp_path / "out" / "ft1").resolve())
    monkeypatch.chdir("/")
    from medrag.cli import main

    assert main(["search", "ferritine", "--persist-dir", str(tmp_path / "db"), "--collection", "notes", "--k", "1"]) == 0


# ---------------------------------------------------------------------------- LangChain app tryout (December 6)

def test_returned_metadata_keys_come_in_one_order_on_every_path(store: MatryoshkaChroma) -> None:
    """Chroma returns a record's metadata keys in an order that changes from call to call: a chain
    rendering them into its prompt made 10 different prompts of 10 identical runs (LLM caches missed)."""
    md = {"source": "cours.pdf", "page": 3, "auteur": "Dr X", "annee": 2020, "service": "hémato", "b": 1}
    store.add_texts(["La ferritine basse traduit une carence en fer."], [md], ids=["fer"])
    want = sorted(md)
    for _ in range(8):
        assert list(store.get_by_ids(["fer"])[0].metadata) == want
        assert list(store.get(ids=["fer"])["metadatas"][0]) == want
        assert list(store.similarity_search("ferritine", k=1)[0].metadata) == want
        assert list(store.hybrid_search("ferritine", k=1)[0].metadata) == want
        assert list(store.max_marginal_relevance_search("ferritine", k=1, fetch_k=1)[0].metadata) == want


def test_numpy_values_in_filters_match_as_they_were_stored(store: MatryoshkaChroma) -> None:
    """A filter built from a pandas column (np.int64) was refused ('got 2022') though writes accept it."""
    years = np.array([2021, 2022])
    store.add_texts(["texte A", "texte B"], [{"year": years[0]}, {"year": years[1]}], ids=["a", "b"])
    assert [d.id for d in store.similarity_search("texte", k=2, filter={"year": years[1]})] == ["b"]
    assert [d.id for d in store.hybrid_search("texte", k=2, filter={"year": {"$in": list(years[:1])}})] == ["a"]
    assert store.get(where={"year": {"$gte": np.int64(2022)}})["ids"] == ["b"]
    import pandas as pd

    column = pd.Series(years, name="year")
    for values in (years, column, pd.Index(years), column.unique(), (2021, 2022)):  # review: arrays were refused
        assert sorted(store.get(where={"year": {"$in": values}})["ids"]) == ["a", "b"]
    assert [d.id for d in store.similarity_search("texte", k=2, filter={"year": {"$nin": years[:1]}})] == ["b"]


class _RaggedEmbeddings(Embeddings):
    """A flaky embedding API: the second text's vector is cut short, or holds a non-number."""

    def __init__(self, bad: object) -> None:
        self.inner, self.bad = FakeMatryoshkaEmbeddings(), bad

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out = self.inner.embed_documents(texts)
        out[1] = self.bad(out[1])
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def test_a_vector_of_the_wrong_length_is_a_dimension_error_naming_the_text(client) -> None:
    store = MatryoshkaChroma(_name(), _RaggedEmbeddings(lambda v: v[:100]), client=client)
    with pytest.raises(DimensionError, match="100 values for text 1 \\(expected 128\\)"):
        store.add_texts(["texte un", "texte deux", "texte trois"])
    assert len(store) == 0
    store = MatryoshkaChroma(_name(), _RaggedEmbeddings(lambda v: ["x"] * len(v)), client=client)
    with pytest.raises(MedragError, match="not numbers"):
        store.add_texts(["texte un", "texte deux"])


def test_ids_from_a_numpy_array_come_back_as_str(store: MatryoshkaChroma) -> None:
    ids = store.add_texts(["texte un", "texte deux"], ids=np.array(["n1", "n2"]))
    assert ids == ["n1", "n2"] and all(type(i) is str for i in ids)
    assert all(type(d.id) is str for d in store.get_by_ids(np.array(["n1"])))


def test_a_single_string_is_told_to_be_wrapped_in_a_list(store: MatryoshkaChroma) -> None:
    with pytest.raises(InvalidInputError, match=r"wrap a single text in a list: \[text\]"):
        store.add_texts("La CRP est élevée.")


def test_from_texts_takes_add_texts_writing_options(client, fake) -> None:
    store = MatryoshkaChroma.from_texts(TEXTS[:30], fake, client=client, collection_name=_name(),
                                        batch_size=7, show_progress=False)
    assert len(store) == 30 and fake.document_calls == 5  # 30 texts, 7 per model call
    store.delete_collection()


def test_a_deleted_collections_list_metadata_never_reaches_a_new_one(client, fake) -> None:
    """chromadb 1.5.9 left a deleted collection's list-valued metadata behind: a record of a collection
    made after it came back with a phantom ``tags`` key, which filters matched (found in re-read)."""
    old = MatryoshkaChroma(_name(), fake, client=client)
    old.add_texts(["CRP élevée."], [{"page": 3, "tags": ["bio", "urgence"]}])
    old.delete_collection()
    new = MatryoshkaChroma(_name(), fake, client=client)
    new.add_texts(["La ferritine basse."], [{"source": "cours", "page": 3}], ids=["fer"])
    assert new.get_by_ids(["fer"])[0].metadata == {"page": 3, "source": "cours"}
    assert new.get(where={"tags": {"$contains": "bio"}})["ids"] == []
    new.delete_collection()


def test_a_persist_directory_that_is_no_path_is_named(fake) -> None:
    """persist_directory=123 raised os.path's raw TypeError (re-read)."""
    with pytest.raises(InvalidInputError, match="persist_directory must be a folder path .*got int"):
        MatryoshkaChroma("abc", fake, persist_directory=123)


def test_a_non_vector_row_is_named(client) -> None:
    store = MatryoshkaChroma(_name(), _RaggedEmbeddings(lambda v: 0.5), client=client)
    with pytest.raises(MedragError, match="returned float for text 1, not a vector"):
        store.add_texts(["texte un", "texte deux"])
    assert len(store) == 0


def test_the_store_is_a_context_manager_that_closes(tmp_path, fake) -> None:
    with MatryoshkaChroma("ctx", fake, persist_directory=str(tmp_path / "db")) as store:
        store.add_texts(["texte un"], ids=["u"])
        assert store._lock is not None and store._lock.held
    assert not store._lock.held
    assert [d.id for d in store.similarity_search("texte un", k=1)] == ["u"]  # reads after closing


def test_a_server_store_refuses_a_forked_process_instead_of_answering_wrong(chroma_server) -> None:
    """gunicorn --preload: the master's store on a server's client, used in forked workers, shared its HTTP
    connection; workers read each other's replies (another query's results, in silence, or errors blaming
    the input: user tryout). The child is refused; a store it creates itself, on its own client, works."""
    host, port = chroma_server
    body = (
        "import os, chromadb\n"
        "from medrag.errors import StoreError\n"
        "host, port = sys.argv[1].split(':')\n"
        "store = M('forked-server', F(), client=chromadb.HttpClient(host=host, port=int(port)))\n"
        "store.add_texts(['INR cible sous AVK', 'paracétamol 1 g'], ids=['avk', 'para'])\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        store.similarity_search('INR', k=1); print('no error', flush=True)\n"
        "    except StoreError as exc:\n"
        "        print('refused:', exc, flush=True)\n"
        "    own = M('forked-server', F(), client=chromadb.HttpClient(host=host, port=int(port)))\n"
        "    print('own', [d.id for d in own.similarity_search('INR cible sous AVK', k=1)], flush=True)\n"
        "    os._exit(0)\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n"
        "print('parent', [d.id for d in store.similarity_search('INR cible sous AVK', k=1)])\n"
        "store.delete_collection()\n"
    )
    run = _in_another_process(f"{host}:{port}", body)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("refused: ") and "share its Chroma server connection" in lines[0], lines
    assert lines[1:] == ["own ['avk']", "parent ['avk']"], lines


def test_an_embedded_store_refuses_a_forked_process_instead_of_hanging(tmp_path) -> None:
    """Opened before a fork (gunicorn --preload, a fork pool), a store's first call in the child hung
    forever inside Chroma's embedded client, and so did a store opened anew in the child (user tryout)."""
    body = (
        "import os\n"
        "from medrag.errors import StoreError\n"
        "store = M('forked', F(), persist_directory=sys.argv[1])\n"
        "store.add_texts(['INR cible sous AVK', 'paracétamol 1 g'], ids=['avk', 'para'])\n"
        "import faulthandler\n"
        "def child(call):\n"
        "    faulthandler.cancel_dump_traceback_later()\n"  # a watchdog armed before a fork deadlocks the child
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        faulthandler.dump_traceback_later(60, exit=True)\n"
        "        try:\n"
        "            call(); print('no error', flush=True)\n"
        "        except StoreError as exc:\n"
        "            print('refused:', exc, flush=True)\n"
        "        os._exit(0)\n"
        "    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n"
        "child(lambda: store.similarity_search('INR', k=1))\n"
        "child(lambda: store.add_texts(['une autre note']))\n"
        "child(lambda: M('forked', F(), persist_directory=sys.argv[1]))\n"
        "def grandchild():\n"  # the message names the process that opened the folder, not the parent
        "    child(lambda: M('forked', F(), persist_directory=sys.argv[1]))\n"
        "child(grandchild)\n"
        "def elsewhere():\n"  # another folder, or an in-memory store, works in the child
        "    other = M('other', F(), persist_directory=sys.argv[1] + '-other')\n"
        "    other.add_texts(['une autre note'], ids=['o'])\n"
        "    memory = M('memory', F())\n"
        "    memory.add_texts(['une note'], ids=['m'])\n"
        "    assert [d.id for d in other.similarity_search('note', k=1)] == ['o'] and len(memory) == 1\n"
        "child(elsewhere)\n"
        "print('parent', os.getpid(), [d.id for d in store.similarity_search('INR cible sous AVK', k=1)], len(store))\n"
    )
    run = _in_another_process(str(tmp_path / "db"), body)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    parent = lines[-1].split()[1]
    assert len(lines) == 7 and lines[-1] == f"parent {parent} ['avk'] 2", run.stdout
    assert all(line.startswith("refused: ") and "forked" in line and "'spawn'" in line for line in lines[:4]), lines
    assert "which then forked" in lines[0] and f"forked from process {parent} " in lines[2]
    assert f"forked from process {parent} " in lines[3] and lines[4:6] == ["no error", "no error"], lines


def test_a_full_disk_is_named_in_the_error(tmp_path, fake, monkeypatch) -> None:
    """A write that filled the disk ended with "Error in compaction: Failed to apply logs to the
    metadata segment": an operator suspected corruption, not a full disk (user tryout)."""
    from collections import namedtuple

    from chromadb.errors import ChromaError

    import medrag._chroma_errors as chroma_errors
    from medrag.errors import StoreError

    class Internal(ChromaError):
        pass

    store = MatryoshkaChroma("notes", fake, persist_directory=str(tmp_path / "db"))
    store.add_texts(TEXTS[:3])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(chroma_errors.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 300_000, 300_000))

    def compaction(*a, **k):
        raise Internal("Error in compaction: Failed to apply logs to the metadata segment")

    with pytest.raises(StoreError, match=r"the disk holding .*db is full \(292 KiB free\).*run the same call again"):
        store._chroma_call("write records", compaction)
    with pytest.raises(InvalidInputError, match=r"\$gtx"):  # a bad filter is no full disk (review)
        store.similarity_search("texte", k=1, filter={"n": {"$gtx": 1}})
    assert len(store.similarity_search("texte", k=1)) == 1  # searches work on such a disk
    monkeypatch.undo()
    with pytest.raises(StoreError, match="Chroma failed to write records") as raised:
        store._chroma_call("write records", compaction)
    assert "full" not in str(raised.value)  # a disk with room: Chroma's own message
    err = chroma_errors.translate_chroma_error(Internal("database or disk is full"), "write records")
    assert "the disk holding the store is full" in str(err)
    assert len(store) == 3


# ---------------------------------------------------------------------------- LangChain user tryout (December 6)


def test_metadata_values_pandas_hands_over_are_refused_with_what_to_store(store: MatryoshkaChroma) -> None:
    """A date, a NaN, pandas' NA and a numpy array were refused with no way out, and the message
    left out lists, which are stored (user tryout). Nothing is written."""
    import datetime

    import pandas as pd

    for value, advice in ((datetime.date(2024, 3, 1), "ISO string .* 20240301"), (pd.Timestamp("2024-03-01"), "20240301"),
                          (float("nan"), "a missing value: pass None"), (pd.NA, "for a missing value pass None"),
                          (pd.NaT, "for a missing value pass None"),
                          (np.array([1, 2]), r"value\.tolist\(\)")):
        with pytest.raises(InvalidInputError, match=advice):
            store.add_texts(["ferritine basse"], [{"v": value}])
    with pytest.raises(InvalidInputError, match="or a non-empty list"):
        store.add_texts(["ferritine basse"], [{"v": object()}])
    frame = pd.DataFrame({"service": ["cardio", "néphro"], "année": [2023, 2024]})
    with pytest.raises(InvalidInputError, match=r"got a DataFrame: pass df\.to_dict\('records'\)"):
        store.add_texts(["ferritine basse", "tsh élevée"], frame)
    assert len(store) == 0
    store.add_texts(["ferritine basse", "tsh élevée"], frame.to_dict("records"), ids=["a", "b"])
    assert store.get_by_ids(["b"])[0].metadata == {"année": 2024, "service": "néphro"}


def test_the_threshold_error_names_the_argument_the_caller_passed(store: MatryoshkaChroma) -> None:
    """Called directly, the message spoke of a retriever's search_kwargs (user tryout)."""
    store.add_texts(TEXTS[:3])
    with pytest.raises(InvalidInputError, match=r"^score_threshold needs a number"):
        store.similarity_search_with_relevance_scores(TEXTS[0], score_threshold="0.5")
    with pytest.raises(InvalidInputError, match=r"^search_type='similarity_score_threshold' needs a number in search_kwargs"):
        store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": "0.5"})


def test_langchain_chromas_vector_and_relevance_by_vector_methods(store: MatryoshkaChroma, fake) -> None:
    """similarity_search_with_vectors and similarity_search_by_vector_with_relevance_scores raised
    AttributeError: code ported from langchain-chroma broke (user tryout)."""
    store.add_texts(TEXTS[:20], [{"i": i} for i in range(20)], ids=[f"r{i}" for i in range(20)])
    hits = store.similarity_search_with_vectors(TEXTS[3], k=3, filter={"i": {"$lt": 10}})
    assert [d.id for d, _ in hits] == [d.id for d in store.similarity_search(TEXTS[3], k=3, filter={"i": {"$lt": 10}})]
    assert hits[0][0].id == "r3"
    np.testing.assert_allclose(np.stack([v for _, v in hits]), store.get_full_vectors([d.id for d, _ in hits]), atol=1e-6)
    query = fake.encode_queries([TEXTS[5]])[0]
    scored = store.similarity_search_by_vector_with_relevance_scores(query, k=2, where_document={"$contains": "passage"})
    distances = store.similarity_search_by_vector_with_score(query, k=2)
    assert [d.id for d, _ in scored] == [d.id for d, _ in distances] and scored[0][0].id == "r5"
    assert [round(r, 6) for _, r in scored] == [round(1 - x, 6) for _, x in distances] and scored[0][1] > 0.99
    with pytest.raises(InvalidArgumentError, match=r"takes query, k, filter, \*, candidates, where_document"):
        store.similarity_search_with_vectors(TEXTS[3], k=3, fetch_k=9)
    with pytest.raises(InvalidArgumentError, match=r"positional argument.*\*, candidates"):  # keyword-only (review)
        store.similarity_search_with_vectors(TEXTS[3], 3, None, {"$contains": "passage"})


def test_argument_errors_name_the_store_not_the_part_that_defines_the_method(store: MatryoshkaChroma) -> None:
    """MatryoshkaChroma is written in parts (mixins); its argument errors named the part
    ("FunnelSearch.get_full_vectors(): ...", "CoarseStage.next_write_size()"), a class users never meet
    (review of the split)."""
    with pytest.raises(InvalidArgumentError, match=r"^MatryoshkaChroma\.get_full_vectors\(\): .*dimensions.*it takes ids"):
        store.get_full_vectors(["a"], dimensions=3)
    with pytest.raises(InvalidArgumentError, match=r"^MatryoshkaChroma\.next_write_size\(\): too many"):
        store.next_write_size(10, 20)
    with pytest.raises(TypeError, match=r"^MatryoshkaChroma\.similarity_search\(\) missing"):
        store.similarity_search()
    assert type(store).write_generation.fget.__qualname__ == "MatryoshkaChroma.write_generation"


def test_a_collection_deleted_by_another_store_object_says_what_to_do(client, fake) -> None:
    """The store that deleted it said what to do; another store object on it did not (user tryout)."""
    name = _name()
    first, second = MatryoshkaChroma(name, fake, client=client), MatryoshkaChroma(name, fake, client=client)
    first.add_texts(TEXTS[:3])
    first.delete_collection()
    with pytest.raises(CollectionMismatchError, match="starts it again, empty") as info:
        second.add_texts(TEXTS[:3])
    # a re-index by another client (a new collection of the same name): the advice it was given, reset,
    # is not what it needs (user tryout); the message names both cases
    assert "If it created a new one of the same name (a re-index), open a new MatryoshkaChroma" in str(info.value)
    second.reset_collection()
    second.add_texts(TEXTS[:3])
    assert len(second) == 3
    # deleted and re-created by another store object: reset opens the new one as it is, a second reset empties it
    third = MatryoshkaChroma(name, fake, client=client)
    third.delete_collection()
    fourth = MatryoshkaChroma(name, fake, client=client)
    fourth.add_texts(TEXTS[5:7])
    second.reset_collection()
    assert len(second) == 2
    second.reset_collection()
    assert len(second) == 0
    second.delete_collection()


def test_a_collection_deleted_by_raw_chroma_is_deleted_here_too_with_its_texts(tmp_path, fake) -> None:
    """reset_collection() after another client deleted the collection left the vector copy's rows
    (texts, vectors, metadata) and the lexical index of the old collection on disk for good (review);
    delete_collection() then failed instead of being done."""
    import sqlite3

    import chromadb

    path = str(tmp_path / "db")
    store = MatryoshkaChroma("notes", fake, persist_directory=path)
    store.add_texts(TEXTS[:20], ids=[f"n{i}" for i in range(20)])
    store.hybrid_search(TEXTS[0], k=2)  # the lexical index written
    old_id = store._cid
    chromadb.PersistentClient(path).delete_collection("notes")
    rows = lambda: sum(sqlite3.connect(f).execute(f"SELECT count(*) FROM {t} WHERE {c} = ?", (old_id,)).fetchone()[0]
                       for f, t, c in _copy_tables(tmp_path / "db"))
    assert rows() > 0 and list((tmp_path / "db").rglob(f"*{old_id}*"))
    store.reset_collection()
    assert rows() == 0 and not list((tmp_path / "db").rglob(f"*{old_id}*"))
    store.add_texts(TEXTS[:2], ids=["a", "b"])
    assert [d.id for d in store.hybrid_search(TEXTS[1], k=1)] == ["b"] and len(store) == 2
    chromadb.PersistentClient(path).delete_collection("notes")
    store.delete_collection()  # done elsewhere: its derived data dropped here, no error
    store.close()


def _copy_tables(folder) -> list[tuple[str, str, str]]:
    """(file, table, collection-id column) of every table of medrag's SQLite files in ``folder``."""
    import sqlite3

    found = []
    for f in sorted(folder.glob("*.sqlite3")):
        if f.name == "chroma.sqlite3":
            continue
        con = sqlite3.connect(f)
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            found += [(str(f), table, c) for c in columns if c in ("collection", "collection_id", "cid")]
    return found
