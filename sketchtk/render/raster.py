"""Fast batched rasteriser of stroke-3 sketches in TensorFlow ops, and a renderer registry.

:func:`render_batch` draws a ragged batch of sketches with the geometry of the cairo path
(``svg.py``): bounding box fitted with aspect kept, margin 1.5 px, width-1 anti-aliased lines with
butt caps at stroke ends, black on white.

How it works. Every drawn segment is cut into pieces of at most ~2 px; each piece owns a 4x4
window of candidate pixels; each candidate's coverage is computed against the piece's whole
segment, and coverages are combined with a max over the flat pixel ids of the batch
(``unsorted_segment_max``). Cost is proportional to the ink length, not to ``W * W``.
Coverage = across x along: across is the exact area of the pixel inside an infinite width-1 line
(a table indexed by line angle and distance, :func:`across_coverage_table`); along is the overlap
of the pixel with the segment's extent, exact for axis-aligned segments. Inside a stroke, segments
are extended by half a pixel at each join (a square cap), which stands in for cairo's miter join.

Where it differs from cairo: overlapping strokes combine with a max instead of the union of their
areas (slightly lighter where strokes cross or scribble) and diagonal butt ends are approximate.
On real drawings the mean absolute difference is below 2/255 (``bench/bench_render.py``).

Speed. TF runs a kernel per op, and on a small CPU the per-op cost of the many small ops here
dominated, so the work is done by two XLA-compiled functions with fixed shapes:
``_segment_features`` (dense ``[B, N]`` points -> per-segment features and piece counts) and
``_splat`` (pieces -> image). Point and piece counts are padded up to size buckets (4 per octave)
so that XLA compiles a handful of shapes per batch size (a compile takes ~0.2 s). All of it runs
eagerly, inside ``tf.function`` and inside ``tf.data.Dataset.map``.
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

# Candidate pixels come in a fixed 4x4 window per piece of segment; the window size bounds the
# piece length (see _segment_features).
_WINDOW = 4
# Joins inside a stroke extend both segments by half the line width (a square cap): that covers
# cairo's miter join for turns up to 90 degrees and leaves no half-covered pixel at each vertex.
_JOIN_EXTENSION = 0.5
# Across-line coverage table: one row per line slope tan(angle) = k / (_LUT_ANGLES - 1) in [0, 1]
# (angles in [0, 45] degrees; the other octants are symmetric; indexing by slope saves an atan2
# per segment), one column per signed distance of the pixel centre from the line, in steps of
# 1 / _LUT_SCALE px over [-_LUT_HALF_RANGE, _LUT_HALF_RANGE]. Coverage is zero past 1.21 px; the
# wide range keeps every window pixel (at most ~6 px from its line) inside its own row.
_LUT_ANGLES = 64
_LUT_SCALE = 200.0
_LUT_HALF_RANGE = 8.0
_LUT_CENTRE = int(_LUT_HALF_RANGE * _LUT_SCALE)
_LUT_COLUMNS = 2 * _LUT_CENTRE + 1
# Shapes handed to XLA are padded up to one of 4 sizes per octave (<= 25% padding).
_BUCKETS_PER_OCTAVE = 4
_MIN_SKETCHES = 8
_MIN_POINTS = 8
_MIN_PIECES = 1024
# cairo: jobs of at least this many sketches get a process per core when workers is None
_CAIRO_POOL_MIN = 20000
# Per-segment feature rows handed from _segment_features to _splat.
_FEATURES = ("x", "y", "ux", "uy", "t_lo", "t_hi", "piece_len", "sketch", "lut_row")

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


def _segment_features(dense, width, margin):
    """Dense stroke-3 ``[B, N, 3]`` -> features ``[F, B, N - 1]``, pieces ``[B, N - 1]``, their sum.

    Zero padding rows are zero offsets: padded points repeat each sketch's last point, so they
    change neither the bounding box nor the drawn segments (they are degenerate).
    """
    points = tf.cumsum(dense[:, :, :2], axis=1)
    low = tf.reduce_min(points, axis=1, keepdims=True)            # [B, 1, 2]
    extent = tf.reduce_max(points, axis=1, keepdims=True) - low
    longest = tf.reduce_max(extent, axis=2, keepdims=True)        # [B, 1, 1]
    box = width - 2.0 * margin
    scale = box / tf.where(longest > 0, longest, box)             # 1 for a zero-extent sketch
    xy = (points - low) * scale + margin + (box - extent * scale) / 2.0
    x, y = xy[:, :-1, 0], xy[:, :-1, 1]                           # segment i: point i -> i + 1
    dx, dy = xy[:, 1:, 0] - x, xy[:, 1:, 1] - y

    # segment i is drawn iff the pen is down after point i; cairo drops zero-length segments (an
    # isolated one draws nothing with butt caps)
    pen_down = dense[:, :-1, 2] < 0.5
    moves = tf.logical_or(tf.not_equal(dense[:, 1:, 0], 0.0), tf.not_equal(dense[:, 1:, 1], 0.0))
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
    # Each segment's span [t_lo, t_hi] is cut into equal pieces short enough that every pixel a
    # piece can touch (its width-1 rectangle grown by half a pixel) lies in one 4x4 window: the
    # extent along each axis is |piece_x| + |u_y| + 1 <= 3 for pieces at most (2 - b) / a long.
    span = t_hi - t_lo
    max_piece = 0.999 * (_WINDOW - 2 - proj_short) / proj_long
    num_pieces = tf.where(keep, tf.maximum(tf.cast(tf.math.ceil(span / max_piece), tf.int32), 1), 0)
    piece_len = span / tf.cast(tf.maximum(num_pieces, 1), tf.float32)
    sketch = tf.cast(tf.range(tf.shape(dense)[0]), tf.float32)[:, None] + tf.zeros_like(x)
    features = tf.stack([x, y, ux, uy, t_lo, t_hi, piece_len, sketch, lut_row], axis=0)
    return features, num_pieces, tf.reduce_sum(num_pieces)


def _piece_segments(num_pieces, num_slots):
    """Segment of each piece slot ``[num_slots]`` and its index in it (XLA has no searchsorted)."""
    num_segments = tf.shape(num_pieces)[0]
    ends = tf.cumsum(num_pieces)
    starts = ends - num_pieces
    kept = num_pieces > 0
    # drawn segments in order: compact[r] = index of the r-th segment with pieces
    rank = tf.cumsum(tf.cast(kept, tf.int32)) - 1
    compact = tf.math.unsorted_segment_max(tf.range(num_segments),
                                           tf.where(kept, rank, num_segments), num_segments + 1)
    # a 1 at each drawn segment's first slot; the running count is the segment's rank
    marks = tf.math.unsorted_segment_sum(tf.ones_like(num_pieces),
                                         tf.where(kept, starts, num_slots), num_slots + 1)
    marks = marks[:num_slots]
    slot_rank = tf.clip_by_value(tf.cumsum(marks) - 1, 0, num_segments - 1)
    piece_seg = tf.clip_by_value(tf.gather(compact, slot_rank), 0, num_segments - 1)
    return piece_seg, tf.range(num_slots) - tf.gather(starts, piece_seg)


def _splat(features, num_pieces, slots, table, width, as_uint8):
    """Pieces -> image ``[B, W, W]`` (B from ``features [F, B, N - 1]``); fixed shapes, for XLA.

    ``slots`` only carries the padded piece count in its shape; the slots past the real pieces
    draw nothing. ``table`` is the flat :func:`across_coverage_table` (an argument, not a
    constant: a large constant makes every XLA compile several times slower). Returns float32
    coverage, or the uint8 image when ``as_uint8``.
    """
    num_sketches = tf.shape(features)[1]  # a compile-time constant under XLA
    features = tf.reshape(features, [len(_FEATURES), -1])
    num_pieces = tf.reshape(num_pieces, [-1])
    num_slots = tf.shape(slots)[0]
    piece_seg, piece_index = _piece_segments(num_pieces, num_slots)
    live = tf.range(num_slots) < tf.reduce_sum(num_pieces)       # the rest is bucket padding
    per_piece = tf.gather(features, piece_seg, axis=1)
    x, y, ux, uy, t_lo, t_hi, piece_len, sketch, lut_row = [
        per_piece[i, :, None, None] for i in range(len(_FEATURES))]
    piece_index = tf.cast(piece_index, tf.float32)[:, None, None]

    # the piece's end points, the lowest pixel centre it can touch, then the window origin, kept
    # inside the image (with margin >= 0 a shift is at most a pixel or so)
    t_from = t_lo + piece_index * piece_len
    x0, y0 = x + t_from * ux, y + t_from * uy
    x1, y1 = x0 + piece_len * ux, y0 + piece_len * uy
    low_x = tf.minimum(x0, x1) - 0.5 * tf.abs(uy) - 0.5
    low_y = tf.minimum(y0, y1) - 0.5 * tf.abs(ux) - 0.5
    origin_x = tf.clip_by_value(tf.floor(low_x + 0.5), 0.0, width - _WINDOW)
    origin_y = tf.clip_by_value(tf.floor(low_y + 0.5), 0.0, width - _WINDOW)

    offsets = tf.range(_WINDOW, dtype=tf.float32)
    rel_x = origin_x + 0.5 - x + offsets[None, None, :]          # [P, 1, 4]: columns
    rel_y = origin_y + 0.5 - y + offsets[None, :, None]          # [P, 4, 1]: rows
    along = rel_x * ux + rel_y * uy                              # [P, 4, 4]
    across = rel_y * ux - rel_x * uy
    # overlap of the pixel's [t - 1/2, t + 1/2] with [t_lo, t_hi]
    along_cov = tf.nn.relu(1.0 - tf.nn.relu(along + 0.5 - t_hi) - tf.nn.relu(t_lo + 0.5 - along))
    lut_index = tf.cast(lut_row * _LUT_COLUMNS + (_LUT_CENTRE + 0.5) + across * _LUT_SCALE,
                        tf.int32)
    lut_index = tf.clip_by_value(lut_index, 0, _LUT_ANGLES * _LUT_COLUMNS - 1)
    coverage = tf.gather(table, lut_index) * along_cov * tf.cast(live, tf.float32)[:, None, None]

    window = tf.range(_WINDOW)
    # integer ids: a float32 id would lose exactness past 2^24 (256 sketches of 256 x 256 px)
    pixel = ((tf.cast(sketch, tf.int32) * width + tf.cast(origin_y, tf.int32)) * width
             + tf.cast(origin_x, tf.int32))
    flat_id = pixel + window[None, :, None] * width + window[None, None, :]
    image = tf.math.unsorted_segment_max(tf.reshape(coverage, [-1]), tf.reshape(flat_id, [-1]),
                                         num_sketches * width * width)
    # pixels no candidate reached come back as the lowest float
    image = tf.reshape(tf.maximum(image, 0.0), [num_sketches, width, width])
    if as_uint8:
        # quantise the coverage (cairo's alpha byte), then invert, so ties round as cairo's do
        return tf.cast(255.0 - tf.round(255.0 * image), tf.uint8)
    return image


@functools.lru_cache(maxsize=None)
def _compiled(width, margin, as_uint8):
    """The two XLA-compiled stages for one configuration; XLA caches one executable per shape."""
    features = tf.function(functools.partial(_segment_features, width=width, margin=margin),
                           jit_compile=True)
    splat = tf.function(functools.partial(_splat, width=width, as_uint8=as_uint8),
                        jit_compile=True)
    return features, splat


def _render(strokes, width, margin, as_uint8, min_points=_MIN_POINTS):
    """Body of :func:`render_coverage` and :func:`render_batch`; pads points to ``min_points``."""
    width = int(width)
    if width < _WINDOW:
        raise ValueError(f"width must be >= {_WINDOW}, got {width}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if isinstance(strokes, tf.RaggedTensor):
        dense = tf.cast(strokes, tf.float32).to_tensor(default_value=0.0, shape=[None, None, 3])
    else:
        dense = tf.convert_to_tensor(strokes, tf.float32)
    # Pad the batch and point axes up to buckets with blank sketches / zero rows: XLA compiles once
    # per shape, and a batch's size changes at every split's last batch. (The batch is never
    # empty either, which XLA's gathers need.) The extra images are sliced off.
    num_sketches, num_points = tf.shape(dense)[0], tf.shape(dense)[1]
    dense = tf.pad(dense, [[0, _bucket(num_sketches, _MIN_SKETCHES) - num_sketches],
                           [0, _bucket(num_points, min_points) - num_points], [0, 0]])
    segment_features, splat = _compiled(width, float(margin), as_uint8)
    features, num_pieces, total = segment_features(dense)
    slots = tf.zeros([_bucket(total, _MIN_PIECES)], tf.int8)
    table = tf.constant(across_coverage_table().reshape(-1))
    return splat(features, num_pieces, slots, table)[:num_sketches]


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


@functools.lru_cache(maxsize=None)
def _compiled_render(width, margin, min_points=_MIN_POINTS):
    """One traced uint8 render per configuration, with a ragged signature so it never retraces."""
    return tf.function(lambda strokes: _render(strokes, width, margin, True, min_points),
                       input_signature=[RAGGED_SIGNATURE])


def _to_ragged(sketches):
    """List of ``[N_i, 3]`` arrays -> ``tf.RaggedTensor [B, None, 3]`` float32, int64 row splits."""
    arrays = [np.asarray(s).reshape(-1, 3) for s in sketches]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    # one concatenate in the stored dtype, one conversion: per-sketch casts cost more than both
    values = (np.concatenate(arrays, axis=0) if arrays else np.zeros((0, 3))).astype(np.float32)
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


def _fast_batches(sketches, width, batch_size, margin, workers):
    """Yield uint8 ``[b, W, W]`` image batches of the fast renderer, in input order."""
    # Every XLA shape costs a ~2 s compile, so all batches share one shape where they can: points
    # padded to the longest sketch of the whole job, the last batch padded with blank sketches.
    longest = _bucket_size(max(len(s) for s in sketches), _MIN_POINTS)
    render = _compiled_render(int(width), float(margin), longest)
    threads = workers or os.cpu_count() or 1
    blank = np.zeros((0, 3), np.float32)

    pad_to = min(batch_size, len(sketches))

    def work(begin):
        batch = list(sketches[begin:begin + batch_size])
        count = len(batch)
        return render(_to_ragged(batch + [blank] * (pad_to - count))).numpy()[:count]

    # Each XLA stage runs on one thread and TF releases the GIL while it runs, so a Python thread
    # per core with a batch each keeps the cores busy (measured faster than a tf.data map here).
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        pending = collections.deque()
        for begin in range(0, len(sketches), batch_size):
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


def iter_render(sketches, width=DEFAULT_WIDTH, renderer="fast", batch_size=256,
                margin=DEFAULT_MARGIN, workers=None):
    """Render stroke-3 sketches batch by batch: an iterator of uint8 ``[b, W, W]``, in input order.

    Same arguments as :func:`render_sketches`; lets a long job report progress between batches.
    Arguments are checked at the call, not at the first ``next``.
    """
    if renderer not in _RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; allowed: {sorted(_RENDERERS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(width) < _WINDOW:
        raise ValueError(f"width must be >= {_WINDOW}, got {width}")
    sketches = list(sketches)
    if not sketches:
        return iter(())
    return _RENDERERS[renderer](sketches, int(width), batch_size, float(margin), workers)


def render_sketches(sketches, width=DEFAULT_WIDTH, renderer="fast", batch_size=256,
                    margin=DEFAULT_MARGIN, workers=None):
    """Rasterise a list of stroke-3 sketches: uint8 ``[N, W, W]``, index-aligned with the input.

    Args:
      sketches: sequence of ``[N_i, 3]`` arrays ``(dx, dy, p)`` (int16 from ``.npz`` or float).
      width: image side in pixels.
      renderer: ``"fast"`` (:func:`render_batch`, XLA-compiled TF ops, batched), ``"cairo"``
        (svgwrite + cairosvg per sketch, the reference path) or ``"cairo_direct"`` (the same
        pixels drawn through cairo's API, ``svg.CairoDirectRenderer``, a thread per core).
      batch_size: sketches per ``render_batch`` call (fast) or per yielded block (cairo).
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
