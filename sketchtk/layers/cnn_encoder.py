"""The dilated CNN image encoder of RPCL-pix2seq (and sketch-pix2seq): image -> (mu, sigma2)."""

import keras
import tensorflow as tf

from sketchtk.losses import latent


def _instance_norm(name):
    # groups=-1: one group per channel, i.e. instance normalisation. The default epsilon 1e-3
    # keeps near-constant maps (blank canvas regions) from being blown up into noise.
    return keras.layers.GroupNormalization(groups=-1, name=name)


class _DilatedBlock(keras.layers.Layer):
    """Three parallel 3x3 atrous convs (rates 1, 2, 5) summed, ReLU, 3x3 stride-2 conv, ReLU.

    Every conv is followed by instance normalisation; the convs have no bias because the norm's
    offset replaces it. Internal to ``DilatedCNNEncoder`` (rebuilt from the parent's config).
    """

    def __init__(self, filters, rates=(1, 2, 5), **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.rates = tuple(int(r) for r in rates)
        self.atrous = [
            keras.layers.Conv2D(self.filters, 3, padding="same", dilation_rate=r, use_bias=False,
                                name=f"atrous_{r}")
            for r in self.rates
        ]
        self.atrous_norms = [_instance_norm(f"atrous_{r}_norm") for r in self.rates]
        self.down = keras.layers.Conv2D(self.filters, 3, strides=2, padding="same",
                                        use_bias=False, name="down")
        self.down_norm = _instance_norm("down_norm")

    def build(self, input_shape):
        for conv, norm in zip(self.atrous, self.atrous_norms):
            conv.build(input_shape)
            norm.build(conv.compute_output_shape(input_shape))
        mid_shape = self.atrous[0].compute_output_shape(input_shape)
        self.down.build(mid_shape)
        self.down_norm.build(self.down.compute_output_shape(mid_shape))
        self.built = True

    def call(self, x):
        summed = tf.add_n([norm(conv(x)) for conv, norm in zip(self.atrous, self.atrous_norms)])
        return tf.nn.relu(self.down_norm(self.down(tf.nn.relu(summed))))

    def compute_output_shape(self, input_shape):
        mid_shape = self.atrous[0].compute_output_shape(input_shape)
        return self.down.compute_output_shape(mid_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "rates": list(self.rates)})
        return config


@keras.saving.register_keras_serializable(package="sketchtk")
class DilatedCNNEncoder(keras.layers.Layer):
    """Dilated CNN encoder q(z | image) = N(mu, diag sigma2) of RPCL-pix2seq.

    48x48x1 -> dilated block(32) -> dilated block(64) -> conv3x3/2 (128) -> conv3x3/2 (256)
    -> flatten (3x3x256) -> dense heads mu and sigma2 = softplus(.) + 1e-10 (a variance).
    Each dilated block halves the resolution (see ``_DilatedBlock``); instance normalisation
    follows every conv (ALGORITHMS.md section 2). Any width divisible by 16 works; the dense heads
    are sized from the input shape at build time.

    Args:
        z_size: int, latent size Z (128).
        block_filters: filters of the two dilated blocks ((32, 64)).
        conv_filters: filters of the plain stride-2 convs ((128, 256)).
        dilation_rates: atrous rates inside a block ((1, 2, 5)).

    Call arguments:
        images: float ``[B, W, W, 1]`` in [-1, 1] (white = +1; ``x / 255 * 2 - 1``).

    Returns:
        ``(mu, sigma2)``: float ``[B, Z]`` each, ``sigma2 > 0``.

    Example:
        >>> encoder = DilatedCNNEncoder(z_size=128)
        >>> mu, sigma2 = encoder(images)                          # images [B, 48, 48, 1]
        >>> z = DilatedCNNEncoder.sample(mu, sigma2, seed_generator)

    Reference:
        Zang, Tu & Xu, "Controllable stroke-based sketch synthesis from a self-organized latent
        space", Neural Networks 137 (2021); Chen et al., "Sketch-pix2seq" (2017).
    """

    def __init__(self, z_size=128, block_filters=(32, 64), conv_filters=(128, 256),
                 dilation_rates=(1, 2, 5), **kwargs):
        super().__init__(**kwargs)
        self.z_size = int(z_size)
        self.block_filters = tuple(int(f) for f in block_filters)
        self.conv_filters = tuple(int(f) for f in conv_filters)
        self.dilation_rates = tuple(int(r) for r in dilation_rates)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.blocks = [_DilatedBlock(f, self.dilation_rates, name=f"dilated_block_{i}")
                       for i, f in enumerate(self.block_filters)]
        self.convs = [keras.layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False,
                                          name=f"conv_{i}")
                      for i, f in enumerate(self.conv_filters)]
        self.conv_norms = [_instance_norm(f"conv_{i}_norm") for i in range(len(self.conv_filters))]
        self.flatten = keras.layers.Flatten()
        self.mu_head = keras.layers.Dense(self.z_size, name="mu")
        self.sigma2_head = keras.layers.Dense(self.z_size, name="sigma2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        for conv, norm in zip(self.convs, self.conv_norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"DilatedCNNEncoder needs static image sizes, got {tuple(input_shape)}")
        flat = (shape[0], shape[1] * shape[2] * shape[3])
        self.mu_head.build(flat)
        self.sigma2_head.build(flat)
        self.built = True

    def call(self, images):
        x = images
        for block in self.blocks:
            x = block(x)
        for conv, norm in zip(self.convs, self.conv_norms):
            x = tf.nn.relu(norm(conv(x)))
        x = self.flatten(x)
        mu = self.mu_head(x)
        sigma2 = tf.nn.softplus(self.sigma2_head(x)) + 1e-10
        return mu, sigma2

    def compute_output_shape(self, input_shape):
        out = (input_shape[0], self.z_size)
        return out, out

    @staticmethod
    def sample(mu, sigma2, seed_generator=None):
        """z = mu + sqrt(sigma2) * eps (``sketchtk.losses.latent.reparameterize``)."""
        return latent.reparameterize(mu, sigma2, seed=seed_generator)

    def get_config(self):
        config = super().get_config()
        config.update({
            "z_size": self.z_size,
            "block_filters": list(self.block_filters),
            "conv_filters": list(self.conv_filters),
            "dilation_rates": list(self.dilation_rates),
        })
        return config
