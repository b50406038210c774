"""Shortest-path diffusion of 48 x 48 renders vs the same model with a flat spectrum, same budget.

``model=raster_diffusion`` (``sketchtk/models/raster_diffusion.py``) trained through
``train_and_evaluate`` on the embedded data's renders, with the same UNet, T, batch and steps:

- ``spd``: ``S0`` fitted on the training renders (``sketchtk.diffusion.spectrum``, the DC bin
  left out: it is the constant background);
- ``spd_refit``: ``S0`` from ``fit_raster_spectrum`` (log-binned rings, ``|f| <= 0.35``, ``S0(0)``
  = the measured DC power): a power law ``c1 / (c2 + |f|)^m`` with ``m`` ~ 1.3;
- ``flat``: ``S0 = 1`` at every frequency, where SPD's ``alphabar_t = tau`` (a DDPM whose
  alphabar falls linearly in t, the same for every frequency): the Gaussian baseline.

All are sampled class-conditionally (``--samples_per_category`` per category, all T ancestral
steps; the predicted x0 clipped to [-1, 1] at every step unless ``--clip_x0=false``: without the
clip the fitted-S0 model's samples were pure noise, ``sketchtk/diffusion/spd.py``) and scored
on the images themselves with a Sketch-a-Net classifier (``--classifier_dir``, read only): Rec
and FID / precision / recall in its feature space against the real test renders.
Grids: ``<out_dir>/<variant>_<steps>_samples.png``. One table, then one JSON line.

A run already in ``<out_dir>/<variant>`` is resumed (constant learning rate: resuming to more
steps is a longer run); pass the ``--eval_every`` it was made with.

Usage: python bench/compare_raster_diffusion.py --classifier_dir=DIR [--steps=N] [--quick]
[--variants=spd,spd_refit,flat] [--clip_x0=true|false] [--eval_every=N]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

START = time.perf_counter()


def log(message):
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


def fit_raster(hp):
    """``(exact-radius fit, fit_raster_spectrum)`` of the training renders."""
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.diffusion.spectrum import fit_raster_spectrum, fit_spectrum, raster_data_spectrum
    data = load_sketch_data(None, hp.categories, max_seq_len=hp.max_seq_len)
    freq, power, count = raster_data_spectrum(data, hp)
    fit = fit_spectrum(freq, power, weights=count, min_freq=1e-6, c2_range=(1e-5, 1.0))
    refit = fit_raster_spectrum(freq, power, count)
    for name, f in (("exact radii", fit), ("log-binned, |f| <= 0.35, DC matched", refit)):
        log(f"raster spectrum ({name}): c1={f.c1:.4g} c2={f.c2:.4g} m={f.m:.3f} "
            f"(log RMSE {f.log_rmse:.3f}); S0(0) {f(0.0):.4g}, S0(0.707) {f(0.707):.4g}")
    log(f"measured: DC power {power[0]:.4g}, highest |f| {power[-1]:.4g}")
    return fit, refit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--classifier_dir", required=True)
    parser.add_argument("--samples_per_category", type=int, default=None)
    parser.add_argument("--out_dir", default="/tmp/compare_raster_diffusion")
    parser.add_argument("--variants", default="spd,spd_refit,flat",
                        help="from spd, spd_refit, flat")
    parser.add_argument("--clip_x0", default="true", choices=["true", "false"])
    parser.add_argument("--eval_every", type=int, default=None)
    args = parser.parse_args()
    clip_x0 = args.clip_x0 == "true"
    from hparams import get_preset
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.metrics.recognition import recognition_accuracy
    from sketchtk.metrics.sample_quality import classifier_features, sample_quality
    from sketchtk.models.raster_diffusion import x0_to_images
    from sketchtk.render.raster import render_sketches
    from sketchtk.sampling.raster_generate import save_image_grid
    from sketchtk.training.trainer import load_trained_model, train_and_evaluate

    base = get_preset("spd_raster_smoke" if args.quick else "spd_raster")
    steps = args.steps or (10 if args.quick else 300)
    per_cat = args.samples_per_category or (2 if args.quick else 20)
    base = base.replace(num_steps=steps, eval_every=args.eval_every or max(5, steps // 3),
                        log_every=max(1, steps // 30), early_stop_patience=10 ** 6)
    fit, refit = fit_raster(base)
    known = {"spd": base.replace(spd_c1=fit.c1, spd_c2=fit.c2, spd_m=fit.m),
             "spd_refit": base.replace(spd_c1=refit.c1, spd_c2=refit.c2, spd_m=refit.m),
             "flat": base.replace(spd_c1=1.0, spd_c2=1.0, spd_m=1e-6)}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        parser.error(f"--variants={args.variants}: unknown {unknown}, choose from {sorted(known)}")
    variants = {name: known[name] for name in names}
    classifier, _ = load_trained_model(args.classifier_dir)
    test = load_sketch_data(None, base.categories, max_seq_len=base.max_seq_len)["test"]
    test_images = render_sketches(list(test.sketches), width=base.png_width)
    test_feats = classifier_features(classifier, test_images)
    categories = list(base.categories)
    labels = np.repeat(np.arange(len(categories)), per_cat).astype(np.int32)
    results = []
    for name, hp in variants.items():
        log_root = os.path.join(args.out_dir, name)
        start = time.perf_counter()
        train_and_evaluate(hp, log_root, resume=True, verbose=0)
        train_s = time.perf_counter() - start
        model, _ = load_trained_model(log_root)
        start = time.perf_counter()
        x0, _ = model.generate(len(labels), labels=labels, sampler="ddpm", seed=7,
                               clip_x0=clip_x0)
        sample_s = time.perf_counter() - start
        images = x0_to_images(x0)
        save_image_grid(images, os.path.join(args.out_dir, f"{name}_{steps}_samples.png"), per_cat)
        rec = recognition_accuracy(classifier, images, labels, categories)["rec"]
        feats = classifier_features(classifier, images)
        quality = sample_quality(test_feats, feats) if len(feats) > 5 else {
            "fid": None, "precision": None, "recall": None}
        import csv
        with open(os.path.join(log_root, "history.csv")) as f:
            rows = list(csv.DictReader(f))
        results.append({"variant": name, "clip_x0": clip_x0, "c1": hp.spd_c1, "c2": hp.spd_c2,
                        "m": hp.spd_m,
                        "steps": steps, "train_s": train_s, "sample_s": sample_s, "rec": rec,
                        "fid": quality["fid"], "precision": quality["precision"],
                        "recall": quality["recall"], "loss_first": float(rows[0]["loss"]),
                        "loss_last": float(rows[-1]["loss"]),
                        "ink_fraction": float((images < 128).mean())})
        log(f"{name}: trained {train_s:.0f} s, sampled {sample_s:.0f} s")
    real_ink = float((test_images < 128).mean())
    print(f"{'variant':8s} {'steps':>5s} {'train s':>7s} {'Rec':>6s} {'FID':>7s} {'P':>5s} "
          f"{'R':>5s} {'ink':>6s} {'loss first->last':>17s}")
    for r in results:
        fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        print(f"{r['variant']:8s} {r['steps']:5d} {r['train_s']:7.0f} {fmt(r['rec'], 3):>6s} "
              f"{fmt(r['fid'], 2):>7s} {fmt(r['precision'], 2):>5s} {fmt(r['recall'], 2):>5s} "
              f"{r['ink_fraction']:6.3f} {r['loss_first']:8.3f}->{r['loss_last']:.3f}")
    print(f"(real test renders: ink fraction {real_ink:.3f})")
    print(json.dumps({"bench": "compare_raster_diffusion", "steps": steps, "clip_x0": clip_x0,
                      "samples_per_category": per_cat, "real_ink_fraction": real_ink,
                      "results": results}))


if __name__ == "__main__":
    main()
