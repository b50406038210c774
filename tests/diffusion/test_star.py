"""The mixed star-shaped process: G_t bookkeeping of the sampler, network evaluations reused
between evaluation points, per-t tail statistics, and the loss on real sketches."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data import point_sequences as ps
from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.diffusion import star_families as sf
from sketchtk.diffusion.star import Part, StarShapedProcess, make_sketch_star_process

T = 12


@pytest.fixture(scope="module")
def real_x0():
    """Normalised (x, y) offsets + one-hot pen states of 4 real embedded sketches ``[4, L, 4]``."""
    data = ps.prepare_point_data(load_sketch_data(None, DEFAULT_CATEGORIES[:2]), max_points=48)
    seqs = [ps.to_points(s, "delta") for s in data.splits["train"].sketches[:4]]
    length = max(len(s) for s in seqs)
    x0 = np.zeros((4, length, 4), np.float32)
    mask = np.zeros((4, length), np.float32)
    for i, s in enumerate(seqs):
        xy = s[:, :2] / np.std(np.concatenate([q[:, :2] for q in seqs]))
        x0[i, :len(s), :2] = xy
        x0[i, :len(s), 2:] = np.eye(2)[(s[:, 2] > 0.5).astype(int)]
        mask[i, :len(s)] = 1.0
    return tf.constant(x0), tf.constant(mask)


def _oracle(x0_target, counter=None):
    """A network that "predicts" a fixed x0 (positions as is, pen as confident logits)."""
    logits = tf.concat([x0_target[..., :2], 10.0 * (2.0 * x0_target[..., 2:] - 1.0)], -1)

    def fn(g, t, mask, context):
        if counter is not None:
            counter.assign_add(1)
        return logits, tf.zeros(tf.concat([tf.shape(mask), [0]], 0))
    return fn


@pytest.mark.parametrize("positions", ["gaussian", "beta"])
def test_sampler_accumulates_g_as_the_tail_sum_of_its_own_draws(real_x0, positions):
    x0, mask = real_x0
    proc = make_sketch_star_process(T, positions=positions)
    if positions == "beta":
        x0 = tf.concat([tf.sigmoid(x0[..., :2]), x0[..., 2:]], -1)
    res = proc.sample(_oracle(x0), mask, steps=4, seed=(3, 4), record_tail=True)
    xs, gs = res["xs"].numpy(), res["gs"].numpy()  # index = t
    terms = np.stack([proc.tail_term(tf.constant(xs[s]), tf.fill([4], s)).numpy()
                      for s in range(T)]) * mask.numpy()[None, ..., None]
    expected = np.cumsum(terms[::-1], axis=0)[::-1]
    np.testing.assert_allclose(gs, expected, rtol=1e-5, atol=1e-3)
    # the final prediction is the oracle's x0 (masked), in the families' domains
    got = res["x0"].numpy()
    np.testing.assert_allclose(got[..., 2:] * mask.numpy()[..., None],
                               x0.numpy()[..., 2:] * mask.numpy()[..., None], atol=1e-4)
    # the pen draws at t = 0 follow x0: Qbar_0 keeps almost all mass on x0's class
    agree = (xs[0, ..., 3] == x0.numpy()[..., 3])[mask.numpy() > 0]
    assert agree.mean() > 0.95


def test_sampler_calls_the_network_only_at_evaluation_points(real_x0):
    x0, mask = real_x0
    proc = make_sketch_star_process(T)
    counter = tf.Variable(0)
    res = proc.sample(_oracle(x0, counter), mask, steps=3, seed=(1, 1), record=True)
    assert int(counter.numpy()) == 3
    assert res["trajectory"].shape[0] == 3
    assert proc.evaluation_mask(3).sum() == 3 and proc.evaluation_mask(3)[[0, T - 1]].all()


def test_batch_tail_stats_of_the_gaussian_part_match_the_closed_form(real_x0):
    x0, mask = real_x0
    fam = sf.GaussianFamily(T, "linear")
    proc = StarShapedProcess([Part("positions", fam, 2)])
    stats = proc.batch_tail_stats(x0[..., :2], mask, tf.constant([5, 6])).numpy()
    real = x0[..., :2].numpy()[mask.numpy() > 0]
    s = fam.tail_snr_np[:, None]
    # given the batch's x0, the noise part of the mean has std sqrt(S_t / n)
    assert np.all(np.abs(stats[0] - s * real.mean(0)) < 5 * np.sqrt(s / len(real)))
    np.testing.assert_allclose(stats[1] ** 2, s ** 2 * real.var(0) + s, rtol=0.15, atol=1e-8)


def test_loss_is_zero_for_the_true_x0_and_positive_otherwise_on_real_sketches(real_x0):
    x0, mask = real_x0
    proc = make_sketch_star_process(T, loss="kl")
    perfect = tf.concat([x0[..., :2], 30.0 * (2.0 * x0[..., 2:] - 1.0)], -1)
    t = tf.constant([0, 3, 7, 11])
    assert np.all(proc.loss(perfect, x0, t, mask).numpy() < 1e-4)
    wrong = tf.concat([x0[..., :2] + 1.0, -perfect[..., 2:]], -1)
    per_part = proc.part_losses(wrong, x0, t, mask)
    assert float(per_part["positions"]) > 0.1 and float(per_part["pen"]) > 0.01
    # the padding contributes nothing, whatever the network says there
    junk = wrong + 100.0 * (1.0 - mask[..., None])
    np.testing.assert_allclose(proc.loss(junk, x0, t, mask), proc.loss(wrong, x0, t, mask),
                               rtol=1e-5)


def test_network_input_is_standardised_positions_and_a_pen_softmax(real_x0):
    x0, mask = real_x0
    proc = make_sketch_star_process(T)
    t = tf.constant([0, 2, 5, 11])
    g = proc.tail_sample(x0, t, tf.constant([1, 9]))
    stats = proc.batch_tail_stats(x0, mask, tf.constant([2, 2]))
    inp = proc.network_input(g, t, stats).numpy()
    np.testing.assert_allclose(inp[..., 2:].sum(-1), 1.0, rtol=1e-5)
    real = inp[..., :2][mask.numpy() > 0]
    assert np.all(np.isfinite(inp)) and np.abs(real).max() < 10.0


def test_bad_process_hparams_are_one_line_config_errors():
    from sketchtk.config import HParams
    from sketchtk.errors import ConfigError
    for changes, key in ((dict(process="bogus"), "process"), (dict(star_positions="x"),
                                                              "star_positions"),
                         (dict(star_loss="mse"), "star_loss"), (dict(spd_c2=0.0), "spd_c1"),
                         (dict(star_stat_batches=0), "star_stat_batches")):
        with pytest.raises(ConfigError, match=f"hparam {key}="):
            HParams().replace(**changes)
