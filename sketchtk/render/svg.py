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


def _cairo_path_records(xy, pen):
    """A ``cairo_path_data_t`` array (16-byte records) of the path that :func:`path_commands` writes.

    Each point is a header record ``(type, length 2)`` then a point record ``(x, y)``: MOVE_TO (0)
    at the first point and after a lifted pen, LINE_TO (1) otherwise. Coordinates are rounded to 4
    decimals as the SVG text is, so cairo receives the same numbers as through cairosvg.
    """
    count = len(xy)
    records = np.zeros((2 * count, 2), np.float64)
    headers = records[0::2].view(np.int32)                       # [count, 4]: type, length, pad
    lifted = np.ones(count, bool)
    lifted[1:] = pen[:-1] >= 0.5
    headers[:, 0] = np.where(lifted, 0, 1)
    headers[:, 1] = 2
    records[1::2] = np.round(xy, 4)
    return records


class CairoDirectRenderer:
    """The cairosvg path's pixels without SVG: the same path drawn through cairo's own API.

    cairosvg turns ``sketch_to_svg`` into cairo calls on an ARGB surface: white background rect,
    then the path stroked in black, width 1, SVG's defaults (butt caps, miter joins, miter limit
    4). This class makes those calls directly (the path handed over as one ``cairo_path_data_t``
    array), on one reused surface whose pixels are reset from numpy, so a sketch costs a few cairo
    calls instead of an SVG document, its parse and a PNG round trip. The output is
    pixel-identical to :func:`render_cairo` (``tests/render/test_svg.py`` checks it on real
    drawings).

    Example:
      >>> renderer = CairoDirectRenderer(48)
      >>> image = renderer.render(np.array([[0, 0, 0], [10, 0, 1]]))
      >>> bool((image == render_cairo(np.array([[0, 0, 0], [10, 0, 1]]))).all())
      True
    """

    def __init__(self, width=DEFAULT_WIDTH, stroke_width=1.0, margin=DEFAULT_MARGIN):
        import cairocffi

        self.width, self.margin = int(width), margin
        self._lib, self._ffi = cairocffi.cairo, cairocffi.ffi
        self._surface = cairocffi.ImageSurface(cairocffi.FORMAT_RGB24, self.width, self.width)
        ctx = self._context = cairocffi.Context(self._surface)
        # the stroke state persists across new_path: set once
        ctx.set_source_rgb(0.0, 0.0, 0.0)
        ctx.set_line_width(float(stroke_width))
        ctx.set_line_cap(cairocffi.LINE_CAP_BUTT)
        ctx.set_line_join(cairocffi.LINE_JOIN_MITER)
        ctx.set_miter_limit(4.0)
        self._path = self._ffi.new("cairo_path_t *")
        stride = self._surface.get_stride()
        self._pixels = np.frombuffer(self._surface.get_data(), np.uint8).reshape(
            self.width, stride // 4, 4)

    def _draw(self, records):
        """Stroke one sketch's path records on a white canvas -> uint8 ``[width, width]``."""
        self._surface.flush()
        self._pixels[...] = 255                                       # white background
        self._surface.mark_dirty()
        if len(records):
            self._path.status = 0
            self._path.data = self._ffi.cast("cairo_path_data_t *", self._ffi.from_buffer(records))
            self._path.num_data = len(records)
            ctx = self._context
            ctx.new_path()
            self._lib.cairo_append_path(ctx._pointer, self._path)
            ctx.stroke()
            self._surface.flush()
        # grey on white: the three colour bytes are equal (PIL's "L" of a grey is that byte)
        return self._pixels[:, :self.width, 0]

    def render(self, stroke3):
        """uint8 ``[width, width]``, black strokes on white, as :func:`render_cairo`."""
        xy, pen = fit_points(stroke3, self.width, self.margin)
        return self._draw(_cairo_path_records(xy, pen) if len(xy) else xy).copy()

    def render_many(self, sketches):
        """uint8 ``[N, width, width]`` of a sequence of sketches.

        Integer sketches (the stored int16 data) are fitted for the whole list in one vectorised
        pass: their cumulative sums are exact, so the points are bit-identical to
        :func:`fit_points`' per-sketch ones. Float sketches are fitted one by one.
        """
        out = np.empty((len(sketches), self.width, self.width), np.uint8)
        arrays = [np.asarray(s).reshape(-1, 3) for s in sketches]
        if not arrays:
            return out
        lengths = np.array([len(a) for a in arrays])
        values = np.concatenate(arrays, axis=0)
        if (values.dtype.kind not in "iu" or np.any(lengths == 0)
                or np.abs(values[:, :2]).max(initial=0) > 2 ** 40):
            for i, sketch in enumerate(arrays):
                out[i] = self.render(sketch)
            return out
        values = values.astype(np.float64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        total = np.cumsum(values[:, :2], axis=0)
        points = total - np.repeat(total[starts] - values[starts, :2], lengths, axis=0)
        low = np.minimum.reduceat(points, starts, axis=0)
        extent = np.maximum.reduceat(points, starts, axis=0) - low
        box = self.width - 2.0 * self.margin
        longest = extent.max(axis=1, keepdims=True)
        scale = np.where(longest > 0, box / np.where(longest > 0, longest, 1.0), 1.0)
        xy = (self.margin + (points - np.repeat(low, lengths, axis=0)) * np.repeat(scale, lengths,
                                                                                   axis=0)
              + np.repeat((box - extent * scale) / 2.0, lengths, axis=0))
        pen = values[:, 2].copy()
        pen[starts[1:] - 1] = 1.0  # each sketch starts with a move: its predecessor "lifts"
        records = _cairo_path_records(xy, pen)
        for i, (begin, count) in enumerate(zip(starts, lengths)):
            out[i] = self._draw(records[2 * begin:2 * (begin + count)])
        return out


def render_cairo_direct_job(job):
    """``CairoDirectRenderer(width, margin=margin).render_many(sketches)`` for ``(sketches,
    width, margin)``: a picklable pool worker that imports no TensorFlow."""
    sketches, width, margin = job
    return CairoDirectRenderer(width, margin=margin).render_many(sketches)


def render_cairo_job(job):
    """``render_cairo(*job)`` for ``(stroke3, width, margin)`` jobs: a picklable pool worker."""
    stroke3, width, margin = job
    return render_cairo(stroke3, width, margin=margin)
