"""Atomic checkpoints: a directory per checkpoint, renamed into place when complete.

Layout under ``<log_root>``::

    model_config.json          hparams + values found from data (written once, atomically)
    ckpt/ckpt-<step>/          model + optimizer weights (``weights.weights.h5``) and ``state.json``
    ckpt/latest                the name of the newest complete checkpoint (atomic replace)
    best/                      the best weights by validation loss + a copy of model_config.json

A checkpoint directory is written under a temporary name and ``os.rename``d when every file is
flushed, and ``latest`` is replaced only after that, so an interruption at any moment leaves the
previous checkpoint intact and ``latest`` pointing at a complete one. What such an interruption
can leave (``ckpt/.tmp-*``, ``<dir>.old`` from the swap of an existing directory) is cleaned up
by :meth:`CheckpointManager.clean_leftovers` when the next run starts.

Files and directories get the modes a plain ``open`` / ``mkdir`` would give (0666 / 0777 minus the
umask), so other users can sample from a shared run when the umask allows it.

``RunLock`` keeps a second process from writing into a run directory that one is training in.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile

from absl import logging

from sketchtk.data.npz_io import current_umask
from sketchtk.errors import DataError, RunLocked

WEIGHTS = "weights.weights.h5"
STATE = "state.json"
MODEL_CONFIG = "model_config.json"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
_CKPT_NAME = re.compile(r"^ckpt-(\d+)$")


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def run_model(model_dir):
    """The ``model`` hparam in ``model_dir``'s ``model_config.json``; None when it is not a
    readable run directory (the caller's path reports that)."""
    try:
        return read_json(os.path.join(model_dir, MODEL_CONFIG))["hparams"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _seed_generators(model):
    return [g for layer in model._flatten_layers()  # pylint: disable=protected-access
            for g in getattr(layer, "_seed_generators", [])]


def seed_states(model):
    """The states of every ``keras.random.SeedGenerator`` in ``model`` (not in its weights file).

    Saved with each checkpoint so that a resumed run draws the same noise (z sampling, dropout)
    as an uninterrupted one.
    """
    return [g.state.numpy().tolist() for g in _seed_generators(model)]


def restore_seed_states(model, states):
    gens = _seed_generators(model)
    if len(gens) != len(states):
        raise ValueError(f"checkpoint has {len(states)} seed states, the model {len(gens)}")
    for gen, value in zip(gens, states):
        gen.state.assign(value)


def _save_dir_atomic(final_dir, model, state, extra_files=None):
    parent = os.path.dirname(os.path.abspath(final_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=TMP_PREFIX)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        model.save_weights(os.path.join(tmp, WEIGHTS))
        state = {**state, "seed_states": seed_states(model)}
        with open(os.path.join(tmp, STATE), "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        if os.path.exists(final_dir):
            old = final_dir + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final_dir, old)
            os.rename(tmp, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class CheckpointManager:
    """Saves and restores resumable checkpoints and the best model of a run.

    Args:
      log_root: the run directory.
      max_to_keep: resumable checkpoints kept (older ones are deleted after a newer one lands).
    """

    def __init__(self, log_root, max_to_keep=2):
        self.log_root = log_root
        self.ckpt_root = os.path.join(log_root, "ckpt")
        self.best_dir = os.path.join(log_root, "best")
        self.max_to_keep = max_to_keep

    def latest(self):
        """Path of the newest complete checkpoint, or None."""
        pointer = os.path.join(self.ckpt_root, "latest")
        if not os.path.exists(pointer):
            return None
        with open(pointer) as f:
            name = f.read().strip()
        path = os.path.join(self.ckpt_root, name)
        if not os.path.exists(os.path.join(path, STATE)):
            logging.warning("%s names %s, which is incomplete; ignoring it", pointer, path)
            return None
        return path

    def save(self, model, state):
        """Write ``ckpt-<step>`` atomically, point ``latest`` at it, prune old ones."""
        name = f"ckpt-{int(state['step'])}"
        _save_dir_atomic(os.path.join(self.ckpt_root, name), model, state)
        write_text_atomic(os.path.join(self.ckpt_root, "latest"), name)
        # only complete ``ckpt-<step>`` names: ``ckpt-12.old`` is the middle of a swap
        done = sorted((d for d in os.listdir(self.ckpt_root) if _CKPT_NAME.match(d)),
                      key=lambda d: int(_CKPT_NAME.match(d).group(1)))
        for old in done[:-self.max_to_keep]:
            shutil.rmtree(os.path.join(self.ckpt_root, old), ignore_errors=True)
        return name

    def clean_leftovers(self):
        """Undo what an interrupted save left: remove ``.tmp-*`` (files and directories) and
        settle each ``<dir>.old`` (the previous copy during a swap: dropped when ``<dir>`` is
        complete, renamed back when ``<dir>`` is missing). Returns the paths removed or restored.
        Call it only while holding the run's :class:`RunLock`."""
        touched = []
        for root in (self.log_root, self.ckpt_root):
            if not os.path.isdir(root):
                continue
            for name in sorted(os.listdir(root)):
                path = os.path.join(root, name)
                if name.startswith(TMP_PREFIX):
                    _remove(path)
                    touched.append(path)
                elif name.endswith(".old") and os.path.isdir(path):
                    final = path[:-len(".old")]
                    if os.path.exists(os.path.join(final, STATE)):
                        _remove(path)
                    else:
                        _remove(final)
                        os.rename(path, final)
                    touched.append(path)
        if touched:
            logging.info("cleaned up after an interrupted save: %s", touched)
        return touched

    def save_best(self, model, state, model_config_text):
        _save_dir_atomic(self.best_dir, model, state, {MODEL_CONFIG: model_config_text})

    def restore(self, model, path=None):
        """Load weights (model + optimizer) from ``path`` or the latest; returns its state dict."""
        path = path or self.latest()
        if path is None:
            return None
        load_weights(model, os.path.join(path, WEIGHTS))
        state = read_json(os.path.join(path, STATE))
        restore_seed_states(model, state.pop("seed_states", []))
        logging.info("restored %s (step %s)", path, state.get("step"))
        return state


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def load_weights(model, path):
    """``model.load_weights(path)``; an empty, truncated or mismatched file raises DataError
    naming it (h5py's own OSError names no file)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no weights file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the weights file is empty")
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: cannot load the weights ({' '.join(str(err).split())}); "
                        "the file is damaged or belongs to another model") from None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory (``<log_root>/.lock``), held while a run writes there.

    The lock is an ``flock`` on the file, so the kernel drops it when the holder dies however it
    dies; the file keeps the holder's PID and host for the message. A lock file left by a dead
    process is simply taken over.

    Raises (on enter):
      RunLocked: another live process holds the lock; the message names its PID.

    Example:
      >>> with RunLock("runs/smoke"):
      ...     train()
    """

    def __init__(self, log_root):
        self.log_root = log_root
        self.path = os.path.join(log_root, LOCK)
        self._fd = None

    def acquire(self):
        os.makedirs(self.log_root, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = (f"PID {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "")
                   if holder else "another process")
            raise RunLocked(f"{self.log_root} is in use by {who} (lock {self.path}); wait for "
                            "that run to end or pass another --log_root") from None
        previous = os.read(fd, 200).decode("utf-8", "replace").split()
        if previous and previous[0].isdigit() and int(previous[0]) != os.getpid():
            logging.info("%s: taking over the lock left by PID %s, which has ended",
                         self.path, previous[0])
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


@contextlib.contextmanager
def run_directory(log_root, lock=True):
    """The run directory for one training run: locked, cleaned of leftovers, and removed again
    when the run fails before writing anything into it (so a typo leaves no empty folder).

    ``lock=False`` (non-chief workers, which write nothing) only creates the directory.
    """
    created = not os.path.exists(log_root)
    if os.path.exists(log_root) and not os.path.isdir(log_root):
        raise DataError(f"{log_root}: the run directory is a file")
    os.makedirs(log_root, exist_ok=True)
    holder = RunLock(log_root) if lock else None
    try:
        if holder is not None:
            holder.acquire()
            CheckpointManager(log_root).clean_leftovers()
        yield log_root
    except BaseException:
        if holder is not None:
            holder.release()
            holder = None
        if created and lock and _holds_nothing(log_root):
            shutil.rmtree(log_root, ignore_errors=True)
        raise
    finally:
        if holder is not None:
            holder.release()


def _holds_nothing(log_root):
    """True when ``log_root`` has no file but the lock (empty subdirectories do not count)."""
    for _, _, files in os.walk(log_root):
        if any(f != LOCK for f in files):
            return False
    return True
