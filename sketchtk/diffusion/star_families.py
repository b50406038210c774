"""Exponential families of the star-shaped diffusion (SS-DDPM, Okhotin et al., NeurIPS 2023).

A star-shaped process draws every ``x_t ~ q(x_t | x_0)`` independently of the others. When the
natural parameter of ``q`` is linear in (a function of) ``x_0``,
``log q(x_t | x_0) = <eta_t(x_0), T(x_t)> + ...`` with ``eta_t = a_t x_0``, the tail statistic
``G_t = sum_{s >= t} a_s T(x_s)`` carries everything ``x_{t:T}`` says about ``x_0``
(andrey-okhotin/star-shaped ``lib/diffusion/general_diffusion/star_shaped_diffusion.py:69-100``).

Each family here gives, for an int32 ``t`` of shape ``[B]`` and a tensor ``x0`` ``[B, L, C]`` in
the family's domain:

- ``forward_sample(x0, t, seed)``: ``x_t ~ q(x_t | x_0)`` (stateless ``seed`` ``[2]``);
- ``tail_term(x_t, t)``: ``a_t T(x_t)``; ``tail_sample(x0, t, seed)``: a draw of ``G_t``;
- ``kl(x0, x0_hat, t)``: ``KL(q(x_{t-1} | x0) || q(x_{t-1} | x0_hat))`` per element, and
  ``kl_rescaled`` (the reference's ``L_simple`` analogue for Beta,
  ``lib/diffusion/image_data_diffusion/beta_star_shaped.py:66-80``);
- ``from_output(out)``: ``x0_hat`` from the network's raw output; ``prior_sample``: the limit.

Families: :class:`GaussianFamily` (SS-DDPM's Gaussian case = DDPM, with the closed-form tail),
:class:`BetaFamily` (``Beta(1 + nu_t x0, 1 + nu_t (1 - x0))`` on ``(0, 1)``, ``T = logit``),
:class:`CategoricalFamily` (``p = x0 Qbar_t``; K = 2 is the Bernoulli pen state) and
:class:`VonMisesFamily` (angles on the circle; new, the reference has von Mises-Fisher on S^2
only). Time convention as ``schedules``: ``t`` in ``[0, T)``, ``t = 0`` the least noisy; at
``t = 0`` the "previous" distribution of the KL is ``q(x_0 | .)`` itself (the reference uses an
extra, sharper entry, e.g. ``nu_0 + 2`` at ``beta_star_shaped.py:23``).
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from sketchtk.diffusion.schedules import make_schedule

tfd = tfp.distributions

FAMILIES = ("gaussian", "beta", "categorical", "von_mises")
_LOGIT_FLOOR = 1e-30  # floor inside logs of Gamma draws (alpha >= 1 keeps them far from it)


def _bc(v, like):
    """``v [B] -> [B, 1, ..., 1]`` broadcastable against ``like``."""
    return tf.reshape(v, tf.concat([tf.shape(v), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def _prev(t):
    """The index of the "previous" step ``t - 1`` (0 stays 0, see the module docstring)."""
    return tf.maximum(tf.cast(t, tf.int32) - 1, 0)


def reverse_cumsum(x, axis=0):
    """``y[t] = sum_{s >= t} x[s]`` along ``axis``."""
    return tf.cumsum(x, axis=axis, reverse=True)


class StarFamily:
    """Common part: a ``[T]`` table of ``a_t`` and the exhaustive (all-T) tail draw."""

    num_steps: int
    out_channels_per_channel = 1  # network outputs per data channel
    stat_channels_per_channel = 1  # G channels per data channel
    normalised_by_stats = True  # the network sees (G - mean_t) / std_t (categorical: softmax)

    def a(self, t):
        return tf.gather(self._a, tf.cast(t, tf.int32))

    def tail_term(self, x_t, t):
        """``a_t T(x_t)``."""
        raise NotImplementedError

    def tail_sample_exhaustive(self, x0, t, seed):
        """``G_t`` by drawing all T ``x_s`` at once (one vectorised op, ``[T, B, ...]`` memory):
        the reference's ``sample_Gt`` (``star_shaped_diffusion.py:78-91``) without its
        ``x0.repeat(N)`` copy; the tail sum is a masked reduction."""
        num = self.num_steps
        b = tf.shape(x0)[0]
        steps = tf.range(num, dtype=tf.int32)
        x0_all = tf.repeat(x0[None], num, axis=0)  # [T, B, ...]
        flat = tf.reshape(x0_all, tf.concat([[num * b], tf.shape(x0)[1:]], 0))
        t_all = tf.repeat(steps, b)
        xs = self.forward_sample(flat, t_all, seed)
        terms = self.tail_term(xs, t_all)
        terms = tf.reshape(terms, tf.concat([[num, b], tf.shape(terms)[1:]], 0))
        keep = tf.cast(steps[:, None] >= tf.cast(t, tf.int32)[None, :], terms.dtype)  # [T, B]
        keep = tf.reshape(keep, tf.concat([[num, b], tf.ones([tf.rank(terms) - 2], tf.int32)], 0))
        return tf.reduce_sum(terms * keep, axis=0)

    def tail_sample_ragged(self, x0, t, seed):
        """``G_t`` drawing only the needed ``x_s``, ``s >= t_b``, of every example ``b``: the
        ragged set of ``sum_b (T - t_b)`` draws (``B T / 2`` on average for ``t ~ U[0, T)``, not
        ``B T``) as one flat vectorised draw, summed back per example by a segment sum. Exact."""
        t = tf.cast(t, tf.int32)
        counts = self.num_steps - t  # [B] tail lengths
        owner = tf.repeat(tf.range(tf.shape(t)[0]), counts)  # [N] example of each draw
        starts = tf.cumsum(counts, exclusive=True)
        steps = tf.gather(t, owner) + tf.range(tf.shape(owner)[0]) - tf.gather(starts, owner)
        terms = self.tail_term(self.forward_sample(tf.gather(x0, owner), steps, seed), steps)
        return tf.math.unsorted_segment_sum(terms, owner, tf.shape(t)[0])

    def tail_sample(self, x0, t, seed):
        """A draw of ``G_t`` given ``x0`` (exact: the ragged draw; the Gaussian overrides it with
        its closed form)."""
        return self.tail_sample_ragged(x0, t, seed)

    def kl_rescaled(self, x0, x0_hat, t):
        return self.kl(x0, x0_hat, t)


class GaussianFamily(StarFamily):
    """``q(x_t | x_0) = N(sqrt(ab_t) x_0, 1 - ab_t)``; ``T(x) = x``, ``a_t = sqrt(ab_t) / (1 - ab_t)``.

    Given ``x_0`` the tail is Gaussian: ``G_t ~ N(S_t x_0, S_t)`` with ``S_t = sum_{s >= t} SNR_s``
    (``a_s sqrt(ab_s) = a_s^2 (1 - ab_s) = SNR_s``), so :meth:`tail_sample` is one normal draw
    instead of T. The same algebra gives the DDPM it is equal to
    (:meth:`equivalent_ddpm_alphabar`): ``y_t = G_t / sqrt(S_t (1 + S_t))`` is a DDPM latent
    with ``SNR'_t = S_t``.
    """

    def __init__(self, num_steps, schedule="linear"):
        self.num_steps = int(num_steps)
        self.schedule = make_schedule(schedule, self.num_steps)
        ab = self.schedule.alphabar
        self.alphabar_np = ab
        self.snr_np = ab / (1.0 - ab)
        self.tail_snr_np = np.cumsum(self.snr_np[::-1])[::-1].copy()  # S_t
        self._ab = tf.constant(ab, tf.float32)
        self._a = tf.constant(np.sqrt(ab) / (1.0 - ab), tf.float32)
        self._s = tf.constant(self.tail_snr_np, tf.float32)
        self._snr = tf.constant(self.snr_np, tf.float32)

    def equivalent_ddpm_alphabar(self):
        """``ab'_t = S_t / (1 + S_t)``: the DDPM whose posterior the star-shaped sampler follows."""
        s = self.tail_snr_np
        return s / (1.0 + s)

    def moments(self, x0, t):
        ab = _bc(tf.gather(self._ab, t), x0)
        return tf.sqrt(ab) * x0, 1.0 - ab

    def forward_sample(self, x0, t, seed):
        mean, var = self.moments(x0, t)
        return mean + tf.sqrt(var) * tf.random.stateless_normal(tf.shape(x0), seed)

    def tail_term(self, x_t, t):
        return _bc(self.a(t), x_t) * x_t

    def tail_sample(self, x0, t, seed):
        s = _bc(tf.gather(self._s, t), x0)
        return s * x0 + tf.sqrt(s) * tf.random.stateless_normal(tf.shape(x0), seed)

    def prior_sample(self, shape, seed):
        ab = self.alphabar_np[-1]
        return math.sqrt(1.0 - ab) * tf.random.stateless_normal(shape, seed)

    def from_output(self, out):
        return out

    def kl(self, x0, x0_hat, t):
        snr = _bc(tf.gather(self._snr, _prev(t)), x0)
        return 0.5 * snr * tf.square(x0 - x0_hat)

    def kl_rescaled(self, x0, x0_hat, t):
        """KL / SNR_{t-1} = the x0-MSE / 2 (DDPM's ``L_simple`` for x0-prediction)."""
        return 0.5 * tf.square(x0 - x0_hat)


def beta_concentration_like(alphabar):
    """``nu_t`` matched to a Gaussian DDPM: the local signal-to-noise ratio of
    ``Beta(1 + nu x0, 1 + nu (1 - x0))`` at ``x0 = 1/2`` for data on ``[-1, 1]`` mapped to
    ``(0, 1)``, ``nu^2 (nu + 3) / (nu + 2)^2``, equals the DDPM's ``ab / (1 - ab)``.

    A departure: the reference loads a precomputed table (``nu_t_as_cosine.npy``, read by
    ``lib/diffusion/schedulers/nongaussian_schedulers.py:34-41``; 8695 at t = 0 where this rule
    gives ~24000 for the same cosine T = 1000) whose matching rule is not in the code.
    """
    snr = np.asarray(alphabar, np.float64) / (1.0 - np.asarray(alphabar, np.float64))
    lo, hi = np.zeros_like(snr), np.maximum(snr * 2.0 + 10.0, 1.0)
    for _ in range(200):  # bisection: the map is increasing in nu
        mid = 0.5 * (lo + hi)
        f = mid * mid * (mid + 3.0) / np.square(mid + 2.0)
        lo, hi = np.where(f < snr, mid, lo), np.where(f < snr, hi, mid)
    return 0.5 * (lo + hi)


class BetaFamily(StarFamily):
    """``q(x_t | x_0) = Beta(1 + nu_t x_0, 1 + nu_t (1 - x_0))`` on ``(0, 1)``; ``T = logit``,
    ``a_t = nu_t`` (as the reference's ``at = nu_t (1 - xi_t)`` with ``xi_t = 2 / nu_t``,
    ``beta_star_shaped.py:33``, ``nongaussian_schedulers.py:39-40``).

    Draws are made in logit space as ``log g_a - log g_b`` of two Gamma draws (exact, and no
    clipping of ``x_t`` near 0 or 1: the reference clips to ``[1e-4, 1 - 1e-4]``,
    ``beta_star_shaped.py:35``). ``forward_sample`` returns ``logit(x_t)``: the tail term is then
    ``nu_t * x_t_logit``; :meth:`to_unit` maps back.
    """

    def __init__(self, num_steps, schedule="cosine"):
        self.num_steps = int(num_steps)
        ab = make_schedule(schedule, self.num_steps).alphabar
        self.nu_np = beta_concentration_like(ab)
        self._nu = tf.constant(self.nu_np, tf.float32)
        self._a = self._nu

    def params(self, x0, t):
        nu = _bc(tf.gather(self._nu, t), x0)
        return 1.0 + nu * x0, 1.0 + nu * (1.0 - x0)

    def forward_sample(self, x0, t, seed):
        """``logit(x_t)`` for ``x_t ~ q(x_t | x0)``."""
        alpha, beta = self.params(x0, t)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        ga = tf.random.stateless_gamma(tf.shape(x0), seeds[0], alpha=alpha)
        gb = tf.random.stateless_gamma(tf.shape(x0), seeds[1], alpha=beta)
        return tf.math.log(tf.maximum(ga, _LOGIT_FLOOR)) - tf.math.log(tf.maximum(gb, _LOGIT_FLOOR))

    @staticmethod
    def to_unit(x_logit):
        return tf.sigmoid(x_logit)

    def tail_term(self, x_t, t):
        return _bc(self.a(t), x_t) * x_t

    def prior_sample(self, shape, seed):
        """Beta(1, 1) = uniform (the reference's ``result_distribution``,
        ``beta_star_shaped.py:58-63``), as a logit."""
        u = tf.random.stateless_uniform(shape, seed, 1e-7, 1.0 - 1e-7)
        return tf.math.log(u) - tf.math.log1p(-u)

    def from_output(self, out):
        """A sigmoid onto (0, 1) (``beta_star_shaped.py:83-95``)."""
        return tf.sigmoid(out)

    def _dist(self, x0, t):
        alpha, beta = self.params(x0, t)
        return tfd.Beta(alpha, beta)

    def kl(self, x0, x0_hat, t):
        return tfd.kl_divergence(self._dist(x0, _prev(t)), self._dist(x0_hat, _prev(t)))

    def kl_rescaled(self, x0, x0_hat, t):
        """KL / nu_{t-1} (``beta_star_shaped.py:66-80`` divides its lgamma terms by nu)."""
        return self.kl(x0, x0_hat, t) / _bc(tf.gather(self._nu, _prev(t)), x0)


class CategoricalFamily(StarFamily):
    """``q(x_t | x_0) = Cat(x_0 Qbar_t)``, ``Qbar_t = (1 - b_t) I + b_t / K 11^T`` with
    ``b_t = 1 - alphabar_t`` of a cosine schedule (D3PM's uniform kernel; the reference's
    ``default_d3pm`` scheduler, ``nongaussian_schedulers.py:67-90``). ``x0`` and ``x_t`` are
    one-hot ``[..., K]``; the tail term is ``log(x_t Qbar_t^T)`` and the network sees
    ``softmax(G_t)`` (``categorical_star_shaped.py:50-81``). K = 2 is the Bernoulli pen state."""

    normalised_by_stats = False

    def __init__(self, num_steps, num_classes=2, schedule="cosine"):
        self.num_steps = int(num_steps)
        self.num_classes = int(num_classes)
        self.out_channels_per_channel = self.stat_channels_per_channel = 1
        ab = make_schedule(schedule, self.num_steps).alphabar
        self.b_np = 1.0 - ab
        self._b = tf.constant(self.b_np, tf.float32)

    def probs(self, x0, t):
        b = _bc(tf.gather(self._b, t), x0)
        return (1.0 - b) * x0 + b / self.num_classes

    def forward_sample(self, x0, t, seed):
        logits = tf.math.log(tf.maximum(self.probs(x0, t), 1e-30))
        flat = tf.reshape(logits, [-1, self.num_classes])
        idx = tf.random.stateless_categorical(flat, 1, seed)[:, 0]
        return tf.reshape(tf.one_hot(idx, self.num_classes), tf.shape(x0))

    def tail_term(self, x_t, t):
        # x_t Qbar_t^T for a one-hot x_t (Qbar is symmetric): (1 - b) x_t + b / K
        return tf.math.log(self.probs(x_t, t))

    def prior_sample(self, shape, seed):
        flat = tf.zeros(tf.stack([tf.reduce_prod(shape[:-1]), self.num_classes]))
        idx = tf.random.stateless_categorical(flat, 1, seed)[:, 0]
        return tf.reshape(tf.one_hot(idx, self.num_classes), shape)

    def from_output(self, out):
        return tf.nn.softmax(out, axis=-1)

    def kl(self, x0, x0_hat, t):
        """Per example-and-point KL, reported on every one of the K channels / K (so summing over
        channels gives the KL)."""
        p = self.probs(x0, _prev(t))
        q = self.probs(x0_hat, _prev(t))
        kl = tf.reduce_sum(p * (tf.math.log(tf.maximum(p, 1e-30)) - tf.math.log(
            tf.maximum(q, 1e-30))), axis=-1, keepdims=True)
        return tf.repeat(kl / self.num_classes, self.num_classes, axis=-1)

    def kl_rescaled(self, x0, x0_hat, t):
        """The plain KL (the reference trains categorical SS-DDPM with ``-loss KL``)."""
        return self.kl(x0, x0_hat, t)


def von_mises_kl(mu1, kappa1, mu2, kappa2):
    """``KL(VM(mu1, kappa1) || VM(mu2, kappa2))``, derived for this toolkit:

    ``log p - log q = kappa1 cos(x - mu1) - kappa2 cos(x - mu2) - log I0(kappa1) + log I0(kappa2)``
    and under ``p``: ``E cos(x - mu1) = A(kappa1)``, ``E cos(x - mu2) = A(kappa1) cos(mu1 - mu2)``
    with ``A = I1 / I0``, so
    ``KL = A(kappa1) (kappa1 - kappa2 cos(mu1 - mu2)) + log I0(kappa2) - log I0(kappa1)``.
    Bessel functions in their exponentially scaled forms (``log I0(k) = log i0e(k) + k``).
    """
    a1 = tf.math.bessel_i1e(kappa1) / tf.math.bessel_i0e(kappa1)
    log_i0 = lambda k: tf.math.log(tf.math.bessel_i0e(k)) + k  # noqa: E731
    return a1 * (kappa1 - kappa2 * tf.cos(mu1 - mu2)) + log_i0(kappa2) - log_i0(kappa1)


class VonMisesFamily(StarFamily):
    """Angles: ``q(x_t | x_0) = VM(x_0, kappa_t)`` with ``kappa_t = SNR_t`` of a DDPM schedule
    (for large ``kappa`` the von Mises is ``N(x_0, 1 / kappa)``); the natural parameter
    ``kappa_t (cos x_0, sin x_0)`` is linear in the unit vector of ``x_0``, so
    ``T(x) = (cos x, sin x)``, ``a_t = kappa_t`` and ``G_t`` has two channels per angle. The
    network outputs a 2-vector per angle; ``x0_hat = atan2``. New in this toolkit (the reference's
    ``von_mises_fisher_star_shaped.py`` is on the sphere S^2)."""

    out_channels_per_channel = 2
    stat_channels_per_channel = 2

    def __init__(self, num_steps, schedule="cosine", max_kappa=1e4):
        self.num_steps = int(num_steps)
        ab = make_schedule(schedule, self.num_steps).alphabar
        self.kappa_np = np.minimum(ab / (1.0 - ab), max_kappa)
        self._kappa = tf.constant(self.kappa_np, tf.float32)
        self._a = self._kappa

    def forward_sample(self, x0, t, seed):
        kappa = _bc(tf.gather(self._kappa, t), x0) * tf.ones_like(x0)
        # TFP's sampler takes an int32 stateless seed
        seed32 = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), 2 ** 31 - 1), tf.int32)
        return tfd.VonMises(x0, kappa).sample(seed=seed32)

    def tail_term(self, x_t, t):
        a = _bc(self.a(t), x_t)
        return tf.concat([a * tf.cos(x_t), a * tf.sin(x_t)], axis=-1)

    def prior_sample(self, shape, seed):
        return tf.random.stateless_uniform(shape, seed, -math.pi, math.pi)

    def from_output(self, out):
        c = tf.shape(out)[-1] // 2
        return tf.atan2(out[..., c:], out[..., :c])

    def kl(self, x0, x0_hat, t):
        kappa = _bc(tf.gather(self._kappa, _prev(t)), x0) * tf.ones_like(x0)
        return von_mises_kl(x0, kappa, x0_hat, kappa)

    def kl_rescaled(self, x0, x0_hat, t):
        """KL / kappa_{t-1} = ``A(kappa) (1 - cos(x0 - x0_hat))``."""
        kappa = _bc(tf.gather(self._kappa, _prev(t)), x0)
        return self.kl(x0, x0_hat, t) / kappa


def make_family(name, num_steps, schedule=None, **kwargs):
    """The family called ``name`` (one of ``FAMILIES``)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown star-shaped family {name!r}; choose one of {list(FAMILIES)}")
    cls = {"gaussian": GaussianFamily, "beta": BetaFamily, "categorical": CategoricalFamily,
           "von_mises": VonMisesFamily}[name]
    if schedule is not None:
        kwargs["schedule"] = schedule
    return cls(num_steps, **kwargs)
