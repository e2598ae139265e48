"""finetune.truncation: the training texts the token caps cut are counted and named."""

from __future__ import annotations

import logging

from finetune.config import FinetuneConfig
from finetune.truncation import count_truncated, describe, log_truncated, training_caps
from medrag.qa.pairs import QAPair


def _lengths(model, texts: list[str], side: int) -> list[int]:
    """Token counts as training reads them: the side's prompt (0: query, 1: passage) prepended."""
    from finetune.scoring import prompt_texts

    prompt = prompt_texts(model)[side]
    return [len(model.tokenizer(prompt + t)["input_ids"]) for t in texts]


def test_the_caps_are_each_engines_and_never_beyond_the_model() -> None:
    trainer = FinetuneConfig(max_seq_length=128)
    loop = FinetuneConfig(engine="loop", query_max_length=32, passage_max_length=256)
    assert training_caps(trainer, 512) == (128, 128) and training_caps(trainer, 64) == (64, 64)
    assert training_caps(loop, 512) == (32, 256) and training_caps(loop, 100) == (32, 100)
    assert training_caps(FinetuneConfig(max_seq_length=None), 512) == (512, 512)
    assert training_caps(FinetuneConfig(max_seq_length=None), None) == (None, None)


def test_texts_over_the_caps_are_counted_with_their_prompt_and_special_tokens(tiny_model) -> None:
    pairs = [QAPair(f"question {i} ?", "Réponse courte." if i % 4 else "La ferritine basse. " * 20)
             for i in range(8)]
    lengths = _lengths(tiny_model, [p.answer for p in pairs], 1)
    cap = sorted(lengths)[-1] - 1  # the longest ones only
    count = count_truncated(tiny_model, pairs, 64, cap)
    assert count.pairs == 8 and count.passages == 2 and count.questions == 0
    assert count_truncated(tiny_model, pairs, 64, max(lengths)).passages == 0  # a text of the cap's length fits
    assert count_truncated(tiny_model, pairs, None, None) == type(count)(8, 0, 0, None, None)
    short_cap = min(_lengths(tiny_model, [p.question for p in pairs], 0)) - 1
    assert count_truncated(tiny_model, pairs, short_cap, None).questions == 8


def test_a_share_of_one_percent_is_a_warning_fewer_are_info(tiny_model, caplog) -> None:
    long = "La ferritine basse traduit une carence en fer. " * 20
    pairs = [QAPair(f"question {i} ?", long if i == 0 else "Réponse.") for i in range(200)]
    config = FinetuneConfig(engine="loop", passage_max_length=16)
    with caplog.at_level(logging.INFO, logger="finetune.truncation"):
        log_truncated(tiny_model, pairs[:100], config, 64)  # 1 of 100: warned
        log_truncated(tiny_model, pairs, config, 64)  # 1 of 200: INFO
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.INFO], caplog.text
    assert "1 of 100 training passages (answers) (1.0%) are longer than the 16 tokens" in caplog.records[0].getMessage()
    assert "raise passage_max_length" in caplog.records[0].getMessage()
    trainer = describe(count_truncated(tiny_model, pairs, 4, 4), FinetuneConfig())
    assert len(trainer) == 2 and all("raise max_seq_length" in line for line in trainer)
    assert trainer[1].startswith("200 of 200 training questions (100.0%)")


def test_a_run_logs_the_passages_its_cap_cuts(tiny_model_dir, tmp_path, caplog) -> None:
    from finetune.training import MatryoshkaFinetuner
    from tests.finetune.conftest import quick_config
    from tests.finetune.helpers import write_jsonl

    data = write_jsonl(tmp_path / "long.jsonl", [{"question": f"question {i} ?", "answer": f"Réponse {i}. " + (
        "La ferritine basse traduit une carence en fer. " * 5 if i % 2 else "")} for i in range(16)])
    cfg = quick_config(tiny_model_dir, data, tmp_path / "m", epochs=1, evaluate_before=False, evaluate_after=False,
                       eval_fraction=0.0, max_seq_length=24)
    with caplog.at_level(logging.WARNING, logger="finetune.truncation"):
        MatryoshkaFinetuner(cfg).run()
    warned = [r.getMessage() for r in caplog.records if r.name == "finetune.truncation"]
    assert len(warned) == 1 and warned[0].startswith("8 of 16 training passages (answers) (50.0%) are longer than "
                                                     "the 24 tokens trained on"), warned
