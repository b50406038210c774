"""Read and write stroke-3 datasets in the sketch-rnn ``.npz`` format (train / valid / test).

sketch-rnn files hold *object* arrays (one int16 ``[N, 3]`` array per sketch), which numpy
stores as a pickle, and ``np.load(allow_pickle=True)`` would run whatever a crafted pickle asks
for. :func:`load_npz` unpickles them through :class:`ArrayUnpickler`, which admits only the numpy
globals that rebuild arrays and refuses anything else, without calling it.
"""

import os
import pickle
import tempfile
import zipfile

import numpy as np

from sketchtk.errors import DataError

SPLITS = ("train", "valid", "test")

# What pickles of numpy arrays reference: the array reconstructor, the ndarray and dtype classes
# and the scalar constructor (numpy 1 under numpy.core, numpy 2 under numpy._core).
_ALLOWED_GLOBALS = frozenset(
    [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
     for n in ("_reconstruct", "scalar")] + [("numpy", "ndarray"), ("numpy", "dtype")])


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and nothing else (``find_class`` is the gate)."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"the pickle references {module}.{name}, which no "
                                         "numpy array needs (refused, not called)")
        return super().find_class(module, name)


def _read_member(zf, name, allow_objects):
    """One ``.npy`` member of an open ``.npz`` zip as an array (object arrays via ArrayUnpickler)."""
    with zf.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            _, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            dtype = None
        if dtype is not None and dtype.hasobject:
            if not allow_objects:
                raise ValueError("holds an object array, which this file type never needs")
            array = ArrayUnpickler(f, encoding="latin1").load()
            if not isinstance(array, np.ndarray):
                raise ValueError(f"the pickle holds a {type(array).__name__}, not an array")
            return array
    with zf.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def load_npz(path, keys=None, allow_objects=True):
    """The arrays of an ``.npz`` file as a dict, read safely (see the module docstring).

    Args:
      path: the file.
      keys: load only these keys (missing ones are simply absent); None loads all.
      allow_objects: False refuses object arrays outright.

    Returns:
      ``{key: np.ndarray}`` in file order.

    Raises:
      DataError: naming the file, for a missing or unreadable file, a zip member that is not a
        ``.npy`` array, or a pickle that references anything but numpy's array rebuilding.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not an .npz file")
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                key = member[:-4] if member.endswith(".npy") else member
                if keys is not None and key not in keys:
                    continue
                try:
                    out[key] = _read_member(zf, member, allow_objects)
                except pickle.UnpicklingError as err:
                    raise DataError(f"{path}: refused to load {key!r}: {err}; the file may be "
                                    "crafted to run code") from None
                except Exception as err:  # numpy / zip / pickle errors come in many types
                    raise DataError(f"{path}: cannot read array {key!r} "
                                    f"({type(err).__name__}: {err})") from None
    except DataError:
        raise
    except Exception as err:  # BadZipFile, OSError, ...
        raise DataError(f"{path}: cannot read as .npz ({type(err).__name__}: {err})") from None
    return out


def load_stroke_npz(path, splits=SPLITS):
    """Load a sketch-rnn ``.npz``: ``{split: list of [N_i, 3] arrays}``.

    Raises:
      DataError: the file is missing or unreadable, lacks one of ``splits`` (the message lists the
        keys it has), or holds an entry that is not a ``[N, 3]`` numeric array.
    """
    path = os.fspath(path)
    data = load_npz(path)
    missing = [s for s in splits if s not in data]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; the file has {list(data)}; "
                        f"a sketch-rnn .npz needs {list(splits)}")
    try:
        out = {s: list(data[s]) for s in splits}
    except TypeError as err:  # a 0-d array
        raise DataError(f"{path}: a split is not a list of sketches ({err})") from None
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
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def current_umask():
    """The process umask: from /proc on Linux, else by setting it and setting it back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
