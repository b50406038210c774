"""Train a sketch model: ``python train.py [--preset=default] [--hparams="k=v,..."] [--data_dir=DIR]``.

Flags follow the RPCL-pix2seq reference (``--log_root``, ``--data_dir``, ``--resume_training``,
``--hparams`` with ``key=value`` items and bracketed lists). With no ``--data_dir`` the embedded
QuickDraw subset is used.
"""

from sketchtk import cli

cli.quiet_tensorflow()  # before anything imports TensorFlow

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("data_dir", None, "Directory of <category>.npz files, or of sharded TFRecords "
                    "with a metadata.json (pack_quickdraw --format=tfrecord; streamed) "
                    "(default: embedded data).")
flags.DEFINE_string("log_root", "runs/default", "Run directory (checkpoints, history, config).")
flags.DEFINE_boolean("resume_training", True, "Continue the run in --log_root if it has one.")
flags.DEFINE_string("preset", "default", "Preset from hparams/ (hparams.PRESETS), e.g. paper, "
                    "default, quickstart or smoke.")
flags.DEFINE_string("hparams", "", 'Overrides, e.g. "categories=[bee,bus],dec_model=hyper".')
flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "multi_worker", "default"],
                  "tf.distribute strategy (auto: multi-worker from TF_CONFIG, GPUs, else CPU).")
flags.DEFINE_integer("verbose", None, "Keras progress output: 0 silent, 1 progress bar, 2 one "
                     "line per validation (default: 1 on a terminal, else 2).", lower_bound=0,
                     upper_bound=2)
flags.DEFINE_integer("tensorboard_samples", 8, "Conditional samples of fixed validation "
                     "sketches drawn into TensorBoard at each validation (0: none).",
                     lower_bound=0)
flags.DEFINE_string("init_from", None, "Start a new run from this run directory's best weights "
                    "where their path and shape match (e.g. a class-conditional diffusion run "
                    "for a cond_encoder run); a resumed run ignores it.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.check_dir("data_dir", FLAGS.data_dir)
    cli.check_dir("log_root", FLAGS.log_root, must_exist=False)
    cli.check_dir("init_from", FLAGS.init_from)
    from hparams import get_preset
    from sketchtk.config import parse_overrides
    from sketchtk.training.distribute import get_strategy
    from sketchtk.training.trainer import train_and_evaluate

    hparams = parse_overrides(get_preset(FLAGS.preset), FLAGS.hparams)
    verbose = cli.progress_verbose() if FLAGS.verbose is None else FLAGS.verbose
    result = train_and_evaluate(hparams, FLAGS.log_root, FLAGS.data_dir, FLAGS.resume_training,
                                strategy=get_strategy(FLAGS.strategy), verbose=verbose,
                                tensorboard_samples=FLAGS.tensorboard_samples,
                                export_keras=True, init_from=FLAGS.init_from)
    logging.info("done: %s", result)


if __name__ == "__main__":
    cli.run(main)
