"""The encoder interface (medrag.encoder), the one encode function (medrag.encoding) and
PrecomputedEmbeddings (medrag.precomputed)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from finetune.scoring import encode as scoring_encode
from medrag import MatryoshkaChroma, PrecomputedEmbeddings
from medrag.encoder import MatryoshkaEncoder, is_encoder
from medrag.encoding import encode_texts
from medrag.errors import CollectionMismatchError, DimensionError, InvalidInputError
from tests.tiny_model import SENTENCES

TEXTS = list(dict.fromkeys(SENTENCES))[:6]


# ---------------------------------------------------------------------------- the protocol


def test_both_embeddings_classes_are_encoders(tiny_embeddings):
    pre = PrecomputedEmbeddings(documents={"a": np.ones(4)}, spec="toy", fingerprint="f")
    for enc in (tiny_embeddings, pre):
        assert is_encoder(enc) and isinstance(enc, MatryoshkaEncoder)


def test_is_encoder_looks_members_up_without_evaluating_them():
    class Lazy:
        spec, full_dim = "lazy", 8

        @property
        def fingerprint(self):
            raise AssertionError("fingerprint evaluated")

        def encode_queries(self, texts):
            return np.zeros((len(texts), 8), np.float32)

        encode_documents = encode_queries

    assert is_encoder(Lazy())
    assert not is_encoder(object())
    no_identity = type("NoIdentity", (), {"full_dim": 8, "encode_queries": Lazy.encode_queries,
                                          "encode_documents": Lazy.encode_queries})()
    assert not is_encoder(no_identity)


# ---------------------------------------------------------------------------- one encode function


def test_encode_texts_is_the_models_normalised_output(tiny_model):
    vecs = encode_texts(tiny_model, TEXTS, prompt_name="passage")
    expected = tiny_model.encode(["passage: " + t for t in TEXTS], normalize_embeddings=True)
    assert vecs.dtype == np.float32 and vecs.shape == (len(TEXTS), 128)
    np.testing.assert_allclose(vecs, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(encode_texts(tiny_model, TEXTS, prompt="passage: "), vecs, atol=1e-6)
    assert encode_texts(tiny_model, []).shape == (0, 128)


def test_embeddings_and_training_scores_encode_alike(tiny_model, tiny_embeddings):
    # MatryoshkaEmbeddings (store, evaluation) and finetune.scoring (training scores) share encode_texts
    np.testing.assert_allclose(tiny_embeddings.encode_documents(TEXTS), scoring_encode(tiny_model, TEXTS, "passage: "),
                               atol=1e-6)
    np.testing.assert_allclose(tiny_embeddings.encode_queries(TEXTS), scoring_encode(tiny_model, TEXTS, "query: "),
                               atol=1e-6)


# ---------------------------------------------------------------------------- PrecomputedEmbeddings


def test_precomputed_returns_the_given_vectors_per_side():
    d, q = np.arange(4, dtype=np.float64), -np.arange(4, dtype=np.float64)
    emb = PrecomputedEmbeddings(documents={"x": d}, queries={"x": q}, spec="m", fingerprint="f")
    np.testing.assert_array_equal(emb.encode_documents(["x", "x"]), np.stack([d, d]).astype(np.float32))
    np.testing.assert_array_equal(emb.encode_queries(["x"]), q[None].astype(np.float32))
    assert emb.encode_documents([]).shape == (0, 4)
    assert (emb.spec, emb.fingerprint, emb.full_dim) == ("m", "f", 4)
    assert emb.dims[0] == 4 and len(emb.embed_query("x")) == 4


def test_precomputed_unknown_text_without_fallback_says_what_to_do():
    emb = PrecomputedEmbeddings(documents={"x": np.ones(4)}, spec="m", fingerprint="f")
    with pytest.raises(InvalidInputError, match="fallback="):
        emb.encode_documents(["x", "y"])
    with pytest.raises(InvalidInputError, match="fallback="):
        emb.encode_queries(["x"])  # a document vector is not a query vector


def test_precomputed_says_whether_its_model_is_matryoshka_trained(tiny_embeddings):
    """Stated, else the fallback's, else False; a numpy bool (e.g. read from an array) counts as a
    bool; anything else but None is refused."""
    vectors = {"x": np.ones(4)}
    assert PrecomputedEmbeddings(vectors, spec="m", fingerprint="f").matryoshka_trained is False
    assert PrecomputedEmbeddings(vectors, spec="m", fingerprint="f", matryoshka_trained=True).matryoshka_trained
    assert PrecomputedEmbeddings(fallback=tiny_embeddings).matryoshka_trained is False  # no matryoshka.json
    trained = tiny_embeddings.with_dimension(tiny_embeddings.dimension)  # a copy: the fixture is shared
    trained.matryoshka_trained = True
    assert PrecomputedEmbeddings(fallback=trained).matryoshka_trained is True
    assert PrecomputedEmbeddings(fallback=trained, matryoshka_trained=False).matryoshka_trained is False
    from_numpy = PrecomputedEmbeddings(vectors, spec="m", fingerprint="f", matryoshka_trained=np.bool_(True))
    assert from_numpy.matryoshka_trained is True  # a plain bool afterwards
    with pytest.raises(InvalidInputError, match="matryoshka_trained"):
        PrecomputedEmbeddings.from_arrays(["x"], np.ones((1, 4)), spec="m", fingerprint="f", matryoshka_trained="yes")
    with pytest.raises(InvalidInputError, match="matryoshka_trained"):
        PrecomputedEmbeddings(vectors, spec="m", fingerprint="f", matryoshka_trained=1)


def test_precomputed_fallback_encodes_only_the_unknown_texts(tiny_embeddings):
    full = tiny_embeddings.encode_documents(TEXTS)
    calls = []

    class Spy:
        spec, full_dim, dims = tiny_embeddings.spec, tiny_embeddings.full_dim, tiny_embeddings.dims
        fingerprint = tiny_embeddings.fingerprint

        def encode_documents(self, texts):
            calls.append(list(texts))
            return tiny_embeddings.encode_documents(texts)

        encode_queries = encode_documents

    emb = PrecomputedEmbeddings(documents=dict(zip(TEXTS[:3], full[:3])), fallback=Spy())
    out = emb.encode_documents(TEXTS)
    np.testing.assert_allclose(out, full, atol=1e-6)
    assert calls == [TEXTS[3:]]
    assert (emb.spec, emb.fingerprint, emb.dims) == (tiny_embeddings.spec, tiny_embeddings.fingerprint,
                                                     tiny_embeddings.dims)


def test_precomputed_rejects_inconsistent_inputs(tiny_embeddings):
    with pytest.raises(InvalidInputError, match="spec= and fingerprint="):
        PrecomputedEmbeddings(documents={"x": np.ones(4)})
    with pytest.raises(InvalidInputError):
        PrecomputedEmbeddings(spec="m", fingerprint="f")
    with pytest.raises(DimensionError):
        PrecomputedEmbeddings(documents={"x": np.ones(4), "y": np.ones(3)}, spec="m", fingerprint="f")
    with pytest.raises(DimensionError):
        PrecomputedEmbeddings(documents={"x": np.ones(4)}, fallback=tiny_embeddings)
    with pytest.raises(InvalidInputError, match="NaN"):
        PrecomputedEmbeddings(documents={"x": np.array([1.0, np.nan])}, spec="m", fingerprint="f")


def test_a_store_built_from_precomputed_vectors_serves_the_model(tiny_embeddings):
    import chromadb

    client = chromadb.EphemeralClient()
    name = "t" + uuid.uuid4().hex[:12]
    vecs = tiny_embeddings.encode_documents(TEXTS)
    pre = PrecomputedEmbeddings(documents=dict(zip(TEXTS, vecs)), spec=tiny_embeddings.spec,
                                fingerprint=tiny_embeddings.fingerprint)
    ids = [f"d{i}" for i in range(len(TEXTS))]
    MatryoshkaChroma(name, pre, client=client).add_texts(TEXTS, ids=ids)
    store = MatryoshkaChroma(name, tiny_embeddings, client=client)  # the same model: accepted
    hits = store.similarity_search_with_score(TEXTS[2], k=len(TEXTS))
    q = tiny_embeddings.encode_queries([TEXTS[2]])[0]
    exact = dict(zip(ids, (vecs @ q).tolist()))
    # the stored vectors are int8 (the default full encoding): the order is the exact one up to
    # near-ties (a random tiny model can put two texts within the quantisation error), and each
    # score is the exact cosine to 0.01
    assert sorted(d.id for d, _ in hits) == ids
    assert all(exact[a.id] >= exact[b.id] - 0.01 for (a, _), (b, _) in zip(hits, hits[1:])), (hits, exact)
    assert all(abs((1 - score) - exact[d.id]) < 0.01 for d, score in hits)
    other = PrecomputedEmbeddings(documents=dict(zip(TEXTS, vecs)), spec="other", fingerprint="0" * 16)
    with pytest.raises(CollectionMismatchError):
        MatryoshkaChroma(name, other, client=client)
    client.delete_collection(name)


@pytest.mark.parametrize("kwargs, error, expected", [
    ({"documents": [("a", [1.0, 0.0])]}, InvalidInputError, "from_arrays"),
    ({"documents": {"a": ["x", "y"]}}, InvalidInputError, "not a list of numbers"),
    ({"documents": {"a": [1.0, 0.0]}, "queries": {"q": [1.0, 0.0, 0.0]}}, DimensionError, "document and query"),
    ({"documents": {"a": [1.0, 0.0]}, "dims": [0, 99]}, DimensionError, "dims"),
    ({"documents": {"a": [1.0, 0.0]}, "dimension": "auto"}, DimensionError, "presets"),
    ({"fallback": "bundled:medrag-e5-small-fr"}, InvalidInputError, "fallback must be an encoder"),
    # audit: a key that is not a text (it could never be looked up), one text's vector given as a
    # matrix (flattened into a 4-dim "vector"), an empty vector ("dimension 0 is outside 1..0")
    ({"documents": {1: [1.0, 0.0]}}, InvalidInputError, "text at index 0 is int"),
    ({"documents": {"a": np.ones((2, 2))}}, DimensionError, r"shape \(2, 2\)"),
    ({"documents": {"a": []}}, DimensionError, r"shape \(0,\)"),
])
def test_precomputed_bad_arguments_are_medrag_errors(kwargs, error, expected):
    """These raised AttributeError / ValueError from int(), or were accepted (dims [0, 99]); the size
    mismatch of documents and queries blamed a fallback that was not given."""
    args = {"spec": "m", "fingerprint": "f", **kwargs}
    with pytest.raises(error, match=expected):
        PrecomputedEmbeddings(**args)


def test_precomputed_lookups_refuse_non_texts():
    emb = PrecomputedEmbeddings({"a": [1.0, 0.0]}, spec="m", fingerprint="f")
    for bad in (None, [1], [["a"]]):
        with pytest.raises(InvalidInputError):
            emb.encode_documents(bad)


def test_precomputed_from_arrays_checks_texts_and_numbers():
    """from_arrays raised a bare ValueError for a non-number and took non-text keys (audit)."""
    with pytest.raises(InvalidInputError, match="not a list of numbers"):
        PrecomputedEmbeddings.from_arrays(["a"], [["x", 1]], spec="m", fingerprint="f")
    with pytest.raises(InvalidInputError, match="text at index 1 is int"):
        PrecomputedEmbeddings.from_arrays(["a", 2], np.eye(2), spec="m", fingerprint="f")
    with pytest.raises(DimensionError, match="one row per text"):
        PrecomputedEmbeddings.from_arrays(["a"], np.zeros((1, 0)), spec="m", fingerprint="f")


def test_precomputed_vector_rows_and_the_full_size_among_the_dims():
    """A (1, d) row is one text's vector, as a model returns it; dims=[2] with 4-dim vectors left the
    full size out of dims, which matryoshka.json and MatryoshkaEmbeddings always hold (audit)."""
    emb = PrecomputedEmbeddings({"a": np.array([[0.6, 0.8, 0.0, 0.0]])}, spec="m", fingerprint="f", dims=[2])
    assert emb.full_dim == 4 and emb.dims == [4, 2]
    assert np.allclose(emb.encode_documents(["a"]), [[0.6, 0.8, 0.0, 0.0]])
