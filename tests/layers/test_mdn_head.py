"""Tests for sketchtk.layers.mdn_head."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers.mdn_head import MixtureDensityHead, num_mixture_of, split_mixture_params
from tests.layer_checks import check_layer


def test_layer_contract(tmp_path):
    h = tf.random.stateless_normal([2, 4, 8], seed=[1, 2])
    params = check_layer(lambda: MixtureDensityHead(num_mixture=3), h, tmp_path)
    assert params.shape == (2, 4, 21)


def test_default_output_size_is_123():
    head = MixtureDensityHead()
    assert head(tf.zeros([2, 7, 16])).shape == (2, 7, 123)
    assert head(tf.zeros([5, 16])).shape == (5, 123)


def test_split_layout_and_rho_range():
    m = 4
    raw = np.arange(2 * (6 * m + 3), dtype="float32").reshape(2, 6 * m + 3) / 10.0
    raw[:, 3 + 5 * m:] *= 100.0                 # saturating correlations
    mix = split_mixture_params(raw)
    np.testing.assert_array_equal(mix.pen_logits, raw[:, :3])
    for k, name in enumerate(["pi_logits", "mu_x", "mu_y", "log_sigma_x", "log_sigma_y"]):
        np.testing.assert_array_equal(getattr(mix, name), raw[:, 3 + k * m:3 + (k + 1) * m])
    np.testing.assert_allclose(mix.rho, np.tanh(raw[:, 3 + 5 * m:]))
    assert np.all(np.abs(np.asarray(mix.rho)) <= 1.0)


def test_num_mixture_of_rejects_bad_sizes():
    assert num_mixture_of(tf.zeros([1, 123])) == 20
    with pytest.raises(ValueError, match="6M"):
        num_mixture_of(tf.zeros([1, 10]))
    with pytest.raises(ValueError, match="num_mixture"):
        MixtureDensityHead(num_mixture=0)
