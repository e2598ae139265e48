"""finetune: Matryoshka fine-tuning of sentence embedding models on question -> answer pairs.

- :mod:`finetune.data`: the dataset a config names (the loaders themselves live in :mod:`medrag.qa`);
- :mod:`finetune.config`: :class:`FinetuneConfig` (YAML/TOML + CLI overrides);
- :mod:`finetune.training`: :class:`MatryoshkaFinetuner`, scoring before/after, the output folder;
- :mod:`finetune.scoring`: per-size retrieval scores with the training prompts;
- :mod:`finetune.cli`: ``medrag finetune`` / ``python -m finetune``.

Example::

    >>> from finetune import FinetuneConfig, MatryoshkaFinetuner
    >>> result = MatryoshkaFinetuner(FinetuneConfig(data="pairs.jsonl", output_dir="out")).run()

Imports are lazy: ``import finetune`` loads neither torch nor sentence-transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FinetuneConfig": "finetune.config",
    "ConfigError": "medrag.errors",
    "MatryoshkaFinetuner": "finetune.training",
    "FinetuneResult": "finetune.training",
    "train": "finetune.training",
    "QADataset": "medrag.qa",
    "QAPair": "medrag.qa",
    "load_qa_dataset": "medrag.qa",
    "load_frenchmedmcqa": "medrag.qa",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
