"""Tests for sketchtk.layers.lstm_cells (LSTMCell, LayerNormLSTMCell and the fused recurrence)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers import lstm_cells
from sketchtk.layers.lstm_cells import LayerNormLSTMCell, LSTMCell
from tests.layer_checks import assert_grads_close, check_layer
from tests.layer_checks import np_layer_norm as _ln
from tests.layer_checks import np_sigmoid as _sigmoid

B, T, D, N = 3, 5, 4, 6


def _lstm_step_np(cell, x, h, c):
    """sketch-rnn's LSTMCell / LayerNormLSTMCell step, batch-major NumPy."""
    w = np.concatenate([np.asarray(cell.input_kernel), np.asarray(cell.recurrent_kernel)], 0)
    a = np.concatenate([x, h], 1) @ w
    if isinstance(cell, LayerNormLSTMCell):
        gamma, beta = np.asarray(cell.gate_gamma), np.asarray(cell.gate_beta)
        a = np.concatenate([_ln(part, gamma[k], beta[k]) for k, part in
                            enumerate(np.split(a, 4, 1))], 1)
    else:
        a = a + np.asarray(cell.bias)
    i, j, f, o = np.split(a, 4, 1)
    new_c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
    if isinstance(cell, LayerNormLSTMCell):
        new_h = np.tanh(_ln(new_c, np.asarray(cell.cell_gamma), np.asarray(cell.cell_beta)))
    else:
        new_h = np.tanh(new_c)
    return new_h * _sigmoid(o), new_c


def _randomise(cell, seed=0):
    """Perturb every weight (LN gains/offsets start at 1/0, which would hide mistakes)."""
    rng = np.random.default_rng(seed)
    for w in cell.weights:
        if w.trainable:
            w.assign(np.asarray(w) + 0.3 * rng.normal(size=w.shape).astype("float32"))


def _reference_loop(cell, x, state, masks=None):
    """Unrolled Python loop over the cell's one-step path (plain autodiff through it)."""
    px = cell.project_inputs(tf.transpose(x, [1, 0, 2]))
    weights = cell._cell_weights()
    outputs = []
    state = [tf.transpose(s) for s in state]
    w_rec_t = tf.transpose(tf.convert_to_tensor(cell.recurrent_kernel))
    for t in range(x.shape[1]):
        r = tf.matmul(w_rec_t, state[0])
        state = cell._cell_fn(r, tf.transpose(px[t]), None if masks is None else masks[t],
                              state[1:], weights, lstm_cells._Dots(()))
        outputs.append(tf.transpose(state[0]))
    return tf.stack(outputs, 1), [tf.transpose(s) for s in state]


@pytest.mark.parametrize("cls", [LSTMCell, LayerNormLSTMCell])
def test_layer_contract(cls, tmp_path):
    x = tf.random.stateless_normal([B, T, D], seed=[1, 2])
    h_seq, state = check_layer(lambda: cls(N, use_recurrent_dropout=True), x, tmp_path)
    assert h_seq.shape == (B, T, N)
    assert [s.shape for s in state] == [(B, N), (B, N)]


@pytest.mark.parametrize("cls", [LSTMCell, LayerNormLSTMCell])
def test_matches_numpy_step(cls):
    cell = cls(N)
    x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    cell.build(x.shape)
    _randomise(cell)
    h = np.random.default_rng(1).normal(size=(B, N)).astype("float32")
    c = np.random.default_rng(2).normal(size=(B, N)).astype("float32")
    h_seq, (h_t, c_t) = cell(x, initial_state=[h, c])
    for t in range(T):
        h, c = _lstm_step_np(cell, x[:, t], h, c)
        np.testing.assert_allclose(h_seq[:, t], h, atol=2e-5)
    np.testing.assert_allclose(h_t, h, atol=2e-5)
    np.testing.assert_allclose(c_t, c, atol=2e-5)


@pytest.mark.parametrize("cls", [LSTMCell, LayerNormLSTMCell])
@pytest.mark.parametrize("jit_compile,chunk", [(True, 50), (False, 2)])
def test_hand_scheduled_gradient_matches_autodiff(cls, jit_compile, chunk, monkeypatch):
    """The custom backward loop + hoisted dW_rec equals autodiff through an unrolled loop."""
    monkeypatch.setattr(lstm_cells, "WEIGHT_GRAD_CHUNK", chunk)  # 2: several dW chunks
    cell = cls(N, jit_compile=jit_compile)
    x = tf.random.stateless_normal([B, T, D], seed=[3, 4])
    cell.build(x.shape)
    _randomise(cell)
    state0 = [tf.random.stateless_normal([B, N], seed=[5, k]) for k in range(2)]
    # A loss touching every output: the sequence and both final states.
    probe = tf.random.stateless_normal([B, T, N], seed=[6, 0])

    def loss_of(run):
        with tf.GradientTape() as tape:
            tape.watch([x] + state0)
            h_seq, (h, c) = run()
            loss = tf.reduce_sum(h_seq * probe) + tf.reduce_sum(h * 2.0) + tf.reduce_sum(c ** 2)
        return loss, tape.gradient(loss, cell.trainable_weights + [x] + state0)

    fast_loss, fast = loss_of(lambda: cell(x, initial_state=state0))
    ref_loss, ref = loss_of(lambda: _reference_loop(cell, x, state0))
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-5)
    for g_fast, g_ref in zip(fast, ref):
        assert_grads_close(g_fast, g_ref)
    # ... and the same inside tf.function.
    _, compiled = tf.function(lambda: loss_of(lambda: cell(x, initial_state=state0)))()
    for g_fast, g_ref in zip(compiled, ref):
        assert_grads_close(g_fast, g_ref)


def test_gradient_with_dropout_masks():
    keras.utils.set_random_seed(0)  # reproducible initial weights
    cell = LayerNormLSTMCell(N)
    x = tf.random.stateless_normal([B, T, D], seed=[7, 8])
    cell.build(x.shape)
    _randomise(cell)
    masks = tf.cast(tf.random.stateless_uniform([T, N, B], seed=[9, 9]) < 0.7, tf.float32) / 0.7
    state0 = cell.get_initial_state(B)

    def fast():
        px = cell._project_sequence(tf.transpose(x, [1, 0, 2]))
        h_seq, _ = lstm_cells.fused_recurrence(cell._step_fns(), px, masks,
                                               tf.convert_to_tensor(cell.recurrent_kernel),
                                               state0, cell._cell_weights())
        return tf.transpose(h_seq, [1, 0, 2])

    grads = []
    for run in (fast, lambda: _reference_loop(cell, x, state0, masks)[0]):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(run()))
        grads.append((loss, tape.gradient(loss, cell.trainable_weights)))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert_grads_close(a, b)


def test_recurrent_dropout_is_seeded_and_only_in_training():
    x = tf.random.stateless_normal([B, T, D], seed=[1, 1])

    def run(training):
        keras.utils.set_random_seed(123)
        cell = LSTMCell(N, use_recurrent_dropout=True, recurrent_dropout_prob=0.5)
        return [np.asarray(cell(x, training=training)[0]) for _ in range(2)]

    a, b = run(True), run(True)
    np.testing.assert_array_equal(a[0], b[0])          # deterministic under the global seed
    assert not np.allclose(a[0], a[1])                 # a fresh mask per call
    evals = run(False)
    np.testing.assert_array_equal(evals[0], evals[1])  # no dropout at inference
    assert not np.allclose(a[0], evals[0])


def test_keep_probability_one_is_no_dropout():
    x = tf.random.stateless_normal([B, T, D], seed=[2, 2])
    cell = LSTMCell(N, use_recurrent_dropout=True, recurrent_dropout_prob=1.0)
    np.testing.assert_allclose(cell(x, training=True)[0], cell(x, training=False)[0])


def test_step_equals_call_and_jit_equals_eager():
    x = tf.random.stateless_normal([B, T, D], seed=[4, 4])
    eager = LayerNormLSTMCell(N, jit_compile=False)
    h_seq, _ = eager(x)
    _randomise(eager)
    h_seq, final = eager(x)
    jitted = LayerNormLSTMCell.from_config({**eager.get_config(), "jit_compile": True})
    jitted.build(x.shape)
    jitted.set_weights(eager.get_weights())
    np.testing.assert_allclose(jitted(x)[0], h_seq, atol=1e-5)
    state = eager.get_initial_state(B)
    for t in range(T):
        h, state = eager.step(eager.project_inputs(x[:, t]), state)
        np.testing.assert_allclose(h, h_seq[:, t], atol=1e-5)
    for s, f in zip(state, final):
        np.testing.assert_allclose(s, f, atol=1e-5)


def test_project_inputs_with_constant_part_is_one_concat_matmul():
    cell = LSTMCell(N)
    cell.build((None, 3 + 2))
    x, z = tf.random.normal([T, B, 3]), tf.random.normal([B, 2])
    full = tf.concat([x, tf.broadcast_to(z, [T, B, 2])], -1)
    np.testing.assert_allclose(cell.project_inputs(x, z), cell.project_inputs(full), atol=1e-5)
    with pytest.raises(ValueError, match="input size"):
        cell.project_inputs(x)


def test_bad_keep_probability_raises():
    with pytest.raises(ValueError, match="keep probability"):
        LSTMCell(4, recurrent_dropout_prob=0.0)
