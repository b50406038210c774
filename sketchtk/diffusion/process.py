"""The forward process, its posterior and the training loss behind one small interface.

``DiffusionProcess`` is what the samplers and ``StrokeDiffusion`` use; ``GaussianProcess`` is DDPM
(Ho et al. 2020). Star-shaped (Okhotin et al. 2023) and shortest-path (Das et al. 2023) processes
are to implement the same methods. Shapes: ``x0``, ``x_t``, ``noise``: ``[B, L, C]``; ``t``: int32
``[B]`` in ``[0, T)``; ``mask``: float ``[B, L]`` (1 = a real point).
"""

import abc

import tensorflow as tf

from sketchtk.diffusion.schedules import make_schedule

PARAMETRISATIONS = ("eps", "x0", "v")


def masked_sequence_mse(pred, target, mask):
    """Per-example MSE over real points: mean over channels, sum over points / length ``[B]``.

    As ChiroDiff ``main.py:279-284`` (each sequence averaged over its own length, then the batch);
    padding contributes nothing, whatever it holds. SketchKnitter (``gaussian_diffusion.py:546``)
    averages over all 96 rows, padding included.
    """
    mask = tf.cast(mask, pred.dtype)
    per_point = tf.reduce_mean(tf.square(pred - target), axis=-1)
    length = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return tf.reduce_sum(per_point * mask, axis=1) / length


class DiffusionProcess(abc.ABC):
    """Interface of a diffusion process over ``[B, L, C]`` sequences."""

    num_steps: int

    @abc.abstractmethod
    def q_sample(self, x0, t, noise):
        """A draw of ``x_t ~ q(x_t | x_0)`` using the given standard-normal ``noise``."""

    @abc.abstractmethod
    def prior_sample(self, shape, seed):
        """A draw of ``x_T`` from the limit distribution (``seed``: stateless ``[2]``)."""

    @abc.abstractmethod
    def posterior(self, x0, x_t, t, t_prev):
        """Mean and variance of ``q(x_{t_prev} | x_t, x_0)`` (``t_prev < t``; -1 = the data)."""

    @abc.abstractmethod
    def target(self, x0, noise, t):
        """What the network is trained to output for ``x_t = q_sample(x0, t, noise)``."""

    @abc.abstractmethod
    def predict(self, model_out, x_t, t):
        """``(x0_hat, eps_hat)`` from the network output at ``(x_t, t)``."""

    def loss(self, model_out, x0, noise, t, mask):
        """Per-example masked MSE of the network output against :meth:`target` ``[B]``."""
        return masked_sequence_mse(model_out, self.target(x0, noise, t), mask)


class GaussianProcess(DiffusionProcess):
    """DDPM: ``x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps``.

    Args:
      num_steps: T.
      schedule: ``linear`` or ``cosine`` (:mod:`sketchtk.diffusion.schedules`).
      parametrisation: the network predicts ``eps`` (default; both releases), ``x0``, or
        ``v = sqrt(alphabar) eps - sqrt(1 - alphabar) x0`` (Salimans & Ho 2022).

    The predicted ``x0`` is never clamped: SketchKnitter's ``clip_denoised``
    (``gaussian_diffusion.py:188-193``) bounds every normalised offset to +-1 std.
    """

    def __init__(self, num_steps, schedule="linear", parametrisation="eps"):
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"unknown parametrisation {parametrisation!r}; choose one of "
                             f"{list(PARAMETRISATIONS)}")
        self.num_steps = int(num_steps)
        self.schedule = make_schedule(schedule, self.num_steps)
        self.parametrisation = parametrisation
        # index 0 of the padded table is "t = -1" (alphabar 1, the data), index t + 1 is step t
        self._alphabar = tf.constant([1.0, *self.schedule.alphabar], tf.float32)

    def alphabar(self, t):
        """``alphabar`` at int ``t`` (any shape; -1 gives 1), float32."""
        return tf.gather(self._alphabar, tf.cast(t, tf.int32) + 1)

    @staticmethod
    def _bc(v):
        return v[:, None, None]

    def q_sample(self, x0, t, noise):
        ab = self._bc(self.alphabar(t))
        return tf.sqrt(ab) * x0 + tf.sqrt(1.0 - ab) * noise

    def prior_sample(self, shape, seed):
        return tf.random.stateless_normal(shape, seed)

    def posterior(self, x0, x_t, t, t_prev):
        ab_t = self._bc(self.alphabar(t))
        ab_prev = self._bc(self.alphabar(t_prev))
        alpha = ab_t / ab_prev  # the product of the alphas between t_prev and t
        beta = 1.0 - alpha
        mean = (tf.sqrt(ab_prev) * beta / (1.0 - ab_t)) * x0 + (
            tf.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab_t)) * x_t
        var = beta * (1.0 - ab_prev) / (1.0 - ab_t)
        return mean, var

    def loss_weight(self, t, max_weight):
        """Per-example weights ``[B]`` that put an eps-MSE in ``x0`` units where the signal is
        weak: ``clip(1 / SNR_t, 1, max_weight)``, ``SNR_t = alphabar_t / (1 - alphabar_t)``.

        The eps-MSE is the x0-MSE times ``SNR_t``, so at the nearly pure-noise steps, where a
        sketch's layout is decided (on the ``chirodiff`` schedule alphabar is 0.002 at t = 75 of
        100), the uniform loss hardly depends on what the network predicts for x0; a conditioning
        vector that describes the sketch then lowers the loss by little (README, Diffusion
        applications). Weight 1 keeps the uniform loss at the high-SNR steps (Hang et al., ICCV
        2023, Min-SNR weighting, bound the weights the other way round, for faster training)."""
        ab = self.alphabar(t)
        return tf.clip_by_value((1.0 - ab) / tf.maximum(ab, 1e-12), 1.0, float(max_weight))

    def target(self, x0, noise, t):
        if self.parametrisation == "eps":
            return noise
        if self.parametrisation == "x0":
            return x0
        ab = self._bc(self.alphabar(t))
        return tf.sqrt(ab) * noise - tf.sqrt(1.0 - ab) * x0

    def predict(self, model_out, x_t, t):
        ab = self._bc(self.alphabar(t))
        a, s = tf.sqrt(ab), tf.sqrt(1.0 - ab)
        if self.parametrisation == "eps":
            return (x_t - s * model_out) / a, model_out
        if self.parametrisation == "x0":
            return model_out, (x_t - a * model_out) / s
        return a * x_t - s * model_out, s * x_t + a * model_out
