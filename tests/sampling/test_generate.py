"""sample.py and retrieval.py end to end on a smoke model trained on real data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sketchtk.data.npz_io import save_npz_atomic
from sketchtk.metrics.evaluate import run_evaluation
from sketchtk.sampling.generate import encode_split, load_test_set, run_sampling
from sketchtk.training.trainer import load_trained_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_conditional_sampling_writes_reference_named_files(smoke_run, tmp_path):
    out = run_sampling(smoke_run, str(tmp_path), num_per_category=2, conditional=True, seed=1,
                       interpolate=(0, 5))
    _, config = load_trained_model(smoke_run)
    n = 2 * len(config["categories"])
    assert len(out["strokes"]) == n
    for name in config["categories"]:
        for i in range(2):
            for pattern in ("{}_{}.svg", "{}_{}.png", "code_{}_{}.npy", "gau_idx_{}_{}.npy"):
                assert os.path.exists(tmp_path / pattern.format(name, i)), pattern.format(name, i)
    code = np.load(tmp_path / f"code_{config['categories'][0]}_0.npy")
    np.testing.assert_allclose(code, out["codes"][0])
    for extra in ("samples.npz", "grid.png", "grid.svg", "interpolation.png"):
        assert os.path.exists(tmp_path / extra)
    bundle = np.load(tmp_path / "samples.npz", allow_pickle=True)
    assert bool(bundle["conditional"]) and len(bundle["ref_index"]) == n
    assert np.all(bundle["components"] >= 0)
    # Conditional codes are the encoder means of the chosen references.
    model, config = load_trained_model(smoke_run)
    test_codes = encode_split(model, load_test_set(config))
    np.testing.assert_allclose(out["codes"], test_codes[out["ref_index"]], rtol=1e-5, atol=1e-5)


def test_unconditional_sampling_with_component(smoke_run, tmp_path):
    out = run_sampling(smoke_run, str(tmp_path), num_per_category=1, conditional=False,
                       component=2, seed=0, write_files=False)
    assert np.all(out["components"] == 2) and np.all(out["ref_index"] == -1)
    with pytest.raises(ValueError, match="component 99"):
        run_sampling(smoke_run, str(tmp_path), 1, conditional=False, component=99)


def _fake_samples(smoke_run, sample_dir, permute):
    """samples.npz whose sketches are the test references themselves (optionally shuffled)."""
    model, config = load_trained_model(smoke_run)
    test = load_test_set(config)["test"]
    n = len(test)
    order = np.random.default_rng(0).permutation(n) if permute else np.arange(n)
    strokes = np.empty(n, dtype=object)
    for i, j in enumerate(order):
        s = test.sketches[j].copy()
        s[:, :2] *= config["scale_factor"]
        strokes[i] = s
    names = np.array([config["categories"][c] for c in test.labels])
    save_npz_atomic(os.path.join(sample_dir, "samples.npz"), {
        "strokes": strokes, "names": names, "labels": test.labels, "codes": np.zeros((n, 1)),
        "components": np.zeros(n, np.int32), "ref_index": np.arange(n),
        "conditional": np.bool_(True), "temperature": np.float32(1), "seed": np.int64(0)})
    return n


def test_ret_is_one_for_the_references_themselves(smoke_run, tmp_path):
    _fake_samples(smoke_run, str(tmp_path), permute=False)
    metrics = run_evaluation(smoke_run, str(tmp_path))
    assert metrics["ret_top1"] == 1.0 and metrics["ret_top10"] == 1.0
    assert os.path.exists(tmp_path / "latent_space.png")
    assert json.load(open(tmp_path / "metrics.json"))["ret_top1"] == 1.0


def test_ret_is_near_chance_for_shuffled_sketches(smoke_run, tmp_path):
    n = _fake_samples(smoke_run, str(tmp_path), permute=True)
    metrics = run_evaluation(smoke_run, str(tmp_path))
    # Chance top-1 is 1/n (n = 41); a shuffled pairing must be far from the perfect 1.0.
    assert metrics["ret_top1"] < 0.25 and metrics["num_references"] == n


def test_sample_and_retrieval_scripts(smoke_run, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=REPO, capture_output=True,  # noqa
                                    text=True, timeout=300)
    proc = run("sample.py", f"--model_dir={smoke_run}", f"--output_dir={tmp_path}",
               "--num_per_category=1", "--conditional=True", "--write_files=False")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run("retrieval.py", f"--model_dir={smoke_run}", f"--output_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout)
    assert set(["ret_top1", "ret_top10", "ret_top50", "rec"]) <= set(metrics)
    assert metrics["rec"] is None and any("classifier" in n for n in metrics["notes"])
    # A bad --model_dir: tests/test_entry_points.py::test_sample_errors runs sample.py's main()
    # on it in-process (one real process there checks the one-line error of train.py).


def test_rec_equals_classifier_accuracy_computed_directly(smoke_run, classifier_run, tmp_path):
    from sketchtk.render.raster import render_sketches

    clf_dir = classifier_run  # the session's Sketch-a-Net (shared with the metrics tests)
    sample_dir = tmp_path / "samples"
    sample_dir.mkdir()
    _fake_samples(smoke_run, str(sample_dir), permute=False)
    metrics = run_evaluation(smoke_run, str(sample_dir), classifier_dir=clf_dir)
    classifier, _ = load_trained_model(clf_dir)
    bundle = np.load(sample_dir / "samples.npz", allow_pickle=True)
    images = render_sketches(list(bundle["strokes"]), width=48)
    logits = classifier.predict(images.astype(np.float32)[..., None] / 255 * 2 - 1, verbose=0)
    direct = float(np.mean(np.argmax(logits, 1) == bundle["labels"]))
    assert metrics["rec"] == pytest.approx(direct)
    assert metrics["rec_real_test"] == pytest.approx(direct)  # the samples are the test set
