"""Tests of sketchtk.data.pipeline.make_dataset on real sheep drawings (two categories)."""

import os

import numpy as np
import pytest
import tensorflow as tf

import hparams
from sketchtk.data import augment
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import load_stroke_npz, save_stroke_npz
from sketchtk.data.pipeline import make_dataset
from sketchtk.data.strokes import START_TOKEN, stroke3_to_stroke5, stroke5_to_stroke3
from sketchtk.render.raster import render_batch

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")
BATCH = 8
KEYS = ("strokes", "images", "labels", "lengths", "index")


@pytest.fixture(scope="module")
def raw():
    """{category: {split: int16 sketches}}: the first and second half of every fixture split."""
    sheep = load_stroke_npz(FIXTURE)
    return {name: {s: v[part * len(v) // 2:(part + 1) * len(v) // 2] for s, v in sheep.items()}
            for part, name in enumerate(("sheep_a", "sheep_b"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory, raw):
    directory = tmp_path_factory.mktemp("pipeline")
    for name, splits in raw.items():
        save_stroke_npz(directory / f"{name}.npz", splits)
    return load_sketch_data(directory, ["sheep_a", "sheep_b"])


@pytest.fixture(scope="module")
def hp():
    """Small batches, the paper's stroke augmentation (scale 0.1, drop 0.1), no image-only one."""
    hp = hparams.get_preset("smoke").replace(categories=("sheep_a", "sheep_b"), batch_size=BATCH,
                                             seed=5)
    assert hp.random_scale_factor > 0 and hp.augment_stroke_prob > 0 and hp.png_scale_ratio == 1
    return hp


def _take(ds, count):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(count)]


@pytest.fixture(scope="module")
def train_batches(data, hp):
    """A full pass over the 64 training sketches plus one batch of the next pass."""
    return _take(make_dataset(data, "train", hp, training=True), 64 // BATCH + 1)


def _stroke3_rows(batch):
    """Undo stroke-5: the stroke-3 sketch of every row of a batch."""
    out = []
    for s5, n in zip(batch["strokes"], batch["lengths"]):
        s3 = stroke5_to_stroke3(s5)
        assert len(s3) == n
        out.append(s3)
    return out


def _ragged(sketches):
    return tf.ragged.constant([s.tolist() for s in sketches], ragged_rank=1, inner_shape=(3,),
                              dtype=tf.float32)


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_shapes_and_dtypes(train_batches, data):
    for batch in train_batches:
        assert set(KEYS) <= set(batch)
        assert batch["strokes"].shape == (BATCH, data.max_seq_len + 1, 5)
        assert batch["strokes"].dtype == np.float32
        assert batch["images"].shape == (BATCH, 48, 48) and batch["images"].dtype == np.uint8
        assert batch["labels"].shape == (BATCH,) and batch["labels"].dtype == np.int32
        assert batch["lengths"].shape == (BATCH,) and batch["lengths"].dtype == np.int32


def test_stroke5_validity(train_batches, data):
    for batch in train_batches:
        for s5, n in zip(batch["strokes"], batch["lengths"]):
            assert 2 <= n <= data.max_seq_len
            np.testing.assert_array_equal(s5[0], START_TOKEN)
            pen = s5[:, 2:]
            np.testing.assert_array_equal(pen.sum(axis=1), 1)  # one-hot everywhere
            assert set(np.unique(pen)) == {0.0, 1.0}
            np.testing.assert_array_equal(pen[1:n + 1, 2], 0)  # real points
            np.testing.assert_array_equal(s5[n + 1:], np.tile([[0, 0, 0, 0, 1]], (len(s5) - n - 1, 1)))
            assert pen[n, 1] == 1  # a real sheep ends with the pen up, augmented or not
            assert np.abs(s5[1:n + 1, :2]).sum() > 0


def test_images_are_rendered_from_the_augmented_strokes(train_batches, data, hp):
    changed_strokes = changed_images = 0
    for step, batch in enumerate(train_batches[:3]):
        rows = _stroke3_rows(batch)
        np.testing.assert_array_equal(batch["images"], render_batch(_ragged(rows), 48).numpy())
        originals = [data["train"].sketches[i] for i in batch["index"]]
        for row, (g, original) in enumerate(zip(range(step * BATCH, (step + 1) * BATCH), originals)):
            # the documented contract: example g is augmented with seed (seed, g)
            expected = augment.augment_strokes(original, tf.constant([hp.seed, g], tf.int64),
                                               hp.random_scale_factor, hp.augment_stroke_prob)
            np.testing.assert_allclose(rows[row], expected.numpy(), rtol=1e-6, atol=1e-6)
            changed_strokes += rows[row].shape != original.shape or not np.allclose(rows[row], original)
        plain = render_batch(_ragged(originals), 48).numpy()
        changed_images += int((plain != batch["images"]).any(axis=(1, 2)).sum())
    assert changed_strokes == 3 * BATCH
    assert changed_images > BATCH  # the images follow the augmentation, not the stored sketch


def test_training_order_is_a_permutation_per_pass(train_batches, data):
    n = len(data["train"])
    first_pass = np.concatenate([b["index"] for b in train_batches[:n // BATCH]])
    assert sorted(first_pass.tolist()) == list(range(n))
    assert first_pass.tolist() != list(range(n))  # shuffled
    assert train_batches[n // BATCH]["index"].tolist() != first_pass[:BATCH].tolist()


def test_labels_match_categories(train_batches, data, raw):
    n_a = len(raw["sheep_a"]["train"])
    for batch in train_batches:
        np.testing.assert_array_equal(batch["labels"], data["train"].labels[batch["index"]])
        np.testing.assert_array_equal(batch["labels"], (batch["index"] >= n_a).astype(np.int32))
    labels = np.concatenate([b["labels"] for b in train_batches])
    assert set(labels.tolist()) == {0, 1}


def test_deterministic_under_the_seed(train_batches, data, hp):
    again = _take(make_dataset(data, "train", hp, training=True), 3)
    _assert_same_batches(again, train_batches[:3])
    other = _take(make_dataset(data, "train", hp.replace(seed=6), training=True), 1)
    assert other[0]["index"].tolist() != train_batches[0]["index"].tolist()


def test_resume_equals_fresh_run(data, hp):
    # image-only augmentation on too, so the per-step image seed is covered as well
    hp = hp.replace(png_scale_ratio=0.9, png_rotate_angle=10.0, png_translate_dist=2.0)
    fresh = _take(make_dataset(data, "train", hp, training=True), 5)
    resumed = _take(make_dataset(data, "train", hp, training=True, start_step=3), 2)
    _assert_same_batches(resumed, fresh[3:5])
    # the image is the rendered strokes moved by image_transform with seed (seed + 1, step)
    batch = fresh[4]
    rendered = render_batch(_ragged(_stroke3_rows(batch)), 48)
    moved = augment.image_transform(rendered, tf.constant([hp.seed + 1, 4], tf.int64),
                                    hp.png_scale_ratio, hp.png_rotate_angle, hp.png_translate_dist)
    # eager vs in-graph bilinear sampling may round a pixel differently
    np.testing.assert_allclose(batch["images"], moved.numpy(), atol=1)
    assert not np.array_equal(batch["images"], rendered.numpy())


@pytest.fixture(scope="module")
def valid_batches(data, hp):
    return _take(make_dataset(data, "valid", hp, training=False, batch_size=6), 100)


def test_validation_pass_covers_each_sketch_once_in_order(valid_batches, data, raw):
    n = len(data["valid"])
    assert n == 16
    assert [len(b["index"]) for b in valid_batches] == [6, 6, 4]  # last partial batch kept
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in valid_batches]), np.arange(n))
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in valid_batches]),
                                  [0] * 8 + [1] * 8)
    strokes = np.concatenate([b["strokes"] for b in valid_batches])
    expected = np.stack([stroke3_to_stroke5(s, data.max_seq_len) for s in data["valid"].sketches])
    np.testing.assert_array_equal(strokes, expected)  # not augmented
    # in data units again, they are the file's drawings of the right category
    for i, category in ((0, "sheep_a"), (9, "sheep_b")):
        restored = stroke5_to_stroke3(strokes[i]) * [data.scale_factor, data.scale_factor, 1]
        np.testing.assert_allclose(restored, raw[category]["valid"][i % 8], atol=1e-3)
    images = np.concatenate([b["images"] for b in valid_batches])
    np.testing.assert_array_equal(images, render_batch(_ragged(data["valid"].sketches), 48).numpy())


def test_prerendered_images(data, hp, valid_batches):
    rendered = np.concatenate([b["images"] for b in valid_batches])
    # distinct stand-ins prove the stored images are used rather than re-rendered
    stored = 255 - rendered
    got = _take(make_dataset(data, "valid", hp, training=False, batch_size=6, images=stored), 100)
    np.testing.assert_array_equal(np.concatenate([b["images"] for b in got]), stored)
    np.testing.assert_array_equal(np.concatenate([b["strokes"] for b in got]),
                                  np.concatenate([b["strokes"] for b in valid_batches]))
    # training without stroke augmentation may use them too, aligned by index
    plain = hp.replace(random_scale_factor=0.0, augment_stroke_prob=0.0)
    train_images = np.arange(len(data["train"]), dtype=np.uint8)[:, None, None] * np.ones(
        (1, 48, 48), np.uint8)
    batch = _take(make_dataset(data, "train", plain, training=True, images=train_images), 1)[0]
    np.testing.assert_array_equal(batch["images"][:, 0, 0], batch["index"])
    with pytest.raises(ValueError, match="augmentation"):
        make_dataset(data, "train", hp, training=True, images=train_images)


def test_repeat_override(data, hp, train_batches):
    # one shuffled, augmented pass: the endless stream's first n // B batches, then the end
    one_pass = _take(make_dataset(data, "train", hp, training=True, repeat=False), 100)
    n = len(data["train"])
    assert len(one_pass) == n // BATCH
    _assert_same_batches(one_pass, train_batches[:n // BATCH])
    indices = np.concatenate([b["index"] for b in one_pass])
    assert sorted(indices.tolist()) == list(range(n)) and indices.tolist() != list(range(n))
    # a repeated validation stream cycles through the split in order
    valid = _take(make_dataset(data, "valid", hp, training=False, batch_size=6, repeat=True), 4)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in valid]),
                                  np.arange(24) % len(data["valid"]))
