"""r-Shortcut: the regressor's contract and its loss on real data, and the sampler's call counts
against the plain sampler, with a tiny model built here."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.diffusion.samplers import sampling_timesteps
from sketchtk.diffusion.shortcut import (RecognisabilityRegressor, ShortcutSampler, regressor_inputs,
                                         regressor_loss, train_regressor)
from sketchtk.models.stroke_diffusion import StrokeDiffusion
from sketchtk.sampling import diffusion_apps as apps
from tests.layer_checks import check_layer


def tiny_loaded():
    """A tiny class-conditional model (untrained) on the embedded data, as ``Loaded``."""
    data = ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES), max_points=48)
    hp = get_preset("diffusion_smoke").replace(diffusion_steps=10, denoiser_units=16,
                                               denoiser_layers=1, class_conditional=True)
    stats = ps.point_data_statistics(data, hp.representation)
    model = StrokeDiffusion(hp, data.max_seq_len, stats["point_stats"], stats["length_model"],
                            DEFAULT_CATEGORIES)
    model.build_from_batch(model.dummy_batch())
    return apps.Loaded(model=model, config={"categories": DEFAULT_CATEGORIES,
                                            "scale_factor": data.scale_factor},
                       splits={s: data[s] for s in ("train", "valid", "test")})


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


def _batch(loaded, n=6):
    rows = [loaded.rows(s) for s in loaded.test.sketches[:n]]
    points, mask = loaded.batch(rows)
    x0 = loaded.model.normalise(points, mask)
    t = np.linspace(0, loaded.model.process.num_steps - 1, n).astype(np.int32)
    x_t = loaded.model.process.q_sample(x0, t, tf.random.stateless_normal(
        tf.shape(x0), (1, 2))) * mask[..., None]
    return x_t, t, mask


@pytest.mark.slow
def test_regressor_layer_contract(loaded, tmp_path):
    x_t, t, mask = _batch(loaded)
    inputs = [tf.constant(v) for v in regressor_inputs(loaded.model, x_t, t, mask)]
    out = check_layer(lambda: RecognisabilityRegressor(units=8), inputs, tmp_path, fit=False)
    assert out.shape == (6,)


def _sampler(loaded, bias):
    regressor = RecognisabilityRegressor(units=8, seed=1)
    x_t, t, mask = _batch(loaded, 2)
    regressor(*regressor_inputs(loaded.model, x_t, t, mask))
    regressor.logit.bias.assign([bias])  # moves every predicted score
    return apps.shortcut_sampler(loaded, regressor, "ddpm"), regressor


def test_shortcut_sampler_never_uses_more_calls_than_the_plain_sampler(loaded):
    test = loaded.test
    lengths = np.array([len(s) for s in test.sketches[:5]])
    mask = tf.sequence_mask(lengths, ps.padded_length(lengths.max()), dtype=tf.float32).numpy()
    x_T = tf.random.stateless_normal(mask.shape + (loaded.model.channels,), (3, 1)).numpy()
    cond = apps.class_conditions(loaded, test.labels[:5])
    ts = sampling_timesteps(loaded.model.process)
    plain, _, _ = loaded.sampler().sample(x_T, mask, ts, "ddpm", seed=(3, 2),
                                          context=loaded.context(cond))
    sampler, _ = _sampler(loaded, 0.0)
    never, _, calls, scores = sampler.sample(x_T, mask, ts, threshold=2.0, seed=(3, 2),
                                             context=loaded.context(cond))
    np.testing.assert_array_equal(calls, len(ts))  # an unreachable threshold: the plain sampler
    np.testing.assert_allclose(never, plain.numpy(), rtol=1e-4, atol=1e-4)
    # a threshold inside the predicted scores: some sketches stop early, none runs longer
    threshold = float(np.median(scores[2]))
    short, _, calls, _ = sampler.sample(x_T, mask, ts, threshold=threshold, seed=(3, 2),
                                        context=loaded.context(cond))
    assert np.all(calls <= len(ts)) and calls.min() < len(ts)
    # the calibration from the full run's scores predicts the early-stopping run exactly
    np.testing.assert_array_equal(ShortcutSampler.exit_steps(scores, threshold), calls)
    stopped = calls < len(ts)
    assert not np.allclose(short[stopped], plain.numpy()[stopped], atol=1e-3)
    always, _, calls, _ = _sampler(loaded, 50.0)[0].sample(x_T, mask, ts, threshold=0.5,
                                                           min_steps=3,
                                                           context=loaded.context(cond))
    np.testing.assert_array_equal(calls, 3)


def test_shortcut_strides_take_the_coarse_schedule_after_the_switch(loaded):
    test = loaded.test
    lengths = np.array([len(s) for s in test.sketches[:5]])
    mask = tf.sequence_mask(lengths, ps.padded_length(lengths.max()), dtype=tf.float32).numpy()
    x_T = tf.random.stateless_normal(mask.shape + (loaded.model.channels,), (4, 1)).numpy()
    context = loaded.context(apps.class_conditions(loaded, test.labels[:5]))
    ts, num_steps = sampling_timesteps(loaded.model.process), loaded.model.process.num_steps
    sampler, _ = _sampler(loaded, 0.0)
    full, _, calls, scores = sampler.sample(x_T, mask, ts, threshold=2.0, seed=(4, 2),
                                            context=context, stride_steps=3)
    np.testing.assert_array_equal(calls, len(ts))  # never switched: the plain sampler
    threshold = float(np.median(scores[1]))
    strided, _, calls, _ = sampler.sample(x_T, mask, ts, threshold=threshold, seed=(4, 2),
                                          context=context, stride_steps=3)
    switch = ShortcutSampler.exit_steps(scores, threshold)
    assert switch.min() < len(ts) - 2  # some sketches switch early
    expected = ShortcutSampler.stride_calls(ts, switch, 3, num_steps)
    np.testing.assert_array_equal(calls, expected)
    assert np.all(calls <= len(ts)) and calls.min() < len(ts)
    # a switched sketch ends on a denoised sample, not at the jump's x0-prediction
    jumped, _, _, _ = sampler.sample(x_T, mask, ts, threshold=threshold, seed=(4, 2),
                                     context=context)
    early = switch < len(ts) - 2
    assert np.all(np.isfinite(strided))
    assert not np.allclose(strided[early], jumped[early], atol=1e-3)
    assert not np.allclose(strided[early], full[early], atol=1e-3)
    with pytest.raises(ValueError, match="stride_steps"):
        sampler.sample(x_T, mask, ts, threshold=threshold, stride_steps=0)


def test_regressor_loss_falls_on_real_sketches(loaded, classifier_run):
    from sketchtk.training.trainer import load_trained_model
    classifier, _ = load_trained_model(classifier_run)
    train = apps.shortcut_examples(loaded, classifier, "train", per_sketch=1, max_sketches=128)
    valid = apps.shortcut_examples(loaded, classifier, "valid", per_sketch=1, seed=1)
    assert np.all((train["target"] >= 0) & (train["target"] <= 1))
    assert train["target"].std() > 0.01  # the classifier's confidence varies across x_t
    regressor = RecognisabilityRegressor(units=8, seed=0)

    def valid_loss():
        return float(regressor_loss(regressor, (valid["feats"], valid["t"], valid["mask"]),
                                    valid["target"]))
    regressor(valid["feats"][:2], valid["t"][:2], valid["mask"][:2])
    before = valid_loss()
    losses = train_regressor(regressor, train, steps=40, batch_size=64, learning_rate=1e-2)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert valid_loss() < before  # held-out real sketches, not only the training batches


_FRESH = textwrap.dedent("""
    import glob, os, sys
    import numpy as np
    from sketchtk.sampling import diffusion_apps as apps   # does not import diffusion.shortcut
    assert "sketchtk.diffusion.shortcut" not in sys.modules
    path, inputs, out_dir = sys.argv[1:4]
    regressor = apps.load_regressor(path)
    x = np.load(inputs)
    np.save(os.path.join(out_dir, "scores.npy"),
            np.asarray(regressor(x["feats"], x["t"], x["mask"])))
    from tests.diffusion.test_shortcut import tiny_loaded
    loaded = tiny_loaded()
    bundle = apps.run_shortcut_sampling(None, out_dir, path, num_per_category=2, threshold=0.5,
                                        loaded=loaded, write_files=False, stride_steps=3)
    assert not glob.glob(os.path.join(out_dir, "*.svg")), "write_files=False wrote svg files"
""")


@pytest.mark.slow
def test_saved_regressor_loads_and_samples_in_a_fresh_process(loaded, tmp_path):
    x_t, t, mask = _batch(loaded)
    feats, t_norm, mask = (np.asarray(v, np.float32) for v in regressor_inputs(loaded.model, x_t,
                                                                                t, mask))
    regressor = RecognisabilityRegressor(units=8, seed=2)
    wrapped = apps._regressor_model(regressor, feats.shape[-1])
    path = str(tmp_path / "regressor.keras")
    wrapped.save(path)
    np.savez(tmp_path / "inputs.npz", feats=feats, t=t_norm, mask=mask)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _FRESH, path, str(tmp_path / "inputs.npz"),
                           str(tmp_path)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"),
                               regressor(feats, t_norm, mask).numpy(), rtol=1e-5, atol=1e-5)
    bundle = np.load(tmp_path / "samples.npz", allow_pickle=True)
    assert len(bundle["strokes"]) == 2 * len(DEFAULT_CATEGORIES)
    assert np.all(bundle["calls"] <= 10) and int(bundle["stride_steps"]) == 3
    assert os.path.exists(tmp_path / "grid.png")
