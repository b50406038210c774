"""Sampling throughput: the compiled batched sampler vs a reference-style sampler, in one run.

The reference (and magenta) sample one sketch at a time with one ``session.run`` per point and
always run ``max_len`` points. ``ReferenceStyleSampler`` reproduces that (batch 1, one compiled
decoder call per point from Python, no early stop). ``Sampler`` decodes whole batches in one
``tf.function`` while-loop that stops each sketch at its end token.

Weights are freshly initialised (an untrained decoder rarely emits the end token, so the batched
sampler also runs all ``max_len`` steps here: the worst case, not a flattering one).

Usage: python bench/bench_sample.py [--quick] [--dec_model=hyper] [--units=512]
Anchors (2-core machine, 512 decoder): magenta sketch_rnn 1.6-1.9 sketches/s, a PyTorch
sketch-rnn 3.4 sketches/s. Target: >= 100 sketches/s and >= 30x the reference-style sampler.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sketchtk.config import HParams  # noqa: E402
from sketchtk.models.sketch_vae import SketchVAE  # noqa: E402
from sketchtk.sampling.sampler import ReferenceStyleSampler, Sampler  # noqa: E402
from sketchtk.training.trainer import _build  # noqa: E402

ANCHORS = {"magenta sketch_rnn (TF1)": 1.75, "PyTorch sketch-rnn": 3.4}


def build(dec_model, units, max_len):
    hp = HParams(categories=("a",), dec_model=dec_model, dec_rnn_size=units, num_mixture=1,
                 num_sub=2, z_size=128)
    model = SketchVAE(hp, max_len, 1.0, ("a",))
    _build(model, {"hparams": hp.to_dict(), "max_seq_len": max_len, "categories": ["a"]})
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sketches (< 1 minute)")
    parser.add_argument("--dec_model", default="hyper", choices=["lstm", "layer_norm", "hyper"])
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--max_len", type=int, default=250)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--xla", action="store_true", help="compile the decoding loop with XLA")
    args = parser.parse_args()
    batch = args.batch or (100 if args.quick else 500)
    n_ref = 2 if args.quick else 5
    model = build(args.dec_model, args.units, args.max_len)
    z = np.random.default_rng(0).normal(size=(batch, 128)).astype(np.float32)

    fast = Sampler(model, jit_compile=args.xla)
    fast.sample_stroke5(z, 0.24, seed=99)  # trace (and XLA-compile) at the measured batch size
    times, steps = [], None
    for rep in range(2 if args.quick else 3):
        t0 = time.perf_counter()
        s5 = fast.sample_stroke5(z, 0.24, seed=rep).numpy()
        times.append(time.perf_counter() - t0)
        steps = s5.shape[1]
    fast_rate = batch / np.median(times)

    ref = ReferenceStyleSampler(model, max_len=args.max_len)
    ref.sample(z[:1], 0.24, seed=0)  # trace
    t0 = time.perf_counter()
    ref.sample(z[:n_ref], 0.24, seed=1)
    ref_rate = n_ref / (time.perf_counter() - t0)

    rows = [("batched compiled sampler (sketchtk)", f"batch {batch}", fast_rate),
            ("reference-style sampler (in repo)", "batch 1, call per point", ref_rate)]
    rows += [(name + " [anchor]", "measured elsewhere", rate) for name, rate in ANCHORS.items()]
    print(f"decoder {args.dec_model} {args.units}, max_len {args.max_len}, "
          f"batched loop ran {steps} steps")
    print(f"{'sampler':40s} {'mode':26s} {'sketches/s':>11s} {'vs ref-style':>13s}")
    for name, mode, rate in rows:
        print(f"{name:40s} {mode:26s} {rate:11.2f} {rate / ref_rate:12.1f}x")
    speedup = fast_rate / ref_rate
    print(f"target >= 100 sketches/s: {'met' if fast_rate >= 100 else 'MISSED'}; "
          f"target >= 30x reference-style: {'met' if speedup >= 30 else 'MISSED'}")
    print(json.dumps({"sketches_per_s": round(fast_rate, 2),
                      "reference_style_sketches_per_s": round(ref_rate, 3),
                      "speedup_vs_reference": round(speedup, 1),
                      "speedup_vs_pytorch_anchor": round(fast_rate / ANCHORS["PyTorch sketch-rnn"], 1),
                      "dec_model": args.dec_model, "units": args.units, "batch": batch, "xla": args.xla,
                      "quick": args.quick}))


if __name__ == "__main__":
    main()
