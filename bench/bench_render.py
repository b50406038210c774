"""Benchmark: fast TF/XLA renderer and direct cairo vs the reference svgwrite + cairosvg path.

Real QuickDraw drawings: the embedded categories (sketchtk/data/default, all splits) and the
packed ``.ndjson`` fixtures (tests/fixtures/quickdraw: simplified, raw and shapes), repeated to a
job of ``--count`` sketches; the sketch-rnn sheep (``--sheep``) as a second, longer-stroked set.
Every renderer runs in the same process, interleaved (one job of each per round), medians over
the rounds after a warm-up; the machine's float32 matmul rate is probed at every round as a load
indicator (the renderers are not matmul-bound, so it is no limit for them).

    python bench/bench_render.py            # 4000 QuickDraw sketches, 5 rounds
    python bench/bench_render.py --quick    # < 1 minute

Rows: fast with 1 thread and one per core; ``cairo_direct`` (cairo's own API, pixel-identical to
cairosvg) with 1 thread and one per core; svgwrite + cairosvg in one process (the reference
seq2png, the 1x of the 100x target). Pixel agreement: fast vs cairosvg (mean and max abs diff,
/255) on every set; cairo_direct vs cairosvg: the number of differing pixels (must be 0).
The last line printed is one JSON object with the headline figures.
"""

import glob
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import load_average, make_peak_probe, median, merge_peaks  # noqa: E402
from sketchtk.data import quickdraw  # noqa: E402
from sketchtk.data.npz_io import load_stroke_npz  # noqa: E402
from sketchtk.render import raster  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small run that finishes in under a minute.")
flags.DEFINE_string("sheep", "/work/shared/data/sketchrnn/aaron_sheep.npz",
                    "sketch-rnn .npz whose train split is the second set (skipped if absent).")
flags.DEFINE_integer("width", 48, "Image side in pixels.")
flags.DEFINE_integer("count", 4000, "Sketches per timed job (QuickDraw drawings, repeated).")
flags.DEFINE_integer("rounds", 5, "Timed rounds (median reported).")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATEGORY_SIZE = 70000  # sketches in a full QuickDraw category's train split


def load_sets():
    """{name: list of stroke-3 arrays}: embedded categories, ndjson fixtures, sheep."""
    sets = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "sketchtk", "data", "default", "*.npz"))):
        splits = load_stroke_npz(path)
        sets["qd " + os.path.basename(path)[:-4]] = [s for k in ("train", "valid", "test")
                                                     for s in splits[k]]
    for kind in ("simplified", "raw", "shapes"):
        drawings = []
        for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "quickdraw", kind,
                                                  "*.ndjson"))):
            drawings += [s for _, _, s in quickdraw.iter_stroke3(path)]
        if drawings:
            sets[f"ndjson {kind}"] = drawings
    if os.path.exists(FLAGS.sheep):
        sets["sheep"] = list(load_stroke_npz(FLAGS.sheep)["train"][:2000])
    return sets


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv):
    del argv
    quick = FLAGS.quick
    width = FLAGS.width
    rounds = 2 if quick else FLAGS.rounds
    sets = load_sets()
    quickdraw_all = [s for name, v in sets.items() if name != "sheep" for s in v]
    count = 1000 if quick else FLAGS.count
    job = (quickdraw_all * (count // len(quickdraw_all) + 1))[:count]
    cairo_job = job[:200 if quick else 400]          # svgwrite + cairosvg is slow: a shorter job
    cores = os.cpu_count() or 1
    renderers = {
        "fast_1": lambda: raster.render_sketches(job, width, workers=1),
        "fast": lambda: raster.render_sketches(job, width, workers=cores),
        "direct_1": lambda: raster.render_sketches(job, width, renderer="cairo_direct", workers=1),
        "direct": lambda: raster.render_sketches(job, width, renderer="cairo_direct",
                                                 workers=cores),
        "cairo_1": lambda: raster.render_sketches(cairo_job, width, renderer="cairo", workers=1),
    }
    sizes = {name: len(cairo_job) if name == "cairo_1" else len(job) for name in renderers}
    probe = make_peak_probe()
    load_start = load_average()
    for fn in renderers.values():  # warm-up: XLA compiles per padded shape, cairo caches
        fn()
    times = {name: [] for name in renderers}
    peaks = []
    for _ in range(rounds):  # interleaved, so every renderer sees the same background load
        peaks.append(probe(3))
        for name, fn in renderers.items():
            times[name].append(timed(fn)[0])
    rates = {name: sizes[name] / median(t) for name, t in times.items()}
    peaks = merge_peaks(peaks)

    agreement = {}
    for name, sketches in sets.items():
        subset = sketches[:150 if quick else 500]
        reference = raster.render_sketches(subset, width, renderer="cairo", workers=1)
        fast = raster.render_sketches(subset, width, workers=1)
        direct = raster.render_sketches(subset, width, renderer="cairo_direct", workers=1)
        diff = np.abs(fast.astype(np.int32) - reference.astype(np.int32))
        agreement[name] = {"sketches": len(subset), "mean_abs_diff_255": float(diff.mean()),
                           "max_abs_diff_255": int(diff.max()),
                           "direct_differing_pixels": int((direct != reference).sum())}

    labels = {"fast_1": "fast (TF/XLA), 1 thread", "fast": f"fast (TF/XLA), {cores} threads",
              "direct_1": "cairo_direct, 1 thread", "direct": f"cairo_direct, {cores} threads",
              "cairo_1": "svgwrite + cairosvg, 1 process"}
    print(f"bench_render: {len(quickdraw_all)} distinct QuickDraw drawings repeated to {len(job)} "
          f"per job, width {width}, {cores} cores, {rounds} interleaved rounds (median), load "
          f"average {load_start} -> {load_average()}, float32 matmul 2048^3 "
          f"{peaks['float32']['2048^3']:.0f} GFLOP/s this run")
    header = f"{'renderer':<34}{'sketches/s':>12}{'70k category':>14}{'vs cairosvg':>13}"
    print(header)
    print("-" * len(header))
    for name, rate in rates.items():
        print(f"{labels[name]:<34}{rate:>12.0f}{CATEGORY_SIZE / rate:>13.1f}s"
              f"{rate / rates['cairo_1']:>12.1f}x")
    print()
    print(f"{'pixel agreement with cairosvg':<30}{'sketches':>9}{'fast mean':>11}{'fast max':>10}"
          f"{'direct: pixels off':>20}")
    for name, a in agreement.items():
        print(f"{name:<30}{a['sketches']:>9}{a['mean_abs_diff_255']:>10.3f}/"
              f"{a['max_abs_diff_255']:>9d}/{a['direct_differing_pixels']:>20d}")
    speedup = rates["fast"] / rates["cairo_1"]
    worst_mean = max(a["mean_abs_diff_255"] for a in agreement.values())
    identical = all(a["direct_differing_pixels"] == 0 for a in agreement.values())
    print(f"targets: fast >= 100x svgwrite+cairosvg: {'met' if speedup >= 100 else 'NOT met'} "
          f"({speedup:.0f}x); mean |diff| <= 2/255 on every set: "
          f"{'met' if worst_mean <= 2 else 'NOT met'} (worst {worst_mean:.2f}); cairo_direct "
          f"pixel-identical: {'yes' if identical else 'NO'} "
          f"({rates['direct'] / rates['cairo_1']:.1f}x cairosvg)")
    print(json.dumps({
        "bench": "render", "quick": quick, "sketches_per_job": len(job), "rounds": rounds,
        "sketches_per_s": {k: round(v, 1) for k, v in rates.items()},
        "speedup_vs_cairosvg": {k: round(v / rates["cairo_1"], 2) for k, v in rates.items()},
        "agreement": agreement, "cairo_direct_identical": identical,
        "worst_mean_abs_diff_255": round(worst_mean, 3),
        "float32_matmul_gflops": round(peaks["float32"]["2048^3"], 1),
        "load_average": load_average(),
    }))


if __name__ == "__main__":
    app.run(main)
