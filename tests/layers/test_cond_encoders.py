"""Conditioning encoders: the layer contract, permutation invariance of the set encoder and
padding invariance of both, on real drawings."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data import strokes as stroke_ops
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.point_sequences import padded_length, to_points
from sketchtk.layers.cond_encoders import SequenceEncoder, SetEncoder, make_cond_encoder
from tests.layer_checks import check_layer


@pytest.fixture(scope="module")
def real():
    """Three short real sketches: absolute points (for the set encoder) and delta rows."""
    data = load_sketch_data(None, DEFAULT_CATEGORIES, splits=("train",), scale_factor=40.0)
    short = [np.asarray(s, np.float32) for s in data["train"].sketches if 12 <= len(s) <= 24][:3]
    length = padded_length(max(len(s) for s in short))
    absolute = np.zeros((3, length, 2), np.float32)
    delta = np.zeros((3, length, 3), np.float32)
    mask = np.zeros((3, length), np.float32)
    for i, s in enumerate(short):
        absolute[i, :len(s)] = stroke_ops.to_absolute(s)[:, :2]
        delta[i, :len(s)] = to_points(s, "delta")
        mask[i, :len(s)] = 1.0
    return absolute, delta, mask


def test_set_encoder_layer_contract(real, tmp_path):
    absolute, _, mask = real
    out = check_layer(lambda: SetEncoder(dim=6, units=16, num_layers=1, num_heads=2),
                      [tf.constant(absolute), tf.constant(mask)], tmp_path, fit=False)
    assert out.shape == (3, 6) and np.all(np.abs(out) < 1.0)


@pytest.mark.slow
def test_sequence_encoder_layer_contract(real, tmp_path):
    _, delta, mask = real
    out = check_layer(lambda: SequenceEncoder(dim=6, units=8), [tf.constant(delta),
                                                                tf.constant(mask)], tmp_path,
                      fit=False)
    assert out.shape == (3, 6)


@pytest.mark.slow
def test_both_encoders_train_in_a_keras_fit_step(real, tmp_path):
    absolute, delta, mask = real
    check_layer(lambda: SetEncoder(dim=6, units=16, num_layers=1, num_heads=2),
                [tf.constant(absolute), tf.constant(mask)], tmp_path)
    check_layer(lambda: SequenceEncoder(dim=6, units=8), [tf.constant(delta), tf.constant(mask)],
                tmp_path)


def test_set_encoder_is_invariant_to_shuffling_the_points_but_not_to_moving_them(real):
    absolute, _, mask = real
    layer = SetEncoder(dim=8, units=16, num_layers=2, num_heads=2)
    base = layer(absolute, mask).numpy()
    rng = np.random.default_rng(0)
    shuffled = absolute.copy()
    for i in range(len(absolute)):
        n = int(mask[i].sum())
        shuffled[i, :n] = absolute[i, rng.permutation(n)]
    assert not np.allclose(shuffled, absolute)
    np.testing.assert_allclose(layer(shuffled, mask).numpy(), base, atol=1e-5)
    moved = absolute.copy()
    moved[:, 0] += 1.0  # one point displaced: a different set
    assert np.abs(layer(moved, mask).numpy() - base).max() > 1e-3


def test_encoders_ignore_padding_contents_and_amount(real):
    absolute, delta, mask = real
    for layer, x in ((SetEncoder(dim=4, units=8, num_layers=1, num_heads=2), absolute),
                     (SequenceEncoder(dim=4, units=8), delta)):
        base = layer(x, mask).numpy()
        junk = np.where(mask[..., None] > 0, x, 7.0).astype(np.float32)
        longer = np.concatenate([junk, np.full((3, 8, x.shape[-1]), -3.0, np.float32)], 1)
        longer_mask = np.concatenate([mask, np.zeros((3, 8), np.float32)], 1)
        np.testing.assert_allclose(layer(longer, longer_mask).numpy(), base, atol=1e-5)


def test_sequence_encoder_depends_on_the_order_of_the_points(real):
    _, delta, mask = real
    layer = SequenceEncoder(dim=4, units=8)
    n = int(mask[0].sum())
    reversed_rows = delta.copy()
    reversed_rows[0, :n] = delta[0, :n][::-1]
    assert np.abs(layer(reversed_rows, mask).numpy()[0] - layer(delta, mask).numpy()[0]).max() > 1e-4


def test_make_cond_encoder_names_the_choices():
    assert isinstance(make_cond_encoder("pointcloud", 4, 8), SetEncoder)
    assert isinstance(make_cond_encoder("sketch", 4, 8), SequenceEncoder)
    with pytest.raises(ValueError, match="pointcloud"):
        make_cond_encoder("class", 4, 8)


def test_norm_outputs_are_normalised_and_survive_a_config_round_trip(real):
    absolute, delta, mask = real
    for cls, x, kwargs in ((SetEncoder, absolute, dict(num_layers=1, num_heads=2)),
                           (SequenceEncoder, delta, {})):
        layer = cls(dim=6, units=8, output="norm", **kwargs)
        out = layer(x, mask).numpy()
        # unit RMS up to LayerNorm's epsilon (1e-3 on the variance)
        np.testing.assert_allclose(np.sqrt(np.mean(out ** 2, axis=1)), 1.0, atol=0.05)
        assert np.abs(out.mean(axis=1)).max() < 1e-4
        assert out.std(0).max() > 1e-3  # differs between the sketches
        copy = cls.from_config(layer.get_config())
        copy(x, mask)
        copy.set_weights(layer.get_weights())
        assert copy.get_config()["output"] == "norm"
        np.testing.assert_allclose(copy(x, mask).numpy(), out, atol=1e-5)
    # batchnorm: in training what is common to the batch is removed (every entry has mean 0 over
    # the batch; variance v / (v + 1e-3) for a pre-norm variance v); inference: moving statistics
    layer = SequenceEncoder(dim=6, units=8, output="batchnorm")
    out = layer(delta, mask, training=True).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    assert np.all(out.std(0) <= 1.0) and out.std(0).max() > 0.1
    assert not np.allclose(layer(delta, mask).numpy(), out, atol=1e-3)
    with pytest.raises(ValueError, match="batchnorm"):
        SetEncoder(dim=4, units=8, num_heads=2, output="relu")


def test_pointnet_fourier_set_encoder_is_invariant_to_order_and_padding_not_to_the_points(real):
    absolute, _, mask = real
    layer = SetEncoder(dim=6, units=8, num_layers=1, num_heads=2, output="norm", pointnet=True,
                       fourier=8)
    base = layer(absolute, mask).numpy()
    rng = np.random.default_rng(1)
    shuffled = np.full_like(absolute, 5.0)  # junk in the padding too
    for i in range(len(absolute)):
        n = int(mask[i].sum())
        shuffled[i, :n] = absolute[i, rng.permutation(n)]
    np.testing.assert_allclose(layer(shuffled, mask).numpy(), base, atol=1e-5)
    moved = absolute.copy()
    moved[:, 0] += 1.0
    assert np.abs(layer(moved, mask).numpy() - base).max() > 1e-3
    config = layer.get_config()
    assert config["pointnet"] is True and config["fourier"] == 8
    copy = SetEncoder.from_config(config)  # the same fixed frequencies from the seed
    copy(absolute, mask)
    copy.set_weights(layer.get_weights())
    np.testing.assert_allclose(copy(absolute, mask).numpy(), base, atol=1e-5)
