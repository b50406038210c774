"""Sharded TFRecords (sketchtk.data.tfrecords) of the embedded real QuickDraw subset and of the
real .ndjson fixtures: what is written, what the loader opens, the streamed order and its resume."""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data import loader
from sketchtk.data import pack_quickdraw
from sketchtk.data import tfrecords
from sketchtk.data.pipeline import make_dataset
from sketchtk.errors import DataError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIMPLIFIED = os.path.join(REPO, "tests", "fixtures", "quickdraw", "simplified")
RAW = os.path.join(REPO, "tests", "fixtures", "quickdraw", "raw")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "default"
    tfrecords.convert_npz(loader.DEFAULT_DATA_DIR, str(out), shards=4, seed=0)
    return str(out)


def _keyed(sketches, labels):
    """Multiset of (label, sketch bytes)."""
    return collections.Counter((int(l), np.asarray(s, np.float32).tobytes())
                               for s, l in zip(sketches, labels))


def _stream(data, start=0, files=None, kept=None, cycle=2, buffer=50, repeat=True):
    subset = data["train"]
    return tfrecords._training_stream(  # pylint: disable=protected-access
        data, "train", list(files or subset.files), list(kept or subset.kept), subset, 7, start,
        repeat, buffer, cycle)


def test_metadata_counts_scale_and_lengths(shards):
    meta = tfrecords.read_metadata(shards)
    npz = loader.load_sketch_data(None)
    assert meta["categories"] == list(loader.DEFAULT_CATEGORIES)
    assert {s: meta["splits"][s]["count"] for s in ("train", "valid", "test")} == \
        {s: len(npz[s]) for s in ("train", "valid", "test")}
    assert len(meta["splits"]["train"]["shards"]) == 4 and len(meta["splits"]["valid"]["shards"]) == 1
    # the streaming pass's scale factor is the loader's np.std over every training offset
    assert meta["scale_factor"] == pytest.approx(npz.scale_factor, rel=1e-12)
    lengths = [len(s) for s in npz["train"].sketches]
    stats = meta["length_stats"]["train"]
    assert (stats["max"], stats["min"]) == (max(lengths), min(lengths))
    assert stats["mean"] == pytest.approx(np.mean(lengths))
    assert stats["p50"] == int(np.sort(lengths)[int(np.ceil(0.5 * len(lengths))) - 1])
    assert sum(meta["per_category"]["stairs"].values()) == sum(
        int((npz[s].labels == 1).sum()) for s in ("train", "valid", "test"))


@pytest.mark.parametrize("categories,cap", [(None, -1), (("triangle", "stairs"), 60)])
def test_opened_shards_match_the_npz_loader(shards, categories, cap):
    npz = loader.load_sketch_data(None, categories, max_seq_len=cap)
    sharded = loader.load_sketch_data(shards, categories, max_seq_len=cap)
    assert sharded.sharded and sharded.categories == npz.categories
    assert sharded.max_seq_len == npz.max_seq_len
    assert sharded.scale_factor == pytest.approx(npz.scale_factor, rel=1e-12)
    assert sharded.dropped == npz.dropped
    for split in ("train", "valid"):
        assert len(sharded[split]) == len(npz[split])
        # the same normalised float32 sketches with the same labels, each exactly once
        assert _keyed(sharded[split].sketches, sharded[split].labels) == \
            _keyed(npz[split].sketches, npz[split].labels)
    assert int(sharded["train"].bad_records.numpy()) == 0


def test_every_shard_mixes_the_categories(shards):
    for name in tfrecords.read_metadata(shards)["splits"]["train"]["shards"]:
        labels = np.load(os.path.join(shards, name) + tfrecords.INDEX_SUFFIX)["label"]
        assert len(set(labels.tolist())) == 5
        # shuffled inside the shard: not the packer's category-by-category order
        assert np.count_nonzero(np.diff(labels)) > len(labels) // 2


def test_training_stream_is_seeded_and_resumes_exactly(shards):
    data = loader.load_sketch_data(shards)
    n = len(data["train"])
    take = n + 40  # into the second pass
    full = [r["sketch"].tobytes() for r in _stream(data).take(take).as_numpy_iterator()]
    again = [r["sketch"].tobytes() for r in _stream(data).take(60).as_numpy_iterator()]
    assert full[:60] == again
    # a pass holds every training sketch once; the next pass is a different order
    assert collections.Counter(full[:n]) == collections.Counter(
        np.asarray(s, np.float32).tobytes() for s in data["train"].sketches)
    assert full[n:n + 40] != full[:40]
    for start in (97, n - 3, n + 5):  # a later group, the pass boundary, the second pass
        resumed = [r["sketch"].tobytes()
                   for r in _stream(data, start).take(30).as_numpy_iterator()]
        assert resumed == full[start:start + 30], start


def test_input_pipelines_read_disjoint_shards(shards):
    data = loader.load_sketch_data(shards)
    subset = data["train"]
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker)
        files, kept = list(subset.files)[worker::2], list(subset.kept)[worker::2]
        part = [r["sketch"].tobytes() for r in _stream(data, files=files, kept=kept)
                .take(sum(kept)).as_numpy_iterator()]
        assert len(set(part)) == sum(kept)
        seen.append(set(part))
        assert ctx.input_pipeline_id == worker
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(subset)
    with pytest.raises(DataError, match="5 input pipelines; pack with --shards >= 5"):
        tfrecords.make_dataset(data, "train", get_preset("smoke"), True, input_context=
                               tf.distribute.InputContext(num_input_pipelines=5))


def test_bad_records_are_skipped_and_counted(tmp_path):
    sketches = [np.array([[0, 0, 0], [3, 4, 1]], np.float32), np.array([[1, 2, 0], [5, 5, 0],
                                                                      [2, 2, 1]], np.float32)]
    writer = tfrecords.ShardWriter(str(tmp_path), ["a"], 1)
    for split in ("train", "valid", "test"):
        for s in sketches:
            writer.add(split, 0, s)
    writer.close()
    shard = tmp_path / tfrecords.shard_name("train", 0, 1)
    good = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())
    bad_nan = tfrecords._example(np.array([[np.nan, 0, 0], [1, 1, 1]]), 0, "train")  # noqa
    bad_label = tfrecords._example(sketches[0], 3, "train")  # noqa: SLF001
    with tf.io.TFRecordWriter(str(shard)) as w:
        for record in good + [bad_nan, b"not a tf.Example", bad_label]:
            w.write(record)
    data = loader.load_sketch_data(str(tmp_path))
    got = list(tfrecords._records(data, "train", list(data["train"].files),  # noqa: SLF001
                                  data["train"]).as_numpy_iterator())
    assert len(got) == 2
    # NaN and label 3 are counted; the bytes that are no tf.Example are dropped with a warning
    assert int(data["train"].bad_records.numpy()) == 2


def test_opening_errors_name_the_file(shards, tmp_path):
    with pytest.raises(DataError, match=r"metadata.json: unknown category 'stair'.*'stairs'"):
        loader.load_sketch_data(shards, ["stair"])
    meta = json.load(open(os.path.join(shards, tfrecords.METADATA)))
    meta["splits"]["train"]["shards"][0] = "train-missing.tfrecord"
    (tmp_path / tfrecords.METADATA).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="train-missing.tfrecord: shard listed in metadata.json"):
        loader.load_sketch_data(str(tmp_path))
    (tmp_path / tfrecords.METADATA).write_text("{}")
    with pytest.raises(DataError, match="not a sketchtk-tfrecord v1 metadata file"):
        loader.load_sketch_data(str(tmp_path))
    with pytest.raises(DataError, match="already holds a sharded data set"):
        tfrecords.ShardWriter(shards, ["a"], 1)


def test_pack_quickdraw_into_tfrecords_matches_npz_packing(tmp_path):
    categories = ["cat", "The Eiffel Tower"]
    results, meta = pack_quickdraw.pack_tfrecord(categories, SIMPLIFIED, str(tmp_path / "tf"),
                                                 shards=2, raw_ndjson_dir=RAW, seed=2)
    pack_quickdraw.pack(categories, SIMPLIFIED, str(tmp_path / "npz"), raw_ndjson_dir=RAW, seed=2)
    for category in categories:
        assert meta["per_category"][category] == results[category].sizes
    sharded = loader.load_sketch_data(str(tmp_path / "tf"))
    npz = loader.load_sketch_data(str(tmp_path / "npz"), categories)
    assert sharded.scale_factor == pytest.approx(npz.scale_factor, rel=1e-12)
    for split in ("train", "test"):
        assert _keyed(sharded[split].sketches, sharded[split].labels) == \
            _keyed(npz[split].sketches, npz[split].labels)


@pytest.mark.slow
def test_batches_resume_and_eval_pass_like_the_npz_pipeline(shards, tmp_path):
    hp = get_preset("smoke")
    data = loader.load_sketch_data(shards, max_seq_len=hp.max_seq_len)
    npz = loader.load_sketch_data(None, max_seq_len=hp.max_seq_len)
    first = list(make_dataset(data, "train", hp, training=True).take(3).as_numpy_iterator())
    resumed = next(iter(make_dataset(data, "train", hp, training=True, start_step=2)))
    assert all(np.array_equal(resumed[k].numpy(), first[2][k]) for k in first[2])
    assert first[0]["strokes"].shape == (hp.batch_size, data.max_seq_len + 1, 5)
    assert first[0]["images"].shape == (hp.batch_size, hp.png_width, hp.png_width)
    valid = list(make_dataset(data, "valid", hp, training=False).as_numpy_iterator())
    reference = list(make_dataset(npz, "valid", hp, training=False).as_numpy_iterator())

    def rows(batches):
        return collections.Counter((int(l), s.tobytes(), im.tobytes()) for b in batches
                                   for l, s, im in zip(b["labels"], b["strokes"], b["images"]))
    assert rows(valid) == rows(reference)
    # pre-rendered images are the renderer's own images of the same sketches: identical to
    # rendering the stored (unnormalised) strokes, within float rounding of the normalised ones
    out = tmp_path / "img"
    tfrecords.convert_npz(loader.DEFAULT_DATA_DIR, str(out), ["triangle"], shards=1,
                          image_width=hp.png_width)
    with_images = loader.load_sketch_data(str(out), max_seq_len=hp.max_seq_len)
    hp_plain = hp.replace(random_scale_factor=0.0, augment_stroke_prob=0.0)
    stored = next(iter(make_dataset(with_images, "valid", hp_plain, training=False)))
    from sketchtk.render.raster import render_batch
    sketches = with_images["valid"].sketches[:len(stored["labels"])]
    scale = np.float32([with_images.scale_factor, with_images.scale_factor, 1.0])
    raw = tf.ragged.constant([(s * scale).tolist() for s in sketches], ragged_rank=1)
    np.testing.assert_array_equal(stored["images"].numpy(), render_batch(raw).numpy())
    normalised = render_batch(tf.ragged.constant([s.tolist() for s in sketches], ragged_rank=1))
    differ = np.abs(stored["images"].numpy().astype(int) - normalised.numpy().astype(int))
    assert differ.max() <= 8 and np.mean(differ > 0) < 1e-3


@pytest.mark.slow
def test_pack_quickdraw_cli_writes_tfrecords(tmp_path):
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "sketchtk.data.pack_quickdraw", "--format=tfrecord",
           "--shards=2", f"--npz_dir={loader.DEFAULT_DATA_DIR}", "--categories=stairs,table",
           f"--output_dir={tmp_path / 'out'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = tfrecords.read_metadata(tmp_path / "out")
    assert meta["categories"] == ["stairs", "table"]
    bad = subprocess.run(cmd[:-1] + ["--categories=stair", f"--output_dir={tmp_path / 'o2'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("pack_quickdraw: error: ")
