"""Tests for sketchtk.layers.deconv_decoder.DeconvDecoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers.deconv_decoder import DeconvDecoder
from sketchtk.losses.latent import deconv_loss
from tests.layer_checks import check_layer


def test_layer_contract(tmp_path):
    z = tf.random.stateless_normal((2, 8), seed=(1, 2))
    out = check_layer(lambda: DeconvDecoder(base_channels=16, filters=(8, 8, 4)), z, tmp_path)
    assert out.shape == (2, 48, 48, 1)
    assert np.all(np.abs(np.asarray(out)) < 1.0)


def test_default_architecture():
    decoder = DeconvDecoder()
    out = decoder(tf.zeros((1, 8)))
    assert out.shape == (1, 48, 48, 1)
    assert decoder.project.kernel.shape == (8, 3 * 3 * 256)
    assert [d.filters for d in decoder.deconvs] == [128, 64, 32]


def test_other_width():
    decoder = DeconvDecoder(image_width=32, base_channels=16, filters=(8, 4, 2))
    out = decoder(tf.zeros((3, 5)))
    assert out.shape == (3, 32, 32, 1)
    assert decoder.project.kernel.shape == (5, 2 * 2 * 16)
    with pytest.raises(ValueError, match="divisible by 16"):
        DeconvDecoder(image_width=50)


def test_learns_to_reconstruct():
    images = -tf.ones((2, 48, 48, 1))  # something that can only be hit by moving the weights
    decoder = DeconvDecoder(base_channels=32, filters=(16, 8, 4))
    z = tf.random.stateless_normal((2, 4), seed=(3, 4))
    optimizer = keras.optimizers.Adam(1e-2)
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = deconv_loss(images, decoder(z))
        grads = tape.gradient(loss, decoder.trainable_weights)
        optimizer.apply_gradients(zip(grads, decoder.trainable_weights))
        losses.append(float(loss))
    assert losses[-1] < losses[0]
