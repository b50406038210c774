"""Training-curve pictures from history.csv (the GMM's active components over steps)."""

import os

import numpy as np
import pytest
from PIL import Image

from sketchtk.errors import DataError
from sketchtk.metrics.history_plot import plot_histories, read_history


def test_history_of_a_real_run_is_plotted_with_the_active_component_panel(smoke_run, tmp_path):
    history = read_history(os.path.join(smoke_run, "history.csv"))
    np.testing.assert_array_equal(history["step"], [1, 2, 3, 4, 5, 6])
    assert np.all(history["active_components"] == 4)  # smoke: 2 x 2 components, 6 steps
    out = str(tmp_path / "history.png")
    panels = plot_histories([history, history], out, labels=["a", "b"])
    assert panels[0] == "active_components" and "recon" in panels
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape[1] > image.shape[0] * 2 and (image < 128).mean() > 0.005  # lines drawn


def test_missing_or_empty_history_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="no such history file"):
        read_history(str(tmp_path / "history.csv"))
    (tmp_path / "history.csv").write_text("step,loss\n")
    with pytest.raises(DataError, match="no rows"):
        read_history(str(tmp_path / "history.csv"))


def test_importing_the_module_defines_no_global_flags():
    """train.py and the other entry points share absl's registry: a library import must not add
    flags there (a --log_root here broke train.py's own)."""
    import importlib

    from absl import flags

    import sketchtk.metrics.history_plot as module
    importlib.reload(module)
    assert "output" not in flags.FLAGS and "labels" not in flags.FLAGS
