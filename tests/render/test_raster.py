"""Tests of sketchtk.render.raster: the fast TF/XLA renderer against the cairo reference.

XLA compiles one executable per padded shape (~2 s each on 2 cores), so the tests reuse a few
shapes: the fixture's splits rendered as whole jobs, and tiny sketches (one 8-sketch bucket).
"""


import numpy as np
import pytest
import tensorflow as tf
from absl import logging

from sketchtk.render import raster, svg


TINY = {  # all tiny: one padded shape for every case below
    "empty": np.zeros((0, 3), np.float32),
    "single point": np.array([[5, 5, 1]], np.float32),
    "single point, pen down": np.array([[5, 5, 0]], np.float32),
    "zero extent": np.array([[3, 3, 0], [0, 0, 0], [0, 0, 1]], np.float32),
    "all lifted": np.array([[0, 0, 1], [10, 0, 1], [0, 10, 1]], np.float32),
    "horizontal": np.array([[0, 0, 0], [10, 0, 1]], np.float32),
    "down then right": np.array([[0, 0, 0], [0, 10, 0], [10, 0, 1]], np.float32),
    "diagonal": np.array([[0, 0, 0], [10, 7, 1]], np.float32),
}


@pytest.fixture(scope="module")
def sheep(sheep_sketches):
    return sheep_sketches


@pytest.fixture(scope="module")
def sheep_fast(sheep):
    return raster.render_sketches(sheep)


@pytest.fixture(scope="module")
def tiny_fast():
    return dict(zip(TINY, raster.render_sketches(list(TINY.values()))))


def _ragged(sketches):
    return tf.ragged.constant([s.tolist() for s in sketches], ragged_rank=1, dtype=tf.float32,
                              row_splits_dtype=tf.int64)


def test_fast_agrees_with_cairo_on_real_drawings(sheep, sheep_fast):
    cairo = raster.render_sketches(sheep, renderer="cairo", workers=1)
    assert sheep_fast.shape == cairo.shape == (96, 48, 48)
    assert sheep_fast.dtype == cairo.dtype == np.uint8
    diff = np.abs(sheep_fast.astype(np.int32) - cairo.astype(np.int32))
    logging.info("fast vs cairo on %d sheep: mean %.3f/255, max %d/255", len(sheep), diff.mean(),
                 diff.max())
    assert diff.mean() <= 2.0, f"mean |diff| {diff.mean():.3f}/255 (max {diff.max()})"
    # ink totals agree per sketch too (a misplaced or missing stroke would not)
    ink_fast = (255 - sheep_fast.astype(np.float64)).sum(axis=(1, 2))
    ink_cairo = (255 - cairo.astype(np.float64)).sum(axis=(1, 2))
    np.testing.assert_allclose(ink_fast, ink_cairo, rtol=0.15)


def test_degenerate_sketches_render_blank(tiny_fast):
    for name in ("empty", "single point", "single point, pen down", "zero extent", "all lifted"):
        image = tiny_fast[name]
        assert image.shape == (48, 48) and image.dtype == np.uint8
        assert image.min() == 255, name
    coverage = raster.render_coverage(_ragged(list(TINY.values())))
    assert np.all(np.isfinite(coverage.numpy()))
    assert 0.0 <= float(tf.reduce_min(coverage)) and float(tf.reduce_max(coverage)) <= 1.0


def test_orientation_matches_svg(tiny_fast):
    # horizontal line at mid-height (y = 24): rows 23 and 24 half covered, nothing else
    image = tiny_fast["horizontal"]
    assert np.all(image[23:25, 2:46] == 127)
    assert image[:23].min() == 255 and image[25:].min() == 255
    # y grows downward as in SVG: the horizontal part of "down then right" is at the bottom
    image = tiny_fast["down then right"]
    assert image[46, 10:40].max() < 255 and image[1, 10:40].min() == 255
    assert image[10:40, 1].max() < 255 and image[10:40, 46].min() == 255
    # axis-aligned lines are exact; a diagonal's butt ends are approximated (a few /255 there)
    for name, tolerance in (("horizontal", 0), ("down then right", 0), ("diagonal", 16)):
        worst = int(np.abs(tiny_fast[name].astype(int) - svg.render_cairo(TINY[name])).max())
        assert worst <= tolerance, f"{name}: max |diff| {worst}/255"


def test_render_batch_eager_function_and_dataset_map(tiny_fast):
    sketches = list(TINY.values())
    expected = np.stack([tiny_fast[name] for name in TINY])
    eager = raster.render_batch(_ragged(sketches))
    assert eager.dtype == tf.uint8 and eager.shape == (len(sketches), 48, 48)
    np.testing.assert_array_equal(eager.numpy(), expected)

    compiled = tf.function(raster.render_batch, input_signature=[raster.RAGGED_SIGNATURE])
    np.testing.assert_array_equal(compiled(_ragged(sketches)).numpy(), expected)

    dataset = tf.data.Dataset.from_tensor_slices(_ragged(sketches)).batch(4)
    dataset = dataset.map(raster.render_batch, num_parallel_calls=2)
    mapped = np.concatenate([images.numpy() for images in dataset])
    np.testing.assert_array_equal(mapped, expected)


def test_dense_input_and_empty_batch():
    dense = tf.constant([[[0, 0, 0], [10, 0, 1], [0, 0, 0]]], tf.float32)  # zero-padded row
    images = raster.render_batch(dense)
    assert images.shape == (1, 48, 48) and int(tf.reduce_min(images)) == 127
    empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0, 3]), tf.zeros([0], tf.int64))
    assert raster.render_batch(empty).shape == (0, 48, 48)


def test_render_sketches_batching_does_not_change_images(sheep, sheep_fast):
    # uneven batches, one thread, reversed order: same images, still index-aligned
    again = raster.render_sketches(sheep[::-1], batch_size=40, workers=1)
    np.testing.assert_array_equal(again[::-1], sheep_fast)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"allowed: \['cairo', 'cairo_direct', 'fast'\]"):
        raster.render_sketches([TINY["horizontal"]], renderer="pil")
    with pytest.raises(ValueError, match="batch_size"):
        raster.render_sketches([TINY["horizontal"]], batch_size=0)
    with pytest.raises(ValueError, match="margin"):
        raster.render_batch(_ragged([TINY["horizontal"]]), margin=-1.0)
    assert raster.render_sketches([]).shape == (0, 48, 48)


def test_coverage_table_is_exact_for_axis_aligned_lines():
    table = raster.across_coverage_table()
    centre = raster._LUT_CENTRE
    distances = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    columns = centre + np.round(distances * raster._LUT_SCALE).astype(int)
    np.testing.assert_allclose(table[0, columns], 1.0 - distances, atol=1e-6)
    # a 45-degree line through the pixel centre covers 1 - 2 corner triangles of area 0.043
    assert table[-1, centre] == pytest.approx(1.0 - (1.0 - np.sqrt(0.5)) ** 2, abs=1e-4)


def _line_cases():
    """Single strokes that stress the per-segment candidate windows: long lines at many angles
    (each spans the canvas, so the fit puts its ends on the margin), lines along the canvas edges
    (a closed square: its sides lie on the fitted box) and a zigzag of short segments."""
    cases = {}
    for degrees in (0, 5, 20, 30, 40, 45, 50, 60, 70, 85, 90, 135, 160, 200, 300):
        angle = np.radians(degrees)
        cases[f"line {degrees} deg"] = np.array(
            [[0, 0, 0], [100 * np.cos(angle), 100 * np.sin(angle), 1]], np.float32)
    cases["square on the box edge"] = np.array(
        [[0, 0, 0], [40, 0, 0], [0, 40, 0], [-40, 0, 0], [0, -40, 1]], np.float32)
    zigzag = [[0, 0, 0]] + [[6, 4 * (-1) ** i, 0] for i in range(12)]  # turns < 90 degrees
    zigzag[-1][2] = 1
    cases["zigzag"] = np.array(zigzag, np.float32)
    return cases


@pytest.mark.parametrize("width, margin", [(48, 1.5), (17, 0.0)])
def test_candidate_windows_miss_no_ink(width, margin):
    # Every pixel the cairo path inks must be inked by the fast path too: a candidate window
    # that skipped a column or a row of a segment (long diagonals, strokes on the border with
    # no margin, a small odd canvas) would leave a white pixel where cairo has ink.
    cases = _line_cases()
    fast = raster.render_sketches(list(cases.values()), width, margin=margin, workers=1)
    cairo = raster.render_sketches(list(cases.values()), width, renderer="cairo_direct",
                                   margin=margin, workers=1)
    for name, got, want in zip(cases, fast.astype(int), cairo.astype(int)):
        ink_got, ink_want = 255 - got, 255 - want
        assert ink_want.sum() > 0, name
        # no pixel cairo inks visibly (>= 8/255; the windows leave at most 1/255 blank) stays
        # white, and pixels with real ink get at least a third of it
        missed = ((ink_want >= 8) & (ink_got == 0)) | ((ink_want >= 40) & (ink_got < ink_want / 3))
        assert not missed.any(), f"{name}: {int(missed.sum())} inked pixels left white"
        assert np.abs(got - want).mean() <= 2.0, name
        np.testing.assert_allclose(ink_got.sum(), ink_want.sum(), rtol=0.1, err_msg=name)
