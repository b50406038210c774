"""Compiled, batched autoregressive sampling of stroke sequences (ALGORITHMS.md section 3).

One ``tf.function`` runs a ``tf.while_loop`` over time for a whole batch of latent codes, using the
decoder's one-step path (the same weights as training). Each sketch stops at its end-of-sketch
token; the loop ends when every sketch has ended or ``max_len`` points were drawn. Randomness is
stateless, seeded by ``(seed, t)``, so a seed gives the same sketches on every run.

Temperature ``tau`` scales the mixture and pen logits (``logits / tau``) and the Gaussians' standard
deviations by ``tau`` (``std_scaling="tau"``, the default): what both reference codes do, although
both papers write sigma^2 -> sigma^2 tau. The codes pass ``sqrt(tau)`` to ``sample_gaussian_2d``
and multiply s1, s2 by ``temp * temp`` there (RPCL-pix2seq ``sample.py`` 62-68 and 99; magenta
``model.py`` 384-389 and 440), so the published samples have std x tau. The papers' reading,
std x sqrt(tau), is ``std_scaling="sqrt_tau"``. rho is unchanged by either.
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from sketchtk.data import strokes as stroke_ops
from sketchtk.layers.mdn_head import num_mixture_of, split_mixture_params


def _categorical(logits, u):
    """One draw per row of ``logits [B, K]`` by the Gumbel-max trick from uniforms ``u [B, K]``,
    ``[B] int32``. Same distribution as ``tf.random.stateless_categorical``, which XLA cannot
    compile."""
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)


def point_noise(batch, num_mixture, seed, dtype=tf.float32):
    """The random numbers of one point draw for the stateless ``seed`` ``[2]``: uniforms for the
    pen ``[B, 3]`` and the component ``[B, M]``, standard normals ``[B, 2]``.

    Drawn outside XLA (the sampler's per-step XLA call takes them as inputs): TensorFlow's
    stateless ops give row ``i`` the same numbers whatever the batch size, XLA's do not, and
    the per-row noise is what makes a seed give a row the same sketch in any batch.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    uniform = lambda k, s: tf.random.stateless_uniform(  # noqa: E731
        tf.stack([batch, k]), s, minval=1e-20, maxval=1.0, dtype=dtype)
    return (uniform(3, seeds[0]), uniform(num_mixture, seeds[1]),
            tf.random.stateless_normal(tf.stack([batch, 2]), seeds[2], dtype=dtype))


STD_SCALINGS = ("tau", "sqrt_tau")


def sample_point(params, temperature, seed, std_scaling="tau", noise=None):
    """Draw one stroke-5 point per row from mixture parameters ``[B, 6M + 3]``.

    ``std_scaling``: ``"tau"`` scales the chosen Gaussian's standard deviations by the
    temperature (the reference codes), ``"sqrt_tau"`` by its square root (the papers).
    ``noise``: :func:`point_noise` of ``seed`` drawn by the caller (``seed`` is then unused).

    Returns:
      ``(point [B, 5], pen [B] int32)`` with pen 0 = down, 1 = up, 2 = end; an end row's offset
      is zero.
    """
    if std_scaling not in STD_SCALINGS:
        raise ValueError(f"std_scaling {std_scaling!r}; choose one of {list(STD_SCALINGS)}")
    p = split_mixture_params(params)
    if noise is None:
        noise = point_noise(tf.shape(params)[0], num_mixture_of(params), seed, params.dtype)
    u_pen, u_pi, n = noise
    tau = tf.cast(temperature, params.dtype)
    std_factor = tau if std_scaling == "tau" else tf.sqrt(tau)
    pen = _categorical(p.pen_logits / tau, u_pen)
    k = _categorical(p.pi_logits / tau, u_pi)
    pick = lambda v: tf.gather(v, k, axis=1, batch_dims=1)  # noqa: E731
    mu_x, mu_y = pick(p.mu_x), pick(p.mu_y)
    s_x = tf.exp(pick(p.log_sigma_x)) * std_factor
    s_y = tf.exp(pick(p.log_sigma_y)) * std_factor
    rho = pick(p.rho)
    dx = mu_x + s_x * n[:, 0]
    dy = mu_y + s_y * (rho * n[:, 0] + tf.sqrt(tf.maximum(1.0 - tf.square(rho), 0.0)) * n[:, 1])
    # The end-of-sketch row carries no offset (training targets are [0, 0, 0, 0, 1] there).
    moving = tf.cast(pen < 2, params.dtype)
    offset = tf.stack([dx, dy], axis=1) * moving[:, None]
    point = tf.concat([offset, tf.one_hot(pen, 3, dtype=params.dtype)], axis=1)
    return point, pen


class Sampler:
    """Batched sampler over a trained ``SketchVAE``.

    Args:
      model: a ``SketchVAE`` (its ``decoder`` provides ``initial_state`` and ``step``).
      max_len: most points per sketch (default: the model's ``max_seq_len``).
      jit_compile: compile the whole decoding loop with XLA (default False).
      std_scaling: ``"tau"`` (reference codes, default) or ``"sqrt_tau"`` (papers); see
        ``sample_point``.
      ignore_end: benchmarking only (default False): no row stops at its end token (the end
        row is fed back like any point and decoding goes on), so every call decodes ``max_len``
        steps, the same work per step as a real sketch; the rows are no sketches.
        ``bench/bench_sample.py`` uses it to time full-length decoding with untrained weights,
        which end early.

    Example:
      >>> sampler = Sampler(model)
      >>> sketches = sampler.sample(z, temperature=0.24, seed=0)   # list of stroke-3 arrays
    """

    def __init__(self, model, max_len=None, jit_compile=False, std_scaling="tau",
                 ignore_end=False):
        if std_scaling not in STD_SCALINGS:
            raise ValueError(f"std_scaling {std_scaling!r}; choose one of {list(STD_SCALINGS)}")
        self.std_scaling = std_scaling
        self.ignore_end = bool(ignore_end)
        self.model = model
        self.decoder = model.decoder
        self.max_len = int(max_len or model.max_seq_len)
        # XLA is optional: on 2 CPU cores it measured slightly slower (and compiles per batch size).
        self._decode = tf.function(self._decode_impl, reduce_retracing=True,
                                   jit_compile=jit_compile)
        # The ~40 small ops that draw a point run as one XLA call per step (each op a kernel
        # launch otherwise); the decoder's matmuls stay outside, in oneDNN.
        self._draw = tf.function(self._draw_impl, jit_compile=True, autograph=False,
                                 reduce_retracing=True)

    def _draw_impl(self, params, temperature, noise, done):
        point, pen = sample_point(params, temperature, None, self.std_scaling, noise=noise)
        if self.ignore_end:  # benchmarking: the loop runs max_len steps (see __init__)
            return point, done
        end_row = tf.constant([0.0, 0.0, 0.0, 0.0, 1.0], point.dtype)
        return tf.where(done[:, None], end_row, point), done | tf.equal(pen, 2)

    def _decode_impl(self, z, temperature, seed):
        batch = tf.shape(z)[0]
        state = self.decoder.initial_state(z)
        projected_z = self.decoder.latent_projection(z)  # once per sequence, not per step
        constants = self.decoder.step_constants()          # transposed kernels, once
        start = tf.tile(tf.constant([[0.0, 0.0, 1.0, 0.0, 0.0]]), [batch, 1])
        out = tf.TensorArray(tf.float32, size=self.max_len, element_shape=[None, 5])
        done = tf.zeros([batch], tf.bool)
        end_row = tf.tile(tf.constant([[0.0, 0.0, 0.0, 0.0, 1.0]]), [batch, 1])

        def cond(t, x, state, done, out):
            return tf.logical_and(t < self.max_len, tf.logical_not(tf.reduce_all(done)))

        def body(t, x, state, done, out):
            params, new_state = self.decoder.step(x, z, state, projected_z, constants)
            step_seed = tf.stack([seed, tf.cast(t, tf.int64)])
            noise = point_noise(batch, num_mixture_of(params), step_seed, params.dtype)
            point, done = self._draw(params, temperature, noise, done)
            out = out.write(t, point)
            return t + 1, point, new_state, done, out

        t, _, _, _, out = tf.while_loop(cond, body, [tf.constant(0), start, state, done, out])
        # Pad the unwritten tail with end rows so the result has a static shape (XLA needs one);
        # the caller cuts it at ``t``.
        _, out = tf.while_loop(lambda i, out: i < self.max_len,
                               lambda i, out: (i + 1, out.write(i, end_row)), [t, out])
        return out.stack(), t

    def sample_stroke5(self, z, temperature=0.24, seed=0):
        """Stroke-5 ``[B, T, 5]`` (no start token; ``T <= max_len``) for codes ``z [B, Z]``."""
        z = tf.convert_to_tensor(z, tf.float32)
        points, steps = self._decode(z, tf.constant(temperature, tf.float32),
                                     tf.constant(seed, tf.int64))
        return tf.transpose(points[:steps], [1, 0, 2])

    def sample(self, z, temperature=0.24, seed=0, batch_size=None):
        """List of stroke-3 ``[N_i, 3]`` arrays in data units (the scale factor undone)."""
        z = np.asarray(z, np.float32)
        batch_size = batch_size or len(z)
        sketches = []
        start = time.perf_counter()
        for i, lo in enumerate(range(0, len(z), batch_size)):
            s5 = self.sample_stroke5(z[lo:lo + batch_size], temperature, seed * 100003 + i).numpy()
            for row in s5:
                s3 = stroke_ops.stroke5_to_stroke3(row)
                s3[:, :2] *= self.model.scale_factor
                sketches.append(s3)
            logging.info("sampled %d / %d sketches (%.1f s)", len(sketches), len(z),
                         time.perf_counter() - start)
        return sketches


class ReferenceStyleSampler:
    """What the reference and magenta do, kept for the benchmark: batch 1, one compiled decoder
    call per point from a Python loop, always ``max_len`` points (no early stop)."""

    def __init__(self, model, max_len=None, std_scaling="tau"):
        self.model = model
        self.std_scaling = std_scaling
        self.max_len = int(max_len or model.max_seq_len)
        self._step = tf.function(model.decoder.step)

    def sample(self, z, temperature=0.24, seed=0):
        rng = np.random.default_rng(seed)
        sketches = []
        for row in np.asarray(z, np.float32):
            zb = tf.constant(row[None])
            state = self.model.decoder.initial_state(zb)
            x = tf.constant([[0.0, 0.0, 1.0, 0.0, 0.0]])
            points = []
            for t in range(self.max_len):
                params, state = self._step(x, zb, state)
                x, _ = sample_point(params, temperature,
                                    tf.constant(rng.integers(0, 2**31, 2), tf.int64),
                                    self.std_scaling)
                points.append(x.numpy()[0])
            s3 = stroke_ops.stroke5_to_stroke3(np.array(points))
            s3[:, :2] *= self.model.scale_factor
            sketches.append(s3)
        return sketches
