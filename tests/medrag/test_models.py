import json
import shutil

import pytest
import torch

import medrag
from medrag.errors import ModelLoadError
from medrag.models import embedding_dim, model_fingerprint


def test_load_sentence_transformers_folder(tiny_model_dir):
    model = medrag.load_model(tiny_model_dir, device="cpu")
    assert embedding_dim(model) == 128
    assert model.medrag_spec == str(tiny_model_dir)


def test_load_plain_transformers_folder_gets_mean_pooling(tiny_model_dir):
    # tests/tiny_model.py keeps the raw transformers checkpoint in _hf (config.json, no modules.json)
    model = medrag.load_model(tiny_model_dir / "_hf", device="cpu")
    assert embedding_dim(model) == 128
    assert model.encode(["bonjour"]).shape == (1, 128)


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        medrag.load_model(tmp_path / "nope")


def test_folder_without_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="holds no model"):
        medrag.load_model(tmp_path)


def test_broken_folder_is_a_model_load_error(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        medrag.load_model(broken, device="cpu")


def test_hub_id_offline_names_spec_and_cause(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        medrag.load_model("intfloat/multilingual-e5-large")
    text = str(err.value)
    assert "intfloat/multilingual-e5-large" in text and "offline" in text and "bundled:" in text


@pytest.mark.parametrize("spec", ["bundled:other-model", "", "not a spec!"])
def test_bad_specs(spec):
    with pytest.raises(ModelLoadError):
        medrag.load_model(spec)


def test_trust_remote_code_is_off_by_default(monkeypatch, tiny_model_dir):
    seen = {}
    import sentence_transformers

    real = sentence_transformers.SentenceTransformer

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", spy)
    medrag.load_model(tiny_model_dir, device="cpu")
    assert seen["trust_remote_code"] is False
    medrag.load_model(tiny_model_dir, device="cpu", trust_remote_code=True)
    assert seen["trust_remote_code"] is True


def test_e5_prompts_added_to_e5_models_without_prompts(tmp_path, tiny_model_dir):
    folder = tmp_path / "multilingual-e5-base"
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"] = {}
    cfg.write_text(json.dumps(data))
    model = medrag.load_model(folder, device="cpu")
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "


def test_fingerprint_is_stable_and_tracks_weights(tiny_model_dir):
    a = medrag.load_model(tiny_model_dir, device="cpu")
    b = medrag.load_model(tiny_model_dir, device="cpu")
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        next(b.parameters())[0, 0] += 1.0
    assert model_fingerprint(a) != model_fingerprint(b)


def test_fingerprint_does_not_depend_on_the_folder(tiny_model_dir, tmp_path):
    """The same model copied elsewhere (another MEDRAG_CACHE, a Docker image) keeps its fingerprint;
    the legacy fingerprint, which hashed the folder, does not."""
    import shutil

    from medrag.models import legacy_model_fingerprint

    copy = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / "model")
    a, b = medrag.load_model(tiny_model_dir, device="cpu"), medrag.load_model(copy, device="cpu")
    assert model_fingerprint(a) == model_fingerprint(b)
    assert legacy_model_fingerprint(a) != legacy_model_fingerprint(b)
    emb = medrag.MatryoshkaEmbeddings(a)
    assert emb.legacy_fingerprints == (legacy_model_fingerprint(a),)


def test_a_missing_relative_folder_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    """``outputs/my-model`` (the README's folder example) with an ``outputs`` folder here and no model in
    it was treated as a hub id: a minute of retries, then a message blaming the network."""
    import sentence_transformers

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked for a missing local folder")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(ModelLoadError, match="model folder 'outputs/my-model' does not exist"):
        medrag.load_model("outputs/my-model")


@pytest.mark.parametrize("spec", [5, 3.0, ["bundled:multilingual-e5-small"]])
def test_a_spec_that_is_not_a_string_is_a_model_load_error(spec):
    with pytest.raises(ModelLoadError, match="model spec"):
        medrag.load_model(spec)


def test_no_loading_bar_when_stderr_is_not_a_terminal(tiny_model_dir, capsys):
    """transformers drew a "Loading weights" bar on every load, also in logs and `medrag index --no-progress`."""
    from transformers.utils import logging as hf_logging

    medrag.load_model(str(tiny_model_dir))
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored for the caller
