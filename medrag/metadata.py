"""Matryoshka metadata: which sizes a model was trained for, and how well each size retrieves.

The fine-tuning pipeline writes this file next to the model (``matryoshka.json``);
:class:`medrag.MatryoshkaEmbeddings` reads it to validate sizes and to pick a size
adaptively (``dimension="auto"``). It is the single definition of the schema.

Example::

    >>> from medrag.metadata import MatryoshkaMetadata
    >>> meta = MatryoshkaMetadata(full_dim=384, dims=[384, 256, 128, 64],
    ...                           scores={384: {"ndcg@10": 0.21}, 64: {"ndcg@10": 0.18}})
    >>> meta.score(64)
    0.18

Schema (version 1), JSON::

    {
      "schema_version": 1,
      "full_dim": 384,                      # the model's output size
      "dims": [384, 256, 128, 64, 32],      # trained Matryoshka sizes, descending
      "metric": "ndcg@10",                  # the metric used for adaptive choice
      "scores": {"384": {"ndcg@10": 0.2, "mrr@10": ...}, ...},         # after training
      "scores_before": {"384": {...}, ...},  # optional: the base model's scores
      "recommendations": {"max": 384, "balanced": 256, "edge": 64},  # optional
      "base_model": "bundled:multilingual-e5-small",  # optional provenance
      "extra": {...}                          # optional, free-form
    }
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medrag.errors import MetadataError

METADATA_FILENAME = "matryoshka.json"
SCHEMA_VERSION = 1

#: The sizes the seed report trained (for a 1024-dim e5-large); filtered to each model's size.
SEED_DIMS: tuple[int, ...] = (1024, 768, 512, 256, 128, 64)


def default_dims(full_dim: int) -> list[int]:
    """Sizes allowed for a model without metadata: the seed's list capped to ``full_dim``,
    plus ``full_dim`` itself, in descending order.

    >>> default_dims(384)
    [384, 256, 128, 64]
    """
    return sorted({d for d in SEED_DIMS if d <= full_dim} | {full_dim}, reverse=True)


@dataclass
class MatryoshkaMetadata:
    """What a model folder records about its Matryoshka training.

    Args:
        full_dim: the model's output size.
        dims: the trained sizes (any order; stored descending, ``full_dim`` always included).
        scores: per size, metric name -> value measured after training.
        scores_before: per size, the same for the base model (optional).
        metric: the metric that adaptive size choice compares (``"ndcg@10"``).
        recommendations: optional tier -> size map (``max``/``balanced``/``edge``).
        base_model: where the model came from (free text).
        extra: anything else worth keeping (dataset, config, timings).
    """

    full_dim: int
    dims: list[int]
    scores: dict[int, dict[str, float]] = field(default_factory=dict)
    scores_before: dict[int, dict[str, float]] = field(default_factory=dict)
    metric: str = "ndcg@10"
    recommendations: dict[str, int] = field(default_factory=dict)
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not _is_int(self.full_dim) or self.full_dim <= 0:
            raise MetadataError(f"full_dim must be a positive integer, got {self.full_dim!r}")
        if not isinstance(self.dims, (list, tuple, set, frozenset)) or not all(_is_int(d) for d in self.dims):
            raise MetadataError(f"dims must be a list of integer sizes, got {self.dims!r}")
        dims = {int(d) for d in self.dims} | {int(self.full_dim)}
        bad = sorted(d for d in dims if d <= 0 or d > self.full_dim)
        if bad:
            raise MetadataError(f"trained sizes {bad} are outside 1..{self.full_dim} (full_dim)")
        self.full_dim = int(self.full_dim)  # a numpy int passed the checks, then failed json.dumps in save()
        self.dims = sorted(dims, reverse=True)
        self.scores = _int_keys(self.scores, "scores")
        self.scores_before = _int_keys(self.scores_before, "scores_before")
        unknown = sorted(set(self.scores) - set(self.dims))
        if unknown:
            raise MetadataError(f"scores given for sizes {unknown} that are not among the trained sizes {self.dims}")
        if not isinstance(self.recommendations, dict) or not all(
                isinstance(k, str) and _is_int(v) and v in self.dims for k, v in self.recommendations.items()):
            raise MetadataError(f"recommendations must map tier names to trained sizes {self.dims}, "
                                f"got {self.recommendations!r}")
        self.recommendations = {k: int(v) for k, v in self.recommendations.items()}
        if not isinstance(self.metric, str):
            raise MetadataError(f"metric must be a metric name, got {self.metric!r}")

    def score(self, dim: int, metric: str | None = None) -> float:
        """The recorded score of ``dim`` for ``metric`` (default: :attr:`metric`)."""
        metric = metric or self.metric
        try:
            return float(self.scores[dim][metric])
        except KeyError:
            raise MetadataError(
                f"no recorded {metric} for size {dim}; recorded sizes: {sorted(self.scores, reverse=True)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``matryoshka.json`` (size keys as strings)."""
        d = asdict(self)
        d["scores"] = {str(k): v for k, v in self.scores.items()}
        d["scores_before"] = {str(k): v for k, v in self.scores_before.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MatryoshkaMetadata":
        """Read a ``matryoshka.json`` object (unknown keys are ignored).

        Args:
            data: the parsed JSON object.

        Raises:
            MetadataError: not an object, another schema version, or ``full_dim`` / ``dims`` missing.
        """
        if not isinstance(data, dict):
            raise MetadataError("Matryoshka metadata must be a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION or isinstance(version, bool):
            if isinstance(version, str) and version.strip() == str(SCHEMA_VERSION):  # "1 ... (this medrag reads 1)"
                raise MetadataError(f"Matryoshka metadata schema_version is the text {version!r}; write the number "
                                    f"{SCHEMA_VERSION}")
            raise MetadataError(
                f"Matryoshka metadata schema_version {version} is not supported (this medrag reads {SCHEMA_VERSION}); "
                "upgrade medrag or re-export the model"
            )
        missing = [k for k in ("full_dim", "dims") if k not in data]
        if missing:
            raise MetadataError(f"Matryoshka metadata lacks {missing}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``matryoshka.json`` into ``folder`` (atomically) and return its path."""
        if not Path(folder).is_dir():  # a raw FileNotFoundError from the temporary file's write
            raise MetadataError(f"cannot write {METADATA_FILENAME} into {folder}: no such folder (the model's folder)")
        path = Path(folder) / METADATA_FILENAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "MatryoshkaMetadata | None":
        """Read ``matryoshka.json`` from ``folder``; ``None`` when the folder has none."""
        path = Path(folder) / METADATA_FILENAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_keys(mapping: dict[Any, dict[str, float]], name: str) -> dict[int, dict[str, float]]:
    if mapping is not None and not isinstance(mapping, dict):
        raise MetadataError(f"{name} must map sizes to {{metric: value}}, got {type(mapping).__name__}")
    out: dict[int, dict[str, float]] = {}
    for k, v in (mapping or {}).items():
        if isinstance(k, bool) or (isinstance(k, float) and not k.is_integer()):  # 64.9 was stored as size 64
            raise MetadataError(f"{name} has the size {k!r}: sizes are whole numbers")
        if not isinstance(v, dict):
            raise MetadataError(f"{name}[{k!r}] must map metric names to numbers: got {type(v).__name__}")
        try:
            out[int(k)] = {str(m): float(x) for m, x in v.items()}
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"{name}[{k!r}] must map metric names to numbers: {exc}") from exc
        bad = [m for m, x in out[int(k)].items() if not math.isfinite(x)]
        if bad:
            raise MetadataError(f"{name}[{k!r}] has non-finite values for {bad}")
    return out
