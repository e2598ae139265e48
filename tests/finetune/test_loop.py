"""The plain training loop on the tiny model: LoRA, self-distillation, rotation, adapter export."""

from __future__ import annotations

import json
import os
import random
import re
import signal

import numpy as np
import pytest

from finetune.config import ConfigError, FinetuneConfig
from finetune.data import load_dataset_from_config
from finetune.loop import document_labels, no_duplicate_batches, topic_clusters, topic_order
from finetune.training import MatryoshkaFinetuner
from medrag.errors import DataError
from medrag.qa.french_text import SourcedPair
from medrag.qa.pairs import QAPair
from tests.finetune.conftest import quick_config


def loop_config(tiny_model_dir, pairs_file, out, tmp_path, **overrides):
    base = dict(engine="loop", lora_rank=4, lora_alpha=8, distill_weight=1.0, distill_temperature=0.05,
                query_max_length=32, passage_max_length=32, teacher_cache=str(tmp_path / "teacher"),
                learning_rate=2e-3, export_scores="run")
    if overrides.get("lora_rank") == 0:
        del base["lora_alpha"]  # refused without LoRA
    return quick_config(tiny_model_dir, pairs_file, out, **{**base, **overrides})


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, pairs_file, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    cfg = loop_config(tiny_model_dir, pairs_file, tmp / "model", tmp, rotation="pca",
                      export_adapter=str(tmp / "adapter" / "tiny-fr"), adapter_name="tiny-fr")
    finetuner = MatryoshkaFinetuner(cfg)
    return finetuner, finetuner.run(), tmp


def test_batches_never_repeat_a_text_and_cover_every_pair():
    pairs = [QAPair(f"q{i % 5}", f"a{i % 7}") for i in range(35)]
    batches = no_duplicate_batches(pairs, 4, random.Random(0))
    covered = sorted(i for b in batches for i in b)
    assert len(covered) == len(set(covered)) >= 30  # only left-over pairs that share a text are dropped
    for b in batches:
        assert len({pairs[i].question for i in b}) == len(b) == len({pairs[i].answer for i in b}) <= 4


def test_topic_batches_group_similar_questions_and_keep_the_no_duplicate_rule():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vecs = np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(40, 16))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = topic_clusters(vecs.astype(np.float32), 4, seed=0)
    assert [len(set(labels[i * 10:(i + 1) * 10].tolist())) for i in range(4)] == [1, 1, 1, 1]
    assert len(set(labels.tolist())) == 4
    pairs = [QAPair(f"q{i}", f"a{i % 35}") for i in range(40)]         # a5..a9 twice: not in one batch
    order = topic_order(labels, random.Random(1))
    assert sorted(order) == list(range(40))
    batches = no_duplicate_batches(pairs, 10, random.Random(0), order=order)
    assert sorted(i for b in batches for i in b) == list(range(40))
    for b in batches:
        assert len({pairs[i].answer for i in b}) == len(b)
    assert sum(len(set(labels[b].tolist())) == 1 for b in batches) >= 2   # whole topics per batch
    with pytest.raises(DataError, match="permutation"):
        no_duplicate_batches(pairs, 10, random.Random(0), order=order[:-1])
    with pytest.raises(DataError, match="matrix of vectors"):
        topic_clusters(np.zeros((0, 16), np.float32), 4)


def _lloyd_reference(x: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    """Spherical Lloyd steps written the plain way: one mask and one mean per cluster."""
    c = centres.copy()
    for _ in range(iterations):
        labels = (x @ c.T).argmax(axis=1)
        for k in range(len(c)):
            if (labels == k).any():
                m = x[labels == k].sum(axis=0)
                c[k] = m / np.linalg.norm(m)
    return labels


def test_topic_clusters_equal_the_plain_lloyd_steps_and_keep_empty_clusters():
    """The vectorised centre update gives the labels of the per-cluster loop, also with many small
    clusters (2 vectors each) and with an empty cluster (its centre is kept)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for n_clusters in (5, 200):
        labels = topic_clusters(x, n_clusters, seed=2, iterations=1)  # the seeds: the labels after one step
        seeds = np.stack([x[labels == k].sum(axis=0) for k in range(n_clusters) if (labels == k).any()])
        assert len(set(labels.tolist())) > 0.8 * n_clusters
        ours = topic_clusters(x, n_clusters, seed=2, iterations=8)
        # the same seeding, then 7 more steps; compare the partitions with the plain loop's from step 1
        ref = _lloyd_reference(x, seeds / np.linalg.norm(seeds, axis=1, keepdims=True), 7)
        assert len(set(zip(ours.tolist(), ref.tolist()))) == len(set(ours.tolist())) == len(set(ref.tolist()))
    # [a, a, b] in 3 clusters: k-means++ seeds a twice (every distance is 0 by then), one cluster stays
    # empty from the first step; its centre must stay usable (a 0/0 centre would take every vector)
    a, b = np.eye(2, dtype=np.float32)
    for seed in range(4):
        labels = topic_clusters(np.stack([a, a, b]), 3, seed=seed)
        assert labels[0] == labels[1] != labels[2] and len(set(labels.tolist())) == 2


def test_document_batches_hold_whole_documents():
    """batch_sampling: document fills batches document by document: one entity's questions are each
    other's in-batch negatives; a pair without a document is its own; the same doc_id of another
    source is another document."""
    pairs = [SourcedPair(f"q{d}-{a}", f"p{d}-{a}", (), "medquad", "", f"doc{d}") for d in range(10) for a in range(4)]
    pairs += [SourcedPair("q-other", "p-other", (), "cases", "", "doc0"), QAPair("q-lone", "p-lone")]
    labels = document_labels(pairs)
    assert len(set(labels[:4].tolist())) == 1 and len(set(labels.tolist())) == 12
    assert labels[40] != labels[0] and labels[41] not in labels[:41]
    batches = no_duplicate_batches(pairs, 8, random.Random(0), order=topic_order(labels, random.Random(5)))
    assert sorted(i for b in batches for i in b) == list(range(42))
    where = {i: n for n, b in enumerate(batches) for i in b}
    split = [d for d in range(10) if len({where[i] for i in range(d * 4, d * 4 + 4)}) > 1]
    assert len(split) <= len(batches) - 1  # only a document straddling a batch boundary is split
    shuffled = no_duplicate_batches(pairs, 8, random.Random(0))
    where = {i: n for n, b in enumerate(shuffled) for i in b}
    assert len([d for d in range(10) if len({where[i] for i in range(d * 4, d * 4 + 4)}) > 1]) > len(split)
    FinetuneConfig(engine="loop", batch_sampling="document")
    with pytest.raises(ConfigError, match="batch_sampling need"):
        FinetuneConfig(batch_sampling="document")


def test_topic_sampling_is_validated_and_needs_the_loop():
    with pytest.raises(ConfigError, match="batch_sampling must be one of"):
        FinetuneConfig(engine="loop", batch_sampling="cluster")
    with pytest.raises(ConfigError, match="topic_cluster_size must be >= 2"):
        FinetuneConfig(engine="loop", batch_sampling="topic", topic_cluster_size=1)
    with pytest.raises(ConfigError, match="batch_sampling need"):
        FinetuneConfig(batch_sampling="topic")


def test_lora_loop_trains_and_scores(lora_run):
    finetuner, result, _ = lora_run
    assert result.global_step == len(result.losses) >= 9 and min(result.losses) > 0
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert finetuner.loop_result.trainable_parameters < 20_000  # adapters only (+ no trainable rotation)
    assert set(result.scores_after) == set(result.scores_before) == {128, 64}
    meta = json.loads((result.output_dir / "matryoshka.json").read_text())
    assert meta["dims"] == [128, 64]


def test_saved_folder_is_the_merged_model_with_its_rotation(lora_run):
    import medrag

    _, result, _ = lora_run
    model = medrag.load_model(result.output_dir, device="cpu")
    assert [type(m).__name__ for m in model][-2:] == ["Dense", "Normalize"]
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_exported_adapter_rebuilds_the_trained_model(lora_run, tiny_model_dir, tmp_path):
    import medrag
    from medrag.adapters import ADAPTER_CONFIG, build_adapted_model, read_adapter_config

    _, result, tmp = lora_run
    adapter = tmp / "adapter" / "tiny-fr"
    config = read_adapter_config(adapter)
    assert config["lora_rank"] == 4 and config["rotation"] is True
    assert len(config["adapted_weights"]) == 2 * 6  # 2 layers x q, k, v, attention out, ffn in, ffn out
    built = build_adapted_model(adapter, tiny_model_dir, tmp_path / "built")
    assert (built / "matryoshka.json").is_file() and "LoRA adapter (rank 4)" in (built / "README.md").read_text()
    # a user's export: its own base, loaded from its folder (it was described as medrag's packaged model over
    # e5-small, loaded as bundled:tiny-fr, with e5-small's size: user tryout)
    card = (adapter / "README.md").read_text()
    assert "trained with `medrag finetune`" in card and f"over `{config['base_model']}`" in card
    assert f'MatryoshkaEmbeddings("{adapter}")' in card and "bundled:tiny-fr" not in card
    assert "384 dims" not in card and "128 dims over" in card and "multilingual-e5-small" not in card
    texts = ["query: glycémie à jeun", "passage: La TSH élevée oriente vers une hypothyroïdie."]
    merged = medrag.load_model(result.output_dir, device="cpu").encode(texts, normalize_embeddings=True)
    rebuilt = medrag.load_model(built, device="cpu").encode(texts, normalize_embeddings=True)
    assert np.min(np.sum(merged * rebuilt, axis=1)) > 0.999  # fp16 adapter ~ fp32 training result
    assert (adapter / ADAPTER_CONFIG).stat().st_size < 50_000


def test_rotation_keeps_full_size_cosines_of_the_base(tiny_model_dir, pairs_file, tmp_path):
    """An uncentred PCA rotation alone (no training step) changes no full-size cosine."""
    import medrag

    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, rotation="pca", max_steps=1,
                      learning_rate=1e-12, lora_rank=1, evaluate_before=False, eval_fraction=0.0)
    MatryoshkaFinetuner(cfg).run()
    texts = ["glycémie à jeun", "La TSH élevée oriente vers une hypothyroïdie.", "ferritine basse"]
    a = medrag.load_model(tiny_model_dir, device="cpu").encode(texts, normalize_embeddings=True)
    b = medrag.load_model(tmp_path / "m", device="cpu").encode(texts, normalize_embeddings=True)
    assert np.allclose(a @ a.T, b @ b.T, atol=1e-4)
    assert not np.allclose(a, b, atol=1e-2)


def test_lora_layers_beyond_the_encoder_are_refused(tiny_model_dir):
    """--lora-layers 20 on a 12-layer model trained every layer while the card said "top 20 layers"
    (user tryout)."""
    import medrag
    from finetune.lora import encoder_model, target_module_names

    inner = encoder_model(medrag.load_model(tiny_model_dir, device="cpu"))
    every = target_module_names(inner)
    n_layers = len({re.search(r"layer\.(\d+)\.", name).group(1) for name in every})
    assert target_module_names(inner, layers=n_layers) == every
    with pytest.raises(ConfigError, match=rf"lora_layers={n_layers + 1} but the encoder has {n_layers} layers"):
        target_module_names(inner, layers=n_layers + 1)


def test_teacher_vectors_are_cached(lora_run):
    _, _, tmp = lora_run
    assert len(list((tmp / "teacher").glob("*.npz"))) == 2  # questions and passages (prompt + cap each)


def test_loop_options_need_the_loop_engine():
    with pytest.raises(ConfigError, match="lora_rank, distill_weight need"):
        FinetuneConfig(lora_rank=4, distill_weight=1.0)
    with pytest.raises(ConfigError, match="set lora_rank > 0"):
        FinetuneConfig(engine="loop", export_adapter="out")


def test_frozen_encoder_trains_only_the_final_layer_and_exports_it(tiny_model_dir, pairs_file, tmp_path, caplog):
    import torch

    import medrag
    from medrag.adapters import build_adapted_model, read_adapter_config

    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, lora_rank=0, freeze_encoder=True,
                      rotation="pca_centered", epochs=20, export_adapter=str(tmp_path / "a" / "head"),
                      adapter_name="head", evaluate_before=False)
    finetuner = MatryoshkaFinetuner(cfg)
    result = finetuner.run()
    assert finetuner.loop_result.trainable_parameters == 128 * 128 + 128
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    topic = MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "t", tmp_path, lora_rank=0,
                                            freeze_encoder=True, rotation="pca_centered", epochs=20,
                                            batch_sampling="topic", topic_cluster_size=4, evaluate_before=False))
    topic_losses = topic.run().losses
    assert sum(topic_losses[-5:]) < sum(topic_losses[:5]) and topic_losses != result.losses
    # batch_sampling: document on a pairs file (no source documents): trains, and says its batches are a shuffle
    with caplog.at_level("WARNING", logger="finetune.loop"):
        by_doc = MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "d", tmp_path, lora_rank=0,
                                                 freeze_encoder=True, rotation="pca_centered", epochs=20,
                                                 batch_sampling="document", evaluate_before=False)).run().losses
    assert sum(by_doc[-5:]) < sum(by_doc[:5]) and "no source document holds several" in caplog.text
    base = medrag.load_model(tiny_model_dir, device="cpu")
    trained = medrag.load_model(tmp_path / "m", device="cpu")
    w = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(base[0].auto_model.get_parameter(w), trained[0].auto_model.get_parameter(w))
    config = read_adapter_config(tmp_path / "a" / "head")
    assert config["adapted_weights"] == [] and config["rotation"] is True
    built = medrag.load_model(build_adapted_model(tmp_path / "a" / "head", tiny_model_dir, tmp_path / "b"), device="cpu")
    texts = ["glycémie à jeun", "La TSH élevée oriente vers une hypothyroïdie."]
    assert np.allclose(built.encode(texts), trained.encode(texts), atol=1e-5)


def test_the_export_scores_the_suite_from_shared_data(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """The export read the suite from ../shared/data whatever --shared-data said, and failed after the
    whole run when the working folder had no ../shared (audit)."""
    import finetune.suite_scores

    seen = []

    def scores(model, base, dims, *, frozen_encoder, pilot=True, max_passages=3000, data_root=None, **kw):
        seen.append(data_root)
        return {d: {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5} for d in dims}, {}

    monkeypatch.setattr(finetune.suite_scores, "suite_macro_scores", scores)
    data = tmp_path / "elsewhere"
    for name in ("frenchmedmcqa", "french-medical-text"):
        (data / name).mkdir(parents=True)
    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, lora_rank=0, freeze_encoder=True,
                      rotation="pca", max_steps=2, export_adapter=str(tmp_path / "a"), adapter_name="head",
                      export_scores="suite_pilot", shared_data=str(data), evaluate_before=False)
    MatryoshkaFinetuner(cfg).run()
    assert seen == [str(data), str(data)]  # the trained model, then the base
    assert json.loads((tmp_path / "a" / "matryoshka.json").read_text())["scores"]["64"]["ndcg@10"] == 0.5


def test_teacher_cache_reads_files_of_the_legacy_fingerprint(tmp_path):
    from finetune.loop import TeacherCache

    old = TeacherCache(tmp_path, "legacy0123456789", "passage: ", 64)
    old.store({"a": np.ones(4, dtype=np.float32)})
    new = TeacherCache(tmp_path, "current012345678", "passage: ", 64, legacy=["legacy0123456789"])
    vectors, missing = new.lookup(["a", "b"])
    assert missing == [1] and np.array_equal(vectors[0], np.ones(4))
    new.store({"b": np.zeros(4, dtype=np.float32)})
    assert new.path.is_file() and new.path != old.path  # written under the current fingerprint only
    assert TeacherCache(tmp_path, "current012345678", "passage: ", 64).lookup(["a", "b"])[1] == []


def _encode(folder):
    import medrag

    texts = ["glycémie à jeun", "La TSH élevée oriente vers une hypothyroïdie.", "ferritine basse"]
    return medrag.load_model(folder, device="cpu").encode(texts, normalize_embeddings=True)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_loop_stopped_by_a_signal_resumes_to_the_uninterrupted_model(tiny_model_dir, pairs_file, tmp_path, stop):
    """engine: loop saved nothing: Ctrl-C or SIGTERM (Slurm, Kubernetes preemption) lost the whole run, and
    --resume said "nothing to resume"."""
    settings = dict(rotation="pca", epochs=2, save_steps=2, evaluate_before=False,
                    evaluate_after=False)  # 24 training pairs / batch 8 x 2 epochs = 6 steps
    straight = MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "a", tmp_path, **settings)).run()

    out = tmp_path / "b"
    cfg = loop_config(tiny_model_dir, pairs_file, out, tmp_path, **settings)

    def stop_at_3(done):
        if done == 3:
            os.kill(os.getpid(), stop)

    with pytest.raises(KeyboardInterrupt):
        MatryoshkaFinetuner(cfg, callbacks=[stop_at_3]).run()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / "matryoshka.json").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        MatryoshkaFinetuner(cfg).run()
    with pytest.raises(ConfigError, match=r"other training settings \(learning_rate: 0.002 -> 0.001\)"):
        MatryoshkaFinetuner(cfg.replace(resume=True, learning_rate=1e-3)).run()  # never mix two runs; say what differs

    steps = []
    resumed = MatryoshkaFinetuner(cfg.replace(resume=True), callbacks=[steps.append]).run()
    assert steps == [4, 5, 6] and resumed.global_step == 6
    assert np.allclose(resumed.losses, straight.losses, atol=1e-5)
    assert np.allclose(_encode(out), _encode(tmp_path / "a"), atol=1e-5)  # dropout's random state restored too
    assert not (out / "checkpoints").exists()


def test_loop_checkpoint_errors_are_named(tiny_model_dir, pairs_file, tmp_path, caplog):
    """A stop with checkpoints off, a Trainer checkpoint and a damaged one each say what to do."""
    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, epochs=1, evaluate_before=False,
                      evaluate_after=False, checkpoints=False)

    def stop_at_1(done):
        os.kill(os.getpid(), signal.SIGINT)

    with caplog.at_level("WARNING", logger="finetune.loop"), pytest.raises(KeyboardInterrupt):
        MatryoshkaFinetuner(cfg, callbacks=[stop_at_1]).run()
    assert "nothing was saved" in caplog.text and not (tmp_path / "m" / "checkpoints").exists()

    trainer_checkpoint = tmp_path / "m" / "checkpoints" / "checkpoint-5"
    trainer_checkpoint.mkdir(parents=True)
    (trainer_checkpoint / "trainer_state.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a checkpoint of engine: loop"):
        MatryoshkaFinetuner(cfg.replace(checkpoints=True, resume=True)).run()
    (trainer_checkpoint / "loop_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="is unreadable"):
        MatryoshkaFinetuner(cfg.replace(checkpoints=True, resume=True)).run()
    with pytest.raises(ConfigError, match="resume needs checkpoints"):
        MatryoshkaFinetuner(cfg.replace(resume=True)).run()


def test_loop_checkpoints_keep_the_newest(tiny_model_dir, pairs_file, tmp_path):
    from finetune.loop_checkpoints import RUN_SETTINGS

    assert RUN_SETTINGS <= set(FinetuneConfig().to_dict())  # every exempt name is a setting
    out = tmp_path / "m"
    cfg = loop_config(tiny_model_dir, pairs_file, out, tmp_path, epochs=3, evaluate_before=False,
                      evaluate_after=False, keep_checkpoints=True, save_total_limit=2)
    MatryoshkaFinetuner(cfg).run()  # 3 steps an epoch: saved at each epoch end, the two newest kept
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-6", "checkpoint-9", "finished.json"]


def test_a_stop_while_encoding_the_teacher_vectors_keeps_what_is_encoded(tiny_model_dir, pairs_file, tmp_path):
    """With the stop handler installed, Ctrl-C during the teacher encoding (27 minutes for the default
    recipe on 2 cores) waited for the first training step; it stops after the current batch instead."""
    import medrag
    from finetune.loop import TrainingLoop

    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, lora_rank=0, freeze_encoder=True,
                      rotation="pca_centered")
    pairs = [QAPair(f"question {i}", f"passage {i}") for i in range(40)]
    loop = TrainingLoop(medrag.load_model(tiny_model_dir, device="cpu"), cfg, [128, 64], pairs)
    with pytest.raises(KeyboardInterrupt):
        loop.run(stop_requested=lambda: True)
    files = list((tmp_path / "teacher").glob("*.npz"))
    assert len(files) == 1  # the questions' first batch of 32, not the passages
    with np.load(files[0]) as data:
        assert len(data["keys"]) == 32


def test_a_loop_run_records_the_recipe_it_trained_with(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """The card and matryoshka.json of an engine: loop run described the Trainer's recipe (its sampler,
    max_seq_length, precision), not the loop's frozen encoder, rotation or lengths; a base model given
    as a relative folder was recorded relative, so nothing could load it from elsewhere (audit)."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    cfg = loop_config("base", pairs_file, tmp_path / "m", tmp_path, lora_rank=0, freeze_encoder=True,
                      rotation="pca", max_steps=2, evaluate_before=False)
    MatryoshkaFinetuner(cfg).run()
    card = (tmp_path / "m" / "README.md").read_text()
    assert "encoder frozen, only the final linear layer trained" in card and "rotation pca" in card
    assert "queries <= 32 tokens, passages <= 32" in card and "fp32 (engine loop)" in card
    assert "sampler" not in card and "max_seq_length" not in card
    meta = json.loads((tmp_path / "m" / "matryoshka.json").read_text())
    assert meta["extra"]["recipe"]["engine"] == "loop" and meta["extra"]["recipe"]["freeze_encoder"] is True
    assert "batch_sampler" not in meta["extra"]["recipe"]
    assert meta["base_model"] == str(tmp_path / "base")


def test_the_held_out_split_does_not_move_with_the_training_seed(pairs_file, tiny_model_dir, tmp_path):
    """--seed drew the held-out split too: a seed-7 run held out other questions than medrag evaluate
    scores by default (split seed 42), so it was scored on its training questions (audit)."""
    from finetune.data import load_dataset_from_config

    held = [sorted({p.question for p in load_dataset_from_config(
        quick_config(tiny_model_dir, pairs_file, tmp_path / "o", **kw)).eval})
        for kw in ({"seed": 0, "split_seed": 42}, {"seed": 7, "split_seed": 42}, {"seed": 7, "split_seed": 3})]
    assert held[0] == held[1] != held[2]
    from medrag.qa.pairs import SPLIT_SEED

    assert FinetuneConfig().split_seed == SPLIT_SEED  # the split medrag evaluate scores by default


def test_the_saved_weights_are_readable_as_the_umask_says(tiny_model_dir, pairs_file, tmp_path):
    """safetensors wrote model.safetensors 0600 while every other file of the folder was 0644: another
    user (a Docker image's serving user) could not load the model (audit)."""
    import stat

    old = os.umask(0o022)
    try:
        MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path, lora_rank=0,
                                        freeze_encoder=True, rotation="pca", max_steps=1, evaluate_before=False,
                                        evaluate_after=False)).run()
    finally:
        os.umask(old)
    weights = list((tmp_path / "m").rglob("*.safetensors"))
    assert weights and {oct(stat.S_IMODE(p.stat().st_mode)) for p in weights} == {"0o644"}


def test_a_run_over_an_earlier_output_leaves_none_of_its_layers(tiny_model_dir, pairs_file, tmp_path):
    """A Trainer run into the output of a loop run with a rotation kept the old rotation's 2_Dense/
    folder beside the new model (modules.json was right, the folder a leftover) (audit)."""
    out = tmp_path / "m"
    MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, out, tmp_path, rotation="pca", max_steps=1,
                                    evaluate_before=False, evaluate_after=False, eval_fraction=0.0)).run()
    layers = sorted(p.name for p in out.iterdir() if p.is_dir() and "Dense" in p.name)
    assert layers, "the loop run with a rotation saved a Dense layer"
    MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out, max_steps=1, evaluate_before=False,
                                     evaluate_after=False)).run()
    listed = {m["path"] for m in json.loads((out / "modules.json").read_text()) if m.get("path")}
    assert not [p.name for p in out.iterdir() if p.is_dir() and p.name[0].isdigit() and p.name not in listed]


def test_a_users_folder_in_the_output_is_not_taken_for_a_layer(tiny_model_dir, pairs_file, tmp_path):
    """A user's ``2024_reports/`` in an earlier output was deleted for its name alone (December 5)."""
    out = tmp_path / "m"
    run = lambda: MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out, max_steps=1,  # noqa: E731
                                                   evaluate_before=False, evaluate_after=False)).run()
    run()
    (out / "2024_reports").mkdir()
    (out / "2024_reports" / "notes.md").write_text("mes notes")
    run()
    assert (out / "2024_reports" / "notes.md").read_text() == "mes notes"


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


@pytest.mark.parametrize("engine", ["loop", "trainer"])
def test_data_that_teaches_nothing_is_refused(tiny_model_dir, tmp_path, engine):
    """Every pair sharing one answer: the loop ran 0 steps and saved the base weights, the Trainer 4
    steps at loss 0, both "successfully", and the card showed +0.0% (December 5 audit)."""
    from tests.finetune.helpers import write_jsonl

    data = write_jsonl(tmp_path / "one.jsonl", [{"question": f"glycémie question {i}", "answer": "La glycémie."}
                                                for i in range(12)])
    make = loop_config if engine == "loop" else (lambda m, d, o, t, **kw: quick_config(m, d, o, **kw))
    with pytest.raises(DataError, match="1 distinct answer"):
        MatryoshkaFinetuner(make(tiny_model_dir, data, tmp_path / "m", tmp_path, evaluate_before=False,
                                 eval_fraction=0.0)).run()
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_the_loop_caps_its_token_lengths_at_the_models(tiny_model_dir, pairs_file, tmp_path):
    """passage_max_length 256 on a 64-token model crashed mid-run with a RuntimeError from transformers
    (the Trainer capped at the model's own limit)."""
    from tests.finetune.helpers import FACTS, write_jsonl

    long = write_jsonl(tmp_path / "long.jsonl", [{"question": f"{fact[:20]} {i}", "answer": " ".join([fact] * 30)}
                                                 for i, fact in enumerate(FACTS)])
    cfg = loop_config(tiny_model_dir, long, tmp_path / "m", tmp_path, passage_max_length=256, query_max_length=256,
                      max_steps=1, evaluate_before=False, evaluate_after=False, eval_fraction=0.0)
    assert MatryoshkaFinetuner(cfg).run().global_step == 1


def test_source_counts_are_those_of_the_pairs_trained(tiny_model_dir, pairs_file, tmp_path):
    """The counts were taken before duplicates, eval questions and the cap (a source listed twice
    counted twice): the adapter card's table added up to more than the run trained."""
    finetuner = MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path,
                                                max_train_pairs=10))
    from finetune.data import load_dataset_from_config

    finetuner.dataset = load_dataset_from_config(finetuner.config)
    pairs, counts = finetuner.training_pairs()
    assert len(pairs) == 10 and sum(counts.values()) == 10


def test_an_nfd_spelling_of_an_eval_question_is_not_trained_on(tiny_model_dir, pairs_file, tmp_path):
    """training_pairs compared raw texts: a pair spelling an eval question in NFD (pasted from macOS) was
    trained on, though it is that question (review)."""
    import unicodedata

    from finetune.data import load_dataset_from_config
    from medrag.qa.pairs import QAPair

    finetuner = MatryoshkaFinetuner(loop_config(tiny_model_dir, pairs_file, tmp_path / "m", tmp_path))
    finetuner.dataset = load_dataset_from_config(finetuner.config)
    held = finetuner.dataset.eval[0]
    finetuner.dataset.train.append(QAPair(unicodedata.normalize("NFD", held.question) + "", "Une autre réponse."))
    assert unicodedata.normalize("NFD", held.question) != held.question  # the fixture's questions are accented
    pairs, _ = finetuner.training_pairs()
    assert all(unicodedata.normalize("NFC", p.question) != unicodedata.normalize("NFC", held.question) for p in pairs)


def test_a_frozen_encoder_run_over_a_fine_tuned_model_trains_its_new_layer(tiny_model_dir, pairs_file, tmp_path,
                                                                          monkeypatch):
    """Fine-tuning a model that already ends with a trained layer (medrag's default) trained that layer
    again and saved the appended one untrained; its exported adapter carried the old layer (cosine 0.04
    with the saved model) and recorded a relative base path (user tryout)."""
    import torch

    import medrag
    from finetune.rotation import add_rotation, rotation_layer
    from medrag.metadata import MatryoshkaMetadata

    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))  # its adapters' builds, out of the user's cache
    headed = medrag.load_model(str(tiny_model_dir), device="cpu")
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(128, 128)))
    add_rotation(headed, q.astype(np.float32), np.zeros(128, np.float32))
    headed.save(str(tmp_path / "headed"))
    MatryoshkaMetadata(full_dim=128, dims=[128, 64, 32]).save(tmp_path / "headed")  # trained at 32 too
    old = rotation_layer(headed).linear.weight.detach().clone()
    monkeypatch.chdir(tmp_path)  # the base given as a relative path, as a user types it
    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "ft", tmp_path, model="headed", freeze_encoder=True,
                      rotation="pca_centered", lora_rank=0, epochs=6, learning_rate=1e-2,
                      export_adapter=str(tmp_path / "adapter" / "helpdesk"), adapter_name="helpdesk")
    MatryoshkaFinetuner(cfg).run()
    saved = medrag.load_model(str(tmp_path / "ft"), device="cpu")
    assert MatryoshkaMetadata.load(tmp_path / "ft").dims == [128, 64, 32]  # the base's sizes: 32 was dropped
    from sentence_transformers.sentence_transformer.modules import Dense

    dense = [m for m in saved if isinstance(m, Dense)]
    assert len(dense) == 2 and torch.equal(dense[0].linear.weight, old)  # the base's layer untouched
    w = dense[1].linear.weight.detach().numpy()
    assert np.abs(w @ w.T - np.eye(128)).max() > 1e-3  # trained, not its orthogonal PCA start
    config = json.loads((tmp_path / "adapter" / "helpdesk" / "adapter_config.json").read_text())
    assert config["base_model"] == str((tmp_path / "headed").resolve())
    rebuilt = medrag.load_model(str(tmp_path / "adapter" / "helpdesk"), device="cpu")  # from another folder too
    monkeypatch.chdir("/")
    text = ["Quelle est la posologie du paracétamol ?"]
    assert float(rebuilt.encode(text)[0] @ saved.encode(text)[0]) > 0.999
    # a LoRA run over it, with or without a layer of its own: the base's layer is frozen and never exported
    # (it was appended a second time: cosine -0.01; or trained and left out: 0.90) (review)
    for rotation in ("none", "pca"):
        lora = cfg.replace(model=str(tmp_path / "headed"), output_dir=str(tmp_path / f"lora-{rotation}"),
                           freeze_encoder=False, rotation=rotation, lora_rank=4, learning_rate=2e-3,
                           export_adapter=str(tmp_path / "adapter" / f"lora-{rotation}"), adapter_name=f"lora-{rotation}")
        MatryoshkaFinetuner(lora).run()
        trained = medrag.load_model(str(tmp_path / f"lora-{rotation}"), device="cpu")
        assert torch.equal([m for m in trained if isinstance(m, Dense)][0].linear.weight, old)
        built = medrag.load_model(str(tmp_path / "adapter" / f"lora-{rotation}"), device="cpu")
        assert float(built.encode(text)[0] @ trained.encode(text)[0]) > 0.999, rotation
    # the last-block phase cannot start from a model that already has a final layer: refused before training
    # it names the folder's recorded base, if any (it said bundled:multilingual-e5-small whatever the base: user
    # tryout)
    with pytest.raises(ConfigError, match="already ends with a trained final layer.*the model it was fine-tuned from"):
        MatryoshkaFinetuner(cfg.replace(model=str(tmp_path / "headed"), output_dir=str(tmp_path / "tb"),
                                        export_adapter=None, top_block_epochs=1)).run()
    base = MatryoshkaMetadata.load(tmp_path / "ft").base_model
    assert base and base != "bundled:multilingual-e5-small"
    with pytest.raises(ConfigError, match=f"its base \\(--model {re.escape(base)}\\)"):
        MatryoshkaFinetuner(cfg.replace(model=str(tmp_path / "ft"), output_dir=str(tmp_path / "tb"),
                                        export_adapter=None, top_block_epochs=1)).run()
    # before anything loads, so --check refuses it too (it printed both phases: user tryout); the exported
    # adapter (a layer) alike, the plain base not
    from finetune.preflight import check_top_block_base

    for spec in (str(tmp_path / "ft"), str(tmp_path / "headed"), str(tmp_path / "adapter" / "helpdesk")):
        with pytest.raises(ConfigError, match="already ends with a trained final layer"):
            check_top_block_base(spec)
    check_top_block_base(str(tiny_model_dir))


def test_an_exported_adapter_is_scored_on_the_questions_its_run_held_out(tiny_model_dir, pairs_file, tmp_path,
                                                                         caplog, monkeypatch):
    """``medrag evaluate`` followed a run folder's held-out split (its finetune_config.yaml) but scored the
    adapter the same run exported on the default split, its training questions among them, in silence,
    and said nothing of --split all on the file it trained on (user tryout)."""
    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))  # its adapter's build, out of the user's cache
    from medrag.cli import main

    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "ft", tmp_path, freeze_encoder=True, lora_rank=0,
                      rotation="pca_centered", epochs=1, split_seed=7, eval_fraction=0.5,
                      export_adapter=str(tmp_path / "helpdesk"))
    MatryoshkaFinetuner(cfg).run()
    assert not (tmp_path / "helpdesk" / "finetune_config.yaml").exists()  # the adapter folder alone
    # named after its folder: every user's adapter was named medrag-e5-small-fr, medrag's default (user tryout)
    assert json.loads((tmp_path / "helpdesk" / "adapter_config.json").read_text())["name"] == "helpdesk"
    argv = ["evaluate", "--model", str(tmp_path / "helpdesk"), "--data", str(pairs_file), "--question-column",
            "question", "--answer-column", "answer", "--no-cache", "--sizes", "64", "--metrics", "ndcg@10",
            "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*argv, "--out", str(tmp_path / "r1")]) == 0
    assert "held out (split seed 7, eval fraction 0.5)" in caplog.text
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert "50% held out (seed 7)" in report["task"]["name"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*argv, "--out", str(tmp_path / "r2"), "--split", "all"]) == 0
    assert "--split all scores the questions it trained on too" in caplog.text


def test_a_dataset_passed_in_python_is_not_taken_for_the_data_its_config_names(tiny_model_dir, pairs_file,
                                                                                tmp_path, caplog):
    """``MatryoshkaFinetuner(cfg, dataset=ds)`` saved a config naming other data (here the same file,
    split otherwise): ``medrag evaluate`` followed the config's split and called it the questions the run
    held out, scoring questions the model trained on (review). Now the run records the dataset it was
    given and evaluate says it cannot tell its training questions; the CLI's own dataset (loaded from
    the config) is still followed."""
    from medrag.cli import main
    from medrag.qa.pairs import load_qa_dataset

    cfg = loop_config(tiny_model_dir, pairs_file, tmp_path / "ft", tmp_path, freeze_encoder=True, lora_rank=0,
                      rotation="pca_centered", epochs=1, split_seed=7, eval_fraction=0.5)
    ds = load_qa_dataset(pairs_file, question_column="question", answer_column="answer", eval_fraction=0.3, seed=1)
    MatryoshkaFinetuner(cfg, dataset=ds).run()
    info = json.loads((tmp_path / "ft" / "training_info.json").read_text())
    assert info["data_given"] == str(pairs_file) and info["data_file"] is None
    argv = ["evaluate", "--model", str(tmp_path / "ft"), "--data", str(pairs_file), "--question-column", "question",
            "--answer-column", "answer", "--no-cache", "--sizes", "64", "--metrics", "ndcg@10", "--bootstrap", "20", "--no-plot", "--device", "cpu"]
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*argv, "--out", str(tmp_path / "r1")]) == 0
    assert "held out (split seed 7" not in caplog.text
    assert "fine-tuned on a dataset passed in Python" in caplog.text and "cannot tell" in caplog.text
    # the same dataset the config loads (the CLI's case) is the config's data: followed as before
    caplog.clear()
    same = cfg.replace(output_dir=str(tmp_path / "ft2"))
    MatryoshkaFinetuner(same, dataset=load_dataset_from_config(same)).run()
    assert "data_given" not in json.loads((tmp_path / "ft2" / "training_info.json").read_text())
    with caplog.at_level("WARNING", logger="evaluation.cli"):
        assert main([*argv[:2], str(tmp_path / "ft2"), *argv[3:], "--out", str(tmp_path / "r2")]) == 0
    assert "held out (split seed 7, eval fraction 0.5)" in caplog.text
    # another training seed draws other batches, not another split: the same data (review)
    MatryoshkaFinetuner(same.replace(seed=3, output_dir=str(tmp_path / "ft3")), dataset=load_dataset_from_config(same)).run()
    assert "data_given" not in json.loads((tmp_path / "ft3" / "training_info.json").read_text())
    # a separate eval file named by the config is not "the eval file the run used" either (review)
    from evaluation.cli import _is_eval_file

    (tmp_path / "ft" / "finetune_config.yaml").write_text(
        (tmp_path / "ft" / "finetune_config.yaml").read_text() + f"\neval_data: {pairs_file}\n")
    assert not _is_eval_file(str(tmp_path / "ft"), str(pairs_file))


def test_ctrl_c_while_the_new_model_is_scored_leaves_no_earlier_metadata(tiny_model_dir, pairs_file, tmp_path,
                                                                          monkeypatch, caplog):
    """Ctrl-C after training, while the saved model was scored, left its weights beside the earlier run's
    matryoshka.json (other sizes and scores: dimension="auto" chose a size this run never trained) and
    config, and said only "interrupted" (user tryout). Now the folder has no metadata, the message
    says to --resume, and the resumed run finishes it from its last checkpoint."""
    import finetune.training
    from medrag.metadata import MatryoshkaMetadata

    out = tmp_path / "out"
    first = loop_config(tiny_model_dir, pairs_file, out, tmp_path, rotation="pca", epochs=1, dims=[128, 64])
    MatryoshkaFinetuner(first).run()
    assert MatryoshkaMetadata.load(out).dims == [128, 64]
    cfg = first.replace(dims=[128, 32], save_steps=1, evaluate_before=False)
    real = finetune.training.score_sizes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune.training, "score_sizes", interrupted)
    with caplog.at_level("WARNING", logger="finetune.training"), pytest.raises(KeyboardInterrupt):
        MatryoshkaFinetuner(cfg).run()  # a previous output is overwritten
    assert "is incomplete (no matryoshka.json" in caplog.text and "rerun with --resume" in caplog.text
    assert not (out / "matryoshka.json").exists() and not (out / "training_info.json").exists()
    import yaml  # the config is this run's: the folder stays one a rerun may overwrite (review)

    assert yaml.safe_load((out / "finetune_config.yaml").read_text())["dims"] == [128, 32]
    from finetune.preflight import check_output_dir

    check_output_dir(cfg.replace(checkpoints=False), create=False)  # a rerun without checkpoints is not refused
    monkeypatch.setattr(finetune.training, "score_sizes", real)
    steps = []
    MatryoshkaFinetuner(cfg.replace(resume=True), callbacks=[steps.append]).run()
    meta = MatryoshkaMetadata.load(out)
    assert meta.dims == [128, 32] and meta.scores and len(steps) < 3  # finished from its last checkpoint
