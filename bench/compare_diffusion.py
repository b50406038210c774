"""Gaussian DDPM vs star-shaped (SS-DDPM) vs shortest-path diffusion (SPD) on the same data and budget.

Every variant is a ``stroke_diffusion`` model trained through the library's own entry
(``train_and_evaluate``) on the same real data (the embedded QuickDraw subset, or ``--data_dir``)
with the same denoiser, T, batch and number of steps (early stopping off), class-conditional,
then sampled through ``run_sampling`` (all T steps: the star-shaped sampler has no DDIM) and
scored by ``run_evaluation`` with one Sketch-a-Net classifier (``--classifier_dir``, e.g. a copy
of a trained run; read only): Rec, FID / precision / recall in Sketch-a-Net feature space (not
comparable to Inception numbers in papers), degenerate samples, and the *valid pen structure*
fraction (a sample is valid when it is not degenerate, has no one-point stroke - a pen lift right
after a pen lift, the dashed-stroke failure - and has at most the most strokes of any real
training sketch of the data).

Variants (``--variants``, comma separated):
- ``ddpm``: Gaussian DDPM on delta offsets, eps-prediction, pen head (SketchKnitter's pen);
- ``ddpm_abs``: the same on absolute coordinates (SPD's fair baseline: same representation);
- ``star``: the mixed star-shaped process on delta offsets: Gaussian positions (linear schedule)
  + a Bernoulli pen state (cosine schedule), x0-prediction, rescaled KL;
- ``star_beta``: the same with Beta positions (absolute coordinates mapped to (0, 1));
- ``star_polar``: the star process on delta offsets with each offset as a direction angle (von
  Mises) and a step length (Gaussian), both on the linear schedule, + the Bernoulli pen;
- ``spd``: shortest-path diffusion on absolute coordinates with the spectrum fitted on the
  training data (``sketchtk.diffusion.spectrum``), pen head; ``spd_delta``: on delta offsets,
  whose spectrum is near-white (the fit is printed).

Losses are different quantities per process (eps-MSE + pen cross-entropy vs KL): the loss curves
(``<out_dir>/loss_curves.png``) are each divided by their first value. Tiers: ``--quick`` (a
tiny transformer, 30 steps, 2 samples per category: checks that it runs) and the default
(``--steps`` each, 3000 by default is far more than a CPU session; the README run used
``--steps=300``). One table, then one JSON line.

Usage: python bench/compare_diffusion.py [--quick] [--steps=N] [--variants=ddpm,star,spd]
       [--classifier_dir=DIR] [--out_dir=DIR] [--reuse] [--samples_per_category=N]
"""

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

VARIANTS = ("ddpm", "ddpm_abs", "star", "star_beta", "star_polar", "spd", "spd_delta")
START = time.perf_counter()


def log(message):
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


def base_hparams(args):
    """The shared model and budget of every variant."""
    from hparams import get_preset
    hp = get_preset("diffusion_smoke")
    size = dict(denoiser="transformer", denoiser_units=32 if args.quick else 64,
                denoiser_layers=2 if args.quick else 3, denoiser_heads=2 if args.quick else 4,
                time_embedding="sinusoidal", time_embedding_dim=16, cond_dim=16)
    return hp.replace(**size, diffusion_steps=args.diffusion_steps, schedule="linear",
                      class_conditional=True, cfg_drop_prob=0.1, batch_size=args.batch_size,
                      num_steps=args.steps, eval_every=max(10, args.steps // 6),
                      log_every=max(1, args.steps // 60), early_stop_patience=10 ** 6,
                      learning_rate=1e-3, grad_clip=1.0, ema_decay=0.995, seed=args.seed,
                      max_seq_len=96)


def fitted_spectrum(representation, args):
    """SPD constants fitted on the training split (x, y normalised as the model does)."""
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.data.point_sequences import prepare_point_data
    from sketchtk.diffusion.spectrum import fit_spectrum, point_data_spectrum
    data = prepare_point_data(load_sketch_data(args.data_dir, args.categories), max_points=96)
    freq, power = point_data_spectrum(data, representation)
    fit = fit_spectrum(freq, power)
    low, high = power[np.abs(freq) < 0.03].mean(), power[np.abs(freq) > 0.4].mean()
    log(f"spectrum ({representation}): c1={fit.c1:.4g} c2={fit.c2:.4g} m={fit.m:.3f} "
        f"(log RMSE {fit.log_rmse:.3f}); power |f|<0.03 / |f|>0.4 = {low / high:.3g}")
    return fit, float(low / high)


def variant_hparams(name, base, args, spectra):
    pen_head = dict(pen_mode="head", pen_loss_weight=0.1)
    if name == "ddpm":
        return base.replace(**pen_head)
    if name == "ddpm_abs":
        return base.replace(representation="absolute", **pen_head)
    if name == "star":
        return base.replace(process="star", star_positions="gaussian")
    if name == "star_polar":
        return base.replace(process="star", star_positions="polar")
    if name == "star_beta":
        return base.replace(process="star", star_positions="beta", representation="absolute",
                            schedule="cosine")
    rep = "absolute" if name == "spd" else "delta"
    fit = spectrum_for(rep, args, spectra)
    return base.replace(process="spd", representation=rep, spd_c1=fit.c1, spd_c2=fit.c2,
                        spd_m=max(fit.m, 1e-3), **pen_head)


def spectrum_for(rep, args, spectra):
    if rep not in spectra:
        spectra[rep] = fitted_spectrum(rep, args)
    return spectra[rep][0]


def pen_structure(strokes, max_strokes):
    """Fraction of samples with a valid pen structure (see the module docstring), and the mean
    number of strokes."""
    from sketchtk.metrics.evaluate import degenerate_reasons
    degenerate, _ = degenerate_reasons(strokes)
    valid, counts = [], []
    for sketch, bad in zip(strokes, degenerate):
        lifts = np.asarray(sketch)[:, 2] > 0.5
        counts.append(int(lifts.sum()))
        one_point = bool(np.any(lifts[1:] & lifts[:-1])) or bool(lifts[0])
        valid.append(not bad and not one_point and lifts.sum() <= max_strokes)
    return float(np.mean(valid)), float(np.mean(counts))


def real_stroke_counts(args):
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.data.point_sequences import prepare_point_data
    data = prepare_point_data(load_sketch_data(args.data_dir, args.categories), max_points=96)
    counts = [int((np.asarray(s)[:, 2] > 0.5).sum()) for s in data.splits["train"].sketches]
    test = [int((np.asarray(s)[:, 2] > 0.5).sum()) for s in data.splits["test"].sketches]
    return max(counts), float(np.mean(test))


def run_variant(name, hp, args, max_strokes):
    from sketchtk.metrics.evaluate import run_evaluation
    from sketchtk.sampling.generate import run_sampling
    from sketchtk.training.trainer import train_and_evaluate
    log_root = os.path.join(args.out_dir, name)
    done = os.path.exists(os.path.join(log_root, "model_config.json"))
    if done and not args.reuse:
        raise SystemExit(f"compare_diffusion.py: error: {log_root} already holds a run; pass "
                         "--reuse or another --out_dir")
    start = time.perf_counter()
    train_and_evaluate(hp, log_root, data_dir=args.data_dir, resume=True, verbose=0)
    train_s = time.perf_counter() - start
    log(f"{name}: trained ({train_s:.0f} s)")
    sample_dir = os.path.join(log_root, "samples")
    start = time.perf_counter()
    out = run_sampling(log_root, sample_dir, num_per_category=args.samples_per_category,
                       conditional=True, data_dir=args.data_dir, seed=args.seed,
                       write_files=False, diffusion=dict(sampler="ddpm", steps=None,
                                                         variance_strength=1.0))
    sample_s = time.perf_counter() - start
    metrics = run_evaluation(log_root, sample_dir, args.classifier_dir, data_dir=args.data_dir)
    valid, strokes = pen_structure(list(out["strokes"]), max_strokes)
    with open(os.path.join(log_root, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    log(f"{name}: sampled and scored ({sample_s:.0f} s)")
    return {"variant": name, "process": hp.process, "representation": hp.representation,
            "steps": int(rows[-1]["step"]) if rows else 0, "train_s": train_s,
            "sample_s": sample_s, "rec": metrics["rec"], "fid": metrics["fid"],
            "precision": metrics["precision"], "recall": metrics["recall"],
            "num_degenerate": metrics["num_degenerate"], "num_samples": metrics["num_samples"],
            "valid_pen": valid, "mean_strokes": strokes,
            "loss_first": float(rows[0]["loss"]) if rows else None,
            "loss_last": float(rows[-1]["loss"]) if rows else None,
            "history": [(int(r["step"]), float(r["loss"])) for r in rows]}


def plot_losses(results, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        steps, loss = zip(*r["history"])
        loss = np.asarray(loss)
        # a running median over 5 rows: the per-step loss of a random t is noisy
        smooth = np.array([np.median(loss[max(0, i - 2):i + 3]) for i in range(len(loss))])
        ax.plot(steps, smooth / smooth[0], label=f"{r['variant']} ({r['process']})")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss / its first value")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(results, real_strokes):
    header = (f"{'variant':10s} {'process':8s} {'repr':8s} {'steps':>5s} {'train s':>7s} "
              f"{'sample s':>8s} {'Rec':>6s} {'FID':>7s} {'P':>5s} {'R':>5s} {'valid pen':>9s} "
              f"{'strokes':>7s} {'degen':>5s} {'loss first->last':>18s}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['variant']:10s} {r['process']:8s} {r['representation']:8s} {r['steps']:5d} "
              f"{_fmt(r['train_s'], 0):>7s} {_fmt(r['sample_s'], 0):>8s} {_fmt(r['rec']):>6s} "
              f"{_fmt(r['fid'], 2):>7s} {_fmt(r['precision'], 2):>5s} {_fmt(r['recall'], 2):>5s} "
              f"{_fmt(r['valid_pen'], 2):>9s} {_fmt(r['mean_strokes'], 1):>7s} "
              f"{r['num_degenerate']:>5d} {_fmt(r['loss_first'], 3):>8s}->{_fmt(r['loss_last'], 3):<8s}")
    print(f"(real test sketches: {real_strokes:.1f} strokes on average)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--variants", default="ddpm,ddpm_abs,star,star_beta,spd")
    parser.add_argument("--diffusion_steps", type=int, default=None, help="T (default 100)")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--samples_per_category", type=int, default=None)
    parser.add_argument("--classifier_dir", default=None)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--categories", default=None)
    parser.add_argument("--out_dir", default="/tmp/compare_diffusion")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sketchtk.data.loader import DEFAULT_CATEGORIES
    args.categories = args.categories.split(",") if args.categories else list(DEFAULT_CATEGORIES)
    args.steps = args.steps or (30 if args.quick else 3000)
    args.diffusion_steps = args.diffusion_steps or (20 if args.quick else 100)
    args.batch_size = args.batch_size or (16 if args.quick else 32)
    args.samples_per_category = args.samples_per_category or (2 if args.quick else 20)
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"compare_diffusion.py: error: --variants: unknown {unknown}; choose "
                         f"from {list(VARIANTS)}")
    if args.classifier_dir and not os.path.exists(os.path.join(args.classifier_dir,
                                                               "model_config.json")):
        raise SystemExit(f"compare_diffusion.py: error: --classifier_dir={args.classifier_dir}: "
                         "no model_config.json there (a train.py model=sketch_a_net run)")
    os.makedirs(args.out_dir, exist_ok=True)
    base = base_hparams(args).replace(categories=tuple(args.categories))
    max_strokes, real_strokes = real_stroke_counts(args)
    spectra = {}
    for rep in ("absolute", "delta"):  # measured and printed whatever the variants
        spectrum_for(rep, args, spectra)
    results = []
    for name in names:
        results.append(run_variant(name, variant_hparams(name, base, args, spectra), args,
                                   max_strokes))
    plot_losses(results, os.path.join(args.out_dir, "loss_curves.png"))
    print_table(results, real_strokes)
    summary = {"bench": "compare_diffusion", "quick": args.quick, "steps": args.steps,
               "T": args.diffusion_steps, "batch_size": args.batch_size,
               "samples_per_category": args.samples_per_category,
               "spectra": {rep: {"c1": f.c1, "c2": f.c2, "m": f.m, "low_high_ratio": ratio}
                           for rep, (f, ratio) in spectra.items()},
               "results": [{k: v for k, v in r.items() if k != "history"} for r in results]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
