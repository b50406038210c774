"""r-Shortcut against the plain samplers: denoiser calls, sketches/s, Rec and FID, in one run.

On a trained class-conditional ``stroke_diffusion`` run (default: the ``chirodiff`` preset run,
T = 100) and a Sketch-a-Net classifier run: trains the r-Shortcut regressor when ``--regressor``
does not exist yet (``sketchtk.sampling.diffusion_apps.train_shortcut_regressor``), calibrates the
shortcut thresholds on one set of noises (seed 1) so the average number of denoiser calls is about
``--match`` (DDIM-30's 30) and about two thirds of it, then samples the *same* class-conditional
sketches (labels, lengths and x_T from seed 0) with:

- DDPM over all T (variance strength 1), DDIM respaced to ``--match`` steps (eta 0): the compiled
  batched loops of ``ReverseSampler`` (what ``sample.py`` runs);
- DDIM respaced to the "fewer" count (two thirds of ``--match``), the equal-steps baseline of the
  rows with fewer calls;
- r-Shortcut over DDPM-T at the calibrated thresholds (``ShortcutSampler``: a Python loop over
  steps, the finished sketches leaving the batch), in both variants: *jump* (to the
  x0-prediction) and *strides* (switch to the ``--stride_steps``-step respaced DDIM schedule).

Every configuration is timed once per round, rounds interleaved, medians reported (the first
round also traces). Rec and FID (in the classifier's feature space, against the test split) come
from ``retrieval.py``'s evaluation of each configuration's ``samples.npz``.

Usage: python bench/bench_shortcut.py [--quick] [--model_dir=...] [--classifier_dir=...]
    [--regressor=PATH] [--out_dir=DIR]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from sketchtk.data.npz_io import save_npz_atomic  # noqa: E402
from sketchtk.data.point_sequences import padded_length  # noqa: E402
from sketchtk.diffusion.samplers import sampling_timesteps  # noqa: E402
from sketchtk.diffusion.shortcut import ShortcutSampler  # noqa: E402
from sketchtk.metrics.evaluate import run_evaluation  # noqa: E402
from sketchtk.sampling import diffusion_apps as apps  # noqa: E402


def noise_batch(loaded, labels, seed):
    lengths = loaded.model.sample_lengths(labels, seed)
    mask = tf.sequence_mask(lengths, padded_length(int(lengths.max())), dtype=tf.float32).numpy()
    x_T = tf.random.stateless_normal(mask.shape + (loaded.model.channels,), (seed, 1)).numpy()
    return x_T, mask


def calibrate(scores, target, min_steps, calls_of=None):
    """The threshold whose exits (from a full run's scores) average closest to ``target`` calls;
    ``calls_of`` maps the exit steps to the calls actually used (the strides variant)."""
    calls_of = calls_of or (lambda k: k)
    candidates = np.unique(np.concatenate([np.nanquantile(scores, np.linspace(0, 1, 401)),
                                           [2.0]]))
    means = np.array([calls_of(ShortcutSampler.exit_steps(scores, c, min_steps)).mean()
                      for c in candidates])
    best = int(np.argmin(np.abs(means - target)))
    return float(candidates[best]), float(means[best])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 4 sketches per category")
    parser.add_argument("--model_dir", default="/work/runs_b/chirodiff")
    parser.add_argument("--classifier_dir", default="/work/runs_b/classifier")
    parser.add_argument("--regressor", default="runs/shortcut/regressor.keras")
    parser.add_argument("--out_dir", default="runs/shortcut/bench")
    parser.add_argument("--regressor_steps", type=int, default=400)
    parser.add_argument("--match", type=int, default=30, help="DDIM steps to match")
    parser.add_argument("--min_steps", type=int, default=5)
    parser.add_argument("--num_per_category", type=int, default=None)
    parser.add_argument("--stride_steps", type=int, default=10,
                        help="the strides variant's coarse DDIM schedule (steps over T)")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    per_cat = args.num_per_category or (4 if args.quick else 10)

    loaded = apps.Loaded(args.model_dir)
    training = None
    if not os.path.exists(args.regressor):
        training = apps.train_shortcut_regressor(loaded, args.classifier_dir, args.regressor,
                                                 steps=args.regressor_steps)
    regressor = apps.load_regressor(args.regressor)
    process = loaded.model.process
    categories = list(loaded.config["categories"])
    labels = np.repeat(np.arange(len(categories), dtype=np.int32), per_cat)
    cond = loaded.context(apps.class_conditions(loaded, labels))
    full = sampling_timesteps(process)
    shortcut = apps.shortcut_sampler(loaded, regressor, "ddpm")

    # calibration on other noises (seed 1): one full run records every step's score
    cal_x, cal_mask = noise_batch(loaded, labels, 1)
    _, _, _, cal_scores = shortcut.sample(cal_x, cal_mask, full, threshold=2.0,
                                          min_steps=args.min_steps, seed=(1, 2), context=cond)
    targets = {"match": args.match, "fewer": round(args.match * 2 / 3)}
    thresholds = {k: calibrate(cal_scores, v, args.min_steps) for k, v in targets.items()}
    num_steps = process.num_steps
    stride_thresholds = {k: calibrate(cal_scores, v, args.min_steps, lambda e: ShortcutSampler.
                                      stride_calls(full, e, args.stride_steps, num_steps))
                         for k, v in targets.items()}

    x_T, mask = noise_batch(loaded, labels, 0)
    plain = loaded.sampler()
    configs = {
        f"DDPM, all {len(full)} steps": lambda: plain.sample(x_T, mask, full, "ddpm", seed=(0, 2),
                                                             context=cond)[:2] + (None,),
        f"DDIM, {args.match} steps": lambda: plain.sample(
            x_T, mask, sampling_timesteps(process, args.match), "ddim", eta=0.0, seed=(0, 2),
            context=cond)[:2] + (None,),
        f"DDIM, {targets['fewer']} steps": lambda: plain.sample(
            x_T, mask, sampling_timesteps(process, targets["fewer"]), "ddim", eta=0.0,
            seed=(0, 2), context=cond)[:2] + (None,),
    }
    steps_of = dict(zip(configs, (len(full), args.match, targets["fewer"])))
    for key, (threshold, _) in thresholds.items():
        name = f"r-Shortcut jump on DDPM-{len(full)}, threshold {threshold:.3f}"
        configs[name] = (lambda th=threshold: shortcut.sample(
            x_T, mask, full, threshold=th, min_steps=args.min_steps, seed=(0, 2),
            context=cond)[:3])
    for key, (threshold, _) in stride_thresholds.items():
        name = (f"r-Shortcut strides (DDPM-{len(full)} then DDIM-{args.stride_steps}), "
                f"threshold {threshold:.3f}")
        configs[name] = (lambda th=threshold: shortcut.sample(
            x_T, mask, full, threshold=th, min_steps=args.min_steps, seed=(0, 2),
            context=cond, stride_steps=args.stride_steps)[:3])
    times = {name: [] for name in configs}
    outputs = {}
    for r in range(rounds):
        for name, fn in configs.items():
            start = time.perf_counter()
            x0, pen, calls = fn()
            np.asarray(x0)
            times[name].append(time.perf_counter() - start)
            outputs[name] = (np.asarray(x0), np.asarray(pen), calls)
    rows = []
    for i, (name, (x0, pen, calls)) in enumerate(outputs.items()):
        sketches = loaded.strokes(x0, pen, mask)
        sample_dir = os.path.join(args.out_dir, f"config_{i}")
        os.makedirs(sample_dir, exist_ok=True)
        strokes = np.empty(len(sketches), dtype=object)
        strokes[:] = sketches
        save_npz_atomic(os.path.join(sample_dir, "samples.npz"),
                        {"strokes": strokes, "labels": labels,
                         "names": np.array([categories[c] for c in labels]),
                         "ref_index": np.full(len(labels), -1, np.int64),
                         "conditional": np.bool_(True)}, compressed=False)
        metrics = run_evaluation(args.model_dir, sample_dir, args.classifier_dir)
        used = float(np.mean(calls)) if calls is not None else float(steps_of[name])
        med = float(np.median(times[name]))
        rows.append({"config": name, "denoiser_calls_per_sketch": used,
                     "sketches_per_s": len(labels) / med, "seconds": med,
                     "rec": metrics["rec"], "fid": metrics["fid"],
                     "precision": metrics["precision"], "recall": metrics["recall"]})
    print(f"\n{len(labels)} class-conditional sketches, {rounds} round(s), medians; "
          f"thresholds calibrated on seed-1 noises: jump {thresholds}, strides "
          f"{stride_thresholds}")
    print("| sampler | denoiser calls / sketch | sketches/s | Rec | FID | P | R |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['denoiser_calls_per_sketch']:.1f} | "
              f"{row['sketches_per_s']:.2f} | {row['rec']:.2f} | {row['fid']:.1f} | "
              f"{row['precision']:.2f} | {row['recall']:.2f} |")
    print(json.dumps({"rows": rows, "thresholds": thresholds,
                      "stride_thresholds": stride_thresholds, "stride_steps": args.stride_steps,
                      "regressor_training": training,
                      "num_sketches": int(len(labels)), "rounds": rounds, "quick": args.quick}))


if __name__ == "__main__":
    main()
