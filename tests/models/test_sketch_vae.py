"""SketchVAE: GMM dynamics on real data through the training entry point, loss composition, KL
conventions of the baselines, validation masking and the update order of the reference."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from hparams import get_preset
from sketchtk.data.loader import load_sketch_data
from sketchtk.data.pipeline import make_dataset
from sketchtk.losses import latent as latent_losses
from sketchtk.losses.reconstruction import reconstruction_loss
from sketchtk.models.sketch_vae import SketchVAE, make_optimizer
from sketchtk.training import trainer


def _history(log_root):
    with open(os.path.join(log_root, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_gmm_keeps_most_components_while_real_codes_drift(tmp_path):
    """The default preset's CNN encoder (z 128, 10 components) with a small decoder, trained on
    the embedded QuickDraw drawings through ``train_and_evaluate``: the codes move tens of units
    in the first Adam steps. The old exact posterior left 9 of 10 components behind (frozen,
    alpha 0.1 * 0.95^t < 1e-3 by step ~90) and counted 1 active at step 100; the reference's
    floored posterior keeps them following the data."""
    steps = 100
    hp = get_preset("default").replace(
        dec_model="lstm", dec_rnn_size=16, mdn_components=3, batch_size=16, max_seq_len=100,
        num_steps=steps, eval_every=steps, log_every=10, valid_batches=1)
    trainer.train_and_evaluate(hp, str(tmp_path), verbose=0)
    rows = _history(str(tmp_path))
    assert int(rows[-1]["step"]) == steps
    active = [float(r["active_components"]) for r in rows]
    assert active[-1] > hp.num_components / 2, active
    model, _ = trainer.load_trained_model(str(tmp_path), which="latest")
    mu = np.asarray(model.gmm.mu)
    # Every component moved away from its U(-1, 1) start (norm ~6.5) toward the codes.
    assert np.all(np.linalg.norm(mu, axis=1) > 10.0), np.linalg.norm(mu, axis=1)


@pytest.fixture(scope="module")
def real_data():
    """The embedded QuickDraw subset (2 categories), capped at 60 points."""
    hp = get_preset("smoke")
    return load_sketch_data(None, hp.categories[:2], num_per_category=40, max_seq_len=60)


def _model(data, **changes):
    hp = get_preset("smoke").replace(categories=data.categories, max_seq_len=60, **changes)
    model = SketchVAE(hp, max_seq_len=data.max_seq_len, scale_factor=data.scale_factor,
                      categories=data.categories)
    batch = next(iter(make_dataset(data, "train", hp, training=True)))
    model.build_from_batch(batch)
    model.compile(optimizer=make_optimizer(hp))
    return model, batch, hp


def _gmm_state(model):
    return {k: tf.identity(getattr(model.gmm, k)) for k in ("mu", "sigma2", "alpha")}


def test_kl_terms_use_the_gmm_state_after_this_steps_update(real_data):
    """RPCL-pix2seq model.py 105-116: alpha_loss and gaussian_loss take stop_gradient(q_*), the
    state *after* the batch's EM update; the update is assigned only after the gradient step."""
    model, batch, _ = _model(real_data, gmm_ema_rate=0.5)
    before = _gmm_state(model)
    out, (mu, sigma2, z), new = model.compute_losses(batch, training=False, step=0,
                                                     update_gmm=True)
    for k, v in before.items():  # computing the losses assigns nothing
        np.testing.assert_array_equal(getattr(model.gmm, k), v)
    gamma, log_gamma = model.gmm.posterior(z)
    expected = model.gmm.estimate(model.gmm.batch_statistics(gamma, mu, sigma2, False))
    for k in ("mu", "sigma2", "alpha"):
        np.testing.assert_allclose(new[k], expected[k], rtol=1e-6)

    def kl_with(state):
        return (latent_losses.alpha_loss(log_gamma, tf.math.log(state["alpha"] + 1e-10))
                + latent_losses.gaussian_loss(mu, sigma2, gamma, state["mu"], state["sigma2"]))

    np.testing.assert_allclose(out["kl"], kl_with(expected), rtol=1e-5)
    assert abs(float(kl_with(before)) - float(out["kl"])) > 1e-3 * abs(float(out["kl"]))


def test_train_step_loss_composition_and_reference_step_counter(real_data):
    """loss = recon + klw * (alpha_loss + gaussian_loss) + de_weight * de_loss, with the
    reference's counter from 0: klw = 1 - 0.999 * 0.9999^0 = 0.001 and lr = 1e-3 on the first
    step. After the step the GMM holds the estimate the KL used."""
    model, batch, hp = _model(real_data)
    captured = {}
    original = model.compute_losses

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        captured.update(out[2])
        return out

    model.compute_losses = spy
    logs = model.train_step(batch)
    np.testing.assert_allclose(logs["klw"], 0.001, rtol=1e-4)  # step 1 would give 0.0011
    np.testing.assert_allclose(logs["lr"], 1e-3, rtol=1e-6)
    want = (logs["recon"] + logs["klw"] * (logs["alpha_loss"] + logs["gaussian_loss"])
            + hp.de_weight * logs["de_loss"])
    np.testing.assert_allclose(logs["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(logs["kl"], logs["alpha_loss"] + logs["gaussian_loss"], rtol=1e-6)
    for k in ("mu", "sigma2", "alpha"):
        np.testing.assert_array_equal(getattr(model.gmm, k), captured[k])


def _pad(batch, extra):
    end = tf.tile(tf.constant([[[0.0, 0.0, 0.0, 0.0, 1.0]]]), [tf.shape(batch["strokes"])[0],
                                                                extra, 1])
    return {**batch, "strokes": tf.concat([batch["strokes"], end], axis=1)}


def test_validation_loss_is_independent_of_padding(real_data):
    """Validation masks the pen loss to the real points (the reference's eval lil_loss); today's
    ~80% padded rows must not count. Training keeps the pen loss on padding (as both refs)."""
    model, batch, _ = _model(real_data)
    short, _, _ = model.compute_losses(batch, training=False, step=0)
    long, _, _ = model.compute_losses(_pad(batch, 40), training=False, step=0)
    np.testing.assert_allclose(long["recon"], short["recon"], rtol=1e-5)
    np.testing.assert_allclose(long["pen_xent"], short["pen_xent"], rtol=1e-5)
    params = model(batch, training=False)
    _, _, masked_pen = reconstruction_loss(batch["strokes"][:, 1:], params, mask_padding=True)
    np.testing.assert_allclose(short["pen_xent"], masked_pen, rtol=1e-5)


def test_magenta_convention_averages_both_terms_for_the_baselines(real_data):
    """sketch_rnn with magenta's conventions: total = mean-over-time L_R + klw * max(KL, 0.2),
    KL averaged over z dims, klw from 0.01; the RPCL convention sums L_R over time and the KL
    over z. The KL's weight relative to L_R differs by T / Z between them."""
    from hparams.presets import MAGENTA_CONVENTIONS
    magenta, batch, _ = _model(real_data, model="sketch_rnn", **MAGENTA_CONVENTIONS)
    out, (mu, sigma2, _), _ = magenta.compute_losses(batch, training=False, step=0)
    params = magenta(batch, training=False)
    steps = batch["strokes"].shape[1] - 1
    summed, _, _ = reconstruction_loss(batch["strokes"][:, 1:], params, mask_padding=True)
    np.testing.assert_allclose(out["recon"], summed / steps, rtol=1e-5)
    kl_mean = latent_losses.standard_normal_kl(mu, sigma2, 0.2)
    np.testing.assert_allclose(out["kl"], kl_mean, rtol=1e-6)
    np.testing.assert_allclose(out["klw"], 0.01, rtol=1e-4)
    np.testing.assert_allclose(out["loss"], out["recon"] + 0.01 * kl_mean, rtol=1e-5)

    rpcl, batch_r, hp = _model(real_data, model="sketch_rnn")
    out_r, (mu_r, s2_r, _), _ = rpcl.compute_losses(batch_r, training=False, step=0)
    np.testing.assert_allclose(
        out_r["kl"], hp.z_size * latent_losses.standard_normal_kl(mu_r, s2_r, hp.kl_tolerance),
        rtol=1e-6)
    opt = make_optimizer(magenta.hparams)
    assert opt.beta_1 == 0.9 and make_optimizer(hp).beta_1 == 0.5
    schedule = opt._learning_rate  # the LearningRateSchedule object
    np.testing.assert_allclose(schedule(tf.constant(3)),
                               (1e-3 - 1e-5) * 0.9999 ** 3 + 1e-5, rtol=1e-6)
