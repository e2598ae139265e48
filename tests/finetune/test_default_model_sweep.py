"""The default-model sweep's exact shortcut for frozen-encoder candidates (benchmarks/default_model_sweep.py):
reading a saved head, applying it, and the weight-space interpolation of ``--interpolate``."""

from __future__ import annotations

import importlib.util

import numpy as np

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("default_model_sweep", REPO / "benchmarks" / "default_model_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_interpolation_mixes_weights_and_bias():
    trained = (np.full((2, 2), 3.0, np.float32), np.array([1.0, -1.0], np.float32))
    init = (np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
    w, b = sweep.interpolate(trained, init, 0.25)
    np.testing.assert_allclose(w, [[1.5, 0.75], [0.75, 1.5]])
    np.testing.assert_allclose(b, [0.25, -0.25])
    for alpha, expected in ((1.0, trained), (0.0, init)):
        got = sweep.interpolate(trained, init, alpha)
        assert all(np.allclose(g, e) for g, e in zip(got, expected))


def test_applied_head_gives_unit_vectors_and_none_is_the_base():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 4)).astype(np.float32)
    head = (rng.normal(size=(4, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32))
    out = sweep.apply(vecs, head)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out * np.linalg.norm(vecs @ head[0].T + head[1], axis=1, keepdims=True),
                               vecs @ head[0].T + head[1], rtol=1e-4, atol=1e-5)
    assert sweep.apply(vecs, None) is vecs


def _folder_with_recipe(tmp_path, tiny_model_dir, recipe):
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "matryoshka.json").write_text(json.dumps({"extra": {"recipe": recipe}}))
    return folder


def test_a_model_whose_encoder_was_trained_is_not_scored_as_a_head(tmp_path, tiny_model_dir):
    """The default since December 6 trains the encoder's last block: read as a head over the base's
    vectors it would print wrong numbers, silently."""
    import pytest

    for i, recipe in enumerate(({"freeze_encoder": True, "top_block_epochs": 6}, {"freeze_encoder": False, "lora_rank": 8})):
        with pytest.raises(SystemExit, match="not a linear map of the base's"):
            sweep.frozen_head(_folder_with_recipe(tmp_path / f"r{i}", tiny_model_dir, recipe))
    with pytest.raises(SystemExit, match="adapts the encoder's weights"):
        sweep.frozen_head("bundled:medrag-e5-small-fr")
    built = _folder_with_recipe(tmp_path / "built", tiny_model_dir, {})  # the default as built in the cache
    (built / "medrag_adapted.json").write_text('{"adapter": "medrag-e5-small-fr"}')
    with pytest.raises(SystemExit, match="adapts the encoder's weights"):
        sweep.frozen_head(built)
    with pytest.raises(SystemExit, match="no Dense layer"):  # a frozen recipe, but no head saved
        sweep.frozen_head(_folder_with_recipe(tmp_path / "plain", tiny_model_dir, {"freeze_encoder": True}))
