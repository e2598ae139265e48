"""Checkpoints of the plain training loop (``engine: loop``): stop with Ctrl-C or SIGTERM, ``--resume``.

The Trainer engine has its own checkpoints; the loop writes ``checkpoint-<step>/loop_state.pt`` in the
same ``OUTPUT_DIR/checkpoints`` folder, so ``--resume``, ``save_steps``, ``save_total_limit`` and
``keep_checkpoints`` mean the same for both engines. A checkpoint holds what the next step needs and
cannot be recomputed: the trainable parameters (LoRA adapters, the trainable final layer, or every
unfrozen weight), the optimizer and schedule state, the step reached, the losses so far, the position
in the unlabelled texts and the torch random state (LoRA dropout). The batch plan, the teacher vectors
and a frozen rotation are deterministic functions of the config and the data, and are rebuilt.

A checkpoint records the *run key*: a digest of every setting that changes training and of the
training texts. Resuming under another key (another learning rate, more epochs, other data) is refused
instead of silently mixing two runs.

Example::

    from finetune.loop_checkpoints import LoopCheckpoints
    ckpt = LoopCheckpoints(Path("out/checkpoints"), run_key="...", keep=2)
    ckpt.save(step, model, optimizer, scheduler, {"losses": losses})
    state = ckpt.load(ckpt.folder / "checkpoint-3", model, optimizer, scheduler)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from finetune.config import FinetuneConfig
    from medrag.qa.pairs import QAPair

logger = logging.getLogger(__name__)

STATE_FILENAME = "loop_state.pt"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

#: settings that do not change what the loop trains (where it writes, what it logs and scores, how it
#: checkpoints): a resumed run may change them; every other setting is part of the run key
RUN_SETTINGS = frozenset({
    "output_dir", "checkpoints", "save_steps", "save_total_limit", "keep_checkpoints", "logging_steps",
    "resume", "report_to", "run_name", "evaluate_before", "evaluate_after", "eval_batch_size",
    "export_adapter", "export_scores", "adapter_name", "suite_max_passages", "teacher_cache",
    "torch_threads", "device", "shared_data", "data", "eval_data", "split_seed",  # the training texts are in the key
    # the last-block phase runs after the loop, from its final layer: not what a loop checkpoint holds
    "top_block_epochs", "top_block_learning_rate", "top_block_head_learning_rate", "top_block_lora_rank",
    "top_block_lora_alpha",
})


def run_key(config: "FinetuneConfig", dims: Sequence[int], pairs: Sequence["QAPair"],
            unlabelled: Sequence[str]) -> str:
    """A digest of what the loop trains: the training settings, the sizes and the training texts.

    >>> from finetune.config import FinetuneConfig
    >>> from medrag.qa.pairs import QAPair
    >>> a = run_key(FinetuneConfig(engine="loop"), [8, 4], [QAPair("q", "p")], [])
    >>> a == run_key(FinetuneConfig(engine="loop", output_dir="elsewhere"), [8, 4], [QAPair("q", "p")], [])
    True
    >>> a == run_key(FinetuneConfig(engine="loop", learning_rate=1e-3), [8, 4], [QAPair("q", "p")], [])
    False
    """
    h = hashlib.sha256(json.dumps(run_settings(config, dims), sort_keys=True, default=str).encode())
    for p in pairs:
        h.update(b"\x00pair\x00" + p.question.encode("utf-8", "surrogatepass") + b"\x00"
                 + p.answer.encode("utf-8", "surrogatepass"))
        for negative in p.negatives:  # a resume with rewritten hard negatives was accepted
            h.update(b"\x00neg\x00" + negative.encode("utf-8", "surrogatepass"))
    for t in unlabelled:
        h.update(b"\x00text\x00" + t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def run_settings(config: "FinetuneConfig", dims: Sequence[int]) -> dict[str, Any]:
    """The settings :func:`run_key` digests (all but :data:`RUN_SETTINGS`, and the sizes): saved in
    each checkpoint, so a refused resume names the settings that differ."""
    settings = {k: v for k, v in sorted(config.to_dict().items()) if k not in RUN_SETTINGS}
    if "freeze_embeddings" in settings:
        # the key of the runs written before its default was per engine (True for both, which the Trainer
        # ignored), so they resume; an explicit True under the Trainer now freezes: another run
        value = settings["freeze_embeddings"]
        settings["freeze_embeddings"] = (True if value is None else
                                         "frozen by the Trainer" if value and config.engine != "loop" else value)
    return {"settings": settings, "dims": list(dims)}


def _differences(saved: Any, current: dict[str, Any]) -> list[str]:
    """``name: saved -> now`` for each setting that differs (empty: only the data differs); the settings
    the saved run did not record are :func:`_added_settings`'s."""
    if not isinstance(saved, str):
        return []
    try:
        before = json.loads(saved)
    except ValueError:
        return []
    now = json.loads(json.dumps(current, default=str))
    recorded = before.get("settings", {})
    out = [f"{k}: {recorded[k]!r} -> {v!r}" for k, v in now["settings"].items() if k in recorded and recorded[k] != v]
    if before.get("dims") != now["dims"]:
        out.append(f"dims: {before.get('dims')} -> {now['dims']}")
    return out


def refused_resume(what: str, saved: str | None, settings: dict[str, Any] | None, legacy: str,
                   only_earlier: bool = False) -> ConfigError:
    """The error for a ``--resume`` whose checkpoint has another run key: ``what`` (the checkpoint)
    was written with the saved :func:`run_settings` (JSON; ``None`` when it records none, as an
    earlier medrag's, ``legacy`` saying until when, and ``only_earlier`` that nothing else writes
    none), this run has ``settings``. It names the settings that differ, or the data when none does,
    or an earlier medrag (an upgrade tryout was told "other settings or data" and looked for a
    change it never made)."""
    if saved is None:
        return ConfigError(f"{what} was written by " + ("" if only_earlier else "a run with other training settings or "
                                                        "data, or by ")
                           + f"an earlier medrag ({legacy}: it records no settings), whose runs this one cannot "
                           "resume; finish that run with the medrag that started it, or start again without "
                           "--resume (or in another output_dir)")
    changed = _differences(saved, settings) if settings else []
    added = _added_settings(saved, settings) if settings else []
    what_differs = (f"other training settings ({'; '.join(changed)})" if changed else
                    "the settings of an earlier medrag" if added else
                    "other training data (the same settings)" if settings and saved else
                    "other training settings or data")
    hint = (f" (settings it did not record: {', '.join(added)}: an earlier medrag wrote it; finish that run with the "
            "medrag that started it, or start again)" if added else "")
    return ConfigError(f"{what} was written by a run with {what_differs}{hint}; resume with the same config and data, "
                       "or choose another output_dir")


def _added_settings(saved: Any, current: dict[str, Any]) -> list[str]:
    """The settings of this medrag that the saved run did not record: an earlier medrag wrote it."""
    try:
        before = json.loads(saved)["settings"]
    except (TypeError, ValueError, KeyError):
        return []
    return [k for k in current["settings"] if k not in before]


def checkpoint_step(path: Path) -> int | None:
    """The step of a ``checkpoint-<step>`` folder, or None for any other name.

    >>> checkpoint_step(Path("out/checkpoints/checkpoint-12")), checkpoint_step(Path("notes"))
    (12, None)
    """
    m = _CHECKPOINT.match(Path(path).name)
    return int(m.group(1)) if m else None


#: The file the Trainer writes last in a checkpoint (after the weights, optimizer and random state).
TRAINER_STATE_FILENAME = "trainer_state.json"


def is_complete_checkpoint(path: Path) -> bool:
    """Whether the ``checkpoint-<step>`` folder ``path`` was written to the end: the loop's state
    file (written under another name and renamed when complete), or the Trainer's
    ``trainer_state.json``, which it writes last, holding valid JSON. A kill while the Trainer
    saved left a folder without it, and ``--resume`` failed on it with a bare file error."""
    path = Path(path)
    if (path / STATE_FILENAME).is_file():
        return True
    try:
        json.loads((path / TRAINER_STATE_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def latest_checkpoint(folder: Path) -> tuple[Path | None, list[Path]]:
    """The newest complete ``checkpoint-<step>`` folder in ``folder`` (None: none), and the
    incomplete ones newer than it (a run killed while saving), newest first."""
    folder = Path(folder)
    found = sorted(((checkpoint_step(p), p) for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
                   reverse=True) if folder.is_dir() else []
    incomplete: list[Path] = []
    for _, path in found:
        if is_complete_checkpoint(path):
            return path, incomplete
        incomplete.append(path)
    return None, incomplete


class LoopCheckpoints:
    """Writes and reads the loop's checkpoints in ``folder`` (``OUTPUT_DIR/checkpoints``).

    Args:
        folder: where ``checkpoint-<step>`` folders go.
        run_key: :func:`run_key` of this run; a checkpoint of another key is refused on load.
        keep: how many checkpoints stay on disk (the newest; None: all).
    """

    def __init__(self, folder: Path, run_key: str, keep: int | None = 2, settings: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.run_key = run_key
        self.keep = keep
        self.settings = settings  # run_settings(): a refused resume names what changed

    def save(self, step: int, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer",
             scheduler: Any, extra: dict[str, Any]) -> Path:
        """Write ``checkpoint-<step>`` (to a temporary folder first, renamed when complete: a kill
        while saving leaves the previous checkpoints intact) and drop the oldest beyond ``keep``."""
        import torch

        state = {
            "run_key": self.run_key,
            "run_settings": json.dumps(self.settings, sort_keys=True, default=str) if self.settings else "",
            "step": int(step),
            "trainable": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **extra,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"checkpoint-{step}"
        tmp = self.folder / f".checkpoint-{step}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(state, tmp / STATE_FILENAME)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        self._prune()
        logger.info("checkpoint saved: %s", final)
        return final

    def load(self, path: Path, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer",
             scheduler: Any) -> dict[str, Any]:
        """Restore the parameters, optimizer, schedule and random state saved in ``path``; returns the
        whole saved state (``step`` and the loop's extras).

        Raises:
            ConfigError: ``path`` holds no loop checkpoint (e.g. one of the Trainer engine), an unreadable
                one, or one of another run (other settings or data).
        """
        import torch

        file = Path(path) / STATE_FILENAME
        if not file.is_file():
            raise ConfigError(f"{path} is not a checkpoint of engine: loop (no {STATE_FILENAME}); it was written by "
                              "the Trainer engine: resume with engine: trainer, or choose another output_dir")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises RuntimeError, pickle and zip errors alike
            raise ConfigError(f"the checkpoint {file} is unreadable ({type(exc).__name__}: {exc}); delete {path} "
                              "to resume from the one before it, or start again without --resume") from exc
        if state.get("run_key") != self.run_key:
            raise refused_resume(f"the checkpoint {path}", state.get("run_settings") if "run_settings" in state else None,
                                 self.settings, legacy="before December 6", only_earlier=True)
        params = dict(model.named_parameters())
        trainable = {n for n, p in params.items() if p.requires_grad}
        if set(state["trainable"]) != trainable:
            raise ConfigError(f"the checkpoint {path} trains other parameters than this run; resume with the same "
                              "config, or choose another output_dir")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value.to(params[name].device))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        logger.info("resumed from %s (step %d)", path, state["step"])
        return state

    def _prune(self) -> None:
        if self.keep is None:
            return
        found = sorted((s, p) for p in self.folder.iterdir() if p.is_dir() and (s := checkpoint_step(p)) is not None)
        for _, old in found[: max(0, len(found) - max(1, self.keep))]:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["LoopCheckpoints", "run_key", "run_settings", "refused_resume", "checkpoint_step", "is_complete_checkpoint", "latest_checkpoint",
           "RUN_SETTINGS", "STATE_FILENAME", "TRAINER_STATE_FILENAME"]
