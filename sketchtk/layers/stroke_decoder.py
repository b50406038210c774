"""Autoregressive stroke-5 decoder of sketch-rnn / RPCL-pix2seq, with a one-step sampling path."""

import keras
import tensorflow as tf

from sketchtk.layers.hyper_lstm import HyperLSTMCell
from sketchtk.layers.lstm_cells import LayerNormLSTMCell, LSTMCell
from sketchtk.layers.mdn_head import MixtureDensityHead

DEC_MODELS = {"lstm": LSTMCell, "layer_norm": LayerNormLSTMCell, "hyper": HyperLSTMCell}


def make_cell(dec_model, units, hyper_num_units=256, hyper_embedding_size=32, **kwargs):
    """The decoder cell named ``dec_model`` (a key of ``DEC_MODELS``); kwargs go to the cell."""
    if dec_model not in DEC_MODELS:
        raise ValueError(f"unknown dec_model {dec_model!r}; expected one of {sorted(DEC_MODELS)}")
    if dec_model == "hyper":
        kwargs.update(hyper_num_units=hyper_num_units, hyper_embedding_size=hyper_embedding_size)
    return DEC_MODELS[dec_model](units, **kwargs)


# Standard deviation of the initial-state kernel by reference, as a function of the input size Z.
_STATE_INIT_STDDEV = {
    "he_normal": lambda fan_in: (2.0 / fan_in) ** 0.5,  # RPCL-pix2seq: 1 / sqrt(in / 2)
    "small_normal": lambda fan_in: 0.001,              # sketch-rnn
}


@keras.saving.register_keras_serializable(package="sketchtk")
class StrokeDecoder(keras.layers.Layer):
    """p(stroke_t | stroke_<t, z): recurrent cell + mixture density head, conditioned on z.

    The initial state is ``tanh(W z + b)``, split into the cell's state tensors; W is drawn as
    the chosen reference does (``state_init``): RPCL-pix2seq's He-normal N(0, 2 / Z), untruncated
    (its ``init_state`` FcNet, ``Cnn.py`` 127-130, ``model.py`` 92-94), or sketch-rnn's
    N(0, 0.001^2) (magenta ``model.py`` 215-221, ``super_linear`` with weight_start 0.001); the input at step t is ``concat(stroke5_t, z)``. The z part of the
    input projection is computed once per sequence and the stroke part for all steps in one matmul
    (see ``sketchtk.layers.lstm_cells``), so only the recurrent matmul runs per step.

    Training uses ``call`` (teacher forcing over the whole sequence). Samplers use
    ``initial_state(z)`` and ``step(x_t, z, state)``, which share the weights and run inside a
    ``tf.while_loop``; ``latent_projection(z)`` can be computed once and passed to ``step``.

    Args:
        dec_model: str, cell name: "hyper" (HyperLSTM), "lstm" or "layer_norm".
        units: int, decoder size N (``dec_rnn_size``; 2048 in RPCL-pix2seq, 512 in sketch-rnn).
        num_mixture: int, Gaussian components M of the output mixture (20).
        z_size: int, latent size Z (128).
        recurrent_dropout_prob: float, keep probability of the candidate dropout (0.9).
        use_recurrent_dropout: bool, enable that dropout while training.
        hyper_num_units: int, hyper-cell size for "hyper" (256).
        hyper_embedding_size: int, hyper embedding size for "hyper" (32).
        forget_bias: float (1.0).
        state_init: ``"he_normal"`` (RPCL-pix2seq, default) or ``"small_normal"`` (sketch-rnn).
        jit_compile: bool, XLA for the elementwise part of each step (True; see
            ``FusedRecurrentCell``).
        seed: optional int seed of the dropout masks.
        matmul_dtype: "float32" (default) or "bfloat16": mixed precision for the recurrent
            matmuls and the head's matmul (``hparams.precision=mixed_bfloat16``); weights,
            states and the returned mixture parameters stay float32.

    Call arguments:
        inputs: float ``[B, T, 5]`` stroke-5 rows fed to the decoder (start token first).
        z: float ``[B, Z]`` latent code.
        training: bool, enables the recurrent dropout.

    Returns:
        float ``[B, T, 6M + 3]`` raw mixture parameters (``MixtureDensityHead`` layout).

    Example:
        >>> decoder = StrokeDecoder("hyper", units=512, z_size=128)
        >>> params = decoder(strokes5[:, :-1], z, training=True)       # [B, T, 123]
        >>> total, nll, pen = reconstruction_loss(strokes5[:, 1:], params)
        >>> state = decoder.initial_state(z)
        >>> params_t, state = decoder.step(x_t, z, state)              # x_t [B, 5]

    Reference:
        Ha & Eck, "A Neural Representation of Sketch Drawings", ICLR 2018, section 3;
        Zang, Xu, Lin, "Controllable stroke-based sketch synthesis from a self-organized latent
        space" (RPCL-pix2seq), Neural Networks 2021.
    """

    def __init__(self, dec_model="hyper", units=512, num_mixture=20, z_size=128,
                 recurrent_dropout_prob=0.9, use_recurrent_dropout=True, hyper_num_units=256,
                 hyper_embedding_size=32, forget_bias=1.0, state_init="he_normal",
                 jit_compile=True, seed=None, matmul_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.dec_model = dec_model
        self.matmul_dtype = matmul_dtype
        self.units = int(units)
        self.num_mixture = int(num_mixture)
        self.z_size = int(z_size)
        self.recurrent_dropout_prob = float(recurrent_dropout_prob)
        self.use_recurrent_dropout = bool(use_recurrent_dropout)
        self.hyper_num_units = int(hyper_num_units)
        self.hyper_embedding_size = int(hyper_embedding_size)
        self.forget_bias = float(forget_bias)
        if state_init not in _STATE_INIT_STDDEV:
            raise ValueError(f"unknown state_init {state_init!r}; expected one of "
                             f"{sorted(_STATE_INIT_STDDEV)}")
        self.state_init_name = state_init
        self.jit_compile = bool(jit_compile)
        self.seed = seed
        self.cell = make_cell(dec_model, self.units, hyper_num_units=self.hyper_num_units,
                              hyper_embedding_size=self.hyper_embedding_size,
                              forget_bias=self.forget_bias,
                              use_recurrent_dropout=self.use_recurrent_dropout,
                              recurrent_dropout_prob=self.recurrent_dropout_prob,
                              jit_compile=self.jit_compile, seed=seed,
                              matmul_dtype=matmul_dtype, name="cell")
        self.state_init = keras.layers.Dense(
            sum(self.cell.state_size), activation="tanh",
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=_STATE_INIT_STDDEV[state_init](self.z_size),
                seed=None if seed is None else int(seed) + 7),
            name="state_init")
        self.head = MixtureDensityHead(self.num_mixture, matmul_dtype=matmul_dtype, name="mdn")

    def build(self, inputs_shape, z_shape=None):
        if inputs_shape[-1] != 5:
            raise ValueError(f"StrokeDecoder expects stroke-5 inputs [B, T, 5], got {inputs_shape}")
        self.cell.build((None, 5 + self.z_size))
        self.state_init.build((None, self.z_size))
        self.head.build((None, self.units))
        self.built = True

    def _check_z(self, z):
        z = tf.convert_to_tensor(z, self.compute_dtype)
        if z.shape[-1] != self.z_size:
            raise ValueError(f"z has {z.shape[-1]} features, StrokeDecoder z_size={self.z_size}")
        return z

    def initial_state(self, z):
        """``tanh(dense(z))`` split into the cell's state list (``[B, s]`` each, h first)."""
        flat = self.state_init(self._check_z(z))
        return list(tf.split(flat, self.cell.state_size, axis=-1))

    def latent_projection(self, z):
        """Per-sequence input contribution of z plus the input bias, ``[B, G]``, for ``step``."""
        z = self._check_z(z)
        out = tf.matmul(z, tf.convert_to_tensor(self.cell.input_kernel)[5:])
        bias = self.cell.input_bias()
        return out if bias is None else out + bias

    def step_constants(self):
        """Loop-invariant tensors of :meth:`step`, to compute once per decoding loop."""
        return [tf.convert_to_tensor(self.cell.input_kernel)[:5]] + self.cell.step_constants()

    def step(self, x_t, z, state, latent_projection=None, constants=None):
        """One decoding step (inference; no dropout).

        Args:
            x_t: float ``[B, 5]`` previous stroke-5 point.
            z: float ``[B, Z]`` latent code (unused when ``latent_projection`` is given).
            state: the cell's state list (``[B, s]`` each), from ``initial_state`` or ``step``.
            latent_projection: optional ``[B, G]`` from ``latent_projection(z)``, computed once
                per sequence to save the z matmul at every step.
            constants: optional result of :meth:`step_constants` (computed here when None).

        Returns:
            ``(params_t [B, 6M + 3], new_state)``.
        """
        x_t = tf.convert_to_tensor(x_t, self.compute_dtype)
        if latent_projection is None:
            latent_projection = self.latent_projection(z)
        if constants is None:
            constants = self.step_constants()
        px = tf.matmul(x_t, constants[0]) + latent_projection
        h, new_state = self.cell.step(px, state, constants[1:])
        return self.head(h), new_state

    def call(self, inputs, z, training=None):
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        z = self._check_z(z)
        h_seq, _ = self.cell.run_sequence(tf.transpose(inputs, [1, 0, 2]), self.initial_state(z),
                                          constant_inputs=z, training=training)   # [T, B, N]
        return tf.transpose(self.head(h_seq), [1, 0, 2])                          # [B, T, 6M + 3]

    def compute_output_shape(self, inputs_shape, z_shape=None):
        return tuple(inputs_shape[:-1]) + (6 * self.num_mixture + 3,)

    def get_config(self):
        config = super().get_config()
        config.update(dec_model=self.dec_model, units=self.units, num_mixture=self.num_mixture,
                      z_size=self.z_size, recurrent_dropout_prob=self.recurrent_dropout_prob,
                      use_recurrent_dropout=self.use_recurrent_dropout,
                      hyper_num_units=self.hyper_num_units,
                      hyper_embedding_size=self.hyper_embedding_size,
                      forget_bias=self.forget_bias, state_init=self.state_init_name,
                      jit_compile=self.jit_compile, seed=self.seed,
                      matmul_dtype=self.matmul_dtype)
        return config
