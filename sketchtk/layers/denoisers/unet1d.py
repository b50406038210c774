"""``UNet1DDenoiser``: a 1-D UNet that convolves along the point axis."""

import keras
import tensorflow as tf

from sketchtk.layers.denoisers.base import DenoiserBase


@keras.saving.register_keras_serializable(package="sketchtk")
class UNet1DDenoiser(DenoiserBase):
    """1-D UNet over points (the architecture family of SketchKnitter ``sketch_diffusion/unet.py``).

    SketchKnitter's release feeds ``[B, 96, 2]`` to ``Conv1d`` layers with ``in_channels = 96``
    (``sample.py:127-129``, ``script_util.py:28``): its 96 points are *channels* and it convolves
    along a 2-wide coordinate axis, so it only works at exactly 96 points. Here the points are the
    convolution axis and the channels are features, so any padded length divisible by
    ``2 ** num_levels`` works (``point_sequences.PAD_MULTIPLE`` = 8).

    Each level has a residual block (LayerNorm over channels, SiLU, width-3 convolution, the time /
    conditioning embedding added per channel, as SketchKnitter's ``ResBlock``) and a stride-2
    convolution down; the way up doubles the length, concatenates the skip and applies a residual
    block. Padding is set to zero after every block and the norms are per point, so real points do
    not depend on how much padding follows them.

    Args:
      out_channels, time_embedding, time_embedding_dim, seed: as ``BiGRUDenoiser``.
      units: base channels (level ``i`` has ``units * (1, 2, 2)[i]``). num_layers: levels (1-3).

    Call arguments / Returns: as ``BiGRUDenoiser``.
    """

    MULTS = (1, 2, 2)

    def __init__(self, out_channels, units=64, num_layers=3, time_embedding="sinusoidal",
                 time_embedding_dim=64, seed=0, **kwargs):
        if not 1 <= num_layers <= len(self.MULTS):
            raise ValueError(f"unet1d supports 1-{len(self.MULTS)} levels, got {num_layers}")
        super().__init__(out_channels, units, num_layers, time_embedding, time_embedding_dim,
                         seed, **kwargs)
        emb = 4 * self.units
        self.emb1 = keras.layers.Dense(emb, activation="silu", name="emb1")
        self.emb2 = keras.layers.Dense(emb, name="emb2")
        self.stem = keras.layers.Dense(self.units, name="stem")
        widths = [self.units * m for m in self.MULTS[:self.num_layers]]
        self.down_blocks = [self._res(w, f"down_{i}") for i, w in enumerate(widths)]
        self.downsamplers = [keras.layers.Conv1D(w, 3, strides=2, padding="same", name=f"pool_{i}")
                             for i, w in enumerate(widths)]
        self.mid = self._res(widths[-1], "mid")
        self.up_blocks = [self._res(w, f"up_{i}") for i, w in enumerate(widths)]
        self.out_norm = keras.layers.LayerNormalization(name="out_norm")
        self.head = keras.layers.Dense(self.out_channels, name="head")
        self._widths = widths

    @staticmethod
    def _res(width, name):
        return {"norm1": keras.layers.LayerNormalization(name=f"{name}_norm1"),
                "conv1": keras.layers.Conv1D(width, 3, padding="same", name=f"{name}_conv1"),
                "emb": keras.layers.Dense(width, name=f"{name}_emb"),
                "norm2": keras.layers.LayerNormalization(name=f"{name}_norm2"),
                "conv2": keras.layers.Conv1D(width, 3, padding="same", name=f"{name}_conv2"),
                "skip": keras.layers.Dense(width, name=f"{name}_skip"), "width": width}

    @staticmethod
    def _build_res(block, in_width, emb_width):
        w = block["width"]
        block["norm1"].build((None, None, in_width))
        block["conv1"].build((None, None, in_width))
        block["emb"].build((None, emb_width))
        block["norm2"].build((None, None, w))
        block["conv2"].build((None, None, w))
        block["skip"].build((None, None, in_width))

    @staticmethod
    def _apply_res(block, h, emb, mask):
        r = block["conv1"](tf.nn.silu(block["norm1"](h)))
        r = r + block["emb"](tf.nn.silu(emb))[:, None, :]
        r = block["conv2"](tf.nn.silu(block["norm2"](r)))
        return (block["skip"](h) + r) * mask

    def build(self, x_shape, t_shape=None, point_mask_shape=None, cond_shape=None):
        emb = 4 * self.units
        self.temb.build(t_shape)
        self.emb1.build((None, self.time_embedding_dim + (int(cond_shape[-1]) if cond_shape else 0)))
        self.emb2.build((None, emb))
        self.stem.build((None, None, int(x_shape[-1])))
        width = self.units
        for block, pool in zip(self.down_blocks, self.downsamplers):
            self._build_res(block, width, emb)
            width = block["width"]
            pool.build((None, None, width))
        self._build_res(self.mid, width, emb)
        for i in reversed(range(self.num_layers)):
            self._build_res(self.up_blocks[i], width + self._widths[i], emb)
            width = self._widths[i]
        self.out_norm.build((None, None, width))
        self.head.build((None, None, width))
        self.built = True

    def call(self, x, t, point_mask, cond=None, training=False):
        temb = self.temb(t)
        ctx = temb if cond is None else tf.concat([temb, tf.cast(cond, temb.dtype)], axis=-1)
        emb = self.emb2(self.emb1(ctx))
        mask = tf.cast(point_mask, x.dtype)[..., None]
        h = self.stem(x) * mask
        skips, masks = [], []
        for block, pool in zip(self.down_blocks, self.downsamplers):
            h = self._apply_res(block, h, emb, mask)
            skips.append(h)
            masks.append(mask)
            # output j of the stride-2 convolution starts at input 2j: real iff point 2j is real
            mask = mask[:, ::2]
            h = pool(h) * mask
        h = self._apply_res(self.mid, h, emb, mask)
        for i in reversed(range(self.num_layers)):
            h = tf.repeat(h, 2, axis=1)
            mask = masks[i]
            h = self._apply_res(self.up_blocks[i], tf.concat([h, skips[i]], axis=-1), emb, mask)
        return self.head(tf.nn.silu(self.out_norm(h)))
