"""``BiGRUDenoiser``: ChiroDiff's bidirectional GRU stack over the points of a sketch."""

import keras
import tensorflow as tf

from sketchtk.layers.denoisers.base import DenoiserBase
from sketchtk.layers.denoisers.time_embedding import per_point_context


@keras.saving.register_keras_serializable(package="sketchtk")
class BiGRUDenoiser(DenoiserBase):
    """Bidirectional GRU denoiser (ChiroDiff ``models/score.py:50-77, 110-113, 146-147``).

    Each point sees its features, the time embedding and the conditioning vector; ``num_layers``
    bidirectional GRUs of ``units`` run over the real points only (the mask; ChiroDiff packs the
    padded sequence), a linear map takes ``2 units -> units``, and the output layer reads it with
    the time / conditioning features again. ChiroDiff's size is 3 x 96 (about 0.42M parameters).

    Args:
      out_channels: output features per point.
      units: GRU units per direction.
      num_layers: stacked bidirectional GRUs.
      time_embedding, time_embedding_dim: see ``TimeEmbedding``.
      seed: seeds the Fourier features.

    Call arguments:
      x: ``[B, L, F]`` point features. t: ``[B]`` normalised time. point_mask: ``[B, L]`` (1 = real).
      cond: optional ``[B, D]`` conditioning vector.

    Returns:
      ``[B, L, out_channels]``.

    Reference:
      Das et al., ChiroDiff, ICLR 2023.
    """

    def __init__(self, out_channels, units=96, num_layers=3, time_embedding="fourier",
                 time_embedding_dim=8, seed=0, **kwargs):
        super().__init__(out_channels, units, num_layers, time_embedding, time_embedding_dim,
                         seed, **kwargs)
        self.rnns = [keras.layers.Bidirectional(
            keras.layers.GRU(self.units, return_sequences=True, seed=seed + i), name=f"bigru_{i}")
            for i in range(self.num_layers)]
        self.proj = keras.layers.Dense(self.units, name="proj")
        self.head = keras.layers.Dense(self.out_channels, name="head")

    def build(self, x_shape, t_shape=None, point_mask_shape=None, cond_shape=None):
        feat = int(x_shape[-1]) + self.time_embedding_dim + (int(cond_shape[-1]) if cond_shape else 0)
        self.temb.build(t_shape)
        width = feat
        for rnn in self.rnns:
            rnn.build((None, None, width))
            width = 2 * self.units
        self.proj.build((None, None, width))
        self.head.build((None, None, self.units + feat - int(x_shape[-1])))
        self.built = True

    def call(self, x, t, point_mask, cond=None, training=False):
        ctx = per_point_context(self.temb(t), cond, tf.shape(x)[1])
        mask = tf.cast(point_mask, tf.bool)
        h = tf.concat([x, ctx], axis=-1)
        for rnn in self.rnns:
            h = rnn(h, mask=mask, training=training)
        h = self.proj(h)
        return self.head(tf.concat([h, ctx], axis=-1))
