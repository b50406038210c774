"""Read and write stroke-3 datasets in the sketch-rnn ``.npz`` format (train / valid / test)."""

import os
import tempfile

import numpy as np

from sketchtk.errors import DataError

SPLITS = ("train", "valid", "test")


def load_stroke_npz(path, splits=SPLITS):
    """Load a sketch-rnn ``.npz``: ``{split: list of [N_i, 3] arrays}``.

    Raises:
      DataError: the file is missing or unreadable, lacks one of ``splits`` (the message lists the
        keys it has), or holds an entry that is not a ``[N, 3]`` numeric array.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=True, encoding="latin1") as data:
            keys = list(data.keys())
            missing = [s for s in splits if s not in keys]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; the file has {keys}; "
                                f"a sketch-rnn .npz needs {list(splits)}")
            out = {s: list(data[s]) for s in splits}
    except DataError:
        raise
    except Exception as err:  # zip/pickle errors come in many types
        raise DataError(f"{path}: cannot read as .npz ({type(err).__name__}: {err})") from err
    for split, sketches in out.items():
        for i, sketch in enumerate(sketches):
            arr = np.asarray(sketch)
            if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.number):
                raise DataError(f"{path}: {split}[{i}] has shape {arr.shape} dtype {arr.dtype}; "
                                "expected a numeric [N, 3] stroke-3 array")
    return out


def save_stroke_npz(path, splits):
    """Write ``{split: list of [N, 3] arrays}`` as int16 object arrays, atomically (temp + rename)."""
    path = os.fspath(path)
    arrays = {}
    for name, sketches in splits.items():
        obj = np.empty(len(sketches), dtype=object)
        for i, s in enumerate(sketches):
            obj[i] = np.asarray(s, dtype=np.int16)
        arrays[name] = obj
    save_npz_atomic(path, arrays)


def save_npz_atomic(path, arrays, compressed=True):
    """``np.savez`` to a temporary file in the same directory, then ``os.replace`` onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the
        # umask), or packed datasets end up unreadable to other users of the install.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _current_umask():
    """The process umask (only readable by setting it, so set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
