"""One check for every custom layer (HOUSE_STYLE.md, Tests).

``check_layer(make_layer, inputs, tmp_path)`` builds the layer, calls it eagerly and under
``tf.function`` (same outputs), round-trips ``get_config``, wraps it in a functional model that is
saved to ``.keras`` and reloaded (same outputs), and runs one ``fit`` step (finite loss, trainable
weights move). ``inputs`` is a tensor or a list of tensors (passed positionally).
"""

import os

import keras
import numpy as np
import tensorflow as tf


def np_sigmoid(x):
    """NumPy logistic function for reference implementations in tests."""
    return 1.0 / (1.0 + np.exp(-x))


def np_layer_norm(x, gamma, beta, eps=1e-3):
    """NumPy layer norm over the last axis (sketch-rnn's epsilon 1e-3)."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def assert_grads_close(actual, desired, rtol=1e-4, atol=1e-5, err_msg=""):
    """Gradients agree up to float32 rounding, whose absolute size scales with the gradient's
    largest entry (an unscaled ``atol`` failed now and then with unseeded initial weights)."""
    desired = np.asarray(desired)
    scale = max(1.0, float(np.abs(desired).max())) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _first(x):
    while isinstance(x, (list, tuple, dict)):
        x = list(x.values())[0] if isinstance(x, dict) else x[0]
    return x


def _flat(x):
    return [np.asarray(t) for t in tf.nest.flatten(x)]


def assert_outputs_close(a, b, atol=1e-5, rtol=1e-5):
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        np.testing.assert_allclose(x, y, atol=atol, rtol=rtol)


def check_layer(make_layer, inputs, tmp_path, call_kwargs=None, fit=True, atol=1e-5):
    """Run the shared layer contract on ``make_layer()``; returns the eager outputs."""
    call_kwargs = dict(call_kwargs or {})
    args = _as_list(inputs)
    layer = make_layer()

    eager = layer(*args, training=False, **call_kwargs)
    for t in tf.nest.flatten(eager):
        assert np.all(np.isfinite(np.asarray(t))), "non-finite layer output"

    compiled = tf.function(lambda *a: layer(*a, training=False, **call_kwargs))(*args)
    assert_outputs_close(eager, compiled, atol=atol)

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "get_config round trip changed the config"

    symbolic = [keras.Input(shape=a.shape[1:], dtype=a.dtype, batch_size=None) for a in args]
    outputs = layer(*symbolic, **call_kwargs)
    model = keras.Model(symbolic, outputs)
    path = os.path.join(str(tmp_path), f"{layer.name}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert_outputs_close(model(args, training=False), reloaded(args, training=False), atol=atol)

    if fit and layer.trainable_weights:
        before = [np.array(w) for w in layer.trainable_weights]
        target = np.zeros_like(np.asarray(_first(model(args, training=False))))
        train_model = keras.Model(symbolic, _first(outputs))
        train_model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        history = train_model.fit(tuple(args) if len(args) > 1 else args[0], target,
                                  epochs=1, batch_size=len(target), verbose=0)
        assert np.isfinite(history.history["loss"][0])
        after = [np.array(w) for w in layer.trainable_weights]
        assert any(not np.allclose(b, a) for b, a in zip(before, after)), "fit moved no weight"
    return eager
