"""Corruptions of stroke-3 sketches, the inputs of diffusion healing (SketchKnitter's "rectifying
poor sketches"; ALGORITHMS.md 4).

Distances are fractions of the sketch's enclosing radius (the largest distance of a point from the
first one, as ``point_sequences.preprocess_sketch``), so a strength means the same on every drawing:

- ``noise``: every point moved by ``N(0, (strength r)^2)`` in x and y (a shaky hand);
- ``jitter``: every stroke shifted as a whole by ``N(0, (strength r)^2)`` (misplaced parts);
- ``drop``: one stroke removed at random (strength unused; a sketch of one stroke is kept);

``kinds`` combine them left to right (e.g. ``("drop", "noise")``). Every function is pure NumPy,
seeded, and returns float32 stroke-3 whose last point lifts the pen.
"""

import numpy as np

from sketchtk.data import strokes as stroke_ops

KINDS = ("noise", "jitter", "drop")


def _radius(lines):
    start = lines[0][0]
    return max(float(np.max(np.linalg.norm(line - start, axis=1))) for line in lines) or 1.0


def corrupt_sketch(stroke3, kinds=("noise",), strength=0.05, seed=0):
    """A corrupted copy of ``stroke3`` ``[N, 3]``.

    Args:
      stroke3: stroke-3 offsets (first row: the first point's offset from the origin).
      kinds: corruptions applied in order, each one of ``KINDS``.
      strength: standard deviation of ``noise`` / ``jitter`` as a fraction of the radius.
      seed: int seed (the same seed gives the same corruption).

    Returns:
      float32 stroke-3 ``[M, 3]``.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown corruption {kind!r}; choose from {list(KINDS)}")
    if not 0.0 <= strength < np.inf:
        raise ValueError(f"corruption strength must be a finite number >= 0, got {strength}")
    rng = np.random.default_rng(seed)
    lines = [np.array(line, np.float64) for line in stroke_ops.stroke3_to_polylines(stroke3)]
    radius = _radius(lines)
    for kind in kinds:
        if kind == "noise":
            lines = [line + rng.normal(0.0, strength * radius, line.shape) for line in lines]
        elif kind == "jitter":
            lines = [line + rng.normal(0.0, strength * radius, (1, 2)) for line in lines]
        elif len(lines) > 1:
            del lines[int(rng.integers(len(lines)))]
    return stroke_ops.polylines_to_stroke3(lines).astype(np.float32)
