"""The fine-tuning configuration: one dataclass, readable from YAML or TOML, overridable from the CLI.

Example::

    >>> from finetune.config import FinetuneConfig
    >>> cfg = FinetuneConfig.from_file("configs/frenchmedmcqa_default.yaml", overrides={"epochs": 3})
    >>> cfg.loss, cfg.batch_size, cfg.learning_rate, cfg.epochs
    ('auto', 64, 5e-05, 3.0)

Defaults are the recipe chosen from our measurements (docs/results.md, "Fine-tuning"): MatryoshkaLoss
over in-batch negatives with one contrastive batch of 64 (CachedMNRL, mini-batch 16, on GPU; the
identical plain MNRL on CPU, see ``loss``), NO_DUPLICATES, no hard negatives, lr 5e-5, 1 epoch,
warmup 0.1, max_seq_length 128: it meets the in-domain targets on FrenchMedMCQA while keeping most of
the base model's quality on other French medical text (``configs/frenchmedmcqa_indomain.yaml``, lr 1e-4
and 2 epochs, scores higher in domain and loses more elsewhere). The seed report's recipe is ``configs/seed.yaml`` (MNRL, batch 4 x
accumulation 16, lr 2e-5, 1 epoch); on FrenchMedMCQA ``configs/frenchmedmcqa_seed.yaml``.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import math
import os
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from collections.abc import Hashable
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from medrag.errors import ConfigError
from medrag.qa.pairs import (  # DEFAULT_TRAIN_SPLITS: train_splits' default, FrenchMedMCQA's train and dev files
    ANSWER_COLUMN, DEFAULT_HUB_DATASET, DEFAULT_TRAIN_SPLITS, EVAL_FRACTION, QUESTION_COLUMN, SPLIT_SEED,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


DataFormat = Literal["auto", "pairs", "frenchmedmcqa"]
Loss = Literal["auto", "mnrl", "cached_mnrl"]
Sampler = Literal["batch_sampler", "no_duplicates"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
ReportTo = Literal["none", "wandb", "tensorboard"]

#: The allowed values of each choice, derived from the ``Literal`` types (the one place they are written).
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)
LOSSES: tuple[str, ...] = get_args(Loss)
#: transformers schedules that need no ``lr_scheduler_kwargs`` (the others failed mid-run with a traceback).
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")
SAMPLERS: tuple[str, ...] = get_args(Sampler)
PRECISIONS: tuple[str, ...] = get_args(Precision)
REPORT_TO: tuple[str, ...] = get_args(ReportTo)
Engine = Literal["trainer", "loop"]
Rotation = Literal["none", "pca", "pca_centered"]
ExportScores = Literal["run", "suite_pilot", "suite"]
BatchSampling = Literal["random", "topic", "document"]
ENGINES: tuple[str, ...] = get_args(Engine)
#: options only ``engine: trainer`` reads (the loop has its own lengths, fp32, MNRL and a linear schedule);
#: set away from their defaults with ``engine: loop`` they are refused instead of silently ignored
TRAINER_ONLY: tuple[str, ...] = ("loss", "mini_batch_size", "hard_negatives", "batch_sampler", "gather_across_devices",
                                 "gradient_accumulation_steps", "max_seq_length", "precision", "tf32", "report_to",
                                 "run_name")
ROTATIONS: tuple[str, ...] = get_args(Rotation)
BATCH_SAMPLINGS: tuple[str, ...] = get_args(BatchSampling)


def setting(default: Any = None, help: str = "", *, factory: Any = None) -> Any:
    """A config field with its help text: ``field(metadata={"help": help})``, shown by ``medrag finetune --help``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs. Every field has a CLI flag (``--field-name``) whose help
    is the field's ``metadata["help"]`` (``medrag finetune --help`` lists them all).

    Groups: data (where the pairs come from and what is held out), model and loss, optimisation,
    run (outputs, checkpoints, logging). The defaults are the recipe described in the module doc.
    """

    # data
    data: str = setting(DEFAULT_HUB_DATASET, "a hub dataset id, a local .jsonl/.json/.csv/.tsv/.parquet file, or a "
                        "FrenchMedMCQA folder")
    data_format: DataFormat = setting("auto", "how to read data: auto (FrenchMedMCQA folders are recognised), "
                                      "pairs or frenchmedmcqa")
    question_column: str = setting(QUESTION_COLUMN, "question column of pairs data")
    answer_column: str = setting(ANSWER_COLUMN, "answer (positive passage) column of pairs data")
    negatives_column: str | None = setting(None, "column of hard negatives in pairs data (a list of texts or one text)")
    eval_data: str | None = setting(None, "a separate evaluation file or hub id (then nothing is held out of data)")
    eval_fraction: float = setting(EVAL_FRACTION, "share of distinct questions held out for evaluation when there "
                                   "is no eval split")
    train_splits: list[str] = setting(help="training split names (hub datasets: every one is trained on, none is "
                                           "the eval split; the default's dev only when the dataset has it) or file "
                                           "stems (FrenchMedMCQA)",
                                      factory=lambda: list(DEFAULT_TRAIN_SPLITS))
    eval_split: str | None = setting(None, "evaluation split or file stem (FrenchMedMCQA: test); none: the hub "
                                     "dataset's test/validation split if any")
    # model and loss
    model: str | None = setting(None, "model to fine-tune: none (the plain embedded e5-small, "
                                "bundled:multilingual-e5-small), a folder, a bundled: spec or a hub id (medrag.load_model)")
    dims: list[int] | None = setting(None, "Matryoshka sizes to train; none: the seed's 1024/768/512/256/128/64 "
                                     "capped to the model (the full size is always added)")
    loss: Loss = setting("auto", "mnrl (in-batch negatives = the per-device batch), cached_mnrl (GradCache: "
                         "negatives = the whole batch in the memory of mini_batch_size; exact, one extra forward "
                         "pass, slower on CPU, docs/results.md) or auto: cached_mnrl on GPU, mnrl on CPU")
    mini_batch_size: int = setting(16, "mini-batch of cached_mnrl (memory, not the contrastive batch)")
    hard_negatives: int = setting(0, "hard negatives per example taken from the data (0: none; on FrenchMedMCQA "
                                  "the wrong options hurt, docs/results.md)")
    batch_sampler: Sampler = setting("no_duplicates", "no_duplicates keeps a text from appearing twice in a batch "
                                     "(a duplicate would be a false negative); batch_sampler does not")
    gather_across_devices: bool = setting(True, "with several processes, score each query against every "
                                          "device's passages")
    # optimisation
    epochs: float = setting(1.0, "training epochs (fractions allowed)")
    learning_rate: float = setting(5e-5, "peak learning rate")
    batch_size: int = setting(64, "per-device batch size (the in-batch negatives of mnrl)")
    gradient_accumulation_steps: int = setting(1, "batches accumulated per optimiser step")
    warmup_ratio: float = setting(0.1, "share of the steps spent warming the learning rate up")
    lr_scheduler: str = setting("linear", "learning-rate schedule (a transformers scheduler name)")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    max_seq_length: int | None = setting(128, "token cap in training (the saved model keeps its inference length)")
    max_steps: int = setting(-1, "stop after this many optimiser steps (-1: run the epochs); with "
                             "top_block_epochs, each of the two phases stops there")
    seed: int = setting(SPLIT_SEED, "random seed (shuffling, initialisation, max_train_pairs draws)")
    split_seed: int = setting(SPLIT_SEED, "seed of the held-out split of a pairs file without one (apart from seed, "
                              "so that runs of any seed hold out the same questions, those medrag evaluate "
                              "scores by default)")
    precision: Precision = setting("auto", "auto (bf16 where the GPU supports it, else fp16 on older GPUs, fp32 "
                                   "on CPU), bf16, fp16 or fp32")
    tf32: bool = setting(True, "allow TF32 matmuls on Ampere and newer GPUs")
    # training loop (engine: loop; finetune.loop)
    engine: Engine = setting("trainer", "trainer (the sentence-transformers Trainer) or loop (a plain PyTorch loop "
                             "with capped query/passage lengths, LoRA, self-distillation, rotation, frozen encoder; "
                             "the options below need it)")
    mixture: list[str] = setting(help="extra training-pair sources added to data: frenchmedmcqa (train split), "
                                 "sample (train split), cases, abstracts, leaflets (medrag.qa.french_text, train "
                                 "documents), medquad (English, medrag.qa.medquad); NAME:N caps a source at N pairs, "
                                 "NAME:N:documents draws whole documents up to N pairs", factory=list)
    shared_data: str = setting("../shared/data", "folder holding the shared data sets (for mixture sources)")
    max_train_pairs: int = setting(0, "cap on the training pairs after mixing (0: all), seeded draw")
    query_max_length: int = setting(64, "token cap of questions in training (loop)")
    passage_max_length: int = setting(256, "token cap of passages in training (loop)")
    lora_rank: int = setting(0, "LoRA rank on the encoder's linear layers (0: full fine-tuning), peft")
    lora_alpha: float = setting(32.0, "LoRA alpha (scale = alpha / rank)")
    lora_dropout: float = setting(0.0, "LoRA dropout")
    lora_layers: int = setting(0, "adapt only the top N encoder layers (0: all)")
    freeze_embeddings: bool | None = setting(None, "full fine-tuning: keep the word embeddings (96M of e5-small's "
                                             "118M parameters) frozen; none: true with engine loop, false with "
                                             "engine trainer (the recipes these engines' results were measured with)")
    contrastive_weight: float = setting(1.0, "weight of MatryoshkaLoss(MNRL) on the pairs (0: distillation only)")
    distill_weight: float = setting(0.0, "weight of self-distillation from the frozen base model: its full-size "
                                    "in-batch similarities (query->passage, passage->passage; teacher vectors cached "
                                    "once) distilled into every Matryoshka size (finetune.losses); 0: off")
    distill_temperature: float = setting(0.05, "softmax temperature of the distillation, on cosines")
    distill_corpus: list[str] = setting(help="unlabelled text sources for passage->passage distillation (cases, "
                                        "abstracts, leaflets, sample; NAME:N caps)", factory=list)
    distill_batch_size: int = setting(0, "unlabelled texts per step (0: none; frozen encoder: batch_size)")
    matryoshka_weights: list[float] | None = setting(None, "one loss weight per size of dims (none: all 1)")
    batch_sampling: BatchSampling = setting("random", "loop batches: random (shuffled), topic (pairs of similar "
                                            "questions together: k-means of the base's question vectors, "
                                            "finetune.loop.topic_order; harder in-batch negatives) or document "
                                            "(the pairs of one source document together, e.g. one disease's "
                                            "questions: the other aspects of the same entity as negatives)")
    topic_cluster_size: int = setting(32, "topic sampling: mean number of pairs per question cluster")
    rotation: Rotation = setting("none", "final linear layer: none, pca (orthogonal rotation onto the principal "
                                 "axes of the base's vectors of the training passages) or pca_centered (the same "
                                 "after removing their mean: affine)")
    rotation_trainable: bool = setting(False, "let training adjust the rotation layer")
    freeze_encoder: bool = setting(False, "train only the final linear layer (a learned Matryoshka adaptor, "
                                   "initialised as the rotation) on cached encoder vectors: no encoder pass in training")
    top_block_epochs: int = setting(0, "after the frozen-encoder training, train the encoder's last block (LoRA) "
                                    "with the final layer for N epochs on cached hidden states, same losses "
                                    "(finetune.top_block; LP-FT); 0: off")
    top_block_learning_rate: float = setting(2e-3, "learning rate of the last block's LoRA matrices")
    top_block_head_learning_rate: float = setting(1e-4, "learning rate of the final layer while the block trains")
    top_block_lora_rank: int = setting(16, "LoRA rank on the last block's six linear layers")
    top_block_lora_alpha: float = setting(32.0, "LoRA alpha of the last block (scale = alpha / rank)")
    torch_threads: int = setting(0, "CPU threads for torch in the loop (0: torch's default; on a loaded shared "
                                 "machine 1 thread measured 4x faster than 2)")
    teacher_cache: str | None = setting(None, "folder of cached teacher vectors (default: <medrag cache>/teacher); "
                                      "top_block_epochs caches hidden states in its block_states subfolder "
                                      "(default: <medrag cache>/block_states)")
    export_adapter: str | None = setting(None, "after training, write the LoRA adapter and/or final layer as a "
                                         "medrag model package there (bundled:<adapter_name> once in "
                                         "medrag/data/models)")
    adapter_name: str | None = setting(None, "name of the exported adapter (default: the export folder's name; "
                                       "it was medrag's own default model's name, on every user's adapter)")
    export_scores: ExportScores = setting("suite_pilot", "what the exported matryoshka.json records: the "
                                          "validation suite's macro-average (suite_pilot or suite) or run (the "
                                          "run's eval split)")
    suite_max_passages: int = setting(3000, "passages per domain of the pilot suite used by export_scores")
    # run
    output_dir: str = setting("medrag-finetuned", "folder of the trained model, its matryoshka.json and model card")
    checkpoints: bool = setting(True, "save checkpoints (false: none, no resume; for sweeps)")
    save_steps: int = setting(0, "checkpoint every N steps (0: at each epoch end)")
    save_total_limit: int | None = setting(2, "checkpoints kept on disk (none: all)")
    keep_checkpoints: bool = setting(False, "keep the checkpoints after a successful run (false: they are deleted)")
    logging_steps: int = setting(10, "log the loss every N steps")
    resume: bool = setting(False, "continue from the last checkpoint in OUTPUT_DIR/checkpoints")
    report_to: ReportTo = setting("none", "experiment tracker: none, wandb or tensorboard")
    run_name: str | None = setting(None, "run name shown by the tracker")
    evaluate_before: bool = setting(True, "score the model on the held-out pairs before training too")
    evaluate_after: bool = setting(True, "score the model on the held-out pairs after training")
    eval_batch_size: int = setting(64, "encoding batch size of the before/after scores")
    device: str | None = setting(None, "cpu, cuda, cuda:1... (default: CUDA when available; under torchrun, each "
                                 "process's own GPU)")

    def __post_init__(self) -> None:
        # the Python API gets the same type checks as files and the CLI: FinetuneConfig(dims="64")
        # trained sizes [128, 6, 4], FinetuneConfig(batch_size="8") raised a bare TypeError
        hints = get_type_hints(type(self))
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    @property
    def embeddings_frozen(self) -> bool:
        """Whether the run keeps the word embeddings frozen: ``freeze_embeddings``, or when it is None
        each engine's own recipe (the loop freezes them, the Trainer trains them). The Trainer ignored
        freeze_embeddings=True, its former default, while the saved config claimed it: all 250,037 rows
        of e5-small's embeddings moved (user tryout); an explicit value is now applied by both. Resolved
        when read, not stored: ``replace(engine=...)`` gets the other engine's default."""
        return self.engine == "loop" if self.freeze_embeddings is None else self.freeze_embeddings

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible values (called on construction)."""
        not_finite = [f.name for f in fields(self)
                      if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))]
        if not_finite:
            raise ConfigError(f"{', '.join(not_finite)} must be finite numbers (a NaN or infinite learning rate, "
                              "weight or scale trains a model of NaN weights)")
        if self.matryoshka_weights and not all(math.isfinite(w) for w in self.matryoshka_weights):
            raise ConfigError("matryoshka_weights must be finite numbers")
        if self.matryoshka_weights and not all(w > 0 for w in self.matryoshka_weights):
            raise ConfigError("matryoshka_weights must be > 0 (a negative weight rewards a worse size: the loss "
                              "goes below 0 and training degrades that size)")
        if not str(self.output_dir).strip():
            raise ConfigError("output_dir is empty; pass the folder to write the trained model to")
        if self.export_adapter is not None and not str(self.export_adapter).strip():
            raise ConfigError("export_adapter is empty; pass the folder to write the adapter to, or drop it")
        checks = [
            (self.epochs > 0 or self.max_steps > 0, "epochs must be > 0 (or set max_steps)"),
            (self.max_steps == -1 or self.max_steps >= 1, "max_steps must be -1 (run the epochs) or >= 1"),
            (0 <= self.seed < 2**32, "seed must be between 0 and 2**32 - 1"),
            (0 <= self.split_seed < 2**32, "split_seed must be between 0 and 2**32 - 1"),
            # 0 kept every checkpoint under the Trainer and one under the loop
            (self.save_total_limit is None or self.save_total_limit >= 1,
             "save_total_limit must be >= 1 (or none: keep every checkpoint)"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.logging_steps >= 1, "logging_steps must be >= 1"),
            (self.lr_scheduler in LR_SCHEDULERS, f"lr_scheduler must be one of {LR_SCHEDULERS}"),
            (self.engine != "loop" or self.lr_scheduler == "linear",
             "engine: loop has a linear schedule with warmup only; drop lr_scheduler or use engine: trainer"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.batch_size >= 2 or (self.engine == "trainer" and self.hard_negatives > 0),
             "batch_size must be >= 2: the losses score each question against the other "
             "passages of its batch (in-batch negatives); with 1 there is nothing to contrast, the loss is 0 and "
             "nothing is learnt"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.lora_alpha > 0, "lora_alpha must be > 0"),
            (self.suite_max_passages >= 1, "suite_max_passages must be >= 1"),
            (self.mini_batch_size >= 1, "mini_batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.eval_fraction < 1, "eval_fraction must be in [0, 1)"),
            (self.hard_negatives >= 0, "hard_negatives must be >= 0"),
            (self.save_steps >= 0, "save_steps must be >= 0"),
            (self.max_seq_length is None or self.max_seq_length >= 8, "max_seq_length must be >= 8"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}"),
            (self.batch_sampler in SAMPLERS, f"batch_sampler must be one of {SAMPLERS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.report_to in REPORT_TO, f"report_to must be one of {REPORT_TO}"),
            (not self.dims or all(int(d) > 0 for d in self.dims), "dims must be positive"),
            (not self.dims or len(set(self.dims)) == len(self.dims),  # [64, 64] with weights [3, 5] dropped the 3
             "dims must not repeat a size"),
            (self.engine in ENGINES, f"engine must be one of {ENGINES}"),
            (self.max_train_pairs >= 0, "max_train_pairs must be >= 0"),
            (self.query_max_length >= 8 and self.passage_max_length >= 8, "query/passage_max_length must be >= 8"),
            (self.lora_rank >= 0 and self.lora_layers >= 0, "lora_rank and lora_layers must be >= 0"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (self.distill_weight >= 0 and self.contrastive_weight >= 0, "loss weights must be >= 0"),
            (self.distill_weight > 0 or self.contrastive_weight > 0, "contrastive_weight and distill_weight are both 0"),
            (self.distill_temperature > 0, "distill_temperature must be > 0"),
            (self.distill_batch_size >= 0, "distill_batch_size must be >= 0"),
            (not (self.distill_batch_size and not self.distill_corpus),
             "distill_batch_size > 0 needs a distill_corpus (unlabelled text sources)"),
            (self.rotation in ROTATIONS, f"rotation must be one of {ROTATIONS}"),
            (self.batch_sampling in BATCH_SAMPLINGS, f"batch_sampling must be one of {BATCH_SAMPLINGS}"),
            (self.topic_cluster_size >= 2, "topic_cluster_size must be >= 2"),
            (self.matryoshka_weights is None or not self.dims or len(self.matryoshka_weights) == len(self.dims),
             "matryoshka_weights needs one weight per size of dims"),
            (self.export_adapter is None or self.lora_rank > 0 or self.freeze_encoder,
             "export_adapter ships a LoRA adapter and/or a final layer: set lora_rank > 0 or freeze_encoder "
             "(full fine-tuning does not fit in 15 MB)"),
            (not self.freeze_encoder or self.rotation != "none",
             "freeze_encoder trains only the final linear layer: set rotation to pca or pca_centered "
             "(--rotation pca_centered)"),
            (not (self.freeze_encoder and self.lora_rank), "freeze_encoder and lora_rank exclude each other"),
            (self.torch_threads >= 0, "torch_threads must be >= 0"),
            (self.top_block_epochs >= 0, "top_block_epochs must be >= 0"),
            (not self.top_block_epochs or self.freeze_encoder,
             "top_block_epochs trains the last block after the final layer: set freeze_encoder: true (or "
             "top_block_epochs: 0)"),
            (not self.top_block_epochs or (self.top_block_learning_rate > 0 and self.top_block_head_learning_rate > 0),
             "top_block_learning_rate and top_block_head_learning_rate must be > 0"),
            (not self.top_block_epochs or self.top_block_lora_rank >= 1,
             "top_block_lora_rank must be >= 1 (the adapter ships LoRA matrices)"),
            (not self.top_block_epochs or self.top_block_lora_alpha > 0, "top_block_lora_alpha must be > 0"),
            (not self.top_block_epochs or not self.distill_corpus,
             "top_block_epochs trains on the pairs only: drop distill_corpus (or set top_block_epochs: 0)"),
            (not self.top_block_epochs or self.batch_sampling == "random",
             "top_block_epochs trains with random batches only: drop batch_sampling (or set top_block_epochs: 0)"),
        ]
        block_only = [f.name for f in fields(self) if f.name.startswith("top_block_") and f.name != "top_block_epochs"
                      and getattr(self, f.name) != f.default]
        if block_only and not self.top_block_epochs:
            checks.append((False, f"{', '.join(block_only)} set(s) the last-block phase, which is off: set "
                                  "top_block_epochs > 0, or drop them"))
        lora_only = [name for name in ("lora_alpha", "lora_dropout", "lora_layers")
                     if getattr(self, name) != next(f.default for f in fields(self) if f.name == name)]
        if lora_only and not self.lora_rank:  # accepted, then ignored in silence (user tryout)
            checks.append((False, f"{', '.join(lora_only)} set(s) LoRA, which is off: set lora_rank > 0 "
                                  "(--lora-rank 16), or drop them"))
        loop_only = [name for name, on in (
            ("mixture", bool(self.mixture)), ("max_train_pairs", self.max_train_pairs > 0),
            ("lora_rank", self.lora_rank > 0), ("distill_weight", self.distill_weight > 0),
            ("contrastive_weight", self.contrastive_weight != 1.0),
            ("distill_corpus", bool(self.distill_corpus)), ("rotation", self.rotation != "none"),
            ("matryoshka_weights", self.matryoshka_weights is not None),
            ("batch_sampling", self.batch_sampling != "random"),
            ("export_adapter", self.export_adapter is not None), ("freeze_encoder", self.freeze_encoder),
            ("top_block_epochs", self.top_block_epochs > 0)) if on]
        if self.engine != "loop" and loop_only:
            checks.append((False, f"{', '.join(loop_only)} need(s) engine: loop (the plain training loop)"))
        trainer_only = self.trainer_only_changes()
        if self.engine == "loop" and trainer_only:
            checks.append((False, f"{', '.join(trainer_only)} is/are used by engine: trainer only; engine: loop "
                                  "would ignore it: drop it or use engine: trainer"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        out = Path(self.output_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output_dir {self.output_dir} is a file; pass a folder (it is created if missing)")
        if self.model and Path(self.model).expanduser().is_dir():
            base = Path(self.model).expanduser().resolve()
            if out.resolve() == base:
                raise ConfigError(f"output_dir {self.output_dir} is the folder of the model being fine-tuned: the run "
                                  "would overwrite it; pass another output_dir")
            if base in out.resolve().parents:
                raise ConfigError(f"output_dir {self.output_dir} is inside the folder of the model being fine-tuned "
                                  f"({self.model}): the run would break it; pass a folder outside it")

    def trainer_only_changes(self) -> list[str]:
        """The options set away from their defaults that only ``engine: trainer`` reads."""
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in fields(self)}
        changed = [name for name in TRAINER_ONLY if getattr(self, name) != defaults[name]]
        if "loss" in changed and self.loss == "mnrl":  # the loop's contrastive loss is MNRL: asking for it is fine
            changed.remove("loss")
        return changed

    @property
    def uses_teacher(self) -> bool:
        """The loop encodes teacher vectors with the frozen base (cached in :attr:`teacher_cache`):
        distillation, a rotation, a frozen encoder or topic batches need them."""
        return self.engine == "loop" and (self.distill_weight > 0 or self.rotation != "none" or self.freeze_encoder
                                          or self.batch_sampling == "topic")

    def plan(self, model_dims: list[int] | None = None) -> list[str]:
        """What a run of this configuration trains, one phase per line (``medrag finetune --check``
        prints it): the engine, what is trained, for how long, with which losses (``model_dims``: the
        sizes the model was trained at, the run's without ``dims``)."""
        length = (f"{self.max_steps} steps at most" if self.max_steps > 0
                  else f"{self.epochs:g} epoch{'' if self.epochs == 1 else 's'}")
        losses = []
        if self.contrastive_weight > 0:
            losses.append(f"MatryoshkaLoss(MNRL) x{self.contrastive_weight:g}" if self.engine == "loop"
                          else f"MatryoshkaLoss over loss {self.loss}")
        if self.engine == "loop" and self.distill_weight > 0:
            losses.append(f"self-distillation of the frozen base x{self.distill_weight:g} "
                          f"(temperature {self.distill_temperature:g})")
        # a model without matryoshka.json trains the seed's sizes capped to it, not "its trained sizes" (tryout)
        sizes = (" ".join(map(str, self.dims or model_dims or []))
                 or "the model's trained sizes (matryoshka.json), else 1024 768 512 256 128 64 capped to its size")
        if self.engine == "loop" and self.freeze_encoder:
            what = f"the final linear layer ({self.rotation} initialisation) over the frozen encoder"
        elif self.engine == "loop" and self.lora_rank:
            layers = f"the top {self.lora_layers} layers" if self.lora_layers else "every layer"
            what = f"the encoder through LoRA rank {self.lora_rank} (alpha {self.lora_alpha:g}) on {layers}"
        elif self.lora_rank:
            what = f"the encoder through LoRA rank {self.lora_rank} (alpha {self.lora_alpha:g})"
        else:
            what = "the whole encoder" + (" (word embeddings frozen)" if self.embeddings_frozen else "")
        engine = "the plain loop (engine: loop)" if self.engine == "loop" else "the sentence-transformers Trainer"
        lines = [f"plan: {engine}, sizes {sizes}",
                 f"  {'phase 1' if self.top_block_epochs else 'trains'}: {what}, {length}, lr {self.learning_rate:g}, batch {self.batch_size}; "
                 f"{' + '.join(losses)}"]
        if self.top_block_epochs:
            block = (f"{self.max_steps} steps at most" if self.max_steps > 0 else
                     f"{self.top_block_epochs} epoch{'' if self.top_block_epochs == 1 else 's'}")
            lines.append(f"  phase 2: the encoder's last block (LoRA rank {self.top_block_lora_rank}, alpha "
                         f"{self.top_block_lora_alpha:g}, lr {self.top_block_learning_rate:g}) and the final layer "
                         f"(lr {self.top_block_head_learning_rate:g}), {block}, same losses and batches, on hidden "
                         "states cached once")
        if self.export_adapter:
            lines.append(f"  export: {self.export_adapter} ({self.exported_name()}; matryoshka.json scores: "
                         f"{self.export_scores})")
        return lines

    # ------------------------------------------------------------------ I/O

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML (``.yaml``/``.yml``) or JSON (``.json``), the formats
        :meth:`from_file` reads back.

        TOML is read but not written: it has no null, and some settings mean something by ``None``
        (``save_total_limit: null`` keeps every checkpoint). Any other suffix is a
        :class:`~medrag.errors.ConfigError`, before anything is written.
        """
        path = Path(path)
        if path.suffix not in (".yaml", ".yml", ".json"):
            raise ConfigError(f"cannot save a config as {path.name!r}: use a .yaml, .yml or .json file "
                              "(TOML has no null, which some settings use)")
        data = self.to_dict()
        if path.suffix == ".json":
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        """Build from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            close = {k: difflib.get_close_matches(str(k), known, n=1) for k in unknown}
            hints = [f"{m[0]!r} for {k!r}" for k, m in close.items() if m]
            raise ConfigError(f"unknown config key(s) {unknown}"
                              + (f"; did you mean {', '.join(hints)}?" if hints else "")
                              + " (`medrag finetune --help` lists every setting)")
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in data.items()})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None
                  ) -> "FinetuneConfig":
        """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file, then apply ``overrides``.

        ``path=None`` starts from the defaults. A TOML file may put its keys under ``[finetune]``.
        """
        data: dict[str, Any] = {}
        if path is not None:
            data = read_config_file(path)
        data.update({k: v for k, v in (overrides or {}).items()})
        return cls.from_dict(data)

    def exported_name(self) -> str:
        """The exported adapter's name: ``adapter_name``, else the name of the ``export_adapter`` folder."""
        return self.adapter_name or Path(str(self.export_adapter or "adapter")).expanduser().resolve().name

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice in one mapping (PyYAML keeps the last in
    silence, so a second ``data:`` line further down replaced the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": merged by the base class
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise ConfigError(f"the key {key!r} is written twice (line {key_node.start_mark.line + 1}); "
                                  "keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook refusing a key written twice in one object (JSON keeps the last in silence)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"the key {key!r} is written twice; keep one")
        out[key] = value
    return out


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; pass a .yaml, .toml or .json file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    raw = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0  # Notepad's UTF-8: JSON and TOML refused it
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start + bom})") from None
    if path.suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ConfigError(f"config file {path}: use .yaml, .yml, .toml or .json")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
        elif path.suffix == ".toml":  # TOML itself refuses a repeated key
            data = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_unique_keys)
    except ConfigError as exc:  # a key written twice (the loaders above raise no other ConfigError)
        raise ConfigError(f"config file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - yaml/toml/json each raise their own error types
        raise ConfigError(f"config file {path} cannot be parsed: {' '.join(str(exc).split())}") from None  # one line
    if path.suffix == ".toml" and isinstance(data.get("finetune"), dict):  # a [finetune] table, maybe beside other tools'
        loose = sorted(k for k, v in data.items() if k != "finetune" and not isinstance(v, dict))
        if loose:
            raise ConfigError(f"config file {path} has a [finetune] table and settings outside it "
                              f"({', '.join(loose)}): put every setting under [finetune]")
        data = data["finetune"]
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> ``(int, True)``; ``list[str]`` -> ``(list[str], False)``."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) != len(get_args(hint))
    return hint, False


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's type; turn CLI strings into ints/floats/bools/lists."""
    target, optional = unwrap_optional(hint)
    if optional and isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str) \
            and value[0].strip().lower() in ("none", "null"):
        value = None  # `--dims none`: the CLI gives a list of one word
    if value is None and not optional and get_origin(target) is list:
        return []  # `mixture:` or `mixture: null` in a config file, as `--mixture none` clears it
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    origin = get_origin(target)
    try:
        if origin is Literal:
            if value not in get_args(target):
                raise ConfigError(f"{name} must be one of {list(get_args(target))}, got {value!r}")
            return value
        if origin is list:
            (item,) = get_args(target)
            if isinstance(value, str):
                value = [value]
            if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str) \
                    and value[0].strip().lower() in ("none", "null", ""):
                return []  # `--mixture none`: clear a config file's list (--help shows "default: none")
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name} must be a list, got {value!r}")
            # "64,32" (one CLI word) or "64 32" (one YAML string) is two items
            parts = [p for v in value for p in (v.replace(",", " ").split() if isinstance(v, str) else [v])]
            return [_coerce(f"each item of {name}", p, item) for p in parts]
        if target is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{name} must be int, got {value!r}")
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ConfigError(f"{name} must be float, got {value!r}")
            return float(value)
        if target is str:
            if isinstance(value, (list, tuple, dict)):  # str() made "['pairs.jsonl']" a file name
                raise ConfigError(f"{name} must be text, got a {type(value).__name__}: {value!r}")
            return str(value)
    except ConfigError:  # a ValueError too: keep its own message
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {getattr(target, '__name__', target)}, got {value!r}") from None
    return value


__all__ = ["FinetuneConfig", "ConfigError", "read_config_file"]
