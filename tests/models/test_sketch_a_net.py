"""Tests for sketchtk.models.sketch_a_net (the Rec classifier)."""

import functools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data.strokes import polylines_to_stroke3
from sketchtk.models.sketch_a_net import SketchANet, preprocess_images, train_classifier
from sketchtk.render.raster import render_sketches
from tests.layer_checks import assert_outputs_close, check_layer

# Real simplified QuickDraw drawings (see tests/fixtures/quickdraw/README.md).
QUICKDRAW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                         "quickdraw", "shapes")
CATEGORIES = ("circle", "square", "triangle", "line")
TINY = {"filters": (8, 16, 16, 16, 16), "dense_units": 32, "dropout": 0.1}


def _rasterise(sketches, width=48):
    """uint8 [N, W, W] with the project renderer."""
    return render_sketches(list(sketches), width=width, renderer="fast")


def load_quickdraw_sketches(categories=CATEGORIES):
    """Real QuickDraw drawings (25 per category) as stroke-3: (list of [n, 3], int labels)."""
    sketches, labels = [], []
    for label, name in enumerate(categories):
        path = os.path.join(QUICKDRAW, f"{name}.ndjson")
        with open(path) as f:
            for line in f:
                drawing = json.loads(line)["drawing"]
                polylines = [np.stack([xs, ys], axis=1) for xs, ys in drawing]
                sketches.append(polylines_to_stroke3(polylines))
                labels.append(label)
    return sketches, np.array(labels, np.int64)


@functools.lru_cache(maxsize=None)
def load_quickdraw_images(categories=CATEGORIES):
    """``load_quickdraw_sketches`` rendered to 48x48 uint8 (cached: treat as read-only)."""
    sketches, labels = load_quickdraw_sketches(categories)
    return _rasterise(sketches), labels


def test_preprocess_scales_like_the_encoder():
    images = np.array([[[0, 255], [51, 255]]], np.uint8)
    x = preprocess_images(images)
    assert x.shape == (1, 2, 2, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, :, 0], [[-1.0, 1.0], [-0.6, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images(images.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess_images(np.zeros((2, 48, 40), np.uint8))


def test_layer_contract(tmp_path):
    x = tf.random.uniform((4, 48, 48, 1), -1.0, 1.0, seed=0)
    out = check_layer(lambda: SketchANet(num_classes=5, seed=1, **TINY), x, tmp_path)
    assert out.shape == (4, 5)


def test_keras_save_reload_gives_equal_outputs(tmp_path):
    model = SketchANet(num_classes=3, seed=2, **TINY)
    x = np.random.default_rng(0).uniform(-1, 1, (6, 48, 48, 1)).astype(np.float32)
    path = os.path.join(str(tmp_path), "sketch_a_net.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, SketchANet)
    assert reloaded.get_config() == model.get_config()
    assert_outputs_close(model(x, training=False), reloaded(x, training=False))


def test_seed_makes_models_identical_and_config_checks():
    a = SketchANet(num_classes=3, seed=7, **TINY)
    b = SketchANet(num_classes=3, seed=7, **TINY)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    with pytest.raises(ValueError, match="5 conv widths"):
        SketchANet(num_classes=3, filters=(8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        SketchANet(num_classes=1)


def test_train_classifier_learns_real_sketches():
    images, labels = load_quickdraw_images()
    model, history = train_classifier(images, labels, val_images=images[::5],
                                      val_labels=labels[::5], epochs=8, batch_size=10,
                                      learning_rate=3e-3, seed=0, model_kwargs=TINY)
    losses = history.history["loss"]
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert "val_accuracy" in history.history
    predicted = np.argmax(model(preprocess_images(images), training=False), -1)
    assert np.mean(predicted == labels) > 0.6  # 4 classes: chance is 0.25; ~0.9 seen
