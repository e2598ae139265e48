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

from .test_store import FakeMatryoshkaEmbeddings, _name, client  # noqa: F401 (client: a fixture)

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
    assert res.read_as == () and plain.read_as == ()
    typed = store.search_with_stages("troponnine infarctus", k=3, hybrid=True, lexical_weight=1.0)  # a typo
    assert typed.read_as == (("troponnine", "troponin"),) and typed.hits[0].document.id == "tropo"
    with pytest.raises(InvalidInputError):
        store.search_with_stages("troponine", lexical_weight=0.3)


def _dense_rank(store: MatryoshkaChroma, query: str, id_: str) -> int:
    # any w > 0: the union of both sides (w = 0 keeps the dense side only), ordered here by dense score
    found = store._hybrid(query, store._embed_query(query), 3, None, 3, None, 0.5, "rrf", None)
    order = sorted(found.ids, key=lambda i: -float(found.dense_scores[found.ids.index(i)]))
    return order.index(id_) + 1


def test_a_query_typed_with_caps_lock_finds_its_passage(store: MatryoshkaChroma) -> None:
    """'ANÉMIE' in capitals: a short word read as an acronym ('anemie') matched no passage's
    'anémie' ('anem'); the lexical side now reads it as a word (BM25Index.query_terms)."""
    assert store.hybrid_search("ANÉMIE", k=1, lexical_weight=1.0)[0].id == "fer"
    assert store.hybrid_search("CIBLE SOUS AVK", k=1, lexical_weight=1.0)[0].id == "avk"
    assert [d.id for d in store.as_retriever(search_type="hybrid", search_kwargs={"k": 1, "lexical_weight": 1.0})
            .invoke("ANÉMIE")] == ["fer"]


def test_retriever_hybrid(store: MatryoshkaChroma) -> None:
    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "lexical_weight": 1.0})
    assert isinstance(retriever, MatryoshkaRetriever)
    assert retriever.invoke("metformine diabète de type 2")[0].id == "metf"
    assert len(store.as_retriever(search_kwargs={"k": 3}).invoke("metformine")) == 3
    with pytest.raises(InvalidInputError, match="search_type must be one of"):  # not pydantic's ValidationError
        store.as_retriever(search_type="bm25")
    with pytest.raises(InvalidInputError, match="needs a number in search_kwargs"):
        store.as_retriever(search_type="similarity_score_threshold")
    assert store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.1})


async def test_retriever_hybrid_async(store: MatryoshkaChroma) -> None:
    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 1, "lexical_weight": 1.0})
    assert (await retriever.ainvoke("troponine"))[0].id == "tropo"


async def test_async_hybrid_search_matches_the_sync_one(store: MatryoshkaChroma) -> None:
    """The store had no ``ahybrid_search`` beside LangChain's ``asimilarity_search`` (December 5)."""
    args = dict(k=3, filter={"kind": "fiche"}, lexical_weight=0.5, fusion="minmax")
    sync = store.hybrid_search_with_score("INR sous AVK", **args)
    assert await store.ahybrid_search_with_score("INR sous AVK", **args) == sync
    assert [d.id for d in await store.ahybrid_search("INR sous AVK", **args)] == [d.id for d, _ in sync]
    assert [d.id for d in await store.asearch("INR sous AVK", "hybrid", **args)] == [d.id for d, _ in sync]
    with pytest.raises(InvalidInputError):  # the sync checks, raised to the awaiting caller
        await store.ahybrid_search("fer", lexical_weight=2)


def test_bad_arguments(store: MatryoshkaChroma, fake) -> None:
    for bad in (-0.1, 2, "0.3"):
        with pytest.raises(InvalidInputError):
            store.hybrid_search("fer", lexical_weight=bad)
    with pytest.raises(InvalidInputError):
        store.hybrid_search("fer", fusion="combsum")
    with pytest.raises(InvalidInputError):
        store.hybrid_search("fer", lexical_candidates=0)
    assert len(store.hybrid_search("fer", k=2, lexical_candidates=np.int64(3))) == 2  # numpy ints, as for k


def test_lexical_weight_0_is_exactly_the_dense_funnel(store: MatryoshkaChroma) -> None:
    """BM25's candidates joined the union at w = 0 and could outrank the dense ones on their full-size
    score (documents the coarse stage missed): "0 = dense only" was not (found in review)."""
    for query in ("INR sous AVK", "ferritine basse", "troponine infarctus", "note de suivi", "metformine"):
        dense = [d.id for d in store.similarity_search(query, k=10)]
        assert [d.id for d in store.hybrid_search(query, k=10, lexical_weight=0.0)] == dense, query
        staged = store.search_with_stages(query, k=10, hybrid=True, lexical_weight=0.0)
        assert all(h.coarse_rank > 0 for h in staged.hits)  # every hit came from stage 1
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


# -- reliability of the lexical index (user review, December 3) ---------------------------------


def test_a_search_inside_a_write_does_not_keep_a_stale_index(tmp_path, fake) -> None:
    """A hybrid search between another write's generation bump and its upsert rebuilt the index
    from the old records and kept it as fresh for the new generation: the new document stayed
    missing from hybrid search (also after reopening) until the next write."""
    folder = str(tmp_path / "chroma")
    writer = MatryoshkaChroma("ccc", fake, persist_directory=folder, candidates=10)
    _fill(writer)
    reader = MatryoshkaChroma("ccc", fake, persist_directory=folder, candidates=10)
    reader.hybrid_search("AVK", k=2)
    collection, upsert = writer._collection, writer._collection.upsert

    def upsert_with_a_search(*args, **kwargs):
        reader.hybrid_search("AVK", k=2)  # the generation is bumped, the record not yet written
        return upsert(*args, **kwargs)

    object.__setattr__(collection, "upsert", upsert_with_a_search)
    writer.add_texts(["Le dabigatran est un anticoagulant oral direct."], ids=["dabi"])
    object.__setattr__(collection, "upsert", upsert)
    assert reader.hybrid_search("dabigatran", k=1, lexical_weight=1.0)[0].id == "dabi"
    assert "dabi" in reader.lexical.index() and reader.lexical.index().generation == writer.write_generation
    generation, committed = writer.generation_state()
    assert generation == committed


def test_another_clients_write_in_flight_is_not_taken_for_committed(client, fake, monkeypatch,  # noqa: F811
                                                                     caplog) -> None:
    """A Chroma server's other client: bumped, not committed. The rebuilt index serves the search
    but is not kept; once the gap has lasted SETTLE_SECONDS it is taken for a client that died.
    An embedded folder's only writer knows at once that the write died: it says so as a warning (an
    INFO line before: user tryout, a SIGKILL mid-write) and once (the write is then settled)."""
    import medrag.lexical.sidecar as sidecar
    from medrag.store import COMMITTED_KEY, GENERATION_KEY

    name = _name()
    store = MatryoshkaChroma(name, fake, client=client, candidates=10)
    _fill(store)
    store.hybrid_search("ferritine", k=1)
    meta = dict(store.collection.metadata)
    meta[GENERATION_KEY] += 1  # what another client's bump leaves until its upsert and commit land
    store.collection.modify(metadata=meta)
    rebuilds = store.lexical.rebuilds
    with caplog.at_level("WARNING", logger="medrag.lexical.sidecar"):
        assert store.hybrid_search("ferritine basse", k=1, lexical_weight=1.0)[0].id == "fer"
        store.hybrid_search("ferritine basse", k=1)
    if store._lock is not None:  # an embedded folder's only writer knows no write is in flight: a client died
        assert store.lexical.rebuilds == rebuilds + 1 and store.lexical.index().generation == meta[GENERATION_KEY]
        assert caplog.text.count(f"write {meta[GENERATION_KEY]} never finished") == 1
        assert "run that write again (the same medrag index command, or your own add or delete)" in caplog.text
        assert store.generation_state() == (meta[GENERATION_KEY],) * 2  # settled: the next opening says nothing
        store.lexical._index = None
        caplog.clear()
        with caplog.at_level("WARNING", logger="medrag.lexical.sidecar"):
            store.hybrid_search("ferritine", k=1)
        assert "never finished" not in caplog.text
        return
    assert "never finished" not in caplog.text  # another client's write may be in flight
    assert store.lexical.rebuilds == rebuilds + 2  # rebuilt for each search, never kept
    monkeypatch.setattr(sidecar, "SETTLE_SECONDS", 0.0)
    store.hybrid_search("ferritine", k=1)
    assert store.lexical.loaded and store.lexical.index().generation == meta[GENERATION_KEY]
    assert store.collection.metadata[COMMITTED_KEY] == meta[GENERATION_KEY] - 1
    store.delete_collection()


def test_a_selective_filter_misses_no_lexical_match(tmp_path, fake) -> None:
    """The BM25 side filtered only the 4 x lexical_candidates best documents of the whole collection:
    one document of a service, outscored by 60 of another, was missed even at lexical_weight=1."""
    store = MatryoshkaChroma("ccc", fake, persist_directory=str(tmp_path / "chroma"), candidates=10)
    cardio = [f"Warfarine : fiche {i} du service de cardiologie, warfarine et INR." for i in range(60)]
    endoc = [f"Compte rendu {i} du service d'endocrinologie, équilibre glycémique stable." for i in range(60)]
    target = ("Compte rendu du service d'endocrinologie : patient sous warfarine depuis 2019, glycémie et "
              "HbA1c suivies, pas d'autre traitement.")
    store.add_texts(cardio + endoc + [target], [{"svc": "cardio"}] * 60 + [{"svc": "endoc"}] * 61,
                    ids=[f"c{i}" for i in range(60)] + [f"e{i}" for i in range(60)] + ["target"])
    for where in ({"filter": {"svc": "endoc"}}, {"where_document": {"$contains": "endocrinologie"}}):
        assert store.hybrid_search("warfarine", k=3, lexical_weight=1.0, **where)[0].id == "target"


def test_a_damaged_index_file_is_rebuilt(tmp_path, fake) -> None:
    """A flipped byte, a truncated or an empty file raised zipfile/EOF errors on every hybrid search,
    even after later writes, until the file was deleted by hand."""
    folder = str(tmp_path / "chroma")
    store = MatryoshkaChroma("ccc", fake, persist_directory=folder)
    _fill(store)
    store.hybrid_search("ferritine", k=1)
    path = store.lexical.path
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for damaged in (bytes(flipped), good[: len(good) // 2], b""):
        path.write_bytes(damaged)
        reopened = MatryoshkaChroma("ccc", fake, persist_directory=folder)
        assert reopened.hybrid_search("ferritine basse", k=1, lexical_weight=1.0)[0].id == "fer"
        assert reopened.lexical.rebuilds == 1
        del reopened


def test_an_index_at_lexical_path_belongs_to_its_collection(tmp_path, fake) -> None:
    """A collection dropped and re-created by another job counts its generation from 0 again: the old
    file at lexical_path had the same generation and was trusted (BM25 of documents that are gone)."""
    local = chromadb.EphemeralClient()
    path = str(tmp_path / "bm25.npz")
    name = _name()
    app = MatryoshkaChroma(name, fake, client=local, lexical_path=path, candidates=10)
    app.add_texts(["La warfarine est un AVK ; surveiller l'INR."], ids=["old1"])
    app.hybrid_search("warfarine", k=1)
    del app
    local.delete_collection(name)
    job = MatryoshkaChroma(name, fake, client=local, candidates=10)
    job.add_texts(["L'apixaban est un anticoagulant oral direct."], ids=["new1"])
    del job
    app = MatryoshkaChroma(name, fake, client=local, lexical_path=path, candidates=10)
    assert app.lexical.index().ids == ["new1"] and app.lexical.rebuilds == 1


def test_writes_that_change_nothing_leave_the_index_and_generation_alone(tmp_path, fake) -> None:
    store = MatryoshkaChroma("ccc", fake, persist_directory=str(tmp_path / "chroma"), deterministic_ids=True)
    texts = [f"Texte {i} sur la warfarine et l'INR." for i in range(30)]
    store.add_texts(texts)
    store.hybrid_search("warfarine", k=1)
    before = (store.lexical.path.stat().st_mtime_ns, store.write_generation)
    store.add_texts(texts)  # every text already stored: skipped
    store.delete(["does-not-exist"])
    assert (store.lexical.path.stat().st_mtime_ns, store.write_generation) == before


def test_the_index_file_is_readable_by_the_folders_other_users(tmp_path, fake) -> None:
    """mkstemp made it 0600 whatever the umask: another user of the app rebuilt it on every start."""
    import os
    import stat

    mask = os.umask(0o022)
    try:
        store = MatryoshkaChroma("ccc", fake, persist_directory=str(tmp_path / "chroma"))
        _fill(store)
        store.hybrid_search("ferritine", k=1)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(store.lexical.path.stat().st_mode) == 0o644


def test_deleting_more_ids_than_sqlite_takes_in_one_query(fake) -> None:
    """The existence lookup before a delete was one get of every id: 40,000 ids exceeded SQLite's limit."""
    store = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient())
    _fill(store)
    assert store.delete(["fer"] + [f"absent{i}" for i in range(40_000)]) is True
    assert "fer" not in {d.id for d in store.get_by_ids(["fer", "tsh"])} and len(store.get_by_ids(["tsh"])) == 1
    store.delete_collection()


def test_a_filtered_hybrid_search_reads_its_lexical_candidates_in_batches(store: MatryoshkaChroma,
                                                                          monkeypatch) -> None:
    """One get of every over-fetched lexical candidate: with candidates=9000 and a filter on a store of
    34,000 records, Chroma raised "too many SQL variables" (audit). Here the batch size is made tiny."""
    monkeypatch.setattr(store.client, "get_max_batch_size", lambda: 7)
    real_get = store.collection.get
    sizes = []

    def get(ids=None, **kwargs):
        sizes.append(len(ids) if ids is not None else 0)
        return real_get(ids=ids, **kwargs)

    monkeypatch.setattr(store.collection, "get", get)
    hits = store.hybrid_search("patient consultation examen", k=3, filter={"kind": "note"}, lexical_candidates=30,
                               lexical_weight=1.0)
    assert len(hits) == 3 and all(h.metadata["kind"] == "note" for h in hits)
    assert max(sizes) <= 7 and sum(s for s in sizes) >= 30


def test_a_lexical_path_that_is_not_an_index_is_refused_before_anything_is_written(tmp_path, fake) -> None:
    """lexical_path= on a user's file, or on the store's own chroma.sqlite3, replaced it with the index
    (every collection of the folder lost); a folder failed at each hybrid search only (audit)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my clinical notes\n")
    store = MatryoshkaChroma(_name(), fake, persist_directory=str(tmp_path / "db"))
    store.add_texts(["Sous AVK, l'INR cible est entre 2 et 3."], ids=["avk"])
    for bad, expected in ((notes, "exists and is not a medrag lexical index"),
                          (tmp_path / "db" / "chroma.sqlite3", "exists and is not a medrag lexical index"),
                          (tmp_path, "is a folder")):
        with pytest.raises(InvalidInputError, match=expected):
            MatryoshkaChroma(_name(), fake, persist_directory=str(tmp_path / "db"), lexical_path=str(bad))
    assert notes.read_text() == "my clinical notes\n"
    assert store.hybrid_search("INR", k=1)[0].id == "avk"  # the database is whole
    index = tmp_path / "lex.npz"  # an index file of an earlier run is replaced, as before
    first = MatryoshkaChroma(_name(), fake, persist_directory=str(tmp_path / "db"), lexical_path=str(index))
    first.add_texts(["La TSH explore la thyroïde."], ids=["tsh"])
    first.hybrid_search("TSH", k=1)
    again = MatryoshkaChroma(first.collection.name, fake, persist_directory=str(tmp_path / "db"), lexical_path=str(index))
    assert again.hybrid_search("TSH", k=1)[0].id == "tsh"
    index.write_bytes(index.read_bytes()[:40])  # a damaged index (truncated) is rebuilt, not refused
    damaged = MatryoshkaChroma(first.collection.name, fake, persist_directory=str(tmp_path / "db"),
                               lexical_path=str(index))
    assert damaged.hybrid_search("TSH", k=1)[0].id == "tsh"


@pytest.mark.parametrize("search_kwargs, expected", [
    ({"lexical_weight": 2}, "lexical_weight"),
    ({"lexical_wieght": 0.3}, r"\['lexical_wieght'\] are not arguments of hybrid_search"),
    ({"score_threshold": 0.5}, "a score threshold needs search_type='similarity_score_threshold'"),
    ({"fusion": "combsum"}, "unknown fusion 'combsum'"),
    ({"k": 0}, r"search_kwargs\['k'\] must be >= 1"),
    ({"candidates": "100"}, r"search_kwargs\['candidates'\] must be an int"),
    ({"filter": "kind=note"}, r"search_kwargs\['filter'\] must be a dict"),
    # built without complaint, failed at the first query (audit): k 4 is hybrid_search's default
    ({"candidates": 2}, r"search_kwargs\['candidates'\] \(2\) must be >= search_kwargs\['k'\] \(4\)"),
    ({"k": 2, "candidates": 1}, r"search_kwargs\['candidates'\] \(1\) must be >= search_kwargs\['k'\] \(2\)"),
    # k None failed at the first query ("k must be an int, got None"): refused when built (audit)
    ({"k": None, "candidates": 2}, r"search_kwargs\['k'\] is None; give a value, or leave it out"),
])
def test_a_hybrid_retriever_checks_its_search_kwargs_when_built(store: MatryoshkaChroma, search_kwargs, expected):
    """A misspelled or out-of-range hybrid search_kwargs built a retriever that failed at its first
    query, in production (audit); the threshold retriever already checked its threshold when built."""
    with pytest.raises(InvalidInputError, match=expected):
        store.as_retriever(search_type="hybrid", search_kwargs=search_kwargs)
    ok = store.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "lexical_weight": 0.5, "fusion": "rrf",
                                                                "filter": {"kind": "fiche"}})
    assert [d.metadata["kind"] for d in ok.invoke("TSH thyroïde")] == ["fiche", "fiche"]


def test_a_write_that_collided_with_another_clients_is_not_lost_by_the_index(client, fake) -> None:  # noqa: F811
    """Chroma has no compare-and-set: two clients writing at one instant both bumped the generation to
    g + 1, and the one that updated its index in place labelled it g + 1 without the other's record,
    fresh-looking for good (server audit: 22 records, an index of 21). The record count now tells."""
    from medrag._chroma_client import _persist_directory
    from medrag.store import COMMITTED_KEY, GENERATION_KEY

    if _persist_directory(client) is not None:  # the folder's only writer process never collides: in memory
        client = chromadb.EphemeralClient()
    name = _name()
    a = MatryoshkaChroma(name, fake, client=client, candidates=10)
    _fill(a)
    a.hybrid_search("ferritine", k=1)  # a's index, fresh for generation g
    g = a.write_generation
    b = MatryoshkaChroma(name, fake, client=client, candidates=10)
    b.add_texts(["Une omphalocèle géante a été opérée à la naissance."], ids=["rare"])
    meta = dict(a.collection.metadata)
    meta[GENERATION_KEY] = meta[COMMITTED_KEY] = g  # a's bump read g before b's landed, and wrote g + 1 over it
    a.collection.modify(metadata=meta)
    a.add_texts(["Note de sortie : retour à domicile."], ids=["sortie"])  # in place: a's index is labelled g + 1
    assert a.write_generation == g + 1
    top = a.hybrid_search_with_score("omphalocèle géante", k=1, lexical_weight=1.0)
    assert top[0][0].id == "rare" and top[0][1] > 0
    assert len(a.lexical.index()) == len(a)
    a.delete_collection()


def test_a_server_lost_during_a_rebuild_is_a_store_error(store: MatryoshkaChroma, monkeypatch) -> None:
    """The lexical rebuild read the records without the store's error translation: a lost server was a raw
    httpx.ConnectError, a collection dropped by another client chromadb's NotFoundError (server audit)."""
    from chromadb.api.models.Collection import Collection
    from chromadb.errors import NotFoundError

    from medrag.errors import CollectionMismatchError, StoreConnectionError

    for error, expected in ((ConnectionError("[Errno 111] Connection refused"), StoreConnectionError),
                            (NotFoundError("Collection does not exist"), CollectionMismatchError)):
        def fail(self, *args, _error=error, **kwargs):
            raise _error

        monkeypatch.setattr(Collection, "get", fail)
        with pytest.raises(expected, match="read the records for the lexical index"):
            store.lexical.rebuild()
        monkeypatch.undo()


def test_the_record_count_is_read_only_where_a_collision_can_happen(tmp_path, fake, monkeypatch) -> None:
    """The count check costs a count() per hybrid search: not for the folder's only writer, and elsewhere
    only for SETTLE_SECONDS after the store's own in-place update."""
    import time

    from chromadb.api.models.Collection import Collection

    counts = []
    real_count = Collection.count
    monkeypatch.setattr(Collection, "count", lambda self: counts.append(1) or real_count(self))
    owner = MatryoshkaChroma(_name(), fake, persist_directory=str(tmp_path / "db"), candidates=10)
    _fill(owner)
    owner.hybrid_search("ferritine", k=1)
    owner.add_texts(["Note de sortie."], ids=["sortie"])
    counts.clear()
    for _ in range(3):
        owner.hybrid_search("ferritine", k=1)
    assert counts == []
    shared = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient(), candidates=10)
    _fill(shared)
    shared.hybrid_search("ferritine", k=1)
    shared.add_texts(["Note de sortie."], ids=["sortie"])
    counts.clear()
    shared.hybrid_search("ferritine", k=1)
    assert len(counts) == 1
    shared.lexical._verify_until = time.monotonic() - 1  # SETTLE_SECONDS have passed
    counts.clear()
    shared.hybrid_search("ferritine", k=1)
    assert counts == []


def test_auto_weight_is_chosen_per_query(client, fake) -> None:  # noqa: F811
    """``lexical_weight="auto"``: a query whose best BM25 match holds all its terms gets a higher
    weight than one whose terms no passage holds together; the weight fused is reported."""
    from medrag.lexical.fusion import AUTO_WEIGHT_RANGE

    store = MatryoshkaChroma(_name(), fake, client=client, candidates=10, lexical_weight="auto")
    try:
        _fill(store)
        assert store.lexical_weight == "auto"
        exact = store.search_with_stages("troponine infarctus myocarde", k=3, hybrid=True)
        partial = store.search_with_stages("troponine et ferritine", k=3, hybrid=True)
        none = store.search_with_stages("zzz", k=3, hybrid=True)
        low, high = AUTO_WEIGHT_RANGE
        assert low < partial.lexical_weight < exact.lexical_weight < high and none.lexical_weight == low
        # the weight fused is the reported one: the same ranking as that fixed weight
        fixed = store.hybrid_search("troponine infarctus myocarde", k=5, lexical_weight=exact.lexical_weight)
        auto = store.hybrid_search("troponine infarctus myocarde", k=5)
        assert [d.id for d in auto] == [d.id for d in fixed]
        assert store.search_with_stages("troponine", k=3, hybrid=True, lexical_weight=0.3).lexical_weight == 0.3
        assert store.search_with_stages("troponine", k=3).lexical_weight is None  # dense: no fusion
        retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "lexical_weight": "auto"})
        assert len(retriever.invoke("troponine infarctus")) == 2
    finally:
        store.delete_collection()


@pytest.mark.parametrize("bad", ["high", "0.2", "automatic"])
def test_bad_lexical_weight_strings_are_refused(store: MatryoshkaChroma, fake, bad) -> None:
    with pytest.raises(InvalidInputError, match="'auto'"):
        store.hybrid_search("troponine", k=2, lexical_weight=bad)
    with pytest.raises(InvalidInputError, match="'auto'"):
        store.as_retriever(search_type="hybrid", search_kwargs={"lexical_weight": bad})
    with pytest.raises(InvalidInputError, match="'auto'"):
        MatryoshkaChroma(_name(), fake, lexical_weight=bad)


def test_typo_tolerance_is_the_stores_setting_and_toggling_it_rebuilds_nothing(tmp_path, fake) -> None:
    folder = str(tmp_path / "chroma")
    store = MatryoshkaChroma("ccc", fake, persist_directory=folder)
    _fill(store)
    assert store.hybrid_search("ferritinne basse", k=1, lexical_weight=1.0)[0].id == "fer"  # a typo
    strict = MatryoshkaChroma("ccc", fake, persist_directory=folder,
                              lexical_analyzer=AnalyzerOptions(typo_tolerance=False))
    assert strict.lexical.index().query_terms("ferritinne basse") == ["bass"] and strict.lexical.rebuilds == 0
    assert strict.lexical.index().analyzer.options.typo_tolerance is False  # what it reports is what it does
    again = MatryoshkaChroma("ccc", fake, persist_directory=folder)
    assert again.lexical.index().query_terms("ferritinne") == ["ferritin"] and again.lexical.rebuilds == 0


def test_the_auto_weight_of_a_query_each_passage_term_matches_once(fake) -> None:
    """README: a passage holding each query term once, at an average length, gives "auto" about 0.29
    (BM25's saturation at tf 1: 1 / (1 + k1) of each term's bound, k1 = 1.2), and repeated terms in a
    short passage move it towards 0.4; a query no passage matches stays at 0.2. "AUTO" is "auto"."""
    words = ["ferritine", "transferrine", "hepcidine", "haptoglobine", "bilirubine", "reticulocytes",
             "erythropoietine", "folates", "cobalamine", "myelogramme", "hemolyse", "carence"]
    texts = [" ".join(words[i:] + words[:i]).replace(words[i], f"{words[i]}x{i}") for i in range(len(words))]
    store = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient(), coarse_rotation="none")
    store.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))])
    once = store.search_with_stages("ferritinex0 transferrine", k=1, hybrid=True).lexical_weight
    assert once == pytest.approx(0.2 + 0.2 / 2.2, abs=0.01)
    store.add_texts(["ferritinex0 ferritinex0 ferritinex0 ferritinex0"], ids=["short"])
    assert store.search_with_stages("ferritinex0", k=1, hybrid=True, lexical_weight="AUTO").lexical_weight > 0.35
    assert store.search_with_stages("scintigraphie", k=1, hybrid=True).lexical_weight == pytest.approx(0.2)
    store.delete_collection()


def test_an_identifier_lookup_ranks_the_passages_holding_its_codes_first(fake) -> None:
    """The one passage holding a CIP code ranked 4th of 4 with the default "auto" weight (user tryout): a
    code's BM25 confidence is its saturation (about 0.45), so the weight stayed near 0.3 and min-max
    fusion put the passages the dense side liked first. A query made mostly of codes is a lookup: the
    passages holding all its codes come first; a fixed weight is left as the caller chose it."""
    store = MatryoshkaChroma(_name(), fake, client=chromadb.EphemeralClient(), coarse_rotation="none", candidates=10)
    try:
        _fill(store)
        store.add_texts(["Levothyrox 50 microgrammes, comprimé sécable, code CIP 3400936379848.",
                         "Kardegic 75 mg, poudre pour solution buvable, code CIP 3400934998331.",
                         "Le lot 4A21B du vaccin a été rappelé."], ids=["cip", "cip2", "lot"])
        for query, holder in (("3400936379848", "cip"), ("CIP 3400934998331", "cip2"), ("lot 4A21B", "lot")):
            found = store.search_with_stages(query, k=5, hybrid=True)
            assert found.hits[0].document.id == holder and found.lookup == 1, (query, found)
            if holder != "lot":  # the weight alone did not (this fake's vectors: the tryout's case)
                assert store.hybrid_search(query, k=5, lexical_weight=found.lexical_weight)[0].id != holder
        sentence = store.search_with_stages("la metformine du diabète de type 2 et le code 3400936379848", k=3,
                                            hybrid=True)
        assert sentence.lookup == 0  # codes are under half of its terms: no lookup
        assert store.search_with_stages("3400936379848", k=3, hybrid=True, lexical_weight=0.2).lookup == 0
        assert store.search_with_stages("3400000000000", k=3, hybrid=True).lookup == 0  # no passage holds it
        scored = store.hybrid_search_with_score("3400936379848", k=3)
        assert scored[0][0].id == "cip"
    finally:
        store.delete_collection()


def _terms_on_disk(store: MatryoshkaChroma) -> set[str]:
    """The terms of the lexical index file, read as a stranger would (np.load of its vocabulary)."""
    from medrag.lexical.bm25 import _unpack_strings

    with np.load(store.lexical.path, allow_pickle=False) as data:
        return set(_unpack_strings(data["vocab"], data["vocab_ends"], store.lexical.path))


SECRET = "Patient Zorbulinek, NIP 7734219881, suivi pour une sérologie positive."


@pytest.mark.parametrize("loaded", [True, False], ids=["index-loaded", "index-not-loaded"])
def test_an_erased_record_leaves_no_term_in_the_lexical_index_file(tmp_path, fake, loaded) -> None:
    """Right to erasure (user tryout): after delete(), the index file on disk kept the erased text's
    terms, with a zero count when this process's index was loaded (its vocabulary was saved whole),
    and the whole old index when it was not (the file is rebuilt only at the next hybrid search)."""
    path = str(tmp_path / "db")
    store = MatryoshkaChroma("notes", fake, persist_directory=path)
    _fill(store)
    store.add_texts([SECRET], [{"patient_id": "P42"}], ids=["p42"])
    store.hybrid_search("ferritine", k=2)  # builds and saves the index file
    assert {"zorbulinek", "7734219881"} <= _terms_on_disk(store)
    if not loaded:  # another process (a nightly erasure job) that never runs a hybrid search
        store.close()
        del store
        store = MatryoshkaChroma("notes", fake, persist_directory=path)
        assert not store.lexical.loaded
    store.delete(where={"patient_id": "P42"})
    if store.lexical.path.exists():
        terms = _terms_on_disk(store)
        assert not {"zorbulinek", "7734219881"} & terms
        assert {"ferritin", "troponin"} <= terms  # the other records' terms are all there
    assert [d.id for d in store.hybrid_search("Zorbulinek 7734219881", k=3, lexical_weight=1.0)
            if d.id == "p42"] == []
    assert store.hybrid_search("ferritine basse", k=1, lexical_weight=1.0)[0].id == "fer"
    assert not {"zorbulinek", "7734219881"} & _terms_on_disk(store)  # the file the search saved
    store.close()


def test_a_slow_save_never_writes_an_erased_text_back_over_the_delete(tmp_path, fake, monkeypatch) -> None:
    """A thread's lexical index save, slow on a busy disk, took its snapshot before another thread's
    delete and replaced the file that delete had written after it returned: the erased text's terms
    were back on disk (user tryout; the disk's slowness stood in for by a slow fsync)."""
    import os
    import threading
    import time

    import medrag.lexical.bm25 as bm25

    store = MatryoshkaChroma("notes", fake, persist_directory=str(tmp_path / "db"))
    _fill(store)
    store.add_texts([SECRET], [{"patient_id": "P42"}], ids=["p42"])
    store.hybrid_search("ferritine", k=2)  # the index is loaded: writes update it and save the file
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if threading.current_thread().name == "slow":
            time.sleep(1.0)
        real_fsync(fd)

    monkeypatch.setattr(bm25.os, "fsync", slow_fsync)
    erased = threading.Event()

    def erase() -> None:
        time.sleep(0.3)  # the slow save has taken its snapshot, which holds the secret
        store.delete(where={"patient_id": "P42"})
        erased.set()

    slow = threading.Thread(target=store.add_texts, args=(["Note de routine : paracétamol 1 g."],),
                            kwargs={"ids": ["r1"]}, name="slow")
    other = threading.Thread(target=erase)
    slow.start(), other.start()
    slow.join(), other.join()
    assert erased.is_set()
    assert not {"zorbulinek", "7734219881"} & _terms_on_disk(store)
    assert "paracetamol" in _terms_on_disk(store)  # the slow write's text is there
    store.close()


def test_a_slow_save_by_another_store_object_on_the_folder_lands_before_the_delete(tmp_path, fake,
                                                                                   monkeypatch) -> None:
    """Two store objects of one process on one folder each had their own save lock: one's slow save
    landed after the other's delete had returned, and the erased text's terms were on disk (review)."""
    import threading
    import time

    import medrag.lexical.bm25 as bm25

    path = str(tmp_path / "db")
    first = MatryoshkaChroma("notes", fake, persist_directory=path)
    _fill(first)
    second = MatryoshkaChroma("notes", fake, persist_directory=path)
    first.hybrid_search("ferritine", k=1), second.hybrid_search("ferritine", k=1)  # both indexes loaded
    real = bm25.remove_stale_temporaries

    def slow_disk(*args, **kwargs):  # BM25Index.save calls it after its snapshot, before it writes
        if threading.current_thread().name == "slow":
            time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(bm25, "remove_stale_temporaries", slow_disk)
    writer = threading.Thread(target=first.add_texts, args=([SECRET],), kwargs={"ids": ["p42"]}, name="slow")
    writer.start()
    time.sleep(0.3)
    second.delete(["p42"])
    writer.join()
    assert not first.lexical.path.exists() or not {"zorbulinek", "7734219881"} & _terms_on_disk(first)
    first.close(), second.close()
