"""The GMM-structured latent space of RPCL-pix2seq, learned by EM / RPCL moving averages."""

import math

import keras
import tensorflow as tf

_LOG_2PI = math.log(2.0 * math.pi)
_SIGMA2_MIN = 1e-10
_SIGMA2_MAX = 1e10
# The reference's epsilons (model.py 222, 238-242): the posterior's denominator 1e-300 (taken in
# log space) and the 1e-10 of every normalisation and M-step denominator.
_LOG_POSTERIOR_EPS = math.log(1e-300)
_ESTIMATE_EPS = 1e-10


@keras.saving.register_keras_serializable(package="sketchtk")
class GMMLatent(keras.layers.Layer):
    """Gaussian mixture prior over the latent codes, with EM and RPCL parameter updates.

    The state is three non-trainable weights (saved and restored with the model's weights):
    ``mu`` ``[K, Z]`` ~ U(-1, 1) (seeded), ``sigma2`` ``[K, Z]`` = 1 and ``alpha`` ``[K]`` = 1/K.
    They are never touched by the optimiser: each training step computes the batch's EM or RPCL
    estimate (``batch_statistics`` -> ``estimate``), uses the *new* state in the KL terms (under
    stop-gradient) and assigns it after the gradient step (``assign_state``), as the reference
    does (RPCL-pix2seq ``model.py`` 105-116: ``q_mu``, ``q_sigma2``, ``q_alpha`` feed the losses;
    ``model.py`` 134-137 assign them in the same ``session.run``).

    What follows the reference code (CMACH508/RPCL-pix2seq, ``model.py``) and how:

    * **Posterior used for learning** (``posterior``; ``model.py`` 206-224 ``calculate_prob`` /
      ``calculate_posterior``): gamma = alpha p / (1e-300 + sum_k alpha p), clipped to
      [``posterior_floor``, 1] (1e-5) and renormalised by ``1e-10 + sum``. The floor gives every
      component a little weight on every sample, so a component that loses every sample still
      follows the data instead of freezing at its initialisation. The reference evaluates p in
      float64 and ``exp`` underflows: when a code is far from every component (early training in
      128-D) all p are 0, gamma = 0 / 1e-300 = 0, the clip lifts every entry to 1e-5 and the
      renormalisation makes gamma *uniform*. sketchtk computes the same expression in log space,
      log gamma_k = l_k - logaddexp(log 1e-300, logsumexp_k l_k) with l_k = log alpha_k + log N_k,
      so the uniform regime arises exactly where the reference's denominator is dominated by its
      1e-300 (sum_k alpha p < ~1e-300) and not because of float underflow; in between, the
      result equals the reference's. ``posterior_floor=0`` gives the exact posterior instead.
    * **M-step** (``model.py`` 251-269 ``em``): y is the encoder mean, and the encoder variance
      enters the variance estimate: mu' = sum_b g y / (sum_b g + 1e-10),
      sigma2' = sum_b g [(y - mu')^2 + sigma2_enc] / (sum_b g + 1e-10), alpha' = mean_b g.
    * **RPCL** (``model.py`` 226-249 ``rpcl``): g = onehot(winner) - 1e-4 onehot(rival), winner
      and rival the two best components of the floored gamma (first index on ties, as argmax).
      A component that is neither winner nor rival in the batch has sum g = 0: its estimate is
      0 / (0 + 1e-10) = 0, so mu and sigma2 decay toward 0 and alpha toward 0 on that RPCL step;
      a rival-only component (sum g < 0) gets the plain mean of its rival points and a negative
      alpha estimate, which the clip at 0 turns into pruning. Both are part of how the reference
      prunes, and both are reproduced.
    * **EMA**: new = (1 - r) old + r estimate (r = 0.05); sigma2 clipped to [1e-10, 1e10];
      alpha clipped to [0, 1] and renormalised.
    * **Schedule** (``use_rpcl_at``; ``model.py`` 108-112 with the counter ``train.py`` 141-161
      feeds from 0): EM while step <= ``warmup_steps``; afterwards RPCL when step % 3 == 0.

    sketchtk departures, none changing the result: the log-space posterior above; the statistics
    are sums over the batch expanded about the current mean (``batch_statistics``), so several
    replicas combine them with one SUM all-reduce and float32 does not cancel catastrophically.

    **Active components** (``num_active``): alpha_k > ``active_threshold``, default 1e-3.

    Args:
        num_components: int K = num_mixture * num_sub (>= 2; default 10).
        z_size: int Z, the latent size (default 128).
        ema_rate: float, weight of the batch estimate in new = (1 - r) old + r estimate (0.05).
        rpcl_rival_rate: float, the de-learning rate of the rival (1e-4).
        warmup_steps: int, EM-only steps (500).
        rpcl_every: int, RPCL on every ``rpcl_every``-th step after the warm-up (3).
        active_threshold: float, alpha above which a component counts as active (1e-3).
        posterior_floor: float, the clip of gamma before renormalisation (1e-5; 0 = exact).
        seed: int or None, seed of the U(-1, 1) initialisation of ``mu``.

    Call arguments:
        z: float ``[B, Z]`` latent codes.

    Returns:
        float ``[B, K]`` exact log posterior log p(k | z_b) (for assignments and plots).

    Example:
        >>> gmm = GMMLatent(num_components=10, z_size=128, seed=0)
        >>> gamma, log_gamma = gmm.posterior(z)                    # floored, as the reference
        >>> new = gmm.estimate(gmm.batch_statistics(gamma, mu, sigma2, gmm.use_rpcl_at(step)))
        >>> gmm.assign_state(new)                                  # after the gradient step

    Reference:
        Zang, Tu & Xu, "Controllable stroke-based sketch synthesis from a self-organized latent
        space", Neural Networks 137 (2021). Xu, Krzyzak & Oja, "Rival penalized competitive
        learning for clustering analysis, RBF net, and curve detection", IEEE TNN 4(4), 1993.
    """

    def __init__(self, num_components=10, z_size=128, ema_rate=0.05, rpcl_rival_rate=1e-4,
                 warmup_steps=500, rpcl_every=3, active_threshold=1e-3, posterior_floor=1e-5,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_components) < 2:
            raise ValueError(
                f"num_components must be >= 2 (RPCL needs a rival), got {num_components}")
        if int(z_size) < 1:
            raise ValueError(f"z_size must be >= 1, got {z_size}")
        if not 0.0 < float(ema_rate) <= 1.0:
            raise ValueError(f"ema_rate must be in (0, 1], got {ema_rate}")
        if int(rpcl_every) < 1:
            raise ValueError(f"rpcl_every must be >= 1, got {rpcl_every}")
        if not 0.0 <= float(posterior_floor) < 1.0 / int(num_components):
            raise ValueError(f"posterior_floor must be in [0, 1/K), got {posterior_floor}")
        self.num_components = int(num_components)
        self.z_size = int(z_size)
        self.ema_rate = float(ema_rate)
        self.rpcl_rival_rate = float(rpcl_rival_rate)
        self.warmup_steps = int(warmup_steps)
        self.rpcl_every = int(rpcl_every)
        self.active_threshold = float(active_threshold)
        self.posterior_floor = float(posterior_floor)
        self.seed = seed
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: self.z_size})

    def build(self, input_shape=None):
        k, z = self.num_components, self.z_size
        # ONLY_FIRST_REPLICA: updates computed from all-reduced statistics are identical on every
        # replica, so an assign inside strategy.run keeps the first; cross-replica assigns work too.
        self.mu = self.add_weight(
            name="mu", shape=(k, z), trainable=False, aggregation="only_first_replica",
            initializer=keras.initializers.RandomUniform(-1.0, 1.0, seed=self.seed))
        self.sigma2 = self.add_weight(
            name="sigma2", shape=(k, z), trainable=False, aggregation="only_first_replica",
            initializer="ones")
        self.alpha = self.add_weight(
            name="alpha", shape=(k,), trainable=False, aggregation="only_first_replica",
            initializer=keras.initializers.Constant(1.0 / k))
        self.built = True

    def _ensure_built(self):
        if not self.built:
            self.build((None, self.z_size))

    # ---------------------------------------------------------------- posterior

    def log_prob_components(self, z):
        """log alpha_k + log N(z_b; mu_k, diag sigma2_k): float ``[B, K]`` from ``z`` ``[B, Z]``."""
        self._ensure_built()
        z = tf.convert_to_tensor(z, dtype=self.mu.dtype)
        mu = tf.convert_to_tensor(self.mu)
        sigma2 = tf.convert_to_tensor(self.sigma2)
        alpha = tf.convert_to_tensor(self.alpha)
        diff = z[:, None, :] - mu[None, :, :]                                # [B, K, Z]
        mahalanobis = tf.reduce_sum(tf.square(diff) / sigma2[None], axis=-1)  # [B, K]
        log_det = tf.reduce_sum(tf.math.log(sigma2), axis=-1)                # [K]
        log_normal = -0.5 * (mahalanobis + log_det[None] + self.z_size * _LOG_2PI)
        return tf.math.log(alpha)[None, :] + log_normal

    def log_posterior(self, z):
        """Exact log gamma_bk = log p(k | z_b): float ``[B, K]``, rows log-sum-exp to 0."""
        # log_softmax subtracts the row max before the logsumexp: exact even when every log
        # density is ~-1e17 (collapsed variances, far codes), where log_joint - logsumexp rounds.
        return tf.nn.log_softmax(self.log_prob_components(z), axis=-1)

    def posterior(self, z):
        """The responsibilities the reference learns with (``model.py`` 217-224), in log space.

        Returns:
            ``(gamma, log_gamma)``, float ``[B, K]`` each: gamma_k = c_k / (1e-10 + sum_k c_k),
            c_k = clip(exp(l_k - logaddexp(log 1e-300, logsumexp_k l_k)), floor, 1),
            l_k = log alpha_k + log N(z; mu_k, sigma2_k). With ``posterior_floor`` 0 the exact
            posterior. Differentiable in ``z`` (zero gradient on clipped entries, as the
            reference's ``clip_by_value``).
        """
        joint = self.log_prob_components(z)
        if self.posterior_floor <= 0.0:
            log_gamma = tf.nn.log_softmax(joint, axis=-1)
            return tf.exp(log_gamma), log_gamma
        eps = tf.constant(_LOG_POSTERIOR_EPS, joint.dtype)
        log_denominator = tf.math.reduce_logsumexp(
            tf.concat([joint, tf.fill([tf.shape(joint)[0], 1], eps)], axis=-1), axis=-1,
            keepdims=True)
        clipped = tf.clip_by_value(tf.exp(joint - log_denominator), self.posterior_floor, 1.0)
        total = _ESTIMATE_EPS + tf.reduce_sum(clipped, axis=-1, keepdims=True)
        return clipped / total, tf.math.log(clipped) - tf.math.log(total)

    def call(self, z):
        return self.log_posterior(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_components,)

    # ---------------------------------------------------------------- EM / RPCL

    def rpcl_responsibilities(self, gamma):
        """onehot(winner) - rpcl_rival_rate * onehot(rival) from ``gamma`` ``[B, K]``.

        ``top_k`` puts the lower index first on ties, as the reference's ``argmax`` does in its
        uniform regime (winner 0, rival 1).
        """
        gamma = tf.convert_to_tensor(gamma)
        top = tf.math.top_k(gamma, k=2).indices                          # [B, 2]
        winner = tf.one_hot(top[:, 0], self.num_components, dtype=gamma.dtype)
        rival = tf.one_hot(top[:, 1], self.num_components, dtype=gamma.dtype)
        return winner - self.rpcl_rival_rate * rival

    def m_step_weights(self, gamma, use_rpcl=False):
        """The M-step weights ``[B, K]``: gamma (EM) or the RPCL winner/rival weights."""
        gamma = tf.convert_to_tensor(gamma)
        if isinstance(use_rpcl, bool):
            return self.rpcl_responsibilities(gamma) if use_rpcl else gamma
        return tf.where(tf.cast(use_rpcl, tf.bool), self.rpcl_responsibilities(gamma), gamma)

    def batch_statistics(self, gamma, mu_enc, sigma2_enc, use_rpcl=False):
        """Sufficient statistics of one (per-replica) batch, every entry a sum over the batch.

        Args:
            gamma: float ``[B, K]`` responsibilities from ``posterior`` (of the sampled codes).
            mu_enc: float ``[B, Z]`` encoder means (the data y of the M-step).
            sigma2_enc: float ``[B, Z]`` encoder variances.
            use_rpcl: Python bool or bool scalar tensor (``use_rpcl_at(step)``).

        Returns:
            dict of float32 tensors, summable across replicas:
            ``sum_gamma`` ``[K]`` = sum_b g_bk;
            ``sum_gamma_y`` ``[K, Z]`` = sum_b g_bk (y_b - mu_k);
            ``sum_gamma_y2`` ``[K, Z]`` = sum_b g_bk (y_b - mu_k)^2;
            ``sum_gamma_sigma2`` ``[K, Z]`` = sum_b g_bk sigma2_enc_b; ``count`` ``[]`` = B.
            (g are the M-step weights; mu_k is the current state, a shift that keeps the
            expanded square accurate.)
        """
        self._ensure_built()
        dtype = self.mu.dtype
        g = self.m_step_weights(tf.stop_gradient(tf.convert_to_tensor(gamma, dtype)), use_rpcl)
        y = tf.stop_gradient(tf.convert_to_tensor(mu_enc, dtype=dtype))
        s2 = tf.stop_gradient(tf.convert_to_tensor(sigma2_enc, dtype=dtype))
        shifted = y[:, None, :] - tf.convert_to_tensor(self.mu)[None, :, :]   # [B, K, Z]
        return {
            "sum_gamma": tf.reduce_sum(g, axis=0),
            "sum_gamma_y": tf.einsum("bk,bkz->kz", g, shifted),
            "sum_gamma_y2": tf.einsum("bk,bkz->kz", g, tf.square(shifted)),
            "sum_gamma_sigma2": tf.matmul(g, s2, transpose_a=True),
            "count": tf.cast(tf.shape(y)[0], dtype),
        }

    def estimate(self, stats):
        """The EMA-updated state from (summed) ``batch_statistics``, without assigning it.

        Returns a dict of tensors ``mu`` ``[K, Z]``, ``sigma2`` ``[K, Z]``, ``alpha`` ``[K]``:
        new = (1 - ema_rate) old + ema_rate estimate with the reference's 1e-10 in every
        denominator (``model.py`` 238-242, 259-262); sigma2 clipped to [1e-10, 1e10]; alpha
        clipped to [0, 1] and renormalised.
        """
        self._ensure_built()
        dtype = self.mu.dtype
        g = tf.convert_to_tensor(stats["sum_gamma"], dtype=dtype)[:, None]     # [K, 1]
        s1 = tf.convert_to_tensor(stats["sum_gamma_y"], dtype=dtype)           # [K, Z]
        s2 = tf.convert_to_tensor(stats["sum_gamma_y2"], dtype=dtype)
        ssig = tf.convert_to_tensor(stats["sum_gamma_sigma2"], dtype=dtype)
        count = tf.convert_to_tensor(stats["count"], dtype=dtype)
        mu_old = tf.convert_to_tensor(self.mu)
        r = self.ema_rate

        denominator = g + _ESTIMATE_EPS
        # mu' = sum g y / (G + eps) with y = (y - c) + c, c = mu_old; G = 0 gives mu' = 0.
        mu_est = (s1 + g * mu_old) / denominator
        d = mu_est - mu_old
        # sum g [(y - mu')^2 + s2_enc] = sum g (y-c)^2 - 2 d sum g (y-c) + G d^2 + sum g s2_enc.
        sigma2_est = (s2 - 2.0 * d * s1 + g * tf.square(d) + ssig) / denominator
        mu_new = (1.0 - r) * mu_old + r * mu_est
        sigma2_new = tf.clip_by_value((1.0 - r) * tf.convert_to_tensor(self.sigma2)
                                      + r * sigma2_est, _SIGMA2_MIN, _SIGMA2_MAX)
        alpha_est = g[:, 0] / tf.maximum(count, 1.0)
        alpha_new = tf.clip_by_value((1.0 - r) * tf.convert_to_tensor(self.alpha) + r * alpha_est,
                                     0.0, 1.0)
        alpha_new = alpha_new / tf.reduce_sum(alpha_new)
        # An empty batch (never seen by the reference) has no estimate: keep the state.
        keep = tf.equal(count, 0.0)
        return {"mu": tf.where(keep, mu_old, mu_new),
                "sigma2": tf.where(keep, tf.convert_to_tensor(self.sigma2), sigma2_new),
                "alpha": tf.where(keep, tf.convert_to_tensor(self.alpha), alpha_new)}

    def assign_state(self, state):
        """Assign an ``estimate`` result. Works eagerly, in ``tf.function``, in a cross-replica
        context and inside ``strategy.run`` (identical values on every replica)."""
        self._ensure_built()
        self.mu.assign(state["mu"])
        self.sigma2.assign(state["sigma2"])
        self.alpha.assign(state["alpha"])
        return state

    def apply_update(self, stats):
        """``assign_state(estimate(stats))``; returns the new state dict."""
        return self.assign_state(self.estimate(stats))

    def update(self, z, mu_enc, sigma2_enc, use_rpcl=False):
        """One single-replica EM / RPCL step from sampled codes ``z`` and the encoder outputs."""
        gamma, _ = self.posterior(z)
        return self.apply_update(self.batch_statistics(gamma, mu_enc, sigma2_enc, use_rpcl))

    def use_rpcl_at(self, step):
        """bool scalar tensor: step > warmup_steps and step % rpcl_every == 0 (step from 0)."""
        step = tf.cast(step, tf.int64)
        return tf.logical_and(step > self.warmup_steps,
                              tf.equal(tf.math.floormod(step, self.rpcl_every), 0))

    def num_active(self, threshold=None):
        """int32 scalar: number of components with alpha_k > threshold (``active_threshold``)."""
        self._ensure_built()
        threshold = self.active_threshold if threshold is None else threshold
        alpha = tf.convert_to_tensor(self.alpha)
        return tf.reduce_sum(tf.cast(alpha > tf.cast(threshold, alpha.dtype), tf.int32))

    # ---------------------------------------------------------------- prior sampling

    def sample(self, num_samples, seed=None):
        """Draws k ~ Cat(alpha) then z ~ N(mu_k, sigma2_k).

        Args:
            num_samples: int, number of codes.
            seed: None, int or ``keras.random.SeedGenerator``.

        Returns:
            ``(z, k)``: float ``[num_samples, Z]`` codes and int32 ``[num_samples]`` components.
        """
        self._ensure_built()
        # An int seed is used for k and seed + 1 for the noise, so the two draws are independent.
        seed_k, seed_eps = (seed, seed + 1) if isinstance(seed, int) else (seed, seed)
        log_alpha = tf.math.log(tf.convert_to_tensor(self.alpha))
        k = keras.random.categorical(log_alpha[None, :], num_samples, dtype="int32",
                                     seed=seed_k)[0]
        mu = tf.gather(tf.convert_to_tensor(self.mu), k)
        sigma2 = tf.gather(tf.convert_to_tensor(self.sigma2), k)
        eps = keras.random.normal(tf.shape(mu), dtype=mu.dtype, seed=seed_eps)
        return mu + tf.sqrt(sigma2) * eps, k

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_components": self.num_components,
            "z_size": self.z_size,
            "ema_rate": self.ema_rate,
            "rpcl_rival_rate": self.rpcl_rival_rate,
            "warmup_steps": self.warmup_steps,
            "rpcl_every": self.rpcl_every,
            "active_threshold": self.active_threshold,
            "posterior_floor": self.posterior_floor,
            "seed": self.seed,
        })
        return config
