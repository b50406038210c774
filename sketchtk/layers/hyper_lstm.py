"""HyperLSTM cell (Ha, Dai & Le 2016) as used by sketch-rnn, on the fused fast recurrence."""

import keras
import tensorflow as tf

from sketchtk.layers.lstm_cells import (FusedRecurrentCell, block_orthogonal, glorot_uniform_for,
                                        layer_norm, lstm_update)

# Per-gate hyper paths: scales for the 4 input (x) and 4 recurrent (h) contributions, biases for
# the 4 recurrent ones (sketch-rnn's hyper_norm(..., use_bias=False/True)).
_N_SCALES = 8
_N_BIASES = 4


@keras.saving.register_keras_serializable(package="sketchtk")
class HyperLSTMCell(FusedRecurrentCell):
    """HyperLSTM: a small LayerNorm-LSTM emits per-step, per-gate weight scalings of a main LSTM.

    At step t the hyper cell (LayerNorm-LSTM, ``hyper_num_units`` units, no dropout) reads
    ``[x_t, h_{t-1}]`` and outputs ``u_t``. For each gate k in (i, j, f, o) it emits embeddings
    ``zx_k = W u_t + 1``, ``zh_k = W' u_t + 1`` (weights zero-initialised, so the embeddings start
    at 1) and ``zb_k = W'' u_t`` (N(0, 0.01^2) init), each of size ``hyper_embedding_size`` E,
    and projects them to scales ``alpha = z A`` (A initialised to 0.1 / E, i.e. scales start at
    0.1) and a bias ``beta = zb B`` (B zero-init). The main pre-activation of gate k is

        a_k = alpha_x,k * (W_x x_t)_k + alpha_h,k * (W_h h_{t-1})_k + beta_k + b_k,

    then layer norm per gate (eps 1e-3), g = tanh(a_j) (candidate dropout while training),
    c_t = c_{t-1} sigmoid(a_f + forget_bias) + sigmoid(a_i) g, h_t = tanh(LN(c_t)) sigmoid(a_o).

    Speed: ``W_x`` and the hyper cell's input weights for ``x`` form one input kernel, so both are
    in the hoisted input projection; ``W_h`` and the hyper cell's weights for ``h_{t-1}`` form one
    recurrent kernel ``[N, 4N + 4H]``: one matmul per step for both cells' ``h`` inputs. The 8
    scale and 4 bias projections are one batched matmul; the outputs of the hyper cell's own
    recurrent matmul and of the embedding matmul are kept from the forward pass, and their weight
    gradients are one matmul each after the loop (``make_step_fns``).

    Args:
        units: int, main hidden size N.
        forget_bias: float (1.0), for both cells.
        use_recurrent_dropout: bool, candidate dropout of the main cell while training.
        recurrent_dropout_prob: float, keep probability (0.9).
        hyper_num_units: int, hidden size H of the hyper LayerNorm-LSTM (256).
        hyper_embedding_size: int, size E of the per-gate embeddings (32).
        jit_compile: bool, XLA for the elementwise part of a step (True).
        seed: optional int dropout seed.
        matmul_dtype: "float32" or "bfloat16" for the fused recurrent matmul and the hoisted
            weight gradients (``FusedRecurrentCell``); the small matmuls inside the XLA step stay
            float32.

    Call arguments:
        inputs: float ``[B, T, D]``.
        initial_state: optional ``[h, hyper_h, c, hyper_c]`` (``[B, N], [B, H], [B, N], [B, H]``).
        training: bool.

    Returns:
        ``(h_seq [B, T, N], [h, hyper_h, c, hyper_c])``.

    Example:
        >>> cell = HyperLSTMCell(512, use_recurrent_dropout=True)
        >>> h_seq, state = cell(x, training=True)           # x [B, T, D]

    Reference:
        Ha, Dai & Le, "HyperNetworks", ICLR 2017 (arXiv:1609.09106), section 3.2;
        magenta sketch_rnn ``rnn.HyperLSTMCell``.
    """

    def __init__(self, units, forget_bias=1.0, use_recurrent_dropout=False,
                 recurrent_dropout_prob=0.9, hyper_num_units=256, hyper_embedding_size=32,
                 jit_compile=True, seed=None, matmul_dtype="float32", **kwargs):
        super().__init__(units, forget_bias=forget_bias,
                         use_recurrent_dropout=use_recurrent_dropout,
                         recurrent_dropout_prob=recurrent_dropout_prob, jit_compile=jit_compile,
                         seed=seed, matmul_dtype=matmul_dtype, **kwargs)
        self.hyper_num_units = int(hyper_num_units)
        self.hyper_embedding_size = int(hyper_embedding_size)

    def get_config(self):
        config = super().get_config()
        config.update(hyper_num_units=self.hyper_num_units,
                      hyper_embedding_size=self.hyper_embedding_size)
        return config

    @property
    def state_size(self):
        return [self.units, self.hyper_num_units, self.units, self.hyper_num_units]

    def build(self, input_shape):
        self.input_size = d = int(input_shape[-1])
        n, hn, e = self.units, self.hyper_num_units, self.hyper_embedding_size
        # Columns [:4N] belong to the main cell, [4N:] to the hyper cell (whose input is [x, h]).
        main_x = keras.initializers.GlorotUniform()
        hyper_in = glorot_uniform_for(d + n, 4 * hn)

        def input_init(shape, dtype=None):
            return keras.ops.concatenate([main_x((d, 4 * n), dtype=dtype),
                                          hyper_in((d, 4 * hn), dtype=dtype)], axis=1)

        def recurrent_init(shape, dtype=None):
            return keras.ops.concatenate([block_orthogonal(4)((n, 4 * n), dtype=dtype),
                                          hyper_in((n, 4 * hn), dtype=dtype)], axis=1)

        def embedding_init(shape, dtype=None):
            scale_part = keras.ops.zeros((hn, _N_SCALES * e), dtype=dtype)
            bias_part = keras.initializers.RandomNormal(stddev=0.01)((hn, _N_BIASES * e),
                                                                     dtype=dtype)
            return keras.ops.concatenate([scale_part, bias_part], axis=1)

        self.input_kernel = self.add_weight(name="input_kernel", shape=(d, 4 * n + 4 * hn),
                                            initializer=input_init)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel",
                                                shape=(n, 4 * n + 4 * hn),
                                                initializer=recurrent_init)
        self.bias = self.add_weight(name="bias", shape=(4, n), initializer="zeros")
        self.gate_gamma = self.add_weight(name="gate_gamma", shape=(4, n), initializer="ones")
        self.gate_beta = self.add_weight(name="gate_beta", shape=(4, n), initializer="zeros")
        self.cell_gamma = self.add_weight(name="cell_gamma", shape=(n,), initializer="ones")
        self.cell_beta = self.add_weight(name="cell_beta", shape=(n,), initializer="zeros")
        self.hyper_recurrent_kernel = self.add_weight(name="hyper_recurrent_kernel",
                                                      shape=(hn, 4 * hn),
                                                      initializer=block_orthogonal(4))
        self.hyper_gate_gamma = self.add_weight(name="hyper_gate_gamma", shape=(4, hn),
                                                initializer="ones")
        self.hyper_gate_beta = self.add_weight(name="hyper_gate_beta", shape=(4, hn),
                                               initializer="zeros")
        self.hyper_cell_gamma = self.add_weight(name="hyper_cell_gamma", shape=(hn,),
                                                initializer="ones")
        self.hyper_cell_beta = self.add_weight(name="hyper_cell_beta", shape=(hn,),
                                               initializer="zeros")
        self.embedding_kernel = self.add_weight(name="embedding_kernel",
                                                shape=(hn, (_N_SCALES + _N_BIASES) * e),
                                                initializer=embedding_init)
        self.embedding_bias = self.add_weight(name="embedding_bias", shape=(_N_SCALES * e,),
                                              initializer="ones")
        self.scale_kernel = self.add_weight(
            name="scale_kernel", shape=(_N_SCALES, e, n),
            initializer=keras.initializers.Constant(0.1 / e))
        self.bias_kernel = self.add_weight(name="bias_kernel", shape=(_N_BIASES, e, n),
                                           initializer="zeros")
        self.built = True

    # The hyper cell's recurrent matmul and the embedding matmul have small outputs: keep them
    # from the forward pass and compute their weight gradients after the loop in one matmul each.
    _saved_dots = ("hyper_recurrent", "embedding")
    _hoisted_dots = {"hyper_recurrent": 5, "embedding": 10}

    def _cell_weights(self):
        # Feature-major: matrices transposed and vectors as columns, once per sequence.
        def col(w):
            return tf.convert_to_tensor(w)[..., None]

        def t(w):
            return tf.linalg.matrix_transpose(tf.convert_to_tensor(w))

        gate_kernels = tf.concat([self.scale_kernel, self.bias_kernel], axis=0)   # [12, E, N]
        return [col(self.bias), col(self.gate_gamma), col(self.gate_beta), col(self.cell_gamma),
                col(self.cell_beta), t(self.hyper_recurrent_kernel), col(self.hyper_gate_gamma),
                col(self.hyper_gate_beta), col(self.hyper_cell_gamma), col(self.hyper_cell_beta),
                t(self.embedding_kernel), col(self.embedding_bias), t(gate_kernels)]

    def _cell_fn(self, r, px, mask, rest, weights, dot):
        # Feature-major throughout: r [4N + 4H, B], px [4N + 4H, B], states [s, B].
        hyper_h, c, hyper_c = rest
        (bias, gate_gamma, gate_beta, cell_gamma, cell_beta, hyper_w_hh_t, hyper_gate_gamma,
         hyper_gate_beta, hyper_cell_gamma, hyper_cell_beta, emb_w_t, emb_b, gate_w_t) = weights
        n, hn, e = self.units, self.hyper_num_units, self.hyper_embedding_size
        # Slices are tf.split: their gradient is one concat, not a zero-filled StridedSliceGrad.
        px_main, px_hyper = tf.split(px, [4 * n, 4 * hn], axis=0)
        r_main, r_hyper = tf.split(r, [4 * n, 4 * hn], axis=0)

        # Hyper LayerNorm-LSTM on [x, h_{t-1}] (its x and h matmuls are in px and r).
        a = px_hyper + r_hyper + dot("hyper_recurrent", hyper_w_hh_t, hyper_h)
        a = layer_norm(tf.reshape(a, [4, hn, -1]), hyper_gate_gamma, hyper_gate_beta, axis=1)
        hi, hj, hf, ho = tf.unstack(a, axis=0)
        new_hyper_c = hyper_c * tf.sigmoid(hf + self.forget_bias) + tf.sigmoid(hi) * tf.tanh(hj)
        new_hyper_h = (tf.tanh(layer_norm(new_hyper_c, hyper_cell_gamma, hyper_cell_beta, axis=0))
                       * tf.sigmoid(ho))

        # Per-gate embeddings [12, E, B] (8 scales: x and h parts of i, j, f, o; 4 biases) ->
        # [12, N, B] in one batched matmul.
        z = dot("embedding", emb_w_t, new_hyper_h)
        z = z + tf.pad(emb_b, [[0, _N_BIASES * e], [0, 0]])
        per_gate = tf.matmul(gate_w_t, tf.reshape(z, [_N_SCALES + _N_BIASES, e, -1]))
        x_scale, h_scale, hyper_bias = tf.split(per_gate, 3, axis=0)

        a = (tf.reshape(px_main, [4, n, -1]) * x_scale + tf.reshape(r_main, [4, n, -1]) * h_scale
             + hyper_bias + bias)
        a = layer_norm(a, gate_gamma, gate_beta, axis=1)
        new_h, new_c = lstm_update(tf.unstack(a, axis=0), c, mask, self.forget_bias,
                                   lambda x: layer_norm(x, cell_gamma, cell_beta, axis=0))
        return [new_h, new_hyper_h, new_c, new_hyper_c]
