"""Shortest-path diffusion (SPD, Das et al., ICML 2023): DDPM with one schedule per frequency.

In the orthonormal Fourier domain every frequency ``f`` has its own
``alphabar_t(f) = (1 - S0(f)^tau) / (1 - S0(f))``, ``tau = (T - 1 - t) / T`` (1 at the data,
0 at ``t = T - 1``), with the data's power spectrum ``S0(f) = c1 / (c2 + |f|)^m``
(mtkresearch/shortest-path-diffusion ``nonunif_diffusion/script_util.py:310-326``):

``x_t = Re F^-1[sqrt(alphabar_t) F x0 + sqrt(1 - alphabar_t) F eps]``
(``nonunif_diffusion/fourier_diffusion.py:16-33``); the network predicts the pixel-domain ``eps``.
Every per-frequency factor is real and even in ``f``, so each operation is a real filter (a
circular convolution) and the inverse transform is exactly real (the release drops an imaginary
part it calls very small).

Departures, deliberate:
- ``tau`` runs over ``(T - 1 - t) / T`` so ``alphabar`` is exactly 1 before the first step and
  ~0 at the last (the release's ``t = linspace(1, T - 1, T)``, ``script_util.py:324``, ends at
  ``tau = 1 / T``, where a high frequency keeps ``alphabar ~ ln(1 / S0) / T``); it is clipped to
  ``[ALPHABAR_FLOOR, 1]`` so ``x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)`` stays finite.
- ``S0(f) = 1`` (where the formula is 0/0) uses its limit ``alphabar = tau``.
- Axes: 1-D sequences ``[B, L, C]`` (FFT along the points, ``f`` in cycles per point) or rasters
  ``[B, H, W, C]`` (2-D FFT, ``|f|`` the radial frequency in cycles per pixel); the release has
  square 3-channel images only (``script_util.py:245-246``) with ``f`` in cycles per image.
- Samplers: ancestral (the per-frequency DDPM posterior, noise = the FFT of white noise,
  ``fourier_diffusion.py:35-75``) with a variance strength, and DDIM with ``eta`` per frequency
  (``fourier_diffusion.py:77-119`` is the eta = 0 case).
- ``x0_range`` (rasters: ``(-1, 1)``) clips the predicted ``x0`` in the data domain before the
  posterior mean (guided diffusion's ``clip_denoised``, ``guided_diffusion/gaussian_diffusion.py:
  296``), and DDIM re-derives ``eps`` from the clipped ``x0``. The release clips ``pred_xstart``
  too but forms its mean from ``eps`` (``fourier_diffusion.py:56-67``), which the clip does not
  reach; with ``tau`` ending at 0 the first reverse step divides the network's eps error by
  ``sqrt(ALPHABAR_FLOOR)`` (``x0`` error x316), and without the clip that error survives into the
  sample (bench/compare_raster_diffusion.py: pure noise). Sequences (standardised, unbounded)
  leave it off.
"""

import numpy as np
import tensorflow as tf

from sketchtk.diffusion.process import DiffusionProcess

ALPHABAR_FLOOR = 1e-5


def spectrum(freq, c1, c2, m):
    """``S0(f) = c1 / (c2 + |f|)^m`` (numpy or tf)."""
    if isinstance(freq, np.ndarray) or np.isscalar(freq):
        return c1 / np.power(c2 + np.abs(freq), m)
    return c1 / tf.pow(c2 + tf.abs(freq), m)


def spd_alphabar(s0, tau):
    """``(1 - S0^tau) / (1 - S0)`` elementwise, with the ``S0 -> 1`` limit ``tau`` (tf float32),
    computed in log space: ``S0^tau = exp(tau log S0)``."""
    log_s = tf.math.log(s0)
    near_one = tf.abs(log_s) < 1e-4
    safe = tf.where(near_one, tf.ones_like(log_s), log_s)
    value = tf.math.expm1(tau * safe) / tf.math.expm1(safe)  # (S^tau - 1) / (S - 1)
    return tf.clip_by_value(tf.where(near_one, tau * tf.ones_like(value), value),
                            ALPHABAR_FLOOR, 1.0)


def frequencies(length):
    """``fftfreq(length)`` in cycles per sample, as tf float32 (``length`` may be a tensor)."""
    n = tf.cast(length, tf.int32)
    k = tf.range(n)
    k = tf.where(k <= (n - 1) // 2, k, k - n)  # numpy.fft.fftfreq's order
    return tf.cast(k, tf.float32) / tf.cast(n, tf.float32)


class FourierSPDProcess(DiffusionProcess):
    """SPD over 1-D sequences ``[B, L, C]`` (``spatial_dims=1``) or rasters ``[B, H, W, C]``
    (``spatial_dims=2``), eps-prediction.

    Args:
      num_steps: T.
      c1, c2, m: the spectrum ``S0`` (fit them with :mod:`sketchtk.diffusion.spectrum`).
      spatial_dims: 1 or 2.
      x0_range: ``(low, high)`` to clip the sampler's predicted ``x0`` to (None = no clip).
    """

    def __init__(self, num_steps, c1=1.59, c2=0.0086, m=2.0, spatial_dims=1, x0_range=None):
        if spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}")
        if x0_range is not None and not float(x0_range[0]) < float(x0_range[1]):
            raise ValueError(f"x0_range must be (low, high) with low < high, got {x0_range}")
        self.x0_range = None if x0_range is None else (float(x0_range[0]), float(x0_range[1]))
        self.num_steps = int(num_steps)
        self.c1, self.c2, self.m = float(c1), float(c2), float(m)
        self.spatial_dims = spatial_dims
        self.parametrisation = "eps"

    # ------------------------------------------------------------------ Fourier helpers

    def _channels_first(self, x):
        perm = [0, 2, 1] if self.spatial_dims == 1 else [0, 3, 1, 2]
        return tf.transpose(x, perm)

    def _channels_last(self, x):
        perm = [0, 2, 1] if self.spatial_dims == 1 else [0, 2, 3, 1]
        return tf.transpose(x, perm)

    def to_freq(self, x):
        """Orthonormal FFT over the spatial axes: ``[B, C, L]`` / ``[B, C, H, W]`` complex."""
        z = tf.complex(self._channels_first(tf.cast(x, tf.float32)), 0.0)
        if self.spatial_dims == 1:
            n = tf.shape(x)[1]
            return tf.signal.fft(z) / tf.complex(tf.sqrt(tf.cast(n, tf.float32)), 0.0)
        n = tf.shape(x)[1] * tf.shape(x)[2]
        return tf.signal.fft2d(z) / tf.complex(tf.sqrt(tf.cast(n, tf.float32)), 0.0)

    def from_freq(self, z, real=True):
        """Inverse of :meth:`to_freq` (channels last again; the real part when ``real``)."""
        if self.spatial_dims == 1:
            n = tf.shape(z)[-1]
            x = tf.signal.ifft(z) * tf.complex(tf.sqrt(tf.cast(n, tf.float32)), 0.0)
        else:
            n = tf.shape(z)[-1] * tf.shape(z)[-2]
            x = tf.signal.ifft2d(z) * tf.complex(tf.sqrt(tf.cast(n, tf.float32)), 0.0)
        return self._channels_last(tf.math.real(x) if real else x)

    def radial_frequency(self, shape):
        """``|f|`` of every FFT bin, ``[L]`` or ``[H, W]``."""
        if self.spatial_dims == 1:
            return tf.abs(frequencies(shape[1]))
        fy, fx = frequencies(shape[1]), frequencies(shape[2])
        return tf.sqrt(tf.square(fy)[:, None] + tf.square(fx)[None, :])

    def s0(self, shape):
        return spectrum(self.radial_frequency(shape), self.c1, self.c2, self.m)

    def tau(self, t):
        return (float(self.num_steps) - 1.0 - tf.cast(t, tf.float32)) / float(self.num_steps)

    def alphabar(self, t, shape=None):
        """``alphabar_t(f)`` ``[B, 1, L]`` / ``[B, 1, H, W]`` (broadcast over channels) for
        int ``t [B]`` (-1 = the data: 1) and a data ``shape``."""
        if shape is None:
            raise ValueError("process=spd has one alphabar per frequency: alphabar(t, shape); "
                             "DDIM inversion and r-Shortcut support the Gaussian process only")
        s0 = self.s0(shape)[None]
        tau = self.tau(t)
        tau = tf.reshape(tau, [-1] + [1] * self.spatial_dims)
        ab = spd_alphabar(s0, tau)
        ab = tf.where(tf.reshape(tf.cast(t, tf.int32) < 0, [-1] + [1] * self.spatial_dims),
                      tf.ones_like(ab), ab)
        return ab[:, None]

    def _filter(self, x, h):
        """``Re F^-1[h F x]`` for a real per-frequency ``h``."""
        return self.from_freq(self.to_freq(x) * tf.complex(h, 0.0))

    # ------------------------------------------------------------------ the process

    def q_sample(self, x0, t, noise):
        ab = self.alphabar(t, tf.shape(x0))
        return self._filter(x0, tf.sqrt(ab)) + self._filter(noise, tf.sqrt(1.0 - ab))

    def prior_sample(self, shape, seed):
        return tf.random.stateless_normal(shape, seed)

    def posterior(self, x0, x_t, t, t_prev):
        """Mean (data domain) and per-frequency variance ``[B, 1, F...]`` of
        ``q(x_{t_prev} | x_t, x0)``, the DDPM posterior applied frequency by frequency."""
        shape = tf.shape(x0)
        ab_t, ab_prev = self.alphabar(t, shape), self.alphabar(t_prev, shape)
        alpha = ab_t / ab_prev
        beta = 1.0 - alpha
        c0 = tf.sqrt(ab_prev) * beta / (1.0 - ab_t)
        ct = tf.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab_t)
        mean = self._filter(x0, c0) + self._filter(x_t, ct)
        return mean, beta * (1.0 - ab_prev) / (1.0 - ab_t)

    def target(self, x0, noise, t):
        return noise

    def predict(self, model_out, x_t, t):
        """``(x0_hat, eps_hat)``: ``F x0 = (F x_t - sqrt(1 - ab) F eps) / sqrt(ab)``."""
        ab = self.alphabar(t, tf.shape(x_t))
        xt_f, eps_f = self.to_freq(x_t), self.to_freq(model_out)
        x0_f = (xt_f - tf.complex(tf.sqrt(1.0 - ab), 0.0) * eps_f) / tf.complex(tf.sqrt(ab), 0.0)
        return self.from_freq(x0_f), model_out

    def eps_from_x0(self, x0, x_t, t):
        """``F eps = (F x_t - sqrt(ab) F x0) / sqrt(1 - ab)`` (the inverse of :meth:`predict`)."""
        ab = self.alphabar(t, tf.shape(x_t))
        one_minus = tf.maximum(1.0 - ab, 1e-12)
        return self._filter(x_t, tf.math.rsqrt(one_minus)) - self._filter(
            x0, tf.sqrt(ab / one_minus))

    def reverse_step(self, method, x_t, model_out, t, t_prev, noise, eta, variance_strength):
        """One ancestral (``ddpm``) or DDIM step; ``noise`` is white in the data domain, coloured
        per frequency by its variance (the FFT of white noise is white: the release's
        ``pixel_and_fourier_noise``, ``fourier_diffusion.py:8-11``)."""
        x0, eps = self.predict(model_out, x_t, t)
        if self.x0_range is not None:
            x0 = tf.clip_by_value(x0, *self.x0_range)
            eps = self.eps_from_x0(x0, x_t, t)
        mean, var = self.posterior(x0, x_t, t, t_prev)
        if method == "ddpm":
            out = mean + self._filter(noise, variance_strength * tf.sqrt(var))
        else:
            ab_prev = self.alphabar(t_prev, tf.shape(x_t))
            sigma2 = tf.square(eta) * var
            direction = tf.sqrt(tf.maximum(1.0 - ab_prev - sigma2, 0.0))
            out = (self._filter(x0, tf.sqrt(ab_prev)) + self._filter(eps, direction)
                   + self._filter(noise, tf.sqrt(sigma2)))
        return tf.ensure_shape(out, x_t.shape)
