"""``UNet2DDenoiser``: a small 2-D UNet for single-channel raster sketches (48 x 48)."""

import keras
import tensorflow as tf

from sketchtk.layers.denoisers.base import DenoiserBase


@keras.saving.register_keras_serializable(package="sketchtk")
class UNet2DDenoiser(DenoiserBase):
    """A 2-D UNet over ``[B, H, W, C]`` images (the architecture family of the guided-diffusion
    UNet that the SPD release trains, mtkresearch/shortest-path-diffusion
    ``guided_diffusion/unet.py``, at a CPU size: no attention, one residual block per level).

    Each level: a residual block (LayerNorm over channels, SiLU, 3 x 3 convolution, the time /
    conditioning embedding added per channel, 3 x 3 convolution, a 1 x 1 skip) then a stride-2
    convolution; the way up doubles the resolution (nearest), concatenates the skip and applies a
    residual block. ``H`` and ``W`` must be divisible by ``2 ** num_layers`` (48: up to 3 levels,
    the release handles square RGB only, ``nonunif_diffusion/script_util.py:245-246``).

    Args:
      out_channels, time_embedding, time_embedding_dim, seed: as the other denoisers.
      units: base channels (level ``i`` has ``units * (1, 2, 2)[i]``). num_layers: levels (1-3).

    Call arguments:
      x: ``[B, H, W, C]``. t: ``[B]`` time in ``(0, 1]``. point_mask: ignored (images have no
      padding; kept for the shared denoiser signature). cond: ``[B, D]`` or None.

    Returns:
      ``[B, H, W, out_channels]``.
    """

    MULTS = (1, 2, 2)

    def __init__(self, out_channels, units=32, num_layers=2, time_embedding="sinusoidal",
                 time_embedding_dim=32, seed=0, **kwargs):
        if not 1 <= num_layers <= len(self.MULTS):
            raise ValueError(f"unet2d supports 1-{len(self.MULTS)} levels, got {num_layers}")
        super().__init__(out_channels, units, num_layers, time_embedding, time_embedding_dim,
                         seed, **kwargs)
        emb = 4 * self.units
        self.emb1 = keras.layers.Dense(emb, activation="silu", name="emb1")
        self.emb2 = keras.layers.Dense(emb, name="emb2")
        self.stem = keras.layers.Conv2D(self.units, 3, padding="same", name="stem")
        widths = [self.units * m for m in self.MULTS[:self.num_layers]]
        self.down_blocks = [self._res(w, f"down_{i}") for i, w in enumerate(widths)]
        self.downsamplers = [keras.layers.Conv2D(w, 3, strides=2, padding="same", name=f"pool_{i}")
                             for i, w in enumerate(widths)]
        self.mid = self._res(widths[-1], "mid")
        self.up_blocks = [self._res(w, f"up_{i}") for i, w in enumerate(widths)]
        self.out_norm = keras.layers.LayerNormalization(name="out_norm")
        self.head = keras.layers.Conv2D(self.out_channels, 3, padding="same", name="head")
        self._widths = widths

    @staticmethod
    def _res(width, name):
        return {"norm1": keras.layers.LayerNormalization(name=f"{name}_norm1"),
                "conv1": keras.layers.Conv2D(width, 3, padding="same", name=f"{name}_conv1"),
                "emb": keras.layers.Dense(width, name=f"{name}_emb"),
                "norm2": keras.layers.LayerNormalization(name=f"{name}_norm2"),
                "conv2": keras.layers.Conv2D(width, 3, padding="same", name=f"{name}_conv2"),
                "skip": keras.layers.Conv2D(width, 1, name=f"{name}_skip"), "width": width}

    @staticmethod
    def _build_res(block, in_width, emb_width):
        w = block["width"]
        for key, width in (("norm1", in_width), ("conv1", in_width), ("norm2", w), ("conv2", w),
                           ("skip", in_width)):
            block[key].build((None, None, None, width))
        block["emb"].build((None, emb_width))

    @staticmethod
    def _apply_res(block, h, emb):
        r = block["conv1"](tf.nn.silu(block["norm1"](h)))
        r = r + block["emb"](tf.nn.silu(emb))[:, None, None, :]
        r = block["conv2"](tf.nn.silu(block["norm2"](r)))
        return block["skip"](h) + r

    def build(self, x_shape, t_shape=None, point_mask_shape=None, cond_shape=None):
        emb = 4 * self.units
        self.temb.build(t_shape)
        self.emb1.build((None, self.time_embedding_dim + (int(cond_shape[-1]) if cond_shape else 0)))
        self.emb2.build((None, emb))
        self.stem.build((None, None, None, int(x_shape[-1])))
        width = self.units
        for block, pool in zip(self.down_blocks, self.downsamplers):
            self._build_res(block, width, emb)
            width = block["width"]
            pool.build((None, None, None, width))
        self._build_res(self.mid, width, emb)
        for i in reversed(range(self.num_layers)):
            self._build_res(self.up_blocks[i], width + self._widths[i], emb)
            width = self._widths[i]
        self.out_norm.build((None, None, None, width))
        self.head.build((None, None, None, width))
        self.built = True

    def call(self, x, t, point_mask=None, cond=None, training=False):
        temb = self.temb(t)
        ctx = temb if cond is None else tf.concat([temb, tf.cast(cond, temb.dtype)], axis=-1)
        emb = self.emb2(self.emb1(ctx))
        h = self.stem(x)
        skips = []
        for block, pool in zip(self.down_blocks, self.downsamplers):
            h = self._apply_res(block, h, emb)
            skips.append(h)
            h = pool(h)
        h = self._apply_res(self.mid, h, emb)
        for i in reversed(range(self.num_layers)):
            h = tf.repeat(tf.repeat(h, 2, axis=1), 2, axis=2)
            h = self._apply_res(self.up_blocks[i], tf.concat([h, skips[i]], axis=-1), emb)
        return self.head(tf.nn.silu(self.out_norm(h)))
