"""The TensorBoard sample grid: references over conditional samples, written at a validation."""

import glob
import os

import numpy as np
import tensorflow as tf

from sketchtk.data.loader import load_sketch_data
from sketchtk.training.trainer import _sample_grid_summary, load_trained_model


def _images(log_dir):
    found = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("conditional_samples"):
                    png = tf.make_ndarray(value.tensor)[2]  # [width, height, png...]
                    found.append((event.step, tf.io.decode_png(png).numpy()))
    return found


def test_sample_grid_lands_in_tensorboard(smoke_run, tmp_path):
    model, config = load_trained_model(smoke_run)
    data = load_sketch_data(None, config["categories"], max_seq_len=config["max_seq_len"])
    callback = _sample_grid_summary(model, data, model.hparams, str(tmp_path), num=3)
    callback.set_model(model)
    callback.on_epoch_end(0)
    images = _images(os.path.join(str(tmp_path), "tensorboard", "validation"))
    assert len(images) == 1
    step, picture = images[0]
    assert step == int(model.optimizer.iterations.numpy())
    cell = callback.cell
    assert picture.shape == (2 * cell, 3 * cell, 1)
    top, bottom = picture[:cell - 1, :, 0], picture[cell:, :, 0]
    # each reference (real validation drawing) is drawn in its own cell of the top row
    assert all((top[:, i * cell:(i + 1) * cell] < 128).any() for i in range(3))
    # the bottom row is what the sampler drew from those codes, rendered the same way
    z = model.encode(callback.batch, training=False)[0].numpy()
    from sketchtk.render.raster import render_sketches
    expected = render_sketches(callback.sample_fn(model, z), width=cell)
    np.testing.assert_array_equal(bottom, np.concatenate(list(expected), axis=1))
