"""Tests of sketchtk.data.strokes on real sheep drawings (NumPy and TF versions, eager and in map)."""


import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data import strokes as S



@pytest.fixture(scope="module")
def sketches(sheep_sketches):
    return sheep_sketches


@pytest.fixture(scope="module")
def max_len(sketches):
    return max(len(s) for s in sketches)


def _check_stroke5(s5, s3, max_len):
    n = len(s3)
    assert s5.shape == (max_len + 1, 5)
    np.testing.assert_array_equal(s5[0], S.START_TOKEN)
    np.testing.assert_array_equal(s5[1:n + 1, :2], s3[:, :2])
    np.testing.assert_array_equal(s5[1:n + 1, 3], s3[:, 2])
    np.testing.assert_array_equal(s5[1:n + 1, 2], 1 - s3[:, 2])
    np.testing.assert_array_equal(s5[1:n + 1, 4], 0)
    np.testing.assert_array_equal(s5[n + 1:], np.tile([[0, 0, 0, 0, 1]], (max_len - n, 1)))
    # every row is a one-hot pen state
    np.testing.assert_array_equal(s5[:, 2:].sum(axis=1), 1)


def test_stroke5_round_trip_numpy(sketches, max_len):
    for s3 in sketches:
        s5 = S.stroke3_to_stroke5(s3, max_len)
        _check_stroke5(s5, s3, max_len)
        back = S.stroke5_to_stroke3(s5)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, s3.astype(np.float32))
        # without the start token too
        np.testing.assert_array_equal(S.stroke5_to_stroke3(s5[1:]), back)


def test_stroke5_full_length_has_no_padding(sketches):
    s3 = sketches[0]
    s5 = S.stroke3_to_stroke5(s3, len(s3))
    assert s5.shape == (len(s3) + 1, 5) and s5[:, 4].sum() == 0
    np.testing.assert_array_equal(S.stroke5_to_stroke3(s5), s3.astype(np.float32))


def test_tf_stroke5_matches_numpy_eager(sketches, max_len):
    for s3 in sketches[:20]:
        out = S.tf_stroke3_to_stroke5(s3.astype(np.float32), max_len)
        assert out.dtype == tf.float32 and out.shape == (max_len + 1, 5)
        np.testing.assert_array_equal(out.numpy(), S.stroke3_to_stroke5(s3, max_len))


def test_tf_stroke5_matches_numpy_in_dataset_map(sketches, max_len):
    ragged = tf.ragged.constant([s.astype(np.float32).tolist() for s in sketches],
                                ragged_rank=1, inner_shape=(3,))
    ds = tf.data.Dataset.from_tensor_slices(ragged)
    ds = ds.map(lambda s: S.tf_stroke3_to_stroke5(s, max_len))
    got = np.stack([x.numpy() for x in ds])
    expected = np.stack([S.stroke3_to_stroke5(s, max_len) for s in sketches])
    np.testing.assert_array_equal(got, expected)
    # lengths recovered from the batch, in a compiled function as the model uses it
    lengths = tf.function(S.tf_stroke5_lengths)(tf.constant(got))
    assert lengths.dtype == tf.int32
    np.testing.assert_array_equal(lengths.numpy(), [len(s) for s in sketches])


def test_tf_stroke5_lengths(sketches, max_len):
    batch = np.stack([S.stroke3_to_stroke5(s, max_len) for s in sketches[:10]])
    lengths = S.tf_stroke5_lengths(tf.constant(batch)).numpy()
    np.testing.assert_array_equal(lengths, [len(s) for s in sketches[:10]])
    # a sketch filling the whole window has no end row
    full = S.stroke3_to_stroke5(sketches[0], len(sketches[0]))[None]
    assert int(S.tf_stroke5_lengths(tf.constant(full))[0]) == len(sketches[0])
    # only the first end-of-sketch row counts (later pen-down rows are ignored)
    broken = batch[:1].copy()
    broken[0, 5] = [0, 0, 0, 0, 1]
    assert int(S.tf_stroke5_lengths(tf.constant(broken))[0]) == 4


def test_too_long(sketches):
    s3 = sketches[0]
    with pytest.raises(ValueError, match="longer than max_len"):
        S.stroke3_to_stroke5(s3, len(s3) - 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        S.tf_stroke3_to_stroke5(s3.astype(np.float32), len(s3) - 1)
    ds = tf.data.Dataset.from_tensors(s3.astype(np.float32))
    ds = ds.map(lambda s: S.tf_stroke3_to_stroke5(s, len(s3) - 1))
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(ds)


def test_offsets_absolute_round_trip(sketches):
    for s3 in sketches:
        absolute = S.to_absolute(s3)
        assert absolute.shape == s3.shape
        np.testing.assert_array_equal(absolute[:, :2], np.cumsum(s3[:, :2].astype(np.int64), axis=0))
        np.testing.assert_array_equal(absolute[:, 2], s3[:, 2])
        np.testing.assert_array_equal(S.to_offsets(absolute), s3)


def test_polylines_round_trip(sketches):
    for s3 in sketches:
        lines = S.stroke3_to_polylines(s3)
        # one polyline per pen lift (real sketches end with the pen up)
        assert s3[-1, 2] == 1
        assert len(lines) == int(s3[:, 2].sum())
        assert sum(len(line) for line in lines) == len(s3)
        np.testing.assert_array_equal(np.concatenate(lines), S.to_absolute(s3)[:, :2])
        np.testing.assert_array_equal(S.polylines_to_stroke3(lines), s3)


def test_polylines_small_example():
    s3 = np.array([[5, 5, 0], [1, 0, 1], [0, 3, 0], [2, 0, 0], [0, 1, 1]])
    lines = S.stroke3_to_polylines(s3)
    np.testing.assert_array_equal(lines[0], [[5, 5], [6, 5]])
    np.testing.assert_array_equal(lines[1], [[6, 8], [8, 8], [8, 9]])


def test_bounds(sketches):
    assert S.bounds(np.array([[3, 4, 0], [-5, 2, 0], [10, -9, 1]])) == (-2.0, 8.0, -3.0, 6.0)
    for s3 in sketches[:10]:
        points = np.cumsum(s3[:, :2].astype(np.int64), axis=0)
        assert S.bounds(s3) == (points[:, 0].min(), points[:, 0].max(),
                                points[:, 1].min(), points[:, 1].max())


def test_scale_factor(sketches):
    expected = np.std(np.concatenate([s[:, :2].ravel() for s in sketches]).astype(np.float64))
    assert S.scale_factor(sketches) == pytest.approx(expected, rel=1e-12)
    # dividing by it gives unit std
    normed = [s[:, :2] / expected for s in sketches]
    assert np.std(np.concatenate([n.ravel() for n in normed])) == pytest.approx(1.0)
    # the pen column is ignored
    flipped = [np.concatenate([s[:, :2], 1 - s[:, 2:]], axis=1) for s in sketches]
    assert S.scale_factor(flipped) == pytest.approx(expected, rel=1e-12)


def test_scale_factor_errors():
    with pytest.raises(ValueError, match="at least one"):
        S.scale_factor([])
    with pytest.raises(ValueError, match="degenerate"):
        S.scale_factor([np.array([[2, 2, 0], [2, 2, 1]])])


def test_clip_offsets(sketches):
    s3 = sketches[0].astype(np.float32).copy()
    s3[3, 0], s3[5, 1] = 5000, -1e6
    clipped = S.clip_offsets(s3, 1000)
    assert clipped[3, 0] == 1000 and clipped[5, 1] == -1000
    assert np.abs(clipped[:, :2]).max() <= 1000
    np.testing.assert_array_equal(clipped[:, 2], s3[:, 2])
    assert s3[3, 0] == 5000  # the input is not modified


def test_degenerate_reason_on_real_and_constructed_sketches(sheep_sketches):
    from sketchtk.data.strokes import degenerate_reason
    assert all(degenerate_reason(s) is None for s in sheep_sketches[:50])  # real drawings draw
    assert degenerate_reason(np.zeros((0, 3))) == "fewer_than_2_points"
    assert degenerate_reason([[3.0, 4.0, 0.0]]) == "fewer_than_2_points"
    assert degenerate_reason([[0, 0, 1], [5, 5, 1], [1, 1, 0]]) == "nothing_drawn"  # pen up
    assert degenerate_reason([[0, 0, 0], [np.nan, 1, 0]]) == "non_finite"
    assert degenerate_reason([[0, 0, 0], [5, 5, 1]]) is None  # one segment drawn
