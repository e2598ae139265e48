"""Small data files for the finetune tests, in the tiny model's vocabulary (tests/tiny_model.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_model import SENTENCES

FACTS = list(dict.fromkeys(SENTENCES))[:8]  # the 8 medical sentences the tiny tokenizer was trained on


def qa_pairs(n_per_fact: int = 4) -> list[dict[str, str]]:
    """``question`` -> ``answer`` rows: a few words of a fact -> the fact (distinct questions)."""
    rows = []
    for i, fact in enumerate(FACTS):
        words = [w for w in fact.rstrip(" .?").split() if len(w) > 2]
        for j in range(n_per_fact):
            start = (j * 2) % max(1, len(words) - 2)
            rows.append({"question": f"{' '.join(words[start:start + 3])} {j}", "answer": fact})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def mcqa_record(i: int, question: str, options: list[str], correct: list[str]) -> dict:
    return {"id": f"q{i}", "question": question, "answers": dict(zip("abcde", options)),
            "correct_answers": correct, "nbr_correct_answers": len(correct)}
