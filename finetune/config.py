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

import dataclasses
import json
import os
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from medrag.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


LOSSES = ("auto", "mnrl", "cached_mnrl")
SAMPLERS = ("batch_sampler", "no_duplicates")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ENGINES = ("trainer", "loop")
ROTATIONS = ("none", "pca", "pca_centered")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs. Every field has a CLI flag (``--field-name``).

    Data:
        data: a hub dataset id, a local .jsonl/.json/.csv/.parquet file, or a FrenchMedMCQA folder.
        data_format: ``auto`` (FrenchMedMCQA folders are recognised), ``pairs`` or ``frenchmedmcqa``.
        question_column / answer_column / negatives_column: column mapping for ``pairs`` data.
        eval_data: a separate evaluation file or hub id.
        eval_fraction: share of distinct questions held out when there is no eval split.
        train_splits / eval_split: split names (hub datasets) or file stems (FrenchMedMCQA; default
            train+dev -> test). ``eval_split=None``: the hub dataset's test/validation split if any.

    Model and loss:
        model: ``None`` (the plain embedded e5-small, ``bundled:multilingual-e5-small``), a folder, a
            ``bundled:`` spec or a hub id, for :func:`medrag.load_model`.
        dims: Matryoshka sizes; ``None`` = the seed's 1024/768/512/256/128/64 capped to the model,
            always with the full size.
        loss: ``mnrl`` (MultipleNegativesRankingLoss: in-batch negatives = the per-device batch),
            ``cached_mnrl`` (GradCache: in-batch negatives = the whole batch, memory of ``mini_batch_size``)
            or ``auto`` (default): ``cached_mnrl`` on GPU, ``mnrl`` on CPU. GradCache is exact -- both
            give the same loss and gradients for the same batch -- but it runs one extra forward pass
            (measured 4x slower per step on CPU, docs/results.md), and CPU memory is rarely the limit
            at batch 64; on GPU it keeps the memory of a mini-batch.
        hard_negatives: hard negatives per example taken from the data (0 = none; on FrenchMedMCQA the
            wrong options hurt, docs/results.md).
        batch_sampler: ``no_duplicates`` keeps a text from appearing twice in a batch (a duplicate
            would be a false negative) or ``batch_sampler``.
        gather_across_devices: with several processes, score each query against every device's passages.

    Optimisation: epochs, learning_rate, batch_size (per device), gradient_accumulation_steps,
        warmup_ratio, lr_scheduler (transformers name), weight_decay, max_seq_length, max_steps
        (-1 = run the epochs), seed, precision (``auto`` = bf16 where the GPU supports it, else fp16 on
        older GPUs, fp32 on CPU), tf32.

    Training loop (``engine: loop``; see :mod:`finetune.loop`):
        engine: ``trainer`` (the sentence-transformers Trainer; default) or ``loop`` (a plain PyTorch
            loop with capped query/passage lengths, LoRA, self-distillation and rotation; measured
            faster on CPU). The options below need ``engine: loop``.
        mixture: extra training-pair sources added to ``data``: ``frenchmedmcqa`` (train split),
            ``sample`` (the shipped sample's train split), ``cases``, ``abstracts``, ``leaflets``
            (:mod:`medrag.qa.french_text`, train documents only); ``name:N`` caps a source at N pairs.
        shared_data: the folder holding the shared data sets (``../shared/data``).
        max_train_pairs: cap on the training pairs after mixing (0 = all), drawn with ``seed``.
        query_max_length / passage_max_length: token caps in training (queries are short; a passage
            beyond 256 tokens costs time and rarely changes its embedding much).
        lora_rank: LoRA rank on the encoder's linear layers (0 = full fine-tuning); lora_alpha
            (scale = alpha / rank), lora_dropout, lora_layers (adapt only the top N layers; 0 = all).
        freeze_embeddings: in full fine-tuning, keep the word embeddings (96M of e5-small's 118M
            parameters) frozen.
        contrastive_weight: weight of the MatryoshkaLoss(MNRL) term on the pairs (0 = distillation only).
        distill_weight: weight of self-distillation from the frozen base model (0 = off): the base's
            full-size in-batch similarities (query->passage and passage->passage, teacher vectors
            cached once) distilled into the student's at every Matryoshka size (:mod:`finetune.losses`).
        distill_temperature: softmax temperature of the distillation, on cosines.
        distill_corpus: unlabelled text sources for passage->passage distillation (``cases``,
            ``abstracts``, ``leaflets``, ``sample``; ``name:N`` caps it); distill_batch_size texts
            per step (0 = no unlabelled batches).
        matryoshka_weights: one loss weight per size of ``dims`` (default all 1).
        rotation: ``none``, ``pca`` (orthogonal rotation onto the principal axes of the base's vectors of
            the training passages, folded in as a final linear layer) or ``pca_centered`` (the same
            after removing their mean: an affine map); rotation_trainable lets training adjust it.
        freeze_encoder: train only that final linear layer (a learned Matryoshka adaptor, initialised
            as the rotation) on cached encoder vectors: no encoder pass in training (needs a rotation).
        torch_threads: CPU threads for torch in the loop (0 = torch's default). On a loaded shared
            machine 1 thread measured 4x faster than 2 (threads waiting on each other).
        teacher_cache: folder for cached teacher vectors (default: ``<medrag cache>/teacher``).
        export_adapter: after training, write the LoRA adapter (+ rotation) as a medrag model-package
            folder there (:mod:`finetune.export`), loadable as ``bundled:<adapter_name>`` once it is
            in ``medrag/data/models``.
        adapter_name: the name of the exported adapter.
        export_scores: what the exported ``matryoshka.json`` records per size: ``suite_pilot`` (default)
            or ``suite``: the validation suite's macro-average (val part, pilot caps or full), what
            ``dimension="auto"`` compares; ``run``: the run's own eval split. suite_max_passages: the
            pilot's passage cap per domain (the suite's default 3000).

    Run: output_dir, checkpoints (False: save none, no resume; for sweeps), save_steps (0 = at each epoch end), save_total_limit, keep_checkpoints (after a
        successful run; default: deleted), logging_steps, resume,
        report_to (``none``, ``wandb``, ``tensorboard``), run_name, evaluate_before, evaluate_after
        (score the eval split before / after training), eval_batch_size,
        device.
    """

    # data
    data: str = "ilyass20/MedAnalyzer"
    data_format: Literal["auto", "pairs", "frenchmedmcqa"] = "auto"
    question_column: str = "anchor"
    answer_column: str = "positive"
    negatives_column: str | None = None
    eval_data: str | None = None
    eval_fraction: float = 0.1
    train_splits: list[str] = field(default_factory=lambda: ["train", "dev"])
    eval_split: str | None = None
    # model and loss
    model: str | None = None
    dims: list[int] | None = None
    loss: Literal["auto", "mnrl", "cached_mnrl"] = "auto"
    mini_batch_size: int = 16
    hard_negatives: int = 0
    batch_sampler: Literal["batch_sampler", "no_duplicates"] = "no_duplicates"
    gather_across_devices: bool = True
    # optimisation
    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 64
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    weight_decay: float = 0.01
    max_seq_length: int | None = 128
    max_steps: int = -1
    seed: int = 42
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    tf32: bool = True
    # training loop (engine: loop)
    engine: Literal["trainer", "loop"] = "trainer"
    mixture: list[str] = field(default_factory=list)
    shared_data: str = "../shared/data"
    max_train_pairs: int = 0
    query_max_length: int = 64
    passage_max_length: int = 256
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_layers: int = 0
    freeze_embeddings: bool = True
    contrastive_weight: float = 1.0
    distill_weight: float = 0.0
    distill_temperature: float = 0.05
    distill_corpus: list[str] = field(default_factory=list)
    distill_batch_size: int = 0
    matryoshka_weights: list[float] | None = None
    rotation: Literal["none", "pca", "pca_centered"] = "none"
    rotation_trainable: bool = False
    freeze_encoder: bool = False
    torch_threads: int = 0
    teacher_cache: str | None = None
    export_adapter: str | None = None
    adapter_name: str = "medrag-e5-small-fr"
    export_scores: Literal["run", "suite_pilot", "suite"] = "suite_pilot"
    suite_max_passages: int = 3000
    # run
    output_dir: str = "medrag-finetuned"
    checkpoints: bool = True
    save_steps: int = 0
    save_total_limit: int | None = 2
    keep_checkpoints: bool = False
    logging_steps: int = 10
    resume: bool = False
    report_to: Literal["none", "wandb", "tensorboard"] = "none"
    run_name: str | None = None
    evaluate_before: bool = True
    evaluate_after: bool = True
    eval_batch_size: int = 64
    device: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible values (called on construction)."""
        checks = [
            (self.epochs > 0 or self.max_steps > 0, "epochs must be > 0 (or set max_steps)"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
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
            (self.report_to in ("none", "wandb", "tensorboard"), "report_to must be none, wandb or tensorboard"),
            (not self.dims or all(int(d) > 0 for d in self.dims), "dims must be positive"),
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
            (self.matryoshka_weights is None or not self.dims or len(self.matryoshka_weights) == len(self.dims),
             "matryoshka_weights needs one weight per size of dims"),
            (self.export_adapter is None or self.lora_rank > 0 or self.freeze_encoder,
             "export_adapter ships a LoRA adapter and/or a final layer: set lora_rank > 0 or freeze_encoder "
             "(full fine-tuning does not fit in 15 MB)"),
            (not self.freeze_encoder or self.rotation != "none",
             "freeze_encoder trains only the final linear layer: set rotation to pca or pca_centered"),
            (not (self.freeze_encoder and self.lora_rank), "freeze_encoder and lora_rank exclude each other"),
            (self.torch_threads >= 0, "torch_threads must be >= 0"),
        ]
        loop_only = [name for name, on in (
            ("mixture", bool(self.mixture)), ("max_train_pairs", self.max_train_pairs > 0),
            ("lora_rank", self.lora_rank > 0), ("distill_weight", self.distill_weight > 0),
            ("contrastive_weight", self.contrastive_weight != 1.0),
            ("distill_corpus", bool(self.distill_corpus)), ("rotation", self.rotation != "none"),
            ("matryoshka_weights", self.matryoshka_weights is not None),
            ("export_adapter", self.export_adapter is not None), ("freeze_encoder", self.freeze_encoder)) if on]
        if self.engine != "loop" and loop_only:
            checks.append((False, f"{', '.join(loop_only)} need(s) engine: loop (the plain training loop)"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    # ------------------------------------------------------------------ I/O

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML (``.yaml``/``.yml``) or JSON (any other suffix)."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        else:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        """Build from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
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

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
            if isinstance(data.get("finetune"), dict) and len(data) == 1:
                data = data["finetune"]
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - yaml/toml/json each raise their own error types
        raise ConfigError(f"config file {path} cannot be parsed: {exc}") from None
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
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name} must be a list, got {value!r}")
            return [item(v) for v in value]
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
            return str(value)
    except ConfigError:  # a ValueError too: keep its own message
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {getattr(target, '__name__', target)}, got {value!r}") from None
    return value


__all__ = ["FinetuneConfig", "ConfigError", "read_config_file"]
