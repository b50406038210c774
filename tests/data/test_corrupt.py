"""Corruptions for healing, on real drawings."""

import numpy as np
import pytest

from sketchtk.data import strokes as stroke_ops
from sketchtk.data.corrupt import corrupt_sketch


@pytest.fixture(scope="module")
def sketch(sheep_sketches):
    return next(np.asarray(s, np.float32) for s in sheep_sketches
                if len(stroke_ops.stroke3_to_polylines(s)) >= 3)


def _radius(s):
    a = stroke_ops.to_absolute(s)[:, :2]
    return np.linalg.norm(a - a[0], axis=1).max()


def test_noise_moves_every_point_by_about_the_strength(sketch):
    out = corrupt_sketch(sketch, "noise", 0.05, seed=1)
    assert out.shape == sketch.shape
    np.testing.assert_array_equal(out[:, 2], sketch[:, 2])
    moved = stroke_ops.to_absolute(out)[:, :2] - stroke_ops.to_absolute(sketch)[:, :2]
    np.testing.assert_allclose(moved.std(), 0.05 * _radius(sketch), rtol=0.25)
    np.testing.assert_array_equal(out, corrupt_sketch(sketch, "noise", 0.05, seed=1))
    assert not np.array_equal(out, corrupt_sketch(sketch, "noise", 0.05, seed=2))


def test_jitter_shifts_whole_strokes_and_drop_removes_one(sketch):
    lines = stroke_ops.stroke3_to_polylines(sketch)
    jittered = stroke_ops.stroke3_to_polylines(corrupt_sketch(sketch, "jitter", 0.1, seed=0))
    for a, b in zip(lines, jittered):
        shift = b - a
        np.testing.assert_allclose(shift, np.repeat(shift[:1], len(shift), 0), atol=1e-4)
    dropped = stroke_ops.stroke3_to_polylines(corrupt_sketch(sketch, "drop", seed=0))
    assert len(dropped) == len(lines) - 1
    kept = [tuple(map(tuple, np.round(l, 3))) for l in lines]
    assert all(tuple(map(tuple, np.round(l, 3))) in kept for l in dropped)
    assert corrupt_sketch(sketch, "noise", 0.0)[-1, 2] == 1


def test_bad_corruption_names_the_choices(sketch):
    with pytest.raises(ValueError, match="noise"):
        corrupt_sketch(sketch, "blur")
    with pytest.raises(ValueError, match="strength"):
        corrupt_sketch(sketch, "noise", -1.0)
