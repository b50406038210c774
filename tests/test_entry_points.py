"""Every entry point's bad-input cases end in one ``prog: error: ...`` line, checked before work.

The cases run in-process (each subprocess would pay the TensorFlow import): the entry script is
loaded as a module, its flags parsed by ``sketchtk.cli.call`` and its ``main`` run behind the
shared error boundary; its flags are removed again before the next script defines theirs.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from absl import flags

from sketchtk import cli
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.training.checkpoints import RunLock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "sketchtk", "data", "default")
QUICKDRAW = os.path.join(REPO, "tests", "fixtures", "quickdraw", "simplified")


def _load_entry(script):
    """Import ``script`` (repo root) as a module; returns (module, names of the flags it defined)."""
    before = set(flags.FLAGS)
    path = os.path.join(REPO, script)
    spec = importlib.util.spec_from_file_location("entry_" + script.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "define_flags") and not set(flags.FLAGS) - before:
        module.define_flags()
    return module, set(flags.FLAGS) - before


@pytest.fixture
def entry():
    """``entry(script)`` -> a ``run(*args) -> (status, stderr line)`` for that script."""
    loaded = []

    def load(script, prog=None):
        module, names = _load_entry(script)
        loaded.append(names)
        prog = prog or script

        def run(*args):
            return cli.call(module.main, list(args), prog)
        return run
    yield load
    flags.FLAGS.unparse_flags()
    for names in loaded:
        for name in names:
            delattr(flags.FLAGS, name)


def _one_error_line(capsys, prog):
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith(f"{prog}: error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def broken_inputs(tmp_path_factory):
    """A directory with a corrupt category .npz, a plain file, an empty directory."""
    root = tmp_path_factory.mktemp("broken")
    (root / "npz").mkdir()
    (root / "npz" / "bee.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (root / "a_file").write_text("not a directory")
    (root / "empty").mkdir()
    return root


def test_seq2png_errors(entry, broken_inputs, tmp_path, capsys):
    run = entry("seq2png.py")
    out = str(tmp_path / "out")
    cases = [
        ([f"--input_dir={broken_inputs / 'npz'}", "--categories=bee", f"--output_dir={out}"],
         1, "bee.npz: cannot read as .npz"),
        ([f"--input_dir={DEFAULT_DATA}", "--categories=stairs", "--png_width=0",
          f"--output_dir={out}"], 2, "--png_width=0: must be > 0"),
        ([f"--input_dir={DEFAULT_DATA}", "--categories=no_such_thing", f"--output_dir={out}"],
         1, "no_such_thing.npz: no such file; categories present"),
        ([f"--input_dir={tmp_path / 'missing'}", "--categories=stairs"], 2,
         "missing: no such directory"),
        ([f"--input_dir={broken_inputs / 'a_file'}", "--categories=stairs"], 2,
         "a_file: is a file, not a directory"),
        (["--categories=stairs"], 2, "--input_dir"),  # required flag
    ]
    for args, status, message in cases:
        assert run(*args) == status, (args, capsys.readouterr().err)
        assert message in _one_error_line(capsys, "seq2png.py"), args
    assert not os.path.exists(out)


def _copy_run(smoke_run, tmp_path, name):
    run_dir = str(tmp_path / name)
    shutil.copytree(smoke_run, run_dir)
    return run_dir


def test_sample_errors(entry, smoke_run, broken_inputs, tmp_path, capsys):
    run = entry("sample.py")
    out = tmp_path / "samples"
    truncated = _copy_run(smoke_run, tmp_path, "truncated")
    weights = os.path.join(truncated, "best", "weights.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    empty = _copy_run(smoke_run, tmp_path, "empty")
    open(os.path.join(empty, "best", "weights.weights.h5"), "w").close()
    base = [f"--model_dir={smoke_run}", f"--output_dir={out}"]
    cases = [
        ([f"--model_dir={truncated}", f"--output_dir={out}"], 1,
         "weights.weights.h5: cannot load the weights"),
        ([f"--model_dir={empty}", f"--output_dir={out}"], 1, "the weights file is empty"),
        (base + ["--num_per_category=-3"], 2, "--num_per_category=-3: must be > 0"),
        (base + ["--num_per_category=0"], 2, "--num_per_category=0: must be > 0"),
        (base + ["--num_per_category=0", "--conditional=False"], 2, "must be > 0"),
        (base + ["--interpolate=a,b"], 2, "--interpolate=a,b: takes two integer indices"),
        (base + ["--interpolate=1"], 2, "takes two integer indices"),
        (base + ["--interpolate=0,9999"], 1, "--interpolate=0,9999: indices must be in [0, "),
        (base + ["--temperature=0"], 2, "--temperature=0.0: must be > 0"),
        ([f"--model_dir={tmp_path / 'nope'}", f"--output_dir={out}"], 2,
         "--model_dir=" + str(tmp_path / "nope") + ": no such directory"),
        ([f"--model_dir={broken_inputs / 'empty'}", f"--output_dir={out}"], 2,
         "not a train.py run directory"),
        (base + [f"--data_dir={broken_inputs / 'a_file'}"], 2, "is a file, not a directory"),
        (base + ["--num_per_category=abc"], 2, "--num_per_category"),
        (base + ["--cond_guidance=2"], 2, "--cond_guidance=2 guides vectorisation / abstraction"),
    ]
    for args, status, message in cases:
        assert run(*args) == status, (args, capsys.readouterr().err)
        assert message in _one_error_line(capsys, "sample.py"), args
    # every case failed before anything was sampled or written (the interpolation range too)
    assert not out.exists() or not os.listdir(out)


def test_retrieval_errors(entry, smoke_run, broken_inputs, tmp_path, capsys):
    run = entry("retrieval.py")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "samples.npz").write_bytes(b"\x93NUMPY garbage, not a zip")
    cases = [
        ([f"--model_dir={smoke_run}", f"--sample_dir={corrupt}"], 1,
         "samples.npz: cannot read as .npz"),
        ([f"--model_dir={smoke_run}", f"--sample_dir={corrupt}", "--classifier_dir=/nonexistent"],
         2, "--classifier_dir=/nonexistent: no such directory"),
        ([f"--model_dir={smoke_run}", f"--sample_dir={broken_inputs / 'empty'}"], 2,
         "has no samples.npz; run sample.py"),
        ([f"--model_dir={smoke_run}"], 2, "--sample_dir (or --output_dir) is required"),
        ([f"--model_dir={smoke_run}", f"--sample_dir={corrupt}",
          f"--data_dir={broken_inputs / 'a_file'}"], 2, "is a file, not a directory"),
    ]
    for args, status, message in cases:
        assert run(*args) == status, (args, capsys.readouterr().err)
        assert message in _one_error_line(capsys, "retrieval.py"), args


def test_train_errors(entry, broken_inputs, tmp_path, capsys):
    run = entry("train.py")
    log_root = tmp_path / "run"
    cases = [
        ([f"--log_root={log_root}", "--preset=nope"], 2, "unknown preset 'nope'"),
        ([f"--log_root={log_root}", "--preset=smoke", "--hparams=no_such_key=1"], 2,
         "unknown hparam 'no_such_key'"),
        ([f"--log_root={log_root}", "--preset=smoke", f"--data_dir={broken_inputs / 'a_file'}"],
         2, "--data_dir=" + str(broken_inputs / "a_file") + ": is a file, not a directory"),
        ([f"--log_root={log_root}", "--preset=smoke", "--data_dir=/nonexistent"], 2,
         "--data_dir=/nonexistent: no such directory"),
        # data problems surface after the run directory was made: it must not be left behind
        ([f"--log_root={log_root}", "--preset=smoke", f"--data_dir={broken_inputs / 'empty'}"],
         1, "unknown category"),
        ([f"--log_root={broken_inputs / 'a_file'}", "--preset=smoke"], 2,
         "is a file, not a directory"),
    ]
    for args, status, message in cases:
        assert run(*args) == status, (args, capsys.readouterr().err)
        assert message in _one_error_line(capsys, "train.py"), args
        assert not log_root.exists(), args
    held = tmp_path / "held"
    with RunLock(str(held)):
        assert run(f"--log_root={held}", "--preset=smoke") == 1
        line = _one_error_line(capsys, "train.py")
    assert f"is in use by PID {os.getpid()}" in line and "another --log_root" in line


def test_packer_refuses_empty_splits(entry, tmp_path, capsys):
    run = entry("sketchtk/data/pack_quickdraw.py", prog="pack_quickdraw")
    # 'cat' has 3 drawings: enough for one per split (0.9/0.05/0.05 would give 3/0/0)
    assert run(f"--ndjson_dir={QUICKDRAW}", "--categories=cat",
               f"--output_dir={tmp_path}") == 0
    sizes = {k: len(v) for k, v in load_stroke_npz(tmp_path / "cat.npz").items()}
    assert sizes == {"train": 1, "valid": 1, "test": 1}
    assert run(f"--ndjson_dir={QUICKDRAW}", "--categories=cat", f"--output_dir={tmp_path}",
               "--max_per_category=2") == 1
    assert "only 2 valid drawing(s)" in _one_error_line(capsys, "pack_quickdraw")


def test_a_real_process_prints_one_line_and_no_tensorflow_logs(tmp_path):
    """The one subprocess: TensorFlow's C++ start-up lines are hidden when the user has not set
    TF_CPP_MIN_LOG_LEVEL, and the error is the only line on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "train.py", "--preset=nope",
                           f"--log_root={tmp_path / 'run'}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("train.py: error: unknown preset 'nope'; choose one of")
    assert not (tmp_path / "run").exists()
