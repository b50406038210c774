r"""Pack QuickDraw ``.ndjson`` files into sketch-rnn ``.npz`` files, one per category.

Usage::

    python -m sketchtk.data.pack_quickdraw --ndjson_dir=DIR \
        --categories="cat,bus,The Eiffel Tower" --output_dir=OUT \
        [--raw_ndjson_dir=RAW_DIR] [--max_per_category=N] [--split=0.9,0.05,0.05] [--seed=0]
        [--format=tfrecord --shards=16 [--images=48] [--compression=GZIP]]
    python -m sketchtk.data.pack_quickdraw --format=tfrecord --npz_dir=NPZ_DIR --output_dir=OUT

For each category, ``DIR/<category>.ndjson`` (and ``RAW_DIR/<category>.ndjson`` when given) are
streamed through :mod:`sketchtk.data.quickdraw`, converted to int16 stroke-3, de-duplicated by
``key_id`` (a drawing in ``DIR`` wins over its raw twin: it is Google's own simplification),
shuffled with ``seed`` and split into train/valid/test, then written to ``OUT/<category>.npz``
with :func:`sketchtk.data.npz_io.save_stroke_npz`.

Memory: the files are streamed line by line. With ``max_per_category=N`` a reservoir sample
(Algorithm R) keeps at most N stroke-3 arrays, whatever the file size; without it every kept
drawing's stroke-3 array is held until the split is written. The ``key_id`` set used for
de-duplication grows with the file (tens of bytes per drawing, against about a kilobyte for a
drawing's JSON): a few MB for a full 150k-drawing QuickDraw category.
"""

import dataclasses
import difflib
import math
import os

import numpy as np
from absl import app
from absl import flags
from absl import logging

from sketchtk.data import npz_io
from sketchtk.data import quickdraw
from sketchtk.errors import ConfigError, DataError

DEFAULT_SPLIT = (0.9, 0.05, 0.05)
NDJSON_SUFFIX = ".ndjson"


def parse_split(split):
    """``"0.9,0.05,0.05"`` or a 3-sequence -> validated ``(train, valid, test)`` fractions.

    Raises:
      ConfigError: not three numbers, a fraction that is not a finite number > 0, or a sum that is
        not 1 (within 1e-6).
    """
    text = split
    if isinstance(split, str):
        parts = [p.strip() for p in split.split(",")]
        try:
            split = [float(p) for p in parts]
        except ValueError as err:
            raise ConfigError(f"split {text!r}: expected three comma-separated numbers "
                              "train,valid,test such as 0.9,0.05,0.05") from err
    split = tuple(float(f) for f in split)
    if len(split) != 3:
        raise ConfigError(f"split {text!r}: expected 3 fractions (train, valid, test), "
                          f"got {len(split)}")
    if not all(math.isfinite(f) and f > 0 for f in split):
        raise ConfigError(f"split {text!r}: every fraction must be a number > 0")
    if abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(f"split {text!r}: fractions must sum to 1, they sum to {sum(split):g}")
    return split


def split_sizes(n, fractions):
    """Sizes ``(train, valid, test)`` summing to ``n``: floors, remainder to the largest parts."""
    exact = [n * f for f in fractions]
    sizes = [int(math.floor(e)) for e in exact]
    # Largest-remainder rounding; ties go to the earlier split (train first).
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[:n - sum(sizes)]:
        sizes[i] += 1
    return tuple(sizes)


def available_categories(directory):
    """Sorted category names (``<name>.ndjson`` files) in ``directory``; [] if it does not exist."""
    if not directory or not os.path.isdir(directory):
        return []
    return sorted(f[:-len(NDJSON_SUFFIX)] for f in os.listdir(directory)
                  if f.endswith(NDJSON_SUFFIX))


def _category_sources(category, ndjson_dir, raw_ndjson_dir):
    """``[(path, raw)]`` for a category, simplified first; DataError when it is in neither dir."""
    sources = []
    for directory, raw in ((ndjson_dir, None), (raw_ndjson_dir, True)):
        if directory:
            path = os.path.join(directory, category + NDJSON_SUFFIX)
            if os.path.isfile(path):
                sources.append((path, raw))
    if sources:
        return sources
    dirs = [d for d in (ndjson_dir, raw_ndjson_dir) if d]
    names = sorted(set(available_categories(ndjson_dir)) |
                   set(available_categories(raw_ndjson_dir)))
    hint = ""
    close = difflib.get_close_matches(category, names, n=3)
    if close:
        hint += f"; did you mean {', '.join(repr(c) for c in close)}?"
    if names:
        hint += (f" {len(names)} categories available, e.g. "
                 f"{', '.join(repr(c) for c in names[:5])}")
    else:
        hint += " (no .ndjson files found there)"
    raise DataError(f"unknown category {category!r}: no '{category}{NDJSON_SUFFIX}' in "
                    f"{' or '.join(dirs)}{hint}")


@dataclasses.dataclass
class CategoryResult:
    """What packing one category produced.

    Attributes:
      category: the category name.
      sizes: ``{split: number of drawings}``.
      file_stats: one :class:`~sketchtk.data.quickdraw.PackStats` per source file.
      duplicates: drawings dropped because their ``key_id`` was already seen.
      candidates: distinct valid drawings seen (what was sampled from).
      contributed: ``{source path: distinct drawings it added to the candidates}``.
      output_path: the written ``.npz``, or None when nothing was written.
    """

    category: str
    sizes: dict
    file_stats: list
    duplicates: int = 0
    candidates: int = 0
    contributed: dict = dataclasses.field(default_factory=dict)
    output_path: str = None

    @property
    def skipped(self):
        """Skipped lines per reason over all source files."""
        total = {}
        for stats in self.file_stats:
            for reason, n in stats.skipped.items():
                total[reason] = total.get(reason, 0) + n
        return total

    def summary(self):
        """One line for the log."""
        sizes = "/".join(str(self.sizes.get(s, 0)) for s in npz_io.SPLITS)
        skipped = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items())) or "none"
        return (f"{self.category}: kept {sum(self.sizes.values())} of {self.candidates} distinct "
                f"drawings (train/valid/test {sizes}); {self.duplicates} duplicate key_ids; "
                f"skipped: {skipped}" + (f" -> {self.output_path}" if self.output_path else ""))


def collect_category(category, ndjson_dir, raw_ndjson_dir=None, max_per_category=None,
                     split=DEFAULT_SPLIT, seed=0, epsilon=quickdraw.RAW_EPSILON):
    """Read, convert, de-duplicate, sample and split one category, without writing anything.

    Args:
      category: the category name, i.e. the file name without ``.ndjson`` (spaces allowed).
      ndjson_dir: directory of simplified (or auto-detected) ``.ndjson`` files.
      raw_ndjson_dir: optional directory of raw ``.ndjson`` files, always treated as raw
        (rescaled and RDP-simplified) and merged in; a ``key_id`` already seen is dropped.
      max_per_category: keep a uniform random sample of at most this many drawings (reservoir
        sampling: memory O(max_per_category)); None keeps all.
      split: ``(train, valid, test)`` fractions or a ``"0.9,0.05,0.05"`` string.
      seed: seeds the sample and the shuffle; the same files and seed give the same output.
      epsilon: RDP tolerance for raw drawings.

    Returns:
      ``(splits, result)``: ``{split: list of int16 [N, 3] arrays}`` and a :class:`CategoryResult`.

    A category too small for ``split`` to fill every split gives each empty split one drawing
    (taken from the largest), since training needs all three; with fewer than 3 drawings a split
    stays empty (logged), and :func:`pack_category` refuses to write it.

    Raises:
      DataError: the category file is in neither directory, a file cannot be read, or no valid
        drawing remains.
      ConfigError: a bad ``split`` or ``max_per_category``.
    """
    fractions = parse_split(split)
    _check_max(max_per_category)
    sources = _category_sources(category, ndjson_dir, raw_ndjson_dir)
    rng = np.random.default_rng(seed)
    result = CategoryResult(category=category, sizes={}, file_stats=[])
    seen_keys = set()
    kept = []
    for path, raw in sources:
        stats = quickdraw.PackStats(path)
        result.file_stats.append(stats)
        before = result.candidates
        for _, record, stroke3 in quickdraw.iter_stroke3(path, raw=raw, epsilon=epsilon,
                                                         stats=stats):
            key = record.get("key_id")
            if key is not None:
                key = str(key)
                if key in seen_keys:
                    result.duplicates += 1
                    continue
                seen_keys.add(key)
            index = result.candidates
            result.candidates += 1
            if max_per_category is None or index < max_per_category:
                kept.append(stroke3)
            else:
                # Algorithm R: after the loop every candidate is in `kept` with equal probability.
                slot = int(rng.integers(0, index + 1))
                if slot < max_per_category:
                    kept[slot] = stroke3
        result.contributed[path] = result.candidates - before
        logging.info("%s", stats.summary())
    if not kept:
        raise DataError(f"category {category!r}: no valid drawing in "
                        f"{', '.join(p for p, _ in sources)} (see the skip counts logged above)")
    order = rng.permutation(len(kept))
    sizes = split_sizes(len(kept), fractions)
    if 0 in sizes and len(kept) < len(sizes):
        logging.warning("%s: only %d drawings, so a split is empty (train/valid/test %s)",
                        category, len(kept), "/".join(map(str, sizes)))
    elif 0 in sizes:
        # train.py needs every split; a small category gives each empty split one drawing
        fixed = at_least_one_each(sizes)
        logging.warning("%s: %d drawings; split %s would leave a split empty, so each empty "
                        "split takes one from the largest: train/valid/test %s", category,
                        len(kept), "/".join(map(str, sizes)), "/".join(map(str, fixed)))
        sizes = fixed
    splits, start = {}, 0
    for name, size in zip(npz_io.SPLITS, sizes):
        splits[name] = [kept[i] for i in order[start:start + size]]
        start += size
    result.sizes = {name: len(s) for name, s in splits.items()}
    return splits, result


def at_least_one_each(sizes):
    """``sizes`` with every 0 raised to 1, each taken from the then-largest split (needs
    ``sum(sizes) >= len(sizes)``)."""
    sizes = list(sizes)
    for i, size in enumerate(sizes):
        if size == 0:
            largest = max(range(len(sizes)), key=lambda j: (sizes[j], -j))
            sizes[largest] -= 1
            sizes[i] = 1
    return tuple(sizes)


def _check_max(max_per_category):
    """ConfigError unless None or a positive integer."""
    if max_per_category is not None and (isinstance(max_per_category, bool) or
                                         not isinstance(max_per_category, (int, np.integer)) or
                                         max_per_category < 1):
        raise ConfigError(f"max_per_category must be a positive integer or None, "
                          f"got {max_per_category!r}")


def pack_category(category, ndjson_dir, output_dir, **kwargs):
    """:func:`collect_category` then write ``output_dir/<category>.npz``; returns the result.

    Raises DataError (writing nothing) when a split would be empty.

    ``kwargs`` are those of :func:`collect_category`.
    """
    splits, result = collect_category(category, ndjson_dir, **kwargs)
    empty = [name for name in npz_io.SPLITS if not splits[name]]
    if empty:
        raise DataError(f"category {category!r}: only {sum(result.sizes.values())} valid "
                        f"drawing(s), so split(s) {empty} would be empty; training needs at least "
                        "one per split (train/valid/test), 3 in all")
    result.output_path = os.path.join(output_dir, category + ".npz")
    npz_io.save_stroke_npz(result.output_path, splits)
    logging.info("%s", result.summary())
    return result


def _check_pack_args(categories, ndjson_dir, raw_ndjson_dir, max_per_category, split):
    """Check everything before reading: returns ``(category list, split fractions)``."""
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",")]
    categories = [c for c in categories if c]
    if not categories:
        raise ConfigError("no categories given")
    if not ndjson_dir or not os.path.isdir(ndjson_dir):
        raise DataError(f"ndjson_dir {ndjson_dir!r} is not a directory")
    if raw_ndjson_dir and not os.path.isdir(raw_ndjson_dir):
        raise DataError(f"raw_ndjson_dir {raw_ndjson_dir!r} is not a directory")
    split = parse_split(split)
    _check_max(max_per_category)
    for category in categories:
        _category_sources(category, ndjson_dir, raw_ndjson_dir)
    return categories, split


def pack(categories, ndjson_dir, output_dir, raw_ndjson_dir=None, max_per_category=None,
         split=DEFAULT_SPLIT, seed=0, epsilon=quickdraw.RAW_EPSILON):
    """Pack several categories into ``output_dir/<category>.npz`` (sketch-rnn format).

    Arguments are checked (split, max, every category file) before any file is read, so a typo
    in the last category fails in a second rather than after packing the others.

    Args:
      categories: category names (a comma-separated string is accepted too).
      ndjson_dir, raw_ndjson_dir, max_per_category, split, seed, epsilon: see
        :func:`collect_category`. Every category uses the same ``seed``.
      output_dir: created if needed.

    Returns:
      ``{category: CategoryResult}`` in the given order.

    Raises:
      DataError, ConfigError: as :func:`collect_category`; also for an empty category list.
    """
    categories, split = _check_pack_args(categories, ndjson_dir, raw_ndjson_dir,
                                         max_per_category, split)
    os.makedirs(output_dir, exist_ok=True)
    results = {}
    for category in categories:
        results[category] = pack_category(
            category, ndjson_dir, output_dir, raw_ndjson_dir=raw_ndjson_dir,
            max_per_category=max_per_category, split=split, seed=seed, epsilon=epsilon)
    total = sum(sum(r.sizes.values()) for r in results.values())
    skipped = sum(sum(r.skipped.values()) for r in results.values())
    logging.info("packed %d categories into %s: %d drawings kept, %d lines skipped",
                 len(results), output_dir, total, skipped)
    return results


def pack_tfrecord(categories, ndjson_dir, output_dir, shards, raw_ndjson_dir=None,
                  max_per_category=None, split=DEFAULT_SPLIT, seed=0,
                  epsilon=quickdraw.RAW_EPSILON, image_width=None, compression=""):
    """Pack categories of ``.ndjson`` into one sharded TFRecord data set in ``output_dir``
    (:mod:`sketchtk.data.tfrecords`): the same reading, de-duplication, sampling and split as
    :func:`pack`, then each drawing is streamed into ``shards`` train shards (valid / test get
    ``shards // 8``, at least 1). Memory: one category's kept drawings (or ``max_per_category``)
    plus one shard when the shards are finished, not the whole input. Returns
    ``({category: CategoryResult}, metadata)``.
    """
    from sketchtk.data import loader
    from sketchtk.data import tfrecords
    categories, split = _check_pack_args(categories, ndjson_dir, raw_ndjson_dir,
                                         max_per_category, split)
    writer = tfrecords.ShardWriter(output_dir, categories, shards, image_width, compression, seed)
    results = {}
    try:
        for label, category in enumerate(categories):
            splits, result = collect_category(
                category, ndjson_dir, raw_ndjson_dir=raw_ndjson_dir,
                max_per_category=max_per_category, split=split, seed=seed, epsilon=epsilon)
            for name in npz_io.SPLITS:
                counts = {}
                for sketch in loader.clean_sketches(splits[name], 0, counts):
                    writer.add(name, label, sketch)
                writer.count_dropped(name, counts)
            results[category] = result
            logging.info("%s", result.summary())
        meta = writer.close({"source": os.path.abspath(ndjson_dir)})
    except BaseException:
        writer.abort()
        raise
    return results, meta


def define_flags(flag_values=flags.FLAGS):
    """Define the CLI flags. Called only when run as a script, so that importing this module as a
    library (e.g. from a training script with its own ``--seed``) defines no global flags."""
    flags.DEFINE_enum("format", "npz", ["npz", "tfrecord"], "npz: one sketch-rnn <category>.npz "
                      "per category; tfrecord: sharded TFRecords + metadata.json "
                      "(sketchtk.data.tfrecords), streamed with bounded memory.",
                      flag_values=flag_values)
    flags.DEFINE_integer("shards", 16, "--format=tfrecord: number of train shards (valid and test "
                         "get shards // 8, at least 1); use at least one per training worker.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("images", 0, "--format=tfrecord: also store a pre-rendered W x W image "
                         "per drawing (0: none; the pix2seq encoder uses 48).", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_enum("compression", "", ["", "GZIP"], "--format=tfrecord: TFRecord compression.",
                      flag_values=flag_values)
    flags.DEFINE_string("npz_dir", None, "Convert this directory of sketch-rnn <category>.npz "
                        "files into TFRecords (--format=tfrecord) instead of reading .ndjson.",
                        flag_values=flag_values)
    flags.DEFINE_string("ndjson_dir", None, "Directory of QuickDraw <category>.ndjson files "
                        "(simplified; raw drawings in it are detected and simplified).",
                        flag_values=flag_values)
    flags.DEFINE_list("categories", None, "Comma-separated category names (file names without "
                      ".ndjson; spaces allowed, e.g. \"cat,The Eiffel Tower\").",
                      flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where <category>.npz files are written.",
                        flag_values=flag_values)
    flags.DEFINE_string("raw_ndjson_dir", None, "Optional directory of raw .ndjson files merged "
                        "in after RDP simplification; duplicates of ndjson_dir drawings (same "
                        "key_id) are dropped.", flag_values=flag_values)
    flags.DEFINE_integer("max_per_category", None, "Keep a random sample of at most this many "
                         "drawings per category (default: all).", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("split", ",".join(str(f) for f in DEFAULT_SPLIT),
                        "train,valid,test fractions: positive, summing to 1.",
                        flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the sampling and the shuffle.",
                         flag_values=flag_values)
    flags.mark_flags_as_required(["output_dir"], flag_values=flag_values)


def main(argv):
    """Parse nothing but flags; :func:`pack` does the work. Bad input: a one-line
    ``pack_quickdraw: error: ...`` (exit 1, 2 for bad flags) from :func:`sketchtk.cli.run`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = flags.FLAGS
    if cfg.npz_dir:
        if cfg.format != "tfrecord":
            raise app.UsageError("--npz_dir converts .npz into TFRecords: add --format=tfrecord")
        from sketchtk.data import tfrecords
        tfrecords.convert_npz(cfg.npz_dir, cfg.output_dir, cfg.categories, cfg.shards,
                              cfg.images or None, cfg.compression, cfg.seed, cfg.max_per_category)
        return 0
    if not cfg.ndjson_dir or not cfg.categories:
        raise app.UsageError("--ndjson_dir and --categories are required (or --npz_dir)")
    if cfg.format == "tfrecord":
        pack_tfrecord(cfg.categories, cfg.ndjson_dir, cfg.output_dir, cfg.shards,
                      raw_ndjson_dir=cfg.raw_ndjson_dir, max_per_category=cfg.max_per_category,
                      split=cfg.split, seed=cfg.seed, image_width=cfg.images or None,
                      compression=cfg.compression)
        return 0
    pack(cfg.categories, cfg.ndjson_dir, cfg.output_dir,
         raw_ndjson_dir=cfg.raw_ndjson_dir, max_per_category=cfg.max_per_category,
         split=cfg.split, seed=cfg.seed)
    return 0


if __name__ == "__main__":
    from sketchtk import cli
    define_flags()
    cli.run(main, prog="pack_quickdraw")
