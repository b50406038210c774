"""The README's first command, verbatim but for the run directory: it ends with visible sketches."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.data.npz_io import load_npz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_command():
    text = open(os.path.join(REPO, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    first = block.splitlines()[0]
    steps = [s.strip() for s in first.split("&&")]
    assert steps[0].startswith("pip install")
    return steps[1:]  # train.py ..., sample.py ... (the install is what .ci/run does)


@pytest.mark.slow
def test_readme_first_command_draws_visible_sketches(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for step in _first_command():
        args = step.replace("runs/quickstart", str(tmp_path / "quickstart")).split()
        assert args[0] == "python"
        proc = subprocess.run([sys.executable, *args[1:]], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "cycling" not in proc.stderr  # every category has the test sketches asked for
        assert "samples are empty" not in proc.stderr
        # TensorFlow's C++ lines (absl format, from .cc files); sketchtk's own absl lines stay
        assert not re.search(r"^[IWEF]\d{4} .*\.cc:\d+\] ", proc.stderr, re.M), proc.stderr[:2000]
        assert "UserWarning" not in proc.stderr, proc.stderr[-2000:]
        assert "\x1b[" not in proc.stdout + proc.stderr  # no ANSI codes in redirected output
    samples = load_npz(tmp_path / "quickstart" / "samples" / "samples.npz")
    strokes = samples["strokes"]
    drawn = [s for s in strokes if len(s) >= 2 and np.any(s[:-1, 2] < 0.5)]
    assert len(strokes) == 25 and len(drawn) >= 0.9 * len(strokes)
    assert os.path.getsize(tmp_path / "quickstart" / "samples" / "grid.png") > 1000
