"""Evaluate generated sketches: Ret (latent retrieval) and Rec (classifier accuracy).

``python retrieval.py --model_dir=DIR --sample_dir=DIR [--classifier_dir=DIR] [--data_dir=DIR]``
(``--output_dir`` is accepted as an alias of ``--sample_dir``, as the reference code read it).
Prints the metrics and writes ``<sample_dir>/metrics.json`` and ``latent_space.png``.
"""

import json
import sys

from absl import app, flags

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
    from sketchtk.errors import DataError
    from sketchtk.metrics.evaluate import run_evaluation
    try:
        metrics = run_evaluation(FLAGS.model_dir, sample_dir, FLAGS.classifier_dir,
                                 FLAGS.data_dir, FLAGS.block_size)
    except (DataError, FileNotFoundError, ValueError) as err:
        sys.exit(f"retrieval.py: error: {err}")
    sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    app.run(main)
