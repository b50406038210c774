"""The transposed-conv image decoder used as a regulariser by RPCL-pix2seq: z -> image."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="sketchtk")
class DeconvDecoder(keras.layers.Layer):
    """Deconvolutional regulariser p(image | z) of RPCL-pix2seq.

    dense(z -> 3*3*256, ReLU) -> reshape [3, 3, 256] -> 3x3 stride-2 transposed convs with 128,
    64, 32 filters (instance norm + ReLU) -> 3x3 stride-2 transposed conv to 1 channel, tanh
    -> ``[B, 48, 48, 1]`` in (-1, 1). Trained with ``sketchtk.losses.latent.deconv_loss``
    (squared error summed over pixels, mean over batch; weight ``de_weight`` 0.5).

    The reference also instance-normalises the 1-channel output before its tanh; that forces every
    reconstruction to zero mean and unit variance before the squash, although the targets are
    mostly white (+1). Here the output conv has a bias and no norm: a choice, not the reference.

    Args:
        image_width: int, output width W (48), divisible by 2 ** (len(filters) + 1); the dense
            projection has width W / 2 ** (len(filters) + 1) (3 for 48).
        base_channels: int, channels of the dense projection (256).
        filters: hidden transposed-conv filters ((128, 64, 32)).

    Call arguments:
        z: float ``[B, Z]`` latent codes.

    Returns:
        float ``[B, W, W, 1]`` images in (-1, 1).

    Example:
        >>> decoder = DeconvDecoder()
        >>> recon = decoder(z)                                    # [B, 48, 48, 1]
        >>> loss = deconv_loss(images, recon)

    Reference:
        Zang, Tu & Xu, "Controllable stroke-based sketch synthesis from a self-organized latent
        space", Neural Networks 137 (2021), the CNN decoder branch.
    """

    def __init__(self, image_width=48, base_channels=256, filters=(128, 64, 32), **kwargs):
        super().__init__(**kwargs)
        self.image_width = int(image_width)
        self.base_channels = int(base_channels)
        self.filters = tuple(int(f) for f in filters)
        factor = 2 ** (len(self.filters) + 1)
        if self.image_width % factor:
            raise ValueError(f"image_width must be divisible by {factor}, got {image_width}")
        self.base_width = self.image_width // factor
        self.input_spec = keras.layers.InputSpec(ndim=2)
        self.project = keras.layers.Dense(self.base_width ** 2 * self.base_channels,
                                          activation="relu", name="project")
        self.reshape = keras.layers.Reshape((self.base_width, self.base_width, self.base_channels))
        self.deconvs = [keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same",
                                                     use_bias=False, name=f"deconv_{i}")
                        for i, f in enumerate(self.filters)]
        self.norms = [keras.layers.GroupNormalization(groups=-1, name=f"deconv_{i}_norm")
                      for i in range(len(self.filters))]
        self.output_conv = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same",
                                                        activation="tanh", name="output")

    def build(self, input_shape):
        self.project.build(tuple(input_shape))
        shape = (input_shape[0], self.base_width, self.base_width, self.base_channels)
        for deconv, norm in zip(self.deconvs, self.norms):
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)
            norm.build(shape)
        self.output_conv.build(shape)
        self.built = True

    def call(self, z):
        x = self.reshape(self.project(z))
        for deconv, norm in zip(self.deconvs, self.norms):
            x = tf.nn.relu(norm(deconv(x)))
        return self.output_conv(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_width, self.image_width, 1)

    def get_config(self):
        config = super().get_config()
        config.update({
            "image_width": self.image_width,
            "base_channels": self.base_channels,
            "filters": list(self.filters),
        })
        return config
