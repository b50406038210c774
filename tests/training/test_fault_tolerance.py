"""Multi-worker fault tolerance: two workers on 127.0.0.1 train over sharded TFRecords, one is
SIGKILLed mid-run, both are restarted and the run resumes from the chief's last checkpoint."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from sketchtk.data import loader
from sketchtk.data import tfrecords

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STEPS, EVAL_EVERY = 10, 4


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _launch(log_root, data_dir, tmp_path, tag):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for i in range(2):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})}
        err = open(tmp_path / f"{tag}-w{i}.err", "w")
        procs.append((subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fault_run.py"), str(log_root), str(data_dir),
             str(STEPS), str(EVAL_EVERY)], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=err, text=True), err))
    return procs


def _history(log_root):
    path = log_root / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _latest_step(log_root):
    pointer = log_root / "ckpt" / "latest"
    return int(pointer.read_text().split("-")[1]) if pointer.exists() else 0


@pytest.mark.slow
def test_killed_worker_resumes_from_the_chiefs_checkpoint(tmp_path):
    data_dir = tmp_path / "shards"
    tfrecords.convert_npz(loader.DEFAULT_DATA_DIR, str(data_dir), shards=4, seed=0)
    log_root = tmp_path / "run"
    procs = _launch(log_root, data_dir, tmp_path, "first")
    deadline = time.time() + 1500
    # kill worker 1 once step 5 is logged: checkpoint 4 exists, checkpoint 8 not yet
    while time.time() < deadline:
        rows = _history(log_root)
        if rows and rows[-1]["step"] >= EVAL_EVERY + 1:
            break
        assert all(p.poll() is None for p, _ in procs), "a worker ended before the kill"
        time.sleep(0.3)
    procs[1][0].send_signal(signal.SIGKILL)
    procs[1][0].wait()
    # the surviving chief cannot finish without its peer; the job is restarted: stop it too
    try:
        procs[0][0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        procs[0][0].send_signal(signal.SIGKILL)
        procs[0][0].wait()
    for _, err in procs:
        err.close()
    killed_at = _latest_step(log_root)
    before = {int(r["step"]): r for r in _history(log_root)}
    assert EVAL_EVERY <= killed_at < STEPS, killed_at
    assert max(before) > killed_at  # steps after the checkpoint that the restart repeats

    procs = _launch(log_root, data_dir, tmp_path, "second")
    results = []
    for proc, err in procs:
        out, _ = proc.communicate(timeout=1500)
        err.close()
        assert proc.returncode == 0, (tmp_path / f"second-w{len(results)}.err").read_text()[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # the same step count as an uninterrupted run, on both workers; the chief alone wrote
    assert [r["steps"] for r in results] == [STEPS, STEPS]
    assert [r["chief"] for r in results] == [True, False]
    # the loss curve continues: every step once, and the repeated steps (logged before the kill,
    # after the checkpoint) give the same losses again: the resumed run is the interrupted one
    after = _history(log_root)
    assert [int(r["step"]) for r in after] == list(range(1, STEPS + 1))
    repeated = [s for s in before if s > killed_at]
    for step in repeated:
        np.testing.assert_allclose(after[step - 1]["loss"], before[step]["loss"], rtol=1e-4)
    losses = np.array([r["loss"] for r in after])
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    logs = [(tmp_path / f"second-w{i}.err").read_text() for i in range(2)]
    assert all(f"resuming at step {killed_at}" in log for log in logs)
    # checkpoints every EVAL_EVERY steps and at the end (the newest two kept), none left half
    assert sorted(os.listdir(log_root / "ckpt")) == ["ckpt-10", "ckpt-8", "latest"]
    # each worker read its own shards
    shards = []
    for i, log in enumerate(logs):
        line = next(l for l in log.splitlines() if f"input pipeline {i}/2 reads" in l)
        shards.append(set(line.rsplit(": ", 1)[1].split(",")))
    assert shards[0] and shards[1] and not shards[0] & shards[1]
