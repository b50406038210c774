"""Diffusion applications on real drawings with tiny models built here: the conditioning reaches
the denoiser, healing, mixing, vectorisation / abstraction / inversion jobs."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.models.stroke_diffusion import StrokeDiffusion
from sketchtk.sampling import diffusion_apps as apps


@pytest.fixture(scope="module")
def point_data():
    return ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES), max_points=48)


def _loaded(point_data, **changes):
    hp = get_preset("diffusion_smoke").replace(
        diffusion_steps=8, denoiser_units=16, denoiser_layers=1, cond_encoder_units=16,
        **changes)
    stats = ps.point_data_statistics(point_data, hp.representation)
    model = StrokeDiffusion(hp, point_data.max_seq_len, stats["point_stats"],
                            stats["length_model"], DEFAULT_CATEGORIES)
    model.build_from_batch(model.dummy_batch())
    splits = {s: point_data[s] for s in ("train", "valid", "test")}
    return apps.Loaded(model=model, config={"categories": DEFAULT_CATEGORIES,
                                            "scale_factor": point_data.scale_factor},
                       splits=splits)


@pytest.fixture(scope="module")
def class_model(point_data):
    return _loaded(point_data, class_conditional=True)


def _two(loaded, a=0, b=3):
    test = loaded.test
    rows = [loaded.rows(test.sketches[a]), loaded.rows(test.sketches[b])]
    points, mask = loaded.batch(rows)
    return points, mask


@pytest.mark.parametrize("encoder", [pytest.param("pointcloud", marks=pytest.mark.slow), "sketch"])
def test_conditioning_encoder_reaches_the_denoiser_and_is_trained(point_data, encoder):
    # ChiroDiff's release trains its delta self-conditioned mode unconditionally (ALGORITHMS.md 4)
    loaded = _loaded(point_data, cond_encoder=encoder)
    model = loaded.model
    points, mask = _two(loaded)
    cond = model.condition_vector(None, points, mask)
    assert cond.shape == (2, model.hparams.cond_dim)
    assert np.abs(cond[0] - cond[1]).max() > 1e-3  # two sketches, two conditions
    x0 = model.normalise(points, mask)
    x_t = model.process.q_sample(x0, tf.constant([4, 4]), tf.random.stateless_normal(
        tf.shape(x0), (0, 1))) * mask[..., None]
    same = tf.stack([cond[0], cond[0]])
    out_a, _ = model.denoise(x_t, tf.constant([4, 4]), mask, cond_vector=same)
    out_b, _ = model.denoise(x_t, tf.constant([4, 4]), mask, cond_vector=cond[::-1])
    assert np.abs((out_a - out_b).numpy()[0] * mask[0, :, None]).max() > 1e-4
    with pytest.raises(ValueError, match="conditioning vector"):
        model.denoise(x_t, tf.constant([4, 4]), mask)
    # the training loss depends on the encoder: its weights get gradients
    batch = {"points": tf.constant(points), "mask": tf.constant(mask),
             "labels": tf.zeros([2], tf.int32), "index": tf.zeros([2], tf.int64)}
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch, training=True)["loss"]
    grads = tape.gradient(loss, model.cond_encoder.trainable_weights)
    assert grads and all(g is not None for g in grads)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0
    # the usage measure: finite losses, and a zero vector changes the loss of the untrained model
    usage = apps.condition_usage(loaded, "valid", num=6, ts=(2, 6))
    assert usage["num"] == 6 and len(usage["per_t"]) == 2 and usage["spread"] > 0
    assert all(np.isfinite(r[k]) for r in usage["per_t"] for k in ("right", "other", "zero"))
    assert any(abs(r["zero"] - r["right"]) > 1e-6 for r in usage["per_t"])


def test_sketch_encoder_reads_the_denoisers_features_with_cond_sketch_input_features(point_data):
    loaded = _loaded(point_data, cond_encoder="sketch", cond_sketch_input="features")
    model = loaded.model
    points, mask = _two(loaded)
    # delta mode: the encoder also reads the positions (the offsets' running sum)
    assert model.cond_encoder.rnns[0].forward_layer.cell.kernel.shape[0] == model.channels + 2
    expected = model.cond_encoder(model.features(model.normalise(points, mask), mask), mask)
    np.testing.assert_allclose(model.condition_vector(None, points, mask), expected, atol=1e-6)
    with pytest.raises(ValueError, match="cond_sketch_input"):
        get_preset("diffusion_smoke").replace(cond_sketch_input="raw").validated()


def test_one_sample_from_a_conditioning_vector_keeps_the_loops_shapes(point_data):
    # a batch of one lost its static batch size inside the reverse loop (a ValueError from
    # tf.while_loop): --app_samples=1 could not abstract
    loaded = _loaded(point_data, cond_encoder="sketch")
    points, mask = loaded.batch([loaded.rows(loaded.test.sketches[4])])
    cond = loaded.condition(None, points, mask)
    samples = apps._sample(loaded, cond, [12], "ddim", 2, 0.0, 0)
    assert len(samples) == 1 and len(samples[0]) == 12


def test_application_samples_follow_the_ddpm_variance_strength(point_data):
    # --variance_strength reached plain sampling only; the application jobs ignored it
    loaded = _loaded(point_data, cond_encoder="sketch")
    points, mask = loaded.batch([loaded.rows(loaded.test.sketches[4])] * 2)
    cond = loaded.condition(None, points, mask)
    draw = lambda s: np.concatenate(apps._sample(  # noqa: E731
        loaded, cond, [12, 12], "ddpm", 3, 0.0, 0, variance_strength=s))
    default = np.concatenate(apps._sample(loaded, cond, [12, 12], "ddpm", 3, 0.0, 0))
    np.testing.assert_array_equal(draw(1.0), default)
    assert np.abs(draw(0.0)[:, :2] - default[:, :2]).max() > 1e-3


def test_point_cloud_condition_ignores_the_order_of_the_points(point_data):
    loaded = _loaded(point_data, cond_encoder="pointcloud")
    sketch, points, _ = loaded.source("test:2", "vectorise_from")
    rows = apps._point_rows(points, "delta")
    shuffled = apps._point_rows(points[np.random.default_rng(0).permutation(len(points))], "delta")
    conds = [loaded.condition(None, *loaded.batch([r])) for r in (rows, shuffled,
                                                                  loaded.rows(sketch))]
    np.testing.assert_allclose(conds[1], conds[0], atol=1e-4)
    np.testing.assert_allclose(conds[2], conds[0], atol=1e-4)  # the sketch's own points, a set


def test_healing_from_zero_returns_the_input_and_more_steps_change_it_more(class_model):
    test = class_model.test
    sketches = [np.asarray(test.sketches[i], np.float32) for i in range(4)]
    healed = apps.heal_sketches(class_model, sketches, list(test.labels[:4]), [0, 2, 8])
    for got, want in zip(healed[0], sketches):
        np.testing.assert_array_equal(got, class_model.in_data_units(want))

    def change(t):
        return np.mean([np.abs(np.cumsum(h[:, :2], 0) - np.cumsum(
            class_model.in_data_units(s)[:, :2], 0)).mean() for h, s in zip(healed[t], sketches)])
    assert 0 < change(2) < change(8)
    with pytest.raises(ValueError, match="--heal_t=9"):
        apps.heal_sketches(class_model, sketches, [0] * 4, [9])


def test_mixing_ends_reproduce_each_sketchs_own_reconstruction(class_model, tmp_path):
    row, ends = apps.mix(class_model, "test:0", "test:7", str(tmp_path), num=4)
    assert len(row) == 4 and os.path.exists(tmp_path / "mix.png")
    test = class_model.test
    # the row's ends went through the slerp, the condition mix, the length mix and a batch of 4;
    # the reconstructions are DDIM from each sketch's own inversion (both sketches in one batch)
    for end, own, k in ((row[0], ends[0], 0), (row[-1], ends[1], 7)):
        assert end.shape == own.shape == (len(test.sketches[k]), 3)
        np.testing.assert_allclose(end, own, atol=1e-3 * np.abs(own[:, :2]).max())
    assert not np.allclose(row[1][:, :2].sum(0), row[0][:, :2].sum(0))


def test_slerp_keeps_the_norm_of_noise():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 500))
    mid = apps.slerp(a, b, 0.5)
    assert abs(np.linalg.norm(mid) / np.linalg.norm(a) - 1) < 0.05
    assert np.linalg.norm(0.5 * (a + b)) < 0.8 * np.linalg.norm(a)  # the linear mix shrinks it
    np.testing.assert_allclose(apps.slerp(a, b, 0.0), a, atol=1e-5)


@pytest.mark.slow
def test_vectorise_abstract_and_invert_jobs_write_sketches_and_pictures(point_data, tmp_path):
    cloud = _loaded(point_data, cond_encoder="pointcloud")
    samples = apps.vectorise(cloud, "test:1", str(tmp_path), num_samples=2, sampler="ddim",
                             steps=4)
    n = len(cloud.source("test:1", "vectorise_from")[1])
    assert [len(s) for s in samples] == [n, n]
    bundle = np.load(tmp_path / "vectorise.npz", allow_pickle=True)
    assert len(bundle["strokes"]) == 3 and bundle["points"].shape == (n, 2)
    with pytest.raises(ValueError, match="cond_encoder=sketch"):
        apps.abstract(cloud, "test:1", [0.1], str(tmp_path))
    points = np.random.default_rng(0).uniform(-50, 50, (30, 2))
    np.save(tmp_path / "cloud.npy", points)
    assert len(apps.vectorise(cloud, str(tmp_path / "cloud.npy"), str(tmp_path), 1, "ddim",
                              2)[0]) == 30
    with pytest.raises(ValueError, match="test split has"):
        cloud.source("test:9999", "vectorise_from")
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match="bad.npy"):
        cloud.source(str(tmp_path / "bad.npy"), "vectorise_from")

    selfcond = _loaded(point_data, cond_encoder="sketch")
    out = apps.abstract(selfcond, "test:4", [0.0, 0.2], str(tmp_path), num_samples=2,
                        sampler="ddim", steps=4)
    assert len(out) == 2 and os.path.exists(tmp_path / "abstract.png")
    names = list(np.load(tmp_path / "abstract.npz", allow_pickle=True)["names"])
    full, simple = (int(names[i].split(": ")[1].split()[0]) for i in (0, 3))
    assert simple < full  # RDP left fewer points in the condition
    # a model trained on resampled sketches encodes the simplified shape resampled the same way
    spaced = _loaded(point_data, cond_encoder="sketch", resample_spacing=0.05)
    seen = []
    real_condition = spaced.condition
    spaced.condition = lambda labels, points, mask: (seen.append(int(mask[0].sum())),
                                                     real_condition(labels, points, mask))[1]
    apps.abstract(spaced, "test:4", [0.2], str(tmp_path), num_samples=1, sampler="ddim", steps=2)
    sketch = spaced.source("test:4", "abstract_from")[0]
    rdp_points = len(ps.preprocess_sketch(sketch, 0.0, 0.2))
    assert seen[0] == len(ps.preprocess_sketch(ps.preprocess_sketch(sketch, 0.0, 0.2), 0.05))
    assert seen[0] > 2 * rdp_points

    report = apps.invert(selfcond, str(tmp_path), num=3, steps=4)
    saved = json.load(open(tmp_path / "inversion.json"))
    assert saved["num_sketches"] == 3 and np.isfinite(saved["rms_error_mean"])
    assert os.path.exists(tmp_path / "inversion.png") and report == saved


@pytest.mark.parametrize("encoder", ["sketch", "pointcloud"])
def test_condition_following_scores_a_perfect_follower_zero_and_an_ignorer_even(
        point_data, encoder, monkeypatch):
    loaded = _loaded(point_data, cond_encoder=encoder)
    index = [4, 0, 9, 2, 7, 5]
    sketches = [np.asarray(loaded.test.sketches[i], np.float32) for i in index]
    # stand-ins: the "condition" of batch row i is i (rows n + j hold the next sketch's
    # condition), and a sample is the real sketch of its condition (a perfect follower) or
    # always the first sketch (a model that ignores it)
    monkeypatch.setattr(loaded, "condition",
                        lambda labels, points, mask: np.arange(len(points))[:, None])
    n = len(index)
    source = lambda c: c if c < n else (c - n + 1) % n  # noqa: E731
    monkeypatch.setattr(apps, "_sample", lambda ld, cond, *a: [
        ld.in_data_units(sketches[source(int(c))]) for c in cond[:, 0]])
    perfect = apps.condition_following(loaded, "test", indices=index)
    assert perfect["index"] == index
    assert perfect["own"] < 1e-5 and perfect["own_better"] == 1.0
    assert perfect["other"] == pytest.approx(perfect["between_sketches"], rel=1e-5)
    assert perfect["between_sketches"] > 0.1  # different real sketches are far apart
    monkeypatch.setattr(apps, "_sample", lambda ld, cond, *a: [
        ld.in_data_units(sketches[0])] * len(cond))
    ignorer = apps.condition_following(loaded, "test", indices=index)
    assert ignorer["own"] == pytest.approx(ignorer["other"], rel=1e-9)
    assert ignorer["own_better"] == 0.0
    with pytest.raises(ValueError, match="cond_encoder=none"):
        apps.condition_following(_loaded(point_data), "test", num=2)
    if encoder == "sketch":  # abstraction: simplified conditions, samples as long as the sketch
        seen, asked = [], []
        monkeypatch.setattr(loaded, "condition", lambda labels, points, mask: (
            seen.append(mask.sum(1)), np.arange(len(points))[:, None])[1])
        monkeypatch.setattr(apps, "_sample", lambda ld, cond, lengths, *a: (
            asked.append(list(lengths)), [ld.in_data_units(sketches[0])] * len(cond))[1])
        simplified = apps.condition_following(loaded, "test", indices=index, rdp_epsilon=0.2)
        assert simplified["rdp_epsilon"] == 0.2
        assert (seen[0][:n] < [len(s) for s in sketches]).all()
        assert asked[0] == [len(s) for s in sketches] * 2
        assert simplified["own"] == pytest.approx(ignorer["own"])  # distances to the sketches
    else:
        with pytest.raises(ValueError, match="rdp_epsilon=0.2 simplifies"):
            apps.condition_following(loaded, "test", indices=index, rdp_epsilon=0.2)


def test_cond_drop_prob_trains_the_null_condition_which_keeps_the_class_embedding(point_data):
    loaded = _loaded(point_data, cond_encoder="sketch", class_conditional=True,
                     cond_drop_prob=0.999)
    model = loaded.model
    points, mask = _two(loaded)
    cond = model.condition_vector(np.array([0, 1], np.int32), points, mask)
    null = model.null_condition(cond).numpy()
    d = model.hparams.cond_dim
    assert cond.shape == (2, 2 * d)
    np.testing.assert_array_equal(null[:, :d], cond.numpy()[:, :d])  # the class embedding
    assert not null[:, d:].any() and np.abs(cond.numpy()[:, d:]).max() > 0
    # (almost) every vector dropped in training: the encoder gets no gradient; the same batch
    # in validation (no dropping) gives it one
    batch = {"points": tf.constant(points), "mask": tf.constant(mask),
             "labels": tf.constant([0, 1], tf.int32), "index": tf.zeros([2], tf.int64)}
    for training, expect_zero in ((True, True), (False, False)):
        with tf.GradientTape() as tape:
            loss = model.compute_losses(batch, training=training)["loss"]
        grads = tape.gradient(loss, model.cond_encoder.trainable_weights)
        biggest = max(float(tf.reduce_max(tf.abs(g))) if g is not None else 0.0 for g in grads)
        assert (biggest == 0.0) == expect_zero, (training, biggest)
    with pytest.raises(ValueError, match="cond_drop_prob"):
        get_preset("diffusion_smoke").replace(cond_drop_prob=1.0).validated()


def test_cond_guidance_one_is_the_plain_sampler_and_zero_samples_the_null_condition(point_data):
    loaded = _loaded(point_data, cond_encoder="sketch", cond_drop_prob=0.1)
    model = loaded.model
    points, mask = loaded.batch([loaded.rows(loaded.test.sketches[i]) for i in (1, 6)])
    cond = loaded.condition(None, points, mask)
    x_T = tf.random.stateless_normal([2, 16, model.channels], (3, 1))
    run_mask = tf.sequence_mask([16, 11], 16, dtype=tf.float32)
    steps = apps.sampling_timesteps(model.process, 3)

    def run(vector, guidance):
        x0, _, _ = loaded.sampler().sample(x_T, run_mask, steps, "ddpm", seed=(3, 2),
                                           context=loaded.context(vector, guidance))
        return x0.numpy() * run_mask.numpy()[..., None]

    plain, null = run(cond, 1.0), run(model.null_condition(cond).numpy(), 1.0)
    np.testing.assert_allclose(run(cond, 0.0), null, atol=1e-4)
    strong = run(cond, 3.0)
    assert np.abs(strong - plain).max() > 1e-3 and np.abs(plain - null).max() > 1e-3
    # 3 = the null output + 3 (conditional - null), step by step: not the plain samples' mix
    assert np.abs(strong - (null + 3.0 * (plain - null))).max() > 1e-4
    with pytest.raises(ValueError, match="cond_drop_prob > 0"):
        _loaded(point_data, cond_encoder="sketch").check_guidance(2.0)
    with pytest.raises(ValueError, match="finite"):
        loaded.check_guidance(float("nan"))
    _loaded(point_data, cond_encoder="sketch").check_guidance(1.0)  # no guidance: any model


def test_sample_py_flags_reach_the_abstraction_job(tmp_path):
    # sample.py's dispatch: --cond_guidance and --variance_strength arrive in the job's bundle
    import types

    from sketchtk.training import trainer
    hp = get_preset("diffusion_smoke").replace(
        cond_encoder="sketch", cond_drop_prob=0.2, num_steps=2, eval_every=2,
        diffusion_steps=8, denoiser_units=16, denoiser_layers=1, cond_encoder_units=16)
    run = str(tmp_path / "run")
    trainer.train_and_evaluate(hp, run, verbose=0)
    flags = types.SimpleNamespace(
        model_dir=run, output_dir=str(tmp_path / "out"), sampler="ddpm", steps=2, eta=0.0,
        seed=0, variance_strength=0.5, cond_guidance=2.5, abstract_from="test:3",
        rdp_epsilon=["0.1"], app_samples=1, vectorise_from=None, heal_from=None, mix=None,
        invert=None, heal_t=["0"])
    apps.run_from_flags(flags)
    bundle = np.load(tmp_path / "out" / "abstract.npz", allow_pickle=True)
    assert float(bundle["cond_guidance"]) == 2.5 and len(bundle["strokes"]) == 2
    assert float(bundle["variance_strength"]) == 0.5
    flags.abstract_from, flags.heal_from = None, ["test:3"]
    with pytest.raises(ValueError, match="--cond_guidance=2.5 guides vectorisation"):
        apps.run_from_flags(flags)
