"""``TransformerDenoiser``: a transformer encoder over the points of a sketch."""

import math

import keras
import tensorflow as tf

from sketchtk.layers.denoisers.base import DenoiserBase
from sketchtk.layers.denoisers.time_embedding import per_point_context


def sinusoidal_positions(length, dim):
    """``[L, dim]`` sinusoidal encoding of the point index (Vaswani et al. 2017)."""
    pos = tf.cast(tf.range(length), tf.float32)[:, None]
    half = dim // 2
    freqs = tf.exp(-math.log(10000.0) * tf.range(half, dtype=tf.float32) / half)[None]
    return tf.concat([tf.sin(pos * freqs), tf.cos(pos * freqs)], axis=-1)


def make_encoder_blocks(units, num_heads, num_layers):
    """``num_layers`` post-norm transformer encoder blocks (attention, then a SiLU MLP of width
    ``2 units``), each a dict of its sublayers; shared by the denoiser and the set encoder."""
    return [{
        "attn": keras.layers.MultiHeadAttention(num_heads, units // num_heads, name=f"attn_{i}"),
        "norm1": keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm1_{i}"),
        "ff1": keras.layers.Dense(2 * units, activation="silu", name=f"ff1_{i}"),
        "ff2": keras.layers.Dense(units, name=f"ff2_{i}"),
        "norm2": keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm2_{i}"),
    } for i in range(num_layers)]


def build_encoder_blocks(blocks, units):
    seq = (None, None, units)
    for b in blocks:
        b["attn"].build(seq, seq)
        b["norm1"].build(seq)
        b["ff1"].build(seq)
        b["ff2"].build((None, None, 2 * units))
        b["norm2"].build(seq)


def run_encoder_blocks(blocks, h, attention_mask, training=False):
    for b in blocks:
        h = b["norm1"](h + b["attn"](h, h, attention_mask=attention_mask, training=training))
        h = b["norm2"](h + b["ff2"](b["ff1"](h)))
    return h


@keras.saving.register_keras_serializable(package="sketchtk")
class TransformerDenoiser(DenoiserBase):
    """Transformer encoder denoiser (ChiroDiff ``models/score.py:10-47``).

    Point features, time embedding and conditioning are embedded to ``units``, a sinusoidal
    encoding of the point index is added, and ``num_layers`` post-norm encoder blocks (feed-forward
    ``2 units``, SiLU, as ChiroDiff's ``nn.TransformerEncoderLayer``) attend over real points only.
    ChiroDiff prepends an origin token and concatenates consecutive outputs; here every sequence
    already starts at the origin, so each point's output is read directly.

    Args:
      out_channels, time_embedding, time_embedding_dim, seed: as ``BiGRUDenoiser``.
      units: model width. num_layers: encoder blocks. num_heads: attention heads.

    Call arguments / Returns: as ``BiGRUDenoiser``.
    """

    def __init__(self, out_channels, units=96, num_layers=3, num_heads=4, time_embedding="fourier",
                 time_embedding_dim=8, seed=0, **kwargs):
        super().__init__(out_channels, units, num_layers, time_embedding, time_embedding_dim,
                         seed, **kwargs)
        self.num_heads = int(num_heads)
        self.embed = keras.layers.Dense(self.units, name="embed")
        self.blocks = make_encoder_blocks(self.units, self.num_heads, self.num_layers)
        self.head = keras.layers.Dense(self.out_channels, name="head")

    def build(self, x_shape, t_shape=None, point_mask_shape=None, cond_shape=None):
        extra = self.time_embedding_dim + (int(cond_shape[-1]) if cond_shape else 0)
        self.temb.build(t_shape)
        self.embed.build((None, None, int(x_shape[-1]) + extra))
        build_encoder_blocks(self.blocks, self.units)
        self.head.build((None, None, self.units + extra))
        self.built = True

    def call(self, x, t, point_mask, cond=None, training=False):
        length = tf.shape(x)[1]
        ctx = per_point_context(self.temb(t), cond, length)
        h = self.embed(tf.concat([x, ctx], axis=-1))
        h = h + tf.cast(sinusoidal_positions(length, self.units), h.dtype)[None]
        keys = tf.cast(point_mask, tf.bool)
        attention_mask = tf.logical_and(keys[:, None, :], tf.ones_like(keys)[:, :, None])
        h = run_encoder_blocks(self.blocks, h, attention_mask, training)
        return self.head(tf.concat([h, ctx], axis=-1))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}
