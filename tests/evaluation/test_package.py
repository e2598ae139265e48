"""The public names of ``evaluation``: ``from evaluation import evaluate_models`` works, as ``from
finetune import MatryoshkaFinetuner`` does (it raised AttributeError though the package said
"imports are lazy": user tryout), and ``import evaluation`` still loads nothing heavy."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_all_names_resolve_to_their_submodules_objects() -> None:
    import evaluation.data
    import evaluation.evaluator

    for name in evaluation.__all__:
        value = getattr(evaluation, name)
        assert not isinstance(value, types.ModuleType)
        assert value.__module__.startswith("evaluation."), name
    assert evaluation.evaluate_models is evaluation.evaluator.evaluate_models
    assert evaluation.load_task is evaluation.data.load_task
    assert dir(evaluation) == sorted(evaluation.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        evaluation.no_such_name  # noqa: B018


def test_import_evaluation_loads_no_heavy_dependency() -> None:
    code = ("import sys, evaluation\n"
            "heavy = sorted(m for m in ('torch', 'chromadb', 'sentence_transformers', 'langchain_core') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
