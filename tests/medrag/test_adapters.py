"""Packaged adapters (``bundled:<name>``): build over a base, cache, and clear errors for bad files.

The adapter here is made by hand over the tiny model (random LoRA matrices), in the documented format
of :mod:`medrag.adapters`; tests/finetune/test_loop.py checks that a trained, exported one rebuilds
the trained model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import medrag
from medrag.adapters import (ADAPTER_CONFIG, ADAPTER_FILE, MARKER, build_adapted_model, check_vector,
                             ensure_adapted_model, is_valid_build, packaged_models, read_adapter_config)
from medrag.errors import ModelLoadError

WEIGHTS = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.1.output.dense.weight"]


def write_tiny_adapter(folder: Path, base: Path, name: str = "tiny-fr", rotation: bool = True) -> Path:
    """A rank-2 adapter over the tiny model at ``base``: LoRA on two weights and a random rotation."""
    from safetensors.numpy import save_file

    from medrag.adapters import base_weights_fingerprint

    base_model = medrag.load_model(base, device="cpu")
    params = dict(base_model[0].auto_model.named_parameters())
    rng = np.random.default_rng(0)
    tensors = {}
    for w in WEIGHTS:
        out_dim, in_dim = params[w].shape
        tensors[f"{w}.lora_A"] = rng.normal(0, 0.3, (2, in_dim)).astype(np.float16)
        tensors[f"{w}.lora_B"] = rng.normal(0, 0.3, (out_dim, 2)).astype(np.float16)
    if rotation:
        q, _ = np.linalg.qr(rng.normal(size=(128, 128)))
        tensors["rotation.weight"] = q.astype(np.float32)
        tensors["rotation.bias"] = np.zeros(128, dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / ADAPTER_FILE))
    config = {"format": "medrag-adapter", "format_version": 1, "name": name, "base_model": str(base),
              "base_fingerprint": base_weights_fingerprint(base_model),
              "sha256": hashlib.sha256((folder / ADAPTER_FILE).read_bytes()).hexdigest()}
    (folder / "matryoshka.json").write_text(json.dumps(
        {"schema_version": 1, "full_dim": 128, "dims": [128, 64, 32],
         "scores": {"128": {"ndcg@10": 0.50}, "64": {"ndcg@10": 0.497}, "32": {"ndcg@10": 0.40}}}))
    (folder / "README.md").write_text(f"# {name}\n")
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    build = build_adapted_model(folder, base, folder.parent / f".check-{name}", check=False)
    config["check_vector"] = check_vector(build).tolist()
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    return folder


@pytest.fixture()
def packaged(tmp_path, tiny_model_dir, monkeypatch):
    """A models folder holding the tiny adapter, a cache dir, and bundled:tiny-fr wired to the tiny base."""
    import medrag.adapters as adapters

    models = tmp_path / "models"
    write_tiny_adapter(models / "tiny-fr", tiny_model_dir)
    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(adapters, "packaged_models_dir", lambda: models)
    real = adapters.ensure_adapted_model
    monkeypatch.setattr(adapters, "ensure_adapted_model",
                        lambda name, **kw: real(name, base=tiny_model_dir, **kw))
    return models


def test_adapter_merges_lora_and_appends_the_rotation(packaged, tiny_model_dir):
    model = medrag.load_model("bundled:tiny-fr", device="cpu")
    base = medrag.load_model(tiny_model_dir, device="cpu")
    assert model.medrag_spec == "bundled:tiny-fr"
    assert [type(m).__name__ for m in model][-2:] == ["Dense", "Normalize"]
    tensors = __import__("safetensors.numpy", fromlist=["load_file"]).load_file(str(packaged / "tiny-fr" / ADAPTER_FILE))
    w = WEIGHTS[0]
    expected = base[0].auto_model.get_parameter(w).detach().numpy() + (
        tensors[f"{w}.lora_B"].astype(np.float32) @ tensors[f"{w}.lora_A"].astype(np.float32))
    got = model[0].auto_model.get_parameter(w).detach().numpy()
    assert np.allclose(got, expected, atol=1e-5)
    untouched = "encoder.layer.0.attention.self.key.weight"
    assert np.array_equal(model[0].auto_model.get_parameter(untouched).detach().numpy(),
                          base[0].auto_model.get_parameter(untouched).detach().numpy())


def test_adapter_metadata_drives_auto_dimension(packaged):
    emb = medrag.MatryoshkaEmbeddings("bundled:tiny-fr", dimension="auto")
    assert emb.dims == [128, 64, 32] and emb.dimension == 64  # 0.497 is within 1% of 0.50


def test_a_copied_adapter_reads_its_own_scores_and_never_changes_the_packaged_ones(packaged, tmp_path):
    """``medrag evaluate --write-metadata`` on a copy of a packaged adapter was ignored (the cached build
    kept the copy of matryoshka.json made when it was built) and, when the copy was built first, its
    scores became the packaged model's: both share one build (user tryout)."""
    import shutil

    copy = tmp_path / "mine"
    shutil.copytree(packaged / "tiny-fr", copy)
    scores = {"schema_version": 1, "full_dim": 128, "dims": [128, 64, 32],
              "scores": {"128": {"ndcg@10": 0.50}, "64": {"ndcg@10": 0.40}, "32": {"ndcg@10": 0.499}}}
    (copy / "matryoshka.json").write_text(json.dumps(scores))
    assert medrag.MatryoshkaEmbeddings(str(copy), dimension="auto").dimension == 32  # built first
    assert medrag.MatryoshkaEmbeddings("bundled:tiny-fr", dimension="auto").dimension == 64  # its own scores
    scores["scores"]["32"] = {"ndcg@10": 0.30}
    (copy / "matryoshka.json").write_text(json.dumps(scores))  # scored again after the build
    assert medrag.MatryoshkaEmbeddings(str(copy), dimension="auto").dimension == 128


def test_build_is_cached_with_a_marker_and_rebuilt_when_corrupt(packaged, tiny_model_dir):
    import medrag.adapters as adapters

    first = adapters.ensure_adapted_model("tiny-fr")
    marker = json.loads((first / MARKER).read_text())
    assert marker["adapter"] == "tiny-fr" and is_valid_build(first, read_adapter_config(packaged / "tiny-fr"))
    stamp = (first / MARKER).stat().st_mtime_ns
    assert adapters.ensure_adapted_model("tiny-fr") == first and (first / MARKER).stat().st_mtime_ns == stamp
    weights = next(first.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a crash mid-copy
    assert not is_valid_build(first, read_adapter_config(packaged / "tiny-fr"))
    again = adapters.ensure_adapted_model("tiny-fr")
    assert again == first and is_valid_build(again, read_adapter_config(packaged / "tiny-fr"))
    assert medrag.load_model(again, device="cpu").encode(["glycémie"]).shape == (1, 128)


def test_missing_adapter_file_is_a_clear_error(packaged):
    (packaged / "tiny-fr" / ADAPTER_FILE).unlink()
    with pytest.raises(ModelLoadError, match="adapter weights .* are missing .* reinstall medrag"):
        medrag.load_model("bundled:tiny-fr", device="cpu")


def test_corrupt_adapter_file_is_a_clear_error(packaged):
    path = packaged / "tiny-fr" / ADAPTER_FILE
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match="adapter weights .* are corrupt .* reinstall medrag"):
        medrag.load_model("bundled:tiny-fr", device="cpu")


def test_corrupt_or_missing_adapter_config_is_a_clear_error(packaged):
    (packaged / "tiny-fr" / ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read the adapter config"):
        medrag.load_model("bundled:tiny-fr", device="cpu")
    (packaged / "tiny-fr" / ADAPTER_CONFIG).unlink()
    with pytest.raises(ModelLoadError, match="unknown embedded model 'bundled:tiny-fr'"):
        medrag.load_model("bundled:tiny-fr", device="cpu")


def test_adapter_for_other_base_weights_is_refused(packaged, tmp_path):
    from tests.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other-base", seed=1)
    with pytest.raises(ModelLoadError, match="trained on base weights with fingerprint"):
        ensure_adapted_model("tiny-fr", models_root=packaged, base=other, cache_root=tmp_path / "c2")


def test_check_vector_mismatch_is_refused(packaged, tiny_model_dir, tmp_path):
    config_path = packaged / "tiny-fr" / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["check_vector"] = [-x for x in config["check_vector"]]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not reproduce its check vector"):
        ensure_adapted_model("tiny-fr", models_root=packaged, base=tiny_model_dir, cache_root=tmp_path / "c3")


def test_unknown_bundled_name_lists_the_available_specs():
    with pytest.raises(ModelLoadError, match=r"unknown embedded model 'bundled:nope'.*bundled:multilingual-e5-small"):
        medrag.load_model("bundled:nope")


def test_shipped_adapters_are_complete_and_small():
    """Every adapter in the package has its files, a matching sha256, and fits the 15 MB budget."""
    from medrag.adapters import packaged_models_dir

    for name in packaged_models():
        folder = packaged_models_dir() / name
        config = read_adapter_config(folder)
        assert config["name"] == name
        assert hashlib.sha256((folder / ADAPTER_FILE).read_bytes()).hexdigest() == config["sha256"]
        assert sum(p.stat().st_size for p in folder.iterdir()) <= 15 * 1024 * 1024
        meta = json.loads((folder / "matryoshka.json").read_text())
        assert {int(d) for d in meta["scores"]} >= {384, 256, 128, 64, 32}
        assert "licen" in (folder / "README.md").read_text().lower()


@pytest.mark.integration
def test_the_default_model_builds_offline_from_a_fresh_cache(tmp_path, monkeypatch):
    """A clean install: no cache, no network; load_model() converts the base, applies the packaged
    adapter, checks it, and MatryoshkaEmbeddings picks a size from its matryoshka.json."""
    from medrag.bundled import DEFAULT_SPEC

    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = medrag.load_model(device="cpu")
    assert model.medrag_spec == DEFAULT_SPEC == "bundled:medrag-e5-small-fr"
    assert [type(m).__name__ for m in model][-2:] == ["Dense", "Normalize"]
    emb = medrag.MatryoshkaEmbeddings(model, dimension="auto")
    assert emb.dims == [384, 256, 128, 64, 32] and emb.metadata.extra["rotation_folded"] is True
    assert emb.dimension < 384  # the validation macro-average is within 1% of full size below 384
    q = np.array(emb.embed_query("Quels sont les effets indésirables du paracétamol ?"))
    d = np.array(emb.embed_documents(["Le paracétamol peut provoquer de rares atteintes du foie en cas de surdosage.",
                                      "La fracture du col du fémur touche surtout les personnes âgées."]))
    assert q @ d[0] > q @ d[1]


@pytest.mark.integration
def test_the_non_commercial_variant_loads_offline_and_is_never_the_default(monkeypatch):
    """bundled:medrag-e5-small-fr-nc (trained with CC BY-NC drug leaflets) is a separate spec: it loads
    offline over the same base, its card and matryoshka.json say non-commercial, and the default is unchanged."""
    from medrag.adapters import packaged_models_dir
    from medrag.bundled import DEFAULT_SPEC

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = packaged_models_dir() / "medrag-e5-small-fr-nc"
    card = (folder / "README.md").read_text()
    assert card.startswith("# medrag-e5-small-fr-nc (non-commercial)") and "CC BY-NC" in card
    assert "non-commercial use only" in card
    assert DEFAULT_SPEC == "bundled:medrag-e5-small-fr"
    assert "leaflets" not in json.dumps(read_adapter_config(packaged_models_dir() / "medrag-e5-small-fr"))
    emb = medrag.MatryoshkaEmbeddings("bundled:medrag-e5-small-fr-nc", dimension=64)
    assert emb.spec == "bundled:medrag-e5-small-fr-nc" and emb.dims == [384, 256, 128, 64, 32]
    q = np.array(emb.embed_query("Que faire en cas d'oubli d'une dose de DOLIPRANE 500 mg ?"))
    d = np.array(emb.embed_documents([
        "DOLIPRANE 500 mg : Ne prenez pas de dose double pour compenser la dose que vous avez oublié de prendre.",
        "DOLIPRANE 500 mg : Conservez ce médicament hors de la vue et de la portée des enfants."]))
    assert q @ d[0] > q @ d[1]


def test_base_fingerprint_does_not_depend_on_the_folder(tiny_model_dir, tmp_path):
    """The same converted base in two cache dirs must accept the same adapter."""
    import shutil

    from medrag.adapters import base_weights_fingerprint

    copy = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / "tiny")
    a = medrag.load_model(tiny_model_dir, device="cpu")
    b = medrag.load_model(copy, device="cpu")
    assert base_weights_fingerprint(a) == base_weights_fingerprint(b)


def test_the_build_checks_draw_no_progress_bar_in_a_service_log(tiny_model_dir, capfd) -> None:
    """With logging at INFO (a service, medrag -v), the check encode after each build wrote
    sentence-transformers' "Batches: 0%|" bars, carriage returns included, into non-TTY logs (ops tryout)."""
    import logging

    from medrag.adapters import check_vector
    from medrag.bundled import _check_converted

    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    st_logger.setLevel(logging.INFO)
    try:
        capfd.readouterr()
        check_vector(tiny_model_dir)
        try:
            _check_converted(tiny_model_dir)
        except Exception:  # noqa: BLE001 - the tiny model is no e5 conversion: only its bar matters here
            pass
    finally:
        st_logger.setLevel(level)
    assert "Batches" not in capfd.readouterr().err


def test_a_new_build_names_the_earlier_builds_left_in_the_cache(packaged, tmp_path, caplog):
    """An upgrade left the earlier weights' build (466 MB) in the cache and nothing said it could go
    (upgrade tryout)."""
    import medrag.adapters as adapters

    models = tmp_path / "cache" / "models"
    old = models / "tiny-fr-0123456789ab-on-tiny-model-b1"
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"x" * 1000)
    (models / "tiny-fr-extra-0123456789ab-on-tiny-model-b1").mkdir()  # another model's: not named
    (models / "tiny-fr-0123456789ab-on-other-base-b1").mkdir()  # a build on another base: not named (review)
    with caplog.at_level("INFO", logger="medrag.adapters"):
        first = adapters.ensure_adapted_model("tiny-fr")
    assert "earlier builds of tiny-fr remain" in caplog.text and old.name in caplog.text
    assert "tiny-fr-extra" not in caplog.text and "other-base" not in caplog.text
    assert adapters.earlier_builds(first, "tiny-fr", "tiny-model") == [old]
    from medrag.command import NOTICE_LOGGERS

    assert "medrag.adapters" in NOTICE_LOGGERS  # shown by every command without -v, as README says
    caplog.clear()
    with caplog.at_level("INFO", logger="medrag.adapters"):
        adapters.ensure_adapted_model("tiny-fr")  # said once, when the new build is made
    assert "earlier builds" not in caplog.text
