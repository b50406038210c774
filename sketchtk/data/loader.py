"""Load sketch-rnn ``.npz`` categories into memory: cleaning, labels, ``max_seq_len``, scale factor.

Cleaning policy (ALGORITHMS.md 1), per split, skip-and-count with a logged summary:
- ``empty``: fewer than 2 points (nothing can be drawn);
- ``non_finite``: a NaN or inf anywhere;
- ``too_long``: more points than the ``max_seq_len`` cap (when a cap is set).
Offsets are clipped to +-1000. Missing files and unknown categories raise ``DataError``.
"""

import dataclasses
import os

import numpy as np
from absl import logging

from sketchtk.data import strokes as stroke_ops
from sketchtk.data.npz_io import SPLITS, load_stroke_npz
from sketchtk.errors import DataError

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default")
# The QuickDraw categories packed into DEFAULT_DATA_DIR (see its README.md). Must match the files
# there (tools/make_default_data.py packs these five); the old ("bee", "bus", "cat", "flower", "pig")
# named files that were never packed, so the default and smoke presets could not load.
DEFAULT_CATEGORIES = ("house plant", "stairs", "table", "television", "triangle")
CLIP_LIMIT = 1000.0


@dataclasses.dataclass(frozen=True)
class SketchSet:
    """One split: normalised float32 stroke-3 sketches and their integer category labels."""

    sketches: tuple
    labels: np.ndarray

    def __len__(self):
        return len(self.sketches)


@dataclasses.dataclass(frozen=True)
class SketchData:
    """The loaded splits plus the values found from data that a model must keep."""

    categories: tuple
    splits: dict
    max_seq_len: int
    scale_factor: float
    dropped: dict  # {split: {reason: count}}

    def __getitem__(self, split):
        return self.splits[split]


def available_categories(data_dir):
    """Category names with a ``<name>.npz`` in ``data_dir`` (``*_png.npz`` excluded), sorted."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data directory does not exist")
    return sorted(f[:-4] for f in os.listdir(data_dir)
                  if f.endswith(".npz") and not f.endswith("_png.npz"))


def category_path(data_dir, category):
    """Path of a category's ``.npz``; DataError listing what exists if it is missing."""
    path = os.path.join(data_dir, f"{category}.npz")
    if not os.path.exists(path):
        have = available_categories(data_dir)
        shown = ", ".join(have[:20]) + (" ..." if len(have) > 20 else "")
        raise DataError(f"{path}: unknown category {category!r}; {data_dir} has: {shown or 'nothing'}")
    return path


def _clean(sketches, cap, counts):
    kept = []
    for sketch in sketches:
        arr = np.asarray(sketch, dtype=np.float32)
        if len(arr) < 2:
            counts["empty"] = counts.get("empty", 0) + 1
        elif not np.all(np.isfinite(arr)):
            counts["non_finite"] = counts.get("non_finite", 0) + 1
        elif cap > 0 and len(arr) > cap:
            counts["too_long"] = counts.get("too_long", 0) + 1
        else:
            kept.append(stroke_ops.clip_offsets(arr, CLIP_LIMIT))
    return kept


# The cleaning rule, shared with the TFRecord packer (sketchtk.data.tfrecords).
clean_sketches = _clean


def load_sketch_data(data_dir=None, categories=None, num_per_category=70000, max_seq_len=-1,
                     scale_factor=None, splits=SPLITS):
    """Load, clean, label and normalise categories of sketch-rnn ``.npz`` files.

    Args:
      data_dir: directory of ``<category>.npz``; None = the embedded default QuickDraw subset.
      categories: names; None = every category in ``data_dir``.
      num_per_category: at most this many *training* sketches per category (the first ones).
      max_seq_len: a cap on points per sketch (longer ones dropped and counted); -1 = no cap and
        ``max_seq_len`` becomes the longest sketch found.
      scale_factor: the normalising std; None = computed from the training split (when loading
        for sampling, pass the value saved with the model instead).
      splits: which splits to load; the scale factor needs ``train`` unless given.

    Returns:
      SketchData with normalised float32 sketches (dx, dy divided by ``scale_factor``).
    """
    data_dir = DEFAULT_DATA_DIR if data_dir is None else os.fspath(data_dir)
    from sketchtk.data import tfrecords  # a sharded TFRecord directory streams instead
    if tfrecords.is_sharded_dir(data_dir):
        if num_per_category < 70000:
            logging.info("%s: sharded data uses every packed sketch (num_per_category=%d is "
                         "applied when packing: --max_per_category)", data_dir, num_per_category)
        return tfrecords.load_sharded_data(data_dir, categories, max_seq_len, scale_factor,
                                           splits)
    categories = tuple(categories) if categories else tuple(available_categories(data_dir))
    if not categories:
        raise DataError(f"{data_dir}: no <category>.npz files found")
    raw = {s: ([], []) for s in splits}
    dropped = {s: {} for s in splits}
    for label, category in enumerate(categories):
        data = load_stroke_npz(category_path(data_dir, category), splits=tuple(splits))
        for split in splits:
            sketches = data[split]
            if split == "train":
                sketches = sketches[:num_per_category]
            counts = {}
            kept = _clean(sketches, max_seq_len, counts)
            if counts:
                logging.warning("%s, split %r: dropped %s", category_path(data_dir, category),
                                split, counts)
                for reason, n in counts.items():
                    dropped[split][reason] = dropped[split].get(reason, 0) + n
            raw[split][0].extend(kept)
            raw[split][1].extend([label] * len(kept))
    for split in splits:
        if not raw[split][0]:
            raise DataError(f"{data_dir}: split {split!r} has no usable sketch for {list(categories)} "
                            f"(dropped: {dropped[split]})")
    if scale_factor is None:
        if "train" not in raw:
            raise DataError("scale_factor must be given when the train split is not loaded")
        scale_factor = stroke_ops.scale_factor(raw["train"][0])
    longest = max(len(s) for split in splits for s in raw[split][0])
    cap = max_seq_len if max_seq_len > 0 else longest
    out = {}
    for split in splits:
        normed = []
        for s in raw[split][0]:
            s = s.copy()
            s[:, :2] /= scale_factor
            normed.append(s)
        out[split] = SketchSet(tuple(normed), np.asarray(raw[split][1], dtype=np.int32))
    logging.info("loaded %s from %s: %s; max_seq_len=%d scale_factor=%.4f", list(categories), data_dir,
                 {s: len(out[s]) for s in splits}, cap, scale_factor)
    return SketchData(categories, out, int(cap), float(scale_factor), dropped)
