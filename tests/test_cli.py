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


def test_compare_names_an_empty_argument_before_the_model(capsys, monkeypatch):
    """``medrag compare "" p`` said "text at index 0 is empty", naming neither the query nor the
    passage as the command line shows them, after loading the model (review)."""
    import medrag.embeddings

    monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    _one_line_error(capsys, ["compare", "", "un passage"], "the query is empty")
    _one_line_error(capsys, ["compare", "fer", "un passage", "  "], "passage 2 is empty")
    _one_line_error(capsys, ["compare", "\u200b", "un passage"], "the query is empty")  # invisible only (review)
    _one_line_error(capsys, ["compare", "fer", "un \udcff passage"], "passage 1 is not valid UTF-8 text")
    # --device, as search and index have it (it was "unrecognized arguments"), checked before the model
    _one_line_error(capsys, ["compare", "fer", "un passage", "--device", "tpu9"], "unknown device 'tpu9'")


def test_compare_runs_on_the_device_given(tiny_model_dir, capsys):
    assert main(["compare", "--model", str(tiny_model_dir), "--device", "cpu", "glycémie", "la glycémie"]) == 0
    assert "full size 128" in capsys.readouterr().out


def test_help_lists_compare():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])


def _one_line_error(capsys, argv, expected: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_bad_paths_are_one_line_errors_before_any_model_loads(tmp_path, capsys, monkeypatch):
    """issue 11, defect 5: a file or unwritable --dir, a folder or non-UTF-8 --config, a folder as --data."""
    import medrag.embeddings

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _one_line_error(capsys, ["demo", "--dir", str(a_file)], "is a file")
    _one_line_error(capsys, ["demo", "--dir", str(a_file / "below")], "cannot create")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("mod\xe8le: x\n".encode("latin-1"))
    _one_line_error(capsys, ["finetune", "--config", str(bad), "--check"], "not UTF-8")
    _one_line_error(capsys, ["finetune", "--config", str(tmp_path), "--check"], "is a folder")
    _one_line_error(capsys, ["finetune", "--data", str(tmp_path), "--check"], "is a folder")
    # options the run would ignore, or check only after minutes of demo
    _one_line_error(capsys, ["demo", "--dir", str(tmp_path / "d"), "--epochs", "3"], "only used with --finetune")
    _one_line_error(capsys, ["demo", "--dir", str(tmp_path / "d"), "--finetune-dir", str(tmp_path / "f")],
                    "only used with --finetune")
    _one_line_error(capsys, ["demo", "--dir", str(tmp_path / "d"), "--finetune", "--epochs", "-1"], "--epochs must be")
    _one_line_error(capsys, ["demo", "--dir", str(tmp_path / "d"), "--k", "0"], "--k must be >= 1")
    assert not (tmp_path / "d").exists() and not (tmp_path / "f").exists()  # the refused runs made no folder
    # evaluate's --out under a file failed after every size was scored
    (tmp_path / "q.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    _one_line_error(capsys, ["evaluate", "--model", "x", "--data", str(tmp_path / "q.jsonl"),
                             "--out", str(a_file / "report")], "cannot create the folder")


def test_verbose_is_accepted_after_the_subcommand_too(capsys):
    """``medrag compare ... -v`` was "unrecognized arguments"; only ``medrag -v compare`` worked."""
    from medrag.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["compare", "q", "p", "-v"]).verbose is True
    assert parser.parse_args(["-v", "compare", "q", "p"]).verbose is True
    assert parser.parse_args(["compare", "q", "p"]).verbose is False


def test_an_os_error_is_one_line(capsys):
    """A full disk or a place that cannot be written (found only when writing) was a traceback."""
    import argparse

    from medrag.command import new_parser, run_command

    def fails(args: argparse.Namespace) -> int:
        raise OSError(28, "No space left on device", "/data/report.json")

    parser = new_parser("tool", None)
    parser.set_defaults(func=fails)
    assert run_command(parser, []) == 1
    assert capsys.readouterr().err.strip() == "tool: error: No space left on device (/data/report.json)"


@pytest.mark.parametrize("argv, expected", [(["evaluate", "--model", "m", "--sizes", "abc"], "invalid int value: 'abc'"),
                                            (["compare", "q", "p", "--nope"], "unrecognized arguments: --nope"),
                                            (["evaluate"], "required"), (["nosuch"], "invalid choice")])
def test_usage_errors_are_one_line_naming_help(capsys, argv, expected):
    """argparse printed its whole usage block (28 lines for evaluate) before the error."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "--help" in err[0], err


def test_a_mistyped_flag_is_named_by_its_subcommand_with_the_nearest_flag(capsys):
    """``medrag finetune --lerning-rate 1`` said "see medrag --help", whose help lists no finetune flag (audit)."""
    with pytest.raises(SystemExit) as stop:
        main(["finetune", "--lerning-rate", "1"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("medrag finetune: error: unrecognized arguments: --lerning-rate 1 (did "
                                              "you mean --learning-rate?) (see medrag finetune --help)")
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m", "--sizez", "3"])
    assert "medrag evaluate: error: unrecognized arguments: --sizez 3 (did you mean --sizes?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the dashes alone made it "did you mean --epochs?" (user tryout)
        main(["finetune", "--nosuch", "1"])
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    # argparse's prefix matching took --lr for --lr-scheduler ("lr_scheduler must be one of") and accepted
    # a cut --learning-rat (user tryout): a flag is given whole, a short name gets the flags it stands for
    (["finetune", "--lr", "1e-3"], "--lr 1e-3 (did you mean --learning-rate or --lora-rank?)"),
    (["finetune", "--learning-rat", "1e-3"], "--learning-rat 1e-3 (did you mean --learning-rate?)"),
    # an unset shell variable: the report went to the current folder, --data "" was named "."
    (["evaluate", "--model", "m", "--out", ""], "--out is empty (an unset shell variable?)"),
    (["evaluate", "--model", "m", "--data", " "], "--data is empty"),
    (["evaluate", "--model", "m", "--model", "", "--data", "d"], "--model is empty"),
    (["evaluate", "--model", "m", "--label", " ", "--data", "d"], "--label is empty"),
    (["search", "fer", "--persist-dir", ""], "--persist-dir is empty"),
    (["finetune", "--mixture", ""], "--mixture is empty (an unset shell variable?): give it a value, or leave the "
                                    "option out; `none` clears a config file's list"),
])
def test_cut_flags_and_empty_values_are_usage_errors(capsys, argv, expected):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


def test_a_reader_that_closes_the_pipe_is_not_an_error(tiny_model_dir, tmp_path):
    """``medrag search ... | head -1`` printed "error: Broken pipe" and exited 1 (a `set -o pipefail`
    script failed on it); now it stops quietly with the shell's SIGPIPE status, 141."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    passages = [f"passage {i} sur la glycémie" for i in range(3000)]
    code = "import sys; from medrag.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "compare", "--model", str(tiny_model_dir), "glycémie",
                             *passages], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "error" not in err and "Traceback" not in err, err[-2000:]


def test_an_interrupt_while_the_commands_load_is_one_line(capsys, monkeypatch):
    """Ctrl-C in the first second (while build_parser imports every command's module) printed a
    traceback of 70-90 lines instead of "interrupted" and exit 130."""
    import medrag.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(medrag.cli, "build_parser", interrupted)
    try:
        code = medrag.cli.main(["search", "q"])
    except KeyboardInterrupt:  # not let through to the test session
        pytest.fail("the interrupt escaped main() (a traceback in a shell)")
    assert code == 130
    assert capsys.readouterr().err.strip() == "medrag: interrupted"


def test_version(capsys):
    """``medrag --version`` said "the following arguments are required: COMMAND"."""
    from medrag import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"medrag {__version__}"


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(capsys):
    """Only a reader that closed stdout ends a command quietly: a worker's or a socket's broken pipe is
    an error line and exit 1 (review)."""
    import argparse

    from medrag.command import new_parser, run_command

    def fails(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    parser = new_parser("tool", None)
    parser.set_defaults(func=fails)
    assert run_command(parser, []) == 1
    assert capsys.readouterr().err.strip() == "tool: error: Broken pipe"


def test_the_one_time_model_build_is_shown_without_verbose(monkeypatch):
    """A first `medrag demo` printed nothing for its minute of model building: the line was INFO (user tryout)."""
    import logging

    from medrag.command import NOTICE_LOGGERS, _CommandFormatter, new_parser, run_command

    for name in NOTICE_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    seen = []

    def build(args):
        seen.extend((logging.getLogger("medrag.bundled").isEnabledFor(logging.INFO),
                     logging.getLogger("medrag.store").isEnabledFor(logging.INFO)))
        return 0

    parser = new_parser("tool", None)
    parser.set_defaults(func=build, command="go")
    assert run_command(parser, []) == 0
    assert seen == [True, False]  # the build's line passes, other information stays for -v
    record = logging.LogRecord("medrag.bundled", logging.INFO, __file__, 1, "Building %s (one time).", ("m",), None)
    assert _CommandFormatter("tool go").format(record) == "tool go: Building m (one time)."


def test_sigterm_during_a_command_unwinds_it_and_says_so(capsys):
    """SIGTERM (docker stop, Kubernetes) ended `medrag index` at once with exit 143 and no word; the
    command now unwinds as after Ctrl-C (its finally blocks run: locks released, files closed), says
    so in one line, and the previous handler is put back (ops tryout)."""
    import os
    import signal
    import time

    from medrag.command import new_parser, run_command

    cleaned = []

    def long_command(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        finally:
            cleaned.append(True)

    parser = new_parser("medrag index", None)
    parser.set_defaults(func=long_command)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert run_command(parser, [], name="medrag index") == 143
    assert time.monotonic() - started < 20 and cleaned == [True]
    assert capsys.readouterr().err.startswith("medrag index: terminated (SIGTERM); what was written is kept")
    assert signal.getsignal(signal.SIGTERM) == before
    parser.set_defaults(writes=False)  # medrag search and compare write nothing: nothing to go on with
    assert run_command(parser, [], name="medrag search") == 143
    assert capsys.readouterr().err == "medrag search: terminated (SIGTERM)\n"
    from medrag.cli import build_parser

    real = build_parser()
    assert real.parse_args(["search", "q", "--persist-dir", "db"]).writes is False
    assert real.parse_args(["compare", "q", "p"]).writes is False
    assert not hasattr(real.parse_args(["index", "docs", "--persist-dir", "db"]), "writes")  # it says what is kept
