"""Evaluate generated sketches of any model family: Ret, Rec, FID / precision / recall.

Rec, FID, precision and recall need ``--classifier_dir``; FID / precision / recall are in the
Sketch-a-Net's feature space, not comparable to Inception-space numbers in papers (README, Metrics).

``python retrieval.py --model_dir=DIR --sample_dir=DIR [--classifier_dir=DIR] [--data_dir=DIR]``
(``--output_dir`` is accepted as an alias of ``--sample_dir``, as the reference code read it).
Prints the metrics and writes ``<sample_dir>/metrics.json`` and ``latent_space.png``.
"""

import json
import os
import sys

from sketchtk import cli

cli.quiet_tensorflow()  # before anything imports TensorFlow

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_dir", "runs/default", "The sketch model (a train.py --log_root).")
flags.DEFINE_string("sample_dir", None, "Where sample.py wrote samples.npz.")
flags.DEFINE_string("output_dir", None, "Alias of --sample_dir (the reference's name).")
flags.DEFINE_string("classifier_dir", None, "A Sketch-a-Net run (train.py model=sketch_a_net).")
flags.DEFINE_string("data_dir", None, "Test data (default: what the model was trained on).")
flags.DEFINE_integer("block_size", 1024, "Queries per retrieval block (bounds memory).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sample_dir = FLAGS.sample_dir or FLAGS.output_dir
    if not sample_dir:
        raise app.UsageError("--sample_dir (or --output_dir) is required")
    # checked before anything loads: a typo costs a second, not the model and test-set encoding
    flag = "sample_dir" if FLAGS.sample_dir else "output_dir"
    cli.check_dir(flag, sample_dir)
    if not os.path.isfile(os.path.join(sample_dir, "samples.npz")):
        raise app.UsageError(f"--{flag}={sample_dir}: has no samples.npz; run sample.py "
                             f"--output_dir={sample_dir} first")
    cli.check_run_dir("model_dir", FLAGS.model_dir)
    if FLAGS.classifier_dir:
        cli.check_run_dir("classifier_dir", FLAGS.classifier_dir)
    cli.check_dir("data_dir", FLAGS.data_dir)
    cli.check_positive("block_size", FLAGS.block_size)
    from sketchtk.metrics.evaluate import run_evaluation
    metrics = run_evaluation(FLAGS.model_dir, sample_dir, FLAGS.classifier_dir,
                             FLAGS.data_dir, FLAGS.block_size)
    sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    cli.run(main)
