"""What every entry point shares: quiet TensorFlow start-up, flag checks, one error boundary.

Call :func:`quiet_tensorflow` *before* anything imports TensorFlow: the C++ runtime reads
``TF_CPP_MIN_LOG_LEVEL`` once, when its library loads. Importing this module imports no TensorFlow.

- :func:`quiet_tensorflow`: ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set the variable, or asked
  for ``--verbosity=1`` (absl's debug level, ``-v 1``), which shows every TF C++ line again; then
  imports TensorFlow with its load-time C++ lines filtered by that level.
- :func:`run`: ``absl.app.run`` with one-line errors. A bad flag, hparam or usage exits 2 with
  ``prog: error: ...``; bad input data, a file that cannot be read or written, a locked or
  diverged run exits 1 the same way. Set ``SKETCHTK_TRACEBACK=1`` to see the traceback instead.
- :func:`check_dir`, :func:`check_run_dir`, :func:`check_positive`: flag checks that name the flag.
"""

import os
import re
import sys
import tempfile

TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
TRACEBACK_ENV = "SKETCHTK_TRACEBACK"
QUIET_LEVEL = "3"  # hides INFO/WARNING/ERROR C++ lines (oneDNN notice, CUDA stub, cuInit on CPU)


def _asked_verbosity(argv):
    """absl's ``--verbosity`` / ``-v`` value in ``argv`` (None when absent or not an integer)."""
    value = None
    args = list(argv or [])
    for i, arg in enumerate(args):
        for name in ("--verbosity", "-verbosity", "-v", "--v"):
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


# A C++ log line: severity letter, MMDD, time, thread, file:line] (absl / TF format).
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^ \]]+:\d+\] ")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def filter_load_time_lines(text, level):
    """``text`` without the C++ log lines below ``level`` (and absl's pre-init banner)."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match and _SEVERITY[match.group(1)] < level:
            continue
        if line.startswith(_ABSL_BANNER) and level >= 1:
            continue
        kept.append(line)
    return "".join(kept)


def quiet_tensorflow(argv=None):
    """Set ``TF_CPP_MIN_LOG_LEVEL`` and import TensorFlow under it; returns the level in force.

    The user's own ``TF_CPP_MIN_LOG_LEVEL`` always wins; otherwise ``--verbosity`` >= 1 in
    ``argv`` (default ``sys.argv``) shows every C++ line (level 0) and anything else hides them.

    The variable hides what TensorFlow logs once running (cuInit, CPU features) but, measured
    with TF 2.21, not what its libraries log while they load (the oneDNN notice, the CUDA stub,
    absl's "before InitializeLog" banner): those go to stderr unconditionally. So the import runs
    with file descriptor 2 sent to a temporary file, and what it wrote is passed on without the
    C++ lines below the level (everything is passed on if the import fails).
    """
    if TF_LOG_ENV not in os.environ:
        verbosity = _asked_verbosity(sys.argv if argv is None else argv)
        os.environ[TF_LOG_ENV] = "0" if verbosity is not None and verbosity >= 1 else QUIET_LEVEL
    level_text = os.environ[TF_LOG_ENV]
    try:
        level = int(level_text)
    except ValueError:
        level = 0
    if level <= 0 or "tensorflow" in sys.modules:
        return level_text
    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            sys.stderr.write(filter_load_time_lines(text, level) if ok else text)
            sys.stderr.flush()
    return level_text


def progress_verbose():
    """Keras ``fit`` verbosity for this process: a progress bar on a terminal, else one plain line
    per epoch (Keras' bar writes ANSI colour codes and carriage returns into redirected logs)."""
    return 1 if hasattr(sys.stdout, "isatty") and sys.stdout.isatty() else 2


def _message(err):
    """One line saying what went wrong (an OSError names its file)."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _user_errors():
    """(usage errors -> exit 2, input/run errors -> exit 1) exception classes."""
    from absl import app, flags

    from sketchtk import errors
    usage = (app.UsageError, flags.Error, errors.ConfigError)
    failure = (errors.DataError, errors.RunError, OSError, ValueError)
    return usage, failure


def fail(prog, message, code=1):
    """Print ``prog: error: message`` to stderr and exit with ``code``."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def guarded(main, prog):
    """``main`` wrapped in the error boundary (see the module docstring)."""
    def wrapped(argv):
        usage, failure = _user_errors()
        try:
            return main(argv)
        except (usage + failure) as err:
            if os.environ.get(TRACEBACK_ENV):
                raise
            fail(prog, _message(err), 2 if isinstance(err, usage) else 1)
    return wrapped


def _parse_flags(prog):
    def parse(argv):
        from absl import flags
        try:
            return flags.FLAGS(argv)
        except flags.Error as err:
            fail(prog, _message(err), 2)
    return parse


def run(main, prog=None):
    """``absl.app.run(main)`` behind the error boundary, flag errors included."""
    from absl import app
    prog = prog or os.path.basename(sys.argv[0])
    app.run(guarded(main, prog), flags_parser=_parse_flags(prog))


def call(main, argv, prog):
    """Parse ``argv`` into the global flags and run ``main`` behind the boundary, in-process;
    returns the exit status (what :func:`run` would exit with). For tests and notebooks."""
    from absl import flags
    flags.FLAGS.unparse_flags()
    try:
        remaining = _parse_flags(prog)([prog, *argv])
        status = guarded(main, prog)(remaining)
    except SystemExit as done:
        status = done.code
    return 0 if status is None else status


def _flag_path(flag, path):
    return f"--{flag}={path}"


def check_dir(flag, path, must_exist=True):
    """ConfigError unless ``path`` (the value of ``--flag``) is a directory.

    ``must_exist=False`` accepts a path that does not exist yet (an output directory) but still
    refuses one that is a file.
    """
    from sketchtk.errors import ConfigError
    if path is None:
        return
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise ConfigError(f"{_flag_path(flag, path)}: is a file, not a directory")
    if must_exist:
        raise ConfigError(f"{_flag_path(flag, path)}: no such directory")


def check_run_dir(flag, path):
    """ConfigError unless ``path`` is a ``train.py`` run directory (holds ``model_config.json``)."""
    from sketchtk.errors import ConfigError
    check_dir(flag, path)
    if not os.path.isfile(os.path.join(path, "model_config.json")):
        raise ConfigError(f"{_flag_path(flag, path)}: not a train.py run directory "
                          "(no model_config.json)")


def check_positive(flag, value):
    """ConfigError unless ``value`` (of ``--flag``) is > 0."""
    from sketchtk.errors import ConfigError
    if value is not None and not value > 0:
        raise ConfigError(f"--{flag}={value}: must be > 0")
