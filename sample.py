"""Generate sketches from a trained model.

``python sample.py --model_dir=DIR --output_dir=DIR --num_per_category=N --conditional=True|False
[--data_dir=DIR] [--temperature=0.24] [--component=K] [--seed=S] [--batch_size=B]
[--interpolate=A,B]``
"""

import sys

from absl import app, flags

flags.DEFINE_string("model_dir", "runs/default", "A train.py --log_root.")
flags.DEFINE_string("output_dir", "samples", "Where to write the sketches.")
flags.DEFINE_integer("num_per_category", 300, "Samples per category.")
flags.DEFINE_boolean("conditional", True, "Condition on test references (else: the learned prior).")
flags.DEFINE_string("data_dir", None, "Test data (default: what the model was trained on).")
flags.DEFINE_float("temperature", 0.24, "Sampling temperature.")
flags.DEFINE_integer("component", None, "Unconditional: draw z from this GMM component.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("batch_size", 100, "Sketches decoded at once.")
flags.DEFINE_list("interpolate", None, "Two pooled test indices A,B: a latent interpolation row.")
flags.DEFINE_boolean("write_files", True, "Write per-sample svg/png/npy files.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.interpolate is not None and len(FLAGS.interpolate) != 2:
        raise app.UsageError("--interpolate takes two indices: A,B")
    if FLAGS.temperature <= 0:
        raise app.UsageError("--temperature must be positive")
    from sketchtk.errors import DataError
    from sketchtk.sampling.generate import run_sampling
    try:
        run_sampling(FLAGS.model_dir, FLAGS.output_dir, FLAGS.num_per_category, FLAGS.conditional,
                     FLAGS.data_dir, FLAGS.temperature, FLAGS.component, FLAGS.seed,
                     FLAGS.batch_size, FLAGS.interpolate, FLAGS.write_files)
    except (DataError, FileNotFoundError, ValueError) as err:
        sys.exit(f"sample.py: error: {err}")


if __name__ == "__main__":
    app.run(main)
