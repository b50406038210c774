"""Scale of the sharded TFRecord path (sketchtk.data.tfrecords) against the in-memory ``.npz`` path.

The data: a synthetic-but-realistic stream of drawings made by resampling the real QuickDraw
drawings of ``sketchtk/data/default`` and the real sheep of ``tests/fixtures/sheep_small.npz``
(each drawing drawn with replacement, its offsets scaled by a random factor in [0.8, 1.2] and
rounded to integers as QuickDraw's are; labels spread over 345 categories as the full release).

Rows, each measured in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own:

- ``pack shards N``: stream N drawings into sharded TFRecords (``ShardWriter``: both passes, the
  metadata included): drawings/s and peak RSS;
- ``pack npz N``: the same drawings into sketch-rnn ``.npz`` files, which hold a category's
  drawings (here: all, as ``.npz`` packing of one big category would) in memory;
- ``input shards`` / ``input npz``: training-input examples/s of ``make_dataset`` (stroke
  augmentation and the 48x48 rendering included, batch 128) over the same N drawings, the
  two sources interleaved over rounds, median reported; for ``npz`` the loading time is its own
  column;
- ``train shards N``: peak RSS of a short ``train_and_evaluate`` run (smoke model) over the
  shards of N drawings, for the small and the large N: it must not grow with the data;
- the projected time to pack the full release (50M drawings) at the measured packing rate.

Usage::

    nice -n 10 python bench/bench_scale.py --quick      # 20k vs 2k drawings, a few minutes
    nice -n 10 python bench/bench_scale.py              # 1M vs 10k drawings
    nice -n 10 python bench/bench_scale.py --skip_input --large=1000000   # packing + RSS rows only

The last line printed is one JSON object with the figures. On a shared, loaded machine every
rate is a lower bound; the table says so.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FULL_RELEASE = 50_000_000
NUM_CATEGORIES = 345


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _real_drawings():
    """The real stroke-3 drawings the stream resamples (int, clipped as the loader does)."""
    from sketchtk.data import loader
    from sketchtk.data.npz_io import load_stroke_npz
    pool = []
    paths = [loader.category_path(loader.DEFAULT_DATA_DIR, c) for c in loader.DEFAULT_CATEGORIES]
    paths.append(os.path.join(REPO, "tests", "fixtures", "sheep_small.npz"))
    for path in paths:
        data = load_stroke_npz(path)
        pool.extend(np.asarray(s, np.float32) for split in data.values() for s in split)
    return [s for s in loader.clean_sketches(pool, 0, {})]


def synthetic_stream(n, seed=0):
    """``(split, label, stroke3)`` for ``n`` resampled real drawings (train/valid/test 28:1:1)."""
    pool = _real_drawings()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), n)
    scales = rng.uniform(0.8, 1.2, n).astype(np.float32)
    splits = rng.choice(3, n, p=[28 / 30, 1 / 30, 1 / 30])
    for i in range(n):
        sketch = pool[picks[i]].copy()
        sketch[:, :2] = np.round(sketch[:, :2] * scales[i])
        yield ("train", "valid", "test")[splits[i]], i % NUM_CATEGORIES, sketch


def _categories():
    return [f"c{i:03d}" for i in range(NUM_CATEGORIES)]


# ----------------------------------------------------------------------------- phases (children)

def phase_pack_shards(n, out, shards):
    from sketchtk.data import tfrecords
    t0 = time.perf_counter()
    writer = tfrecords.ShardWriter(out, _categories(), shards)
    for split, label, sketch in synthetic_stream(n):
        writer.add(split, label, sketch)
    meta = writer.close()
    seconds = time.perf_counter() - t0
    return {"drawings": n, "seconds": seconds, "rate": n / seconds, "rss_mb": _peak_rss_mb(),
            "scale_factor": meta["scale_factor"],
            "bytes": sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))}


def phase_pack_npz(n, out, categories):
    """sketch-rnn .npz files of ``categories`` categories (the stream's labels folded onto them)."""
    from sketchtk.data.npz_io import save_stroke_npz
    t0 = time.perf_counter()
    held = {c: {"train": [], "valid": [], "test": []} for c in range(categories)}
    for split, label, sketch in synthetic_stream(n):
        held[label % categories][split].append(sketch.astype(np.int16))
    os.makedirs(out, exist_ok=True)
    for c, splits in held.items():
        save_stroke_npz(os.path.join(out, f"c{c:03d}.npz"), splits)
    seconds = time.perf_counter() - t0
    return {"drawings": n, "seconds": seconds, "rate": n / seconds, "rss_mb": _peak_rss_mb()}


def phase_input(source, data_dir, batches, batch_size):
    import hparams
    from sketchtk.data import loader
    from sketchtk.data.pipeline import make_dataset
    hp = hparams.get_preset("smoke").replace(batch_size=batch_size, max_seq_len=250)
    t0 = time.perf_counter()
    data = loader.load_sketch_data(data_dir, max_seq_len=250)  # shards or npz: same call
    assert getattr(data, "sharded", False) == (source == "shards")
    load_s = time.perf_counter() - t0
    it = iter(make_dataset(data, "train", hp, training=True))
    for _ in range(3):  # tracing and XLA compilation of the renderer
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - t0
    return {"load_s": load_s, "rate": batches * batch_size / seconds, "rss_mb": _peak_rss_mb(),
            "train": len(data["train"])}


def phase_train(data_dir, log_root, steps):
    import hparams
    from sketchtk.training.trainer import train_and_evaluate
    hp = hparams.get_preset("smoke").replace(num_steps=steps, eval_every=steps, valid_batches=2,
                                             max_seq_len=250, categories=tuple(_categories()),
                                             log_every=steps)
    t0 = time.perf_counter()
    result = train_and_evaluate(hp, log_root, data_dir, verbose=0)
    return {"steps": result.steps, "seconds": time.perf_counter() - t0, "rss_mb": _peak_rss_mb()}


def _child(phase, **kwargs):
    """Run one phase in a fresh interpreter; returns its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, json.dumps(kwargs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench_scale: phase {phase} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver

def _int_flag(argv, name, default):
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1])
    return default


def main(argv):
    quick = "--quick" in argv
    skip_input = "--skip_input" in argv
    large, small = (20_000, 2_000) if quick else (1_000_000, 10_000)
    large, small = _int_flag(argv, "large", large), _int_flag(argv, "small", small)
    rounds = 2 if quick else 3
    batches = 10 if quick else 40
    shards = 8 if quick else 64
    work = tempfile.mkdtemp(prefix="bench_scale-", dir=os.environ.get("BENCH_SCALE_DIR"))
    rows = {}
    print(f"bench_scale ({'quick' if quick else 'full'} tier; measured on a loaded shared "
          f"machine, {os.cpu_count()} CPUs: rates are lower bounds)", flush=True)
    for n in (small, large):
        rows[f"pack shards {n}"] = _child("pack_shards", n=n, out=f"{work}/shards{n}",
                                          shards=shards if n == large else max(2, shards // 8))
        print(f"  pack shards {n}: {rows[f'pack shards {n}']}", flush=True)
    # .npz packing holds the drawings: at the large N only in the quick tier (1M would need GBs)
    npz_n = min(large, 10_000 if quick else 50_000)
    if not skip_input:
        _input_rows(rows, work, npz_n, quick, batches, rounds)
    steps = 6 if quick else 30
    for n in (small, large):
        rows[f"train shards {n}"] = _child("train", data_dir=f"{work}/shards{n}",
                                           log_root=f"{work}/run{n}", steps=steps)
        print(f"  train shards {n}: {rows[f'train shards {n}']}", flush=True)
    _report(rows, large, small, quick, None if skip_input else npz_n)


def _input_rows(rows, work, npz_n, quick, batches, rounds):
    rows[f"pack npz {npz_n}"] = _child("pack_npz", n=npz_n, out=f"{work}/npz{npz_n}",
                                       categories=5)
    print(f"  pack npz {npz_n}: {rows[f'pack npz {npz_n}']}", flush=True)
    if f"pack shards {npz_n}" not in rows:  # the same N through the shards, for the input rows
        rows[f"pack shards {npz_n}"] = _child("pack_shards", n=npz_n,
                                              out=f"{work}/shards{npz_n}", shards=16)
    inputs = {"shards": [], "npz": []}
    for _ in range(rounds):  # interleaved
        inputs["shards"].append(_child("input", source="shards", data_dir=f"{work}/shards{npz_n}"
                                       , batches=batches, batch_size=128))
        inputs["npz"].append(_child("input", source="npz", data_dir=f"{work}/npz{npz_n}",
                                    batches=batches, batch_size=128))
    for key, runs in inputs.items():
        rows[f"input {key} {npz_n}"] = {
            "rate": statistics.median(r["rate"] for r in runs),
            "load_s": statistics.median(r["load_s"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs)}
        print(f"  input {key} {npz_n}: {rows[f'input {key} {npz_n}']}", flush=True)


def _report(rows, large, small, quick, npz_n):
    pack = rows[f"pack shards {large}"]
    projected_h = FULL_RELEASE / pack["rate"] / 3600
    per_drawing = pack["bytes"] / large
    print()
    print(f"{'row':<24}{'drawings':>10}{'per s':>12}{'peak RSS MB':>13}{'seconds':>10}")
    for name, r in rows.items():
        n = r.get("drawings", r.get("train", ""))
        print(f"{name:<24}{n!s:>10}{r.get('rate', float('nan')):>12.0f}"
              f"{r['rss_mb']:>13.0f}{r.get('seconds', r.get('load_s', float('nan'))):>10.1f}")
    rss_ratio = rows[f"train shards {large}"]["rss_mb"] / rows[f"train shards {small}"]["rss_mb"]
    print(f"\ntraining-run peak RSS, {large} vs {small} drawings: "
          f"{rows[f'train shards {large}']['rss_mb']:.0f} vs "
          f"{rows[f'train shards {small}']['rss_mb']:.0f} MB (x{rss_ratio:.2f})")
    print(f"projected packing of the full release ({FULL_RELEASE / 1e6:.0f}M drawings) at "
          f"{pack['rate']:.0f} drawings/s in one process: {projected_h:.1f} h; "
          f"{per_drawing:.0f} bytes/drawing on disk -> {per_drawing * FULL_RELEASE / 1e9:.0f} GB")
    inputs = {} if npz_n is None else {
        "npz_pack_rss_mb": rows[f"pack npz {npz_n}"]["rss_mb"],
        "input_shards_rate": rows[f"input shards {npz_n}"]["rate"],
        "input_npz_rate": rows[f"input npz {npz_n}"]["rate"]}
    print(json.dumps({"tier": "quick" if quick else "full", "large": large, "small": small,
                      "pack_rate": pack["rate"], "pack_rss_mb": pack["rss_mb"],
                      "pack_rss_mb_small": rows[f"pack shards {small}"]["rss_mb"], **inputs,
                      "train_rss_mb_large": rows[f"train shards {large}"]["rss_mb"],
                      "train_rss_mb_small": rows[f"train shards {small}"]["rss_mb"],
                      "train_rss_ratio": rss_ratio, "projected_pack_hours_50M": projected_h,
                      "bytes_per_drawing": per_drawing, "loaded_machine": True}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
        kwargs = json.loads(sys.argv[3])
        print(json.dumps(globals()[f"phase_{sys.argv[2]}"](**kwargs)))
    else:
        main(sys.argv[1:])
