"""The suite's own report of free disk space (tests/conftest.py), shown after the final counts."""

from pathlib import Path

from tests.conftest import LOW_DISK_BYTES, REPO, free_disk_lines

GIB = 1024**3


def test_free_disk_lines_warn_only_below_the_threshold():
    places = {"temporary folder": Path("/tmp"), "model cache": Path("/cache")}
    lines = free_disk_lines({"temporary folder": 50 * GIB, "model cache": 50 * GIB},
                            {"temporary folder": 49 * GIB, "model cache": LOW_DISK_BYTES - 1}, places)
    assert lines[0] == "free disk space, temporary folder (/tmp): 50.0 GiB at the start, 49.0 GiB at the end"
    assert lines[1].startswith("free disk space, model cache (/cache): 50.0 GiB at the start, 2.0 GiB at the end - "
                               "below 2 GiB")
    assert "No space left on device" in lines[1]


def test_free_disk_lines_name_a_place_read_only_once():
    """A place unreadable at the start (a cache folder on a drive not mounted yet) is shown with its end alone."""
    lines = free_disk_lines({}, {"model cache": 10 * GIB}, {"model cache": Path("/cache")})
    assert lines == ["free disk space, model cache (/cache): 10.0 GiB at the end"]


def test_passed_tests_leave_no_temporary_folder():
    """The suite writes over 4 GB into tmp_path in all (the model conversion's tests ~470 MB each), which
    filled a CI machine's disk: a passed test's folder is removed when it ends, a failed one's kept."""
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["tmp_path_retention_policy"] == "failed"
