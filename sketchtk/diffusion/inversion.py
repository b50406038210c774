"""DDIM inversion: a real ``x_0`` deterministically encoded into ``x_T`` (and back by DDIM, eta 0).

DDIM with ``eta = 0`` is a discretised ODE (Song et al. 2021, section 4.3); run in the other
direction it maps data to noise: from ``t' < t`` (``t' = -1`` is the data)

    eps = eps_theta(x_{t'}, t),   x0_hat = (x_{t'} - sqrt(1 - ab_{t'}) eps) / sqrt(ab_{t'}),
    x_t = sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps,

over the *same* timesteps the sampler uses, in ascending order, so inverting and then sampling
with :class:`~sketchtk.diffusion.samplers.ReverseSampler` (``ddim``, ``eta = 0``) returns close to
the input; the gap is the discretisation error of evaluating ``eps`` at ``x_{t'}`` instead of
``x_t``. ChiroDiff's ``forward_purturb_DDIM`` (``main.py:561-573``) evaluates the network at the
earlier step ``t'`` and uses ``eps = 0`` on the first step (from the data); here ``eps`` is taken
at the step being entered, ``t``, the time the sampler evaluates when it comes back (one network
call per step either way).

``denoise_fn`` and ``context`` are as for ``ReverseSampler``; the process must be a
``GaussianProcess`` (``alphabar``, ``predict``).
"""

import numpy as np
import tensorflow as tf


class DDIMInverter:
    """Compiled DDIM inversion loop for one ``denoise_fn`` and ``process``.

    Example:
      >>> inverter = DDIMInverter(fn, process)
      >>> x_T = inverter.invert(x0, mask, sampling_timesteps(process, 30))
      >>> back, _, _ = ReverseSampler(fn, process).sample(x_T, mask, timesteps, "ddim", eta=0.0)
    """

    def __init__(self, denoise_fn, process, jit_compile=False):
        self.denoise_fn = denoise_fn
        self.process = process
        self._loop = tf.function(self._invert, jit_compile=jit_compile, reduce_retracing=True)

    def _invert(self, x, mask, ascending, context):
        n = tf.shape(ascending)[0]
        mask3 = mask[..., None]
        prev = tf.concat([[-1], ascending[:-1]], axis=0)
        batch = tf.shape(x)[0]

        def body(i, x):
            t = tf.fill([batch], ascending[i])
            out, _ = self.denoise_fn(x, t, mask, context)
            # x0 and eps as if x were at step t (the time the sampler evaluates on its way back)
            _, eps = self.process.predict(out, x, t)
            ab_prev = self.process.alphabar(tf.fill([batch], prev[i]))[:, None, None]
            x0 = (x - tf.sqrt(1.0 - ab_prev) * eps) / tf.sqrt(ab_prev)
            ab = self.process.alphabar(t)[:, None, None]
            return i + 1, (tf.sqrt(ab) * x0 + tf.sqrt(1.0 - ab) * eps) * mask3

        _, x = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), x * mask3))
        return x

    def invert(self, x0, mask, timesteps, context=()):
        """``x_T`` ``[B, L, C]`` of ``x0`` for the descending sampling ``timesteps`` (ending at 0)."""
        timesteps = np.asarray(timesteps, np.int32)
        if timesteps.ndim != 1 or len(timesteps) == 0 or timesteps[-1] != 0 or np.any(
                np.diff(timesteps) >= 0):
            raise ValueError("timesteps must be a descending sequence ending at 0")
        return self._loop(tf.convert_to_tensor(x0, tf.float32),
                          tf.convert_to_tensor(mask, tf.float32),
                          tf.constant(timesteps[::-1].copy()), context)
