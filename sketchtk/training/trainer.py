"""``train_and_evaluate(hparams, log_root)``: the one training entry point behind ``train.py``.

What a run leaves in ``log_root``: ``model_config.json`` (resolved hparams + ``max_seq_len`` +
``scale_factor`` + categories), ``history.csv`` (a row every ``log_every`` steps), ``ckpt/``
(resumable, atomic), ``best/`` (best validation weights), ``tensorboard/``, and for the classifier
``classifier_metrics.json``.
"""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from sketchtk.config import HParams
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.pipeline import make_dataset
from sketchtk.errors import ConfigError, RunError
from sketchtk.models.sketch_vae import images_to_input
from sketchtk.training import callbacks as cb
from sketchtk.training.checkpoints import (MODEL_CONFIG, CheckpointManager, load_weights,
                                           read_json, run_directory, write_json_atomic)
from sketchtk.training.distribute import (check_workers_agree, distribute_per_worker,
                                          get_strategy, is_chief)


class TrainingDiverged(RunError):
    """The loss became NaN or inf; the last good checkpoint is left as it was."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports."""

    log_root: str
    steps: int
    best_step: int
    best_value: float
    early_stopped: bool
    history_path: str
    extra: dict


def model_config_dict(hparams, data, data_dir):
    """Everything needed to rebuild the model and its data transform (saved as JSON).

    ``data_dir`` is recorded (absolute, or None for the embedded data) so that sampling and
    evaluation find the same test sketches by default.
    """
    config = {"hparams": hparams.to_dict(), "max_seq_len": data.max_seq_len,
              "scale_factor": data.scale_factor, "categories": list(data.categories),
              "data_dir": None if data_dir is None else os.path.abspath(data_dir)}
    if hparams.model == "stroke_diffusion":
        from sketchtk.data.point_sequences import point_data_statistics
        config.update(point_data_statistics(data, hparams.representation))
    return config


# Keys that only steer how long / how verbosely a run goes on: a resumed run may change them.
RUN_CONTROL_KEYS = ("num_steps", "early_stop_patience", "log_every", "valid_batches")


def _check_resumable(saved, config, log_root):
    """ConfigError unless ``config`` continues ``saved`` (same model, data and schedules).

    An hparam that sketchtk gained after ``saved`` was written is compared at its default value,
    so a run made by an older version resumes unless the new key is set to something else."""
    defaults = HParams().to_dict()
    saved = {**saved, "hparams": {**{k: v for k, v in defaults.items()
                                     if k in config["hparams"]}, **saved["hparams"]}}
    strip = lambda c: {**{k: v for k, v in c.items() if k != "init_from"},  # noqa: E731
                       "hparams": {k: v for k, v in c["hparams"].items()
                                   if k not in RUN_CONTROL_KEYS}}
    a, b = strip(saved), strip(config)
    if a != b:
        diff = sorted(k for k in a["hparams"] if a["hparams"].get(k) != b["hparams"].get(k))
        raise ConfigError(f"{log_root}: cannot resume with different settings "
                          f"(differing: {diff or 'data-derived values'}); only "
                          f"{list(RUN_CONTROL_KEYS)} may change on resume")


def build_model(config):
    """Model of a ``model_config`` dict (uncompiled, weights not yet created)."""
    hp = HParams.from_dict(config["hparams"])
    if hp.model == "stroke_diffusion":
        from sketchtk.models.stroke_diffusion import StrokeDiffusion
        return StrokeDiffusion(hp, config["max_seq_len"], config["point_stats"],
                               config["length_model"], config["categories"])
    if hp.model == "raster_diffusion":
        from sketchtk.models.raster_diffusion import RasterDiffusion
        return RasterDiffusion(hp, config["categories"])
    if hp.model == "sketch_a_net":
        from sketchtk.models.sketch_a_net import SketchANet
        return SketchANet(num_classes=len(config["categories"]), input_size=hp.png_width)
    from sketchtk.models.sketch_vae import SketchVAE
    return SketchVAE(hp, config["max_seq_len"], config["scale_factor"], config["categories"])


def load_trained_model(model_dir, which="best"):
    """Rebuild a trained model from ``model_dir`` (a train.py ``log_root``) and load its weights.

    Args:
      model_dir: the run directory.
      which: ``"best"`` (best validation weights) or ``"latest"`` (newest resumable checkpoint).

    Returns:
      ``(model, config)``.
    """
    config_path = os.path.join(model_dir, MODEL_CONFIG)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path}: not a trained model directory (no {MODEL_CONFIG})")
    config = read_json(config_path)
    model = build_model(config)
    _build(model, config)
    compile_model(model, HParams.from_dict(config["hparams"]))
    manager = CheckpointManager(model_dir)
    path = manager.best_dir if which == "best" else manager.latest()
    weights = os.path.join(path or "", "weights.weights.h5")
    if path is None or not os.path.exists(weights):
        raise FileNotFoundError(f"{model_dir}: no {which} checkpoint")
    load_weights(model, weights)
    return model, config


def compile_model(model, hparams):
    """Compile with the run's optimiser and create its slots (so checkpoints load one-to-one)."""
    if hparams.model == "sketch_a_net":
        model.compile(optimizer=keras.optimizers.Adam(hparams.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    elif hparams.model in ("stroke_diffusion", "raster_diffusion"):
        from sketchtk.models.stroke_diffusion import make_optimizer
        model.compile(optimizer=make_optimizer(hparams))
    else:
        from sketchtk.models.sketch_vae import make_optimizer
        model.compile(optimizer=make_optimizer(hparams))
    model.optimizer.build(model.trainable_variables)


def _dummy_images(config):
    """White ``[2, W, W, 1]`` encoder input for the image classifier (Sketch-a-Net)."""
    w = HParams.from_dict(config["hparams"]).png_width
    return images_to_input(tf.fill([2, w, w], tf.constant(255, tf.uint8)))


def _build(model, config):
    """Create every weight (before loading them): the sequence models build from their own
    ``dummy_batch``, the classifier from a white image."""
    if hasattr(model, "dummy_batch"):
        model.build_from_batch(model.dummy_batch())
    else:
        model(_dummy_images(config))


def total_steps(hparams, n_train):
    """Training steps of a run: ``num_steps``; for ``sketch_a_net`` at most ``classifier_epochs``
    passes over the ``n_train`` training sketches."""
    if hparams.model == "sketch_a_net":
        per_pass = math.ceil(n_train / hparams.batch_size)
        return min(hparams.num_steps, hparams.classifier_epochs * per_pass)
    return hparams.num_steps


def _steps_per_epoch(hparams, n_train):
    if hparams.eval_every > 0:
        return hparams.eval_every
    return hparams.save_every * max(1, n_train // hparams.batch_size)


def train_and_evaluate(hparams, log_root, data_dir=None, resume=True, strategy=None, verbose="auto",
                       tensorboard_samples=0, export_keras=False, init_from=None):
    """Train ``hparams.model`` on ``data_dir`` (None = embedded default data), writing to ``log_root``.

    Args:
      hparams: validated ``HParams``.
      log_root: run directory (created).
      data_dir: directory of ``<category>.npz`` files.
      resume: continue from ``log_root``'s latest checkpoint when there is one; when False an
        existing run there is an error (pass a new ``log_root`` or delete it).
      strategy: a ``tf.distribute.Strategy``; default ``get_strategy()``.
      verbose: Keras ``fit`` verbosity (progress bar with "auto"/1).
      tensorboard_samples: at each validation, draw this many conditional samples of fixed
        validation sketches into TensorBoard (sketch VAEs; 0 = off; ``train.py`` uses 8).
      export_keras: at the end, also write ``model.keras`` (best weights, see
        :func:`export_keras_model`; ``train.py`` does).
      init_from: a run directory whose best weights start a new run where layer names and shapes match
        (``sketchtk.training.warm_start``; recorded in the run's config as ``init_from``);
        ignored when the run resumes from its own checkpoint.

    Returns:
      TrainResult.

    Raises:
      TrainingDiverged: on a NaN/inf loss (no checkpoint is written for that epoch).
      ConfigError: resuming with hparams/data that differ from the saved run's.
      RunLocked: another live process is training in ``log_root``.
    """
    strategy = strategy or get_strategy()
    # The chief locks the run directory for the whole run (other workers write nothing there);
    # a run that fails before writing anything leaves no empty directory behind.
    with run_directory(log_root, lock=is_chief(strategy)):
        return _train_and_evaluate(hparams, log_root, data_dir, resume, strategy, verbose,
                                   tensorboard_samples, export_keras, init_from)


def _train_and_evaluate(hparams, log_root, data_dir, resume, strategy, verbose,
                        tensorboard_samples=0, export_keras=False, init_from=None):
    hparams = hparams.validated()
    chief = is_chief(strategy)
    keras.utils.set_random_seed(hparams.seed)
    diffusion = hparams.model == "stroke_diffusion"
    data = load_sketch_data(data_dir, hparams.categories, hparams.num_per_category,
                            -1 if diffusion else hparams.max_seq_len)
    sharded = getattr(data, "sharded", False)  # TFRecord shards (sketchtk.data.tfrecords)
    if diffusion and sharded:
        raise ConfigError(f"{data_dir}: stroke_diffusion prepares point sequences in memory; "
                          "pass a --data_dir of .npz files (the TFRecord reader streams the "
                          "stroke models)")
    if diffusion:  # point sequences: resample / RDP, then cap the point count (max_seq_len)
        from sketchtk.data.point_sequences import prepare_point_data
        data = prepare_point_data(data, hparams.resample_spacing, hparams.rdp_epsilon,
                                  hparams.max_seq_len)
    config = model_config_dict(hparams, data, data_dir)
    manager = CheckpointManager(log_root)
    latest = manager.latest()
    config_path = os.path.join(log_root, MODEL_CONFIG)
    if latest is not None:
        if not resume:
            raise ConfigError(f"{log_root} already holds a run (checkpoint {latest}); "
                              "use --resume_training=True to continue it or a new --log_root")
        saved = read_json(config_path)
        _check_resumable(saved, config, log_root)
        if saved.get("init_from"):  # the warm start stays on record; it is not redone
            config["init_from"] = saved["init_from"]
        if init_from:
            logging.info("%s resumes from its own checkpoint; --init_from=%s is not used",
                         log_root, init_from)
    elif init_from:
        config["init_from"] = os.path.abspath(init_from)
    config_text = json.dumps(config, indent=2, sort_keys=True)
    if chief:
        write_json_atomic(config_path, config)

    with strategy.scope():
        model = build_model(config)
        _build(model, config)
        compile_model(model, hparams)
    state = {"step": 0, "epoch": 0, "best": None, "best_step": None, "bad_evals": 0}
    if latest is not None:
        state.update(manager.restore(model, latest))
        logging.info("resuming at step %d", state["step"])
    elif init_from:
        from sketchtk.training.warm_start import warm_start
        warm_start(model, init_from)
    start_step = int(state["step"])
    check_workers_agree(strategy, start_step, "checkpoint step to resume from")
    n_train = len(data["train"])
    num_steps = total_steps(hparams, n_train)
    if start_step >= num_steps:
        logging.info("%s: already trained for %d >= %d steps", log_root, start_step, num_steps)

    spe = _steps_per_epoch(hparams, n_train)
    epochs = math.ceil(num_steps / spe)
    if sharded and strategy.num_replicas_in_sync > 1:
        # each input pipeline (worker) reads its own shards; see tfrecords.make_dataset
        from sketchtk.data import tfrecords

        def per_worker(**kwargs):
            ds = tfrecords.make_dataset(data, "train", hparams, training=True, **kwargs)
            return ds.map(_classifier_xy) if hparams.model == "sketch_a_net" else ds
        train_ds = distribute_per_worker(strategy, per_worker, hparams.batch_size, start_step)
    else:
        train_ds = make_dataset(data, "train", hparams, training=True, start_step=start_step)
        if hparams.model == "sketch_a_net":
            train_ds = train_ds.map(_classifier_xy)
    valid_ds = make_dataset(data, "valid", hparams, training=False)
    if hparams.valid_batches > 0:
        valid_ds = valid_ds.take(hparams.valid_batches)
    if hparams.model == "sketch_a_net":
        valid_ds = valid_ds.map(_classifier_xy)
        monitor = "val_loss"
    elif hparams.model in ("stroke_diffusion", "raster_diffusion"):
        monitor = "val_loss"
    else:
        monitor = "val_recon"

    guard = cb.NaNGuard(start_step)
    checkpointer = cb.ValidateAndCheckpoint(manager, config_text, monitor,
                                            hparams.early_stop_patience, guard, state, chief)
    callbacks = [guard, checkpointer, StopAtStep(num_steps)]
    if chief:
        callbacks += [cb.HistoryCSV(os.path.join(log_root, "history.csv"), hparams.log_every,
                                    start_step),
                      keras.callbacks.TensorBoard(os.path.join(log_root, "tensorboard"),
                                                  update_freq=hparams.log_every)]
        if (tensorboard_samples > 0 and hasattr(model, "encode") and hasattr(model, "decoder")
                and (not sharded or len(data["valid"]) <= data["valid"].MATERIALISE_LIMIT)):
            callbacks.append(_sample_grid_summary(model, data, hparams, log_root,
                                                  tensorboard_samples))
    if start_step < num_steps and not (state.get("bad_evals", 0)
                                               >= hparams.early_stop_patience):
        model.fit(train_ds, epochs=epochs, initial_epoch=int(state["epoch"]), steps_per_epoch=spe,
                  validation_data=valid_ds, callbacks=callbacks, verbose=verbose, shuffle=False)
    if guard.diverged_at is not None:
        raise TrainingDiverged(
            f"non-finite loss at step {guard.diverged_at} ({guard.bad_logs}); training stopped. "
            f"The last good checkpoint in {manager.ckpt_root} is intact: lower learning_rate or "
            "check the data, then resume.")
    final = checkpointer.state
    extra = {}
    if hparams.model == "sketch_a_net":
        extra = _evaluate_classifier(model, data, hparams, manager, log_root, chief)
    if export_keras and chief:
        extra = {**extra, "keras_model": export_keras_model(log_root)}
    # A resumed run that had already stopped early reports it too.
    early_stopped = (checkpointer.early_stopped
                     or final.get("bad_evals", 0) >= hparams.early_stop_patience)
    return TrainResult(log_root, int(model.optimizer.iterations.numpy()), final.get("best_step"),
                       final.get("best"), early_stopped, os.path.join(log_root, "history.csv"),
                       extra)


def _check_input(model, config):
    """A batch the model can be called on (for comparing outputs)."""
    return model.dummy_batch() if hasattr(model, "dummy_batch") else _dummy_images(config)


def export_keras_model(model_dir):
    """Write ``<model_dir>/model.keras``: the best weights in Keras' own format (no optimiser
    state), for ``keras.saving.load_model`` (safe mode) once ``sketchtk.models`` is imported.

    The file lands only when it reloads to the same outputs (checked here on a dummy batch); a
    model class that cannot rebuild its weights from its config (Keras' ``build_from_config``)
    gets a logged warning and no file. Returns the path, or None.
    """
    import warnings
    trained, config = load_trained_model(model_dir)
    fresh = build_model(config)
    _build(fresh, config)
    if [tuple(w.shape) for w in fresh.weights] != [tuple(w.shape) for w in trained.weights]:
        raise RuntimeError(f"{model_dir}: a rebuilt model does not match the trained one")
    for target, source in zip(fresh.weights, trained.weights):
        target.assign(source)
    path = os.path.join(model_dir, "model.keras")
    tmp = os.path.join(model_dir, ".tmp-model.keras")  # cleaned by the next run if left
    fresh.save(tmp)
    batch = _check_input(fresh, config)
    try:
        with warnings.catch_warnings():  # Keras warns while it calls an unbuilt reload
            warnings.simplefilter("ignore")
            reloaded = keras.saving.load_model(tmp)
            same = all(np.allclose(a, b, atol=1e-6) for a, b in zip(
                keras.tree.flatten(fresh(batch)), keras.tree.flatten(reloaded(batch))))
    except Exception as err:  # pylint: disable=broad-except  any failure means: no export
        same, why = False, f"{type(err).__name__}: {err}"
    else:
        why = "the reloaded model's outputs differ"
    if not same:
        os.remove(tmp)
        logging.info("%s: model.keras not written: %s (%s cannot rebuild its weights from "
                     "its config yet)", model_dir, why, type(fresh).__name__)
        return None
    os.replace(tmp, path)
    logging.info("wrote %s", path)
    return path


def _sample_grid_summary(model, data, hparams, log_root, num):
    """The TensorBoard sample-grid callback on the first ``num`` validation sketches."""
    # The decoding loop (sampling/sampler.py) depends only on models and data, not on the
    # sampling job that imports this module.
    from sketchtk.sampling.sampler import Sampler
    valid = data["valid"]
    # spread over the (category-ordered) validation set, so every category shows
    pick = np.unique(np.linspace(0, len(valid) - 1, min(num, len(valid))).round().astype(int))
    whole = next(iter(make_dataset(data, "valid", hparams, training=False,
                                   batch_size=len(valid))))
    batch = {k: tf.gather(v, pick) for k, v in whole.items()}
    refs = [valid.sketches[i] * np.float32([data.scale_factor, data.scale_factor, 1.0])
            for i in pick]
    samplers = {}

    def sample(m, z):
        sampler = samplers.setdefault(id(m), Sampler(m))
        return sampler.sample(z, temperature=0.24, seed=0)
    return cb.SampleGridSummary(os.path.join(log_root, "tensorboard", "validation"), batch, refs,
                                sample)


def _classifier_xy(batch):
    return images_to_input(batch["images"]), batch["labels"]


class StopAtStep(keras.callbacks.Callback):
    """Ends training once the optimiser has taken ``num_steps`` steps (``num_steps`` hparam)."""

    def __init__(self, num_steps):
        super().__init__()
        self.num_steps = num_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.num_steps:
            self.model.stop_training = True


def _evaluate_classifier(model, data, hparams, manager, log_root, chief):
    """Test accuracy of the best classifier weights, written to ``classifier_metrics.json``."""
    if os.path.exists(os.path.join(manager.best_dir, "weights.weights.h5")):
        model.load_weights(os.path.join(manager.best_dir, "weights.weights.h5"))
    test = make_dataset(data, "test", hparams, training=False).map(_classifier_xy)
    result = model.evaluate(test, verbose=0, return_dict=True)
    metrics = {"test_accuracy": float(result["accuracy"]), "test_loss": float(result["loss"]),
               "num_test": len(data["test"])}
    if chief:
        write_json_atomic(os.path.join(log_root, "classifier_metrics.json"), metrics)
    logging.info("classifier test accuracy %.4f on %d sketches", metrics["test_accuracy"],
                 metrics["num_test"])
    return metrics
