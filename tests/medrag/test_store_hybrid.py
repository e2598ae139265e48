"""Hybrid search in MatryoshkaChroma: fusion of the funnel with BM25, filters on both sides, the
lexical index kept consistent (stale after a crash, other clients' writes, another analyzer),
against an embedded Chroma and a real Chroma server (the fixtures of test_store)."""

from __future__ import annotations

import math

import chromadb
import numpy as np
import pytest

from medrag import MatryoshkaChroma
from medrag.errors import InvalidInputError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.sidecar import LexicalSidecar
from medrag.retriever import MatryoshkaRetriever

from .test_store import FakeMatryoshkaEmbeddings, _name, chroma_server, client  # noqa: F401 (fixtures)

PASSAGES = {
    "hba1c": "L'HbA1c reflète l'équilibre glycémique des trois derniers mois chez le diabétique.",
    "tsh": "La TSH est le premier examen pour explorer la fonction thyroïdienne.",
    "avk": "Sous AVK, l'INR cible est habituellement compris entre 2 et 3.",
    "fer": "La ferritine basse signe une carence martiale, cause d'anémie microcytaire.",
    "metf": "La metformine est le traitement de première intention du diabète de type 2.",
    "tropo": "La troponine s'élève dans l'infarctus du myocarde.",
}
FILLER = [f"Note de suivi numéro {i} : patient revu en consultation, examen clinique sans particularité."
          for i in range(60)]


@pytest.fixture
def fake() -> FakeMatryoshkaEmbeddings:
    return FakeMatryoshkaEmbeddings()


def _fill(store: MatryoshkaChroma) -> None:
    store.add_texts(list(PASSAGES.values()), [{"kind": "fiche", "key": k} for k in PASSAGES], ids=list(PASSAGES))
    store.add_texts(FILLER, [{"kind": "note"} for _ in FILLER], ids=[f"n{i}" for i in range(len(FILLER))])


@pytest.fixture
def store(client, fake):  # noqa: F811
    s = MatryoshkaChroma(_name(), fake, client=client, candidates=10)
    _fill(s)
    yield s
    s.delete_collection()


def test_lexical_weight_extremes(store: MatryoshkaChroma) -> None:
    query = "INR sous AVK"
    dense = [d.id for d in store.similarity_search(query, k=5)]
    assert [d.id for d in store.hybrid_search(query, k=5, lexical_weight=0.0)] == dense
    assert store.hybrid_search(query, k=1, lexical_weight=1.0)[0].id == "avk"
    top = store.hybrid_search(query, k=5, lexical_weight=0.5)
    assert "avk" in [d.id for d in top]  # the random fake vectors know nothing: the lexical side finds it
    assert all(d.page_content and "_medrag_full" not in d.metadata for d in top)
    scored = store.hybrid_search_with_score(query, k=3, fusion="minmax", lexical_weight=0.5)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)


def test_filters_apply_to_both_sides(store: MatryoshkaChroma) -> None:
    hits = store.hybrid_search("INR sous AVK", k=5, filter={"kind": "note"}, lexical_weight=0.9)
    assert hits and all(d.metadata["kind"] == "note" for d in hits)
    hits = store.hybrid_search("carence martiale ferritine", k=3, filter={"key": "fer"}, lexical_weight=0.5)
    assert [d.id for d in hits] == ["fer"]
    hits = store.hybrid_search("ferritine", k=3, where_document={"$contains": "troponine"}, lexical_weight=0.9)
    assert [d.id for d in hits] == ["tropo"]


def test_search_with_stages_shows_lexical_side(store: MatryoshkaChroma) -> None:
    res = store.search_with_stages("troponine infarctus", k=3, hybrid=True, lexical_weight=0.5, candidates=3,
                                   fusion="rrf")
    top = res.hits[0]
    assert top.document.id == "tropo" and top.lexical_rank == 1 and top.lexical_score > 0
    assert top.fused_score == pytest.approx(0.5 / 61 + 0.5 / (60 + _dense_rank(store, "troponine infarctus", "tropo")))
    assert {"lexical_ms", "fusion_ms", "coarse_ms", "rerank_ms"} <= set(res.timings)
    lexical_only = [h for h in res.hits if h.coarse_rank == 0]
    assert all(math.isnan(h.coarse_score) for h in lexical_only)
    plain = store.search_with_stages("troponine infarctus", k=3)
    assert plain.hits[0].lexical_rank is None and plain.hits[0].fused_score is None
    with pytest.raises(InvalidInputError):
        store.search_with_stages("troponine", lexical_weight=0.3)


def _dense_rank(store: MatryoshkaChroma, query: str, id_: str) -> int:
    found = store._hybrid(query, store._embed_query(query), 3, None, 3, None, 0.0, "rrf", None)
    order = sorted(found.ids, key=lambda i: -float(found.dense_scores[found.ids.index(i)]))
    return order.index(id_) + 1


def test_retriever_hybrid(store: MatryoshkaChroma) -> None:
    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "lexical_weight": 1.0})
    assert isinstance(retriever, MatryoshkaRetriever)
    assert retriever.invoke("metformine diabète de type 2")[0].id == "metf"
    assert len(store.as_retriever(search_kwargs={"k": 3}).invoke("metformine")) == 3
    with pytest.raises(ValueError):
        store.as_retriever(search_type="bm42")


async def test_retriever_hybrid_async(store: MatryoshkaChroma) -> None:
    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 1, "lexical_weight": 1.0})
    assert (await retriever.ainvoke("troponine"))[0].id == "tropo"


def test_bad_arguments(store: MatryoshkaChroma, fake) -> None:
    for bad in (-0.1, 2, "0.3"):
        with pytest.raises(InvalidInputError):
            store.hybrid_search("fer", lexical_weight=bad)
    with pytest.raises(InvalidInputError):
        store.hybrid_search("fer", fusion="combsum")
    with pytest.raises(InvalidInputError):
        store.hybrid_search("fer", lexical_candidates=0)
    with pytest.raises(InvalidInputError):
        MatryoshkaChroma(_name(), fake, lexical_weight=1.5)


def test_writes_keep_the_index_fresh(store: MatryoshkaChroma) -> None:
    store.hybrid_search("ferritine", k=1)  # builds the index
    rebuilds = store.lexical.rebuilds
    store.add_texts(["Le BNP oriente vers une insuffisance cardiaque."], ids=["bnp"])
    assert store.hybrid_search("BNP insuffisance cardiaque", k=1, lexical_weight=1.0)[0].id == "bnp"
    store.delete(["bnp"])
    assert "bnp" not in [d.id for d in store.hybrid_search("BNP", k=5, lexical_weight=1.0)]
    assert store.lexical.rebuilds == rebuilds  # updated in place, never rebuilt


def test_second_client_writes_are_picked_up(client, fake) -> None:  # noqa: F811
    name = _name()
    first = MatryoshkaChroma(name, fake, client=client, candidates=10)
    _fill(first)
    assert first.hybrid_search("troponine", k=1, lexical_weight=1.0)[0].id == "tropo"
    second = MatryoshkaChroma(name, fake, client=client, candidates=10)  # another object / client
    second.add_texts(["La procalcitonine oriente vers une infection bactérienne."], ids=["pct"])
    second.delete(["tropo"])
    rebuilds = first.lexical.rebuilds
    assert first.hybrid_search("procalcitonine", k=1, lexical_weight=1.0)[0].id == "pct"
    assert "tropo" not in [d.id for d in first.hybrid_search("troponine", k=5, lexical_weight=1.0)]
    assert first.lexical.rebuilds == rebuilds + 1
    first.delete_collection()


def test_crash_between_chroma_and_index_write(tmp_path, fake, monkeypatch) -> None:
    folder = str(tmp_path / "chroma")
    store = MatryoshkaChroma("ccc", fake, persist_directory=folder, candidates=10)
    _fill(store)
    store.hybrid_search("ferritine", k=1)
    path = store.lexical.path
    assert path is not None and path.exists() and path.parent.parent == tmp_path / "chroma"
    # the process "dies" after the Chroma upsert, before the lexical index is updated or saved
    monkeypatch.setattr(LexicalSidecar, "upserted", lambda self, *a: None)
    monkeypatch.setattr(LexicalSidecar, "write_done", lambda self: None)
    store.add_texts(["La lipasémie à trois fois la normale évoque une pancréatite."], ids=["lip"])
    monkeypatch.undo()
    reopened = MatryoshkaChroma("ccc", fake, persist_directory=folder, candidates=10)
    assert reopened.hybrid_search("lipasémie pancréatite", k=1, lexical_weight=1.0)[0].id == "lip"
    assert reopened.lexical.rebuilds == 1  # detected stale (older generation) and rebuilt
    again = MatryoshkaChroma("ccc", fake, persist_directory=folder, candidates=10)
    again.hybrid_search("lipasémie", k=1)
    assert again.lexical.rebuilds == 0  # the rebuilt index was saved and is fresh: loaded as is
    assert len(again.lexical.index()) == len(PASSAGES) + len(FILLER) + 1


def test_other_analyzer_or_corrupt_file_rebuilds(tmp_path, fake) -> None:
    folder = str(tmp_path / "chroma")
    store = MatryoshkaChroma("ccc", fake, persist_directory=folder)
    _fill(store)
    store.hybrid_search("ferritine", k=1)
    other = MatryoshkaChroma("ccc", fake, persist_directory=folder, lexical_analyzer=AnalyzerOptions(stem=False))
    other.hybrid_search("ferritine", k=1)
    assert other.lexical.rebuilds == 1 and other.lexical.index().signature != store.lexical.signature
    other.lexical.path.write_bytes(b"garbage")
    third = MatryoshkaChroma("ccc", fake, persist_directory=folder)
    assert third.hybrid_search("ferritine basse", k=1, lexical_weight=1.0)[0].id == "fer"
    assert third.lexical.rebuilds == 1


def test_dense_only_builds_nothing(tmp_path, fake) -> None:
    store = MatryoshkaChroma("ccc", fake, persist_directory=str(tmp_path / "chroma"))
    _fill(store)
    store.similarity_search("ferritine", k=2)
    assert not store.lexical.loaded and not store.lexical.path.exists()
    store.hybrid_search("ferritine", k=2)
    store.delete_collection()
    assert not store.lexical.path.exists()


def test_in_memory_and_explicit_path(tmp_path, fake) -> None:
    memory = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient())
    assert memory.lexical.path is None
    _fill(memory)
    assert memory.hybrid_search("TSH thyroïde", k=1, lexical_weight=1.0)[0].id == "tsh"
    memory.delete_collection()
    explicit = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient(),
                                lexical_path=str(tmp_path / "lex.npz"))
    _fill(explicit)
    explicit.hybrid_search("TSH", k=1)
    assert (tmp_path / "lex.npz").exists()
    explicit.delete_collection()


def test_dropping_an_embedded_store_frees_it_without_the_garbage_collector(fake, tmp_path) -> None:
    """The lexical index holds its store weakly: no reference cycle keeps a dropped store (and its
    folder lock) alive until the next garbage collection."""
    import gc
    import weakref

    store = MatryoshkaChroma("drop", fake, persist_directory=str(tmp_path / "db"))
    store.add_texts(list(PASSAGES.values()), ids=list(PASSAGES))
    assert store.hybrid_search("INR sous AVK", k=1, lexical_weight=1.0)[0].id == "avk"  # the index is built
    ref = weakref.ref(store)
    gc.disable()
    try:
        del store
        assert ref() is None
    finally:
        gc.enable()


_KILL_WORKER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from medrag import MatryoshkaChroma, MatryoshkaEmbeddings, load_model
from medrag.lexical.sidecar import LexicalSidecar
emb = MatryoshkaEmbeddings(load_model(sys.argv[2], device="cpu"), show_progress=False)
store = MatryoshkaChroma("kill", emb, persist_directory=sys.argv[1], candidates=10)
store.add_texts([f"Note de suivi {i} : examen clinique sans particularité." for i in range(40)],
                ids=[f"n{i}" for i in range(40)])
store.hybrid_search("ferritine", k=1)  # the lexical index is built and saved beside the store
def die(self, *args):
    print("chroma written", len(store), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(LexicalSidecar, sys.argv[4], die)  # the Chroma upsert has returned: die before the index's write
store.add_texts(["La lipasémie à trois fois la normale évoque une pancréatite aiguë."], ids=["lip"])
print("not killed", flush=True)
"""


@pytest.mark.integration
@pytest.mark.parametrize("hook", ["upserted", "write_done"])
def test_sigkill_between_chroma_and_index_write(tmp_path, tiny_model_dir, tiny_embeddings, hook) -> None:
    """A real process is SIGKILLed after Chroma stored a record and before the lexical index
    recorded it (in memory or on disk): the reopened store finds its saved index stale, rebuilds
    it, and the record is found by a lexical search; nothing stored is lost."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from chromadb.api.shared_system_client import SharedSystemClient

    folder = tmp_path / "chroma"
    worker = tmp_path / "worker.py"
    worker.write_text(_KILL_WORKER)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(worker), str(folder), str(tiny_model_dir), str(repo), hook],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert done.stdout.split() == ["chroma", "written", "41"]
    index_files = list((folder / "medrag-lexical").glob("*.npz"))
    assert len(index_files) == 1  # the index saved before the kill, one generation behind
    SharedSystemClient.clear_system_cache()  # a fresh client, as a new process would have
    store = MatryoshkaChroma("kill", tiny_embeddings, persist_directory=str(folder), candidates=10)
    assert len(store) == 41
    hits = store.hybrid_search("lipasémie pancréatite", k=1, lexical_weight=1.0)
    assert [d.id for d in hits] == ["lip"] and store.lexical.rebuilds == 1
    assert len(store.lexical.index()) == 41 and store.lexical.index().generation == store.write_generation
    store.close()


@pytest.mark.parametrize("fusion", ["minmax", "rrf"])
def test_lexical_weight_1_puts_every_match_before_the_non_matches(client, fake, fusion) -> None:  # noqa: F811
    """With min-max the weakest match ties a non-match at 0; the tie was broken by the dense order,
    here the non-match's first (the query's vector is its)."""

    class QueryLikeB(FakeMatryoshkaEmbeddings):
        def encode_queries(self, texts):
            return np.stack([self._vec("la créatinine sérique") for _ in texts])

        def embed_query(self, text):
            return self._vec("la créatinine sérique").tolist()

    s = MatryoshkaChroma(_name(), QueryLikeB(), client=client)
    s.add_texts(["les hémoglobines glyquées", "la créatinine sérique", "hemoglobine"], ids=["a", "b", "c"])
    assert [d.id for d in s.hybrid_search("hémoglobine", k=3, lexical_weight=1.0, fusion=fusion)] == ["c", "a", "b"]
    hits = s.search_with_stages("hémoglobine", k=3, hybrid=True, lexical_weight=1.0, fusion=fusion).hits
    assert [h.document.id for h in hits] == ["c", "a", "b"] and [h.lexical_rank for h in hits] == [1, 2, 0]
    s.delete_collection()
