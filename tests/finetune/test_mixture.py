"""Training mixtures (finetune.mixture): source names, caps, licences, and the MedQuAD source."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from finetune.mixture import LICENCES, PAIR_SOURCES, mixture_pairs, mixture_texts, parse_source, source_pairs
from medrag.errors import DataError


def _shared(tmp_path, n=30, aspects=1):
    """A MedQuAD file of ``n`` diseases, ``aspects`` questions each (one source document per disease)."""
    folder = tmp_path / "data" / "medquad"
    folder.mkdir(parents=True)
    words = " ".join(f"w{i}" for i in range(30))
    rows = [{"question": f"What is Disease {i} ?" if a == 0 else f"What are the aspect-{a} facts of Disease {i} ?",
             "answer": f"What is Disease {i}? Disease {i} is {words} (aspect {a}).",
             "source": f"https://example.org/disease-{i}.html#{a}"}
            for i in range(n) for a in range(aspects)]
    (folder / "medquad.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return tmp_path / "data"


def test_parse_source():
    assert parse_source("medquad:300") == ("medquad", 300, "pairs")
    assert parse_source(" Cases ") == ("cases", 0, "pairs")
    assert parse_source("medquad:300:Documents") == ("medquad", 300, "documents")
    for bad, why in (("cases:x", "NAME:COUNT"), ("cases:-1", ">= 0"), ("cases:3:chapters", "draw must be one of"),
                     ("cases::documents", "needs a count")):
        with pytest.raises(DataError, match=why):
            parse_source(bad)


def test_a_documents_draw_keeps_whole_documents(tmp_path):
    """``medquad:N:documents`` draws diseases, every question of a drawn disease kept (the last one cut
    to fit N); ``medquad:N`` draws single pairs, which split the documents."""
    shared = _shared(tmp_path, n=40, aspects=4)
    by_doc, counts = mixture_pairs(["medquad:20:documents"], shared_data=shared, seed=1)
    assert counts["medquad"] == 20
    sizes = sorted(Counter(p.doc_id for p in by_doc).values())
    assert sizes == [4, 4, 4, 4, 4]                                   # five whole diseases
    by_pair, _ = mixture_pairs(["medquad:20"], shared_data=shared, seed=1)
    assert max(Counter(p.doc_id for p in by_pair).values()) < 4      # a draw of pairs splits them
    cut, _ = mixture_pairs(["medquad:18:documents"], shared_data=shared, seed=1)
    assert sorted(Counter(p.doc_id for p in cut).values()) == [2, 4, 4, 4, 4]
    again, _ = mixture_pairs(["medquad:20:documents"], shared_data=shared, seed=1)
    assert [p.question for p in again] == [p.question for p in by_doc]
    with pytest.raises(DataError, match="capped by count only"):
        mixture_texts(["cases:10:documents"], shared_data=shared)
    with pytest.raises(DataError, match="'sample:10:documents'.*no source document.*sample:10"):
        mixture_pairs(["sample:10:documents"], shared_data=shared)


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
