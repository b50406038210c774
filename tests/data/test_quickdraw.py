"""Tests for QuickDraw ndjson ingestion (sketchtk.data.quickdraw) and the packer CLI."""

import collections
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.data import pack_quickdraw
from sketchtk.data import quickdraw
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "quickdraw")
SIMPLIFIED = os.path.join(FIXTURES, "simplified")
RAW = os.path.join(FIXTURES, "raw")
BROKEN = os.path.join(FIXTURES, "broken")
CATEGORIES = ["cat", "The Eiffel Tower"]


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _absolute_strokes(stroke3):
    """stroke-3 -> list of [n, 2] absolute int polylines (split after p = 1)."""
    points = np.cumsum(stroke3[:, :2].astype(np.int64), axis=0)
    cuts = np.flatnonzero(stroke3[:, 2] == 1) + 1
    return [p for p in np.split(points, cuts) if len(p)]


def _distance_to_polyline(points, line):
    """Distance from each of ``points`` to the polyline ``line``."""
    if len(line) == 1:
        return np.linalg.norm(points - line[0], axis=1)
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1].astype(float), line[1:].astype(float)):
        d = b - a
        t = np.clip((points - a) @ d / max(d @ d, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - a - t[:, None] * d, axis=1))
    return best


# ---------------------------------------------------------------------------------------------
# drawing_to_stroke3


@pytest.mark.parametrize("category", CATEGORIES)
def test_simplified_round_trip(category):
    for record in _records(os.path.join(SIMPLIFIED, category + ".ndjson")):
        stroke3 = quickdraw.drawing_to_stroke3(record["drawing"])
        assert stroke3.dtype == np.int16 and stroke3.shape[1] == 3
        assert set(np.unique(stroke3[:, 2])) <= {0, 1} and stroke3[-1, 2] == 1
        original = [np.stack([x, y], axis=1) for x, y in record["drawing"]]
        rebuilt = _absolute_strokes(stroke3)
        assert len(rebuilt) == len(original)
        for got, want in zip(rebuilt, original):
            np.testing.assert_array_equal(got, want)


def test_docstring_example():
    out = quickdraw.drawing_to_stroke3([[[0, 10], [0, 0]], [[10], [20]]])
    assert out.tolist() == [[0, 0, 0], [10, 0, 1], [0, 20, 1]]


@pytest.mark.parametrize("category", CATEGORIES)
def test_raw_drawings_land_in_box_and_match_google_simplification(category):
    simplified = {r["key_id"]: r for r in _records(os.path.join(SIMPLIFIED, category + ".ndjson"))}
    for record in _records(os.path.join(RAW, category + ".ndjson")):
        drawing = record["drawing"]
        assert len(drawing[0]) == 3  # the fixture keeps the t list, which must be ignored
        stroke3 = quickdraw.drawing_to_stroke3(drawing)  # detected as raw
        absolute = np.concatenate(_absolute_strokes(stroke3))
        assert absolute.min() >= 0 and absolute.max() <= 255
        assert absolute.max() >= 250  # scaled up to the box (the longer side spans ~255)
        n_raw = sum(len(s[0]) for s in drawing)
        assert len(stroke3) < n_raw / 2
        assert int(stroke3[:, 2].sum()) == len(drawing)  # one pen lift per stroke
        twin = simplified.get(record["key_id"])
        if twin is not None:
            # Google's own simplification of the same drawing lies within RDP's 2 px (+ rounding)
            # of ours; we may keep a few extra points (reversal tips), hence one direction.
            ours = _absolute_strokes(stroke3)
            theirs = _absolute_strokes(quickdraw.drawing_to_stroke3(twin["drawing"]))
            assert len(ours) == len(theirs)
            for a, b in zip(theirs, ours):
                assert _distance_to_polyline(a.astype(float), b).max() <= 3.0


def test_raw_detection_and_flag():
    small_ints = [[[10, 20, 30], [10, 15, 10]]]
    assert quickdraw.drawing_to_stroke3(small_ints).tolist() == [
        [10, 10, 0], [10, 5, 0], [10, -5, 1]]  # looks simplified: kept as is
    # The same drawing forced raw is aligned to the top-left and scaled to the 255 box.
    forced = quickdraw.drawing_to_stroke3(small_ints, raw=True)
    np.testing.assert_array_equal(np.cumsum(forced[:, :2], axis=0),
                                  [[0, 0], [128, 64], [255, 0]])
    with_time = [[[10, 20, 30], [10, 15, 10], [0, 16, 32]]]
    np.testing.assert_array_equal(quickdraw.drawing_to_stroke3(with_time), forced)
    for raw_like in ([[[10.0, 20.5, 30.0], [10, 15, 10]]], [[[1000, 1020, 1030], [10, 15, 10]]],
                     [[[-5, 20, 30], [10, 15, 10]]]):
        absolute = np.cumsum(quickdraw.drawing_to_stroke3(raw_like)[:, :2], axis=0)
        assert absolute.min() == 0 and absolute.max() == 255
    # Forced simplified keeps screen coordinates (rounded), however large.
    big = quickdraw.drawing_to_stroke3([[[1000.4, 1020], [10, 15]]], raw=False)
    assert big.tolist() == [[1000, 10, 0], [20, 5, 1]]


def test_raw_single_point_and_empty_strokes():
    dot = quickdraw.drawing_to_stroke3([[[500.5], [600.5], [0]]])
    assert dot.tolist() == [[0, 0, 1]]
    with_empty = quickdraw.drawing_to_stroke3([[[], []], [[1, 2], [3, 4]], [[], []]])
    assert with_empty.tolist() == [[1, 3, 0], [1, 1, 1]]


@pytest.mark.parametrize("drawing,reason", [
    ([], quickdraw.EMPTY_DRAWING),
    ([[[], []]], quickdraw.EMPTY_DRAWING),
    ([[[1, 2], [3]]], quickdraw.LENGTH_MISMATCH),
    ([[[1, float("nan")], [3, 4]]], quickdraw.NON_FINITE),
    ([[[1, 2], [3, float("inf")]]], quickdraw.NON_FINITE),
    ({"x": [1]}, quickdraw.BAD_STRUCTURE),
    ([[[1, 2]]], quickdraw.BAD_STRUCTURE),
    ([[[1, "2"], [3, 4]]], quickdraw.BAD_STRUCTURE),
    ([[[1, None], [3, 4]]], quickdraw.BAD_STRUCTURE),
    ([[[0, 40000], [0, 0]]], quickdraw.OUT_OF_RANGE),
])
def test_invalid_drawings_raise_with_reason(drawing, reason):
    raw = False if reason == quickdraw.OUT_OF_RANGE else None
    with pytest.raises(quickdraw.InvalidDrawingError) as info:
        quickdraw.drawing_to_stroke3(drawing, raw=raw)
    assert info.value.reason == reason
    assert isinstance(info.value, DataError)


# ---------------------------------------------------------------------------------------------
# Streaming reader and bad input


def test_reader_is_lazy():
    path = os.path.join(BROKEN, "broken_last_line.ndjson")
    stats = quickdraw.PackStats(path)
    reader = quickdraw.iter_ndjson(path, stats)
    assert inspect.isgenerator(reader)
    assert stats.lines == 0  # nothing read before the first next()
    line, record = next(reader)
    assert line == 1 and record["word"] == "cat"
    assert stats.lines == 1 and not stats.skipped  # the broken last line is not read yet
    rest = list(reader)
    assert [line for line, _ in rest] == [2, 3]
    assert stats.skipped == {quickdraw.MALFORMED_JSON: 1}


@pytest.mark.parametrize("name,reason,bad_lines,good_lines", [
    ("malformed_json", quickdraw.MALFORMED_JSON, [2, 4], [1, 3]),
    ("missing_drawing", quickdraw.MISSING_DRAWING, [2], [1, 3]),
    ("empty_drawing", quickdraw.EMPTY_DRAWING, [2, 3], [1]),
    ("non_finite", quickdraw.NON_FINITE, [2, 3], [1]),
    ("length_mismatch", quickdraw.LENGTH_MISMATCH, [2], [1, 3]),
    ("bad_structure", quickdraw.BAD_STRUCTURE, [2, 3], [1]),
    ("broken_last_line", quickdraw.MALFORMED_JSON, [4], [1, 2, 3]),
])
def test_bad_lines_are_skipped_and_counted(name, reason, bad_lines, good_lines, caplog):
    path = os.path.join(BROKEN, name + ".ndjson")
    stats = quickdraw.PackStats(path)
    with caplog.at_level("WARNING"):
        got = [line for line, _, _ in quickdraw.iter_stroke3(path, stats=stats)]
    assert got == good_lines
    assert stats.skipped == {reason: len(bad_lines)}
    assert stats.converted == len(good_lines)
    assert stats.lines == len(good_lines) + len(bad_lines)
    for line in bad_lines:
        where = f"{path}:{line}: skipped ({reason})"
        assert any(m.startswith(where) for m in stats.messages)
        assert where in caplog.text
    assert f"{len(bad_lines)} skipped ({reason}={len(bad_lines)})" in stats.summary()


def test_skip_messages_are_capped_but_all_counted(tmp_path):
    path = tmp_path / "many bad.ndjson"
    good = open(os.path.join(SIMPLIFIED, "cat.ndjson")).readline()
    path.write_text(good + "{oops\n" * 12)
    stats = quickdraw.PackStats(str(path), max_messages_per_reason=3)
    assert len(list(quickdraw.iter_stroke3(str(path), stats=stats))) == 1
    assert stats.skipped[quickdraw.MALFORMED_JSON] == 12
    assert len(stats.messages) == 3 and f"{path}:4:" in stats.messages[-1]


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "blank.ndjson"
    good = open(os.path.join(SIMPLIFIED, "cat.ndjson")).readline().strip()
    path.write_text(f"\n{good}\n\n   \n{good}\n")
    stats = quickdraw.PackStats(str(path))
    assert [line for line, _ in quickdraw.iter_ndjson(str(path), stats)] == [2, 5]
    assert stats.lines == 2 and not stats.skipped


@pytest.mark.parametrize("name,match", [
    ("does_not_exist", "cannot open"),
    ("not_json", "none of its 4 non-blank lines is JSON"),
    ("gzipped", "gzip"),
])
def test_unreadable_files_raise_data_error(name, match):
    path = os.path.join(BROKEN, name + ".ndjson")
    with pytest.raises(DataError, match=match) as info:
        list(quickdraw.iter_ndjson(path))
    assert path in str(info.value)


def test_directory_is_not_a_file():
    with pytest.raises(DataError, match="cannot open"):
        list(quickdraw.iter_ndjson(SIMPLIFIED))


def test_empty_file_yields_nothing():
    stats = quickdraw.PackStats("empty")
    assert list(quickdraw.iter_ndjson(os.path.join(BROKEN, "empty.ndjson"), stats)) == []
    assert stats.lines == 0


# ---------------------------------------------------------------------------------------------
# Packer


@pytest.mark.parametrize("split,expected", [
    ("0.9,0.05,0.05", (0.9, 0.05, 0.05)),
    (" 0.8, 0.1 ,0.1", (0.8, 0.1, 0.1)),
    ((0.5, 0.25, 0.25), (0.5, 0.25, 0.25)),
])
def test_parse_split(split, expected):
    assert pack_quickdraw.parse_split(split) == pytest.approx(expected)


@pytest.mark.parametrize("split,match", [
    ("0.5,0.5", "3 fractions"),
    ("1,0,0", "> 0"),
    ("0.9,-0.05,0.15", "> 0"),
    ("0.5,0.3,0.3", "sum to 1"),
    ("a,b,c", "three comma-separated numbers"),
    ("0.9,nan,0.05", "> 0"),
])
def test_bad_split_is_a_clear_error(split, match):
    with pytest.raises(ConfigError, match=match):
        pack_quickdraw.parse_split(split)


@pytest.mark.parametrize("n,fractions,expected", [
    (100, (0.8, 0.1, 0.1), (80, 10, 10)),
    (61, (0.8, 0.1, 0.1), (49, 6, 6)),
    (27, (0.9, 0.05, 0.05), (24, 2, 1)),
    (5, (0.9, 0.05, 0.05), (5, 0, 0)),
    (1, (0.2, 0.4, 0.4), (0, 1, 0)),
])
def test_split_sizes(n, fractions, expected):
    sizes = pack_quickdraw.split_sizes(n, fractions)
    assert sizes == expected and sum(sizes) == n


def test_collect_merges_raw_and_dedupes_by_key_id():
    splits, result = pack_quickdraw.collect_category(
        "cat", SIMPLIFIED, raw_ndjson_dir=RAW, split="0.5,0.25,0.25", seed=0)
    assert result.duplicates == 1 and result.candidates == 4
    assert result.contributed == {os.path.join(SIMPLIFIED, "cat.ndjson"): 3,
                                  os.path.join(RAW, "cat.ndjson"): 1}
    assert result.sizes == {"train": 2, "valid": 1, "test": 1}
    assert [s.num_skipped for s in result.file_stats] == [0, 0]
    kept = [s for name in ("train", "valid", "test") for s in splits[name]]
    # The duplicate key_id keeps Google's simplified version, not our simplification of the raw.
    first = quickdraw.drawing_to_stroke3(_records(os.path.join(SIMPLIFIED, "cat.ndjson"))[0]
                                         ["drawing"])
    assert sum(np.array_equal(s, first) for s in kept) == 1
    raw_first = quickdraw.drawing_to_stroke3(_records(os.path.join(RAW, "cat.ndjson"))[0]
                                             ["drawing"])
    assert not any(np.array_equal(s, raw_first) for s in kept)


def _flatten(splits):
    return [s.tolist() for name in ("train", "valid", "test") for s in splits[name]]


def test_split_is_deterministic_by_seed():
    kwargs = dict(raw_ndjson_dir=RAW, split=(0.5, 0.25, 0.25))
    a, _ = pack_quickdraw.collect_category("The Eiffel Tower", SIMPLIFIED, seed=3, **kwargs)
    b, _ = pack_quickdraw.collect_category("The Eiffel Tower", SIMPLIFIED, seed=3, **kwargs)
    assert _flatten(a) == _flatten(b)
    orders = {json.dumps(_flatten(pack_quickdraw.collect_category(
        "The Eiffel Tower", SIMPLIFIED, seed=s, **kwargs)[0])) for s in range(8)}
    assert len(orders) > 1
    assert all(sorted(json.loads(o)) == sorted(_flatten(a)) for o in orders)


def test_max_per_category_samples_uniformly(tmp_path):
    # Six distinct real drawings in one file; a sample of 2 should pick each about 1/3 of the time.
    lines = []
    for category in CATEGORIES:
        with open(os.path.join(SIMPLIFIED, category + ".ndjson")) as f:
            lines.extend(f.read().splitlines())
    (tmp_path / "mixed.ndjson").write_text("\n".join(lines) + "\n")
    all_drawings = [quickdraw.drawing_to_stroke3(json.loads(l)["drawing"]).tolist() for l in lines]
    counts = collections.Counter()
    for seed in range(300):
        splits, result = pack_quickdraw.collect_category(
            "mixed", str(tmp_path), max_per_category=2, split="0.5,0.25,0.25", seed=seed)
        assert sum(result.sizes.values()) == 2 and result.candidates == 6
        for sketch in _flatten(splits):
            counts[all_drawings.index(sketch)] += 1
    assert sorted(counts) == list(range(6))
    assert all(60 <= c <= 140 for c in counts.values()), counts  # expected 100 each
    big, _ = pack_quickdraw.collect_category("mixed", str(tmp_path), max_per_category=100)
    assert sum(len(v) for v in big.values()) == 6


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_max_per_category(value):
    with pytest.raises(ConfigError, match="max_per_category"):
        pack_quickdraw.collect_category("cat", SIMPLIFIED, max_per_category=value)


def test_unknown_category_lists_names():
    with pytest.raises(DataError) as info:
        pack_quickdraw.collect_category("catt", SIMPLIFIED)
    message = str(info.value)
    assert "catt.ndjson" in message and SIMPLIFIED in message
    assert "did you mean 'cat'" in message and "2 categories available" in message


def test_pack_checks_every_category_before_writing(tmp_path):
    with pytest.raises(DataError, match="unknown category 'dog'"):
        pack_quickdraw.pack(["cat", "dog"], SIMPLIFIED, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_pack_counts_skips_and_rejects_empty_categories(tmp_path):
    _, result = pack_quickdraw.collect_category("malformed_json", BROKEN)
    assert result.skipped == {quickdraw.MALFORMED_JSON: 2}
    _, result = pack_quickdraw.collect_category("non_finite", BROKEN)
    assert result.skipped == {quickdraw.NON_FINITE: 2} and sum(result.sizes.values()) == 1
    # one valid drawing cannot fill train, valid and test: the packer writes nothing
    with pytest.raises(DataError, match=r"'non_finite': only 1 valid drawing.*one per split"):
        pack_quickdraw.pack(["non_finite"], BROKEN, str(tmp_path))
    assert not (tmp_path / "non_finite.npz").exists()
    with pytest.raises(DataError, match="no valid drawing"):
        pack_quickdraw.pack(["empty"], BROKEN, str(tmp_path))


@pytest.mark.parametrize("sizes,expected", [
    ((5, 0, 0), (3, 1, 1)),
    ((2, 1, 0), (1, 1, 1)),
    ((0, 3, 0), (1, 1, 1)),
    ((80, 10, 10), (80, 10, 10)),
])
def test_at_least_one_each(sizes, expected):
    assert pack_quickdraw.at_least_one_each(sizes) == expected


def test_small_category_gets_every_split(tmp_path):
    # "cat" has 3 distinct drawings: 0.9/0.05/0.05 would give 3/0/0, which train.py rejects
    splits, result = pack_quickdraw.collect_category("cat", SIMPLIFIED, split="0.9,0.05,0.05")
    assert result.sizes == {"train": 1, "valid": 1, "test": 1}
    assert all(len(splits[name]) == 1 for name in ("train", "valid", "test"))


def test_pack_writes_loadable_npz(tmp_path):
    results = pack_quickdraw.pack(",".join(CATEGORIES), SIMPLIFIED, str(tmp_path),
                                  raw_ndjson_dir=RAW, split="0.5,0.25,0.25", seed=1)
    for category in CATEGORIES:
        path = tmp_path / f"{category}.npz"
        assert results[category].output_path == str(path)
        data = load_stroke_npz(path)
        assert {k: len(v) for k, v in data.items()} == results[category].sizes
        assert all(s.dtype == np.int16 for v in data.values() for s in v)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "packed"
    cmd = [sys.executable, "-m", "sketchtk.data.pack_quickdraw", f"--ndjson_dir={SIMPLIFIED}",
           f"--raw_ndjson_dir={RAW}", "--categories=cat,The Eiffel Tower", f"--output_dir={out}",
           "--split=0.5,0.25,0.25", "--seed=2", "--max_per_category=3"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "duplicate key_ids" in proc.stderr
    for category in CATEGORIES:
        data = load_stroke_npz(out / f"{category}.npz")
        assert sum(len(v) for v in data.values()) == 3
    in_process, _ = pack_quickdraw.collect_category(
        "cat", SIMPLIFIED, raw_ndjson_dir=RAW, max_per_category=3, split="0.5,0.25,0.25", seed=2)
    assert _flatten(in_process) == _flatten(load_stroke_npz(out / "cat.npz"))

    bad = subprocess.run(cmd[:-3] + ["--split=0.5,0.5,0.5"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    # one line, the shared entry-point boundary's form; exit 2 for a bad flag value
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "pack_quickdraw: error: split") and "sum to 1" in bad.stderr
    assert "Traceback" not in bad.stderr
