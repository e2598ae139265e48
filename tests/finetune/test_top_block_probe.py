"""The last-block probe (benchmarks/top_block_probe.py): the cached block path is the model's own
embedding, its LoRA starts as the base block, and training moves only what it says it trains."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("top_block_probe", REPO / "benchmarks" / "top_block_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

TEXTS = ["Ferritine basse chez la femme enceinte.", "Doliprane 500 mg, un comprimé toutes les 6 heures.", "a",
         "Quels sont les effets indésirables de l'amoxicilline ?"]


@pytest.fixture
def last_layer(tiny_model, monkeypatch):
    """The tiny model has 2 layers: cache the input of its last one."""
    monkeypatch.setattr(probe, "CACHED_LAYER", len(tiny_model[0].auto_model.encoder.layer) - 1)
    return tiny_model


def test_the_cached_block_path_is_the_models_embedding(last_layer):
    states = probe.token_states(last_layer, TEXTS, "passage: ", 64, batch_size=3)
    assert len(states) == len(TEXTS) and states.flat.dtype == np.float16
    expected = last_layer.encode([f"passage: {t}" for t in TEXTS], convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(probe.TopBlockEncoder(last_layer).encode(states, batch_size=2), expected, atol=2e-3)


def test_lora_starts_as_the_base_block_and_trains_only_its_matrices(last_layer):
    import torch

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

    states = probe.token_states(last_layer, TEXTS * 2, "query: ", 64)
    encoder = probe.TopBlockEncoder(last_layer)
    before = encoder.encode(states)
    frozen = {n: p.detach().clone() for n, p in encoder.block.named_parameters()}
    wrapped = probe.add_block_lora(encoder.block, rank=4)
    assert len(wrapped) == 6  # q, k, v, attention output, intermediate, output
    np.testing.assert_allclose(encoder.encode(states), before, atol=1e-6)  # B = 0: the base block

    width = before.shape[1]
    encoder.head = torch.nn.Linear(width, width)
    with torch.no_grad():
        encoder.head.weight.copy_(torch.eye(width))
        encoder.head.bias.zero_()
    encoder.block = _unwrapped_copy(last_layer)  # train_block adds its own LoRA
    pairs = [QAPair(f"question {i}", f"passage {i}") for i in range(8)]
    cfg = FinetuneConfig(engine="loop", rotation="pca_centered", batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                         distill_weight=1.0)
    probe.train_block(cfg, pairs, encoder, states, states, before, before, epochs=2, block_lr=1e-2, head_lr=1e-2,
                      seed=0, rank=4, dims=(width, width // 2))
    after = dict(encoder.block.named_parameters())
    base_after = {n.replace(".base.", "."): p for n, p in after.items() if ".lora_" not in n}
    assert sorted(base_after) == sorted(frozen)
    for name, value in frozen.items():  # the base block's weights, biases and norms are untouched
        np.testing.assert_array_equal(base_after[name].detach().numpy(), value.numpy())
    assert any(np.abs(p.detach().numpy()).max() > 0 for n, p in after.items() if n.endswith("lora_B"))
    assert not np.allclose(encoder.encode(states), before, atol=1e-4)


def _unwrapped_copy(model):
    import copy

    return copy.deepcopy(model[0].auto_model.encoder.layer[-1]).float()


@pytest.mark.parametrize("spec, expected", [("head-h=0", ("head-h", 0, 5e-5, 1e-4, 0)),
                                            ("l=3:2e-3:1e-4:16", ("l", 3, 2e-3, 1e-4, 16))])
def test_candidate_specs(spec, expected):
    assert probe.parse_candidate(spec) == expected
