"""The evaluation docs and example name the model they mean.

``MatryoshkaEmbeddings()`` / ``medrag.load_model()`` load medrag's fine-tuned default
(``medrag.DEFAULT_SPEC``), not the plain base e5-small (``medrag.BUNDLED_SPEC``): a snippet that relied on
the default printed other numbers than the documented base ones, and the example compared a user's
fine-tune against medrag's own one labelled "base".
"""

from __future__ import annotations

import re
from pathlib import Path

import medrag

REPO = Path(__file__).resolve().parents[2]
_DEFAULT_MODEL = re.compile(r"MatryoshkaEmbeddings\(\s*(\)|device=|batch_size=)|load_model\(\s*(\)|device=)")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_snippets_name_their_model():
    blocks = _python_blocks((REPO / "docs" / "evaluation.md").read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        assert not _DEFAULT_MODEL.search(block), block


def test_the_example_compares_against_the_base_the_finetune_started_from():
    source = (REPO / "examples" / "evaluate_and_plot.py").read_text(encoding="utf-8")
    assert not _DEFAULT_MODEL.search(source)
    assert "BUNDLED_SPEC" in source and "base_model" in source
    # the plain base e5-small, which examples/finetune_own_data.py fine-tunes (model=None)
    assert medrag.BUNDLED_SPEC == "bundled:multilingual-e5-small" != medrag.DEFAULT_SPEC
    assert 'MatryoshkaEmbeddings("bundled:multilingual-e5-small"' in (REPO / "docs" / "evaluation.md").read_text()
