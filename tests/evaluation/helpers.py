"""Small shared helpers of the evaluation tests."""

from __future__ import annotations

from medrag.qa.task import IRTask
from tests.tiny_model import SENTENCES

TEXTS = list(dict.fromkeys(SENTENCES))[:8]


def tiny_task(n: int = 4) -> IRTask:
    """Questions and answers taken from the tiny model's sentences (the vectors are random anyway)."""
    pairs = [(f"{TEXTS[i]} question {i}", f"{TEXTS[(i + 1) % len(TEXTS)]} réponse {i}") for i in range(n)]
    return IRTask.from_pairs(pairs, name="tiny")


def counting(embeddings):
    """A copy of ``embeddings`` that counts how many texts its encoder is asked for."""
    clone = embeddings.with_dimension(embeddings.dimension)
    clone.calls = []
    original = embeddings._encode

    def _encode(texts, prompt_name):
        clone.calls.append((len(list(texts)), prompt_name))
        return original(texts, prompt_name)

    clone._encode = _encode
    return clone
