import pytest

from medrag.cli import build_parser, main


def test_compare_prints_a_row_per_size(tiny_model_dir, capsys):
    assert main(["compare", "--model", str(tiny_model_dir), "glycémie à jeun", "la glycémie", "la TSH"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [128, 64]
    assert all(len(r) == 3 for r in rows)


def test_library_errors_exit_1_with_one_line(tmp_path, capsys):
    assert main(["compare", "--model", str(tmp_path / "missing"), "q", "p"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_help_lists_compare():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
