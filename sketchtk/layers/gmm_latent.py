"""The GMM-structured latent space of RPCL-pix2seq, learned by EM / RPCL moving averages."""

import math

import keras
import tensorflow as tf

_LOG_2PI = math.log(2.0 * math.pi)
_SIGMA2_MIN = 1e-10
_SIGMA2_MAX = 1e10


@keras.saving.register_keras_serializable(package="sketchtk")
class GMMLatent(keras.layers.Layer):
    """Gaussian mixture prior over the latent codes, with EM and RPCL parameter updates.

    The state is three non-trainable weights (saved and restored with the model's weights):
    ``mu`` ``[K, Z]`` ~ U(-1, 1) (seeded), ``sigma2`` ``[K, Z]`` = 1 and ``alpha`` ``[K]`` = 1/K.
    They are never touched by the optimiser: after each gradient step the training loop calls
    ``batch_statistics`` and ``apply_update`` (ALGORITHMS.md section 2).

    Choices where the paper and the reference code are silent or unsafe:

    * **Posterior** from the sampled z, in log space: log_softmax over k of
      log alpha_k + log N(z; mu_k, sigma2_k) (a logsumexp after subtracting the row max). A pruned
      component (alpha_k = 0) gets log gamma = -inf and gamma = 0, which every consumer here
      handles without NaN.
    * **y, the data of the M-step, is the encoder mean** ``mu_enc`` (as the reference), and the
      encoder variance enters the variance estimate:
      sigma2' = sum_b gamma [(y - mu')^2 + sigma2_enc] / sum_b gamma, i.e. the moments of the
      aggregate posterior sum_b gamma_b N(mu_b, sigma2_b). Gamma comes from the sampled z.
    * **Sum-decomposable statistics.** Every entry of ``batch_statistics`` is a sum over the batch,
      so the dicts of several replicas are combined with a SUM all-reduce before ``apply_update``.
      The square is expanded about the *current* component mean c_k = mu_k (a shift, so that
      sum g (y - c)^2 - G (mu' - c)^2 does not cancel catastrophically in float32); all replicas
      hold the same mirrored ``mu``, and ``apply_update`` must get statistics computed against
      the current state (no update in between), which the train step guarantees.
    * **Guard.** A component whose total responsibility G_k = sum_b gamma_bk is below
      ``min_responsibility`` keeps its mu and sigma2 (no estimate exists); its alpha still moves.
      Under RPCL a component that is only ever the rival has G_k < 0: it keeps mu and sigma2 too
      (a negative-mass mean would pull it *toward* the rival points), and the penalty acts
      through alpha' = G_k / N < 0, which drives its weight to 0 (pruning).
    * **RPCL** winner = best, rival = second-best component of each row (``tf.math.top_k``, so the
      two are always distinct, even under ties).
    * **Schedule** (``use_rpcl_at``): EM for step <= ``warmup_steps``; afterwards RPCL on steps
      with ``step % rpcl_every == 0`` and EM otherwise (the reference counts steps from 1).
    * **Active components** (``num_active``): alpha_k > ``active_threshold``, default 1e-3, i.e. a
      component explaining at least 0.1% of the data. A component that stops winning decays
      geometrically, alpha <- (1 - ema_rate) alpha (and is clipped to exactly 0 by RPCL's negative
      estimate), so from 1/K it crosses 1e-3 after ~90 updates at ema_rate 0.05 and the count is
      insensitive to the threshold over orders of magnitude; an absolute value does not shrink with
      K (1/(10K) would call a component holding 0.5% of a category's sketches inactive at K=10).

    Args:
        num_components: int K = num_mixture * num_sub (>= 2; default 10).
        z_size: int Z, the latent size (default 128).
        ema_rate: float, weight of the batch estimate in new = (1 - r) old + r estimate (0.05).
        rpcl_rival_rate: float, the de-learning rate of the rival (1e-4).
        warmup_steps: int, EM-only steps (500).
        rpcl_every: int, RPCL on every ``rpcl_every``-th step after the warm-up (3).
        active_threshold: float, alpha above which a component counts as active (1e-3).
        min_responsibility: float, total responsibility below which a component keeps its mu and
            sigma2 in an update (1e-6, a millionth of a data point).
        seed: int or None, seed of the U(-1, 1) initialisation of ``mu``.

    Call arguments:
        z: float ``[B, Z]`` latent codes.

    Returns:
        float ``[B, K]`` log posterior log gamma_bk = log p(k | z_b).

    Example:
        >>> gmm = GMMLatent(num_components=10, z_size=128, seed=0)
        >>> log_gamma = gmm(z)                                    # [B, 10]
        >>> stats = gmm.batch_statistics(z, mu, sigma2, gmm.use_rpcl_at(step))
        >>> gmm.apply_update(stats)                               # after the gradient step

    Reference:
        Zang, Tu & Xu, "Controllable stroke-based sketch synthesis from a self-organized latent
        space", Neural Networks 137 (2021). Xu, Krzyzak & Oja, "Rival penalized competitive
        learning for clustering analysis, RBF net, and curve detection", IEEE TNN 4(4), 1993.
    """

    def __init__(self, num_components=10, z_size=128, ema_rate=0.05, rpcl_rival_rate=1e-4,
                 warmup_steps=500, rpcl_every=3, active_threshold=1e-3, min_responsibility=1e-6,
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
        self.num_components = int(num_components)
        self.z_size = int(z_size)
        self.ema_rate = float(ema_rate)
        self.rpcl_rival_rate = float(rpcl_rival_rate)
        self.warmup_steps = int(warmup_steps)
        self.rpcl_every = int(rpcl_every)
        self.active_threshold = float(active_threshold)
        self.min_responsibility = float(min_responsibility)
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
        """log gamma_bk = log p(k | z_b): float ``[B, K]``, rows log-sum-exp to 0."""
        # log_softmax subtracts the row max before the logsumexp: exact even when every log
        # density is ~-1e17 (collapsed variances, far codes), where log_joint - logsumexp rounds.
        return tf.nn.log_softmax(self.log_prob_components(z), axis=-1)

    def call(self, z):
        return self.log_posterior(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_components,)

    # ---------------------------------------------------------------- EM / RPCL

    def rpcl_responsibilities(self, log_gamma):
        """onehot(winner) - rpcl_rival_rate * onehot(rival) from ``log_gamma`` ``[B, K]``."""
        log_gamma = tf.convert_to_tensor(log_gamma)
        top = tf.math.top_k(log_gamma, k=2).indices                      # [B, 2]
        winner = tf.one_hot(top[:, 0], self.num_components, dtype=log_gamma.dtype)
        rival = tf.one_hot(top[:, 1], self.num_components, dtype=log_gamma.dtype)
        return winner - self.rpcl_rival_rate * rival

    def responsibilities(self, z, use_rpcl=False):
        """The M-step weights ``[B, K]``: gamma (EM) or the RPCL winner/rival weights."""
        log_gamma = self.log_posterior(z)
        gamma = tf.exp(log_gamma)
        if isinstance(use_rpcl, bool):
            return self.rpcl_responsibilities(log_gamma) if use_rpcl else gamma
        return tf.where(tf.cast(use_rpcl, tf.bool), self.rpcl_responsibilities(log_gamma), gamma)

    def batch_statistics(self, z, mu_enc, sigma2_enc, use_rpcl=False):
        """Sufficient statistics of one (per-replica) batch, every entry a sum over the batch.

        Args:
            z: float ``[B, Z]`` sampled codes (they set the responsibilities).
            mu_enc: float ``[B, Z]`` encoder means (the data y of the M-step).
            sigma2_enc: float ``[B, Z]`` encoder variances.
            use_rpcl: Python bool or bool scalar tensor (``use_rpcl_at(step)``).

        Returns:
            dict of float32 tensors, summable across replicas:
            ``sum_gamma`` ``[K]`` = sum_b g_bk;
            ``sum_gamma_y`` ``[K, Z]`` = sum_b g_bk (y_b - mu_k);
            ``sum_gamma_y2`` ``[K, Z]`` = sum_b g_bk (y_b - mu_k)^2;
            ``sum_gamma_sigma2`` ``[K, Z]`` = sum_b g_bk sigma2_enc_b; ``count`` ``[]`` = B.
            (mu_k is the current state: the shift that keeps the expanded square accurate.)
        """
        self._ensure_built()
        z = tf.stop_gradient(tf.convert_to_tensor(z, dtype=self.mu.dtype))
        y = tf.stop_gradient(tf.convert_to_tensor(mu_enc, dtype=self.mu.dtype))
        s2 = tf.stop_gradient(tf.convert_to_tensor(sigma2_enc, dtype=self.mu.dtype))
        gamma = self.responsibilities(z, use_rpcl)                            # [B, K]
        shifted = y[:, None, :] - tf.convert_to_tensor(self.mu)[None, :, :]   # [B, K, Z]
        return {
            "sum_gamma": tf.reduce_sum(gamma, axis=0),
            "sum_gamma_y": tf.einsum("bk,bkz->kz", gamma, shifted),
            "sum_gamma_y2": tf.einsum("bk,bkz->kz", gamma, tf.square(shifted)),
            "sum_gamma_sigma2": tf.matmul(gamma, s2, transpose_a=True),
            "count": tf.cast(tf.shape(y)[0], self.mu.dtype),
        }

    def apply_update(self, stats):
        """EMA update of (mu, sigma2, alpha) from (summed) ``batch_statistics``.

        Returns the new values as a dict with keys ``mu``, ``sigma2``, ``alpha``.

        new = (1 - ema_rate) old + ema_rate estimate; sigma2 clipped to [1e-10, 1e10]; alpha
        clipped to [0, 1] and renormalised. Uses ``Variable.assign``: works eagerly, inside
        ``tf.function``, in a cross-replica context and inside ``strategy.run``.
        """
        self._ensure_built()
        dtype = self.mu.dtype
        g = tf.convert_to_tensor(stats["sum_gamma"], dtype=dtype)              # [K]
        s1 = tf.convert_to_tensor(stats["sum_gamma_y"], dtype=dtype)           # [K, Z]
        s2 = tf.convert_to_tensor(stats["sum_gamma_y2"], dtype=dtype)
        ssig = tf.convert_to_tensor(stats["sum_gamma_sigma2"], dtype=dtype)
        count = tf.convert_to_tensor(stats["count"], dtype=dtype)
        mu_old = tf.convert_to_tensor(self.mu)
        sigma2_old = tf.convert_to_tensor(self.sigma2)
        alpha_old = tf.convert_to_tensor(self.alpha)
        r = self.ema_rate

        valid = g > self.min_responsibility                                    # [K]
        safe_g = tf.where(valid, g, tf.ones_like(g))[:, None]
        shift = s1 / safe_g                                                    # mu' - mu_old
        mu_est = mu_old + shift
        # sum g [(y - mu')^2 + s2_enc] / G, expanded about mu_old; >= 0 up to rounding.
        sigma2_est = tf.maximum(s2 / safe_g - tf.square(shift) + ssig / safe_g, 0.0)
        mu_new = tf.where(valid[:, None], (1.0 - r) * mu_old + r * mu_est, mu_old)
        sigma2_new = tf.where(
            valid[:, None],
            tf.clip_by_value((1.0 - r) * sigma2_old + r * sigma2_est, _SIGMA2_MIN, _SIGMA2_MAX),
            sigma2_old)

        has_data = count > 0.0
        alpha_est = g / tf.where(has_data, count, tf.ones_like(count))
        alpha_new = tf.clip_by_value((1.0 - r) * alpha_old + r * alpha_est, 0.0, 1.0)
        total = tf.reduce_sum(alpha_new)
        alpha_new = tf.where(has_data & (total > 0.0),
                             alpha_new / tf.where(total > 0.0, total, tf.ones_like(total)),
                             alpha_old)

        self.mu.assign(mu_new)
        self.sigma2.assign(sigma2_new)
        self.alpha.assign(alpha_new)
        return {"mu": mu_new, "sigma2": sigma2_new, "alpha": alpha_new}

    def update(self, z, mu_enc, sigma2_enc, use_rpcl=False):
        """``apply_update(batch_statistics(...))`` for a single replica."""
        return self.apply_update(self.batch_statistics(z, mu_enc, sigma2_enc, use_rpcl))

    def use_rpcl_at(self, step):
        """bool scalar tensor: step > warmup_steps and step % rpcl_every == 0."""
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
            "min_responsibility": self.min_responsibility,
            "seed": self.seed,
        })
        return config
