"""Run a smoke training under a strategy in a fresh process (tests/training/test_distribute.py).

Usage: python distributed_run.py LOG_ROOT STRATEGY [NUM_STEPS]. With STRATEGY=mirrored the CPU is
split into two logical devices before TensorFlow initialises, so MirroredStrategy has 2 replicas.
Prints one JSON line: replicas, steps, whether this process is the chief, and (chief only: the
other workers write no checkpoints) the GMM mixing weights of the saved model.
"""

import json
import sys

import tensorflow as tf


def main():
    log_root, kind = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from hparams import get_preset
    from sketchtk.training.distribute import get_strategy, is_chief
    from sketchtk.training.trainer import load_trained_model, train_and_evaluate

    strategy = get_strategy(kind)
    hp = get_preset("smoke").replace(num_steps=steps, eval_every=2)
    result = train_and_evaluate(hp, log_root, strategy=strategy, verbose=0)
    out = {"replicas": strategy.num_replicas_in_sync, "steps": result.steps,
           "chief": is_chief(strategy)}
    if out["chief"]:  # only the chief writes checkpoints
        model, _ = load_trained_model(log_root, which="latest")
        out.update(alpha=[float(a) for a in model.gmm.alpha.numpy()], best=result.best_value)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
