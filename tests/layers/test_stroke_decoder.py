"""Tests for sketchtk.layers.stroke_decoder.StrokeDecoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers.stroke_decoder import DEC_MODELS, StrokeDecoder, make_cell
from sketchtk.losses.reconstruction import reconstruction_loss
from tests.layer_checks import check_layer

B, T, Z, N, M = 3, 6, 4, 8, 3
SMALL = dict(units=N, num_mixture=M, z_size=Z, hyper_num_units=6, hyper_embedding_size=3)


def _strokes(batch=B, steps=T, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((batch, steps, 5), "float32")
    x[..., :2] = rng.normal(size=(batch, steps, 2))
    x[np.arange(batch)[:, None], np.arange(steps)[None], rng.integers(0, 3, (batch, steps)) + 2] = 1
    x[:, 0] = (0, 0, 1, 0, 0)
    return x


@pytest.mark.parametrize("dec_model", sorted(DEC_MODELS))
def test_layer_contract(dec_model, tmp_path):
    strokes = tf.constant(_strokes())
    z = tf.random.stateless_normal([B, Z], seed=[1, 1])
    params = check_layer(lambda: StrokeDecoder(dec_model, **SMALL), [strokes, z], tmp_path)
    assert params.shape == (B, T, 6 * M + 3)


@pytest.mark.parametrize("dec_model", sorted(DEC_MODELS))
def test_step_loop_equals_full_call(dec_model):
    """The sampling path (initial_state + step, T times) reproduces call(training=False)."""
    decoder = StrokeDecoder(dec_model, use_recurrent_dropout=True, **SMALL)
    strokes = tf.constant(_strokes())
    z = tf.random.stateless_normal([B, Z], seed=[2, 2])
    decoder(strokes, z)
    rng = np.random.default_rng(0)
    for w in decoder.trainable_weights:   # move off the init (zero paths, tiny state weights)
        w.assign(np.asarray(w) + 0.2 * rng.normal(size=w.shape).astype("float32"))
    full = decoder(strokes, z, training=False)

    state = decoder.initial_state(z)
    for t in range(T):
        params_t, state = decoder.step(strokes[:, t], z, state)
        np.testing.assert_allclose(params_t, full[:, t], atol=1e-5)

    # The same inside a compiled tf.while_loop (how a batched sampler drives it).
    @tf.function
    def sample_loop(strokes, z):
        latent = decoder.latent_projection(z)
        out = tf.TensorArray(tf.float32, size=T)

        def body(t, state, out):
            params_t, state = decoder.step(strokes[:, t], z, state, latent_projection=latent)
            return t + 1, state, out.write(t, params_t)

        _, _, out = tf.while_loop(lambda t, *_: t < T, body,
                                  (0, decoder.initial_state(z), out))
        return tf.transpose(out.stack(), [1, 0, 2])

    np.testing.assert_allclose(sample_loop(strokes, z), full, atol=1e-5)


def test_default_sizes_give_123_params_and_trainable_loss():
    keras.utils.set_random_seed(0)
    decoder = StrokeDecoder("lstm", units=16, z_size=Z)
    strokes = tf.constant(_strokes(steps=T + 1))
    z = tf.random.stateless_normal([B, Z], seed=[3, 3])
    with tf.GradientTape() as tape:
        params = decoder(strokes[:, :-1], z, training=True)
        total, _, _ = reconstruction_loss(strokes[:, 1:], params)
    assert params.shape == (B, T, 123)
    grads = tape.gradient(total, decoder.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in grads)


@pytest.mark.parametrize("state_init,stddev", [
    ("he_normal", np.sqrt(2.0 / 128)),  # RPCL-pix2seq Cnn.py 127-130: N(0, 1 / (in / 2))
    ("small_normal", 0.001),            # sketch-rnn super_linear(init_w="gaussian", 0.001)
])
def test_initial_state_kernel_follows_the_reference_init(state_init, stddev):
    decoder = StrokeDecoder("lstm", units=64, num_mixture=M, z_size=128, state_init=state_init,
                            seed=0)
    decoder.build((None, None, 5))
    kernel = np.asarray(decoder.state_init.kernel)          # 128 x 256 entries
    np.testing.assert_allclose(kernel.std(), stddev, rtol=0.03)
    assert np.abs(kernel).max() > 2.5 * stddev                # untruncated normal
    np.testing.assert_array_equal(decoder.state_init.bias, 0.0)
    assert decoder.get_config()["state_init"] == state_init
    with pytest.raises(ValueError, match="state_init"):
        StrokeDecoder("lstm", units=8, z_size=4, state_init="glorot")


def test_initial_state_splits_by_state_size_and_is_bounded():
    decoder = StrokeDecoder("hyper", **SMALL)
    z = tf.random.stateless_normal([B, Z], seed=[4, 4])
    decoder(tf.constant(_strokes()), z)
    state = decoder.initial_state(z)
    assert [s.shape[-1] for s in state] == decoder.cell.state_size == [N, 6, N, 6]
    flat = np.asarray(tf.concat(state, -1))
    np.testing.assert_allclose(flat, np.tanh(np.asarray(z) @ np.asarray(decoder.state_init.kernel)
                                             + np.asarray(decoder.state_init.bias)), atol=1e-5)
    assert np.all(np.abs(flat) <= 1.0) and np.abs(flat).max() > 0.3  # He init: not ~0 as 0.001


def test_dropout_is_deterministic_under_global_seed():
    strokes = tf.constant(_strokes())

    def run():
        keras.utils.set_random_seed(7)
        decoder = StrokeDecoder("layer_norm", use_recurrent_dropout=True,
                                recurrent_dropout_prob=0.5, **SMALL)
        z = keras.random.normal([B, Z], seed=1)
        return decoder(strokes, z, training=True), decoder(strokes, z, training=False)

    (a_train, a_eval), (b_train, b_eval) = run(), run()
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_eval, b_eval)
    assert not np.allclose(a_train, a_eval)


def test_bad_names_and_sizes_raise():
    with pytest.raises(ValueError, match="hyper.*layer_norm.*lstm|'hyper', 'layer_norm', 'lstm'"):
        make_cell("gru", 8)
    with pytest.raises(ValueError, match="expected one of"):
        StrokeDecoder("transformer")
    decoder = StrokeDecoder("lstm", **SMALL)
    with pytest.raises(ValueError, match="z_size"):
        decoder(tf.constant(_strokes()), tf.zeros([B, Z + 1]))
