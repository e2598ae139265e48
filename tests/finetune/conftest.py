"""Fixtures for the finetune tests: a pairs file in the tiny model's vocabulary and a quick config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.finetune.helpers import qa_pairs, write_jsonl


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", qa_pairs())


def quick_config(tiny_model_dir, pairs_file, output_dir, **overrides):
    """A run of a few seconds on the tiny model: 32 pairs, 25% held out, batch 8."""
    from finetune.config import TRAINER_ONLY, FinetuneConfig

    base = dict(data=str(pairs_file), question_column="question", answer_column="answer", eval_fraction=0.25,
                model=str(tiny_model_dir), output_dir=str(output_dir), device="cpu", batch_size=8,
                mini_batch_size=4, epochs=4, learning_rate=5e-4, warmup_ratio=0.0, max_seq_length=32,
                logging_steps=1, eval_batch_size=16, seed=0, split_seed=0)
    if overrides.get("engine") == "loop":  # the loop refuses the Trainer's options
        base = {k: v for k, v in base.items() if k not in TRAINER_ONLY}
    return FinetuneConfig(**{**base, **overrides})


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the tiny model gains nothing from more, and on a busy machine two
    OpenMP threads waiting on each other made these tests 7x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
