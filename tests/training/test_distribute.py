"""Training under tf.distribute: MirroredStrategy on 2 logical CPUs, multi-worker on loopback."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.training.distribute import get_strategy

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _run(args, env=None, timeout=400):
    env = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
    return subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_run.py"), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc, timeout=400):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_get_strategy_rejects_unknown_name():
    with pytest.raises(ValueError, match="mirrored"):
        get_strategy("tpu")


def test_default_strategy_on_cpu():
    assert get_strategy("auto").num_replicas_in_sync == 1


@pytest.mark.slow
def test_mirrored_two_replicas_trains(tmp_path):
    result = _result(_run([str(tmp_path), "mirrored", "4"]))
    assert result["replicas"] == 2 and result["steps"] == 4
    alpha = np.array(result["alpha"])
    assert np.all(np.isfinite(alpha)) and abs(alpha.sum() - 1.0) < 1e-5
    assert np.isfinite(result["best"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_on_loopback(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(_run([str(tmp_path / f"w{i}"), "auto", "2"], env={"TF_CONFIG": tf_config}))
    results = [_result(p, timeout=600) for p in procs]
    assert all(r["replicas"] == 2 and r["steps"] == 2 for r in results)
    assert [r["chief"] for r in results] == [True, False]
    alpha = np.array(results[0]["alpha"])
    assert np.all(np.isfinite(alpha)) and abs(alpha.sum() - 1.0) < 1e-5
    assert np.isfinite(results[0]["best"])
    # The second worker trained in lockstep but wrote no checkpoint of its own.
    assert not os.path.exists(tmp_path / "w1" / "ckpt")
