"""Tests for sketchtk.layers.hyper_lstm.HyperLSTMCell."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers import lstm_cells
from sketchtk.layers.hyper_lstm import HyperLSTMCell
from tests.layer_checks import assert_grads_close, check_layer
from tests.layer_checks import np_layer_norm as _ln
from tests.layer_checks import np_sigmoid as _sigmoid

B, T, D, N, H, E = 3, 5, 4, 6, 5, 3


def _ln_lstm_np(x, h, c, w_x, w_h, gate_gamma, gate_beta, cell_gamma, cell_beta):
    a = x @ w_x + h @ w_h
    a = np.concatenate([_ln(part, gate_gamma[k], gate_beta[k])
                        for k, part in enumerate(np.split(a, 4, 1))], 1)
    i, j, f, o = np.split(a, 4, 1)
    new_c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
    return np.tanh(_ln(new_c, cell_gamma, cell_beta)) * _sigmoid(o), new_c


def _hyper_step_np(cell, x, state):
    """magenta sketch_rnn HyperLSTMCell.__call__ written out per gate, batch-major NumPy."""
    h, hyper_h, c, hyper_c = state
    w = {v.name: np.asarray(v) for v in cell.weights}
    n, e = cell.units, cell.hyper_embedding_size
    w_x, w_h = w["input_kernel"], w["recurrent_kernel"]
    # Hyper LN-LSTM reads [x, h] with one kernel over both.
    hyper_kernel = np.concatenate([w_x[:, 4 * n:], w_h[:, 4 * n:]], 0)
    new_hyper_h, new_hyper_c = _ln_lstm_np(
        np.concatenate([x, h], 1), hyper_h, hyper_c, hyper_kernel, w["hyper_recurrent_kernel"],
        w["hyper_gate_gamma"], w["hyper_gate_beta"], w["hyper_cell_gamma"], w["hyper_cell_beta"])
    emb = new_hyper_h @ w["embedding_kernel"]

    def hyper_norm(layer, k, use_bias):        # k: 0..3 input gates, 4..7 recurrent gates
        zw = emb[:, k * e:(k + 1) * e] + w["embedding_bias"][k * e:(k + 1) * e]
        result = (zw @ w["scale_kernel"][k]) * layer
        if use_bias:
            zb = emb[:, (8 + k - 4) * e:(9 + k - 4) * e]
            result = result + zb @ w["bias_kernel"][k - 4]
        return result

    xh, hh = x @ w_x[:, :4 * n], h @ w_h[:, :4 * n]
    gates = []
    for k in range(4):
        gates.append(hyper_norm(xh[:, k * n:(k + 1) * n], k, False)
                     + hyper_norm(hh[:, k * n:(k + 1) * n], 4 + k, True) + w["bias"][k])
    i, j, f, o = [_ln(g, w["gate_gamma"][k], w["gate_beta"][k]) for k, g in enumerate(gates)]
    new_c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
    new_h = np.tanh(_ln(new_c, w["cell_gamma"], w["cell_beta"])) * _sigmoid(o)
    return [new_h, new_hyper_h, new_c, new_hyper_c]


def _cell(**kwargs):
    return HyperLSTMCell(N, hyper_num_units=H, hyper_embedding_size=E, **kwargs)


def _randomise(cell, seed=0):
    rng = np.random.default_rng(seed)
    for w in cell.weights:
        if w.trainable:
            w.assign(np.asarray(w) + 0.3 * rng.normal(size=w.shape).astype("float32"))


def test_layer_contract(tmp_path):
    x = tf.random.stateless_normal([B, T, D], seed=[1, 2])
    h_seq, state = check_layer(lambda: _cell(use_recurrent_dropout=True), x, tmp_path)
    assert h_seq.shape == (B, T, N)
    assert [s.shape for s in state] == [(B, N), (B, H), (B, N), (B, H)]  # [h, hyper_h, c, hyper_c]


def test_initialisation_follows_sketch_rnn():
    cell = _cell()
    cell.build((None, D))
    w = {v.name: np.asarray(v) for v in cell.weights}
    np.testing.assert_array_equal(w["embedding_kernel"][:, :8 * E], 0.0)  # scale path: weights 0
    np.testing.assert_array_equal(w["embedding_bias"], 1.0)               # ... bias 1
    np.testing.assert_allclose(w["scale_kernel"], 0.1 / E)                 # alpha = 0.1 / E
    np.testing.assert_array_equal(w["bias_kernel"], 0.0)
    assert 0.0 < np.std(w["embedding_kernel"][:, 8 * E:]) < 0.05           # zb ~ N(0, 0.01^2)
    # So every gate starts with both contributions scaled by exactly 0.1 and no hyper bias:
    x = np.random.default_rng(0).normal(size=(B, D)).astype("float32")
    state = [np.random.default_rng(k).normal(size=(B, s)).astype("float32")
             for k, s in enumerate(cell.state_size)]
    h, new_state = cell.step(cell.project_inputs(x), state)
    for got, want in zip(new_state, _hyper_step_np(cell, x, state)):
        np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_matches_numpy_reference(jit_compile):
    cell = _cell(jit_compile=jit_compile)
    x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    cell.build(x.shape)
    _randomise(cell)
    state = [np.random.default_rng(k).normal(size=(B, s)).astype("float32")
             for k, s in enumerate(cell.state_size)]
    h_seq, final = cell(x, initial_state=state)
    for t in range(T):
        state = _hyper_step_np(cell, x[:, t], state)
        np.testing.assert_allclose(h_seq[:, t], state[0], atol=5e-5)
    for got, want in zip(final, state):
        np.testing.assert_allclose(got, want, atol=5e-5)


def _reference_loop(cell, x, state, masks):
    px = cell.project_inputs(tf.transpose(x, [1, 0, 2]))
    weights, outputs = cell._cell_weights(), []
    state = [tf.transpose(s) for s in state]
    w_rec_t = tf.transpose(tf.convert_to_tensor(cell.recurrent_kernel))
    for t in range(x.shape[1]):
        state = cell._cell_fn(tf.matmul(w_rec_t, state[0]), tf.transpose(px[t]), masks[t],
                              state[1:], weights, lstm_cells._Dots(()))
        outputs.append(tf.transpose(state[0]))
    return tf.stack(outputs, 1), [tf.transpose(s) for s in state]


@pytest.mark.parametrize("jit_compile,chunk", [(True, 50), (False, 2)])
def test_gradient_matches_autodiff(jit_compile, chunk, monkeypatch):
    """Saved / hoisted hyper matmuls and the custom backward loop give autodiff's gradients."""
    monkeypatch.setattr(lstm_cells, "WEIGHT_GRAD_CHUNK", chunk)  # 2: several dW_rec chunks
    cell = _cell(jit_compile=jit_compile)
    x = tf.random.stateless_normal([B, T, D], seed=[3, 4])
    cell.build(x.shape)
    _randomise(cell)
    state0 = [tf.random.stateless_normal([B, s], seed=[5, k])
              for k, s in enumerate(cell.state_size)]
    masks = tf.cast(tf.random.stateless_uniform([T, N, B], seed=[6, 6]) < 0.8, tf.float32) / 0.8
    probe = tf.random.stateless_normal([B, T, N], seed=[7, 0])

    def fast():
        px = cell._project_sequence(tf.transpose(x, [1, 0, 2]))
        return lstm_cells.fused_recurrence(cell._step_fns(), px, masks,
                                           tf.convert_to_tensor(cell.recurrent_kernel), state0,
                                           cell._cell_weights())

    def slow():
        h_seq, final = _reference_loop(cell, x, state0, masks)
        return tf.transpose(h_seq, [1, 0, 2]), final

    results = []
    for run in (fast, slow, tf.function(fast)):
        with tf.GradientTape() as tape:
            tape.watch([x] + state0)
            h_seq, final = run()
            loss = (tf.reduce_sum(tf.transpose(h_seq, [1, 0, 2]) * probe)
                    + sum(tf.reduce_sum(s * (k + 1.0)) for k, s in enumerate(final)))
        results.append((loss, tape.gradient(loss, cell.trainable_weights + [x] + state0)))
    (ref_loss, ref) = results[1]
    for loss, grads in (results[0], results[2]):
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        for name, g, r in zip([w.name for w in cell.trainable_weights] + ["x", "h", "hh", "c",
                                                                          "hc"], grads, ref):
            assert_grads_close(g, r, atol=2e-5, err_msg=name)


def test_config_round_trip_keeps_hyper_sizes():
    cell = HyperLSTMCell(8, hyper_num_units=7, hyper_embedding_size=5, recurrent_dropout_prob=0.8,
                         use_recurrent_dropout=True, seed=3)
    clone = HyperLSTMCell.from_config(cell.get_config())
    assert (clone.hyper_num_units, clone.hyper_embedding_size, clone.recurrent_dropout_prob,
            clone.seed) == (7, 5, 0.8, 3)
    assert clone.state_size == [8, 7, 8, 7]
