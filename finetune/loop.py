"""The plain PyTorch training loop (``engine: loop``): Matryoshka contrastive loss + self-distillation
from the frozen base model, LoRA or full fine-tuning, an optional PCA rotation layer.

Why a loop of its own instead of the sentence-transformers Trainer: on 2 CPU cores every token counts.
The loop tokenizes queries and passages with separate caps (``query_max_length`` 64,
``passage_max_length`` 256: one ``max_seq_length`` either truncates passages or pads questions), adds
the distillation term whose teacher vectors are computed once and cached on disk (a sweep of several
candidates embeds the training texts once), and stops backpropagation at the lowest trainable layer.

One step, for a batch of ``(question, passage)`` pairs (no text twice in a batch, as the
``no_duplicates`` sampler):

1. student vectors of the questions and passages (with the ``query: ``/``passage: `` prompts);
2. ``MatryoshkaLoss(MNRL)``: in-batch InfoNCE at every size (:func:`finetune.losses.matryoshka_contrastive_loss`);
3. ``distill_weight`` x the KL between the teacher's full-size similarity rows and the student's at
   every size, on the query->passage matrix and the passage->passage one
   (:func:`finetune.losses.similarity_distillation_loss`);
4. with ``distill_batch_size`` > 0, the same passage->passage distillation on a batch of unlabelled
   French medical text (one more forward/backward).

With ``freeze_encoder`` only the final linear layer (initialised as the PCA rotation) trains, on the
cached vectors of the frozen encoder: no encoder pass at all during training, so every pair of every
source and thousands of steps fit in seconds -- the "Matryoshka-Adaptor" of Yoon et al. (2024), a
linear map learned so that truncated vectors keep the full-size similarities.

Example::

    from finetune.loop import TrainingLoop
    loop = TrainingLoop(model, cfg, dims=[384, 256, 128, 64, 32], pairs=pairs, unlabelled=texts)
    result = loop.run()      # trains ``model`` in place
    result.samples_per_second
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import ConfigError, DataError
from medrag.qa.pairs import QAPair

from finetune.config import FinetuneConfig
from finetune.scoring import prompt_texts

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from finetune.loop_checkpoints import LoopCheckpoints

logger = logging.getLogger(__name__)


@dataclass
class LoopResult:
    """What :meth:`TrainingLoop.run` measured."""

    steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    losses: list[float] = field(default_factory=list)
    teacher_seconds: float = 0.0
    trainable_parameters: int = 0
    pairs: int = 0


def no_duplicate_batches(pairs: Sequence[QAPair], batch_size: int, rng: random.Random,
                         order: Sequence[int] | None = None) -> list[list[int]]:
    """Shuffled batches of pair indices in which no question and no passage occurs twice (a repeated
    passage would be a false in-batch negative). A pair that would repeat a text waits for a later batch;
    a last batch of one pair is dropped. ``order`` (a permutation of the pair indices, e.g.
    :func:`topic_order`) replaces the shuffle: batches are filled in that order.

    >>> ps = [QAPair("q1", "a"), QAPair("q2", "a"), QAPair("q3", "b")]
    >>> [len(b) for b in no_duplicate_batches(ps, 2, random.Random(0))]  # the left-over pair has no negative
    [2]
    """
    if order is None:
        order = list(range(len(pairs)))
        rng.shuffle(order)
    elif sorted(order) != list(range(len(pairs))):
        raise DataError(f"order must be a permutation of the {len(pairs)} pair indices")
    batches: list[list[int]] = []
    pending = list(order)
    while pending:
        batch: list[int] = []
        seen: set[str] = set()
        rest: list[int] = []
        for i in pending:
            p = pairs[i]
            if len(batch) < batch_size and p.question not in seen and p.answer not in seen:
                batch.append(i)
                seen.update((p.question, p.answer))
            else:
                rest.append(i)
        batches.append(batch)
        pending = rest
    return [b for b in batches if len(b) >= 2 or len(pairs) == 1]  # a lone pair has no in-batch negative


def warmup_linear_schedule(optimizer: "torch.optim.Optimizer", total: int,
                           warmup_ratio: float) -> "torch.optim.lr_scheduler.LambdaLR":
    """The loop's learning-rate schedule: linear warm-up over ``warmup_ratio`` of the ``total`` steps,
    then linear decay to 0 (the schedule of sentence-transformers' and transformers' trainers)."""
    import torch

    warmup = int(round(warmup_ratio * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / max(1, warmup) if step < warmup
        else max(0.0, (total - step) / max(1, total - warmup)))


def topic_clusters(vectors: np.ndarray, n_clusters: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Spherical k-means labels of unit ``vectors`` (k-means++ seeding, ``iterations`` Lloyd steps).

    >>> v = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    >>> labels = topic_clusters(v, 2)
    >>> bool(labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2])
    True
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"topic clusters need a (n >= 1, d) matrix of vectors, got shape {x.shape}")
    n_clusters = max(1, min(n_clusters, len(x)))
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    dist = np.full(len(x), np.inf, dtype=np.float64)
    for _ in range(1, n_clusters):  # k-means++: far points are likelier seeds
        dist = np.minimum(dist, np.maximum(0.0, 1.0 - x @ centres[-1]))
        p = dist / dist.sum() if dist.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
    c = np.stack(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        labels = (x @ c.T).argmax(axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, labels, x)  # one pass over the vectors, not one mask per cluster
        norms = np.linalg.norm(sums, axis=1)
        filled = np.bincount(labels, minlength=n_clusters) > 0  # an empty cluster keeps its centre
        c[filled] = sums[filled] / np.maximum(norms[filled], 1e-12)[:, None]
    return labels


def document_labels(pairs: Sequence[QAPair]) -> np.ndarray:
    """One label per source document (``doc_id`` with its ``source``; a pair without one is its own
    document): :func:`topic_order` of these labels fills batches document by document, so a
    document's pairs (one entity's aspects: its symptoms, causes, treatments) are each other's
    in-batch negatives, the distinction a question about one section of a drug leaflet needs.

    >>> from medrag.qa.french_text import SourcedPair
    >>> ps = [SourcedPair("q1", "a1", doc_id="d1"), SourcedPair("q2", "a2", doc_id="d2"),
    ...       SourcedPair("q3", "a3", doc_id="d1"), QAPair("q4", "a4")]
    >>> document_labels(ps).tolist()
    [0, 1, 0, 2]
    """
    ids: dict[object, int] = {}
    labels = [ids.setdefault((getattr(p, "source", ""), p.doc_id) if getattr(p, "doc_id", "") else ("pair", i), len(ids))
              for i, p in enumerate(pairs)]
    return np.asarray(labels, dtype=np.int64)


def topic_order(labels: np.ndarray, rng: random.Random) -> list[int]:
    """A permutation of the pair indices that keeps each cluster together: clusters in a random order,
    members shuffled within. Batches filled in this order hold a few topics each, so their in-batch
    negatives are similar questions (topic-aware sampling, TAS: Hofstätter et al., SIGIR 2021).

    >>> topic_order(np.array([0, 1, 0, 1]), random.Random(0)) in ([0, 2, 1, 3], [2, 0, 1, 3], [0, 2, 3, 1],
    ...     [2, 0, 3, 1], [1, 3, 0, 2], [3, 1, 0, 2], [1, 3, 2, 0], [3, 1, 2, 0])
    True
    """
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(labels.tolist()):
        groups.setdefault(int(k), []).append(i)
    keys = list(groups)
    rng.shuffle(keys)
    order: list[int] = []
    for k in keys:
        members = groups[k]
        rng.shuffle(members)
        order += members
    return order


class TrainingLoop:
    """Trains ``model`` in place on ``pairs`` (and ``unlabelled`` texts for distillation).

    Args:
        model: the student, as loaded (LoRA and the rotation are added here, per ``config``).
        config: the run's configuration (``lora_*``, ``distill_*``, ``rotation``, lengths, optimisation).
        dims: the Matryoshka sizes, descending, full size first.
        pairs: training pairs.
        unlabelled: texts for passage->passage distillation (may be empty).
    """

    def __init__(self, model: "SentenceTransformer", config: FinetuneConfig, dims: Sequence[int],
                 pairs: Sequence[QAPair], unlabelled: Sequence[str] = ()) -> None:
        if not pairs:
            raise DataError("no training pairs: check data, mixture and max_train_pairs")
        self.model = model
        self.config = config
        self.dims = list(dims)
        self.pairs = list(pairs)
        self.unlabelled = list(dict.fromkeys(t for t in unlabelled if t and t.strip()))
        self.qprompt, self.pprompt = prompt_texts(model)
        # query_max_length / passage_max_length never beyond what the model takes (the Trainer caps the
        # same way): 256 tokens on a 64-token model crashed mid-run with a RuntimeError from transformers
        self.model_max_length = getattr(model, "max_seq_length", None)
        self.device = next(model.parameters()).device
        self._stop_requested: Callable[[], bool] = lambda: False
        #: the frozen base's unit vectors of the questions and passages, when the caller has them
        #: (:class:`finetune.top_block.TopBlockPhase`); otherwise encoded here, cached on disk
        self.teacher: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ main

    def run(self, checkpoints: "LoopCheckpoints | None" = None, resume_from: Path | None = None,
            stop_requested: Callable[[], bool] | None = None,
            on_step_end: Sequence[Callable[[int], None]] = ()) -> LoopResult:
        """Train; returns what was measured.

        Args:
            checkpoints: where to save checkpoints (every ``save_steps`` steps, else at each epoch end,
                and when a stop is requested); None: no checkpoint.
            resume_from: a ``checkpoint-<step>`` folder of this run to continue from.
            stop_requested: polled after each step; when it returns True the loop saves a checkpoint
                (if ``checkpoints``) and raises :class:`KeyboardInterrupt` (Ctrl-C, SIGTERM).
            on_step_end: callables given the number of steps completed, after each step.
        """
        import torch

        cfg = self.config
        self._stop_requested = stop_requested or (lambda: False)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        result = LoopResult(pairs=len(self.pairs))
        need_teacher = (cfg.distill_weight > 0 or cfg.rotation != "none" or cfg.freeze_encoder
                        or cfg.batch_sampling == "topic")
        teacher_q = teacher_p = teacher_u = None
        questions = [p.question for p in self.pairs]
        passages = [p.answer for p in self.pairs]
        if need_teacher:
            t0 = time.perf_counter()
            from medrag.models import legacy_model_fingerprints, model_fingerprint

            fingerprint = (model_fingerprint(self.model), *legacy_model_fingerprints(self.model))
            if self.teacher is not None:
                teacher_q, teacher_p = self.teacher
            else:
                teacher_q = self.teacher_vectors(questions, self.qprompt, cfg.query_max_length, fingerprint)
                teacher_p = self.teacher_vectors(passages, self.pprompt, cfg.passage_max_length, fingerprint)
            if self.unlabelled and (cfg.distill_batch_size or cfg.freeze_encoder):
                teacher_u = self.teacher_vectors(self.unlabelled, self.pprompt, cfg.passage_max_length, fingerprint)
            result.teacher_seconds = time.perf_counter() - t0
        if cfg.rotation != "none":
            from finetune.rotation import add_rotation, fit_pca_rotation

            fit_on = np.concatenate([v for v in (teacher_p, teacher_u) if v is not None])
            weight, bias = fit_pca_rotation(fit_on, center=cfg.rotation == "pca_centered")
            add_rotation(self.model, weight, bias, trainable=cfg.rotation_trainable or cfg.freeze_encoder)
            logger.info("added a %s rotation fitted on %d passage vectors", cfg.rotation, len(fit_on))
        result.trainable_parameters = self.prepare_parameters()

        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)
        epochs = max(1, math.ceil(cfg.epochs))
        labels = None
        if cfg.batch_sampling == "topic":
            labels = topic_clusters(teacher_q, max(1, len(self.pairs) // cfg.topic_cluster_size), seed=cfg.seed)
            logger.info("topic sampling: %d question clusters", len(set(labels.tolist())))
        elif cfg.batch_sampling == "document":
            labels = document_labels(self.pairs)
            grouped = int((np.bincount(labels) > 1).sum())
            logger.info("document sampling: %d documents, %d with several pairs", len(set(labels.tolist())), grouped)
            if not grouped:
                logger.warning("batch_sampling: document, but no source document holds several training pairs "
                               "(pairs of frenchmedmcqa, sample or a pairs file carry none): the batches are a "
                               "plain shuffle; draw whole documents with mixture entries NAME:N:documents")
        plan: list[list[int]] = []
        epoch_ends: set[int] = set()
        for _ in range(epochs):
            order = topic_order(labels, rng) if labels is not None else None
            plan += no_duplicate_batches(self.pairs, cfg.batch_size, rng, order=order)
            epoch_ends.add(len(plan))
        if cfg.epochs < epochs:  # fractional epochs: cut the plan
            plan = plan[: max(1, round(len(plan) * cfg.epochs / epochs))]
        if cfg.max_steps > 0:
            plan = plan[: cfg.max_steps]
        total = len(plan)
        scheduler = warmup_linear_schedule(optimizer, total, cfg.warmup_ratio)
        unlabelled_order = list(range(len(self.unlabelled)))
        rng.shuffle(unlabelled_order)
        u_pos = 0
        seen = 0
        first = 0
        if resume_from is not None:
            if checkpoints is None:
                raise ConfigError("resume_from needs checkpoints (the run key checks the checkpoint is this run's)")
            state = checkpoints.load(resume_from, self.model, optimizer, scheduler)
            first, u_pos = state["step"], state["u_pos"]
            result.losses = list(state["losses"])
            if not 0 < first <= total:
                raise ConfigError(f"the checkpoint {resume_from} is at step {first} of a {total}-step plan; "
                                  "delete it, or start again without --resume")

        def save(done: int) -> None:
            checkpoints.save(done, self.model, optimizer, scheduler,
                             {"u_pos": u_pos, "losses": list(result.losses), "total": total})

        from tqdm.auto import tqdm

        self.model.train()
        start = time.perf_counter()
        bar = tqdm(desc="training", unit="step", mininterval=5, initial=first, total=total)
        head = None
        if cfg.freeze_encoder:  # the encoder's output is the cached teacher vectors: only the head runs
            from finetune.rotation import rotation_layer

            head = rotation_layer(self.model).linear
            teacher = {k: torch.from_numpy(v).to(self.device) for k, v in
                       (("q", teacher_q), ("p", teacher_p), ("u", teacher_u)) if v is not None}
        u_batch = cfg.distill_batch_size or cfg.batch_size
        for step in range(first, total):
            batch = plan[step]
            if head is not None:
                q_vec, p_vec = head(teacher["q"][batch]), head(teacher["p"][batch])
            else:
                q_vec = self.forward([questions[i] for i in batch], self.qprompt, cfg.query_max_length)
                p_vec = self.forward([passages[i] for i in batch], self.pprompt, cfg.passage_max_length)
            loss = cfg.contrastive_weight * self.contrastive(q_vec, p_vec)
            if cfg.distill_weight > 0:
                tq = torch.from_numpy(teacher_q[batch]).to(self.device)
                tp = torch.from_numpy(teacher_p[batch]).to(self.device)
                loss = loss + cfg.distill_weight * (self.distill(q_vec, p_vec, tq @ tp.T)
                                                    + self.distill(p_vec, p_vec, tp @ tp.T, mask_diagonal=True))
                if teacher_u is not None:
                    take = [unlabelled_order[(u_pos + k) % len(unlabelled_order)] for k in range(u_batch)]
                    u_pos += u_batch
                    if head is not None:
                        u_vec = head(teacher["u"][take])
                    else:
                        u_vec = self.forward([self.unlabelled[i] for i in take], self.pprompt, cfg.passage_max_length)
                    tu = torch.from_numpy(teacher_u[take]).to(self.device)
                    loss = loss + cfg.distill_weight * self.distill(u_vec, u_vec, tu @ tu.T, mask_diagonal=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            seen += len(batch)
            result.losses.append(float(loss.detach()))
            bar.update(1)
            if step % max(1, cfg.logging_steps) == 0 or step + 1 == total:  # the last step too: the bar ended on
                # an older loss than training_info.json's final_loss (user tryout)
                bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
                logger.info("step %d/%d loss %.4f", step + 1, total, result.losses[-1])
            done = step + 1
            for callback in on_step_end:
                callback(done)
            stopping = stop_requested is not None and stop_requested()
            if checkpoints is not None and (stopping or (done < total or cfg.keep_checkpoints) and (
                    done % cfg.save_steps == 0 if cfg.save_steps else done in epoch_ends)):
                save(done)
            if stopping:
                bar.close()
                if checkpoints is None:
                    logger.warning("stopped at step %d/%d; checkpoints are off (checkpoints: false): nothing "
                                   "was saved", done, total)
                raise KeyboardInterrupt
        bar.close()
        result.train_seconds = time.perf_counter() - start
        result.steps = total
        # pairs of this session (a resumed run's earlier steps are not in train_seconds)
        result.samples_per_second = seen / result.train_seconds if result.train_seconds > 0 else 0.0
        self.model.eval()
        return result

    # ------------------------------------------------------------------ pieces

    def prepare_parameters(self) -> int:
        """LoRA adapters or full fine-tuning (word embeddings frozen if asked); the unused BERT
        pooler is always frozen. Returns the number of trainable parameters."""
        cfg = self.config
        if cfg.freeze_encoder:
            for name, p in self.model.named_parameters():
                p.requires_grad_(False)
            from finetune.rotation import rotation_layer

            for p in rotation_layer(self.model).parameters():
                p.requires_grad_(True)
        elif cfg.lora_rank > 0:
            from finetune.lora import add_lora
            from finetune.rotation import freeze_own_layers

            add_lora(self.model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, layers=cfg.lora_layers)
            freeze_own_layers(self.model)  # the adapter ships the deltas and this run's layer, over the base as it is
        else:
            for name, p in self.model.named_parameters():
                frozen = ".pooler." in f".{name}" or (cfg.embeddings_frozen and "word_embeddings" in name)
                if p.requires_grad and frozen:
                    p.requires_grad_(False)
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def tokenize(self, texts: Sequence[str], prompt: str, max_length: int) -> dict[str, "torch.Tensor"]:
        if self.model_max_length:
            max_length = min(max_length, self.model_max_length)
        features = self.model.tokenizer([prompt + t for t in texts], truncation=True, max_length=max_length,
                                        padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in features.items()}

    def forward(self, texts: Sequence[str], prompt: str, max_length: int) -> "torch.Tensor":
        """Student vectors (full size) of ``texts``; the gradient flows."""
        return self.model(self.tokenize(texts, prompt, max_length))["sentence_embedding"]

    def contrastive(self, q_vec: "torch.Tensor", p_vec: "torch.Tensor") -> "torch.Tensor":
        from finetune.losses import matryoshka_contrastive_loss

        return matryoshka_contrastive_loss(q_vec, p_vec, self.dims, self.config.matryoshka_weights)

    def distill(self, a: "torch.Tensor", b: "torch.Tensor", teacher_sim: "torch.Tensor",
                mask_diagonal: bool = False) -> "torch.Tensor":
        from finetune.losses import similarity_distillation_loss

        return similarity_distillation_loss(a, b, teacher_sim, self.dims, self.config.matryoshka_weights,
                                            self.config.distill_temperature, mask_diagonal=mask_diagonal)

    def teacher_vectors(self, texts: Sequence[str], prompt: str, max_length: int, fingerprint: str | tuple[str, ...],
                        batch_size: int = 32) -> np.ndarray:
        """Unit float32 vectors of the frozen model (call before any training), cached on disk per text
        (:class:`TeacherCache`): candidates of a sweep that share texts encode them once. ``fingerprint``
        is the model's, or a tuple of it and its legacy ones (whose cache files are read too)."""
        import torch

        current, *legacy = (fingerprint,) if isinstance(fingerprint, str) else fingerprint
        cache = TeacherCache(teacher_cache_dir(self.config), current, prompt, max_length, legacy=legacy)
        vectors, missing = cache.lookup(texts)
        if missing:
            from tqdm.auto import tqdm

            was_training = self.model.training
            self.model.eval()
            todo = sorted(missing, key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
            try:
                with torch.no_grad():
                    for start in tqdm(range(0, len(todo), batch_size), desc="teacher vectors", unit="batch",
                                      mininterval=5):
                        idx = todo[start:start + batch_size]
                        vec = self.model(self.tokenize([texts[i] for i in idx], prompt, max_length))["sentence_embedding"]
                        vec = torch.nn.functional.normalize(vec.float(), dim=-1).cpu().numpy()
                        for i, v in zip(idx, vec):
                            vectors[i] = v
                        if start // batch_size % 20 == 19:  # keep progress if the run is stopped
                            cache.store({texts[i]: vectors[i] for i in todo[:start + batch_size]})
                        if self._stop_requested():  # Ctrl-C / SIGTERM: what is encoded is kept (below)
                            logger.warning("stopped while encoding the teacher vectors; the %d encoded are cached",
                                           start + len(idx))
                            raise KeyboardInterrupt
            finally:
                self.model.train(was_training)
                cache.store({texts[i]: vectors[i] for i in todo if vectors[i] is not None})
        return np.stack(vectors).astype(np.float32)


class TeacherCache:
    """Teacher vectors on disk, one row per distinct text, for one (model fingerprint, prompt, length cap).

    A ``.npz`` file holds the texts' sha256 digests and their vectors; lookups return the cached rows
    and the indices still to encode; :meth:`store` merges new rows in and rewrites the file atomically.
    """

    def __init__(self, folder: Path, fingerprint: str, prompt: str, max_length: int,
                 legacy: Sequence[str] = ()) -> None:
        self.path = self._path(folder, fingerprint, prompt, max_length)
        # files written under the model's legacy fingerprints (earlier medrag versions): read, never written
        self._legacy = [self._path(folder, f, prompt, max_length) for f in legacy if f != fingerprint]
        self._rows: dict[str, np.ndarray] | None = None

    @staticmethod
    def _path(folder: Path, fingerprint: str, prompt: str, max_length: int) -> Path:
        key = hashlib.sha256(f"{fingerprint}|{prompt}|{max_length}".encode()).hexdigest()[:16]
        return Path(folder) / f"{fingerprint}-{key}.npz"

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            source = next((p for p in [self.path, *self._legacy] if p.is_file()), None)
            if source is not None:
                try:
                    with np.load(source, allow_pickle=False) as data:
                        self._rows = dict(zip(data["keys"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError) as exc:
                    logger.warning("teacher cache %s is unreadable (%s); recomputing it", source, exc)
        return self._rows

    def lookup(self, texts: Sequence[str]) -> tuple[list, list[int]]:
        rows = self._load()
        vectors = [rows.get(self.digest(t)) for t in texts]
        return vectors, [i for i, v in enumerate(vectors) if v is None]

    def store(self, new: dict[str, np.ndarray]) -> None:
        rows = self._load()
        rows.update({self.digest(t): np.asarray(v, dtype=np.float32) for t, v in new.items()})
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{random.getrandbits(32):08x}.tmp.npz")
        np.savez(tmp, keys=np.array(list(rows)), vectors=np.stack(list(rows.values())))
        tmp.replace(self.path)


def teacher_cache_dir(cfg: FinetuneConfig) -> Path:
    """Where teacher vectors are cached: ``cfg.teacher_cache``, else ``<medrag cache>/teacher``."""
    if cfg.teacher_cache:
        return Path(cfg.teacher_cache).expanduser()
    from medrag.bundled import cache_dir

    return cache_dir() / "teacher"


__all__ = ["TrainingLoop", "LoopResult", "TeacherCache", "no_duplicate_batches", "teacher_cache_dir"]
