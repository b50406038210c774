"""Tests of sketchtk.render.grid: PNG and SVG grids of real sketches."""

import os
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from PIL import Image

from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.render import grid

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def sheep():
    return load_stroke_npz(FIXTURE)["train"][:13]


def test_png_grid_size_lines_and_ink(tmp_path, sheep):
    path = str(tmp_path / "out" / "grid.png")
    size = grid.save_grid_png(sheep, path, ncols=5, cell=64)
    with Image.open(path) as image:
        assert image.size == size == (5 * 64, 3 * 64)
        assert image.mode == "L"
        pixels = np.asarray(image)
    assert np.all(pixels[:, 64] == 200) and np.all(pixels[128, :] == 200)  # grid lines
    for i in range(13):  # every cell holds a drawing
        row, col = divmod(i, 5)
        assert pixels[row * 64 + 2:(row + 1) * 64 - 2, col * 64 + 2:(col + 1) * 64 - 2].min() < 128
    # the two unused cells of the last row stay blank
    for col in (3, 4):
        assert pixels[128 + 2:, col * 64 + 2:(col + 1) * 64 - 2].min() == 255


def test_png_grid_with_labels(tmp_path, sheep):
    path = str(tmp_path / "labelled.png")
    size = grid.save_grid_png(sheep[:4], path, ncols=4, cell=48, labels=list("abcd"))
    with Image.open(path) as image:
        assert image.size == size == (4 * 48, 48 + grid._LABEL_HEIGHT)
        strip = np.asarray(image)[48:, :]
    assert strip.min() < 128, "label text is drawn in the strip under the cells"
    with pytest.raises(ValueError, match="labels"):
        grid.save_grid_png(sheep[:4], path, labels=["only one"])


def test_svg_grid_has_one_path_per_sketch(tmp_path, sheep):
    path = str(tmp_path / "grid.svg")
    size = grid.save_grid_svg(sheep, path, ncols=5, cell=64, labels=[f"s{i}" for i in range(13)])
    root = ElementTree.parse(path).getroot()
    assert (root.get("width"), root.get("height")) == (str(size[0]), str(size[1]))
    assert size == (5 * 64, 3 * (64 + grid._LABEL_HEIGHT))
    assert len(root.findall(f".//{SVG_NS}path")) == 13
    assert [t.text for t in root.findall(f".//{SVG_NS}text")] == [f"s{i}" for i in range(13)]


def test_grid_order_gives_a_row_per_category_and_the_first_samples_when_unconditional():
    labels = np.repeat(np.arange(3), 12)
    order = grid.grid_order(labels, 3)
    assert len(order) == 30 and list(labels[order]) == [0] * 10 + [1] * 10 + [2] * 10
    assert list(order[:3]) == [0, 1, 2] and order[10] == 12  # the first of each category
    # a category without samples adds no row; the limit caps the total
    sparse = np.array([2, 0, 2])
    assert list(grid.grid_order(sparse, 3)) == [1, 0, 2]
    assert len(grid.grid_order(np.repeat(np.arange(20), 10), 20)) == 100
    np.testing.assert_array_equal(grid.grid_order(np.full(150, -1), 5), np.arange(100))
    assert len(grid.grid_order(np.zeros(0, np.int64), 0)) == 0
