import asyncio
import logging
import warnings

import numpy as np
import pytest

from medrag import MatryoshkaEmbeddings, truncate_embeddings
from medrag.errors import DimensionError, InvalidInputError, MetadataError
from medrag.metadata import MatryoshkaMetadata

TEXTS = ["La glycémie à jeun normale est inférieure à 1,10 g/L.", "La TSH élevée oriente vers une hypothyroïdie."]


def test_default_is_full_size_and_unit_norm(tiny_embeddings):
    vecs = np.array(tiny_embeddings.embed_documents(TEXTS))
    assert tiny_embeddings.dimension == 128 and vecs.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dim", [128, 64])
def test_truncation_equals_truncate_then_renormalise(tiny_model, dim):
    emb = MatryoshkaEmbeddings(tiny_model, dimension=dim)
    full = tiny_model.encode(["passage: " + t for t in TEXTS], normalize_embeddings=False)
    expected = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
    got = np.array(emb.embed_documents(TEXTS))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_document_prompt_is_passage_not_the_empty_document_prompt(tiny_model, tiny_embeddings):
    # sentence-transformers >= 6.2 adds an empty "document" prompt; e5 passages must keep "passage: ".
    assert tiny_model.prompts.get("document") == ""
    assert tiny_embeddings.document_prompt_name == "passage"
    doc = np.array(tiny_embeddings.embed_documents([TEXTS[0]])[0])
    with_prefix = tiny_model.encode(["passage: " + TEXTS[0]], normalize_embeddings=True)[0]
    without = tiny_model.encode([TEXTS[0]], normalize_embeddings=True)[0]
    np.testing.assert_allclose(doc, with_prefix, atol=1e-5)
    assert not np.allclose(doc, without, atol=1e-3)


def test_query_and_document_vectors_differ(tiny_embeddings):
    q = np.array(tiny_embeddings.embed_query(TEXTS[0]))
    d = np.array(tiny_embeddings.embed_documents([TEXTS[0]])[0])
    assert not np.allclose(q, d, atol=1e-3)


def test_model_without_prompts_works(tiny_model_dir):
    import medrag

    model = medrag.load_model(tiny_model_dir, device="cpu")
    model.prompts = {}
    emb = MatryoshkaEmbeddings(model)
    assert emb.query_prompt_name is None and emb.document_prompt_name is None
    assert np.allclose(emb.embed_query(TEXTS[0]), emb.embed_documents([TEXTS[0]])[0], atol=1e-6)


def test_one_model_call_serves_every_size(tiny_model, monkeypatch):
    emb = MatryoshkaEmbeddings(tiny_model)
    calls = []
    real = tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda *a, **k: calls.append(1) or real(*a, **k))
    full = emb.encode_documents(TEXTS)
    sizes = {d: truncate_embeddings(full, d) for d in emb.dims}
    assert len(calls) == 1
    np.testing.assert_allclose(sizes[64], np.array(emb.with_dimension(64).embed_documents(TEXTS)), atol=1e-6)


def test_dimension_validation(tiny_model):
    with pytest.raises(DimensionError, match="is not one of the sizes this model allows"):
        MatryoshkaEmbeddings(tiny_model, dimension=100)
    with pytest.raises(DimensionError, match="outside"):
        MatryoshkaEmbeddings(tiny_model, dimension=129)
    with pytest.raises(DimensionError, match="unknown dimension"):
        MatryoshkaEmbeddings(tiny_model, dimension="tiny")
    with pytest.raises(ValueError):  # DimensionError is a ValueError too
        MatryoshkaEmbeddings(tiny_model, dimension=0)
    loose = MatryoshkaEmbeddings(tiny_model, dimension=100, strict_dims=False)
    assert len(loose.embed_query("bonjour")) == 100


def test_presets_are_capped_to_the_model(tiny_model):
    assert MatryoshkaEmbeddings(tiny_model, dimension="max").dimension == 128
    assert MatryoshkaEmbeddings(tiny_model, dimension="balanced").dimension == 128  # 512 capped
    assert MatryoshkaEmbeddings(tiny_model, dimension="edge").dimension == 128


def test_auto_dimension_uses_recorded_scores(tiny_model):
    meta = MatryoshkaMetadata(full_dim=128, dims=[128, 96, 64, 32],
                              scores={128: {"ndcg@10": 0.50}, 96: {"ndcg@10": 0.497}, 64: {"ndcg@10": 0.49},
                                      32: {"ndcg@10": 0.40}})
    assert MatryoshkaEmbeddings(tiny_model, dimension="auto", metadata=meta).dimension == 96
    assert MatryoshkaEmbeddings(tiny_model, dimension="auto", metadata=meta, max_quality_loss=0.05).dimension == 64
    assert MatryoshkaEmbeddings(tiny_model, dimension="auto", metadata=meta, max_quality_loss=0.0).dimension == 128
    assert MatryoshkaEmbeddings(tiny_model, dimension=32, metadata=meta).dimension == 32  # trained size allowed


def test_auto_dimension_reads_the_model_folder(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "finetuned"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64], scores={128: {"ndcg@10": 0.3}, 64: {"ndcg@10": 0.299}}).save(folder)
    assert MatryoshkaEmbeddings(str(folder), dimension="auto", device="cpu").dimension == 64


def test_matryoshka_trained_is_read_from_the_model_folder(tmp_path, tiny_model_dir):
    """A folder whose matryoshka.json names the base it was trained from (what ``medrag finetune``
    writes) is Matryoshka-trained; a plain model, or one whose matryoshka.json only records scores
    (``medrag evaluate --write-metadata`` on a base model's folder), is not (the store's learned
    coarse fit trains longer for it)."""
    import shutil

    assert MatryoshkaEmbeddings(str(tiny_model_dir), device="cpu").matryoshka_trained is False
    folder = tmp_path / "finetuned"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64]).save(folder)
    assert MatryoshkaEmbeddings(str(folder), device="cpu").matryoshka_trained is False
    MatryoshkaMetadata(full_dim=128, dims=[128, 64], base_model="bundled:multilingual-e5-small").save(folder)
    trained = MatryoshkaEmbeddings(str(folder), device="cpu")
    assert trained.matryoshka_trained is True and trained.with_dimension(64).matryoshka_trained is True


def test_auto_without_scores_is_an_error(tiny_model):
    with pytest.raises(MetadataError, match="needs per-size scores"):
        MatryoshkaEmbeddings(tiny_model, dimension="auto")


def test_metadata_full_dim_must_match_model(tiny_model):
    with pytest.raises(MetadataError, match="full_dim"):
        MatryoshkaEmbeddings(tiny_model, metadata=MatryoshkaMetadata(full_dim=64, dims=[64]))


def test_empty_list_gives_empty_list(tiny_embeddings):
    assert tiny_embeddings.embed_documents([]) == []
    assert tiny_embeddings.encode_queries([]).shape == (0, 128)


@pytest.mark.parametrize("bad, index", [(["ok", ""], 1), (["   "], 0), (["ok", "ok", None], 2), ([3], 0),
                                        (["ok", "\u200b\u2060\ufeff"], 1), (["\u00ad \x00"], 0)])
def test_bad_texts_name_their_index(tiny_embeddings, bad, index):
    with pytest.raises(ValueError, match=f"index {index}"):
        tiny_embeddings.embed_documents(bad)


def test_a_text_of_invisible_characters_is_blank(tiny_embeddings):
    """A lone zero-width space passed ``str.strip`` and returned arbitrary documents (review)."""
    for query in ("\u200b", "\u00ad", "query: \u2060"):
        with pytest.raises(InvalidInputError):
            tiny_embeddings.embed_query(query)


def test_bad_query(tiny_embeddings):
    with pytest.raises(ValueError, match="empty"):
        tiny_embeddings.embed_query(" \n")
    with pytest.raises(ValueError, match="list of texts"):
        tiny_embeddings.embed_documents("one string")


def test_long_text_truncated_with_one_warning(tiny_embeddings):
    long = " ".join(["glycémie"] * 200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vecs = tiny_embeddings.embed_documents([long, long, "court"])
    relevant = [w for w in caught if "max_seq_length" in str(w.message)]
    assert len(relevant) == 1 and "2 text(s)" in str(relevant[0].message)
    assert len(vecs) == 3
    assert relevant[0].filename == __file__  # the caller's line, not medrag's (it named embeddings.py)


def test_long_text_warning_points_at_the_caller_through_the_store(tiny_embeddings, caplog):
    """Through the store the warning named store.py; the length count also made transformers log
    "Token indices sequence length is longer than ..." on top of medrag's own warning."""
    import chromadb

    from medrag import MatryoshkaChroma

    store = MatryoshkaChroma("longtexts", tiny_embeddings, client=chromadb.EphemeralClient(), coarse_rotation="none")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        store.add_texts([" ".join(["ferritine"] * 300)])
    relevant = [w for w in caught if "max_seq_length" in str(w.message)]
    assert len(relevant) == 1 and relevant[0].filename == __file__
    assert "Token indices sequence length" not in caplog.text


def test_async_variants_match_sync(tiny_embeddings):
    async def run():
        return await tiny_embeddings.aembed_documents(TEXTS), await tiny_embeddings.aembed_query(TEXTS[0])

    docs, query = asyncio.run(run())
    np.testing.assert_allclose(docs, tiny_embeddings.embed_documents(TEXTS), atol=1e-6)
    np.testing.assert_allclose(query, tiny_embeddings.embed_query(TEXTS[0]), atol=1e-6)


def test_batch_size_does_not_change_vectors(tiny_model):
    texts = [f"patient numéro {i} avec une anémie" for i in range(10)]
    a = MatryoshkaEmbeddings(tiny_model, batch_size=3).embed_documents(texts)
    b = MatryoshkaEmbeddings(tiny_model, batch_size=10).embed_documents(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        MatryoshkaEmbeddings(tiny_model, batch_size=0)


def test_wrong_argument_types_are_medrag_errors(tiny_model):
    from medrag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="batch_size"):
        MatryoshkaEmbeddings(tiny_model, batch_size="8")
    with pytest.raises(InvalidInputError, match="model must be"):
        MatryoshkaEmbeddings(123)


def test_truncate_embeddings_checks_size_and_keeps_zero_rows():
    v = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]])
    out = truncate_embeddings(v, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(DimensionError):
        truncate_embeddings(v, 4)


def test_presets_follow_recommendations_then_trained_sizes(tiny_model):
    meta = MatryoshkaMetadata(full_dim=128, dims=[128, 96, 48], recommendations={"edge": 48})
    assert MatryoshkaEmbeddings(tiny_model, dimension="edge", metadata=meta).dimension == 48
    assert MatryoshkaEmbeddings(tiny_model, dimension="balanced", metadata=meta).dimension == 128
    no_recs = MatryoshkaMetadata(full_dim=128, dims=[128, 96, 48])
    assert MatryoshkaEmbeddings(tiny_model, dimension="edge", metadata=no_recs).dimension == 128  # 128 capped


def test_bad_input_is_a_medrag_error(tiny_embeddings):
    from medrag.errors import InvalidInputError, MedragError

    with pytest.raises(InvalidInputError) as err:
        tiny_embeddings.embed_documents([""])
    assert isinstance(err.value, MedragError) and isinstance(err.value, ValueError)


def test_prompt_choice_is_shared_with_training_and_evaluation(tiny_model):
    from finetune.scoring import prompt_texts
    from medrag.prompts import prompt_texts as medrag_prompt_texts

    assert prompt_texts(tiny_model) == medrag_prompt_texts(tiny_model.prompts) == ("query: ", "passage: ")


def test_odd_inputs_are_invalid_input_errors(tiny_embeddings):
    """A lone surrogate reached the tokenizer (a bare TypeError), None a bare TypeError, and an empty
    query was called "text at index 0"."""
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        tiny_embeddings.embed_query("abc \udcff def")
    with pytest.raises(InvalidInputError, match="index 1 is not valid UTF-8"):
        tiny_embeddings.embed_documents(["ok", "abc \udcff def"])
    with pytest.raises(InvalidInputError, match="list of texts"):
        tiny_embeddings.embed_documents(None)
    with pytest.raises(InvalidInputError, match="the query"):
        tiny_embeddings.embed_query("  ")


@pytest.mark.parametrize("content, expected", [
    ({"full_dim": 32, "dims": "abc"}, "dims must be a list"),
    ({"full_dim": 32, "dims": None}, "dims must be a list"),
    ({"full_dim": 32, "dims": [32, "x"]}, "dims must be a list"),
    ({"full_dim": 32, "dims": [True]}, "dims must be a list"),
    ({"full_dim": 32, "dims": [32, 16], "scores": [1, 2]}, "scores must map"),
    ({"full_dim": 32, "dims": [32, 16], "scores": {"32": 0.5}}, "must map metric names"),
    ({"full_dim": 32, "dims": [32, 16], "recommendations": {"edge": "small"}}, "recommendations"),
    ({"full_dim": 32, "dims": [32, 16], "recommendations": {"edge": 8}}, "recommendations"),
])
def test_a_corrupt_matryoshka_json_is_a_metadata_error(tiny_model_dir, tmp_path, content, expected):
    """These raised ValueError / TypeError / AttributeError, or (dims [true]) were accepted."""
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "matryoshka.json").write_text(json.dumps(content))
    with pytest.raises(MetadataError, match=expected):
        MatryoshkaEmbeddings(str(folder), dimension="edge")


def test_a_prompt_written_by_hand_is_not_added_twice(tiny_embeddings, caplog):
    """Users of other e5 wrappers write "query: ..." themselves: the model saw "query: query: ..."."""
    import logging

    with caplog.at_level(logging.INFO, logger="medrag.embeddings"):
        assert tiny_embeddings.embed_query("query: " + TEXTS[1]) == tiny_embeddings.embed_query(TEXTS[1])
    assert "not added twice" in caplog.text
    docs = tiny_embeddings.embed_documents(["passage: " + TEXTS[0], TEXTS[1]])
    assert docs == tiny_embeddings.embed_documents([TEXTS[0], TEXTS[1]])
    # only the model's own prompt of that side is recognised
    assert tiny_embeddings.embed_query("passage: " + TEXTS[1]) != tiny_embeddings.embed_query(TEXTS[1])


def test_the_default_prompt_is_not_added_twice_and_counts_for_truncation(tiny_model_dir, tmp_path, caplog):
    """A model without query/passage prompts but with a ``default_prompt_name``: sentence-transformers
    applies that prompt, which medrag ignored (a hand-written one was doubled) (review)."""
    import json
    import logging
    import shutil

    folder = tmp_path / "instructed"
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": {"instruct": "passage: "},
                               "default_prompt_name": "instruct"}))
    emb = MatryoshkaEmbeddings(str(folder))
    assert emb.query_prompt_name is None and emb._prompt_text(None) == "passage: "
    with caplog.at_level(logging.INFO, logger="medrag.embeddings"):
        assert emb.embed_query("passage: " + TEXTS[1]) == emb.embed_query(TEXTS[1])
    assert "not added twice" in caplog.text


def test_the_truncation_check_counts_bytes_not_characters(tiny_embeddings):
    """A byte-level tokenizer (BPE over UTF-8) gives "é" two tokens: a text of fewer characters than
    max_seq_length can overflow, and the character prefilter skipped it without a warning (review)."""
    from types import SimpleNamespace

    class ByteTokenizer:  # one token per UTF-8 byte, plus two special tokens
        def __call__(self, texts, add_special_tokens=True, verbose=False):
            return {"input_ids": [[0] * (len(t.encode("utf-8")) + 2) for t in texts]}

    model = SimpleNamespace(max_seq_length=32, tokenizer=ByteTokenizer(), prompts={}, default_prompt_name=None)
    fake = SimpleNamespace(model=model, max_tokens=32)
    fake._prompt_text = lambda name: MatryoshkaEmbeddings._prompt_text(fake, name)
    fake._token_counts = lambda texts: MatryoshkaEmbeddings._token_counts(fake, texts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MatryoshkaEmbeddings._warn_if_truncated(fake, ["é" * 20, "e" * 20], None)  # 20 characters, 40 bytes
    assert [str(w.message)[:9] for w in caught if "max_seq_length" in str(w.message)] == ["1 text(s)"]


@pytest.mark.parametrize("bad", ["0.1", None, 1.5, -0.1, True])
def test_max_quality_loss_is_checked_when_the_embeddings_are_made(tiny_model, bad):
    """A string or None raised TypeError inside "auto"; 1.5 was accepted until "auto" was asked."""
    with pytest.raises(InvalidInputError, match="max_quality_loss"):
        MatryoshkaEmbeddings(tiny_model, max_quality_loss=bad)


@pytest.mark.parametrize("bad", [{"full_dim": 128}, "outputs/model"])
def test_metadata_must_be_matryoshka_metadata(tiny_model, bad):
    """A dict or a folder name raised AttributeError: 'dict' object has no attribute 'full_dim'."""
    with pytest.raises(InvalidInputError, match="MatryoshkaMetadata"):
        MatryoshkaEmbeddings(tiny_model, metadata=bad)


def test_a_model_loaded_without_medrag_keeps_its_folders_metadata(tmp_path, tiny_model_dir):
    """A SentenceTransformer loaded by the user lost its folder's matryoshka.json: a trained size
    was refused as untrained, and "auto" said there were no recorded scores."""
    import shutil

    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "finetuned"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64, 32], scores={128: {"ndcg@10": 0.3}, 64: {"ndcg@10": 0.299},
                                                                  32: {"ndcg@10": 0.2}}).save(folder)
    model = SentenceTransformer(str(folder), device="cpu")
    emb = MatryoshkaEmbeddings(model, dimension="auto")
    assert emb.dims == [128, 64, 32] and emb.dimension == 64
    assert MatryoshkaEmbeddings(model, dimension=32).dimension == 32


def test_a_text_that_is_only_the_prompt_is_refused(tiny_embeddings):
    """'query: ' alone was encoded as an empty text, which embed_query('') refuses (audit)."""
    with pytest.raises(InvalidInputError, match="^the text is only the prompt 'query:'"):  # not "text at index 0"
        tiny_embeddings.embed_query("query:   ")
    with pytest.raises(InvalidInputError, match="text at index 1 is only the prompt 'passage:'"):
        tiny_embeddings.embed_documents([TEXTS[0], "passage: "])


def test_check_texts_refuses_without_encoding(tiny_embeddings, monkeypatch):
    """check_texts (the store's whole-call check) names the index in the call, for each side's prompt."""
    monkeypatch.setattr(tiny_embeddings, "_encode", lambda *a: pytest.fail("check_texts encoded"))
    assert tiny_embeddings.check_texts(("a", "passage: b")) == ["a", "passage: b"]
    with pytest.raises(InvalidInputError, match="^text at index 2 is only the prompt 'passage:'"):
        tiny_embeddings.check_texts(["a", "b", "passage:  "])
    assert tiny_embeddings.check_texts(["a", "passage: "], query=True) == ["a", "passage: "]  # a query may say it
    with pytest.raises(InvalidInputError, match="^text at index 1 is only the prompt 'query:'"):
        tiny_embeddings.check_texts(["a", "query: "], query=True)
    with pytest.raises(InvalidInputError, match="text at index 0 is empty"):
        tiny_embeddings.check_texts([" "])


def test_a_loaded_model_honours_device_and_refuses_truncate_dim(tiny_model_dir):
    """device= was ignored for a loaded model ('bogus' and 'cuda' stayed on the CPU), and a model
    loaded with truncate_dim=64 gave "matryoshka.json says full_dim=128 but the model outputs 64" (audit)."""
    from sentence_transformers import SentenceTransformer

    from medrag.errors import ModelLoadError

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelLoadError, match="unknown device 'bogus'"):
        MatryoshkaEmbeddings(model, device="bogus")
    assert MatryoshkaEmbeddings(model, device="cpu").model.device.type == "cpu"
    truncated = SentenceTransformer(str(tiny_model_dir), device="cpu", truncate_dim=64)
    with pytest.raises(InvalidInputError, match="loaded with truncate_dim=64.*pass dimension=64"):
        MatryoshkaEmbeddings(truncated)


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


@pytest.mark.parametrize("vectors, dim, error", [
    (np.ones((2, 4)), 4.0, "dim must be an int"), (np.ones((2, 4)), "4", "dim must be an int"),
    (np.ones((2, 4)), None, "dim must be an int"), (np.ones((2, 4)), True, "dim must be an int"),
    (None, 2, "array"), (3.0, 2, "array"), (np.ones((2, 2, 4)), 2, "array"), ([[1.0, 2.0], [1.0]], 1, "array"),
    ([["a", "b"]], 1, "array"), (np.array([[1.0, np.nan]]), 1, "NaN"),
])
def test_truncate_embeddings_refuses_bad_input_with_medrag_errors(vectors, dim, error) -> None:
    """They were TypeError / IndexError / ValueError from numpy, and ``dim=True`` (1) and NaN rows passed."""
    from medrag import truncate_embeddings

    with pytest.raises(InvalidInputError, match=error):
        truncate_embeddings(vectors, dim)


def test_one_model_encodes_one_call_at_a_time(tiny_model, monkeypatch) -> None:
    """Threads embedding long and short texts with one model crashed now and then ("The expanded size
    of the tensor ... must match", "Unable to create tensor"; 1-4 calls in 240 in the December 5
    audit): the truncation check sets the shared fast tokenizer to "no truncation" while another
    thread's encode relies on it truncating. The check and the encode of one model now run one call
    at a time (made deterministic here: the check is slowed down, and no encode may start inside it)."""
    import threading
    import time

    emb = MatryoshkaEmbeddings(tiny_model)
    other = emb.with_dimension(64)  # a clone shares the model, hence the lock
    inside, overlaps, entered = threading.Event(), [], []
    real_check = MatryoshkaEmbeddings._warn_if_truncated

    def slow_check(self, texts, prompt_name, **kwargs):  # **kwargs: query= (it raised TypeError in the thread,
        # and the test passed without ever checking: now `entered` says the check ran)
        if threading.current_thread().name != "first":
            return real_check(self, texts, prompt_name, **kwargs)
        entered.append(True)
        inside.set()
        time.sleep(0.3)
        real_check(self, texts, prompt_name, **kwargs)
        inside.clear()

    import medrag.embeddings as E

    real_encode = E.encode_texts

    def watched_encode(*args, **kwargs):
        if inside.is_set() and threading.current_thread().name != "first":
            overlaps.append(threading.current_thread().name)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(MatryoshkaEmbeddings, "_warn_if_truncated", slow_check)
    monkeypatch.setattr(E, "encode_texts", watched_encode)
    first = threading.Thread(target=emb.embed_documents, args=(["la glycémie à jeun"],), name="first")
    first.start()
    inside.wait(5)
    second = threading.Thread(target=other.embed_documents, args=(["la TSH"],), name="second")
    second.start()
    first.join()
    second.join()
    assert entered == [True] and overlaps == []


def test_devices_without_weights_or_absent_are_refused() -> None:
    """device="meta" was accepted, then the first embed raised a raw RuntimeError (December 5 audit)."""
    from medrag.errors import ModelLoadError
    from medrag.models import check_device

    with pytest.raises(ModelLoadError, match="meta"):
        check_device("meta")
    import torch

    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        with pytest.raises(ModelLoadError, match="XPU"):
            check_device("xpu")


def test_metadata_takes_numpy_ints_and_names_what_it_cannot_save(tmp_path) -> None:
    """np.int64 sizes passed the checks, then save() raised "int64 is not JSON serializable"; a missing
    folder gave a raw FileNotFoundError; a size key 64.9 was stored as 64; schema_version "1" said
    "1 is not supported (this medrag reads 1)" (December 5 audit)."""
    meta = MatryoshkaMetadata(full_dim=np.int64(128), dims=[np.int64(64)], recommendations={"edge": np.int64(64)})
    saved = MatryoshkaMetadata.load(meta.save(tmp_path).parent)
    assert saved.full_dim == 128 and saved.recommendations == {"edge": 64}
    with pytest.raises(MetadataError, match="no such folder"):
        meta.save(tmp_path / "missing")
    with pytest.raises(MetadataError, match="whole numbers"):
        MatryoshkaMetadata(full_dim=128, dims=[64], scores={64.9: {"ndcg@10": 0.5}})
    with pytest.raises(MetadataError, match="the text '1'"):
        MatryoshkaMetadata.from_dict({"schema_version": "1", "full_dim": 128, "dims": [64]})


def test_count_tokens_counts_what_the_model_is_fed(tiny_model_dir) -> None:
    """Prompt and special tokens included, as encode_documents / encode_queries feed the text."""
    emb = MatryoshkaEmbeddings(str(tiny_model_dir))
    tok = emb.model.tokenizer
    assert emb.max_tokens == 64
    text = "la ferritine basse traduit une carence en fer"
    assert emb.count_tokens([text]) == [len(tok("passage: " + text)["input_ids"])]
    assert emb.count_tokens([text], kind="query") == [len(tok("query: " + text)["input_ids"])]
    assert emb.count_tokens(["passage: " + text]) == emb.count_tokens([text])  # the prompt once
    long = " ".join([text] * 20)
    assert emb.count_tokens([long])[0] > 64  # before truncation
    with pytest.raises(InvalidInputError, match="kind must be 'document' or 'query'"):
        emb.count_tokens([text], kind="passage")
    with pytest.raises(InvalidInputError):
        emb.count_tokens([""])


def test_a_long_query_is_warned_about_as_a_query(tiny_embeddings):
    """A long query was told to 'split long passages into chunks ... medrag index' (user tryout)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_embeddings.embed_query(" ".join(["glycémie"] * 200))
    said = [str(w.message) for w in caught if "max_seq_length" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("1 query(s) exceed") and "shorten the query" in said[0], said
    assert "passages" not in said[0]
    model = tiny_embeddings.model
    model.prompts, prompts = {}, model.prompts  # a model without prompts (review)
    try:
        symmetric = MatryoshkaEmbeddings(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            symmetric.embed_query(" ".join(["glycémie"] * 200))
            symmetric.embed_documents([" ".join(["glycémie"] * 200)])
    finally:
        model.prompts = prompts
    said = [str(w.message) for w in caught if "max_seq_length" in str(w.message)]
    assert said[0].startswith("1 query(s)") and said[1].startswith("1 text(s)") and "passages" in said[1], said


def test_a_model_copied_as_the_readme_says_keeps_its_sizes_and_scores(tiny_model_dir, tmp_path):
    """sentence-transformers' save leaves matryoshka.json out (the copy lost its sizes and "auto"'s scores:
    user tryout); README: ``emb.model.save(folder); emb.metadata.save(folder)``."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(tiny_model_dir, source)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64, 32],
                       scores={128: {"ndcg@10": 0.5}, 64: {"ndcg@10": 0.499}, 32: {"ndcg@10": 0.3}}).save(source)
    emb = MatryoshkaEmbeddings(str(source), dimension="auto")
    emb.model.save(str(tmp_path / "bare"))
    assert MatryoshkaEmbeddings(str(tmp_path / "bare")).dims != [128, 64, 32]  # what the README's step is for
    emb.model.save(str(tmp_path / "copy"))
    emb.metadata.save(tmp_path / "copy")
    copy = MatryoshkaEmbeddings(str(tmp_path / "copy"), dimension="auto")
    assert copy.dims == [128, 64, 32] and copy.dimension == emb.dimension == 64


@pytest.mark.parametrize("terminal", [False, True])
def test_the_default_progress_bar_is_drawn_on_a_terminal_only(tiny_model_dir, capsys, monkeypatch, terminal):
    """A service's log file got a tqdm bar for every embed_documents of 256 texts or more (user tryout)."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    emb = MatryoshkaEmbeddings(str(tiny_model_dir), device="cpu")
    emb.embed_documents([f"note {i}" for i in range(300)])
    assert ("Batches" in capsys.readouterr().err) == terminal
    MatryoshkaEmbeddings(str(tiny_model_dir), device="cpu", show_progress=True).embed_documents(["une note"] * 2)
    assert "Batches" in capsys.readouterr().err  # asked for: drawn anywhere


def _folder_with_prompts(tiny_model_dir, folder, prompts):
    import json
    import shutil

    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": prompts}))
    return folder


def test_prompts_replace_the_models_own(tiny_model_dir):
    """``prompts={}`` encodes without any (a model medrag took for e5 by its name had no way out: user
    tryout); other prompts are put before the texts and named by ``prompt_texts``."""
    plain = MatryoshkaEmbeddings(tiny_model_dir, prompts={})
    assert plain.prompt_texts == ("", "")
    assert np.allclose(plain.embed_query(TEXTS[0]), plain.model.encode([TEXTS[0]], normalize_embeddings=True)[0],
                       atol=1e-5)
    own = MatryoshkaEmbeddings(tiny_model_dir, prompts={"query": "question : ", "passage": "passage: "})
    assert own.prompt_texts == ("question : ", "passage: ")
    assert np.allclose(own.embed_query(TEXTS[0]),
                       own.model.encode(["question : " + TEXTS[0]], normalize_embeddings=True)[0], atol=1e-5)
    assert MatryoshkaEmbeddings(tiny_model_dir).prompt_texts == ("query: ", "passage: ")
    for bad in (["query: "], {"query": 1}):
        with pytest.raises(InvalidInputError, match="prompts must map prompt names to prompt texts"):
            MatryoshkaEmbeddings(tiny_model_dir, prompts=bad)


def test_prompts_under_other_names_are_not_dropped_in_silence(tiny_model_dir, tmp_path, caplog):
    folder = _folder_with_prompts(tiny_model_dir, tmp_path / "stella-like",
                                  {"s2p_query": "Instruct: retrieve passages\nQuery: ", "document": ""})
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        emb = MatryoshkaEmbeddings(folder)
    assert emb.prompt_texts == ("", "")
    assert "has the prompts ['s2p_query'] but none named 'query'" in caplog.text
    assert "query_prompt_name='s2p_query'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        chosen = MatryoshkaEmbeddings(folder, query_prompt_name="s2p_query")
        MatryoshkaEmbeddings(tiny_model_dir)  # e5 prompts: nothing unused
    assert chosen.prompt_texts[0].startswith("Instruct:") and "none named 'query'" not in caplog.text
    import json

    cfg = folder / "config_sentence_transformers.json"  # a default prompt goes before every text: not "without"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "default_prompt_name": "s2p_query"}))
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        default = MatryoshkaEmbeddings(folder)
    assert default.prompt_texts[0].startswith("Instruct:") and "none named 'query'" not in caplog.text


def test_truncating_a_model_without_matryoshka_training_warns(tiny_model_dir, tmp_path, caplog):
    """A model no Matryoshka loss trained was truncated to 64 in silence, and a refused size was
    called "not a trained Matryoshka size" as if the others were (user tryout)."""
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        emb = MatryoshkaEmbeddings(tiny_model_dir, dimension=64)
    assert not emb.matryoshka_trained and "records no Matryoshka training" in caplog.text
    assert "first 64 of 128 coordinates" in caplog.text
    with pytest.raises(DimensionError) as err:
        MatryoshkaEmbeddings(tiny_model_dir, dimension=100)
    assert "not a trained" not in str(err.value) and "none of them below the full size was trained" in str(err.value)
    caplog.clear()
    trained = MatryoshkaMetadata(dims=[128, 64], full_dim=128, base_model="tiny-base")
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        small = MatryoshkaEmbeddings(tiny_model_dir, dimension=64, metadata=trained)
        full = MatryoshkaEmbeddings(tiny_model_dir)
    assert small.matryoshka_trained and "Matryoshka training" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="medrag.embeddings"):
        full.with_dimension(64)
    assert "first 64 of 128 coordinates" in caplog.text
    with pytest.raises(DimensionError, match="is not a trained Matryoshka size of this model"):
        MatryoshkaEmbeddings(tiny_model_dir, dimension=100, metadata=trained)
