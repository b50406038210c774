"""Training curves from ``history.csv``: losses and the GMM's active-component count over steps.

``python -m sketchtk.metrics.history_plot --log_root=RUN [--log_root=RUN2 ...] --output=PNG``
draws one panel per quantity (active components, reconstruction loss, KL, validation
reconstruction when logged) with one line per run, labelled by the run folder's name (or
``--labels``). Matplotlib through ``Figure`` + the Agg canvas (no ``pyplot``, no display).
"""

import csv
import math
import os

import numpy as np
from absl import app, flags, logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sketchtk.errors import DataError

# (column in history.csv, panel title, log scale)
PANELS = (("active_components", "active GMM components (alpha > 1e-3)", False),
          ("recon", "training reconstruction loss L_R", True),
          ("kl", "latent term (KL)", True),
          ("val_recon", "validation reconstruction (masked)", True))


def read_history(path):
    """``history.csv`` as a dict of float arrays by column; missing cells are NaN."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such history file (is this a train.py --log_root?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path}: history has no rows yet")
    columns = {}
    for key in rows[0]:
        values = []
        for row in rows:
            cell = row.get(key, "")
            try:
                values.append(float(cell))
            except (TypeError, ValueError):
                values.append(math.nan)
        columns[key] = np.asarray(values)
    if "step" not in columns:
        raise DataError(f"{path}: no 'step' column")
    return columns


def plot_histories(histories, output, labels=None):
    """One panel per quantity in ``PANELS`` present in any history, one line per run.

    Args:
      histories: list of ``read_history`` dicts.
      output: PNG path (written atomically).
      labels: one legend label per history.

    Returns:
      the list of panel columns drawn.
    """
    labels = labels or [f"run {i}" for i in range(len(histories))]
    panels = [p for p in PANELS if any(p[0] in h and np.isfinite(h[p[0]]).any() for h in histories)]
    if not panels:
        raise DataError("none of the histories has a column to plot "
                        f"({', '.join(p[0] for p in PANELS)})")
    fig = Figure(figsize=(4.2 * len(panels), 3.4), dpi=110)
    FigureCanvasAgg(fig)
    for i, (key, title, log_scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for hist, label in zip(histories, labels):
            if key not in hist:
                continue
            ok = np.isfinite(hist[key])
            if ok.any():
                ax.plot(hist["step"][ok], hist[key][ok], label=label, lw=1.4,
                        marker="o" if ok.sum() < 15 else None, ms=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if log_scale and all((h[key][np.isfinite(h[key])] > 0).all() for h in histories if key in h):
            ax.set_yscale("log")
        if key == "active_components":
            ax.set_ylim(bottom=0)
            ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    tmp = f"{output}.tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, output)
    logging.info("wrote %s (%s)", output, ", ".join(p[0] for p in panels))
    return [p[0] for p in panels]


def _define_flags():
    """The command-line flags, defined only when run as a program (importing this module must
    not add flags to the global absl registry that train.py and the others share)."""
    flags.DEFINE_multi_string("log_root", None, "A train.py run directory (repeat for several).")
    flags.DEFINE_list("labels", None, "Legend labels, one per --log_root (default: folder names).")
    flags.DEFINE_string("output", "history.png", "Where to write the PNG.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    roots = flags.FLAGS.log_root or []
    if not roots:
        raise app.UsageError("--log_root is required")
    labels = flags.FLAGS.labels or [os.path.basename(os.path.normpath(r)) for r in roots]
    if len(labels) != len(roots):
        raise app.UsageError(f"--labels has {len(labels)} names for {len(roots)} runs")
    histories = [read_history(os.path.join(r, "history.csv")) for r in roots]
    plot_histories(histories, flags.FLAGS.output, labels)


if __name__ == "__main__":
    from sketchtk import cli
    _define_flags()
    cli.run(main, prog="history_plot")
