"""Tests of sketchtk.data.npz_io: reading and (atomically) writing sketch-rnn ``.npz`` files."""

import os
import stat

import numpy as np
import pytest

from sketchtk.data import npz_io
from sketchtk.data.npz_io import load_stroke_npz, save_npz_atomic, save_stroke_npz
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


def test_load_fixture(sheep):
    assert {k: len(v) for k, v in sheep.items()} == {"train": 64, "valid": 16, "test": 16}
    for sketches in sheep.values():
        for s in sketches:
            assert s.ndim == 2 and s.shape[1] == 3 and s.dtype == np.int16
            assert set(np.unique(s[:, 2])) <= {0, 1}
    # real drawings: long and varied
    assert max(len(s) for s in sheep["train"]) > 100
    assert len({len(s) for s in sheep["train"]}) > 20


def test_load_some_splits(sheep):
    only = load_stroke_npz(FIXTURE, splits=("valid",))
    assert list(only) == ["valid"]
    for a, b in zip(only["valid"], sheep["valid"]):
        np.testing.assert_array_equal(a, b)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError, match="no such file") as err:
        load_stroke_npz(path)
    assert str(path) in str(err.value)


def test_wrong_keys(tmp_path, sheep):
    path = tmp_path / "keys.npz"
    np.savez(path, train=_object_array(sheep["train"][:3]), validation=_object_array(sheep["valid"][:2]))
    with pytest.raises(DataError) as err:
        load_stroke_npz(path)
    message = str(err.value)
    assert str(path) in message
    assert "valid" in message and "test" in message  # what is missing
    assert "validation" in message  # what the file has


@pytest.mark.parametrize("content", [b"dx,dy,p\n1,2,0\n", b"PK\x03\x04 truncated zip"])
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "sheep.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="cannot read") as err:
        load_stroke_npz(path)
    assert str(path) in str(err.value)


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "sheep.npy"
    np.save(path, np.zeros((4, 3), np.int16))
    with pytest.raises(DataError) as err:
        load_stroke_npz(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad", [np.zeros((5, 2), np.int16), np.zeros((5,), np.int16),
                                 np.zeros((2, 5, 3), np.int16), np.array([["a", "b", "c"]])])
def test_entry_of_wrong_shape(tmp_path, sheep, bad):
    valid = list(sheep["valid"][:3])
    valid[1] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, train=_object_array(sheep["train"][:3]), valid=_object_array(valid),
             test=_object_array(sheep["test"][:3]))
    with pytest.raises(DataError) as err:
        load_stroke_npz(path)
    message = str(err.value)
    assert str(path) in message and "valid[1]" in message


def test_save_load_round_trip(tmp_path, sheep):
    path = tmp_path / "sub" / "sheep.npz"  # parent created
    save_stroke_npz(path, sheep)
    back = load_stroke_npz(path)
    assert list(back) == list(sheep)
    for split in sheep:
        assert len(back[split]) == len(sheep[split])
        for a, b in zip(back[split], sheep[split]):
            assert a.dtype == np.int16
            np.testing.assert_array_equal(a, b)


def test_save_converts_float_to_int16(tmp_path, sheep):
    floats = {s: [x.astype(np.float32) for x in v[:4]] for s, v in sheep.items()}
    save_stroke_npz(tmp_path / "f.npz", floats)
    back = load_stroke_npz(tmp_path / "f.npz")
    assert back["train"][0].dtype == np.int16
    np.testing.assert_array_equal(back["train"][3], sheep["train"][3])


def test_equal_length_sketches_stay_a_list(tmp_path, sheep):
    """All sketches of one length must not collapse into a 3-D array on save."""
    same = [sheep["train"][0], sheep["train"][0] + 1]
    save_stroke_npz(tmp_path / "same.npz", {"train": same, "valid": same, "test": same})
    back = load_stroke_npz(tmp_path / "same.npz")
    assert len(back["train"]) == 2 and back["train"][1].shape == same[1].shape


def test_atomic_write_leaves_no_temp_file(tmp_path, sheep):
    path = tmp_path / "sheep.npz"
    save_stroke_npz(path, sheep)
    save_stroke_npz(path, {s: v[:2] for s, v in sheep.items()})  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["sheep.npz"]
    assert len(load_stroke_npz(path)["train"]) == 2


def test_failed_write_keeps_old_file(tmp_path, sheep, monkeypatch):
    path = tmp_path / "sheep.npz"
    save_stroke_npz(path, sheep)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(str(path), {"train": np.zeros(3)})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["sheep.npz"]


def test_saved_file_permissions_follow_umask(tmp_path, sheep):
    """mkstemp creates 0600 files; the written dataset must be readable like any other file."""
    old = os.umask(0o022)
    try:
        save_stroke_npz(tmp_path / "sheep.npz", {s: v[:2] for s, v in sheep.items()})
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "sheep.npz").st_mode)
    assert mode == 0o644


def test_splits_constant():
    assert npz_io.SPLITS == ("train", "valid", "test")


class _RunsCode:
    """Pickles to ``os.system(command)``: what a crafted "dataset" would carry."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _crafted_npz(path, marker):
    payload = np.empty(2, dtype=object)
    payload[0] = np.zeros((3, 3), np.int16)
    payload[1] = _RunsCode(f"touch {marker}")
    np.savez(path, train=payload, valid=payload, test=payload)


def test_crafted_pickle_is_refused_and_not_run(tmp_path):
    path, marker = tmp_path / "evil.npz", tmp_path / "pwned"
    _crafted_npz(path, marker)
    with pytest.raises(DataError, match=r"evil.npz: refused to load 'train'.*posix.system|"
                                        r"evil.npz: refused to load 'train'.*os.system"):
        load_stroke_npz(path)
    with pytest.raises(DataError, match="refused"):
        npz_io.load_npz(path)
    assert not marker.exists()
    # the same file through np.load(allow_pickle=True) would have run it: the test is real
    np.load(path, allow_pickle=True)["train"]
    assert marker.exists()


def test_crafted_samples_bundle_is_refused(tmp_path):
    from sketchtk.metrics.evaluate import load_samples
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _RunsCode(f"touch {marker}")
    np.savez(tmp_path / "samples.npz", strokes=payload)
    with pytest.raises(DataError, match="samples.npz: refused to load 'strokes'"):
        load_samples(str(tmp_path))
    assert not marker.exists()


def test_restricted_loader_reads_real_sketch_rnn_files(sheep_sketches):
    """The embedded QuickDraw files and the sketch-rnn sheep load as object arrays of int16."""
    default = os.path.join(os.path.dirname(npz_io.__file__), "default", "stairs.npz")
    data = npz_io.load_npz(default)
    assert set(data) == {"train", "valid", "test"} and data["train"].dtype == object
    assert all(s.dtype == np.int16 and s.shape[1] == 3 for s in data["train"])
    assert len(sheep_sketches) == 96


def test_object_arrays_can_be_refused_outright(tmp_path, sheep):
    save_stroke_npz(tmp_path / "s.npz", {k: v[:2] for k, v in sheep.items()})
    with pytest.raises(DataError, match="object array"):
        npz_io.load_npz(tmp_path / "s.npz", allow_objects=False)


def test_corrupt_npz_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"bad.npz: cannot read as .npz") as err:
        load_stroke_npz(tmp_path / "bad.npz")
    assert "\n" not in str(err.value)
