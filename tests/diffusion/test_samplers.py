"""Samplers on a 1-D Gaussian toy whose exact eps-predictor is known in closed form."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.diffusion import guidance
from sketchtk.diffusion.process import GaussianProcess
from sketchtk.diffusion.samplers import ReverseSampler, sampling_timesteps

MU0, SD0 = 1.5, 0.4
N = 20000


def exact_denoiser(process):
    """E[eps | x_t] for x0 ~ N(MU0, SD0^2): the optimal eps-network."""
    def fn(x, t, mask, context):
        ab = process.alphabar(t)[:, None, None]
        var = ab * SD0 ** 2 + 1 - ab
        eps = tf.sqrt(1 - ab) * (x - tf.sqrt(ab) * MU0) / var
        return eps, tf.zeros_like(x[..., :0])
    return fn


def analytic_moments(process, steps, method, eta=1.0, strength=1.0):
    """Exact mean and std of the sampler's output from x_T ~ N(0, 1) with the exact denoiser.

    Every step is affine in x_t plus Gaussian noise, so mean and variance propagate exactly.
    (The discrete sampler does not reproduce N(MU0, SD0^2) exactly at small T: the posterior
    variance ignores the uncertainty of x0 given x_t.)
    """
    ab_table = np.concatenate([[1.0], process.schedule.alphabar])
    m, v = 0.0, 1.0
    prev = list(steps[1:]) + [-1]
    for t, tp in zip(steps, prev):
        ab, abp = ab_table[t + 1], ab_table[tp + 1]
        a, s = np.sqrt(ab), np.sqrt(1 - ab)
        var_t = ab * SD0 ** 2 + 1 - ab
        e1, e0 = s / var_t, -s * a * MU0 / var_t  # eps = e1 x + e0
        c1, c0 = (1 - s * e1) / a, -s * e0 / a  # x0_hat = c1 x + c0
        alpha = ab / abp
        post_var = (1 - alpha) * (1 - abp) / (1 - ab)
        if method == "ddpm":
            k0 = np.sqrt(abp) * (1 - alpha) / (1 - ab)
            kt = np.sqrt(alpha) * (1 - abp) / (1 - ab)
            A, B, noise_var = k0 * c1 + kt, k0 * c0, strength ** 2 * post_var
        else:
            sig2 = eta ** 2 * post_var
            d = np.sqrt(max(1 - abp - sig2, 0.0))
            A, B, noise_var = np.sqrt(abp) * c1 + d * e1, np.sqrt(abp) * c0 + d * e0, sig2
        m, v = A * m + B, A * A * v + noise_var
    return m, np.sqrt(v)


@pytest.fixture(scope="module")
def toy():
    process = GaussianProcess(50, "linear")
    sampler = ReverseSampler(exact_denoiser(process), process, aux_channels=0)
    x_T = tf.random.stateless_normal([N, 1, 1], (5, 5))
    return process, sampler, x_T, tf.ones([N, 1])


def test_ddim_eta_one_over_all_steps_matches_ddpm_in_distribution(toy):
    process, sampler, x_T, mask = toy
    steps = sampling_timesteps(process)
    ddpm, _, _ = sampler.sample(x_T, mask, steps, "ddpm", variance_strength=1.0, seed=(1, 2))
    ddim, _, _ = sampler.sample(x_T, mask, steps, "ddim", eta=1.0, seed=(3, 4))
    a, b = np.sort(ddpm.numpy().ravel()), np.sort(ddim.numpy().ravel())
    m, sd = analytic_moments(process, steps, "ddpm")
    np.testing.assert_allclose(analytic_moments(process, steps, "ddim", eta=1.0), (m, sd))
    assert abs(m - MU0) < 0.01 and abs(sd - SD0) < 0.07  # close to the data, not equal at T = 50
    for sample in (a, b):  # both follow the exact distribution (standard errors ~0.003, 0.002)
        assert abs(sample.mean() - m) < 0.012 and abs(sample.std() - sd) < 0.008
    quantiles = np.linspace(0.01, 0.99, 25)
    np.testing.assert_allclose(np.quantile(a, quantiles), np.quantile(b, quantiles), atol=0.03)
    # two-sample Kolmogorov-Smirnov statistic well under its 1% critical value (~0.016 here)
    grid = np.concatenate([a, b])
    ks = np.max(np.abs(np.searchsorted(a, grid) / N - np.searchsorted(b, grid) / N))
    assert ks < 0.016


def test_ddpm_and_ddim_eta_one_are_the_same_update_given_the_same_noise(toy):
    process, sampler, x_T, mask = toy
    steps = sampling_timesteps(process)
    ddpm, _, _ = sampler.sample(x_T[:500], mask[:500], steps, "ddpm", seed=(9, 9))
    ddim, _, _ = sampler.sample(x_T[:500], mask[:500], steps, "ddim", eta=1.0, seed=(9, 9))
    np.testing.assert_allclose(ddpm, ddim, atol=1e-4)


def test_respaced_ddim_and_reduced_variance_ddpm_follow_their_exact_moments(toy):
    process, sampler, x_T, mask = toy
    ddim10, _, traj = sampler.sample(x_T, mask, sampling_timesteps(process, 10), "ddim", eta=0.0,
                                     record=True)
    x = ddim10.numpy().ravel()
    m, sd = analytic_moments(process, sampling_timesteps(process, 10), "ddim", eta=0.0)
    assert abs(x.mean() - m) < 0.012 and abs(x.std() - sd) < 0.008
    assert abs(m - MU0) < 0.01  # 10 coarse ODE steps keep the mean (and shrink the spread)
    assert traj.shape == (11, N, 1, 1)
    np.testing.assert_allclose(traj[0], x_T)
    np.testing.assert_allclose(traj[-1], ddim10)
    # ChiroDiff's s < 1 narrows the samples (less injected noise), s = 0 is deterministic
    s75, _, _ = sampler.sample(x_T, mask, sampling_timesteps(process), "ddpm",
                               variance_strength=0.75, seed=(1, 1))
    m, sd = analytic_moments(process, sampling_timesteps(process), "ddpm", strength=0.75)
    assert abs(s75.numpy().mean() - m) < 0.012 and abs(s75.numpy().std() - sd) < 0.008
    assert sd < analytic_moments(process, sampling_timesteps(process), "ddpm")[1] - 0.01


def test_sampler_keeps_padding_zero_and_rejects_bad_arguments(toy):
    process, sampler, _, _ = toy
    x_T = tf.random.stateless_normal([4, 6, 1], (1, 1))
    mask = tf.constant([[1.0] * 6, [1.0] * 3 + [0.0] * 3] * 2)
    x0, _, _ = sampler.sample(x_T, mask, sampling_timesteps(process, 5), "ddim")
    assert np.all(x0.numpy()[mask.numpy() == 0] == 0)
    with pytest.raises(ValueError, match="unknown sampler"):
        sampler.sample(x_T, mask, sampling_timesteps(process, 5), "euler")
    with pytest.raises(ValueError, match="descending"):
        sampler.sample(x_T, mask, [0, 5, 9], "ddim")


def test_guidance_scale_zero_is_unconditional_one_is_conditional():
    c = tf.constant([[1.0, 2.0]])
    u = tf.constant([[-1.0, 0.5]])
    np.testing.assert_allclose(guidance.guided(c, u, 0.0), u)
    np.testing.assert_allclose(guidance.guided(c, u, 1.0), c)
    np.testing.assert_allclose(guidance.guided(c, u, 2.0), [[3.0, 3.5]])


def test_guided_call_runs_the_null_label_once_and_guides_a_doubled_batch():
    calls = []

    def run(labels, x, scale):  # output = x * scale + label, and a second output
        calls.append(labels.numpy().tolist())
        y = x * scale[:, None] + tf.cast(labels, tf.float32)[:, None]
        return y, 2.0 * y

    x, scale = tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([1.0, 10.0])
    out, _ = guidance.guided_call(run, None, 9, 3.0, x, scale)
    np.testing.assert_allclose(out, [[10.0, 11.0], [39.0, 49.0]])  # the null label, one pass
    out, _ = guidance.guided_call(run, [1, 2], 9, 1.0, x, scale)
    np.testing.assert_allclose(out, [[2.0, 3.0], [32.0, 42.0]])
    assert calls == [[9, 9], [1, 2]]
    out, twice = guidance.guided_call(run, [1, 2], 9, 2.0, x, scale)
    assert calls[-1] == [1, 2, 9, 9]  # one pass over labels then null labels
    # u + 2 (c - u) with c = x s + label, u = x s + 9
    np.testing.assert_allclose(out, [[-6.0, -5.0], [25.0, 35.0]])
    np.testing.assert_allclose(twice, 2.0 * out.numpy())
    single = guidance.guided_call(lambda lab, x: x + tf.cast(lab, tf.float32)[:, None],
                                  [0], 4, 0.0, tf.zeros([1, 3]))
    np.testing.assert_allclose(single, [[4.0, 4.0, 4.0]])  # guidance 0 = unconditional


def test_label_dropout_rate_and_null_label():
    labels = tf.zeros([20000], tf.int32) + 3
    dropped = guidance.drop_labels(labels, 5, 0.1, (0, 7)).numpy()
    assert set(np.unique(dropped)) == {3, 5}
    assert abs(np.mean(dropped == 5) - 0.1) < 0.01
    np.testing.assert_array_equal(guidance.drop_labels(labels, 5, 0.0, (0, 7)), labels)
