"""``RasterDiffusion``: shortest-path diffusion of 48 x 48 single-channel raster sketches.

The SPD release (mtkresearch/shortest-path-diffusion) diffuses square RGB images; here the
training batches' own rendered images (``make_dataset``'s ``images``, uint8 white = 255, at
``png_width``) are mapped to ``[-1, 1]`` with ink = +1 (so the blank background is the
constant -1: a large DC term, which the fitted spectrum carries), diffused by
:class:`sketchtk.diffusion.spd.FourierSPDProcess` (``spatial_dims=2``) with ``S0`` fitted on the
training images (``spd_c1 / spd_c2 / spd_m``, from ``sketchtk.diffusion.spectrum``; |f| in
cycles per pixel) and denoised by :class:`UNet2DDenoiser` (eps-prediction, optional class
conditioning with classifier-free label dropout). Trained by the shared trainer
(``model=raster_diffusion``); ``generate`` runs the shared ``ReverseSampler`` (ancestral or
DDIM, per frequency; the predicted x0 clipped to [-1, 1]; classifier-free guidance). No EMA and
no vector output: samples are images (``sample.py`` writes them through
``sketchtk.sampling.raster_generate``).
"""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.config import HParams
from sketchtk.diffusion import guidance as cfg
from sketchtk.diffusion.samplers import ReverseSampler, sampling_timesteps
from sketchtk.diffusion.spd import FourierSPDProcess
from sketchtk.layers.denoisers.unet2d import UNet2DDenoiser
from sketchtk.models.built_up_front import BuiltUpFrontModel
from sketchtk.models.stroke_diffusion import make_optimizer  # noqa: F401  (the same AdamW)


def images_to_x0(images):
    """uint8 ``[B, W, W]`` (white 255) -> ``[B, W, W, 1]`` in [-1, 1], ink = +1."""
    return (1.0 - tf.cast(images, tf.float32) / 127.5)[..., None]


def x0_to_images(x0):
    """The inverse of :func:`images_to_x0`, clipped: uint8 ``[B, W, W]``."""
    x = np.clip(np.asarray(x0)[..., 0], -1.0, 1.0)
    return np.round((1.0 - x) * 127.5).astype(np.uint8)


@keras.saving.register_keras_serializable(package="sketchtk")
class RasterDiffusion(BuiltUpFrontModel):
    """SPD over rendered sketches.

    Args:
      hparams: ``HParams`` (or its dict) with ``model="raster_diffusion"``; uses ``png_width``,
        ``diffusion_steps``, ``spd_c1/c2/m``, ``denoiser_units``, ``denoiser_layers``,
        ``time_embedding(_dim)``, ``class_conditional``, ``cond_dim``, ``cfg_drop_prob``.
      categories: category names, index = label.

    Call arguments:
      inputs: a stroke batch with ``images`` and ``labels`` (``make_dataset``).

    Returns:
      ``{"loss": eps-MSE}``.
    """

    def __init__(self, hparams, categories=(), **kwargs):
        super().__init__(**kwargs)
        if isinstance(hparams, dict):
            hparams = HParams.from_dict(hparams)
        if hparams.model != "raster_diffusion":
            raise ValueError(f"RasterDiffusion builds model=raster_diffusion, not {hparams.model!r}")
        self.hparams = hp = hparams
        self.categories = tuple(categories)
        self.num_classes = max(1, len(self.categories))
        self.process = FourierSPDProcess(hp.diffusion_steps, hp.spd_c1, hp.spd_c2, hp.spd_m,
                                         spatial_dims=2)
        self.denoiser = UNet2DDenoiser(1, units=hp.denoiser_units,
                                       num_layers=min(hp.denoiser_layers, 3),
                                       time_embedding=hp.time_embedding,
                                       time_embedding_dim=hp.time_embedding_dim, seed=hp.seed,
                                       name="unet2d")
        self.class_embedding = None
        if hp.class_conditional:
            self.class_embedding = keras.layers.Embedding(self.num_classes + 1, hp.cond_dim,
                                                          name="class_embedding")
        self.noise = keras.random.SeedGenerator(hp.seed + 31)
        self.tracker = keras.metrics.Mean(name="loss")
        self._samplers = {}

    @property
    def metrics(self):
        return [self.tracker]

    def denoise(self, x_t, t, labels=None, guidance=1.0):
        """eps-prediction ``[B, W, W, 1]`` (``labels`` None = the null label); with labels and
        ``guidance != 1`` classifier-free guided, ``u + guidance * (c - u)``
        (``sketchtk.diffusion.guidance``)."""
        t_norm = (tf.cast(t, tf.float32) + 1.0) / float(self.process.num_steps)
        if self.class_embedding is None:
            return self.denoiser(x_t, t_norm, None, None)

        def run(lab, x, tn):
            return self.denoiser(x, tn, None, self.class_embedding(lab))

        return cfg.guided_call(run, labels, self.num_classes, guidance, x_t, t_norm)

    def compute_losses(self, batch, training=False):
        x0 = images_to_x0(batch["images"])
        b = tf.shape(x0)[0]
        if training:
            t = tf.cast(keras.random.randint((b,), 0, self.process.num_steps, seed=self.noise),
                        tf.int32)
            noise = keras.random.normal(tf.shape(x0), seed=self.noise)
            coin = keras.random.uniform((b,), seed=self.noise)
        else:
            seeds = tf.random.experimental.stateless_split(
                tf.stack([tf.constant(self.hparams.seed + 99, tf.int64),
                          tf.cast(batch["index"][0], tf.int64)]), 3)
            t = tf.random.stateless_uniform([b], seeds[0], 0, self.process.num_steps, tf.int32)
            noise = tf.random.stateless_normal(tf.shape(x0), seeds[1])
            coin = tf.random.stateless_uniform([b], seeds[2])
        x_t = self.process.q_sample(x0, t, noise)
        labels = None
        if self.class_embedding is not None:
            labels = tf.cast(batch["labels"], tf.int32)
            if training and self.hparams.cfg_drop_prob > 0:
                labels = tf.where(coin < self.hparams.cfg_drop_prob,
                                  tf.fill(tf.shape(labels), self.num_classes), labels)
        out = self.denoise(x_t, t, labels)
        return {"loss": tf.reduce_mean(tf.square(out - noise))}

    def call(self, inputs, training=False):
        return self.compute_losses(inputs, training=training)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
        grads = tape.gradient(losses["loss"], self.trainable_weights)
        grads, _ = tf.clip_by_global_norm(grads, self.hparams.grad_clip)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {**losses, "lr": self.optimizer.learning_rate}

    def test_step(self, data):
        losses = self.compute_losses(data, training=False)
        self.tracker.update_state(losses["loss"], sample_weight=tf.shape(data["images"])[0])
        return {"loss": self.tracker.result()}

    def build_from_batch(self, batch):
        if not self.built:
            self.compute_losses(batch, training=False)
            self.built = True

    def dummy_batch(self, batch_size=2):
        w = self.hparams.png_width
        return {"images": tf.fill([batch_size, w, w], tf.constant(255, tf.uint8)),
                "labels": tf.zeros([batch_size], tf.int32),
                "index": tf.zeros([batch_size], tf.int64)}

    def get_build_config(self):
        return {"png_width": self.hparams.png_width}

    def build_from_config(self, config):
        self.build_from_batch(self.dummy_batch())

    def generate(self, num, labels=None, sampler="ddpm", steps=None, eta=0.0, seed=0,
                 record=False, clip_x0=True, variance_strength=1.0, guidance=1.0):
        """``num`` images ``[num, W, W, 1]`` in [-1, 1] (and the trajectory when ``record``).

        Args:
          num: images to draw. labels: int ``[num]`` classes (None = unconditional: the null
            label of a class-conditional model).
          sampler: ``ddpm`` (ancestral) or ``ddim``; steps: sampling steps (None = T).
          eta: DDIM's noise. variance_strength: DDPM's s. guidance: classifier-free scale.
          seed: int seed of x_T and the sampling noise. record: also return the trajectory.
          clip_x0: clip the predicted ``x0`` to the image range [-1, 1] at every step
            (``FourierSPDProcess(x0_range=...)``; without it the first step's x0 error, x316 at
            ``alphabar = ALPHABAR_FLOOR``, turns the samples into noise).
        """
        if labels is not None and self.class_embedding is None:
            raise ValueError("labels given but the model is not class-conditional "
                             "(trained with class_conditional=False)")
        conditional = labels is not None
        guided = conditional and float(guidance) != 1.0
        key = (conditional, guided, bool(clip_x0))
        if key not in self._samplers:
            def fn(x, t, mask, context):
                lab, scale = context
                out = (self.denoise(x, t, lab, scale if guided else 1.0) if conditional
                       else self.denoise(x, t))
                return out, tf.zeros(tf.concat([tf.shape(x)[:2], [0]], 0))  # no aux
            p = self.process  # the model's process has no clip
            process = (FourierSPDProcess(p.num_steps, p.c1, p.c2, p.m, spatial_dims=2,
                                         x0_range=(-1.0, 1.0)) if clip_x0 else p)
            self._samplers[key] = ReverseSampler(fn, process)
        w = self.hparams.png_width
        x_T = tf.random.stateless_normal([num, w, w, 1], (seed, 1))
        lab = tf.constant(np.zeros(num, np.int32) if labels is None else np.asarray(labels,
                                                                                   np.int32))
        x0, _, traj = self._samplers[key].sample(
            x_T, tf.ones([num, w, w]), sampling_timesteps(self.process, steps), sampler, eta=eta,
            variance_strength=variance_strength, seed=(seed, 2), record=record,
            context=(lab, tf.constant(float(guidance))))
        return x0, traj

    def get_config(self):
        return {"hparams": self.hparams.to_dict(), "categories": list(self.categories),
                "name": self.name}
