"""The QuickDraw downloader against a threaded HTTP server on 127.0.0.1 serving fixture files
(a real sketch-rnn .npz and real .ndjson from tests/fixtures); nothing touches the internet."""

import base64
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.parse

import numpy as np
import pytest

from sketchtk.data import download
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Server:
    """Serves ``files`` (URL path -> bytes) with Range support; ``plan`` (path -> list of
    behaviours, consumed one per request) injects ``"500"``, ``"cut"`` (announces the full
    length, sends half and closes) or ``"norange"`` (ignores Range)."""

    def __init__(self, files, md5_header=True):
        self.files, self.plan, self.requests = files, {}, []
        self.md5_header = md5_header
        self.bad_md5 = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = urllib.parse.unquote(self.path)
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                todo = server.plan.get(path) or []
                action = todo.pop(0) if todo else None
                if action == "500":
                    self.send_error(500)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and action != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                if server.md5_header:
                    digest = hashlib.md5(b"x" if path in server.bad_md5 else body).digest()
                    self.send_header("x-goog-hash", "crc32c=AAAAAA==,md5="
                                     + base64.b64encode(digest).decode())
                self.end_headers()
                if action == "cut":
                    self.wfile.write(chunk[:len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/quickdraw_dataset/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


NPZ = _read(os.path.join(FIXTURES, "sheep_small.npz"))
NDJSON = _read(os.path.join(FIXTURES, "quickdraw", "simplified", "cat.ndjson"))


@pytest.fixture()
def server():
    files = {"/quickdraw_dataset/sketchrnn/sheep.npz": NPZ,
             "/quickdraw_dataset/sketchrnn/The Eiffel Tower.npz": NPZ,
             "/quickdraw_dataset/full/simplified/cat.ndjson": NDJSON}
    with Server(files) as s:
        yield s


def test_category_list_is_the_345_official_names():
    names = download.official_categories()
    assert len(names) == len(set(names)) == 345
    assert {"cat", "The Eiffel Tower", "house plant", "apple", "coffee cup"} <= set(names)
    assert download.parse_categories("all") == names
    with pytest.raises(ConfigError, match="'catt'.*did you mean 'cat'"):
        download.parse_categories("catt")


def test_url_quotes_spaces():
    url = download.file_url("https://x/b/", "sketchrnn", "The Eiffel Tower")
    assert url == "https://x/b/sketchrnn/The%20Eiffel%20Tower.npz"
    assert download.file_url("https://x/b", "raw", "cat") == "https://x/b/full/raw/cat.ndjson"


def test_downloads_real_npz_and_verifies_md5(server, tmp_path):
    results = download.download("sheep,The Eiffel Tower", "sketchrnn", str(tmp_path),
                                base_url=server.url, backoff=0)
    assert [os.path.basename(r.path) for r in results] == ["sheep.npz", "The Eiffel Tower.npz"]
    assert _read(tmp_path / "sheep.npz") == NPZ
    assert results[0].md5 == hashlib.md5(NPZ).hexdigest()
    data = load_stroke_npz(tmp_path / "The Eiffel Tower.npz")
    assert len(data["train"]) > 0
    assert not list(tmp_path.glob("*.part"))
    # a second run skips what is there without a request
    before = len(server.requests)
    again = download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url)
    assert again[0].skipped and len(server.requests) == before


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    path = "/quickdraw_dataset/full/simplified/cat.ndjson"
    server.plan[path] = ["cut"]
    [result] = download.download("cat", "simplified", str(tmp_path), base_url=server.url,
                                 backoff=0)
    assert _read(tmp_path / "cat.ndjson") == NDJSON
    ranges = [r for p, r in server.requests if p == path]
    assert ranges[0] is None and ranges[1] == f"bytes={len(NDJSON) // 2}-"
    assert result.attempts == 2


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "sheep.npz.part").write_bytes(NPZ[:1000])
    [result] = download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url)
    assert result.resumed_from == 1000 and _read(tmp_path / "sheep.npz") == NPZ
    assert server.requests[-1][1] == "bytes=1000-"


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "sheep.npz.part").write_bytes(NPZ[:1000])
    server.plan["/quickdraw_dataset/sketchrnn/sheep.npz"] = ["norange"]
    download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url)
    assert _read(tmp_path / "sheep.npz") == NPZ


def test_server_errors_are_retried_then_reported(server, tmp_path):
    path = "/quickdraw_dataset/sketchrnn/sheep.npz"
    server.plan[path] = ["500", "500"]
    [result] = download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url,
                                 backoff=0)
    assert result.attempts == 3 and _read(tmp_path / "sheep.npz") == NPZ
    server.plan[path] = ["500"] * 5
    os.remove(tmp_path / "sheep.npz")
    with pytest.raises(download.DownloadError, match=r"sheep.npz: HTTP 500 .*after 3 attempts"):
        download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url,
                          retries=2, backoff=0)
    assert not (tmp_path / "sheep.npz").exists()


def test_missing_file_and_bad_checksum_fail_without_a_file(server, tmp_path):
    with pytest.raises(download.DownloadError, match=r"bus.npz: HTTP 404"):
        download.download("bus", "sketchrnn", str(tmp_path), base_url=server.url, backoff=0)
    server.bad_md5.add("/quickdraw_dataset/sketchrnn/sheep.npz")
    with pytest.raises(download.DownloadError, match="MD5 mismatch"):
        download.download("sheep", "sketchrnn", str(tmp_path), base_url=server.url, retries=1,
                          backoff=0)
    assert not list(tmp_path.iterdir())


def test_checksums_file_is_checked(server, tmp_path):
    sums = tmp_path / "md5.txt"
    sums.write_text(f"{'0' * 32}  sheep.npz\n")
    out = tmp_path / "out"
    with pytest.raises(download.DownloadError, match="MD5 mismatch"):
        download.download("sheep", "sketchrnn", str(out), base_url=server.url, retries=0,
                          checksums=download.read_checksums(str(sums)))
    sums.write_text(f"{hashlib.md5(NPZ).hexdigest()}  sheep.npz\n")
    download.download("sheep", "sketchrnn", str(out), base_url=server.url,
                      checksums=download.read_checksums(str(sums)))
    assert _read(out / "sheep.npz") == NPZ


def test_offline_is_one_line_from_the_cli(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "sketchtk.data.download", "--categories=cat",
           f"--output_dir={tmp_path}", f"--base_url=http://127.0.0.1:{port}/", "--retries=1",
           "--backoff=0"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("download: error: ") and "connection refused" in last
    assert "Traceback" not in proc.stderr
    assert np.all([not p.name.endswith(".npz") for p in tmp_path.iterdir()])
