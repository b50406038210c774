"""svg.CairoDirectRenderer / renderer="cairo_direct": cairosvg's pixels, drawn without SVG."""

import glob
import os

import numpy as np
import pytest

from sketchtk.data import quickdraw
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.render import raster, svg

TESTS = os.path.dirname(os.path.dirname(__file__))
DEFAULT_DATA = os.path.join(os.path.dirname(TESTS), "sketchtk", "data", "default")


@pytest.fixture(scope="module")
def drawings():
    """Real drawings: 20 per embedded QuickDraw category, the ndjson fixtures, 20 sheep."""
    out = []
    for path in sorted(glob.glob(os.path.join(DEFAULT_DATA, "*.npz"))):
        out += list(load_stroke_npz(path)["test"][:20])
    for path in sorted(glob.glob(os.path.join(TESTS, "fixtures", "quickdraw", "simplified",
                                              "*.ndjson"))):
        out += [s for _, _, s in quickdraw.iter_stroke3(path)]
    out += list(load_stroke_npz(os.path.join(TESTS, "fixtures", "sheep_small.npz"))["train"][:20])
    return out


@pytest.fixture(scope="module")
def cairosvg_images(drawings):
    return np.stack([svg.render_cairo(s) for s in drawings])


def test_direct_is_pixel_identical_to_cairosvg_on_real_drawings(drawings, cairosvg_images):
    images = svg.CairoDirectRenderer(48).render_many(drawings)   # integer data: vectorised fit
    assert images.shape == cairosvg_images.shape and images.dtype == np.uint8
    assert (images < 128).any()                                  # something was drawn
    np.testing.assert_array_equal(images, cairosvg_images)


def test_direct_is_identical_for_float_sketches_one_by_one(drawings):
    renderer = svg.CairoDirectRenderer(32, margin=2.0)
    for sketch in drawings[::9]:
        scaled = np.asarray(sketch, np.float64) * [0.37, 0.37, 1.0]   # non-integer offsets
        np.testing.assert_array_equal(renderer.render(scaled),
                                      svg.render_cairo(scaled, width=32, margin=2.0))
        np.testing.assert_array_equal(renderer.render_many([scaled])[0],
                                      svg.render_cairo(scaled, width=32, margin=2.0))


def test_direct_draws_blank_for_empty_and_single_point_sketches():
    blank = svg.CairoDirectRenderer(48).render_many(
        [np.zeros((0, 3), np.int16), np.array([[3, 4, 1]], np.int16)])
    assert (blank == 255).all()


def test_render_sketches_cairo_direct_threads_keep_order(drawings, cairosvg_images):
    images = raster.render_sketches(drawings, 48, renderer="cairo_direct", batch_size=16,
                                    workers=2)
    np.testing.assert_array_equal(images, cairosvg_images)
