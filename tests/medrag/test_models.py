import json
import shutil

import numpy as np
import pytest
import torch

import medrag
from medrag.errors import InvalidInputError, ModelLoadError
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


@pytest.mark.parametrize("value", ["false", "no", 0, None])
def test_trust_remote_code_other_than_a_bool_is_refused_before_loading(monkeypatch, tiny_model_dir, value):
    """trust_remote_code="false" (a flag read from a config file or the environment) is truthy: the
    model folder's own code ran (user tryout)."""
    import sentence_transformers

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_load)
    with pytest.raises(InvalidInputError, match="trust_remote_code must be True or False"):
        medrag.load_model(tiny_model_dir, device="cpu", trust_remote_code=value)
    with pytest.raises(InvalidInputError, match="trust_remote_code must be True or False"):
        medrag.MatryoshkaEmbeddings(tiny_model_dir, device="cpu", trust_remote_code=value)


def test_e5_prompts_added_to_e5_models_without_prompts(tmp_path, tiny_model_dir):
    folder = tmp_path / "multilingual-e5-base"
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"] = {}
    cfg.write_text(json.dumps(data))
    model = medrag.load_model(folder, device="cpu")
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "


@pytest.mark.parametrize("card, e5", [
    ("---\ntags:\n- mteb\nmodel-index:\n- name: multilingual-e5-small\n  results: []\n---\n# Multilingual-E5-small\n", True),
    ("---\nbase_model: intfloat/multilingual-e5-base\nlibrary_name: sentence-transformers\n---\n", True),
    ("---\nbase_model:\n- intfloat/e5-large\n---\n", True),
    ("---\nbase_model: intfloat/multilingual-e5-large-instruct\n---\n", False),
    ("---\nbase_model: BAAI/bge-m3\n---\nSee multilingual-e5-small for a smaller model.\n", False),
    ("# multilingual-e5-small\n(no front matter)\n", False),
])
def test_an_e5_folder_of_another_name_gets_the_e5_prompts_by_its_model_card(tmp_path, tiny_model_dir, card, e5):
    """e5 was recognised by its spec only: its hub download in a folder named "embedder" encoded
    without "query: " / "passage: " in silence (about -0.02 NDCG@10) (review)."""
    folder = tmp_path / "embedder"
    shutil.copytree(tiny_model_dir, folder)
    cfg = folder / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": {}}))
    (folder / "README.md").write_text(card)
    prompts = medrag.load_model(folder, device="cpu").prompts
    assert (prompts.get("query") or None, prompts.get("passage") or None) == (("query: ", "passage: ") if e5 else (None, None))


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

    from medrag.models import legacy_model_fingerprints

    copy = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / "model")
    a, b = medrag.load_model(tiny_model_dir, device="cpu"), medrag.load_model(copy, device="cpu")
    assert model_fingerprint(a) == model_fingerprint(b)
    # the fingerprint without the modules (until December 5) is the same, the one with the folder is not
    assert legacy_model_fingerprints(a)[0] == legacy_model_fingerprints(b)[0]
    assert legacy_model_fingerprints(a)[1] != legacy_model_fingerprints(b)[1]
    emb = medrag.MatryoshkaEmbeddings(a)
    assert emb.legacy_fingerprints == legacy_model_fingerprints(a)


def test_fingerprint_does_not_change_with_the_transformers_version(tiny_model_dir, monkeypatch):
    """config.to_dict() writes the installed transformers version: upgrading transformers changed every
    fingerprint, and every store was refused as built with another model (review)."""
    import transformers.configuration_utils as configuration_utils

    model = medrag.load_model(tiny_model_dir, device="cpu")
    before = model_fingerprint(model)
    monkeypatch.setattr(configuration_utils, "__version__", "99.0.0")
    assert model[0].auto_model.config.to_dict()["transformers_version"] == "99.0.0"
    assert model_fingerprint(model) == before


def test_a_fingerprint_recorded_under_another_transformers_version_is_still_recognised(tiny_model_dir, monkeypatch):
    """Fingerprints recorded December 2-5 hashed the installed transformers version: after an upgrade
    the same weights were refused as another model, with advice (delete the model folder) that did not
    help (upgrade tryout). Every release medrag could have run with then is tried."""
    import transformers.configuration_utils as configuration_utils

    from medrag.models import TRANSFORMERS_RELEASES_BEFORE_V3, _fingerprint, legacy_model_fingerprints

    model = medrag.load_model(tiny_model_dir, device="cpu")
    monkeypatch.setattr(configuration_utils, "__version__", "5.3.0")  # the store was written under 5.3.0
    recorded = {_fingerprint(model, version=2), _fingerprint(model, version=1)}
    monkeypatch.undo()  # transformers upgraded since
    assert not recorded & set(legacy_model_fingerprints(model)[:2])  # the installed version's ids differ
    assert recorded <= set(legacy_model_fingerprints(model))
    assert model_fingerprint(model) not in legacy_model_fingerprints(model)
    # a version never released under transformers>=5 before December 5 is not tried
    assert "4.57.1" not in TRANSFORMERS_RELEASES_BEFORE_V3 and "5.0.0" in TRANSFORMERS_RELEASES_BEFORE_V3
    monkeypatch.setattr(configuration_utils, "__version__", "5.99.0")
    unknown = _fingerprint(model, version=2)
    monkeypatch.undo()
    assert unknown not in legacy_model_fingerprints(model)


def test_fingerprint_tells_two_poolings_of_the_same_weights_apart(tiny_model_dir, tmp_path):
    """A copy of a model with CLS pooling had the mean-pooled model's fingerprint, so the evaluation's
    cache returned the other pooling's vectors and a store accepted them (user tryout)."""
    import json
    import shutil

    copy = shutil.copytree(tiny_model_dir, tmp_path / "cls")
    pooling = next(copy.glob("*Pooling/config.json"))
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True,
                                   "pooling_mode": "cls"}))
    a, b = medrag.load_model(tiny_model_dir, device="cpu"), medrag.load_model(copy, device="cpu")
    assert b[1].get_config_dict()["pooling_mode"] == "cls"
    assert model_fingerprint(a) != model_fingerprint(b)
    assert medrag.MatryoshkaEmbeddings(b).legacy_fingerprints[0] == medrag.MatryoshkaEmbeddings(a).legacy_fingerprints[0]


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


def _no_network(monkeypatch):
    """No route to the hub, no proxy (the environment's only: a test machine's own settings aside)."""
    import socket
    import urllib.request

    from huggingface_hub import constants

    def refuse(address, timeout=None):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets offline mode
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "getproxies", urllib.request.getproxies_environment)


def _record_loads(monkeypatch) -> dict:
    """What sentence-transformers is asked to load (the path and keyword arguments); it then fails."""
    import sentence_transformers

    seen: dict = {}

    def fake(path, **kwargs):
        seen.update(kwargs, path=path)
        raise RuntimeError("stop here")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", fake)
    return seen


def test_an_unreachable_hub_fails_at_once_for_an_uncached_model(monkeypatch):
    """Without network a hub id took about 90 s of retried requests (a warning per retry) to fail."""
    _no_network(monkeypatch)
    seen = _record_loads(monkeypatch)
    with pytest.raises(ModelLoadError, match=r"'intfloat/multilingual-e5-large': the hub cannot be reached "
                                             r"\(huggingface.co:443: .*Name or service not known\).*bundled:"):
        medrag.load_model("intfloat/multilingual-e5-large")
    assert not seen  # the hub was not asked


def test_an_unreachable_hub_loads_a_cached_model_from_the_cache_only(monkeypatch):
    import huggingface_hub

    _no_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    seen = _record_loads(monkeypatch)
    with pytest.raises(ModelLoadError):
        medrag.load_model("intfloat/multilingual-e5-large")
    assert seen["path"] == "intfloat/multilingual-e5-large" and seen["local_files_only"] is True


@pytest.mark.parametrize("proxy", ["environment", "system"])
def test_a_proxy_skips_the_hub_probe(monkeypatch, proxy):
    """Behind a proxy the hub is reached through it: a direct connection failing says nothing. httpx
    (under huggingface_hub) uses the system's proxy settings (macOS, Windows registry) too."""
    _no_network(monkeypatch)
    if proxy == "environment":
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.local:3128")
    else:
        monkeypatch.setattr("urllib.request.getproxies", lambda: {"https": "http://proxy.hospital.local:3128"})
    seen = _record_loads(monkeypatch)
    with pytest.raises(ModelLoadError, match="the hub could not be reached or has no such model"):
        medrag.load_model("intfloat/multilingual-e5-large")
    assert seen["path"] == "intfloat/multilingual-e5-large" and "local_files_only" not in seen


@pytest.mark.parametrize("device, message", [("cuda", "CUDA is not available"), ("cuda:0", "CUDA is not available"),
                                             ("gpu", "unknown device"), ("mps", "MPS is not available")])
def test_a_device_this_machine_lacks_is_a_model_load_error(tiny_model_dir, monkeypatch, device, message):
    """torch's own failure was a bare AssertionError ('Torch not compiled with CUDA enabled')."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match=message):
        medrag.load_model(str(tiny_model_dir), device=device)


def test_a_cuda_index_beyond_the_machine_is_refused(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelLoadError, match="has 1 CUDA device"):
        medrag.load_model(str(tiny_model_dir), device="cuda:3")


def test_the_cpu_device_loads(tiny_model_dir):
    assert medrag.load_model(str(tiny_model_dir), device="cpu").device.type == "cpu"


def test_an_adapter_export_folder_loads_as_its_model(tmp_path, tiny_model_dir, monkeypatch):
    """An adapter export was refused ("load the --output-dir folder instead"): the few-MB adapter could
    not ship to an application; it is built over its recorded base into the cache on first use."""
    from medrag.adapters import check_vector
    from tests.medrag.test_adapters import write_tiny_adapter

    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    folder = write_tiny_adapter(tmp_path / "shipped" / "helpdesk", tiny_model_dir, name="helpdesk")
    model = medrag.load_model(str(folder), device="cpu")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert np.allclose(check_vector(model), config["check_vector"], atol=1e-4)
    emb = medrag.MatryoshkaEmbeddings(str(folder), dimension="auto")
    assert emb.dims == [128, 64, 32] and emb.dimension == 64  # its matryoshka.json: 64 within 1% of 128
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="is not a medrag adapter config"):
        medrag.load_model(str(broken))


def test_a_medrag_folder_without_modules_json_is_refused(tmp_path, tiny_model_dir):
    """It loaded as a bare transformer (no head, no normalisation, no prompts) with its trained sizes."""
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "matryoshka.json").write_text(json.dumps({"full_dim": 128, "dims": [128, 64]}))
    medrag.load_model(folder, device="cpu")  # complete: loads
    (folder / "modules.json").unlink()
    with pytest.raises(ModelLoadError, match="incomplete sentence-transformers folder.*modules.json"):
        medrag.load_model(folder, device="cpu")
    # a plain transformers folder (config.json only) with scores written by --write-metadata still loads
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir / "_hf", plain)
    (plain / "matryoshka.json").write_text(json.dumps({"full_dim": 128, "dims": [128, 64]}))
    assert medrag.load_model(plain, device="cpu").encode(["bonjour"]).shape == (1, 128)


def test_a_tokenizer_far_smaller_than_the_vocabulary_is_refused():
    """Without tokenizer.json an e5 folder loaded a 5-token tokenizer: every word <unk>, near-equal vectors."""
    from types import SimpleNamespace

    from medrag.models import _check_tokenizer

    class Model(list):
        def __init__(self, tokens, vocab):
            super().__init__([SimpleNamespace(auto_model=SimpleNamespace(config=SimpleNamespace(vocab_size=vocab)))])
            self.tokenizer = list(range(tokens))

    _check_tokenizer(Model(250002, 250037), "ok")  # a few added or padded entries: fine
    with pytest.raises(ModelLoadError, match="5 tokens for a model vocabulary of 250037"):
        _check_tokenizer(Model(5, 250037), "broken")
    _check_tokenizer(object(), "not a transformers model")  # nothing to compare: no error


@pytest.mark.integration
def test_an_e5_folder_without_its_tokenizer_is_refused(tmp_path, e5_small):
    from medrag.bundled import ensure_bundled_model

    source = ensure_bundled_model()
    folder = tmp_path / "e5-copy"
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != "tokenizer.json":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    with pytest.raises(ModelLoadError, match="tokenizer"):
        medrag.load_model(folder, device="cpu")


def test_a_first_use_build_draws_no_transformers_bars_into_a_log(monkeypatch):
    """Building the embedded model into the cache (loads and saves) drew transformers' "Loading
    weights" and "Writing model shards" bars into non-terminal stderr: CI logs and log files got
    lines of carriage-return noise (review). Only a terminal gets them."""
    from transformers.utils import logging as hf_logging

    import medrag.models

    seen = []

    def build(spec):
        seen.append(hf_logging.is_progress_bar_enabled())
        raise ModelLoadError("stop here")

    monkeypatch.setattr(medrag.models, "bundled_folder", build)
    monkeypatch.setattr(medrag.models.sys.stderr, "isatty", lambda: False, raising=False)
    hf_logging.enable_progress_bar()
    with pytest.raises(ModelLoadError, match="stop here"):
        medrag.load_model("bundled:multilingual-e5-small")
    assert seen == [False] and hf_logging.is_progress_bar_enabled()  # off during the build, then restored
    monkeypatch.setattr(medrag.models.sys.stderr, "isatty", lambda: True, raising=False)
    with pytest.raises(ModelLoadError, match="stop here"):
        medrag.load_model("bundled:multilingual-e5-small")
    assert seen == [False, True]


def test_spec_errors_name_every_embedded_model_and_the_local_folder_case(monkeypatch, tmp_path):
    """A mistyped spec was answered with a list that left out the default model; a missing local
    folder written like the README's ("outputs/my-model", no outputs/ here) read as an unreachable hub
    model only (audit)."""
    with pytest.raises(ModelLoadError, match="nor an embedded model: 'bundled:multilingual-e5-small', "
                                             "'bundled:medrag-e5-small-fr'.*is the default"):
        medrag.load_model("medrag-e5-small-fr")
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=f"nor is there a local folder of that name in {tmp_path}"):
        medrag.load_model("outputs/e5-small-medical")


def test_a_model_folder_this_user_cannot_read_is_a_model_load_error(tmp_path, monkeypatch) -> None:
    """A folder the user cannot enter raised a raw PermissionError from the spec check (December 5
    audit; root reads every folder, so the filesystem's refusal is simulated here)."""
    from pathlib import Path

    import medrag.models as M
    from medrag.errors import ModelLoadError

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    (tmp_path / "model").mkdir()
    monkeypatch.setattr(Path, "is_file", refused)
    with pytest.raises(ModelLoadError, match="cannot be read by this user"):
        M.check_model_spec(str(tmp_path / "model"))


def test_a_forked_worker_encodes_on_one_thread(tiny_model_dir):
    """A worker forked after the parent encoded (gunicorn --preload, a fork pool) hung on its first
    encode: torch's OpenMP pool does not survive fork (user tryout). It now runs on one thread."""
    import subprocess
    import sys

    script = (
        "import faulthandler, os, sys, torch\n"
        "from medrag.models import load_model\n"
        "model = load_model(sys.argv[1], device='cpu')\n"
        "model.encode(['ferritine basse'] * 8)\n"
        "threads = torch.get_num_threads()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    faulthandler.dump_traceback_later(120, exit=True)\n"
        "    model.encode(['ferritine basse'] * 8)\n"
        "    print('child threads', torch.get_num_threads(), flush=True)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child exit', os.waitstatus_to_exitcode(status), 'parent threads', torch.get_num_threads(), threads)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tiny_model_dir)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split("\n")
    assert "child threads 1" in lines, run.stdout
    exit_line = next(line for line in lines if line.startswith("child exit"))
    assert exit_line.split()[2] == "0" and exit_line.split()[5] == exit_line.split()[6]  # the parent keeps its threads
