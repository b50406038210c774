"""Keras callbacks of the trainer: step history CSV, NaN guard, validation + checkpoints."""

import csv
import math
import os

import keras
import numpy as np
from absl import logging


def _scalar(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


class HistoryCSV(keras.callbacks.Callback):
    """Appends one row every ``log_every`` steps to ``path`` (``step`` first, then the logs).

    On resume, rows with a step beyond ``start_step`` (written after the last checkpoint of an
    interrupted run) are dropped so the file has each step once.
    """

    def __init__(self, path, log_every, start_step=0):
        super().__init__()
        self.path = path
        self.log_every = log_every
        self.step = start_step
        self.fields = None
        if os.path.exists(path):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.fields = list(rows[0].keys())
                rows = [r for r in rows if int(float(r["step"])) <= start_step]
                with open(path, "w", newline="") as f:
                    writer = csv.DictWriter(f, self.fields)
                    writer.writeheader()
                    writer.writerows(rows)

    def on_train_batch_end(self, batch, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())
        if self.step % self.log_every and self.step != 1:
            return
        row = {"step": self.step}
        for key, value in (logs or {}).items():
            value = _scalar(value)
            if value is not None:
                row[key] = value
        if self.fields is None:
            self.fields = list(row.keys())
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss; ``diverged_at`` records the step."""

    def __init__(self, start_step=0):
        super().__init__()
        self.step = start_step
        self.diverged_at = None
        self.bad_logs = None

    def on_train_batch_end(self, batch, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())
        loss = _scalar((logs or {}).get("loss"))
        if loss is None or math.isfinite(loss):
            return
        self.diverged_at = self.step
        self.bad_logs = {k: _scalar(v) for k, v in (logs or {}).items()}
        self.model.stop_training = True


class ValidateAndCheckpoint(keras.callbacks.Callback):
    """At each epoch end: keep the best model by ``monitor``, save a resumable checkpoint, early-stop.

    Nothing is saved once ``nan_guard`` has seen a non-finite loss, so the last good checkpoint
    stays the newest. The early-stopping counter and best value live in the checkpoint state, so
    a resumed run continues them. Unlike the reference, a failed validation does not rewind the
    weights (which would also rewind the schedules).
    """

    def __init__(self, manager, model_config_text, monitor, patience, nan_guard, state,
                 is_chief=True):
        super().__init__()
        self.manager = manager
        self.model_config_text = model_config_text
        self.monitor = monitor
        self.patience = patience
        self.nan_guard = nan_guard
        self.state = dict(state)
        self.is_chief = is_chief
        self.early_stopped = False

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.diverged_at is not None:
            return
        logs = logs or {}
        value = _scalar(logs.get(self.monitor))
        step = int(self.model.optimizer.iterations.numpy())
        self.state.update(step=step, epoch=epoch + 1)
        if value is not None and math.isfinite(value):
            if self.state.get("best") is None or value < self.state["best"]:
                self.state.update(best=value, best_step=step, bad_evals=0)
                if self.is_chief:
                    self.manager.save_best(self.model, dict(self.state), self.model_config_text)
                logging.info("step %d: %s improved to %.5f", step, self.monitor, value)
            else:
                self.state["bad_evals"] = self.state.get("bad_evals", 0) + 1
                logging.info("step %d: %s %.5f (best %.5f, %d/%d without improvement)", step,
                             self.monitor, value, self.state["best"], self.state["bad_evals"],
                             self.patience)
        if self.is_chief:
            self.manager.save(self.model, dict(self.state))
        if self.state.get("bad_evals", 0) >= self.patience:
            logging.info("early stopping at step %d", step)
            self.early_stopped = True
            self.model.stop_training = True


class SampleGridSummary(keras.callbacks.Callback):
    """At each validation, a picture of conditional samples in TensorBoard, next to the losses.

    The top row holds fixed validation sketches, the row under it what the model draws from each
    one's latent mean (the same references every time, so the rows show training progress).

    Args:
      log_dir: directory for the image summaries (the run's ``tensorboard/validation``).
      batch: a fixed validation batch dict from ``make_dataset`` (``strokes``, ``images``,
        ``lengths``; the references).
      references: the same sketches as stroke-3 (for the top row).
      sample_fn: ``(model, z) -> list of stroke-3`` (the compiled batched sampler's ``sample``).
      cell: side of one cell in pixels.
    """

    def __init__(self, log_dir, batch, references, sample_fn, cell=64):
        super().__init__()
        self.log_dir = log_dir
        self.batch = batch
        self.references = list(references)
        self.sample_fn = sample_fn
        self.cell = cell
        self._writer = None

    def grid(self):
        """uint8 ``[1, 2 * cell, n * cell, 1]``: references over samples (black on white)."""
        from sketchtk.render.raster import render_sketches
        z = self.model.encode(self.batch, training=False)[0]
        samples = self.sample_fn(self.model, np.asarray(z))
        n = len(self.references)
        images = render_sketches(self.references + list(samples), width=self.cell)
        rows = [np.concatenate(list(images[:n]), axis=1), np.concatenate(list(images[n:]), axis=1)]
        picture = np.concatenate(rows, axis=0)
        picture[self.cell - 1, :] = 160  # a grey rule between references and samples
        return picture[None, :, :, None]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default():
            tf.summary.image("conditional_samples (top: references)", self.grid(), step=step)
        self._writer.flush()
