"""``run_sampling``: the job behind ``sample.py`` (conditional / unconditional / interpolation).

Files written to ``output_dir`` (the reference's names, plus a bundle and pictures):
- per sample ``<name>_<i>.svg``, ``<name>_<i>.png`` (black on white), ``code_<name>_<i>.npy``
  (the latent code used), ``gau_idx_<name>_<i>.npy`` (the GMM component: the posterior's argmax for
  conditional samples, the drawn component for unconditional ones, -1 without a GMM); ``<name>``
  is the category for conditional samples and ``uncond`` for unconditional ones;
- ``samples.npz``: ``strokes`` (object array of stroke-3 in data units), ``names``, ``labels``,
  ``codes``, ``components``, ``ref_index`` (index of the reference in the pooled test set, -1 when
  unconditional), ``conditional``, ``temperature``, ``seed``;
- ``grid.png`` / ``grid.svg``: up to 10 samples per row for a quick look;
- with ``interpolate=(a, b)``: ``interpolation.png`` / ``.svg``, a row from test sketch a to b.
"""

import os
import time

import numpy as np
from absl import logging

from sketchtk.data import strokes as stroke_ops
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.data.pipeline import make_dataset
from sketchtk.render.grid import grid_order, save_grid_png, save_grid_svg
from sketchtk.render.raster import render_sketches
from sketchtk.render.svg import save_svg
from sketchtk.sampling.sampler import Sampler
from sketchtk.training.trainer import load_trained_model

PNG_WIDTH = 96


def load_test_set(config, data_dir=None, split="test", splits=None):
    """The ``split`` (or every one of ``splits``, in one read of each file) of the model's
    categories, normalised with the model's scale factor."""
    hp_cap = config["max_seq_len"]
    return load_sketch_data(data_dir or config.get("data_dir"), config["categories"],
                            max_seq_len=hp_cap, scale_factor=config["scale_factor"],
                            splits=tuple(splits or (split,)))


def encode_split(model, data, split="test", batch_size=256):
    """Latent means ``[N, Z]`` of every sketch of a split (in order)."""
    ds = make_dataset(data, split, model.hparams, training=False, batch_size=batch_size)
    codes = [model.encode(batch, training=False)[0].numpy() for batch in ds]
    return np.concatenate(codes, axis=0)


def component_of(model, z):
    """Most probable GMM component per code (``-1`` for models without a GMM)."""
    if model.gmm is None:
        return np.full(len(z), -1, np.int32)
    return np.argmax(model.gmm.log_posterior(z).numpy(), axis=1).astype(np.int32)


def choose_references(labels, num_per_category, num_categories, seed):
    """Indices into the pooled test set: ``num_per_category`` per category, seeded.

    With fewer test sketches than asked, every one is used and the list cycles (logged).
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_categories):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            continue
        if num_per_category <= len(idx):
            pick = rng.permutation(idx)[:num_per_category]
        else:
            logging.warning("category %d has %d test sketches < %d asked: cycling", c, len(idx),
                            num_per_category)
            pick = np.resize(idx, num_per_category)
        chosen.append(pick)
    return np.concatenate(chosen)


def file_stems(names):
    """``sample.py``'s per-sample file names: ``<name>_<i>``, numbered from 0 per name in order."""
    counters, stems = {}, []
    for name in names:
        i = counters.get(name, 0)
        counters[name] = i + 1
        stems.append(f"{name}_{i}")
    return stems


def _write_sample_files(output_dir, sketches, names, codes, components):
    images = render_sketches(sketches, width=PNG_WIDTH)
    from PIL import Image
    for sketch, stem, code, comp, image in zip(sketches, file_stems(names), codes, components,
                                               images):
        save_svg(sketch, os.path.join(output_dir, stem + ".svg"))
        Image.fromarray(image).save(os.path.join(output_dir, stem + ".png"))
        np.save(os.path.join(output_dir, f"code_{stem}.npy"), code)
        np.save(os.path.join(output_dir, f"gau_idx_{stem}.npy"), np.int32(comp))


def run_sampling(model_dir, output_dir, num_per_category=300, conditional=True, data_dir=None,
                 temperature=0.24, component=None, seed=0, batch_size=100, interpolate=None,
                 write_files=True, std_scaling="tau", diffusion=None):
    """Generate sketches from a trained model and write them (see the module docstring).

    Args:
      model_dir: a ``train.py`` run directory.
      output_dir: where to write.
      num_per_category: conditional: samples per category (each from one test reference);
        unconditional: ``num_per_category * num_categories`` samples in all.
      conditional: z = encoder mean of a reference test image; else z from the learned prior.
      data_dir: test data (default: the one the model was trained on).
      temperature: sampling temperature tau.
      component: unconditional only: draw every z from this GMM component (default: by alpha).
      seed: makes the references, codes and strokes reproducible.
      batch_size: sketches decoded at once.
      interpolate: optional ``(a, b)`` pooled test indices for a latent interpolation row.
      write_files: False skips the per-sample files (samples.npz and grids are still written).
      std_scaling: ``"tau"``: the temperature scales the offset std (the reference codes);
        ``"sqrt_tau"``: its square root does (the papers). See ``sketchtk.sampling.sampler``.
      diffusion: for a ``stroke_diffusion`` run, keyword arguments of
        ``sketchtk.sampling.diffusion_generate.run_diffusion_sampling`` (sampler, steps, eta,
        variance_strength, guidance, show_process); such runs are dispatched there.

    Returns:
      dict with ``strokes``, ``names``, ``labels``, ``codes``, ``components``, ``ref_index``.
    """
    from sketchtk.sampling import diffusion_generate
    if diffusion_generate.is_diffusion_run(model_dir):
        if interpolate is not None or component is not None:
            raise ValueError("--interpolate and --component need a latent-variable model; "
                             f"{model_dir} is a stroke_diffusion run")
        return diffusion_generate.run_diffusion_sampling(
            model_dir, output_dir, num_per_category, conditional, seed=seed,
            batch_size=batch_size, write_files=write_files, **(diffusion or {}))
    if num_per_category < 1:
        raise ValueError(f"num_per_category={num_per_category}: must be >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    model, config = load_trained_model(model_dir)
    categories = list(config["categories"])
    sampler = Sampler(model, std_scaling=std_scaling)
    os.makedirs(output_dir, exist_ok=True)
    test = None
    if conditional or interpolate is not None:
        test = load_test_set(config, data_dir)
        test_codes = encode_split(model, test)
        if interpolate is not None:  # checked before any sampling, so nothing is written
            _interpolation_pair(interpolate, len(test_codes))
    if conditional:
        ref = choose_references(test["test"].labels, num_per_category, len(categories), seed)
        codes = test_codes[ref]
        labels = test["test"].labels[ref]
        names = [categories[c] for c in labels]
        components = component_of(model, codes)
    else:
        if component is not None and model.gmm is not None and not (
                0 <= component < model.gmm.num_components):
            raise ValueError(f"component {component} out of range [0, {model.gmm.num_components})")
        total = num_per_category * len(categories)
        z, k = model.sample_prior(total, component=component, seed=seed)
        codes, components = np.asarray(z), np.asarray(k, np.int32)
        ref = np.full(total, -1, np.int64)
        labels = np.full(total, -1, np.int32)
        names = ["uncond"] * total
    logging.info("sampling %d sketches (conditional=%s, temperature=%.2f)", len(codes),
                 conditional, temperature)
    start = time.perf_counter()
    sketches = sampler.sample(codes, temperature, seed, batch_size=batch_size)
    logging.info("sampled %d sketches in %.1f s", len(sketches), time.perf_counter() - start)
    warn_if_degenerate(sketches)
    if write_files:
        _write_sample_files(output_dir, sketches, names, codes, components)
    strokes = np.empty(len(sketches), dtype=object)
    strokes[:] = [s.astype(np.float32) for s in sketches]
    bundle = {"strokes": strokes, "names": np.array(names), "labels": labels, "codes": codes,
              "components": components, "ref_index": ref, "conditional": np.bool_(conditional),
              "temperature": np.float32(temperature), "seed": np.int64(seed)}
    save_npz_atomic(os.path.join(output_dir, "samples.npz"), bundle, compressed=False)
    order = grid_order(labels, len(categories)) if conditional else np.arange(
        min(len(sketches), 100))
    grid = [sketches[i] for i in order]
    # conditional: one row per category when it has at most 10 samples
    ncols = min(10, num_per_category) if conditional else 10
    save_grid_png(grid, os.path.join(output_dir, "grid.png"), ncols=ncols)
    save_grid_svg(grid, os.path.join(output_dir, "grid.svg"), ncols=ncols)
    if interpolate is not None:
        _interpolate(model, sampler, test_codes, interpolate, output_dir, temperature, seed)
    return {k: bundle[k] for k in ("strokes", "names", "labels", "codes", "components", "ref_index")}


def _interpolation_pair(pair, n):
    """``(a, b)`` as ints in ``[0, n)``; ValueError naming the flag otherwise."""
    try:
        a, b = (int(i) for i in pair)
    except (TypeError, ValueError):
        raise ValueError(f"--interpolate={','.join(map(str, pair))}: takes two integer indices "
                         "A,B into the pooled test set") from None
    if not (0 <= a < n and 0 <= b < n):
        raise ValueError(f"--interpolate={a},{b}: indices must be in [0, {n}) (the pooled "
                         "test set)")
    return a, b


def warn_if_degenerate(sketches, threshold=0.2):
    """Log a warning when more than ``threshold`` of the sketches draw nothing (fewer than 2
    points, or no segment with the pen down); returns how many do."""
    empty = sum(1 for s in sketches if stroke_ops.degenerate_reason(s) is not None)
    if sketches and empty > threshold * len(sketches):
        logging.warning("%d of %d samples are empty (the model ends the sketch at once): train "
                        "longer or use a larger preset (--preset=quickstart / default)",
                        empty, len(sketches))
    return empty


def _interpolate(model, sampler, test_codes, pair, output_dir, temperature, seed, steps=10):
    a, b = _interpolation_pair(pair, len(test_codes))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    z = (1.0 - t) * test_codes[a][None] + t * test_codes[b][None]
    sketches = sampler.sample(z, temperature, seed)
    save_grid_png(sketches, os.path.join(output_dir, "interpolation.png"), ncols=steps)
    save_grid_svg(sketches, os.path.join(output_dir, "interpolation.svg"), ncols=steps)
    np.save(os.path.join(output_dir, "interpolation_codes.npy"), z)
