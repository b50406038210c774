"""Point sequences for stroke diffusion: representations, resampling, statistics, a length model.

A diffusion model denoises a whole sketch at once, as a padded sequence of points ``[L, 3]`` with
a mask. Two representations (ALGORITHMS.md section 4):

- ``delta`` (SketchKnitter, ChiroDiff ``threeseqdel``): rows ``(dx, dy, p)``, stroke-3 itself;
- ``absolute`` (ChiroDiff ``threeseqabs``): rows ``(x, y, p)``, the running sum of the offsets.

``p = 1`` marks a stroke's last point (the pen lifts after it), as in stroke-3. In both the first
point is moved to the origin (ChiroDiff ``data/sketch.py:149-152`` translates every sketch so its
first point is at 0), so the absolute position of a sketch is not something the model has to learn.
ChiroDiff's delta mode encodes the pen as a stroke *index* whose difference is 1 at a stroke end
(``data/batching.py:81-91``); that is the same 0/1 pen bit as here, so one pen convention serves both.

Optional preprocessing, done once per split in NumPy (before the ``tf.data`` pipeline):
arc-length resampling of each stroke at a fixed spacing (ChiroDiff ``data/qd.py:96-102``: scale to
radius 1, ``n = max(2, int(length / 0.05))`` points per stroke, ``data/sketch.py:144-147``; one-point
strokes dropped, ``data/sketch.py:129-131``) and RDP simplification, both with distances as fractions
of the sketch's enclosing radius so the point count follows the ink, not the drawing's size.

Statistics found from the *training* split and saved with the model (``model_config.json``):
``PointStats`` (per-channel mean and std of x, y) and ``LengthModel`` (a histogram of point counts,
per class), from which the number of points of a generated sketch is drawn. ChiroDiff borrows
lengths from a real batch at generation time; SketchKnitter pads to 96 points with no mask.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
from absl import logging

from sketchtk.data import rdp as rdp_ops
from sketchtk.data import strokes as stroke_ops
from sketchtk.data.loader import SketchSet

REPRESENTATIONS = ("delta", "absolute")
PAD_MULTIPLE = 8  # padded lengths are multiples of 8 so a 1-D UNet can halve them three times


def check_representation(representation):
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}; choose one of "
                         f"{list(REPRESENTATIONS)}")


# ---------------------------------------------------------------------------------- NumPy side

def _polylines(stroke3):
    absolute = stroke_ops.to_absolute(stroke3)
    cut = np.where(absolute[:, 2] > 0.5)[0] + 1
    return [seg[:, :2] for seg in np.split(absolute, cut) if len(seg)]


def _resample_polyline(line, count):
    """``count`` points evenly spaced by arc length along ``line`` ``[n, 2]`` (ends kept)."""
    seg = np.sqrt(np.sum(np.diff(line, axis=0) ** 2, axis=1))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0.0:
        return np.repeat(line[:1], count, axis=0)
    targets = np.linspace(0.0, cum[-1], count)
    return np.stack([np.interp(targets, cum, line[:, 0]), np.interp(targets, cum, line[:, 1])], 1)


def preprocess_sketch(stroke3, resample_spacing=0.0, rdp_epsilon=0.0):
    """Arc-length resampling and / or RDP of one stroke-3 sketch; returns stroke-3 float32.

    Args:
      stroke3: ``[N, 3]`` offsets.
      resample_spacing: point spacing as a fraction of the sketch's enclosing radius (the largest
        distance of a point from the first one); 0 = keep the points. ChiroDiff uses 0.05.
      rdp_epsilon: RDP tolerance in the same units, applied after resampling; 0 = off.

    Returns:
      ``[M, 3]`` float32 stroke-3, or None when no stroke of two or more points is left.
    """
    if resample_spacing <= 0.0 and rdp_epsilon <= 0.0:
        return np.asarray(stroke3, np.float32)
    lines = _polylines(stroke3)
    if resample_spacing > 0.0:
        lines = [line for line in lines if len(line) > 1]  # one-point strokes: no arc length
    if not lines:
        return None
    start = lines[0][0]
    radius = max(float(np.max(np.sqrt(np.sum((line - start) ** 2, axis=1)))) for line in lines)
    if radius <= 0.0:
        return None
    out = []
    for line in lines:
        if resample_spacing > 0.0:
            length = float(np.sum(np.sqrt(np.sum(np.diff(line, axis=0) ** 2, axis=1))))
            line = _resample_polyline(line, max(2, int(length / (resample_spacing * radius))))
        if rdp_epsilon > 0.0:
            line = rdp_ops.rdp(line, rdp_epsilon * radius)
        out.append(line)
    return stroke_ops.polylines_to_stroke3(out).astype(np.float32)


def to_points(stroke3, representation):
    """stroke-3 ``[N, 3]`` -> the representation's ``[N, 3]`` rows (first point at the origin)."""
    check_representation(representation)
    seq = np.array(stroke3, np.float64, copy=True)
    seq[0, :2] = 0.0
    if representation == "absolute":
        seq[:, :2] = np.cumsum(seq[:, :2], axis=0)
    return seq.astype(np.float32)


def from_points(points, representation):
    """Inverse of :func:`to_points`: ``[N, 3]`` rows -> stroke-3 (pen rounded to 0/1)."""
    check_representation(representation)
    seq = np.array(points, np.float64, copy=True)
    if representation == "absolute":
        seq[1:, :2] = seq[1:, :2] - seq[:-1, :2].copy()
    seq[:, 2] = (seq[:, 2] > 0.5).astype(np.float64)
    return seq.astype(np.float32)


def padded_length(longest):
    """The padded sequence length for sequences of at most ``longest`` points."""
    return int(PAD_MULTIPLE * math.ceil(max(1, longest) / PAD_MULTIPLE))


@dataclasses.dataclass(frozen=True)
class PointStats:
    """Per-channel normalisation of x, y (pen untouched): ``(v - mean) / std``."""

    mean: tuple
    std: tuple

    @classmethod
    def from_sketches(cls, sketches, representation):
        """Mean and std of every point's x and y over a list of stroke-3 (the training split)."""
        pts = np.concatenate([to_points(s, representation)[:, :2] for s in sketches], axis=0)
        pts = pts.astype(np.float64)
        std = pts.std(axis=0)
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ValueError(f"degenerate point statistics (std {std.tolist()})")
        return cls(tuple(float(v) for v in pts.mean(axis=0)), tuple(float(v) for v in std))

    def to_dict(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


@dataclasses.dataclass(frozen=True)
class LengthModel:
    """Empirical distribution of point counts, pooled and per class.

    ``counts[c][n]`` is how many training sketches of class ``c`` have ``n`` points
    (``0 <= n <= max_len``); sampling draws ``n`` with probability proportional to it.
    """

    counts: tuple  # tuple of tuples of ints, one row per class

    @classmethod
    def from_sketches(cls, sketches, labels, num_classes, max_len):
        table = np.zeros((max(1, num_classes), max_len + 1), np.int64)
        for sketch, label in zip(sketches, labels):
            table[int(label), min(len(sketch), max_len)] += 1
        return cls(tuple(tuple(int(v) for v in row) for row in table))

    def probabilities(self, label=None):
        """``[max_len + 1]`` probabilities for class ``label`` (None or -1 = pooled)."""
        table = np.asarray(self.counts, np.float64)
        row = table.sum(axis=0) if label is None or label < 0 else table[int(label)]
        if row.sum() <= 0:  # a class without training sketches: fall back to the pooled counts
            row = table.sum(axis=0)
        return row / row.sum()

    def sample(self, labels, seed):
        """One length per entry of ``labels`` (int array; -1 = pooled), seeded. Returns int32."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels).reshape(-1)
        out = np.empty(len(labels), np.int32)
        for i, label in enumerate(labels):
            p = self.probabilities(int(label))
            out[i] = rng.choice(len(p), p=p)
        return out

    def mean(self, label=None):
        p = self.probabilities(label)
        return float(np.sum(p * np.arange(len(p))))

    def to_dict(self):
        return {"counts": [list(r) for r in self.counts]}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(tuple(int(v) for v in r) for r in d["counts"]))


def prepare_point_data(data, resample_spacing=0.0, rdp_epsilon=0.0, max_points=-1):
    """Preprocess every split of a ``SketchData`` for a diffusion model.

    Resamples / simplifies each sketch (:func:`preprocess_sketch`), drops (and counts, logged) those
    left empty or longer than ``max_points`` (when > 0), and sets ``max_seq_len`` to the padded
    length (:func:`padded_length` of the cap, or of the longest sketch when there is no cap).
    """
    splits, dropped, longest = {}, {s: dict(c) for s, c in data.dropped.items()}, 1
    for split, subset in data.splits.items():
        kept, labels, counts = [], [], {}
        for sketch, label in zip(subset.sketches, subset.labels):
            out = preprocess_sketch(sketch, resample_spacing, rdp_epsilon)
            if out is None or len(out) < 2:
                counts["empty_after_preprocessing"] = counts.get("empty_after_preprocessing", 0) + 1
            elif max_points > 0 and len(out) > max_points:
                counts["too_long_after_preprocessing"] = (
                    counts.get("too_long_after_preprocessing", 0) + 1)
            else:
                kept.append(out)
                labels.append(label)
                longest = max(longest, len(out))
        if counts:
            logging.warning("split %r: point-sequence preprocessing dropped %s", split, counts)
            for reason, n in counts.items():
                dropped.setdefault(split, {})[reason] = n
        if not kept:
            raise ValueError(f"split {split!r}: no sketch left after preprocessing "
                             f"(resample_spacing={resample_spacing}, rdp_epsilon={rdp_epsilon}, "
                             f"max_points={max_points})")
        splits[split] = SketchSet(tuple(kept), np.asarray(labels, np.int32))
    cap = max_points if max_points > 0 else longest
    return dataclasses.replace(data, splits=splits, max_seq_len=padded_length(cap), dropped=dropped)


def point_data_statistics(data, representation):
    """What a model must keep from the training split: ``point_stats`` and ``length_model``
    (dicts for ``model_config.json``)."""
    train = data["train"]
    stats = PointStats.from_sketches(train.sketches, representation)
    lengths = LengthModel.from_sketches(train.sketches, train.labels, len(data.categories),
                                        data.max_seq_len)
    return {"point_stats": stats.to_dict(), "length_model": lengths.to_dict()}


# ---------------------------------------------------------------------------------- TF side

def tf_to_points(stroke3, representation):
    """TF version of :func:`to_points` for one sketch ``[N, 3]`` (runs inside ``Dataset.map``)."""
    check_representation(representation)
    stroke3 = tf.convert_to_tensor(stroke3, tf.float32)
    xy = tf.concat([tf.zeros_like(stroke3[:1, :2]), stroke3[1:, :2]], axis=0)
    if representation == "absolute":
        xy = tf.cumsum(xy, axis=0)
    return tf.concat([xy, stroke3[:, 2:3]], axis=1)


def to_point_batch(ragged_points, max_len):
    """Ragged ``[B, None, 3]`` points -> ``(points [B, max_len, 3] zero-padded, mask [B, max_len])``."""
    lengths = tf.cast(ragged_points.row_lengths(), tf.int32)
    dense = ragged_points.to_tensor(default_value=0.0, shape=[None, max_len, 3])
    mask = tf.sequence_mask(lengths, max_len, dtype=tf.float32)
    return dense, mask, lengths
