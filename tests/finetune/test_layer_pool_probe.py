"""The multi-layer head probe (benchmarks/layer_pool_probe.py): its layer pools are the model's own
pooling at the last layer, its head starts as the shipped recipe's initialisation, and training
moves the extra layers' block."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("layer_pool_probe", REPO / "benchmarks" / "layer_pool_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_last_layer_pool_is_the_models_embedding(tiny_model):
    texts = ["Ferritine basse chez la femme enceinte.", "Doliprane 500 mg", "a"]
    pools = probe.layer_pools(tiny_model, texts, "passage: ", 64, (1, 2), batch_size=2)
    assert pools.shape == (2, 3, 128)
    expected = tiny_model.encode([f"passage: {t}" for t in texts], convert_to_numpy=True)
    np.testing.assert_allclose(probe.unit(pools[-1]), expected, atol=1e-5)
    assert not np.allclose(probe.unit(pools[0]), expected, atol=1e-3)  # layer 1 is another vector


def test_initial_head_is_the_recipes_pca_on_the_last_layer():
    import torch

    from finetune.rotation import fit_pca_rotation

    rng = np.random.default_rng(0)
    last = probe.unit(rng.normal(size=(40, 8)).astype(np.float32))
    other = probe.unit(rng.normal(size=(40, 8)).astype(np.float32))
    head = probe.initial_head(last, (6, 12))
    weight, bias = fit_pca_rotation(last, center=True)
    out = head(torch.from_numpy(np.concatenate([other, last], axis=1))).detach().numpy()
    np.testing.assert_allclose(out, last @ weight.T + bias, atol=1e-5)


def test_training_moves_the_extra_layers_block():
    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

    rng = np.random.default_rng(1)
    pairs = [QAPair(f"question {i}", f"passage {i}") for i in range(16)]
    q_last, p_last = (probe.unit(rng.normal(size=(16, 8)).astype(np.float32)) for _ in range(2))
    q_other, p_other = (probe.unit(rng.normal(size=(16, 8)).astype(np.float32)) for _ in range(2))
    cfg = FinetuneConfig(engine="loop", rotation="pca_centered", batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                         distill_weight=1.0)
    head = probe.train_head(cfg, pairs, np.concatenate([q_other, q_last], 1), np.concatenate([p_other, p_last], 1),
                            q_last, p_last, (6, 12), epochs=3, seed=0, dims=(8, 4))
    assert np.abs(head.weight.detach().numpy()[:, :8]).max() > 1e-3


def test_on_the_last_layer_alone_it_trains_what_the_loop_trains(tiny_model_dir, tmp_path, monkeypatch):
    """The probe's claim that ``final=12:40`` is the shipped recipe: same initialisation, batches,
    losses, optimizer and schedule as the loop's frozen-encoder path, so the same weights from the
    same teacher vectors. (The vectors are the loop's own: on 24 pairs in 128 dims the PCA's null
    space is degenerate, so a 1e-8 difference in the inputs picks other axes there; that the last
    layer's pool is the model's vector is the first test's.)"""
    import medrag
    from finetune.config import FinetuneConfig
    from finetune.loop import TrainingLoop
    from finetune.rotation import rotation_layer
    from medrag.qa.pairs import QAPair

    seen = []
    original = TrainingLoop.teacher_vectors
    monkeypatch.setattr(TrainingLoop, "teacher_vectors",
                        lambda self, *a, **k: seen.append(original(self, *a, **k)) or seen[-1])
    pairs = [QAPair(f"Quelle est la dose {i} de paracétamol chez l'enfant ?",
                    f"Passage {i} : la posologie dépend du poids, {i} mg par kilo et par prise.") for i in range(24)]
    cfg = FinetuneConfig(engine="loop", model=str(tiny_model_dir), freeze_encoder=True, rotation="pca_centered",
                         lora_rank=0, batch_size=8, epochs=3, learning_rate=1e-2, warmup_ratio=0.1, weight_decay=0.01,
                         distill_weight=1.0, query_max_length=32, passage_max_length=32,
                         teacher_cache=str(tmp_path / "teacher"), seed=3)
    model = medrag.load_model(tiny_model_dir, device="cpu")
    TrainingLoop(model, cfg, (128, 64), pairs).run()
    loop_head = rotation_layer(model).linear
    q, p = seen
    head = probe.train_head(cfg, pairs, q, p, q, p, (2,), epochs=3, seed=3, dims=(128, 64))
    np.testing.assert_allclose(head.weight.detach().numpy(), loop_head.weight.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(head.bias.detach().numpy(), loop_head.bias.detach().numpy(), atol=1e-6)
    assert not np.allclose(head.weight.detach().numpy(), probe.initial_head(p, (2,)).weight.detach().numpy(), atol=1e-3)
    other = probe.train_head(cfg, pairs, q, p, q, p, (2,), epochs=3, seed=4, dims=(128, 64))
    assert not np.allclose(other.weight.detach().numpy(), loop_head.weight.detach().numpy(), atol=1e-4)


def test_settings_it_does_not_reproduce_are_refused():
    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

    cfg = FinetuneConfig(engine="loop", rotation="pca_centered", batch_sampling="topic")
    vecs = np.eye(4, dtype=np.float32)
    with pytest.raises(SystemExit, match="batch_sampling"):
        probe.train_head(cfg, [QAPair(str(i), str(i)) for i in range(4)], vecs, vecs, vecs, vecs, (12,), 1, 0, dims=(4,))


@pytest.mark.parametrize("bad", ["x", "a=8,12", "a=8:10", "a=8,12:0", "a=0,12:5", "=12:5", "a=x,12:5",
                                 "a=12:5:1,1", "a=12:5:1,1,1,1,0", "a=12:5:1,1,1,1,x", "a=12:5:1,1,1,1,nan",
                                 "a=12:5:1,1,1,1,1:3"])
def test_bad_candidates_are_named(bad):
    with pytest.raises(SystemExit, match="--candidate"):
        probe.parse_candidate(bad)


def test_candidate_spec():
    assert probe.parse_candidate("layers8-12=12,8:10") == ("layers8-12", (8, 12), 10, None)
    assert probe.parse_candidate("w=8,12:10:1,1,1,2,4") == ("w", (8, 12), 10, (1.0, 1.0, 1.0, 2.0, 4.0))
