"""Warm start (``train.py --init_from``): a conditioning-encoder run starts from a trained
class-conditional diffusion run's denoiser, on the embedded real data."""

import json
import os

import numpy as np
import pytest

from hparams import get_preset
from sketchtk.errors import ConfigError
from sketchtk.training import trainer
from sketchtk.training.warm_start import warm_start


def _source_hp():
    return get_preset("diffusion_smoke").replace(class_conditional=True, num_steps=2, eval_every=2)


def _target_hp():  # the same conditioning size: the denoiser's weights keep their shapes
    return _source_hp().replace(class_conditional=False, cond_encoder="sketch",
                                cond_encoder_out="norm", num_steps=1, eval_every=1)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    log_root = str(tmp_path_factory.mktemp("warm_source"))
    trainer.train_and_evaluate(_source_hp(), log_root, verbose=0)
    return log_root


def _built(config, hp):
    config = {**config, "hparams": hp.to_dict()}
    model = trainer.build_model(config)
    trainer._build(model, config)
    trainer.compile_model(model, hp)
    return model


def test_warm_start_copies_the_denoisers_ema_weights_and_keeps_the_new_encoder_fresh(source_run):
    source, config = trainer.load_trained_model(source_run)
    model = _built(config, _target_hp())
    encoder_before = [w.numpy() for w in model.cond_encoder.weights]
    expected = [avg.numpy() for w, avg in zip(source.trainable_weights, source.ema)
                if any(w is d for d in source.denoiser.trainable_weights)]
    assert any(not np.allclose(w.numpy(), e) for w, e in
               zip(model.denoiser.trainable_weights, expected))  # differs before the copy
    report = warm_start(model, source_run)
    assert report["copied"] == [model.denoiser.name]
    assert model.cond_encoder.name in report["fresh"]
    for w, e in zip(model.denoiser.trainable_weights, expected):
        np.testing.assert_array_equal(w.numpy(), e)  # the source samples with its EMA weights
    ema = {id(w): avg for w, avg in zip(model.trainable_weights, model.ema)}
    for w in model.trainable_weights:  # sampling the new run at step 0 = its weights
        np.testing.assert_array_equal(ema[id(w)].numpy(), w.numpy())
    for w, before in zip(model.cond_encoder.weights, encoder_before):
        np.testing.assert_array_equal(w.numpy(), before)


def test_init_from_is_recorded_and_a_resumed_run_keeps_its_own_weights(source_run, tmp_path):
    log_root = str(tmp_path / "target")
    trainer.train_and_evaluate(_target_hp(), log_root, verbose=0, init_from=source_run)
    with open(os.path.join(log_root, "model_config.json")) as f:
        assert json.load(f)["init_from"] == os.path.abspath(source_run)
    trained, _ = trainer.load_trained_model(log_root, "latest")
    # resumed without the flag: continues from its checkpoint, the warm start stays on record
    result = trainer.train_and_evaluate(_target_hp().replace(num_steps=2), log_root, verbose=0)
    assert result.steps == 2
    with open(os.path.join(log_root, "model_config.json")) as f:
        assert json.load(f)["init_from"] == os.path.abspath(source_run)
    resumed, _ = trainer.load_trained_model(log_root, "latest")
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in
               zip(trained.cond_encoder.weights, resumed.cond_encoder.weights))


def test_init_from_another_kind_of_model_is_one_clear_error(source_run, smoke_run):
    _, config = trainer.load_trained_model(source_run)
    model = _built(config, _target_hp())
    with pytest.raises(ConfigError, match=r"--init_from=.*SketchVAE run cannot start a "
                                          r"StrokeDiffusion"):
        warm_start(model, smoke_run)
    with pytest.raises(ConfigError, match="--init_from: .*not a trained model directory"):
        warm_start(model, os.path.dirname(source_run))
