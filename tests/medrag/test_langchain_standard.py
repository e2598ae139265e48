"""langchain-tests' standard suites for MatryoshkaEmbeddings (on the tiny test model)."""

import functools
import tempfile
from pathlib import Path

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from medrag import MatryoshkaEmbeddings
from tests.tiny_model import build_tiny_model


@functools.lru_cache(maxsize=1)
def _tiny_dir() -> str:
    return str(build_tiny_model(Path(tempfile.mkdtemp(prefix="medrag-tiny-")) / "model"))


class _TinyMatryoshka:
    """The class under test and its parameters, shared by both suites."""

    @property
    def embeddings_class(self) -> type[MatryoshkaEmbeddings]:
        return MatryoshkaEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": _tiny_dir(), "dimension": 64, "device": "cpu"}


class TestMatryoshkaEmbeddingsUnit(_TinyMatryoshka, EmbeddingsUnitTests):
    pass


class TestMatryoshkaEmbeddingsIntegration(_TinyMatryoshka, EmbeddingsIntegrationTests):
    pass
