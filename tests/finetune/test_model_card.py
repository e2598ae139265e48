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
