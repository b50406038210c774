"""Tests for sketchtk.metrics.recognition (Rec)."""

import os

import numpy as np
import pytest

from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.metrics.recognition import predict_labels, recognition_accuracy
from sketchtk.models.sketch_a_net import SketchANet, preprocess_images, train_classifier
from tests.models.test_sketch_a_net import TINY, _rasterise, load_quickdraw_sketches

SHEEP = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "sheep_small.npz")
CATEGORIES = ["circle", "square", "triangle", "line", "sheep"]


@pytest.fixture(scope="module")
def trained():
    """A tiny SketchANet trained a few steps on real QuickDraw + Sheep Market drawings."""
    sketches, labels = load_quickdraw_sketches(tuple(CATEGORIES[:4]))
    sheep = load_stroke_npz(SHEEP)
    num_qd, num_sheep_train = len(sketches), 25
    # One renderer call for everything (its first call traces).
    images = _rasterise(sketches + sheep["train"][:num_sheep_train] + sheep["test"])
    labels = np.concatenate([labels, np.full(len(images) - num_qd, 4)])
    train = slice(0, num_qd + num_sheep_train)
    model, _ = train_classifier(images[train], labels[train], epochs=3, batch_size=10,
                                learning_rate=3e-3, seed=0, model_kwargs=TINY)
    # Every 3rd training image plus the held-out sheep: a mix of right and wrong predictions.
    evaluate = np.concatenate([np.arange(0, train.stop, 3), np.arange(train.stop, len(images))])
    return model, images[evaluate], labels[evaluate]


def test_rec_equals_direct_classifier_accuracy(trained):
    model, images, labels = trained
    result = recognition_accuracy(model, images, labels, CATEGORIES, batch_size=16)
    x = images.astype(np.float32)[..., None] / 255.0 * 2.0 - 1.0  # scaled independently
    direct = np.argmax(model.predict(x, verbose=0), axis=-1)
    assert result["rec"] == pytest.approx(np.mean(direct == labels))
    for index, name in enumerate(CATEGORIES):
        mask = labels == index
        assert result["per_category"][name] == pytest.approx(np.mean(direct[mask] == index))
        assert result["counts"][name] == mask.sum()
    assert 0.0 <= result["rec"] <= 1.0


def test_rec_accepts_channel_axis_and_batches_consistently(trained):
    model, images, labels = trained
    a = recognition_accuracy(model, images, labels, CATEGORIES, batch_size=7)
    b = recognition_accuracy(model, images[..., None], labels, CATEGORIES, batch_size=256)
    assert a == b
    np.testing.assert_array_equal(
        predict_labels(model, images),
        np.argmax(model(preprocess_images(images), training=False), -1))


def test_missing_category_is_left_out():
    model = SketchANet(num_classes=3, seed=0, **TINY)
    images = np.full((4, 48, 48), 255, np.uint8)
    result = recognition_accuracy(model, images, np.array([0, 0, 1, 1]), ["a", "b", "c"])
    assert set(result["per_category"]) == {"a", "b"} and result["counts"]["c"] == 0


@pytest.mark.parametrize("labels, categories, message", [
    (np.array([0, 3]), ["a", "b", "c"], r"labels must lie in \[0, 3\)"),
    (np.array([0]), ["a", "b", "c"], "shape"),
    (np.array([0, 1]), ["a", "b"], "3 outputs"),
])
def test_bad_inputs_raise(labels, categories, message):
    model = SketchANet(num_classes=3, seed=0, **TINY)
    with pytest.raises(ValueError, match=message):
        recognition_accuracy(model, np.zeros((2, 48, 48), np.uint8), labels, categories)


def test_float_images_are_rejected():
    model = SketchANet(num_classes=2, seed=0, **TINY)
    with pytest.raises(ValueError, match="uint8"):
        recognition_accuracy(model, np.zeros((2, 48, 48), np.float32), np.array([0, 1]),
                             ["a", "b"])
