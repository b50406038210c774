"""The training entry point on real data: files, loss, resume, divergence, errors."""

import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hparams import get_preset
from sketchtk.errors import ConfigError
from sketchtk.training import trainer
from sketchtk.training.checkpoints import CheckpointManager

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def _history(log_root):
    with open(os.path.join(log_root, "history.csv")) as f:
        return list(csv.DictReader(f))


def _weights(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_smoke_run_writes_files_and_loss_falls(smoke_run):
    rows = _history(smoke_run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "recon", "offset_nll", "pen_xent", "alpha_loss", "gaussian_loss",
                "de_loss", "lr", "klw", "active_components"):
        assert key in rows[0], key
    losses = [float(r["loss"]) for r in rows]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # Not met by the deconv term alone: the stroke reconstruction falls too.
    recon = [float(r["recon"]) for r in rows]
    assert recon[-1] < recon[0], recon
    # The logged count is the saved GMM's: alpha above the threshold, counted here in NumPy.
    model, _ = trainer.load_trained_model(smoke_run, which="latest")
    alpha = np.asarray(model.gmm.alpha)
    hp = get_preset("smoke")
    assert len(alpha) == hp.num_mixture * hp.num_sub
    assert float(rows[-1]["active_components"]) == np.sum(alpha > hp.gmm_active_threshold)
    config = json.load(open(os.path.join(smoke_run, "model_config.json")))
    assert config["max_seq_len"] > 0 and config["scale_factor"] > 0
    assert config["categories"] == list(get_preset("smoke").categories)
    manager = CheckpointManager(smoke_run)
    assert manager.latest().endswith("ckpt-6")
    assert os.path.exists(os.path.join(smoke_run, "best", "weights.weights.h5"))
    assert os.listdir(os.path.join(smoke_run, "tensorboard"))


def test_load_trained_model_reproduces_validation_loss(smoke_run):
    model, config = trainer.load_trained_model(smoke_run)
    state = json.load(open(os.path.join(smoke_run, "best", "state.json")))
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.data.pipeline import make_dataset
    hp = model.hparams
    data = load_sketch_data(None, hp.categories, hp.num_per_category, hp.max_seq_len)
    result = model.evaluate(make_dataset(data, "valid", hp, training=False), verbose=0,
                            return_dict=True)
    np.testing.assert_allclose(result["recon"], state["best"], rtol=1e-4)


def test_resume_is_exact(tmp_path):
    hp = get_preset("smoke").replace(num_steps=4, eval_every=2)
    straight = str(tmp_path / "straight")
    trainer.train_and_evaluate(hp, straight, verbose=0)
    resumed = str(tmp_path / "resumed")
    trainer.train_and_evaluate(hp.replace(num_steps=2), resumed, verbose=0)
    result = trainer.train_and_evaluate(hp, resumed, verbose=0)
    assert result.steps == 4
    a = _weights(os.path.join(straight, "ckpt", "ckpt-4", "weights.weights.h5"))
    b = _weights(os.path.join(resumed, "ckpt", "ckpt-4", "weights.weights.h5"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [r["loss"] for r in _history(straight)] == [r["loss"] for r in _history(resumed)]


def test_resume_rejects_changed_model(smoke_run):
    # The session's smoke run (the checks raise before anything is written to its directory).
    before = sorted(os.listdir(smoke_run))
    hp = get_preset("smoke")
    with pytest.raises(ConfigError, match="dec_rnn_size"):
        trainer.train_and_evaluate(hp.replace(dec_rnn_size=16), smoke_run, verbose=0)
    with pytest.raises(ConfigError, match="already holds a run"):
        trainer.train_and_evaluate(hp, smoke_run, resume=False, verbose=0)
    assert sorted(os.listdir(smoke_run)) == before


def test_run_from_an_older_version_resumes_unless_a_new_hparam_is_changed():
    hp = get_preset("smoke").to_dict()
    config = {"hparams": hp, "scale_factor": 1.5}
    old = {"hparams": {k: v for k, v in hp.items() if k != "sample_xla"}, "scale_factor": 1.5}
    trainer._check_resumable(old, config, "RUN")  # the key it lacks is at its default: resumes
    with pytest.raises(ConfigError, match=r"RUN: cannot resume .*sample_xla"):
        trainer._check_resumable(old, {**config, "hparams": {**hp, "sample_xla": "on"}}, "RUN")
    with pytest.raises(ConfigError, match="dec_rnn_size"):
        trainer._check_resumable(old, {**config, "hparams": {**hp, "dec_rnn_size": 7}}, "RUN")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from sketchtk.models.sketch_vae import SketchVAE
    import tensorflow as tf
    original = SketchVAE.compute_losses

    def poisoned(self, batch, training, step, update_gmm=False):
        out, aux, state = original(self, batch, training, step, update_gmm)
        if training:
            # step counts from 0 (the reference's counter): the third training step is step 2.
            bad = tf.where(tf.cast(step, tf.int64) >= 2, np.nan, 0.0)
            out = {**out, "loss": out["loss"] + bad}
        return out, aux, state

    monkeypatch.setattr(SketchVAE, "compute_losses", poisoned)
    hp = get_preset("smoke").replace(num_steps=4, eval_every=2)
    with pytest.raises(trainer.TrainingDiverged, match="step 3"):
        trainer.train_and_evaluate(hp, str(tmp_path), verbose=0)
    manager = CheckpointManager(str(tmp_path))
    assert manager.latest().endswith("ckpt-2")
    weights = _weights(os.path.join(manager.latest(), "weights.weights.h5"))
    assert all(np.all(np.isfinite(v)) for v in weights.values() if v.dtype.kind == "f")


@pytest.mark.parametrize("model,data_dir,categories", [
    # sketch-rnn on its own format: the real sheep of the sketch-rnn release (tests/fixtures)
    ("sketch_rnn", FIXTURES, ("sheep_small",)),
    ("sketch_pix2seq", None, None),
])
def test_baselines_train(tmp_path, model, data_dir, categories):
    hp = get_preset("smoke").replace(model=model, num_steps=4, eval_every=2)
    if categories:
        hp = hp.replace(categories=categories)
    result = trainer.train_and_evaluate(hp, str(tmp_path), data_dir=data_dir, verbose=0)
    config = json.load(open(os.path.join(str(tmp_path), "model_config.json")))
    assert config["categories"] == list(hp.categories)
    rows = _history(str(tmp_path))
    assert result.steps == 4 and "active_components" not in rows[0]
    losses = [float(r["loss"]) for r in rows]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_sketch_a_net_trains_and_reports_accuracy(tmp_path):
    hp = get_preset("smoke").replace(model="sketch_a_net", num_steps=20, eval_every=10,
                                     batch_size=32)
    result = trainer.train_and_evaluate(hp, str(tmp_path), verbose=0)
    # classifier_epochs=1 (smoke) caps the run at one pass: ceil(332 / 32) = 11 steps < num_steps
    assert hp.classifier_epochs == 1 and result.steps == 11
    metrics = json.load(open(os.path.join(str(tmp_path), "classifier_metrics.json")))
    assert metrics == result.extra
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["num_test"] == 41


def _run_train(args, cwd=REPO):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_train_py_rejects_bad_hparams(tmp_path):
    # Two runs of the script itself (each imports TensorFlow: seconds), the rest in-process.
    proc = _run_train([f"--log_root={tmp_path}", "--preset=smoke", "--hparams=no_such_key=1"])
    assert proc.returncode != 0
    assert "unknown hparam 'no_such_key'" in proc.stderr and "dec_rnn_size" in proc.stderr
    proc = _run_train([f"--log_root={tmp_path}", "--preset=smoke", "--data_dir=/nonexistent"])
    assert proc.returncode != 0 and "/nonexistent" in proc.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "ckpt"))


def test_bad_model_choice_and_preset_name_the_valid_ones():
    from sketchtk.config import parse_overrides
    with pytest.raises(ConfigError, match="hyper") as err:
        parse_overrides(get_preset("smoke"), "dec_model=gru")
    assert "lstm" in str(err.value)
    with pytest.raises((ConfigError, ValueError), match="smoke"):
        get_preset("nope")
