"""The prompts a collection's vectors were encoded with are part of its contract, and a model of 64
dims or fewer gets a coarse size it has (user tryout: bring-your-own models)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medrag import CollectionMismatchError, MatryoshkaChroma, MatryoshkaEmbeddings
from medrag.models import _model_name
from medrag.store import CONTRACT_KEYS, default_coarse_dim, recorded_prompts
from tests.tiny_model import build_tiny_model

TEXTS = ["Une ferritine basse traduit une carence en fer.", "La TSH élevée oriente vers une hypothyroïdie.",
         "La CRP augmente lors d'une infection bactérienne.", "La créatinine estime la filtration glomérulaire."]


def _without_saved_prompts(tiny_model_dir, folder):
    """A copy of the tiny model that saved no prompts: an e5 model gets them from its name only."""
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": {}}))
    return folder


def test_a_store_refuses_the_same_weights_with_other_prompts(tiny_model_dir, tmp_path, caplog):
    """A renamed e5 folder lost "query: " / "passage: " with the same fingerprint, and the store wrote
    prompt-less vectors beside the prefixed ones and searched them with prompt-less queries, in silence."""
    e5 = _without_saved_prompts(tiny_model_dir, tmp_path / "e5-small-medical-ft")
    persist = str(tmp_path / "chroma")
    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(e5), persist_directory=persist, coarse_dim=64)
    store.add_texts(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    recorded = store.collection.metadata[CONTRACT_KEYS["prompts"]]
    assert recorded_prompts(recorded) == {"query": "query: ", "passage": "passage: "}
    before = store.similarity_search_with_score(TEXTS[0], k=2)
    store.close()

    renamed = e5.rename(tmp_path / "embedder")
    plain = MatryoshkaEmbeddings(renamed)
    assert plain.prompt_texts == ("", "") and plain.fingerprint == MatryoshkaEmbeddings(tiny_model_dir).fingerprint
    with pytest.raises(CollectionMismatchError) as err:
        MatryoshkaChroma("notes", plain, persist_directory=persist)
    message = str(err.value)
    assert "prompts: the collection's vectors were encoded with query prompt 'query: ' and passage prompt " \
           "'passage: ', this store's embeddings use no query prompt and no passage prompt" in message
    assert "Nothing was written" in message and "prompts={'query': 'query: ', 'passage': 'passage: '}" in message

    fixed = MatryoshkaEmbeddings(renamed, prompts={"query": "query: ", "passage": "passage: "})
    again = MatryoshkaChroma("notes", fixed, persist_directory=persist)
    assert len(again) == len(TEXTS)
    after = again.similarity_search_with_score(TEXTS[0], k=2)
    assert [d.id for d, _ in after] == [d.id for d, _ in before]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
    again.close()


def test_a_collection_made_before_prompts_were_recorded_is_not_checked_and_records_none(tiny_model_dir, tmp_path):
    """Recording the prompts of the first store to open it could record the wrong ones (a renamed folder,
    a `medrag search`), which then refused the right ones (review)."""
    persist = str(tmp_path / "chroma")
    emb = MatryoshkaEmbeddings(tiny_model_dir)
    store = MatryoshkaChroma("notes", emb, persist_directory=persist)
    store.add_texts(TEXTS)
    meta = {k: v for k, v in store.collection.metadata.items() if k != CONTRACT_KEYS["prompts"]}
    store.collection.modify(metadata=meta)  # as an earlier medrag wrote it
    store.close()
    other = MatryoshkaChroma("notes", MatryoshkaEmbeddings(tiny_model_dir, prompts={}), persist_directory=persist)
    assert CONTRACT_KEYS["prompts"] not in other.collection.metadata
    other.close()
    again = MatryoshkaChroma("notes", emb, persist_directory=persist)
    assert len(again) == len(TEXTS)
    again.close()


def test_an_empty_collection_made_before_prompts_were_recorded_records_them(tiny_model_dir, tmp_path, caplog):
    """A run of an earlier medrag killed before its first write left a collection without prompts; filled
    by this medrag, it never recorded them, and nothing said the prompt check was off (upgrade tryout)."""
    persist = str(tmp_path / "chroma")
    emb = MatryoshkaEmbeddings(tiny_model_dir)
    store = MatryoshkaChroma("notes", emb, persist_directory=persist)
    meta = {k: v for k, v in store.collection.metadata.items() if k != CONTRACT_KEYS["prompts"]}
    store.collection.modify(metadata=meta)  # as an earlier medrag made it
    store.close()
    with caplog.at_level("INFO", logger="medrag.store"):
        again = MatryoshkaChroma("notes", emb, persist_directory=persist)
    assert recorded_prompts(again.collection.metadata[CONTRACT_KEYS["prompts"]]) == {"query": "query: ",
                                                                                    "passage": "passage: "}
    assert "is empty and records no prompts; recording" in caplog.text
    again.add_texts(TEXTS)
    again.close()
    with pytest.raises(CollectionMismatchError, match="prompts: "):  # checked from now on
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(tiny_model_dir, prompts={}), persist_directory=persist)


def test_a_filled_collection_without_prompts_says_they_are_not_checked(tiny_model_dir, tmp_path, caplog):
    persist = str(tmp_path / "chroma")
    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(tiny_model_dir), persist_directory=persist)
    store.add_texts(TEXTS)
    store.collection.modify(metadata={k: v for k, v in store.collection.metadata.items()
                                      if k != CONTRACT_KEYS["prompts"]})
    store.close()
    with caplog.at_level("INFO", logger="medrag.store"):
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(tiny_model_dir), persist_directory=persist).close()
    assert "records no prompts (made before medrag recorded them, or from precomputed vectors): the prompts of " \
           "what is written to it are not checked" in caplog.text


def test_the_shell_takes_the_recorded_prompts_for_the_model_that_encoded_the_collection_only(tiny_model_dir, tmp_path,
                                                                                            monkeypatch):
    """Another model given with --model kept the collection's prompts (an emptied e5 collection renewed for a
    model without prompts recorded e5's: review)."""
    import argparse

    import medrag.embeddings
    from medrag.command import store_embeddings

    e5 = MatryoshkaEmbeddings(tiny_model_dir)
    recorded = ({"query": "q: ", "passage": "p: "}, e5.fingerprint)
    args = argparse.Namespace(model=str(tiny_model_dir), device="cpu")
    with monkeypatch.context() as patched:  # the current fingerprint recorded: the ~90 legacy ids are not computed
        patched.setattr(medrag.embeddings, "legacy_model_fingerprints", lambda model: pytest.fail("computed"))
        assert store_embeddings(args, None, recorded).prompt_texts == ("q: ", "p: ")
    other = build_tiny_model(tmp_path / "other", seed=1)
    args = argparse.Namespace(model=str(other), device="cpu")
    assert store_embeddings(args, None, ({"query": "q: ", "passage": "p: "}, e5.fingerprint)).prompt_texts == (
        "query: ", "passage: ")


def test_plain_embeddings_record_no_prompts(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    store = MatryoshkaChroma("plain", DeterministicFakeEmbedding(size=128), persist_directory=str(tmp_path / "c"))
    store.add_texts(TEXTS)
    assert CONTRACT_KEYS["prompts"] not in store.collection.metadata
    store.close()


def test_the_shell_opens_a_collection_with_the_prompts_it_recorded(tiny_model_dir, tmp_path, capsys):
    """``medrag search --model`` with the renamed folder: the collection's prompts are used."""
    from medrag.cli import main

    e5 = _without_saved_prompts(tiny_model_dir, tmp_path / "e5-small-medical-ft")
    notes = tmp_path / "notes"
    notes.mkdir()
    for i, text in enumerate(TEXTS):
        (notes / f"n{i}.txt").write_text(text, encoding="utf-8")
    persist = str(tmp_path / "chroma")
    assert main(["index", str(notes), "--persist-dir", persist, "--model", str(e5), "--no-progress"]) == 0
    search = ["search", TEXTS[1], "--persist-dir", persist, "--k", "2", "--json"]
    capsys.readouterr()
    assert main([*search, "--model", str(e5)]) == 0
    before = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    renamed = e5.rename(tmp_path / "embedder")
    assert main([*search, "--model", str(renamed)]) == 0
    after = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(before) == 2 and after == before


def test_e5_prompts_follow_the_folders_own_name_not_its_parents(tiny_model_dir, tmp_path):
    import medrag

    plain = _without_saved_prompts(tiny_model_dir, tmp_path / "e5-base-comparison" / "camembert-bio")
    assert not (medrag.load_model(plain, device="cpu").prompts or {}).get("query")
    e5 = _without_saved_prompts(tiny_model_dir, tmp_path / "runs" / "multilingual-e5-small-ft" / "checkpoint-500")
    assert medrag.load_model(e5, device="cpu").prompts.get("query") == "query: "
    assert _model_name("exp/e5-base-comparison/camembert-bio/") == "camembert-bio"
    assert _model_name("runs/e5-small-ft/final") == "e5-small-ft/final"
    assert _model_name("intfloat/multilingual-e5-large") == "intfloat/multilingual-e5-large"


def test_a_model_of_64_dims_gets_a_coarse_size_it_has(tmp_path):
    """A 64-dim model was refused: "coarse_dim=64 must be between 1 and ... (63)", a setting its user
    never set, and `medrag demo` (no --coarse-dim) could not run it."""
    from evaluation.store_eval import evaluate_store
    from medrag.qa.task import IRTask

    assert (default_coarse_dim(384), default_coarse_dim(64), default_coarse_dim(2), default_coarse_dim(1)) == (64, 32, 1, 1)
    small = MatryoshkaEmbeddings(build_tiny_model(tmp_path / "tiny-64", hidden=64))
    store = MatryoshkaChroma("small", small, persist_directory=str(tmp_path / "c"))
    assert store.coarse_dim == 32
    store.add_texts(TEXTS)
    assert store.similarity_search(TEXTS[2], k=1)[0].page_content == TEXTS[2]
    store.close()
    task = IRTask(queries={"q0": TEXTS[0], "q1": TEXTS[1]}, corpus={f"d{i}": t for i, t in enumerate(TEXTS)},
                  qrels={"q0": {"d0"}, "q1": {"d1"}})
    assert evaluate_store(small, task, encode_sample=0).settings["coarse_dim"] == 32


def test_the_examples_of_the_new_helpers_run():
    """Their modules are not in pyproject's doctest list (they need models): run these examples here
    (those of medrag._store_contract and medrag.sources run there)."""
    import doctest

    import medrag.indexing
    import medrag.models

    runner = doctest.DocTestRunner()
    for module, name in ((medrag.models, "_model_name"), (medrag.indexing, "_document_name")):
        tests = doctest.DocTestFinder().find(getattr(module, name), name, globs=vars(module))
        assert tests and tests[0].examples, name
        for test in tests:
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_shell_takes_prompt_names(tiny_model_dir, tmp_path, capsys):
    """A model whose prompts have other names was indexed and evaluated from the shell without them."""
    from medrag.cli import main

    folder = tmp_path / "stella-like"
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": {"s2p_query": "Instruct: find\nQuery: "}}))
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    persist = str(tmp_path / "chroma")
    assert main(["index", str(notes), "--persist-dir", persist, "--model", str(folder), "--no-progress",
                 "--query-prompt-name", "s2p_query"]) == 0
    import chromadb

    meta = chromadb.PersistentClient(path=persist).get_collection("medrag").metadata
    assert recorded_prompts(meta[CONTRACT_KEYS["prompts"]]) == {"query": "Instruct: find\nQuery: ", "passage": ""}
    capsys.readouterr()
    assert main(["index", str(notes), "--persist-dir", str(tmp_path / "other"), "--model", str(folder),
                 "--query-prompt-name", "s2s_query"]) == 1
    assert "prompt name 's2s_query' is not among the model's prompts" in capsys.readouterr().err
