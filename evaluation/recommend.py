"""Which Matryoshka size to deploy, in the seed report's three tiers, computed from measured scores.

- ``max``: the best-scoring size (critical use; ties go to the smaller size);
- ``balanced``: the smallest size within ``balanced_tolerance`` (default 0.5%) of the best score;
- ``edge``: the smallest size within ``edge_tolerance`` (default 3%) of the best score
  (resource-limited deployments).

"The smallest size within a tolerance of the best score" is :func:`medrag.sizes.smallest_size_within`,
the rule ``MatryoshkaEmbeddings(dimension="auto")`` applies too.

Tolerances are relative: with a best NDCG@10 of 0.400, "within 0.5%" means at least 0.398.
The tier names are the keys of ``recommendations`` in ``matryoshka.json``
(:class:`medrag.metadata.MatryoshkaMetadata`).

Example::

    >>> from evaluation.recommend import recommend_sizes
    >>> recommend_sizes({384: 0.400, 256: 0.399, 128: 0.390, 64: 0.370}).to_dict()
    {'max': 384, 'balanced': 256, 'edge': 128}
"""

from __future__ import annotations

import logging
import math

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medrag.errors import InvalidInputError, MetadataError
from medrag.metadata import MatryoshkaMetadata
from medrag.sizes import smallest_size_within

logger = logging.getLogger(__name__)

#: The seed's tolerances.
BALANCED_TOLERANCE = 0.005
EDGE_TOLERANCE = 0.03


@dataclass(frozen=True)
class Recommendations:
    """The recommended size of each tier, with the tolerances and metric that produced them."""

    max: int
    balanced: int
    edge: int
    metric: str = "ndcg@10"
    balanced_tolerance: float = BALANCED_TOLERANCE
    edge_tolerance: float = EDGE_TOLERANCE

    def to_dict(self) -> dict[str, int]:
        """The tier -> size map stored in ``matryoshka.json``."""
        return {"max": self.max, "balanced": self.balanced, "edge": self.edge}


def recommend_sizes(scores: Mapping[int, float], balanced_tolerance: float = BALANCED_TOLERANCE,
                    edge_tolerance: float = EDGE_TOLERANCE, metric: str = "ndcg@10") -> Recommendations:
    """The three tiers from ``scores`` (size -> metric value, higher is better).

    Raises:
        InvalidInputError: no scores, a tolerance outside [0, 1), or ``edge_tolerance`` below
            ``balanced_tolerance`` (a ``ValueError`` too).
    """
    if not scores:
        raise InvalidInputError("no scores to recommend sizes from")
    for name, tol in (("balanced_tolerance", balanced_tolerance), ("edge_tolerance", edge_tolerance)):
        if not 0 <= tol < 1:
            raise InvalidInputError(f"{name} must be in [0, 1), got {tol}")
    if edge_tolerance < balanced_tolerance:
        raise InvalidInputError(f"edge_tolerance {edge_tolerance} is below balanced_tolerance {balanced_tolerance} "
                                "(--edge-tolerance / --balanced-tolerance): the edge tier may lose more than the "
                                "balanced one, never less (it would recommend a larger edge size)")
    items = {int(d): float(s) for d, s in scores.items()}
    if not all(math.isfinite(s) for s in items.values()):  # NaN: tiers that depended on the dict's order
        raise InvalidInputError(f"scores must be finite numbers, got {scores!r}")
    best = max(items.values())
    best_size = min(d for d, s in items.items() if s == best)
    return Recommendations(best_size, smallest_size_within(items, balanced_tolerance),
                           smallest_size_within(items, edge_tolerance), metric, balanced_tolerance, edge_tolerance)


#: ``matryoshka.json`` ``extra`` keys that describe the scores :func:`write_metadata` replaces (the
#: validation suite's per-domain scores written by ``medrag finetune --export-adapter``): dropped.
STALE_AFTER_RESCORING = ("suite_domains", "suite_domains_base", "scored_on_task")


def write_metadata(folder, result, baseline=None, task: str | None = None,
                   task_details: dict | None = None) -> "Path":
    """Record a model's measured scores and recommended sizes in its folder's ``matryoshka.json``.

    After this, ``MatryoshkaEmbeddings(folder, dimension="auto")`` picks a size from these scores.

    Args:
        folder: the model folder (as written by ``medrag finetune``).
        result: the model's :class:`~evaluation.evaluator.ModelResult`.
        baseline: the base model's result, stored as ``scores_before`` (optional; without it the
            folder's earlier ``scores_before``, measured on another task, are removed).
        task: the name of the task the scores come from, recorded as ``extra.scored_on``.
        task_details: what else tells that task apart (query and passage counts, content hash, the
            command), recorded as ``extra.scored_on_task``: a name such as ``beir/test`` alone did
            not say which folder or how many queries the scores that ``dimension="auto"`` reads came from.

    Every trained size must have been evaluated (``"auto"`` would otherwise choose among the
    evaluated ones only); a folder without ``matryoshka.json`` gets one whose trained sizes are the
    evaluated sizes. All scores, before and after, then come from this one evaluation.

    Raises:
        MetadataError: ``folder`` is not a directory, its ``matryoshka.json`` is unusable, or a
            trained size was not evaluated.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MetadataError(f"--write-metadata needs a model folder; {str(folder)!r} is not one")
    meta = MatryoshkaMetadata.load(folder)
    if meta is None:
        meta = MatryoshkaMetadata(full_dim=result.full_dim, dims=sorted(result.sizes, reverse=True))
    if meta.full_dim != result.full_dim:
        raise MetadataError(f"{folder}/matryoshka.json says full_dim={meta.full_dim}, the model outputs {result.full_dim}")
    missing = [d for d in meta.dims if d not in result.sizes]
    if missing:
        raise MetadataError(f"{folder} is trained at sizes {meta.dims}, and {missing} were not evaluated: record "
                            f"scores for every trained size (--sizes {' '.join(map(str, meta.dims))}, or drop --sizes)")
    kept = [d for d in result.sizes if d in meta.dims]
    meta.scores = {d: dict(result.sizes[d].means) for d in kept}
    # one evaluation for both: earlier base scores came from another task (the fine-tune's eval split)
    meta.scores_before = {d: dict(baseline.sizes[d].means) for d in kept if d in baseline.sizes} \
        if baseline is not None else {}
    meta.metric = result.recommendations.metric
    recs = recommend_sizes({d: meta.scores[d][meta.metric] for d in kept}, result.recommendations.balanced_tolerance,
                           result.recommendations.edge_tolerance, meta.metric)
    meta.recommendations = recs.to_dict()
    # the per-domain scores of an earlier suite evaluation described the scores replaced here (user tryout)
    earlier = {k: v for k, v in meta.extra.items() if k not in STALE_AFTER_RESCORING}
    meta.extra = {**earlier, "recommendation_tolerances": {"balanced": recs.balanced_tolerance,
                                                              "edge": recs.edge_tolerance},
                  "metrics": list(next(iter(meta.scores.values()))),
                  "scored_on": task or "medrag evaluate (task not named)",
                  **({"scored_on_task": task_details} if task_details else {})}
    path = meta.save(folder)
    _note_in_card(folder / "README.md", meta)
    return path


#: The markers around the section :func:`write_metadata` keeps in a model card.
_CARD_BEGIN, _CARD_END = "<!-- medrag evaluate --write-metadata -->", "<!-- end of medrag evaluate --write-metadata -->"


def _note_in_card(card: Path, meta: MatryoshkaMetadata) -> None:
    """Add (or replace) a section of the model card ``card`` with the scores just recorded: the card
    kept showing the training run's table while ``dimension="auto"`` followed other numbers (user
    tryout). A folder without a card gets none."""
    if not card.is_file():
        return
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("%s not updated with the new scores: %s", card, exc)
        return
    metric = meta.metric
    has_before = bool(meta.scores_before)
    rows = [f"| {d} | " + (f"{meta.scores_before[d][metric]:.4f} | " if has_before and d in meta.scores_before
                            else "- | " if has_before else "") + f"{meta.scores[d][metric]:.4f} |"
            for d in sorted(meta.scores, reverse=True)]
    section = "\n".join([
        _CARD_BEGIN, "## Scores recorded by `medrag evaluate --write-metadata`", "",
        f"Scored on: {meta.extra.get('scored_on')}. These replace the scores shown above in `matryoshka.json`, "
        "which `dimension=\"auto\"` and the presets read.", "",
        f"| size | {'base ' + metric + ' | ' if has_before else ''}{metric} |",
        "|---:|" + ("---:|" if has_before else "") + "---:|", *rows, _CARD_END])
    if _CARD_BEGIN in text and _CARD_END in text:
        head, rest = text.split(_CARD_BEGIN, 1)
        text = head + section + rest.split(_CARD_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    try:
        card.write_text(text, encoding="utf-8")
    except OSError as exc:
        logger.warning("%s not updated with the new scores: %s", card, exc)
