"""Point-sequence transform for stroke diffusion on the embedded real QuickDraw drawings."""

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.pipeline import make_dataset
from sketchtk.data.strokes import stroke3_to_polylines, to_absolute


@pytest.fixture(scope="module")
def data():
    return load_sketch_data(None, DEFAULT_CATEGORIES)


@pytest.fixture(scope="module")
def sketches(data):
    return list(data["train"].sketches[:40])


@pytest.mark.parametrize("representation", ps.REPRESENTATIONS)
def test_points_round_trip_to_stroke3_with_origin_start(sketches, representation):
    for s in sketches:
        points = ps.to_points(s, representation)
        assert points.shape == s.shape and np.all(points[0, :2] == 0)
        back = ps.from_points(points, representation)
        # same drawing up to the translation that moved the first point to the origin
        a, b = to_absolute(s), to_absolute(back)
        np.testing.assert_allclose(b[:, :2], a[:, :2] - a[:1, :2], atol=1e-4)
        np.testing.assert_array_equal(back[:, 2], s[:, 2])


@pytest.mark.parametrize("representation", ps.REPRESENTATIONS)
def test_tf_to_points_matches_numpy_eagerly_and_in_dataset_map(sketches, representation):
    for s in sketches[:5]:
        np.testing.assert_allclose(ps.tf_to_points(s, representation).numpy(),
                                   ps.to_points(s, representation), atol=1e-4)
    ragged = tf.ragged.constant([s.tolist() for s in sketches[:5]], ragged_rank=1)
    ds = tf.data.Dataset.from_tensor_slices(ragged).map(
        lambda s: ps.tf_to_points(s, representation))
    for got, s in zip(ds, sketches[:5]):
        np.testing.assert_allclose(got.numpy(), ps.to_points(s, representation), atol=1e-4)


def test_resampling_spaces_points_evenly_along_each_stroke(sketches):
    spacing = 0.05
    for s in sketches[:10]:
        out = ps.preprocess_sketch(s, resample_spacing=spacing)
        lines_in = [l for l in stroke3_to_polylines(s) if len(l) > 1]
        lines_out = stroke3_to_polylines(out)
        assert len(lines_out) == len(lines_in)  # one-point strokes dropped, the rest kept
        start = lines_in[0][0]
        radius = max(np.max(np.linalg.norm(l - start, axis=1)) for l in lines_in)
        for a, b in zip(lines_in, lines_out):
            length = np.sum(np.linalg.norm(np.diff(a, axis=0), axis=1))
            assert len(b) == max(2, int(length / (spacing * radius)))
            np.testing.assert_allclose(b[[0, -1]], a[[0, -1]], atol=1e-3)  # ends kept
            gaps = np.linalg.norm(np.diff(b, axis=0), axis=1)
            # arc-length spacing: chords never exceed the arc step, and equal it on straight runs
            assert np.all(gaps <= length / (len(b) - 1) + 1e-3)


def test_rdp_after_resampling_removes_points(sketches):
    s = sketches[0]
    dense = ps.preprocess_sketch(s, resample_spacing=0.01)
    simple = ps.preprocess_sketch(s, resample_spacing=0.01, rdp_epsilon=0.02)
    assert len(simple) < len(dense)
    assert simple[:, 2].sum() == dense[:, 2].sum()  # same strokes


def test_prepare_point_data_caps_pads_and_counts(data):
    out = ps.prepare_point_data(data, resample_spacing=0.05, max_points=120)
    assert out.max_seq_len == 120 and out.max_seq_len % ps.PAD_MULTIPLE == 0
    for split in ("train", "valid", "test"):
        assert all(2 <= len(s) <= 120 for s in out[split].sketches)
        assert len(out[split]) == len(out[split].labels)
    dropped = sum(out.dropped["train"].values()) - sum(data.dropped["train"].values())
    assert len(out["train"]) + dropped == len(data["train"])
    nocap = ps.prepare_point_data(data)
    longest = max(len(s) for sp in ("train", "valid", "test") for s in data[sp].sketches)
    assert nocap.max_seq_len == ps.padded_length(longest) >= longest


def test_point_stats_normalise_training_points(sketches):
    stats = ps.PointStats.from_sketches(sketches, "absolute")
    pts = np.concatenate([ps.to_points(s, "absolute")[:, :2] for s in sketches])
    z = (pts - np.array(stats.mean)) / np.array(stats.std)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)
    assert ps.PointStats.from_dict(stats.to_dict()) == stats


def test_length_model_draws_each_class_from_its_own_lengths(data):
    train = data["train"]
    model = ps.LengthModel.from_sketches(train.sketches, train.labels, len(DEFAULT_CATEGORIES), 200)
    assert ps.LengthModel.from_dict(model.to_dict()) == model
    for c in range(len(DEFAULT_CATEGORIES)):
        real = np.array([len(s) for s, l in zip(train.sketches, train.labels) if l == c])
        drawn = model.sample(np.full(4000, c), seed=c)
        assert set(np.unique(drawn)) <= set(np.unique(real))
        assert abs(drawn.mean() - real.mean()) < 0.1 * real.mean()
    # per-class means differ (stairs vs triangles), so the per-class tables are not the pooled one
    means = [model.mean(c) for c in range(len(DEFAULT_CATEGORIES))]
    assert max(means) > 1.3 * min(means)
    np.testing.assert_array_equal(model.sample([1, -1, 3], seed=7), model.sample([1, -1, 3], seed=7))


@pytest.mark.parametrize("representation", ps.REPRESENTATIONS)
def test_make_dataset_point_batches_and_exact_resume(data, representation):
    hp = get_preset("diffusion_smoke").replace(representation=representation, batch_size=8)
    pdata = ps.prepare_point_data(data)
    batches = list(make_dataset(pdata, "train", hp, training=True).take(3))
    for b in batches:
        assert set(b) == {"points", "mask", "labels", "lengths", "index"}
        assert b["points"].shape == (8, pdata.max_seq_len, 3)
        np.testing.assert_array_equal(b["mask"].numpy().sum(1), b["lengths"].numpy())
        pts, mask = b["points"].numpy(), b["mask"].numpy()
        assert np.all(pts[mask == 0] == 0)  # zero padding
        assert np.all(pts[:, 0, :2] == 0)  # first point at the origin
        pen = pts[..., 2][mask == 1]
        assert set(np.unique(pen)) <= {0.0, 1.0}
    resumed = list(make_dataset(pdata, "train", hp, training=True, start_step=2).take(1))
    np.testing.assert_array_equal(resumed[0]["points"], batches[2]["points"])
    valid = next(iter(make_dataset(pdata, "valid", hp, training=False)))
    first = pdata["valid"].sketches[0]
    np.testing.assert_allclose(valid["points"][0, :len(first)], ps.to_points(first, representation),
                               atol=1e-4)
