"""Reconstruction loss of sketch-rnn / RPCL-pix2seq: mixture NLL of the offsets + pen cross-entropy.

All densities are evaluated in log space (log-softmax for the mixture weights, logsumexp over the
components). Two forms of the offset NLL (``offset_nll_mode``):

* ``"reference"`` (default): -log(sum_k pi_k N_k + 1e-6), what both reference codes compute
  (RPCL-pix2seq ``model.py`` 337-340, magenta ``model.py`` get_lossfunc), evaluated stably as
  -logaddexp(logsumexp_k(log pi_k + log N_k), log 1e-6). The epsilon caps one point's loss at
  -log(1e-6) = 13.8 nats, so outliers cannot dominate a batch; results compare with the papers.
* ``"exact"``: -logsumexp_k(log pi_k + log N_k), the exact mixture NLL (unbounded for outliers).

Notation follows Ha & Eck, ICLR 2018, eqs. (9)-(10) and Graves 2013, eqs. (24)-(26).
"""

import math

import tensorflow as tf

from sketchtk.layers.mdn_head import split_mixture_params

# Numerical guards (they bind only far outside the range a trained model uses):
# |rho| <= 1 - RHO_EPS keeps 1 - rho^2 >= ~2e-6 (tanh saturates to exactly +-1 in float32);
# log sigma >= LOG_SIGMA_MIN keeps 1 / sigma finite; |normalised offset| <= MAX_STD keeps the
# quadratic form finite.
RHO_EPS = 1e-6
LOG_SIGMA_MIN = -20.0
MAX_STD = 1e12
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_REFERENCE_EPS = math.log(1e-6)
OFFSET_NLL_MODES = ("reference", "exact")
REDUCTIONS = ("sum", "mean")


def bivariate_normal_log_prob(x, y, mu_x, mu_y, log_sigma_x, log_sigma_y, rho):
    """log N((x, y) | mu, Sigma) of a correlated 2-D Gaussian, elementwise with broadcasting.

    log N = -log(2 pi sigma_x sigma_y sqrt(1 - rho^2)) - Z / (2 (1 - rho^2)),
    Z = nx^2 + ny^2 - 2 rho nx ny,  nx = (x - mu_x) / sigma_x,  ny = (y - mu_y) / sigma_y
    (Graves 2013, eqs. 24-25). Shapes: any broadcastable, e.g. x, y ``[B, T, 1]`` against
    parameters ``[B, T, M]`` -> ``[B, T, M]``.
    """
    log_sigma_x = tf.maximum(log_sigma_x, LOG_SIGMA_MIN)
    log_sigma_y = tf.maximum(log_sigma_y, LOG_SIGMA_MIN)
    rho = tf.clip_by_value(rho, -1.0 + RHO_EPS, 1.0 - RHO_EPS)
    nx = tf.clip_by_value((x - mu_x) * tf.exp(-log_sigma_x), -MAX_STD, MAX_STD)
    ny = tf.clip_by_value((y - mu_y) * tf.exp(-log_sigma_y), -MAX_STD, MAX_STD)
    one_minus_rho2 = (1.0 - rho) * (1.0 + rho)
    quad = (tf.square(nx) + tf.square(ny) - 2.0 * rho * nx * ny) / one_minus_rho2
    log_det = log_sigma_x + log_sigma_y + 0.5 * (tf.math.log1p(-rho) + tf.math.log1p(rho))
    return -_LOG_2PI - log_det - 0.5 * quad


def mixture_log_prob(x, y, params):
    """log p(dx, dy) under the mixture in raw params.

    log p = logsumexp_k [log softmax(pi)_k + log N_k(dx, dy)] (Ha & Eck 2018, eq. 9, in log space).
    Shapes: x, y ``[...]``, params ``[..., 6M + 3]`` -> ``[...]``.
    """
    mix = split_mixture_params(params)
    log_pi = tf.nn.log_softmax(mix.pi_logits, axis=-1)
    log_n = bivariate_normal_log_prob(x[..., None], y[..., None], mix.mu_x, mix.mu_y,
                                      mix.log_sigma_x, mix.log_sigma_y, mix.rho)
    return tf.reduce_logsumexp(log_pi + log_n, axis=-1)


def offset_nll(targets, params, mode="reference"):
    """Mixture NLL of the target offsets, zero on rows past the end of the sketch.

    L_s = -(1 - p3) log p(dx, dy) per step (Ha & Eck 2018, eq. 9: only real points count), with
    log p exact (``mode="exact"``) or as the references, log(p + 1e-6) (``"reference"``).
    Shapes: targets stroke-5 ``[B, T, 5]``, params ``[B, T, 6M + 3]`` -> ``[B, T]``.
    """
    if mode not in OFFSET_NLL_MODES:
        raise ValueError(f"offset NLL mode {mode!r}; choose one of {list(OFFSET_NLL_MODES)}")
    targets = tf.convert_to_tensor(targets, params.dtype)
    real = 1.0 - targets[..., 4]
    log_p = mixture_log_prob(targets[..., 0], targets[..., 1], params)
    if mode == "reference":
        log_p = tf.math.reduce_logsumexp(
            tf.stack([log_p, tf.fill(tf.shape(log_p), tf.constant(_LOG_REFERENCE_EPS, log_p.dtype))],
                     axis=-1), axis=-1)
    return -log_p * real


def pen_cross_entropy(targets, params, mask_padding=False):
    """Softmax cross-entropy of the 3 pen states (Ha & Eck 2018, eq. 10).

    As in sketch-rnn training it covers every step, padding included (the model must learn to stay
    at end-of-sketch); ``mask_padding=True`` zeroes rows past the end (sketch-rnn's eval mode).
    Shapes: targets stroke-5 ``[B, T, 5]``, params ``[B, T, 6M + 3]`` -> ``[B, T]``.
    """
    targets = tf.convert_to_tensor(targets, params.dtype)
    xent = tf.nn.softmax_cross_entropy_with_logits(labels=targets[..., 2:5],
                                                   logits=params[..., :3])
    if mask_padding:
        xent = xent * (1.0 - targets[..., 4])
    return xent


def reconstruction_loss(targets, params, mask_padding=False, reduction="sum",
                        offset_nll_mode="reference"):
    """L_R = L_s + L_p (ALGORITHMS.md 2).

    Args:
        targets: float ``[B, T, 5]`` stroke-5 targets (the decoder's inputs shifted by one step).
        params: float ``[B, T, 6M + 3]`` raw mixture parameters from ``MixtureDensityHead``.
        mask_padding: bool, also mask the pen loss past the end of each sketch (validation).
        reduction: ``"sum"``: each term summed over time and averaged over the batch
            (RPCL-pix2seq ``model.py`` 351); ``"mean"``: averaged over time and batch, i.e.
            divided by the padded length T as well (magenta ``model.py`` 344, ``r_cost``).
        offset_nll_mode: ``"reference"`` or ``"exact"`` (see ``offset_nll``).

    Returns:
        ``(total, offset_nll, pen_xent)``: float scalars, ``total = offset_nll + pen_xent``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r}; choose one of {list(REDUCTIONS)}")
    params = tf.convert_to_tensor(params)
    if params.shape.rank != 3 or targets.shape[-1] != 5:
        raise ValueError(f"expected targets [B, T, 5] and params [B, T, 6M+3], got "
                         f"{targets.shape} and {params.shape}")
    over_time = tf.reduce_sum if reduction == "sum" else tf.reduce_mean
    offsets = tf.reduce_mean(over_time(offset_nll(targets, params, offset_nll_mode), axis=1))
    pen = tf.reduce_mean(over_time(pen_cross_entropy(targets, params, mask_padding), axis=1))
    return offsets + pen, offsets, pen
