"""A small Python API for notebooks: load a trained run, encode, sample, get strokes / SVG / PNG.

Everything returns plain values: stroke-3 ``numpy`` arrays ``[N, 3]`` ``(dx, dy, pen_lifted)`` in
data units (what ``sample.py`` writes), latent codes ``[B, Z]``, SVG text, PNG bytes. It sits at
the top of the package (like the entry scripts) and adds no model code of its own: loading is
``load_trained_model``, encoding the model's own encoder (``retrieval.py``'s path), sampling the
compiled batched sampler.

Example (the README's; ``tests/test_api.py`` runs it)::

    import sketchtk.api as sk

    run = sk.load_run("runs/quickstart")              # a train.py --log_root
    refs, labels = run.test_sketches()                # real test drawings and their categories
    z = run.encode(refs[:5])                          # latent means, [5, z_size]
    drawn = run.sample(z, temperature=0.24, seed=0)   # 5 stroke-3 arrays
    prior = run.sample_prior(5, seed=1)               # z from the learned GMM (N(0, I) baselines)
    row = run.interpolate(refs[0], refs[-1], steps=8)
    open("drawn.svg", "w").write(sk.to_svg(drawn[0]))
    open("grid.png", "wb").write(sk.to_png(drawn + prior + row, ncols=8))
"""

import io
import os
import tempfile

import numpy as np

from sketchtk.render.grid import save_grid_png
from sketchtk.render.svg import sketch_to_svg


class SketchRun:
    """A trained sketch VAE run, ready to encode and sample.

    Args:
      model: the ``SketchVAE`` (best weights).
      config: the run's ``model_config.json`` dict.
      run_dir: where it was loaded from.
    """

    def __init__(self, model, config, run_dir):
        from sketchtk.sampling.sampler import Sampler
        self.model = model
        self.config = config
        self.run_dir = run_dir
        self.categories = tuple(config["categories"])
        self._sampler = Sampler(model)

    def __repr__(self):
        hp = self.model.hparams
        return (f"SketchRun({self.run_dir!r}, model={hp.model}, categories={list(self.categories)}, "
                f"z_size={hp.z_size})")

    def test_sketches(self, split="test", data_dir=None):
        """``(sketches, labels)``: a split of the run's data, stroke-3 in data units, category
        indices into ``self.categories``."""
        from sketchtk.sampling.generate import load_test_set
        data = load_test_set(self.config, data_dir, split=split)[split]
        scale = self.config["scale_factor"]
        sketches = []
        for s in data.sketches:
            s = np.array(s, np.float32)
            s[:, :2] *= scale
            sketches.append(s)
        return sketches, np.asarray(data.labels)

    def encode(self, sketches):
        """Latent means ``[N, Z]`` of stroke-3 sketches (data units) through the model's encoder."""
        from sketchtk.metrics.evaluate import encode_sketches
        return encode_sketches(self.model, [np.asarray(s, np.float32) for s in sketches])

    def sample(self, z, temperature=0.24, seed=0):
        """One stroke-3 sketch (data units) per row of ``z [B, Z]``."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.model.hparams.z_size:
            raise ValueError(f"z has shape {z.shape}; expected [B, {self.model.hparams.z_size}]")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: must be > 0")
        return self._sampler.sample(z, temperature, seed)

    def sample_prior(self, num, component=None, temperature=0.24, seed=0):
        """``num`` sketches with z from the prior: the learned GMM (all components by alpha, or
        ``component``) for RPCL-pix2seq, N(0, I) for the baselines."""
        z, _ = self.model.sample_prior(int(num), component=component, seed=seed)
        return self.sample(np.asarray(z), temperature, seed)

    def interpolate(self, a, b, steps=10, temperature=0.24, seed=0):
        """``steps`` sketches decoded along the straight line between the codes of sketches
        ``a`` and ``b`` (stroke-3, data units)."""
        za, zb = self.encode([a, b])
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        return self.sample((1.0 - t) * za[None] + t * zb[None], temperature, seed)


def load_run(run_dir, which="best"):
    """The run in ``run_dir`` (a ``train.py --log_root``) with its ``best`` or ``latest`` weights."""
    from sketchtk.training.trainer import load_trained_model
    model, config = load_trained_model(run_dir, which=which)
    return SketchRun(model, config, run_dir)


def to_svg(sketch, width=256, stroke_width=1.0):
    """SVG text of one stroke-3 sketch, fitted to a ``width`` square."""
    return sketch_to_svg(np.asarray(sketch, np.float32), width=width, stroke_width=stroke_width)


def to_png(sketches, ncols=10, cell=96, labels=None):
    """PNG bytes of a grid of stroke-3 sketches (one sketch alone is a one-cell grid)."""
    if isinstance(sketches, np.ndarray) and sketches.dtype != object and sketches.ndim == 2:
        sketches = [sketches]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grid.png")
        save_grid_png(list(sketches), path, ncols=ncols, cell=cell, labels=labels)
        with open(path, "rb") as f:
            return f.read()


def to_image(sketches, ncols=10, cell=96):
    """The grid as a ``PIL.Image`` (shows inline in Jupyter)."""
    from PIL import Image
    return Image.open(io.BytesIO(to_png(sketches, ncols=ncols, cell=cell)))
