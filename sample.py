"""Generate sketches from a trained model.

``python sample.py --model_dir=DIR --output_dir=DIR --num_per_category=N --conditional=True|False
[--data_dir=DIR] [--temperature=0.24] [--component=K] [--seed=S] [--batch_size=B]
[--interpolate=A,B]``

A ``stroke_diffusion`` run takes ``[--sampler=ddpm|ddim] [--steps=N] [--eta=E]
[--variance_strength=S] [--guidance=G] [--show_process=True]`` instead of the latent options.
A ``raster_diffusion`` run takes the same sampler options (not ``--show_process``) and writes
images: ``<name>_<i>.png``, ``grid.png``, ``samples.npz`` (``sketchtk.sampling.raster_generate``).
"""

from sketchtk import cli

cli.quiet_tensorflow()  # before anything imports TensorFlow

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_dir", "runs/default", "A train.py --log_root.")
flags.DEFINE_string("output_dir", "samples", "Where to write the sketches.")
flags.DEFINE_integer("num_per_category", 300, "Samples per category (>= 1).")
flags.DEFINE_boolean("conditional", True, "Condition on test references (else: the learned prior).")
flags.DEFINE_string("data_dir", None, "Test data (default: what the model was trained on).")
flags.DEFINE_float("temperature", 0.24, "Sampling temperature.")
flags.DEFINE_enum("std_scaling", "tau", ["tau", "sqrt_tau"],
                  "What the temperature does to the offset std: tau (the reference codes) or "
                  "sqrt_tau (the papers' sigma^2 * tau).")
flags.DEFINE_integer("component", None, "Unconditional: draw z from this GMM component.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("batch_size", 100, "Sketches decoded at once (>= 1).")
flags.DEFINE_list("interpolate", None, "Two pooled test indices A,B: a latent interpolation row.")
flags.DEFINE_boolean("write_files", True, "Write per-sample svg/png/npy files.")
# stroke_diffusion runs (model=stroke_diffusion); --conditional=True means class-conditional there
flags.DEFINE_enum("sampler", "ddpm", ["ddpm", "ddim", "shortcut"],
                  "Diffusion: the reverse-process sampler (shortcut: r-Shortcut, needs "
                  "--shortcut_regressor).")
flags.DEFINE_integer("steps", None, "Diffusion: sampling steps (default: all T; fewer = respaced).")
flags.DEFINE_float("eta", 0.0, "Diffusion, DDIM: the noise eta (0 = deterministic, 1 = DDPM).")
flags.DEFINE_float("variance_strength", 1.0, "Diffusion, DDPM: ChiroDiff's s (sigma = s * "
                   "sqrt(posterior variance); 0.75 in its tests).")
flags.DEFINE_float("guidance", 1.0, "Diffusion, class-conditional: classifier-free guidance "
                   "scale (0 = unconditional, 1 = conditional, > 1 = stronger class).")
flags.DEFINE_boolean("show_process", False, "Diffusion: also write process.png (x_t along the "
                     "reverse process) and process.gif.")
# diffusion applications (sketchtk.sampling.diffusion_apps); a SOURCE is test:K (or K), or a .npy
flags.DEFINE_string("vectorise_from", None, "Diffusion, cond_encoder=pointcloud: a SOURCE whose "
                    "points (shuffled) are vectorised into strokes (.npy [N, 2] = a point set).")
flags.DEFINE_string("abstract_from", None, "Diffusion, cond_encoder=sketch: a SOURCE sketch "
                    "redrawn from its RDP simplification (see --rdp_epsilon).")
flags.DEFINE_list("rdp_epsilon", ["0", "0.05", "0.15"], "Abstraction: RDP tolerances (fractions "
                  "of the sketch's radius), one row each.")
flags.DEFINE_list("heal_from", None, "Diffusion: SOURCE sketches to corrupt and heal.")
flags.DEFINE_list("heal_t", ["0", "10", "30"],
                  "Healing: steps T (noise to t = T - 1, denoise back).")
flags.DEFINE_list("corrupt", ["noise"], "Healing: corruptions, from noise, jitter, drop.")
flags.DEFINE_float("corrupt_strength", 0.05, "Healing: noise / jitter std, fraction of the radius.")
flags.DEFINE_list("mix", None, "Diffusion: two SOURCE sketches A,B: a row between their DDIM "
                  "inversions (noise slerp, conditioning mix).")
flags.DEFINE_integer("mix_steps", 7, "Mixing: sketches in the row (the ends included).")
flags.DEFINE_enum("mix_what", "both", ["both", "noise", "cond"], "Mixing: what is interpolated.")
flags.DEFINE_integer("invert", None, "Diffusion: DDIM round trip of the first N test sketches.")
flags.DEFINE_integer("app_samples", 5, "Vectorisation / abstraction: samples per condition.")
flags.DEFINE_float("cond_guidance", 1.0, "Vectorisation / abstraction: guidance scale on the "
                   "encoder's vector, u + g (c - u) with u the zero vector (1 = none, > 1 = follow "
                   "the condition more; needs a model trained with cond_drop_prob > 0).")
flags.DEFINE_string("shortcut_regressor", None, "--sampler=shortcut: the regressor .keras file "
                    "(trained there first when missing and --classifier_dir is given).")
flags.DEFINE_string("classifier_dir", None, "--sampler=shortcut: the Sketch-a-Net run whose "
                    "confidence the regressor learns.")
flags.DEFINE_float("shortcut_threshold", 0.9, "r-Shortcut: stop once the predicted "
                   "recognisability reaches this.")
flags.DEFINE_integer("shortcut_min_steps", 1, "r-Shortcut: denoiser calls before a stop.")
flags.DEFINE_enum("shortcut_base", "ddpm", ["ddpm", "ddim"], "r-Shortcut: the plain sampler "
                  "underneath (--steps of it).")
flags.DEFINE_integer("shortcut_stride_steps", 0, "r-Shortcut: 0 = jump to the x0-prediction; "
                     "K = switch to the K-step respaced DDIM schedule (larger strides).",
                     lower_bound=0)
FLAGS = flags.FLAGS


def _diffusion_flags():
    """The stroke_diffusion sampling options, checked (ignored by the VAE path)."""
    if FLAGS.steps is not None and FLAGS.steps < 1:
        raise app.UsageError(f"--steps={FLAGS.steps}: must be >= 1")
    for name in ("eta", "variance_strength", "guidance"):
        value = getattr(FLAGS, name)
        if not 0.0 <= value < float("inf"):
            raise app.UsageError(f"--{name}={value}: must be a finite number >= 0")
    return {"sampler": FLAGS.sampler, "steps": FLAGS.steps, "eta": FLAGS.eta,
            "variance_strength": FLAGS.variance_strength, "guidance": FLAGS.guidance,
            "show_process": FLAGS.show_process}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # every flag is checked before the model loads: nothing is sampled or written on a typo
    interpolate = _interpolation_flag(FLAGS.interpolate)
    cli.check_positive("temperature", FLAGS.temperature)
    cli.check_positive("num_per_category", FLAGS.num_per_category)
    cli.check_positive("batch_size", FLAGS.batch_size)
    if FLAGS.component is not None and FLAGS.component < 0:
        raise app.UsageError(f"--component={FLAGS.component}: must be >= 0")
    cli.check_run_dir("model_dir", FLAGS.model_dir)
    cli.check_dir("data_dir", FLAGS.data_dir)
    cli.check_dir("output_dir", FLAGS.output_dir, must_exist=False)
    from sketchtk.sampling import raster_generate
    if raster_generate.is_raster_run(FLAGS.model_dir):  # images: PNGs, grid.png, samples.npz
        raster_generate.run_from_flags(FLAGS)
        return
    from sketchtk.sampling import diffusion_apps
    if diffusion_apps.requested(FLAGS):  # vectorise / abstract / heal / mix / invert / shortcut
        diffusion_apps.run_from_flags(FLAGS)
        return
    if FLAGS.cond_guidance != 1.0:
        raise app.UsageError(f"--cond_guidance={FLAGS.cond_guidance:g} guides vectorisation / "
                             "abstraction only (--vectorise_from, --abstract_from)")
    from sketchtk.sampling.generate import run_sampling
    run_sampling(FLAGS.model_dir, FLAGS.output_dir, FLAGS.num_per_category, FLAGS.conditional,
                 FLAGS.data_dir, FLAGS.temperature, FLAGS.component, FLAGS.seed,
                 FLAGS.batch_size, interpolate, FLAGS.write_files,
                 std_scaling=FLAGS.std_scaling, diffusion=_diffusion_flags())


def _interpolation_flag(values):
    """``--interpolate=A,B`` as two ints (range checked against the test set later, still
    before sampling)."""
    if values is None:
        return None
    try:
        if len(values) != 2:
            raise ValueError
        return tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--interpolate={','.join(values)}: takes two integer indices A,B "
                             "into the pooled test set, e.g. --interpolate=0,12") from None


if __name__ == "__main__":
    cli.run(main)
