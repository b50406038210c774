"""Star-shaped families: q(x_t | x0) moments against closed forms, the Gaussian closed-form tail,
the star-shaped Gaussian = DDPM equivalence, and the von Mises KL (derived here) against TFP and a
Monte Carlo estimate."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from sketchtk.diffusion import star_families as sf
from sketchtk.diffusion.process import GaussianProcess

N = 20000  # draws per moment check
T = 20


def _t(value, n=N):
    return tf.fill([n], value)


def _seed(i):
    return tf.constant([7, i], tf.int64)


@pytest.mark.parametrize("step", [0, 7, T - 1])
def test_gaussian_forward_moments_match_sqrt_alphabar_and_one_minus_alphabar(step):
    fam = sf.GaussianFamily(T, "linear")
    x0 = tf.fill([N, 1, 1], 0.8)
    x = fam.forward_sample(x0, _t(step), _seed(step)).numpy()
    ab = fam.alphabar_np[step]
    np.testing.assert_allclose(x.mean(), np.sqrt(ab) * 0.8, atol=4 * np.sqrt((1 - ab) / N))
    np.testing.assert_allclose(x.var(), 1 - ab, rtol=0.05)


@pytest.mark.parametrize("step", [0, 9, T - 1])
def test_beta_forward_moments_match_the_beta_closed_form(step):
    fam = sf.BetaFamily(T)
    x0 = tf.fill([N, 1, 1], 0.3)
    u = fam.to_unit(fam.forward_sample(x0, _t(step), _seed(step))).numpy()
    nu = fam.nu_np[step]
    a, b = 1 + nu * 0.3, 1 + nu * 0.7
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    np.testing.assert_allclose(u.mean(), mean, atol=4 * np.sqrt(var / N))
    np.testing.assert_allclose(u.var(), var, rtol=0.06)


def test_beta_concentration_decreases_to_near_zero_and_matches_the_ddpm_snr():
    fam = sf.BetaFamily(T)
    nu = fam.nu_np
    assert np.all(np.diff(nu) < 0) and nu[-1] < 1e-2 < 100 < nu[0]
    ab = sf.make_schedule("cosine", T).alphabar
    np.testing.assert_allclose(nu ** 2 * (nu + 3) / (nu + 2) ** 2, ab / (1 - ab), rtol=1e-6)


@pytest.mark.parametrize("step", [0, 10, T - 1])
def test_categorical_frequencies_match_x0_qbar(step):
    fam = sf.CategoricalFamily(T, num_classes=3)
    x0 = tf.one_hot(tf.fill([N, 1], 2), 3)
    x = fam.forward_sample(x0, _t(step), _seed(step)).numpy()
    assert set(np.unique(x.sum(-1))) == {1.0}  # one-hot draws
    b = fam.b_np[step]
    expected = np.array([b / 3, b / 3, 1 - b + b / 3])
    np.testing.assert_allclose(x.mean(axis=(0, 1)), expected, atol=0.015)


@pytest.mark.parametrize("step", [0, 8, T - 1])
def test_von_mises_circular_moments_match_the_bessel_ratio(step):
    fam = sf.VonMisesFamily(T)
    mu = 2.5
    x = fam.forward_sample(tf.fill([N, 1, 1], mu), _t(step), _seed(step)).numpy()
    kappa = fam.kappa_np[step]
    a = float(tf.math.bessel_i1e(kappa) / tf.math.bessel_i0e(kappa))
    np.testing.assert_allclose(np.cos(x - mu).mean(), a, atol=0.02)
    np.testing.assert_allclose(np.sin(x - mu).mean(), 0.0, atol=0.02)
    assert np.all(np.abs(x) <= np.pi + 1e-6)


def test_von_mises_kl_matches_tfp_and_monte_carlo():
    mu1 = tf.constant([0.3, 2.0, -3.0, 1.0])
    k1 = tf.constant([0.5, 4.0, 40.0, 800.0])
    mu2 = tf.constant([1.5, -2.0, 3.0, 1.01])
    k2 = tf.constant([2.0, 4.0, 10.0, 800.0])
    ours = sf.von_mises_kl(mu1, k1, mu2, k2).numpy()
    p, q = tfp.distributions.VonMises(mu1, k1), tfp.distributions.VonMises(mu2, k2)
    np.testing.assert_allclose(ours, tfp.distributions.kl_divergence(p, q).numpy(), rtol=1e-3,
                               atol=1e-4)
    x = p.sample(200000, seed=tf.constant([1, 2]))
    mc = tf.reduce_mean(p.log_prob(x) - q.log_prob(x), axis=0).numpy()
    np.testing.assert_allclose(ours, mc, rtol=0.03, atol=0.01)
    assert np.all(sf.von_mises_kl(mu1, k1, mu1, k1).numpy() < 1e-4)  # KL(p || p) = 0


def test_gaussian_closed_form_tail_has_the_moments_of_the_exhaustive_sum():
    fam = sf.GaussianFamily(T, "linear")
    x0 = tf.fill([4000, 1, 1], -0.7)
    for step in (0, 6, T - 1):
        closed = fam.tail_sample(x0, _t(step, 4000), _seed(1)).numpy()
        full = fam.tail_sample_exhaustive(x0, _t(step, 4000), _seed(2)).numpy()
        s = fam.tail_snr_np[step]
        for g in (closed, full):
            np.testing.assert_allclose(g.mean(), s * -0.7, atol=5 * np.sqrt(s / 4000))
            np.testing.assert_allclose(g.var(), s, rtol=0.08)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_star_shaped_gaussian_reverse_step_is_the_ddpm_posterior_of_its_schedule(schedule):
    """Okhotin et al.: Gaussian SS-DDPM is DDPM. With y_t = G_t / sqrt(S_t (1 + S_t)) the star-shaped
    step G_{t-1} = G_t + a_{t-1} x_{t-1}, x_{t-1} ~ q(x_{t-1} | x0), must be the DDPM posterior
    q(y_{t-1} | y_t, x0) of the schedule alphabar'_t = S_t / (1 + S_t): checked by Monte Carlo
    through the family's own draws against GaussianProcess.posterior."""
    fam = sf.GaussianFamily(T, schedule)
    ab_eq = fam.equivalent_ddpm_alphabar()
    assert np.all(np.diff(ab_eq) < 0)
    ddpm = GaussianProcess(T, schedule)
    ddpm._alphabar = tf.constant([1.0, *ab_eq], tf.float32)  # the same code, the derived schedule
    c = 1.0 / np.sqrt(fam.tail_snr_np * (1.0 + fam.tail_snr_np))
    n, x0v, yv = 20000, 0.6, -0.4
    for step in (1, 5, T - 1):
        g_t = yv / c[step]
        x_prev = fam.forward_sample(tf.fill([n, 1, 1], x0v), _t(step - 1, n), _seed(step))
        g_prev = g_t + fam.tail_term(x_prev, _t(step - 1, n))
        y_prev = (g_prev * c[step - 1]).numpy()
        mean, var = ddpm.posterior(tf.fill([1, 1, 1], x0v), tf.fill([1, 1, 1], yv),
                                   tf.constant([step]), tf.constant([step - 1]))
        mean, var = float(mean[0, 0, 0]), float(var[0, 0, 0])
        np.testing.assert_allclose(y_prev.mean(), mean, atol=5 * np.sqrt(var / n) + 1e-5)
        np.testing.assert_allclose(y_prev.var(), var, rtol=0.05)


def test_kl_terms_vanish_at_a_perfect_prediction_and_grow_with_the_error():
    x0 = tf.constant([[[0.2], [0.9]]])
    t = tf.constant([5])
    for fam, good, bad in [
            (sf.GaussianFamily(T), x0, x0 + 0.5),
            (sf.BetaFamily(T), x0, 1.0 - x0),
            (sf.VonMisesFamily(T), x0, x0 + 1.0)]:
        for fn in (fam.kl, fam.kl_rescaled):
            assert np.all(np.abs(fn(x0, good, t).numpy()) < 1e-4)
            assert np.all(fn(x0, bad, t).numpy() > 1e-3)
    cat = sf.CategoricalFamily(T, 2)
    onehot = tf.one_hot([[0, 1]], 2)
    assert np.all(np.abs(cat.kl(onehot, onehot, t).numpy()) < 1e-6)
    assert np.all(cat.kl(onehot, 1.0 - onehot, t).numpy() > 1e-3)


@pytest.mark.parametrize("draw", ["tail_sample_ragged", "tail_sample_exhaustive"])
def test_categorical_tail_draws_have_the_exact_expected_tail_sum(draw):
    """E[G_t | x0] = sum_{s >= t} sum_k p_s(k) log(x_s Qbar_s^T)[k-row], computed exactly, for
    a batch of mixed t (the ragged draw packs different tail lengths into one flat draw)."""
    fam = sf.CategoricalFamily(T, num_classes=2)
    n = 3000
    steps = np.array([0, 4, 11, T - 1] * (n // 4), np.int32)
    x0 = tf.one_hot(tf.fill([n, 1], 1), 2)
    g = getattr(fam, draw)(x0, tf.constant(steps), _seed(5)).numpy()[:, 0]
    eye = tf.one_hot([0, 1], 2)[:, None, :]
    expected = {}
    for step in (0, 4, 11, T - 1):
        total = np.zeros(2)
        for s in range(step, T):
            p = fam.probs(x0[:1], tf.constant([s])).numpy()[0, 0]  # [K]
            terms = fam.tail_term(eye, tf.constant([s, s])).numpy()[:, 0]  # row k: x_s = e_k
            total += p @ terms
        expected[step] = total
    for step, value in expected.items():
        got = g[steps == step].mean(axis=0)
        spread = g[steps == step].std(axis=0) / np.sqrt((steps == step).sum())
        assert np.all(np.abs(got - value) < 5 * spread + 1e-4), (step, got, value)
