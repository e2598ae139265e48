"""Training mixtures (finetune.mixture): source names, caps, licences, and the MedQuAD source."""

from __future__ import annotations

import json

import pytest

from finetune.mixture import LICENCES, PAIR_SOURCES, mixture_pairs, parse_source, source_pairs
from medrag.errors import DataError


def _shared(tmp_path, n=30):
    folder = tmp_path / "data" / "medquad"
    folder.mkdir(parents=True)
    words = " ".join(f"w{i}" for i in range(30))
    rows = [{"question": f"What is Disease {i} ?", "answer": f"What is Disease {i}? Disease {i} is {words}."}
            for i in range(n)]
    (folder / "medquad.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return tmp_path / "data"


def test_parse_source():
    assert parse_source("medquad:300") == ("medquad", 300)
    assert parse_source(" Cases ") == ("cases", 0)
    for bad in ("cases:x", "cases:-1"):
        with pytest.raises(DataError, match="NAME:COUNT|>= 0"):
            parse_source(bad)


def test_medquad_is_a_capped_pair_source_with_its_licence(tmp_path):
    shared = _shared(tmp_path)
    assert "medquad" in PAIR_SOURCES and "CC BY 4.0" in LICENCES["medquad"]
    assert len(source_pairs("medquad", shared)) == 30
    pairs, counts = mixture_pairs(["sample", "medquad:12"], shared_data=shared, seed=3)
    assert counts["medquad"] == 12 and counts["sample"] > 0
    medquad = [p for p in pairs if p.question.startswith("What is Disease")]
    assert len(medquad) == 12 and all(p.answer.startswith("Disease ") for p in medquad)   # echo dropped
    again, _ = mixture_pairs(["sample", "medquad:12"], shared_data=shared, seed=3)
    assert [p.question for p in again] == [p.question for p in pairs]


def test_unknown_and_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="unknown training source 'pubmed'.*medquad"):
        source_pairs("pubmed", tmp_path)
    with pytest.raises(DataError, match="MedQuAD file not found"):
        source_pairs("medquad", tmp_path)
