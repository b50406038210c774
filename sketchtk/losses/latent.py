"""Latent-space losses, schedules and the reparameterisation of the VAE family.

Pure functions over tensors (TF ops only, so they run eagerly, in ``tf.function`` and per replica).
Shapes use B = batch, K = GMM components, Z = latent size. Equations are those of
``shared/docs/ALGORITHMS.md`` section 2 (RPCL-pix2seq, Zang et al. 2021, Neural Networks 137) and of
sketch-rnn (Ha & Eck 2018, "A Neural Representation of Sketch Drawings", eq. 4-6).

Contents:
  * ``reparameterize``: z = mu + sqrt(sigma2) * eps.
  * ``gaussian_kl``: KL between diagonal Gaussians.
  * ``alpha_loss`` and ``gaussian_loss``: the two KL terms of the GMM prior (RPCL-pix2seq).
  * ``standard_normal_kl``: KL to N(0, I) with free bits (sketch-rnn, sketch-pix2seq).
  * ``deconv_loss``: the image-regulariser loss of RPCL-pix2seq.
  * ``kl_weight``, ``learning_rate`` and ``DecayedLearningRate``: the step schedules.
"""

import keras
import tensorflow as tf


def reparameterize(mu, sigma2, seed=None):
    """Draws z = mu + sqrt(sigma2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10).

    Args:
        mu: float ``[B, Z]`` mean.
        sigma2: float ``[B, Z]`` variance (> 0).
        seed: ``None``, an int, or a ``keras.random.SeedGenerator`` (use a generator inside
            ``tf.function`` / ``train_step`` so every call draws fresh noise reproducibly).

    Returns:
        float ``[B, Z]`` sample, differentiable with respect to ``mu`` and ``sigma2``.
    """
    mu = tf.convert_to_tensor(mu)
    sigma2 = tf.convert_to_tensor(sigma2, dtype=mu.dtype)
    eps = keras.random.normal(tf.shape(mu), dtype=mu.dtype, seed=seed)
    return mu + tf.sqrt(sigma2) * eps


def gaussian_kl(mu1, sigma2_1, mu2, sigma2_2):
    """KL(N(mu1, diag sigma2_1) || N(mu2, diag sigma2_2)), summed over the last axis.

    KL = 0.5 * sum_d [log sigma2_2 - log sigma2_1 + (sigma2_1 + (mu1 - mu2)^2) / sigma2_2 - 1].
    The log-ratio is taken as a difference of logs so that extreme variances do not overflow.

    Args:
        mu1, sigma2_1: float ``[..., Z]`` mean and variance of the first Gaussian.
        mu2, sigma2_2: float ``[..., Z]`` of the second; all four broadcast against each other.

    Returns:
        float ``[...]``: the KL divergence per broadcast row (nats).
    """
    mu1 = tf.convert_to_tensor(mu1)
    dtype = mu1.dtype
    sigma2_1 = tf.convert_to_tensor(sigma2_1, dtype=dtype)
    mu2 = tf.convert_to_tensor(mu2, dtype=dtype)
    sigma2_2 = tf.convert_to_tensor(sigma2_2, dtype=dtype)
    per_dim = (tf.math.log(sigma2_2) - tf.math.log(sigma2_1)
               + (sigma2_1 + tf.square(mu1 - mu2)) / sigma2_2 - 1.0)
    return 0.5 * tf.reduce_sum(per_dim, axis=-1)


def alpha_loss(log_gamma, log_alpha):
    """Categorical KL term of the GMM prior: sum_k mean_b gamma_bk (log gamma_bk - log alpha_k).

    RPCL-pix2seq's L_alpha (ALGORITHMS.md section 2, "alpha_loss"), i.e. the expected
    KL(q(k | x) || p(k)) over the batch. Computed from log-probabilities: terms with gamma_bk = 0
    contribute 0 (the limit of g log g), with no NaN in the value or the gradient even when a
    pruned component has log alpha_k = -inf. Gradients flow into ``log_gamma`` (the encoder);
    ``log_alpha`` (the GMM state) is treated as a constant.

    Args:
        log_gamma: float ``[B, K]`` log posterior log q(k | x_b) (rows log-sum-exp to 0).
        log_alpha: float ``[K]`` log mixing weights.

    Returns:
        float scalar.
    """
    log_gamma = tf.convert_to_tensor(log_gamma)
    log_alpha = tf.stop_gradient(tf.convert_to_tensor(log_alpha, dtype=log_gamma.dtype))
    gamma = tf.exp(log_gamma)
    present = gamma > 0.0
    # Double where: the unselected branch must not leak inf - inf = NaN into the gradient.
    log_ratio = tf.where(present, log_gamma - log_alpha, tf.zeros_like(log_gamma))
    terms = tf.where(present, gamma * log_ratio, tf.zeros_like(log_gamma))
    return tf.reduce_sum(tf.reduce_mean(terms, axis=0))


def gaussian_loss(mu_enc, sigma2_enc, gamma, mu_k, sigma2_k, stop_gamma_gradient=False):
    """Gaussian KL term of the GMM prior: mean_b sum_k gamma_bk KL(N(mu_b, s2_b) || N(mu_k, s2_k)).

    RPCL-pix2seq's L_gaussian (ALGORITHMS.md section 2). The GMM parameters ``mu_k``, ``sigma2_k``
    are constants here (stop-gradient): they are learned by the EM / RPCL updates, not by SGD.
    ``gamma`` keeps its gradient by default, as in the reference code: together with
    ``alpha_loss`` this is the exact KL(q(z, k | x) || p(z, k)) with q(k | x) = gamma, whose
    gradient through gamma pulls each code toward the component it is assigned to. Pass
    ``stop_gamma_gradient=True`` to treat the assignment as fixed (a hard-EM-style M-step).

    Args:
        mu_enc: float ``[B, Z]`` encoder mean.
        sigma2_enc: float ``[B, Z]`` encoder variance.
        gamma: float ``[B, K]`` responsibilities (probabilities, rows sum to 1).
        mu_k: float ``[K, Z]`` component means.
        sigma2_k: float ``[K, Z]`` component variances.
        stop_gamma_gradient: bool, block the gradient through ``gamma``.

    Returns:
        float scalar.
    """
    mu_enc = tf.convert_to_tensor(mu_enc)
    dtype = mu_enc.dtype
    gamma = tf.convert_to_tensor(gamma, dtype=dtype)
    if stop_gamma_gradient:
        gamma = tf.stop_gradient(gamma)
    mu_k = tf.stop_gradient(tf.convert_to_tensor(mu_k, dtype=dtype))
    sigma2_k = tf.stop_gradient(tf.convert_to_tensor(sigma2_k, dtype=dtype))
    kl = gaussian_kl(mu_enc[:, None, :], tf.convert_to_tensor(sigma2_enc, dtype=dtype)[:, None, :],
                     mu_k[None, :, :], sigma2_k[None, :, :])  # [B, K]
    # gamma = 0 must give 0 even where the KL overflowed to inf.
    weighted = tf.where(gamma != 0.0, gamma * kl, tf.zeros_like(kl))
    return tf.reduce_mean(tf.reduce_sum(weighted, axis=1))


def standard_normal_kl(mu, sigma2, kl_tolerance=0.0):
    """KL(N(mu, sigma2) || N(0, I)) averaged over batch and z dims, floored at ``kl_tolerance``.

    sketch-rnn's L_KL (Ha & Eck 2018, eq. 6) as its code computes it:
    ``max(-0.5 * mean(1 + log sigma2 - mu^2 - sigma2), kl_tolerance)`` where the mean runs over
    the batch *and* the latent dimensions (free bits: no gradient while the KL is below the
    tolerance; sketch-rnn uses 0.2). Also the prior term of sketch-pix2seq (single Gaussian).

    Args:
        mu: float ``[B, Z]``.
        sigma2: float ``[B, Z]`` variance (sketch-rnn: exp(presig)).
        kl_tolerance: float, the free-bits floor (0 disables it).

    Returns:
        float scalar.
    """
    mu = tf.convert_to_tensor(mu)
    sigma2 = tf.convert_to_tensor(sigma2, dtype=mu.dtype)
    kl = -0.5 * tf.reduce_mean(1.0 + tf.math.log(sigma2) - tf.square(mu) - sigma2)
    return tf.maximum(kl, tf.cast(kl_tolerance, mu.dtype))


def deconv_loss(images, recon):
    """Image-regulariser loss: squared error summed over pixels, mean over the batch.

    RPCL-pix2seq's L_de (ALGORITHMS.md section 2, weight ``de_weight`` 0.5 in the total loss).

    Args:
        images: float ``[B, H, W]`` or ``[B, H, W, C]`` targets (in [-1, 1]).
        recon: float, same shape as ``images`` (``DeconvDecoder`` output).

    Returns:
        float scalar.
    """
    recon = tf.convert_to_tensor(recon)
    images = tf.cast(tf.convert_to_tensor(images), recon.dtype)
    images = tf.reshape(images, tf.shape(recon))
    rank = len(recon.shape)
    return tf.reduce_mean(tf.reduce_sum(tf.square(images - recon), axis=list(range(1, rank))))


def kl_weight(step, start=0.001, decay=0.9999, target=1.0):
    """KL annealing weight ``target - (target - start) * decay^step``.

    RPCL-pix2seq: start 0.001, decay 0.9999, target 1, i.e. klw = 1 - 0.999 * 0.9999^step.
    sketch-rnn: start 0.01, decay 0.99995, target ``kl_weight`` 0.5.

    Args:
        step: int or float scalar (tensor or Python number), the training step.
        start, decay, target: floats.

    Returns:
        float32 scalar tensor.
    """
    # float64: 0.9999 ** 1e5 in float32 is off by ~1e-3 relative; the result is cast back.
    step = tf.cast(step, tf.float64)
    value = target - (target - start) * tf.pow(tf.constant(decay, tf.float64), step)
    return tf.cast(value, tf.float32)


def learning_rate(step, lr=1e-3, min_lr=1e-5, decay=0.9999, steps_per_decay=3.0):
    """Decayed learning rate ``(lr - min_lr) * decay^(step / steps_per_decay) + min_lr``.

    RPCL-pix2seq decays every third of a step (``steps_per_decay`` 3, ALGORITHMS.md section 2);
    sketch-rnn uses the same form with ``steps_per_decay`` 1.

    Args:
        step: int or float scalar, the optimiser step.
        lr, min_lr, decay, steps_per_decay: floats.

    Returns:
        float32 scalar tensor.
    """
    exponent = tf.cast(step, tf.float64) / steps_per_decay  # float64: see kl_weight
    value = (lr - min_lr) * tf.pow(tf.constant(decay, tf.float64), exponent) + min_lr
    return tf.cast(value, tf.float32)


@keras.saving.register_keras_serializable(package="sketchtk")
class DecayedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate`` as a Keras schedule (serialisable with the optimiser).

    Args:
        learning_rate: float, the initial rate (1e-3).
        min_learning_rate: float, the asymptote (1e-5).
        decay_rate: float, decay per ``steps_per_decay`` steps (0.9999).
        steps_per_decay: float, 3 for RPCL-pix2seq, 1 for sketch-rnn.

    Call arguments:
        step: the optimiser's iteration counter.

    Returns:
        float32 scalar: the learning rate at ``step``.

    Example:
        >>> opt = keras.optimizers.Adam(DecayedLearningRate(), beta_1=0.5, clipvalue=1.0)

    Reference:
        Zang, Tu & Xu, "Controllable stroke-based sketch synthesis from a self-organized latent
        space", Neural Networks 137 (2021); the RPCL-pix2seq code's ``self.lr``.
    """

    def __init__(self, learning_rate=1e-3, min_learning_rate=1e-5, decay_rate=0.9999,
                 steps_per_decay=3.0):
        self.learning_rate = learning_rate
        self.min_learning_rate = min_learning_rate
        self.decay_rate = decay_rate
        self.steps_per_decay = steps_per_decay

    def __call__(self, step):
        # The module-level function, not the attribute of the same name.
        return learning_rate(step, self.learning_rate, self.min_learning_rate, self.decay_rate,
                             self.steps_per_decay)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "min_learning_rate": self.min_learning_rate,
            "decay_rate": self.decay_rate,
            "steps_per_decay": self.steps_per_decay,
        }
