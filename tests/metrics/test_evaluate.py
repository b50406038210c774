"""run_evaluation / retrieval.py: FID, precision / recall, degenerate samples, every model family.

Real drawings throughout: the embedded QuickDraw subset, the session's smoke RPCL-pix2seq and
sketch-rnn runs and its briefly trained Sketch-a-Net (tests/conftest.py).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.data.loader import load_sketch_data
from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.data.strokes import to_absolute, to_offsets
from sketchtk.metrics import sample_quality as sq
from sketchtk.metrics.evaluate import degenerate_reasons, run_evaluation
from sketchtk.models.sketch_a_net import preprocess_images
from sketchtk.render.raster import render_sketches
from sketchtk.sampling.generate import load_test_set, run_sampling
from sketchtk.training.checkpoints import read_json, write_json_atomic
from sketchtk.training.trainer import load_trained_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _reference_bundle(run_dir, sample_dir, conditional=True, replace=None):
    """samples.npz holding the run's real test sketches in data units (``replace``: {i: sketch})."""
    config = read_json(os.path.join(run_dir, "model_config.json"))
    test = load_test_set(config)["test"]
    n = len(test)
    strokes = np.empty(n, dtype=object)
    for i, sketch in enumerate(test.sketches):
        s = sketch.copy()
        s[:, :2] *= config["scale_factor"]
        strokes[i] = s
    for i, sketch in (replace or {}).items():
        strokes[i] = np.asarray(sketch, np.float32).reshape(-1, 3)
    labels = test.labels if conditional else np.full(n, -1, np.int32)
    names = [config["categories"][c] for c in test.labels] if conditional else ["uncond"] * n
    save_npz_atomic(os.path.join(sample_dir, "samples.npz"), {
        "strokes": strokes, "names": np.array(names), "labels": labels,
        "codes": np.zeros((n, 1)), "components": np.full(n, -1, np.int32),
        "ref_index": np.arange(n) if conditional else np.full(n, -1),
        "conditional": np.bool_(conditional), "temperature": np.float32(1), "seed": np.int64(0)})
    return strokes, test


def _features(classifier, sketches):
    return sq.classifier_features(classifier, render_sketches(list(sketches), width=48))


def test_classifier_features_are_the_logit_layers_input(classifier_run):
    classifier, _ = load_trained_model(classifier_run)
    test = load_sketch_data(scale_factor=1.0, splits=("test",))["test"]
    images = render_sketches(list(test.sketches[:20]))
    feats = sq.classifier_features(classifier, images, batch_size=7)
    logits_layer = classifier.get_layer("logits")
    direct = classifier(preprocess_images(images), training=False).numpy()
    assert feats.shape == (20, classifier.dense_units) and feats.min() >= 0.0  # after ReLU
    np.testing.assert_allclose(feats @ logits_layer.kernel.numpy() + logits_layer.bias.numpy(),
                               direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(classifier.features(images), feats)


def test_fid_separates_real_test_drawings_from_noise_corrupted_ones(classifier_run):
    classifier, _ = load_trained_model(classifier_run)
    data = load_sketch_data()
    train = _features(classifier, data["train"].sketches)
    test = _features(classifier, data["test"].sketches)
    rng = np.random.default_rng(0)
    noisy = []
    for sketch in data["test"].sketches:  # jitter every point by ~9% of a sketch's median extent
        points = to_absolute(sketch)
        points[:, :2] += rng.normal(scale=0.5, size=(len(points), 2))
        noisy.append(to_offsets(points).astype(np.float32))
    noisy = _features(classifier, noisy)
    assert sq.frechet_distance(train, train) < 1e-9 * np.trace(np.cov(train, rowvar=False))
    fid_real, fid_noisy = sq.frechet_distance(test, train), sq.frechet_distance(noisy, train)
    assert fid_noisy > 5.0 * fid_real, (fid_real, fid_noisy)  # measured 15-47x


def test_degenerate_samples_count_as_misses_and_are_left_out_of_fid(smoke_run, classifier_run,
                                                                     tmp_path):
    bad = {0: np.zeros((0, 3)), 5: [[3.0, 4.0, 0.0]], 9: [[0.0, 0.0, 1.0], [5.0, 5.0, 1.0]],
           13: [[0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]]}
    strokes, test = _reference_bundle(smoke_run, str(tmp_path), replace=bad)
    n = len(strokes)
    metrics = run_evaluation(smoke_run, str(tmp_path), classifier_dir=classifier_run)
    assert metrics["num_degenerate"] == 4 and metrics["degenerate"] == {
        "fewer_than_2_points": 2, "nothing_drawn": 1, "non_finite": 1}
    # The other sketches are the references themselves (rank 0); the degenerate ones are misses.
    assert metrics["ret_top1"] == pytest.approx((n - 4) / n)
    assert n < 50 and metrics["ret_top50"] == pytest.approx((n - 4) / n)  # misses even at k >= n
    classifier, _ = load_trained_model(classifier_run)
    ok = np.ones(n, bool)
    ok[list(bad)] = False
    images = render_sketches([strokes[i] for i in np.flatnonzero(ok)], width=48)
    predicted = np.argmax(classifier.predict(preprocess_images(images), verbose=0), axis=1)
    assert metrics["rec"] == pytest.approx(np.sum(predicted == test.labels[ok]) / n)
    test_feats = _features(classifier, test.sketches)
    expected = sq.sample_quality(test_feats, sq.classifier_features(classifier, images))
    for key in ("fid", "precision", "recall"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9)
    assert any("4 degenerate ones left out" in note for note in metrics["notes"])
    assert any("not comparable to Inception" in note for note in metrics["notes"])
    assert json.load(open(tmp_path / "metrics.json"))["num_degenerate"] == 4


def test_degenerate_reasons_follow_the_drawing_rule():
    mask, counts = degenerate_reasons([np.zeros((1, 3)), np.array([[0, 0, 0], [2, 2, 1]]),
                                       np.array([[0, 0, 1], [2, 2, 0]])])
    # The second draws P0 -> P1 (pen down after P0); the third lifts after P0 and draws nothing.
    np.testing.assert_array_equal(mask, [True, False, True])
    assert counts == {"fewer_than_2_points": 1, "nothing_drawn": 1}


def test_sketch_rnn_run_gets_ret_from_strokes_and_rec_fid_from_images(sketch_rnn_run,
                                                                     classifier_run, tmp_path):
    # The samples are the test sketches in data units: back through the scale factor to the
    # stroke encoder they must retrieve their own references, and score like the real test set.
    _reference_bundle(sketch_rnn_run, str(tmp_path))
    metrics = run_evaluation(sketch_rnn_run, str(tmp_path), classifier_dir=classifier_run)
    assert metrics["model"] == "sketch_rnn" and metrics["num_degenerate"] == 0
    assert metrics["ret_top1"] == 1.0 and metrics["num_references"] == metrics["num_samples"]
    assert metrics["rec"] == pytest.approx(metrics["rec_real_test"])
    assert metrics["fid"] < 1e-6 and metrics["precision"] == metrics["recall"] == 1.0
    assert os.path.exists(tmp_path / "latent_space.png")


@pytest.mark.slow
def test_sketch_rnn_samples_are_evaluated_by_retrieval_py(sketch_rnn_run, classifier_run,
                                                          tmp_path):
    cond, uncond = tmp_path / "cond", tmp_path / "uncond"
    out = run_sampling(sketch_rnn_run, str(cond), num_per_category=2, conditional=True,
                       write_files=False)
    proc = subprocess.run([sys.executable, "retrieval.py", f"--model_dir={sketch_rnn_run}",
                           f"--sample_dir={cond}", f"--classifier_dir={classifier_run}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout)
    num_bad = int(degenerate_reasons(out["strokes"])[0].sum())
    assert metrics["model"] == "sketch_rnn" and metrics["num_samples"] == 10
    assert metrics["num_degenerate"] == num_bad
    assert 0.0 <= metrics["ret_top1"] <= metrics["ret_top10"] <= 1.0
    assert 0.0 <= metrics["rec"] <= 1.0 and 0.0 <= metrics["rec_real_test"] <= 1.0
    if 10 - num_bad > 3:
        assert metrics["fid"] >= 0.0 and 0.0 <= metrics["precision"] <= 1.0
    run_sampling(sketch_rnn_run, str(uncond), num_per_category=2, conditional=False,
                 write_files=False)
    metrics = run_evaluation(sketch_rnn_run, str(uncond), classifier_dir=classifier_run)
    assert metrics["ret_top1"] is None and metrics["rec"] is None
    assert metrics["real_valid_vs_test"]["fid"] >= 0.0


def test_a_run_without_latent_gets_image_metrics_and_null_ret(smoke_run, classifier_run,
                                                              tmp_path):
    # What run_evaluation reads of a family with no encoder (stroke diffusion): model_config.json.
    run = tmp_path / "run"
    run.mkdir()
    config = read_json(os.path.join(smoke_run, "model_config.json"))
    config["hparams"] = {"model": "stroke_diffusion"}
    write_json_atomic(str(run / "model_config.json"), config)
    samples = tmp_path / "samples"
    samples.mkdir()
    _reference_bundle(str(run), str(samples), conditional=False)
    metrics = run_evaluation(str(run), str(samples), classifier_dir=classifier_run)
    assert metrics["ret_top1"] is None and metrics["rec"] is None
    assert any("no latent code" in note for note in metrics["notes"])
    # The "samples" are the test sketches themselves.
    assert metrics["fid"] < 1e-6 and metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert not os.path.exists(samples / "latent_space.png")


@pytest.mark.slow
def test_a_diffusion_run_gets_rec_and_fid_and_a_null_ret(classifier_run, tmp_path):
    from hparams import get_preset
    from sketchtk.sampling.diffusion_generate import run_diffusion_sampling
    from sketchtk.training.trainer import train_and_evaluate

    run = str(tmp_path / "diffusion")  # a real (tiny) class-conditional stroke-diffusion run
    train_and_evaluate(get_preset("diffusion_smoke").replace(class_conditional=True, num_steps=2,
                                                             eval_every=2), run, verbose=0)
    drawn = tmp_path / "drawn"
    run_diffusion_sampling(run, str(drawn), num_per_category=2, conditional=True,
                           write_files=False)
    metrics = run_evaluation(run, str(drawn), classifier_dir=classifier_run)
    assert metrics["model"] == "stroke_diffusion" and metrics["ret_top1"] is None
    assert any("no latent code" in note for note in metrics["notes"])
    assert 0.0 <= metrics["rec"] <= 1.0 and metrics["num_samples"] == 10
    if metrics["num_samples"] - metrics["num_degenerate"] > 3:
        assert metrics["fid"] >= 0.0 and 0.0 <= metrics["recall"] <= 1.0
    assert not os.path.exists(drawn / "latent_space.png")


def test_swapped_directories_get_messages_naming_the_flag(smoke_run, classifier_run, tmp_path):
    _reference_bundle(smoke_run, str(tmp_path))
    with pytest.raises(ValueError, match=r"--classifier_dir=.* is a rpcl_pix2seq run"):
        run_evaluation(smoke_run, str(tmp_path), classifier_dir=smoke_run)
    with pytest.raises(ValueError, match=r"--model_dir=.* is the Sketch-a-Net classifier"):
        run_evaluation(classifier_run, str(tmp_path))
