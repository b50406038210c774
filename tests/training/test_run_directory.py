"""Run-directory safety: the lock, file modes under the umask, leftovers of interrupted saves."""

import os
import stat
import subprocess
import sys

import pytest

from hparams import get_preset
from sketchtk.errors import DataError, RunLocked
from sketchtk.training import checkpoints
from sketchtk.training.checkpoints import CheckpointManager, RunLock, run_directory
from sketchtk.training.trainer import train_and_evaluate


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(RunLocked, match=rf"in use by PID {os.getpid()} on .*another --log_root"):
            RunLock(str(tmp_path)).acquire()
    # released: the next one gets it
    with RunLock(str(tmp_path)) as lock:
        assert open(lock.path).read().split()[0] == str(os.getpid())


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = _dead_pid()
    (tmp_path / checkpoints.LOCK).write_text(f"{dead} somehost\n")
    with RunLock(str(tmp_path)) as lock:
        assert open(lock.path).read().split()[0] == str(os.getpid())


def test_lock_held_by_another_process_blocks_training(tmp_path):
    """A live second process holds the lock (flock): train_and_evaluate refuses before any work."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]);"
         "from sketchtk.training.checkpoints import RunLock;"
         "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
         str(tmp_path), os.path.dirname(os.path.dirname(os.path.dirname(__file__))) or "."],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
            train_and_evaluate(get_preset("smoke"), str(tmp_path), verbose=0)
        assert sorted(os.listdir(tmp_path)) == [checkpoints.LOCK]
    finally:
        holder.kill()
        holder.wait()


def test_failed_run_leaves_no_empty_directory(tmp_path):
    log_root = tmp_path / "run"
    empty_data = tmp_path / "data"
    empty_data.mkdir()
    with pytest.raises(DataError):
        train_and_evaluate(get_preset("smoke"), str(log_root), data_dir=str(empty_data), verbose=0)
    assert not log_root.exists()
    # an existing directory is never removed, even when the run fails at once
    log_root.mkdir()
    with pytest.raises(DataError):
        train_and_evaluate(get_preset("smoke"), str(log_root), data_dir=str(empty_data), verbose=0)
    assert log_root.is_dir()


def test_run_files_honour_the_umask(smoke_run):
    """Every file and directory the smoke run wrote has the plain-open/mkdir mode under the umask
    of this process (mkstemp / mkdtemp would have made them 0600 / 0700)."""
    umask = checkpoints.current_umask()
    checked = 0
    for root, dirs, files in os.walk(smoke_run):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o777 & ~umask, name
        for name in files:
            if name == checkpoints.LOCK:
                continue
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode == 0o666 & ~umask, (root, name, oct(mode))
            checked += 1
    assert checked >= 6  # model_config, history, ckpt/latest, weights, state, best/...


def test_modes_follow_a_permissive_umask(tmp_path):
    old = os.umask(0o002)
    try:
        checkpoints.write_text_atomic(str(tmp_path / "a.txt"), "x")
        assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o664
    finally:
        os.umask(old)


def test_clean_leftovers_of_interrupted_saves(tmp_path):
    manager = CheckpointManager(str(tmp_path))
    ckpt = tmp_path / "ckpt"
    (ckpt / ".tmp-abc123").mkdir(parents=True)
    (ckpt / ".tmp-abc123" / "weights.weights.h5").write_bytes(b"partial")
    (ckpt / ".tmp-file").write_text("partial latest")
    (ckpt / "ckpt-12").mkdir()
    (ckpt / "ckpt-12" / checkpoints.STATE).write_text("{}")
    (ckpt / "ckpt-12.old").mkdir()  # swap finished: the old copy is garbage
    (tmp_path / "best.old").mkdir()  # swap interrupted between the two renames: best is missing
    (tmp_path / "best.old" / checkpoints.STATE).write_text('{"step": 4}')
    touched = manager.clean_leftovers()
    assert len(touched) == 4
    assert sorted(os.listdir(ckpt)) == ["ckpt-12"]
    assert (tmp_path / "best" / checkpoints.STATE).read_text() == '{"step": 4}'
    assert not (tmp_path / "best.old").exists()


def test_run_directory_cleans_leftovers_under_the_lock(tmp_path):
    (tmp_path / "ckpt" / ".tmp-xyz").mkdir(parents=True)
    with run_directory(str(tmp_path)):
        assert not (tmp_path / "ckpt" / ".tmp-xyz").exists()
        with pytest.raises(RunLocked):
            RunLock(str(tmp_path)).acquire()


def test_load_weights_names_an_empty_or_missing_file(tmp_path):
    """Checked before h5py sees the file (a truncated one: tests/test_entry_points.py)."""
    empty = tmp_path / "empty.weights.h5"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.weights.h5: the weights file is empty"):
        checkpoints.load_weights(None, str(empty))
    with pytest.raises(DataError, match="missing.weights.h5: no weights file"):
        checkpoints.load_weights(None, str(tmp_path / "missing.weights.h5"))
