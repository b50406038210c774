"""Training throughput of the stroke decoder: one compiled train step of decoder + MDN + L_R.

Each configuration runs in its own subprocess (so its peak RSS, VmHWM, is its own): a
``tf.function`` train step of ``StrokeDecoder`` + ``reconstruction_loss`` with Adam(beta1 0.5,
clipvalue 1.0) at batch 100, 250 decoder steps, z_size 128, for dec_model lstm / layer_norm /
hyper at dec_rnn_size 512 and 2048, plus a reference-style baseline (stock
``keras.layers.LSTM(512, return_sequences=True)`` + ``Dense(123)`` on concat(stroke-5, z)).
The machine's float32 matmul peak (2048 x 2048 ``tf.matmul``, warmed up, median) is measured
first; FLOPs per step = forward matmul FLOPs x 3.

Usage:
    python bench/bench_train.py            # full: 7 configs, 1 warm-up + 3 timed steps each
    python bench/bench_train.py --quick    # < 1 min: 512 only, 40 decoder steps, 2 timed steps,
                                           # all configs in one process (RSS cumulative)

The last line printed is one JSON object with the headline figures.
"""

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 100
Z_SIZE = 128
NUM_MIXTURE = 20
STROKE_DIM = 5
PARAMS = 6 * NUM_MIXTURE + 3
HYPER_UNITS = 256
HYPER_EMBEDDING = 32

# s/step at batch 100, 250 steps, measured on this kind of machine (2 cores; see the brief and
# ALGORITHMS.md section 5).
ANCHORS = {
    "magenta HyperLSTM-512": 7.3,
    "magenta LSTM-512": 4.1,
    "PyTorch LSTM-512": 2.6,
    "PyTorch LSTM-2048": 19.7,
    "stock Keras LSTM-512 (ALGORITHMS.md 5)": 2.1,
}
REFERENCE_PEAK_GFLOPS = 190.0  # ALGORITHMS.md 5, idle machine
# (config, anchor, required speed-up anchor_s / ours_s)
TARGETS = [
    ("lstm-512", "PyTorch LSTM-512", 1.3),
    ("hyper-512", "magenta HyperLSTM-512", 2.0),
    ("lstm-2048", "PyTorch LSTM-2048", 1.0),
    ("layer_norm-2048", "PyTorch LSTM-2048", 1.0),
    ("hyper-2048", "PyTorch LSTM-2048", 1.0),
]
HYPER_2048_MAX_RSS_GB = 8.0


# ----------------------------------------------------------------------------------------------
# FLOP model
# ----------------------------------------------------------------------------------------------
def forward_matmul_flops(dec_model, units, steps, batch=BATCH, z_size=Z_SIZE):
    """Forward matmul FLOPs of one batch through the decoder (or the stock baseline) + head."""
    n = units
    head = 2 * steps * batch * n * PARAMS
    if dec_model == "stock":
        return 2 * steps * batch * (STROKE_DIM + z_size + n) * 4 * n + head
    gates = 4 * n + (4 * HYPER_UNITS if dec_model == "hyper" else 0)
    state = 2 * n + (2 * HYPER_UNITS if dec_model == "hyper" else 0)
    flops = (2 * steps * batch * STROKE_DIM * gates      # hoisted stroke-5 projection
             + 2 * batch * z_size * gates                # z projection, once per sequence
             + 2 * batch * z_size * state                # initial state
             + 2 * steps * batch * n * gates             # fused recurrent matmul
             + head)
    if dec_model == "hyper":
        e, h = HYPER_EMBEDDING, HYPER_UNITS
        flops += 2 * steps * batch * (h * 4 * h + h * 12 * e + 12 * e * n)
    return flops


# ----------------------------------------------------------------------------------------------
# child processes
# ----------------------------------------------------------------------------------------------
def _vm_hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def child_peak(repeats):
    import numpy as np
    import tensorflow as tf

    a = tf.random.normal([2048, 2048])
    b = tf.random.normal([2048, 2048])
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    for _ in range(5):
        matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    flops = 2 * 2048 ** 3
    return {"gflops_median": flops / float(np.median(times)) / 1e9,
            "gflops_best": flops / min(times) / 1e9}


def _fake_batch(steps, rng):
    """Random stroke-5 batch ``[B, steps + 1, 5]`` with start token, pen states and padding."""
    import numpy as np

    x = np.zeros([BATCH, steps + 1, 5], np.float32)
    x[:, 0] = (0, 0, 1, 0, 0)
    lengths = rng.integers(steps // 2, steps + 1, size=BATCH)
    for i, n in enumerate(lengths):
        x[i, 1:n + 1, :2] = rng.normal(size=(n, 2))
        pen_up = rng.random(n) < 0.1
        x[i, 1:n + 1, 2] = ~pen_up
        x[i, 1:n + 1, 3] = pen_up
        x[i, n + 1:, 4] = 1.0
    return x


def child_config(dec_model, units, steps, warmup, timed):
    import keras
    import numpy as np
    import tensorflow as tf

    from sketchtk.layers.stroke_decoder import StrokeDecoder
    from sketchtk.losses.reconstruction import reconstruction_loss

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    strokes = tf.constant(_fake_batch(steps, rng))
    z = tf.constant(rng.normal(size=(BATCH, Z_SIZE)).astype(np.float32))

    if dec_model == "stock":
        inputs = keras.Input((steps, STROKE_DIM + Z_SIZE))
        hidden = keras.layers.LSTM(units, return_sequences=True)(inputs)
        outputs = keras.layers.Dense(PARAMS)(hidden)
        model = keras.Model(inputs, outputs)

        def forward(x, z):
            tiled = tf.tile(z[:, None, :], [1, steps, 1])
            return model(tf.concat([x, tiled], axis=-1), training=True)
    else:
        model = StrokeDecoder(dec_model, units=units, num_mixture=NUM_MIXTURE, z_size=Z_SIZE,
                              use_recurrent_dropout=True, recurrent_dropout_prob=0.9)

        def forward(x, z):
            return model(x, z, training=True)

    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.5, clipvalue=1.0)

    @tf.function
    def train_step(strokes, z):
        with tf.GradientTape() as tape:
            params = forward(strokes[:, :-1], z)
            loss, _, _ = reconstruction_loss(strokes[:, 1:], params)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    start = time.perf_counter()
    losses = [float(train_step(strokes, z))]
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        losses.append(float(train_step(strokes, z)))
    times, cpu = [], []
    for _ in range(timed):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        losses.append(float(train_step(strokes, z)))
        times.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - cpu_start)
    return {"times": times, "cpu": cpu, "first_step_s": first, "losses": losses,
            "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "finite": bool(np.all(np.isfinite(losses)))}


def _child_main(args):
    if args.child == "peak":
        results = [child_peak(args.repeats)]
    else:
        # "lstm-512,hyper-512": several configs in one process (quick mode saves the imports).
        results = []
        for name in args.child.split(","):
            dec_model, units = name.rsplit("-", 1)
            results.append(child_config(dec_model, int(units), args.steps, args.warmup,
                                        args.timed))
            results[-1]["vm_hwm_bytes"] = _vm_hwm_bytes()
    results[-1]["vm_hwm_bytes"] = _vm_hwm_bytes()
    print("RESULT " + json.dumps(results), flush=True)


def _run_child(argv, timeout):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child {argv} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------------------------
# parent: run, tabulate
# ----------------------------------------------------------------------------------------------
def _median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _summarise(name, result, steps, peak_gflops):
    dec_model, units = name.rsplit("-", 1)
    s_step = _median(result["times"])
    flops = 3 * forward_matmul_flops(dec_model, int(units), steps)
    return {
        "s_per_step": s_step, "s_per_step_min": min(result["times"]),
        "cpu_s_per_step": _median(result["cpu"]), "first_step_s": result["first_step_s"],
        "sketches_per_s": BATCH / s_step, "gflop_per_step": flops / 1e9,
        "gflops": flops / s_step / 1e9, "pct_peak": 100.0 * flops / s_step / 1e9 / peak_gflops,
        "peak_rss_gb": result["vm_hwm_bytes"] / 1e9, "params": result["params"],
        "finite_loss": result["finite"],
    }


def _anchor_for(name):
    dec_model, units = name.rsplit("-", 1)
    if units == "2048":
        return "PyTorch LSTM-2048"
    return {"hyper": "magenta HyperLSTM-512", "lstm": "PyTorch LSTM-512",
            "layer_norm": "magenta LSTM-512",
            "stock": "stock Keras LSTM-512 (ALGORITHMS.md 5)"}[dec_model]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="512 only, 40 decoder steps, 1 warm-up + 2 timed steps")
    parser.add_argument("--configs", default=None,
                        help="comma list of dec_model-units, e.g. lstm-512,hyper-2048,stock-512")
    parser.add_argument("--steps", type=int, default=None, help="decoder steps (max_seq_len)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timed", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=15, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(args)
        return

    steps = args.steps or (40 if args.quick else 250)
    timed = args.timed or (2 if args.quick else 3)
    if args.configs:
        configs = args.configs.split(",")
    elif args.quick:
        configs = ["stock-512", "lstm-512", "layer_norm-512", "hyper-512"]
    else:
        configs = ["stock-512", "lstm-512", "layer_norm-512", "hyper-512",
                   "lstm-2048", "layer_norm-2048", "hyper-2048"]
    full_size = steps == 250 and not args.quick
    print(f"bench_train: batch {BATCH}, {steps} decoder steps, z_size {Z_SIZE}, M={NUM_MIXTURE}, "
          f"{args.warmup} warm-up + {timed} timed steps per config"
          + ("" if full_size else "  [QUICK / SHORT SEQUENCES: s/step is NOT comparable to the "
             "250-step anchors; ratios are scaled by 250/steps]")
          + ("  [quick: all configs in one process, RSS cumulative]" if args.quick else ""),
          flush=True)
    load_start = os.getloadavg()
    peak = _run_child(["--child", "peak", "--repeats", "8" if args.quick else "15"],
                      timeout=600)[0]
    print(f"float32 matmul peak (2048^3, median of {8 if args.quick else 15} after warm-up): "
          f"{peak['gflops_median']:.0f} GFLOP/s (best {peak['gflops_best']:.0f}; idle-machine "
          f"reference {REFERENCE_PEAK_GFLOPS:.0f}); load average {load_start[0]:.2f}", flush=True)

    # One subprocess per config (its VmHWM is its own peak RSS); quick mode shares one process
    # to stay under a minute, so its RSS column is cumulative.
    groups = [configs] if args.quick else [[name] for name in configs]
    rows = {}
    for group in groups:
        out = _run_child(["--child", ",".join(group), "--steps", str(steps),
                          "--warmup", str(args.warmup), "--timed", str(timed)], timeout=3600)
        for name, result in zip(group, out):
            rows[name] = _summarise(name, result, steps, peak["gflops_median"])
            r = rows[name]
            print(f"  done {name:16s} {r['s_per_step']:.3f} s/step (first step "
                  f"{r['first_step_s']:.1f} s, loss finite: {r['finite_loss']})", flush=True)
    load_end = os.getloadavg()

    # Contention: the stock baseline took 2.1 s/step on an idle machine (ALGORITHMS.md 5).
    scale = 250.0 / steps
    stock = rows.get("stock-512")
    slowdown = (stock["s_per_step"] * scale / ANCHORS["stock Keras LSTM-512 (ALGORITHMS.md 5)"]
                if stock else None)

    header = (f"{'config':16s} {'s/step':>7s} {'min':>7s} {'sk/s':>6s} {'GFLOP':>6s} "
              f"{'GFLOP/s':>7s} {'%peak':>6s} {'RSS GB':>6s} {'vs stock':>8s}  "
              f"{'anchor (s/step)':>32s} {'speed-up':>8s} {'adj.':>6s}")
    print()
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        anchor = _anchor_for(name)
        speedup = ANCHORS[anchor] / (r["s_per_step"] * scale)
        r["anchor"] = anchor
        r["speedup_vs_anchor"] = speedup
        r["speedup_vs_anchor_contention_adjusted"] = speedup * slowdown if slowdown else None
        r["ratio_vs_stock_baseline"] = r["s_per_step"] / stock["s_per_step"] if stock else None
        adj = f"{r['speedup_vs_anchor_contention_adjusted']:.2f}x" if slowdown else "-"
        vs_stock = f"{r['ratio_vs_stock_baseline']:.2f}" if stock else "-"
        print(f"{name:16s} {r['s_per_step']:7.3f} {r['s_per_step_min']:7.3f} "
              f"{r['sketches_per_s']:6.1f} {r['gflop_per_step']:6.0f} {r['gflops']:7.1f} "
              f"{r['pct_peak']:6.1f} {r['peak_rss_gb']:6.2f} {vs_stock:>8s}  "
              f"{anchor + ' (' + str(ANCHORS[anchor]) + ')':>32s} {speedup:7.2f}x {adj:>6s}")
    print()
    print("speed-up = anchor s/step / measured s/step (x 250/steps in short runs); adj. = the same "
          "after removing this run's contention, i.e. scaled by (stock baseline measured here / "
          "2.1 s idle).")
    if slowdown:
        print(f"this run's machine slowdown vs idle (stock baseline "
              f"{stock['s_per_step'] * scale:.2f} s/250 steps vs 2.1 s): {slowdown:.2f}x; peak "
              f"{peak['gflops_median']:.0f} vs {REFERENCE_PEAK_GFLOPS:.0f} GFLOP/s; load average "
              f"{load_start[0]:.2f} -> "
              f"{load_end[0]:.2f}")

    targets = {}
    for name, anchor, need in TARGETS:
        if name not in rows:
            continue
        r = rows[name]
        targets[name] = {"anchor": anchor, "required_speedup": need,
                         "speedup": round(r["speedup_vs_anchor"], 3),
                         "speedup_adjusted": (round(r["speedup_vs_anchor_contention_adjusted"], 3)
                                              if slowdown else None),
                         "met": r["speedup_vs_anchor"] >= need,
                         "met_adjusted": (r["speedup_vs_anchor_contention_adjusted"] >= need
                                          if slowdown else None)}
        state = "MET" if targets[name]["met"] else "MISSED"
        print(f"target {name}: >= {need:.1f}x {anchor} -> {r['speedup_vs_anchor']:.2f}x {state}"
              + (f" (contention-adjusted {r['speedup_vs_anchor_contention_adjusted']:.2f}x)"
                 if slowdown else ""))
    if "hyper-2048" in rows:
        rss = rows["hyper-2048"]["peak_rss_gb"]
        targets["hyper-2048-memory"] = {"peak_rss_gb": round(rss, 3),
                                        "limit_gb": HYPER_2048_MAX_RSS_GB,
                                        "met": rss <= HYPER_2048_MAX_RSS_GB}
        print(f"target hyper-2048 peak RSS <= {HYPER_2048_MAX_RSS_GB:.0f} GB -> {rss:.2f} GB "
              + ("MET" if rss <= HYPER_2048_MAX_RSS_GB else "MISSED"))

    summary = {
        "bench": "train", "quick": bool(args.quick), "decoder_steps": steps, "batch": BATCH,
        "peak_gflops": round(peak["gflops_median"], 1),
        "machine_slowdown_vs_idle": round(slowdown, 3) if slowdown else None,
        "load_average": [round(load_start[0], 2), round(load_end[0], 2)],
        "configs": {name: {k: (round(v, 4) if isinstance(v, float) else v)
                           for k, v in r.items()} for name, r in rows.items()},
        "targets": targets,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
