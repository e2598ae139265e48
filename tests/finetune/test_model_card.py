"""The model card's limit lines (finetune/model_card.py)."""

from __future__ import annotations

from types import SimpleNamespace

from finetune.model_card import _regression_lines, _transfer_lines


def _meta(after: dict, base: dict) -> SimpleNamespace:
    return SimpleNamespace(metric="ndcg@10", extra={"suite_domains": after, "suite_domains_base": base})


def test_transfer_lines_name_the_domains_without_training_pairs() -> None:
    meta = _meta({"frenchmedmcqa": {}, "leaflets": {}, "cases": {}}, {})
    [line] = _transfer_lines(meta, ["frenchmedmcqa[train -> dev]", "cases", "abstracts:1500"])
    assert "(the transfer checks): leaflets." in line
    assert "Scores on frenchmedmcqa, cases are in distribution" in line
    [line] = _transfer_lines(meta, ["frenchmedmcqa[train -> dev]", "cases", "leaflets"])
    assert "(the transfer checks): none." in line
    assert _transfer_lines(_meta({}, {}), ["cases"]) == []  # not scored on the suite: nothing to say


def test_regression_lines_list_sizes_more_than_001_below_the_base() -> None:
    meta = _meta({"sample": {"384": {"ndcg@10": 0.77}, "64": {"ndcg@10": 0.74}}},
                 {"sample": {"384": {"ndcg@10": 0.82}, "64": {"ndcg@10": 0.51}}})
    assert _regression_lines(meta) == ["- Below the base model by more than 0.01 on sample at size(s) 384 (0.820 -> 0.770)."]


def test_an_export_is_described_as_medrags_model_only_when_exported_into_medrags_models_folder() -> None:
    """A user's export with the default adapter_name (the default model's) got the shipped card, loading
    bundled:medrag-e5-small-fr, which is not their model (review); the recipes of the shipped models
    export into medrag/data/models/NAME and keep their card."""
    from finetune.config import FinetuneConfig
    from finetune.model_card import adapter_card
    from medrag.adapters import packaged_models_dir
    from medrag.metadata import MatryoshkaMetadata

    cfg = FinetuneConfig(engine="loop", freeze_encoder=True, rotation="pca_centered", output_dir="/tmp/x/out",
                         export_adapter="/tmp/x/my-adapter")
    result = SimpleNamespace(global_step=10, train_seconds=5.0, samples_per_second=2.0, top_block_steps=0,
                             dims=[384, 64])
    meta = MatryoshkaMetadata(full_dim=384, dims=[384, 64])
    mine = adapter_card("medrag-e5-small-fr", cfg, result, meta, [], {}, {"faq.jsonl": 10}, {})
    assert "trained with `medrag finetune`" in mine and 'MatryoshkaEmbeddings("/tmp/x/my-adapter")' in mine
    assert "bundled:medrag-e5-small-fr" not in mine and "Trained on faq.jsonl" in mine
    shipped = adapter_card("medrag-e5-small-fr", cfg.replace(export_adapter=str(packaged_models_dir() / "medrag-e5-small-fr")),
                           result, meta, [], {}, {"faq.jsonl": 10}, {})
    assert shipped.startswith("# medrag-e5-small-fr\n\nmedrag's French medical Matryoshka embedding model: ")
    assert 'medrag.load_model("bundled:medrag-e5-small-fr")' in shipped
