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
    assert medrag.models.bundled_specs() == [BUNDLED_SPEC, MEDRAG_MODEL_SPEC, "bundled:medrag-e5-small-fr-nc"]


def test_the_shipped_models_say_they_are_matryoshka_trained() -> None:
    """Their matryoshka.json names the base they were trained from, so MatryoshkaEmbeddings reports
    matryoshka_trained and the store fits their learned coarse stage 10 steps, not 150 (measured
    0.849 vs 0.805 recall@10 on dev: docs/benchmarks.md, "Coarse fit steps per model kind")."""
    from importlib.resources import files

    from medrag.metadata import MatryoshkaMetadata

    for name in ("medrag-e5-small-fr", "medrag-e5-small-fr-nc"):
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
