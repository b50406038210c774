"""Benchmark: fast TF/XLA renderer vs the cairo reference path, on real drawings.

Renders the same real sketches with both renderers in one run (timings interleaved, warmed up,
medians over repeats), prints a table and ends with one JSON line of headline figures:

    python bench/bench_render.py            # aaron_sheep train (7400) + QuickDraw defaults
    python bench/bench_render.py --quick    # < 1 minute

Rows: fast with one thread and with one per core; cairo in one process (as the reference
seq2png) and, unless --quick, with a spawned process per core (steady rate; start-up reported).
Speedups are against single-process cairo and, when measured, against the process pool.
Pixel differences are fast vs cairo on the same sketches, in /255 units. The machine's load
average is printed: on a shared machine, both renderers slow down together.
"""

import glob
import json
import os
import time

import numpy as np
from absl import app, flags

from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.render import raster

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small run that finishes in under a minute.")
flags.DEFINE_string("sheep", "/work/shared/data/sketchrnn/aaron_sheep.npz",
                    "sketch-rnn .npz whose train split is rendered.")
flags.DEFINE_integer("width", 48, "Image side in pixels.")
flags.DEFINE_integer("repeats", 3, "Timed repeats per renderer (median reported).")

CATEGORY_SIZE = 70000  # sketches in a full QuickDraw category's train split


def load_sketches(quick):
    """Real sketches: aaron_sheep train, plus the QuickDraw defaults when the package ships them."""
    sets = {"aaron_sheep": load_stroke_npz(FLAGS.sheep)["train"]}
    default_dir = os.path.join(os.path.dirname(raster.__file__), "..", "data", "default")
    for path in sorted(glob.glob(os.path.join(default_dir, "*.npz")))[:3 if quick else 20]:
        try:
            sets[os.path.basename(path)[:-4]] = load_stroke_npz(path)["train"]
        except ValueError:  # not a stroke .npz (e.g. an image cache): skip it
            continue
    return sets


def timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv):
    del argv
    quick = FLAGS.quick
    sets = load_sketches(quick)
    sheep = sets["aaron_sheep"]
    n_fast = 2000 if quick else len(sheep)
    n_cairo = 200 if quick else 600
    pool_sizes = () if quick else (800, 2400)
    fast_set, cairo_set = sheep[:n_fast], sheep[:n_cairo]
    width = FLAGS.width
    repeats = 2 if quick else FLAGS.repeats

    # warm-up: XLA compiles one executable per padded shape; cairo loads fonts / caches
    raster.render_sketches(fast_set, width, workers=1)
    raster.render_sketches(fast_set, width)
    raster.render_sketches(cairo_set[:20], width, renderer="cairo", workers=1)

    times = {"fast_1": [], "fast": [], "cairo_1": []}
    cairo_images = fast_images = None
    for _ in range(repeats):  # interleaved, so both see the same background load
        seconds, _ = timed(lambda: raster.render_sketches(fast_set, width, workers=1))
        times["fast_1"].append(seconds)
        seconds, fast_images = timed(lambda: raster.render_sketches(fast_set, width))
        times["fast"].append(seconds)
        seconds, cairo_images = timed(
            lambda: raster.render_sketches(cairo_set, width, renderer="cairo", workers=1))
        times["cairo_1"].append(seconds)
    rates = {"fast_1": n_fast / np.median(times["fast_1"]),
             "fast": n_fast / np.median(times["fast"]),
             "cairo_1": n_cairo / np.median(times["cairo_1"])}
    workers = os.cpu_count() or 1
    startup = None
    if pool_sizes:
        # a pool's rate from two job sizes: the difference cancels the process start-up
        pool_times = [timed(lambda n=n: raster.render_sketches(sheep[:n], width, renderer="cairo",
                                                               workers=workers))[0]
                      for n in pool_sizes]
        rates["cairo_pool"] = (pool_sizes[1] - pool_sizes[0]) / (pool_times[1] - pool_times[0])
        startup = pool_times[0] - pool_sizes[0] / rates["cairo_pool"]

    diff = np.abs(fast_images[:n_cairo].astype(np.int32) - cairo_images.astype(np.int32))
    per_sketch = diff.reshape(n_cairo, -1).mean(axis=1)
    others = {}
    for name, sketches in sets.items():
        if name == "aaron_sheep":
            continue
        subset = sketches[:200 if quick else 500]
        other = np.abs(raster.render_sketches(subset, width).astype(np.int32)
                       - raster.render_sketches(subset, width, renderer="cairo",
                                                workers=1).astype(np.int32))
        others[name] = (float(other.mean()), int(other.max()))

    load = os.getloadavg()[0]
    print(f"sketches: aaron_sheep train (real drawings), width {width}, {workers} cores, "
          f"load average {load:.2f}, repeats {repeats} (median)")
    header = f"{'renderer':<24}{'sketches':>9}{'sketches/s':>12}{'70k category':>14}" \
             f"{'vs cairo x1':>13}{'vs cairo pool':>15}"
    print(header)
    print("-" * len(header))
    labels = {"fast_1": "fast (1 thread)", "fast": f"fast ({workers} threads)",
              "cairo_1": "cairo (1 process)", "cairo_pool": f"cairo ({workers} processes)"}
    counts = {"fast_1": n_fast, "fast": n_fast, "cairo_1": n_cairo,
              "cairo_pool": pool_sizes[-1] if pool_sizes else 0}
    for key, rate in rates.items():
        vs_pool = f"{rate / rates['cairo_pool']:.1f}x" if "cairo_pool" in rates else "-"
        print(f"{labels[key]:<24}{counts[key]:>9}{rate:>12.0f}{CATEGORY_SIZE / rate:>13.1f}s"
              f"{rate / rates['cairo_1']:>12.1f}x{vs_pool:>15}")
    if startup is not None:
        print(f"cairo ({workers} processes): steady rate from jobs of {pool_sizes} sketches; "
              f"process start-up costs {startup:.1f} s per job on top")
    print(f"fast vs cairo, {n_cairo} aaron_sheep sketches: mean |diff| {diff.mean():.3f}/255, "
          f"max |diff| {diff.max()}/255, worst sketch mean {per_sketch.max():.3f}/255, "
          f"pixels off by > 32: {(diff > 32).mean() * 100:.3f}%")
    for name, (mean, worst) in others.items():
        print(f"fast vs cairo, {name}: mean |diff| {mean:.3f}/255, max |diff| {worst}/255")

    speedup = rates["fast"] / rates["cairo_1"]
    mean_diff = float(diff.mean())
    print(f"targets: speedup >= 100x vs cairo: {'met' if speedup >= 100 else 'MISSED'} "
          f"({speedup:.0f}x); mean |diff| <= 2/255: {'met' if mean_diff <= 2 else 'MISSED'} "
          f"({mean_diff:.2f}); 70k category in {CATEGORY_SIZE / rates['fast']:.1f} s")
    headline = {
        "fast_sketches_per_s": round(rates["fast"], 1),
        "fast_1thread_sketches_per_s": round(rates["fast_1"], 1),
        "cairo_sketches_per_s": round(rates["cairo_1"], 1),
        "speedup": round(speedup, 1),
        "speedup_1thread_vs_1process": round(rates["fast_1"] / rates["cairo_1"], 1),
        "mean_abs_diff_255": round(mean_diff, 3),
        "max_abs_diff_255": int(diff.max()),
        "seconds_per_70k_fast": round(CATEGORY_SIZE / rates["fast"], 2),
        "load_average": round(load, 2),
        "quick": quick,
    }
    if "cairo_pool" in rates:
        headline["cairo_pool_sketches_per_s"] = round(rates["cairo_pool"], 1)
        headline["speedup_vs_cairo_pool"] = round(rates["fast"] / rates["cairo_pool"], 1)
    print(json.dumps(headline))


if __name__ == "__main__":
    app.run(main)
