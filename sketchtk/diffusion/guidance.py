"""Classifier-free guidance (Ho & Salimans 2021): label dropout in training, guided outputs.

The class embedding has one extra row, ``null_label = num_classes``, meaning "no label". In
training each label is replaced by it with probability ``p``; at sampling the network runs with the
label and with ``null_label`` and the outputs are combined as ``u + g (c - u)``: ``g = 0`` is the
unconditional model, ``g = 1`` the conditional one, ``g > 1`` strengthens the class. Neither release
trains this way (ChiroDiff conditions always; SketchKnitter never feeds its labels to the model,
ALGORITHMS.md 4).
"""

import tensorflow as tf


def drop_labels(labels, null_label, prob, seed):
    """``labels`` int ``[B]`` with each entry replaced by ``null_label`` with probability ``prob``."""
    labels = tf.cast(labels, tf.int32)
    if prob <= 0:
        return labels
    coin = tf.random.stateless_uniform(tf.shape(labels), seed) < prob
    return tf.where(coin, tf.fill(tf.shape(labels), tf.cast(null_label, tf.int32)), labels)


def guided(conditional, unconditional, scale):
    """``unconditional + scale * (conditional - unconditional)`` (any matching shapes)."""
    return unconditional + scale * (conditional - unconditional)


def guided_call(run, labels, null_label, guidance, *inputs):
    """A class-conditional network call with classifier-free guidance.

    ``run(labels, *inputs)`` returns a batch-first tensor or a tuple of them. ``labels`` None:
    one pass with ``null_label``; ``guidance == 1``: one conditional pass; otherwise one pass on
    the doubled batch (the labels, then ``null_label``) combined by :func:`guided`.
    """
    batch = tf.shape(inputs[0])[0]
    null = tf.fill([batch], tf.cast(null_label, tf.int32))
    if labels is None:
        return run(null, *inputs)
    labels = tf.cast(labels, tf.int32)
    if isinstance(guidance, (int, float)) and guidance == 1.0:
        return run(labels, *inputs)
    return guided_pass(run, labels, null, guidance, *inputs)


def guided_pass(run, cond, null, guidance, *inputs):
    """``run(cond, *inputs)`` guided against ``run(null, *inputs)`` (any batch-first conditions:
    labels, conditioning vectors) in one pass on the doubled batch, combined by :func:`guided`;
    a tensor or a tuple of them, as ``run`` returns."""
    batch = tf.shape(inputs[0])[0]
    out = run(tf.concat([cond, null], 0), *[tf.concat([x, x], 0) for x in inputs])
    if isinstance(out, tuple):
        return tuple(guided(o[:batch], o[batch:], guidance) for o in out)
    return guided(out[:batch], out[batch:], guidance)
