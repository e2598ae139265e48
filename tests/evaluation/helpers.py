"""Small shared helpers of the evaluation tests."""

from __future__ import annotations

from medrag.embeddings import MatryoshkaEmbeddings
from medrag.qa.task import IRTask
from tests.tiny_model import SENTENCES

TEXTS = list(dict.fromkeys(SENTENCES))[:8]


def tiny_task(n: int = 4) -> IRTask:
    """Questions and answers taken from the tiny model's sentences (the vectors are random anyway)."""
    pairs = [(f"{TEXTS[i]} question {i}", f"{TEXTS[(i + 1) % len(TEXTS)]} réponse {i}") for i in range(n)]
    return IRTask.from_pairs(pairs, name="tiny")


class _Counting(MatryoshkaEmbeddings):
    """Records ``(number of texts, prompt name)`` for every call of its public encoder methods."""

    def encode_queries(self, texts):
        self.calls.append((len(list(texts)), self.query_prompt_name))
        return super().encode_queries(texts)

    def encode_documents(self, texts):
        self.calls.append((len(list(texts)), self.document_prompt_name))
        return super().encode_documents(texts)


def counting(embeddings):
    """A copy of ``embeddings`` that counts how many texts its encoder is asked for."""
    clone = embeddings.with_dimension(embeddings.dimension)
    clone.__class__ = _Counting
    clone.calls = []
    return clone
