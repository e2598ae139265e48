"""The default model: what ``load_model(None)``, ``MatryoshkaEmbeddings()`` and the store use, and the
message a store built with the previous default gives (on the tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest

import medrag
import medrag.bundled
import medrag.models
from medrag.bundled import BUNDLED_SPEC, DEFAULT_SPEC, MEDRAG_MODEL_SPEC
from medrag.errors import CollectionMismatchError


@pytest.fixture()
def tiny_default(monkeypatch, tiny_model_dir):
    """Every ``bundled:`` spec resolves to the tiny model's folder: checks which spec is asked for."""
    asked: list[str] = []

    def folder(spec):
        asked.append(spec)
        return tiny_model_dir

    monkeypatch.setattr(medrag.models, "bundled_folder", folder)
    # its matryoshka.json too (a bundled adapter's is read from its packaged folder, which describes e5-small)
    monkeypatch.setattr(medrag.models, "_metadata_folder", lambda spec, kind, built: built)
    return asked


def test_no_spec_loads_the_default_spec(tiny_default):
    model = medrag.load_model(None, device="cpu")
    assert tiny_default == [DEFAULT_SPEC] and model.medrag_spec == DEFAULT_SPEC
    emb = medrag.MatryoshkaEmbeddings()
    assert emb.spec == DEFAULT_SPEC and tiny_default[-1] == DEFAULT_SPEC


def test_the_default_is_medrags_packaged_model_and_the_base_keeps_its_name():
    assert DEFAULT_SPEC == MEDRAG_MODEL_SPEC == "bundled:medrag-e5-small-fr"
    assert medrag.DEFAULT_SPEC == DEFAULT_SPEC
    assert BUNDLED_SPEC == "bundled:multilingual-e5-small"
    # the non-commercial variant is listed (loadable offline) but is never the default
    assert medrag.models.bundled_specs() == [BUNDLED_SPEC, MEDRAG_MODEL_SPEC, "bundled:medrag-e5-small-fr-head",
                                             "bundled:medrag-e5-small-fr-nc"]


def test_the_shipped_models_say_they_are_matryoshka_trained() -> None:
    """Their matryoshka.json names the base they were trained from, so MatryoshkaEmbeddings reports
    matryoshka_trained and the store fits their learned coarse stage 10 steps, not 150 (measured
    0.849 vs 0.805 recall@10 on dev: docs/benchmarks.md, "Coarse fit steps per model kind")."""
    from importlib.resources import files

    from medrag.metadata import MatryoshkaMetadata

    for name in ("medrag-e5-small-fr", "medrag-e5-small-fr-head", "medrag-e5-small-fr-nc"):
        meta = MatryoshkaMetadata.load(Path(str(files("medrag") / "data" / "models" / name)))
        assert meta is not None and meta.base_model == BUNDLED_SPEC


def test_store_built_with_the_previous_default_names_reindex(tmp_path, tiny_model_dir, monkeypatch):
    import chromadb

    from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
    from tests.tiny_model import build_tiny_model

    monkeypatch.setattr(medrag.bundled, "DEFAULT_SPEC", MEDRAG_MODEL_SPEC)
    old = medrag.load_model(tiny_model_dir, device="cpu")
    old.medrag_spec = BUNDLED_SPEC
    new = medrag.load_model(build_tiny_model(tmp_path / "new-default", seed=3), device="cpu")
    new.medrag_spec = MEDRAG_MODEL_SPEC
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    store = MatryoshkaChroma("notes", MatryoshkaEmbeddings(old), client=client)
    store.add_texts(["La TSH élevée oriente vers une hypothyroïdie."], ids=["a"])
    with pytest.raises(CollectionMismatchError) as err:
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(new), client=client)
    message = str(err.value)
    assert "default model changed from 'bundled:multilingual-e5-small' to 'bundled:medrag-e5-small-fr'" in message
    assert "MatryoshkaChroma.reindex(client, 'notes'" in message and "Nothing was written" in message
    assert len(MatryoshkaChroma("notes", MatryoshkaEmbeddings(old), client=client)) == 1  # nothing lost


def test_other_model_mismatches_get_no_default_hint(tmp_path, tiny_model_dir, monkeypatch):
    import chromadb

    from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
    from tests.tiny_model import build_tiny_model

    monkeypatch.setattr(medrag.bundled, "DEFAULT_SPEC", MEDRAG_MODEL_SPEC)
    a = medrag.load_model(tiny_model_dir, device="cpu")
    b = medrag.load_model(build_tiny_model(tmp_path / "other", seed=4), device="cpu")
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    MatryoshkaChroma("notes", MatryoshkaEmbeddings(a), client=client).add_texts(["ferritine basse"], ids=["a"])
    with pytest.raises(CollectionMismatchError) as err:
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(b), client=client)
    assert "reindex" in str(err.value) and "default model changed" not in str(err.value)


def test_finetune_without_a_model_starts_from_the_plain_base(monkeypatch, tmp_path):
    """medrag's default is trained from the base: ``medrag finetune`` with no model must not stack on it."""
    import finetune.training as training

    seen = []

    class Stop(Exception):
        pass

    def fake_load(spec, device=None):
        seen.append(spec)
        raise Stop

    monkeypatch.setattr(training, "load_model", fake_load)
    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QADataset, QAPair

    ds = QADataset([QAPair("q", "a"), QAPair("q2", "b")], [], "tiny")
    with pytest.raises(Stop):
        training.MatryoshkaFinetuner(FinetuneConfig(device="cpu", output_dir=str(tmp_path / "out")), dataset=ds).run()
    assert seen == [BUNDLED_SPEC]


def test_a_store_of_the_defaults_earlier_weights_names_the_spec_that_ships_them(tmp_path, tiny_model_dir, monkeypatch):
    """bundled:medrag-e5-small-fr got new weights (December 6); the earlier ones ship as
    bundled:medrag-e5-small-fr-head. A store built with them names that spec, and opens with it."""
    import chromadb

    import medrag.adapters
    from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
    from medrag.models import model_fingerprint
    from tests.tiny_model import build_tiny_model

    old = medrag.load_model(tiny_model_dir, device="cpu")
    old.medrag_spec = MEDRAG_MODEL_SPEC
    new = medrag.load_model(build_tiny_model(tmp_path / "new-weights", seed=5), device="cpu")
    new.medrag_spec = MEDRAG_MODEL_SPEC
    former = medrag.load_model(tiny_model_dir, device="cpu")  # the earlier weights under their new name
    former.medrag_spec = "bundled:medrag-e5-small-fr-head"
    old_fp = model_fingerprint(old)
    monkeypatch.setattr(medrag.adapters, "former_weights_spec",
                        lambda spec, fp, root=None: former.medrag_spec if (spec, fp) == (MEDRAG_MODEL_SPEC, old_fp) else None)
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    MatryoshkaChroma("notes", MatryoshkaEmbeddings(old), client=client).add_texts(["ferritine basse"], ids=["a"])
    with pytest.raises(CollectionMismatchError) as err:
        MatryoshkaChroma("notes", MatryoshkaEmbeddings(new), client=client)
    message = str(err.value)
    assert "ship as 'bundled:medrag-e5-small-fr-head'" in message and "damaged" not in message
    assert "MatryoshkaEmbeddings('bundled:medrag-e5-small-fr-head')" in message and "reindex" in message
    kept = MatryoshkaChroma("notes", MatryoshkaEmbeddings(former), client=client)  # same weights: it opens
    assert [d.page_content for d in kept.similarity_search("ferritine", k=1)] == ["ferritine basse"]
    # and records the name that loads these weights now (the shell opens a store with the name it records)
    assert client.get_collection("notes").metadata["medrag:model"] == "bundled:medrag-e5-small-fr-head"


def test_the_head_model_ships_the_earlier_default_weights():
    """Its adapter is byte for byte the default's of December 3-6 (that file's sha256, checked against
    the file by test_shipped_adapters_are_complete_and_small), and its config claims their fingerprints."""
    from importlib.resources import files

    from medrag.adapters import former_weights_spec, read_adapter_config

    head = read_adapter_config(Path(str(files("medrag") / "data" / "models" / "medrag-e5-small-fr-head")))
    assert head["sha256"] == "7e439e166322b72f82d8580f57cdfbfc92b78b1df23079f0a3b9b129dcb8df44"

    assert former_weights_spec(MEDRAG_MODEL_SPEC, "af88ba4c87244c69") == "bundled:medrag-e5-small-fr-head"
    assert former_weights_spec(MEDRAG_MODEL_SPEC, "bae34d418679f15b") == "bundled:medrag-e5-small-fr-head"
    assert former_weights_spec(MEDRAG_MODEL_SPEC, "0000000000000000") is None
    assert former_weights_spec("bundled:medrag-e5-small-fr-nc", "af88ba4c87244c69") is None


@pytest.mark.integration
def test_the_head_models_fingerprint_is_the_one_its_config_claims(monkeypatch):
    from importlib.resources import files

    from medrag.adapters import read_adapter_config
    from medrag.models import TRANSFORMERS_RELEASES_BEFORE_V3, _fingerprint, model_fingerprint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = medrag.load_model("bundled:medrag-e5-small-fr-head", device="cpu")
    claimed = read_adapter_config(Path(str(files("medrag") / "data" / "models" / "medrag-e5-small-fr-head")))
    # a store of December 2-5 recorded the id that hashed its transformers version: every release's is claimed,
    # or after a transformers upgrade the store was not known as these weights' (upgrade tryout)
    assert claimed["formerly"][0]["fingerprints"] == [
        model_fingerprint(model), *(_fingerprint(model, version=2, transformers_version=v)
                                    for v in TRANSFORMERS_RELEASES_BEFORE_V3)]
