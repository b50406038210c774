"""Tests for sketchtk.layers.rnn_encoder.BiLSTMEncoder."""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.layers.rnn_encoder import BiLSTMEncoder
from tests.layer_checks import check_layer


def _strokes(batch=3, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((batch, steps, 5), "float32")
    x[..., :2] = rng.normal(size=(batch, steps, 2))
    x[np.arange(batch)[:, None], np.arange(steps)[None], rng.integers(0, 3, (batch, steps)) + 2] = 1
    return x


def test_layer_contract(tmp_path):
    strokes = tf.constant(_strokes())
    lengths = tf.constant([7, 4, 1], tf.int32)
    mu, sigma2 = check_layer(lambda: BiLSTMEncoder(enc_rnn_size=8, z_size=4),
                             [strokes, lengths], tmp_path)
    assert mu.shape == (3, 4) and sigma2.shape == (3, 4)
    assert np.all(np.asarray(sigma2) > 0.0)


def test_padding_is_masked():
    encoder = BiLSTMEncoder(enc_rnn_size=6, z_size=3)
    # Large head weights so that a leak of padding into h would show in mu.
    x = _strokes(batch=2, steps=9, seed=1)
    encoder(x, tf.constant([9, 9]))
    encoder.mu_head.kernel.assign(np.ones((12, 3), "float32"))
    garbage = x.copy()
    garbage[:, 5:] = 7.0  # rows past the length must not matter ...
    mu_pad, s_pad = encoder(garbage, tf.constant([5, 5]))
    mu_cut, s_cut = encoder(x[:, :5])  # ... it equals the truncated sequence
    np.testing.assert_allclose(mu_pad, mu_cut, atol=1e-6)
    np.testing.assert_allclose(s_pad, s_cut, atol=1e-6)
    mu_full, _ = encoder(garbage, tf.constant([9, 9]))
    assert not np.allclose(mu_full, mu_cut, atol=1e-3)


def test_sigma2_is_exp_presig():
    encoder = BiLSTMEncoder(enc_rnn_size=4, z_size=2)
    x = _strokes(batch=2, steps=3)
    _, sigma2 = encoder(x)
    h = encoder.rnn(x)
    np.testing.assert_allclose(sigma2, np.exp(encoder.presig_head(h)), rtol=1e-5)
    # The heads start near zero (sketch-rnn's gaussian 0.001 init): sigma2 ~ 1, mu ~ 0.
    np.testing.assert_allclose(sigma2, 1.0, atol=0.05)


def test_sample_shape():
    encoder = BiLSTMEncoder(enc_rnn_size=4, z_size=2)
    mu, sigma2 = encoder(_strokes(batch=2, steps=3))
    z = BiLSTMEncoder.sample(mu, sigma2, keras.random.SeedGenerator(0))
    assert z.shape == (2, 2)
