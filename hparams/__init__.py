"""Presets as code. ``get_preset(name)`` returns an ``HParams``; ``PRESETS`` lists the names.

- ``paper``: the RPCL-pix2seq paper's full size (HyperLSTM 2048, batch 128); GPU-sized.
- ``default``: CPU-sized (HyperLSTM 512, batch 64) on the embedded QuickDraw subset.
- ``sketch_rnn``, ``sketch_pix2seq``: the baselines with magenta's conventions (averaged losses,
  KL free bits, annealed KL weight); ``sketch_rnn_default``, ``sketch_pix2seq_default``: the same
  at the ``default`` preset's size, for like-for-like comparisons on a CPU.
- ``smoke``: a tiny model that trains in seconds, for tests.
- ``quickstart``: the README's first run (about 2 minutes on 2 CPU cores, visible sketches).
- ``chirodiff``, ``sketchknitter``: stroke diffusion as in those releases (CPU-sized);
  ``diffusion_smoke``: a tiny stroke-diffusion model for tests.
- ``star_chirodiff``, ``spd_chirodiff`` (and ``star_smoke``, ``spd_smoke`` for tests): the
  star-shaped and shortest-path processes (issue 12); ``star_polar_chirodiff``: star-shaped with
  von Mises directions and Gaussian step lengths; ``spd_raster`` (``spd_raster_smoke``):
  shortest-path diffusion of 48 x 48 renders (``model=raster_diffusion``).
"""

from sketchtk.config import HParams
from sketchtk.errors import ConfigError

from hparams import presets

PRESETS = {
    "paper": presets.paper,
    "default": presets.default,
    "smoke": presets.smoke,
    "quickstart": presets.quickstart,
    "sketch_rnn": presets.sketch_rnn,
    "sketch_pix2seq": presets.sketch_pix2seq,
    "sketch_rnn_default": presets.sketch_rnn_default,
    "sketch_pix2seq_default": presets.sketch_pix2seq_default,
    "chirodiff": presets.chirodiff,
    "sketchknitter": presets.sketchknitter,
    "diffusion_smoke": presets.diffusion_smoke,
    "star_smoke": presets.star_smoke,
    "spd_smoke": presets.spd_smoke,
    "star_chirodiff": presets.star_chirodiff,
    "star_polar_chirodiff": presets.star_polar_chirodiff,
    "spd_chirodiff": presets.spd_chirodiff,
    "spd_raster_smoke": presets.spd_raster_smoke,
    "spd_raster": presets.spd_raster,
}


def get_preset(name):
    """The preset called ``name``; a bad name raises ConfigError listing the presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]().validated()


__all__ = ["HParams", "PRESETS", "get_preset"]
