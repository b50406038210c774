"""RPCL-pix2seq against the sketch-pix2seq and sketch-rnn baselines on the same data and budget.

Every model is trained through the library's own entry (``train_and_evaluate``) on the same real
data (the embedded QuickDraw subset, or ``--data_dir``) for the same number of steps (early
stopping off, so the budgets stay equal), sampled at the same temperature (conditional: z = the
encoder mean of a real test drawing; unconditional: z from the model's prior), and evaluated by
``run_evaluation`` with one shared Sketch-a-Net classifier (trained once, or ``--classifier_dir``).
One table: Rec, Ret top-1/10/50, FID / precision / recall (conditional and unconditional, in
Sketch-a-Net feature space: not comparable to Inception-space numbers in papers), active GMM
components, degenerate samples and wall time; then one JSON line. Grids:
``<out_dir>/compare_conditional.png`` and ``compare_unconditional.png`` (one row per model, in
table order), and each model's own ``samples_*/grid.png``.

Tiers (wall times for 2 idle CPU cores; a shared machine is slower):
- ``--quick``: the ``smoke`` model size (32-unit HyperLSTM), 40 steps each, 5 samples per category
  and mode: a few minutes. Checks that the comparison runs, says nothing about the models.
- default (longer) tier: the CPU-sized presets (``default`` for RPCL-pix2seq, whose GMM runs EM
  only for its first 200 steps; the magenta-convention ``sketch_pix2seq_default`` /
  ``sketch_rnn_default`` baselines where ``hparams`` has them) with an LSTM-256 decoder, batch 64,
  ``--steps`` (600) each, validation every 100, 20 samples per category and mode, a Sketch-a-Net
  of 40 passes (the README demo's): designed for about 25-35 minutes in all on 2 idle cores, from
  a measurement on a loaded machine (LSTM-256, batch 64: about 1.1 s per step with validation at
  load 7; ``--dec_model=hyper``, the presets' own decoder, is about 2-3x slower per step).
  Keras prints one line per validation interval, and this script a line as each phase ends.

Wall times: the first model trained also pays the process's one-time compilations (renderer,
datasets), so ``train s`` of the first row is inflated by up to a minute on a CPU.

Usage: python bench/compare_models.py [--quick] [--steps=N] [--data_dir=DIR --categories=a,b]
       [--out_dir=DIR] [--reuse] [--classifier_dir=DIR] [--temperature=0.24] [--dec_model=lstm]
"""

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MODELS = ("rpcl_pix2seq", "sketch_pix2seq", "sketch_rnn")
# Baseline presets with magenta's conventions, by tier, where hparams/ provides them.
BASELINE_PRESETS = {"quick": {}, "long": {"sketch_pix2seq": "sketch_pix2seq_default",
                                          "sketch_rnn": "sketch_rnn_default"}}
START = time.perf_counter()


def log(message):
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


def model_hparams(model, tier, args, categories):
    """HParams of one model for the tier: preset, same budget and data for every model."""
    from hparams import PRESETS, get_preset
    from hparams import presets as preset_module

    common = dict(num_steps=args.steps, eval_every=args.eval_every, early_stop_patience=10**6,
                  seed=args.seed, categories=tuple(categories), num_mixture=len(categories))
    if args.num_per_category:
        common["num_per_category"] = args.num_per_category
    if tier == "quick":
        hp = get_preset("smoke")
        if model != "rpcl_pix2seq":
            # The magenta conventions the baselines' own presets use, at the smoke size.
            conventions = getattr(preset_module, "MAGENTA_CONVENTIONS", {})
            hp = dataclasses.replace(hp, model=model, de_weight=0.0, **conventions)
        return hp.replace(**common)
    name = BASELINE_PRESETS["long"].get(model)
    if name in PRESETS:
        hp = get_preset(name)
    else:
        hp = get_preset("default").replace(model=model)
    extra = {"dec_model": args.dec_model} if args.dec_model else {}
    return hp.replace(**common, **extra)


def train_model(hp, log_root, data_dir, reuse, verbose=0):
    from sketchtk.training.trainer import train_and_evaluate

    done = os.path.exists(os.path.join(log_root, "model_config.json"))
    if done and not reuse:
        raise SystemExit(f"compare_models.py: error: {log_root} already holds a run; pass --reuse "
                         "to evaluate it again or another --out_dir")
    start = time.perf_counter()
    result = train_and_evaluate(hp, log_root, data_dir=data_dir, resume=True, verbose=verbose)
    return result, time.perf_counter() - start, done


def classifier_run(args, out_dir, categories):
    """A Sketch-a-Net run directory: ``--classifier_dir``, or trained once under ``out_dir``."""
    from hparams import get_preset

    if args.classifier_dir:
        return args.classifier_dir, None, True
    log_root = os.path.join(out_dir, "classifier")
    hp = get_preset("smoke" if args.quick else "default").replace(
        model="sketch_a_net", categories=tuple(categories), num_mixture=len(categories),
        batch_size=32 if args.quick else 64, classifier_epochs=3 if args.quick else 40,
        num_steps=10**6, eval_every=33 if args.quick else 60, seed=args.seed)
    result, seconds, reused = train_model(hp, log_root, args.data_dir, reuse=True)
    return log_root, seconds, reused or result.steps == 0


def evaluate_model(model_dir, out_dir, classifier_dir, args):
    from sketchtk.metrics.evaluate import run_evaluation
    from sketchtk.sampling.generate import run_sampling

    results, sketches = {}, {}
    for mode, conditional in (("cond", True), ("uncond", False)):
        sample_dir = os.path.join(out_dir, f"samples_{mode}")
        start = time.perf_counter()
        out = run_sampling(model_dir, sample_dir, num_per_category=args.samples_per_category,
                           conditional=conditional, data_dir=args.data_dir,
                           temperature=args.temperature, seed=args.seed, write_files=False)
        sample_s = time.perf_counter() - start
        metrics = run_evaluation(model_dir, sample_dir, classifier_dir, data_dir=args.data_dir)
        metrics["sample_s"] = sample_s
        results[mode] = metrics
        sketches[mode] = _spread(list(out["strokes"]), list(out["names"]), 10)
    return results, sketches


def _spread(strokes, names, count):
    """Up to ``count`` sketches taken round-robin over the categories (conditional samples come
    ordered by category: the first ``count`` would all be one category)."""
    by_name = {}
    for sketch, name in zip(strokes, names):
        by_name.setdefault(name, []).append(sketch)
    picked, rank = [], 0
    while len(picked) < count and any(rank < len(v) for v in by_name.values()):
        picked.extend(v[rank] for v in by_name.values() if rank < len(v))
        rank += 1
    return picked[:count]


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(rows, reference):
    header = (f"{'model':15s} {'steps':>5s} {'train s':>8s} {'Rec':>6s} {'Ret@1':>6s} "
              f"{'Ret@10':>6s} {'Ret@50':>6s} {'FID c':>8s} {'P c':>5s} {'R c':>5s} "
              f"{'FID u':>8s} {'P u':>5s} {'R u':>5s} {'GMM':>4s} {'degen c/u':>9s}")
    print(header)
    print("-" * len(header))
    for row in rows:
        c, u = row["cond"], row["uncond"]
        print(f"{row['model']:15s} {row['steps']:5d} {_fmt(row['train_s'], 0):>8s} "
              f"{_fmt(c['rec']):>6s} {_fmt(c['ret_top1']):>6s} {_fmt(c['ret_top10']):>6s} "
              f"{_fmt(c['ret_top50']):>6s} {_fmt(c['fid'], 2):>8s} {_fmt(c['precision'], 2):>5s} "
              f"{_fmt(c['recall'], 2):>5s} {_fmt(u['fid'], 2):>8s} {_fmt(u['precision'], 2):>5s} "
              f"{_fmt(u['recall'], 2):>5s} {_fmt(c.get('active_components')):>4s} "
              f"{c['num_degenerate']:>4d}/{u['num_degenerate']:<4d}")
    if reference:
        print(f"{'real valid':15s} {'':5s} {'':>8s} {_fmt(reference['rec']):>6s} "
              f"{'':>6s} {'':>6s} {'':>6s} {_fmt(reference['fid'], 2):>8s} "
              f"{_fmt(reference['precision'], 2):>5s} {_fmt(reference['recall'], 2):>5s}"
              "   (real validation drawings vs test; Rec = classifier on the real test set)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-size tier (a few minutes)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--eval_every", type=int, default=None, help="steps between validations")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--data_dir", default=None, help="sketch-rnn .npz dir (default: embedded)")
    parser.add_argument("--categories", default=None, help="comma-separated (with --data_dir)")
    parser.add_argument("--num_per_category", type=int, default=None,
                        help="training drawings per category (bounds large data sets)")
    parser.add_argument("--samples_per_category", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=0.24)
    parser.add_argument("--dec_model", default=None, choices=["lstm", "layer_norm", "hyper"],
                        help="longer tier's decoder (default lstm; the presets' own is hyper)")
    parser.add_argument("--classifier_dir", default=None, help="reuse this Sketch-a-Net run")
    parser.add_argument("--out_dir", default=None)
    parser.add_argument("--reuse", action="store_true", help="evaluate runs already in --out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tier = "quick" if args.quick else "long"
    args.steps = args.steps or (40 if args.quick else 600)
    args.eval_every = args.eval_every or (20 if args.quick else 100)
    args.samples_per_category = args.samples_per_category or (5 if args.quick else 20)
    if tier == "long" and args.dec_model is None:
        args.dec_model = "lstm"
    out_dir = args.out_dir or os.path.join("runs", f"compare_{tier}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")

    from sketchtk.data.loader import DEFAULT_CATEGORIES, available_categories
    from sketchtk.errors import DataError
    from sketchtk.render.grid import save_grid_png

    try:
        if args.categories:
            categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        elif args.data_dir:
            categories = available_categories(args.data_dir)
        else:
            categories = list(DEFAULT_CATEGORIES)
    except DataError as err:
        parser.error(str(err))
    os.makedirs(out_dir, exist_ok=True)
    log(f"tier {tier}: {models}, {args.steps} steps each, categories {categories}, "
        f"temperature {args.temperature}, out_dir {out_dir}")

    log("classifier: training (or reusing) the Sketch-a-Net")
    clf_dir, clf_s, clf_reused = classifier_run(args, out_dir, categories)
    clf_metrics_path = os.path.join(clf_dir, "classifier_metrics.json")
    clf_acc = (json.load(open(clf_metrics_path))["test_accuracy"]
               if os.path.exists(clf_metrics_path) else None)
    log(f"classifier ready ({'reused' if clf_reused else f'{clf_s:.0f} s'}), "
        f"test accuracy {_fmt(clf_acc)}")

    rows, grids, labels = [], {"cond": [], "uncond": []}, []
    for model in models:
        hp = model_hparams(model, tier, args, categories)
        run_dir = os.path.join(out_dir, model)
        log(f"{model}: training {args.steps} steps ({hp.dec_model} {hp.dec_rnn_size}, batch "
            f"{hp.batch_size}, loss convention {getattr(hp, 'loss_convention', 'rpcl')})")
        result, train_s, reused = train_model(hp, run_dir, args.data_dir, args.reuse,
                                              verbose=0 if args.quick else 2)
        log(f"{model}: trained to step {result.steps} in {train_s:.0f} s"
            f"{' (reused run)' if reused else ''}; sampling and evaluating")
        start = time.perf_counter()
        metrics, sketches = evaluate_model(run_dir, run_dir, clf_dir, args)
        eval_s = time.perf_counter() - start
        rows.append({"model": model, "steps": result.steps, "reused": reused,
                     "train_s": None if reused else train_s, "eval_s": eval_s, **metrics})
        for mode in grids:
            grids[mode].extend(sketches[mode][:10] + [np.zeros((0, 3), np.float32)] *
                               max(0, 10 - len(sketches[mode])))
        labels.extend([model] + [""] * 9)
        log(f"{model}: Rec {_fmt(metrics['cond']['rec'])}, Ret@1 "
            f"{_fmt(metrics['cond']['ret_top1'])}, FID cond {_fmt(metrics['cond']['fid'], 2)} "
            f"uncond {_fmt(metrics['uncond']['fid'], 2)} ({eval_s:.0f} s)")
    for mode, sketches in grids.items():
        save_grid_png(sketches, os.path.join(out_dir, f"compare_{mode}itional.png"), ncols=10,
                      labels=labels)

    first = rows[0]["cond"] if rows else {}
    reference = dict(first.get("real_valid_vs_test") or {}, rec=first.get("rec_real_test"))
    print()
    print(f"compare_models ({tier} tier): {args.steps} steps each, temperature "
          f"{args.temperature}, {args.samples_per_category} samples per category and mode, "
          f"classifier test accuracy {_fmt(clf_acc)}")
    print("FID / P / R: Sketch-a-Net feature space (k = 3), against the real test drawings; not "
          "comparable to Inception-space FIDs")
    print_table(rows, reference if reference.get("fid") is not None else None)
    num_refs = rows[0]["cond"].get("num_references") if rows else None
    if num_refs is not None and num_refs <= 50:
        print(f"Ret@50 is trivially 1 with {num_refs} test references but for degenerate "
              f"samples (chance top-k is k / {num_refs})")
    print(f"grids: {os.path.join(out_dir, 'compare_conditional.png')}, "
          f"{os.path.join(out_dir, 'compare_unconditional.png')} (rows: {', '.join(models)})")
    keys = ("rec", "ret_top1", "ret_top10", "ret_top50", "fid", "precision", "recall",
            "num_degenerate")
    summary = {"tier": tier, "steps": args.steps, "temperature": args.temperature,
               "categories": categories, "classifier_test_accuracy": clf_acc,
               "real_valid_vs_test": reference,
               "total_s": round(time.perf_counter() - START, 1), "models": {}}
    for row in rows:
        entry = {"steps": row["steps"], "train_s": row["train_s"], "eval_s": row["eval_s"],
                 "active_components": row["cond"].get("active_components")}
        for mode in ("cond", "uncond"):
            entry.update({f"{key}_{mode}": row[mode].get(key) for key in keys
                          if not (mode == "uncond" and key.startswith(("rec", "ret")))})
        summary["models"][row["model"]] = entry
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
