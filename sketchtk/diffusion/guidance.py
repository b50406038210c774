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
