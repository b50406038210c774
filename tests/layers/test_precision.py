"""Mixed bfloat16 (hparams.precision=mixed_bfloat16): bf16 matmul operands, float32 elsewhere."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import hparams
from sketchtk.data.npz_io import load_stroke_npz
from sketchtk.data.strokes import stroke3_to_stroke5
from sketchtk.layers.precision import matmul_dtype_for, mixed_matmul
from sketchtk.layers.stroke_decoder import StrokeDecoder
from sketchtk.losses.reconstruction import reconstruction_loss
from sketchtk.models.sketch_vae import SketchVAE

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sheep_small.npz")
STEPS = 24


@pytest.fixture(scope="module")
def strokes():
    """Real sheep drawings as stroke-5 ``[8, STEPS + 1, 5]`` (start token, cut at STEPS points)."""
    sheep = load_stroke_npz(FIXTURE)["train"][:8]
    rows = [stroke3_to_stroke5(np.asarray(s, np.float32)[:STEPS] / 20.0, STEPS) for s in sheep]
    return tf.constant(np.stack(rows).astype(np.float32))


def test_mixed_matmul_rounds_operands_to_bfloat16_and_returns_float32():
    a = tf.constant([[1.0 + 2.0 ** -10, 3.0]])
    b = tf.constant([[1.0], [1.0]])
    exact = mixed_matmul(a, b, tf.float32)
    mixed = mixed_matmul(a, b, tf.bfloat16)
    assert exact.dtype == mixed.dtype == tf.float32
    assert float(exact[0, 0]) == 4.0 + 2.0 ** -10
    assert float(mixed[0, 0]) == 4.0          # 1 + 2^-10 is not a bfloat16 (8 mantissa bits)


def test_precision_names_map_to_matmul_dtypes():
    assert matmul_dtype_for("float32") == "float32"
    assert matmul_dtype_for("mixed_bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        matmul_dtype_for("float16")
    with pytest.raises(ValueError, match="matmul_dtype"):
        StrokeDecoder("lstm", units=8, z_size=4, matmul_dtype="half")


def _loss_and_grads(dec_model, matmul_dtype, strokes, z):
    keras.utils.set_random_seed(3)
    decoder = StrokeDecoder(dec_model, units=32, num_mixture=3, z_size=z.shape[-1],
                            hyper_num_units=16, hyper_embedding_size=4,
                            use_recurrent_dropout=False, matmul_dtype=matmul_dtype)

    @tf.function
    def run(strokes, z):
        with tf.GradientTape() as tape:
            loss, _, _ = reconstruction_loss(strokes[:, 1:], decoder(strokes[:, :-1], z,
                                                                     training=True))
        return loss, tape.gradient(loss, decoder.trainable_variables)

    decoder(strokes[:, :-1], z)
    loss, grads = run(strokes, z)
    return decoder, float(loss), grads


@pytest.mark.parametrize("dec_model", ["lstm", pytest.param("hyper", marks=pytest.mark.slow)])
def test_bfloat16_training_step_matches_float32_within_bfloat16_rounding(strokes, dec_model):
    z = tf.random.stateless_normal([strokes.shape[0], 6], [4, 5])
    ref, loss32, grads32 = _loss_and_grads(dec_model, "float32", strokes, z)
    mixed, loss16, grads16 = _loss_and_grads(dec_model, "bfloat16", strokes, z)
    # master weights and the loss stay float32; the weights start equal (same seed)
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    for a, b in zip(ref.trainable_variables, mixed.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert loss16 != loss32                                     # bf16 is really used
    assert abs(loss16 - loss32) <= 1e-2 * abs(loss32)
    for g32, g16, v in zip(grads32, grads16, ref.trainable_variables):
        g32, g16 = tf.convert_to_tensor(g32), tf.convert_to_tensor(g16)
        assert g16.dtype == tf.float32
        rel = float(tf.norm(g16 - g32) / (tf.norm(g32) + 1e-12))
        assert rel < 5e-2, (v.name, rel)


def test_precision_hparam_reaches_the_decoder_and_survives_get_config():
    hp = hparams.get_preset("smoke").replace(precision="mixed_bfloat16")
    model = SketchVAE(hp, 20, 1.0, hp.categories)
    assert model.decoder.cell.matmul_dtype == "bfloat16"
    assert model.decoder.head.matmul_dtype == "bfloat16"
    clone = StrokeDecoder.from_config(model.decoder.get_config())
    assert clone.cell.matmul_dtype == "bfloat16"
    assert SketchVAE(hp.replace(precision="float32"), 20, 1.0, hp.categories
                     ).decoder.cell.matmul_dtype == "float32"
