"""RasterDiffusion (SPD on 48 x 48 renders of the embedded real data): the UNet2D layer contract,
training through the shared trainer, reload, and both samplers."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.layers.denoisers.unet2d import UNet2DDenoiser
from sketchtk.models.raster_diffusion import images_to_x0, x0_to_images
from sketchtk.training import trainer
from tests.layer_checks import check_layer


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
