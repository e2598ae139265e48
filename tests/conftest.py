"""Shared fixtures: a tiny random model for unit tests, the embedded model and ../shared data for integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
#: Real third-party data beside the checkout (never copied into the repository).
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"

requires_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data not found: {SHARED_DATA} (the ../shared folder beside the checkout)"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random 128-dim sentence-transformers model (sizes 128 and 64)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-model")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    import medrag

    return medrag.load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_embeddings(tiny_model):
    from medrag import MatryoshkaEmbeddings

    return MatryoshkaEmbeddings(tiny_model)


@pytest.fixture(scope="session")
def e5_small():
    """The embedded multilingual-e5-small, converted into MEDRAG_CACHE (or the user cache) once."""
    import medrag

    return medrag.load_model(medrag.BUNDLED_SPEC, device="cpu")


@pytest.fixture(scope="session")
def e5_embeddings(e5_small):
    from medrag import MatryoshkaEmbeddings

    return MatryoshkaEmbeddings(e5_small)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
