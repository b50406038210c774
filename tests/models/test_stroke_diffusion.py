"""StrokeDiffusion on the embedded real QuickDraw data: guidance, pen decoding, save / reload,
training through the shared trainer and sampling through sample.py's job."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.pipeline import make_dataset
from sketchtk.models.stroke_diffusion import StrokeDiffusion
from sketchtk.training import trainer


def _hp(**changes):
    return get_preset("diffusion_smoke").replace(class_conditional=True, **changes)


@pytest.fixture(scope="module")
def point_data():
    return ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES), max_points=96)


def _model(point_data, hp):
    stats = ps.point_data_statistics(point_data, hp.representation)
    model = StrokeDiffusion(hp, point_data.max_seq_len, stats["point_stats"],
                            stats["length_model"], DEFAULT_CATEGORIES)
    model.build_from_batch(model.dummy_batch())
    return model


@pytest.fixture(scope="module")
def valid_batch(point_data):
    return next(iter(make_dataset(point_data, "valid", _hp(batch_size=6), training=False)))


def test_guidance_scale_zero_equals_the_unconditional_model(point_data, valid_batch):
    model = _model(point_data, _hp(pen_mode="head"))
    mask = valid_batch["mask"]
    x0 = model.normalise(valid_batch["points"], mask)
    t = tf.constant([1, 9, 19, 29, 39, 49])
    x_t = model.process.q_sample(x0, t, tf.random.stateless_normal(tf.shape(x0), (0, 1)))
    labels = valid_batch["labels"]
    uncond = model.denoise(x_t, t, mask)  # the null label
    cond = model.denoise(x_t, t, mask, labels)
    for got, want in zip(model.denoise(x_t, t, mask, labels, guidance=0.0), uncond):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(cond[0], uncond[0], atol=1e-4)  # the label does matter
    g2 = model.denoise(x_t, t, mask, labels, guidance=2.0)
    np.testing.assert_allclose(g2[0], 2 * cond[0] - uncond[0], atol=1e-4)


def test_x0_loss_weighting_scales_each_examples_eps_mse_by_its_clipped_inverse_snr(
        point_data, valid_batch):
    model = _model(point_data, _hp())
    weights = model.process.loss_weight(tf.constant([0, 10, 25, 16, 22, 49]), 50.0).numpy()
    ab = model.process.alphabar(tf.constant([16, 22])).numpy()
    np.testing.assert_allclose(weights[3:5], np.clip((1 - ab) / ab, 1, 50), rtol=1e-5)
    assert weights[0] == 1.0 and weights[-1] == 50.0 and 1.0 < weights[3] < weights[4]
    uniform = float(model.compute_losses(valid_batch)["diffusion_loss"])
    model.hparams = model.hparams.replace(loss_weighting="x0", loss_weight_max=50.0)
    weighted = float(model.compute_losses(valid_batch)["diffusion_loss"])
    # the same validation draws (fixed per batch): rebuild the weighted mean by hand
    mask = tf.cast(valid_batch["mask"], tf.float32)
    x0 = model.normalise(tf.cast(valid_batch["points"], tf.float32), mask)
    t, noise, _ = model._draws(valid_batch, False)
    noise = noise * mask[..., None]
    x_t = model.process.q_sample(x0, t, noise) * mask[..., None]
    out, _ = model.denoise(x_t, t, mask, valid_batch["labels"])
    per_example = model.process.loss(out, x0, noise, t, mask)
    np.testing.assert_allclose(uniform, float(tf.reduce_mean(per_example)), rtol=1e-5)
    want = float(tf.reduce_mean(per_example * model.process.loss_weight(t, 50.0)))
    np.testing.assert_allclose(weighted, want, rtol=1e-5)
    assert weighted > 1.5 * uniform  # the noisy steps now count
    with pytest.raises(ValueError, match="loss_weighting"):
        _hp(loss_weighting="x0", parametrisation="v").validated()


def test_pen_head_is_decoded_from_softmax_probabilities(point_data):
    model = _model(point_data, _hp(pen_mode="head"))
    x0 = np.zeros((1, 8, 2), np.float32)
    mask = np.zeros((1, 8), np.float32)
    mask[0, :4] = 1
    # (pen-down, pen-up) logits. SketchKnitter thresholds the raw pen-down logit (>= 0.5 -> "up"):
    # row 0 would lift the pen there although pen-down is the likely class, row 1 would not.
    logits = np.array([[[2.0, 1.0], [-5.0, -4.0], [0.0, 3.0], [1.0, 0.0]] + [[0, 0]] * 4],
                      np.float32)
    (sketch,) = model.to_strokes(x0, logits, mask)
    np.testing.assert_array_equal(sketch[:, 2], [0, 1, 1, 1])  # last real point always lifts


def test_xla_compiled_reverse_loop_draws_the_same_samples(point_data):
    # x0-prediction keeps an untrained model's chain bounded (eps-prediction divides by
    # sqrt(alphabar_T) and amplifies float rounding chaotically)
    hp = _hp(denoiser="bigru", denoiser_units=8, denoiser_layers=1, parametrisation="x0")
    model = _model(point_data, hp.replace(sample_xla="on"))
    assert model.sample_xla and not _model(point_data, hp).sample_xla  # auto: plain (measured)
    plain = _model(point_data, hp.replace(sample_xla="off"))
    plain.set_weights(model.get_weights())
    lengths, labels = [5, 12, 30], [0, 2, 4]
    for sampler, eta in (("ddim", 0.0), ("ddpm", 0.0), ("ddim", 0.7)):
        got = model.generate(lengths, labels, sampler, 6, eta, seed=3)
        want = plain.generate(lengths, labels, sampler, 6, eta, seed=3)
        assert not plain.sample_xla
        mask = np.asarray(want[2])[..., None]
        np.testing.assert_allclose(np.asarray(got[0]) * mask, np.asarray(want[0]) * mask,
                                   atol=2e-4)
        assert np.abs(np.asarray(want[0]) * mask).max() > 0.1  # a real sample, not all zeros


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    """A 6-step class-conditional ``diffusion_smoke`` run with a pen head, through the trainer."""
    log_root = str(tmp_path_factory.mktemp("diffusion_run"))
    result = trainer.train_and_evaluate(_hp(pen_mode="head"), log_root, verbose=0)
    assert result.steps == 6
    return log_root


@pytest.fixture(scope="module")
def trained(diffusion_run):
    return trainer.load_trained_model(diffusion_run)


def test_keras_round_trip_and_ema_weights(trained, valid_batch, tmp_path):
    model, _ = trained
    path = str(tmp_path / "diffusion.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for key, value in model.compute_losses(valid_batch).items():
        np.testing.assert_allclose(reloaded.compute_losses(valid_batch)[key], value, rtol=1e-5)
    for a, b in zip(model.ema, reloaded.ema):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the EMA moved away from the training weights and is swapped in only inside the context
    before = [w.numpy() for w in model.trainable_weights]
    assert any(not np.allclose(a.numpy(), w) for a, w in zip(model.ema, before))
    with model.ema_weights():
        np.testing.assert_allclose(model.trainable_weights[0].numpy(), model.ema[0].numpy())
    for w, b in zip(model.trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_smoke_training_through_the_trainer_lowers_the_loss(diffusion_run, trained):
    with open(os.path.join(diffusion_run, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [float(r["loss"]) for r in rows]
    assert np.all(np.isfinite(losses)) and {"diffusion_loss", "pen_xent", "lr"} <= set(rows[0])
    assert np.mean(losses[-2:]) < losses[0]
    config = trainer.read_json(os.path.join(diffusion_run, "model_config.json"))
    assert config["max_seq_len"] % ps.PAD_MULTIPLE == 0
    assert len(config["length_model"]["counts"]) == len(DEFAULT_CATEGORIES)
    model, _ = trained
    assert model.point_stats == ps.PointStats.from_dict(config["point_stats"])
    assert os.path.exists(os.path.join(diffusion_run, "ckpt", "ckpt-6", "weights.weights.h5"))


def test_sampling_job_writes_sketches_with_valid_pen_structure(diffusion_run, tmp_path):
    from sketchtk.sampling.generate import run_sampling
    out = str(tmp_path / "samples")
    options = dict(sampler="ddim", steps=5, guidance=1.5, show_process=True)
    result = run_sampling(diffusion_run, out, num_per_category=2, conditional=True,
                          batch_size=4, diffusion=options)  # several length-sorted batches
    assert len(result["strokes"]) == 2 * len(DEFAULT_CATEGORIES)
    names = sorted(os.listdir(out))
    for expected in ("grid.png", "grid.svg", "samples.npz", "process.png", "process.gif",
                     "process_forward.png",
                     "stairs_0.svg", "triangle_1.png"):
        assert expected in names
    bundle = np.load(os.path.join(out, "samples.npz"), allow_pickle=True)
    assert len(bundle["strokes"]) == 2 * len(DEFAULT_CATEGORIES)
    np.testing.assert_array_equal(bundle["labels"], np.repeat(np.arange(5), 2))
    for sketch, length in zip(bundle["strokes"], bundle["lengths"]):
        assert sketch.shape == (length, 3) and np.all(np.isfinite(sketch))
        assert set(np.unique(sketch[:, 2])) <= {0.0, 1.0} and sketch[-1, 2] == 1
    from PIL import Image
    gif = Image.open(os.path.join(out, "process.gif"))
    assert gif.n_frames > 3
    with pytest.raises(ValueError, match="--steps=80"):
        run_sampling(diffusion_run, out, 1, True, diffusion=dict(steps=80))


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _loss_falls(log_root):
    with open(os.path.join(log_root, "history.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("preset,overrides", [
    ("chirodiff", "num_steps=8,eval_every=4,log_every=1,batch_size=16,class_conditional=True"),
    ("sketchknitter", "num_steps=8,eval_every=4,log_every=1,batch_size=16,denoiser_units=16,"
                      "learning_rate=1e-3"),
    ("diffusion_smoke", "denoiser=bigru,num_steps=8,eval_every=4,representation=absolute"),
    ("diffusion_smoke", "denoiser=unet1d,num_steps=8,eval_every=4,parametrisation=v"),
])
def test_preset_trains_through_train_py_and_sample_py_writes_sketches(preset, overrides, tmp_path):
    import subprocess
    import sys
    run, out = str(tmp_path / "run"), str(tmp_path / "samples")
    subprocess.run([sys.executable, "train.py", f"--preset={preset}", f"--hparams={overrides}",
                    f"--log_root={run}", "--verbose=0"], cwd=REPO, check=True, timeout=1200)
    _loss_falls(run)
    conditional = "class_conditional=True" in overrides
    subprocess.run([sys.executable, "sample.py", f"--model_dir={run}", f"--output_dir={out}",
                    "--num_per_category=2", f"--conditional={conditional}", "--sampler=ddim",
                    "--steps=10", "--eta=0.5"], cwd=REPO, check=True, timeout=1200)
    bundle = np.load(os.path.join(out, "samples.npz"), allow_pickle=True)
    assert len(bundle["strokes"]) == 10
    for sketch in bundle["strokes"]:
        assert np.all(np.isfinite(sketch)) and sketch[-1, 2] == 1
        assert set(np.unique(sketch[:, 2])) <= {0.0, 1.0}


@pytest.mark.slow
def test_resumed_diffusion_run_is_bit_identical(tmp_path):
    import h5py
    hp = _hp(num_steps=4, eval_every=2)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    trainer.train_and_evaluate(hp, straight, verbose=0)
    trainer.train_and_evaluate(hp.replace(num_steps=2), resumed, verbose=0)
    trainer.train_and_evaluate(hp, resumed, verbose=0)

    def weights(root):
        out = {}
        with h5py.File(os.path.join(root, "ckpt", "ckpt-4", "weights.weights.h5")) as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                         else None)
        return out
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _strokes_per_sketch(sketches):
    return float(np.mean([max(1, int(s[:, 2].sum())) for s in sketches]))


@pytest.mark.slow
def test_short_real_training_draws_as_many_strokes_per_sketch_as_the_data(tmp_path):
    """Issue 8's pen-lift check: after a short real training (800 steps of a 3 x 64 transformer on
    the embedded drawings resampled at 0.1 of the radius, about 4 min on 2 cores) the DDPM samples'
    mean strokes per sketch is within 30% of the training data's (measured: 4.12 vs 4.13). A
    pen state decoded the wrong way round, or from the raw pen-down logit as SketchKnitter's
    ``sample.py:79-88`` does, gives dashed strokes (many more) or none (one stroke per sketch)."""
    from sketchtk.sampling.generate import run_sampling
    hp = get_preset("diffusion_smoke").replace(
        num_steps=800, eval_every=400, log_every=50, denoiser_units=64, denoiser_layers=3,
        batch_size=32, learning_rate=2e-3, ema_decay=0.995, resample_spacing=0.1, max_seq_len=96)
    run = str(tmp_path / "run")
    trainer.train_and_evaluate(hp, run, verbose=0)
    data = ps.prepare_point_data(load_sketch_data(None, hp.categories), hp.resample_spacing,
                                 hp.rdp_epsilon, hp.max_seq_len)
    real = _strokes_per_sketch(data["train"].sketches)
    result = run_sampling(run, str(tmp_path / "samples"), num_per_category=10, conditional=False,
                          seed=1, diffusion=dict(sampler="ddpm"))
    drawn = _strokes_per_sketch(result["strokes"])
    assert abs(drawn - real) <= 0.3 * real, (drawn, real)
