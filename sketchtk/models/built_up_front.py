"""The base class of the models that ``sketchtk.training.trainer`` builds before ``fit``."""

import keras


class BuiltUpFrontModel(keras.Model):
    """A ``keras.Model`` whose weights and optimiser the trainer builds from one real batch
    before ``fit`` (``build_from_batch``, ``build_from_config``).

    Keras' TensorFlow trainer reduces a distributed batch (``strategy.reduce`` MEAN) before it
    checks whether anything still needs a symbolic build; under ``MultiWorkerMirroredStrategy``
    that reduce fails for dict batches. Once model and optimiser are built there is nothing to
    build, so the step is skipped then.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
