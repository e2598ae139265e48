"""MatryoshkaChroma.search_with_stages: the per-stage view of a funnel search."""

import chromadb
import numpy as np
import pytest

from medrag import MatryoshkaChroma

TEXTS = [f"Patient {i} : glycémie à jeun {i / 10:.1f} g/L, créatinine {i} µmol/L." for i in range(60)]


@pytest.fixture()
def store(tiny_embeddings):
    s = MatryoshkaChroma("stages-test", embedding_function=tiny_embeddings, client=chromadb.EphemeralClient())
    s.add_texts(TEXTS, ids=[f"t{i}" for i in range(len(TEXTS))])
    yield s
    s.delete_collection()


def test_hits_match_similarity_search(store):
    result = store.search_with_stages("glycémie à jeun élevée", k=5, candidates=20)
    plain = store.similarity_search_with_score("glycémie à jeun élevée", k=5, candidates=20)
    assert [h.document.id for h in result.hits] == [d.id for d, _ in plain]
    np.testing.assert_allclose([h.score for h in result.hits], [1 - dist for _, dist in plain], atol=1e-6)
    assert result.candidates == 20
    assert all(1 <= h.coarse_rank <= 20 for h in result.hits)
    assert all(-1.0 <= h.coarse_score <= 1.0 for h in result.hits)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert set(result.timings) == {"embed_ms", "coarse_ms", "rerank_ms", "fetch_ms"}
    assert all(v >= 0 for v in result.timings.values())


def test_coarse_scores_are_the_coarse_cosines(store, tiny_embeddings):
    from medrag import truncate_embeddings

    result = store.search_with_stages("créatinine", k=3, candidates=10)
    q = truncate_embeddings(tiny_embeddings.encode_queries(["créatinine"]), 64)[0]
    for hit in result.hits:
        d = truncate_embeddings(tiny_embeddings.encode_documents([hit.document.page_content]), 64)[0]
        assert abs(float(q @ d) - hit.coarse_score) < 1e-3


def test_filters_and_bad_k(store):
    assert [h.document.id for h in store.search_with_stages("glycémie", k=2, filter={"missing": "x"}).hits] == []
    with pytest.raises(ValueError):
        store.search_with_stages("glycémie", k=0)
