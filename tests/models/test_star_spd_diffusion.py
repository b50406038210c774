"""StrokeDiffusion with process=star and process=spd on the embedded real data: training through
the shared trainer, the saved G_t statistics, .keras round trip, and sampling through sample.py's
job with valid pen structure."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data.loader import DEFAULT_CATEGORIES
from sketchtk.data import point_sequences as ps
from sketchtk.data.pipeline import make_dataset
from sketchtk.models.diffusion_processes import StarAdapter
from sketchtk.training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _history(log_root):
    with open(os.path.join(log_root, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def star_run(tmp_path_factory):
    """A 4-step ``star_smoke`` run (T = 20, class-conditional) through the trainer."""
    log_root = str(tmp_path_factory.mktemp("star_run"))
    hp = get_preset("star_smoke").replace(num_steps=4, eval_every=2, diffusion_steps=20,
                                          class_conditional=True)
    result = trainer.train_and_evaluate(hp, log_root, verbose=0)
    assert result.steps == 4
    return log_root


@pytest.mark.slow
def test_star_run_trains_estimates_and_saves_its_tail_statistics(star_run, tmp_path):
    rows = _history(star_run)
    losses = [float(r["loss"]) for r in rows]
    assert np.all(np.isfinite(losses)) and {"diffusion_loss", "pen_kl"} <= set(rows[0])
    # loss = positions KL + pen KL
    np.testing.assert_allclose(losses, [float(r["diffusion_loss"]) + float(r["pen_kl"])
                                        for r in rows], rtol=1e-4)
    model, config = trainer.load_trained_model(star_run)
    stats = model.star.stats.numpy()
    # star_smoke averages 2 batches; positions: per-t std grows with S_t towards t = 0
    assert float(model.star.seen.numpy()) == 2.0
    assert stats.shape == (2, 20, 4) and np.all(stats[1, :, :2] > 0)
    assert np.all(np.diff(stats[1, :, 0]) < 0)
    path = str(tmp_path / "star.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.star.stats.numpy(), stats)
    hp = model.hparams.replace(batch_size=4)
    batch = next(iter(make_dataset(_point_data(config), "valid", hp, training=False)))
    for key, value in model.compute_losses(batch).items():
        np.testing.assert_allclose(reloaded.compute_losses(batch)[key], value, rtol=1e-5)


def _point_data(config):
    from sketchtk.data import point_sequences as ps
    from sketchtk.data.loader import load_sketch_data
    hp = config["hparams"]
    return ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES),
                                 max_points=hp["max_seq_len"])


def _check_bundle(out, count):
    bundle = np.load(os.path.join(out, "samples.npz"), allow_pickle=True)
    assert len(bundle["strokes"]) == count
    for sketch, length in zip(bundle["strokes"], bundle["lengths"]):
        assert sketch.shape == (length, 3) and np.all(np.isfinite(sketch))
        assert set(np.unique(sketch[:, 2])) <= {0.0, 1.0} and sketch[-1, 2] == 1


@pytest.mark.slow
def test_star_sampling_job_writes_sketches_and_refuses_ddim(star_run, tmp_path):
    from sketchtk.sampling.generate import run_sampling
    out = str(tmp_path / "samples")
    run_sampling(star_run, out, num_per_category=1, conditional=True, batch_size=3,
                 diffusion=dict(sampler="ddpm", steps=4, guidance=1.5))
    _check_bundle(out, len(DEFAULT_CATEGORIES))
    assert os.path.exists(os.path.join(out, "grid.png"))
    with pytest.raises(ValueError, match="no DDIM"):
        run_sampling(star_run, out, 1, True, diffusion=dict(sampler="ddim", steps=4))


@pytest.mark.slow
@pytest.mark.parametrize("preset,overrides,sampler", [
    ("star_smoke", "num_steps=8,eval_every=4,star_positions=beta", "ddpm"),
    ("spd_smoke", "num_steps=8,eval_every=4", "ddim"),
    ("spd_smoke", "num_steps=8,eval_every=4,denoiser=bigru", "ddpm"),
])
def test_preset_trains_through_train_py_and_sample_py_samples_it(preset, overrides, sampler,
                                                                 tmp_path):
    import subprocess
    import sys
    run, out = str(tmp_path / "run"), str(tmp_path / "samples")
    subprocess.run([sys.executable, "train.py", f"--preset={preset}", f"--hparams={overrides}",
                    f"--log_root={run}", "--verbose=0"], cwd=REPO, check=True, timeout=1200)
    losses = [float(r["loss"]) for r in _history(run)]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-2:]) < losses[0], losses
    subprocess.run([sys.executable, "sample.py", f"--model_dir={run}", f"--output_dir={out}",
                    "--num_per_category=2", "--conditional=False", f"--sampler={sampler}",
                    "--steps=10"], cwd=REPO, check=True, timeout=1200)
    _check_bundle(out, 10)


@pytest.fixture(scope="module")
def small_data():
    from sketchtk.data import point_sequences as ps
    from sketchtk.data.loader import load_sketch_data
    return ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES), max_points=48)


def _direct_model(data, hp):
    from sketchtk.data import point_sequences as ps
    from sketchtk.models.stroke_diffusion import StrokeDiffusion, make_optimizer
    stats = ps.point_data_statistics(data, hp.representation)
    model = StrokeDiffusion(hp, data.max_seq_len, stats["point_stats"], stats["length_model"],
                            DEFAULT_CATEGORIES)
    model.build_from_batch(model.dummy_batch())
    model.compile(optimizer=make_optimizer(hp))
    return model


def test_star_model_estimates_g_statistics_in_training_saves_them_and_samples(small_data,
                                                                             tmp_path):
    hp = get_preset("star_smoke").replace(diffusion_steps=8, batch_size=4, star_stat_batches=2)
    model = _direct_model(small_data, hp)
    batches = iter(make_dataset(small_data, "train", hp, training=True))
    for _ in range(3):
        logs = model.train_step(next(batches))
    np.testing.assert_allclose(float(logs["loss"]),
                               float(logs["diffusion_loss"]) + float(logs["pen_kl"]), rtol=1e-4)
    stats = model.star.stats.numpy()
    assert float(model.star.seen.numpy()) == 2.0  # frozen after star_stat_batches
    # the std of G_t shrinks with t (as S_t does; floored at 1e-6 where S_t underflows)
    assert np.all(np.diff(stats[1, :, 0]) <= 0) and stats[1, 0, 0] > 1e3 * stats[1, -1, 0]
    path = str(tmp_path / "star.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.star.stats.numpy(), stats)
    x0, pen, mask, traj = reloaded.generate([9, 30], steps=3, seed=2, record=True)
    assert x0.shape == (2, 32, 2) and traj.shape[0] == 3 and np.all(np.isfinite(x0.numpy()))
    for sketch, n in zip(reloaded.to_strokes(x0, pen, mask), (9, 30)):
        assert sketch.shape == (n, 3) and set(np.unique(sketch[:, 2])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="no DDIM"):
        reloaded.generate([9], sampler="ddim", steps=3)


@pytest.mark.slow
def test_spd_model_trains_one_step_and_samples_with_both_samplers(small_data):
    """process=spd through the model: loss = eps-MSE + pen cross-entropy, and generate()."""
    hp = get_preset("spd_smoke").replace(diffusion_steps=10, batch_size=4)
    model = _direct_model(small_data, hp)
    batch = next(iter(make_dataset(small_data, "train", hp, training=True)))
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"])) and float(logs["pen_xent"]) > 0
    for sampler in ("ddpm", "ddim"):
        x0, pen, mask, _ = model.generate([20, 33], sampler=sampler, steps=4, seed=1)
        assert x0.shape == (2, 40, 2) and np.all(np.isfinite(x0.numpy()))
        sketches = model.to_strokes(x0, pen, mask)
        assert [len(s) for s in sketches] == [20, 33]


def test_polar_star_maps_real_offsets_to_direction_and_length_and_back(small_data):
    """star_positions=polar: real delta offsets -> (theta, r) -> (x, y) is the identity and the
    denoiser is asked for [direction (2), length, pen (2)] outputs."""
    hp = get_preset("star_smoke").replace(diffusion_steps=8, batch_size=4, star_positions="polar")
    adapter = StarAdapter(hp, keras.layers.Layer())  # holds the G statistics weights only
    assert adapter.position_out_channels == 3 and adapter.process.out_channels == 5
    assert [p.name for p in adapter.process.parts] == ["direction", "length", "pen"]
    sketches = small_data["train"].sketches[:4]
    stats = ps.PointStats.from_sketches(small_data["train"].sketches[:40], hp.representation)
    mean, std = tf.constant(stats.mean, tf.float32), tf.constant(stats.std, tf.float32)
    seqs = [ps.to_points(sk, hp.representation) for sk in sketches]
    length = max(len(q) for q in seqs)
    points = tf.constant(np.stack([np.pad(q, [(0, length - len(q)), (0, 0)]) for q in seqs]),
                         tf.float32)
    mask = tf.sequence_mask([len(q) for q in seqs], length, dtype=tf.float32)
    x0 = adapter.x0(points, mask, mean, std)
    theta, r = x0[..., 0].numpy(), x0[..., 1].numpy()
    real = mask.numpy() > 0
    assert np.all(np.abs(theta[real]) <= np.pi) and np.all(r[real] >= 0) and r[real].max() > 0.5
    xy = ((points[..., :2] - mean) / std) * mask[..., None]
    np.testing.assert_allclose(adapter.positions(x0).numpy(), xy.numpy(), atol=1e-5)
    np.testing.assert_array_equal(x0[..., 2:].numpy().argmax(-1)[real],
                                  (points[..., 2].numpy() > 0.5)[real])


@pytest.mark.slow
def test_polar_star_model_trains_and_samples(small_data):
    """The loss is direction + length + pen KL and generate() decodes finite sketches."""
    hp = get_preset("star_smoke").replace(diffusion_steps=8, batch_size=4, star_stat_batches=1,
                                          star_positions="polar")
    model = _direct_model(small_data, hp)
    assert model.channels == 3
    batch = next(iter(make_dataset(small_data, "train", hp, training=True)))
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"])) and float(logs["pen_kl"]) > 0
    np.testing.assert_allclose(float(logs["loss"]),
                               float(logs["diffusion_loss"]) + float(logs["pen_kl"]), rtol=1e-4)
    x0_gen, pen, gen_mask, _ = model.generate([9, 20], steps=2, seed=3)
    assert x0_gen.shape[-1] == 2 and np.all(np.isfinite(x0_gen.numpy()))
    assert [len(s) for s in model.to_strokes(x0_gen, pen, gen_mask)] == [9, 20]
