"""Shared fixtures: a tiny random model for unit tests, the embedded model and ../shared data for integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile
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


#: Below this much free space where the tests write (the temporary folder, the model cache), a run can
#: fail for want of disk rather than for a defect: the embedded model's conversion alone writes ~470 MB.
LOW_DISK_BYTES = 2 * 1024**3
_FREE_AT_START = pytest.StashKey[dict[str, int]]()


def _disk_places() -> dict[str, Path]:
    """Where the suite writes: the temporary folder (tmp_path) and medrag's model cache."""
    from medrag.bundled import cache_dir

    return {"temporary folder": Path(tempfile.gettempdir()), "model cache": cache_dir()}


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):  # the cache may not exist yet: its nearest existing parent
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def free_disk_lines(start: dict[str, int], end: dict[str, int], places: dict[str, Path]) -> list[str]:
    """One line per place: its free space at the session's start and end, with a warning when low."""
    lines = []
    for name, path in places.items():
        readings = [(when, free) for when, free in (("start", start.get(name)), ("end", end.get(name)))
                    if free is not None]
        text = f"free disk space, {name} ({path}): " + ", ".join(
            f"{free / 1024**3:.1f} GiB at the {when}" for when, free in readings)
        if any(free < LOW_DISK_BYTES for _, free in readings):
            text += (f" - below {LOW_DISK_BYTES / 1024**3:.0f} GiB: tests erroring with OSError or 'No space left "
                     "on device' may be this machine's disk, not a defect")
        lines.append(text)
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_FREE_AT_START] = {
        name: free for name, path in _disk_places().items() if (free := _free_bytes(path)) is not None}


def pytest_unconfigure(config: pytest.Config) -> None:
    """The free disk space at the start and end of the run, after the final counts, where a CI log's tail
    shows it: a CI run once errored in 500 tests at once with no reason in its tail (its disk was full)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    start = config.stash.get(_FREE_AT_START, None)
    if reporter is None or start is None:  # no terminal, or the session never started
        return
    places = _disk_places()
    end = {name: free for name, path in places.items() if (free := _free_bytes(path)) is not None}
    for line in free_disk_lines(start, end, places):
        reporter.write_line(line, yellow="below" in line)
