"""Tests of sketchtk.data.augment (seeded TF ops), eagerly and inside ``Dataset.map``."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data import augment
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.data.strokes import scale_factor, to_absolute
from sketchtk.render.raster import render_batch

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")


@pytest.fixture(scope="module")
def sketches():
    """Real sheep, normalised like the loader does (float32, unit std offsets)."""
    train = load_stroke_npz(FIXTURE)["train"]
    sf = scale_factor(train)
    return [(s.astype(np.float32) * [1 / sf, 1 / sf, 1]).astype(np.float32) for s in train]


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _in_map(fn, sketches, seeds):
    """Apply ``fn(sketch, seed)`` inside ``Dataset.map`` over (sketch, seed) pairs."""
    ragged = tf.ragged.constant([s.tolist() for s in sketches], ragged_rank=1, inner_shape=(3,),
                                dtype=tf.float32)
    ds = tf.data.Dataset.from_tensor_slices((ragged, tf.constant(seeds, tf.int64)))
    return [x.numpy() for x in ds.map(fn)]


def _is_subsequence(rows, of, atol=1e-4):
    """Whether every row of ``rows`` matches a row of ``of``, in order."""
    j = 0
    for row in rows:
        while j < len(of) and not np.allclose(of[j], row, atol=atol):
            j += 1
        if j == len(of):
            return False
        j += 1
    return True


def test_random_scale_bounds(sketches):
    s = sketches[0]
    factors = []
    for i in range(200):
        out = augment.random_scale(s, 0.1, _seed(i)).numpy()
        assert out.shape == s.shape
        np.testing.assert_array_equal(out[:, 2], s[:, 2])
        moving = np.abs(s[:, :2]) > 1e-3
        ratio = out[:, :2][moving[:, 0] & moving[:, 1]] / s[:, :2][moving[:, 0] & moving[:, 1]]
        # one factor per axis, the same for every point
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)
        factors.append(ratio[0])
    factors = np.array(factors)
    assert factors.min() >= 0.9 - 1e-6 and factors.max() <= 1.1 + 1e-6
    # x and y drawn independently, and the range is used
    assert not np.allclose(factors[:, 0], factors[:, 1])
    assert factors.min() < 0.92 and factors.max() > 1.08


def test_random_scale_zero_is_identity(sketches):
    np.testing.assert_array_equal(augment.random_scale(sketches[1], 0.0, _seed(3)).numpy(),
                                  sketches[1])


def test_drop_points_keeps_absolute_positions(sketches):
    dropped_total = 0
    for i, s in enumerate(sketches[:16]):
        out = augment.drop_points(s, 0.3, _seed(i)).numpy()
        assert out.shape[1] == 3 and len(out) <= len(s)
        dropped_total += len(s) - len(out)
        original = to_absolute(s)
        kept = to_absolute(out)
        assert _is_subsequence(kept, original), i
        # first and last points kept
        np.testing.assert_allclose(kept[0], original[0], atol=1e-5)
        np.testing.assert_allclose(kept[-1], original[-1], atol=1e-4)
        # pen-up points are never dropped: same number of strokes
        assert out[:, 2].sum() == s[:, 2].sum()
    assert dropped_total > 100  # about 30% of the interior pen-down points


def test_drop_points_drops_exactly_the_candidates_at_prob_one(sketches):
    for s in sketches[:8]:
        out = augment.drop_points(s, 1.0, _seed(0)).numpy()
        pen = s[:, 2]
        prev = np.concatenate([[1.0], pen[:-1]])
        index = np.arange(len(s))
        candidate = (pen < 0.5) & (prev < 0.5) & (index > 0) & (index < len(s) - 1)
        np.testing.assert_allclose(to_absolute(out), to_absolute(s)[~candidate], atol=1e-4)
        # what remains: stroke starts and ends only
        assert len(out) == len(s) - candidate.sum()


def test_drop_points_zero_prob_is_identity(sketches):
    for s in sketches[:8]:
        np.testing.assert_allclose(augment.drop_points(s, 0.0, _seed(5)).numpy(), s, atol=1e-5)
    np.testing.assert_array_equal(augment.augment_strokes(sketches[0], _seed(1), 0.0, 0.0).numpy(),
                                  sketches[0])


def test_deterministic_per_seed(sketches):
    s = sketches[2]
    a = augment.augment_strokes(s, _seed(7, 11), 0.1, 0.2).numpy()
    b = augment.augment_strokes(s, _seed(7, 11), 0.1, 0.2).numpy()
    np.testing.assert_array_equal(a, b)
    c = augment.augment_strokes(s, _seed(7, 12), 0.1, 0.2).numpy()
    assert a.shape != c.shape or not np.allclose(a, c)
    d1 = augment.drop_points(s, 0.3, _seed(1)).numpy()
    d2 = augment.drop_points(s, 0.3, _seed(2)).numpy()
    assert d1.shape != d2.shape or not np.allclose(d1, d2)


def test_augment_in_dataset_map_matches_eager(sketches):
    subset = sketches[:6]
    seeds = [[3, g] for g in range(len(subset))]
    mapped = _in_map(lambda s, seed: augment.augment_strokes(s, seed, 0.1, 0.1), subset, seeds)
    for s, seed, got in zip(subset, seeds, mapped):
        eager = augment.augment_strokes(s, tf.constant(seed, tf.int64), 0.1, 0.1).numpy()
        np.testing.assert_array_equal(got, eager)
    # and the map really augmented: at least one sketch changed length
    assert any(len(g) != len(s) for g, s in zip(mapped, subset))
    # drop_points alone inside map also keeps absolute positions
    dropped = _in_map(lambda s, seed: augment.drop_points(s, 0.5, seed), subset, seeds)
    for s, got in zip(subset, dropped):
        assert _is_subsequence(to_absolute(got), to_absolute(s))


@pytest.fixture(scope="module")
def images(sketches):
    ragged = tf.ragged.constant([s.tolist() for s in sketches[:8]], ragged_rank=1, inner_shape=(3,),
                                dtype=tf.float32)
    return render_batch(ragged, 48).numpy()


def test_image_transform_identity_at_defaults(images):
    out = augment.image_transform(images, _seed(4))
    assert out.dtype == tf.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out.numpy(), images)


def test_image_transform_white_fill(images):
    black = np.zeros((2, 48, 48), np.uint8)
    shrunk = augment.image_transform(black, _seed(1), scale_ratio=0.5).numpy()
    # shrinking by at least a little leaves a white border where nothing maps
    assert (shrunk[:, 0, :] == 255).all() and (shrunk[:, :, -1] == 255).all()
    assert (shrunk[:, 24, 24] == 0).all()
    shifted = augment.image_transform(black, _seed(2), translate_px=10.0).numpy()
    assert (shifted == 255).any() and (shifted == 0).any()
    rotated = augment.image_transform(black, _seed(3), rotate_degrees=45.0).numpy()
    assert (rotated[:, 0, 0] == 255).all()


def test_image_transform_real_images(images):
    a = augment.image_transform(images, _seed(9), 0.9, 10.0, 2.0).numpy()
    b = augment.image_transform(images, _seed(9), 0.9, 10.0, 2.0).numpy()
    c = augment.image_transform(images, _seed(10), 0.9, 10.0, 2.0).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, images)
    # still a drawing: about as much ink, black on white
    ink_before = (255 - images.astype(np.float64)).sum(axis=(1, 2))
    ink_after = (255 - a.astype(np.float64)).sum(axis=(1, 2))
    np.testing.assert_allclose(ink_after, ink_before, rtol=0.35)
    # inside Dataset.map (per batch, as the pipeline applies it)
    ds = tf.data.Dataset.from_tensors(images).map(
        lambda x: augment.image_transform(x, _seed(9), 0.9, 10.0, 2.0))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), a)
