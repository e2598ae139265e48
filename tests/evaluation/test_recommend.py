"""The three recommended tiers and writing them into a model folder."""

from __future__ import annotations

import shutil

import pytest

from evaluation.recommend import recommend_sizes
from medrag.errors import InvalidInputError


def test_tiers_with_seed_tolerances():
    r = recommend_sizes({1024: 0.400, 768: 0.3995, 512: 0.3981, 256: 0.389, 128: 0.3879, 64: 0.36})
    # balanced: >= 0.400 * 0.995 = 0.398 -> 512; edge: >= 0.388 -> 256 (128 scores 0.3879 < 0.388)
    assert r.to_dict() == {"max": 1024, "balanced": 512, "edge": 256}


def test_best_size_need_not_be_the_largest_and_ties_go_small():
    assert recommend_sizes({384: 0.30, 256: 0.31, 128: 0.29}).max == 256
    assert recommend_sizes({384: 0.30, 256: 0.30, 128: 0.10}).to_dict() == {"max": 256, "balanced": 256, "edge": 256}


def test_tolerances_are_configurable():
    scores = {384: 0.40, 256: 0.39, 128: 0.36, 64: 0.30}
    assert recommend_sizes(scores).to_dict() == {"max": 384, "balanced": 384, "edge": 256}
    assert recommend_sizes(scores, balanced_tolerance=0.03, edge_tolerance=0.25).to_dict() == \
        {"max": 384, "balanced": 256, "edge": 64}
    with pytest.raises(ValueError):
        recommend_sizes(scores, edge_tolerance=1.0)
    with pytest.raises(ValueError):
        recommend_sizes({})


def test_write_metadata_enables_auto_dimension(tiny_model_dir, tmp_path):
    from medrag import MatryoshkaEmbeddings
    from medrag.metadata import MatryoshkaMetadata

    from evaluation.evaluator import evaluate_models
    from evaluation.recommend import write_metadata
    from medrag.qa.task import IRTask
    from tests.tiny_model import SENTENCES

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64]).save(folder)
    pairs = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, 8, 2)]
    task = IRTask.from_pairs(pairs)
    report = evaluate_models([str(folder)], task, n_bootstrap=50, n_resamples=50, cache=_nocache(),
                             edge_tolerance=0.5)
    result = report.models[0]
    write_metadata(folder, result)
    meta = MatryoshkaMetadata.load(folder)
    assert meta.scores[64]["ndcg@10"] == pytest.approx(result.score(64))
    assert meta.recommendations == result.recommendations.to_dict()
    emb = MatryoshkaEmbeddings(str(folder), dimension="auto", max_quality_loss=0.999, device="cpu")
    assert emb.dimension == 64  # any score passes a 99.9% tolerance: the smallest size
    strict = MatryoshkaEmbeddings(str(folder), dimension="auto", max_quality_loss=0.0, device="cpu")
    full = meta.scores[128]["ndcg@10"]
    assert strict.dimension == min(d for d in meta.scores if meta.scores[d]["ndcg@10"] >= full - 1e-12)


def test_write_metadata_keeps_the_model_card_true(tiny_model_dir, tmp_path):
    """The card kept the training run's table ("Evaluated on 30 held-out questions") while matryoshka.json,
    which dimension="auto" reads, held another evaluation's scores (user tryout)."""
    from evaluation.evaluator import evaluate_models
    from evaluation.recommend import write_metadata
    from medrag.metadata import MatryoshkaMetadata
    from medrag.qa.task import IRTask
    from tests.tiny_model import SENTENCES

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    MatryoshkaMetadata(full_dim=128, dims=[128, 64]).save(folder)
    (folder / "README.md").write_text("---\ntags: [medrag]\n---\n# Mon modèle\n\nÉvalué sur 30 questions.\n",
                                      encoding="utf-8")
    task = IRTask.from_pairs([(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, 8, 2)])
    report = evaluate_models([str(folder), str(tiny_model_dir)], task, n_bootstrap=20, n_resamples=20,
                             cache=_nocache())
    for _ in range(2):  # written again, the section is replaced, not repeated
        write_metadata(folder, report.models[0], baseline=report.models[1], task="mes questions")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\ntags: [medrag]\n---\n# Mon modèle\n\nÉvalué sur 30 questions.\n")
    assert card.count("## Scores recorded by `medrag evaluate --write-metadata`") == 1
    assert "Scored on: mes questions." in card
    assert f"| 64 | {report.models[1].score(64):.4f} | {report.models[0].score(64):.4f} |" in card
    write_metadata(tmp_path / "no-card", report.models[0]) if (tmp_path / "no-card").mkdir() is None else None
    assert not (tmp_path / "no-card" / "README.md").exists()  # no card, none made


def test_write_metadata_refuses_a_non_folder(tmp_path):
    from medrag.errors import MetadataError

    from evaluation.recommend import write_metadata

    with pytest.raises(MetadataError, match="model folder"):
        write_metadata(tmp_path / "missing", object())


def _nocache():
    from evaluation.cache import EmbeddingCache

    return EmbeddingCache(enabled=False)


def test_an_edge_tolerance_below_the_balanced_one_is_refused():
    """--balanced-tolerance 0.2 --edge-tolerance 0.01 recommended edge 128 above balanced 64."""
    with pytest.raises(InvalidInputError, match="edge_tolerance 0.01 is below balanced_tolerance 0.2"):
        recommend_sizes({384: 0.8, 128: 0.79, 64: 0.7}, balanced_tolerance=0.2, edge_tolerance=0.01)
    assert recommend_sizes({384: 0.8, 64: 0.7}, balanced_tolerance=0.05, edge_tolerance=0.05).edge == 384


def test_a_nan_score_is_refused() -> None:
    """{64: 0.3, 384: nan} recommended 64 for every tier, and the other order a bare ValueError (December 5)."""
    for scores in ({64: 0.3, 384: float("nan")}, {384: float("nan"), 64: 0.3}):
        with pytest.raises(InvalidInputError, match="finite"):
            recommend_sizes(scores)
