"""Matryoshka fine-tuning: MatryoshkaLoss over (Cached)MultipleNegativesRankingLoss, scored per size
before and after training, saved as a folder that :func:`medrag.load_model` and
:class:`medrag.MatryoshkaEmbeddings` (``dimension="auto"``) read directly.

Example::

    >>> from finetune import FinetuneConfig, MatryoshkaFinetuner
    >>> cfg = FinetuneConfig(data="../shared/data/frenchmedmcqa", dims=[384, 256, 128, 64, 32],
    ...                      output_dir="runs/e5-small-mcqa")
    >>> result = MatryoshkaFinetuner(cfg).run()
    >>> result.scores_after[64]["ndcg@10"] > result.scores_before[64]["ndcg@10"]
    True

Why one contrastive batch of 64 is the default: MultipleNegativesRankingLoss scores each query
against the passages *of its forward batch*; gradient accumulation adds steps, not negatives, so
the seed's batch 4 x accumulation 16 trains with 3 in-batch negatives per query. GradCache
(CachedMultipleNegativesRankingLoss) makes the whole batch the contrastive batch at the memory
of a mini-batch: the default on GPU. It computes exactly the loss and gradients of plain MNRL on
the same batch, with one extra forward pass; on CPU, where memory is not the limit, ``loss="auto"``
uses plain MNRL (faster per step there; measured in docs/results.md).

Multi-GPU: launch the same command under ``torchrun --nproc_per_node N`` or ``accelerate launch``;
the Trainer wraps the model in DDP and the loss gathers passages across devices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import FinetuneConfig
from finetune.data import LOADER_SETTINGS, data_settings, load_dataset_from_config
from finetune.model_card import recipe_settings, write_model_card
from finetune.output_lock import OutputLock
from finetune.preflight import (CHECKPOINT_DIR, CONFIG_FILENAME, FINISHED_FILENAME, INFO_FILENAME, check_matryoshka_weights,
                                check_report_to, check_run, top_block_refusal)
from finetune.scoring import TRAINING_METRICS, prompt_texts, score_sizes
from finetune.truncation import log_truncated
from medrag.adapters import TRAINING_RUN_KEY
from medrag.errors import ConfigError, DataError
from medrag.metadata import METADATA_FILENAME, MatryoshkaMetadata, default_dims
from medrag.models import embedding_dim, load_model
from medrag.qa.pairs import DATA_GIVEN_KEY, QADataset, QAPair, data_file_record

# torch, accelerate, transformers and sentence-transformers (heavy) are imported inside the functions
# that train: importing finetune (and `medrag --help`) stays fast.
if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

_BEFORE_FILENAME = "scores_before.json"
#: the Trainer engine's run key (:func:`finetune.loop_checkpoints.run_key`) beside its checkpoints
_RUN_KEY_FILENAME = "run_key.json"


@dataclass
class FinetuneResult:
    """What a run produced.

    Attributes:
        output_dir: the saved model folder.
        dims: the trained sizes, descending.
        scores_before / scores_after: ``{dim: {metric: value}}`` on the eval task (empty when skipped).
        train_seconds: wall time of the training loop (without evaluation).
        train_cpu_seconds: CPU time of this process over the training loop, all threads (on a shared
            machine, with ``torch.get_num_threads()``, what the run would take alone: CPU s / threads).
        samples_per_second: training throughput reported by the Trainer.
        losses: the logged training losses, in order.
        peak_gpu_memory_bytes: ``torch.cuda.max_memory_allocated`` on CUDA, else ``None``.
        precision: the precision actually used (``fp32``, ``bf16``, ``fp16``).
        resumed_from_step: the checkpoint step a ``resume`` run continued from (0: a run from
            the start); ``train_seconds`` and ``samples_per_second`` are then this session's only.
        top_block_steps / top_block_seconds: steps and wall time of the last-block phase
            (``top_block_epochs``; :mod:`finetune.top_block`), 0 without it.
    """

    output_dir: Path
    dims: list[int]
    scores_before: dict[int, dict[str, float]] = field(default_factory=dict)
    scores_after: dict[int, dict[str, float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    losses: list[float] = field(default_factory=list)
    peak_gpu_memory_bytes: int | None = None
    precision: str = "fp32"
    global_step: int = 0
    train_cpu_seconds: float = 0.0
    resumed_from_step: int = 0
    top_block_steps: int = 0
    top_block_seconds: float = 0.0


class MatryoshkaFinetuner:
    """Runs one fine-tuning from a :class:`FinetuneConfig`.

    Args:
        config: the run's configuration.
        dataset: already loaded data (default: loaded from ``config``).
        model: an already loaded model (default: ``medrag.load_model(config.model)``).
        callbacks: with ``engine: trainer``, extra ``transformers.TrainerCallback`` objects; with
            ``engine: loop``, callables given the number of steps completed after each step.
    """

    def __init__(self, config: FinetuneConfig, dataset: QADataset | None = None,
                 model: "SentenceTransformer | None" = None, callbacks: list | None = None) -> None:
        self.config = config
        self.dataset = dataset
        self._dataset_given = dataset is not None
        self._other_data = False  # set by :meth:`run`: a dataset passed in that the config does not describe
        self.model = model
        self.callbacks = list(callbacks or [])
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / CHECKPOINT_DIR
        self._data_file_records: dict[str, Any] | None = None  # :meth:`_data_files`
        #: the loss actually trained with (``loss="auto"`` resolved for the device)
        self.loss_name = resolve_loss(config.loss, cpu=None)

    # ------------------------------------------------------------------ main entry

    def run(self) -> FinetuneResult:
        """Load, score before, train, save, score after; return the result (same on every process)."""
        from accelerate import PartialState

        # checked again as built: a field set after construction (cfg.batch_size = 1, cfg.learning_rate = "1e-3")
        # ran 0 steps and saved the base as "fine-tuned", or failed with a bare TypeError (user tryout)
        cfg = self.config = self.config.replace()
        check_run(cfg, model_given=self.model is not None)  # output and export folders, tracker: before any model loads
        state = PartialState(cpu=_cpu_only(cfg))
        with contextlib.ExitStack() as held:
            refused = None
            if state.is_main_process:  # a second run into this folder mixed both runs' files (user tryout)
                try:
                    held.enter_context(OutputLock(self.output_dir))
                except ConfigError as exc:
                    refused = str(exc)
            if state.num_processes > 1:  # every process stops, not the main one alone (review: the others hung)
                from accelerate.utils import broadcast_object_list

                refused = broadcast_object_list([refused], from_process=0)[0]
            if refused is not None:
                raise ConfigError(refused)
            return self._run(cfg, state)

    def _run(self, cfg: FinetuneConfig, state: Any) -> FinetuneResult:
        """:meth:`run` once its checks passed and its output folder is locked."""
        import torch

        resume_from = self._resume_checkpoint()
        if self.dataset is None:
            self.dataset = load_dataset_from_config(cfg)
        # a dataset passed in and read otherwise than the config says: the saved config does not describe it
        self._other_data = self._dataset_given and self.dataset.loaded_from != data_settings(cfg, LOADER_SETTINGS)
        if cfg.engine != "loop":  # the loop checks its pairs with the mixture's (training_pairs)
            check_learnable(self.dataset.train)
        if self.model is None:
            from medrag.bundled import BUNDLED_SPEC

            # no model given: the plain embedded e5-small (not medrag's default model, trained from it)
            self.model = load_model(cfg.model or BUNDLED_SPEC, device="cpu" if _cpu_only(cfg) else cfg.device)
        model = self.model
        dims = self._dims(model)
        check_matryoshka_weights(cfg, dims)
        precision = resolve_precision(cfg.precision, cpu=_cpu_only(cfg))
        self.loss_name = resolve_loss(cfg.loss, cpu=_cpu_only(cfg))
        task = self.dataset.eval_task() if self.dataset.eval else None
        if task is not None and (cfg.evaluate_before or cfg.evaluate_after):
            from evaluation.retrieval import warn_if_few_queries

            # 3 pairs held out 10%: one query scored 1.0 at every size and dimension="auto" took the smallest
            more = ("" if cfg.eval_data else
                    "a larger held-out share: eval_fraction, --eval-fraction; or a dedicated evaluation file: "
                    "eval_data, --eval-data")
            warn_if_few_queries(task, "the before/after table and the scores dimension='auto' chooses a size from",
                                more)
        inference_max_len = model.max_seq_length
        if state.is_main_process:  # passages longer than the cap were trained on their beginning, and nothing said so
            log_truncated(model, self.dataset.train, cfg, inference_max_len)

        if cfg.engine != "loop" and cfg.checkpoints:
            self._check_run_key(dims, resume_from, state)
        before: dict[int, dict[str, float]] = {}
        if task is not None and cfg.evaluate_before:
            before = self._scores_before(model, task, dims, state)
        if cfg.engine == "loop":
            result = self._run_loop(model, dims, task, before, precision, resume_from)
            self._warn_without_scores(result)
            return result

        _freeze_unused_pooler(model)
        trainer = self._build_trainer(model, dims, precision)
        trainer.add_callback(_log_last_step_callback())
        stopper = _GracefulStop()
        trainer.add_callback(stopper.callback)
        if cfg.max_seq_length:  # shorter sequences in training only; never beyond what the model supports
            model.max_seq_length = min(cfg.max_seq_length, inference_max_len or cfg.max_seq_length)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start, cpu_start = time.perf_counter(), time.process_time()
        with stopper.installed():
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_seconds = time.perf_counter() - start
        train_cpu_seconds = time.process_time() - cpu_start
        model.max_seq_length = inference_max_len
        peak = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() and not _cpu_only(cfg) else None
        if stopper.requested:
            logger.warning("interrupted at step %d: checkpoint saved in %s; rerun with --resume to continue",
                           trainer.state.global_step, self.checkpoint_dir)
            raise KeyboardInterrupt

        result = FinetuneResult(
            output_dir=self.output_dir, dims=dims, scores_before=before, train_seconds=train_seconds,
            samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
            losses=[float(h["loss"]) for h in trainer.state.log_history if "loss" in h],
            peak_gpu_memory_bytes=peak, precision=precision, global_step=trainer.state.global_step,
            train_cpu_seconds=train_cpu_seconds, resumed_from_step=_resumed_step(resume_from),
        )
        if state.is_main_process:
            _check_finite(model, trainer.state.global_step)
            self._save_and_score(model, task, dims, result)
            self._end_checkpoints(result.global_step)
            self._warn_without_scores(result)
        state.wait_for_everyone()
        return result

    def _check_run_key(self, dims: list[int], resume_from: Path | None, state) -> None:
        """Trainer engine: record the run key (settings + training pairs) beside the checkpoints; a
        ``--resume`` under another key (other settings or data) is refused, as the loop engine does."""
        from finetune.loop_checkpoints import refused_resume, run_key, run_settings

        key = run_key(self.config, dims, self.dataset.train, [])
        settings = run_settings(self.config, dims)
        path = self.checkpoint_dir / _RUN_KEY_FILENAME
        if resume_from is not None:
            saved = _read_json(path)
            if saved is None:
                logger.warning("%s records no run key (an older run): cannot check that its settings and data are "
                               "this run's", self.checkpoint_dir)
            elif saved.get("run_key") != key:  # the settings are recorded since December 7: a refusal names them
                raise refused_resume(f"the checkpoints in {self.checkpoint_dir}", saved.get("run_settings"), settings,
                                     legacy="before December 7")
            return
        if state.is_main_process:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"run_key": key, "run_settings": json.dumps(settings, sort_keys=True,
                                                                                    default=str)}), encoding="utf-8")
        state.wait_for_everyone()

    def _warn_without_scores(self, result: FinetuneResult) -> None:
        """No eval scores: ``dimension="auto"`` cannot use the saved model; say how to add them."""
        if result.scores_after:
            return
        logger.warning("%s records no scores (no eval set, or evaluate_after: false): MatryoshkaEmbeddings(%r, "
                       "dimension='auto') cannot choose a size from it. Add the scores with: medrag evaluate "
                       "--model %s --data EVAL_DATA --split all --write-metadata (every pair of a dedicated evaluation "
                       "file of 30 questions or more, none trained on; or train with an eval set: eval_fraction > 0 "
                       "or eval_data)", Path(self.output_dir) / "matryoshka.json", str(self.output_dir),
                       self.output_dir)

    def _run_loop(self, model, dims: list[int], task, before: dict[int, dict[str, float]],
                  precision: str, resume_from: Path | None) -> FinetuneResult:
        """``engine: loop``: the plain loop of :mod:`finetune.loop` (one process), then the same outputs
        as the Trainer path, plus the adapter export when ``export_adapter`` is set. Checkpoints,
        Ctrl-C / SIGTERM and ``--resume`` work as with the Trainer (:mod:`finetune.loop_checkpoints`);
        ``callbacks`` are callables given the number of steps completed."""
        from medrag.adapters import base_weights_fingerprint
        from medrag.qa.pairs import QADataset

        from finetune.loop import TrainingLoop
        from finetune.mixture import mixture_texts

        cfg = self.config
        if _world_size() > 1:
            raise ConfigError("engine: loop runs in one process; use engine: trainer under torchrun")
        pairs, counts = self.training_pairs()
        unlabelled, text_counts = mixture_texts(cfg.distill_corpus, cfg.shared_data, cfg.seed) if cfg.distill_corpus \
            else ([], {})
        logger.info("training pairs per source: %s; unlabelled texts: %s", counts, text_counts)
        self.dataset = QADataset(pairs, self.dataset.eval, name=self.dataset.name if not cfg.mixture else
                                 f"{self.dataset.name} + {'+'.join(cfg.mixture)}", stats=self.dataset.stats,
                                 split_method=self.dataset.split_method, eval_name=self.dataset.eval_name)
        self.source_counts = counts
        self.text_counts = text_counts
        base_fingerprint = base_weights_fingerprint(model)
        inference_max_len = model.max_seq_length
        loop_cfg = cfg
        if cfg.matryoshka_weights and cfg.dims:  # each weight stays with its size; an added full size weighs 1
            by_size = dict(zip(cfg.dims, cfg.matryoshka_weights))
            loop_cfg = cfg.replace(dims=list(dims), matryoshka_weights=[by_size.get(d, 1.0) for d in dims])
        if cfg.top_block_epochs:
            from finetune.rotation import rotation_layer

            if rotation_layer(model) is not None:  # the block's states skip the layer the model already has
                meta = self._folder_metadata(model)  # its recorded base, if any, is named
                raise top_block_refusal(cfg.model or "the model", meta.base_model if meta is not None else None)
        loop = TrainingLoop(model, loop_cfg, dims, pairs, unlabelled)
        phase = None
        if cfg.top_block_epochs:  # block states first: the loop's teacher vectors come from them
            import torch

            from finetune.top_block import TopBlockPhase

            if cfg.torch_threads:  # the encoding of the states is the run's longest part
                torch.set_num_threads(cfg.torch_threads)
            phase = TopBlockPhase(model, loop_cfg, pairs, dims, stop_requested=lambda: stopper.requested)
            phase.prepare()
            loop.teacher = (phase.teacher_q, phase.teacher_p)
        checkpoints = None
        if cfg.checkpoints:
            from finetune.loop_checkpoints import LoopCheckpoints, run_key, run_settings

            checkpoints = LoopCheckpoints(self.checkpoint_dir, run_key(loop_cfg, dims, pairs, loop.unlabelled),
                                          keep=cfg.save_total_limit, settings=run_settings(loop_cfg, dims))
        elif resume_from is not None:
            raise ConfigError("resume needs checkpoints: drop checkpoints: false")
        stopper = _GracefulStop()
        start_cpu = time.process_time()
        with stopper.installed():
            try:
                loop_result = loop.run(checkpoints, resume_from, stop_requested=lambda: stopper.requested,
                                       on_step_end=self.callbacks)
            except KeyboardInterrupt:
                if stopper.requested and checkpoints is not None:
                    saved = self._resume_checkpoint_or_none()
                    if saved is not None:
                        logger.warning("interrupted: checkpoint saved in %s; rerun with --resume to continue", saved)
                    else:
                        logger.warning("interrupted before the first step (the encoded teacher vectors are cached): "
                                       "rerun the same command to start again")
                raise
        model.max_seq_length = inference_max_len
        result = FinetuneResult(
            output_dir=self.output_dir, dims=dims, scores_before=before, train_seconds=loop_result.train_seconds,
            samples_per_second=loop_result.samples_per_second, losses=loop_result.losses, precision=precision,
            global_step=loop_result.steps, train_cpu_seconds=time.process_time() - start_cpu,
            resumed_from_step=_resumed_step(resume_from))
        self.loop_result = loop_result
        self.block_deltas = None
        if phase is not None:
            t0 = time.perf_counter()
            with stopper.installed():
                try:
                    self.block_deltas = phase.train()
                except KeyboardInterrupt:
                    saved = self._resume_checkpoint_or_none() if checkpoints is not None else None
                    logger.warning("interrupted while training the last block (step %d of the phase)%s", phase.steps,
                                   f"; rerun with --resume: the final layer's checkpoint ({saved}) and the cached "
                                   "states are kept, the block phase starts again" if saved is not None else
                                   "; rerun the same command (the cached states are kept)")
                    raise
            result.top_block_steps, result.top_block_seconds = phase.steps, time.perf_counter() - t0
            self.top_block_final_loss = phase.losses[-1] if phase.losses else None
            result.train_cpu_seconds = time.process_time() - start_cpu
        self.top_block = phase.encoder if phase is not None else None
        adapter_model = None
        if cfg.export_adapter:  # keep the unmerged adapters for the export; the saved folder is merged
            import copy

            adapter_model = copy.deepcopy(model)
        if cfg.lora_rank > 0:  # (the last block's LoRA is already folded in by TopBlockPhase.train)
            from finetune.lora import merge_lora

            merge_lora(model)
        _check_finite(model, loop_result.steps)
        self._save_and_score(model, task, dims, result)
        if cfg.export_adapter:
            self.export(adapter_model, result, base_fingerprint)
        self._end_checkpoints(result.global_step)
        return result

    def training_pairs(self):
        """``data``'s train pairs plus the ``mixture`` sources, without duplicates or eval questions,
        capped at ``max_train_pairs`` (seeded draw). Returns the pairs and the count per source."""
        import random

        from finetune.mixture import mixture_pairs, parse_source
        from medrag.qa.pairs import same_text_key

        cfg = self.config
        labelled = [(self.dataset.name, p) for p in self.dataset.train]
        for entry in cfg.mixture:  # one source at a time: each pair keeps its source's name
            extra, found = mixture_pairs([entry], cfg.shared_data, cfg.seed)
            labelled += [(next(iter(found)), p) for p in extra]
        # NFC keys (same_text_key): a mixture pair spelling an eval question in NFD is that question
        eval_questions = {same_text_key(p.question) for p in self.dataset.eval}
        seen: set[tuple[str, str]] = set()
        kept = []
        for source, p in labelled:
            key = (same_text_key(p.question), same_text_key(p.answer))
            if key in seen or key[0] in eval_questions:
                continue
            seen.add(key)
            kept.append((source, p))
        if cfg.max_train_pairs and len(kept) > cfg.max_train_pairs:
            rng = random.Random(cfg.seed)
            kept = [kept[i] for i in sorted(rng.sample(range(len(kept)), cfg.max_train_pairs))]
        # counted after duplicates, eval questions and the cap: the pairs trained (a source listed twice,
        # or the counts before the cap, made the adapter card's table add up to more than the run trained)
        counts = dict.fromkeys([self.dataset.name, *(parse_source(e)[0] for e in cfg.mixture)], 0)
        for source, _ in kept:
            counts[source] += 1
        pairs = [p for _, p in kept]
        check_learnable(pairs)
        return pairs, counts

    def export(self, adapter_model, result: FinetuneResult, base_fingerprint: str) -> Path:
        """Write the LoRA adapter folder (``export_adapter``), its matryoshka.json and card."""
        from medrag.metadata import MatryoshkaMetadata
        from medrag.models import embedding_dim

        from finetune.export import export_adapter
        from finetune.mixture import LICENCES, parse_source
        from finetune.model_card import adapter_card

        cfg = self.config
        sources = [self.dataset.name.split(" + ")[0]] + [parse_source(m)[0] for m in cfg.mixture]
        licences = {parse_source(m)[0]: LICENCES.get(parse_source(m)[0], "see the source")
                    for m in [*cfg.mixture, *cfg.distill_corpus]}
        scores, before, scored_on, per_domain, base_domains = result.scores_after, result.scores_before, None, {}, {}
        if self.dataset.eval:
            scored_on = self.dataset.eval_task().name
        if cfg.export_scores != "run":
            from medrag.bundled import BUNDLED_SPEC

            from finetune.suite_scores import suite_macro_scores
            from finetune.top_block import block_states_dir

            pilot = cfg.export_scores == "suite_pilot"
            base = load_model(cfg.model or BUNDLED_SPEC, device="cpu" if _cpu_only(cfg) else cfg.device)
            caps = dict(pilot=pilot, max_passages=cfg.suite_max_passages, data_root=cfg.shared_data)
            scores, per_domain = suite_macro_scores(self.model, base, result.dims, frozen_encoder=cfg.freeze_encoder,
                                                    top_block=getattr(self, "top_block", None),
                                                    states_dir=block_states_dir(cfg), **caps)
            top_block = getattr(self, "top_block", None)
            if top_block is not None:  # the base's own block over the same cached states: no encoding
                from finetune.top_block import TopBlockEncoder

                before, base_domains = suite_macro_scores(base, base, result.dims, frozen_encoder=False,
                                                          top_block=TopBlockEncoder(base),
                                                          states_dir=block_states_dir(cfg), **caps)
            else:
                before, base_domains = suite_macro_scores(base, None, result.dims, frozen_encoder=False, **caps)
            scored_on = (f"validation suite (val part{f', pilot caps 300 x {cfg.suite_max_passages}' if pilot else ''}), "
                         "macro-average over the choice domains")
        meta = MatryoshkaMetadata(
            full_dim=embedding_dim(self.model), dims=result.dims, scores=scores, scores_before=before,
            base_model=_recorded_spec(cfg.model or "bundled:multilingual-e5-small"),
            extra={"scored_on": scored_on, "suite_domains": {d: {str(k): v for k, v in s.items()}
                                                             for d, s in per_domain.items()},
                   "suite_domains_base": {d: {str(k): v for k, v in s.items()} for d, s in base_domains.items()},
                   "rotation_folded": cfg.rotation != "none",
                   "training_sources": getattr(self, "source_counts", {}), "licences": licences})
        recipe = recipe_settings(cfg)
        card = adapter_card(cfg.exported_name(), cfg, result, meta, sources, licences,
                            getattr(self, "source_counts", {}), getattr(self, "text_counts", {}))
        return export_adapter(adapter_model, cfg.export_adapter, name=cfg.exported_name(), base_spec=cfg.model,
                              base_fingerprint=base_fingerprint, metadata=meta, card=card,
                              lora=getattr(self, "block_deltas", None),
                              extra={"recipe": recipe, "training_sources": getattr(self, "source_counts", {}),
                                     "licences": licences, TRAINING_RUN_KEY: self._training_run()})

    def _training_run(self) -> dict[str, Any]:
        """What ``medrag evaluate`` reads of a run to score an exported adapter on the questions the
        run held out, as it does a run's output folder from its ``finetune_config.yaml`` and
        ``training_info.json``: the data settings and the pairs files' records (user tryout: an
        adapter was scored on the default split, its training questions, in silence)."""
        return {"config": data_settings(self.config), **self._data_files()}

    def _data_files(self) -> dict[str, Any]:
        """``data_file`` and ``eval_data_file``: the pairs files' records (path and sha256), read once
        for ``training_info.json`` and the exported adapter (a large file was hashed twice)."""
        if self._data_file_records is None:
            cfg = self.config
            self._data_file_records = {"data_file": data_file_record(cfg.data),
                                       "eval_data_file": data_file_record(cfg.eval_data) if cfg.eval_data else None}
            if self._other_data:
                # MatryoshkaFinetuner(cfg, dataset=ds): the config names other data, whose held-out split
                # medrag evaluate would have followed (review); it cannot tell ds's training questions
                self._data_file_records = {"data_file": None, "eval_data_file": None,
                                           DATA_GIVEN_KEY: self.dataset.name}
        return self._data_file_records

    # ------------------------------------------------------------------ pieces

    def _dims(self, model) -> list[int]:
        """``dims``, else the sizes the model was trained at (its ``matryoshka.json``: fine-tuning
        medrag's default dropped its 32), else the seed's list capped to its size; with its full size."""
        full = embedding_dim(model)
        meta = self._folder_metadata(model)
        trained = meta.dims if meta is not None and meta.full_dim == full else None
        dims = sorted({int(d) for d in (self.config.dims or trained or default_dims(full))} | {full}, reverse=True)
        too_big = [d for d in dims if d > full]
        if too_big:
            raise ConfigError(f"dims {too_big} exceed the model's size {full}")
        return dims

    def _folder_metadata(self, model) -> MatryoshkaMetadata | None:
        """The ``matryoshka.json`` of the model being fine-tuned: of its ``bundled:`` or adapter folder
        (:func:`medrag.load_model` records it), else of the folder ``model`` names; None without one."""
        folder = getattr(model, "medrag_folder", None) or (
            self.config.model if self.config.model and Path(self.config.model).expanduser().is_dir() else None)
        return MatryoshkaMetadata.load(Path(folder).expanduser()) if folder else None

    def _resume_checkpoint_or_none(self) -> Path | None:
        """The newest complete ``checkpoint-<step>`` folder in the checkpoint folder, if any (one
        a kill interrupted while it was being saved is skipped, with a warning)."""
        from finetune.loop_checkpoints import latest_checkpoint

        found, incomplete = latest_checkpoint(self.checkpoint_dir)
        for path in incomplete:
            logger.warning("%s is incomplete (the run was killed while saving it): %s", path,
                           f"continuing from {found.name}" if found else "no complete checkpoint")
        return found

    def _resume_checkpoint(self) -> Path | None:
        """The checkpoint a ``resume`` run continues from (:func:`finetune.preflight.check_resume`
        refused a resume without one, and checkpoints without resume, before anything loaded)."""
        if not self.config.resume:
            return None
        existing = self._resume_checkpoint_or_none()
        logger.info("resuming from %s", existing)
        return existing

    def _scores_before(self, model, task, dims, state) -> dict[int, dict[str, float]]:
        """Base-model scores; computed once and kept beside the checkpoints so a resumed run reuses them."""
        path = self.checkpoint_dir / _BEFORE_FILENAME
        key = {"task": task.content_hash(), "dims": list(dims)}
        if self.config.resume and path.is_file():
            saved = _read_json(path)
            if isinstance(saved, dict) and saved.get("key") == key:
                return {int(k): v for k, v in saved["scores"].items()}
            # a resumed run on other data or sizes: its base scores are not this task's
            logger.warning("the run being resumed scored its base model on another eval task or other sizes; "
                           "scoring the base model again")
        before: dict[int, dict[str, float]] = {}
        if state.is_main_process:
            logger.info("scoring the base model on %d queries x %d passages", len(task.queries), len(task.corpus))
            model.eval()
            before = score_sizes(model, task, dims, batch_size=self.config.eval_batch_size)
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "scores": {str(k): v for k, v in before.items()}}))
        state.wait_for_everyone()
        if not state.is_main_process:
            before = {int(k): v for k, v in json.loads(path.read_text())["scores"].items()}
        return before

    def _end_checkpoints(self, step: int) -> None:
        """A finished run deletes its checkpoints, or (``keep_checkpoints``) marks them finished, so
        that ``--resume`` refuses them instead of training 0 steps and deleting them."""
        if not self.config.keep_checkpoints:
            self._remove_checkpoints()
        elif self.checkpoint_dir.is_dir():
            (self.checkpoint_dir / FINISHED_FILENAME).write_text(json.dumps({"global_step": step}), encoding="utf-8")

    def _remove_checkpoints(self) -> None:
        """Delete what the run kept in ``checkpoints/`` (its checkpoints and base scores), not files
        of the user's that happen to be there; the folder goes when nothing else is left in it."""
        folder = self.checkpoint_dir
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if entry.is_dir() and entry.name.startswith("checkpoint-"):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name in (_BEFORE_FILENAME, _RUN_KEY_FILENAME, FINISHED_FILENAME, "runs"):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            logger.info("kept %s: it holds files this run did not write", folder)

    def build_loss(self, model, dims: list[int]):
        """MatryoshkaLoss over the configured in-batch-negatives loss."""
        try:
            from sentence_transformers.sentence_transformer import losses
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers import losses

        cfg = self.config
        gather = cfg.gather_across_devices and _world_size() > 1
        if self.loss_name == "auto":
            self.loss_name = resolve_loss(cfg.loss, cpu=_cpu_only(cfg))
        if self.loss_name == "mnrl":
            base = losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather)
        else:
            base = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size,
                                                              gather_across_devices=gather)
        return losses.MatryoshkaLoss(model, base, matryoshka_dims=dims)

    def build_train_dataset(self):
        n_neg = self.config.hard_negatives if self.dataset.has_negatives() else 0
        if self.config.hard_negatives and not n_neg:
            logger.warning("hard_negatives=%d but the data has no negatives: training on pairs",
                           self.config.hard_negatives)
        return self.dataset.to_hf_dataset("train", num_negatives=n_neg, seed=self.config.seed)

    def training_prompts(self, model, columns: list[str]) -> dict[str, str]:
        """Column -> prompt: the query prompt for ``anchor``, the passage prompt for every passage column,
        exactly the strings inference prepends (``medrag.MatryoshkaEmbeddings``)."""
        qprompt, pprompt = prompt_texts(model)
        return {c: (qprompt if c == "anchor" else pprompt) for c in columns if (qprompt if c == "anchor" else pprompt)}

    def _warmup(self, n_train: int) -> float | int:
        """``warmup_steps`` for the Trainer: the ratio (transformers warms up ``ceil(steps * ratio)``
        steps), except when that would warm up every step: a 1-step run (60 pairs at batch 64)
        then trained at learning rate 0 and saved the base weights as "trained". There the
        warmup is ``floor(steps * ratio)`` (0 for one step), as in ``finetune.loop``."""
        cfg = self.config
        if cfg.max_steps > 0:
            steps = cfg.max_steps
        else:
            batches = math.ceil(n_train / (cfg.batch_size * max(_world_size(), 1)))
            steps = max(1, math.ceil(batches / cfg.gradient_accumulation_steps * cfg.epochs))
        if math.ceil(steps * cfg.warmup_ratio) < steps:
            return cfg.warmup_ratio
        return int(steps * cfg.warmup_ratio)

    def _build_trainer(self, model, dims: list[int], precision: str):
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        cfg = self.config
        train_ds = self.build_train_dataset()
        report_to = check_report_to(cfg.report_to)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(self.checkpoint_dir),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate,
            warmup_steps=self._warmup(len(train_ds)),
            lr_scheduler_type=cfg.lr_scheduler,
            weight_decay=cfg.weight_decay,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            tf32=True if (cfg.tf32 and precision != "fp32" and _tf32_supported()) else None,
            use_cpu=_cpu_only(cfg),
            seed=cfg.seed,
            data_seed=cfg.seed,
            batch_sampler=cfg.batch_sampler,
            prompts=self.training_prompts(model, list(train_ds.column_names)),
            save_strategy=("steps" if cfg.save_steps else "epoch") if cfg.checkpoints else "no",
            save_steps=cfg.save_steps or 500,
            save_total_limit=cfg.save_total_limit,
            logging_steps=cfg.logging_steps,
            logging_first_step=True,
            report_to=report_to,
            run_name=cfg.run_name,
            dataloader_drop_last=_world_size() > 1,
            ddp_find_unused_parameters=False,
            disable_tqdm=not sys.stderr.isatty(),  # a bar on a terminal; in logs, one line per logged step
        )
        if cfg.embeddings_frozen and not cfg.lora_rank:
            frozen = _freeze_word_embeddings(model)
            logger.info("word embeddings frozen (freeze_embeddings): %d parameters not trained", frozen)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds,
                                             loss=self.build_loss(model, dims), callbacks=self.callbacks)
        _logs_to_stderr(trainer)
        return trainer

    def _save_and_score(self, model, task, dims: list[int], result: FinetuneResult) -> None:
        """Save the trained model into ``output_dir``, score it on the eval task, write its metadata,
        config and card. An earlier run's metadata is removed first: Ctrl-C while the new model was
        scored left its weights beside the earlier run's ``matryoshka.json`` (other sizes and scores,
        from which ``dimension="auto"`` chose a size this run never trained) and no word (user tryout)."""
        cfg = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for name in (METADATA_FILENAME, INFO_FILENAME):
            (self.output_dir / name).unlink(missing_ok=True)
        # this run's config first: the folder stays a finetune output that a rerun may overwrite (weights
        # alone read as a user's folder, refused: review), and describes the model being saved
        cfg.save(self.output_dir / CONFIG_FILENAME)
        try:
            model.save(str(self.output_dir))
            _readable_weights(self.output_dir)
            _drop_stale_modules(self.output_dir)
            if task is not None and cfg.evaluate_after:
                model.eval()
                result.scores_after = score_sizes(model, task, dims, batch_size=cfg.eval_batch_size)
            self._write_outputs(model, result)
        except KeyboardInterrupt:
            logger.warning("interrupted after training, while the model was saved and scored: %s is incomplete "
                           "(no matryoshka.json: no sizes or scores); %s", self.output_dir,
                           "rerun with --resume to finish it from the last checkpoint" if cfg.checkpoints else
                           "rerun the whole run (checkpoints: false keeps none to resume from)")
            raise

    def _write_outputs(self, model, result: FinetuneResult) -> None:
        cfg = self.config
        out = self.output_dir
        info = {
            "train_seconds": round(result.train_seconds, 2),
            "resumed_from_step": result.resumed_from_step,  # then the times are the last session's
            "train_cpu_seconds": round(result.train_cpu_seconds, 2),
            "torch_threads": _torch_threads(),
            "load_average": _load_average(),
            "samples_per_second": round(result.samples_per_second, 3),
            "global_step": result.global_step,
            "top_block_steps": result.top_block_steps,
            "top_block_seconds": round(result.top_block_seconds, 2),
            "top_block_final_loss": getattr(self, "top_block_final_loss", None),
            "final_loss": result.losses[-1] if result.losses else None,
            "precision": result.precision,
            "loss": self.loss_name,
            "peak_gpu_memory_bytes": result.peak_gpu_memory_bytes,
            "world_size": _world_size(),
            "train_pairs": len(self.dataset.train),
            "eval_queries": len({p.question for p in self.dataset.eval}),
            "eval_corpus": len({p.answer for p in self.dataset.eval}),
            "dataset": self.dataset.name,
            **self._data_files(),  # medrag evaluate knows the file from any folder
            "versions": _versions(),
        }
        (out / INFO_FILENAME).write_text(json.dumps(info, indent=2), encoding="utf-8")  # the config: _save_and_score
        meta = MatryoshkaMetadata(
            full_dim=embedding_dim(model), dims=result.dims, scores=result.scores_after,
            scores_before=result.scores_before, base_model=_recorded_spec(cfg.model or getattr(model, "medrag_spec", None)
                                                                          or "bundled:multilingual-e5-small"),
            extra={"dataset": self.dataset.name, "training": info, "metrics": list(TRAINING_METRICS),
                   "recipe": {**({"loss_used": self.loss_name} if cfg.engine != "loop" else {}),
                              **recipe_settings(cfg)}},
        )
        meta.save(out)
        write_model_card(out, cfg, result, self.dataset, info)


def _resumed_step(resume_from: Path | None) -> int:
    """The step of the checkpoint a resumed run continued from; 0 for a run from the start."""
    from finetune.loop_checkpoints import checkpoint_step

    return (checkpoint_step(resume_from) or 0) if resume_from is not None else 0


#: Fewer training pairs than this get a warning (:func:`check_learnable`).
FEW_PAIRS = 100


def check_learnable(pairs: Sequence[QAPair]) -> None:
    """Raise :class:`DataError` when ``pairs`` hold fewer than two distinct answers: the in-batch
    contrastive loss (each question against the other pairs' answers) is then 0 at every step, and a
    run "succeeded" with the base model's weights (one shared answer, or ``max_train_pairs: 1``).
    Warn below :data:`FEW_PAIRS` pairs."""
    if len({p.answer for p in pairs}) < 2:
        raise DataError(f"the training pairs hold {len({p.answer for p in pairs})} distinct answer(s): the in-batch "
                        "contrastive loss needs at least two (each question is scored against the other pairs' "
                        "answers), so nothing would be learnt; add pairs or raise max_train_pairs")
    if len(pairs) < FEW_PAIRS:  # 3 pairs trained and scored 1.0 on one held-out question (user tryout)
        logger.warning("only %d training pairs: a model fine-tuned on so few learns them by heart and is often worse "
                       "than before on other questions; use a few hundred pairs or more, and compare it with its base "
                       "on questions it did not train on (medrag evaluate --model BASE --model OUTPUT --data EVAL --split all, "
                       "EVAL a file of such questions)",
                       len(pairs))


def _drop_stale_modules(folder: Path) -> None:
    """Remove the module folders (``3_Dense/``...) of an earlier run in ``folder`` that the model just
    saved there does not list in its ``modules.json``: a run without a rotation layer over an output
    with one left the old layer's folder beside the new model."""
    import re
    import shutil

    try:
        listed = {m["path"] for m in json.loads((folder / "modules.json").read_text(encoding="utf-8")) if m.get("path")}
    except (OSError, ValueError, TypeError, KeyError):
        return
    for path in folder.iterdir():
        # a layer folder holds that layer's config (a user's 2024_reports/ was deleted for its name alone)
        if (path.is_dir() and re.fullmatch(r"\d+_[A-Za-z]\w*", path.name) and path.name not in listed
                and any((path / name).is_file() for name in ("config.json", "config_sentence_transformers.json"))):
            shutil.rmtree(path)
            logger.info("removed %s: a layer of the earlier model in %s", path.name, folder)


def _readable_weights(folder: Path) -> None:
    """safetensors writes weight files 0600 whatever the umask: the model's other files were readable
    by the serving user of a Docker image, its weights not. Give the run's weight files (not its
    checkpoints) the umask's modes, as every other file has."""
    from medrag.file_modes import apply_umask

    for path in Path(folder).rglob("*.safetensors"):
        if CHECKPOINT_DIR not in path.relative_to(folder).parts:
            apply_umask(path)


#: The settings that say which questions a run trained on (``medrag evaluate`` reads them).


def _recorded_spec(spec: Any) -> str:
    """A model spec as a model folder records it: a local folder as its absolute path (a relative one
    named the base model only from the folder the run started in), anything else as given."""
    spec = str(spec)
    path = Path(spec).expanduser()
    return str(path.resolve()) if not spec.startswith("bundled:") and path.is_dir() else spec


def train(config: FinetuneConfig, **kwargs: Any) -> FinetuneResult:
    """Shorthand for ``MatryoshkaFinetuner(config, **kwargs).run()``."""
    return MatryoshkaFinetuner(config, **kwargs).run()


def resolve_loss(requested: str, cpu: bool | None) -> str:
    """The in-batch-negatives loss to train with: ``auto`` -> ``mnrl`` on CPU, ``cached_mnrl`` on GPU.

    GradCache (``cached_mnrl``) gives the same loss and gradients as plain MNRL on the same batch
    (up to floating-point rounding) at the memory of a mini-batch, for one extra forward pass: worth
    it on GPU, where memory limits the batch; on CPU plain MNRL is the faster of two identical losses.
    ``cpu=None``: not known yet, ``auto`` is returned unresolved.
    """
    if requested != "auto" or cpu is None:
        return requested
    return "mnrl" if cpu else "cached_mnrl"


def resolve_precision(requested: str, cpu: bool) -> str:
    """The precision to train in: bf16 only where the GPU supports it, fp32 on CPU."""
    import torch

    if cpu or not torch.cuda.is_available():
        if requested in ("bf16", "fp16"):
            logger.warning("precision %s requested but training runs on CPU: using fp32", requested)
        return "fp32"
    bf16_ok = torch.cuda.is_bf16_supported()
    if requested == "auto":
        return "bf16" if bf16_ok else "fp16"
    if requested == "bf16" and not bf16_ok:
        raise ConfigError("this GPU does not support bf16; use precision fp16 or fp32")
    return requested


# --------------------------------------------------------------------------- helpers


class _GracefulStop:
    """First Ctrl-C (or SIGTERM: Slurm and Kubernetes preemption): finish the current step, save a
    checkpoint, stop. A second one: stop now."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.requested = False
        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if outer.requested:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        self.callback = _Callback()

    def installed(self):
        outer = self

        class _Ctx:
            def __enter__(self):
                self.previous = {}
                if threading.current_thread() is threading.main_thread():
                    self.previous = {sig: signal.signal(sig, outer._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
                return outer

            def __exit__(self, *exc):
                for sig, handler in self.previous.items():
                    signal.signal(sig, handler)
                return False

        return _Ctx()

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("%s: saving a checkpoint after this step (again: abort without saving)",
                       "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)


def _log_last_step_callback():
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        """Log the loss at the last step too (the Trainer's mean over the steps since its previous
        log): with ``logging_steps`` 10 a run of 4 steps logged step 1 alone, and
        ``training_info.json``'s ``final_loss`` was step 1's."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def _cpu_only(cfg: FinetuneConfig) -> bool:
    import torch

    return (cfg.device or "").startswith("cpu") or not torch.cuda.is_available()


def _tf32_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def _logs_to_stderr(trainer) -> None:
    """The Trainer prints its ``{'loss': ...}`` lines on stdout (``ProgressCallback`` through tqdm,
    ``PrinterCallback`` with ``print``), mixed into the before/after table that ``medrag finetune``
    prints there (``> results.md`` captured them): send them to stderr, beside the bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    def shown(logs: dict | None) -> str:
        return str({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (logs or {}).items()
                    if k != "total_flos"})

    class _Progress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None:
                self.training_bar.write(shown(logs), file=sys.stderr)

    class _Printer(PrinterCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_local_process_zero:
                print(shown(logs), file=sys.stderr, flush=True)

    for old, new in ((ProgressCallback, _Progress), (PrinterCallback, _Printer)):
        if trainer.pop_callback(old) is not None:
            trainer.add_callback(new)


def _check_finite(model, steps: int) -> None:
    """Refuse to save a model whose weights training made NaN or infinite (a learning rate far too
    high, a loss that overflowed in fp16): it would load and answer NaN vectors."""
    import torch

    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ConfigError(f"training diverged: after {steps} step(s) {len(bad)} weight tensor(s) are NaN or "
                          f"infinite (e.g. {bad[0]}); nothing was saved. Lower the learning rate, or use bf16/fp32 "
                          "instead of fp16")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _freeze_unused_pooler(model) -> None:
    """Freeze the transformer's ``pooler`` (BERT-style models): sentence-transformers pools the token
    embeddings itself, so those weights never get a gradient. Alone that changes nothing (the optimizer
    skips them); under DDP (torchrun, ``ddp_find_unused_parameters=False``) a parameter without a
    gradient stops the run at the second step."""
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and ".pooler." in f".{n}"]
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    if frozen:
        logger.info("froze %d unused pooler parameter(s)", len(frozen))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages at the end of training (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "sentence-transformers", "transformers", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


__all__ = ["MatryoshkaFinetuner", "FinetuneResult", "train", "resolve_loss", "resolve_precision"]


def _freeze_word_embeddings(model: Any) -> int:
    """Stop training the word embeddings of ``model`` (the Trainer's optimizer skips parameters that
    need no gradient, so AdamW's weight decay no longer moves the rows of tokens never seen, and its
    state shrinks by two copies of them); the number of parameters frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if "word_embeddings" in name and param.requires_grad:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
