"""Conditioning encoders of a stroke-diffusion model: a sketch (or a point set) -> one vector.

Both follow ChiroDiff (``models/score.py:153-237``, ALGORITHMS.md 4): the vector is fed to the
denoiser at every point next to the time embedding (``per_point_context``), and both end in a
``tanh`` projection (ChiroDiff's ``latent_proj``). They are trained with the denoiser.

- ``SetEncoder`` (``cond_encoder=pointcloud``): a transformer encoder *without* positional encoding
  over the unordered 2-D points plus one extra "feature token", whose output is the vector
  (ChiroDiff ``TransformerSetFeature``: an extra ``[0, 0, 1]`` token, ``trans_out[:, 0]``). Masked
  attention and no position information make it invariant to any permutation of the real points.
- ``SequenceEncoder`` (``cond_encoder=sketch``): bidirectional GRUs over the sketch's own point
  sequence; the forward direction's state at the last real point and the backward direction's state
  at the first point are concatenated (ChiroDiff ``BiRNNEncoderFeature``).

ChiroDiff's optional VAE bottleneck (``vae_weight``) is not implemented (its default is 0).

``output="norm"`` (hparam ``cond_encoder_out=norm``) departs from ChiroDiff: a linear projection
followed by a parameter-free LayerNorm instead of ``tanh``. Measured on the 250-step runs of
session 7 (``/work/runs_11/cond_pointcloud``): the ``tanh`` output had saturated to a constant
(mean ``|c|`` 0.93, standard deviation over 40 validation sketches 0.02 per entry), so almost no
gradient reached the encoder and the right and another sketch's condition gave the same loss
(within 0.2% at every t). The normalised vector keeps the same scale (unit RMS) without a
saturating non-linearity.

``pointnet=True`` (hparam ``cond_set_pointnet``) also departs from ChiroDiff: each point is
embedded by a two-layer MLP (not one linear map) and the masked max over the last block's point
outputs is concatenated to the feature token's output before the projection (PointNet-style, Qi
et al. 2017). Why: the points are centred, so at initialisation (near-uniform attention, linear
embedding) the feature token sees only their mean, which is zero for every sketch; measured on
the 250-step ``norm`` run, the vector was still nearly the same for all sketches (spread 0.03,
right vs another sketch's condition within 0.2% of loss).

``output="batchnorm"``: a linear projection and a parameter-free BatchNorm (moving statistics at
inference). It removes what is common to the batch's vectors, so the encoder cannot hand the
denoiser a constant (a learned bias) in place of a description of the sketch, and every entry
varies across sketches with unit variance from the first step (the batch-normalised latent of
BN-VAE, Zhu et al. 2020, against posterior collapse). Measured: with ``pointnet`` and ``norm``
the 250-step pointcloud vector was still constant (spread 0.04, loss gap 0.3%).
"""

import keras
import numpy as np
import tensorflow as tf

from sketchtk.config import COND_ENCODER_OUTS
from sketchtk.layers.denoisers.transformer import (build_encoder_blocks, make_encoder_blocks,
                                                  run_encoder_blocks)


@keras.saving.register_keras_serializable(package="sketchtk")
class SetEncoder(keras.layers.Layer):
    """Permutation-invariant attention encoder of a point set.

    Args:
      dim: output vector size.
      units: model width.
      num_layers: encoder blocks (post-norm, feed-forward ``2 units``, SiLU).
      num_heads: attention heads (``units`` divisible by it).
      output: ``tanh`` (ChiroDiff), ``norm`` (linear + LayerNorm) or ``batchnorm`` (linear +
        parameter-free BatchNorm); see the module docstring.
      pointnet: a per-point MLP embedding and a max-pool next to the token (module docstring).
      fourier: 0, or the number of random Fourier frequencies (scale ``fourier_scale``, seeded by
        ``seed``, fixed) whose sines and cosines of the points replace their raw coordinates
        (default scale 0.25: the centred positions have a standard deviation of about 2 on the
        embedded data, so the phases spread over about +-3 rad).

    Call arguments:
      points: ``[B, L, F]`` point features (e.g. absolute x, y), any order.
      point_mask: ``[B, L]`` (1 = a real point).

    Returns:
      ``[B, dim]`` in ``(-1, 1)``.

    Reference:
      Das et al., ChiroDiff, ICLR 2023 (``models/score.py:153-193``); Lee et al., Set Transformer,
      ICML 2019.
    """

    def __init__(self, dim=32, units=64, num_layers=2, num_heads=4, output="tanh", pointnet=False,
                 fourier=0, fourier_scale=0.25, seed=0, **kwargs):
        super().__init__(**kwargs)
        if units % num_heads:
            raise ValueError(f"units={units} must be divisible by num_heads={num_heads}")
        self.dim, self.units = int(dim), int(units)
        self.num_layers, self.num_heads, self.output_kind = int(num_layers), int(num_heads), output
        self.pointnet = bool(pointnet)
        self.fourier, self.fourier_scale, self.seed = int(fourier), float(fourier_scale), int(seed)
        self.freqs = None
        self.embed = keras.layers.Dense(self.units, name="embed")
        self.point_mlp = (keras.layers.Dense(self.units, activation="silu", name="point_mlp")
                          if self.pointnet else None)
        self.blocks = make_encoder_blocks(self.units, self.num_heads, self.num_layers)
        self.out, self.norm = _output_layers(self.dim, output)

    def build(self, points_shape, point_mask_shape=None):
        # one extra input feature flags the feature token (ChiroDiff's third coordinate)
        width = int(points_shape[-1]) + 1
        if self.fourier:
            rng = np.random.default_rng(self.seed + 101)
            self.freqs = tf.constant(self.fourier_scale * rng.standard_normal(
                (int(points_shape[-1]), self.fourier)), tf.float32)
            width = 2 * self.fourier + 1
        if self.point_mlp is not None:
            self.point_mlp.build((None, None, width))
            width = self.units
        self.embed.build((None, None, width))
        build_encoder_blocks(self.blocks, self.units)
        self.out.build((None, (2 if self.pointnet else 1) * self.units))
        if self.norm is not None:
            self.norm.build((None, self.dim))
        self.built = True

    def call(self, points, point_mask, training=False):
        if self.freqs is not None:  # sin / cos of random projections of the coordinates
            phase = 2.0 * np.pi * tf.matmul(tf.cast(points, tf.float32), self.freqs)
            points = tf.concat([tf.sin(phase), tf.cos(phase)], -1)
        points = tf.cast(points, self.compute_dtype)
        batch = tf.shape(points)[0]
        feat = int(points.shape[-1])
        token = tf.tile(tf.concat([tf.zeros([1, 1, feat], points.dtype),
                                   tf.ones([1, 1, 1], points.dtype)], -1), [batch, 1, 1])
        x = tf.concat([token, tf.concat([points, tf.zeros_like(points[..., :1])], -1)], axis=1)
        keys = tf.concat([tf.ones([batch, 1], tf.bool), tf.cast(point_mask, tf.bool)], axis=1)
        attention_mask = tf.logical_and(keys[:, None, :], tf.ones_like(keys)[:, :, None])
        if self.point_mlp is not None:
            x = self.point_mlp(x)
        h = run_encoder_blocks(self.blocks, self.embed(x), attention_mask, training)
        feat = h[:, 0]
        if self.pointnet:  # masked max over the real points' outputs
            real = tf.cast(point_mask, tf.bool)[:, :, None]
            pooled = tf.reduce_max(tf.where(real, h[:, 1:], tf.cast(-1e4, h.dtype)), axis=1)
            feat = tf.concat([feat, pooled], axis=-1)
        out = self.out(feat)
        return out if self.norm is None else self.norm(out, training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "units": self.units,
                "num_layers": self.num_layers, "num_heads": self.num_heads, "output": self.output_kind,
                "pointnet": self.pointnet, "fourier": self.fourier,
                "fourier_scale": self.fourier_scale, "seed": self.seed}


@keras.saving.register_keras_serializable(package="sketchtk")
class SequenceEncoder(keras.layers.Layer):
    """Bidirectional-GRU encoder of a point sequence (the sketch itself).

    Args:
      dim: output vector size. units: GRU units per direction. num_layers: stacked layers.
      output: ``tanh`` (ChiroDiff), ``norm`` (linear + LayerNorm) or ``batchnorm`` (linear +
        parameter-free BatchNorm); see the module docstring.

    Call arguments:
      points: ``[B, L, F]`` point features in drawing order. point_mask: ``[B, L]`` (1 = real,
        a prefix of each row).

    Returns:
      ``[B, dim]`` in ``(-1, 1)``.

    Reference:
      Das et al., ChiroDiff, ICLR 2023 (``models/score.py:196-237``).
    """

    def __init__(self, dim=32, units=64, num_layers=1, seed=0, output="tanh", **kwargs):
        super().__init__(**kwargs)
        self.dim, self.units, self.num_layers, self.seed = int(dim), int(units), int(num_layers), int(seed)
        self.output_kind = output
        self.rnns = [keras.layers.Bidirectional(
            keras.layers.GRU(self.units, return_sequences=True, seed=self.seed + i),
            name=f"bigru_{i}") for i in range(self.num_layers)]
        self.out, self.norm = _output_layers(self.dim, output)

    def build(self, points_shape, point_mask_shape=None):
        width = int(points_shape[-1])
        for rnn in self.rnns:
            rnn.build((None, None, width))
            width = 2 * self.units
        self.out.build((None, 2 * self.units))
        if self.norm is not None:
            self.norm.build((None, self.dim))
        self.built = True

    def call(self, points, point_mask, training=False):
        mask = tf.cast(point_mask, tf.bool)
        h = tf.cast(points, self.compute_dtype)
        for rnn in self.rnns:
            h = rnn(h, mask=mask, training=training)
        last = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) - 1, 0)
        fwd = tf.gather(h[..., :self.units], last, axis=1, batch_dims=1)
        bwd = h[:, 0, self.units:]
        out = self.out(tf.concat([fwd, bwd], axis=-1))
        return out if self.norm is None else self.norm(out, training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "units": self.units,
                "num_layers": self.num_layers, "seed": self.seed, "output": self.output_kind}


COND_ENCODERS = {"pointcloud": SetEncoder, "sketch": SequenceEncoder}
OUTPUTS = COND_ENCODER_OUTS  # tanh | norm | batchnorm (the hparam cond_encoder_out)


def _output_layers(dim, output):
    """The encoder's last layers: ``tanh`` (ChiroDiff ``latent_proj``), ``norm`` (linear, then
    a LayerNorm without scale / offset: unit RMS, no saturation) or ``batchnorm`` (linear, then a
    BatchNorm without scale / offset: every entry has mean 0 and variance 1 over the batch)."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown encoder output {output!r}; choose one of {list(OUTPUTS)}")
    proj = keras.layers.Dense(dim, activation="tanh" if output == "tanh" else None,
                              name="latent_proj")
    norm = None
    if output == "norm":
        norm = keras.layers.LayerNormalization(center=False, scale=False, name="latent_norm")
    elif output == "batchnorm":
        norm = keras.layers.BatchNormalization(center=False, scale=False, name="latent_norm")
    return proj, norm


def make_cond_encoder(name, dim, units, seed=0, output="tanh", pointnet=False, fourier=0):
    """The encoder for ``cond_encoder=name`` (``pointcloud`` or ``sketch``)."""
    if name == "pointcloud":
        return SetEncoder(dim=dim, units=units, num_layers=2, num_heads=4, output=output,
                          pointnet=pointnet, fourier=fourier, seed=seed, name="set_encoder")
    if name == "sketch":
        return SequenceEncoder(dim=dim, units=units, num_layers=1, seed=seed, output=output,
                               name="sequence_encoder")
    raise ValueError(f"unknown conditioning encoder {name!r}; choose one of {sorted(COND_ENCODERS)}")
