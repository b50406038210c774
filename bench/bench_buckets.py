"""Training sketches/s on real QuickDraw data: batches padded to max_seq_len vs length buckets.

The embedded QuickDraw categories (sketchtk/data/default, or ``--data_dir``), loaded with the
``default`` preset's cap of 250 points, feed ``make_dataset(..., training=True)`` (stroke
augmentation, images rendered on the fly) and the compiled ``SketchVAE.train_step`` of the preset
(``--preset``, default ``default``: RPCL-pix2seq, HyperLSTM-256, batch 64). Rows, all trained from
the same initial weights on the same stream of examples, timed **interleaved** (a few steps of
each row per round), medians over rounds:

- ``padded``: every batch decoded for ``max_seq_len`` steps (the references);
- ``buckets``: ``length_buckets=4``, each batch cut to the smallest of 4 fixed lengths holding its
  longest sketch (``sketchtk.data.pipeline.trim_to_bucket``);
- ``buckets + bf16``: the same with ``precision=mixed_bfloat16``.

Usage: python bench/bench_buckets.py [--quick] [--preset=default] [--rounds=3] [--steps=3]
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
import tensorflow as tf  # noqa: E402

import hparams  # noqa: E402
from bench_common import load_average, median  # noqa: E402
from sketchtk.data.loader import load_sketch_data  # noqa: E402
from sketchtk.data.pipeline import bucket_lengths, make_dataset  # noqa: E402
from sketchtk.models.sketch_vae import SketchVAE, make_optimizer  # noqa: E402

ROWS = (("padded", {}), ("buckets", {"length_buckets": 4}),
        ("buckets + bf16", {"length_buckets": 4, "precision": "mixed_bfloat16"}))


def make_row(hp, data):
    keras.utils.set_random_seed(hp.seed)
    model = SketchVAE(hp, data.max_seq_len, data.scale_factor, data.categories)
    model.build_from_batch(model.dummy_batch())
    model.compile(optimizer=make_optimizer(hp))
    model.optimizer.build(model.trainable_variables)
    step = tf.function(model.train_step, reduce_retracing=True)
    return step, iter(make_dataset(data, "train", hp, training=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 steps (LSTM-128)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--data_dir", default=None, help="<category>.npz directory (embedded)")
    parser.add_argument("--max_seq_len", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="train steps per row and round")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    per_round = args.steps or (2 if args.quick else 3)
    base = hparams.get_preset(args.preset).replace(max_seq_len=args.max_seq_len)
    if args.quick:
        base = base.replace(dec_model="lstm", dec_rnn_size=128)
    data = load_sketch_data(args.data_dir, base.categories, base.num_per_category,
                            base.max_seq_len)
    lengths = np.array([len(s) for s in data["train"].sketches])
    rows = {name: make_row(base.replace(**changes), data) for name, changes in ROWS}
    steps_seen = {name: [] for name in rows}
    for name, (step, it) in rows.items():  # warm-up: traces (a padded and a relaxed shape)
        for _ in range(3):
            step(next(it))
    times = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (step, it) in rows.items():
            start = time.perf_counter()
            for _ in range(per_round):
                batch = next(it)
                steps_seen[name].append(int(batch["strokes"].shape[1]) - 1)
                logs = step(batch)
            float(logs["loss"])
            times[name].append((time.perf_counter() - start) / per_round)
    batch = base.batch_size
    print(f"bench_buckets: preset {args.preset} ({base.dec_model}-{base.dec_rnn_size}, batch "
          f"{batch}), {len(lengths)} training sketches (median {np.median(lengths):.0f} points, "
          f"longest {lengths.max()}), max_seq_len {data.max_seq_len}, buckets "
          f"{bucket_lengths(data.max_seq_len, 4)}; {rounds} rounds x {per_round} steps, load "
          f"average {load_average()}")
    header = f"{'row':<18}{'s/step':>8}{'sketches/s':>12}{'mean steps':>12}{'vs padded':>11}"
    print(header)
    print("-" * len(header))
    out = {}
    for name in rows:
        seconds = median(times[name])
        out[name] = {"s_per_step": seconds, "sketches_per_s": batch / seconds,
                     "mean_decoder_steps": float(np.mean(steps_seen[name]))}
        out[name]["speedup_vs_padded"] = out["padded"]["s_per_step"] / seconds
        print(f"{name:<18}{seconds:8.3f}{batch / seconds:12.1f}"
              f"{out[name]['mean_decoder_steps']:12.1f}{out[name]['speedup_vs_padded']:10.2f}x")
    print(json.dumps({"bench": "buckets", "quick": args.quick, "preset": args.preset,
                      "batch": batch, "max_seq_len": data.max_seq_len, "rounds": rounds,
                      "rows": {n: {k: round(v, 4) for k, v in r.items()} for n, r in out.items()},
                      "load_average": load_average()}))


if __name__ == "__main__":
    main()
