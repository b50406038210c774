"""``StrokeDiffusion``: a denoising diffusion model over point sequences (ChiroDiff, SketchKnitter).

One Keras model for the Gaussian stroke-diffusion family (ALGORITHMS.md section 4), trained by the
shared trainer (``train_step`` / ``test_step``) on batches of ``make_dataset`` in point mode:

- data: ``points`` ``[B, L, 3]`` (``delta`` or ``absolute``, ``sketchtk.data.point_sequences``),
  normalised here with the training set's ``PointStats`` (saved with the model);
- pen: ``pen_mode="channel"`` diffuses the pen bit as a third channel (mapped to -1/+1, decoded by
  its sign; ChiroDiff diffuses the 0/1 bit and thresholds at 0.8, ``main.py:487-488``) or
  ``pen_mode="head"`` diffuses only (x, y) and predicts the pen state with a separate softmax head
  trained by cross-entropy (weight ``pen_loss_weight``, SketchKnitter 0.01,
  ``gaussian_diffusion.py:547-553``), decoded from its probabilities (SketchKnitter ``sample.py:79-88``
  thresholds the raw pen-*down* logit as pen-up: its users get dashed strokes);
- denoiser input per point: the noisy point, its complementary representation (positions for
  ``delta``, velocities for ``absolute``; ChiroDiff ``main.py:323-336``), the time embedding and
  the class embedding (``class_conditional``), with classifier-free label dropout;
- an EMA of the weights (decay ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates, as
  ``torch_ema`` used by ChiroDiff ``main.py:183-186``) kept as non-trainable weights and used for
  sampling (``ema_weights()``);
- a ``LengthModel`` (saved with the model) draws the number of points of each generated sketch.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from sketchtk.config import HParams
from sketchtk.data.point_sequences import LengthModel, PointStats, from_points, padded_length
from sketchtk.diffusion import guidance as cfg
from sketchtk.diffusion.process import GaussianProcess
from sketchtk.diffusion.samplers import ReverseSampler, sampling_timesteps
from sketchtk.layers.cond_encoders import make_cond_encoder
from sketchtk.layers.denoisers import make_denoiser
from sketchtk.models.built_up_front import BuiltUpFrontModel
# the same replica-reduction shim as the VAE (one implementation)
from sketchtk.models.sketch_vae import _for_keras_reduction

_TRACKED = ("loss", "diffusion_loss", "pen_xent", "pen_kl")  # pen_kl: process=star


@keras.saving.register_keras_serializable(package="sketchtk")
class StrokeDiffusion(BuiltUpFrontModel):
    """Diffusion over padded point sequences with a mask.

    Args:
      hparams: ``HParams`` (or its dict) with ``model="stroke_diffusion"``.
      max_seq_len: the padded sequence length found from the data.
      point_stats: ``PointStats`` or its dict (training-set mean / std of x, y).
      length_model: ``LengthModel`` or its dict (training-set point counts per class).
      categories: category names, index = label.

    Call arguments:
      inputs: a point batch (``points``, ``mask``, ``labels``) from ``make_dataset``.

    Returns:
      The training loss terms (a dict of scalars), as ``compute_losses``.

    Example:
      >>> model = StrokeDiffusion(get_preset("diffusion_smoke"), 168, stats, lengths, categories)
      >>> model.compile(optimizer=make_optimizer(hparams))
      >>> model.fit(make_dataset(point_data, "train", hparams, training=True), steps_per_epoch=10)
      >>> points, mask, _ = model.generate(lengths=[40, 60], labels=[0, 3], sampler="ddim", steps=30)

    Reference:
      Ho et al., NeurIPS 2020 (DDPM); Song et al., ICLR 2021 (DDIM); Das et al., ICLR 2023
      (ChiroDiff); Wang et al., ICLR 2023 (SketchKnitter); Ho & Salimans 2021 (guidance).
    """

    def __init__(self, hparams, max_seq_len, point_stats, length_model, categories=(), **kwargs):
        super().__init__(**kwargs)
        if isinstance(hparams, dict):
            hparams = HParams.from_dict(hparams)
        if hparams.model != "stroke_diffusion":
            raise ValueError(f"StrokeDiffusion builds model=stroke_diffusion, not {hparams.model!r}")
        self.hparams = hp = hparams
        self.max_seq_len = int(max_seq_len)
        self.point_stats = (point_stats if isinstance(point_stats, PointStats)
                            else PointStats.from_dict(point_stats))
        self.length_model = (length_model if isinstance(length_model, LengthModel)
                             else LengthModel.from_dict(length_model))
        self.categories = tuple(categories)
        self.num_classes = max(1, len(self.categories))
        self.process = GaussianProcess(hp.diffusion_steps, hp.schedule, hp.parametrisation)
        self.channels = 3 if hp.pen_mode == "channel" else 2
        self.pen_head = hp.pen_mode == "head"
        self.star = None  # process=star|spd: sketchtk.models.diffusion_processes (issue 12)
        if hp.process != "gaussian":
            from sketchtk.models.diffusion_processes import make_process
            self.process, self.star = make_process(hp, self)
            if self.star is not None:  # position x0-prediction + the Bernoulli pen's two logits
                self.channels, self.pen_head = self.star.position_out_channels, True
        self.denoiser = make_denoiser(
            hp.denoiser, out_channels=self.channels + (2 if self.pen_head else 0),
            units=hp.denoiser_units, num_layers=hp.denoiser_layers, num_heads=hp.denoiser_heads,
            time_embedding=hp.time_embedding, time_embedding_dim=hp.time_embedding_dim,
            seed=hp.seed)
        self.class_embedding = None
        if hp.class_conditional:
            # one extra row: the "no label" of classifier-free guidance
            self.class_embedding = keras.layers.Embedding(self.num_classes + 1, hp.cond_dim,
                                                          name="class_embedding")
        self.cond_encoder = None  # cond_encoder=pointcloud|sketch (sketchtk.layers.cond_encoders)
        if hp.cond_encoder != "none":
            self.cond_encoder = make_cond_encoder(hp.cond_encoder, hp.cond_dim,
                                                  hp.cond_encoder_units, hp.seed,
                                                  hp.cond_encoder_out, hp.cond_set_pointnet,
                                                  hp.cond_set_fourier)
        self.noise = keras.random.SeedGenerator(hp.seed + 23)
        self._mean = tf.constant(self.point_stats.mean, tf.float32)
        self._std = tf.constant(self.point_stats.std, tf.float32)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in _TRACKED}
        self.ema = []
        self._samplers = {}

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def null_label(self):
        return self.num_classes

    # ------------------------------------------------------------------ representation

    def normalise(self, points, mask):
        """Data points ``[B, L, 3]`` -> the diffused ``x0`` ``[B, L, C]`` (zero at padding)."""
        xy = (points[..., :2] - self._mean) / self._std
        parts = [xy]
        if not self.pen_head:
            parts.append(2.0 * points[..., 2:3] - 1.0)
        return tf.concat(parts, axis=-1) * mask[..., None]

    def features(self, x, mask):
        """Denoiser input: ``x`` and its complementary representation, ``[B, L, C + 2]``."""
        xy = x[..., :2] * mask[..., None]
        if self.hparams.representation == "delta":
            other = tf.cumsum(xy, axis=1)
        else:
            other = tf.concat([tf.zeros_like(xy[:, :1]), xy[:, 1:] - xy[:, :-1]], axis=1)
        return tf.concat([x, other * mask[..., None]], axis=-1)

    def condition_vector(self, labels, points, mask, training=False):
        """The denoiser's conditioning vector ``[B, D]`` of a batch: the class embedding
        (``labels`` None = the null label) and / or the conditioning encoder's vector of the
        sketches ``points`` ``[B, L, 3]`` (data units); None for an unconditional model.

        ``cond_encoder=pointcloud`` sees only the (x, y) positions as a set, centred on their mean
        (an unordered point set has no first point); ``sketch`` sees the normalised sequence
        (ChiroDiff ``BiRNNEncoderFeature``), and with ``cond_sketch_input=features`` also its
        complementary representation, as the denoiser does (a departure: in delta mode the
        encoder then reads the positions directly instead of having to sum the offsets).
        """
        parts = []
        if self.class_embedding is not None:
            lab = (tf.fill([tf.shape(points)[0]], self.null_label) if labels is None
                   else tf.cast(labels, tf.int32))
            parts.append(self.class_embedding(lab))
        if self.cond_encoder is not None:
            points, mask = tf.cast(points, tf.float32), tf.cast(mask, tf.float32)
            if self.hparams.cond_encoder == "pointcloud":
                xy = points[..., :2] * mask[..., None]
                if self.hparams.representation == "delta":
                    xy = tf.cumsum(xy, axis=1)
                centre = tf.reduce_sum(xy * mask[..., None], 1, keepdims=True) / tf.maximum(
                    tf.reduce_sum(mask, 1)[:, None, None], 1.0)
                feats = (xy - centre) * mask[..., None]
            else:
                feats = self.normalise(points, mask)
                if self.hparams.cond_sketch_input == "features":  # + positions (delta) / velocities
                    feats = self.features(feats, mask)
            parts.append(self.cond_encoder(feats, mask, training=training))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def null_condition(self, cond_vector):
        """``cond_vector`` with its conditioning-encoder part (the last ``cond_dim`` entries) set
        to zero and the class embedding kept: the "no sketch" condition that ``cond_drop_prob``
        trains and ``--cond_guidance`` contrasts with (Ho & Salimans 2021, applied to the
        encoder's vector; ChiroDiff always conditions, ``main.py:369-375``)."""
        d = self.hparams.cond_dim
        return tf.concat([cond_vector[..., :-d], tf.zeros_like(cond_vector[..., -d:])], axis=-1)

    def denoise(self, x_t, t, mask, labels=None, guidance=1.0, training=False, cond_vector=None):
        """Network output ``[B, L, C]`` and pen logits ``[B, L, 2]`` (``[B, L, 0]`` without a head).

        With a class-conditional model and ``labels``, the output is classifier-free guided:
        ``u + guidance * (c - u)`` (``guidance = 1``: conditional only, no extra pass).
        """
        t_norm = (tf.cast(t, tf.float32) + 1.0) / float(self.process.num_steps)
        feats = self.features(x_t, mask)
        if cond_vector is not None:  # a given conditioning vector (condition_vector) replaces labels
            y = self.denoiser(feats, t_norm, mask, cond_vector, training=training)
            return y[..., :self.channels], y[..., self.channels:]
        if self.cond_encoder is not None:
            raise ValueError(f"a cond_encoder={self.hparams.cond_encoder} model needs a conditioning "
                             "vector (condition_vector) at every call; see sketchtk.sampling."
                             "diffusion_apps")

        def run(lab, f, tn, m):
            cond = None if self.class_embedding is None else self.class_embedding(lab)
            y = self.denoiser(f, tn, m, cond, training=training)
            return y[..., :self.channels], y[..., self.channels:]

        if self.class_embedding is None:
            return run(None, feats, t_norm, mask)
        return cfg.guided_call(run, labels, self.null_label, guidance, feats, t_norm, mask)

    # ------------------------------------------------------------------ losses

    def _draws(self, batch, training):
        """Timesteps, noise and label-dropout coins: seeded streams in training (their state is
        checkpointed), fixed per validation batch otherwise (comparable validation losses)."""
        shape = tf.shape(batch["points"])
        b = shape[0]
        noise_shape = tf.stack([b, shape[1], self.channels])
        if training:
            t = keras.random.randint((b,), 0, self.process.num_steps, seed=self.noise)
            noise = keras.random.normal(noise_shape, seed=self.noise)
            coin = keras.random.uniform((b,), seed=self.noise)
            return tf.cast(t, tf.int32), noise, coin
        seed = tf.stack([tf.constant(self.hparams.seed + 99, tf.int64),
                         tf.cast(batch["index"][0], tf.int64)])
        seeds = tf.random.experimental.stateless_split(seed, 3)
        t = tf.random.stateless_uniform([b], seeds[0], 0, self.process.num_steps, dtype=tf.int32)
        return (t, tf.random.stateless_normal(noise_shape, seeds[1]),
                tf.random.stateless_uniform([b], seeds[2]))

    def compute_losses(self, batch, training=False):
        """Loss terms of one batch: ``loss``, ``diffusion_loss`` and (pen head) ``pen_xent``."""
        mask = tf.cast(batch["mask"], tf.float32)
        x0 = self.normalise(tf.cast(batch["points"], tf.float32), mask)
        t, noise, coin = self._draws(batch, training)
        noise = noise * mask[..., None]
        if self.star is not None:  # the network sees the normalised tail statistic G_t
            x0, x_t = self.star.inputs(batch, mask, t, self._star_seed(batch, training),
                                       self._mean, self._std, training)
        else:
            x_t = self.process.q_sample(x0, t, noise) * mask[..., None]
        labels = None
        if self.class_embedding is not None:
            labels = tf.cast(batch["labels"], tf.int32)
            if training and self.hparams.cfg_drop_prob > 0:
                labels = tf.where(coin < self.hparams.cfg_drop_prob,
                                  tf.fill(tf.shape(labels), self.null_label), labels)
        cond_vector = None
        if self.cond_encoder is not None:  # trained with the denoiser (ChiroDiff main.py:369-375)
            cond_vector = self.condition_vector(labels, batch["points"], mask, training=training)
            if training and self.hparams.cond_drop_prob > 0:  # the same coin as the labels'
                drop = (coin < self.hparams.cond_drop_prob)[:, None]
                cond_vector = tf.where(drop, self.null_condition(cond_vector), cond_vector)
        out, pen_logits = self.denoise(x_t, t, mask, labels, training=training,
                                       cond_vector=cond_vector)
        if self.star is not None:
            return self.star.losses(out, pen_logits, x0, t, mask)
        per_example = self.process.loss(out, x0, noise, t, mask)
        if self.hparams.loss_weighting == "x0":  # validation uses it too: the monitored objective
            per_example = per_example * self.process.loss_weight(t, self.hparams.loss_weight_max)
        diffusion_loss = tf.reduce_mean(per_example)
        losses = {"diffusion_loss": diffusion_loss, "loss": diffusion_loss}
        if self.pen_head:
            target = tf.cast(batch["points"][..., 2] > 0.5, tf.int32)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(target, pen_logits)
            pen_xent = tf.reduce_sum(xent * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
            losses["pen_xent"] = pen_xent
            losses["loss"] = diffusion_loss + self.hparams.pen_loss_weight * pen_xent
        return losses

    def call(self, inputs, training=False):
        return self.compute_losses(inputs, training=training)

    def _star_seed(self, batch, training):
        """A stateless seed ``[2]`` for the star-shaped draws (from the checkpointed stream in
        training, fixed per validation batch otherwise)."""
        if training:
            return tf.cast(keras.random.randint((2,), 0, 2 ** 30, seed=self.noise), tf.int64)
        return tf.stack([tf.constant(self.hparams.seed + 77, tf.int64),
                         tf.cast(batch["index"][0], tf.int64)])

    # ------------------------------------------------------------------ steps

    def _clip_and_sync(self, grads):
        """Clip the *global* gradient by its norm (ChiroDiff: ``gradient_clip_val`` 0.1, norm)."""
        ctx = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if ctx is not None and replicas > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, self.hparams.grad_clip)
            return [g / replicas for g in grads]
        grads, _ = tf.clip_by_global_norm(grads, self.hparams.grad_clip)
        return grads

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = losses["loss"] / tf.cast(replicas, losses["loss"].dtype)
        variables = self.trainable_weights
        grads = self._clip_and_sync(tape.gradient(scaled, variables))
        self.optimizer.apply_gradients(zip(grads, variables))
        self._update_ema()
        logs = dict(losses)
        logs["lr"] = self.optimizer.learning_rate
        return _for_keras_reduction(logs)

    def test_step(self, data):
        losses = self.compute_losses(data, training=False)
        batch = tf.shape(data["points"])[0]
        for key, tracker in self.trackers.items():
            if key in losses:
                tracker.update_state(losses[key], sample_weight=batch)
        return _for_keras_reduction({k: t.result() for k, t in self.trackers.items()
                                     if k in losses})

    # ------------------------------------------------------------------ EMA

    def _update_ema(self):
        n = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(self.hparams.ema_decay, (1.0 + n) / (10.0 + n))
        for avg, w in zip(self.ema, self.trainable_weights):
            avg.assign(decay * avg + (1.0 - decay) * w)

    @contextlib.contextmanager
    def ema_weights(self):
        """Temporarily load the EMA weights into the model (for sampling)."""
        saved = [w.numpy() for w in self.trainable_weights]
        for w, avg in zip(self.trainable_weights, self.ema):
            w.assign(avg)
        try:
            yield self
        finally:
            for w, value in zip(self.trainable_weights, saved):
                w.assign(value)

    def build_from_batch(self, batch):
        """Create every weight (one forward pass) and the EMA copies (needed before loading)."""
        if not self.built:
            self.compute_losses(batch, training=False)
            self.ema = [self.add_weight(shape=w.shape, initializer="zeros", trainable=False,
                                        name=f"ema_{i}") for i, w in enumerate(self.trainable_weights)]
            for avg, w in zip(self.ema, self.trainable_weights):
                avg.assign(w)
            self.built = True

    def get_build_config(self):
        return {"max_seq_len": self.max_seq_len}

    def build_from_config(self, config):
        """``.keras`` reload: the weights are created the same way as in training."""
        self.build_from_batch(self.dummy_batch())

    def dummy_batch(self, batch_size=2):
        """A batch of the right structure (for building before loading weights)."""
        points = np.zeros((batch_size, self.max_seq_len, 3), np.float32)
        mask = np.zeros((batch_size, self.max_seq_len), np.float32)
        mask[:, :2] = 1.0
        return {"points": tf.constant(points), "mask": tf.constant(mask),
                "labels": tf.zeros([batch_size], tf.int32),
                "lengths": tf.fill([batch_size], 2), "index": tf.zeros([batch_size], tf.int64)}

    # ------------------------------------------------------------------ sampling

    def sample_lengths(self, labels, seed):
        """Point counts for new sketches from the training set's length model (per class)."""
        lengths = self.length_model.sample(labels, seed)
        return np.clip(lengths, 2, self.max_seq_len).astype(np.int32)

    @property
    def sample_xla(self):
        """Whether the reverse loop is XLA-compiled (hparam ``sample_xla``; the samples agree to
        float rounding either way). ``auto`` is off: on an idle 2-core CPU XLA made the bi-GRU's
        DDIM-30 4% slower (19.3 vs 20.1 sketches/s, ``bench/bench_diffusion.py``), although it was
        2.2-2.5x faster on the same machine under heavy load (fewer, fused kernels), and it made
        the transformer and the UNet about 1.8x slower under load. ``on`` forces it."""
        return self.hparams.sample_xla == "on"

    def _sampler(self, conditional, guided):
        """One compiled reverse loop per (conditional, guided) kind; labels and the guidance
        scale are arguments of the loop, so new values do not retrace it."""
        key = (conditional, guided)
        if key not in self._samplers:
            def fn(x, t, mask, context):
                labels, scale = context
                if not conditional:
                    return self.denoise(x, t, mask)
                return self.denoise(x, t, mask, labels, scale if guided else 1.0)
            self._samplers[key] = ReverseSampler(fn, self.process,
                                                 aux_channels=2 if self.pen_head else 0,
                                                 jit_compile=self.sample_xla)
        return self._samplers[key]

    def generate(self, lengths, labels=None, sampler="ddpm", steps=None, eta=0.0,
                 variance_strength=1.0, guidance=1.0, seed=0, record=False):
        """Sample normalised sequences with the reverse process (one compiled loop per batch).

        Args:
          lengths: int ``[B]`` points per sketch (e.g. from ``sample_lengths``).
          labels: int ``[B]`` classes for a class-conditional model (None = unconditional).
          sampler: ``ddpm`` or ``ddim``. steps: sampling steps (None = T; fewer = respaced).
          eta: DDIM's noise. variance_strength: DDPM's s. guidance: classifier-free scale.
          seed: int seed of x_T and the sampling noise. record: also return the trajectory.

        Returns:
          ``(x0 [B, L, C], pen_logits [B, L, 2|0], mask [B, L], trajectory)``.
        """
        lengths = np.asarray(lengths, np.int32)
        b = len(lengths)
        # pad to this batch's longest sketch, not max_seq_len: the denoisers ignore padding (a
        # tested property), so the cost follows the real lengths
        length = min(self.max_seq_len, padded_length(int(lengths.max())))
        mask = tf.sequence_mask(lengths, length, dtype=tf.float32)
        conditional = labels is not None and self.class_embedding is not None
        if labels is not None and self.class_embedding is None:
            raise ValueError("labels given but the model is not class-conditional "
                             "(trained with class_conditional=False)")
        if self.star is not None:  # its own sampler: ancestral only, x0_hat reused between calls
            if sampler != "ddpm":
                raise ValueError(f"--sampler={sampler}: process=star samples with its own "
                                 "ancestral sampler only (--sampler=ddpm; no DDIM)")
            return self.star.generate(self, mask, labels if conditional else None, steps,
                                      guidance, seed, record)
        lab = tf.constant(np.zeros(b, np.int32) if labels is None else np.asarray(labels, np.int32))
        loop = self._sampler(conditional, float(guidance) != 1.0)
        x_T = tf.random.stateless_normal([b, length, self.channels], (seed, 1))
        x0, pen, traj = loop.sample(x_T, mask, sampling_timesteps(self.process, steps), sampler,
                                    eta=eta, variance_strength=variance_strength,
                                    seed=(seed, 2), record=record,
                                    context=(lab, tf.constant(float(guidance))))
        return x0, pen, mask, traj

    def to_strokes(self, x0, pen_logits, mask):
        """Decode generated sequences into stroke-3 lists in data units (``* scale_factor`` is
        the caller's). The last real point always lifts the pen."""
        x0, mask = np.asarray(x0), np.asarray(mask)
        std, mean = np.asarray(self.point_stats.std), np.asarray(self.point_stats.mean)
        if self.pen_head:
            logits = np.asarray(pen_logits, np.float64)
            logits -= logits.max(axis=-1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
            pen = probs[..., 1] > 0.5  # P(pen lifts after this point)
        else:
            pen = x0[..., 2] > 0.0
        out = []
        for i in range(len(x0)):
            n = int(mask[i].sum())
            rows = np.zeros((n, 3), np.float32)
            rows[:, :2] = x0[i, :n, :2] * std + mean
            rows[:, 2] = pen[i, :n]
            rows[-1, 2] = 1.0
            out.append(from_points(rows, self.hparams.representation))
        return out

    def get_config(self):
        return {"hparams": self.hparams.to_dict(), "max_seq_len": self.max_seq_len,
                "point_stats": self.point_stats.to_dict(),
                "length_model": self.length_model.to_dict(), "categories": list(self.categories),
                "name": self.name}


def make_optimizer(hparams):
    """AdamW (ChiroDiff ``main.py:286-289``: lr 1e-3, weight decay 1e-2); clipping in train_step."""
    return keras.optimizers.AdamW(learning_rate=hparams.learning_rate,
                                  weight_decay=hparams.weight_decay)
