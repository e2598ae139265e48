"""End-to-end training on the tiny model: loss, output folder, reload, prompts, Ctrl-C and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest

from finetune.config import ConfigError
from finetune.training import MatryoshkaFinetuner
from tests.finetune.conftest import quick_config
from tests.finetune.helpers import qa_pairs, write_jsonl


@pytest.fixture(scope="module")
def trained(tiny_model_dir, pairs_file, tmp_path_factory):
    """One training run shared by the tests of this module."""
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path_factory.mktemp("run") / "model")
    return MatryoshkaFinetuner(cfg).run()


def test_loss_goes_down(trained):
    losses = trained.losses
    assert len(losses) >= 8
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def test_output_folder_is_complete(trained):
    out = trained.output_dir
    for name in ("config.json", "modules.json", "config_sentence_transformers.json", "matryoshka.json",
                 "finetune_config.yaml", "training_info.json", "README.md"):
        assert (out / name).is_file(), name
    assert any(out.glob("*.safetensors")) or any(out.glob("*/*.safetensors"))
    assert not (out / "checkpoints").exists()  # removed after a successful run

    info = json.loads((out / "training_info.json").read_text())
    assert info["train_seconds"] > 0 and info["samples_per_second"] > 0 and info["train_cpu_seconds"] > 0
    assert info["global_step"] == trained.global_step == 12  # 24 train pairs / batch 8 x 4 epochs
    assert info["precision"] == "fp32" and info["loss"] == "mnrl"  # loss "auto" on CPU
    assert info["train_pairs"] == 24 and info["eval_queries"] == 8

    meta = json.loads((out / "matryoshka.json").read_text())
    assert meta["dims"] == [128, 64] and meta["full_dim"] == 128
    for key in ("scores", "scores_before"):
        assert set(meta[key]) == {"128", "64"}
        assert set(meta[key]["64"]) >= {"ndcg@10", "mrr@10", "recall@10"}

    card = (out / "README.md").read_text()
    assert "| Dimension | Initial ndcg@10 | Final ndcg@10 | Gain |" in card
    for dim in (128, 64):
        b, a = trained.scores_before[dim]["ndcg@10"], trained.scores_after[dim]["ndcg@10"]
        assert f"| {dim} | {b:.4f} | {a:.4f} |" in card
    assert "MultipleNegativesRankingLoss" in card and "samples/s" in card and "s CPU time on 1 thread(s)" in card


def test_the_trained_model_learned_something(trained):
    # 8 facts, 8 held-out questions made of the fact's own words: training must help. Summed over
    # the sizes: the tiny model's WordPiece vocabulary (trained by the Rust tokenizers library) varies
    # from process to process, and in some draws the base already ranks well at 128 and only ties there.
    after = sum(s["ndcg@10"] for s in trained.scores_after.values())
    assert after > sum(s["ndcg@10"] for s in trained.scores_before.values())


def test_reloadable_with_medrag(trained):
    import medrag
    from medrag import MatryoshkaEmbeddings

    model = medrag.load_model(trained.output_dir, device="cpu")
    assert model.prompts.get("query") == "query: " and model.prompts.get("passage") == "passage: "
    assert model.max_seq_length == 64  # training used 32; the saved model keeps its inference length
    emb = MatryoshkaEmbeddings(trained.output_dir, dimension="auto", device="cpu")
    assert emb.dims == [128, 64] and emb.dimension in (128, 64)
    assert len(emb.embed_query("Quels sont les symptômes du diabète ?")) == emb.dimension


def test_prompts_reach_the_model_in_training(tiny_model_dir, tmp_path):
    import medrag

    rows = qa_pairs()
    for i, r in enumerate(rows):
        r["negs"] = [rows[(i + 5) % len(rows)]["answer"]]
    data = write_jsonl(tmp_path / "negs.jsonl", rows)
    cfg = quick_config(tiny_model_dir, data, tmp_path / "m", hard_negatives=1, negatives_column="negs",
                       checkpoints=False)
    finetuner = MatryoshkaFinetuner(cfg)
    from finetune.data import load_dataset_from_config

    finetuner.dataset = load_dataset_from_config(cfg)
    model = medrag.load_model(tiny_model_dir, device="cpu")
    trainer = finetuner._build_trainer(model, [128, 64], "fp32")
    batch = next(iter(trainer.get_train_dataloader()))
    tok = model.tokenizer
    first_words = {}
    for column in ("anchor", "positive", "negative_1"):
        ids = batch[f"{column}_input_ids"]
        texts = tok.batch_decode(ids, skip_special_tokens=True)
        assert texts
        first_words[column] = {t.split()[0] for t in texts}
    assert first_words == {"anchor": {"query"}, "positive": {"passage"}, "negative_1": {"passage"}}
    # and the prompt is text the model reads, not a stripped prefix: "query :" tokens then the question
    assert tok.batch_decode(batch["anchor_input_ids"], skip_special_tokens=True)[0].startswith("query :")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_leaves_a_checkpoint_and_resume_continues(tiny_model_dir, pairs_file, tmp_path, stop):
    """SIGTERM (Slurm, Kubernetes preemption) killed the run with no checkpoint at the current step."""
    from transformers import TrainerCallback

    class CtrlCAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                os.kill(os.getpid(), stop)

    out = tmp_path / "m"
    cfg = quick_config(tiny_model_dir, pairs_file, out, epochs=2, save_steps=100)
    with pytest.raises(KeyboardInterrupt):
        MatryoshkaFinetuner(cfg, callbacks=[CtrlCAtStep3()]).run()
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    assert not (out / "matryoshka.json").exists()

    # the same command again without --resume refuses to mix two runs
    with pytest.raises(ConfigError, match="pass --resume"):
        MatryoshkaFinetuner(cfg).run()

    steps = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    result = MatryoshkaFinetuner(cfg.replace(resume=True), callbacks=[Record()]).run()
    assert steps == [4, 5, 6]  # 24 pairs / batch 8 x 2 epochs = 6 steps; continued after step 3
    assert result.global_step == 6
    assert json.loads((out / "training_info.json").read_text())["global_step"] == 6
    # the times are this session's: said, with the step it resumed from (they read as the whole run's: audit)
    assert result.resumed_from_step == 3 and json.loads((out / "training_info.json").read_text())["resumed_from_step"] == 3
    assert "6 optimizer steps (resumed from step 3: the time and rate are the last session's, 3 steps)" in \
        (out / "README.md").read_text()
    assert result.scores_before  # kept beside the checkpoint, reused
    assert not (out / "checkpoints").exists()


def test_resume_without_a_checkpoint_is_an_error(tiny_model_dir, pairs_file, tmp_path):
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        MatryoshkaFinetuner(cfg).run()


def test_a_config_changed_after_it_was_built_is_checked_again(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """``cfg.batch_size = 1`` ran 0 steps and saved the base as fine-tuned; ``cfg.learning_rate = "1e-3"``
    failed with a bare TypeError after the model had loaded (user tryout)."""
    import medrag

    monkeypatch.setattr(medrag, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m")
    cfg.batch_size = 1
    with pytest.raises(ConfigError, match="batch_size must be >= 2"):
        MatryoshkaFinetuner(cfg).run()
    cfg.batch_size, cfg.epochs = 8, -2
    with pytest.raises(ConfigError, match="epochs must be > 0"):
        MatryoshkaFinetuner(cfg).run()
    assert not (tmp_path / "m").exists()


def test_dims_beyond_the_model_are_an_error(tiny_model_dir, pairs_file, tmp_path):
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", dims=[256, 64])
    with pytest.raises(ConfigError, match=r"dims \[256\] exceed the model's size 128"):
        MatryoshkaFinetuner(cfg).run()


def test_cached_loss_and_hard_negatives_train(tiny_model_dir, tmp_path):
    # each pair's negative: another fact (without negatives_column, hard_negatives is refused: the run
    # trained on the pairs alone, with a warning)
    from tests.finetune.helpers import qa_pairs, write_jsonl

    rows = qa_pairs()
    answers = sorted({r["answer"] for r in rows})
    rows = [{**r, "negatives": [answers[(answers.index(r["answer"]) + 1) % len(answers)]]} for r in rows]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = quick_config(tiny_model_dir, data, tmp_path / "m", loss="cached_mnrl", hard_negatives=1,
                       negatives_column="negatives", epochs=1, evaluate_before=False, checkpoints=False)
    result = MatryoshkaFinetuner(cfg).run()
    assert result.global_step == 3 and not result.scores_before and result.scores_after
    info = json.loads((tmp_path / "m" / "training_info.json").read_text())
    assert info["loss"] == "cached_mnrl"
    assert "CachedMultipleNegativesRankingLoss (mini-batch 4)" in (tmp_path / "m" / "README.md").read_text()


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(next(p for p in sorted(folder.rglob("model.safetensors")))))


def test_a_one_step_run_trains_at_a_real_learning_rate(tiny_model_dir, pairs_file, tmp_path):
    """transformers warms up ceil(steps * ratio) steps: one step (60 pairs at batch 64) ran at learning
    rate 0 and the base weights were saved as the trained model."""
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", batch_size=64, epochs=1, warmup_ratio=0.1)
    result = MatryoshkaFinetuner(cfg).run()
    assert result.global_step == 1
    base, trained = _weights(tiny_model_dir), _weights(tmp_path / "m")
    assert any(not (base[k] == trained[k]).all() for k in base if k in trained)


def test_a_held_out_split_of_few_queries_is_warned_about(tiny_model_dir, pairs_file, tmp_path, caplog):
    """3 pairs with 10% held out scored one query: 1.0 at every size, no warning, and dimension="auto"
    took the smallest size (tryout); medrag evaluate warned on the same split."""
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", epochs=1)  # 8 held-out questions
    with caplog.at_level("WARNING", logger="evaluation.retrieval"):
        MatryoshkaFinetuner(cfg).run()
    assert "has 8 queries: the before/after table and the scores dimension='auto' chooses" in caplog.text


def test_evaluate_after_false_skips_the_final_scores(tiny_model_dir, pairs_file, tmp_path):
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", epochs=1, evaluate_after=False)
    result = MatryoshkaFinetuner(cfg).run()
    assert result.scores_before and not result.scores_after


def test_a_diverged_run_saves_nothing(tiny_model_dir, pairs_file, tmp_path):
    """lr 1e30 trained NaN weights, saved with exit 0: the model loaded and answered NaN vectors."""
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", epochs=1, learning_rate=1e30)
    with pytest.raises(ConfigError, match="training diverged"):
        MatryoshkaFinetuner(cfg).run()
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_resumed_run_on_other_data_scores_its_base_model_again(tiny_model_dir, pairs_file, tmp_path):
    """--resume reused the interrupted run's base scores whatever the eval task: a wrong before/after table."""
    out = tmp_path / "m"
    first = MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out, epochs=1, keep_checkpoints=True)).run()
    other = write_jsonl(tmp_path / "other.jsonl", qa_pairs(3))
    cfg = quick_config(tiny_model_dir, other, out, epochs=2, resume=True, eval_fraction=0.5)
    runner = MatryoshkaFinetuner(cfg)
    from accelerate import PartialState

    runner.dataset = None
    from finetune.data import load_dataset_from_config
    from medrag.models import load_model

    task = load_dataset_from_config(cfg).eval_task()
    before = runner._scores_before(load_model(str(tiny_model_dir), device="cpu"), task, first.dims,
                                   PartialState(cpu=True))
    from finetune.scoring import score_sizes

    expected = score_sizes(load_model(str(tiny_model_dir), device="cpu"), task, first.dims, batch_size=16)
    assert before == expected and before != first.scores_before


def test_the_checkpoint_cleanup_keeps_the_users_files(tiny_model_dir, pairs_file, tmp_path):
    (tmp_path / "m" / "checkpoints").mkdir(parents=True)
    (tmp_path / "m" / "checkpoints" / "my_notes.txt").write_text("à garder")
    MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, tmp_path / "m", epochs=1)).run()
    left = sorted(p.name for p in (tmp_path / "m" / "checkpoints").iterdir())
    assert left == ["my_notes.txt"]


def _loss_weights(monkeypatch) -> dict:
    """Size -> Matryoshka loss weight, as the training loop receives them."""
    import finetune.loop as loop

    seen: dict = {}
    real = loop.TrainingLoop.__init__

    def spy(self, model, config, dims, *args, **kwargs):
        seen.update(zip(dims, config.matryoshka_weights))
        real(self, model, config, dims, *args, **kwargs)

    monkeypatch.setattr(loop.TrainingLoop, "__init__", spy)
    return seen


def test_unsorted_sizes_keep_their_matryoshka_weights(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """dims [32, 64] with weights [5, 2] trained 64 at 5 and 32 at 2 (the sizes were sorted, the weights not)."""
    seen = _loss_weights(monkeypatch)
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", engine="loop", dims=[32, 64],
                       matryoshka_weights=[5.0, 2.0], max_steps=1)
    MatryoshkaFinetuner(cfg).run()
    assert seen == {128: 1.0, 64: 2.0, 32: 5.0}


def test_a_run_without_evaluation_has_a_card_that_works(tiny_model_dir, pairs_file, tmp_path):
    """With nothing held out the card said "by question, 0% held out" above an empty table, and its
    `dimension="auto"` snippet raised MetadataError."""
    from medrag import MatryoshkaEmbeddings

    out = tmp_path / "m"
    MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, out, eval_fraction=0.0, max_steps=2)).run()
    card = (out / "README.md").read_text()
    assert "Not evaluated" in card and 'dimension="auto"' not in card and "2 step(s) at most" in card
    snippet = next(line for line in card.splitlines() if line.startswith("emb = "))
    emb = eval(snippet.split(" = ", 1)[1].split("  #")[0], {"MatryoshkaEmbeddings": MatryoshkaEmbeddings})
    assert len(emb.embed_query("fer")) == 64


def test_training_logs_stay_off_stdout(tiny_model_dir, pairs_file, tmp_path, capsys):
    """The Trainer's {'loss': ...} lines went to stdout, into the table `medrag finetune > results.md` keeps."""
    MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, tmp_path / "m", max_steps=2)).run()
    captured = capsys.readouterr()
    assert "'loss'" not in captured.out and "'loss'" in captured.err


def test_matryoshka_weights_without_dims_apply_in_order(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """Without dims, the weights go to the run's sizes in order (the default sizes, largest first)."""
    seen = _loss_weights(monkeypatch)
    cfg = quick_config(tiny_model_dir, pairs_file, tmp_path / "m", engine="loop", matryoshka_weights=[4.0, 1.0],
                       max_steps=1)
    MatryoshkaFinetuner(cfg).run()
    assert seen == {128: 4.0, 64: 1.0}


def test_the_final_loss_is_logged_at_the_last_step(tiny_model_dir, pairs_file, tmp_path):
    """With logging_steps 10, a run of 3 steps logged step 1 alone, and training_info.json's
    final_loss was step 1's (audit)."""
    result = MatryoshkaFinetuner(quick_config(tiny_model_dir, pairs_file, tmp_path / "m", epochs=1, logging_steps=10,
                                              evaluate_before=False, evaluate_after=False)).run()
    assert result.global_step == 3 and len(result.losses) == 2  # step 1 (logging_first_step) and the last
    assert json.loads((tmp_path / "m" / "training_info.json").read_text())["final_loss"] == result.losses[-1]


def test_freeze_embeddings_is_what_each_engine_trains_with(tiny_model_dir, pairs_file, tmp_path):
    """The Trainer engine ignored freeze_embeddings=True (the default, also passed explicitly) and the saved
    config claimed it: every row of the word embeddings moved (user tryout). The default is now each
    engine's own recipe, and an explicit true freezes them with the Trainer too."""
    from finetune.loop_checkpoints import run_settings

    trainer = quick_config(tiny_model_dir, pairs_file, tmp_path / "a")
    assert trainer.freeze_embeddings is None and trainer.embeddings_frozen is False
    loop = quick_config(tiny_model_dir, pairs_file, tmp_path / "b", engine="loop")
    assert loop.freeze_embeddings is None and loop.embeddings_frozen is True
    # resolved when read, not stored: a config moved to the other engine gets that engine's default (review)
    assert dataclasses.replace(loop, engine="trainer").embeddings_frozen is False
    # runs written before the per-engine default recorded True in their run key: they still resume
    assert run_settings(trainer, [8])["settings"]["freeze_embeddings"] is True
    assert run_settings(trainer.replace(freeze_embeddings=True), [8])["settings"]["freeze_embeddings"] != True  # noqa: E712
    base = _weights(tiny_model_dir)
    key = next(k for k in base if "word_embeddings" in k)
    for freeze in (True, False):
        out = tmp_path / f"m{freeze}"
        cfg = quick_config(tiny_model_dir, pairs_file, out, batch_size=16, max_steps=2, freeze_embeddings=freeze)
        MatryoshkaFinetuner(cfg).run()
        trained = _weights(out)
        assert (base[key] == trained[key]).all() == freeze, freeze
        assert any(not (base[k] == trained[k]).all() for k in base if k in trained and "word_embeddings" not in k)
        assert f"freeze_embeddings: {str(freeze).lower()}" in (out / "finetune_config.yaml").read_text()
