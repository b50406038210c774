"""Throughput of the training input pipeline (``make_dataset``) on real sketches.

Rows (examples/s and batches/s over the timed batches; "first batch s" is the time from
``make_dataset`` to the first batch, tracing included, and is not part of the rate):

- ``render+aug``: the training default: stroke augmentation (scale 0.1, point drop 0.1) and the
  48x48 image rendered on the fly from the augmented strokes (``render_batch`` inside ``map``);
- ``render``: the same without augmentation;
- ``prerendered``: images rendered once with ``render_sketches`` and passed as ``images=`` (the
  one-off rendering cost is its own row);
- ``reference``: what the reference does per example, in a Python loop: NumPy random scaling,
  sketch-rnn's point-dropping loop, NumPy stroke-5 padding and one cairo image per sketch
  (``svg.render_cairo``, as its seq2png), timed on a small subset and extrapolated. Like the
  ``render+aug`` row, its images follow the augmented strokes.

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

import tensorflow as tf  # noqa: E402

import hparams  # noqa: E402
from sketchtk.data import loader  # noqa: E402
from sketchtk.data import strokes as stroke_ops  # noqa: E402
from sketchtk.data.pipeline import make_dataset  # noqa: E402
from sketchtk.render import raster, svg  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "/work/shared/data/sketchrnn",
                    "Directory of <category>.npz; empty = the embedded default QuickDraw subset.")
flags.DEFINE_string("category", "aaron_sheep", "Category to load (empty = the first available).")
flags.DEFINE_integer("batch_size", 128, "Examples per batch (the paper's 128).")
flags.DEFINE_integer("batches", 45, "Timed batches per pipeline row (over 3 rounds; best kept).")
flags.DEFINE_integer("num_train", 0, "Training sketches to load (0 = all).")
flags.DEFINE_integer("reference_sketches", 256, "Sketches timed for the reference-style row.")
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
    rounds = 2 if quick else 3
    batches = 4 if quick else max(1, FLAGS.batches // rounds)
    num_train = FLAGS.num_train or (1024 if quick else 0)
    num_reference = min(FLAGS.reference_sketches, 48 if quick else FLAGS.reference_sketches)

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

    rows = []

    def add(name, examples, seconds, warm=None, note=""):
        rows.append({"name": name, "examples_per_s": examples / seconds,
                     "batches_per_s": examples / batch_size / seconds, "seconds": seconds,
                     "first_batch_s": warm, "note": note})

    raster.render_sketches(train.sketches[:2], width=hp.png_width)  # trace once, untimed
    start = time.perf_counter()
    images = raster.render_sketches(train.sketches, width=hp.png_width)
    prerender_s = time.perf_counter() - start

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
    # The machine may be shared: time the pipelines in interleaved rounds and keep each one's
    # best round, so that a burst of outside load does not land on one row only. Only one
    # iterator lives at a time: a live one keeps prefetching in the background.
    best = {name: float("inf") for name in builders}
    for _ in range(rounds):
        for name, dataset in datasets.items():
            it = first_batch(dataset)
            best[name] = min(best[name], time_batches(it, batches))
            del it
    for name, (_, note) in builders.items():
        add(name, batches * batch_size, best[name], first_s[name], note)
    add("  one-off render_sketches", n, prerender_s, note=f"{n} sketches, fast TF renderer")

    rng = np.random.default_rng(0)
    subset = [train.sketches[i] for i in rng.permutation(n)[:num_reference]]
    start = time.perf_counter()
    for lo in range(0, len(subset), batch_size):
        reference_batch(subset[lo:lo + batch_size], data.max_seq_len, hp, rng, hp.png_width)
    reference_s = time.perf_counter() - start
    add("reference", len(subset), reference_s,
        note=f"Python loop + cairo, {len(subset)} sketches extrapolated")
    cairo_rate = len(subset) / reference_s

    header = f"{'pipeline':<28}{'examples/s':>12}{'batches/s':>11}{'first batch s':>15}  note"
    print(f"\nmake_dataset on {category}: {n} training sketches (mean {mean_len:.0f} points), "
          f"batch {batch_size}, png {hp.png_width}, max_seq_len {data.max_seq_len}, "
          f"load {load_s:.1f} s; {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(header)
    print("-" * len(header))
    for r in rows:
        warm = "" if r["first_batch_s"] is None else f"{r['first_batch_s']:.2f}"
        print(f"{r['name']:<28}{r['examples_per_s']:>12.0f}{r['batches_per_s']:>11.2f}{warm:>15}"
              f"  {r['note']}")
    by_name = {r["name"]: r["examples_per_s"] for r in rows}
    epoch_s = {name: n / by_name[name] for name in ("render+aug", "reference")}
    print(f"one pass over {n} sketches: {epoch_s['render+aug']:.1f} s on the fly with augmentation, "
          f"{epoch_s['reference']:.1f} s the reference way "
          f"({by_name['render+aug'] / by_name['reference']:.1f}x)")
    headline = {
        "bench": "pipeline",
        "category": category,
        "num_train": n,
        "batch_size": batch_size,
        "quick": quick,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "examples_per_s_render_aug": round(by_name["render+aug"], 1),
        "examples_per_s_render": round(by_name["render"], 1),
        "examples_per_s_prerendered": round(by_name["prerendered"], 1),
        "examples_per_s_reference": round(by_name["reference"], 1),
        "prerender_s": round(prerender_s, 2),
        "prerender_cairo_s_extrapolated": round(n / cairo_rate, 1),
        "speedup_render_aug_vs_reference": round(by_name["render+aug"] / by_name["reference"], 1),
    }
    print(json.dumps(headline))


if __name__ == "__main__":
    app.run(main)
