"""Each example runs end to end, offline, on the embedded model (smoke tests)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def run_example(name: str, *args: str, cwd=None) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_rag_chain():
    out = run_example("rag_chain.py")
    assert "Extraits" in out and "potassium" in out.lower() and "[lab-" in out and "--- answer" in out


def test_chroma_server():
    out = run_example("chroma_server.py")
    assert out.count("cosine distance") == 3


def test_finetune_then_evaluate_and_plot(tmp_path):
    model = tmp_path / "model"
    out = run_example("finetune_own_data.py", "--out", str(model), "--max-steps", "2")
    assert "dimension='auto' chose" in out
    assert (model / "matryoshka.json").is_file()
    report = tmp_path / "report"
    out = run_example("evaluate_and_plot.py", "--finetuned", str(model), "--out", str(report))
    assert "Score Initial" in out
    plots = list(report.glob("*.png"))
    assert plots and plots[0].stat().st_size > 5000


def test_choose_size():
    # a small N: the timing matrix (N/100 rows) once had fewer rows than the top 10 and crashed
    out = run_example("choose_size.py", "--n", "1000", "--max-gib", "0.1", "--max-ms", "1000")
    assert "NDCG@10" in out and ("Within" in out or "No size fits" in out)


def test_choose_size_refuses_a_bad_budget_before_loading_the_model():
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "choose_size.py"), "--n", "0"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "--n must be >= 1" in proc.stderr


def test_hybrid_search():
    out = run_example("hybrid_search.py")
    weights = [float(line.split(":")[1]) for line in out.splitlines() if "lexical weight chosen" in line]
    assert len(weights) == 3 and all(0.2 <= w <= 0.4 for w in weights)
    assert "retriever: [" in out and "BM25 rank 1" in out
