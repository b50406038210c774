"""Throughput of the training input pipeline (``make_dataset``) on real sketches.

Every row is timed once per round, all rows interleaved (the baseline too, so all see the same
background load); each figure is the median over the rounds, after a warm-up (the first batch of
every pipeline: "first batch s", the time from ``make_dataset`` to it, tracing included, is not
part of the rate; then one untimed round, so that XLA has compiled the renderer for every padded
shape the rounds meet). Rows (examples/s and batches/s):

- ``render+aug``: the training default: stroke augmentation (scale 0.1, point drop 0.1) and the
  48x48 image rendered on the fly from the augmented strokes (``render_batch`` inside ``map``);
- ``render``: the same without augmentation;
- ``prerendered``: images rendered once with ``render_sketches`` and passed as ``images=`` (the
  one-off rendering cost is its own row, ``render_sketches`` over the whole split);
- ``reference``: what the reference does per example, in a Python loop: NumPy random scaling,
  sketch-rnn's point-dropping loop, NumPy stroke-5 padding and one cairo image per sketch
  (``svg.render_cairo``, as its seq2png), timed on a small subset and extrapolated. Like the
  ``render+aug`` row, its images follow the augmented strokes. The 1x of the speed-ups.

The limit: an on-the-fly pipeline does the pre-rendered pipeline's work plus the rendering, so on
one core it cannot beat ``1 / (1 / prerendered + 1 / render_sketches)`` examples/s; the table gives
the on-the-fly rows as a fraction of that bound (above 100% when ``map`` runs the renderer in
parallel with the rest).

Usage::

    python bench/bench_pipeline.py            # aaron_sheep, batch 128, 7400 training sketches
    python bench/bench_pipeline.py --quick    # < 1 minute
    python bench/bench_pipeline.py --data_dir= --category=bee   # a packed QuickDraw category

The last line printed is one JSON object with the headline figures.
"""

import json
import os
import platform
import sys
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

import hparams  # noqa: E402
from bench_common import median  # noqa: E402
from sketchtk.data import loader  # noqa: E402
from sketchtk.data import strokes as stroke_ops  # noqa: E402
from sketchtk.data.pipeline import make_dataset  # noqa: E402
from sketchtk.render import raster, svg  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "/work/shared/data/sketchrnn",
                    "Directory of <category>.npz; empty = the embedded default QuickDraw subset.")
flags.DEFINE_string("category", "aaron_sheep", "Category to load (empty = the first available).")
flags.DEFINE_integer("batch_size", 128, "Examples per batch (the paper's 128).")
flags.DEFINE_integer("batches", 10, "Timed batches per pipeline row and round.")
flags.DEFINE_integer("rounds", 5, "Interleaved timed rounds (medians reported).")
flags.DEFINE_integer("num_train", 0, "Training sketches to load (0 = all).")
flags.DEFINE_integer("reference_sketches", 128,
                     "Sketches timed per round for the reference-style row.")
flags.DEFINE_bool("quick", False, "Small run (< 1 minute): fewer sketches and batches.")


def _reference_drop_points(strokes, prob, rng):
    """sketch-rnn's ``augment_strokes`` (a Python loop over points), as the reference uses it."""
    result = []
    prev_stroke = [0, 0, 1]
    count = 0
    stroke = [0, 0, 1]
    for i in range(len(strokes)):
        candidate = [strokes[i][0], strokes[i][1], strokes[i][2]]
        if candidate[2] == 1 or prev_stroke[2] == 1:
            count = 0
        else:
            count += 1
        urnd = rng.random()
        if candidate[2] == 0 and prev_stroke[2] == 0 and count > 2 and urnd < prob:
            stroke[0] += candidate[0]
            stroke[1] += candidate[1]
        else:
            stroke = candidate
            prev_stroke = stroke
            result.append(stroke)
    return np.array(result, dtype=np.float32)


def reference_batch(sketches, max_len, hp, rng, width):
    """One batch the reference way: per-sketch NumPy augmentation, stroke-5 and a cairo image."""
    strokes5, images = [], []
    for s in sketches:
        scale = rng.uniform(1 - hp.random_scale_factor, 1 + hp.random_scale_factor, 2)
        s = np.concatenate([s[:, :2] * scale, s[:, 2:]], axis=1)
        s = _reference_drop_points(s, hp.augment_stroke_prob, rng)
        strokes5.append(stroke_ops.stroke3_to_stroke5(s, max_len))
        images.append(svg.render_cairo(s, width))
    return np.stack(strokes5), np.stack(images)


def first_batch(dataset):
    """A fresh iterator over ``dataset`` after its first batch (so the rate excludes start-up)."""
    it = iter(dataset)
    _ = next(it)["images"].numpy()
    return it


def time_batches(it, batches):
    """Seconds to pull ``batches`` batches (images and strokes materialised)."""
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        _ = batch["images"].numpy(), batch["strokes"].numpy()
    return time.perf_counter() - start


def main(argv):
    del argv
    quick = FLAGS.quick
    batch_size = FLAGS.batch_size
    rounds = 2 if quick else FLAGS.rounds
    batches = 3 if quick else FLAGS.batches
    num_train = FLAGS.num_train or (1024 if quick else 0)
    num_reference = 32 if quick else FLAGS.reference_sketches

    data_dir = FLAGS.data_dir or None
    category = FLAGS.category or loader.available_categories(data_dir or loader.DEFAULT_DATA_DIR)[0]
    start = time.perf_counter()
    data = loader.load_sketch_data(data_dir, [category], num_per_category=num_train or 10**9,
                                   splits=("train",))
    load_s = time.perf_counter() - start
    train = data["train"]
    n = len(train)
    mean_len = float(np.mean([len(s) for s in train.sketches]))
    hp = hparams.get_preset("paper").replace(categories=(category,), batch_size=batch_size)
    plain = hp.replace(random_scale_factor=0.0, augment_stroke_prob=0.0)
    logging.info("%s: %d training sketches, mean %.1f points, max_seq_len %d", category, n,
                 mean_len, data.max_seq_len)

    # the pre-rendered row's images; also the warm-up (XLA compiles) of the timed render row
    images = raster.render_sketches(train.sketches, width=hp.png_width)
    builders = {
        "render+aug": (lambda: make_dataset(data, "train", hp, training=True),
                       "on the fly, render_batch in map"),
        "render": (lambda: make_dataset(data, "train", plain, training=True),
                   "on the fly, render_batch in map"),
        "prerendered": (lambda: make_dataset(data, "train", plain, training=True, images=images),
                        "images= (no stroke augmentation)"),
    }
    datasets, first_s = {}, {}
    for name, (build, _) in builders.items():
        start = time.perf_counter()
        datasets[name] = build()
        first_batch(datasets[name])
        first_s[name] = time.perf_counter() - start
        # warm-up round, untimed: every padded shape the timed batches meet is compiled here
        # (each round restarts the same seeded stream)
        time_batches(first_batch(datasets[name]), batches)

    rng = np.random.default_rng(0)
    reference_batch(train.sketches[:2], data.max_seq_len, hp, rng, hp.png_width)  # warm-up
    times = {name: [] for name in (*builders, "render_sketches", "reference")}
    for round_index in range(rounds):
        # Interleaved: every row once per round. Only one iterator lives at a time: a live one
        # keeps prefetching in the background.
        for name, dataset in datasets.items():
            it = first_batch(dataset)
            times[name].append(time_batches(it, batches))
            del it
        start = time.perf_counter()
        raster.render_sketches(train.sketches, width=hp.png_width)
        times["render_sketches"].append(time.perf_counter() - start)
        subset = [train.sketches[i] for i in rng.permutation(n)[:num_reference]]
        start = time.perf_counter()
        for lo in range(0, len(subset), batch_size):
            reference_batch(subset[lo:lo + batch_size], data.max_seq_len, hp, rng, hp.png_width)
        times["reference"].append(time.perf_counter() - start)

    examples = {name: batches * batch_size for name in builders}
    examples.update({"render_sketches": n, "reference": num_reference})
    rate = {name: examples[name] / median(t) for name, t in times.items()}
    bound = 1.0 / (1.0 / rate["prerendered"] + 1.0 / rate["render_sketches"])
    notes = {name: note for name, (_, note) in builders.items()}
    notes["render_sketches"] = f"one-off pre-render of all {n} sketches, fast renderer"
    notes["reference"] = f"Python loop + cairo, {num_reference} sketches per round"

    header = (f"{'pipeline':<18}{'examples/s':>12}{'batches/s':>11}{'first batch s':>15}"
              f"{'of limit':>10}{'vs reference':>14}  note")
    print(f"\nmake_dataset on {category}: {n} training sketches (mean {mean_len:.0f} points), "
          f"batch {batch_size}, png {hp.png_width}, max_seq_len {data.max_seq_len}, "
          f"load {load_s:.1f} s; {os.cpu_count()} CPU cores, TF {tf.__version__}; {rounds} "
          f"interleaved rounds (median), {batches} batches per pipeline and round")
    print(header)
    print("-" * len(header))
    for name, r in rate.items():
        warm = f"{first_s[name]:.2f}" if name in first_s else ""
        limit = f"{100 * r / bound:.0f}%" if name in ("render+aug", "render") else ""
        print(f"{name:<18}{r:>12.0f}{r / batch_size:>11.2f}{warm:>15}{limit:>10}"
              f"{r / rate['reference']:>13.1f}x  {notes[name]}")
    print(f"limit for on-the-fly rendering on one core: 1 / (1 / prerendered + 1 / "
          f"render_sketches) = {bound:.0f} examples/s")
    print(f"one pass over {n} sketches: {n / rate['render+aug']:.1f} s on the fly with "
          f"augmentation, {n / rate['reference']:.1f} s the reference way "
          f"({rate['render+aug'] / rate['reference']:.1f}x)")
    print(json.dumps({
        "bench": "pipeline", "category": category, "num_train": n, "batch_size": batch_size,
        "quick": quick, "rounds": rounds, "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "examples_per_s": {name: round(r, 1) for name, r in rate.items()},
        "first_batch_s": {name: round(v, 2) for name, v in first_s.items()},
        "limit_examples_per_s": round(bound, 1),
        "fraction_of_limit_render_aug": round(rate["render+aug"] / bound, 3),
        "prerender_s": round(n / rate["render_sketches"], 2),
        "prerender_cairo_s_extrapolated": round(n / rate["reference"], 1),
        "speedup_render_aug_vs_reference": round(rate["render+aug"] / rate["reference"], 1),
    }))


if __name__ == "__main__":
    app.run(main)
