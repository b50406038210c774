"""Tests for sketchtk.losses.latent against hand-computed values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from sketchtk.losses import latent

tfd = tfp.distributions


def test_gaussian_kl_hand_values_and_tfp():
    mu1, s1 = tf.constant([[1.0, 0.0]]), tf.constant([[1.0, 2.0]])
    mu2, s2 = tf.constant([[0.0, 1.0]]), tf.constant([[1.0, 4.0]])
    # dim 0: 0.5 (0 + 2 - 1) = 0.5; dim 1: 0.5 (log 2 + 3/4 - 1)
    expected = 0.5 + 0.5 * (math.log(2.0) - 0.25)
    np.testing.assert_allclose(latent.gaussian_kl(mu1, s1, mu2, s2), [expected], rtol=1e-6)

    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(2, 4, 5)).astype("float32")
    v1, v2 = rng.uniform(0.1, 3.0, size=(2, 4, 5)).astype("float32")
    ref = tfd.kl_divergence(tfd.MultivariateNormalDiag(m1, np.sqrt(v1)),
                            tfd.MultivariateNormalDiag(m2, np.sqrt(v2)))
    np.testing.assert_allclose(latent.gaussian_kl(m1, v1, m2, v2), ref, rtol=1e-5)
    np.testing.assert_allclose(latent.gaussian_kl(m1, v1, m1, v1), 0.0, atol=1e-6)
    # Broadcasting [B, 1, Z] against [1, K, Z] -> [B, K].
    assert latent.gaussian_kl(m1[:, None], v1[:, None], m2[None], v2[None]).shape == (4, 4)


def test_gaussian_kl_extreme_variances_are_finite():
    kl = latent.gaussian_kl(tf.constant([[1e3]]), tf.constant([[1e-10]]),
                            tf.constant([[-1e3]]), tf.constant([[1e-10]]))
    assert np.all(np.isfinite(kl)) and float(kl[0]) > 1e15
    kl = latent.gaussian_kl(tf.constant([[0.0]]), tf.constant([[1e10]]),
                            tf.constant([[0.0]]), tf.constant([[1e-10]]))
    assert np.all(np.isfinite(kl))


def test_alpha_loss_hand_value_with_zero_responsibility():
    gamma = np.array([[0.5, 0.5], [1.0, 0.0]], "float32")
    alpha = np.array([0.25, 0.75], "float32")
    # k0: mean(0.5 log 2, 1 log 4); k1: mean(0.5 log(2/3), 0)
    expected = (0.5 * math.log(2) + math.log(4)) / 2 + 0.5 * math.log(2 / 3) / 2
    with np.errstate(divide="ignore"):
        log_gamma = tf.constant(np.log(gamma))
    with tf.GradientTape() as tape:
        tape.watch(log_gamma)
        loss = latent.alpha_loss(log_gamma, np.log(alpha))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert np.all(np.isfinite(tape.gradient(loss, log_gamma)))


def test_alpha_loss_pruned_component_has_no_nan():
    with np.errstate(divide="ignore"):
        log_gamma = tf.constant(np.log([[0.3, 0.7, 0.0]]).astype("float32"))
        log_alpha = np.log([0.5, 0.5, 0.0]).astype("float32")  # alpha_k = 0: -inf
    with tf.GradientTape() as tape:
        tape.watch(log_gamma)
        loss = latent.alpha_loss(log_gamma, log_alpha)
    expected = 0.3 * math.log(0.6) + 0.7 * math.log(1.4)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(tape.gradient(loss, log_gamma)))
    # KL of a distribution to itself is 0.
    same = latent.alpha_loss(tf.math.log([[0.2, 0.8], [0.2, 0.8]]), tf.math.log([0.2, 0.8]))
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_loss_hand_value_and_gradients():
    mu_enc = tf.constant([[1.0], [0.0]])
    sigma2_enc = tf.constant([[1.0], [1.0]])
    gamma = tf.constant([[0.25, 0.75], [1.0, 0.0]])
    mu_k = tf.Variable([[0.0], [3.0]])
    sigma2_k = tf.Variable([[1.0], [1.0]])
    # row 0: 0.25 * KL(N(1,1)||N(0,1)) + 0.75 * KL(N(1,1)||N(3,1)) = 0.25*0.5 + 0.75*2; row 1: 0
    expected = (0.25 * 0.5 + 0.75 * 2.0 + 0.0) / 2
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([mu_enc, gamma])
        loss = latent.gaussian_loss(mu_enc, sigma2_enc, gamma, mu_k, sigma2_k)
        frozen = latent.gaussian_loss(mu_enc, sigma2_enc, gamma, mu_k, sigma2_k,
                                      stop_gamma_gradient=True)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(frozen) == pytest.approx(expected, rel=1e-6)
    assert tape.gradient(loss, mu_k) is None and tape.gradient(loss, sigma2_k) is None
    assert tape.gradient(loss, gamma) is not None
    assert tape.gradient(frozen, gamma) is None
    np.testing.assert_allclose(tape.gradient(loss, mu_enc), [[(0.25 * 1 + 0.75 * -2) / 2], [0.0]],
                               rtol=1e-6)


def test_gaussian_loss_zero_responsibility_for_an_infinite_kl():
    loss = latent.gaussian_loss(tf.constant([[0.0]]), tf.constant([[1.0]]),
                                tf.constant([[1.0, 0.0]]), tf.constant([[0.0], [1e30]]),
                                tf.constant([[1.0], [1e-10]]))
    assert float(loss) == pytest.approx(0.0, abs=1e-7)


def test_standard_normal_kl_free_bits():
    mu = tf.constant([[1.0, 0.0]])
    sigma2 = tf.constant([[1.0, math.e]])
    kl = (0.5 + -0.5 * (2.0 - math.e)) / 2  # averaged over z dims
    assert float(latent.standard_normal_kl(mu, sigma2)) == pytest.approx(kl, rel=1e-6)
    assert float(latent.standard_normal_kl(mu, sigma2, 0.2)) == pytest.approx(kl, rel=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(mu)
        floored = latent.standard_normal_kl(mu, sigma2, kl_tolerance=0.5)
    assert float(floored) == pytest.approx(0.5)
    np.testing.assert_array_equal(tape.gradient(floored, mu), 0.0)  # free bits: no pressure
    assert float(latent.standard_normal_kl(tf.zeros((3, 4)), tf.ones((3, 4)))) == 0.0
    extreme = latent.standard_normal_kl(tf.constant([[1e3]]), tf.constant([[1e-10]]))
    assert np.isfinite(float(extreme))


def test_deconv_loss():
    images = tf.zeros((2, 2, 2, 1))
    recon = tf.stack([tf.ones((2, 2, 1)), tf.fill((2, 2, 1), 0.5)])
    assert float(latent.deconv_loss(images, recon)) == pytest.approx((4.0 + 1.0) / 2)
    assert float(latent.deconv_loss(tf.zeros((2, 2, 2)), recon)) == pytest.approx(2.5)


def test_kl_weight_schedule():
    assert float(latent.kl_weight(0)) == pytest.approx(0.001)
    assert float(latent.kl_weight(10000)) == pytest.approx(1 - 0.999 * 0.9999 ** 10000, rel=1e-5)
    assert float(latent.kl_weight(10 ** 7)) == pytest.approx(1.0)
    sketch_rnn = latent.kl_weight(tf.constant(0, tf.int64), start=0.01, decay=0.99995, target=0.5)
    assert float(sketch_rnn) == pytest.approx(0.01)


def test_learning_rate_schedule_and_serialisation():
    assert float(latent.learning_rate(0)) == pytest.approx(1e-3)
    expected = (1e-3 - 1e-5) * 0.9999 ** 1000 + 1e-5
    assert float(latent.learning_rate(3000)) == pytest.approx(expected, rel=1e-5)
    assert float(latent.learning_rate(10 ** 8)) == pytest.approx(1e-5)

    schedule = latent.DecayedLearningRate()
    assert float(schedule(tf.constant(3000, tf.int64))) == pytest.approx(expected, rel=1e-5)
    optimizer = keras.optimizers.Adam(schedule, beta_1=0.5)
    restored = keras.optimizers.Adam.from_config(optimizer.get_config())
    saved = restored.get_config()["learning_rate"]
    assert saved["registered_name"] == "sketchtk>DecayedLearningRate"
    optimizer.iterations.assign(3000)
    assert float(optimizer.learning_rate) == pytest.approx(expected, rel=1e-5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(clone, latent.DecayedLearningRate)
    assert clone.get_config() == schedule.get_config()
