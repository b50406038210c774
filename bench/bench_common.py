"""Shared pieces of the bench/ scripts: the machine's matmul limit, medians, the result line.

``matmul_peak`` measures what this machine's TensorFlow reaches on matmuls right now, in float32
and bfloat16, at 2048 x 2048 x 2048 and at the shape of one recurrent step of a 512-unit LSTM at
batch 100 (``[2048, 512] x [512, 100]``, the matmul the decoder runs 500 times per train step).
The benches measure it in the same run as their figures and report each figure as a fraction of
it, so a figure from a loaded machine carries its own yardstick.
"""

import os
import time

# (name, m, k, n): C[m, n] = A[m, k] B[k, n]
PEAK_SHAPES = (("2048^3", 2048, 2048, 2048), ("lstm512_step", 2048, 512, 100))
PEAK_DTYPES = ("float32", "bfloat16")


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def make_peak_probe():
    """A callable ``probe(repeats) -> {"float32": {"2048^3": GFLOP/s, ...}, "bfloat16": ...}``.

    Operands and compiled functions are made once, so the probe can run between the rounds of a
    bench (interleaved with what it measures). Each figure is the median over ``repeats`` calls;
    a call of the small shape runs 20 matmuls (one call costs more than one small matmul).
    """
    import tensorflow as tf

    cases = []
    for dtype in PEAK_DTYPES:
        for name, m, k, n in PEAK_SHAPES:
            inner = 1 if m * k * n >= 2 ** 30 else 20
            a = tf.cast(tf.random.stateless_normal([m, k], [1, 2]), dtype)
            # distinct right-hand sides, so that no matmul of the call is a common subexpression
            b = tf.cast(tf.random.stateless_normal([inner, k, n], [3, 4]), dtype)

            @tf.function
            def run(a, b, inner=inner):
                acc = tf.zeros([], tf.float32)
                for i in range(inner):  # unrolled: independent matmuls, one call
                    acc += tf.cast(tf.matmul(a, b[i])[0, 0], tf.float32)
                return acc

            run(a, b).numpy()
            run(a, b).numpy()
            cases.append((dtype, name, run, a, b, 2.0 * m * k * n * inner))

    def probe(repeats=5):
        out = {dtype: {} for dtype in PEAK_DTYPES}
        for dtype, name, run, a, b, flops in cases:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run(a, b).numpy()
                times.append(time.perf_counter() - start)
            out[dtype][name] = flops / median(times) / 1e9
        return out

    return probe


def merge_peaks(samples):
    """Median over several probe results (one per round) of each dtype and shape."""
    return {dtype: {name: median([s[dtype][name] for s in samples]) for name in samples[0][dtype]}
            for dtype in samples[0]}


def format_peaks(peaks):
    return "; ".join(f"{dtype} " + ", ".join(f"{name} {gflops:.0f}" for name, gflops in
                                              shapes.items()) + " GFLOP/s"
                     for dtype, shapes in peaks.items())


def load_average():
    return round(os.getloadavg()[0], 2)


def vm_hwm_bytes():
    """Peak resident set size of this process (VmHWM), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    """``python bench/bench_common.py [--quick]``: the machine's matmul limit on its own."""
    import argparse
    import json
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--quick", action="store_true", help="one round of 3 calls (seconds)")
    args = parser.parse_args()
    rounds, repeats = (1, 3) if args.quick else (5, 7)
    probe = make_peak_probe()
    probe(1)  # warm-up
    peaks = merge_peaks([probe(repeats) for _ in range(rounds)])
    print(f"matmul limit ({rounds} round(s), medians): {format_peaks(peaks)}")
    print(json.dumps({"matmul_gflops": peaks, "load_average": load_average(),
                      "quick": args.quick}))


if __name__ == "__main__":
    main()
