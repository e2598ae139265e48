"""The README.md written into every fine-tuned model folder: what was trained, on what, how well.

The table is the seed report's (Dimension | Initial | Final | Gain, NDCG@10), one row per trained
size, followed by MRR@10 / Recall@10, the recipe, timings and how to load the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def score_table(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]],
                metric: str = "ndcg@10") -> str:
    """Markdown table ``Dimension | Initial | Final | Gain`` for ``metric`` (gain in % of the initial score)."""
    lines = [f"| Dimension | Initial {metric} | Final {metric} | Gain |", "|---:|---:|---:|---:|"]
    for dim in sorted(set(before) | set(after), reverse=True):
        b = before.get(dim, {}).get(metric)
        a = after.get(dim, {}).get(metric)
        gain = f"{100 * (a - b) / b:+.1f}%" if a is not None and b else "n/a"
        lines.append(f"| {dim} | {_fmt(b)} | {_fmt(a)} | {gain} |")
    return "\n".join(lines)


def write_model_card(folder: str | Path, cfg: Any, result: Any, dataset: Any, info: dict[str, Any]) -> Path:
    """Write ``README.md`` into ``folder`` (replacing sentence-transformers' generic card)."""
    folder = Path(folder)
    loss = info.get("loss", cfg.loss)
    recipe = (f"MatryoshkaLoss over {'CachedMultipleNegativesRankingLoss (mini-batch ' + str(cfg.mini_batch_size) + ')' if loss == 'cached_mnrl' else 'MultipleNegativesRankingLoss'}"
              f", sizes {', '.join(map(str, result.dims))}; batch {cfg.batch_size} x accumulation "
              f"{cfg.gradient_accumulation_steps}; {cfg.hard_negatives} hard negative(s) per example; "
              f"sampler {cfg.batch_sampler}; {cfg.epochs:g} epoch(s); lr {cfg.learning_rate:g}, warmup "
              f"{cfg.warmup_ratio:g}, {cfg.lr_scheduler} schedule; max_seq_length {cfg.max_seq_length}; "
              f"{result.precision}; seed {cfg.seed}")
    parts = [
        "---",
        "library_name: sentence-transformers",
        "tags: [sentence-transformers, matryoshka, medrag, french, medical]",
        "---",
        "",
        f"# {folder.name}",
        "",
        f"Matryoshka fine-tune of `{cfg.model or 'bundled:multilingual-e5-small'}` by `medrag finetune`, on "
        f"{dataset.name} ({len(dataset.train)} training pairs).",
        "",
        "## Retrieval quality per size",
        "",
        f"Evaluated on {info['eval_queries']} held-out questions against {info['eval_corpus']} distinct answers, "
        "with the query/passage prompts.",
        "",
        score_table(result.scores_before, result.scores_after, "ndcg@10") if result.scores_after else
        "(no evaluation split)",
    ]
    if result.scores_after:
        for metric in ("mrr@10", "recall@10"):
            parts += ["", score_table(result.scores_before, result.scores_after, metric)]
    parts += [
        "",
        "## Training",
        "",
        f"- Recipe: {recipe}.",
        f"- Time: {result.train_seconds:.0f} s of training, {result.samples_per_second:.2f} samples/s, "
        f"{result.global_step} optimizer steps" + (f", peak GPU memory {result.peak_gpu_memory_bytes / 2**30:.2f} GiB"
                                                  if result.peak_gpu_memory_bytes else _cpu_note(info)) + ".",
        f"- Data: {dataset.split_method}.",
        "- Full configuration: `finetune_config.yaml`; timings: `training_info.json`; sizes and scores: "
        "`matryoshka.json`.",
        "",
        "## Use",
        "",
        "```python",
        "from medrag import MatryoshkaEmbeddings",
        f'emb = MatryoshkaEmbeddings("{folder}", dimension="auto")  # smallest size within 1% of full-size NDCG@10',
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _cpu_note(info: dict[str, Any]) -> str:
    """``, 812 s CPU time on 2 thread(s), load average 3.1`` (a busy machine stretches the wall time)."""
    if not info.get("train_cpu_seconds"):
        return ""
    load = info.get("load_average")
    return (f", {info['train_cpu_seconds']:.0f} s CPU time on {info.get('torch_threads', '?')} thread(s)"
            + (f", load average {load[0]} at the end" if load else ""))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
