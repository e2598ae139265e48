"""The loop's checkpoints: what a refused --resume says (finetune/loop_checkpoints.py)."""

from __future__ import annotations

import json

import pytest

from finetune.loop_checkpoints import STATE_FILENAME, LoopCheckpoints, refused_resume
from medrag.errors import ConfigError


def _saved(tmp_path, settings):
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = LoopCheckpoints(tmp_path / "checkpoints", "old-key", settings=settings).save(3, model, optimizer, scheduler, {})
    return path, model, optimizer, scheduler


def test_a_checkpoint_of_an_earlier_medrag_is_named_so(tmp_path) -> None:
    """An earlier medrag's checkpoint (no recorded settings) was refused as "a run with other training
    settings or data", which sent an upgrading user looking for a change never made (upgrade tryout)."""
    import torch

    path, model, optimizer, scheduler = _saved(tmp_path, {"settings": {"learning_rate": 2e-5}, "dims": [8, 4]})
    state = torch.load(path / STATE_FILENAME, weights_only=True)
    del state["run_settings"]  # as the checkpoints written before December 6
    torch.save(state, path / STATE_FILENAME)
    now = LoopCheckpoints(tmp_path / "checkpoints", "new-key", settings={"settings": {"learning_rate": 2e-5},
                                                                         "dims": [8, 4]})
    with pytest.raises(ConfigError, match=r"written by an earlier medrag \(before December 6") as caught:
        now.load(path, model, optimizer, scheduler)
    assert "other training settings or data" not in str(caught.value)


def test_settings_an_earlier_medrag_did_not_have_are_named(tmp_path) -> None:
    path, model, optimizer, scheduler = _saved(tmp_path, {"settings": {"learning_rate": 2e-5}, "dims": [8, 4]})
    now = LoopCheckpoints(tmp_path / "checkpoints", "new-key",
                          settings={"settings": {"learning_rate": 2e-5, "new_option": 0.5}, "dims": [8, 4]})
    with pytest.raises(ConfigError, match=r"settings it did not record: new_option: an earlier medrag wrote it"):
        now.load(path, model, optimizer, scheduler)


def test_the_refusal_names_what_differs() -> None:
    saved = json.dumps({"settings": {"learning_rate": 2e-5, "epochs": 1}, "dims": [8, 4]})
    same = {"settings": {"learning_rate": 2e-5, "epochs": 1}, "dims": [8, 4]}
    assert "other training data (the same settings)" in str(refused_resume("x", saved, same, legacy="-"))
    other = {"settings": {"learning_rate": 1e-3, "epochs": 1}, "dims": [8, 4]}
    assert "(learning_rate: 2e-05 -> 0.001)" in str(refused_resume("x", saved, other, legacy="-"))
    # a Trainer's run_key.json recorded no settings until December 7: both causes are possible
    message = str(refused_resume("x", None, same, legacy="before December 7"))
    assert "other training settings or data, or by an earlier medrag (before December 7" in message
