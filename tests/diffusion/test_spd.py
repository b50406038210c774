"""Shortest-path diffusion: schedule endpoints for every frequency, the orthonormal FFT round trip,
the flat-spectrum limit (= DDPM with one schedule), the per-frequency posterior and samplers, and
the S0 fit recovering known constants (synthetic) and a red spectrum for real absolute sketches."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.diffusion import spd, spectrum
from sketchtk.diffusion.process import GaussianProcess
from sketchtk.diffusion.samplers import ReverseSampler, respaced_timesteps

T = 30
FITTED = dict(c1=0.003123, c2=0.02854, m=2.163)  # hparams/presets.py SPD_EMBEDDED_ABSOLUTE


@pytest.fixture(scope="module")
def point_data():
    return ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES), max_points=96)


@pytest.mark.parametrize("spatial_dims,shape", [(1, [2, 40, 2]), (2, [2, 12, 12, 1])])
def test_alphabar_is_one_before_the_first_step_and_near_zero_at_the_last_for_every_frequency(
        spatial_dims, shape):
    for consts in (FITTED, dict(c1=1.59, c2=0.0086, m=2.0)):
        proc = spd.FourierSPDProcess(T, spatial_dims=spatial_dims, **consts)
        ab = lambda t: proc.alphabar(tf.constant([t, t]), shape).numpy()  # noqa: E731
        np.testing.assert_array_equal(ab(-1), 1.0)
        assert ab(0).min() > 0.5  # the first step is a small one at every frequency
        assert ab(T - 1).max() <= 2 * spd.ALPHABAR_FLOOR
        seq = np.stack([ab(t)[0, 0] for t in range(-1, T)])
        assert np.all(np.diff(seq, axis=0) <= 1e-7)  # monotone in t at every frequency
        s0 = proc.s0(shape).numpy()
        # red spectrum: the strongest (lowest) frequencies are noised first (a smaller alphabar)
        mid = seq[T // 2]
        assert mid.ravel()[np.argmax(s0)] < mid.ravel()[np.argmin(s0)]


def test_alphabar_handles_a_unit_spectrum_by_its_limit_tau():
    tau = tf.constant([0.0, 0.3, 1.0])
    got = spd.spd_alphabar(tf.constant([1.0, 1.0, 1.0]), tau).numpy()
    np.testing.assert_allclose(got, [spd.ALPHABAR_FLOOR, 0.3, 1.0], rtol=1e-6)
    near = spd.spd_alphabar(tf.constant([1.001, 0.999, 1.001]), tau).numpy()
    np.testing.assert_allclose(near, got, rtol=2e-3)


@pytest.mark.parametrize("spatial_dims,shape", [(1, [3, 24, 2]), (2, [2, 8, 10, 1])])
def test_orthonormal_fft_round_trip_and_parseval(spatial_dims, shape):
    proc = spd.FourierSPDProcess(T, spatial_dims=spatial_dims)
    x = tf.random.stateless_normal(shape, (1, 2))
    z = proc.to_freq(x)
    np.testing.assert_allclose(proc.from_freq(z).numpy(), x.numpy(), atol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(tf.abs(z) ** 2).numpy(),
                               tf.reduce_sum(x ** 2).numpy(), rtol=1e-5)
    # the imaginary part after filtering with a real, even per-frequency factor is zero
    h = tf.complex(proc.alphabar(tf.fill([shape[0]], T // 2), shape), 0.0)
    back = proc.from_freq(z * h, real=False).numpy()
    assert np.abs(back.imag).max() < 1e-5 * np.abs(back.real).max()


def test_white_noise_noised_by_spd_has_the_per_frequency_variance_of_the_schedule():
    proc = spd.FourierSPDProcess(T, **FITTED)
    shape = [4000, 32, 1]
    x0 = tf.zeros(shape)
    t = tf.fill([shape[0]], 10)
    x_t = proc.q_sample(x0, t, tf.random.stateless_normal(shape, (3, 4)))
    power = (tf.abs(proc.to_freq(x_t)) ** 2).numpy().mean(axis=(0, 1))
    expected = 1.0 - proc.alphabar(t[:1], shape).numpy()[0, 0]
    np.testing.assert_allclose(power, expected, rtol=0.08)


def test_flat_spectrum_is_the_ddpm_of_one_schedule_q_sample_and_posterior():
    s = 0.35  # about the embedded data's delta-offset level (near-white)
    proc = spd.FourierSPDProcess(T, c1=s, c2=1.0, m=1e-9)  # S0 = s at every f
    tau = (T - 1 - np.arange(T)) / T
    ab = np.clip((1 - s ** tau) / (1 - s), spd.ALPHABAR_FLOOR, 1.0)
    ddpm = GaussianProcess(T)
    ddpm._alphabar = tf.constant([1.0, *ab], tf.float32)  # the same code, the implied schedule
    x0 = tf.random.stateless_normal([3, 16, 2], (5, 6))
    noise = tf.random.stateless_normal([3, 16, 2], (7, 8))
    t, prev = tf.constant([0, 11, T - 1]), tf.constant([-1, 10, 20])
    x_t = proc.q_sample(x0, t, noise)
    np.testing.assert_allclose(x_t.numpy(), ddpm.q_sample(x0, t, noise).numpy(), atol=1e-4)
    m1, v1 = proc.posterior(x0, x_t, t, prev)
    m2, v2 = ddpm.posterior(x0, x_t, t, prev)
    np.testing.assert_allclose(m1.numpy(), m2.numpy(), atol=1e-4)
    np.testing.assert_allclose(v1.numpy()[:, 0, :], np.broadcast_to(v2.numpy()[:, 0, :], (3, 16)),
                               rtol=1e-4, atol=1e-7)
    x0_hat, _ = proc.predict(noise, x_t, t)
    np.testing.assert_allclose(x0_hat.numpy(), x0.numpy(), rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_samplers_with_the_true_noise_oracle_recover_a_real_absolute_sketch(point_data, method):
    """With eps_hat = the noise that made x_t from x0 (an oracle for one fixed x0), the sampler's
    per-frequency steps must land on x0: a check of predict, posterior and the coloured noise."""
    steps = 8  # few steps: the cost is the loop's tracing
    proc = spd.FourierSPDProcess(steps, **FITTED)
    sketch = point_data["train"].sketches[0]
    pts = ps.to_points(sketch, "absolute")[:, :2]
    pts = ((pts - pts.mean(0)) / pts.std()).astype(np.float32)
    x0 = tf.constant(pts[None])
    mask = tf.ones(x0.shape[:2])

    def oracle(x, t, m, context):
        # the eps for which x = q_sample(x0, t, eps): solve per frequency
        ab = proc.alphabar(t, tf.shape(x))
        eps_f = (proc.to_freq(x) - tf.complex(tf.sqrt(ab), 0.0) * proc.to_freq(x0)) / tf.complex(
            tf.sqrt(1.0 - ab), 0.0)
        return proc.from_freq(eps_f), tf.zeros(tf.concat([tf.shape(x)[:2], [0]], 0))

    sampler = ReverseSampler(oracle, proc)
    x_T = proc.prior_sample(x0.shape, (9, 9))
    out, _, _ = sampler.sample(x_T, mask, respaced_timesteps(steps, 4 if method == "ddim" else steps),
                               method, eta=0.0, seed=(1, 2))
    np.testing.assert_allclose(out.numpy(), x0.numpy(), atol=2e-2)


def test_fit_recovers_known_constants_from_a_synthetic_spectrum():
    rng = np.random.default_rng(0)
    truth = dict(c1=0.02, c2=0.05, m=1.7)
    window, n = 128, 3000
    freq = np.fft.fftfreq(window)
    s0 = spectrum.SpectrumFit(**truth, log_rmse=0.0)(freq)
    # Gaussian sequences with exactly that power spectrum: white noise filtered by sqrt(S0)
    white = np.fft.fft(rng.standard_normal((n, window)), norm="ortho")
    seqs = np.real(np.fft.ifft(white * np.sqrt(s0), norm="ortho"))[..., None]
    f, p = spectrum.sequence_power_spectrum(list(seqs), window)
    fit = spectrum.fit_spectrum(f, p)
    np.testing.assert_allclose([fit.c1, fit.c2, fit.m], [truth["c1"], truth["c2"], truth["m"]],
                               rtol=0.1)
    assert fit.log_rmse < 0.05


def test_fit_of_a_radial_image_spectrum_recovers_its_constants():
    rng = np.random.default_rng(1)
    truth = dict(c1=0.5, c2=0.02, m=2.0)
    size = 48
    radius = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    s0 = truth["c1"] / (truth["c2"] + radius) ** truth["m"]
    white = np.fft.fft2(rng.standard_normal((200, size, size)), norm="ortho")
    images = np.real(np.fft.ifft2(white * np.sqrt(s0), norm="ortho"))
    f, p, count = spectrum.image_power_spectrum(images)
    fit = spectrum.fit_spectrum(f, p, weights=count)
    np.testing.assert_allclose([fit.c1, fit.c2, fit.m], [0.5, 0.02, 2.0], rtol=0.15)


def test_real_absolute_sketches_have_a_red_spectrum_and_offsets_a_near_white_one(point_data):
    f_abs, p_abs = spectrum.point_data_spectrum(point_data, "absolute")
    f_del, p_del = spectrum.point_data_spectrum(point_data, "delta")
    fit_abs, fit_del = spectrum.fit_spectrum(f_abs, p_abs), spectrum.fit_spectrum(f_del, p_del)
    low, high = np.abs(f_abs) < 0.03, np.abs(f_abs) > 0.4
    assert p_abs[low].mean() / p_abs[high].mean() > 50  # red
    assert 0.1 < p_del[low].mean() / p_del[high].mean() < 3  # near-white
    assert fit_abs.m > 1.5 and abs(fit_del.m) < 0.5
    np.testing.assert_allclose([fit_abs.c1, fit_abs.c2, fit_abs.m],
                               [FITTED["c1"], FITTED["c2"], FITTED["m"]], rtol=0.02)


def test_fit_rejects_a_spectrum_without_positive_values():
    with pytest.raises(ValueError, match="at least 3 positive"):
        spectrum.fit_spectrum(np.arange(4.0), np.zeros(4))


@pytest.fixture(scope="module")
def real_render(point_data):
    """One real embedded drawing rendered at 24 px as RasterDiffusion sees it (ink +1,
    ``[1, W, W, 1]``)."""
    from sketchtk.models.raster_diffusion import images_to_x0
    from sketchtk.render.raster import render_sketches
    return images_to_x0(render_sketches([point_data["train"].sketches[3]], width=24))


def test_eps_from_x0_inverts_predict_per_frequency(real_render):
    proc = spd.FourierSPDProcess(T, c1=0.0386, c2=2.1e-4, m=1.26, spatial_dims=2)
    t = tf.constant([T // 2])
    eps = tf.random.stateless_normal(real_render.shape, (4, 4))
    x_t = proc.q_sample(real_render, t, eps)
    x0_hat, _ = proc.predict(eps, x_t, t)
    np.testing.assert_allclose(x0_hat.numpy(), real_render.numpy(), atol=1e-4)
    np.testing.assert_allclose(proc.eps_from_x0(real_render, x_t, t).numpy(), eps.numpy(),
                               atol=1e-4)


def test_x0_clip_bounds_the_first_step_of_a_wrong_eps_and_keeps_the_oracle_step(real_render):
    """At t = T - 1 (alphabar = ALPHABAR_FLOOR) an eps error of 0.05 becomes an x0 error of ~16:
    without the clip it lands in x_{T-2}; clipped to the image range it cannot. With the true eps
    (x0 inside [-1, 1]) the clipped and the plain step agree."""
    consts = dict(c1=8.82, c2=1.12, m=11.9, spatial_dims=2)  # the exact-radius raster fit
    plain = spd.FourierSPDProcess(T, **consts)
    clipped = spd.FourierSPDProcess(T, **consts, x0_range=(-1.0, 1.0))
    t, t_prev = tf.constant([T - 1]), tf.constant([T - 2])
    eps = tf.random.stateless_normal(real_render.shape, (5, 5))
    x_t = plain.q_sample(real_render, t, eps)
    noise = tf.random.stateless_normal(real_render.shape, (6, 6))
    wrong = eps + 0.05 * tf.random.stateless_normal(real_render.shape, (7, 7))
    rms = lambda e: float(tf.sqrt(tf.reduce_mean(tf.square(e))))  # noqa: E731
    for method in ("ddpm", "ddim"):
        # the step the data itself would take: the one given the true eps (so the true x0)
        target = plain.reverse_step(method, x_t, eps, t, t_prev, noise, 0.0, 1.0)
        np.testing.assert_allclose(
            clipped.reverse_step(method, x_t, eps, t, t_prev, noise, 0.0, 1.0).numpy(),
            target.numpy(), atol=1e-3)
        err_plain = plain.reverse_step(method, x_t, wrong, t, t_prev, noise, 0.0, 1.0) - target
        err_clip = clipped.reverse_step(method, x_t, wrong, t, t_prev, noise, 0.0, 1.0) - target
        assert rms(err_plain) > 2.0, method  # the x316 amplification reaches x_{T-2} (4.7)
        # an x0 error of at most 2 per pixel, times sqrt(alphabar_{T-2}) <= 0.16 (0.35 measured)
        assert rms(err_clip) < 0.5 and rms(err_clip) < rms(err_plain) / 5, method


def test_x0_range_must_be_an_interval():
    with pytest.raises(ValueError, match="low < high"):
        spd.FourierSPDProcess(T, spatial_dims=2, x0_range=(1.0, -1.0))


def test_raster_fit_is_a_power_law_through_the_measured_dc_power():
    """A synthetic ring spectrum c1 / |f|^m with a DC power of 1000: fit_raster_spectrum recovers
    c1 and m from the log-binned rings and puts S0(0) at the DC power."""
    size = 48
    radius = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    freq, idx, count = np.unique(np.round(radius, 12).ravel(), return_inverse=True,
                                 return_counts=True)
    power = np.where(freq > 0, 0.04 / np.maximum(freq, 1e-12) ** 1.3, 1000.0)
    fit = spectrum.fit_raster_spectrum(freq, power, count)
    np.testing.assert_allclose([fit.c1, fit.m], [0.04, 1.3], rtol=0.02)
    np.testing.assert_allclose(fit(0.0), 1000.0, rtol=1e-6)
    assert fit.c2 < 0.01  # far below the first frequency 1/48
