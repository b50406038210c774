"""The non-Gaussian processes of ``StrokeDiffusion`` (hparam ``process``): its glue to them.

- ``process=spd``: :class:`sketchtk.diffusion.spd.FourierSPDProcess` along the points (a
  ``DiffusionProcess``: the model, the shared samplers and the loss need nothing else; the pen
  comes from the pen head, so ``pen_mode=head``).
- ``process=star``: :class:`StarAdapter` wraps the mixed star-shaped process
  (:func:`sketchtk.diffusion.star.make_sketch_star_process`: Gaussian or Beta positions, or
  ``star_positions=polar``: each normalised (x, y) as a direction angle (von Mises) and a length
  (Gaussian), + a Bernoulli pen state on one T) for the model: ``x0`` of a batch, the network input
  (normalised ``G_t``), the KL losses and generation. The per-t statistics of ``G_t`` are
  non-trainable weights of the model (saved with it, in checkpoints and ``.keras``), the running
  mean of the first ``star_stat_batches`` training batches (as the reference averages
  per-batch statistics before training, ``star_shaped_diffusion.py:105-147``).
"""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.diffusion.spd import FourierSPDProcess
from sketchtk.diffusion.star import make_sketch_star_process

_UNIT_EPS = 1e-4  # Beta positions live in [eps, 1 - eps]


def make_process(hp, model):
    """``(process, star_adapter or None)`` for ``hp.process`` (``gaussian`` is the model's own)."""
    if hp.process == "spd":
        if hp.pen_mode != "head":
            raise ValueError("process=spd diffuses the (x, y) channels only: use pen_mode=head")
        return FourierSPDProcess(hp.diffusion_steps, hp.spd_c1, hp.spd_c2, hp.spd_m), None
    if hp.process == "star":
        adapter = StarAdapter(hp, model)
        return adapter.process, adapter
    raise ValueError(f"make_process handles process=spd|star, not {hp.process!r}")


class StarAdapter:
    """``StrokeDiffusion``'s star-shaped path (see the module docstring).

    The denoiser's output channels are ``[x, y, pen logit 0, pen logit 1]`` (``polar``:
    ``[direction vector (2), length, pen logits (2)]``): the model treats it as a
    ``position_out_channels`` output plus a pen head, and decodes the pen from softmax
    probabilities.
    """

    def __init__(self, hp, model):
        self.hp = hp
        self.process = make_sketch_star_process(hp.diffusion_steps, positions=hp.star_positions,
                                                position_schedule=hp.schedule, loss=hp.star_loss)
        self.beta = hp.star_positions == "beta"
        self.polar = hp.star_positions == "polar"
        self.position_out_channels = self.process.out_channels - 2  # the pen's 2 logits follow
        steps, stat = self.process.num_steps, self.process.stat_channels
        init = np.stack([np.zeros((steps, stat)), np.ones((steps, stat))]).astype(np.float32)
        self.stats = model.add_weight(shape=init.shape, initializer=keras.initializers.Constant(
            init), trainable=False, name="star_g_stats")
        self.seen = model.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="star_stat_batches_seen")

    # -------------------------------------------------------------- representation

    def x0(self, points, mask, mean, std):
        """``[B, L, 4]``: positions in the family's domain + the one-hot pen state (``polar``:
        ``[theta, r]`` of the normalised (x, y), ``theta = atan2(y, x)``, then the pen)."""
        xy = (points[..., :2] - mean) / std
        if self.polar:
            xy = tf.stack([tf.atan2(xy[..., 1], xy[..., 0]), tf.norm(xy, axis=-1)], axis=-1)
        if self.beta:
            r = self.hp.star_beta_range
            xy = tf.clip_by_value(0.5 + xy / (2.0 * r), _UNIT_EPS, 1.0 - _UNIT_EPS)
        pen = tf.one_hot(tf.cast(points[..., 2] > 0.5, tf.int32), 2)
        return tf.concat([xy, pen], axis=-1) * mask[..., None]

    def positions(self, x0_hat):
        """Normalised (x, y) from the positions of ``x0_hat`` (``polar``: ``max(r, 0)
        (cos theta, sin theta)``)."""
        xy = x0_hat[..., :2]
        if self.polar:
            r = tf.maximum(xy[..., 1], 0.0)
            return tf.stack([r * tf.cos(xy[..., 0]), r * tf.sin(xy[..., 0])], axis=-1)
        return (xy - 0.5) * 2.0 * self.hp.star_beta_range if self.beta else xy

    # -------------------------------------------------------------- training

    def _update_stats(self, x0, mask, seed):
        def update():
            new = self.process.batch_tail_stats(x0, mask, seed)
            n = self.seen
            self.stats.assign((self.stats * n + new) / (n + 1.0))
            self.seen.assign_add(1.0)
            return tf.constant(0)
        tf.cond(self.seen < float(self.hp.star_stat_batches), update, lambda: tf.constant(0))

    def inputs(self, batch, mask, t, seed, mean, std, training):
        """``(x0, network input)`` of a batch at steps ``t`` (stateless ``seed`` ``[2]``)."""
        x0 = self.x0(tf.cast(batch["points"], tf.float32), mask, mean, std)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        if training:
            self._update_stats(x0, mask, seeds[0])
        g = self.process.tail_sample(x0, t, seeds[1])
        return x0, self.process.network_input(g, t, self.stats) * mask[..., None]

    def losses(self, out, pen_logits, x0, t, mask):
        """``loss`` (the KL, summed over the parts), ``diffusion_loss`` (the position parts)
        and ``pen_kl``."""
        full = tf.concat([out, pen_logits], axis=-1)
        parts = self.process.part_losses(full, x0, t, mask)
        loss = tf.reduce_mean(self.process.loss(full, x0, t, mask))
        position = tf.add_n([v for k, v in parts.items() if k != "pen"])
        return {"loss": loss, "diffusion_loss": position, "pen_kl": parts["pen"]}

    # -------------------------------------------------------------- sampling

    def _predict_fn(self, model, conditional, guided):
        """One network-call function per kind, kept so the compiled loop is traced once per
        kind (labels and the guidance scale are loop arguments)."""
        cache = self.__dict__.setdefault("_predict_fns", {})
        key = (conditional, guided)
        if key not in cache:
            def predict(g, t, m, context):
                lab, scale = context
                inp = self.process.network_input(g, t, self.stats) * m[..., None]
                if conditional:
                    out, pen = model.denoise(inp, t, m, lab, scale if guided else 1.0)
                else:
                    out, pen = model.denoise(inp, t, m)
                return tf.concat([out, pen], axis=-1), tf.zeros(tf.concat([tf.shape(m), [0]], 0))
            cache[key] = predict
        return cache[key]

    def generate(self, model, mask, labels, steps, guidance, seed, record):
        """``(x0 [B, L, 2] normalised, pen_logits [B, L, 2], mask, trajectory)`` as
        ``StrokeDiffusion.generate``; the trajectory holds the decoded ``x0_hat`` positions
        after each network evaluation."""
        conditional, guided = labels is not None, float(guidance) != 1.0
        predict = self._predict_fn(model, conditional, guided)
        b = int(mask.shape[0])
        lab = tf.constant(np.zeros(b, np.int32) if labels is None else np.asarray(labels, np.int32))
        res = self.process.sample(predict, mask, steps=steps, seed=(seed, 2), record=record,
                                  context=(lab, tf.constant(float(guidance))))
        x0 = res["x0"]
        pen_logits = tf.math.log(tf.maximum(x0[..., 2:], 1e-12))
        traj = self.positions(res["trajectory"]) * mask[None, ..., None]
        return self.positions(x0) * mask[..., None], pen_logits, mask, traj
