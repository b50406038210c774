"""The seq2png job: render every sketch of sketch-rnn ``.npz`` categories to uint8 images.

Reads ``<input_dir>/<category>.npz`` (train / valid / test stroke-3) and writes
``<output_dir>/<category>_png.npz`` with uint8 ``[N, W, W]`` arrays under the same keys,
index-aligned with the strokes (ALGORITHMS.md 1). Entry point: ``seq2png.py`` at the repository
root.
"""

import os
import re
import time

import numpy as np
from absl import logging

from sketchtk.data.npz_io import SPLITS, load_stroke_npz, save_npz_atomic
from sketchtk.errors import ConfigError, DataError
from sketchtk.render import raster

_LOG_EVERY = 10000  # sketches between progress lines


def parse_categories(values):
    """Category names from flag values: ``["bee,bus"]``, ``["bee", "bus"]``, ``["{'bee','bus'}"]``.

    Quotes, braces and brackets are stripped (the original README's ``--categories={'bee','bus'}``
    reaches the program as ``bee`` and ``bus`` after bash brace expansion, or verbatim when not
    expanded), values are split on commas, blanks dropped and duplicates removed in order.

    Example:
      >>> parse_categories(["{'bee','bus'}", "bus,cat"])
      ['bee', 'bus', 'cat']
    """
    if isinstance(values, str):
        values = [values]
    names = []
    for value in values or ():
        for name in re.sub(r"[{}\[\]'\"]", "", str(value)).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def _available(input_dir):
    """Categories of the stroke ``.npz`` files in ``input_dir`` (``*_png.npz`` outputs excluded)."""
    if not os.path.isdir(input_dir):
        return []
    return sorted(f[:-4] for f in os.listdir(input_dir)
                  if f.endswith(".npz") and not f.endswith("_png.npz"))


def run_seq2png(input_dir, output_dir, categories, png_width=48, renderer="fast"):
    """Render the train / valid / test sketches of each category to ``<category>_png.npz``.

    Args:
      input_dir: directory holding ``<category>.npz`` stroke files (sketch-rnn format).
      output_dir: where ``<category>_png.npz`` files are written (created if needed); each file is
        written atomically, so an interrupted run leaves no partial output.
      categories: category names, or flag values in any form :func:`parse_categories` accepts.
      png_width: image side in pixels.
      renderer: ``"fast"`` (TF/XLA), ``"cairo"`` (svgwrite + cairosvg, the reference path) or
        ``"cairo_direct"`` (cairo's pixels without SVG, see ``raster.render_sketches``).

    Returns:
      ``{category: {split: number of images}}``.

    Raises:
      DataError: a category file is missing (the message names the path and lists the
        categories present in ``input_dir``) or unreadable.
      ConfigError: no category given.
      ValueError: unknown ``renderer``.

    Example:
      >>> run_seq2png("data/", "data/", ["bee", "bus"], png_width=48)
      {'bee': {'train': 70000, 'valid': 2500, 'test': 2500}, 'bus': {...}}
    """
    names = parse_categories(categories)
    if not names:
        raise ConfigError("no category given; pass --categories=bee,bus (or the brace form)")
    if renderer not in raster.RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; allowed: {sorted(raster.RENDERERS)}")
    # check every input before rendering anything: a typo should not cost a category's run time
    for name in names:
        path = os.path.join(input_dir, f"{name}.npz")
        if not os.path.exists(path):
            present = _available(input_dir)
            raise DataError(f"{path}: no such file; categories present in {input_dir}: "
                            f"{present if present else 'none (no .npz files)'}")

    counts = {}
    for name in names:
        source = os.path.join(input_dir, f"{name}.npz")
        target = os.path.join(output_dir, f"{name}_png.npz")
        splits = load_stroke_npz(source)
        total = sum(len(s) for s in splits.values())
        logging.info("seq2png %s: %d sketches (%s) -> %s [%s, %d px]", name, total,
                     ", ".join(f"{k} {len(v)}" for k, v in splits.items()), target, renderer,
                     png_width)
        # all splits in one job: one padded shape for XLA to compile, not one per split
        sketches = [sketch for split in SPLITS for sketch in splits[split]]
        start, done, next_log = time.perf_counter(), 0, _LOG_EVERY
        blocks = []
        for block in raster.iter_render(sketches, png_width, renderer):
            blocks.append(block)
            done += len(block)
            if done >= next_log:
                rate = done / max(time.perf_counter() - start, 1e-9)
                logging.info("seq2png %s: %d/%d sketches, %.0f sketches/s", name, done, total, rate)
                next_log += _LOG_EVERY
        images = (np.concatenate(blocks) if blocks
                  else np.zeros((0, png_width, png_width), np.uint8))
        bounds = np.cumsum([0] + [len(splits[split]) for split in SPLITS])
        arrays = {split: images[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)}
        save_npz_atomic(target, arrays)
        seconds = time.perf_counter() - start
        logging.info("seq2png %s: wrote %s in %.1f s (%.0f sketches/s)", name, target, seconds,
                     total / max(seconds, 1e-9))
        counts[name] = {split: len(arrays[split]) for split in SPLITS}
    return counts
