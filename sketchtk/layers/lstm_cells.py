"""LSTM and LayerNorm-LSTM cells with a hoisted input projection and a fast fused recurrence.

Every cell here (and ``HyperLSTMCell``) splits one step into three parts so that a whole sequence
runs close to matmul speed on a CPU:

1. ``project_inputs``: the input contribution ``W_x x_t`` of *all* time steps in one batched
   matmul before the loop. The decoder's input is ``concat(stroke5_t, z)`` with ``z`` constant
   over time, so the ``z`` rows of ``W_x`` are applied once per sequence and broadcast over time.
2. per step, one fused matmul ``r_t = W_rec^T h_{t-1}`` for all four gates (in the HyperLSTM also
   for the hyper cell's ``h`` input),
3. per step, the elementwise rest ``_cell_fn(r_t, px_t, mask_t, state)``, optionally compiled
   with XLA (``jit_compile``), which fuses its ~20-60 small ops into a few loops.

``run_sequence`` runs the recurrence in one ``tf.while_loop`` under a ``tf.custom_gradient``:
the forward loop keeps ``r_t`` and the states; the backward loop only propagates ``dh`` through
the recurrent matmul (one matmul per step) and differentiates ``_cell_fn``; the weight gradient
``dW_rec = sum_t h_{t-1} dr_t^T`` is one large matmul after the loop instead of T small ones plus
T accumulations of an ``[N, 4N]`` tensor (what plain autodiff of a ``while_loop`` does).

Layout: inside the recurrence tensors are *feature-major*, ``[features, batch]`` (``px [T, G, B]``,
states ``[s, B]``): on CPU (oneDNN) ``[G, N] x [N, B]`` and ``[N, G] x [G, B]`` run 10-40% faster
than the batch-major ``[B, N] x [N, G]`` / ``[B, G] x [G, N]`` pair, and gate slices are
contiguous. Layout changes happen once per sequence, outside the loop (transposes fused into the
per-step XLA code measured slower). Public tensors and state lists are batch-major.
"""

import collections

import keras
import numpy as np
import tensorflow as tf

from sketchtk.layers.precision import check_matmul_dtype, mixed_matmul

LN_EPSILON = 1e-3


def layer_norm(x, gamma, beta, axis=-1, epsilon=LN_EPSILON):
    """Layer norm of ``x`` over ``axis``, then ``* gamma + beta`` (broadcast to ``x``)."""
    mean, var = tf.nn.moments(x, axes=[axis], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + epsilon) * gamma + beta


def block_orthogonal(blocks):
    """Initializer: ``blocks`` independent orthogonal matrices side by side ``[N, blocks * N]``."""
    def init(shape, dtype=None):
        rows, cols = shape
        width = cols // blocks
        parts = [keras.initializers.Orthogonal()((rows, width), dtype=dtype) for _ in range(blocks)]
        return keras.ops.concatenate(parts, axis=1)
    return init


def glorot_uniform_for(fan_in, fan_out):
    """Initializer: Glorot-uniform with the limit of a ``[fan_in, fan_out]`` matrix, any shape."""
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))

    def init(shape, dtype=None):
        return keras.initializers.RandomUniform(-limit, limit)(shape, dtype=dtype)
    return init


def lstm_update(gates, c, mask, forget_bias, cell_norm=None):
    """The LSTM state update shared by every cell: returns ``(new_h, new_c)``.

    ``gates`` = (i, j, f, o) pre-activations; the candidate ``tanh(j)`` is multiplied by the
    recurrent-dropout ``mask`` when one is given; ``cell_norm`` (optional callable) normalises the
    new cell state before the output ``tanh``.
    """
    i, j, f, o = gates
    g = tf.tanh(j)
    if mask is not None:
        g = g * mask
    new_c = c * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * g
    out = new_c if cell_norm is None else cell_norm(new_c)
    return tf.tanh(out) * tf.sigmoid(o), new_c


def _columns(x):
    """``[B, s]`` -> ``[s, B]`` (batch-major <-> feature-major)."""
    return tf.transpose(x)


class FusedRecurrentCell(keras.layers.Layer):
    """Base of the cells: hoisted input projection, fused recurrent matmul, fast recurrence.

    Subclasses create ``input_kernel [D, G]`` and ``recurrent_kernel [N, G_rec]`` in ``build``
    and define ``state_size`` (``h`` first), ``_cell_weights`` (the small weights of the
    elementwise part) and ``_cell_fn``. ``_cell_fn`` may depend on ``h_{t-1}`` only through
    ``r_t``; that is what lets the backward pass hoist ``dW_rec`` out of the loop.

    Args:
        units: int, size N of the hidden state h and cell c.
        forget_bias: float, added to the forget-gate pre-activation (1.0).
        use_recurrent_dropout: bool, drop the cell candidate ``g = tanh(j)`` while training
            (Semeniuta et al. 2016, as sketch-rnn).
        recurrent_dropout_prob: float, *keep* probability of that dropout (0.9).
        jit_compile: bool, compile the elementwise part of a step (and its backward) with XLA
            (True; on 2 CPU cores measured ~20% faster per HyperLSTM training step and a few %
            for the LSTMs; the large matmuls stay in TensorFlow / oneDNN).
        seed: optional int seed of the dropout masks (else drawn from Keras' global seed).
        matmul_dtype: ``"float32"`` (default) or ``"bfloat16"``: the dtype of the per-step
            recurrent matmuls (forward and backward) and of the hoisted ``dW_rec`` matmul. Weights,
            states, gates and gradients stay float32 (mixed precision); bfloat16 needs a CPU with
            AVX512_BF16 (or a GPU) to be faster.

    Call arguments:
        inputs: float ``[B, T, D]``.
        initial_state: optional list of ``[B, s]`` tensors (sizes ``state_size``); zeros if None.
        training: bool, enables the recurrent dropout.

    Returns:
        ``(h_seq [B, T, N], final_state)``, ``final_state`` a list like ``initial_state``.
    """

    # True when _cell_fn uses px and r only through px + r (then d px_t == d r_t).
    _inputs_add_to_recurrent = False
    # dot(name, ...) calls of _cell_fn whose outputs are kept / whose weight gradient is hoisted
    # (name -> index in _cell_weights); see make_step_fns.
    _saved_dots = ()
    _hoisted_dots = {}

    def __init__(self, units, forget_bias=1.0, use_recurrent_dropout=False,
                 recurrent_dropout_prob=0.9, jit_compile=True, seed=None, matmul_dtype="float32",
                 **kwargs):
        super().__init__(**kwargs)
        self.matmul_dtype = matmul_dtype
        self._matmul_tf_dtype = check_matmul_dtype(matmul_dtype)
        self.units = int(units)
        self.forget_bias = float(forget_bias)
        self.use_recurrent_dropout = bool(use_recurrent_dropout)
        self.recurrent_dropout_prob = float(recurrent_dropout_prob)
        if not 0.0 < self.recurrent_dropout_prob <= 1.0:
            raise ValueError(f"recurrent_dropout_prob is a keep probability in (0, 1], "
                             f"got {recurrent_dropout_prob!r}")
        self.jit_compile = bool(jit_compile)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_size = None
        self._compiled_step_fns = None

    # ----- subclass interface -------------------------------------------------------------
    @property
    def state_size(self):
        """Sizes of the state tensors, ``h`` first."""
        raise NotImplementedError

    def input_bias(self):
        """Bias ``[G]`` added by ``project_inputs``, or None."""
        return None

    def _cell_weights(self):
        """The small weights used by ``_cell_fn``, as tensors (a list)."""
        return []

    def _cell_fn(self, r, px, mask, rest, weights, dot):
        """One step after the recurrent matmul, feature-major.

        Args: ``r [G_rec, B]`` = W_rec^T h_{t-1}; ``px [G, B]`` this step's input projection;
        ``mask [N, B]`` or None (candidate dropout, scaled by 1/keep); ``rest`` the previous state
        without h (``[s, B]`` each); ``weights`` from ``_cell_weights``; ``dot(name, w, x)``
        computes ``w @ x`` (use it for matmuls inside the step). Returns the new state list.
        """
        raise NotImplementedError

    # ----- shared machinery ---------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, forget_bias=self.forget_bias,
                      use_recurrent_dropout=self.use_recurrent_dropout,
                      recurrent_dropout_prob=self.recurrent_dropout_prob,
                      jit_compile=self.jit_compile, seed=self.seed,
                      matmul_dtype=self.matmul_dtype)
        return config

    def _step_fns(self):
        """``(forward, vjp)`` of the elementwise step, XLA-compiled when ``jit_compile``."""
        if self._compiled_step_fns is None:
            self._compiled_step_fns = make_step_fns(
                self._cell_fn, self._inputs_add_to_recurrent, self.jit_compile,
                saved_dots=self._saved_dots, hoisted_dots=self._hoisted_dots)
        return self._compiled_step_fns

    def get_initial_state(self, batch_size):
        """Zero state: list of ``[batch_size, s]`` for ``s`` in ``state_size``."""
        return [tf.zeros([batch_size, s], self.compute_dtype) for s in self.state_size]

    def project_inputs(self, inputs, constant_inputs=None):
        """Input contribution ``x W_x (+ z W_z + b)`` of one step or a whole sequence.

        Args:
            inputs: ``[B, Dx]`` one step, or ``[T, B, Dx]``.
            constant_inputs: optional ``[B, Dz]`` inputs constant over time (the decoder's z),
                the last ``Dz`` of the ``D = Dx + Dz`` input features, projected once.

        Returns:
            ``[B, G]`` (or ``[T, B, G]``), the ``projected_input`` of :meth:`step`.
        """
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        kernel = tf.convert_to_tensor(self.input_kernel)                  # [D, G]
        dx = self._check_input_size(inputs, constant_inputs)
        rows = tf.matmul(tf.reshape(inputs, [-1, dx]), kernel[:dx])
        out = tf.reshape(rows, tf.concat([tf.shape(inputs)[:-1], [kernel.shape[-1]]], 0))
        if constant_inputs is not None:
            out = out + tf.matmul(tf.convert_to_tensor(constant_inputs, self.compute_dtype),
                                  kernel[dx:])
        bias = self.input_bias()
        return out if bias is None else out + bias

    def _check_input_size(self, inputs, constant_inputs):
        dx = inputs.shape[-1]
        dz = 0 if constant_inputs is None else constant_inputs.shape[-1]
        if dx + dz != self.input_size:
            raise ValueError(f"input features {dx} + constant features {dz} != the cell's input "
                             f"size {self.input_size}")
        return dx

    def _project_sequence(self, inputs, constant_inputs=None):
        """``[T, B, Dx]`` (+ ``[B, Dz]``) -> feature-major projection ``[T, G, B]``."""
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        kernel_t = tf.transpose(tf.convert_to_tensor(self.input_kernel))  # [G, D]
        dx = self._check_input_size(inputs, constant_inputs)
        # [G, Dx] x [T, Dx, B] broadcast over T: the sequence is produced feature-major directly.
        out = tf.matmul(kernel_t[:, :dx], tf.transpose(inputs, [0, 2, 1]))
        if constant_inputs is not None:
            constant_inputs = tf.convert_to_tensor(constant_inputs, self.compute_dtype)
            out = out + tf.matmul(kernel_t[:, dx:], constant_inputs, transpose_b=True)
        bias = self.input_bias()
        return out if bias is None else out + bias[:, None]

    def step_constants(self):
        """The loop-invariant tensors of :meth:`step` (transposed kernels, column vectors), the
        recurrent kernel cast to the matmul dtype.

        A decoding loop computes them once and passes them to every ``step``; inside a
        ``tf.while_loop`` TensorFlow would otherwise redo the transposes at each step.
        """
        w_rec_t = tf.transpose(tf.convert_to_tensor(self.recurrent_kernel))
        return [tf.cast(w_rec_t, self._matmul_tf_dtype)] + list(self._cell_weights())

    def step(self, projected_input, state, constants=None):
        """One inference step (no dropout).

        Args:
            projected_input: ``[B, G]`` from :meth:`project_inputs`.
            state: list of ``[B, s]``.
            constants: optional result of :meth:`step_constants` (computed here when None).

        Returns:
            ``(h [B, N], new_state)``, ``new_state`` a list of ``[B, s]``.
        """
        if constants is None:
            constants = self.step_constants()
        w_rec_t, weights = constants[0], list(constants[1:])
        state = [_columns(tf.convert_to_tensor(s, self.compute_dtype)) for s in state]
        r = tf.cast(tf.matmul(w_rec_t, tf.cast(state[0], w_rec_t.dtype)), state[0].dtype)
        new_state, _ = self._step_fns().forward(
            r, _columns(tf.convert_to_tensor(projected_input, self.compute_dtype)), None,
            state[1:], weights)
        new_state = [_columns(s) for s in new_state]
        return new_state[0], new_state

    def dropout_masks(self, steps, batch_size, training):
        """Candidate-dropout masks ``[T, N, B]`` scaled by 1/keep, or None when not dropping."""
        if not (training and self.use_recurrent_dropout and self.recurrent_dropout_prob < 1.0):
            return None
        keep = self.recurrent_dropout_prob
        u = keras.random.uniform([steps, self.units, batch_size], seed=self.seed_generator,
                                 dtype=self.compute_dtype)
        return tf.cast(u < keep, self.compute_dtype) / keep

    def run_sequence(self, inputs, initial_state, constant_inputs=None, training=None):
        """Project and run a whole time-major sequence.

        Args:
            inputs: ``[T, B, Dx]``.
            initial_state: list of ``[B, s]`` tensors (h first).
            constant_inputs: optional ``[B, Dz]`` (see :meth:`project_inputs`).
            training: bool, enables the recurrent dropout.

        Returns:
            ``(h_seq [T, B, N], final_state)``, ``final_state`` a list of ``[B, s]``; the gradient
            is the hand-scheduled one of the module docstring.
        """
        px = self._project_sequence(inputs, constant_inputs)            # [T, G, B]
        mask = self.dropout_masks(tf.shape(px)[0], tf.shape(px)[2], training)
        initial_state = [tf.convert_to_tensor(s, self.compute_dtype) for s in initial_state]
        return fused_recurrence(self._step_fns(), px, mask,
                                tf.convert_to_tensor(self.recurrent_kernel), initial_state,
                                self._cell_weights(), matmul_dtype=self._matmul_tf_dtype)

    def call(self, inputs, initial_state=None, training=None):
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        if initial_state is None:
            initial_state = self.get_initial_state(tf.shape(inputs)[0])
        h_seq, final_state = self.run_sequence(tf.transpose(inputs, [1, 0, 2]), initial_state,
                                               training=training)
        return tf.transpose(h_seq, [1, 0, 2]), final_state

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        batch, steps = inputs_shape[0], inputs_shape[1]
        return (batch, steps, self.units), [(batch, s) for s in self.state_size]


StepFns = collections.namedtuple(
    "StepFns", ["forward", "vjp", "inputs_add_to_recurrent", "saved_dots", "hoisted_dots"])


def _matmul_from_value(w, x, y):
    """``w @ x`` whose value ``y`` was saved by the forward pass: only its gradient is computed."""
    @tf.custom_gradient
    def matmul(w, x):
        def grad(dy):
            return tf.matmul(dy, x, transpose_b=True), tf.matmul(w, dy, transpose_a=True)
        return tf.identity(y), grad
    return matmul(w, x)


class _Dots:
    """The ``dot(name, w, x) = w @ x`` handed to ``_cell_fn`` (forward or inside the VJP).

    Forward: plain matmuls; outputs of ``saved`` dots are kept for the backward pass.
    VJP: ``saved`` dots reuse the forward value (no recompute); ``hoisted`` dots give no weight
    gradient per step but expose ``dY`` and ``x`` so that ``dW = sum_t dY_t x_t^T`` is one large
    matmul after the loop.
    """

    def __init__(self, saved_names, hoisted_names=(), saved_values=None, tape=None):
        self.saved_names, self.hoisted_names = tuple(saved_names), tuple(hoisted_names)
        self.saved_values, self.tape = saved_values, tape
        self.outputs, self.inputs, self.deltas = {}, {}, {}

    def __call__(self, name, w, x):
        if self.tape is None:
            y = tf.matmul(w, x)
            if name in self.saved_names:
                self.outputs[name] = y
            return y
        if name in self.hoisted_names:
            w = tf.stop_gradient(w)
        if name in self.saved_names:
            y = _matmul_from_value(w, x, self.saved_values[name])
        else:
            y = tf.matmul(w, x)
        if name in self.hoisted_names:
            delta = tf.zeros_like(y)          # d(loss)/d(delta) = dY
            self.tape.watch(delta)
            self.inputs[name], self.deltas[name] = x, delta
            y = y + delta
        return y


def make_step_fns(cell_fn, inputs_add_to_recurrent=False, jit_compile=False, saved_dots=(),
                  hoisted_dots=None):
    """:class:`StepFns` of an elementwise step ``cell_fn(r, px, mask, rest, weights, dot)``.

    All tensors feature-major (``[features, B]``).
    ``forward(r, px, mask, rest, weights) -> (new_state, saved)``, ``saved`` the outputs of the
    ``saved_dots``.
    ``vjp(r, px, mask, rest, weights, saved, d_new) -> (dr, dpx, d_rest, d_weights, dy_hoisted,
    x_hoisted)`` recomputes the elementwise step and backpropagates ``d_new``. Recompute and
    backprop are one function so that with ``jit_compile`` XLA fuses them (a tape around a
    compiled forward would run an uncompiled forward-with-intermediates plus an uncompiled
    backward). ``dpx`` is None when ``inputs_add_to_recurrent`` (``cell_fn`` uses px and r only
    as px + r, so dpx == dr); ``d_weights`` is None at the hoisted weights.

    Args:
        cell_fn: the step, see ``FusedRecurrentCell._cell_fn``.
        inputs_add_to_recurrent: bool, as above.
        jit_compile: bool, compile ``forward`` and ``vjp`` with XLA.
        saved_dots: names of ``dot`` calls whose (small) outputs the forward pass keeps, which
            saves their recompute in the backward pass.
        hoisted_dots: dict ``name -> index into weights`` of 2-D dots whose weight gradient is
            computed after the loop from the per-step ``dy`` and ``x``.
    """
    saved_dots = tuple(saved_dots)
    hoisted_dots = dict(hoisted_dots or {})
    hoisted_names = tuple(hoisted_dots)
    hoisted_index = set(hoisted_dots.values())

    def forward(r, px, mask, rest, weights):
        dots = _Dots(saved_dots)
        new = cell_fn(r, px, mask, list(rest), list(weights), dots)
        return new, [dots.outputs[name] for name in saved_dots]

    def vjp(r, px, mask, rest, weights, saved, d_new):
        rest, weights = list(rest), list(weights)
        with tf.GradientTape() as tape:
            tape.watch([r, px] + rest + weights)
            dots = _Dots(saved_dots, hoisted_names, dict(zip(saved_dots, saved)), tape)
            new = cell_fn(r, px, mask, rest, weights, dots)
        per_step_weights = [w for i, w in enumerate(weights) if i not in hoisted_index]
        sources = ([r] + ([] if inputs_add_to_recurrent else [px]) + rest + per_step_weights
                   + [dots.deltas[name] for name in hoisted_names])
        grads = tape.gradient(new, sources, output_gradients=list(d_new),
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        dr = grads.pop(0)
        dpx = None if inputs_add_to_recurrent else grads.pop(0)
        d_rest, grads = grads[:len(rest)], grads[len(rest):]
        d_weights = [None if i in hoisted_index else grads.pop(0) for i in range(len(weights))]
        return dr, dpx, d_rest, d_weights, grads, [dots.inputs[name] for name in hoisted_names]

    if jit_compile:
        forward = tf.function(forward, jit_compile=True, autograph=False, reduce_retracing=True)
        vjp = tf.function(vjp, jit_compile=True, autograph=False, reduce_retracing=True)
    return StepFns(forward, vjp, inputs_add_to_recurrent, saved_dots, hoisted_dots)


def _rows(seq):
    """Feature-major ``[T, F, B]`` -> batch-major rows ``[T * B, F]``."""
    return tf.reshape(tf.transpose(seq, [0, 2, 1]), [-1, tf.shape(seq)[1]])


WEIGHT_GRAD_CHUNK = 50  # time steps per matmul of the hoisted dW_rec (K = 50 B rows)


def _outer_sum_over_time(read_dr, h_cols, dr_0, h0_rows, steps, matmul_dtype=tf.float32):
    """``dW_rec = sum_t h_{t-1} dr_t^T`` ``[N, G]`` from feature-major sequences.

    ``read_dr(indices) -> [k, G, B]``, ``h_cols [T, N, B]``, ``dr_0 [G, B]``, ``h0_rows [B, N]``.
    Accumulated over chunks of ``WEIGHT_GRAD_CHUNK`` steps, each one ``[G, kB] x [kB, N]`` matmul
    on batch-major rows: chunking bounds the transposed copies to one chunk (memory), and the
    ``[G, kB] x [kB, N]`` orientation runs ~1.4x faster than ``[N, kB] x [kB, G]`` in oneDNN at
    N = 2048 (measured). The result is transposed once at the end. With ``matmul_dtype``
    bfloat16 each chunk's matmul runs in bfloat16 and the chunks are summed in float32.
    """
    def chunk(start, acc):
        idx = tf.range(start, tf.minimum(start + WEIGHT_GRAD_CHUNK, steps))
        dr_rows = _rows(read_dr(idx))                                   # [kB, G]
        h_rows = _rows(tf.gather(h_cols, idx - 1))                      # [kB, N]: h_{t-1}
        return start + WEIGHT_GRAD_CHUNK, acc + mixed_matmul(dr_rows, h_rows, matmul_dtype,
                                                             transpose_a=True)

    first = mixed_matmul(dr_0, h0_rows, matmul_dtype)                   # t = 0: initial h
    _, acc = tf.while_loop(lambda start, _: start < steps, chunk, (tf.constant(1), first))
    return tf.transpose(acc)


def fused_recurrence(step_fns, px, mask, w_rec, initial_state, weights, matmul_dtype=tf.float32):
    """``state_t = forward(W_rec^T h_{t-1}, px_t, mask_t, state_{t-1}[1:], weights)``, t < T.

    Args:
        step_fns: :class:`StepFns` from :func:`make_step_fns`.
        px: feature-major ``[T, G, B]`` projected inputs.
        mask: ``[T, N, B]`` dropout masks or None.
        w_rec: ``[N, G_rec]`` recurrent kernel.
        initial_state: list of ``[B, s]``, h first.
        weights: list of tensors handed to the step.
        matmul_dtype: ``tf.float32`` or ``tf.bfloat16``, the operand dtype of the per-step
            recurrent matmuls (forward ``W^T h`` and backward ``W dr``) and of the hoisted weight
            gradients; their results are cast back to float32 (see :func:`mixed_matmul`).

    Returns:
        ``(h_seq [T, B, N], final_state)``, ``final_state`` a list of ``[B, s]``. Gradients flow
        to ``px``, ``w_rec``, ``initial_state`` and ``weights``.
    """
    forward_fn, vjp_fn = step_fns.forward, step_fns.vjp
    hoisted = list(step_fns.hoisted_dots.items())
    n_state = len(initial_state)
    has_mask = mask is not None
    if not has_mask:
        mask = tf.zeros([0], px.dtype)  # placeholder: custom_gradient arguments are tensors

    @tf.custom_gradient
    def recurrence(px, mask, w_rec, *rest):
        init = [_columns(s) for s in rest[:n_state]]                     # feature-major
        ws = list(rest[n_state:])
        steps = tf.shape(px)[0]
        # [G_rec, N] once: no transpose flag on the loop's MatMul; cast once for bfloat16.
        w_rec_t = tf.cast(tf.transpose(w_rec), matmul_dtype)
        w_rec_low = tf.cast(w_rec, matmul_dtype)

        def rec_matmul(w, x):
            return tf.cast(tf.matmul(w, tf.cast(x, matmul_dtype)), px.dtype)

        def step_mask(t):
            return mask[t] if has_mask else None

        def array(shape=None, size=None):
            return tf.TensorArray(px.dtype, size=steps if size is None else size,
                                  element_shape=shape)

        def forward(t, state, ta_h, ta_rest, ta_r, ta_saved):
            r = rec_matmul(w_rec_t, state[0])
            new, saved = forward_fn(r, px[t], step_mask(t), state[1:], ws)
            ta_rest = [ta.write(t, s) for ta, s in zip(ta_rest, new[1:])]
            ta_saved = [ta.write(t, s) for ta, s in zip(ta_saved, saved)]
            return t + 1, new, ta_h.write(t, new[0]), ta_rest, ta_r.write(t, r), ta_saved

        r_shape = tf.TensorShape([w_rec.shape[-1], None])
        _, final, ta_h, ta_rest, ta_r, ta_saved = tf.while_loop(
            lambda t, *_: t < steps, forward,
            (tf.constant(0), init, array(init[0].shape), [array(s.shape) for s in init[1:]],
             array(r_shape), [array() for _ in step_fns.saved_dots]))
        h_cols = ta_h.stack()                                            # [T, N, B]
        h_seq = tf.transpose(h_cols, [0, 2, 1])                          # [T, B, N]

        def grad_fn(d_h_seq, *d_final):
            d_final = [tf.zeros_like(s) if g is None else _columns(g)
                       for g, s in zip(d_final, final)]
            d_h_cols = (tf.zeros_like(h_cols) if d_h_seq is None
                        else tf.transpose(d_h_seq, [0, 2, 1]))
            hoisted_index = step_fns.hoisted_dots.values()
            per_step = [i for i in range(len(ws)) if i not in hoisted_index]

            def backward(t, dh, d_rest, d_ws, ta_dr, ta_dpx, ta_dy, ta_x):
                # state_{t-1}[1:]: the initial state at t = 0, else what step t-1 wrote.
                prev = [tf.cond(t > 0, lambda ta=ta: ta.read(tf.maximum(t - 1, 0)),
                                lambda s0=s0: s0) for ta, s0 in zip(ta_rest, init[1:])]
                dr, dpx, d_prev, d_ws_t, dy, x_in = vjp_fn(
                    ta_r.read(t), px[t], step_mask(t), prev, ws,
                    [ta.read(t) for ta in ta_saved],
                    [dh + d_h_cols[t]] + d_rest)
                ta_dr = ta_dr.write(t, dr)
                if dpx is not None:
                    ta_dpx = ta_dpx.write(t, dpx)
                d_ws = [a + d_ws_t[i] for a, i in zip(d_ws, per_step)]
                ta_dy = [ta.write(t, g) for ta, g in zip(ta_dy, dy)]
                ta_x = [ta.write(t, x) for ta, x in zip(ta_x, x_in)]
                return (t - 1, rec_matmul(w_rec_low, dr), list(d_prev), d_ws, ta_dr, ta_dpx,
                        ta_dy, ta_x)

            _, dh0, d_rest0, d_ws, ta_dr, ta_dpx, ta_dy, ta_x = tf.while_loop(
                lambda t, *_: t >= 0, backward,
                (steps - 1, d_final[0], d_final[1:], [tf.zeros_like(ws[i]) for i in per_step],
                 array(r_shape), array(px.shape[1:], 0 if step_fns.inputs_add_to_recurrent
                                       else None),
                 [array() for _ in hoisted], [array() for _ in hoisted]))
            if step_fns.inputs_add_to_recurrent:
                d_px = ta_dr.stack()                                     # [T, G_rec, B]
                read_dr = lambda idx: tf.gather(d_px, idx)               # noqa: E731
            else:
                d_px = ta_dpx.stack()
                read_dr = ta_dr.gather                                   # no [T, G, B] copy
            d_w_rec = _outer_sum_over_time(read_dr, h_cols, ta_dr.read(0), rest[0], steps,
                                           matmul_dtype)
            d_weights = [None] * len(ws)
            for i, g in zip(per_step, d_ws):
                d_weights[i] = g
            for (_, i), ta_g, ta_in in zip(hoisted, ta_dy, ta_x):
                d_weights[i] = tf.ensure_shape(
                    mixed_matmul(_rows(ta_g.stack()), _rows(ta_in.stack()), matmul_dtype,
                                 transpose_a=True),
                    ws[i].shape)
            d_init = [_columns(dh0)] + [_columns(g) for g in d_rest0]
            return [d_px, None, d_w_rec, *d_init, *d_weights]

        return (h_seq, *[_columns(s) for s in final]), grad_fn

    outputs = recurrence(px, mask, w_rec, *initial_state, *weights)
    return outputs[0], list(outputs[1:])


@keras.saving.register_keras_serializable(package="sketchtk")
class LSTMCell(FusedRecurrentCell):
    """LSTM cell of sketch-rnn with candidate dropout, run as one fused recurrence.

    i, j, f, o = split(W_x x_t + W_h h_{t-1} + b); g = tanh(j) (dropped while training);
    c_t = c_{t-1} sigmoid(f + forget_bias) + sigmoid(i) g; h_t = tanh(c_t) sigmoid(o).
    ``W_h`` starts as four orthogonal blocks, ``W_x`` Glorot-uniform, ``b`` zero.

    Args:
        units: int, hidden size N.
        forget_bias: float (1.0).
        use_recurrent_dropout: bool, candidate dropout while training.
        recurrent_dropout_prob: float, keep probability (0.9).
        jit_compile: bool, XLA for the elementwise part of a step (True).
        seed: optional int dropout seed.

    Call arguments:
        inputs: float ``[B, T, D]``.
        initial_state: optional ``[h, c]``, each ``[B, N]``.
        training: bool.

    Returns:
        ``(h_seq [B, T, N], [h_T, c_T])``.

    Example:
        >>> cell = LSTMCell(512)
        >>> h_seq, (h, c) = cell(x)                                   # x [B, T, D]
        >>> px = cell.project_inputs(x_t)                              # [G, B], one step
        >>> h, state = cell.step(px, [h, c])                           # sampling

    Reference:
        Hochreiter & Schmidhuber 1997; Semeniuta et al., "Recurrent Dropout without Memory Loss",
        2016; Ha & Eck, ICLR 2018 (sketch-rnn).
    """

    _inputs_add_to_recurrent = True

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        n = self.units
        self.input_kernel = self.add_weight(name="input_kernel", shape=(self.input_size, 4 * n),
                                            initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(n, 4 * n),
                                                initializer=block_orthogonal(4))
        self.bias = self.add_weight(name="bias", shape=(4 * n,), initializer="zeros")
        self.built = True

    def input_bias(self):
        return tf.convert_to_tensor(self.bias)

    def _cell_fn(self, r, px, mask, rest, weights, dot):
        (c,) = rest
        new_h, new_c = lstm_update(tf.split(px + r, 4, axis=0), c, mask, self.forget_bias)
        return [new_h, new_c]


@keras.saving.register_keras_serializable(package="sketchtk")
class LayerNormLSTMCell(FusedRecurrentCell):
    """Layer-normalised LSTM cell of sketch-rnn (no bias: the norms' offsets play that role).

    a = LN_gate(W_x x_t + W_h h_{t-1}), normalised per gate over its N units (eps 1e-3) with gain
    and offset ``[4, N]``; i, j, f, o = split(a); g = tanh(j) (dropped while training);
    c_t = c_{t-1} sigmoid(f + forget_bias) + sigmoid(i) g; h_t = tanh(LN(c_t)) sigmoid(o).

    Args:
        units: int, hidden size N.
        forget_bias: float (1.0).
        use_recurrent_dropout: bool, candidate dropout while training.
        recurrent_dropout_prob: float, keep probability (0.9).
        jit_compile: bool, XLA for the elementwise part of a step (True).
        seed: optional int dropout seed.

    Call arguments:
        inputs: float ``[B, T, D]``.
        initial_state: optional ``[h, c]``, each ``[B, N]``.
        training: bool.

    Returns:
        ``(h_seq [B, T, N], [h_T, c_T])``.

    Example:
        >>> cell = LayerNormLSTMCell(512, use_recurrent_dropout=True)
        >>> h_seq, (h, c) = cell(x, training=True)

    Reference:
        Ba, Kiros & Hinton, "Layer Normalization", 2016; Ha & Eck, ICLR 2018 (sketch-rnn).
    """

    _inputs_add_to_recurrent = True

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        n = self.units
        self.input_kernel = self.add_weight(name="input_kernel", shape=(self.input_size, 4 * n),
                                            initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(n, 4 * n),
                                                initializer=block_orthogonal(4))
        self.gate_gamma = self.add_weight(name="gate_gamma", shape=(4, n), initializer="ones")
        self.gate_beta = self.add_weight(name="gate_beta", shape=(4, n), initializer="zeros")
        self.cell_gamma = self.add_weight(name="cell_gamma", shape=(n,), initializer="ones")
        self.cell_beta = self.add_weight(name="cell_beta", shape=(n,), initializer="zeros")
        self.built = True

    def _cell_weights(self):
        return [tf.convert_to_tensor(w)[..., None] for w in
                (self.gate_gamma, self.gate_beta, self.cell_gamma, self.cell_beta)]

    def _cell_fn(self, r, px, mask, rest, weights, dot):
        (c,) = rest
        gate_gamma, gate_beta, cell_gamma, cell_beta = weights        # [4, N, 1], [N, 1]
        a = tf.reshape(px + r, [4, self.units, -1])
        a = layer_norm(a, gate_gamma, gate_beta, axis=1)
        new_h, new_c = lstm_update(tf.unstack(a, axis=0), c, mask, self.forget_bias,
                                   lambda x: layer_norm(x, cell_gamma, cell_beta, axis=0))
        return [new_h, new_c]
