"""Sampling throughput: the compiled batched sampler vs a reference-style sampler, in one run.

The reference (and magenta) sample one sketch at a time with one ``session.run`` per point and
always run ``max_len`` points. ``ReferenceStyleSampler`` reproduces that (batch 1, one compiled
decoder call per point from Python, no early stop): the baseline, measured in the same run.
``Sampler`` decodes whole batches in one ``tf.function`` while-loop that stops each sketch at its
end token. Rows: LSTM-512 and HyperLSTM-512, float32 and mixed bfloat16, at ``--batch`` (100);
all timed **interleaved** (one call of each per round), medians over the rounds, and the machine's
matmul limit (float32 / bfloat16 at 2048^3 and at the LSTM-512 step shape) measured at every round;
each row is also given as a fraction of that limit.

Weights are freshly initialised (the same seed for every row). An untrained decoder may emit the
end token early (the fresh LSTM-512 ends every sketch within ~45 steps), so the timed samplers run
with ``Sampler(ignore_end=True)``: no row stops at its end token and every call decodes all
``max_len`` steps, the same work per step as a real sketch (the ``steps`` column shows it).
``--stop_at_end`` times the normal early-stopping sampler instead, its rate then scaled to
``max_len`` steps (``sketches/s x steps run / max_len``).

Usage: python bench/bench_sample.py [--quick] [--batch=100] [--max_len=250] [--rounds=5]
The last line printed is one JSON object with the headline figures.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench_common import format_peaks, load_average, make_peak_probe, median, merge_peaks  # noqa: E402,E501
from sketchtk.config import HParams  # noqa: E402
from sketchtk.models.sketch_vae import SketchVAE  # noqa: E402
from sketchtk.sampling.sampler import ReferenceStyleSampler, Sampler  # noqa: E402

# Documented context only (constants from issue 10, an idle 2-core machine, 512 decoders).
ANCHORS = {"PyTorch sketch-rnn LSTM-512": 1.6, "magenta sketch_rnn LSTM-512": 1.76,
           "magenta sketch_rnn HyperLSTM-512": 1.24}
GOALS = {"lstm-512": 200.0, "hyper-512": 100.0, "hyper-512-bf16": 150.0}
NUM_MIXTURE = 20
HYPER_UNITS, HYPER_EMBEDDING = 256, 32


def step_flops(dec_model, units, batch):
    """Matmul FLOPs of one decoding step of a batch (recurrent, stroke-5 input, head, hyper)."""
    n = units
    gates = 4 * n + (4 * HYPER_UNITS if dec_model == "hyper" else 0)
    flops = 2 * batch * (n * gates + 5 * gates + n * (6 * NUM_MIXTURE + 3))
    if dec_model == "hyper":
        e, h = HYPER_EMBEDDING, HYPER_UNITS
        flops += 2 * batch * (h * 4 * h + h * 12 * e + 12 * e * n)
    return flops


def build(dec_model, units, max_len, precision):
    keras.utils.set_random_seed(0)  # the same weights for the float32 and bfloat16 rows
    hp = HParams(categories=("a",), dec_model=dec_model, dec_rnn_size=units, num_mixture=1,
                 num_sub=2, z_size=128, mdn_components=NUM_MIXTURE, precision=precision)
    model = SketchVAE(hp, max_len, 1.0, ("a",))
    model.build_from_batch(model.dummy_batch())
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 60 steps (< 2 minutes)")
    parser.add_argument("--configs", default="lstm-512,hyper-512,lstm-512-bf16,hyper-512-bf16",
                        help="comma list of dec_model-units[-bf16]")
    parser.add_argument("--max_len", type=int, default=None)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--xla", action="store_true", help="compile the whole loop with XLA")
    parser.add_argument("--stop_at_end", action="store_true",
                        help="time the early-stopping sampler (default: every row runs max_len)")
    args = parser.parse_args()
    max_len = args.max_len or (60 if args.quick else 250)
    rounds = args.rounds or (2 if args.quick else 5)
    n_ref = 1 if args.quick else 2
    load_start = load_average()
    probe = make_peak_probe()
    z = np.random.default_rng(0).normal(size=(args.batch, 128)).astype(np.float32)

    samplers, refs = {}, {}
    for name in args.configs.split(","):
        parts = name.split("-")
        precision = "mixed_bfloat16" if parts[-1] == "bf16" else "float32"
        model = build(parts[0], int(parts[1]), max_len, precision)
        samplers[name] = Sampler(model, jit_compile=args.xla, ignore_end=not args.stop_at_end)
        samplers[name].sample_stroke5(z, 0.24, seed=99)  # trace (and compile) at this batch size
        if precision == "float32":
            refs[name] = ReferenceStyleSampler(model, max_len=max_len)
            refs[name].sample(z[:1], 0.24, seed=0)        # trace
    times = {name: [] for name in samplers}
    ref_times = {name: [] for name in refs}
    steps, peaks = {}, []
    for rep in range(rounds):  # interleaved: every sampler once per round, same background load
        peaks.append(probe(3))
        for name, sampler in samplers.items():
            start = time.perf_counter()
            steps[name] = sampler.sample_stroke5(z, 0.24, seed=rep).numpy().shape[1]
            times[name].append(time.perf_counter() - start)
        for name, ref in refs.items():
            if rep < 2:  # the baseline is slow: two rounds of n_ref sketches
                start = time.perf_counter()
                ref.sample(z[:n_ref], 0.24, seed=rep)
                ref_times[name].append((time.perf_counter() - start) / n_ref)
    peaks = merge_peaks(peaks)

    rows = {}
    for name in samplers:
        parts = name.split("-")
        dtype = "bfloat16" if parts[-1] == "bf16" else "float32"
        seconds = median(times[name])
        flops = step_flops(parts[0], int(parts[1]), args.batch) * steps[name]
        base = "-".join(parts[:2])
        ref_rate = 1.0 / median(ref_times[base]) if base in ref_times else None
        rows[name] = {
            # a loop that ended early (every sketch drew its end token) is scaled to max_len
            # steps, so that every row is the rate for max_len-point sketches
            "sketches_per_s": args.batch / seconds * steps[name] / max_len,
            "steps": steps[name], "s_per_batch": seconds,
            "gflops": flops / seconds / 1e9,
            "fraction_of_step_shape_peak": flops / seconds / 1e9 / peaks[dtype]["lstm512_step"],
            "sketches_per_s_at_step_shape_peak": args.batch * steps[name] / max_len / (
                flops / 1e9 / peaks[dtype]["lstm512_step"]),
            "reference_style_sketches_per_s": ref_rate,
            "speedup_vs_reference_style": (args.batch / seconds / ref_rate) if ref_rate else None,
        }
    mode = "stops at the end token, scaled" if args.stop_at_end else "ignore_end: all steps"
    print(f"bench_sample: batch {args.batch}, max_len {max_len} ({mode}), "
          f"{rounds} interleaved rounds, load average {load_start} -> {load_average()}")
    print(f"matmul peak this run: {format_peaks(peaks)}")
    header = (f"{'config':16s} {'sketches/s':>10s} {'steps':>6s} {'GFLOP/s':>8s} {'of step':>8s} "
              f"{'@peak sk/s':>10s} {'ref-style sk/s':>14s} {'vs ref':>8s}  goal")
    print(header)
    print("-" * len(header))
    goals = {}
    for name, r in rows.items():
        goal = ""
        if name in GOALS and max_len == 250:
            met = r["sketches_per_s"] >= GOALS[name]
            goals[name] = {"goal_sketches_per_s": GOALS[name], "met": met,
                           "sketches_per_s": round(r["sketches_per_s"], 1)}
            goal = f">= {GOALS[name]:.0f}/s: {'met' if met else 'NOT met'}"
        ref = (f"{r['reference_style_sketches_per_s']:14.2f} {r['speedup_vs_reference_style']:7.0f}x"
               if r["reference_style_sketches_per_s"] else f"{'-':>14s} {'-':>8s}")
        print(f"{name:16s} {r['sketches_per_s']:10.1f} {r['steps']:6d} {r['gflops']:8.1f} "
              f"{100 * r['fraction_of_step_shape_peak']:7.0f}% "
              f"{r['sketches_per_s_at_step_shape_peak']:10.0f} {ref}  {goal}")
    print("of step: GFLOP/s / this run's matmul rate of the same dtype at [2048,512]x[512,100]; "
          "@peak sk/s: the rate if every matmul ran at that rate and nothing else cost time.")
    for label, rate in ANCHORS.items():
        print(f"context (constant, not measured here): {label} {rate} sketches/s")
    print(json.dumps({"bench": "sample", "quick": args.quick, "batch": args.batch,
                      "max_len": max_len, "rounds": rounds, "xla": args.xla,
                      "ignore_end": not args.stop_at_end,
                      "peak_gflops": {d: {k: round(v, 1) for k, v in s.items()}
                                      for d, s in peaks.items()},
                      "configs": {n: {k: (round(v, 4) if isinstance(v, float) else v)
                                      for k, v in r.items()} for n, r in rows.items()},
                      "goals": goals}))


if __name__ == "__main__":
    main()
