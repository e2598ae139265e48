"""Data parallel without code changes: ``torchrun --nproc_per_node 2 -m finetune`` on CPU (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("loss, port", [("mnrl", 29517), ("cached_mnrl", 29527)])  # auto: CPU / GPU choice
def test_two_gloo_processes_on_cpu_finish(tmp_path, tiny_model_dir, pairs_file, loss, port):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun not installed")
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "finetune", "--loss", loss,
           "--mini-batch-size", "2",
           "--data", str(pairs_file), "--question-column", "question", "--answer-column", "answer",
           "--model", str(tiny_model_dir), "--device", "cpu", "--output-dir", str(out), "--batch-size", "4",
           "--epochs", "2", "--max-seq-length", "32", "--eval-fraction", "0.25", "--learning-rate", "5e-4"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "training_info.json").read_text())
    assert info["world_size"] == 2 and info["loss"] == loss
    # 24 train pairs, 2 processes x batch 4 = 8 pairs a step, 2 epochs: 6 steps (each process saw half)
    assert info["global_step"] == 6
    meta = json.loads((out / "matryoshka.json").read_text())
    assert set(meta["scores"]) == {"128", "64"} and set(meta["scores_before"]) == {"128", "64"}
    assert not (out / "checkpoints").exists()
    assert proc.stdout.count("model saved to") == 2  # both ranks return the result
