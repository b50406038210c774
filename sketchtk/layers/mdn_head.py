"""Mixture density output head of sketch-rnn: pen logits + a bivariate Gaussian mixture."""

import collections

import keras
import tensorflow as tf

from sketchtk.layers.precision import check_matmul_dtype, mixed_matmul

MixtureParams = collections.namedtuple(
    "MixtureParams",
    ["pen_logits", "pi_logits", "mu_x", "mu_y", "log_sigma_x", "log_sigma_y", "rho"])
MixtureParams.__doc__ = """Named view of raw mixture parameters ``[..., 6M + 3]``.

pen_logits ``[..., 3]`` (p1 pen down, p2 pen up, p3 end); pi_logits, mu_x, mu_y, log_sigma_x,
log_sigma_y ``[..., M]`` (sigma = exp(log_sigma)); rho ``[..., M]`` = tanh(raw) in (-1, 1).
"""


def num_mixture_of(params):
    """Number of mixture components M of raw params ``[..., 6M + 3]`` (static)."""
    size = params.shape[-1]
    if size is None or size < 9 or (size - 3) % 6:
        raise ValueError(f"mixture params need a last dimension 6M + 3, got {size}")
    return (size - 3) // 6


def split_mixture_params(params):
    """Raw head output ``[..., 6M + 3]`` -> :class:`MixtureParams` (layout of sketch-rnn)."""
    params = tf.convert_to_tensor(params)
    num_mixture_of(params)  # validates the layout
    pen_logits = params[..., :3]
    pi_logits, mu_x, mu_y, log_sigma_x, log_sigma_y, rho_raw = tf.split(params[..., 3:], 6, -1)
    return MixtureParams(pen_logits, pi_logits, mu_x, mu_y, log_sigma_x, log_sigma_y,
                         tf.tanh(rho_raw))


@keras.saving.register_keras_serializable(package="sketchtk")
class MixtureDensityHead(keras.layers.Layer):
    """Dense map from decoder states to sketch-rnn's output distribution parameters.

    Output layout (last axis, ``6M + 3`` = 123 for M = 20): 3 pen-state logits, then M mixture
    logits pi, M mu_x, M mu_y, M log sigma_x, M log sigma_y, M raw correlations (rho = tanh(raw)).
    The output is *raw*; :func:`split_mixture_params` names the parts and applies tanh to rho;
    ``sketchtk.losses.reconstruction`` evaluates the likelihood in log space.

    Args:
        num_mixture: int, number M of bivariate Gaussian components (20).
        kernel_initializer: initializer of the ``[N, 6M + 3]`` kernel (Glorot-uniform).
        matmul_dtype: "float32" or "bfloat16" operands of the matmul (the output is float32).

    Call arguments:
        inputs: float ``[..., N]`` decoder outputs.

    Returns:
        float ``[..., 6M + 3]`` raw mixture parameters.

    Example:
        >>> head = MixtureDensityHead(num_mixture=20)
        >>> params = head(h_seq)                       # [B, T, 123]
        >>> mix = split_mixture_params(params)         # mix.mu_x: [B, T, 20]

    Reference:
        Bishop, "Mixture Density Networks", 1994; Graves, "Generating Sequences With Recurrent
        Neural Networks", 2013, eqs. 18-25; Ha & Eck, ICLR 2018, section 3.2.
    """

    def __init__(self, num_mixture=20, kernel_initializer="glorot_uniform", matmul_dtype="float32",
                 **kwargs):
        super().__init__(**kwargs)
        self.matmul_dtype = matmul_dtype
        self._matmul_tf_dtype = check_matmul_dtype(matmul_dtype)
        self.num_mixture = int(num_mixture)
        if self.num_mixture < 1:
            raise ValueError(f"num_mixture must be >= 1, got {num_mixture!r}")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def output_size(self):
        return 6 * self.num_mixture + 3

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.output_size),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.output_size,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        if inputs.shape.rank == 2:  # one decoding step: no reshapes (a sampler calls this per step)
            return (mixed_matmul(inputs, tf.convert_to_tensor(self.kernel), self._matmul_tf_dtype)
                    + tf.convert_to_tensor(self.bias))
        flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
        out = (mixed_matmul(flat, tf.convert_to_tensor(self.kernel), self._matmul_tf_dtype)
               + tf.convert_to_tensor(self.bias))
        return tf.reshape(out, tf.concat([tf.shape(inputs)[:-1], [self.output_size]], 0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_size,)

    def get_config(self):
        config = super().get_config()
        config.update(num_mixture=self.num_mixture,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      matmul_dtype=self.matmul_dtype)
        return config
