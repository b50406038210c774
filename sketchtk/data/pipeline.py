"""The one dataset builder: ``make_dataset(data, split, hparams, training=...)``.

Each batch is a dict:
- ``strokes``: float32 ``[B, max_seq_len + 1, 5]`` stroke-5 with start token and padding (with
  ``hparams.length_buckets`` > 0 only up to the batch's length bucket, see ``trim_to_bucket``);
- ``images``: uint8 ``[B, W, W]`` rendered from the *same* (augmented) strokes;
- ``labels``: int32 ``[B]`` category indices; ``lengths``: int32 ``[B]`` real points.

For ``hparams.model == "stroke_diffusion"`` the batch holds point sequences instead
(``sketchtk.data.point_sequences``): ``points`` float32 ``[B, max_seq_len, 3]`` in the
``hparams.representation`` (zero-padded), ``mask`` float32 ``[B, max_seq_len]``, ``labels``,
``lengths``, ``index``; no images are rendered. ``data`` is then the output of
``point_sequences.prepare_point_data`` (resampled, ``max_seq_len`` = the padded length).

Training order is a stateless function of ``(seed, global example index g)``: pass ``p = g // N``
visits the examples in the permutation ``index_shuffle(., seed=(seed, p))`` and example ``g`` is
augmented with seed ``(seed, g)``. Resuming at step ``k`` starts the index stream at ``k * B``
without touching the skipped examples, so a resumed run sees exactly the batches it would have.
"""

import numpy as np
import tensorflow as tf

from sketchtk.data import augment
from sketchtk.data import point_sequences
from sketchtk.render.raster import render_batch


def _ragged_store(sketches):
    """Concatenated points ``[P, 3]`` and row splits ``[N + 1]`` of a list of sketches."""
    values = np.concatenate([np.asarray(s, np.float32) for s in sketches], axis=0)
    row_splits = np.concatenate([[0], np.cumsum([len(s) for s in sketches])]).astype(np.int64)
    return tf.constant(values), tf.constant(row_splits)


def to_stroke5_batch(ragged, max_seq_len):
    """Ragged stroke-3 ``[B, None, 3]`` -> (stroke-5 ``[B, max_seq_len + 1, 5]``, lengths ``[B]``)."""
    lengths = tf.cast(ragged.row_lengths(), tf.int32)
    batch = tf.shape(lengths)[0]
    dense = ragged.to_tensor(default_value=0.0, shape=[None, max_seq_len, 3])
    mask = tf.sequence_mask(lengths, max_seq_len, dtype=tf.float32)[..., None]
    pen = dense[..., 2:3]
    body = tf.concat([dense[..., :2], (1.0 - pen) * mask, pen * mask, 1.0 - mask], axis=-1)
    start = tf.tile(tf.constant([[[0.0, 0.0, 1.0, 0.0, 0.0]]]), [batch, 1, 1])
    return tf.concat([start, body], axis=1), lengths


def bucket_lengths(max_seq_len, num_buckets):
    """The fixed padded lengths of ``length_buckets``: ``ceil(max_seq_len * i / n)``, i = 1..n.

    The last one is ``max_seq_len`` itself, so every batch has a bucket.
    """
    n = max(1, min(int(num_buckets), int(max_seq_len)))
    return sorted({-(-int(max_seq_len) * i // n) for i in range(1, n + 1)})


def trim_to_bucket(strokes5, lengths, max_seq_len, num_buckets):
    """Cut a padded stroke-5 batch ``[B, max_seq_len + 1, 5]`` to its length bucket.

    The batch keeps ``T + 1`` rows, ``T`` the smallest of :func:`bucket_lengths` that holds its
    longest sketch (``max(lengths)``): only padding rows are removed, and the decoder is causal,
    so the outputs at the kept steps are unchanged. What the loss loses is the padding past ``T``
    (end-of-sketch rows): nothing where the loss is masked to the real points (validation,
    evaluation, the offset term), and the pen term's padding rows past ``T`` in training. A few
    fixed lengths (not one per batch) keep the number of traced shapes small.
    """
    buckets = tf.constant(bucket_lengths(max_seq_len, num_buckets), tf.int32)
    longest = tf.reduce_max(tf.concat([lengths, [1]], axis=0))
    steps = tf.gather(buckets, tf.reduce_sum(tf.cast(buckets < longest, tf.int32)))
    return strokes5[:, :steps + 1]


def make_dataset(data, split, hparams, training, start_step=0, images=None,
                 batch_size=None, repeat=None):
    """Build the ``tf.data`` pipeline for one split of a loaded ``SketchData``.

    Args:
      data: ``sketchtk.data.loader.SketchData``.
      split: ``"train"``, ``"valid"`` or ``"test"``.
      hparams: ``HParams`` (batch size, augmentation rates, png_width, seed).
      training: shuffle + augment + repeat forever + drop_remainder when True; otherwise one
        deterministic pass in file order (last partial batch kept).
      start_step: with ``training``, the number of batches already consumed (resume).
      images: optional pre-rendered uint8 ``[N, W, W]`` aligned with the split (only without
        augmentation: an augmented sketch needs its own image).
      batch_size: overrides ``hparams.batch_size`` (e.g. per-worker batch).
      repeat: overrides the default (``training``).
    """
    if getattr(data, "sharded", False):  # sharded TFRecords stream (sketchtk.data.tfrecords)
        from sketchtk.data import tfrecords
        return tfrecords.make_dataset(data, split, hparams, training, start_step, images,
                                      batch_size, repeat)
    subset = data[split]
    n = len(subset)
    batch_size = batch_size or hparams.batch_size
    repeat = training if repeat is None else repeat
    max_len = data.max_seq_len
    width = hparams.png_width
    values, row_splits = _ragged_store(subset.sketches)
    labels = tf.constant(subset.labels)
    augmenting = training and (hparams.random_scale_factor > 0 or hparams.augment_stroke_prob > 0)
    if images is not None and augmenting:
        raise ValueError("pre-rendered images cannot be used with stroke augmentation")
    stored_images = None if images is None else tf.constant(images, tf.uint8)
    seed = hparams.seed
    point_mode = hparams.model == "stroke_diffusion"
    if point_mode and images is not None:
        raise ValueError("a stroke_diffusion dataset has no images")

    def example(g):
        if training:
            passes = g // n
            idx = tf.random.experimental.index_shuffle(
                g % n, seed=tf.stack([tf.cast(seed, tf.int64), passes]),
                max_index=n - 1)
        else:
            idx = g % n
        sketch = values[row_splits[idx]:row_splits[idx + 1]]
        if augmenting:
            sketch = augment.augment_strokes(
                sketch, tf.stack([tf.cast(seed, tf.int64), g]),
                hparams.random_scale_factor, hparams.augment_stroke_prob)
        if point_mode:
            sketch = point_sequences.tf_to_points(sketch, hparams.representation)
        out = {"sketch": sketch, "labels": labels[idx], "index": idx}
        if stored_images is not None:
            out["images"] = stored_images[idx]
        return out

    def finish_points(batch, step_seed):
        del step_seed
        points, mask, lengths = point_sequences.to_point_batch(batch["sketch"], max_len)
        return {"points": points, "mask": mask, "labels": batch["labels"], "lengths": lengths,
                "index": batch["index"]}

    def finish(batch, step_seed):
        strokes5, lengths = to_stroke5_batch(batch["sketch"], max_len)
        if hparams.length_buckets > 0:
            strokes5 = trim_to_bucket(strokes5, lengths, max_len, hparams.length_buckets)
        if "images" in batch:
            rendered = batch["images"]
        else:
            rendered = render_batch(batch["sketch"], width)
        if training and (hparams.png_scale_ratio < 1 or hparams.png_rotate_angle > 0
                         or hparams.png_translate_dist > 0):
            rendered = augment.image_transform(
                rendered, tf.stack([tf.cast(seed, tf.int64) + 1, step_seed]),
                hparams.png_scale_ratio, hparams.png_rotate_angle, hparams.png_translate_dist)
        return {"strokes": strokes5, "images": rendered, "labels": batch["labels"],
                "lengths": lengths, "index": batch["index"]}

    # `repeat` decides between an endless stream and one pass; before, `training or repeat` made
    # `training=True, repeat=False` endless too, ignoring the documented override.
    if repeat:
        indices = tf.data.Dataset.range(start_step * batch_size, 2**62)
    elif training:
        indices = tf.data.Dataset.range(start_step * batch_size, n)  # the rest of shuffled pass 0
    else:
        indices = tf.data.Dataset.range(n)
    ds = indices.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ragged_batch(batch_size, drop_remainder=training)
    finisher = finish_points if point_mode else finish
    ds = ds.enumerate(start=start_step).map(
        lambda i, b: finisher(b, i), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
