"""Grids of sketches for people to look at: one PNG (fast renderer) or one SVG (svgwrite)."""

import math
import os

import numpy as np
import svgwrite
from PIL import Image, ImageDraw, ImageFont

from sketchtk.render import raster, svg

_GRID_LINE = 200        # grey of the 1 px lines between cells
_LABEL_HEIGHT = 12      # px of the label strip under each cell, when labels are given
_MARGIN_FRACTION = 0.06  # free border of a cell's drawing, as a fraction of the cell


def grid_order(labels, num_categories, per_row=10, limit=100):
    """Indices of the samples a ``grid.png`` shows: up to ``per_row`` of each category in turn
    (a row per category when each has ``per_row``), at most ``limit``; the first ``limit`` when
    a label is negative (unconditional samples)."""
    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() < 0:
        return np.arange(min(len(labels), limit))
    rows = [np.flatnonzero(labels == c)[:per_row] for c in range(num_categories)]
    return np.concatenate(rows + [np.zeros(0, np.int64)])[:limit]


def _layout(count, ncols, labels):
    """(ncols, nrows) for ``count`` cells; checks ``labels`` has one entry per sketch."""
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if labels is not None and len(labels) != count:
        raise ValueError(f"got {len(labels)} labels for {count} sketches")
    ncols = min(ncols, max(count, 1))
    return ncols, max(1, math.ceil(count / ncols))


def save_grid_png(sketches, path, ncols=10, cell=96, labels=None):
    """Draw sketches in a grid and save it as a greyscale PNG.

    Each sketch is fitted to its own ``cell`` x ``cell`` square (black on white, width-1 lines, fast
    renderer); 1 px grey lines separate the cells; with ``labels`` a strip of small text sits under
    each cell.

    Args:
      sketches: sequence of stroke-3 ``[N_i, 3]`` arrays.
      path: output ``.png`` path (parent directories are created).
      ncols: cells per row (fewer when there are fewer sketches).
      cell: cell side in pixels.
      labels: optional sequence of strings, one per sketch.

    Returns:
      The image size ``(width, height)`` in pixels:
      ``(ncols * cell, nrows * (cell + label_strip))``.

    Example:
      >>> save_grid_png(sketches[:20], "/tmp/grid.png", ncols=10, cell=96)
      (960, 192)
    """
    sketches = list(sketches)
    ncols, nrows = _layout(len(sketches), ncols, labels)
    strip = _LABEL_HEIGHT if labels is not None else 0
    row_height = cell + strip
    canvas = np.full((nrows * row_height, ncols * cell), 255, np.uint8)
    if sketches:
        images = raster.render_sketches(sketches, width=cell,
                                        margin=max(1.5, _MARGIN_FRACTION * cell))
        for i, image in enumerate(images):
            row, col = divmod(i, ncols)
            canvas[row * row_height:row * row_height + cell, col * cell:(col + 1) * cell] = image
    # grid lines on the cells' shared edges (the drawings keep a margin, so no ink is hidden)
    canvas[:, [c * cell for c in range(1, ncols)]] = _GRID_LINE
    canvas[[r * row_height for r in range(1, nrows)], :] = _GRID_LINE
    picture = Image.fromarray(canvas, mode="L")
    if labels is not None:
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default()
        for i, label in enumerate(labels):
            row, col = divmod(i, ncols)
            draw.text((col * cell + 3, row * row_height + cell), str(label), fill=0, font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)
    return picture.size


def save_grid_svg(sketches, path, ncols=10, cell=96, labels=None, stroke_width=1.0):
    """Draw sketches in a grid as one SVG document (the layout of :func:`save_grid_png`).

    Args:
      sketches: sequence of stroke-3 ``[N_i, 3]`` arrays.
      path: output ``.svg`` path (parent directories are created).
      ncols: cells per row.
      cell: cell side in px.
      labels: optional sequence of strings, one per sketch.
      stroke_width: line width in px.

    Returns:
      The document size ``(width, height)`` in px.

    Example:
      >>> save_grid_svg(sketches[:3], "/tmp/grid.svg", labels=["a", "b", "c"])
      (288, 108)
    """
    sketches = list(sketches)
    ncols, nrows = _layout(len(sketches), ncols, labels)
    strip = _LABEL_HEIGHT if labels is not None else 0
    row_height = cell + strip
    size = (ncols * cell, nrows * row_height)
    drawing = svgwrite.Drawing(size=size, profile="full", debug=False)
    drawing.add(drawing.rect(insert=(0, 0), size=size, fill="white"))
    grey = f"rgb({_GRID_LINE},{_GRID_LINE},{_GRID_LINE})"
    for c in range(1, ncols):
        drawing.add(drawing.line((c * cell, 0), (c * cell, size[1]), stroke=grey, stroke_width=1))
    for r in range(1, nrows):
        drawing.add(drawing.line((0, r * row_height), (size[0], r * row_height), stroke=grey,
                                 stroke_width=1))
    margin = max(1.5, _MARGIN_FRACTION * cell)
    for i, sketch in enumerate(sketches):
        row, col = divmod(i, ncols)
        group = drawing.g(transform=f"translate({col * cell},{row * row_height})")
        commands = svg.path_commands(sketch, cell, margin)
        if commands:
            group.add(drawing.path(d=commands, stroke="black", stroke_width=stroke_width,
                                   fill="none"))
        if labels is not None:
            group.add(drawing.text(str(labels[i]), insert=(3, cell + strip - 2), font_size=10,
                                   font_family="sans-serif", fill="black"))
        drawing.add(group)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(drawing.tostring())
    return size
