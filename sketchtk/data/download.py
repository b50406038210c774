r"""Download the official QuickDraw files: ``python -m sketchtk.data.download``.

Usage::

    python -m sketchtk.data.download --categories=cat,bus --kind=sketchrnn --output_dir=data/qd
    python -m sketchtk.data.download --categories=all --kind=simplified --output_dir=data/ndjson

Kinds and the files they fetch from ``--base_url`` (default: the dataset's public bucket,
https://storage.googleapis.com/quickdraw_dataset/, as listed in the googlecreativelab
quickdraw-dataset README):

- ``sketchrnn``: ``sketchrnn/<category>.npz`` (stroke-3, 70000/2500/2500 per category);
- ``simplified``: ``full/simplified/<category>.ndjson``;
- ``raw``: ``full/raw/<category>.ndjson``.

Each file lands as ``<output_dir>/<category>.npz`` or ``.ndjson`` (the names ``train.py
--data_dir`` and ``pack_quickdraw --ndjson_dir`` read). A transfer is written to ``<name>.part``
and resumed from its size with an HTTP ``Range`` request after an interruption (also across runs);
it is renamed into place only when its size matches ``Content-Length`` (or ``Content-Range``) and
its MD5 matches the server's ``x-goog-hash: md5=...`` header (Google Cloud Storage sends one) or
a ``--checksums`` file (``md5sum`` format: ``<hex>  <file name>``). Server errors (5xx),
truncated transfers, timeouts and refused connections are retried with exponential backoff;
what still fails ends in one line naming the URL and the reason. A file already in place is
skipped (and checked against ``--checksums`` when given).

The category list (the 345 official categories) is ``categories.txt`` next to this module.
"""

import base64
import dataclasses
import difflib
import hashlib
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from absl import app
from absl import flags
from absl import logging

from sketchtk.errors import ConfigError, DataError

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/"
CATEGORIES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "categories.txt")
KINDS = {"sketchrnn": ("sketchrnn/{}.npz", ".npz"),
         "simplified": ("full/simplified/{}.ndjson", ".ndjson"),
         "raw": ("full/raw/{}.ndjson", ".ndjson")}
CHUNK = 1 << 16


class DownloadError(DataError):
    """A file could not be fetched; the message names the URL and why."""


class _Retry(Exception):
    """A failure worth another attempt (server error, cut transfer, timeout, refused)."""


def official_categories():
    """The 345 QuickDraw category names, in the dataset's order."""
    with open(CATEGORIES_FILE, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def parse_categories(text):
    """``"all"`` or a comma-separated list (or a list) -> validated category names.

    Raises ConfigError naming an unknown category and the closest official names.
    """
    known = official_categories()
    names = [c.strip() for c in text.split(",")] if isinstance(text, str) else list(text)
    names = [c for c in names if c]
    if names == ["all"]:
        return known
    if not names:
        raise ConfigError("--categories: no category given (a list or 'all')")
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"--categories: {name!r} is not a QuickDraw category{hint} "
                              f"({CATEGORIES_FILE} lists the {len(known)})")
    return names


def file_url(base_url, kind, category):
    """URL of one category's file (the name URL-quoted: spaces become %20)."""
    if kind not in KINDS:
        raise ConfigError(f"--kind={kind!r}: choose one of {list(KINDS)}")
    return base_url.rstrip("/") + "/" + urllib.parse.quote(KINDS[kind][0].format(category))


def read_checksums(path):
    """``{file name: md5 hex}`` from an ``md5sum``-style file (``<hex>  <name>`` per line)."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.rstrip("\n").split(None, 1)
                if len(parts) != 2 or len(parts[0]) != 32:
                    raise DataError(f"{path}:{number}: expected '<md5 hex>  <file name>'")
                out[parts[1].lstrip("*").strip()] = parts[0].lower()
    except OSError as err:
        raise DataError(f"{path}: cannot read the checksums file ({err.strerror})") from None
    return out


def _md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _header_md5(headers):
    """The MD5 (hex) in a GCS ``x-goog-hash: crc32c=...,md5=<base64>`` header, or None."""
    for value in headers.get_all("x-goog-hash") or []:
        for item in value.split(","):
            key, _, encoded = item.strip().partition("=")
            if key == "md5":
                try:
                    return base64.b64decode(encoded).hex()
                except ValueError:
                    return None
    return None


class Progress:
    """A one-line progress bar on a terminal; a log line per 25 % otherwise."""

    def __init__(self, name, total, start=0, stream=None):
        self.name, self.total, self.done = name, total, start
        self.stream = stream
        self.tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        self._logged = -1
        self._t0 = time.monotonic()
        self._start = start

    def update(self, n):
        self.done += n
        if self.tty:
            rate = (self.done - self._start) / max(time.monotonic() - self._t0, 1e-6)
            if self.total:
                frac = self.done / self.total
                bar = "#" * int(30 * frac)
                self.stream.write(f"\r{self.name}: [{bar:<30}] {100 * frac:5.1f}% "
                                  f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
                                  f"{rate / 1e6:.1f} MB/s")
            else:
                self.stream.write(f"\r{self.name}: {self.done / 1e6:.1f} MB")
            self.stream.flush()
        elif self.total:
            quarter = int(4 * self.done / self.total)
            if quarter > self._logged:
                self._logged = quarter
                logging.info("%s: %d%% of %.1f MB", self.name, 25 * quarter, self.total / 1e6)

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclasses.dataclass
class FetchResult:
    path: str
    url: str
    bytes: int
    attempts: int
    resumed_from: int
    skipped: bool = False
    md5: str = None


def _describe(err):
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve the host ({reason.strerror}); offline? --base_url sets a mirror"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused; offline or wrong --base_url?"
        return f"cannot connect ({reason})"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    return f"{type(err).__name__}: {err}"


def _attempt(url, part, timeout, progress_stream, name):
    """One request: append to ``part`` from its current size. Returns (total size, server md5).
    Raises _Retry on a transient failure, DownloadError on a permanent one."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "sketchtk-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is as long as the file, or longer: restart
            os.remove(part)
            raise _Retry(f"{_describe(err)} for a {offset}-byte partial file") from None
        if err.code >= 500 or err.code == 429:
            raise _Retry(_describe(err)) from None
        raise DownloadError(f"{url}: {_describe(err)}") from None
    except (urllib.error.URLError, OSError) as err:
        raise _Retry(_describe(err)) from None
    with response:
        if offset and response.status != 206:  # the server ignored the Range: start over
            offset = 0
            mode = "wb"
        else:
            mode = "ab"
        length = response.headers.get("Content-Length")
        total = None
        content_range = response.headers.get("Content-Range", "")
        if response.status == 206 and "/" in content_range and not content_range.endswith("*"):
            total = int(content_range.rsplit("/", 1)[1])
        elif length is not None:
            total = offset + int(length)
        md5 = _header_md5(response.headers)
        progress = Progress(name, total, offset, progress_stream)
        received = offset
        try:
            with open(part, mode) as f:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    progress.update(len(block))
        except (OSError, socket.timeout, ConnectionError) as err:
            raise _Retry(f"transfer cut after {received} bytes ({_describe(err)})") from None
        finally:
            progress.close()
    if total is not None and received < total:
        raise _Retry(f"transfer cut: {received} of {total} bytes")
    if total is not None and received > total:
        os.remove(part)
        raise _Retry(f"received {received} bytes, more than the announced {total}")
    return received, md5


def fetch(url, path, expected_md5=None, retries=5, backoff=1.0, timeout=60.0,
          progress_stream=None):
    """Download ``url`` to ``path`` (via ``path.part``, resumable) and verify it.

    Args:
      expected_md5: hex MD5 the file must have (e.g. from ``--checksums``); the server's
        ``x-goog-hash`` MD5 is checked too when it sends one.
      retries: attempts after the first for transient failures.
      backoff: seconds before the first retry, doubled each time.

    Returns:
      FetchResult.

    Raises:
      DownloadError: a permanent HTTP error (404...), a checksum mismatch after retries, or
        transient failures on every attempt; the message names the URL.
    """
    name = os.path.basename(path)
    if os.path.exists(path):
        if expected_md5 and _md5_of(path) != expected_md5:
            raise DownloadError(f"{path}: exists but its MD5 differs from the checksums file; "
                                "delete it to download it again")
        return FetchResult(path, url, os.path.getsize(path), 0, 0, skipped=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    resumed_from = os.path.getsize(part) if os.path.exists(part) else 0
    last = None
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            logging.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt, retries, delay)
            time.sleep(delay)
        try:
            size, server_md5 = _attempt(url, part, timeout, progress_stream, name)
        except _Retry as err:
            last = str(err)
            continue
        actual = _md5_of(part) if (expected_md5 or server_md5) else None
        want = expected_md5 or server_md5
        if want and actual != want or (server_md5 and expected_md5 and server_md5 != expected_md5):
            os.remove(part)
            last = f"MD5 mismatch (got {actual}, expected {want})"
            continue
        os.replace(part, path)
        logging.info("%s -> %s (%d bytes%s)", url, path, size,
                     f", resumed from {resumed_from}" if resumed_from else "")
        return FetchResult(path, url, size, attempt + 1, resumed_from, md5=actual)
    raise DownloadError(f"{url}: {last} (gave up after {retries + 1} attempts; the partial "
                        f"file {part if os.path.exists(part) else '(none)'} is kept for resuming)")


def download(categories, kind, output_dir, base_url=DEFAULT_BASE_URL, checksums=None,
             retries=5, backoff=1.0, timeout=60.0, progress_stream=None):
    """Fetch every category's file of ``kind`` into ``output_dir``. Returns the FetchResults.

    ``checksums`` is a ``{file name: md5}`` dict (see :func:`read_checksums`); the file name is
    the one written (``<category>.npz`` / ``.ndjson``).
    """
    names = parse_categories(categories)
    if kind not in KINDS:
        raise ConfigError(f"--kind={kind!r}: choose one of {list(KINDS)}")
    suffix = KINDS[kind][1]
    results = []
    for i, category in enumerate(names, 1):
        filename = category + suffix
        url = file_url(base_url, kind, category)
        expected = (checksums or {}).get(filename)
        result = fetch(url, os.path.join(output_dir, filename), expected, retries, backoff,
                       timeout, progress_stream)
        results.append(result)
        if result.skipped:
            logging.info("[%d/%d] %s: already there", i, len(names), result.path)
    total = sum(r.bytes for r in results if not r.skipped)
    logging.info("%d file(s) in %s (%d downloaded, %.1f MB)", len(results), output_dir,
                 sum(not r.skipped for r in results), total / 1e6)
    return results


def define_flags(flag_values=flags.FLAGS):
    """CLI flags (defined only when run as a program)."""
    flags.DEFINE_string("categories", None, "Comma-separated category names, or 'all' (the 345).",
                        flag_values=flag_values)
    flags.DEFINE_enum("kind", "sketchrnn", list(KINDS), "sketchrnn (.npz stroke-3), simplified "
                      "or raw (.ndjson).", flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where the files are written.",
                        flag_values=flag_values)
    flags.DEFINE_string("base_url", DEFAULT_BASE_URL, "Bucket or mirror URL.",
                        flag_values=flag_values)
    flags.DEFINE_string("checksums", None, "Optional md5sum-style file of expected MD5s.",
                        flag_values=flag_values)
    flags.DEFINE_integer("retries", 5, "Retries per file for transient failures.", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_float("backoff", 1.0, "Seconds before the first retry (doubled each time).",
                       lower_bound=0.0, flag_values=flag_values)
    flags.DEFINE_float("timeout", 60.0, "Socket timeout in seconds.", lower_bound=0.1,
                       flag_values=flag_values)
    flags.mark_flags_as_required(["categories", "output_dir"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = flags.FLAGS
    checksums = read_checksums(cfg.checksums) if cfg.checksums else None
    download(cfg.categories, cfg.kind, cfg.output_dir, cfg.base_url, checksums, cfg.retries,
             cfg.backoff, cfg.timeout, progress_stream=sys.stderr)
    return 0


if __name__ == "__main__":
    from sketchtk import cli
    define_flags()
    cli.run(main, prog="download")
