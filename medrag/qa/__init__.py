"""The question -> answer data layer shared by fine-tuning and evaluation.

- :mod:`medrag.qa.pairs`: :class:`QAPair`, :class:`QADataset` and the loaders (hub id,
  JSONL/JSON/CSV/Parquet, FrenchMedMCQA) with leak-free splits;
- :mod:`medrag.qa.task`: :class:`IRTask`, the queries / corpus / relevance judgements of one evaluation;
- :mod:`medrag.qa.sample`: the French sample corpus shipped with medrag.

Both :mod:`finetune` and :mod:`evaluation` read their data from here; this package imports neither.
"""

from medrag.qa.pairs import DataStats, QADataset, QAPair, load_frenchmedmcqa, load_qa_dataset, split_by_question
from medrag.qa.sample import SampleCorpus, SamplePassage, load_sample_corpus
from medrag.qa.task import IRTask

__all__ = [
    "DataStats",
    "IRTask",
    "QADataset",
    "QAPair",
    "SampleCorpus",
    "SamplePassage",
    "load_frenchmedmcqa",
    "load_qa_dataset",
    "load_sample_corpus",
    "split_by_question",
]
