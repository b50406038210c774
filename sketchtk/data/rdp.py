"""Ramer-Douglas-Peucker polyline simplification (iterative, NumPy).

QuickDraw's *simplified* drawings are the raw strokes rescaled to a 0..255 box and simplified with
RDP at epsilon 2.0 (ALGORITHMS.md section 1); :mod:`sketchtk.data.quickdraw` applies the same
step to raw drawings so both kinds can be packed together.

Why a local implementation: the PyPI ``rdp`` package is unmaintained, recursive (it hits Python's
recursion limit on long raw strokes) and computes distances one point at a time in Python;
``simplification`` and similar fast packages ship compiled extensions we do not want as a
dependency. The algorithm is a few lines, so it lives here: an explicit stack instead of recursion
and one vectorised distance computation per split.

Distances are measured to the *segment* between the two kept end points, not to the infinite line
through them. Hand-drawn strokes often double back on themselves; with the infinite-line distance
the tip of such a reversal lies on the line (distance 0) and would be dropped, shortening the
stroke. The segment distance is never smaller than the line distance, so this keeps a superset of
the points the textbook version keeps.
"""

import numpy as np


def _segment_distances(points, start, end):
    """Distances of ``points`` ``[K, 2]`` to the segment ``start -> end`` (both ``[2]``)."""
    direction = end - start
    length_sq = float(direction @ direction)
    rel = points - start
    if length_sq == 0.0:
        # A closed loop (start == end): the segment is a point.
        return np.sqrt(np.einsum("ij,ij->i", rel, rel))
    t = np.clip(rel @ direction / length_sq, 0.0, 1.0)
    diff = rel - t[:, None] * direction
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def rdp_mask(points, epsilon):
    """Boolean ``[N]`` mask of the points RDP keeps (see :func:`rdp`)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"rdp expects points of shape [N, 2], got {points.shape}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"rdp epsilon must be a finite number >= 0, got {epsilon!r}")
    n = len(points)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    keep[0] = keep[-1] = True
    # Explicit stack of (first, last) index pairs still to examine: raw QuickDraw strokes can have
    # thousands of points, deeper than Python's recursion limit in the worst case.
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        dists = _segment_distances(points[first + 1:last], points[first], points[last])
        worst = int(np.argmax(dists))
        if dists[worst] > epsilon:
            split = first + 1 + worst
            keep[split] = True
            stack.append((first, split))
            stack.append((split, last))
    return keep


def rdp(points, epsilon):
    """Simplify a polyline with the Ramer-Douglas-Peucker algorithm.

    A point survives when it lies farther than ``epsilon`` from the segment joining the points kept
    around it. The first and last points are always kept. With ``epsilon = 0`` only points lying
    exactly on the simplified line (exactly collinear or repeated points) are removed.

    Args:
      points: ``[N, 2]`` array-like of absolute coordinates.
      epsilon: distance tolerance in the units of ``points`` (QuickDraw: 2.0 in the 0..255 box).

    Returns:
      ``[M, 2]`` float64 array (``M <= N``) of the kept points, in their original order.

    Example:
      >>> rdp([[0, 0], [1, 0.1], [2, 0]], epsilon=0.5).tolist()
      [[0.0, 0.0], [2.0, 0.0]]
    """
    points = np.asarray(points, dtype=np.float64)
    return points[rdp_mask(points, epsilon)]
