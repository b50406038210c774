"""Sharded TFRecords of stroke-3 sketches: streamed writing, a metadata file, a ``tf.data`` reader.

Layout of a sharded data directory::

    metadata.json                          categories, counts, scale factor, length statistics
    train-00000-of-00016.tfrecord          tf.train.Example records (below), shuffled at packing
    train-00000-of-00016.tfrecord.index.npy  per record: label, length, sum and M2 of (dx, dy)

The index's ``sum`` / ``m2`` are a sketch's summed dx and dy values and their squared deviations
from its own mean (float64): the scale factor of any category subset and length cap is combined
from them exactly (Chan, Golub & LeVeque's pairwise variance) without reading the shards.
    valid-00000-of-00002.tfrecord ...      (same for valid and test)

One record (``tf.train.Example``): ``strokes`` (bytes: float32 little-endian ``[length, 3]``,
offsets clipped to +-1000 and *not* normalised), ``length``, ``label`` (index into the metadata's
categories), and ``split``; with ``--images`` a pre-rendered ``image`` (uint8
``W x W``, the renderer of ``sketchtk.render.raster``; rendering fits each sketch to the canvas,
so it does not depend on the normalisation).

Writing (:class:`ShardWriter`) is two streaming passes with memory bounded by one shard, not by
the input: each cleaned sketch goes to a random temporary shard as it arrives, then each shard is
read back alone, shuffled and written in its final order with its index. Every shard is thus a
uniform mix of every category, whatever order the categories were packed in.

Reading (:func:`make_dataset`): a pass over a split visits its shards in an order drawn from
``(seed, pass)``; the shards are taken in groups of ``cycle_length``, each group ``interleave``d
and shuffled in windows of ``shuffle_buffer`` records (each permuted by ``index_shuffle`` seeded by
the seed, the group's global index and the window: memory bounded by one window; the shards are
already shuffled at packing, so windows need not overlap). The stream is thus a
deterministic function of the seed, and a resumed run at step ``k`` rebuilds exactly the stream an
uninterrupted run would have: whole groups before the resume point are skipped by arithmetic on
the per-shard counts (from the index files), and only the records of the current group up to that
point are read again (not decoded, augmented or rendered). Augmentation is seeded by the global
example index as in :mod:`sketchtk.data.pipeline`. Multi-worker: with an ``input_context`` each
input pipeline reads its own shards (``files[i::n]``: the FILE sharding of ``tf.distribute``, done
here because the files are chosen inside the per-pass function, where the auto-sharder cannot see
them) and ``AutoShardPolicy.OFF`` keeps ``tf.distribute`` from sharding again.

Records that hold a bad sketch (wrong byte count, label outside the categories, fewer than 2
points, NaN/inf) are skipped and counted (``ShardedSplit.bad_records``); records that are not a
``tf.Example`` at all, or a shard cut short, are skipped with ``tf.data``'s logged warning; the
index counts are then an upper bound, and resuming over a damaged shard is exact only up to the
records skipped. The packer never writes such records.
"""

import dataclasses
import difflib
import json
import math
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from sketchtk.data import augment
from sketchtk.data.npz_io import SPLITS
from sketchtk.errors import ConfigError, DataError

METADATA = "metadata.json"
FORMAT = "sketchtk-tfrecord"
VERSION = 1
INDEX_SUFFIX = ".index.npy"
INDEX_DTYPE = np.dtype([("label", "<i4"), ("length", "<i4"), ("sum", "<f8"), ("m2", "<f8")])
DEFAULT_SHUFFLE_BUFFER = 10000
DEFAULT_CYCLE_LENGTH = 8
_TMP = ".tmp-"


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def is_sharded_dir(path):
    """True when ``path`` holds a sharded TFRecord data set (a ``metadata.json`` of this format)."""
    return path is not None and os.path.isfile(os.path.join(os.fspath(path), METADATA))


def _sketch_moments(xy):
    """(sum, M2) of a sketch's dx and dy values pooled (float64)."""
    values = np.asarray(xy, np.float64).reshape(-1)
    total = float(values.sum())
    return total, float(((values - total / len(values)) ** 2).sum())


def combine_moments(counts, sums, m2s):
    """``(n, sum, M2)`` of the union of groups with ``counts`` values, ``sums`` and ``m2s``
    (Chan, Golub & LeVeque's pairwise update, vectorised, float64)."""
    counts = np.asarray(counts, np.float64)
    sums = np.asarray(sums, np.float64)
    m2s = np.asarray(m2s, np.float64)
    n = counts.sum()
    if n == 0:
        return 0.0, 0.0, 0.0
    mean = sums.sum() / n
    m2 = m2s.sum() + (counts * (sums / np.maximum(counts, 1) - mean) ** 2).sum()
    return float(n), float(sums.sum()), float(m2)


def combine_std(counts, sums, m2s):
    """Population std of the union of the groups: what ``np.std`` of all their values gives."""
    n, _, m2 = combine_moments(counts, sums, m2s)
    if n == 0:
        raise ValueError("no values")
    return float(math.sqrt(max(m2, 0.0) / n))


def _length_summary(histogram):
    """min/max/mean/p50/p90/p99 of a ``{length: count}`` histogram."""
    if not histogram:
        return {}
    lengths = np.array(sorted(histogram), np.int64)
    counts = np.array([histogram[k] for k in lengths], np.int64)
    cum = np.cumsum(counts)
    total = int(cum[-1])

    def pct(q):
        return int(lengths[np.searchsorted(cum, q * total, side="left")])
    return {"count": total, "min": int(lengths[0]), "max": int(lengths[-1]),
            "mean": float((lengths * counts).sum() / total), "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99)}


def _example(stroke3, label, split, image=None, moments=None):
    arr = np.ascontiguousarray(stroke3, dtype="<f4")
    moments = _sketch_moments(arr[:, :2]) if moments is None else moments
    feature = {
        "strokes": tf.train.Feature(bytes_list=tf.train.BytesList(value=[arr.tobytes()])),
        "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(arr)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "split": tf.train.Feature(bytes_list=tf.train.BytesList(value=[split.encode()])),
        # float64 (sum, M2) of the offsets, for the index (a float_list would round to float32)
        "moments": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[np.asarray(moments, "<f8").tobytes()])),
    }
    if image is not None:
        feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[np.ascontiguousarray(image, np.uint8).tobytes()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_FEATURES = {
    "strokes": tf.io.FixedLenFeature([], tf.string),
    "length": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
_INDEX_FEATURES = {"length": _FEATURES["length"], "label": _FEATURES["label"],
                   "moments": tf.io.FixedLenFeature([], tf.string)}


class ShardWriter:
    """Stream cleaned stroke-3 sketches into sharded TFRecords plus ``metadata.json``.

    Args:
      output_dir: created; must not already hold a sharded data set unless ``overwrite``.
      categories: the category names (labels index this list).
      shards: number of train shards; valid and test get ``max(1, shards // 8)`` each.
      image_width: also store a pre-rendered ``W x W`` image per record (None: no images).
      compression: ``""`` or ``"GZIP"`` (TFRecord compression).
      seed: seeds the shard assignment and the in-shard shuffle.

    Use ``add(split, label, stroke3)`` for each sketch (already cleaned and clipped), then
    ``close(extra_metadata)``; memory stays bounded by one shard (the rewrite pass) and the
    rendering batch.
    """

    def __init__(self, output_dir, categories, shards, image_width=None, compression="",
                 seed=0, overwrite=False):
        if shards < 1:
            raise ConfigError(f"shards={shards}: must be >= 1")
        if compression not in ("", "GZIP"):
            raise ConfigError(f"compression={compression!r}: choose '' or 'GZIP'")
        self.output_dir = os.fspath(output_dir)
        if is_sharded_dir(self.output_dir) and not overwrite:
            raise DataError(f"{self.output_dir}: already holds a sharded data set "
                            f"({METADATA}); choose another --output_dir")
        os.makedirs(self.output_dir, exist_ok=True)
        self.categories = list(categories)
        self.counts = {"train": shards, "valid": max(1, shards // 8), "test": max(1, shards // 8)}
        self.image_width = image_width
        self.compression = compression
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self._options = tf.io.TFRecordOptions(compression_type=compression)
        self._tmp = tempfile.mkdtemp(dir=self.output_dir, prefix=_TMP)
        self._writers = {s: [tf.io.TFRecordWriter(self._tmp_path(s, i), self._options)
                             for i in range(n)] for s, n in self.counts.items()}
        self.histograms = {s: {} for s in SPLITS}
        self.per_category = {c: {s: 0 for s in SPLITS} for c in self.categories}
        self.dropped = {s: {} for s in SPLITS}
        self._train_moments = [0, 0.0, 0.0]  # values, sum, M2 over all train sketches
        self._pending = {s: [] for s in SPLITS}  # sketches waiting to be rendered in a batch
        self.written = 0

    def _tmp_path(self, split, index):
        return os.path.join(self._tmp, shard_name(split, index, self.counts[split]))

    def count_dropped(self, split, counts):
        """Record sketches the caller's cleaning dropped (``{reason: n}``) in the metadata."""
        for reason, n in counts.items():
            self.dropped[split][reason] = self.dropped[split].get(reason, 0) + n

    def add(self, split, label, stroke3):
        """Queue one cleaned, clipped stroke-3 sketch (float ``[N, 3]``, N >= 2)."""
        arr = np.asarray(stroke3, np.float32)
        if split not in self.counts:
            raise ValueError(f"unknown split {split!r}")
        self._pending[split].append((int(label), arr))
        if len(self._pending[split]) >= 256:
            self._flush(split)

    def _flush(self, split):
        pending, self._pending[split] = self._pending[split], []
        if not pending:
            return
        images = [None] * len(pending)
        if self.image_width:
            from sketchtk.render.raster import render_batch
            ragged = tf.RaggedTensor.from_row_lengths(
                np.concatenate([a for _, a in pending]), [len(a) for _, a in pending])
            images = render_batch(ragged, self.image_width).numpy()
        shards = self.rng.integers(0, self.counts[split], size=len(pending))
        for (label, arr), image, shard in zip(pending, images, shards):
            total, m2 = _sketch_moments(arr[:, :2])
            self._writers[split][int(shard)].write(_example(arr, label, split, image,
                                                            (total, m2)))
            hist = self.histograms[split]
            hist[len(arr)] = hist.get(len(arr), 0) + 1
            self.per_category[self.categories[label]][split] += 1
            if split == "train":
                n0, s0, q0 = self._train_moments
                n1 = 2 * len(arr)
                delta = total / n1 - (s0 / n0 if n0 else 0.0)
                self._train_moments = [n0 + n1, s0 + total,
                                       q0 + m2 + delta * delta * n0 * n1 / (n0 + n1)]
            self.written += 1

    def _finish_shard(self, split, index):
        """Read one temporary shard back, shuffle it, write it finally with its index file."""
        tmp = self._tmp_path(split, index)
        records = []  # the shard's serialised records, read in large batches
        for block in tf.data.TFRecordDataset(tmp, self.compression).batch(65536):
            records.extend(block.numpy().tolist())
        order = self.rng.permutation(len(records))
        final = os.path.join(self.output_dir, shard_name(split, index, self.counts[split]))
        index_rows = np.zeros(len(records), INDEX_DTYPE)
        if records:
            parsed = tf.io.parse_example(tf.constant([records[i] for i in order]),
                                         _INDEX_FEATURES)
            index_rows["label"] = parsed["label"].numpy()
            index_rows["length"] = parsed["length"].numpy()
            moments = tf.io.decode_raw(parsed["moments"], tf.float64).numpy()
            index_rows["sum"], index_rows["m2"] = moments[:, 0], moments[:, 1]
        with tf.io.TFRecordWriter(final + ".part", self._options) as writer:
            for i in order:
                writer.write(records[i])
        np.save(final + ".part.npy", index_rows)
        os.replace(final + ".part", final)
        os.replace(final + ".part.npy", final + INDEX_SUFFIX)
        os.remove(tmp)
        return os.path.basename(final), len(records)

    def close(self, extra=None):
        """Finish every shard and write ``metadata.json`` (last, atomically). Returns its dict."""
        for split in SPLITS:
            self._flush(split)
        for writers in self._writers.values():
            for w in writers:
                w.close()
        if not self.histograms["train"]:
            self.abort()
            raise DataError(f"{self.output_dir}: no training sketch was written")
        splits = {}
        for split in SPLITS:
            names, counts = [], []
            for i in range(self.counts[split]):
                name, n = self._finish_shard(split, i)
                names.append(name)
                counts.append(n)
            splits[split] = {"shards": names, "shard_counts": counts, "count": int(sum(counts))}
        os.rmdir(self._tmp)
        n, _, m2 = self._train_moments
        meta = {
            "format": FORMAT, "version": VERSION, "categories": self.categories,
            "compression": self.compression, "image_width": self.image_width, "seed": self.seed,
            "splits": splits, "scale_factor": math.sqrt(m2 / n),
            "length_stats": {s: _length_summary(self.histograms[s]) for s in SPLITS},
            "length_histogram": {s: {str(k): v for k, v in sorted(self.histograms[s].items())}
                                 for s in SPLITS},
            "per_category": self.per_category, "dropped": self.dropped, **(extra or {}),
        }
        from sketchtk.training.checkpoints import write_json_atomic
        write_json_atomic(os.path.join(self.output_dir, METADATA), meta)
        logging.info("wrote %d sketches into %s (%s shards); scale_factor=%.4f",
                     self.written, self.output_dir,
                     "/".join(str(self.counts[s]) for s in SPLITS), meta["scale_factor"])
        return meta

    def abort(self):
        for writers in self._writers.values():
            for w in writers:
                w.close()
        import shutil
        shutil.rmtree(self._tmp, ignore_errors=True)


def convert_npz(npz_dir, output_dir, categories=None, shards=16, image_width=None,
                compression="", seed=0, num_per_category=None):
    """Convert sketch-rnn ``<category>.npz`` files into a sharded TFRecord data set.

    One category is in memory at a time (a ``.npz`` of pickled arrays cannot be read in parts);
    sketches are cleaned and clipped as :func:`sketchtk.data.loader.load_sketch_data` does.
    ``num_per_category`` keeps at most that many training sketches per category (the first ones,
    as the loader's ``num_per_category``). Returns the metadata dict.
    """
    from sketchtk.data import loader
    from sketchtk.data.npz_io import load_stroke_npz
    categories = list(categories) if categories else loader.available_categories(npz_dir)
    if not categories:
        raise DataError(f"{npz_dir}: no <category>.npz files found")
    paths = [loader.category_path(npz_dir, c) for c in categories]  # every name checked first
    writer = ShardWriter(output_dir, categories, shards, image_width, compression, seed)
    try:
        for label, path in enumerate(paths):
            data = load_stroke_npz(path)
            for split in SPLITS:
                sketches = data[split]
                if split == "train" and num_per_category:
                    sketches = sketches[:num_per_category]
                counts = {}
                for sketch in loader.clean_sketches(sketches, 0, counts):
                    writer.add(split, label, sketch)
                writer.count_dropped(split, counts)
            logging.info("%s: queued %s", path, {s: len(data[s]) for s in SPLITS})
        return writer.close({"source": os.path.abspath(npz_dir)})
    except BaseException:
        writer.abort()
        raise


# --------------------------------------------------------------------------------------------
# Reading


def read_metadata(data_dir):
    path = os.path.join(os.fspath(data_dir), METADATA)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the shard metadata ({err})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: not a {FORMAT} v{VERSION} metadata file "
                        f"(format={meta.get('format')!r}, version={meta.get('version')!r})")
    return meta


@dataclasses.dataclass
class ShardedSplit:
    """One split of a sharded data set: its shard files and the kept count per shard."""

    split: str
    files: tuple
    kept: tuple  # per file: records kept by the category and max_seq_len filters
    parent: object = dataclasses.field(repr=False, default=None)
    _bad: object = dataclasses.field(repr=False, default=None)
    _cache: object = dataclasses.field(repr=False, default=None)

    def __len__(self):
        return int(sum(self.kept))

    @property
    def bad_records(self):
        """A ``tf.Variable`` counting records skipped as bad by the datasets of this split."""
        if self._bad is None:
            self._bad = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_records")
        return self._bad

    MATERIALISE_LIMIT = 200000

    def _materialise(self):
        if self._cache is None:
            if len(self) > self.MATERIALISE_LIMIT:
                raise DataError(f"{self.parent.directory}: split {self.split!r} has {len(self)} "
                                f"sketches, more than the {self.MATERIALISE_LIMIT} this reader "
                                "loads into memory; stream it with make_dataset instead")
            sketches, labels = [], []
            ds = _records(self.parent, self.split, list(self.files), self)
            for item in ds.as_numpy_iterator():
                sketches.append(item["sketch"])
                labels.append(item["labels"])
            self._cache = (tuple(sketches), np.asarray(labels, np.int32))
        return self._cache

    @property
    def sketches(self):
        """The normalised sketches in file order (loaded on first use; small splits only)."""
        return self._materialise()[0]

    @property
    def labels(self):
        return self._materialise()[1]


@dataclasses.dataclass
class ShardedSketchData:
    """What :func:`sketchtk.data.loader.load_sketch_data` returns for a sharded directory: the
    same fields as ``SketchData`` with splits that stream from the shards."""

    categories: tuple
    splits: dict
    max_seq_len: int
    scale_factor: float
    dropped: dict
    directory: str
    metadata: dict
    label_map: np.ndarray  # metadata label -> label in ``categories`` (-1: not loaded)
    sharded = True

    def __getitem__(self, split):
        return self.splits[split]


def load_sharded_data(data_dir, categories=None, max_seq_len=-1, scale_factor=None,
                      splits=SPLITS):
    """Open a sharded data set: pick categories, apply the ``max_seq_len`` cap, compute the scale
    factor, and count what each shard keeps, from the index files (one shard in memory at a time).

    The result matches what the ``.npz`` loader gives for the same sketches: the same
    ``max_seq_len`` (longest kept sketch, or the cap), the same scale factor (std of the kept
    training offsets) and the same ``too_long`` counts.
    """
    data_dir = os.fspath(data_dir)
    meta = read_metadata(data_dir)
    known = list(meta["categories"])
    categories = tuple(categories) if categories else ()
    if categories in ((), ("all",)):  # hparams categories=[all]: every packed category
        categories = tuple(known)
    for c in categories:
        if c not in known:
            close = difflib.get_close_matches(c, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(f"{os.path.join(data_dir, METADATA)}: unknown category {c!r}{hint} "
                            f"({len(known)} categories in the shards)")
    label_map = np.full(len(known), -1, np.int64)
    for new, c in enumerate(categories):
        label_map[known.index(c)] = new
    out, longest = {}, 0
    moments = ([], [], [])
    dropped = {s: dict(meta.get("dropped", {}).get(s, {})) for s in splits}
    for split in splits:
        info = meta["splits"][split]
        files, kept = [], []
        for name in info["shards"]:
            path = os.path.join(data_dir, name)
            if not os.path.isfile(path):
                raise DataError(f"{path}: shard listed in {METADATA} is missing")
            try:
                rows = np.load(path + INDEX_SUFFIX)
            except (OSError, ValueError) as err:
                raise DataError(f"{path}{INDEX_SUFFIX}: cannot read the shard index ({err})") \
                    from None
            wanted = (rows["label"] >= 0) & (rows["label"] < len(known))
            wanted[wanted] = label_map[rows["label"][wanted]] >= 0
            too_long = wanted & (rows["length"] > max_seq_len) if max_seq_len > 0 else None
            if too_long is not None and too_long.any():
                dropped[split]["too_long"] = dropped[split].get("too_long", 0) + int(too_long.sum())
                wanted &= ~too_long
            files.append(path)
            kept.append(int(wanted.sum()))
            if wanted.any():
                longest = max(longest, int(rows["length"][wanted].max()))
                if split == "train":  # one (n, sum, M2) per shard: memory O(shards)
                    shard = combine_moments(2 * rows["length"][wanted], rows["sum"][wanted],
                                            rows["m2"][wanted])
                    for store, value in zip(moments, shard):
                        store.append(value)
        out[split] = ShardedSplit(split, tuple(files), tuple(kept))
        if not len(out[split]):
            raise DataError(f"{data_dir}: split {split!r} has no usable sketch for "
                            f"{list(categories)} (dropped: {dropped[split]})")
    if scale_factor is None:
        if "train" not in splits:
            raise DataError("scale_factor must be given when the train split is not loaded")
        scale_factor = combine_std(*moments)
    cap = max_seq_len if max_seq_len > 0 else longest
    data = ShardedSketchData(categories, out, int(cap), float(scale_factor), dropped, data_dir,
                             meta, label_map)
    for split in out.values():
        split.parent = data
    logging.info("opened shards %s: %s; max_seq_len=%d scale_factor=%.4f", data_dir,
                 {s: len(out[s]) for s in splits}, cap, scale_factor)
    return data


def _records(data, split, files, subset, sequential=True, cycle_length=1):
    """Parsed, checked, filtered, normalised records of ``files``: ``{"sketch", "labels",
    "index"?, "images"?}`` (``sketch`` float32 ``[n, 3]``)."""
    meta = data.metadata
    has_images = bool(meta.get("image_width"))
    features = {"strokes": _FEATURES["strokes"], "length": _FEATURES["length"],
                "label": _FEATURES["label"]}
    if has_images:
        features["image"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    label_map = tf.constant(data.label_map)
    num_known = len(data.label_map)
    cap = data.max_seq_len
    scale = tf.constant(data.scale_factor, tf.float32)
    width = meta.get("image_width") or 0
    counter = subset.bad_records
    compression = meta.get("compression", "")

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        flat = tf.io.decode_raw(ex["strokes"], tf.float32)
        length = ex["length"]
        label = ex["label"]
        ok = tf.logical_and(tf.equal(tf.size(flat, tf.int64), 3 * length), length >= 2)
        ok = tf.logical_and(ok, tf.logical_and(label >= 0, label < num_known))
        ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(flat)))
        safe_label = tf.clip_by_value(label, 0, num_known - 1)
        out = {"flat": flat, "length": length, "ok": ok,
               "labels": tf.cast(tf.gather(label_map, safe_label), tf.int32)}
        if has_images:
            out["image"] = ex["image"]
            out["ok"] = tf.logical_and(out["ok"], tf.equal(tf.strings.length(ex["image"]),
                                                           width * width))
        return out

    def keep(item):
        bad = tf.logical_not(item["ok"])
        # count only the bad ones; a record of a category not loaded is not bad
        with tf.control_dependencies([counter.assign_add(tf.cast(bad, tf.int64))]):
            wanted = tf.logical_and(item["ok"], item["labels"] >= 0)
            return tf.logical_and(wanted, item["length"] <= cap)

    def finish(item):
        sketch = tf.reshape(item["flat"], [-1, 3])
        sketch = tf.concat([sketch[:, :2] / scale, sketch[:, 2:]], axis=1)
        out = {"sketch": sketch, "labels": item["labels"]}
        if has_images:
            out["images"] = tf.reshape(tf.io.decode_raw(item["image"], tf.uint8), [width, width])
        return out

    if sequential:
        ds = tf.data.TFRecordDataset(files, compression_type=compression)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
            cycle_length=cycle_length, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
    # a record that is not a tf.Example (or a cut shard's CRC error) is dropped with tf.data's
    # logged warning; the counter counts the parsed-but-bad ones
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).filter(keep)
    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _pass_order(num_files, seed, pass_index):
    """The shard order of pass ``pass_index`` (index_shuffle, as the npz pipeline's passes)."""
    if num_files == 1:
        return np.zeros(1, np.int64)
    return tf.random.experimental.index_shuffle(
        tf.range(num_files, dtype=tf.int64), seed=tf.constant([seed, pass_index], tf.int64),
        max_index=num_files - 1).numpy()


def _permute(batch, seed):
    """The rows of a (ragged) batch dict in the order ``index_shuffle(., seed)``."""
    n = tf.shape(batch["labels"], out_type=tf.int64)[0]
    perm = tf.random.experimental.index_shuffle(tf.range(n), seed=seed, max_index=n - 1)
    return {k: tf.gather(v, perm) for k, v in batch.items()}


def make_dataset(data, split, hparams, training, start_step=0, images=None, batch_size=None,
                 repeat=None, input_context=None, shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
                 cycle_length=DEFAULT_CYCLE_LENGTH):
    """The ``sketchtk.data.pipeline.make_dataset`` contract over a :class:`ShardedSketchData`.

    Batches are the same dicts (``strokes``, ``images``, ``labels``, ``lengths``, ``index``;
    ``index`` is the example's position in the stream). Extra arguments:

    Args:
      input_context: a ``tf.distribute.InputContext``: this pipeline reads the shards
        ``files[input_pipeline_id::num_input_pipelines]`` of the split.
      shuffle_buffer: records per shuffle window (training): memory bound of the shuffle.
      cycle_length: shards read at once (a group), each group shuffled on its own.
    """
    if hparams.model == "stroke_diffusion":
        raise ConfigError(f"{data.directory}: stroke_diffusion needs the .npz loader (point "
                          "sequences are prepared in memory); pass an .npz --data_dir")
    if images is not None:
        raise ValueError("sharded data brings its own images (pack with --images)")
    subset = data[split]
    batch_size = batch_size or hparams.batch_size
    repeat = training if repeat is None else repeat
    files, kept = list(subset.files), list(subset.kept)
    if input_context is not None and input_context.num_input_pipelines > 1:
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(files) < n:
            raise DataError(f"{data.directory}: split {split!r} has {len(files)} shard(s) for "
                            f"{n} input pipelines; pack with --shards >= {n}")
        files, kept = files[i::n], kept[i::n]
        logging.info("input pipeline %d/%d reads %d %s shard(s): %s", i, n, len(files), split,
                     ",".join(os.path.basename(f) for f in files))
    width = hparams.png_width
    seed = int(hparams.seed)
    augmenting = training and (hparams.random_scale_factor > 0 or hparams.augment_stroke_prob > 0)
    use_stored = (bool(data.metadata.get("image_width")) and not augmenting
                  and data.metadata["image_width"] == width)
    start = start_step * batch_size
    if not training:
        ds = _records(data, split, files, subset).enumerate()
        ds = ds.map(lambda g, item: {**item, "index": g})
        if repeat:
            ds = ds.repeat()
    else:
        ds = _training_stream(data, split, files, kept, subset, seed, start, repeat,
                              shuffle_buffer, cycle_length)

        def number(g, item):  # example g is augmented with seed (seed, g), as in pipeline.py
            item = {**item, "index": g}
            if augmenting:
                item["sketch"] = augment.augment_strokes(
                    item["sketch"], tf.stack([tf.cast(seed, tf.int64), g]),
                    hparams.random_scale_factor, hparams.augment_stroke_prob)
            return item
        ds = ds.enumerate(start=start).map(number, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=True)
    if not use_stored:
        ds = ds.map(lambda item: {k: v for k, v in item.items() if k != "images"})
    ds = ds.ragged_batch(batch_size, drop_remainder=training)
    from sketchtk.data.pipeline import to_stroke5_batch
    from sketchtk.render.raster import render_batch
    max_len = data.max_seq_len

    def finish(step, batch):
        strokes5, lengths = to_stroke5_batch(batch["sketch"], max_len)
        rendered = batch["images"] if "images" in batch else render_batch(batch["sketch"], width)
        if training and (hparams.png_scale_ratio < 1 or hparams.png_rotate_angle > 0
                         or hparams.png_translate_dist > 0):
            rendered = augment.image_transform(
                rendered, tf.stack([tf.cast(seed, tf.int64) + 1, step]),
                hparams.png_scale_ratio, hparams.png_rotate_angle, hparams.png_translate_dist)
        return {"strokes": strokes5, "images": rendered, "labels": batch["labels"],
                "lengths": lengths, "index": batch["index"]}
    ds = ds.enumerate(start=start_step if training else 0).map(
        finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _training_stream(data, split, files, kept, subset, seed, start, repeat, buffer, cycle):
    """Endless (or one-pass) shuffled record stream starting at example ``start``."""
    num_files = len(files)
    cycle = max(1, min(cycle, num_files))
    groups = math.ceil(num_files / cycle)
    per_pass = int(sum(kept))
    if per_pass == 0:
        raise DataError(f"{data.directory}: split {split!r} of this input pipeline keeps no sketch")
    first_pass, offset = divmod(start, per_pass)
    if not repeat and first_pass > 0:
        return tf.data.Dataset.from_tensors({}).take(0)
    order = _pass_order(num_files, seed, first_pass)
    group0 = 0
    while True:  # whole groups before the resume point: skipped by arithmetic
        size = sum(kept[i] for i in order[group0 * cycle:(group0 + 1) * cycle])
        if offset < size or group0 == groups - 1:
            break
        offset -= size
        group0 += 1
    file_paths = tf.constant(files)
    seed_t = tf.constant(seed, tf.int64)

    def group(chunk):
        pass_index, j = chunk // groups, chunk % groups
        if num_files > 1:
            perm = tf.random.experimental.index_shuffle(
                tf.range(num_files, dtype=tf.int64), seed=tf.stack([seed_t, pass_index]),
                max_index=num_files - 1)
        else:
            perm = tf.zeros([1], tf.int64)
        members = tf.gather(file_paths, perm[j * cycle:(j + 1) * cycle])
        records = _records(data, split, members, subset, sequential=False, cycle_length=cycle)
        # bounded shuffle: windows of `buffer` records, each permuted by a stateless
        # index_shuffle of (seed, group, window). (Dataset.shuffle cannot take a seed tensor
        # once a global seed is set, in graph mode: tf.distribute builds the input there.)
        return records.ragged_batch(buffer).enumerate().map(
            lambda w, batch: _permute(batch, tf.stack([seed_t, chunk * 2**24 + w])),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()

    first = first_pass * groups + group0
    end = 2**62 if repeat else groups
    return tf.data.Dataset.range(first, end).flat_map(group).skip(offset)
