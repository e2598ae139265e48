import json

import pytest

from medrag.errors import MetadataError
from medrag.metadata import METADATA_FILENAME, MatryoshkaMetadata, default_dims


def test_default_dims_caps_seed_sizes_and_adds_full():
    assert default_dims(1024) == [1024, 768, 512, 256, 128, 64]
    assert default_dims(384) == [384, 256, 128, 64]
    assert default_dims(128) == [128, 64]
    assert default_dims(48) == [48]


def test_roundtrip(tmp_path):
    meta = MatryoshkaMetadata(full_dim=384, dims=[64, 384, 128], scores={"384": {"ndcg@10": 0.2}, 64: {"ndcg@10": 0.15}},
                              recommendations={"edge": 64}, base_model="bundled:multilingual-e5-small")
    assert meta.dims == [384, 128, 64]
    path = meta.save(tmp_path)
    assert path.name == METADATA_FILENAME
    back = MatryoshkaMetadata.load(tmp_path)
    assert back == meta
    assert back.score(64) == 0.15
    assert json.loads(path.read_text())["scores"]["384"] == {"ndcg@10": 0.2}


def test_load_missing_folder_file_returns_none(tmp_path):
    assert MatryoshkaMetadata.load(tmp_path) is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dims": [64]}, "lacks"),
        ({"full_dim": 128, "dims": [256]}, "outside"),
        ({"full_dim": 128, "dims": [64], "scores": {"32": {"ndcg@10": 1}}}, "not among"),
        ({"full_dim": 128, "dims": [64], "scores": {"64": {"ndcg@10": "x"}}}, "numbers"),
        ({"full_dim": 128, "dims": [64], "schema_version": 99}, "schema_version"),
        ({"full_dim": -1, "dims": []}, "positive"),
        ({"full_dim": 128, "dims": [64], "scores": {"64": {"ndcg@10": float("nan")}}}, "non-finite"),
    ],
)
def test_invalid_metadata_is_rejected(data, message):
    with pytest.raises(MetadataError, match=message):
        MatryoshkaMetadata.from_dict(data)


def test_corrupt_file_is_a_metadata_error(tmp_path):
    (tmp_path / METADATA_FILENAME).write_text("{not json")
    with pytest.raises(MetadataError, match="cannot read"):
        MatryoshkaMetadata.load(tmp_path)


def test_score_of_unrecorded_size_names_recorded_sizes():
    meta = MatryoshkaMetadata(full_dim=128, dims=[128, 64], scores={128: {"ndcg@10": 0.3}})
    with pytest.raises(MetadataError, match=r"\[128\]"):
        meta.score(64)
