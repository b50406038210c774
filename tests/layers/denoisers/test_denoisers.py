"""Every denoiser: the shared layer contract, and outputs at real points independent of padding."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.point_sequences import padded_length, to_points
from sketchtk.layers.denoisers import DENOISERS, TimeEmbedding, make_denoiser
from tests.layer_checks import check_layer

SMALL = dict(units=16, num_layers=2, num_heads=2, time_embedding_dim=8, seed=3)


@pytest.fixture(scope="module")
def batch():
    """Four short real sketches (delta points, scaled; short keeps the recurrent denoiser's test
    time down) padded to a multiple of 8, with times and conditioning vectors."""
    data = load_sketch_data(None, DEFAULT_CATEGORIES, splits=("train",), scale_factor=40.0)
    short = [s for s in data["train"].sketches if 10 <= len(s) <= 20][:4]
    sketches = [to_points(s, "delta") for s in short]
    length = padded_length(max(len(s) for s in sketches))
    x = np.zeros((4, length, 3), np.float32)
    mask = np.zeros((4, length), np.float32)
    for i, s in enumerate(sketches):
        x[i, :len(s)] = s
        mask[i, :len(s)] = 1
    t = np.array([0.05, 0.3, 0.7, 1.0], np.float32)
    cond = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    return [tf.constant(v) for v in (x, t, mask, cond)]


@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_denoiser_layer_contract(name, batch, tmp_path):
    one_layer = {**SMALL, "num_layers": 1}  # the contract does not need depth (saves test time)
    out = check_layer(lambda: make_denoiser(name, out_channels=5, **one_layer), batch, tmp_path)
    assert out.shape == (4, batch[0].shape[1], 5)
    # unconditional variant (no cond input): eager and compiled calls agree
    layer = make_denoiser(name, out_channels=3, **one_layer)
    eager = layer(*batch[:3])
    np.testing.assert_allclose(tf.function(layer)(*batch[:3]), eager, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_denoiser_output_on_real_points_ignores_padding(name, batch):
    x, t, mask, cond = batch
    layer = make_denoiser(name, out_channels=3, **SMALL)
    base = layer(x, t, mask, cond).numpy()
    # 16 more padding rows holding garbage that the mask must hide
    extra = tf.random.stateless_normal([4, 16, 3], (0, 1)) * 50
    x2 = tf.concat([x * mask[..., None] + (1 - mask[..., None]) * 7.0, extra], axis=1)
    mask2 = tf.concat([mask, tf.zeros([4, 16])], axis=1)
    if name == "unet1d":  # a convolution sees its neighbours: padding must be zero there
        x2 = x2 * mask2[..., None]
    longer = layer(x2, t, mask2, cond).numpy()
    m = mask.numpy() == 1
    np.testing.assert_allclose(longer[:, :base.shape[1]][m], base[m], atol=2e-5, rtol=1e-4)
    # and the output does depend on the real points, the time and the conditioning
    assert not np.allclose(layer(x, t[::-1], mask, cond).numpy()[m], base[m], atol=1e-4)
    assert not np.allclose(layer(x, t, mask, cond[::-1]).numpy()[m], base[m], atol=1e-4)


def test_unknown_denoiser_is_rejected_with_the_names():
    with pytest.raises(ValueError, match="bigru"):
        make_denoiser("lstm", out_channels=3, units=8, num_layers=1)


def test_time_embedding_kinds_and_contract(tmp_path):
    t = tf.constant([0.01, 0.5, 1.0])
    for kind in ("fourier", "sinusoidal"):
        out = check_layer(lambda: TimeEmbedding(8, kind, seed=1), t, tmp_path, fit=False)
        assert out.shape == (3, 8)
        np.testing.assert_allclose(np.sum(out.numpy() ** 2, axis=1), 4.0, rtol=1e-5)  # sin^2+cos^2
    with pytest.raises(ValueError, match="unknown time embedding"):
        TimeEmbedding(8, "learned")
