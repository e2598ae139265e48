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


#: The settings each engine reads, recorded as the run's recipe (``matryoshka.json`` ``extra.recipe``).
TRAINER_RECIPE = ("loss", "batch_size", "mini_batch_size", "gradient_accumulation_steps", "hard_negatives",
                  "freeze_embeddings", "batch_sampler", "epochs", "max_steps", "learning_rate", "warmup_ratio", "lr_scheduler",
                  "max_seq_length", "seed")
LOOP_RECIPE = ("contrastive_weight", "lora_rank", "lora_alpha", "lora_layers", "freeze_embeddings", "freeze_encoder",
               "rotation", "rotation_trainable", "distill_weight", "distill_temperature", "distill_corpus",
               "distill_batch_size", "matryoshka_weights", "batch_sampling", "mixture", "max_train_pairs",
               "top_block_epochs", "top_block_learning_rate", "top_block_head_learning_rate", "top_block_lora_rank",
               "top_block_lora_alpha",
               "batch_size", "epochs", "max_steps", "learning_rate", "query_max_length", "passage_max_length", "seed")


def recipe_settings(cfg: Any) -> dict[str, Any]:
    """The settings of ``cfg`` that its engine trains with (the other engine's are not read)."""
    recipe = {"engine": cfg.engine, **{k: getattr(cfg, k) for k in (LOOP_RECIPE if cfg.engine == "loop"
                                                                     else TRAINER_RECIPE)}}
    recipe["freeze_embeddings"] = cfg.embeddings_frozen  # what the run did (None: the engine's default)
    return recipe


def recipe_text(cfg: Any, result: Any, loss: str) -> str:
    """One sentence of the recipe the run trained with, for the engine it ran (``engine: loop`` has its
    own lengths, fp32, MNRL and a linear schedule: the Trainer's batch sampler, max_seq_length and
    precision were printed for it)."""
    length = f"{cfg.max_steps} step(s) at most" if cfg.max_steps > 0 else f"{cfg.epochs:g} epoch(s)"
    if cfg.engine == "loop":
        parts = [f"MatryoshkaLoss over in-batch negatives (MultipleNegativesRankingLoss, weight "
                 f"{cfg.contrastive_weight:g}), sizes {', '.join(map(str, result.dims))}"]
        if cfg.distill_weight:
            parts.append(f"self-distillation of the frozen base model's full-size similarities into every size "
                         f"(weight {cfg.distill_weight:g}, temperature {cfg.distill_temperature:g}"
                         + (f", unlabelled {'+'.join(cfg.distill_corpus)}" if cfg.distill_corpus else "") + ")")
        parts.append("encoder frozen, only the final linear layer trained on cached encoder vectors"
                     if cfg.freeze_encoder else
                     (f"LoRA rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g}"
                      + (f", top {cfg.lora_layers} layers" if cfg.lora_layers else ", all layers"))
                     if cfg.lora_rank else "full fine-tuning")
        parts.append(f"rotation {cfg.rotation}")
        if getattr(cfg, "top_block_epochs", 0):
            parts.append(f"then the encoder's last block (LoRA rank {cfg.top_block_lora_rank}, alpha "
                         f"{cfg.top_block_lora_alpha:g}, lr {cfg.top_block_learning_rate:g}) trained with the final layer "
                         f"(lr {cfg.top_block_head_learning_rate:g}) for {cfg.top_block_epochs} epoch(s) on cached "
                         "hidden states, same losses (LP-FT)")
        if cfg.mixture:
            parts.append(f"pairs added from {'+'.join(cfg.mixture)}")
        parts.append(f"{cfg.batch_sampling} batches of {cfg.batch_size}, {length}, lr {cfg.learning_rate:g}, "
                     f"linear schedule; queries <= {cfg.query_max_length} tokens, passages <= "
                     f"{cfg.passage_max_length}; fp32 (engine loop); seed {cfg.seed}")
        return "; ".join(parts)
    return (f"MatryoshkaLoss over {'CachedMultipleNegativesRankingLoss (mini-batch ' + str(cfg.mini_batch_size) + ')' if loss == 'cached_mnrl' else 'MultipleNegativesRankingLoss'}"
            f", sizes {', '.join(map(str, result.dims))}; batch {cfg.batch_size} x accumulation "
            f"{cfg.gradient_accumulation_steps}; {cfg.hard_negatives} hard negative(s) per example; "
            f"sampler {cfg.batch_sampler}; {length}; lr {cfg.learning_rate:g}, warmup "
            f"{cfg.warmup_ratio:g}, {cfg.lr_scheduler} schedule; max_seq_length {cfg.max_seq_length}; "
            f"{result.precision}; seed {cfg.seed}")


def write_model_card(folder: str | Path, cfg: Any, result: Any, dataset: Any, info: dict[str, Any]) -> Path:
    """Write ``README.md`` into ``folder`` (replacing sentence-transformers' generic card)."""
    folder = Path(folder)
    recipe = recipe_text(cfg, result, info.get("loss", cfg.loss))
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
        (f"Evaluated on {info['eval_queries']} held-out questions against {info['eval_corpus']} distinct answers, "
         "with the query/passage prompts.") if result.scores_after else
        "Not evaluated (no held-out pairs, or `evaluate_after` off): score the folder with "
        "`medrag evaluate --model <this folder> --data EVAL.jsonl --split all --write-metadata` (every pair of a "
        "file of questions it did not train on) to record its per-size NDCG@10.",
        "",
        score_table(result.scores_before, result.scores_after, "ndcg@10") if result.scores_after else
        "(no scores)",
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
        f"{result.global_step} optimizer steps"
        + (f" (resumed from step {result.resumed_from_step}: the time and rate are the last session's, "
           f"{result.global_step - result.resumed_from_step} steps)" if getattr(result, "resumed_from_step", 0) else "") + (f", peak GPU memory {result.peak_gpu_memory_bytes / 2**30:.2f} GiB"
                                                  if result.peak_gpu_memory_bytes else _cpu_note(info)) + ".",
        f"- Data: {dataset.split_method}.",
        "- Full configuration: `finetune_config.yaml`; timings: `training_info.json`; sizes and scores: "
        "`matryoshka.json`.",
        "",
        "## Use",
        "",
        "```python",
        "from medrag import MatryoshkaEmbeddings",
        (f'emb = MatryoshkaEmbeddings("{folder}", dimension="auto")  # smallest size within 1% of full-size NDCG@10'
         if result.scores_after else
         f'emb = MatryoshkaEmbeddings("{folder}", dimension={min(result.dims)})  # any trained size; "auto" needs scores'),
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def adapter_card(name: str, cfg: Any, result: Any, metadata: Any, sources: list[str], licences: dict[str, str],
                 pair_counts: dict[str, int], text_counts: dict[str, int]) -> str:
    """The model card (``README.md``) of an exported adapter: data and licences, recipe, scores, limits."""
    from medrag.adapters import packaged_models, packaged_models_dir
    from medrag.bundled import BUNDLED_SPEC

    nc = any("NC" in v for v in licences.values())
    scored_on = metadata.extra.get("scored_on") or "the run's evaluation split"
    # a user's export (its own base, loaded from its folder) was described as medrag's packaged model over
    # the embedded e5-small, loaded as bundled:NAME, with e5-small's size in its limits (user tryout)
    # packaged: exported into medrag's own models folder under its name (the recipes of the shipped models),
    # not merely named like one
    packaged = cfg.export_adapter is not None and \
        Path(cfg.export_adapter).expanduser().resolve() == (packaged_models_dir() / name).resolve()
    base = cfg.model or BUNDLED_SPEC
    over_e5_small = base == BUNDLED_SPEC or (base.startswith("bundled:") and base.removeprefix("bundled:") in packaged_models())
    base_text = ("the embedded `multilingual-e5-small` (MIT)" if base == BUNDLED_SPEC else
                 f"`{base}`" + (" (medrag's model over the embedded `multilingual-e5-small`, MIT)" if over_e5_small else ""))
    load_text = (f'`medrag.load_model("bundled:{name}")`' if packaged else
                 f'`MatryoshkaEmbeddings("{cfg.export_adapter}")` (this folder; `medrag.load_model` alike)')
    trained_on = ", ".join(pair_counts) or "the run's pairs"
    lines = [
        f"# {name}" + (" (non-commercial)" if nc else ""),
        "",
        ("medrag's French medical Matryoshka embedding model: " if packaged else
         "A Matryoshka embedding model trained with `medrag finetune`: ")
        + (f"a LoRA adapter (rank {cfg.lora_rank})" if cfg.lora_rank else "")
        + (f"a LoRA adapter of the encoder's last block (rank {cfg.top_block_lora_rank})"
           if getattr(cfg, "top_block_epochs", 0) else "")
        + (" and " if (cfg.lora_rank or getattr(cfg, "top_block_epochs", 0)) and cfg.rotation != "none" else "")
        + ((f"a {'learned ' if cfg.freeze_encoder or cfg.rotation_trainable else ''}final linear layer "
            f"(initialised as a {cfg.rotation} rotation)") if cfg.rotation != "none" else "")
        + f" over {base_text}, applied at load time by {load_text}. "
        "Queries take the prompt `query: `, passages `passage: ` (medrag adds them).",
        "",
        "## Data and licences",
        "",
        "| source | training pairs | licence |",
        "|---|---:|---|",
    ]
    for src, n in pair_counts.items():
        key = src.split("[")[0]
        lines.append(f"| {src} | {n} | {licences.get(key, 'Apache-2.0 (FrenchMedMCQA)' if 'frenchmedmcqa' in src else 'see the source')} |")
    for src, n in text_counts.items():
        lines.append(f"| {src} (unlabelled, distillation) | {n} texts | {licences.get(src, 'see the source')} |")
    if nc:
        lines += ["", "**Trained on CC BY-NC data: the weights are for non-commercial use only.**"]
    elif any("SA" in v for v in licences.values()):
        lines += ["", "Part of the data is CC BY-SA (MORFITT abstracts): whether the share-alike term reaches "
                  "model weights is unsettled; we note it and distribute the weights under the same terms as "
                  "the source where it applies."]
    lines += [
        "",
        "## Recipe",
        "",
        f"{recipe_text(cfg, result, 'mnrl')}. "
        f"{result.global_step} steps in {result.train_seconds:.0f} s ({result.samples_per_second:.2f} samples/s)"
        + (f", then {result.top_block_steps} steps of the last block in {result.top_block_seconds:.0f} s"
           if getattr(result, "top_block_steps", 0) else "") + ".",
        "",
        f"## Scores per size ({metadata.metric}, {scored_on})",
        "",
        score_table(metadata.scores_before, metadata.scores, metadata.metric) if metadata.scores else "(not scored)",
        "",
        *_domain_lines(metadata),
        "## Limits",
        "",
        *_regression_lines(metadata),
        *_transfer_lines(metadata, sources),
        *(["- Trained and selected for French medical passage retrieval; other languages and domains inherit the "
           "base model's quality at best."] if packaged else
          [f"- Trained on {trained_on}: other data and domains inherit the base model's quality at best."]),
        *(["- A small model (384 dims, 118M parameters, 4-bit-rounded base weights): for the best quality, "
           "fine-tune `intfloat/multilingual-e5-large` with the same recipe."] if over_e5_small else
          [f"- {metadata.full_dim} dims over `{base}`."]),
        "- Not a medical device; retrieval results need a clinician's judgement.",
        "",
    ]
    return "\n".join(lines)


def _domain_lines(metadata: Any) -> list[str]:
    """Per-domain NDCG@10 of the base -> this model at every size (from ``matryoshka.json`` extra)."""
    after, base = metadata.extra.get("suite_domains") or {}, metadata.extra.get("suite_domains_base") or {}
    if not after:
        return []
    dims = [str(d) for d in metadata.dims]
    lines = ["Per domain (base -> this model; `sample` is report-only, not in the macro-average):", "",
             "| domain | " + " | ".join(dims) + " |", "|---|" + "---:|" * len(dims)]
    for name, scores in after.items():
        cells = []
        for d in dims:
            b = base.get(name, {}).get(d, {}).get(metadata.metric)
            a = scores.get(d, {}).get(metadata.metric)
            cells.append(f"{_fmt(b)} -> {_fmt(a)}" if b is not None else _fmt(a))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _regression_lines(metadata: Any) -> list[str]:
    """A limit line for every domain and size where the model scores more than 0.01 below the base."""
    after, base = metadata.extra.get("suite_domains") or {}, metadata.extra.get("suite_domains_base") or {}
    out = []
    for name, scores in after.items():
        worse = [f"{d} ({base[name][d][metadata.metric]:.3f} -> {s[metadata.metric]:.3f})"
                 for d, s in scores.items() if name in base and d in base[name]
                 and s[metadata.metric] < base[name][d][metadata.metric] - 0.01]
        if worse:
            out.append(f"- Below the base model by more than 0.01 on {name} at size(s) " + ", ".join(worse) + ".")
    return out


def _transfer_lines(metadata: Any, sources: list[str]) -> list[str]:
    """Which suite domains measure transfer: those without training pairs of their kind. A domain
    that has them is scored on other documents of the same kind, with queries made by the same
    builder as the training pairs (in distribution)."""
    domains = list(metadata.extra.get("suite_domains") or {})
    if not domains:
        return []
    trained = {s.split("[")[0].split(":")[0].strip().lower() for s in sources}
    unseen = [d for d in domains if d not in trained]
    seen = [d for d in domains if d in trained]
    line = ("- Suite domains without training pairs of their kind (the transfer checks): "
            + (", ".join(unseen) if unseen else "none")
            + (f". Scores on {', '.join(seen)} are in distribution: other documents, queries made by the same "
               "builders as the training pairs." if seen else "."))
    return [line]


def _cpu_note(info: dict[str, Any]) -> str:
    """``, 812 s CPU time on 2 thread(s), load average 3.1`` (a busy machine stretches the wall time)."""
    if not info.get("train_cpu_seconds"):
        return ""
    load = info.get("load_average")
    return (f", {info['train_cpu_seconds']:.0f} s CPU time on {info.get('torch_threads', '?')} thread(s)"
            + (f", load average {load[0]} at the end" if load else ""))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
