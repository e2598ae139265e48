"""build_cached_folder (medrag.bundled): the cache root's errors and the modes of what it builds.

Fast unit tests with a trivial build; the embedded model's own conversion is in test_bundled.py
(integration).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from medrag.bundled import build_cached_folder, ensure_bundled_model
from medrag.errors import MedragError, ModelLoadError


def _build(folder: Path) -> None:
    (folder / "sub").mkdir()
    (folder / "sub" / "weights.bin").write_bytes(b"w")
    os.chmod(folder / "sub" / "weights.bin", 0o600)  # as some writers (mkstemp) leave their files


def _valid(folder: Path) -> bool:
    return (folder / "sub" / "weights.bin").is_file()


def test_a_built_folder_gets_the_umask_modes_not_mkdtemps(tmp_path) -> None:
    """mkdtemp made the folder 0700 and a writer the weights 0600: another user (a Docker image
    built as root, run as another user) could not read the cache."""
    old = os.umask(0o022)
    try:
        target = build_cached_folder(tmp_path / "models" / "m", _valid, _build, "a test model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "sub" / "weights.bin").stat().st_mode) == 0o644


def test_a_cache_root_that_is_a_file_is_a_model_load_error_naming_medrag_cache(tmp_path, monkeypatch) -> None:
    """MEDRAG_CACHE pointing at a file raised a raw NotADirectoryError, outside the MedragError tree."""
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    monkeypatch.setenv("MEDRAG_CACHE", str(root))
    with pytest.raises(ModelLoadError, match="MEDRAG_CACHE=.*a-file.*can write") as info:
        ensure_bundled_model()
    assert isinstance(info.value, MedragError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_root_is_a_model_load_error(tmp_path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    os.chmod(root, 0o500)
    try:
        with pytest.raises(ModelLoadError, match="Permission denied"):
            build_cached_folder(root / "models" / "m", _valid, _build, "a test model")
    finally:
        os.chmod(root, 0o700)


def test_the_builds_own_errors_are_not_blamed_on_the_cache(tmp_path) -> None:
    """A failure inside the build (a model that does not load, a full disk) is its own error, not
    "point MEDRAG_CACHE at a folder this user can write"; nothing is left in the cache."""
    def failing(folder: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left") as info:
        build_cached_folder(tmp_path / "models" / "m", _valid, failing, "a test model")
    assert not isinstance(info.value, ModelLoadError)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["m.lock"]
