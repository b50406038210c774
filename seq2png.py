"""Render sketch-rnn ``.npz`` categories to ``<category>_png.npz`` image arrays.

    python seq2png.py --input_dir=DIR --output_dir=OUT --png_width=48 --categories=bee,bus
    python seq2png.py --input_dir=DIR --output_dir=OUT --categories={'bee','bus'}   # README form
"""

from sketchtk import cli

cli.quiet_tensorflow()  # before anything imports TensorFlow

from absl import app, flags, logging  # noqa: E402

from sketchtk.render.seq2png import run_seq2png  # noqa: E402

flags.DEFINE_string("input_dir", None, "Directory with <category>.npz stroke files.")
flags.DEFINE_string("output_dir", None, "Directory for <category>_png.npz (default: input_dir).")
flags.DEFINE_integer("png_width", 48, "Image side in pixels (>= 1).")
flags.DEFINE_multi_string("categories", None,
                          "Categories: comma-separated, repeated, or {'a','b'} (quotes, braces "
                          "and brackets are stripped).")
flags.DEFINE_enum("renderer", "fast", ["fast", "cairo", "cairo_direct"],
                  "fast: TF/XLA rasteriser; cairo: svgwrite + cairosvg (the reference path); "
                  "cairo_direct: the same pixels through cairo's API (several times faster).")
flags.mark_flags_as_required(["input_dir", "categories"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.check_positive("png_width", FLAGS.png_width)
    cli.check_dir("input_dir", FLAGS.input_dir)
    cli.check_dir("output_dir", FLAGS.output_dir, must_exist=False)
    counts = run_seq2png(FLAGS.input_dir, FLAGS.output_dir or FLAGS.input_dir, FLAGS.categories,
                         png_width=FLAGS.png_width, renderer=FLAGS.renderer)
    logging.info("seq2png done: %s", counts)


if __name__ == "__main__":
    cli.run(main)
