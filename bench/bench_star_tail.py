"""Star-shaped training draw of the tail statistic G_t: the reference's all-T draw vs the ragged
draw vs the Gaussian closed form, in one run.

The reference (andrey-okhotin/star-shaped ``star_shaped_diffusion.py:78-91``) draws all T
``x_s`` of every example at every training step (``x0.repeat(N)``: O(T) time and memory) and
masks the ones before t. Measured here, each as one compiled ``tf.function`` on a batch of the
mixed sketch process's shapes (``[B, L, C]``, t ~ U[0, T)):

- ``exhaustive``: that all-T draw, vectorised (``StarFamily.tail_sample_exhaustive``);
- ``ragged``: only the needed ``x_s, s >= t_b`` (``sum_b (T - t_b)``, B T / 2 on average) as one
  flat draw + a segment sum (``StarFamily.tail_sample_ragged``, the default);
- ``closed``: the Gaussian family's exact ``G_t ~ N(S_t x0, S_t)`` (one normal draw).

Families: Beta (two Gamma draws per element), categorical K = 2 (the pen), Gaussian.
Interleaved rounds (every configuration once per round), medians; ms per batch. On a shared,
loaded machine the absolute numbers are only indicative; the ratios are what this measures.

Usage: python bench/bench_star_tail.py [--quick] [--steps=T] [--batch=B] [--length=L]
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

from sketchtk.diffusion import star_families as sf  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="T (default 100; quick 20)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (20 if args.quick else 100)
    rounds = args.rounds or (3 if args.quick else 7)
    rng = np.random.default_rng(0)
    b, n = args.batch, args.length
    t = tf.constant(rng.integers(0, steps, b), tf.int32)
    inputs = {
        "beta": (sf.BetaFamily(steps), tf.constant(rng.uniform(0.05, 0.95, (b, n, 2)), tf.float32)),
        "categorical": (sf.CategoricalFamily(steps, 2),
                        tf.one_hot(rng.integers(0, 2, (b, n)), 2)),
        "gaussian": (sf.GaussianFamily(steps), tf.constant(rng.standard_normal((b, n, 2)),
                                                          tf.float32)),
    }
    configs = []
    for name, (fam, x0) in inputs.items():
        methods = {"exhaustive": fam.tail_sample_exhaustive, "ragged": fam.tail_sample_ragged}
        if name == "gaussian":
            methods["closed"] = fam.tail_sample
        for method, fn in methods.items():
            configs.append((name, method, tf.function(fn), x0))
    seed = tf.constant([1, 2], tf.int64)
    for _, _, fn, x0 in configs:  # trace and warm up
        fn(x0, t, seed).numpy()
    times = {(f, m): [] for f, m, _, _ in configs}
    for r in range(rounds):
        for fam, method, fn, x0 in configs:
            s = tf.constant([3, r], tf.int64)
            start = time.perf_counter()
            fn(x0, t, s).numpy()
            times[(fam, method)].append(time.perf_counter() - start)
    draws = {"exhaustive": steps * b, "ragged": int((steps - t.numpy()).sum()), "closed": b}
    print(f"T = {steps}, batch {b} x {n} points; tail draws per batch: exhaustive "
          f"{draws['exhaustive']}, ragged {draws['ragged']}, closed {draws['closed']}")
    header = f"{'family':12s} {'method':11s} {'ms/batch':>9s} {'vs exhaustive':>13s}"
    print(header)
    print("-" * len(header))
    results = []
    for fam in inputs:
        base = float(np.median(times[(fam, "exhaustive")]))
        for (f, method), ts in times.items():
            if f != fam:
                continue
            med = float(np.median(ts))
            print(f"{fam:12s} {method:11s} {1e3 * med:9.2f} {base / med:12.2f}x")
            results.append({"family": fam, "method": method, "ms": 1e3 * med,
                            "speedup": base / med})
    print(json.dumps({"bench": "star_tail", "T": steps, "batch": b, "length": n,
                      "rounds": rounds, "draws": draws, "results": results}))


if __name__ == "__main__":
    main()
