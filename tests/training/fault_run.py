"""One worker of a multi-worker smoke training over sharded TFRecords (tests/training/test_fault_tolerance.py).

Usage: python fault_run.py LOG_ROOT DATA_DIR NUM_STEPS EVAL_EVERY, with TF_CONFIG naming the
cluster and this worker. Every worker gets the same LOG_ROOT (a shared directory, as several
machines would mount): the chief alone writes there, every worker resumes from its newest
checkpoint. Prints one JSON line: steps, replicas, chief.
"""

import json
import sys


def main():
    log_root, data_dir, steps, eval_every = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4])
    from absl import logging
    logging.set_verbosity(logging.INFO)  # the test reads the resume and shard lines
    from hparams import get_preset
    from sketchtk.training.distribute import get_strategy, is_chief
    from sketchtk.training.trainer import train_and_evaluate

    strategy = get_strategy("auto")
    hp = get_preset("smoke").replace(num_steps=steps, eval_every=eval_every, valid_batches=1,
                                     early_stop_patience=100)
    result = train_and_evaluate(hp, log_root, data_dir, strategy=strategy, verbose=0)
    print(json.dumps({"steps": result.steps, "replicas": strategy.num_replicas_in_sync,
                      "chief": is_chief(strategy)}))


if __name__ == "__main__":
    main()
