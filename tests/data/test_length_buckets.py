"""Per-batch trimming to length buckets (hparams.length_buckets): the loss is the padded one.

Real drawings: the embedded QuickDraw categories (sketchtk/data/default), a smoke-size model.
"""

import numpy as np
import pytest
import tensorflow as tf

import hparams
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.pipeline import bucket_lengths, make_dataset, trim_to_bucket
from sketchtk.losses.reconstruction import pen_cross_entropy, reconstruction_loss
from sketchtk.models.sketch_vae import SketchVAE

BUCKETS = 4


@pytest.fixture(scope="module")
def data():
    # capped at 120 points (a few longer drawings dropped): shorter compiled loops
    return load_sketch_data(None, DEFAULT_CATEGORIES, 40, 120)


def _hp(model, **changes):
    hp = hparams.get_preset("smoke").replace(model=model, random_scale_factor=0.0,
                                             augment_stroke_prob=0.0, **changes)
    return hp


def _first_batches(data, hp, count, training):
    # pre-rendered (blank) images: the stroke batches are what is tested, rendering is not
    images = np.full((len(data["train"]), hp.png_width, hp.png_width), 255, np.uint8)
    ds = make_dataset(data, "train", hp, training=training, images=images)
    return [{k: v for k, v in b.items()} for b in ds.take(count)]


def _losses(vae):
    return tf.function(lambda batch: vae.compute_losses(batch, training=False, step=0)[0])


def test_bucket_lengths_end_at_max_seq_len():
    assert bucket_lengths(250, 4) == [63, 125, 188, 250]
    assert bucket_lengths(3, 8) == [1, 2, 3]
    assert bucket_lengths(250, 1) == [250]


def test_trim_keeps_the_smallest_bucket_holding_the_longest_sketch(data):
    hp = _hp("rpcl_pix2seq", length_buckets=BUCKETS)
    edges = bucket_lengths(data.max_seq_len, BUCKETS)
    padded = _first_batches(data, _hp("rpcl_pix2seq"), 4, training=True)
    trimmed = _first_batches(data, hp, 4, training=True)
    seen = set()
    for full, cut in zip(padded, trimmed):
        steps = cut["strokes"].shape[1] - 1
        longest = int(np.max(full["lengths"]))
        assert steps == min(e for e in edges if e >= longest)
        seen.add(steps)
        # only padding rows were removed: what is kept is the padded batch's first rows
        np.testing.assert_array_equal(cut["strokes"].numpy(), full["strokes"][:, :steps + 1])
        assert np.all(full["strokes"].numpy()[:, steps + 1:, 4] == 1.0)
    assert seen <= set(edges)
    assert min(seen) < data.max_seq_len  # real QuickDraw batches are often shorter than the cap


@pytest.mark.parametrize("model, convention", [
    pytest.param("rpcl_pix2seq", "rpcl", marks=pytest.mark.slow), ("sketch_rnn", "magenta")])
def test_validation_losses_equal_the_padded_computation(data, model, convention):
    conventions = {} if convention == "rpcl" else hparams.presets.MAGENTA_CONVENTIONS
    hp = _hp(model, batch_size=8, **conventions)
    vae = SketchVAE(hp, data.max_seq_len, data.scale_factor, DEFAULT_CATEGORIES)
    padded = _first_batches(data, hp, 3, training=False)
    trimmed = _first_batches(data, hp.replace(length_buckets=BUCKETS), 3, training=False)
    assert any(c["strokes"].shape[1] < f["strokes"].shape[1] for f, c in zip(padded, trimmed))
    losses = _losses(vae)
    for full, cut in zip(padded, trimmed):
        want, got = losses(full), losses(cut)
        for key in ("loss", "recon", "offset_nll", "pen_xent", "kl"):
            np.testing.assert_allclose(float(got[key]), float(want[key]), rtol=2e-5, atol=1e-5,
                                       err_msg=key)


def test_training_loss_differs_only_by_the_dropped_padding_rows(data):
    """Training covers the padding with the pen loss: trimming removes exactly those rows' terms."""
    hp = _hp("rpcl_pix2seq", use_recurrent_dropout=False)
    vae = SketchVAE(hp, data.max_seq_len, data.scale_factor, DEFAULT_CATEGORIES)
    full = min(_first_batches(data, hp, 4, training=True), key=lambda b: int(max(b["lengths"])))
    cut = trim_to_bucket(full["strokes"], full["lengths"], data.max_seq_len, BUCKETS)
    steps = cut.shape[1] - 1
    z = tf.random.stateless_normal([hp.batch_size, hp.z_size], [1, 2])
    decode = tf.function(lambda strokes: vae.decoder(strokes[:, :-1], z, training=True))
    params_full, params_cut = decode(full["strokes"]), decode(cut)
    # causal decoder: the kept steps' outputs are the padded run's
    np.testing.assert_allclose(params_cut.numpy(), params_full[:, :steps].numpy(), atol=2e-5)
    total_full, offsets_full, _ = reconstruction_loss(full["strokes"][:, 1:], params_full)
    total_cut, offsets_cut, _ = reconstruction_loss(cut[:, 1:], params_cut)
    np.testing.assert_allclose(float(offsets_cut), float(offsets_full), rtol=1e-5)
    dropped = pen_cross_entropy(full["strokes"][:, steps + 1:], params_full[:, steps:])
    dropped = float(tf.reduce_mean(tf.reduce_sum(dropped, axis=1)))
    assert dropped > 0
    np.testing.assert_allclose(float(total_cut), float(total_full) - dropped, rtol=1e-5)
