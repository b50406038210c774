"""The one place that touches ``tf.distribute``."""

import json
import os

import tensorflow as tf
from absl import logging


def get_strategy(kind="auto"):
    """Pick the distribution strategy.

    Args:
      kind: ``"auto"``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names more than one worker,
        else MirroredStrategy over all GPUs when there are several (or one), else the default
        strategy (CPU). ``"mirrored"`` forces MirroredStrategy over every logical device of the
        first kind found (GPUs, else CPUs: lets tests exercise it with split logical CPUs).
        ``"multi_worker"`` forces MultiWorkerMirroredStrategy; ``"default"`` the default strategy.

    Returns:
      A ``tf.distribute.Strategy``; the global batch is split across its replicas.
    """
    allowed = ("auto", "mirrored", "multi_worker", "default")
    if kind not in allowed:
        raise ValueError(f"unknown strategy {kind!r}; choose one of {list(allowed)}")
    if kind == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if len(cluster.get("worker", [])) > 1:
            kind = "multi_worker"
        elif tf.config.list_logical_devices("GPU"):
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy):
    """True on the worker that writes files (the only one outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
