"""BuiltUpFrontModel: Keras' symbolic build is skipped once model and optimiser are built."""

import keras
import numpy as np

from sketchtk.models.built_up_front import BuiltUpFrontModel
from sketchtk.models.raster_diffusion import RasterDiffusion
from sketchtk.models.sketch_vae import SketchVAE
from sketchtk.models.stroke_diffusion import StrokeDiffusion


class _Tiny(BuiltUpFrontModel):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_symbolic_build_is_skipped_only_when_model_and_optimiser_are_built(monkeypatch):
    calls = []
    monkeypatch.setattr(keras.Model, "_maybe_symbolic_build",
                        lambda self, iterator=None, data_batch=None: calls.append(data_batch))
    model = _Tiny()
    model(np.zeros([1, 3], np.float32))
    model.compile(optimizer="adam", loss="mse")
    model._maybe_symbolic_build(data_batch="batch 1")  # pylint: disable=protected-access
    assert calls == ["batch 1"]  # the optimiser is not built yet: Keras' own build runs
    model.optimizer.build(model.trainable_variables)
    model._maybe_symbolic_build(data_batch="batch 2")  # pylint: disable=protected-access
    assert calls == ["batch 1"]  # built up front (as the trainer does): skipped


def test_every_trained_model_class_is_built_up_front():
    for cls in (SketchVAE, StrokeDiffusion, RasterDiffusion):
        assert issubclass(cls, BuiltUpFrontModel), cls
