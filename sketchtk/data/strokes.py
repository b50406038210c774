"""Stroke format conversions: stroke-3 <-> stroke-5, offsets <-> absolute, bounds, scaling.

Every function exists as a NumPy version (``*_np`` or plain, for packing and I/O) and, where it is
used inside ``tf.data`` or a compiled step, as a TensorFlow version taking tensors.

stroke-3: ``[N, 3]`` rows ``(dx, dy, p)``; ``p = 1`` lifts the pen after the point.
stroke-5: ``[max_len + 1, 5]`` rows ``(dx, dy, p1, p2, p3)`` with a start token ``(0, 0, 1, 0, 0)``
and padding rows ``(0, 0, 0, 0, 1)`` (ALGORITHMS.md section 1).
"""

import numpy as np
import tensorflow as tf

START_TOKEN = (0.0, 0.0, 1.0, 0.0, 0.0)


def to_absolute(strokes):
    """stroke-3 offsets ``[N, 3]`` -> absolute points ``[N, 3]`` (pen column unchanged)."""
    strokes = np.asarray(strokes)
    out = strokes.astype(np.float64, copy=True)
    out[:, :2] = np.cumsum(out[:, :2], axis=0)
    return out


def to_offsets(points):
    """Absolute points ``[N, 3]`` -> stroke-3 offsets ``[N, 3]``; the first row stays absolute."""
    points = np.asarray(points, dtype=np.float64)
    out = points.copy()
    out[1:, :2] = points[1:, :2] - points[:-1, :2]
    return out


def bounds(strokes):
    """(min_x, max_x, min_y, max_y) of the absolute points of a stroke-3 sketch."""
    absolute = to_absolute(strokes)
    return (float(absolute[:, 0].min()), float(absolute[:, 0].max()),
            float(absolute[:, 1].min()), float(absolute[:, 1].max()))


def polylines_to_stroke3(polylines):
    """List of ``[n_i, 2]`` absolute polylines (one per pen-down stroke) -> stroke-3 offsets."""
    points = []
    for line in polylines:
        line = np.asarray(line, dtype=np.float64)
        pen = np.zeros((len(line), 1))
        pen[-1, 0] = 1.0
        points.append(np.concatenate([line, pen], axis=1))
    return to_offsets(np.concatenate(points, axis=0))


def stroke3_to_polylines(strokes):
    """stroke-3 offsets -> list of ``[n_i, 2]`` absolute polylines, split where the pen lifts."""
    absolute = to_absolute(strokes)
    cut = np.where(absolute[:, 2] > 0.5)[0] + 1
    return [seg[:, :2] for seg in np.split(absolute, cut) if len(seg)]


def clip_offsets(strokes, limit=1000.0):
    """Clip (dx, dy) to ``[-limit, limit]`` (ALGORITHMS.md 1: as in the reference and magenta)."""
    out = np.array(strokes, dtype=np.float32, copy=True)
    out[:, :2] = np.clip(out[:, :2], -limit, limit)
    return out


def scale_factor(sketches):
    """Std of all dx, dy over a list of stroke-3 sketches: the normalising scale of a training set."""
    if not sketches:
        raise ValueError("scale_factor needs at least one sketch")
    deltas = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].reshape(-1) for s in sketches])
    std = float(np.std(deltas))
    if not np.isfinite(std) or std <= 0.0:
        raise ValueError(f"degenerate scale factor {std!r}: all offsets are equal")
    return std


def degenerate_reason(strokes):
    """Why a stroke-3 sketch draws nothing, or None when it draws something.

    ``"fewer_than_2_points"`` (the first point is a move, so 0 or 1 points draw nothing),
    ``"non_finite"``, ``"nothing_drawn"`` (no segment with the pen down: segment i -> i + 1 is
    drawn iff p_i == 0, the drawing rule of DESIGN.md).
    """
    arr = np.asarray(strokes, np.float64).reshape(-1, 3) if np.size(strokes) else np.zeros((0, 3))
    if len(arr) < 2:
        return "fewer_than_2_points"
    if not np.all(np.isfinite(arr)):
        return "non_finite"
    if not np.any(arr[:-1, 2] < 0.5):
        return "nothing_drawn"
    return None


def stroke3_to_stroke5(strokes, max_len):
    """stroke-3 ``[N, 3]`` -> stroke-5 ``[max_len + 1, 5]`` (NumPy), start token and padding included."""
    strokes = np.asarray(strokes, dtype=np.float32)
    n = len(strokes)
    if n > max_len:
        raise ValueError(f"sketch of {n} points is longer than max_len={max_len}")
    out = np.zeros((max_len + 1, 5), dtype=np.float32)
    out[0] = START_TOKEN
    out[1:n + 1, :2] = strokes[:, :2]
    out[1:n + 1, 3] = strokes[:, 2]
    out[1:n + 1, 2] = 1.0 - strokes[:, 2]
    out[n + 1:, 4] = 1.0
    return out


def stroke5_to_stroke3(strokes5):
    """stroke-5 (with or without start token) -> stroke-3, cut at the first end-of-sketch row."""
    strokes5 = np.asarray(strokes5, dtype=np.float32)
    if len(strokes5) and np.allclose(strokes5[0], START_TOKEN):
        strokes5 = strokes5[1:]
    end = np.where(strokes5[:, 4] > 0.5)[0]
    n = int(end[0]) if len(end) else len(strokes5)
    out = np.zeros((n, 3), dtype=np.float32)
    out[:, :2] = strokes5[:n, :2]
    out[:, 2] = strokes5[:n, 3]
    return out


def tf_stroke3_to_stroke5(strokes, max_len):
    """TF version of :func:`stroke3_to_stroke5` for ``Dataset.map``: ``[N, 3]`` -> ``[max_len+1, 5]``."""
    strokes = tf.convert_to_tensor(strokes, tf.float32)
    n = tf.shape(strokes)[0]
    tf.debugging.assert_less_equal(n, max_len, message="sketch longer than max_len")
    body = tf.concat([strokes[:, :2], 1.0 - strokes[:, 2:3], strokes[:, 2:3],
                      tf.zeros_like(strokes[:, 2:3])], axis=1)
    pad = tf.tile(tf.constant([[0.0, 0.0, 0.0, 0.0, 1.0]]), [max_len - n, 1])
    start = tf.constant([START_TOKEN], tf.float32)
    out = tf.concat([start, body, pad], axis=0)
    return tf.ensure_shape(out, [max_len + 1, 5])


def tf_stroke5_lengths(strokes5):
    """Number of real points (rows before the first end-of-sketch, start token excluded): ``[B]``."""
    is_end = tf.cast(strokes5[:, 1:, 4] > 0.5, tf.int32)
    # tf.cumprod does not exist in TF 2 (only tf.math.cumprod): the old call raised AttributeError.
    not_yet = tf.math.cumprod(1 - is_end, axis=1)
    return tf.reduce_sum(not_yet, axis=1)
