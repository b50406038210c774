"""GaussianProcess: q(x_t | x_0) moments, parametrisations, posterior, masked loss."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.point_sequences import to_points
from sketchtk.diffusion.process import GaussianProcess, masked_sequence_mse


def test_q_sample_moments_match_alphabar():
    process = GaussianProcess(100, "linear")
    x0 = tf.constant(np.linspace(-2, 2, 7, dtype=np.float32).reshape(1, 7, 1))
    x0 = tf.tile(x0, [20000, 1, 1])
    for t in (0, 30, 99):
        noise = tf.random.stateless_normal(x0.shape, (1, t))
        xt = process.q_sample(x0, tf.fill([20000], t), noise).numpy()
        ab = process.schedule.alphabar[t]
        np.testing.assert_allclose(xt.mean(0)[:, 0], np.sqrt(ab) * x0[0, :, 0], atol=0.03)
        np.testing.assert_allclose(xt.std(0)[:, 0], np.sqrt(1 - ab), rtol=0.03, atol=2e-3)


@pytest.mark.parametrize("parametrisation", ["eps", "x0", "v"])
def test_predict_inverts_the_training_target(parametrisation):
    process = GaussianProcess(50, "cosine", parametrisation)
    x0 = tf.random.stateless_normal([4, 9, 3], (0, 1))
    noise = tf.random.stateless_normal([4, 9, 3], (0, 2))
    t = tf.constant([0, 10, 25, 48])
    xt = process.q_sample(x0, t, noise)
    x0_hat, eps_hat = process.predict(process.target(x0, noise, t), xt, t)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
    np.testing.assert_allclose(eps_hat, noise, atol=2e-3)


def test_posterior_matches_the_one_step_formula():
    process = GaussianProcess(100, "linear")
    s = process.schedule
    t = np.array([1, 20, 99])
    x0 = tf.random.stateless_normal([3, 5, 2], (3, 1))
    xt = tf.random.stateless_normal([3, 5, 2], (3, 2))
    mean, var = process.posterior(x0, xt, tf.constant(t), tf.constant(t - 1))
    c0 = np.sqrt(s.alphabar_prev[t]) * s.betas[t] / (1 - s.alphabar[t])
    ct = np.sqrt(s.alphas[t]) * (1 - s.alphabar_prev[t]) / (1 - s.alphabar[t])
    np.testing.assert_allclose(mean, c0[:, None, None] * x0 + ct[:, None, None] * xt, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(var[:, 0, 0], s.posterior_variance[t], rtol=1e-4)
    # to the data (t_prev = -1) the posterior is x0 itself
    mean, var = process.posterior(x0, xt, tf.constant(t), tf.constant([-1, -1, -1]))
    np.testing.assert_allclose(mean, x0, atol=1e-5)
    np.testing.assert_allclose(var, 0, atol=1e-7)


def test_mask_makes_the_loss_independent_of_padding():
    data = load_sketch_data(None, DEFAULT_CATEGORIES, splits=("train",), scale_factor=40.0)
    sketches = [to_points(s, "delta") for s in data["train"].sketches[:6]]
    process = GaussianProcess(100)

    def loss_with(pad_len, pad_value):
        n = max(len(s) for s in sketches)
        x0 = np.full((6, n + pad_len, 3), pad_value, np.float32)
        pred = np.full_like(x0, -pad_value)
        mask = np.zeros((6, n + pad_len), np.float32)
        rng = np.random.default_rng(0)
        noise = np.full_like(x0, 3 * pad_value)
        for i, s in enumerate(sketches):
            x0[i, :len(s)] = s
            mask[i, :len(s)] = 1
            noise[i, :len(s)] = rng.standard_normal((len(s), 3))
            pred[i, :len(s)] = 0.5 * noise[i, :len(s)]
        t = tf.constant([3, 10, 50, 70, 90, 99])
        return process.loss(tf.constant(pred), tf.constant(x0), tf.constant(noise), t,
                            tf.constant(mask)).numpy()

    base = loss_with(0, 0.0)
    np.testing.assert_allclose(loss_with(17, 0.0), base, rtol=1e-6)
    np.testing.assert_allclose(loss_with(17, 55.0), base, rtol=1e-6)
    # and it is each sequence's mean over its own points: 0.25 * mean(noise^2)
    assert np.all((base > 0.1) & (base < 0.5))


def test_masked_mse_is_the_mean_over_real_points():
    pred = tf.constant([[[1.0, 1.0], [3.0, 3.0], [9.0, 9.0]]])
    mask = tf.constant([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(masked_sequence_mse(pred, tf.zeros_like(pred), mask), [5.0])
