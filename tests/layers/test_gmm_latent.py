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


def _gmm(k=3, z=4, **kwargs):
    gmm = GMMLatent(num_components=k, z_size=z, seed=0, **kwargs)
    gmm.build()
    return gmm


def _set_state(gmm, mu, sigma2, alpha):
    gmm.mu.assign(np.asarray(mu, "float32"))
    gmm.sigma2.assign(np.asarray(sigma2, "float32"))
    gmm.alpha.assign(np.asarray(alpha, "float32"))


def _numpy_log_posterior(z, mu, sigma2, alpha):
    z, mu, sigma2, alpha = (np.asarray(a, np.float64) for a in (z, mu, sigma2, alpha))
    diff = z[:, None, :] - mu[None]
    log_n = -0.5 * np.sum(diff ** 2 / sigma2 + np.log(2 * np.pi * sigma2), axis=-1)
    joint = np.log(alpha) + log_n
    m = joint.max(axis=1, keepdims=True)
    return joint - (m + np.log(np.exp(joint - m).sum(axis=1, keepdims=True)))


def _numpy_em(y, s2_enc, gamma, mu, sigma2, alpha, rate=0.05):
    """The reference's M-step + EMA, written directly (no expansion, no guard)."""
    g = gamma.sum(axis=0)[:, None]
    mu_est = gamma.T @ y / g
    spread = (y[:, None] - mu_est[None]) ** 2 + s2_enc[:, None]
    sigma2_est = np.einsum("bk,bkz->kz", gamma, spread) / g
    alpha_new = np.clip((1 - rate) * alpha + rate * gamma.mean(axis=0), 0, 1)
    return ((1 - rate) * mu + rate * mu_est,
            np.clip((1 - rate) * sigma2 + rate * sigma2_est, 1e-10, 1e10),
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


def test_log_posterior_matches_numpy():
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


def test_log_posterior_extreme_codes_and_pruned_component():
    gmm = _gmm(k=3, z=128)
    _set_state(gmm, np.zeros((3, 128)), np.full((3, 128), 1e-10), [0.5, 0.5, 0.0])
    # exp of these log densities underflows even in float64 (the reference's 0/0).
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


def test_em_update_matches_reference_formula():
    rng = np.random.default_rng(1)
    gmm = _gmm(k=3, z=2)
    mu, sigma2, alpha = gmm.mu.numpy(), gmm.sigma2.numpy(), gmm.alpha.numpy()
    y, _ = _two_clusters(rng, 32, [[-1.0, 0.5], [1.5, -0.5]])
    s2_enc = rng.uniform(0.01, 0.5, size=y.shape).astype("float32")
    z = y + 0.1 * rng.normal(size=y.shape).astype("float32")
    gamma = np.exp(gmm.log_posterior(z).numpy().astype(np.float64))
    expected = _numpy_em(y.astype(np.float64), s2_enc, gamma, mu, sigma2, alpha)
    new = gmm.update(z, y, s2_enc, use_rpcl=False)
    for got, want, var in zip((new["mu"], new["sigma2"], new["alpha"]), expected,
                              (gmm.mu, gmm.sigma2, gmm.alpha)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(var.numpy(), got)


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


def test_rpcl_responsibilities_have_one_winner_and_one_rival():
    rng = np.random.default_rng(3)
    gmm = _gmm(k=5, z=3, rpcl_rival_rate=1e-4)
    z = rng.normal(size=(20, 3)).astype("float32")
    log_gamma = gmm.log_posterior(z).numpy()
    weights = gmm.responsibilities(z, use_rpcl=tf.constant(True)).numpy()
    np.testing.assert_array_equal((weights == 1.0).sum(axis=1), 1)
    np.testing.assert_array_equal(np.isclose(weights, -1e-4).sum(axis=1), 1)
    np.testing.assert_array_equal((weights == 0.0).sum(axis=1), 3)
    order = np.argsort(-log_gamma, axis=1)
    np.testing.assert_array_equal(np.argmax(weights, axis=1), order[:, 0])
    np.testing.assert_array_equal(np.argmin(weights, axis=1), order[:, 1])
    # Ties still give distinct winner and rival.
    tied = gmm.rpcl_responsibilities(tf.zeros((2, 5))).numpy()
    np.testing.assert_allclose(tied.sum(axis=1), 1.0 - 1e-4)
    soft = gmm.responsibilities(z, use_rpcl=False).numpy()
    np.testing.assert_allclose(soft, np.exp(log_gamma), rtol=1e-6)


@pytest.mark.parametrize("use_rpcl", [False, True])
def test_summed_half_batch_statistics_equal_the_full_batch(use_rpcl):
    rng = np.random.default_rng(4)
    y, _ = _two_clusters(rng, 64, [[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    s2_enc = rng.uniform(0.01, 0.3, size=y.shape).astype("float32")
    z = y + 0.2 * rng.normal(size=y.shape).astype("float32")
    full, split = _gmm(k=4, z=3), _gmm(k=4, z=3)
    full.update(z, y, s2_enc, use_rpcl)
    halves = [split.batch_statistics(z[s], y[s], s2_enc[s], use_rpcl)
              for s in (slice(0, 40), slice(40, None))]  # unequal replica batches
    summed = tf.nest.map_structure(lambda a, b: a + b, *halves)  # what a SUM all-reduce does
    split.apply_update(summed)
    for a, b in zip(full.non_trainable_weights, split.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_components_without_responsibility_stay_finite():
    gmm = _gmm(k=3, z=2)
    far = [[1e4, 1e4], [0.0, 0.0], [0.5, 0.0]]
    _set_state(gmm, far, [[1e-10, 1e-10], [1.0, 1.0], [1.0, 1.0]], [0.2, 0.4, 0.4])
    rng = np.random.default_rng(5)
    y = rng.normal(size=(16, 2)).astype("float32")
    for use_rpcl in (False, True, True, False):
        gmm.update(y, y, np.full_like(y, 0.1), use_rpcl)
    for w in gmm.non_trainable_weights:
        assert np.all(np.isfinite(w.numpy()))
    np.testing.assert_array_equal(gmm.mu.numpy()[0], [1e4, 1e4])  # kept, not NaN
    np.testing.assert_array_equal(gmm.sigma2.numpy()[0], np.float32(1e-10))
    assert gmm.alpha.numpy()[0] < 0.2 * 0.95 ** 3
    np.testing.assert_allclose(gmm.alpha.numpy().sum(), 1.0, atol=1e-6)
    # An empty batch changes nothing.
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


def test_rpcl_schedule():
    gmm = GMMLatent(num_components=2, z_size=1, warmup_steps=500, rpcl_every=3)
    steps = tf.constant([0, 1, 499, 500, 501, 502, 503, 504, 507], tf.int64)
    got = [bool(gmm.use_rpcl_at(s)) for s in steps]
    assert got == [False, False, False, False, True, False, False, True, True]
    assert bool(tf.function(gmm.use_rpcl_at)(tf.constant(1002)))


def test_num_active():
    gmm = _gmm(k=4, z=1)
    _set_state(gmm, np.zeros((4, 1)), np.ones((4, 1)), [0.6, 0.3995, 5e-4, 0.0])
    assert int(gmm.num_active()) == 2  # default threshold 1e-3
    assert int(gmm.num_active(1e-4)) == 3
    assert int(GMMLatent(4, 1, active_threshold=0.5).num_active()) == 0


def test_rpcl_self_organises_two_clusters_with_four_components():
    rng = np.random.default_rng(0)
    gmm = GMMLatent(num_components=4, z_size=2, warmup_steps=20, seed=0)
    gmm.build()
    centres = np.array([[-2.0, 0.0], [2.0, 0.5]], "float32")

    @tf.function
    def step(z, mu, sigma2, i):
        gmm.update(z, mu, sigma2, gmm.use_rpcl_at(i))

    for i in range(1, 401):
        mu, _ = _two_clusters(rng, 64, centres)
        z = mu + 0.1 * rng.normal(size=mu.shape).astype("float32")
        step(z, mu, np.full_like(mu, 0.01), tf.constant(i))
    assert int(gmm.num_active()) < 4, gmm.alpha.numpy()
    winners = np.argmax(gmm.log_posterior(centres).numpy(), axis=1)
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
            stats = a.batch_statistics(zz, mm, ss, tf.constant(True))
            a.apply_update(tf.distribute.get_replica_context().all_reduce("sum", stats))
        @tf.function
        def step(batch):
            strategy.run(in_replica, args=batch)
            per = strategy.run(lambda *t: b.batch_statistics(*t, True), args=batch)
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
