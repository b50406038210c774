"""``run_diffusion_sampling``: ``sample.py``'s job for a ``stroke_diffusion`` run.

Writes the same files as the VAE path (``sketchtk.sampling.generate``): per sample
``<name>_<i>.svg`` / ``.png`` (``<name>`` = the category when class-conditional, else ``uncond``),
``samples.npz`` (``strokes`` stroke-3 in data units, ``names``, ``labels`` (-1 unconditional),
``codes`` (``[N, 0]``: a diffusion model has no latent code), ``components`` and ``ref_index``
(-1), ``conditional``, ``temperature`` (NaN: not used), ``seed``, plus ``lengths``, ``sampler``,
``steps``, ``eta``, ``variance_strength``, ``guidance``), ``grid.png`` / ``grid.svg``.

``show_process=True`` adds ``process.png`` (rows: samples; columns: ``x_t`` at evenly spaced steps
of the reverse process, ``x_T`` on the left, the sample on the right) and ``process.gif`` (every
sample's ``x_t`` animated over the reverse process), as ChiroDiff's ``--text_viz_process backward``
(``main.py:598-608``), and ``process_forward.png`` (real test sketches noised by ``q(x_t | x_0)`` at
evenly spaced ``t``, the data on the left; ChiroDiff's ``forward_diffusion``, ``main.py:501-520``).
"""

import contextlib
import os
import tempfile

import numpy as np
from absl import logging
from PIL import Image

from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.data.point_sequences import padded_length, prepare_point_data, to_points
from sketchtk.render.grid import grid_order, save_grid_png, save_grid_svg
from sketchtk.render.svg import save_svg
from sketchtk.sampling.generate import file_stems
from sketchtk.training.trainer import load_trained_model

PNG_WIDTH = 96
PROCESS_COLUMNS = 10
PROCESS_ROWS = 5
GIF_FRAMES = 40


def _write_sketch_files(output_dir, sketches, names):
    from sketchtk.render.raster import render_sketches
    images = render_sketches(sketches, width=PNG_WIDTH)
    for sketch, stem, image in zip(sketches, file_stems(names), images):
        save_svg(sketch, os.path.join(output_dir, f"{stem}.svg"))
        Image.fromarray(image).save(os.path.join(output_dir, f"{stem}.png"))


def _in_data_units(sketches, scale_factor):
    out = []
    for s in sketches:
        s = s.copy()
        s[:, :2] *= scale_factor
        out.append(s)
    return out


def sample_labels(num_categories, num_per_category, conditional):
    """The label of every sample, ``num_per_category`` per category in order, or -1 (the null
    label: unconditional) for all ``num_categories * num_per_category``."""
    total = num_per_category * num_categories
    if not conditional:
        return np.full(total, -1, np.int32)
    return np.repeat(np.arange(num_categories, dtype=np.int32), num_per_category)


def check_sampling_options(model_dir, hp, conditional, num_per_category, batch_size, steps,
                           sampler):
    """ValueError naming the option unless the sampling options fit the run's hparams ``hp``
    (a dict; read before the model loads). Shared with ``sketchtk.sampling.raster_generate``."""
    if conditional and not hp["class_conditional"]:
        raise ValueError(f"{model_dir}: --conditional=True needs a class-conditional model "
                         "(train with class_conditional=True), or pass --conditional=False")
    if num_per_category < 1 or batch_size < 1:
        raise ValueError("num_per_category and batch_size must be >= 1")
    if steps is not None and not 1 <= steps <= hp["diffusion_steps"]:
        raise ValueError(f"--steps={steps}: must be in [1, {hp['diffusion_steps']}] "
                         f"(the model's diffusion_steps T)")
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"--sampler={sampler!r}: choose ddpm or ddim")


def run_diffusion_sampling(model_dir, output_dir, num_per_category=10, conditional=True,
                           sampler="ddpm", steps=None, eta=0.0, variance_strength=1.0,
                           guidance=1.0, seed=0, batch_size=100, write_files=True,
                           show_process=False, use_ema=True):
    """Sample sketches from a trained ``stroke_diffusion`` run and write them.

    Args:
      model_dir: a ``train.py`` run directory of a ``stroke_diffusion`` model.
      output_dir: where to write.
      num_per_category: class-conditional: samples per category; unconditional:
        ``num_per_category * num_categories`` in all.
      conditional: class-conditional (needs a model trained with ``class_conditional=True``).
      sampler: ``ddpm`` or ``ddim``; steps: sampling steps (None = T; fewer = respaced).
      eta: DDIM noise; variance_strength: DDPM's s (ChiroDiff 0.75 at test); guidance: the
        classifier-free guidance scale (0 = unconditional, 1 = conditional).
      seed: makes lengths, noise and sketches reproducible.
      batch_size: sketches denoised at once.
      write_files: False skips the per-sample svg / png files.
      show_process: also write ``process.png`` and ``process.gif``.
      use_ema: sample with the EMA weights (default) or the raw training weights.

    Returns:
      dict with ``strokes``, ``names``, ``labels``, ``lengths``.
    """
    from sketchtk.training.checkpoints import MODEL_CONFIG, read_json
    config = read_json(os.path.join(model_dir, MODEL_CONFIG))  # checks before the model loads
    hp, categories = config["hparams"], list(config["categories"])
    check_sampling_options(model_dir, hp, conditional, num_per_category, batch_size, steps,
                           sampler)
    model, config = load_trained_model(model_dir)
    labels = sample_labels(len(categories), num_per_category, conditional)
    total = len(labels)
    lengths = model.sample_lengths(labels, seed)
    os.makedirs(output_dir, exist_ok=True)
    logging.info("sampling %d sketches (%s, steps=%s, conditional=%s, guidance=%.2f)", total,
                 sampler, steps or model.process.num_steps, conditional, guidance)
    sketches, trajectory = [None] * total, None
    # batches of similar lengths: each batch is padded to its own longest sketch, so the cost
    # follows the real lengths (the denoisers ignore padding)
    order = np.argsort(lengths, kind="stable")
    with model.ema_weights() if use_ema else contextlib.nullcontext():
        for start in range(0, total, batch_size):
            idx = order[start:start + batch_size]
            record = show_process and start == 0
            x0, pen, mask, traj = model.generate(
                lengths[idx], labels[idx] if conditional else None, sampler, steps, eta,
                variance_strength, guidance, seed=seed * 100003 + start, record=record)
            for i, sketch in zip(idx, model.to_strokes(x0, pen, mask)):
                sketches[i] = sketch
            if record:
                trajectory = (np.asarray(traj), np.asarray(pen), np.asarray(mask))
    sketches = _in_data_units(sketches, config["scale_factor"])
    names = [categories[c] for c in labels] if conditional else ["uncond"] * total
    if write_files:
        _write_sketch_files(output_dir, sketches, names)
    strokes = np.empty(total, dtype=object)
    strokes[:] = [s.astype(np.float32) for s in sketches]
    bundle = {"strokes": strokes, "names": np.array(names), "labels": labels,
              "codes": np.zeros((total, 0), np.float32), "components": np.full(total, -1, np.int32),
              "ref_index": np.full(total, -1, np.int64), "conditional": np.bool_(conditional),
              "temperature": np.float32(np.nan), "seed": np.int64(seed), "lengths": lengths,
              "sampler": np.array(sampler), "steps": np.int64(steps or model.process.num_steps),
              "eta": np.float32(eta), "variance_strength": np.float32(variance_strength),
              "guidance": np.float32(guidance)}
    save_npz_atomic(os.path.join(output_dir, "samples.npz"), bundle, compressed=False)
    order = grid_order(labels, len(categories)) if conditional else np.arange(min(total, 100))
    grid = [sketches[i] for i in order]
    save_grid_png(grid, os.path.join(output_dir, "grid.png"), ncols=10)
    save_grid_svg(grid, os.path.join(output_dir, "grid.svg"), ncols=10)
    if trajectory is not None:
        save_process_pictures(model, *trajectory, output_dir, config["scale_factor"])
        save_forward_process(model, config, output_dir, seed)
    return {"strokes": strokes, "names": bundle["names"], "labels": labels, "lengths": lengths}


def _frame_sketches(model, x_t, pen, mask, scale_factor):
    """Decode every sample's ``x_t`` (the pen head's final state for every frame)."""
    return _in_data_units(model.to_strokes(x_t, pen, mask), scale_factor)


def save_process_pictures(model, trajectory, pen, mask, output_dir, scale_factor):
    """``process.png`` (samples x evenly spaced steps) and ``process.gif`` from a trajectory
    ``[S + 1, B, L, C]`` (``x_T`` first)."""
    rows = min(PROCESS_ROWS, trajectory.shape[1])
    cols = np.unique(np.linspace(0, len(trajectory) - 1, PROCESS_COLUMNS).round().astype(int))
    cells = []
    for r in range(rows):
        for c in cols:
            cells.extend(_frame_sketches(model, trajectory[c, r:r + 1], pen[r:r + 1],
                                         mask[r:r + 1], scale_factor))
    save_grid_png(cells, os.path.join(output_dir, "process.png"), ncols=len(cols))
    frames_at = np.unique(np.linspace(0, len(trajectory) - 1, GIF_FRAMES).round().astype(int))
    cells = []
    for c in frames_at:  # every frame a row of one big grid: one rendering call for all frames
        cells.extend(_frame_sketches(model, trajectory[c, :rows], pen[:rows], mask[:rows],
                                     scale_factor))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frames.png")
        width, height = save_grid_png(cells, path, ncols=rows, cell=PNG_WIDTH)
        sheet = Image.open(path).convert("L")
        row_height = height // len(frames_at)
        frames = [sheet.crop((0, k * row_height, width, (k + 1) * row_height)).copy()
                  for k in range(len(frames_at))]
    durations = [80] * (len(frames) - 1) + [1500]  # hold the finished sketches
    frames[0].save(os.path.join(output_dir, "process.gif"), save_all=True,
                   append_images=frames[1:], duration=durations, loop=0)


def is_diffusion_run(model_dir):
    """True when ``model_dir``'s ``model_config.json`` names ``model=stroke_diffusion``."""
    from sketchtk.training.checkpoints import run_model
    return run_model(model_dir) == "stroke_diffusion"  # None: the VAE path reports it


def save_forward_process(model, config, output_dir, seed=0):
    """``process_forward.png``: test sketches (rows, one per category) under ``q(x_t | x_0)`` at
    evenly spaced ``t`` (columns: the data, then ``t = 0 ... T - 1``), preprocessed as in training."""
    if not hasattr(model.process, "q_sample"):  # process=star: no x_t (the network sees G_t)
        logging.info("process_forward.png not written: process=%s has no q_sample",
                     model.hparams.process)
        return
    hp = model.hparams
    data = load_sketch_data(config.get("data_dir"), config["categories"],
                            scale_factor=config["scale_factor"], splits=("test",))
    data = prepare_point_data(data, hp.resample_spacing, hp.rdp_epsilon, hp.max_seq_len)
    test = data["test"]
    firsts = [int(np.flatnonzero(test.labels == c)[0]) for c in np.unique(test.labels)]
    picks = (firsts + [i for i in range(len(test)) if i not in firsts])[:PROCESS_ROWS]
    real = [to_points(test.sketches[i], hp.representation) for i in picks]  # one per category
    length = padded_length(max(len(r) for r in real))
    points = np.zeros((len(real), length, 3), np.float32)
    mask = np.zeros((len(real), length), np.float32)
    for i, r in enumerate(real):
        points[i, :len(r)] = r
        mask[i, :len(r)] = 1.0
    x0 = model.normalise(points, mask)
    # the pen head is not diffused: draw the real pen states (as confident logits)
    pen_logits = np.stack([10.0 * (1 - points[..., 2]), 10.0 * points[..., 2]], -1)
    steps = np.unique(np.linspace(0, model.process.num_steps - 1, PROCESS_COLUMNS - 1).round())
    noise = np.random.default_rng(seed).standard_normal(x0.shape).astype(np.float32)
    columns = [np.asarray(x0)] + [
        np.asarray(model.process.q_sample(x0, np.full(len(real), t, np.int32), noise)) * mask[..., None]
        for t in steps]
    cells = []
    for r in range(len(real)):
        for x in columns:
            cells.extend(_frame_sketches(model, x[r:r + 1], pen_logits[r:r + 1], mask[r:r + 1],
                                         config["scale_factor"]))
    save_grid_png(cells, os.path.join(output_dir, "process_forward.png"), ncols=len(columns))
