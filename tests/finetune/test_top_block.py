"""The last-block phase (finetune.top_block, ``top_block_epochs``): the cached block path is the model's
own embedding, its LoRA starts as the base block and trains only its matrices, and a run exports an
adapter that rebuilds the trained model."""

from __future__ import annotations

import copy
import json
import signal

import numpy as np
import pytest

from finetune.config import ConfigError
from finetune.top_block import (TopBlockEncoder, add_block_lora, block_lora_deltas, cached_states, merge_block_lora,
                                token_states, train_block)
from tests.finetune.test_loop import loop_config

TEXTS = ["Ferritine basse chez la femme enceinte.", "Doliprane 500 mg, un comprimé toutes les 6 heures.", "a",
         "Quels sont les effets indésirables de l'amoxicilline ?"]


def test_the_cached_block_path_is_the_models_embedding(tiny_model):
    states = token_states(tiny_model, TEXTS, "passage: ", 64, batch_size=3)
    assert len(states) == len(TEXTS) and states.flat.dtype == np.float16
    expected = tiny_model.encode([f"passage: {t}" for t in TEXTS], convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(TopBlockEncoder(tiny_model).encode(states, batch_size=2), expected, atol=2e-3)


def test_states_are_cached_per_text_list_and_an_unreadable_file_is_recomputed(tiny_model, tmp_path, caplog):
    first = cached_states(tiny_model, "fp", TEXTS, "query: ", 32, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    again = cached_states(tiny_model, "fp", TEXTS, "query: ", 32, tmp_path)
    np.testing.assert_array_equal(first.flat, again.flat)
    cached_states(tiny_model, "fp", TEXTS[:2], "query: ", 32, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # another text list: another file
    path.write_bytes(b"not an npz")
    with caplog.at_level("WARNING", logger="finetune.top_block"):
        recomputed = cached_states(tiny_model, "fp", TEXTS, "query: ", 32, tmp_path)
    assert "unreadable" in caplog.text
    np.testing.assert_array_equal(recomputed.flat, first.flat)


def _identity_head(width):
    import torch

    head = torch.nn.Linear(width, width)
    with torch.no_grad():
        head.weight.copy_(torch.eye(width))
        head.bias.zero_()
    return head


def test_lora_starts_as_the_base_block_and_trains_only_its_matrices(tiny_model):
    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

    states = token_states(tiny_model, TEXTS * 2, "query: ", 64)
    encoder = TopBlockEncoder(tiny_model)
    before = encoder.encode(states)
    frozen = {n: p.detach().clone() for n, p in encoder.block.named_parameters()}
    wrapped = add_block_lora(encoder.block, rank=4)
    assert len(wrapped) == 6  # q, k, v, attention output, intermediate, output
    np.testing.assert_allclose(encoder.encode(states), before, atol=1e-6)  # B = 0: the base block

    width = before.shape[1]
    encoder = TopBlockEncoder(tiny_model)  # train_block adds its own LoRA
    encoder.head = _identity_head(width)
    pairs = [QAPair(f"question {i}", f"passage {i}") for i in range(8)]
    cfg = FinetuneConfig(engine="loop", rotation="pca_centered", batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                         distill_weight=1.0)
    steps = []
    wrapped = train_block(cfg, pairs, encoder, states, states, before, before, epochs=2, block_lr=1e-2, head_lr=1e-2,
                          seed=0, rank=4, dims=(width, width // 2), on_step=steps.append)
    assert len(steps) == 4  # 2 epochs of 2 batches of 4 pairs
    after = dict(encoder.block.named_parameters())
    base_after = {n.replace(".base.", "."): p for n, p in after.items() if ".lora_" not in n}
    assert sorted(base_after) == sorted(frozen)
    for name, value in frozen.items():  # the base block's weights, biases and norms are untouched
        np.testing.assert_array_equal(base_after[name].detach().numpy(), value.numpy())
    assert any(np.abs(p.detach().numpy()).max() > 0 for n, p in after.items() if n.endswith("lora_B"))
    trained = encoder.encode(states)
    assert not np.allclose(trained, before, atol=1e-4)

    # the deltas in the adapter's form, applied to the base weights, are the merged block
    deltas = block_lora_deltas(wrapped, "encoder.layer.1.")
    assert sorted(deltas) == sorted(f"encoder.layer.1.{n}.weight" for n in wrapped)
    base_block = copy.deepcopy(tiny_model[0].auto_model.encoder.layer[-1]).float()
    merge_block_lora(encoder.block, wrapped)
    assert not any(".lora_" in n for n, _ in encoder.block.named_parameters())
    np.testing.assert_allclose(encoder.encode(states), trained, atol=1e-5)
    merged = dict(encoder.block.named_parameters())
    for name, (a, b) in deltas.items():
        inner = name[len("encoder.layer.1."):]
        expected = base_block.get_parameter(inner).detach().numpy() + b @ a
        np.testing.assert_allclose(merged[inner].detach().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(top_block_epochs=1), "set freeze_encoder"),
    (dict(top_block_epochs=-1, freeze_encoder=True, rotation="pca"), "top_block_epochs must be >= 0"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", top_block_lora_rank=0), "top_block_lora_rank"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", top_block_learning_rate=0), "must be > 0"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", batch_sampling="topic"), "random batches"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", engine="trainer"), "need(s) engine: loop"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", distill_corpus=["cases"]), "drop distill_corpus"),
    # the phase off: its settings would be ignored (user tryout: accepted silently, or a rank error)
    (dict(top_block_lora_rank=8), "top_block_lora_rank set(s) the last-block phase, which is off"),
    (dict(top_block_lora_rank=0, top_block_learning_rate=1e-3), "top_block_learning_rate, top_block_lora_rank set(s)"),
    (dict(top_block_epochs=1, freeze_encoder=True, rotation="pca", top_block_lora_alpha=float("nan")),
     "top_block_lora_alpha must be finite numbers"),
])
def test_bad_top_block_settings_are_refused(overrides, message):
    from finetune.config import FinetuneConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FinetuneConfig(**{"engine": "loop", **overrides})


@pytest.fixture(scope="module")
def block_run(tiny_model_dir, pairs_file, tmp_path_factory):
    from finetune.training import MatryoshkaFinetuner

    tmp = tmp_path_factory.mktemp("block")
    cfg = loop_config(tiny_model_dir, pairs_file, tmp / "m", tmp, lora_rank=0, freeze_encoder=True,
                      rotation="pca_centered", epochs=10, top_block_epochs=3, top_block_learning_rate=5e-3,
                      top_block_head_learning_rate=1e-3, top_block_lora_rank=4, export_adapter=str(tmp / "a" / "blk"),
                      adapter_name="blk", evaluate_before=False)
    finetuner = MatryoshkaFinetuner(cfg)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the loop encoded teacher vectors: they come from the block states")

    with pytest.MonkeyPatch.context() as mp:
        from finetune.loop import TrainingLoop

        mp.setattr(TrainingLoop, "teacher_vectors", no_encoding)
        return finetuner, finetuner.run(), tmp


def test_a_block_run_reads_its_teacher_from_the_block_states(block_run):
    finetuner, result, tmp = block_run
    assert list((tmp / "teacher" / "block_states").glob("*.npz"))  # beside the teacher cache the config names
    # the approximate (float16-state) vectors are not written where a frozen-encoder run reads exact ones
    assert not list((tmp / "teacher").glob("*.npz"))
    assert finetuner.loop_result.steps > 0 and result.top_block_steps > 0 and result.top_block_seconds > 0
    info = json.loads((tmp / "m" / "training_info.json").read_text())
    assert info["top_block_steps"] == result.top_block_steps and np.isfinite(info["top_block_final_loss"])
    recipe = json.loads((tmp / "m" / "matryoshka.json").read_text())["extra"]["recipe"]
    assert recipe["top_block_epochs"] == 3 and recipe["top_block_lora_rank"] == 4


def test_a_block_run_trains_the_last_block_only_and_exports_it(block_run, tiny_model_dir, tmp_path):
    import torch

    import medrag
    from medrag.adapters import build_adapted_model, read_adapter_config, read_adapter_tensors

    finetuner, result, tmp = block_run
    base = medrag.load_model(tiny_model_dir, device="cpu")
    trained = medrag.load_model(tmp / "m", device="cpu")
    for name, p in base[0].auto_model.named_parameters():  # the lower block and the embeddings: untouched
        if not name.startswith("encoder.layer.1."):
            assert torch.equal(p, trained[0].auto_model.get_parameter(name)), name
    w = "encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(base[0].auto_model.get_parameter(w), trained[0].auto_model.get_parameter(w))
    config = read_adapter_config(tmp / "a" / "blk")
    assert config["rotation"] is True and config["lora_rank"] == 4
    assert len(config["adapted_weights"]) == 6 and all(n.startswith("encoder.layer.1.") for n in config["adapted_weights"])
    from safetensors.numpy import load_file

    assert load_file(str(tmp / "a" / "blk" / "adapter.safetensors"))[f"{w}.lora_A"].dtype == np.float16  # as shipped
    assert read_adapter_tensors(tmp / "a" / "blk", config)[f"{w}.lora_B"].shape == (128, 4)
    assert "last block" in (tmp / "a" / "blk" / "README.md").read_text()
    built = medrag.load_model(build_adapted_model(tmp / "a" / "blk", tiny_model_dir, tmp_path / "b"), device="cpu")
    texts = ["glycémie à jeun", "La TSH élevée oriente vers une hypothyroïdie."]
    got, expected = built.encode(texts), trained.encode(texts)
    assert np.all(np.sum(got * expected, axis=1) > 0.999)  # fp16 deltas
    # and the cached path the suite is scored with gives the trained model's vectors
    states = token_states(base, texts, "", 32)
    np.testing.assert_allclose(finetuner.top_block.encode(states), expected, atol=2e-3)


def test_the_export_scores_a_block_run_through_its_block(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    import finetune.suite_scores
    from finetune.training import MatryoshkaFinetuner

    seen = []

    def scores(model, base, dims, *, frozen_encoder, top_block=None, states_dir=None, **kw):
        seen.append((top_block is not None, states_dir))
        return {d: {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5} for d in dims}, {}

    monkeypatch.setattr(finetune.suite_scores, "suite_macro_scores", scores)
    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, lora_rank=0, freeze_encoder=True,
                      rotation="pca", max_steps=2, top_block_epochs=1, top_block_lora_rank=2,
                      export_adapter=str(tmp_path / "a"), adapter_name="blk", export_scores="suite_pilot",
                      evaluate_before=False)
    result = MatryoshkaFinetuner(cfg).run()
    # the trained model, then the base: both through the cached block states
    assert seen == [(True, tmp_path / "teacher" / "block_states"), (True, tmp_path / "teacher" / "block_states")]
    assert result.global_step == 2 and result.top_block_steps == 2  # max_steps caps both phases


def test_the_suite_is_scored_through_the_cached_block_path(tiny_model, tmp_path):
    """What the export scores a block run with: the base's cached states through the block and layer."""
    from finetune.suite_scores import _block_encoder
    from medrag.encoding import encode_texts
    from medrag.prompts import prompt_texts

    top = TopBlockEncoder(tiny_model)  # the base's block, no layer: the base model's vectors
    encode = _block_encoder(top, tiny_model, tmp_path)
    qprompt, pprompt = prompt_texts(tiny_model.prompts)
    for side, prompt in (("query", qprompt), ("document", pprompt)):
        np.testing.assert_allclose(encode(TEXTS, side), encode_texts(tiny_model, TEXTS, prompt=prompt), atol=2e-3)
    assert list(tmp_path.glob("*.npz"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_in_the_block_phase_resumes_to_the_uninterrupted_model(tiny_model_dir, pairs_file, tmp_path, stop,
                                                                      monkeypatch, caplog):
    """Ctrl-C or SIGTERM while the last block trains: the step ends, the run stops with a message, the
    final layer's checkpoint stays, and --resume gives the model of an uninterrupted run."""
    import os

    import medrag
    from finetune.top_block import TopBlockPhase
    from finetune.training import MatryoshkaFinetuner

    settings = dict(lora_rank=0, freeze_encoder=True, rotation="pca_centered", epochs=2, top_block_epochs=2,
                    top_block_lora_rank=2, evaluate_before=False, evaluate_after=False)
    MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "a", tmp_path, **settings)).run()
    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "b", tmp_path, **settings)
    count = TopBlockPhase._count_step

    def stop_at_first_block_step(self, loss):
        if self.steps == 0:
            os.kill(os.getpid(), stop)
        count(self, loss)

    monkeypatch.setattr(TopBlockPhase, "_count_step", stop_at_first_block_step)
    with caplog.at_level("WARNING", logger="finetune.training"), pytest.raises(KeyboardInterrupt):
        MatryoshkaFinetuner(cfg).run()
    assert "interrupted while training the last block (step 1 of the phase); rerun with --resume" in caplog.text
    assert not (tmp_path / "b" / "matryoshka.json").exists()
    monkeypatch.setattr(TopBlockPhase, "_count_step", count)
    resumed = MatryoshkaFinetuner(cfg.replace(resume=True)).run()
    assert resumed.top_block_steps > 1
    texts = ["glycémie à jeun", "La TSH élevée oriente vers une hypothyroïdie."]
    a = medrag.load_model(tmp_path / "a", device="cpu").encode(texts)
    b = medrag.load_model(tmp_path / "b", device="cpu").encode(texts)
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_a_lora_rank_above_the_blocks_width_is_refused_before_any_encoding(tiny_model):
    from finetune.config import FinetuneConfig
    from finetune.top_block import TopBlockPhase
    from medrag.qa.pairs import QAPair

    cfg = FinetuneConfig(engine="loop", freeze_encoder=True, rotation="pca", top_block_epochs=1,
                         top_block_lora_rank=1000)
    with pytest.raises(ConfigError, match="above the block's width 128"):
        TopBlockPhase(tiny_model, cfg, [QAPair("q", "p")], [128, 64])
