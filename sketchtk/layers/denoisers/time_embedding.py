"""``TimeEmbedding``: the diffusion time ``t / T`` as a feature vector."""

import math

import keras
import tensorflow as tf

KINDS = ("fourier", "sinusoidal")


@keras.saving.register_keras_serializable(package="sketchtk")
class TimeEmbedding(keras.layers.Layer):
    """Random Fourier features (ChiroDiff) or sinusoidal features of the diffusion time.

    Args:
      dim: output size (even).
      kind: ``fourier``: ``[sin(2 pi 4 W s), cos(2 pi 4 W s)]`` with fixed ``W ~ N(0, 1)``
        (ChiroDiff ``utils.py:32-35``, ``main.py:188-190, 425-427``: scale 4, ``s = t / T``);
        ``sinusoidal``: the transformer encoding of ``1000 s`` (Ho et al. 2020), max period 10^4.
      seed: seeds ``W``.

    Call arguments:
      t: float ``[B]``, the normalised time ``(step + 1) / T`` in ``(0, 1]``.

    Returns:
      ``[B, dim]``.
    """

    def __init__(self, dim=8, kind="fourier", seed=0, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"unknown time embedding {kind!r}; choose one of {list(KINDS)}")
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 2, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.seed = int(seed)

    def build(self, input_shape):
        if self.kind == "fourier":
            self.w = self.add_weight(shape=(self.dim // 2,), name="w", trainable=False,
                                     initializer=keras.initializers.RandomNormal(seed=self.seed))
        self.built = True

    def call(self, t):
        t = tf.cast(tf.reshape(t, [-1, 1]), self.compute_dtype)
        half = self.dim // 2
        if self.kind == "fourier":
            proj = 2.0 * math.pi * 4.0 * t * tf.cast(self.w, t.dtype)[None]
        else:
            freqs = tf.exp(-math.log(10000.0) * tf.range(half, dtype=t.dtype) / half)
            proj = 1000.0 * t * freqs[None]
        return tf.concat([tf.sin(proj), tf.cos(proj)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "kind": self.kind, "seed": self.seed}


def per_point_context(temb, cond, length):
    """``[temb, cond]`` ``[B, D]`` repeated at every point: ``[B, L, D]`` (ChiroDiff
    ``models/score.py:126-134``: time and conditioning are fed to every point)."""
    ctx = temb if cond is None else tf.concat([temb, tf.cast(cond, temb.dtype)], axis=-1)
    return tf.repeat(ctx[:, None, :], length, axis=1)
