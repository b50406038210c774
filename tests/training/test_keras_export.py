"""model.keras: the best weights in Keras' format, reloaded in a fresh process to the same outputs."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from hparams import get_preset
from sketchtk.training import trainer


def _classifier_run(run_dir):
    """A run directory holding an (untrained) Sketch-a-Net: model_config.json and best/ weights,
    as train.py leaves them; the export does not care whether the weights were trained."""
    import json
    from sketchtk.training.checkpoints import CheckpointManager, MODEL_CONFIG
    hp = get_preset("smoke").replace(model="sketch_a_net")
    config = {"hparams": hp.to_dict(), "max_seq_len": 200, "scale_factor": 1.0,
              "categories": list(hp.categories), "data_dir": None}
    model = trainer.build_model(config)
    trainer._build(model, config)  # pylint: disable=protected-access
    trainer.compile_model(model, hp)
    text = json.dumps(config)
    os.makedirs(run_dir)
    open(os.path.join(run_dir, MODEL_CONFIG), "w").write(text)
    CheckpointManager(run_dir).save_best(model, {"step": 0}, text)
    return hp


def _test_images(hp):
    from sketchtk.data.loader import load_sketch_data
    from sketchtk.models.sketch_vae import images_to_input
    from sketchtk.render.raster import render_sketches
    test = load_sketch_data(None, hp.categories, splits=("test",), scale_factor=1.0)["test"]
    return images_to_input(render_sketches(list(test.sketches[:8]), width=hp.png_width)).numpy()


def test_export_writes_model_keras_that_reloads_to_the_same_outputs(tmp_path):
    run = str(tmp_path / "clf")
    hp = _classifier_run(run)
    path = trainer.export_keras_model(run)
    assert path == os.path.join(run, "model.keras") and os.path.isfile(path)
    model, _ = trainer.load_trained_model(run)
    x = _test_images(hp)
    reloaded = keras.saving.load_model(path)  # safe mode (the default)
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_trained_run_exports_model_keras_that_a_fresh_process_reloads(tmp_path):
    hp = get_preset("smoke").replace(model="sketch_a_net", num_steps=4, eval_every=2)
    result = trainer.train_and_evaluate(hp, str(tmp_path / "clf"), verbose=0, export_keras=True)
    path = result.extra["keras_model"]
    assert path == str(tmp_path / "clf" / "model.keras") and os.path.isfile(path)
    model, _ = trainer.load_trained_model(str(tmp_path / "clf"))
    x = _test_images(hp)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras, sketchtk.models; "
            "m = keras.saving.load_model(sys.argv[1]); "
            "np.save(sys.argv[3], np.asarray(m(np.load(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, path, str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x).numpy(), atol=1e-5)


def test_rpcl_pix2seq_run_exports_model_keras_that_reloads_to_the_same_outputs(smoke_run,
                                                                              tmp_path):
    """SketchVAE rebuilds its weights from its config (build_from_config on a dummy batch), so
    an RPCL-pix2seq run exports model.keras; the GMM state travels with the weights."""
    run = str(tmp_path / "run")
    shutil.copytree(smoke_run, run)
    path = trainer.export_keras_model(run)
    assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]
    assert path is not None and os.path.exists(path)
    model, config = trainer.load_trained_model(run)
    batch = trainer._check_input(model, config)  # pylint: disable=protected-access
    reloaded = keras.saving.load_model(path)
    for a, b in zip(keras.tree.flatten(model(batch)), keras.tree.flatten(reloaded(batch))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    np.testing.assert_array_equal(reloaded.gmm.alpha, model.gmm.alpha)
