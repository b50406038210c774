"""Fast batched rasteriser of stroke-3 sketches in TensorFlow ops, and a renderer registry.

:func:`render_batch` draws a ragged batch of sketches with the geometry of the cairo path
(``svg.py``): bounding box fitted with aspect kept, margin 1.5 px, width-1 anti-aliased lines with
butt caps at stroke ends, black on white.

How it works. Only the pixels near each segment are evaluated. A segment's major axis is the one
it advances along fastest (x if ``|dx| >= |dy|``); the pixel columns across that axis that the
segment's width-1 rectangle touches are cut into slots of ``_SLOT_COLUMNS`` columns, and in every
column the candidates are the ``_SLOT_ROWS = 4`` pixels around the centre line (a width-1 line
crosses at most 4 pixels of one column at any angle, so no touched pixel is skipped). Each
candidate's coverage is computed against its whole segment, and coverages are combined with a max
over the flat pixel ids of the batch (``unsorted_segment_max``). Cost is proportional to the ink
length, not to ``W * W``: about 4 candidates per pixel of ink along the major axis.
Coverage = across x along: across is the exact area of the pixel inside an infinite width-1 line
(a table indexed by line angle and distance, :func:`across_coverage_table`); along is the overlap
of the pixel with the segment's extent, exact for axis-aligned segments. Inside a stroke, segments
are extended by half a pixel at each join (a square cap), which stands in for cairo's miter join.

Where it differs from cairo: overlapping strokes combine with a max instead of the union of their
areas (slightly lighter where strokes cross or scribble) and diagonal butt ends are approximate.
On real drawings the mean absolute difference is below 2/255 (``bench/bench_render.py``).

Speed. TF runs a kernel per op, and on a small CPU the per-op cost of the many small ops here
dominated, so the work is done by two XLA-compiled functions with fixed shapes:
``_segment_features`` (the batch's points as one flat list, ``values [T, 3]`` with a sketch id
per point, -> per-segment features and slot counts) and ``_splat`` (slots -> image). Working on
the flat list, not on a ``[B, N_max]`` padded block, costs nothing for the short sketches of a
batch that holds one long one. Point, sketch and slot counts are padded up to size buckets (4 per
octave) so that XLA compiles a handful of shapes (a compile takes ~0.2 s). All of it runs eagerly,
inside ``tf.function`` and inside ``tf.data.Dataset.map``; :func:`render_sketches` builds the flat
inputs in NumPy and calls the two stages directly (no ragged tensor, no graph op in between).
"""

import collections
import concurrent.futures
import functools
import math
import multiprocessing
import os

import numpy as np
import tensorflow as tf

from sketchtk.render import svg

DEFAULT_WIDTH = svg.DEFAULT_WIDTH
DEFAULT_MARGIN = svg.DEFAULT_MARGIN

# Candidate pixels: each slot is _SLOT_COLUMNS columns (along the segment's major axis) of
# _SLOT_ROWS pixels each. In one column a width-1 line at angle theta <= 45 degrees to the major
# axis spans (1 / cos + tan) <= 2.41 px of the minor axis, which meets at most 4 pixel rows.
_SLOT_ROWS = 4
_SLOT_COLUMNS = 4
# Joins inside a stroke extend both segments by half the line width (a square cap): that covers
# cairo's miter join for turns up to 90 degrees and leaves no half-covered pixel at each vertex.
_JOIN_EXTENSION = 0.5
# Across-line coverage table: one row per line slope tan(angle) = k / (_LUT_ANGLES - 1) in [0, 1]
# (angles in [0, 45] degrees; the other octants are symmetric; indexing by slope saves an atan2
# per segment), one column per signed distance of the pixel centre from the line, in steps of
# 1 / _LUT_SCALE px over [-_LUT_HALF_RANGE, _LUT_HALF_RANGE]. Coverage is zero past
# (1 + cos + sin) / 2 <= 1.21 px, so distances past the range are clamped to its (zero) ends; the
# small table (128 KB) stays in the cache.
_LUT_ANGLES = 64
_LUT_SCALE = 200.0
_LUT_HALF_RANGE = 1.25
_LUT_CENTRE = int(_LUT_HALF_RANGE * _LUT_SCALE)
_LUT_COLUMNS = 2 * _LUT_CENTRE + 1
# Shapes handed to XLA are padded up to one of 4 sizes per octave (<= 25% padding).
_BUCKETS_PER_OCTAVE = 4
_MIN_SKETCHES = 8
_MIN_POINTS = 256  # small batches share one shape: a compile costs more than the padding
_MIN_SLOTS = 1024
# cairo: jobs of at least this many sketches get a process per core when workers is None
_CAIRO_POOL_MIN = 20000
# Per-segment feature columns handed from _segment_features to _splat: the segment's start point,
# direction and extent [t_lo, t_hi] along it, its table row and sketch; swap = 1 when the major
# axis is y; its columns [k0, k1) along the major axis; q0 = the centre line's minor coordinate at
# the centre of column k0, slope = its change per column; half = half the line's minor extent
# within one column.
_FEATURES = ("x", "y", "ux", "uy", "t_lo", "t_hi", "lut_row", "sketch", "swap", "k0", "k1", "q0",
             "slope", "half")

RAGGED_SIGNATURE = tf.RaggedTensorSpec([None, None, 3], tf.float32, ragged_rank=1,
                                       row_splits_dtype=tf.int64)


def _box_cdf_np(x, a, b):
    """CDF at ``x`` of U(-a/2, a/2) + U(-b/2, b/2), a >= b >= 0 (a unit pixel along a direction)."""
    half_diff = (a - b) / 2.0
    safe_b = np.maximum(b, 1e-12)

    def ramp_integral(u):
        # integral of the ramp min(max(u, 0), b) / b, written so that b -> 0 stays finite
        c = np.clip(u, 0.0, b)
        return c * (c / safe_b) / 2.0 + np.maximum(u - b, 0.0)

    return (ramp_integral(x + half_diff + b) - ramp_integral(x - half_diff)) / a


@functools.lru_cache(maxsize=1)
def across_coverage_table():
    """float32 ``[_LUT_ANGLES, _LUT_COLUMNS]``: area of a unit pixel inside an infinite 1 px line.

    Entry ``[k, j]`` is for a line of slope ``k / (_LUT_ANGLES - 1)`` to its nearest axis whose
    centre line passes ``(j - _LUT_CENTRE) / _LUT_SCALE`` px from the pixel centre. The pixel's box
    filter projected on the line normal is a trapezoid (the sum of two uniforms of widths |cos| and
    |sin|), so the covered area is the difference of its CDF at the two band edges.
    """
    angle = np.arctan(np.linspace(0.0, 1.0, _LUT_ANGLES))[:, None]
    dist = (np.arange(_LUT_COLUMNS)[None, :] - _LUT_CENTRE) / _LUT_SCALE
    a, b = np.cos(angle), np.sin(angle)
    table = _box_cdf_np(0.5 - dist, a, b) - _box_cdf_np(-0.5 - dist, a, b)
    return np.clip(table, 0.0, 1.0).astype(np.float32)


def _table_tensor():
    """The flat table as a tensor (an argument of ``_splat``, not a constant in it); made once
    when eager, a graph constant when traced (a cached tensor must not leak between graphs)."""
    if tf.executing_eagerly():
        return _eager_table()
    return tf.constant(across_coverage_table().reshape(-1))


@functools.lru_cache(maxsize=1)
def _eager_table():
    return tf.constant(across_coverage_table().reshape(-1))


@functools.lru_cache(maxsize=64)
def _shape_carrier(size):
    """int8 zeros ``[size]`` (eager only): hands a padded size to an XLA stage as a shape."""
    return tf.zeros([size], tf.int8)


def _bucket(count, minimum):
    """Smallest size >= max(count, minimum) of the form k * 2^(octave - 2): few distinct shapes."""
    count = tf.maximum(count, minimum)
    octave = tf.math.floor(tf.math.log(tf.cast(count, tf.float32)) / math.log(2.0))
    step = tf.maximum(tf.cast(2.0 ** (octave - math.log2(_BUCKETS_PER_OCTAVE)), tf.int32), 1)
    return (count + step - 1) // step * step


def _bucket_size(count, minimum):
    """Python twin of :func:`_bucket` for sizes known before tracing."""
    count = max(int(count), minimum)
    step = max(2 ** (int(math.log2(count)) - int(math.log2(_BUCKETS_PER_OCTAVE))), 1)
    return -(-count // step) * step


def _shift(values, by, fill):
    """``values[:, i - by]`` along axis 1 (``fill`` where out of range), for +-1 or +-2."""
    pad = tf.fill([tf.shape(values)[0], abs(by)], fill)
    if by > 0:
        return tf.concat([pad, values[:, :-by]], axis=1)
    return tf.concat([values[:, -by:], pad], axis=1)


def _segment_features(values, sketch_ids, sketches, width, margin):
    """Flat points -> features ``[T - 1, F]``, slots per segment ``[T - 1]`` and their sum.

    ``values [T, 3]`` are the batch's stroke-3 points one sketch after the other, ``sketch_ids
    [T]`` (int32, ascending) the sketch of each; ``sketches`` only carries the padded sketch count
    ``B`` in its shape. Padding points get the id ``B`` (a sketch that is never drawn) and zero
    offsets. Segment ``i`` joins point ``i`` to ``i + 1`` of the same sketch.
    """
    num_sketches = tf.shape(sketches)[0]
    count = tf.shape(values)[0]
    offsets = values[:, :2]
    # absolute points per sketch: a running sum over the whole list minus its value before each
    # sketch's first point, in float64 so that long batches of large coordinates stay exact
    total = tf.cumsum(tf.cast(offsets, tf.float64), axis=0)
    first = tf.math.unsorted_segment_min(tf.range(count), sketch_ids, num_sketches + 1)
    before = tf.gather(total - tf.cast(offsets, tf.float64), tf.gather(first, sketch_ids))
    points = tf.cast(total - before, tf.float32)                      # [T, 2]
    low = tf.math.unsorted_segment_min(points, sketch_ids, num_sketches + 1)    # [B + 1, 2]
    extent = tf.math.unsorted_segment_max(points, sketch_ids, num_sketches + 1) - low
    longest = tf.reduce_max(extent, axis=1, keepdims=True)            # [B + 1, 1]
    box = width - 2.0 * margin
    scale = box / tf.where(longest > 0, longest, box)                 # 1 for a zero-extent sketch
    shift = margin + (box - extent * scale) / 2.0 - low * scale       # xy = points * scale + shift
    xy = (points * tf.gather(scale, sketch_ids) + tf.gather(shift, sketch_ids))[None]  # [1, T, 2]
    x, y = xy[:, :-1, 0], xy[:, :-1, 1]                               # segment i: point i -> i + 1
    dx, dy = xy[:, 1:, 0] - x, xy[:, 1:, 1] - y

    # segment i is drawn iff the pen is down after point i (and i + 1 is in the same sketch);
    # cairo drops zero-length segments (an isolated one draws nothing with butt caps)
    same = tf.equal(sketch_ids[None, :-1], sketch_ids[None, 1:])
    pen_down = tf.logical_and(values[None, :-1, 2] < 0.5, same)
    moves = tf.logical_or(tf.not_equal(values[None, 1:, 0], 0.0),
                          tf.not_equal(values[None, 1:, 1], 0.0))
    keep = tf.logical_and(pen_down, moves)
    # a kept segment joins its neighbour in the same stroke: the next (previous) drawn segment,
    # looking past one zero-length segment (longer zero-length runs are treated as stroke ends)
    def continues(by):
        near_down, far_down = _shift(pen_down, by, False), _shift(pen_down, 2 * by, False)
        near_moves, far_moves = _shift(moves, by, False), _shift(moves, 2 * by, False)
        return tf.logical_and(near_down, tf.logical_or(near_moves,
                                                       tf.logical_and(far_down, far_moves)))
    join_start = tf.cast(continues(1), tf.float32)
    join_end = tf.cast(continues(-1), tf.float32)

    length = tf.sqrt(dx * dx + dy * dy)
    safe_length = tf.where(keep, length, 1.0)
    ux, uy = tf.where(keep, dx / safe_length, 1.0), tf.where(keep, dy / safe_length, 0.0)
    proj_long = tf.maximum(tf.abs(ux), tf.abs(uy))                # a = max(|cos|, |sin|)
    proj_short = tf.minimum(tf.abs(ux), tf.abs(uy))               # b
    t_lo = -_JOIN_EXTENSION * join_start
    t_hi = length + _JOIN_EXTENSION * join_end
    lut_row = tf.round(proj_short / proj_long * (_LUT_ANGLES - 1))
    # major axis p (x unless the segment is steeper than 45 degrees), minor axis q
    swap = tf.abs(uy) > tf.abs(ux)
    p, q = tf.where(swap, y, x), tf.where(swap, x, y)
    u_p, u_q = tf.where(swap, uy, ux), tf.where(swap, ux, uy)
    slope = u_q / u_p
    # the columns [k0, k1) that the width-1 rectangle over [t_lo, t_hi] touches (clipped to the
    # image), cut into slots of _SLOT_COLUMNS
    p_from, p_to = p + t_lo * u_p, p + t_hi * u_p
    k0 = tf.maximum(tf.floor(tf.minimum(p_from, p_to) - 0.5 * proj_short), 0.0)
    k1 = tf.minimum(tf.math.ceil(tf.maximum(p_from, p_to) + 0.5 * proj_short), float(width))
    columns = tf.cast(tf.maximum(k1 - k0, 0.0), tf.int32)
    num_slots = tf.where(keep, (columns + _SLOT_COLUMNS - 1) // _SLOT_COLUMNS, 0)
    q0 = q + (k0 + 0.5 - p) * slope
    half = 0.5 * (tf.abs(slope) + 1.0 / proj_long)
    sketch = tf.cast(sketch_ids[None, :-1], tf.float32)
    features = tf.stack([x, y, ux, uy, t_lo, t_hi, lut_row, sketch, tf.cast(swap, tf.float32),
                         k0, k1, q0, slope, half], axis=-1)
    return features[0], num_slots[0], tf.reduce_sum(num_slots)


def _slot_segments(num_slots, slot_count):
    """Segment of each slot ``[slot_count]`` and the slot's index in it (XLA has no searchsorted)."""
    num_segments = tf.shape(num_slots)[0]
    ends = tf.cumsum(num_slots)
    starts = ends - num_slots
    kept = num_slots > 0
    # drawn segments in order: compact[r] = index of the r-th segment with slots
    rank = tf.cumsum(tf.cast(kept, tf.int32)) - 1
    compact = tf.math.unsorted_segment_max(tf.range(num_segments),
                                           tf.where(kept, rank, num_segments), num_segments + 1)
    # a 1 at each drawn segment's first slot; the running count is the segment's rank
    marks = tf.math.unsorted_segment_sum(tf.ones_like(num_slots),
                                         tf.where(kept, starts, slot_count), slot_count + 1)
    marks = marks[:slot_count]
    slot_rank = tf.clip_by_value(tf.cumsum(marks) - 1, 0, num_segments - 1)
    segment = tf.clip_by_value(tf.gather(compact, slot_rank), 0, num_segments - 1)
    return segment, tf.range(slot_count) - tf.gather(starts, segment)


def _splat(features, num_slots, slots, sketches, table, width, as_uint8):
    """Slots -> image ``[B, W, W]`` (B = ``sketches``' length); fixed shapes, for XLA.

    ``slots`` only carries the padded slot count in its shape; the slots past the real ones draw
    nothing. ``table`` is the flat :func:`across_coverage_table` (an argument, not a constant: a
    large constant makes every XLA compile several times slower). Returns float32 coverage, or the
    uint8 image when ``as_uint8``.
    """
    num_sketches = tf.shape(sketches)[0]  # compile-time constants under XLA
    slot_count = tf.shape(slots)[0]
    segment, index = _slot_segments(num_slots, slot_count)
    live = tf.range(slot_count) < tf.reduce_sum(num_slots)          # the rest is bucket padding
    per_slot = tf.gather(features, segment)                         # [S, F]
    x, y, ux, uy, t_lo, t_hi, lut_row, sketch, swap, k0, k1, q0, slope, half = [
        per_slot[:, i, None, None] for i in range(len(_FEATURES))]
    # candidates [S, columns, rows]: column k of the major axis, then the 4 pixels of the minor
    # axis from the first one the line can touch (kept inside the image)
    step = (tf.cast(index, tf.float32)[:, None, None] * _SLOT_COLUMNS
            + tf.range(_SLOT_COLUMNS, dtype=tf.float32)[None, :, None])
    k = k0 + step
    in_segment = tf.logical_and(k < k1, live[:, None, None])
    k = tf.minimum(k, width - 1.0)
    centre_q = q0 + step * slope
    first_row = tf.clip_by_value(tf.floor(centre_q - half), 0.0, width - _SLOT_ROWS)
    j = first_row + tf.range(_SLOT_ROWS, dtype=tf.float32)[None, None, :]
    swapped = swap > 0.5
    col, row = tf.where(swapped, j, k), tf.where(swapped, k, j)

    rel_x, rel_y = col + 0.5 - x, row + 0.5 - y
    along = rel_x * ux + rel_y * uy
    across = rel_y * ux - rel_x * uy
    # overlap of the pixel's [t - 1/2, t + 1/2] with [t_lo, t_hi]
    along_cov = tf.nn.relu(1.0 - tf.nn.relu(along + 0.5 - t_hi) - tf.nn.relu(t_lo + 0.5 - along))
    lut_column = tf.clip_by_value(tf.cast(_LUT_CENTRE + 0.5 + across * _LUT_SCALE, tf.int32), 0,
                                  _LUT_COLUMNS - 1)
    lut_index = tf.cast(lut_row, tf.int32) * _LUT_COLUMNS + lut_column
    coverage = tf.where(in_segment, tf.gather(table, lut_index) * along_cov, 0.0)

    # integer ids: a float32 id would lose exactness past 2^24 (256 sketches of 256 x 256 px)
    flat_id = ((tf.cast(sketch, tf.int32) * width + tf.cast(row, tf.int32)) * width
               + tf.cast(col, tf.int32))
    image = tf.math.unsorted_segment_max(tf.reshape(coverage, [-1]), tf.reshape(flat_id, [-1]),
                                         num_sketches * width * width)
    # pixels no candidate reached come back as the lowest float
    image = tf.reshape(tf.maximum(image, 0.0), [num_sketches, width, width])
    if as_uint8:
        # quantise the coverage (cairo's alpha byte), then invert, so ties round as cairo's do
        return tf.cast(255.0 - tf.round(255.0 * image), tf.uint8)
    return image


@functools.lru_cache(maxsize=None)
def _compiled_features(width, margin):
    return tf.function(functools.partial(_segment_features, width=width, margin=margin),
                       jit_compile=True, reduce_retracing=True)


@functools.lru_cache(maxsize=None)
def _compiled_splat(width, as_uint8):
    return tf.function(functools.partial(_splat, width=width, as_uint8=as_uint8),
                       jit_compile=True, reduce_retracing=True)


def _compiled(width, margin, as_uint8):
    """The two XLA-compiled stages for one configuration: traced once for any shape
    (``reduce_retracing``), XLA compiles and caches one executable per shape.

    The feature stage does not depend on the output type, so coverage and uint8 renders share
    its executables.
    """
    return _compiled_features(width, margin), _compiled_splat(width, as_uint8)


def _check_geometry(width, margin):
    if width < _SLOT_ROWS:
        raise ValueError(f"width must be >= {_SLOT_ROWS}, got {width}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")


def _render(strokes, width, margin, as_uint8):
    """Body of :func:`render_coverage` and :func:`render_batch` (tensors; eager or traced)."""
    width = int(width)
    _check_geometry(width, margin)
    if isinstance(strokes, tf.RaggedTensor):
        ragged = tf.cast(strokes, tf.float32)
    else:
        ragged = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(strokes, tf.float32))
    values = ragged.values
    sketch_ids = tf.cast(ragged.value_rowids(), tf.int32)
    num_sketches = tf.cast(ragged.nrows(), tf.int32)
    count = tf.shape(values)[0]
    # Pad the sketch and point counts up to buckets (blank sketches, zero points of the extra
    # sketch id): XLA compiles once per shape, and a batch's size changes at every split's last
    # batch. (The batch is never empty either, which XLA's gathers need.) Extra images are
    # sliced off.
    padded_sketches = _bucket(num_sketches, _MIN_SKETCHES)
    padded_count = _bucket(count + 1, _MIN_POINTS)
    values = tf.pad(values, [[0, padded_count - count], [0, 0]])
    sketch_ids = tf.concat([sketch_ids, tf.fill([padded_count - count], padded_sketches)], 0)
    sketches = tf.zeros([padded_sketches], tf.int8)
    segment_features, splat = _compiled(width, float(margin), as_uint8)
    features, num_slots, total = segment_features(values, sketch_ids, sketches)
    slots = tf.zeros([_bucket(total, _MIN_SLOTS)], tf.int8)
    return splat(features, num_slots, slots, sketches, _table_tensor())[:num_sketches]


def render_coverage(strokes, width=DEFAULT_WIDTH, margin=DEFAULT_MARGIN):
    """Ink coverage in [0, 1] of a ragged batch of stroke-3 sketches: float32 ``[B, W, W]``.

    Args:
      strokes: ``tf.RaggedTensor [B, None, 3]`` (or a dense ``[B, N, 3]`` tensor) of
        ``(dx, dy, p)``; pen values >= 0.5 lift the pen after the point.
      width: image side in pixels (a Python int >= 4).
      margin: free border in px on the long axis (>= 0).

    Returns:
      float32 ``[B, width, width]``; 1 where a pixel is fully inked, 0 for blank.

    Example:
      >>> rt = tf.ragged.constant([[[0., 0., 0.], [10., 0., 1.]]], ragged_rank=1)
      >>> render_coverage(rt).shape
      TensorShape([1, 48, 48])
    """
    return _render(strokes, width, margin, as_uint8=False)


def render_batch(strokes, width=DEFAULT_WIDTH, margin=DEFAULT_MARGIN):
    """Rasterise a ragged batch of stroke-3 sketches in TF ops: uint8 ``[B, W, W]``.

    Runs eagerly, under ``tf.function`` and in ``tf.data.Dataset.map``. Empty sketches, sketches
    without a drawn segment and single points give blank (all 255) images.

    Args:
      strokes: ``tf.RaggedTensor [B, None, 3]`` float32 ``(dx, dy, p)`` (any scale: each sketch is
        fitted to the canvas); a dense ``[B, N, 3]`` tensor is accepted too.
      width: image side in pixels (a Python int, 48 for the pix2seq encoder).
      margin: free border in px on the long axis.

    Returns:
      uint8 ``[B, width, width]``, black (0) strokes on white (255):
      ``255 - round(255 * coverage)``.

    Example:
      >>> rt = tf.ragged.constant([[[0., 0., 0.], [10., 0., 1.]], [[1., 1., 1.]]], ragged_rank=1)
      >>> images = render_batch(rt)
      >>> images.dtype, images.shape, int(tf.reduce_min(images[1]))
      (tf.uint8, TensorShape([2, 48, 48]), 255)
    """
    return _render(strokes, width, margin, as_uint8=True)


def _flat_points(sketches, padded_sketches, padded_count):
    """List of ``[N_i, 3]`` arrays -> ``values [padded_count, 3]`` float32, sketch ids int32.

    The NumPy twin of the padding in :func:`_render`: points one sketch after the other, then
    zero points with the id ``padded_sketches``.
    """
    arrays = [np.asarray(s).reshape(-1, 3) for s in sketches]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    values = np.zeros((padded_count, 3), np.float32)
    count = int(lengths.sum())
    if count:
        # one concatenate in the stored dtype, one conversion: per-sketch casts cost more
        values[:count] = np.concatenate(arrays, axis=0)
    sketch_ids = np.full(padded_count, padded_sketches, np.int32)
    sketch_ids[:count] = np.repeat(np.arange(len(arrays), dtype=np.int32), lengths)
    return values, sketch_ids


def _render_points(values, sketch_ids, padded_sketches, width, margin):
    """Eager uint8 render of flat points (:func:`_flat_points`): ``[padded_sketches, W, W]``."""
    segment_features, splat = _compiled(width, margin, True)
    sketches = _shape_carrier(padded_sketches)
    features, num_slots, total = segment_features(values, sketch_ids, sketches)
    slots = _shape_carrier(_bucket_size(int(total), _MIN_SLOTS))
    return splat(features, num_slots, slots, sketches, _table_tensor()).numpy()


def _fast_batches(sketches, width, batch_size, margin, workers):
    """Yield uint8 ``[b, W, W]`` image batches of the fast renderer, in input order."""
    _check_geometry(width, margin)
    # Every XLA shape costs a compile, so all batches share one shape where they can: points
    # padded to the largest batch total of the whole job, the last batch padded with blank
    # sketches.
    lengths = np.array([len(s) for s in sketches], np.int64)
    starts = range(0, len(sketches), batch_size)
    padded_count = _bucket_size(max(int(lengths[b:b + batch_size].sum()) for b in starts) + 1,
                                _MIN_POINTS)
    padded_sketches = _bucket_size(min(batch_size, len(sketches)), _MIN_SKETCHES)
    threads = workers or os.cpu_count() or 1

    def work(begin):
        batch = sketches[begin:begin + batch_size]
        values, sketch_ids = _flat_points(batch, padded_sketches, padded_count)
        return _render_points(values, sketch_ids, padded_sketches, width, margin)[:len(batch)]

    # Each XLA stage runs on one thread and TF releases the GIL while it runs, so a Python thread
    # per core with a batch each keeps the cores busy (measured faster than a tf.data map here).
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        pending = collections.deque()
        for begin in starts:
            pending.append(pool.submit(work, begin))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _cairo_batches(sketches, width, batch_size, margin, workers):
    """Yield uint8 ``[b, W, W]`` image batches of the cairo renderer, in input order."""
    if workers is None:
        # A spawned worker re-imports the parent's __main__ module, often TensorFlow with it:
        # about 5-10 s of start-up on 2 cores, worth it only for jobs of minutes.
        workers = (os.cpu_count() or 1) if len(sketches) >= _CAIRO_POOL_MIN else 1
    jobs = ((s, width, margin) for s in sketches)
    pool = None
    if workers <= 1:
        images = map(svg.render_cairo_job, jobs)
    else:
        # spawn, not fork: this process runs TensorFlow threads, which fork does not copy safely;
        # the worker function lives in svg.py so that workers never import TensorFlow. A
        # ProcessPoolExecutor fails fast (BrokenProcessPool) where a Pool would respawn workers.
        pool = concurrent.futures.ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"))
        images = pool.map(svg.render_cairo_job, jobs, chunksize=32)
    try:
        batch = []
        for image in images:
            batch.append(image)
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _cairo_direct_batches(sketches, width, batch_size, margin, workers):
    """Yield uint8 ``[b, W, W]`` batches of ``svg.CairoDirectRenderer`` (cairosvg's pixels).

    ``workers`` threads (``None``: one per core), each with its own cairo surface: cairocffi
    releases the GIL inside cairo's calls, so the strokes of two batches are drawn at once.
    """
    threads = workers or os.cpu_count() or 1
    local = __import__("threading").local()

    def work(begin):
        if not hasattr(local, "renderer"):
            local.renderer = svg.CairoDirectRenderer(width, margin=margin)
        return local.renderer.render_many(sketches[begin:begin + batch_size])

    if threads <= 1:
        for begin in range(0, len(sketches), batch_size):
            yield work(begin)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        yield from pool.map(work, range(0, len(sketches), batch_size))


_RENDERERS = {"fast": _fast_batches, "cairo": _cairo_batches,
              "cairo_direct": _cairo_direct_batches}
RENDERERS = tuple(_RENDERERS)


def iter_render(sketches, width=DEFAULT_WIDTH, renderer="fast", batch_size=1024,
                margin=DEFAULT_MARGIN, workers=None):
    """Render stroke-3 sketches batch by batch: an iterator of uint8 ``[b, W, W]``, in input order.

    Same arguments as :func:`render_sketches`; lets a long job report progress between batches.
    Arguments are checked at the call, not at the first ``next``.
    """
    if renderer not in _RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; allowed: {sorted(_RENDERERS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(width) < _SLOT_ROWS:
        raise ValueError(f"width must be >= {_SLOT_ROWS}, got {width}")
    sketches = list(sketches)
    if not sketches:
        return iter(())
    return _RENDERERS[renderer](sketches, int(width), batch_size, float(margin), workers)


def render_sketches(sketches, width=DEFAULT_WIDTH, renderer="fast", batch_size=1024,
                    margin=DEFAULT_MARGIN, workers=None):
    """Rasterise a list of stroke-3 sketches: uint8 ``[N, W, W]``, index-aligned with the input.

    Args:
      sketches: sequence of ``[N_i, 3]`` arrays ``(dx, dy, p)`` (int16 from ``.npz`` or float).
      width: image side in pixels.
      renderer: ``"fast"`` (:func:`render_batch`, XLA-compiled TF ops, batched), ``"cairo"``
        (svgwrite + cairosvg per sketch, the reference path) or ``"cairo_direct"`` (the same
        pixels drawn through cairo's API, ``svg.CairoDirectRenderer``, a thread per core).
      batch_size: sketches per XLA render call (fast) or per yielded block (cairo). Each fast
        call has ~1 ms of fixed cost (two XLA launches and a sync), so large batches pay: 1024
        renders ~1.6x the sketches per CPU second of 256.
      margin: free border in px on the long axis.
      workers: fast and cairo_direct: threads (``None``: one per core); cairo: worker processes
        (``None``: one per core for 20000 sketches or more, else none: spawned workers take
        seconds to start).

    Returns:
      uint8 ``[N, width, width]``, black strokes on white.

    Raises:
      ValueError: unknown ``renderer`` (the message lists the allowed names), bad ``batch_size``
        or ``width``.

    Example:
      >>> images = render_sketches([np.array([[0, 0, 0], [4, 4, 1]], np.int16)], width=32)
      >>> images.shape, images.dtype
      ((1, 32, 32), dtype('uint8'))
    """
    blocks = list(iter_render(sketches, width, renderer, batch_size, margin, workers))
    if not blocks:
        return np.zeros((0, int(width), int(width)), np.uint8)
    return np.concatenate(blocks, axis=0)
