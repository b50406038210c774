"""Google Quick, Draw! ``.ndjson`` ingestion: a streaming reader and drawing -> stroke-3 conversion.

One ``.ndjson`` file per category, one JSON object per line::

    {"word": "cat", "key_id": "4597292839469056", "recognized": true, ..., "drawing": [stroke, ...]}

where every stroke is ``[[x0, x1, ...], [y0, y1, ...]]`` (the raw format may add a third list of
timestamps ``t``, which is ignored here).

Two flavours exist (ALGORITHMS.md section 1):

- *simplified*: integers in the 0..255 box, aligned to the top-left, already simplified with
  Ramer-Douglas-Peucker at epsilon 2.0. Converted as is.
- *raw*: screen-pixel coordinates (floats or integers of any size). Converted the way Google made
  the simplified set: subtract the minimum x and y, scale both axes by ``255 / max(width, height)``
  (aspect ratio kept), RDP with epsilon 2.0 per stroke, round to integers. Google also resampled
  strokes at 1 px spacing before RDP; that step only moves where RDP may cut and is left out.

Raw vs simplified is detected per drawing unless ``raw=`` says otherwise: a drawing is raw when a
stroke carries the third (timestamp) list of the official raw format, or any coordinate is a JSON
float or lies outside 0..255. The timestamp rule matters: a raw drawing made in the top-left
256 px of the screen has only small integers (74 of the 9,369 raw drawings in quickdraw-mini do).
Without timestamps such a drawing is indistinguishable from a simplified one; pass ``raw=True``
for files known to be raw.

stroke-3 follows DESIGN.md: concatenate the strokes, take first differences (the first row is the
offset from the origin, i.e. the first absolute point), ``p = 1`` on the last point of each stroke.

Bad input never stops a run: each bad line is skipped and counted under a reason in a
:class:`PackStats`, with the file name and line number in the logged message. Only a file that
cannot be read at all raises :class:`~sketchtk.errors.DataError`.

This module deliberately does not import TensorFlow: packing is a CPU and I/O job and the packer
CLI should start in well under a second.
"""

import collections
import dataclasses
import json
import os

import numpy as np
from absl import logging

from sketchtk.data.rdp import rdp
from sketchtk.errors import DataError

RAW_EPSILON = 2.0
BOX_SIZE = 255.0

MALFORMED_JSON = "malformed_json"
MISSING_DRAWING = "missing_drawing"
BAD_STRUCTURE = "bad_structure"
LENGTH_MISMATCH = "length_mismatch"
NON_FINITE = "non_finite"
EMPTY_DRAWING = "empty_drawing"
OUT_OF_RANGE = "out_of_range"
SKIP_REASONS = (MALFORMED_JSON, MISSING_DRAWING, BAD_STRUCTURE, LENGTH_MISMATCH, NON_FINITE,
                EMPTY_DRAWING, OUT_OF_RANGE)

_INT16_MAX = np.iinfo(np.int16).max
_GZIP_MAGIC = b"\x1f\x8b"


class InvalidDrawingError(DataError):
    """A drawing that cannot be converted; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class PackStats:
    """Counts of what happened to the lines of one ``.ndjson`` file.

    Attributes:
      path: the file.
      lines: non-blank lines read.
      converted: drawings turned into stroke-3 (before any de-duplication or sampling).
      skipped: ``Counter`` of skipped lines per reason (:data:`SKIP_REASONS`).
      messages: the first ``max_messages_per_reason`` skip messages of each reason,
        ``"<path>:<line>: skipped (<reason>): <detail>"``; the same text is logged as a warning.
    """

    path: str
    lines: int = 0
    converted: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    messages: list = dataclasses.field(default_factory=list)
    max_messages_per_reason: int = 5

    @property
    def num_skipped(self):
        """Total skipped lines over all reasons."""
        return sum(self.skipped.values())

    def record_skip(self, reason, line, detail):
        """Count a skipped line; log (and keep) its message unless this reason already has many."""
        self.skipped[reason] += 1
        count = self.skipped[reason]
        # A corrupt multi-GB file would otherwise flood the log: the summary carries the totals.
        if count <= self.max_messages_per_reason:
            message = f"{self.path}:{line}: skipped ({reason}): {detail}"
            self.messages.append(message)
            logging.warning(message)
            if count == self.max_messages_per_reason:
                logging.warning("%s: further '%s' skips are counted but not logged", self.path,
                                reason)

    def summary(self):
        """One line: lines read, drawings converted, skips per reason."""
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items())) or "none"
        return (f"{self.path}: {self.lines} lines, {self.converted} converted, "
                f"{self.num_skipped} skipped ({reasons})")


def iter_ndjson(path, stats=None):
    """Stream the parsed records of a QuickDraw ``.ndjson`` file, one line at a time.

    The file is read lazily line by line, so memory does not grow with its size, and a consumer
    that stops early never reads the rest. Blank lines are ignored. A line that is not a JSON
    object (``malformed_json``) or has no ``drawing`` key (``missing_drawing``) is skipped and
    counted in ``stats``.

    Args:
      path: the ``.ndjson`` file (names with spaces are fine).
      stats: a :class:`PackStats` to update; a fresh one is used when None.

    Yields:
      ``(line_number, record)``: the 1-based line number and the decoded JSON object.

    Raises:
      DataError: the file does not exist or cannot be opened or read, is gzip-compressed, or none
        of its non-blank lines is JSON (not an ``.ndjson`` file at all). Raised when iteration
        reaches the problem (the generator body runs on the first ``next``).
    """
    path = os.fspath(path)
    if stats is None:
        stats = PackStats(path)
    try:
        handle = open(path, "rb")  # bytes: an undecodable line is one skipped line, not a crash
    except OSError as err:
        raise DataError(f"{path}: cannot open QuickDraw .ndjson file "
                        f"({type(err).__name__}: {err.strerror or err})") from err
    any_json = False
    line_number = 0
    with handle:
        if handle.peek(2)[:2] == _GZIP_MAGIC:
            # The download is often left as .ndjson.gz renamed: say so rather than count junk lines.
            raise DataError(f"{path}: is gzip-compressed; decompress it first (gunzip)")
        lines = iter(handle)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except OSError as err:
                raise DataError(f"{path}:{line_number + 1}: read error "
                                f"({type(err).__name__}: {err})") from err
            line_number += 1
            line = line.strip()
            if not line:
                continue
            stats.lines += 1
            try:
                record = json.loads(line)
            except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
                stats.record_skip(MALFORMED_JSON, line_number, f"not valid JSON ({err})")
                continue
            any_json = True
            if not isinstance(record, dict):
                stats.record_skip(MALFORMED_JSON, line_number,
                                  f"a JSON {type(record).__name__}, not an object")
                continue
            if "drawing" not in record:
                stats.record_skip(MISSING_DRAWING, line_number,
                                  f"no 'drawing' key (keys: {sorted(record)})")
                continue
            yield line_number, record
    if stats.lines and not any_json:
        raise DataError(f"{path}: none of its {stats.lines} non-blank lines is JSON; "
                        "is it a QuickDraw .ndjson file?")


def _parse_strokes(drawing):
    """Validate a ``drawing`` -> (non-empty ``(x, y)`` 1-D arrays, whether any stroke had ``t``)."""
    if not isinstance(drawing, list):
        raise InvalidDrawingError(
            BAD_STRUCTURE, f"'drawing' is a {type(drawing).__name__}, expected a list of strokes")
    strokes = []
    has_time = False
    for i, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) < 2:
            raise InvalidDrawingError(
                BAD_STRUCTURE, f"stroke {i} is not a list [[x...], [y...]] (got {stroke!r:.60})")
        xs, ys = stroke[0], stroke[1]
        has_time = has_time or len(stroke) > 2
        if not isinstance(xs, list) or not isinstance(ys, list):
            raise InvalidDrawingError(BAD_STRUCTURE, f"stroke {i}: x and y must be lists")
        if len(xs) != len(ys):
            raise InvalidDrawingError(
                LENGTH_MISMATCH, f"stroke {i} has {len(xs)} x values but {len(ys)} y values")
        if not xs:
            continue  # empty strokes carry nothing; the drawing is judged on what remains
        # Let NumPy infer the dtype: strings, nulls and nested lists come out as object/str/2-D.
        x, y = np.asarray(xs), np.asarray(ys)
        for arr in (x, y):
            if arr.ndim != 1 or arr.dtype.kind not in "iuf":
                raise InvalidDrawingError(
                    BAD_STRUCTURE, f"stroke {i} has non-numeric coordinates ({arr.dtype})")
        if (x.dtype.kind == "f" and not np.isfinite(x).all()) or (
                y.dtype.kind == "f" and not np.isfinite(y).all()):
            raise InvalidDrawingError(NON_FINITE, f"stroke {i} has a NaN or infinite coordinate")
        strokes.append((x, y))
    if not strokes:
        what = "no strokes" if not drawing else "only empty strokes"
        raise InvalidDrawingError(EMPTY_DRAWING, f"drawing has {what}")
    return strokes, has_time


def _looks_raw(strokes, has_time):
    """True for timestamps, float or out-of-box coordinates (see the module docstring)."""
    if has_time:
        return True
    for x, y in strokes:
        for arr in (x, y):
            if arr.dtype.kind == "f" or arr.min() < 0 or arr.max() > BOX_SIZE:
                return True
    return False


def _normalise_raw(strokes, epsilon):
    """Raw strokes -> integer polylines in the 0..255 box, RDP-simplified like QuickDraw's set."""
    xs = np.concatenate([x for x, _ in strokes]).astype(np.float64)
    ys = np.concatenate([y for _, y in strokes]).astype(np.float64)
    min_x, min_y = xs.min(), ys.min()
    extent = max(xs.max() - min_x, ys.max() - min_y)
    scale = BOX_SIZE / extent if extent > 0 else 1.0
    out = []
    for x, y in strokes:
        points = np.stack([(x - min_x) * scale, (y - min_y) * scale], axis=1)
        points = np.rint(rdp(points, epsilon)).astype(np.int64)
        # Rounding can merge neighbouring kept points; a repeated point is a zero offset row.
        if len(points) > 1:
            moved = np.any(points[1:] != points[:-1], axis=1)
            points = points[np.concatenate([[True], moved])]
        out.append(points)
    return out


def drawing_to_stroke3(drawing, raw=None, epsilon=RAW_EPSILON):
    """Convert one QuickDraw ``drawing`` value to a stroke-3 array.

    Args:
      drawing: the ``drawing`` field, a list of strokes ``[[x...], [y...]]`` or
        ``[[x...], [y...], [t...]]`` (``t`` is ignored).
      raw: True for raw drawings (rescaled to the 0..255 box and RDP-simplified), False for
        simplified ones (converted as is, floats rounded), None to detect per drawing (module
        docstring).
      epsilon: RDP tolerance for raw drawings, in the 0..255 box.

    Returns:
      ``int16 [N, 3]`` stroke-3 ``(dx, dy, p)``; the first row is the first absolute point.
      Empty strokes are dropped.

    Raises:
      InvalidDrawingError: with ``reason`` ``bad_structure``, ``length_mismatch`` (a stroke's x
        and y lists differ in length), ``non_finite`` (NaN/inf), ``empty_drawing`` (no points) or
        ``out_of_range`` (an offset does not fit int16, possible only with ``raw=False``).

    Example:
      >>> drawing_to_stroke3([[[0, 10], [0, 0]], [[10], [20]]]).tolist()
      [[0, 0, 0], [10, 0, 1], [0, 20, 1]]
    """
    strokes, has_time = _parse_strokes(drawing)
    if raw is None:
        raw = _looks_raw(strokes, has_time)
    if raw:
        polylines = _normalise_raw(strokes, epsilon)
    else:
        polylines = [np.stack([np.rint(x), np.rint(y)], axis=1).astype(np.int64)
                     for x, y in strokes]
    points = np.concatenate(polylines, axis=0)
    out = np.zeros((len(points), 3), dtype=np.int64)
    out[0, :2] = points[0]
    out[1:, :2] = points[1:] - points[:-1]
    out[np.cumsum([len(p) for p in polylines]) - 1, 2] = 1
    if np.abs(out[:, :2]).max() > _INT16_MAX:
        raise InvalidDrawingError(OUT_OF_RANGE, "an offset does not fit in int16; "
                                  "is this a raw drawing read with raw=False?")
    return out.astype(np.int16)


def iter_stroke3(path, raw=None, epsilon=RAW_EPSILON, stats=None):
    """Stream ``(line_number, record, stroke3)`` for every convertible drawing of a file.

    Lines that fail (see :func:`iter_ndjson` and :func:`drawing_to_stroke3`) are skipped and
    counted in ``stats`` with the file name and line number in the message.

    Args:
      path: the ``.ndjson`` file.
      raw: passed to :func:`drawing_to_stroke3` (None = detect per drawing).
      epsilon: RDP tolerance for raw drawings.
      stats: a :class:`PackStats` to update; a fresh one is used when None.

    Yields:
      ``(line_number, record, stroke3)``; ``record`` is the decoded JSON object.
    """
    path = os.fspath(path)
    if stats is None:
        stats = PackStats(path)
    for line_number, record in iter_ndjson(path, stats):
        try:
            stroke3 = drawing_to_stroke3(record["drawing"], raw=raw, epsilon=epsilon)
        except InvalidDrawingError as err:
            stats.record_skip(err.reason, line_number, str(err))
            continue
        stats.converted += 1
        yield line_number, record, stroke3
