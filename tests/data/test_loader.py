"""Tests of sketchtk.data.loader: cleaning counts, clipping, scale factor, labels, max_seq_len."""

import os

import numpy as np
import pytest

from sketchtk.data import loader
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import load_stroke_npz, save_stroke_npz
from sketchtk.data.strokes import scale_factor as std_of_offsets
from sketchtk.errors import DataError

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")


@pytest.fixture(scope="module")
def sheep():
    return load_stroke_npz(FIXTURE)


def _object_array(sketches):
    out = np.empty(len(sketches), dtype=object)
    for i, s in enumerate(sketches):
        out[i] = s
    return out


@pytest.fixture(scope="module")
def dirty(tmp_path_factory, sheep):
    """A category mixing real sheep with broken ones; returns (dir, cap, kept raw splits)."""
    cap = max(len(s) for split in sheep.values() for s in split)
    train = [s.astype(np.float32) for s in sheep["train"][:40]]
    big = train[7].copy()
    big[3, 0], big[10, 1] = 5000.0, -3000.0  # clipped to +-1000
    train[7] = big
    nan = train[2].copy()
    nan[4, 1] = np.nan
    inf = train[3].copy()
    inf[0, 0] = np.inf
    too_long = np.concatenate([train[0], train[1]])
    assert len(too_long) > cap
    broken_train = [np.zeros((0, 3), np.float32), nan, train[5][:1], too_long, inf]
    # the valid split is drawn 3x larger: a scale factor over all splits would differ clearly
    valid = [s.astype(np.float32) * [3.0, 3.0, 1.0] for s in sheep["valid"]]
    valid_too_long = np.concatenate(valid)
    assert len(valid_too_long) > cap
    directory = tmp_path_factory.mktemp("dirty")
    np.savez(directory / "sheep.npz",
             train=_object_array(train[:20] + broken_train + train[20:]),
             valid=_object_array(valid[:5] + [valid_too_long] + valid[5:]),
             test=_object_array([s.astype(np.float32) for s in sheep["test"]]))
    clipped = [np.clip(s, -1000, 1000) for s in train]
    kept = {"train": clipped, "valid": valid,
            "test": [s.astype(np.float32) for s in sheep["test"]]}
    return directory, cap, kept


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory, sheep):
    """Two categories of real sheep (first and second half of every split)."""
    directory = tmp_path_factory.mktemp("two")
    halves = {}
    for name, part in (("sheep_a", 0), ("sheep_b", 1)):
        halves[name] = {s: v[part * len(v) // 2:(part + 1) * len(v) // 2] for s, v in sheep.items()}
        save_stroke_npz(directory / f"{name}.npz", halves[name])
    # a rendered-image file must not count as a category
    np.savez(directory / "sheep_a_png.npz", train=np.zeros((1, 48, 48), np.uint8))
    return directory, halves


def test_dropped_counts(dirty, caplog):
    directory, cap, _ = dirty
    with caplog.at_level("WARNING"):
        data = load_sketch_data(directory, ["sheep"], max_seq_len=cap)
    # The summary names the file and the split.
    assert "sheep.npz, split 'train': dropped" in caplog.text
    assert "'too_long': 1" in caplog.text
    assert data.dropped == {"train": {"empty": 2, "non_finite": 2, "too_long": 1},
                            "valid": {"too_long": 1}, "test": {}}
    assert {s: len(data[s]) for s in data.splits} == {"train": 40, "valid": 16, "test": 16}


def test_no_cap_keeps_long_sketches(dirty):
    directory, cap, kept = dirty
    data = load_sketch_data(directory, ["sheep"])
    assert data.dropped["train"] == {"empty": 2, "non_finite": 2}
    assert data.dropped["valid"] == {}
    assert len(data["train"]) == 41 and len(data["valid"]) == 17
    # max_seq_len found from the data: the longest kept sketch over all splits
    assert data.max_seq_len == len(np.concatenate(kept["valid"]))
    assert data.max_seq_len == max(len(s) for split in data.splits.values() for s in split.sketches)


def test_clip_and_scale_factor_from_train(dirty):
    directory, cap, kept = dirty
    data = load_sketch_data(directory, ["sheep"], max_seq_len=cap)
    expected = std_of_offsets(kept["train"])
    assert data.scale_factor == pytest.approx(expected, rel=1e-6)
    everything = kept["train"] + kept["valid"] + kept["test"]
    assert abs(std_of_offsets(everything) / expected - 1) > 0.2
    # clipped before normalising
    big = data["train"].sketches[7] * data.scale_factor
    assert big[3, 0] == pytest.approx(1000.0, rel=1e-5)
    assert big[10, 1] == pytest.approx(-1000.0, rel=1e-5)
    assert np.abs(np.concatenate(data["train"].sketches)[:, :2]).max() * data.scale_factor \
        <= 1000.0 * (1 + 1e-6)
    # the one factor is applied to every split, in file order, pen column untouched
    for split in ("train", "valid", "test"):
        got = data[split].sketches
        assert len(got) == len(kept[split])
        for g, raw in zip(got, kept[split]):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g[:, :2], raw[:, :2] / expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(g[:, 2], raw[:, 2])


def test_given_scale_factor_is_used_as_is(dirty):
    directory, cap, kept = dirty
    data = load_sketch_data(directory, ["sheep"], max_seq_len=cap, scale_factor=7.0)
    assert data.scale_factor == 7.0
    np.testing.assert_allclose(data["valid"].sketches[4][:, :2], kept["valid"][4][:, :2] / 7.0,
                               rtol=1e-6)


def test_splits_without_train_need_a_scale_factor(dirty):
    directory, cap, kept = dirty
    with pytest.raises(DataError, match="scale_factor"):
        load_sketch_data(directory, ["sheep"], splits=("valid", "test"))
    data = load_sketch_data(directory, ["sheep"], splits=("test",), scale_factor=2.0)
    assert list(data.splits) == ["test"] and data.scale_factor == 2.0
    np.testing.assert_allclose(data["test"].sketches[0][:, :2], kept["test"][0][:, :2] / 2.0)


def test_labels_per_category(two_categories):
    directory, halves = two_categories
    data = load_sketch_data(directory, ["sheep_b", "sheep_a"])
    assert data.categories == ("sheep_b", "sheep_a")
    for split in ("train", "valid", "test"):
        n_b, n_a = len(halves["sheep_b"][split]), len(halves["sheep_a"][split])
        labels = data[split].labels
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, [0] * n_b + [1] * n_a)
        # the sketch with label 1 at position n_b is sheep_a's first one
        restored = data[split].sketches[n_b][:, :2] * data.scale_factor
        np.testing.assert_allclose(restored, halves["sheep_a"][split][0][:, :2], atol=1e-3)


def test_all_categories_by_default(two_categories):
    directory, _ = two_categories
    assert loader.available_categories(directory) == ["sheep_a", "sheep_b"]
    data = load_sketch_data(directory)
    assert data.categories == ("sheep_a", "sheep_b")
    assert set(np.unique(data["train"].labels)) == {0, 1}


def test_num_per_category(two_categories):
    directory, halves = two_categories
    data = load_sketch_data(directory, ["sheep_a", "sheep_b"], num_per_category=10)
    assert len(data["train"]) == 20
    np.testing.assert_array_equal(data["train"].labels, [0] * 10 + [1] * 10)
    # the first ten of each category, and valid/test untouched
    restored = data["train"].sketches[10] * [data.scale_factor, data.scale_factor, 1]
    np.testing.assert_allclose(restored, halves["sheep_b"]["train"][0], atol=1e-3)
    assert len(data["valid"]) == len(halves["sheep_a"]["valid"]) + len(halves["sheep_b"]["valid"])
    # the scale factor comes from the kept training sketches only
    first_ten = [s.astype(np.float32) for c in ("sheep_a", "sheep_b") for s in halves[c]["train"][:10]]
    assert data.scale_factor == pytest.approx(std_of_offsets(first_ten), rel=1e-6)


def test_unknown_category_lists_available(two_categories):
    directory, _ = two_categories
    with pytest.raises(DataError) as err:
        load_sketch_data(directory, ["sheep_a", "giraffe"])
    message = str(err.value)
    assert "giraffe" in message and "sheep_a" in message and "sheep_b" in message
    assert "sheep_a_png" not in message


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_sketch_data(tmp_path / "nowhere", ["sheep"])
    with pytest.raises(DataError, match="no <category>.npz"):
        load_sketch_data(tmp_path)


def test_max_seq_len_from_data_vs_cap(two_categories, sheep):
    directory, halves = two_categories
    free = load_sketch_data(directory)
    longest = max(len(s) for c in halves.values() for split in c.values() for s in split)
    assert free.max_seq_len == longest
    assert free.dropped == {"train": {}, "valid": {}, "test": {}}

    capped = load_sketch_data(directory, max_seq_len=100)
    assert capped.max_seq_len == 100
    for split in ("train", "valid", "test"):
        too_long = sum(len(s) > 100 for c in halves.values() for s in c[split])
        assert too_long > 0
        assert capped.dropped[split] == {"too_long": too_long}
        assert len(capped[split]) == len(free[split]) - too_long
        assert max(len(s) for s in capped[split].sketches) <= 100


def test_everything_dropped_is_an_error(tmp_path, sheep):
    save_stroke_npz(tmp_path / "sheep.npz", sheep)
    with pytest.raises(DataError, match="no usable sketch"):
        load_sketch_data(tmp_path, ["sheep"], max_seq_len=5)


@pytest.mark.skipif(not loader.available_categories(loader.DEFAULT_DATA_DIR)
                    if os.path.isdir(loader.DEFAULT_DATA_DIR) else True,
                    reason="embedded QuickDraw subset not packed yet")
def test_embedded_default_data():
    # the presets name DEFAULT_CATEGORIES: they must be the packed files
    assert sorted(loader.DEFAULT_CATEGORIES) == loader.available_categories(loader.DEFAULT_DATA_DIR)
    data = load_sketch_data(categories=loader.DEFAULT_CATEGORIES, num_per_category=40,
                            splits=("train",))
    assert data.categories == loader.DEFAULT_CATEGORIES
    assert len(data["train"]) == 40 * len(data.categories) - sum(data.dropped["train"].values())
    np.testing.assert_array_equal(np.bincount(data["train"].labels), [40] * len(data.categories))
    assert np.isfinite(data.scale_factor) and data.scale_factor > 0
    offsets = np.concatenate(data["train"].sketches)[:, :2]
    assert np.std(offsets) == pytest.approx(1.0, rel=1e-3)
