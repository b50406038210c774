"""Tests for sketchtk.layers.gmm_latent.GMMLatent (posterior, EM / RPCL updates, state)."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from sketchtk.layers.gmm_latent import GMMLatent
from tests.layer_checks import check_layer

PRUNE_STEPS = 600




def _gmm(k=3, z=4, **kwargs):
    gmm = GMMLatent(num_components=k, z_size=z, seed=0, **kwargs)
    gmm.build()
    return gmm


def _set_state(gmm, mu, sigma2, alpha):
    gmm.mu.assign(np.asarray(mu, "float32"))
    gmm.sigma2.assign(np.asarray(sigma2, "float32"))
    gmm.alpha.assign(np.asarray(alpha, "float32"))


def _state(gmm):
    return gmm.mu.numpy(), gmm.sigma2.numpy(), gmm.alpha.numpy()


def _numpy_log_posterior(z, mu, sigma2, alpha):
    z, mu, sigma2, alpha = (np.asarray(a, np.float64) for a in (z, mu, sigma2, alpha))
    diff = z[:, None, :] - mu[None]
    log_n = -0.5 * np.sum(diff ** 2 / sigma2 + np.log(2 * np.pi * sigma2), axis=-1)
    joint = np.log(alpha) + log_n
    m = joint.max(axis=1, keepdims=True)
    return joint - (m + np.log(np.exp(joint - m).sum(axis=1, keepdims=True)))


def _reference_posterior(z, mu, sigma2, alpha):
    """RPCL-pix2seq model.py calculate_prob / calculate_posterior (206-224) in NumPy, written
    independently of sketchtk: float32 log-density, exp in float64, 1e-300, clip, renormalise."""
    z, mu, sigma2 = (np.asarray(a, np.float32) for a in (z, mu, sigma2))
    log_exp = -0.5 * np.sum((z[:, None] - mu[None]) ** 2 / (1e-30 + sigma2[None]), axis=2)
    log_frac = np.sum(np.log(np.sqrt(sigma2 + 1e-30)), axis=1)[None]
    log_prob = (log_exp - log_frac - z.shape[1] / 2.0 * np.log(2.0 * 3.1416)).astype(np.float32)
    temp = np.asarray(alpha, np.float64)[None] * np.exp(log_prob.astype(np.float64))
    gamma = np.clip((temp / (1e-300 + temp.sum(axis=1, keepdims=True))).astype(np.float32),
                    1e-5, 1.0)
    return gamma / (1e-10 + gamma.sum(axis=1, keepdims=True))


def _reference_update(y, s2_enc, gamma, mu, sigma2, alpha, rpcl, rate=0.05):
    """model.py em (251-269) / rpcl (226-249) in NumPy, unexpanded, float64."""
    y, s2_enc, gamma = (np.asarray(a, np.float64) for a in (y, s2_enc, gamma))
    if rpcl:
        k = gamma.shape[1]
        winner = np.eye(k)[np.argmax(gamma, axis=1)]
        rival = np.eye(k)[np.argmax(gamma - gamma * winner, axis=1)]
        gamma = winner - 1e-4 * rival
    g = gamma.sum(axis=0)[:, None]
    mu_est = gamma.T @ y / (g + 1e-10)
    spread = (y[:, None] - mu_est[None]) ** 2 + s2_enc[:, None]
    sigma2_est = np.einsum("bk,bkz->kz", gamma, spread) / (g + 1e-10)
    alpha_new = np.clip((1 - rate) * np.asarray(alpha) + rate * gamma.mean(axis=0), 0, 1)
    return ((1 - rate) * np.asarray(mu) + rate * mu_est,
            np.clip((1 - rate) * np.asarray(sigma2) + rate * sigma2_est, 1e-10, 1e10),
            alpha_new / alpha_new.sum())


def _two_clusters(rng, n, centres, spread=0.3, p_first=0.5):
    labels = (rng.uniform(size=n) > p_first).astype(int)
    y = np.asarray(centres, "float32")[labels] + spread * rng.normal(size=(n, len(centres[0])))
    return y.astype("float32"), labels


def test_layer_contract(tmp_path):
    z = tf.random.stateless_normal((5, 4), seed=(0, 1))
    log_gamma = check_layer(lambda: GMMLatent(num_components=3, z_size=4, seed=0), z, tmp_path)
    assert log_gamma.shape == (5, 3)


def test_initial_state_and_weights_are_not_trained():
    gmm = GMMLatent(num_components=10, z_size=6, seed=3)
    gmm(tf.zeros((1, 6)))
    assert gmm.trainable_weights == []
    assert len(gmm.non_trainable_weights) == 3
    mu = gmm.mu.numpy()
    assert mu.shape == (10, 6) and np.all(np.abs(mu) <= 1.0) and mu.std() > 0.3
    np.testing.assert_array_equal(gmm.sigma2.numpy(), 1.0)
    np.testing.assert_allclose(gmm.alpha.numpy(), 0.1)
    np.testing.assert_array_equal(GMMLatent(10, 6, seed=3)(tf.zeros((1, 6))).numpy(),
                                  gmm(tf.zeros((1, 6))).numpy())  # seeded init
    with pytest.raises(ValueError, match="num_components"):
        GMMLatent(num_components=1)
    with pytest.raises(ValueError, match="posterior_floor"):
        GMMLatent(num_components=10, posterior_floor=0.2)


def test_exact_log_posterior_matches_numpy():
    rng = np.random.default_rng(0)
    gmm = _gmm(k=4, z=3)
    mu, sigma2 = rng.normal(size=(4, 3)), rng.uniform(0.2, 3.0, size=(4, 3))
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    _set_state(gmm, mu, sigma2, alpha)
    z = rng.normal(size=(6, 3)).astype("float32") * 2
    log_gamma = gmm.log_posterior(z).numpy()
    np.testing.assert_allclose(log_gamma, _numpy_log_posterior(z, mu, sigma2, alpha), atol=1e-4)
    np.testing.assert_allclose(np.exp(log_gamma).sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(gmm(z).numpy(), log_gamma)


def test_exact_log_posterior_extreme_codes_and_pruned_component():
    gmm = _gmm(k=3, z=128)
    _set_state(gmm, np.zeros((3, 128)), np.full((3, 128), 1e-10), [0.5, 0.5, 0.0])
    z = tf.constant(np.full((2, 128), 1e3, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(z)
        log_gamma = gmm.log_posterior(z)
        total = tf.reduce_sum(tf.exp(log_gamma) * tf.range(3.0))
    gamma = np.exp(log_gamma.numpy())
    assert not np.any(np.isnan(log_gamma.numpy()))
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(gamma[:, 2], 0.0)  # alpha = 0: never responsible
    assert np.all(np.isfinite(tape.gradient(total, z)))


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_posterior_matches_the_reference_formula_in_every_regime(scale):
    """Near codes (an ordinary posterior), mid (some codes: one component takes almost all, the
    others sit at the floor; others already uniform) and far codes (every float64 density underflows in the reference, whose gamma
    is then uniform)."""
    rng = np.random.default_rng(0)
    gmm = _gmm(k=10, z=128)
    mu, sigma2 = gmm.mu.numpy(), rng.uniform(0.5, 2.0, size=(10, 128)).astype("float32")
    alpha = rng.dirichlet(np.ones(10)).astype("float32")
    _set_state(gmm, mu, sigma2, alpha)
    z = (mu[rng.integers(0, 10, 16)] + scale * rng.normal(size=(16, 128))).astype("float32")
    want = _reference_posterior(z, mu, sigma2, alpha)
    gamma, log_gamma = (t.numpy() for t in gmm.posterior(z))
    np.testing.assert_allclose(gamma, want, rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(np.exp(log_gamma), gamma, rtol=1e-5)
    assert np.all(gamma >= 0.99e-5)
    if scale == 40.0:
        np.testing.assert_allclose(gamma, 0.1, rtol=1e-5)
    elif scale == 0.5:
        assert np.all(gamma.max(axis=1) > 0.2)  # not the uniform regime
    else:  # both regimes in one batch
        assert np.any(np.all(np.isclose(gamma, 0.1, rtol=1e-4), axis=1))
        assert np.any(gamma.max(axis=1) > 0.9)
    exact = _gmm(k=10, z=128, posterior_floor=0.0)
    _set_state(exact, mu, sigma2, alpha)
    np.testing.assert_allclose(exact.posterior(z)[1], exact.log_posterior(z), atol=1e-5)


def test_posterior_gradient_reaches_the_codes_where_not_clipped():
    gmm = _gmm(k=3, z=2)
    z = tf.constant([[0.1, -0.2], [0.4, 0.3]])
    with tf.GradientTape() as tape:
        tape.watch(z)
        gamma, _ = gmm.posterior(z)
        target = tf.reduce_sum(gamma[:, 0])
    grad = tape.gradient(target, z).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-3


def test_em_update_matches_the_reference_em():
    rng = np.random.default_rng(1)
    gmm = _gmm(k=3, z=2)
    mu, sigma2, alpha = _state(gmm)
    y, _ = _two_clusters(rng, 32, [[-1.0, 0.5], [1.5, -0.5]])
    s2_enc = rng.uniform(0.01, 0.5, size=y.shape).astype("float32")
    z = y + 0.1 * rng.normal(size=y.shape).astype("float32")
    expected = _reference_update(y, s2_enc, _reference_posterior(z, mu, sigma2, alpha),
                                 mu, sigma2, alpha, rpcl=False)
    new = gmm.update(z, y, s2_enc, use_rpcl=False)
    for got, want, var in zip((new["mu"], new["sigma2"], new["alpha"]), expected,
                              (gmm.mu, gmm.sigma2, gmm.alpha)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(var.numpy(), got)


def test_rpcl_update_matches_the_reference_with_rival_only_components():
    gmm = _gmm(k=4, z=2)
    # c0 wins the points near the origin (rival c1), c3 those near (6, 6) (rival c2): c1 and c2
    # are rival-only.
    mu = np.array([[0.0, 0.0], [0.8, 0.0], [5.0, 5.5], [6.0, 6.0]], "float32")
    _set_state(gmm, mu, np.ones((4, 2)), [0.25, 0.25, 0.25, 0.25])
    rng = np.random.default_rng(2)
    y = np.concatenate([0.1 * rng.normal(size=(8, 2)), [6, 6] + 0.1 * rng.normal(size=(8, 2))])
    y = y.astype("float32")
    s2_enc = np.full_like(y, 0.05)
    gamma = _reference_posterior(y, *_state(gmm))
    winners, rivals = np.argmax(gamma, 1), np.argsort(-gamma, 1, kind="stable")[:, 1]
    assert set(winners) == {0, 3} and set(rivals) == {1, 2}
    expected = _reference_update(y, s2_enc, gamma, *_state(gmm), rpcl=True)
    new = gmm.update(y, y, s2_enc, use_rpcl=True)
    for got, want in zip((new["mu"], new["sigma2"], new["alpha"]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # A rival-only component moves toward the plain mean of its rival points, loses weight.
    rival_mean = y[rivals == 2].mean(axis=0)
    np.testing.assert_allclose(new["mu"].numpy()[2], 0.95 * mu[2] + 0.05 * rival_mean, atol=1e-3)
    assert new["alpha"].numpy()[2] < new["alpha"].numpy()[3]


def test_rpcl_idle_component_decays_toward_zero():
    """Neither winner nor rival: the reference's estimate is 0 / (0 + 1e-10) = 0."""
    gmm = _gmm(k=3, z=2)
    mu = np.array([[0.0, 0.0], [1.0, 0.0], [30.0, -30.0]], "float32")
    sigma2 = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 3.0]], "float32")
    _set_state(gmm, mu, sigma2, [0.4, 0.4, 0.2])
    y = np.random.default_rng(3).normal(scale=0.2, size=(16, 2)).astype("float32")
    new = gmm.update(y, y, np.full_like(y, 0.1), use_rpcl=True)
    np.testing.assert_allclose(new["mu"].numpy()[2], 0.95 * mu[2], rtol=1e-6)
    np.testing.assert_allclose(new["sigma2"].numpy()[2], 0.95 * sigma2[2], rtol=1e-6)
    alpha = new["alpha"].numpy()
    assert alpha.sum() == pytest.approx(1.0)
    assert alpha[2] == pytest.approx(0.95 * 0.2, rel=1e-5)  # the others' sum is 0.8 -> 0.81


def test_components_left_behind_by_drifting_codes_keep_following_the_data():
    """Codes that drift away from the components' initialisation (as encoder codes do in the
    first Adam steps): with the exact posterior 9 of 10 components got no responsibility, froze
    and their alpha decayed 0.95^t below 1e-3 by step ~90 (the README's old "10 -> 2 by step
    100"). With the reference's floored posterior every component follows and stays active."""
    rng = np.random.default_rng(4)
    gmm = _gmm(k=10, z=128)
    start = gmm.mu.numpy().copy()
    update = tf.function(lambda z, y, s2: gmm.update(z, y, s2, use_rpcl=False))
    for t in range(100):
        centre = min(t, 20) * 0.5  # the codes drift 10 units along the diagonal, then settle
        y = (centre + 0.3 * rng.normal(size=(32, 128))).astype("float32")
        update(y + 0.05 * rng.normal(size=y.shape).astype("float32"), y, np.full_like(y, 0.01))
    assert int(gmm.num_active()) == 10, gmm.alpha.numpy()
    moved = np.linalg.norm(gmm.mu.numpy() - start, axis=1)
    assert np.all(moved > 0.9 * np.linalg.norm(10.0 - start, axis=1)), moved


def test_em_moves_components_to_the_clusters():
    rng = np.random.default_rng(2)
    gmm = _gmm(k=2, z=2)
    _set_state(gmm, [[-0.5, 0.0], [0.5, 0.0]], np.ones((2, 2)), [0.5, 0.5])
    centres = np.array([[-3.0, 1.0], [3.0, -1.0]])
    y, _ = _two_clusters(rng, 256, centres, spread=0.5, p_first=0.25)
    s2_enc = np.full_like(y, 0.04)
    update = tf.function(lambda: gmm.update(y, y, s2_enc, use_rpcl=False))
    distance = lambda: np.linalg.norm(gmm.mu.numpy() - centres, axis=1)  # noqa: E731
    before = distance()
    update()
    assert np.all(distance() < before)
    for _ in range(150):
        update()
    np.testing.assert_allclose(gmm.mu.numpy(), centres, atol=0.15)
    np.testing.assert_allclose(gmm.sigma2.numpy(), 0.25 + 0.04, atol=0.1)
    np.testing.assert_allclose(gmm.alpha.numpy(), [0.25, 0.75], atol=0.06)


def test_rpcl_weights_have_one_winner_and_one_rival():
    rng = np.random.default_rng(3)
    gmm = _gmm(k=5, z=3, rpcl_rival_rate=1e-4)
    z = rng.normal(size=(20, 3)).astype("float32")
    gamma, _ = gmm.posterior(z)
    weights = gmm.m_step_weights(gamma, use_rpcl=tf.constant(True)).numpy()
    np.testing.assert_array_equal((weights == 1.0).sum(axis=1), 1)
    np.testing.assert_array_equal(np.isclose(weights, -1e-4).sum(axis=1), 1)
    np.testing.assert_array_equal((weights == 0.0).sum(axis=1), 3)
    order = np.argsort(-gamma.numpy(), axis=1, kind="stable")
    np.testing.assert_array_equal(np.argmax(weights, axis=1), order[:, 0])
    np.testing.assert_array_equal(np.argmin(weights, axis=1), order[:, 1])
    # Ties (the uniform regime): winner 0 and rival 1, as the reference's argmax.
    tied = gmm.rpcl_responsibilities(tf.fill((2, 5), 0.2)).numpy()
    np.testing.assert_allclose(tied[:, :2], [[1.0, -1e-4]] * 2)
    np.testing.assert_array_equal(gmm.m_step_weights(gamma, use_rpcl=False), gamma)


@pytest.mark.parametrize("use_rpcl", [False, True])
def test_summed_half_batch_statistics_equal_the_full_batch(use_rpcl):
    rng = np.random.default_rng(4)
    y, _ = _two_clusters(rng, 64, [[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    s2_enc = rng.uniform(0.01, 0.3, size=y.shape).astype("float32")
    z = y + 0.2 * rng.normal(size=y.shape).astype("float32")
    full, split = _gmm(k=4, z=3), _gmm(k=4, z=3)
    full.update(z, y, s2_enc, use_rpcl)
    gamma, _ = split.posterior(z)
    halves = [split.batch_statistics(gamma[s], y[s], s2_enc[s], use_rpcl)
              for s in (slice(0, 40), slice(40, None))]  # unequal replica batches
    summed = tf.nest.map_structure(lambda a, b: a + b, *halves)  # what a SUM all-reduce does
    split.apply_update(summed)
    for a, b in zip(full.non_trainable_weights, split.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_far_degenerate_component_stays_finite_and_an_empty_batch_changes_nothing():
    gmm = _gmm(k=3, z=2)
    _set_state(gmm, [[1e4, 1e4], [0.0, 0.0], [0.5, 0.0]],
               [[1e-10, 1e-10], [1.0, 1.0], [1.0, 1.0]], [0.2, 0.4, 0.4])
    rng = np.random.default_rng(5)
    y = rng.normal(size=(16, 2)).astype("float32")
    for use_rpcl in (False, True, True, False):
        gmm.update(y, y, np.full_like(y, 0.1), use_rpcl)
    for w in gmm.non_trainable_weights:
        assert np.all(np.isfinite(w.numpy()))
    assert np.all(gmm.mu.numpy()[0] < 1e4 * 0.95 ** 3 + 1.0)  # follows the data or decays
    np.testing.assert_allclose(gmm.alpha.numpy().sum(), 1.0, atol=1e-6)
    before = [w.numpy() for w in gmm.non_trainable_weights]
    gmm.update(np.zeros((0, 2), "float32"), np.zeros((0, 2), "float32"),
               np.zeros((0, 2), "float32"), True)
    for b, w in zip(before, gmm.non_trainable_weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_variance_is_clipped_and_alpha_renormalised():
    gmm = _gmm(k=2, z=1, ema_rate=1.0)
    _set_state(gmm, [[0.0], [5.0]], [[1.0], [1.0]], [0.5, 0.5])
    y = np.zeros((4, 1), "float32")  # identical points, zero encoder variance
    new = gmm.update(y, y, np.zeros_like(y), use_rpcl=True)
    assert new["sigma2"].numpy()[0, 0] == pytest.approx(1e-10)
    alpha = new["alpha"].numpy()
    assert np.all(alpha >= 0.0) and alpha.sum() == pytest.approx(1.0)
    assert alpha[1] == 0.0  # the rival-only component's estimate is negative: clipped


def test_rpcl_schedule_counts_steps_from_zero():
    gmm = GMMLatent(num_components=2, z_size=1, warmup_steps=500, rpcl_every=3)
    steps = tf.constant([0, 1, 499, 500, 501, 502, 503, 504, 507], tf.int64)
    got = [bool(gmm.use_rpcl_at(s)) for s in steps]
    # model.py 108-112: EM while global_ <= 500, then RPCL when global_ % 3 == 0.
    assert got == [False, False, False, False, True, False, False, True, True]
    assert bool(tf.function(gmm.use_rpcl_at)(tf.constant(1002)))


def test_num_active():
    gmm = _gmm(k=4, z=1)
    _set_state(gmm, np.zeros((4, 1)), np.ones((4, 1)), [0.6, 0.3995, 5e-4, 0.0])
    assert int(gmm.num_active()) == 2  # default threshold 1e-3
    assert int(gmm.num_active(1e-4)) == 3
    assert int(GMMLatent(4, 1, active_threshold=0.5).num_active()) == 0


def _self_organise(steps, warmup, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    gmm = GMMLatent(num_components=4, z_size=2, warmup_steps=warmup, seed=0)
    gmm.build()
    centres = np.array([[-2.0, 0.0], [2.0, 0.5]], "float32")

    @tf.function
    def step(z, mu, sigma2, i):
        gmm.update(z, mu, sigma2, gmm.use_rpcl_at(i))

    for i in range(steps):
        mu, _ = _two_clusters(rng, 64, centres)
        z = mu + 0.1 * rng.normal(size=mu.shape).astype("float32")
        step(z, mu, np.full_like(mu, 0.01), tf.constant(i))
    return gmm, centres


def test_em_alone_keeps_all_four_components_on_two_clusters():
    gmm, _ = _self_organise(steps=300, warmup=10**6)
    assert int(gmm.num_active()) == 4, gmm.alpha.numpy()


def test_rpcl_prunes_four_components_to_the_two_clusters():
    gmm, centres = _self_organise(steps=PRUNE_STEPS, warmup=20)
    assert int(gmm.num_active()) == 2, gmm.alpha.numpy()
    winners = np.argmax(gmm.log_posterior(centres).numpy(), axis=1)
    assert winners[0] != winners[1]
    np.testing.assert_allclose(gmm.mu.numpy()[winners], centres, atol=0.2)


def test_state_is_saved_with_the_model(tmp_path):
    gmm = GMMLatent(num_components=3, z_size=2, seed=1)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, gmm(inputs))
    rng = np.random.default_rng(6)
    y = rng.normal(size=(8, 2)).astype("float32")
    for use_rpcl in (False, True):
        gmm.update(y, y, np.full_like(y, 0.1), use_rpcl)
    path = os.path.join(str(tmp_path), "gmm.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    layer = [lay for lay in reloaded.layers if isinstance(lay, GMMLatent)][0]
    for a, b in zip(gmm.non_trainable_weights, layer.non_trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(reloaded(y), model(y), atol=1e-6)


def test_prior_sample():
    gmm = _gmm(k=3, z=2)
    _set_state(gmm, [[0.0, 0.0], [10.0, 10.0], [-10.0, 5.0]], np.full((3, 2), 0.01), [0, 1, 0])
    z, k = gmm.sample(50, seed=keras.random.SeedGenerator(0))
    np.testing.assert_array_equal(k, 1)
    np.testing.assert_allclose(z, np.full((50, 2), 10.0), atol=0.5)
    z1, _ = gmm.sample(5, seed=7)
    z2, _ = gmm.sample(5, seed=7)
    np.testing.assert_array_equal(z1, z2)


@pytest.mark.slow
def test_update_under_mirrored_strategy(tmp_path):
    """Replica-context and cross-replica updates on 2 logical CPUs equal one device's update."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from sketchtk.layers.gmm_latent import GMMLatent
        rng = np.random.default_rng(0)
        z = rng.normal(size=(16, 3)).astype("float32")
        mu, s2 = z + 0.1, np.full((16, 3), 0.2, "float32")
        ref = GMMLatent(4, 3, seed=1); ref.build(); ref.update(z, mu, s2, True)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            a = GMMLatent(4, 3, seed=1); a.build()
            b = GMMLatent(4, 3, seed=1); b.build()
        data = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((z, mu, s2)).batch(16))
        def in_replica(zz, mm, ss):
            stats = a.batch_statistics(a.posterior(zz)[0], mm, ss, tf.constant(True))
            a.apply_update(tf.distribute.get_replica_context().all_reduce("sum", stats))
        @tf.function
        def step(batch):
            strategy.run(in_replica, args=batch)
            per = strategy.run(lambda zz, mm, ss: b.batch_statistics(b.posterior(zz)[0], mm, ss,
                                                                     True), args=batch)
            b.apply_update(strategy.reduce("sum", per, axis=None))
        for batch in data:
            step(batch)
        for layer in (a, b):
            for x, y in zip(ref.non_trainable_weights, layer.non_trainable_weights):
                np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)
        print("OK")
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
