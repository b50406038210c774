"""Atomic checkpoints: a directory per checkpoint, renamed into place when complete.

Layout under ``<log_root>``::

    model_config.json          hparams + values found from data (written once, atomically)
    ckpt/ckpt-<step>/          model + optimizer weights (``weights.weights.h5``) and ``state.json``
    ckpt/latest                the name of the newest complete checkpoint (atomic replace)
    best/                      the best weights by validation loss + a copy of model_config.json

A checkpoint directory is written under a temporary name and ``os.rename``d when every file is
flushed, and ``latest`` is replaced only after that, so an interruption at any moment leaves the
previous checkpoint intact and ``latest`` pointing at a complete one.
"""

import json
import os
import shutil
import tempfile

from absl import logging

WEIGHTS = "weights.weights.h5"
STATE = "state.json"
MODEL_CONFIG = "model_config.json"


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
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
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
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
        done = sorted((d for d in os.listdir(self.ckpt_root) if d.startswith("ckpt-")),
                      key=lambda d: int(d.split("-")[1]))
        for old in done[:-self.max_to_keep]:
            shutil.rmtree(os.path.join(self.ckpt_root, old), ignore_errors=True)
        return name

    def save_best(self, model, state, model_config_text):
        _save_dir_atomic(self.best_dir, model, state, {MODEL_CONFIG: model_config_text})

    def restore(self, model, path=None):
        """Load weights (model + optimizer) from ``path`` or the latest; returns its state dict."""
        path = path or self.latest()
        if path is None:
            return None
        model.load_weights(os.path.join(path, WEIGHTS))
        state = read_json(os.path.join(path, STATE))
        restore_seed_states(model, state.pop("seed_states", []))
        logging.info("restored %s (step %s)", path, state.get("step"))
        return state
