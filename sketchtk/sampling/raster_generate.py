"""``run_raster_sampling``: ``sample.py``'s job for a ``raster_diffusion`` run (images, no strokes).

A ``model=raster_diffusion`` run (``sketchtk.models.raster_diffusion``, shortest-path diffusion of
48 x 48 renders) draws images, so it writes:

- ``<name>_<i>.png`` per sample (``<name>`` = the category when class-conditional, else
  ``uncond``), at the model's ``png_width``, white background, black ink;
- ``grid.png``: one row per category (up to 10 samples each, at most 100), or the first 100;
- ``samples.npz``: ``images`` (uint8 ``[N, W, W]``, white = 255, the renderer's convention),
  ``names``, ``labels`` (-1 unconditional), ``conditional``, ``seed``, ``sampler``, ``steps``,
  ``eta``, ``variance_strength``, ``guidance``, ``clip_x0``; no ``strokes``.
  ``retrieval.py`` scores it from the images (``sketchtk.metrics.evaluate``: Rec and FID /
  precision / recall; Ret does not apply).

The options that have no meaning for images are refused with one line each
(:func:`check_flags`): the latent ones (``--interpolate``, ``--component``, ``--temperature``,
``--std_scaling``), the stroke-diffusion applications with their options, ``--sampler=shortcut``
with its options, and ``--show_process``.
"""

import os

import numpy as np
from absl import logging
from PIL import Image

from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.render.grid import grid_order
from sketchtk.sampling.diffusion_apps import APP_FLAGS, APP_OPTION_FLAGS, SHORTCUT_FLAGS
from sketchtk.sampling.generate import file_stems
from sketchtk.training.checkpoints import MODEL_CONFIG, read_json, run_model

MODEL = "raster_diffusion"
GRID_COLUMNS = 10
_STROKE_APPS = "the diffusion applications redraw stroke sequences"
_SHORTCUT = "r-Shortcut's regressor reads stroke sequences"
# sample.py flags with no meaning for an image model: flag -> why
NOT_FOR_IMAGES = {
    "interpolate": "a latent interpolation needs a latent-variable model",
    "component": "GMM components belong to a latent-variable model",
    "temperature": "the temperature scales a stroke decoder's distribution",
    "std_scaling": "the temperature scales a stroke decoder's distribution",
    "show_process": "the process pictures draw stroke sequences",
    **{name: _STROKE_APPS for name in APP_FLAGS + APP_OPTION_FLAGS},
    **{name: _SHORTCUT for name in SHORTCUT_FLAGS},
}


def is_raster_run(model_dir):
    """True when ``model_dir``'s ``model_config.json`` names ``model=raster_diffusion``."""
    return run_model(model_dir) == MODEL  # None (not a run directory): the other paths report it


def check_flags(flags, model_dir):
    """ConfigError naming the first ``sample.py`` flag given that has no meaning for images."""
    from sketchtk.errors import ConfigError
    for name, why in NOT_FOR_IMAGES.items():
        if name in flags and flags[name].present:
            raise ConfigError(f"--{name}: does not apply to {model_dir}, a {MODEL} run "
                             f"(it samples images; {why})")
    if flags.sampler == "shortcut":
        raise ConfigError(f"--sampler=shortcut: does not apply to {model_dir}, a {MODEL} run "
                          f"({_SHORTCUT}); use ddpm or ddim")


def run_from_flags(flags):
    """``sample.py``'s flags -> :func:`run_raster_sampling` (flags checked first)."""
    check_flags(flags, flags.model_dir)
    return run_raster_sampling(
        flags.model_dir, flags.output_dir, flags.num_per_category, flags.conditional,
        sampler=flags.sampler, steps=flags.steps, eta=flags.eta,
        variance_strength=flags.variance_strength, guidance=flags.guidance, seed=flags.seed,
        batch_size=flags.batch_size, write_files=flags.write_files)


def sample_names(labels, categories):
    """Per-sample names: the category, ``uncond`` for label -1 (files: ``generate.file_stems``)."""
    return [categories[label] if label >= 0 else "uncond" for label in labels]


def save_image_grid(images, path, ncols=GRID_COLUMNS, gap=2):
    """uint8 images ``[N, W, W]`` in a white sheet, ``ncols`` per row, ``gap`` px apart."""
    images = np.asarray(images)
    rows = max(1, -(-len(images) // ncols))
    w = images.shape[1]
    sheet = np.full((rows * (w + gap), ncols * (w + gap)), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        sheet[r * (w + gap):r * (w + gap) + w, c * (w + gap):c * (w + gap) + w] = img
    Image.fromarray(sheet).save(path)


def run_raster_sampling(model_dir, output_dir, num_per_category=10, conditional=True,
                        sampler="ddpm", steps=None, eta=0.0, variance_strength=1.0,
                        guidance=1.0, seed=0, batch_size=100, write_files=True, clip_x0=True):
    """Sample images from a trained ``raster_diffusion`` run and write them (module docstring).

    Args:
      model_dir: a ``train.py`` run directory of a ``raster_diffusion`` model.
      output_dir: where to write.
      num_per_category: class-conditional: images per category; unconditional:
        ``num_per_category * num_categories`` in all.
      conditional: class-conditional (needs ``class_conditional=True`` in training).
      sampler: ``ddpm`` or ``ddim``; steps: sampling steps (None = T; fewer = respaced).
      eta: DDIM noise; variance_strength: DDPM's s; guidance: classifier-free scale.
      seed: makes the images reproducible.
      batch_size: images denoised at once.
      write_files: False skips the per-sample PNGs (``samples.npz`` and ``grid.png`` stay).
      clip_x0: clip the predicted x0 to [-1, 1] at every step (``RasterDiffusion.generate``).

    Returns:
      dict with ``images`` (uint8 ``[N, W, W]``), ``names``, ``labels``.
    """
    config = read_json(os.path.join(model_dir, MODEL_CONFIG))  # checks before the model loads
    hp, categories = config["hparams"], list(config["categories"])
    if hp.get("model") != MODEL:
        raise ValueError(f"{model_dir}: a {hp.get('model')} run, not {MODEL}")
    from sketchtk.sampling.diffusion_generate import check_sampling_options, sample_labels
    check_sampling_options(model_dir, hp, conditional, num_per_category, batch_size, steps,
                           sampler)
    from sketchtk.models.raster_diffusion import x0_to_images
    from sketchtk.training.trainer import load_trained_model
    model, _ = load_trained_model(model_dir)
    labels = sample_labels(len(categories), num_per_category, conditional)
    total = len(labels)
    os.makedirs(output_dir, exist_ok=True)
    logging.info("sampling %d images (%s, steps=%s, conditional=%s, guidance=%.2f)", total,
                 sampler, steps or hp["diffusion_steps"], conditional, guidance)
    images = []
    for start in range(0, total, batch_size):
        lab = labels[start:start + batch_size]
        x0, _ = model.generate(len(lab), lab if conditional else None, sampler, steps, eta,
                               seed=seed * 100003 + start, clip_x0=clip_x0,
                               variance_strength=variance_strength, guidance=guidance)
        images.append(x0_to_images(x0))
    images = np.concatenate(images)
    names = sample_names(labels, categories)
    if write_files:
        for stem, image in zip(file_stems(names), images):
            Image.fromarray(image).save(os.path.join(output_dir, f"{stem}.png"))
    bundle = {"images": images, "names": np.array(names),
              "labels": labels, "conditional": np.bool_(conditional), "seed": np.int64(seed),
              "sampler": np.array(sampler), "steps": np.int64(steps or hp["diffusion_steps"]),
              "eta": np.float32(eta), "variance_strength": np.float32(variance_strength),
              "guidance": np.float32(guidance), "clip_x0": np.bool_(clip_x0)}
    save_npz_atomic(os.path.join(output_dir, "samples.npz"), bundle, compressed=False)
    ncols = min(GRID_COLUMNS, num_per_category) if conditional else GRID_COLUMNS
    save_image_grid(images[grid_order(labels, len(categories), ncols)],
                    os.path.join(output_dir, "grid.png"), ncols)
    return {"images": images, "names": bundle["names"], "labels": labels}
