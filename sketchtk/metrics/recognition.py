"""Rec: recognisability of generated sketches by a Sketch-a-Net classifier (ALGORITHMS.md 3).

Rec is the accuracy of a classifier trained on the model's training set (``SketchANet``), measured
on the rasterised generated sketches, overall and per category. The images go through exactly the
scaling the classifier was trained with (``sketch_a_net.preprocess_images``: ``x / 255 * 2 - 1``,
shape ``[N, W, W, 1]``).
"""

import numpy as np
from absl import logging

from sketchtk.models.sketch_a_net import preprocess_images


def predict_labels(classifier, images, batch_size=256):
    """Arg-max class ``np.int64 [N]`` of ``classifier`` on uint8 images ``[N, W, W]``."""
    x = preprocess_images(images)
    expected = getattr(classifier, "input_shape", None)
    if expected is not None and tuple(expected[1:3]) != tuple(x.shape[1:3]):
        raise ValueError(f"classifier expects {tuple(expected[1:3])} images; got "
                         f"{tuple(x.shape[1:3])}")
    if len(x) == 0:
        return np.zeros((0,), dtype=np.int64)
    logits = classifier.predict(x, batch_size=int(batch_size), verbose=0)
    return np.argmax(np.asarray(logits), axis=-1).astype(np.int64)


def recognition_accuracy(classifier, images, labels, categories, batch_size=256, counted_wrong=None):
    """Rec: classifier accuracy on (generated) sketch images, overall and per category.

    Args:
      classifier: a trained Keras classifier (e.g. ``SketchANet``) mapping ``[B, W, W, 1]`` in
        ``[-1, 1]`` to ``[B, num_classes]`` logits or probabilities; class ``i`` is
        ``categories[i]``.
      images: uint8 ``[N, W, W]`` (or ``[N, W, W, 1]``), black strokes on white.
      labels: int ``[N]``, the category index each sketch was generated for.
      categories: list of category names, indexed by label.
      batch_size: prediction batch size.
      counted_wrong: optional bool ``[N]``: images that count as misses whatever the classifier
        predicts (``run_evaluation`` marks empty / degenerate samples so: a blank image must not
        score by luck).

    Returns:
      ``{"rec": overall accuracy, "per_category": {name: accuracy}, "counts": {name: n}}``;
      categories with no images are left out of ``per_category`` (and logged), ``rec`` is NaN for
      an empty set.

    Raises:
      ValueError: images not uint8 / wrong shape, labels of the wrong shape or outside
        ``[0, len(categories))``, or a classifier whose output width differs from
        ``len(categories)``.
    """
    categories = [str(c) for c in categories]
    labels = np.asarray(labels)
    num = np.asarray(images).shape[0] if np.ndim(images) else 0
    if labels.shape != (num,) or (num and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be an int array of shape ({num},); got shape "
                         f"{labels.shape} dtype {labels.dtype}")
    if num and (labels.min() < 0 or labels.max() >= len(categories)):
        raise ValueError(f"labels must lie in [0, {len(categories)}) (one per category name); got "
                         f"[{labels.min()}, {labels.max()}]")
    output_shape = getattr(classifier, "output_shape", None)
    if output_shape is not None and output_shape[-1] != len(categories):
        raise ValueError(f"classifier has {output_shape[-1]} outputs but {len(categories)} "
                         f"categories were named: {categories}")

    predicted = predict_labels(classifier, images, batch_size=batch_size)
    correct = predicted == labels
    if counted_wrong is not None:
        counted_wrong = np.asarray(counted_wrong, bool)
        if counted_wrong.shape != (num,):
            raise ValueError(f"counted_wrong must have shape ({num},); got {counted_wrong.shape}")
        correct &= ~counted_wrong
    per_category, counts = {}, {}
    for index, name in enumerate(categories):
        mask = labels == index
        counts[name] = int(mask.sum())
        if counts[name]:
            per_category[name] = float(correct[mask].mean())
        else:
            logging.warning("recognition: no images for category %r", name)
    rec = float(correct.mean()) if num else float("nan")
    logging.info("recognition over %d images: rec=%.4f per category %s", num, rec, per_category)
    return {"rec": rec, "per_category": per_category, "counts": counts}
