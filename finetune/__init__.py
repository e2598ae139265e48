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

from medrag._exports import lazy_exports as _lazy_exports

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

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, __all__)
