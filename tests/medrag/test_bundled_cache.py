"""build_cached_folder (medrag.bundled): the cache root's errors and the modes of what it builds.

Fast unit tests with a trivial build; the embedded model's own conversion is in test_bundled.py
(integration).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
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
    """A failure inside the build (a model that does not load) is its own error, not "point MEDRAG_CACHE at
    a folder this user can write"; a full disk is a ModelLoadError saying so (safetensors raised its own
    SafetensorError, which no `except MedragError` caught: user tryout); nothing is left in the cache."""
    class SafetensorError(Exception):  # safetensors' Rust error: not an OSError
        pass

    def broken(folder: Path) -> None:
        raise RuntimeError("the weights do not load")

    with pytest.raises(RuntimeError, match="do not load"):
        build_cached_folder(tmp_path / "models" / "m", _valid, broken, "a test model")
    for error in (OSError(28, "No space left on device"),
                  SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")):
        def full(folder: Path, error=error) -> None:
            raise error

        with pytest.raises(ModelLoadError, match="no space left on the device of .*about 1 GB is needed.*MEDRAG_CACHE"
                           ) as info:
            build_cached_folder(tmp_path / "models" / "m", _valid, full, "a test model")
        assert "can write" not in str(info.value) and info.value.__cause__ is error
    # a file size limit (ulimit -f) and a quota: safetensors' error was a raw traceback (ops tryout)
    for error, match in ((SafetensorError("Error while serializing: I/O error: File too large (os error 27)"),
                          r"a file is larger than this process may write \(ulimit -f\).*ulimit -f unlimited"),
                         (OSError(122, "Disk quota exceeded"), "the disk quota is exceeded.*quota")):
        def limited(folder: Path, error=error) -> None:
            raise error

        with pytest.raises(ModelLoadError, match=match) as info:
            build_cached_folder(tmp_path / "models" / "m", _valid, limited, "a test model")
        assert info.value.__cause__ is error
    # the words alone, quoted by another failure, are no write limit (review)
    from medrag.bundled import _write_limit

    assert _write_limit(RuntimeError("config says: 'No space left on device' is not a valid label")) is None
    assert _write_limit(RuntimeError("x")) is None and _write_limit(OSError(27, "File too large")) is not None
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["m.lock"]


def test_folders_a_killed_build_left_are_removed_by_the_next_build(tmp_path) -> None:
    """SIGTERM, SIGKILL or a closed terminal stopped a first build without its clean-up: each left a
    half-built model (about 0.5 GB) that no later run removed (user tryout). The next build of that
    folder removes them; another target's recent temporary folder (a live build) is left alone."""
    models = tmp_path / "models"
    models.mkdir()
    killed = models / ".tmp-m-abc123"
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"half")
    trash = models / ".trash-m-4242"
    trash.mkdir()
    old_unnamed = models / ".tmp-x1y2z3"  # an earlier medrag's name, hours old
    old_unnamed.mkdir()
    os.utime(old_unnamed, (1, 1))
    live = models / ".tmp-other-q9"  # another model being built right now
    live.mkdir()
    longer = models / ".tmp-m-large-q9x"  # another target whose name starts with this one's (review)
    longer.mkdir()
    build_cached_folder(models / "m", _valid, _build, "a test model")
    assert sorted(p.name for p in models.iterdir()) == [".tmp-m-large-q9x", ".tmp-other-q9", "m", "m.lock"]


def test_a_relative_cache_root_is_warned_about_once(tmp_path, monkeypatch, caplog) -> None:
    """MEDRAG_CACHE=relcache built a second cache of about 1 GB in each working folder, in silence."""
    from medrag.bundled import cache_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDRAG_CACHE", "relcache-test-once")
    with caplog.at_level("WARNING", logger="medrag.bundled"):
        assert cache_dir() == Path("relcache-test-once") and cache_dir() == Path("relcache-test-once")
    assert caplog.text.count("is a relative path: it is read from the current folder") == 1
    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "abs"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="medrag.bundled"):
        cache_dir()
    assert "relative" not in caplog.text


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


@pytest.mark.parametrize("damage", ["header", "middle", "end", "small_file"])
def test_a_cached_file_overwritten_in_place_no_longer_matches_its_marker(tmp_path, damage) -> None:
    """The marker recorded sizes only: 64 bytes overwritten at the start of model.safetensors gave
    "SafetensorError: header too large" on every load, zeroed weights silently wrong vectors, and the
    cache was never rebuilt (its size had not changed)."""
    from medrag.bundled import SAMPLE_BLOCKS, files_match, files_record

    folder = tmp_path / "model"
    folder.mkdir()
    rng = np.random.default_rng(0)
    big = rng.bytes(SAMPLE_BLOCKS * (1 << 16) * 3 + 12345)  # spread sampling, as for model.safetensors
    (folder / "model.safetensors").write_bytes(big)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    info = files_record(folder)
    assert files_match(folder, info)
    name, offset = {"header": ("model.safetensors", 0), "middle": ("model.safetensors", len(big) // 2),
                    "end": ("model.safetensors", len(big) - 64), "small_file": ("tokenizer.json", 3)}[damage]
    with open(folder / name, "r+b") as handle:
        if damage == "middle":  # a run of zeroed pages, as a crashed write or a bad disk leaves
            handle.seek(offset - (1 << 18))
            handle.write(bytes(1 << 19))
        else:
            handle.seek(offset)
            handle.write(b"\xff" * (4 if damage == "small_file" else 64))
    assert (folder / name).stat().st_size == (len(big) if name == "model.safetensors" else 18)
    assert not files_match(folder, info)
    assert files_match(folder, {"files": info["files"]}) is True  # an older marker: sizes only, as before


def test_a_build_held_by_another_process_is_said_and_its_timeout_is_a_medrag_error(tmp_path, monkeypatch,
                                                                                 caplog) -> None:
    """Waiting for another process's build logged nothing for up to 10 minutes, and the timeout was
    filelock's own Timeout, not a MedragError (ops tryout)."""
    import subprocess
    import sys

    import medrag.bundled

    target = tmp_path / "models" / "m"
    target.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock\n"
         f"lock = FileLock({str(target) + '.lock'!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(medrag.bundled, "BUILD_LOCK_TIMEOUT_S", 1)
        with caplog.at_level("INFO", logger="medrag.bundled"), \
                pytest.raises(ModelLoadError, match="another process has been building a test model .* may be hung"):
            build_cached_folder(target, _valid, _build, "a test model")
        assert "Another process is building a test model" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    assert build_cached_folder(target, _valid, _build, "a test model") == target  # the lock died with it
