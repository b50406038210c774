"""Stroke diffusion speed: train step per denoiser, and DDPM-T vs DDIM-30/10 sampling, in one run.

Train step: one compiled ``StrokeDiffusion.train_step`` (forward, masked loss, backward, AdamW,
EMA) at batch 100 on real embedded QuickDraw drawings resampled as ChiroDiff does (spacing 0.05 of
the radius, at most 160 points), for each denoiser at ChiroDiff's size (bi-GRU 3 x 96, transformer
3 x 96 with 4 heads; the UNet at 64 base channels, 3 levels).

Sampling: the bi-GRU 3 x 96 model with T = 100, sketches/s of the compiled batched reverse loop
(DDPM over all T, DDIM respaced to 30 and 10 steps; XLA-compiled, ``sample_xla=on``, with the
same DDIM-30 loop without XLA, the default, as a same-run row; DDIM-30 of the transformer and the
UNet, not XLA-compiled) against a reference-style sampler measured in the same run: a Python loop over the T steps calling the (compiled) denoiser at batch 1, as
ChiroDiff's ``main.py:575-611`` and SketchKnitter's ``p_sample_loop`` effectively do on a CPU.
Weights are freshly initialised: sampling cost does not depend on them.

Measurements are interleaved (every configuration once per round) and medians reported.

Usage: python bench/bench_diffusion.py [--quick]
Anchors measured on this machine class from ChiroDiff's own code: bi-GRU 3 x 96 train step 2.18 s
at batch 100 (46 sketches/s); its DDPM sampler (T = 100) 4.3 sketches/s. Targets: train step
>= 2x faster than the anchor; DDIM-30 >= 50 sketches/s.
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

from hparams import get_preset  # noqa: E402
from sketchtk.data import point_sequences as ps  # noqa: E402
from sketchtk.data.loader import load_sketch_data  # noqa: E402
from sketchtk.data.pipeline import make_dataset  # noqa: E402
from sketchtk.diffusion.samplers import sampling_timesteps  # noqa: E402
from sketchtk.models.stroke_diffusion import StrokeDiffusion, make_optimizer  # noqa: E402

ANCHOR_TRAIN_S = 2.18  # ChiroDiff bi-GRU 3 x 96, batch 100
ANCHOR_DDPM_RATE = 4.3  # ChiroDiff DDPM, T = 100, sketches/s
DENOISERS = {"bigru": dict(denoiser_units=96, denoiser_layers=3),
             "transformer": dict(denoiser_units=96, denoiser_layers=3, denoiser_heads=4),
             "unet1d": dict(denoiser_units=64, denoiser_layers=3)}


def build(point_data, denoiser, batch, **overrides):
    hp = get_preset("chirodiff").replace(denoiser=denoiser, batch_size=batch,
                                         **DENOISERS[denoiser], **overrides)
    stats = ps.point_data_statistics(point_data, hp.representation)
    model = StrokeDiffusion(hp, point_data.max_seq_len, stats["point_stats"],
                            stats["length_model"], point_data.categories)
    model.build_from_batch(model.dummy_batch())
    model.compile(optimizer=make_optimizer(hp))
    model.optimizer.build(model.trainable_variables)
    return hp, model


def time_call(fn, reps):
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sketches (< 1 min)")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    train_reps = 2 if args.quick else 5
    sample_batch = 20 if args.quick else 100
    ref_sketches = 1 if args.quick else 3
    denoisers = ["bigru"] if args.quick else list(DENOISERS)

    data = ps.prepare_point_data(load_sketch_data(None, get_preset("chirodiff").categories),
                                 resample_spacing=0.05, max_points=160)
    models, train_fns, batches = {}, {}, {}
    for name in denoisers:
        hp, model = build(data, name, 100, sample_xla="on" if name == "bigru" else "off")
        models[name] = model
        batches[name] = next(iter(make_dataset(data, "train", hp, training=True)))
        train_fns[name] = tf.function(model.train_step)
        train_fns[name](batches[name])  # trace and warm up
    sampler_model = models["bigru"]
    lengths = sampler_model.sample_lengths(np.full(sample_batch, -1), seed=0)
    # (model, method, steps): the bi-GRU loops are XLA-compiled (sample_xla=on); the same loop
    # without XLA (the default) is the same-run baseline of that choice
    _, no_xla = build(data, "bigru", 100, sample_xla="off")
    configs = {"DDPM-100": (sampler_model, "ddpm", None), "DDIM-30": (sampler_model, "ddim", 30),
               "DDIM-10": (sampler_model, "ddim", 10), "DDIM-30, no XLA": (no_xla, "ddim", 30)}
    for name in denoisers:
        if name != "bigru":
            configs[f"DDIM-30, {name}"] = (models[name], "ddim", 30)
    for model, method, steps in configs.values():  # trace each loop once at the measured batch
        model.generate(lengths, sampler=method, steps=steps)

    step_fn = tf.function(lambda x, t, m: sampler_model.denoise(x, t, m))
    timesteps = sampling_timesteps(sampler_model.process)
    ref_len = int(np.median(lengths))

    def reference_style():
        """One sketch: T Python iterations, one compiled denoiser call at batch 1 each."""
        mask = tf.sequence_mask([ref_len], sampler_model.max_seq_len, dtype=tf.float32)
        x = tf.random.normal([1, sampler_model.max_seq_len, sampler_model.channels]) * mask[..., None]
        proc = sampler_model.process
        for i, t in enumerate(timesteps):
            tt = tf.constant([t], tf.int32)
            out, _ = step_fn(x, tt, mask)
            x0, _ = proc.predict(out, x, tt)
            prev = tf.constant([timesteps[i + 1] if i + 1 < len(timesteps) else -1], tf.int32)
            mean, var = proc.posterior(x0, x, tt, prev)
            x = (mean + tf.sqrt(var) * tf.random.normal(tf.shape(x))) * mask[..., None]
        return x.numpy()

    reference_style()  # trace the batch-1 call
    train_times = {n: [] for n in denoisers}
    sample_rates = {k: [] for k in configs}
    ref_rates = []
    for _ in range(rounds):  # interleaved rounds
        for name in denoisers:
            train_times[name] += time_call(lambda n=name: float(train_fns[n](batches[n])["loss"]),
                                           train_reps)
        for key, (model, method, steps) in configs.items():
            t = time_call(lambda g=model.generate, m=method, s=steps: g(
                lengths, sampler=m, steps=s)[0].numpy(), 1)[0]
            sample_rates[key].append(sample_batch / t)
        t = time_call(lambda: [reference_style() for _ in range(ref_sketches)], 1)[0]
        ref_rates.append(ref_sketches / t)

    ref_rate = float(np.median(ref_rates))
    print(f"\nstroke diffusion, real embedded drawings padded to {data.max_seq_len} points; "
          f"{rounds} interleaved round(s), medians\n")
    print("| train step (batch 100) | s/step | sketches/s | vs ChiroDiff anchor 2.18 s |")
    print("|---|---|---|---|")
    train_med = {}
    for name in denoisers:
        med = float(np.median(train_times[name]))
        train_med[name] = med
        size = DENOISERS[name]
        print(f"| {name} {size['denoiser_layers']} x {size['denoiser_units']} "
              f"({models[name].count_params() - sum(int(np.prod(w.shape)) for w in models[name].ema)} params) "
              f"| {med:.3f} | {100 / med:.1f} | {ANCHOR_TRAIN_S / med:.2f}x |")
    print(f"\n| sampler (bi-GRU 3 x 96 unless named, T = 100, batch {sample_batch}, lengths from "
          f"the length model: mean {lengths.mean():.0f}, longest {lengths.max()}) | sketches/s | "
          f"vs reference-style | vs ChiroDiff anchor 4.3/s |")
    print("|---|---|---|---|")
    rates = {}
    for key in configs:
        rate = float(np.median(sample_rates[key]))
        rates[key] = rate
        print(f"| {key} | {rate:.1f} | {rate / ref_rate:.1f}x | {rate / ANCHOR_DDPM_RATE:.1f}x |")
    print(f"| reference-style DDPM-100 (batch 1, Python loop) | {ref_rate:.2f} | 1x | "
          f"{ref_rate / ANCHOR_DDPM_RATE:.2f}x |")
    print(json.dumps({"train_step_s": {k: round(v, 4) for k, v in train_med.items()},
                      "train_vs_anchor": round(ANCHOR_TRAIN_S / train_med["bigru"], 2),
                      "sketches_per_s": {k: round(v, 2) for k, v in rates.items()},
                      "reference_style_sketches_per_s": round(ref_rate, 3),
                      "ddim30_target_met": rates["DDIM-30"] >= 50,
                      "train_target_met": ANCHOR_TRAIN_S / train_med["bigru"] >= 2,
                      "quick": args.quick}))


if __name__ == "__main__":
    main()
