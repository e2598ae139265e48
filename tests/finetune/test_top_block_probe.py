"""The last-block probe (benchmarks/top_block_probe.py): its candidate specs. The block training it runs
is finetune.top_block's (tests/finetune/test_top_block.py)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("top_block_probe", REPO / "benchmarks" / "top_block_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


@pytest.mark.parametrize("spec, expected", [("head-h=0", ("head-h", 0, 5e-5, 1e-4, 0)),
                                            ("l=3:2e-3:1e-4:16", ("l", 3, 2e-3, 1e-4, 16))])
def test_candidate_specs(spec, expected):
    assert probe.parse_candidate(spec) == expected


@pytest.mark.parametrize("spec", ["x", "x=1:2:3:4:5", "=1", "x=-1", "x=1:0", "x=1:nan", "x=1:1e-3:1e-4:-2"])
def test_bad_candidate_specs_are_usage_errors(spec):
    with pytest.raises(SystemExit, match="--candidate"):
        probe.parse_candidate(spec)
