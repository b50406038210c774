"""Tests of the seq2png job (sketchtk.render.seq2png) and its flag-parsing entry point."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.errors import ConfigError, DataError
from sketchtk.render import raster
from sketchtk.render.seq2png import parse_categories, run_seq2png

TESTS = os.path.dirname(os.path.dirname(__file__))
FIXTURE = os.path.join(TESTS, "fixtures", "sheep_small.npz")
REPO = os.path.dirname(TESTS)


@pytest.fixture()
def input_dir(tmp_path):
    """Two categories (copies of the real sheep fixture) in a temporary directory."""
    directory = tmp_path / "strokes"
    directory.mkdir()
    for name in ("bee", "bus"):
        shutil.copy(FIXTURE, directory / f"{name}.npz")
    return str(directory)


def test_seq2png_end_to_end(input_dir, tmp_path):
    out = str(tmp_path / "png")
    counts = run_seq2png(input_dir, out, ["bee"], png_width=48)
    assert counts == {"bee": {"train": 64, "valid": 16, "test": 16}}
    assert sorted(os.listdir(out)) == ["bee_png.npz"]  # atomic write: no temporary left
    strokes = load_stroke_npz(FIXTURE)
    with np.load(os.path.join(out, "bee_png.npz")) as images:
        assert sorted(images.keys()) == ["test", "train", "valid"]
        for split in ("train", "valid", "test"):
            assert images[split].shape == (len(strokes[split]), 48, 48)
            assert images[split].dtype == np.uint8
        # alignment: re-rendering sketch i (here in another order and batching) gives image i
        picks = [37, 0, 63, 12]
        again = raster.render_sketches([strokes["train"][i] for i in picks], batch_size=3)
        np.testing.assert_array_equal(again, images["train"][picks])
        np.testing.assert_array_equal(raster.render_sketches(strokes["test"]), images["test"])


def test_seq2png_cairo_renderer(input_dir, tmp_path):
    out = str(tmp_path / "png")
    run_seq2png(input_dir, out, "bus", png_width=48, renderer="cairo")
    with np.load(os.path.join(out, "bus_png.npz")) as images:
        assert images["valid"].shape == (16, 48, 48)
        fast = raster.render_sketches(load_stroke_npz(FIXTURE)["valid"], width=48)
        assert np.abs(images["valid"].astype(int) - fast.astype(int)).mean() <= 2.0


def test_missing_category_names_path_and_lists_present(input_dir, tmp_path):
    with pytest.raises(DataError) as error:
        run_seq2png(input_dir, str(tmp_path / "png"), ["bee", "cat"])
    message = str(error.value)
    assert os.path.join(input_dir, "cat.npz") in message
    assert "['bee', 'bus']" in message
    assert not os.path.exists(tmp_path / "png"), "nothing is rendered before all inputs exist"
    with pytest.raises(ConfigError):
        run_seq2png(input_dir, str(tmp_path / "png"), [])
    with pytest.raises(ValueError, match="allowed"):
        run_seq2png(input_dir, str(tmp_path / "png"), ["bee"], renderer="pil")


@pytest.mark.parametrize("values, expected", [
    (["bee,bus"], ["bee", "bus"]),
    (["bee", "bus"], ["bee", "bus"]),                    # bash-expanded {'bee','bus'}
    (["{'bee','bus'}"], ["bee", "bus"]),                 # unexpanded brace form
    (['["bee", "bus"]'], ["bee", "bus"]),
    ([" bee , ,bus", "bee"], ["bee", "bus"]),
    ("cat", ["cat"]),
    (None, []),
])
def test_parse_categories(values, expected):
    assert parse_categories(values) == expected


def test_command_line_brace_form(input_dir, tmp_path):
    out = str(tmp_path / "cli")
    # bash expands the README's brace form into repeated flags: --categories=bee --categories=bus
    command = (f"{sys.executable} seq2png.py --input_dir={input_dir} --output_dir={out} "
               "--png_width=32 --categories={'bee','bus'}")
    result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["bee_png.npz", "bus_png.npz"]
    with np.load(os.path.join(out, "bus_png.npz")) as images:
        assert images["train"].shape == (64, 32, 32)
