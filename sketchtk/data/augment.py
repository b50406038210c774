"""Training-time augmentation of stroke-3 sketches as stateless, seeded TF ops (ALGORITHMS.md 1).

Each function takes a ``seed`` of shape ``[2]`` (int32/int64) so that the augmentation of example
``g`` in a run with seed ``s`` is a pure function of ``(s, g)``: runs are reproducible and a resumed
run sees exactly the data it would have seen.
"""

import math

import tensorflow as tf


def random_scale(strokes, factor, seed):
    """Scale dx and dy independently by U(1 - factor, 1 + factor). ``[N, 3]`` -> ``[N, 3]``."""
    strokes = tf.convert_to_tensor(strokes, tf.float32)
    scale = tf.random.stateless_uniform([2], seed, 1.0 - factor, 1.0 + factor)
    return tf.concat([strokes[:, :2] * scale, strokes[:, 2:]], axis=1)


def drop_points(strokes, prob, seed):
    """Drop pen-down points whose predecessor is pen-down too, each with probability ``prob``.

    Removing such a point merges its two segments into one line, so absolute positions of the
    remaining points are unchanged: offsets are recomputed from them. The first and last points
    are never dropped. ``[N, 3]`` -> ``[M, 3]``, ``M <= N``.
    """
    strokes = tf.convert_to_tensor(strokes, tf.float32)
    n = tf.shape(strokes)[0]
    pen = strokes[:, 2]
    prev_pen = tf.concat([[1.0], pen[:-1]], axis=0)
    index = tf.range(n)
    candidate = (pen < 0.5) & (prev_pen < 0.5) & (index > 0) & (index < n - 1)
    coin = tf.random.stateless_uniform([n], seed) < prob
    keep = tf.logical_not(candidate & coin)
    absolute = tf.cumsum(strokes[:, :2], axis=0)
    kept_abs = tf.boolean_mask(absolute, keep)
    kept_pen = tf.boolean_mask(strokes[:, 2:], keep)
    offsets = tf.concat([kept_abs[:1], kept_abs[1:] - kept_abs[:-1]], axis=0)
    return tf.concat([offsets, kept_pen], axis=1)


def augment_strokes(strokes, seed, scale_factor=0.1, drop_prob=0.1):
    """Both augmentations with independent sub-seeds; identity when both rates are 0."""
    # always return a float32 tensor (with both rates 0 the input used to come back as given)
    strokes = tf.convert_to_tensor(strokes, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if scale_factor > 0:
        strokes = random_scale(strokes, scale_factor, seeds[0])
    if drop_prob > 0:
        strokes = drop_points(strokes, drop_prob, seeds[1])
    return strokes


def image_transform(images, seed, scale_ratio=1.0, rotate_degrees=0.0, translate_px=0.0):
    """The reference's image-only augmentation: random rescale U(r, 1), rotation and shift.

    ``images``: uint8 ``[B, W, W]``; returns uint8 ``[B, W, W]`` with white fill. Disabled by
    default in sketchtk because it makes the image disagree with the strokes.
    """
    b = tf.shape(images)[0]
    width = tf.cast(tf.shape(images)[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scale = tf.random.stateless_uniform([b], seeds[0], scale_ratio, 1.0)
    angle = tf.random.stateless_uniform([b], seeds[1], -1.0, 1.0) * rotate_degrees * math.pi / 180.0
    shift = tf.random.stateless_uniform([b, 2], seeds[2], -1.0, 1.0) * translate_px
    c = (width - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel p maps to input pixel A (p - c - shift) + c, A = R(-angle) / scale.
    tx = c - cos * (c + shift[:, 0]) + sin * (c + shift[:, 1])
    ty = c - sin * (c + shift[:, 0]) - cos * (c + shift[:, 1])
    zeros = tf.zeros([b])
    transforms = tf.stack([cos, -sin, tx, sin, cos, ty, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images[..., None], tf.float32), transforms=transforms,
        output_shape=tf.shape(images)[1:3], fill_value=255.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")
    return tf.cast(tf.clip_by_value(tf.round(out[..., 0]), 0, 255), tf.uint8)
