"""r-Shortcut: a recognisability regressor and the sampler that uses it to stop early.

SketchKnitter (Wang et al., ICLR 2023) proposes a network that scores how recognisable ``x_t`` is
during reverse diffusion and a "shortcut" that uses the score to finish in fewer steps; its release
has neither (ALGORITHMS.md 4: the exact rule is unverified). This module is sketchtk's version:

- ``RecognisabilityRegressor``: one bidirectional GRU over ``x_t`` (the denoiser's point features)
  with the time embedding at every point, masked mean pooling, a linear logit. Its target (after
  the denoiser is trained, with the denoiser frozen) is the Sketch-a-Net classifier's confidence in
  the sketch's class on the *decoded x0-prediction* of ``x_t``: ``softmax(c(render(x0_hat)))[y]``
  (:func:`recognisability_targets`), learned by sigmoid cross-entropy with that soft target, on
  real training sketches noised by ``q(x_t | x_0)`` at uniformly drawn ``t``.
- ``ShortcutSampler``: runs a plain reverse process (DDPM or DDIM over the given timesteps) and,
  per sketch, once the predicted recognisability of ``x_t`` reaches ``threshold`` (after at least
  ``min_steps`` network calls), takes a shortcut: ``stride_steps=None`` jumps to that step's
  x0-prediction; ``stride_steps=K`` switches that sketch to the coarser schedule of K respaced
  steps over T (the ones below its current t, with ``stride_method``, DDIM by default) — the
  "larger strides" of SketchKnitter's text. Finished sketches leave the batch, so later calls are
  cheaper. With a threshold above 1 it is the plain sampler, call for
  call and number for number (tested), so it never uses more denoiser calls than the plain one.
  The regressor (far smaller than the denoiser) runs once per step on the sketches still active;
  the call counts reported are denoiser calls.
"""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.diffusion.samplers import METHODS, reverse_step
from sketchtk.diffusion.schedules import respaced_timesteps
from sketchtk.layers.denoisers.time_embedding import TimeEmbedding, per_point_context


@keras.saving.register_keras_serializable(package="sketchtk")
class RecognisabilityRegressor(keras.layers.Layer):
    """Predicts the logit of how recognisable the x0-prediction of ``x_t`` is.

    Args:
      units: GRU units per direction. time_embedding_dim: size of the Fourier time features.
      seed: seeds the time features and the GRU.

    Call arguments:
      x: ``[B, L, F]`` point features of ``x_t``. t: ``[B]`` normalised time ``(step + 1) / T``.
      point_mask: ``[B, L]`` (1 = real point, a prefix).

    Returns:
      ``[B]`` logits (``sigmoid`` = the predicted classifier confidence).
    """

    def __init__(self, units=32, time_embedding_dim=8, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.time_embedding_dim, self.seed = int(units), int(time_embedding_dim), int(seed)
        self.temb = TimeEmbedding(self.time_embedding_dim, "fourier", seed=self.seed, name="temb")
        self.rnn = keras.layers.Bidirectional(
            keras.layers.GRU(self.units, return_sequences=True, seed=self.seed), name="bigru")
        self.hidden = keras.layers.Dense(self.units, activation="silu", name="hidden")
        self.logit = keras.layers.Dense(1, name="logit")

    def build(self, x_shape, t_shape=None, point_mask_shape=None):
        self.temb.build(t_shape)
        self.rnn.build((None, None, int(x_shape[-1]) + self.time_embedding_dim))
        self.hidden.build((None, 2 * self.units + self.time_embedding_dim))
        self.logit.build((None, self.units))
        self.built = True

    def call(self, x, t, point_mask, training=False):
        temb = self.temb(t)
        mask = tf.cast(point_mask, self.compute_dtype)
        h = tf.concat([tf.cast(x, self.compute_dtype), per_point_context(temb, None, tf.shape(x)[1])],
                      axis=-1)
        h = self.rnn(h, mask=tf.cast(point_mask, tf.bool), training=training)
        pooled = tf.reduce_sum(h * mask[..., None], 1) / tf.maximum(
            tf.reduce_sum(mask, 1, keepdims=True), 1.0)
        return self.logit(self.hidden(tf.concat([pooled, temb], -1)))[:, 0]

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "time_embedding_dim": self.time_embedding_dim, "seed": self.seed}


def regressor_inputs(model, x_t, t, mask):
    """What the regressor reads for ``x_t`` of a ``StrokeDiffusion`` ``model``: its denoiser
    features and the normalised time (the denoiser's own ``(t + 1) / T``)."""
    return (model.features(x_t, mask), (tf.cast(t, tf.float32) + 1.0) / model.process.num_steps,
            mask)


def recognisability_targets(model, classifier, x_t, t, mask, labels, scale_factor,
                            cond_vector=None):
    """Classifier confidence in ``labels`` on the decoded x0-prediction of ``x_t`` ``[B]``.

    ``model.denoise`` (conditional on ``labels`` for a class-conditional model) gives
    ``x0_hat``; it is decoded to stroke-3 (``to_strokes``, data units), rendered at the
    classifier's width and classified; the target is the softmax probability of the true class.
    """
    from sketchtk.models.sketch_a_net import preprocess_images
    from sketchtk.render.raster import render_sketches
    lab = labels if model.class_embedding is not None and cond_vector is None else None
    out, pen = model.denoise(x_t, t, mask, lab, cond_vector=cond_vector)
    x0_hat, _ = model.process.predict(out, x_t, t)
    sketches = model.to_strokes(np.asarray(x0_hat) * np.asarray(mask)[..., None], pen, mask)
    for s in sketches:
        s[:, :2] *= scale_factor
    width = int(classifier.input_shape[1])
    logits = classifier.predict(preprocess_images(render_sketches(sketches, width=width)),
                                verbose=0)
    probs = tf.nn.softmax(tf.convert_to_tensor(logits, tf.float32), axis=-1).numpy()
    return probs[np.arange(len(probs)), np.asarray(labels, np.int64)].astype(np.float32)


def regressor_loss(regressor, inputs, target):
    """Mean sigmoid cross-entropy of the regressor's logits against soft targets in [0, 1]."""
    logits = regressor(*inputs, training=True)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(target, logits.dtype), logits=logits))


def train_regressor(regressor, examples, steps, batch_size=64, learning_rate=3e-3, seed=0):
    """Fit ``regressor`` on ``examples`` (a dict of NumPy arrays ``feats``, ``t``, ``mask``,
    ``target``) with Adam; returns the per-step training losses (a list of floats)."""
    n = len(examples["target"])
    rng = np.random.default_rng(seed)
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function(reduce_retracing=True)
    def step(feats, t, mask, target):
        with tf.GradientTape() as tape:
            loss = regressor_loss(regressor, (feats, t, mask), target)
        grads = tape.gradient(loss, regressor.trainable_weights)
        optimizer.apply_gradients(zip(grads, regressor.trainable_weights))
        return loss

    losses = []
    for _ in range(int(steps)):
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        losses.append(float(step(*(tf.constant(examples[k][idx])
                                   for k in ("feats", "t", "mask", "target")))))
    return losses


class ShortcutSampler:
    """A reverse-process sampler that stops each sketch once it is predicted recognisable.

    Args:
      denoise_fn: as ``ReverseSampler`` (``(x, t, mask, context) -> (out, aux)``).
      score_fn: ``(x_t, t, mask, context) -> [B]`` predicted recognisability in [0, 1] (e.g. the
        sigmoid of a ``RecognisabilityRegressor`` on ``regressor_inputs``).
      process: a ``GaussianProcess``.
      method: the plain reverse process underneath, ``ddpm`` or ``ddim`` (``reverse_step``).
      aux_channels: channels of ``denoise_fn``'s second output.
      stride_method: the reverse process of the coarse schedule after a switch
        (``sample(stride_steps=K)``), ``ddim`` (default) or ``ddpm``.

    ``context`` must be a tuple of tensors with the batch first (they are gathered with the batch as
    sketches finish).
    """

    def __init__(self, denoise_fn, score_fn, process, method="ddpm", aux_channels=0,
                 stride_method="ddim"):
        for m in (method, stride_method):
            if m not in METHODS:
                raise ValueError(f"unknown sampler {m!r}; choose one of {list(METHODS)}")
        self.process = process
        self.method, self.stride_method = method, stride_method
        self.aux_channels = int(aux_channels)

        def make_step(kind):
            def step(x, t, t_prev, mask, noise, eta, strength, context):
                out, aux = denoise_fn(x, t, mask, context)
                x0, _ = process.predict(out, x, t)
                score = score_fn(x, t, mask, context)
                x_next = reverse_step(process, kind, x, out, t, t_prev, noise, eta, strength)
                return x_next * mask[..., None], x0 * mask[..., None], aux, score
            return tf.function(step, reduce_retracing=True)

        self._steps = {kind: make_step(kind) for kind in {method, stride_method}}

    def sample(self, x_T, mask, timesteps, threshold=0.9, min_steps=1, eta=0.0,
               variance_strength=1.0, seed=(0, 0), context=(), stride_steps=None):
        """Run the shortcut reverse process from ``x_T`` ``[B, L, C]``.

        ``stride_steps=None``: a sketch whose score reaches ``threshold`` ends at that step's
        x0-prediction. ``stride_steps=K``: it continues from its current t over the timesteps of
        the K-step respaced schedule below that t (``stride_method``), down to the data.

        Returns:
          ``(x0 [B, L, C], aux [B, L, A], calls int [B], scores [S, B])``: the samples, the last
          ``aux`` of each sketch, the number of denoiser calls each one used
          (``<= S = len(timesteps)``) and the predicted recognisability at every step it ran
          (NaN after it finished).
        """
        timesteps = np.asarray(timesteps, np.int32)
        if timesteps.ndim != 1 or len(timesteps) == 0 or timesteps[-1] != 0 or np.any(
                np.diff(timesteps) >= 0):
            raise ValueError("timesteps must be a descending sequence ending at 0")
        coarse = None
        if stride_steps is not None:
            if not 1 <= int(stride_steps) <= self.process.num_steps:
                raise ValueError(f"stride_steps={stride_steps}: expected 1 ... T = "
                                 f"{self.process.num_steps}")
            coarse = np.asarray(respaced_timesteps(self.process.num_steps, int(stride_steps)),
                                np.int32)
        x = np.asarray(x_T, np.float32) * np.asarray(mask, np.float32)[..., None]
        mask = np.asarray(mask, np.float32)
        b = len(x)
        result = np.zeros_like(x)
        aux_out = np.zeros(x.shape[:2] + (self.aux_channels,), np.float32)
        calls = np.zeros(b, np.int64)
        scores = np.full((len(timesteps), b), np.nan, np.float32)
        active = np.arange(b)
        t_now = np.full(b, timesteps[0], np.int32)  # each sketch's current timestep
        strided = np.zeros(b, bool)  # switched to the coarse schedule
        context = tuple(np.asarray(c) for c in context)
        seed = tf.constant(np.asarray(seed, np.int64).reshape(2))
        prev = np.concatenate([timesteps[1:], [-1]]).astype(np.int32)
        for i in range(len(timesteps)):
            # the same noise per sketch as the plain sampler (one draw for the whole batch)
            noise = tf.random.stateless_normal(
                x.shape, tf.random.experimental.stateless_fold_in(seed, i)).numpy()
            t = t_now[active]
            t_prev = np.where(strided[active], _next_below(coarse, t), prev[i]).astype(np.int32)
            x_next = np.zeros((len(active),) + x.shape[1:], np.float32)
            x0 = np.zeros_like(x_next)
            aux = np.zeros((len(active),) + aux_out.shape[1:], np.float32)
            score = np.zeros(len(active), np.float32)
            for kind, rows in ((self.method, ~strided[active]),
                               (self.stride_method, strided[active])):
                if not rows.any():
                    continue
                sel = active[rows]
                out = self._steps[kind](
                    tf.constant(x[sel]), tf.constant(t[rows]), tf.constant(t_prev[rows]),
                    tf.constant(mask[sel]), tf.constant(noise[sel]), tf.constant(float(eta)),
                    tf.constant(float(variance_strength)),
                    tuple(tf.constant(c[sel]) for c in context))
                x_next[rows], x0[rows], aux[rows], score[rows] = (np.asarray(v) for v in out)
            calls[active] += 1
            scores[i, active] = np.where(strided[active], np.nan, score)
            aux_out[active] = aux
            hit = ~strided[active] & (score >= threshold) & (i + 1 >= min_steps)
            finished = t_prev < 0  # reached the data
            if coarse is None:
                result[active[hit & ~finished]] = x0[hit & ~finished]
                done = hit | finished
            else:
                strided[active[hit]] = True
                done = finished
            result[active[finished]] = x_next[finished]
            x[active] = x_next
            t_now[active] = t_prev
            active = active[~done]
            if not len(active):
                break
        return result, aux_out, calls, scores

    @staticmethod
    def stride_calls(timesteps, switch_calls, stride_steps, num_steps):
        """Denoiser calls per sketch of a ``stride_steps`` run whose sketches switch after
        ``switch_calls`` ``[B]`` fine steps (from :meth:`exit_steps`): those, plus one per
        coarse timestep from the one reached down to 0."""
        timesteps = np.asarray(timesteps)
        coarse = np.asarray(respaced_timesteps(num_steps, int(stride_steps)))
        k = np.asarray(switch_calls)
        reached = np.where(k < len(timesteps), timesteps[np.minimum(k, len(timesteps) - 1)], -1)
        after = np.where(reached >= 0, 1 + (coarse[None, :] < reached[:, None]).sum(1), 0)
        return k + after

    @staticmethod
    def exit_steps(scores, threshold, min_steps=1):
        """Denoiser calls per sketch for ``threshold`` from the scores ``[S, B]`` of a full run
        (the trajectory up to an exit does not depend on the exit: use it to calibrate)."""
        scores = np.asarray(scores)
        steps = np.arange(1, len(scores) + 1)[:, None]
        hit = (scores >= threshold) & (steps >= min_steps)
        hit[-1] = True
        return np.argmax(hit, axis=0) + 1


def _next_below(coarse, t):
    """For each ``t``, the largest coarse timestep below it (-1 below the last); ``coarse`` is
    descending (None: no coarse schedule, every entry -1)."""
    t = np.asarray(t)
    if coarse is None:
        return np.full(t.shape, -1, np.int32)
    below = coarse[None, :] < t[:, None]
    idx = np.argmax(below, axis=1)
    return np.where(below.any(1), coarse[idx], -1).astype(np.int32)
