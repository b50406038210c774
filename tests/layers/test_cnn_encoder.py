"""Tests for sketchtk.layers.cnn_encoder.DilatedCNNEncoder."""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.layers.cnn_encoder import DilatedCNNEncoder
from tests.layer_checks import check_layer


def _images(batch=2, width=48, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(-1.0, 1.0, size=(batch, width, width, 1)).astype("float32"))


def test_layer_contract(tmp_path):
    # Narrow filters keep the contract check fast; the default sizes are checked below.
    mu, sigma2 = check_layer(
        lambda: DilatedCNNEncoder(z_size=8, block_filters=(4, 8), conv_filters=(8, 16)),
        _images(), tmp_path)
    assert mu.shape == (2, 8) and sigma2.shape == (2, 8)
    assert np.all(np.asarray(sigma2) > 0.0)


def test_architecture_matches_reference():
    encoder = DilatedCNNEncoder(z_size=16)
    encoder(_images())
    norms = [w for w in encoder.weights if "norm" in w.path]
    # 2 blocks x (3 atrous + 1 down) + 2 convs = 10 instance norms, each with gamma and beta.
    assert len(norms) == 20
    assert encoder.mu_head.kernel.shape == (3 * 3 * 256, 16)
    assert encoder.sigma2_head.kernel.shape == (3 * 3 * 256, 16)
    rates = sorted(conv.dilation_rate[0] for conv in encoder.blocks[0].atrous)
    assert rates == [1, 2, 5]


def test_other_width_and_blank_images():
    encoder = DilatedCNNEncoder(z_size=4)
    mu, sigma2 = encoder(tf.ones((2, 64, 64, 1)))  # a blank canvas: constant maps
    assert encoder.mu_head.kernel.shape == (4 * 4 * 256, 4)
    assert np.all(np.isfinite(mu)) and np.all(np.asarray(sigma2) >= 1e-10)


def test_sample_reparameterisation():
    mu = tf.fill((4000, 3), 2.0)
    sigma2 = tf.constant([[0.25, 1.0, 4.0]] * 4000)
    z1 = DilatedCNNEncoder.sample(mu, sigma2, keras.random.SeedGenerator(1))
    z2 = DilatedCNNEncoder.sample(mu, sigma2, keras.random.SeedGenerator(1))
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_allclose(np.mean(z1, axis=0), [2.0, 2.0, 2.0], atol=0.1)
    np.testing.assert_allclose(np.var(z1, axis=0), [0.25, 1.0, 4.0], rtol=0.1)

    gen = keras.random.SeedGenerator(3)
    fn = tf.function(lambda: DilatedCNNEncoder.sample(mu[:2], sigma2[:2], gen))
    assert not np.allclose(fn(), fn()), "a seed generator must give fresh noise per call"

    with tf.GradientTape() as tape:
        tape.watch([mu, sigma2])
        total = tf.reduce_sum(DilatedCNNEncoder.sample(mu, sigma2, 0))
    grads = tape.gradient(total, [mu, sigma2])
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
