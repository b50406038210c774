"""sketchtk.cli: the TensorFlow log level chosen for entry points, the load-time line filter, the
progress mode, and the one-line error messages (the real entry points: tests/test_entry_points.py)."""

import io
import os

import pytest

from sketchtk import cli

# Captured from `python -c "import tensorflow"` (TF 2.21, full `tensorflow` wheel, CPU machine).
LOAD_TIME = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796162037.654965   14871 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796162037.655466   14871 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.\n"
    "W0000 00:00:1796162037.655470   14871 some_file.cc:12] a warning\n"
    "E0000 00:00:1796162043.583351   14871 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    "/usr/lib/python3/site.py:1: UserWarning: a Python warning stays\n")


@pytest.mark.parametrize("argv,expected", [
    (["train.py"], None),
    (["train.py", "--verbosity=1"], 1),
    (["train.py", "-v", "2"], 2),
    (["train.py", "--verbosity", "0"], 0),
    (["train.py", "-v=-1"], -1),
    (["train.py", "--verbosity=loud"], None),
])
def test_asked_verbosity(argv, expected):
    assert cli._asked_verbosity(argv) == expected  # pylint: disable=protected-access


@pytest.mark.parametrize("env,argv,expected", [
    (None, ["x.py"], "3"),                    # quiet by default
    (None, ["x.py", "--verbosity=1"], "0"),   # absl's debug level shows every C++ line
    ("1", ["x.py"], "1"),                     # the user's own value always wins
    ("0", ["x.py", "--verbosity=-1"], "0"),
])
def test_quiet_tensorflow_level(monkeypatch, env, argv, expected):
    monkeypatch.delenv(cli.TF_LOG_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(cli.TF_LOG_ENV, env)
    assert cli.quiet_tensorflow(argv) == expected  # (imports TensorFlow once, if not yet)
    assert os.environ[cli.TF_LOG_ENV] == expected


@pytest.mark.parametrize("level,kept", [
    (0, ["WARNING: All log", "I0000", "I0000", "W0000", "E0000", "/usr/lib"]),
    (1, ["W0000", "E0000", "/usr/lib"]),
    (2, ["E0000", "/usr/lib"]),
    (3, ["/usr/lib"]),
])
def test_load_time_lines_filtered_by_level(level, kept):
    out = cli.filter_load_time_lines(LOAD_TIME, level).splitlines()
    assert [line[:len(prefix)] for line, prefix in zip(out, kept)] == kept
    assert len(out) == len(kept)


def test_progress_is_plain_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert cli.progress_verbose() == 2


def test_messages_are_one_line_and_name_the_file():
    err = FileNotFoundError(2, "No such file or directory", "/data/bee.npz")
    assert cli._message(err) == "/data/bee.npz: No such file or directory"  # noqa: SLF001
    assert cli._message(ValueError("two\n  lines")) == "two lines"  # noqa: SLF001


def test_guarded_turns_user_errors_into_one_line_and_status(capsys):
    from sketchtk.errors import ConfigError, DataError, RunLocked

    def raising(err):
        def main(argv):
            raise err
        return main
    for err, status in [(ConfigError("bad key"), 2), (DataError("f.npz: broken"), 1),
                        (RunLocked("runs/x is in use by PID 7"), 1), (OSError("disk"), 1)]:
        with pytest.raises(SystemExit) as done:
            cli.guarded(raising(err), "prog.py")([])
        assert done.value.code == status
        assert capsys.readouterr().err == f"prog.py: error: {err}\n"
    # anything else is a bug: its traceback is not hidden
    with pytest.raises(KeyError):
        cli.guarded(raising(KeyError("x")), "prog.py")([])
