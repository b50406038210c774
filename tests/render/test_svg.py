"""Tests of sketchtk.render.svg: the svgwrite drawing and the cairo (reference) rasteriser."""

import os
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.render import svg

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def sheep():
    return load_stroke_npz(FIXTURE)["train"]


def _drawn_segments(stroke3):
    """Number of segments the drawing rule draws: P_{i-1} -> P_i with p_{i-1} == 0 (i >= 1)."""
    return int(np.sum(np.asarray(stroke3)[:-1, 2] < 0.5))


def test_svg_is_valid_and_draws_every_segment(sheep):
    for sketch in sheep[:10]:
        root = ElementTree.fromstring(svg.sketch_to_svg(sketch, width=48))
        assert root.get("width") == "48" and root.get("height") == "48"
        rect = root.find(f"{SVG_NS}rect")
        assert rect.get("fill") == "white"
        path = root.find(f"{SVG_NS}path")
        assert path.get("stroke") == "black" and path.get("fill") == "none"
        commands = path.get("d").split()
        assert sum(c.startswith("L") for c in commands) == _drawn_segments(sketch)
        assert sum(c.startswith("M") for c in commands) == len(sketch) - _drawn_segments(sketch)
        assert commands[0].startswith("M")


def test_fit_keeps_aspect_centres_short_axis_and_margin(sheep):
    xy, _ = svg.fit_points(sheep[0], width=48)
    low, high = xy.min(axis=0), xy.max(axis=0)
    extent = high - low
    long_axis = int(np.argmax(extent))
    assert low[long_axis] == pytest.approx(1.5) and high[long_axis] == pytest.approx(46.5)
    short = 1 - long_axis
    assert (low[short] + high[short]) / 2 == pytest.approx(24.0)
    raw = np.cumsum(np.asarray(sheep[0], np.float64)[:, :2], axis=0)
    raw_extent = raw.max(axis=0) - raw.min(axis=0)
    ratio = raw_extent[short] / raw_extent[long_axis]
    assert extent[short] / extent[long_axis] == pytest.approx(ratio)


def test_empty_and_single_point_sketches():
    for sketch in (np.zeros((0, 3)), np.array([[4, 4, 1]]), np.array([[4, 4, 0], [0, 0, 1]])):
        root = ElementTree.fromstring(svg.sketch_to_svg(sketch))
        assert root.find(f"{SVG_NS}rect") is not None
        image = svg.render_cairo(sketch)
        assert image.dtype == np.uint8 and image.shape == (48, 48)
        assert image.min() == 255, "nothing is drawn without a segment of non-zero length"


def test_render_cairo_orientation():
    # horizontal line at mid-height: y = 24 lies between rows 23 and 24, half covering each
    image = svg.render_cairo(np.array([[0, 0, 0], [10, 0, 1]]), width=48)
    assert image.shape == (48, 48) and image.dtype == np.uint8
    assert np.all(image[23:25, 2:46] == 127)
    assert image[:23].min() == 255 and image[25:].min() == 255
    # y grows downward: the pen goes down 10 then right 10, so the horizontal part is at the bottom
    image = svg.render_cairo(np.array([[0, 0, 0], [0, 10, 0], [10, 0, 1]]), width=48)
    bottom_row = 46
    assert image[bottom_row, 10:40].max() < 255 and image[1, 10:40].min() == 255
    assert image[10:40, 1].max() < 255 and image[10:40, 46].min() == 255


def test_save_svg_writes_the_document(tmp_path, sheep):
    path = tmp_path / "nested" / "sheep.svg"
    svg.save_svg(sheep[3], str(path))
    assert path.read_text(encoding="utf-8") == svg.sketch_to_svg(sheep[3])
