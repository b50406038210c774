"""Reverse-process samplers: DDPM with a variance strength and DDIM with respacing and eta.

Both are one ``tf.function`` while-loop over a whole batch (ChiroDiff ``main.py:575-611`` and
SketchKnitter ``gaussian_diffusion.py:271-333`` loop in Python, one model call per step).

- ``ddpm``: ``x_{t'} = mu(x_t, x0_hat) + s sqrt(var) z`` with the posterior ``q(x_{t'} | x_t, x0)``
  between consecutive sampled steps ``t > t'``; ``s`` is ChiroDiff's variance strength
  (``main.py:522-534``: ``noise * sqrt(beta_tilde) * noise_weight``; 0.75 at test).
- ``ddim``: ``x_{t'} = sqrt(ab') x0_hat + sqrt(1 - ab' - sigma^2) eps_hat + sigma z`` with
  ``sigma = eta sqrt(var)`` (Song et al. 2021, eq. 12; ChiroDiff ``main.py:536-559``, which never
  respaces: it always runs all T steps). With ``eta = 1`` and every step it is DDPM with ``s = 1``.

``timesteps`` is a descending int array ending at 0 (:func:`schedules.respaced_timesteps`).
``denoise_fn(x_t [B, L, C], t [B] int32, mask [B, L], context) -> (out [B, L, C], aux [B, L, A])``;
``context`` is passed through unchanged (e.g. class labels: an argument of the compiled loop, not a
constant baked into it); ``aux`` (e.g. pen-state logits) of the final call is returned.
"""

import numpy as np
import tensorflow as tf

from sketchtk.diffusion.schedules import respaced_timesteps

METHODS = ("ddpm", "ddim")


def reverse_step(process, method, x_t, model_out, t, t_prev, noise, eta, variance_strength):
    """One reverse step from ``t`` to ``t_prev`` (int32 ``[B]``; -1 = the data)."""
    if hasattr(process, "reverse_step"):  # a process whose posterior is not diagonal in x (spd)
        return process.reverse_step(method, x_t, model_out, t, t_prev, noise, eta,
                                    variance_strength)
    x0, eps = process.predict(model_out, x_t, t)
    mean, var = process.posterior(x0, x_t, t, t_prev)
    if method == "ddpm":
        return mean + variance_strength * tf.sqrt(var) * noise
    ab_prev = process.alphabar(t_prev)[:, None, None]
    sigma2 = tf.square(eta) * var
    direction = tf.sqrt(tf.maximum(1.0 - ab_prev - sigma2, 0.0))
    return tf.sqrt(ab_prev) * x0 + direction * eps + tf.sqrt(sigma2) * noise


def step_noise(seed, i, shape):
    """The standard-normal noise of reverse step ``i`` for the stateless ``seed`` ``[2]``."""
    return tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(seed, i))


@tf.function(reduce_retracing=True)
def _all_step_noise(seed, steps, shape):
    """``[steps, *shape]``: :func:`step_noise` of every step, drawn outside XLA (XLA's stateless
    normal draws other numbers for the same seed, so an XLA loop takes its noise from here and
    gives the same samples as the plain loop)."""
    return tf.map_fn(lambda i: step_noise(seed, i, shape), tf.range(steps),
                     fn_output_signature=tf.float32)


def sampling_timesteps(process, steps=None):
    """The descending timesteps for ``steps`` sampling steps (None = all T)."""
    return respaced_timesteps(process.num_steps, steps or process.num_steps)


class ReverseSampler:
    """Compiled reverse-process loop for one ``denoise_fn`` and ``process``.

    Args:
      denoise_fn: see the module docstring (traced once per input shape and method).
      process: a ``GaussianProcess`` (DDIM needs ``alphabar``).
      aux_channels: ``A``, the channels of ``denoise_fn``'s second output.
      jit_compile: XLA-compile the loop (its noise is drawn before the loop, in ``[S, B, L, C]``
        memory, so a seed gives the same samples either way).

    Example:
      >>> sampler = ReverseSampler(fn, process, aux_channels=0)
      >>> x0, aux, traj = sampler.sample(x_T, mask, sampling_timesteps(process, 30), "ddim",
      ...                                eta=0.0, seed=(0, 1))
    """

    def __init__(self, denoise_fn, process, aux_channels=0, jit_compile=False):
        self.denoise_fn = denoise_fn
        self.process = process
        self.aux_channels = int(aux_channels)
        self._loops = {}
        self._jit = jit_compile

    def _loop(self, method, record):
        key = (method, record)
        if key not in self._loops:
            def loop(x, mask, timesteps, eta, strength, seed, context, noises):
                n = tf.shape(timesteps)[0]
                mask3 = mask[..., None]
                prev = tf.concat([timesteps[1:], [-1]], axis=0)
                batch = tf.shape(x)[0]
                aux = tf.zeros(tf.concat([tf.shape(x)[:2], [self.aux_channels]], 0), x.dtype)
                traj = tf.TensorArray(x.dtype, size=n + 1 if record else 1)
                traj = traj.write(0, x)

                def body(i, x, aux, traj):
                    t = tf.fill([batch], timesteps[i])
                    out, aux = self.denoise_fn(x, t, mask, context)
                    noise = step_noise(seed, i, tf.shape(x)) if noises is None else noises[i]
                    # keep the static shape (a denoiser may lose the batch size, e.g. at batch 1)
                    x = tf.ensure_shape(reverse_step(self.process, method, x, out, t,
                                                     tf.fill([batch], prev[i]), noise, eta,
                                                     strength) * mask3, x.shape)
                    aux = tf.ensure_shape(aux, x.shape[:2].concatenate([self.aux_channels]))
                    if record:
                        traj = traj.write(i + 1, x)
                    return i + 1, x, aux, traj

                _, x, aux, traj = tf.while_loop(lambda i, *_: i < n, body,
                                                (tf.constant(0), x * mask3, aux, traj))
                return x, aux, traj.stack()
            self._loops[key] = tf.function(loop, jit_compile=self._jit, reduce_retracing=True)
        return self._loops[key]

    def sample(self, x_T, mask, timesteps, method="ddpm", eta=0.0, variance_strength=1.0,
               seed=(0, 0), record=False, context=()):
        """Run the reverse process from ``x_T``.

        Returns:
          ``(x0 [B, L, C], aux [B, L, A], trajectory)``; ``trajectory`` is ``[S + 1, B, L, C]``
          (``x_T`` then ``x`` after each of the ``S`` steps) when ``record``, else ``[1, ...]``.
        """
        if method not in METHODS:
            raise ValueError(f"unknown sampler {method!r}; choose one of {list(METHODS)}")
        timesteps = np.asarray(timesteps, np.int32)
        if timesteps.ndim != 1 or len(timesteps) == 0 or timesteps[-1] != 0 or np.any(
                np.diff(timesteps) >= 0):
            raise ValueError("timesteps must be a descending sequence ending at 0")
        fn = self._loop(method, bool(record))
        x_T = tf.convert_to_tensor(x_T, tf.float32)
        seed = tf.constant(np.asarray(seed, np.int64).reshape(2))
        noises = (_all_step_noise(seed, tf.constant(len(timesteps)), tf.shape(x_T))
                  if self._jit else None)
        return fn(x_T, tf.convert_to_tensor(mask, tf.float32), tf.constant(timesteps),
                  tf.constant(float(eta)), tf.constant(float(variance_strength)), seed, context,
                  noises)
