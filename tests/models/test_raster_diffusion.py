"""RasterDiffusion (SPD on 48 x 48 renders of the embedded real data): the UNet2D layer contract,
training through the shared trainer, reload, and both samplers; sample.py's image path
(``sketchtk.sampling.raster_generate``: file names, the flags it refuses) and retrieval.py
scoring an image bundle from its images; train.py + sample.py + retrieval.py end to end."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hparams import get_preset
from sketchtk.data.npz_io import load_npz, save_npz_atomic
from sketchtk.errors import DataError
from sketchtk.layers.denoisers.unet2d import UNet2DDenoiser
from sketchtk.metrics.evaluate import load_samples, run_evaluation, sample_images_at
from sketchtk.models.raster_diffusion import images_to_x0, x0_to_images
from sketchtk.render.raster import render_sketches
from sketchtk.sampling import raster_generate
from sketchtk.sampling.generate import file_stems, load_test_set
from sketchtk.training import trainer
from sketchtk.training.checkpoints import read_json, write_json_atomic
from tests.layer_checks import check_layer
from tests.test_entry_points import _one_error_line, entry  # noqa: F401  (entry: a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_unet2d_layer_contract(tmp_path):
    x = tf.random.stateless_normal([2, 16, 16, 1], (1, 2))
    t = tf.constant([0.1, 0.9])
    check_layer(lambda: UNet2DDenoiser(1, units=8, num_layers=2, time_embedding_dim=8, seed=3),
                [x, t], tmp_path)


def test_image_mapping_round_trip_ink_is_positive():
    img = np.array([[[255, 0], [128, 255]]], np.uint8)
    x0 = images_to_x0(img).numpy()
    np.testing.assert_allclose(x0[0, :, :, 0], [[-1.0, 1.0], [1 - 128 / 127.5, -1.0]], atol=1e-6)
    np.testing.assert_array_equal(x0_to_images(x0), img)


@pytest.mark.slow
def test_raster_spd_trains_through_the_trainer_and_samples(tmp_path):
    hp = get_preset("spd_raster_smoke").replace(num_steps=3, eval_every=3, valid_batches=1,
                                                diffusion_steps=10)
    result = trainer.train_and_evaluate(hp, str(tmp_path), verbose=0)
    assert result.steps == 3
    with open(os.path.join(str(tmp_path), "history.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    model, _ = trainer.load_trained_model(str(tmp_path))
    for sampler in ("ddpm", "ddim"):
        x0, _ = model.generate(2, labels=[0, 3], sampler=sampler, steps=4, seed=1)
        assert x0.shape == (2, 48, 48, 1) and np.all(np.isfinite(x0.numpy()))
        assert x0_to_images(x0).dtype == np.uint8


def _raster_config_run(tmp_path, class_conditional=True, source=None):
    """A run directory holding only a raster_diffusion model_config.json (what sample.py and
    retrieval.py read before a model loads); ``source``: a run whose data fields to copy."""
    run = tmp_path / "raster_run"
    run.mkdir()
    config = read_json(os.path.join(source, "model_config.json")) if source else {
        "categories": list(get_preset("spd_raster_smoke").categories)}
    config["hparams"] = get_preset("spd_raster_smoke").replace(
        class_conditional=class_conditional).to_dict()
    write_json_atomic(str(run / "model_config.json"), config)
    return str(run)


def test_raster_sample_files_are_numbered_per_category():
    names = raster_generate.sample_names(np.array([0, 0, 2, -1, 0]), ["cat", "pig", "the_sun"])
    assert names == ["cat", "cat", "the_sun", "uncond", "cat"]
    assert file_stems(names) == ["cat_0", "cat_1", "the_sun_0", "uncond_0", "cat_2"]


def test_sample_py_refuses_flags_that_do_not_apply_to_a_raster_run(entry, tmp_path, capsys):
    run = entry("sample.py")
    model_dir = _raster_config_run(tmp_path)
    uncond_dir = str(tmp_path / "uncond")
    os.makedirs(uncond_dir)
    config = read_json(os.path.join(model_dir, "model_config.json"))
    config["hparams"]["class_conditional"] = False
    write_json_atomic(os.path.join(uncond_dir, "model_config.json"), config)
    out = tmp_path / "samples"
    base = [f"--model_dir={model_dir}", f"--output_dir={out}"]
    cases = [
        (base + ["--temperature=0.5"], 2, "--temperature: does not apply to"),
        (base + ["--interpolate=0,1"], 2, "--interpolate: does not apply to"),
        (base + ["--component=1"], 2, "a raster_diffusion run (it samples images; GMM"),
        (base + ["--show_process=True"], 2, "--show_process: does not apply"),
        (base + ["--heal_from=test:0"], 2, "--heal_from: does not apply"),
        (base + ["--sampler=shortcut"], 2, "--sampler=shortcut: does not apply"),
        (base + ["--shortcut_threshold=0.5"], 2, "--shortcut_threshold: does not apply"),
        (base + ["--rdp_epsilon=0.1"], 2, "--rdp_epsilon: does not apply"),
        (base + ["--steps=21"], 1, "--steps=21: must be in [1, 20]"),
        ([f"--model_dir={uncond_dir}", f"--output_dir={out}"], 1,
         "--conditional=True needs a class-conditional model"),
    ]
    for args, status, message in cases:
        assert run(*args) == status, (args, capsys.readouterr().err)
        assert message in _one_error_line(capsys, "sample.py"), args
    assert not out.exists() or not os.listdir(out)  # nothing sampled or written


@pytest.mark.slow
def test_retrieval_scores_a_raster_bundle_from_its_images(smoke_run, classifier_run, tmp_path):
    """An images bundle holding the real test renders scores FID 0, precision = recall = 1 and
    Rec = the classifier's test accuracy; a blank image is degenerate (a Rec miss, not in FID)."""
    run = _raster_config_run(tmp_path, source=smoke_run)
    config = read_json(os.path.join(run, "model_config.json"))
    test = load_test_set({**config, "max_seq_len": -1})["test"]
    images = render_sketches(list(test.sketches), width=48)
    bundle = {"images": images, "names": np.array([config["categories"][c] for c in test.labels]),
              "labels": np.asarray(test.labels, np.int32), "conditional": np.bool_(True)}
    samples = tmp_path / "samples"
    samples.mkdir()
    save_npz_atomic(str(samples / "samples.npz"), bundle, compressed=False)
    metrics = run_evaluation(run, str(samples), classifier_dir=classifier_run)
    assert metrics["model"] == "raster_diffusion" and metrics["ret_top1"] is None
    assert metrics["num_samples"] == len(images) and metrics["num_degenerate"] == 0
    assert metrics["fid"] < 1e-6 and metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["rec"] == metrics["rec_real_test"]
    blank = images.copy()
    blank[0] = 255
    save_npz_atomic(str(samples / "samples.npz"), {**bundle, "images": blank}, compressed=False)
    metrics_blank = run_evaluation(run, str(samples), classifier_dir=classifier_run)
    assert metrics_blank["num_degenerate"] == 1
    assert metrics_blank["degenerate"] == {"nothing_drawn": 1}
    assert metrics_blank["rec"] <= metrics["rec"]  # image 0 now counts as a miss
    assert metrics_blank["fid"] > 0.0


def test_sample_images_are_resized_to_the_classifier_width_with_a_note():
    images = np.full((2, 48, 48), 255, np.uint8)
    images[:, 10:38, 20:28] = 0
    metrics = {"notes": []}
    out = sample_images_at(images, 32, metrics)
    assert out.shape == (2, 32, 32) and out.dtype == np.uint8
    assert out.min() == 0 and out[0, 0, 0] == 255
    assert "resized to the classifier's 32 px" in metrics["notes"][0]
    assert sample_images_at(images, 48) is not None and sample_images_at(images, 48).shape[1] == 48


def test_an_images_bundle_of_the_wrong_type_is_refused_naming_the_file(tmp_path):
    save_npz_atomic(str(tmp_path / "samples.npz"), {"images": np.zeros((2, 48, 48), np.float32)},
                    compressed=False)
    with pytest.raises(DataError, match=r"samples.npz: 'images' must be uint8 \[N, W, W\]"):
        load_samples(str(tmp_path))


@pytest.mark.slow
def test_train_py_sample_py_retrieval_py_for_spd_raster_smoke(classifier_run, tmp_path):
    import subprocess
    import sys
    log_root, out = tmp_path / "run", tmp_path / "samples"

    def script(*args):
        proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=1200)
        assert proc.returncode == 0, proc.stderr[-2000:]

    script("train.py", "--preset=spd_raster_smoke", f"--log_root={log_root}", "--verbose=0",
           "--hparams=num_steps=3,eval_every=3,valid_batches=1")
    script("sample.py", f"--model_dir={log_root}", f"--output_dir={out}", "--num_per_category=2",
           "--sampler=ddim", "--steps=5", "--guidance=2.0")
    categories = read_json(str(log_root / "model_config.json"))["categories"]
    bundle = load_npz(str(out / "samples.npz"))
    assert bundle["images"].shape == (2 * len(categories), 48, 48)
    assert bundle["images"].dtype == np.uint8 and "strokes" not in bundle
    assert list(bundle["labels"]) == list(np.repeat(np.arange(len(categories)), 2))
    assert str(bundle["sampler"]) == "ddim" and int(bundle["steps"]) == 5
    assert float(bundle["guidance"]) == 2.0 and bool(bundle["clip_x0"])
    for c in categories:
        for i in range(2):
            png = np.asarray(Image.open(out / f"{c}_{i}.png"))
            np.testing.assert_array_equal(png, bundle["images"][categories.index(c) * 2 + i])
    assert Image.open(out / "grid.png").size == (2 * 50, len(categories) * 50)  # a row each
    script("retrieval.py", f"--model_dir={log_root}", f"--sample_dir={out}",
           f"--classifier_dir={classifier_run}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "raster_diffusion" and metrics["ret_top1"] is None
    assert 0.0 <= metrics["rec"] <= 1.0 and metrics["num_samples"] == 2 * len(categories)
