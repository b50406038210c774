"""What a trained stroke-diffusion model does beyond sampling: ``sample.py``'s application jobs.

Every job reads its sketches from a *source*: ``test:K`` (sketch ``K`` of the model's pooled test
split, preprocessed as in training, with its label) or a ``.npy`` file in the raw units of the
training data (QuickDraw: ``[N, 3]`` stroke-3, or ``[N, 2]`` absolute points = a point set; no
label). Each writes ``<job>.npz`` (stroke-3 in data units and the settings) and one labelled PNG.

- :func:`vectorise` (``--vectorise_from``, a ``cond_encoder=pointcloud`` model): the points of the
  source, shuffled, go through the set encoder; samples from that condition are ordered strokes
  through the points (stochastic vectorisation, ChiroDiff section 5). Row: the points, samples.
- :func:`abstract` (``--abstract_from --rdp_epsilon=E1,E2``, a ``cond_encoder=sketch`` model): the
  source simplified by RDP (tolerance E, a fraction of the radius) and resampled again at the
  model's ``resample_spacing`` (straight segments through RDP's corners, at the training point
  density) is the condition; the samples have the source's number of points. Rows: one per E
  (the simplified sketch, then samples).
- :func:`heal` (``--heal_from --heal_t=T1,T2 --corrupt=noise,drop``): the source is corrupted
  (``sketchtk.data.corrupt``), noised by ``q(x_t | x_0)`` to ``t = T - 1`` and denoised back over the
  ``T`` steps ``T - 1 ... 0`` (ChiroDiff ``main.py:620-647``, ``partial_t``; SketchKnitter's
  rectification); ``T = 0`` returns the corrupted sketch. Columns: input, corrupted, healed per T.
- :func:`mix` (``--mix=A,B --mix_steps=N``): both sources are DDIM-inverted to ``x_T``
  (``sketchtk.diffusion.inversion``); a row of N sketches decoded by DDIM (eta 0) from the slerp of
  the two noises and the linear mix of the two conditioning vectors (ChiroDiff ``main.py:655-690``
  interpolates the noise linearly when unconditional, the conditioning latent when conditional);
  the ends are the two sketches' own DDIM reconstructions.
- :func:`invert` (``--invert=N``): the first N test sketches DDIM-inverted and decoded back; the
  round-trip error is written to ``inversion.json``; columns: input, reconstruction.
- :func:`run_shortcut_sampling` (``--sampler=shortcut``): class-conditional samples with the
  r-Shortcut sampler (``sketchtk.diffusion.shortcut``), written as ``sample.py`` writes samples.

All jobs use the EMA weights and a fixed seed.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from sketchtk.data import corrupt as corrupt_ops
from sketchtk.data import strokes as stroke_ops
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.data.point_sequences import (padded_length, prepare_point_data, preprocess_sketch,
                                           to_points)
from sketchtk.diffusion import guidance as cfg
from sketchtk.diffusion.inversion import DDIMInverter
from sketchtk.diffusion.samplers import ReverseSampler, sampling_timesteps
from sketchtk.render.grid import grid_order, save_grid_png

CELL = 96


# ------------------------------------------------------------------------------ sources

class Loaded:
    """A trained model (EMA weights loaded), its config, and its test split (lazily)."""

    def __init__(self, model_dir=None, model=None, config=None, splits=None):
        """From a run directory (EMA weights swapped in), or an in-memory ``model`` with its
        ``config`` (``categories``, ``scale_factor``) and optional preprocessed ``splits``."""
        if model is None:
            from sketchtk.training.trainer import load_trained_model
            model, config = load_trained_model(model_dir)
            for w, avg in zip(model.trainable_weights, model.ema):
                w.assign(avg)  # the jobs sample with the EMA weights, as sample.py
        self.model, self.config, self.model_dir = model, config, model_dir or "<in memory>"
        self.scale_factor = float(self.config["scale_factor"])
        self._splits = dict(splits or {})
        self._samplers = {}

    def split(self, name):
        """A split of the model's data, preprocessed as in training (cached)."""
        if name not in self._splits:
            hp = self.model.hparams
            data = load_sketch_data(self.config.get("data_dir"), self.config["categories"],
                                    scale_factor=self.scale_factor, splits=(name,))
            self._splits[name] = prepare_point_data(data, hp.resample_spacing, hp.rdp_epsilon,
                                                    hp.max_seq_len)[name]
        return self._splits[name]

    @property
    def test(self):
        return self.split("test")

    def source(self, spec, flag):
        """``(stroke3 or None, points [N, 2] absolute, label)`` of ``spec`` in data units;
        ``stroke3`` is None for a point set. Bad specs raise one-line ValueErrors naming ``flag``."""
        spec = str(spec)
        if spec.isdigit():
            spec = f"test:{spec}"
        if spec.startswith("test:"):
            try:
                k = int(spec[5:])
            except ValueError:
                raise ValueError(f"--{flag}={spec}: test:K needs an integer K") from None
            if not 0 <= k < len(self.test):
                raise ValueError(f"--{flag}={spec}: the test split has {len(self.test)} sketches "
                                 f"(K in [0, {len(self.test) - 1}])")
            sketch = np.asarray(self.test.sketches[k], np.float32)
            return sketch, stroke_ops.to_absolute(sketch)[:, :2], int(self.test.labels[k])
        try:
            array = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"--{flag}={spec}: cannot read a .npy array ({err})") from None
        if array.ndim != 2 or array.shape[1] not in (2, 3) or len(array) < 2 or not np.all(
                np.isfinite(array)):
            raise ValueError(f"--{flag}={spec}: expected a finite [N >= 2, 2] point set or "
                             f"[N, 3] stroke-3 array, got shape {array.shape}")
        array = array.astype(np.float64)
        array[:, :2] /= self.scale_factor
        if array.shape[1] == 2:
            return None, array, -1
        hp = self.model.hparams
        sketch = preprocess_sketch(array, hp.resample_spacing, hp.rdp_epsilon)
        if sketch is None or len(sketch) < 2:
            raise ValueError(f"--{flag}={spec}: no stroke of two or more points")
        return sketch, stroke_ops.to_absolute(sketch)[:, :2], -1

    # -------------------------------------------------------------------------- model calls

    def rows(self, sketch):
        """stroke-3 -> the model's point rows ``[N, 3]`` (at most ``max_seq_len``)."""
        rows = to_points(sketch, self.model.hparams.representation)
        if len(rows) > self.model.max_seq_len:
            raise ValueError(f"a sketch of {len(rows)} points is longer than the model's "
                             f"max_seq_len={self.model.max_seq_len}")
        return rows

    def batch(self, rows_list, length=None):
        """``(points [B, L, 3], mask [B, L])`` zero-padded to ``length`` (default: padded longest)."""
        length = length or padded_length(max(len(r) for r in rows_list))
        points = np.zeros((len(rows_list), length, 3), np.float32)
        mask = np.zeros((len(rows_list), length), np.float32)
        for i, r in enumerate(rows_list):
            points[i, :len(r)] = r
            mask[i, :len(r)] = 1.0
        return points, mask

    def condition(self, labels, points, mask):
        """The conditioning vectors ``[B, D]`` (or None: an unconditional model)."""
        labels = None if labels is None or self.model.class_embedding is None else np.where(
            np.asarray(labels) < 0, self.model.null_label, labels).astype(np.int32)
        cond = self.model.condition_vector(labels, points, mask)
        return None if cond is None else cond.numpy()

    def _fn(self, x, t, mask, context):
        if len(context) < 2:  # no condition, or the condition alone
            return self.model.denoise(x, t, mask, cond_vector=context[0] if context else None)
        cond, scale = context  # guided: the condition and the null condition in one pass
        return cfg.guided_pass(lambda c, *xs: self.model.denoise(*xs, cond_vector=c), cond,
                               self.model.null_condition(cond), scale, x, t, mask)

    def sampler(self):
        if "reverse" not in self._samplers:
            self._samplers["reverse"] = ReverseSampler(
                self._fn, self.model.process, aux_channels=2 if self.model.pen_head else 0)
            self._samplers["invert"] = DDIMInverter(self._fn, self.model.process)
        return self._samplers["reverse"]

    def inverter(self):
        self.sampler()
        return self._samplers["invert"]

    def context(self, cond, guidance=1.0):
        """The sampler's context: ``()``, ``(cond,)``, or ``(cond, scale)`` with guidance on the
        encoder's vector (:meth:`check_guidance`)."""
        if cond is None:
            return ()
        cond = tf.constant(cond, tf.float32)
        return (cond,) if guidance == 1.0 else (cond, tf.constant(float(guidance)))

    def check_guidance(self, guidance):
        """ValueError unless ``--cond_guidance`` can be used with this model: 1 (none) always;
        another scale needs a ``cond_encoder`` model trained with ``cond_drop_prob > 0`` (else
        its output for the zero vector was never trained)."""
        if not 0.0 <= guidance < np.inf:
            raise ValueError(f"--cond_guidance={guidance}: must be a finite number >= 0")
        hp = self.model.hparams
        if guidance != 1.0 and (hp.cond_encoder == "none" or hp.cond_drop_prob <= 0):
            raise ValueError(f"--cond_guidance={guidance:g} needs a cond_encoder model trained "
                             f"with cond_drop_prob > 0; {self.model_dir} has cond_encoder="
                             f"{hp.cond_encoder}, cond_drop_prob={hp.cond_drop_prob:g}")

    def strokes(self, x, pen, mask):
        out = self.model.to_strokes(np.asarray(x), pen, mask)
        for s in out:
            s[:, :2] *= self.scale_factor
        return out

    def in_data_units(self, sketch):
        s = np.array(sketch, np.float32, copy=True)
        s[:, :2] *= self.scale_factor
        return s


def point_set_sketch(points, dot=0.01):
    """A point set ``[N, 2]`` drawn as dots: one tiny stroke per point (for pictures)."""
    points = np.asarray(points, np.float64)
    size = dot * max(float(np.ptp(points, axis=0).max()), 1e-6)
    return stroke_ops.polylines_to_stroke3([np.stack([p, p + (size, size)]) for p in points])


def _point_rows(points, representation):
    """Absolute points ``[N, 2]`` in any order -> rows for ``condition_vector`` (pen 0)."""
    rows = np.zeros((len(points), 3), np.float32)
    rows[:, :2] = points if representation == "absolute" else np.diff(
        points, axis=0, prepend=np.zeros((1, 2)))
    return rows


def _save(output_dir, name, cells, labels, ncols, bundle):
    os.makedirs(output_dir, exist_ok=True)
    save_grid_png(cells, os.path.join(output_dir, f"{name}.png"), ncols=ncols, cell=CELL,
                  labels=labels)
    strokes = np.empty(len(cells), dtype=object)
    strokes[:] = [np.asarray(c, np.float32) for c in cells]
    save_npz_atomic(os.path.join(output_dir, f"{name}.npz"),
                    {"strokes": strokes, "names": np.array(labels), **bundle}, compressed=False)
    logging.info("wrote %s.png and %s.npz to %s", name, name, output_dir)


def _check_encoder(loaded, kind, flag):
    got = loaded.model.hparams.cond_encoder
    if got != kind:
        raise ValueError(f"--{flag} needs a model trained with cond_encoder={kind}; "
                         f"{loaded.model_dir} has cond_encoder={got}")


def _sample(loaded, cond, lengths, sampler, steps, eta, seed, guidance=1.0,
            variance_strength=1.0):
    loaded.check_guidance(guidance)
    lengths = np.asarray(lengths, np.int32)
    length = padded_length(int(lengths.max()))
    mask = tf.sequence_mask(lengths, length, dtype=tf.float32).numpy()
    x_T = tf.random.stateless_normal([len(lengths), length, loaded.model.channels], (seed, 1))
    x0, pen, _ = loaded.sampler().sample(
        x_T, mask, sampling_timesteps(loaded.model.process, steps), sampler, eta=eta,
        variance_strength=variance_strength, seed=(seed, 2), context=loaded.context(cond, guidance))
    return loaded.strokes(x0, pen, mask)


# ------------------------------------------------------------------------------ jobs

def vectorise(loaded, source, output_dir, num_samples=5, sampler="ddpm", steps=None, eta=0.0,
              seed=0, guidance=1.0, variance_strength=1.0):
    """Ordered sketches drawn through the (shuffled) points of ``source``; see the module doc.
    ``guidance``: scale on the encoder's vector (``--cond_guidance``; 1 = none);
    ``variance_strength``: DDPM's s (``--variance_strength``)."""
    _check_encoder(loaded, "pointcloud", "vectorise_from")
    _, points, label = loaded.source(source, "vectorise_from")
    rng = np.random.default_rng(seed)
    points = points[rng.permutation(len(points))]  # the order is thrown away
    if len(points) > loaded.model.max_seq_len:
        points = points[:loaded.model.max_seq_len]
    rows = _point_rows(points, loaded.model.hparams.representation)
    pts, mask = loaded.batch([rows] * num_samples)
    cond = loaded.condition([label] * num_samples, pts, mask)
    samples = _sample(loaded, cond, [len(points)] * num_samples, sampler, steps, eta, seed,
                      guidance, variance_strength)
    cells = [point_set_sketch(points * loaded.scale_factor)] + samples
    labels = ["points (shuffled)"] + [f"sample {i + 1}" for i in range(num_samples)]
    _save(output_dir, "vectorise", cells, labels, len(cells),
          {"points": (points * loaded.scale_factor).astype(np.float32),
           "sampler": np.array(sampler), "seed": np.int64(seed),
           "cond_guidance": np.float32(guidance),
           "variance_strength": np.float32(variance_strength)})
    return samples


def abstract(loaded, source, epsilons, output_dir, num_samples=3, sampler="ddpm", steps=None,
             eta=0.0, seed=0, guidance=1.0, variance_strength=1.0):
    """Samples conditioned on ``source`` simplified by RDP at each tolerance of ``epsilons``
    (``guidance``, ``variance_strength``: as :func:`vectorise`)."""
    _check_encoder(loaded, "sketch", "abstract_from")
    sketch, _, label = loaded.source(source, "abstract_from")
    if sketch is None:
        raise ValueError(f"--abstract_from={source}: needs a sketch (stroke-3), not a point set")
    cells, labels, out = [], [], []
    for eps in epsilons:
        simple, encoded = _simplified(loaded, sketch, eps)
        pts, mask = loaded.batch([loaded.rows(encoded)] * num_samples)
        cond = loaded.condition([label] * num_samples, pts, mask)
        samples = _sample(loaded, cond, [len(sketch)] * num_samples, sampler, steps, eta, seed,
                          guidance, variance_strength)
        cells += [loaded.in_data_units(simple)] + samples
        labels += [f"RDP {eps:g}: {len(simple)} pts"] + [f"sample {i + 1}"
                                                       for i in range(num_samples)]
        out.append(samples)
    _save(output_dir, "abstract", cells, labels, num_samples + 1,
          {"rdp_epsilons": np.asarray(epsilons, np.float32), "sampler": np.array(sampler),
           "seed": np.int64(seed), "cond_guidance": np.float32(guidance),
           "variance_strength": np.float32(variance_strength)})
    return out


def _simplified(loaded, sketch, eps):
    """``sketch`` simplified by RDP at ``eps`` (the source itself at 0), and the same shape as the
    sketch encoder reads it: the simplified shape at the point density it was trained on (its
    straight segments resampled at ``resample_spacing``), not RDP's few corner points."""
    if eps <= 0:
        return sketch, sketch
    simple = preprocess_sketch(sketch, 0.0, float(eps))
    spacing = loaded.model.hparams.resample_spacing
    return simple, simple if spacing <= 0 else preprocess_sketch(simple, spacing)


def _mean_gap(per_t, name):
    """How much worse the loss is with the ``name`` vector than with the right one, over t."""
    return float(np.mean([r[name] / r["right"] - 1.0 for r in per_t]))


def condition_usage(loaded, split="valid", num=40, ts=(10, 25, 50, 75), seed=0):
    """How much a ``cond_encoder`` model uses its condition, on ``num`` sketches of ``split``
    noised at each ``t`` of ``ts`` (the same noise for every condition): the mean diffusion loss
    with each sketch's own vector (``right``), with the next sketch's (``other``) and with a zero
    vector (``zero``); ``gap`` = ``other / right - 1`` averaged over ``ts`` (``zero_gap`` the same
    for the zero vector); ``spread`` = the
    standard deviation of the vector over the sketches (per entry, averaged), ``mean_abs`` its
    mean magnitude. A vector the denoiser ignores has a gap near 0 (README 'Diffusion
    applications')."""
    model = loaded.model
    if model.cond_encoder is None:
        raise ValueError(f"condition_usage needs a cond_encoder model; {loaded.model_dir} has "
                         "cond_encoder=none")
    data = loaded.split(split)
    rows = [loaded.rows(np.asarray(s, np.float32)) for s in data.sketches[:num]]
    points, mask = loaded.batch(rows)
    x0 = model.normalise(points, mask)
    cond = model.condition_vector(None, points, mask)
    other = tf.roll(cond, 1, axis=0)
    noise = tf.random.stateless_normal(tf.shape(x0), (seed, 5)) * mask[..., None]
    per_t = []
    for t0 in ts:
        t = tf.fill([len(rows)], int(t0))
        x_t = model.process.q_sample(x0, t, noise) * mask[..., None]
        losses = {}
        for name, vector in (("right", cond), ("other", other), ("zero", tf.zeros_like(cond))):
            out, _ = model.denoise(x_t, t, mask, cond_vector=vector)
            losses[name] = float(tf.reduce_mean(model.process.loss(out, x0, noise, t, mask)))
        per_t.append({"t": int(t0), **losses})
    c = cond.numpy()
    return {"num": len(rows), "per_t": per_t,
            "gap": _mean_gap(per_t, "other"), "zero_gap": _mean_gap(per_t, "zero"),
            "spread": float(c.std(0).mean()), "mean_abs": float(np.abs(c).mean())}


def chamfer(a, b):
    """Symmetric mean nearest-neighbour distance between point sets ``[N, 2]`` and ``[M, 2]``."""
    d = np.sqrt(((np.asarray(a)[:, None] - np.asarray(b)[None]) ** 2).sum(-1))
    return 0.5 * float(d.min(1).mean() + d.min(0).mean())


def condition_following(loaded, split="test", num=16, sampler="ddpm", steps=None, seed=0,
                        indices=None, guidance=1.0, variance_strength=1.0, rdp_epsilon=0.0):
    """Do a ``cond_encoder`` model's samples follow their condition? For ``num`` sketches of
    ``split``: one sample from each sketch's own condition (its shuffled points for
    ``pointcloud``, the sketch for ``sketch``) and one from the next sketch's condition, both
    with the sketch's number of points; the Chamfer distance (radius units, shapes compared
    about their centroids) from each sample to the sketch. ``own`` / ``other``: their means;
    ``own_better``: the fraction of sketches whose own-condition sample is the closer;
    ``between_sketches``: the mean distance between each sketch and the next (what an ignored
    condition gives at best). A model that follows its condition has ``own`` well below
    ``other`` and ``own_better`` near 1 (README 'Diffusion applications'). ``indices``: the
    sketches of ``split`` to use (default: ``num`` drawn with ``seed``), returned as ``index``.
    ``guidance``, ``variance_strength``: as :func:`vectorise`. ``rdp_epsilon`` (``sketch``
    only): the conditions are the sketches simplified as :func:`abstract` does, the distances
    still to the sketches themselves (how well abstraction keeps the source)."""
    model = loaded.model
    kind = model.hparams.cond_encoder
    if model.cond_encoder is None:
        raise ValueError(f"condition_following needs a cond_encoder model; {loaded.model_dir} "
                         "has cond_encoder=none")
    if rdp_epsilon > 0 and kind != "sketch":
        raise ValueError(f"condition_following: rdp_epsilon={rdp_epsilon:g} simplifies a "
                         f"cond_encoder=sketch condition; {loaded.model_dir} has {kind}")
    data = loaded.split(split)
    rng = np.random.default_rng(seed)
    idx = (rng.choice(len(data), min(num, len(data)), replace=False) if indices is None
           else np.asarray(indices, np.int64))
    sketches = [np.asarray(data.sketches[i], np.float32) for i in idx]
    shapes = [stroke_ops.to_absolute(s)[:, :2] for s in sketches]
    if kind == "pointcloud":
        rows = [_point_rows(p[rng.permutation(len(p))], model.hparams.representation)
                for p in shapes]
    else:
        rows = [loaded.rows(_simplified(loaded, s, rdp_epsilon)[1]) for s in sketches]
    lengths = [len(s) for s in sketches]  # the samples have the sketches' own point counts
    n = len(rows)
    other = [(j + 1) % n for j in range(n)]
    points, mask = loaded.batch(rows + [rows[o] for o in other])
    cond = loaded.condition(None, points, mask)
    samples = _sample(loaded, cond, lengths * 2, sampler, steps, 0.0, seed, guidance,
                      variance_strength)

    def centred(p):
        return p - p.mean(0)

    def distance(sample, j):
        got = stroke_ops.to_absolute(np.asarray(sample, np.float64) / loaded.scale_factor)[:, :2]
        return chamfer(centred(got), centred(shapes[j]))

    own = np.array([distance(samples[j], j) for j in range(n)])
    oth = np.array([distance(samples[n + j], j) for j in range(n)])
    between = [chamfer(centred(shapes[o]), centred(shapes[j])) for j, o in enumerate(other)]
    return {"num": n, "split": split, "own": float(own.mean()), "other": float(oth.mean()),
            "own_better": float(np.mean(own < oth)), "between_sketches": float(np.mean(between)),
            "index": [int(i) for i in idx], "cond_guidance": float(guidance),
            "variance_strength": float(variance_strength), "rdp_epsilon": float(rdp_epsilon)}


def heal_sketches(loaded, sketches, labels, heal_ts, seed=0, variance_strength=1.0):
    """Each of ``sketches`` (stroke-3, data units / scale) noised to ``t = T - 1`` and denoised
    back over ``T`` DDPM steps (variance strength s), for each ``T`` of ``heal_ts``; returns
    ``{T: [stroke-3]}`` in data units. ``T = 0`` is no step at all: the input."""
    rows = [loaded.rows(s) for s in sketches]
    points, mask = loaded.batch(rows)
    x0 = loaded.model.normalise(points, mask).numpy()
    cond = loaded.condition(labels, points, mask)
    noise = tf.random.stateless_normal(x0.shape, (seed, 3)).numpy() * mask[..., None]
    num_steps = loaded.model.process.num_steps
    out = {}
    for big_t in heal_ts:
        big_t = int(big_t)
        if not 0 <= big_t <= num_steps:
            raise ValueError(f"--heal_t={big_t}: must be in [0, {num_steps}] (the model's T)")
        if big_t == 0:
            out[0] = [loaded.in_data_units(s) for s in sketches]
            continue
        t = np.full(len(rows), big_t - 1, np.int32)
        x_t = loaded.model.process.q_sample(x0, t, noise).numpy() * mask[..., None]
        x, pen, _ = loaded.sampler().sample(
            x_t, mask, np.arange(big_t - 1, -1, -1), "ddpm", seed=(seed, 4),
            variance_strength=variance_strength, context=loaded.context(cond))
        if not loaded.model.pen_head:
            out[big_t] = loaded.strokes(x, pen, mask)
        else:  # the pen head predicts from x_t; keep the input's pen states instead of guessing
            out[big_t] = loaded.strokes(x, _pen_logits(points), mask)
    return out


def _pen_logits(points):
    return np.stack([10.0 * (1 - points[..., 2]), 10.0 * points[..., 2]], -1).astype(np.float32)


def heal(loaded, sources, heal_ts, output_dir, kinds=("noise",), strength=0.05, seed=0,
         variance_strength=1.0):
    """Corrupt each of ``sources`` and heal it from every ``T`` of ``heal_ts``; one PNG."""
    originals, corrupted, labels = [], [], []
    for i, spec in enumerate(sources):
        sketch, _, label = loaded.source(spec, "heal_from")
        if sketch is None:
            raise ValueError(f"--heal_from={spec}: needs a sketch (stroke-3), not a point set")
        originals.append(sketch)
        corrupted.append(corrupt_ops.corrupt_sketch(sketch, kinds, strength, seed + i))
        labels.append(label)
    healed = heal_sketches(loaded, corrupted, labels, heal_ts, seed, variance_strength)
    cells, names = [], []
    for i in range(len(sources)):
        cells += [loaded.in_data_units(originals[i]), loaded.in_data_units(corrupted[i])]
        cells += [healed[int(t)][i] for t in heal_ts]
        names += ["input", "+".join(kinds)] + [f"healed T={int(t)}" for t in heal_ts]
    _save(output_dir, "heal", cells, names, len(heal_ts) + 2,
          {"heal_t": np.asarray(heal_ts, np.int64), "corruption": np.array("+".join(kinds)),
           "strength": np.float32(strength), "seed": np.int64(seed)})
    return healed


def slerp(a, b, alpha):
    """Spherical interpolation of two arrays (flattened), ``alpha`` in [0, 1]; linear when they
    are (nearly) parallel. Keeps the norm of Gaussian noise (a linear mix shrinks it)."""
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    cos = np.dot(a64, b64) / max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        out = (1 - alpha) * a64 + alpha * b64
    else:
        out = (np.sin((1 - alpha) * omega) * a64 + np.sin(alpha * omega) * b64) / np.sin(omega)
    return out.reshape(np.shape(a)).astype(np.float32)


def reconstruct(loaded, sketches, labels, steps=None, seed=0):
    """DDIM inversion and DDIM (eta 0) decoding of ``sketches`` over the same ``steps``.

    Returns ``(x_T [B, L, C], cond, mask, reconstructions, x0)``: ``x0`` the normalised inputs."""
    rows = [loaded.rows(s) for s in sketches]
    points, mask = loaded.batch(rows)
    x0 = loaded.model.normalise(points, mask).numpy()
    cond = loaded.condition(labels, points, mask)
    timesteps = sampling_timesteps(loaded.model.process, steps)
    x_T = loaded.inverter().invert(x0, mask, timesteps, loaded.context(cond)).numpy()
    back, pen, _ = loaded.sampler().sample(x_T, mask, timesteps, "ddim", eta=0.0, seed=(seed, 5),
                                           context=loaded.context(cond))
    if loaded.model.pen_head:
        pen = _pen_logits(points)
    return x_T, cond, mask, loaded.strokes(back, pen, mask), x0, np.asarray(back)


def mix(loaded, source_a, source_b, output_dir, num=7, steps=None, what="both", seed=0):
    """A row of ``num`` sketches between the DDIM inversions of two sources (see the module doc).

    ``what``: ``both`` (noise and condition), ``noise`` (A's condition) or ``cond`` (A's noise)."""
    if num < 2:
        raise ValueError(f"--mix_steps={num}: needs at least 2 (the two ends)")
    if what not in ("both", "noise", "cond"):
        raise ValueError(f"mix what={what!r}: choose both, noise or cond")
    items = [loaded.source(s, "mix") for s in (source_a, source_b)]
    for spec, (sketch, _, _) in zip((source_a, source_b), items):
        if sketch is None:
            raise ValueError(f"--mix={spec}: needs a sketch (stroke-3), not a point set")
    sketches, labels = [it[0] for it in items], [it[2] for it in items]
    lengths = [len(s) for s in sketches]
    x_T, cond, _, ends, _, _ = reconstruct(loaded, sketches, labels, steps, seed)
    # beyond a sketch's own length its noise is masked out; fill it so the slerp is of full rows
    extra = tf.random.stateless_normal(x_T.shape, (seed, 6)).numpy()
    for i, n in enumerate(lengths):
        x_T[i, n:] = extra[i, n:]
    alphas = np.linspace(0.0, 1.0, num)
    noises = np.stack([slerp(x_T[0], x_T[1], a if what != "cond" else 0.0) for a in alphas])
    conds = None if cond is None else np.stack(
        [(1 - a) * cond[0] + a * cond[1] if what != "noise" else cond[0] for a in alphas])
    mix_lengths = np.round((1 - alphas) * lengths[0] + alphas * lengths[1]).astype(np.int32)
    mask = tf.sequence_mask(mix_lengths, x_T.shape[1], dtype=tf.float32).numpy()
    x, pen, _ = loaded.sampler().sample(noises, mask, sampling_timesteps(loaded.model.process, steps),
                                        "ddim", eta=0.0, seed=(seed, 5),
                                        context=loaded.context(conds))
    row = loaded.strokes(x, pen, mask)
    cells = [loaded.in_data_units(sketches[0])] + row + [loaded.in_data_units(sketches[1])]
    names = ["A"] + [f"{a:.2f}" for a in alphas] + ["B"]
    _save(output_dir, "mix", cells, names, len(cells),
          {"alphas": alphas.astype(np.float32), "what": np.array(what), "seed": np.int64(seed),
           "reconstructions": _object_array(ends)})
    return row, ends


def _object_array(items):
    out = np.empty(len(items), dtype=object)
    out[:] = [np.asarray(i, np.float32) for i in items]
    return out


def invert(loaded, output_dir, num=10, steps=None, seed=0):
    """DDIM round trip of the first ``num`` test sketches; writes ``inversion.json`` / ``.png``.

    The error is the RMS difference of the normalised sequences (the diffused channels, real points
    only) and the share of points whose pen state changed."""
    num = min(int(num), len(loaded.test))
    sketches = [np.asarray(s, np.float32) for s in loaded.test.sketches[:num]]
    labels = list(loaded.test.labels[:num])
    x_T, _, mask, recon, x0, back = reconstruct(loaded, sketches, labels, steps, seed)
    m = mask[..., None]
    per_sketch = np.sqrt(((back - x0) ** 2 * m).sum((1, 2)) / (m.sum((1, 2)) * x0.shape[-1]))
    pen_flips = [float(np.mean(r[:, 2] != s[:, 2])) for r, s in zip(recon, sketches)]
    noise_rms = float(np.sqrt((x_T ** 2 * m).sum() / (m.sum() * x0.shape[-1])))
    report = {"num_sketches": num, "steps": int(steps or loaded.model.process.num_steps),
              "rms_error_per_sketch": per_sketch.tolist(), "rms_error_mean": float(per_sketch.mean()),
              "rms_of_data": float(np.sqrt((x0 ** 2 * m).sum() / (m.sum() * x0.shape[-1]))),
              "rms_of_x_T": noise_rms, "pen_flip_rate_mean": float(np.mean(pen_flips))}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "inversion.json"), "w") as f:
        json.dump(report, f, indent=2)
    cells, names = [], []
    for i in range(num):
        cells += [loaded.in_data_units(sketches[i]), recon[i]]
        names += ["input", f"round trip {per_sketch[i]:.3f}"]
    _save(output_dir, "inversion", cells, names, 2 * min(num, 5),
          {"rms_error": per_sketch.astype(np.float32)})
    logging.info("DDIM inversion round trip over %d test sketches: %s", num, report)
    return report


# ------------------------------------------------------------------------------ r-Shortcut

def _regressor_model(regressor, feature_dim):
    """The regressor as a functional ``keras.Model`` (what is saved to ``.keras``)."""
    import keras
    inputs = [keras.Input((None, feature_dim)), keras.Input(()), keras.Input((None,))]
    return keras.Model(inputs, regressor(*inputs), name="recognisability_regressor")


def shortcut_examples(loaded, classifier, split="train", per_sketch=4, batch_size=64, seed=0,
                      max_sketches=None):
    """Regressor examples from the real sketches of ``split``: each noised at ``per_sketch``
    uniformly drawn ``t``; features, normalised time, mask and the classifier-confidence target
    (:func:`sketchtk.diffusion.shortcut.recognisability_targets`), padded to ``max_seq_len``;
    ``max_sketches`` keeps the first sketches of the split only."""
    from sketchtk.diffusion.shortcut import recognisability_targets, regressor_inputs
    if loaded.model.cond_encoder is not None:
        raise ValueError("r-Shortcut is for class-conditional / unconditional models "
                         f"(this one has cond_encoder={loaded.model.hparams.cond_encoder})")
    data = loaded.split(split)
    sketches, all_labels = data.sketches[:max_sketches], data.labels[:max_sketches]
    rng = np.random.default_rng(seed)
    model, num_steps = loaded.model, loaded.model.process.num_steps
    out = {k: [] for k in ("feats", "t", "mask", "target", "step")}
    for rep in range(per_sketch):
        for start in range(0, len(sketches), batch_size):
            rows = [loaded.rows(s) for s in sketches[start:start + batch_size]]
            labels = np.asarray(all_labels[start:start + batch_size], np.int32)
            points, mask = loaded.batch(rows, model.max_seq_len)
            x0 = model.normalise(points, mask)
            t = rng.integers(0, num_steps, len(rows)).astype(np.int32)
            noise = rng.standard_normal(x0.shape).astype(np.float32) * mask[..., None]
            x_t = model.process.q_sample(x0, t, noise) * mask[..., None]
            target = recognisability_targets(model, classifier, x_t, t, mask, labels,
                                             loaded.scale_factor)
            feats, t_norm, _ = regressor_inputs(model, x_t, t, mask)
            for key, value in (("feats", feats), ("t", t_norm), ("mask", mask),
                               ("target", target), ("step", t)):
                out[key].append(np.asarray(value, np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}


def train_shortcut_regressor(loaded, classifier_dir, path, steps=400, per_sketch=4, units=32,
                             seed=0):
    """Train an r-Shortcut regressor for ``loaded``'s frozen denoiser and save it to ``path``
    (``.keras``). Returns a report: training losses and the validation loss before and after."""
    from sketchtk.diffusion.shortcut import RecognisabilityRegressor, regressor_loss, train_regressor
    from sketchtk.training.trainer import load_trained_model
    classifier, _ = load_trained_model(classifier_dir)
    train = shortcut_examples(loaded, classifier, "train", per_sketch, seed=seed)
    valid = shortcut_examples(loaded, classifier, "valid", per_sketch, seed=seed + 1)
    regressor = RecognisabilityRegressor(units=units, seed=seed)
    wrapped = _regressor_model(regressor, train["feats"].shape[-1])

    def valid_loss():
        return float(regressor_loss(regressor, (valid["feats"], valid["t"], valid["mask"]),
                                    valid["target"]))
    before = valid_loss()
    losses = train_regressor(regressor, train, steps, seed=seed)
    after = valid_loss()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.keras"
    wrapped.save(tmp)
    os.replace(tmp, path)  # atomic
    # the constant predictor's loss: what "learning nothing" costs on the validation targets
    p = float(np.clip(train["target"].mean(), 1e-6, 1 - 1e-6))
    v = valid["target"]
    constant = float(np.mean(-(v * np.log(p) + (1 - v) * np.log(1 - p))))
    report = {"train_examples": int(len(train["target"])), "steps": int(steps),
              "train_loss_first": float(np.mean(losses[:10])),
              "train_loss_last": float(np.mean(losses[-10:])),
              "valid_loss_before": before, "valid_loss_after": after,
              "valid_loss_constant_predictor": constant,
              "target_mean_train": float(train["target"].mean())}
    logging.info("r-Shortcut regressor: %s", report)
    return report


def load_regressor(path):
    """The ``RecognisabilityRegressor`` layer saved by :func:`train_shortcut_regressor`."""
    import keras
    if not os.path.exists(path):
        raise ValueError(f"--shortcut_regressor={path}: no such file (train one with "
                         "--classifier_dir, see README 'Diffusion applications')")
    from sketchtk.diffusion import shortcut  # noqa: F401  (registers RecognisabilityRegressor)
    return keras.saving.load_model(path).layers[-1]


def shortcut_sampler(loaded, regressor, method="ddpm"):
    """A ``ShortcutSampler`` over ``loaded``'s denoiser with ``regressor`` as its score."""
    from sketchtk.diffusion.shortcut import ShortcutSampler, regressor_inputs

    def score(x, t, mask, context):
        return tf.sigmoid(regressor(*regressor_inputs(loaded.model, x, t, mask)))
    return ShortcutSampler(loaded._fn, score, loaded.model.process, method,
                           aux_channels=2 if loaded.model.pen_head else 0)


def class_conditions(loaded, labels):
    """Conditioning vectors of class ``labels`` (None for an unconditional model)."""
    if loaded.model.class_embedding is None:
        return None
    return loaded.model.class_embedding(np.asarray(labels, np.int32)).numpy()


def run_shortcut_sampling(model_dir, output_dir, regressor_path, num_per_category=10,
                          threshold=0.9, min_steps=1, base="ddpm", steps=None, eta=0.0,
                          variance_strength=1.0, seed=0, batch_size=100, loaded=None,
                          write_files=True, stride_steps=None):
    """Class-conditional samples with the r-Shortcut sampler, written as ``sample.py`` does
    (``samples.npz`` with the extra ``calls`` per sketch, a grid, and with ``write_files`` the
    per-sample svg / png files); returns the bundle. ``stride_steps=K``: switch to the K-step
    respaced schedule (DDIM) instead of jumping to the x0-prediction."""
    from sketchtk.sampling.diffusion_generate import _write_sketch_files
    loaded = loaded or Loaded(model_dir)
    if loaded.model.cond_encoder is not None:
        raise ValueError("--sampler=shortcut: needs a model without cond_encoder")
    regressor = load_regressor(regressor_path)
    sampler = shortcut_sampler(loaded, regressor, base)
    categories = list(loaded.config["categories"])
    labels = np.repeat(np.arange(len(categories), dtype=np.int32), num_per_category)
    lengths = loaded.model.sample_lengths(labels, seed)
    timesteps = sampling_timesteps(loaded.model.process, steps)
    sketches, calls = [None] * len(labels), np.zeros(len(labels), np.int64)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(labels), batch_size):
        idx = order[start:start + batch_size]
        length = padded_length(int(lengths[idx].max()))
        mask = tf.sequence_mask(lengths[idx], length, dtype=tf.float32).numpy()
        x_T = tf.random.stateless_normal([len(idx), length, loaded.model.channels],
                                         (seed * 100003 + start, 1))
        cond = class_conditions(loaded, labels[idx])
        x0, pen, used, _ = sampler.sample(x_T, mask, timesteps, threshold, min_steps, eta,
                                          variance_strength, (seed * 100003 + start, 2),
                                          loaded.context(cond), stride_steps=stride_steps)
        calls[idx] = used
        for i, sketch in zip(idx, loaded.strokes(x0, pen, mask)):
            sketches[i] = sketch
    names = [categories[c] for c in labels]
    os.makedirs(output_dir, exist_ok=True)
    if write_files:
        _write_sketch_files(output_dir, sketches, names)
    bundle = {"strokes": _object_array(sketches), "names": np.array(names), "labels": labels,
              "ref_index": np.full(len(labels), -1, np.int64), "conditional": np.bool_(True),
              "lengths": lengths, "seed": np.int64(seed), "sampler": np.array("shortcut"),
              "base_sampler": np.array(base), "steps": np.int64(len(timesteps)),
              "threshold": np.float32(threshold), "calls": calls,
              "stride_steps": np.int64(stride_steps or 0)}
    save_npz_atomic(os.path.join(output_dir, "samples.npz"), bundle, compressed=False)
    grid = [sketches[i] for i in grid_order(labels, len(categories), limit=len(labels))]
    save_grid_png(grid, os.path.join(output_dir, "grid.png"), ncols=10)
    logging.info("r-Shortcut: %.1f denoiser calls per sketch on average (plain: %d)",
                 calls.mean(), len(timesteps))
    return bundle


# ------------------------------------------------------------------------------ sample.py

APP_FLAGS = ("vectorise_from", "abstract_from", "heal_from", "mix", "invert")
# the options of those jobs, and of --sampler=shortcut (sample.py flags)
APP_OPTION_FLAGS = ("rdp_epsilon", "heal_t", "corrupt", "corrupt_strength", "mix_steps",
                    "mix_what", "app_samples", "cond_guidance")
SHORTCUT_FLAGS = ("shortcut_regressor", "classifier_dir", "shortcut_threshold",
                  "shortcut_min_steps", "shortcut_base", "shortcut_stride_steps")


def requested(flags):
    """True when ``sample.py``'s flags ask for an application job or the shortcut sampler."""
    return any(getattr(flags, f) is not None for f in APP_FLAGS) or flags.sampler == "shortcut"


def _floats(flag, values):
    try:
        out = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{flag}={','.join(values)}: expected numbers") from None
    if not out or not all(0.0 <= v < np.inf for v in out):
        raise ValueError(f"--{flag}={','.join(values)}: expected finite numbers >= 0")
    return out


def run_from_flags(flags):
    """``sample.py``'s dispatch: one job per given flag (checked before the model loads)."""
    from sketchtk.sampling.diffusion_generate import is_diffusion_run
    if not is_diffusion_run(flags.model_dir):
        raise ValueError(f"--model_dir={flags.model_dir}: the diffusion applications need a "
                         "model=stroke_diffusion run")
    jobs = [f for f in APP_FLAGS if getattr(flags, f) is not None]
    if flags.sampler == "shortcut" and jobs:
        raise ValueError(f"--sampler=shortcut samples; it does not combine with --{jobs[0]}")
    epsilons = _floats("rdp_epsilon", flags.rdp_epsilon)
    heal_ts = [int(v) for v in _floats("heal_t", flags.heal_t)]
    if flags.mix is not None and len(flags.mix) != 2:
        raise ValueError(f"--mix={','.join(flags.mix)}: takes two sources A,B (e.g. test:0,test:7)")
    if flags.invert is not None and flags.invert < 1:
        raise ValueError(f"--invert={flags.invert}: must be >= 1")
    if flags.app_samples < 1:
        raise ValueError(f"--app_samples={flags.app_samples}: must be >= 1")
    if flags.cond_guidance != 1.0 and (flags.vectorise_from, flags.abstract_from) == (None, None):
        raise ValueError(f"--cond_guidance={flags.cond_guidance:g} guides vectorisation / "
                         "abstraction only (--vectorise_from, --abstract_from)")
    sampler = flags.sampler if flags.sampler != "shortcut" else "ddpm"
    if flags.sampler == "shortcut":
        if not flags.shortcut_regressor:
            raise ValueError("--sampler=shortcut needs --shortcut_regressor=PATH (.keras)")
        loaded = Loaded(flags.model_dir)
        if not os.path.exists(flags.shortcut_regressor):
            if not flags.classifier_dir:
                raise ValueError(f"--shortcut_regressor={flags.shortcut_regressor}: no such "
                                 "file; pass --classifier_dir to train it first")
            train_shortcut_regressor(loaded, flags.classifier_dir, flags.shortcut_regressor)
        run_shortcut_sampling(flags.model_dir, flags.output_dir, flags.shortcut_regressor,
                              flags.num_per_category, flags.shortcut_threshold,
                              flags.shortcut_min_steps, flags.shortcut_base, flags.steps,
                              flags.eta, flags.variance_strength, flags.seed, flags.batch_size,
                              loaded=loaded, write_files=flags.write_files,
                              stride_steps=flags.shortcut_stride_steps or None)
        return
    loaded = Loaded(flags.model_dir)
    common = dict(sampler=sampler, steps=flags.steps, eta=flags.eta, seed=flags.seed,
                  guidance=flags.cond_guidance, variance_strength=flags.variance_strength)
    if flags.vectorise_from is not None:
        vectorise(loaded, flags.vectorise_from, flags.output_dir, flags.app_samples, **common)
    if flags.abstract_from is not None:
        abstract(loaded, flags.abstract_from, epsilons, flags.output_dir, flags.app_samples,
                 **common)
    if flags.heal_from is not None:
        heal(loaded, flags.heal_from, heal_ts, flags.output_dir, tuple(flags.corrupt),
             flags.corrupt_strength, flags.seed, flags.variance_strength)
    if flags.mix is not None:
        mix(loaded, flags.mix[0], flags.mix[1], flags.output_dir, flags.mix_steps, flags.steps,
            flags.mix_what, flags.seed)
    if flags.invert is not None:
        invert(loaded, flags.output_dir, flags.invert, flags.steps, flags.seed)
