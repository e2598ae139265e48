"""How many training questions and passages the run's token caps cut.

Training reads at most ``max_seq_length`` tokens of a text (the Trainer engine, 128 by default) or
``query_max_length`` / ``passage_max_length`` (the loop engine, 64 / 256), prompt included: a longer
passage is trained on its beginning only, and nothing said so. Passages of one's own pairs are often
whole sections or notes of several hundred tokens, so :func:`log_truncated` counts them before
training (``medrag finetune --check`` prints the count) and warns when 1% or more of either side is
cut, naming the setting that raises the cap and its price: attention's cost grows with the square of
the length, so the usual alternative is to train on chunks of the passages, the texts a store returns.

Example::

    from finetune.truncation import count_truncated, training_caps

    caps = training_caps(config, model.max_seq_length)
    count_truncated(model, dataset.train, *caps).passages  # 412: answers trained on their beginning only
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from finetune.scoring import prompt_texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

logger = logging.getLogger(__name__)

#: At most this many pairs are tokenized to count (the first ones; a share is what the warning needs).
MAX_COUNTED_PAIRS = 50_000
#: A side whose texts over the cap make this share or more is warned about (fewer: logged at INFO).
WARN_SHARE = 0.01


@dataclass(frozen=True)
class TruncationCount:
    """Of ``pairs`` counted pairs, the ``questions`` longer than ``query_cap`` tokens and the
    ``passages`` (answers) longer than ``passage_cap``, prompts included; a cap of ``None``: not capped."""

    pairs: int
    questions: int
    passages: int
    query_cap: int | None
    passage_cap: int | None


def training_caps(config: "FinetuneConfig", model_max_length: int | None) -> tuple[int | None, int | None]:
    """The token caps of questions and passages in training: the loop engine's
    ``query_max_length`` / ``passage_max_length``, the Trainer's one ``max_seq_length``, never beyond
    ``model_max_length`` (what the model takes; ``None``: no limit known)."""

    def capped(n: int | None) -> int | None:
        if n is None:
            return model_max_length
        return n if model_max_length is None else min(n, model_max_length)

    if config.engine == "loop":
        return capped(config.query_max_length), capped(config.passage_max_length)
    return capped(config.max_seq_length), capped(config.max_seq_length)


def count_truncated(model: "SentenceTransformer", pairs: Sequence["QAPair"], query_cap: int | None,
                    passage_cap: int | None) -> TruncationCount:
    """Tokenize the first :data:`MAX_COUNTED_PAIRS` of ``pairs`` with ``model``'s tokenizer, its
    query and passage prompts prepended and special tokens counted, as training reads them."""
    pairs = list(pairs[:MAX_COUNTED_PAIRS])
    qprompt, pprompt = prompt_texts(model)

    def over(texts: list[str], cap: int | None) -> int:
        if cap is None or not texts:
            return 0
        # verbose=False: counting a long text's tokens is not a request to encode it whole (as
        # MatryoshkaEmbeddings.count_tokens reads them)
        ids = model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return sum(1 for t in ids if len(t) > cap)

    return TruncationCount(len(pairs), over([qprompt + p.question for p in pairs], query_cap),
                           over([pprompt + p.answer for p in pairs], passage_cap), query_cap, passage_cap)


def describe(count: TruncationCount, config: "FinetuneConfig") -> list[str]:
    """One line per side with texts over its cap (none when nothing is cut)."""
    return [line for _, line in _sides(count, config)]


def _sides(count: TruncationCount, config: "FinetuneConfig") -> list[tuple[int, str]]:
    """Each side with texts over its cap: how many, and the line that says so."""
    loop = config.engine == "loop"
    lines = []
    for n, cap, side, setting in ((count.passages, count.passage_cap, "passages (answers)",
                                   "passage_max_length" if loop else "max_seq_length"),
                                  (count.questions, count.query_cap, "questions",
                                   "query_max_length" if loop else "max_seq_length")):
        if n:
            lines.append((n, f"{n} of {count.pairs} training {side} ({100 * n / count.pairs:.1f}%) are longer than the "
                         f"{cap} tokens trained on (prompt included): the model learns from their first {cap} tokens "
                         f"only; raise {setting} (slower: attention grows with the square of the length) or train "
                         "on chunks of the passages, the texts a store returns"))
    return lines


def log_truncated(model: "SentenceTransformer", pairs: Sequence["QAPair"], config: "FinetuneConfig",
                  model_max_length: int | None) -> TruncationCount:
    """Count (:func:`count_truncated`) and log: a warning per side when :data:`WARN_SHARE` or more
    of its texts are cut, INFO otherwise."""
    count = count_truncated(model, pairs, *training_caps(config, model_max_length))
    for n, line in _sides(count, config):
        logger.log(logging.WARNING if n >= WARN_SHARE * count.pairs else logging.INFO, "%s", line)
    return count


__all__ = ["MAX_COUNTED_PAIRS", "TruncationCount", "WARN_SHARE", "count_truncated", "describe", "log_truncated",
           "training_caps"]
