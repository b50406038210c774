"""Tests for sketchtk.losses.reconstruction."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from sketchtk.losses import reconstruction as rl


def _params(pen, pi, mu_x, mu_y, log_sx, log_sy, rho_raw):
    """Raw params ``[..., 6M + 3]`` from parts (each ``[..., M]``, pen ``[..., 3]``)."""
    return np.concatenate([pen, pi, mu_x, mu_y, log_sx, log_sy, rho_raw], -1).astype("float32")


def _np_log_normal(x, y, mx, my, sx, sy, rho):
    """Graves (2013) eq. 24-25, written directly."""
    zx, zy = (x - mx) / sx, (y - my) / sy
    z = zx ** 2 + zy ** 2 - 2 * rho * zx * zy
    return -z / (2 * (1 - rho ** 2)) - np.log(2 * math.pi * sx * sy * np.sqrt(1 - rho ** 2))


def test_bivariate_log_prob_matches_formula_and_tfp():
    rng = np.random.default_rng(0)
    x, y, mx, my = rng.normal(size=(4, 50)).astype("float32")
    log_sx, log_sy = rng.uniform(-1.5, 1.0, size=(2, 50)).astype("float32")
    rho = rng.uniform(-0.95, 0.95, size=50).astype("float32")
    got = rl.bivariate_normal_log_prob(x, y, mx, my, log_sx, log_sy, rho)
    np.testing.assert_allclose(got, _np_log_normal(x, y, mx, my, np.exp(log_sx), np.exp(log_sy),
                                                   rho), rtol=1e-4, atol=1e-4)
    sx, sy = np.exp(log_sx), np.exp(log_sy)
    cov = np.stack([np.stack([sx * sx, rho * sx * sy], -1),
                    np.stack([rho * sx * sy, sy * sy], -1)], -2)
    mvn = tfp.distributions.MultivariateNormalTriL(np.stack([mx, my], -1),
                                                    tf.linalg.cholesky(cov))
    np.testing.assert_allclose(got, mvn.log_prob(np.stack([x, y], -1)), rtol=1e-4, atol=1e-4)


def test_one_component_nll_is_minus_log_density():
    # One step, one component: mu = (0.5, -1), sigma = (2, 0.5), rho = tanh(0.3).
    target = np.array([[[1.0, -0.5, 1, 0, 0]]], "float32")
    params = _params([[[0.1, 0.2, 0.3]]], [[[5.0]]], [[[0.5]]], [[[-1.0]]], [[[math.log(2.0)]]],
                     [[[math.log(0.5)]]], [[[0.3]]])
    rho = math.tanh(0.3)
    zx, zy = (1.0 - 0.5) / 2.0, (-0.5 + 1.0) / 0.5
    z = zx * zx + zy * zy - 2 * rho * zx * zy
    want = z / (2 * (1 - rho * rho)) + math.log(2 * math.pi * 2.0 * 0.5 * math.sqrt(1 - rho * rho))
    np.testing.assert_allclose(rl.offset_nll(target, params, "exact"), [[want]], rtol=1e-5)
    np.testing.assert_allclose(rl.offset_nll(target, params), [[-math.log(math.exp(-want) + 1e-6)]],
                               rtol=1e-5)
    logits = np.array([0.1, 0.2, 0.3])
    want_pen = -(0.1 - math.log(np.exp(logits).sum()))
    np.testing.assert_allclose(rl.pen_cross_entropy(target, params), [[want_pen]], rtol=1e-5)


def test_mixture_nll_matches_log_of_weighted_sum():
    rng = np.random.default_rng(1)
    m = 3
    pi = rng.normal(size=(2, 4, m))
    mx, my = rng.normal(size=(2, 2, 4, m))
    log_sx, log_sy = rng.uniform(-1, 0.5, size=(2, 2, 4, m))
    rho_raw = rng.normal(size=(2, 4, m))
    targets = np.zeros((2, 4, 5), "float32")
    targets[..., :2] = rng.normal(size=(2, 4, 2))
    targets[..., 2] = 1.0
    params = _params(rng.normal(size=(2, 4, 3)), pi, mx, my, log_sx, log_sy, rho_raw)
    weights = np.exp(pi) / np.exp(pi).sum(-1, keepdims=True)
    dens = np.exp(_np_log_normal(targets[..., :1], targets[..., 1:2], mx, my, np.exp(log_sx),
                                 np.exp(log_sy), np.tanh(rho_raw)))
    want = -np.log((weights * dens).sum(-1))
    np.testing.assert_allclose(rl.offset_nll(targets, params, "exact"), want, rtol=1e-4, atol=1e-5)
    # Both reference codes: -log(sum pi N + 1e-6) (RPCL-pix2seq model.py 337-340).
    want_ref = -np.log((weights * dens).sum(-1) + 1e-6)
    np.testing.assert_allclose(rl.offset_nll(targets, params), want_ref, rtol=1e-4, atol=1e-5)


def test_reconstruction_loss_masks_offsets_sums_time_means_batch():
    rng = np.random.default_rng(2)
    m = 2
    targets = np.zeros((3, 5, 5), "float32")
    targets[..., :2] = rng.normal(size=(3, 5, 2))
    targets[..., 2] = 1.0
    lengths = [5, 3, 1]
    for b, n in enumerate(lengths):           # rows past the end: (0, 0, 0, 0, 1)
        targets[b, n:] = (0, 0, 0, 0, 1)
    params = rng.normal(size=(3, 5, 6 * m + 3)).astype("float32")
    total, offsets, pen = rl.reconstruction_loss(tf.constant(targets), tf.constant(params))
    nll = np.asarray(rl.offset_nll(targets, params))
    xent = np.asarray(rl.pen_cross_entropy(targets, params))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(nll[b, n:], 0.0)
    assert np.all(xent > 0)                   # padding rows keep their pen loss (sketch-rnn)
    np.testing.assert_allclose(offsets, nll.sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(pen, xent.sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(total, offsets + pen, rtol=1e-6)
    _, _, pen_masked = rl.reconstruction_loss(targets, params, mask_padding=True)
    want = sum(xent[b, :n].sum() for b, n in enumerate(lengths)) / 3
    np.testing.assert_allclose(pen_masked, want, rtol=1e-5)


@pytest.mark.parametrize("rho_raw,log_sigma,offset", [
    (30.0, 0.0, 1.0),      # rho -> +1 (tanh saturates to exactly 1.0 in float32)
    (-30.0, 0.0, -1.0),    # rho -> -1
    (0.0, -60.0, 3.0),     # sigma ~ 1e-26 with the target far away
    (20.0, -15.0, 100.0),  # both, and a huge offset
    (0.0, 60.0, 0.0),      # sigma ~ 1e26
])
def test_extreme_parameters_give_finite_loss_and_gradients(rho_raw, log_sigma, offset):
    m = 2
    targets = tf.constant([[[offset, -offset, 1, 0, 0], [0, 0, 0, 0, 1]]], tf.float32)
    params = tf.Variable(_params([[[0, 0, 0]] * 2], [[[0, 40]] * 2], [[[0, 0]] * 2],
                                 [[[0, 0]] * 2], [[[log_sigma] * m] * 2], [[[log_sigma] * m] * 2],
                                 [[[rho_raw] * m] * 2]))
    with tf.GradientTape() as tape:
        total, offsets, pen = rl.reconstruction_loss(targets, params)
    grad = tape.gradient(total, params)
    assert np.isfinite(total) and np.isfinite(offsets) and np.isfinite(pen)
    assert np.all(np.isfinite(grad))


def test_far_outlier_reference_nll_is_capped_and_exact_nll_does_not_underflow():
    """The references' log(sum pi N + 1e-6) saturates at -log(1e-6) = 13.8 (the default); the
    exact log-space form keeps the true NLL."""
    targets = tf.constant([[[50.0, 0.0, 1, 0, 0]]])
    params = _params([[[0, 0, 0]]], [[[0.0]]], [[[0.0]]], [[[0.0]]], [[[0.0]]], [[[0.0]]],
                     [[[0.0]]])
    nll = float(rl.offset_nll(targets, params, "exact")[0, 0])
    np.testing.assert_allclose(nll, 50.0 ** 2 / 2 + math.log(2 * math.pi), rtol=1e-5)
    capped = float(rl.offset_nll(targets, params)[0, 0])
    np.testing.assert_allclose(capped, -math.log(1e-6), rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        rl.offset_nll(targets, params, "approximate")


def test_mean_reduction_averages_over_time_as_magenta():
    """magenta's r_cost = reduce_mean over batch * time rows (model.py 344): the per-sketch sum
    divided by the padded length T."""
    rng = np.random.default_rng(3)
    targets = np.zeros((2, 6, 5), "float32")
    targets[..., :2] = rng.normal(size=(2, 6, 2))
    targets[..., 2] = 1.0
    targets[1, 4:] = (0, 0, 0, 0, 1)
    params = rng.normal(size=(2, 6, 15)).astype("float32")
    summed = rl.reconstruction_loss(targets, params)
    mean = rl.reconstruction_loss(targets, params, reduction="mean")
    np.testing.assert_allclose(np.asarray(mean), np.asarray(summed) / 6.0, rtol=1e-6)


def test_works_in_tf_function_and_rejects_bad_shapes():
    targets = tf.zeros([2, 3, 5])
    params = tf.zeros([2, 3, 123])
    eager = rl.reconstruction_loss(targets, params)
    compiled = tf.function(rl.reconstruction_loss)(targets, params)
    np.testing.assert_allclose(eager, compiled)
    with pytest.raises(ValueError):
        rl.reconstruction_loss(targets, tf.zeros([2, 3, 124]))
