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


def num_workers(strategy):
    """Workers in the cluster of ``strategy`` (1 outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def check_workers_agree(strategy, value, what):
    """Raise ``RunError`` on every worker unless all workers hold the same integer ``value``.

    Multi-worker fault tolerance resumes every worker from the chief's newest checkpoint, so each
    worker must read the same run directory (a shared file system, as for Keras'
    ``BackupAndRestore`` ``backup_dir``); a worker that finds another step would train different
    weights in lockstep. One all-gather of the value settles it.
    """
    from sketchtk.errors import RunError
    if num_workers(strategy) < 2:
        return
    local = tf.constant([value], tf.int64)
    values = strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0).numpy()
    high, low = int(values.max()), int(values.min())
    if high != low:
        raise RunError(f"the workers disagree on the {what} (between {low} and {high}; this "
                       f"worker has {value}): every worker must see the same --log_root (a "
                       "shared file system) so that all resume from the chief's checkpoint")


def distribute_per_worker(strategy, make_dataset_fn, global_batch, start_step):
    """``strategy.distribute_datasets_from_function`` over ``make_dataset_fn``, which is called
    per input pipeline as ``make_dataset_fn(batch_size=..., start_step=..., input_context=ctx)``
    and must read only that pipeline's part of the data (e.g. its own shards).

    Each pipeline yields per-replica batches; one global step takes one batch per local replica,
    so a run resumed at ``start_step`` skips ``start_step * local replicas`` batches there.
    """
    def dataset_fn(ctx):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        return make_dataset_fn(batch_size=per_replica, start_step=start_step * local_replicas,
                               input_context=ctx)
    return strategy.distribute_datasets_from_function(dataset_fn)
