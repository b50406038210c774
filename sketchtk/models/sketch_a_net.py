"""Sketch-a-Net-style CNN classifier for 48x48 sketch images, used for Rec (ALGORITHMS.md 3).

Sketch-a-Net (Yu et al. 2015) classifies 225x225 sketches with a large first convolution (15x15,
stride 3), a conv / max-pool stack, and two dropout-regularised fully connected layers written as
convolutions. ``SketchANet`` keeps that shape at 48x48: a 7x7 first convolution at stride 2 (the
kernel is wider than the stride, so no 1-2 px stroke falls between taps), max-pool, conv 5x5,
max-pool, three 3x3 convs, max-pool, a "fully connected" convolution over the remaining 3x3 map,
dropout, and a dense classifier: 48 -> 24 -> 12 -> 6 -> 3 -> 1, as 225 -> 71 -> 35 -> 15 -> 7 -> 1
in the paper. The default widths are narrower than the paper's so that a few thousand images train
on a CPU in a minute or two.
"""

import keras
import numpy as np
import tensorflow as tf
from absl import logging


def preprocess_images(images):
    """uint8 ``[N, W, W]`` or ``[N, W, W, 1]`` (black strokes on white) -> float32 ``[N, W, W, 1]``.

    Scales to ``x / 255 * 2 - 1`` (white = +1), the same input the encoder sees (DESIGN.md, Data
    formats). Raises ``ValueError`` for anything but uint8, so images are never scaled twice.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in 0..255 (black strokes on white); got dtype "
                         f"{images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape [N, W, W] or [N, W, W, 1]; got {images.shape}")
    return images.astype(np.float32) / 255.0 * 2.0 - 1.0


@keras.saving.register_keras_serializable(package="sketchtk")
class SketchANet(keras.Model):
    """Compact Sketch-a-Net classifier for ``[B, S, S, 1]`` images in ``[-1, 1]``; outputs logits.

    Layers: conv ``first_kernel`` x ``first_kernel``, stride ``first_stride`` (``filters[0]``) ->
    max-pool 3/2 -> conv 5x5 (``filters[1]``) -> max-pool 3/2 -> conv 3x3 (``filters[2]``,
    ``filters[3]``, ``filters[4]``) -> max-pool 3/2 -> "fully connected" conv over the whole map
    (``dense_units``) -> dropout -> dense (``dense_units``) -> dropout -> dense (``num_classes``).
    Convs use ReLU and "same" padding (the fully connected one "valid").

    Args:
      num_classes: number of categories.
      input_size: image side ``S`` (48 as in RPCL-pix2seq).
      filters: 5 conv widths (paper: 64, 128, 256, 256, 256).
      first_kernel: side of the first, large convolution kernel (paper: 15 at 225 px).
      first_stride: stride of the first convolution (paper: 3).
      dense_units: width of the two fully connected layers (paper: 512).
      dropout: dropout rate after each fully connected layer (paper: 0.5).
      seed: optional int; seeds the initialisers and dropout masks, so two models built with the
        same seed start from identical weights (no global seed is touched).
      **kwargs: ``keras.Model`` arguments (``name``, ``trainable``, ...).

    Call arguments:
      inputs: float ``[B, S, S, 1]`` in ``[-1, 1]`` (see ``preprocess_images``).
      training: enables dropout.

    Returns:
      float32 logits ``[B, num_classes]``.

    Example:
      >>> model = SketchANet(num_classes=3)
      >>> logits = model(np.zeros((2, 48, 48, 1), np.float32))  # [2, 3]

    Reference:
      Yu et al., "Sketch-a-Net that Beats Humans", BMVC 2015.
    """

    def __init__(self, num_classes, input_size=48, filters=(32, 64, 128, 128, 128),
                 first_kernel=7, first_stride=2, dense_units=256, dropout=0.5, seed=None, **kwargs):
        filters = tuple(int(f) for f in filters)
        if len(filters) != 5:
            raise ValueError(f"filters must list 5 conv widths; got {filters}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        counter = [0]

        def init():
            # Distinct per-layer seeds derived from one int; None keeps Keras' default seeding.
            counter[0] += 1
            return keras.initializers.GlorotUniform(
                seed=None if seed is None else int(seed) * 1000 + counter[0])

        def conv(width, kernel, name, padding="same", strides=1):
            return keras.layers.Conv2D(width, kernel, strides=strides, padding=padding,
                                       activation="relu", kernel_initializer=init(), name=name)

        def pool(name):
            return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)

        inputs = keras.Input(shape=(input_size, input_size, 1), name="image")
        x = conv(filters[0], first_kernel, "conv1", strides=first_stride)(inputs)
        x = pool("pool1")(x)
        x = conv(filters[1], 5, "conv2")(x)
        x = pool("pool2")(x)
        x = conv(filters[2], 3, "conv3")(x)
        x = conv(filters[3], 3, "conv4")(x)
        x = conv(filters[4], 3, "conv5")(x)
        x = pool("pool5")(x)
        # Paper's fc6 is a conv whose kernel covers the whole remaining map.
        x = conv(dense_units, x.shape[1], "fc6", padding="valid")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dropout(dropout, seed=None if seed is None else int(seed) + 1,
                                 name="drop6")(x)
        x = keras.layers.Dense(dense_units, activation="relu", kernel_initializer=init(),
                               name="fc7")(x)
        x = keras.layers.Dropout(dropout, seed=None if seed is None else int(seed) + 2,
                                 name="drop7")(x)
        logits = keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.filters = filters
        self.first_kernel = int(first_kernel)
        self.first_stride = int(first_stride)
        self.dense_units = int(dense_units)
        self.dropout = float(dropout)
        self.seed = seed

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "filters": list(self.filters),
            "first_kernel": self.first_kernel,
            "first_stride": self.first_stride,
            "dense_units": self.dense_units,
            "dropout": self.dropout,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def features(self, images, batch_size=256):
        """Penultimate-layer (``fc7``) features ``float32 [N, dense_units]`` of uint8 images.

        Inference mode (no dropout); these are the features of the FID / precision / recall
        metrics (``sketchtk.metrics.sample_quality``).
        """
        return penultimate_features(self, images, batch_size=batch_size)


def penultimate_features(classifier, images, batch_size=256):
    """Input of ``classifier``'s last layer, ``float32 [N, D]``, for uint8 sketches ``[N, W, W]``.

    For ``SketchANet`` that is the ``fc7`` activation (after ReLU; dropout is off at inference);
    the same rule (the input of the last layer, usually the logits ``Dense``) serves any
    functional Keras classifier. Images are scaled by ``preprocess_images``.
    """
    x = preprocess_images(images)
    expected = getattr(classifier, "input_shape", None)
    if expected is not None and tuple(expected[1:3]) != tuple(x.shape[1:3]):
        raise ValueError(f"classifier expects {tuple(expected[1:3])} images; got "
                         f"{tuple(x.shape[1:3])}")
    inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs
    extractor = keras.Model(inputs, classifier.layers[-1].input,
                            name=f"{classifier.name}_features")
    dim = int(extractor.output_shape[-1])
    # Eager batches: a fresh extractor under predict() would be traced anew on every call.
    out = [np.asarray(extractor(x[lo:lo + int(batch_size)], training=False), np.float32)
           for lo in range(0, len(x), int(batch_size))]
    return np.concatenate(out, axis=0) if out else np.zeros((0, dim), np.float32)


def train_classifier(images, labels, val_images=None, val_labels=None, num_classes=None, epochs=5,
                     batch_size=64, learning_rate=1e-3, seed=0, model_kwargs=None):
    """Train a ``SketchANet`` on uint8 sketch images; returns ``(model, history)``.

    Args:
      images: uint8 ``[N, S, S]`` (black strokes on white), scaled by ``preprocess_images``.
      labels: int ``[N]`` class ids in ``[0, num_classes)``.
      val_images, val_labels: optional validation set, same formats.
      num_classes: defaults to ``labels.max() + 1``.
      epochs, batch_size, learning_rate: Adam training schedule (sparse softmax cross-entropy).
      seed: seeds the model's initialisers / dropout and the shuffling.
      model_kwargs: extra ``SketchANet`` arguments (``filters``, ``dense_units``, ...).

    Returns:
      ``(model, history)``: the trained model and the ``keras.callbacks.History``.
    """
    x = preprocess_images(images)
    y = np.asarray(labels).astype(np.int64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},); got {y.shape}")
    num_classes = int(num_classes if num_classes is not None else y.max() + 1)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got [{y.min()}, {y.max()}]")

    model = SketchANet(num_classes=num_classes, input_size=x.shape[1], seed=seed,
                       **dict(model_kwargs or {}))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])

    train = (tf.data.Dataset.from_tensor_slices((x, y))
             .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size)
             .prefetch(tf.data.AUTOTUNE))
    validation = None
    if val_images is not None:
        validation = (preprocess_images(val_images), np.asarray(val_labels).astype(np.int64))

    def log_epoch(epoch, logs):
        logging.info("sketch_a_net epoch %d: %s", epoch + 1,
                     ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items())))

    # shuffle=False: the dataset above already shuffles, with the seed.
    history = model.fit(train, epochs=epochs, validation_data=validation, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)])
    return model, history
