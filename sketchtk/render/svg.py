"""SVG drawing of stroke-3 sketches (svgwrite) and the reference-compatible cairo rasteriser.

The reference seq2png draws one SVG per sketch with svgwrite and rasterises it with cairosvg; this
module is that path, kept as the ground truth that the fast TF renderer (``raster.py``) is compared
against. It imports no TensorFlow so that multiprocessing workers start quickly.

Drawing rule (DESIGN.md): absolute points ``P_i = cumsum(d)_i``; the segment ``P_{i-1} -> P_i`` is
drawn iff ``p_{i-1} == 0`` (pen values >= 0.5 count as lifted); ``P_0`` is reached by a move.
"""

import io
import os

import cairosvg
import numpy as np
import svgwrite
from PIL import Image

DEFAULT_WIDTH = 48
DEFAULT_MARGIN = 1.5


def fit_points(stroke3, width=DEFAULT_WIDTH, margin=DEFAULT_MARGIN):
    """Absolute points of a stroke-3 sketch in pixel coordinates of a ``width``-square image.

    The bounding box of all points is scaled by ``(width - 2 * margin) / max_extent`` (aspect kept,
    scale 1 for a zero-extent sketch) and the short axis is centred; y grows downward as in SVG.

    Args:
      stroke3: ``[N, 3]`` array ``(dx, dy, p)``.
      width: image side in pixels.
      margin: free border in pixels on the long axis.

    Returns:
      ``(xy, pen)``: float64 ``[N, 2]`` pixel coordinates and the ``[N]`` pen column.

    Example:
      >>> xy, pen = fit_points(np.array([[0, 0, 0], [10, 0, 1]]), width=48)
      >>> xy[:, 0].tolist(), xy[:, 1].tolist()
      ([1.5, 46.5], [24.0, 24.0])
    """
    stroke3 = np.asarray(stroke3, dtype=np.float64).reshape(-1, 3)
    if len(stroke3) == 0:
        return np.zeros((0, 2)), np.zeros((0,))
    points = np.cumsum(stroke3[:, :2], axis=0)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = high - low
    box = width - 2.0 * margin
    longest = extent.max()
    scale = box / longest if longest > 0 else 1.0
    xy = margin + (points - low) * scale + (box - extent * scale) / 2.0
    return xy, stroke3[:, 2]


def path_commands(stroke3, width=DEFAULT_WIDTH, margin=DEFAULT_MARGIN):
    """SVG path data (absolute ``M``/``L`` commands in fitted pixel coordinates), '' if empty."""
    xy, pen = fit_points(stroke3, width, margin)
    parts = []
    for i, (x, y) in enumerate(xy):
        lifted = i == 0 or pen[i - 1] >= 0.5
        parts.append(f"{'M' if lifted else 'L'}{x:.4f},{y:.4f}")
    return " ".join(parts)


def sketch_to_svg(stroke3, width=DEFAULT_WIDTH, stroke_width=1.0, margin=DEFAULT_MARGIN,
                  color="black", background="white"):
    """Draw a stroke-3 sketch as an SVG document (one ``<path>``, white background rect).

    Args:
      stroke3: ``[N, 3]`` array ``(dx, dy, p)``; any numeric dtype.
      width: side of the square canvas in px (the SVG's width and height).
      stroke_width: line width in px.
      margin: free border in px on the long axis (1.5 as in the reference seq2png).
      color: stroke colour.
      background: fill of the background rect.

    Returns:
      The SVG document as a string. An empty sketch gives a canvas with only the background.

    Example:
      >>> svg = sketch_to_svg(np.array([[0, 0, 0], [5, 5, 1]]))
      >>> svg.count("L")  # one drawn segment
      1
    """
    # debug=False skips svgwrite's per-attribute validation, which costs more than the drawing.
    drawing = svgwrite.Drawing(size=(width, width), profile="full", debug=False)
    drawing.add(drawing.rect(insert=(0, 0), size=(width, width), fill=background))
    commands = path_commands(stroke3, width, margin)
    if commands:
        drawing.add(drawing.path(d=commands, stroke=color, stroke_width=stroke_width, fill="none"))
    return drawing.tostring()


def save_svg(stroke3, path, width=DEFAULT_WIDTH, stroke_width=1.0, margin=DEFAULT_MARGIN):
    """Write :func:`sketch_to_svg` to ``path`` (parent directories created)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(sketch_to_svg(stroke3, width, stroke_width, margin))


def svg_to_gray(svg, width):
    """Rasterise an SVG string with cairosvg -> uint8 ``[width, width]`` grey, on white."""
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), output_width=width, output_height=width)
    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.uint8)


def render_cairo(stroke3, width=DEFAULT_WIDTH, stroke_width=1.0, margin=DEFAULT_MARGIN):
    """Reference rasterisation: :func:`sketch_to_svg` through cairosvg -> uint8 ``[width, width]``.

    Args:
      stroke3: ``[N, 3]`` array ``(dx, dy, p)``.
      width: image side in pixels.
      stroke_width: line width in px.
      margin: free border in px.

    Returns:
      uint8 ``[width, width]``, black (0) strokes on white (255).

    Example:
      >>> image = render_cairo(np.array([[0, 0, 0], [10, 0, 1]]), width=48)
      >>> image.shape, int(image[23:25].min()) < 128, int(image[:20].min())
      ((48, 48), True, 255)
    """
    return svg_to_gray(sketch_to_svg(stroke3, width, stroke_width, margin), width)


def render_cairo_job(job):
    """``render_cairo(*job)`` for ``(stroke3, width, margin)`` jobs: a picklable pool worker."""
    stroke3, width, margin = job
    return render_cairo(stroke3, width, margin=margin)
