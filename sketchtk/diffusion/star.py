"""Star-shaped diffusion (SS-DDPM) over ``[B, L, C]`` sequences: a product of families.

``StarShapedProcess`` joins families (``star_families``) over channel groups of ``x0`` on one
shared T; for a sketch (``make_sketch_star_process``): Gaussian or Beta on the two position
channels, or von Mises on a step's direction plus Gaussian on its length (``polar``), plus a
categorical (Bernoulli) pen state, each with its own schedule.

It does not implement :class:`sketchtk.diffusion.process.DiffusionProcess`: the network sees the
tail statistic ``G_t``, not an ``x_t``, predicts ``x0`` and is trained with a KL; there is no
posterior ``q(x_{t'} | x_t, x0)`` and no DDIM. What it shares with the Gaussian path is the
denoiser, the model, the trainer and the metrics.

- Training: ``t ~ U[0, T)``, ``G_t`` drawn given ``x0`` (:meth:`tail_sample`: Gaussian in closed
  form, the others by drawing all T ``x_s`` in one vectorised op), network input
  ``(G_t - mean_t) / std_t`` with per-t, per-channel statistics estimated on training batches
  (:meth:`batch_tail_stats`; categorical: a softmax), loss = KL or rescaled KL
  (``star_shaped_diffusion.py:105-174``).
- Sampling (:meth:`sample`): ``x_{T-1}`` from the limit, then for t = T-1 .. 0:
  ``G += a_t T(x_t)``; at an evaluation point ``x0_hat = f(G, t)``; ``x_{t-1} ~ q(. | x0_hat)``.
  Between evaluation points ``x0_hat`` is reused but every intermediate ``x_s`` is still drawn,
  so ``G`` stays the exact sum (``star_shaped_diffusion.py:224-269``); one compiled while-loop.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from sketchtk.diffusion.schedules import respaced_timesteps
from sketchtk.diffusion.star_families import make_family

LOSSES = ("kl", "kl_rescaled")


@dataclasses.dataclass(frozen=True)
class Part:
    """One family over ``channels`` consecutive channels of ``x0``."""

    name: str
    family: object
    channels: int

    @property
    def stat_channels(self):
        return self.channels * self.family.stat_channels_per_channel

    @property
    def out_channels(self):
        return self.channels * self.family.out_channels_per_channel


class StarShapedProcess:
    """A star-shaped process that is a product of families over channel groups.

    Args:
      parts: ``Part`` list, in channel order of ``x0``.
      loss: ``kl`` or ``kl_rescaled`` (Beta: KL / nu; Gaussian: x0-MSE / 2; categorical: KL).
    """

    def __init__(self, parts, loss="kl_rescaled"):
        if loss not in LOSSES:
            raise ValueError(f"unknown star-shaped loss {loss!r}; choose one of {list(LOSSES)}")
        steps = {p.family.num_steps for p in parts}
        if len(steps) != 1:
            raise ValueError(f"the families must share one T, got {sorted(steps)}")
        self.parts = list(parts)
        self.num_steps = steps.pop()
        self.loss_name = loss
        self.channels = sum(p.channels for p in parts)
        self.stat_channels = sum(p.stat_channels for p in parts)
        self.out_channels = sum(p.out_channels for p in parts)

    # -------------------------------------------------------------- splitting helpers

    def _split(self, x, sizes):
        return tf.split(x, sizes, axis=-1)

    def split_x0(self, x0):
        return self._split(x0, [p.channels for p in self.parts])

    def split_stats(self, g):
        return self._split(g, [p.stat_channels for p in self.parts])

    def split_out(self, out):
        return self._split(out, [p.out_channels for p in self.parts])

    def _seeds(self, seed):
        return tf.unstack(tf.random.experimental.stateless_split(seed, len(self.parts)))

    # -------------------------------------------------------------- forward / tail

    def forward_sample(self, x0, t, seed):
        """``x_t ~ q(x_t | x0)`` for every part (each in its own sample domain)."""
        return tf.concat([p.family.forward_sample(x, t, s) for p, x, s in
                          zip(self.parts, self.split_x0(x0), self._seeds(seed))], axis=-1)

    def tail_term(self, x_t, t):
        return tf.concat([p.family.tail_term(x, t) for p, x in
                          zip(self.parts, self.split_x0(x_t))], axis=-1)

    def tail_sample(self, x0, t, seed, exhaustive=False):
        """A draw of ``G_t`` ``[B, L, stat_channels]`` given ``x0``."""
        draws = []
        for p, x, s in zip(self.parts, self.split_x0(x0), self._seeds(seed)):
            fn = p.family.tail_sample_exhaustive if exhaustive else p.family.tail_sample
            draws.append(fn(x, t, s))
        return tf.concat(draws, axis=-1)

    def prior_sample(self, shape, seed):
        """``x_{T-1}`` from the limit ``[B, L, channels]`` (``shape = [B, L]``)."""
        shape = tf.convert_to_tensor(shape, tf.int32)
        return tf.concat([p.family.prior_sample(tf.concat([shape, [p.channels]], 0), s)
                          for p, s in zip(self.parts, self._seeds(seed))], axis=-1)

    # -------------------------------------------------------------- normalisation

    def batch_tail_stats(self, x0, mask, seed):
        """Per-t mean and std of ``G_t`` over the real points of one batch, ``[2, T, S]``: every
        example's whole tail (all T) from one draw of all ``x_s`` and a reverse cumulative sum
        (as ``star_shaped_diffusion.py:122-139``, which averages such per-batch statistics)."""
        num = self.num_steps
        b = tf.shape(x0)[0]
        t_all = tf.repeat(tf.range(num, dtype=tf.int32), b)
        x0_all = tf.reshape(tf.repeat(x0[None], num, axis=0),
                            tf.concat([[num * b], tf.shape(x0)[1:]], 0))
        terms = self.tail_term(self.forward_sample(x0_all, t_all, seed), t_all)
        terms = tf.reshape(terms, tf.concat([[num, b], tf.shape(terms)[1:]], 0))
        g = tf.cumsum(terms, axis=0, reverse=True)  # [T, B, L, S]
        w = tf.cast(mask, g.dtype)[None, ..., None]
        n = tf.maximum(tf.reduce_sum(w, axis=[1, 2]), 1.0)  # [T, 1]
        mean = tf.reduce_sum(g * w, axis=[1, 2]) / n
        var = tf.reduce_sum(tf.square(g - mean[:, None, None]) * w, axis=[1, 2]) / n
        return tf.stack([mean, tf.sqrt(tf.maximum(var, 1e-12))])

    def network_input(self, g, t, stats):
        """Normalised ``G_t``: ``(G - mean_t) / std_t`` (``star_shaped_diffusion.py:152-153``)
        or, for a categorical part, ``softmax(G)`` (``categorical_star_shaped.py:74-81``)."""
        mean = tf.gather(stats[0], t)[:, None, :]
        std = tf.gather(stats[1], t)[:, None, :]
        out = []
        for p, gp, mp, sp in zip(self.parts, self.split_stats(g), self.split_stats(mean),
                                 self.split_stats(std)):
            out.append((gp - mp) / sp if p.family.normalised_by_stats
                       else tf.nn.softmax(gp, axis=-1))
        return tf.concat(out, axis=-1)

    # -------------------------------------------------------------- prediction and loss

    def x0_hat(self, out):
        """``x0_hat`` in the families' domains from the raw network output."""
        return tf.concat([p.family.from_output(o) for p, o in zip(self.parts, self.split_out(out))],
                         axis=-1)

    def kl_terms(self, out, x0, t):
        """Per-element KL terms ``[B, L, channels]`` (the configured ``loss``)."""
        terms = []
        for p, o, x in zip(self.parts, self.split_out(out), self.split_x0(x0)):
            fn = p.family.kl if self.loss_name == "kl" else p.family.kl_rescaled
            terms.append(fn(x, p.family.from_output(o), t))
        return tf.concat(terms, axis=-1)

    def loss(self, out, x0, t, mask):
        """Per-example loss ``[B]``: KL summed over channels, averaged over the real points."""
        mask = tf.cast(mask, tf.float32)
        per_point = tf.reduce_sum(self.kl_terms(out, x0, t), axis=-1)
        return tf.reduce_sum(per_point * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)

    def part_losses(self, out, x0, t, mask):
        """Each part's share of :meth:`loss`, batch-averaged the same way (they sum to its
        batch mean), ``{name: scalar}`` (for logging)."""
        mask = tf.cast(mask, tf.float32)
        length = tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        terms = self.kl_terms(out, x0, t)
        sizes = [p.channels for p in self.parts]
        return {p.name: tf.reduce_mean(tf.reduce_sum(tf.reduce_sum(k, -1) * mask, 1) / length)
                for p, k in zip(self.parts, tf.split(terms, sizes, axis=-1))}

    # -------------------------------------------------------------- sampling

    def evaluation_mask(self, steps):
        """``[T]`` bool: where the sampler calls the network (``steps`` evenly spaced, always
        ``T - 1`` and 0; the reference's ``model_estimation_points``,
        ``star_shaped_diffusion.py:231-241``)."""
        at = np.zeros(self.num_steps, bool)
        at[respaced_timesteps(self.num_steps, steps or self.num_steps)] = True
        return at

    def sample(self, predict_fn, mask, steps=None, seed=(0, 0), record=False, record_tail=False,
               context=(), aux_channels=0):
        """Run the star-shaped reverse process.

        Args:
          predict_fn: ``(g [B, L, S], t [B], mask, context) -> (out [B, L, O], aux [B, L, A])``
            with the raw tail statistic ``g`` (the caller applies :meth:`network_input` with
            the statistics it owns).
          mask: ``[B, L]``; steps: network evaluations (None = T). seed: stateless ``[2]``.
          record: return ``x0_hat`` after every network evaluation ``[E, B, L, C]`` (else
            ``[1, ...]`` of zeros).
          record_tail: also return every drawn ``x_t`` and every ``G_t`` (``[T, B, L, .]``, index
            = t) to check the bookkeeping.
          context: passed to ``predict_fn``. aux_channels: channels of its second output.

        Returns:
          dict: ``x0`` (the final ``x0_hat``), ``aux`` (of the last call), ``trajectory``
          and, with ``record_tail``, ``xs`` and ``gs``.
        """
        mask = tf.convert_to_tensor(mask, tf.float32)
        seed = tf.constant(np.asarray(seed, np.int64).reshape(2))
        at = tf.constant(self.evaluation_mask(steps))
        loop = self._loop(bool(record), bool(record_tail), int(aux_channels))
        return loop(predict_fn, mask, at, seed, context)

    def _loop(self, record, record_tail, aux_channels):
        key = (record, record_tail, aux_channels)
        loops = self.__dict__.setdefault("_loops", {})
        if key in loops:
            return loops[key]
        num = self.num_steps

        def run(predict_fn, mask, at, seed, context):
            shape = tf.shape(mask)
            b = shape[0]
            x = self.prior_sample(shape, tf.random.experimental.stateless_fold_in(seed, num))
            g = tf.zeros(tf.concat([shape, [self.stat_channels]], 0))
            x0 = tf.zeros(tf.concat([shape, [self.channels]], 0))
            out0 = tf.zeros(tf.concat([shape, [self.out_channels]], 0))
            mask3 = mask[..., None]
            aux = tf.zeros(tf.concat([shape, [aux_channels]], 0))
            traj = tf.TensorArray(tf.float32, size=num if record else 1)
            if not record:
                traj = traj.write(0, x0)
            xs = tf.TensorArray(tf.float32, size=num if record_tail else 1)
            gs = tf.TensorArray(tf.float32, size=num if record_tail else 1)
            if not record_tail:
                xs, gs = xs.write(0, x), gs.write(0, g)

            def body(i, x, g, x0, out, aux, traj, xs, gs):
                t = num - 1 - i
                tv = tf.fill([b], t)
                g = g + self.tail_term(x, tv) * mask3
                if record_tail:
                    xs = xs.write(t, x)
                    gs = gs.write(t, g)

                def evaluate():
                    o, a = predict_fn(g, tv, mask, context)
                    return o, a

                out, aux = tf.cond(at[t], evaluate, lambda: (out, aux))
                x0 = self.x0_hat(out)
                if record:
                    traj = traj.write(i, x0)
                step_seed = tf.random.experimental.stateless_fold_in(seed, t)
                x = self.forward_sample(x0, tf.fill([b], tf.maximum(t - 1, 0)), step_seed)
                return i + 1, x, g, x0, out, aux, traj, xs, gs

            loop_vars = (tf.constant(0), x, g, x0, out0, aux, traj, xs, gs)
            res = tf.while_loop(lambda i, *_: i < num, body, loop_vars)
            traj = res[6].stack()
            if record:  # the evaluation points only, in sampling order
                traj = tf.gather(traj, tf.where(tf.reverse(at, [0]))[:, 0])
            result = {"x0": res[3] * mask3, "aux": res[5], "trajectory": traj}
            if record_tail:
                result["xs"], result["gs"] = res[7].stack(), res[8].stack()
            return result

        loops[key] = tf.function(run, reduce_retracing=True)
        return loops[key]


def make_sketch_star_process(num_steps, positions="gaussian", position_schedule="linear",
                             pen_schedule="cosine", loss="kl_rescaled"):
    """The mixed sketch process, each family with its own schedule on one shared T:

    - ``gaussian`` (normalised coordinates) or ``beta`` (coordinates mapped to (0, 1)) on the 2
      position channels + a Bernoulli pen state (2 one-hot channels);
    - ``polar``: a point's step as a direction angle (von Mises, ``VM(theta_0, kappa_t)``,
      ``kappa_t`` = the SNR of ``position_schedule``) and a step length (Gaussian, the same
      schedule) + the Bernoulli pen: channels ``[theta, r, pen0, pen1]``; the network outputs
      ``[2 (direction vector), 1 (length), 2 (pen logits)]``.
    """
    if positions not in ("gaussian", "beta", "polar"):
        raise ValueError(f"star positions must be gaussian, beta or polar, got {positions!r}")
    pen = make_family("categorical", num_steps, pen_schedule, num_classes=2)
    if positions == "polar":
        return StarShapedProcess([
            Part("direction", make_family("von_mises", num_steps, position_schedule), 1),
            Part("length", make_family("gaussian", num_steps, position_schedule), 1),
            Part("pen", pen, 2)], loss=loss)
    pos = make_family(positions, num_steps, position_schedule)
    return StarShapedProcess([Part("positions", pos, 2), Part("pen", pen, 2)], loss=loss)
