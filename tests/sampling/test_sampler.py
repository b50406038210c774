"""The compiled batched sampler and sample.py's job on a model trained on real data."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.sampling.sampler import ReferenceStyleSampler, Sampler, sample_point
from sketchtk.training.trainer import load_trained_model


@pytest.fixture(scope="module")
def model(smoke_run):
    return load_trained_model(smoke_run)[0]


def _one_gaussian_params(n, m=2, sigma=(1.0, 2.0), rho=0.6, pen_logits=(10.0, 0.0, -10.0)):
    params = np.zeros((n, 6 * m + 3), np.float32)
    params[:, :3] = pen_logits
    params[:, 3:3 + m] = [30.0] + [-30.0] * (m - 1)  # component 0 only
    params[:, 3 + 3 * m] = np.log(sigma[0])
    params[:, 3 + 4 * m] = np.log(sigma[1])
    params[:, 3 + 5 * m] = np.arctanh(rho)
    return params


@pytest.mark.parametrize("std_scaling,factor", [("tau", 0.5), ("sqrt_tau", np.sqrt(0.5))])
def test_temperature_scales_the_offset_std_as_the_reference_codes(std_scaling, factor):
    """Both reference samplers scale the std by tau (sqrt(tau) passed, then s *= temp * temp);
    ``sqrt_tau`` is the papers' sigma^2 tau. rho is unchanged."""
    n = 20000
    params = _one_gaussian_params(n)
    point, _ = sample_point(tf.constant(params), 0.5, tf.constant([5, 6], tf.int64),
                            std_scaling=std_scaling)
    xy = point.numpy()[:, :2]
    np.testing.assert_allclose(xy.std(0), [1.0 * factor, 2.0 * factor], rtol=0.03)
    np.testing.assert_allclose(np.corrcoef(xy.T)[0, 1], 0.6, atol=0.02)
    with pytest.raises(ValueError, match="std_scaling"):
        sample_point(tf.constant(params), 0.5, tf.constant([5, 6], tf.int64), std_scaling="x")


def test_temperature_sharpens_the_pen_and_mixture_choices():
    """Logits are divided by tau: at tau 0.5 the pen probabilities are softmax(2 * logits)."""
    n = 20000
    logits = np.array([1.0, 0.0, -1.0], np.float32)
    params = _one_gaussian_params(n, pen_logits=logits)
    _, pen = sample_point(tf.constant(params), 0.5, tf.constant([7, 8], tf.int64))
    freq = np.bincount(pen.numpy(), minlength=3) / n
    want = np.exp(2 * logits) / np.exp(2 * logits).sum()
    np.testing.assert_allclose(freq, want, atol=0.015)
    _, pen_hot = sample_point(tf.constant(params), 1.0, tf.constant([7, 8], tf.int64))
    assert np.bincount(pen_hot.numpy(), minlength=3)[0] / n < freq[0] - 0.05


def test_sample_point_follows_the_chosen_gaussian():
    m = 2
    n = 4000
    params = np.zeros((n, 6 * m + 3), np.float32)
    params[:, :3] = [10.0, 0.0, -10.0]            # pen down: an end row would have no offset
    params[:, 3:3 + m] = [20.0, -20.0]          # component 0
    params[:, 3 + m] = 2.0                        # mu_x of component 0
    params[:, 3 + 2 * m] = -1.0                   # mu_y of component 0
    params[:, 3 + 3 * m] = np.log(0.5)            # sigma_x
    params[:, 3 + 4 * m] = np.log(0.25)           # sigma_y
    point, _ = sample_point(tf.constant(params), 1.0, tf.constant([3, 4], tf.int64))
    xy = point.numpy()[:, :2]
    np.testing.assert_allclose(xy.mean(0), [2.0, -1.0], atol=0.05)
    np.testing.assert_allclose(xy.std(0), [0.5, 0.25], rtol=0.08)


def test_batched_sampler_shapes_determinism_and_early_stop(model):
    sampler = Sampler(model)
    z, _ = model.sample_prior(8, seed=1)
    a = sampler.sample_stroke5(z, 0.5, seed=3).numpy()
    b = sampler.sample_stroke5(z, 0.5, seed=3).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape[0] == 8 and a.shape[1] <= model.max_seq_len and a.shape[2] == 5
    # Each row is one-hot in the pen columns; after a sketch's end only end rows follow.
    np.testing.assert_allclose(a[..., 2:].sum(-1), 1.0)
    for row in a:
        ends = np.flatnonzero(row[:, 4] > 0.5)
        if len(ends):
            np.testing.assert_array_equal(row[ends[0]:], [[0, 0, 0, 0, 1]] * (len(row) - ends[0]))
    sketches = sampler.sample(np.asarray(z), 0.5, seed=3)
    assert len(sketches) == 8 and all(s.shape[1] == 3 for s in sketches)


PEN_DOWN = (50.0, -50.0, -50.0)  # pen-state logits: always pen-down, never ends
PEN_END = (-50.0, -50.0, 50.0)    # always the end-of-sketch state


class _FixedPen:
    """The trained decoder with its pen-state logits replaced by ``pen``."""

    def __init__(self, inner, pen):
        self.inner, self.pen = inner, pen

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, x, z, state, projected=None, constants=None):
        params, state = self.inner.step(x, z, state, projected, constants)
        pen = tf.constant([self.pen])
        return tf.concat([tf.zeros_like(params[:, :3]) + pen, params[:, 3:]], 1), state


def test_sampler_stops_when_every_sketch_has_ended(model):
    """With end-of-sketch forced, the loop must stop after one step, not run max_len steps."""
    sampler = Sampler(model)
    sampler.decoder = _FixedPen(model.decoder, PEN_END)
    z, _ = model.sample_prior(5, seed=0)
    out = sampler.sample_stroke5(z, 1.0, seed=0).numpy()
    assert out.shape[1] == 1 and np.all(out[:, 0, 4] == 1)


def test_samplers_draw_up_to_max_len_points_and_no_more(model):
    """A decoder that never ends: both samplers must draw exactly max_len points."""
    z, _ = model.sample_prior(2, seed=0)
    fast = Sampler(model, max_len=7)
    fast.decoder = _FixedPen(model.decoder, PEN_DOWN)
    out = fast.sample_stroke5(z, 0.24, seed=0).numpy()
    assert out.shape[1] == 7 and np.all(out[..., 2] == 1)
    ref = ReferenceStyleSampler(model, max_len=5)
    ref._step = tf.function(_FixedPen(model.decoder, PEN_DOWN).step)
    sketches = ref.sample(np.asarray(z), 0.24, seed=0)
    assert [len(s) for s in sketches] == [5, 5]


def test_unconditional_codes_follow_the_chosen_component(model):
    k = 1
    z, comps = model.sample_prior(3000, component=k, seed=5)
    z = np.asarray(z)
    assert np.all(np.asarray(comps) == k)
    mu = model.gmm.mu.numpy()[k]
    sigma = np.sqrt(model.gmm.sigma2.numpy()[k])
    np.testing.assert_array_less(np.abs(z.mean(0) - mu), 5 * sigma / np.sqrt(3000) + 1e-6)
    np.testing.assert_allclose(z.std(0), sigma, rtol=0.1)
    z_all, comps_all = model.sample_prior(3000, seed=6)
    freq = np.bincount(np.asarray(comps_all), minlength=model.gmm.num_components) / 3000
    np.testing.assert_allclose(freq, model.gmm.alpha.numpy(), atol=0.04)


def test_ignore_end_decodes_max_len_steps_for_the_benchmark(model):
    """bench_sample's full-length mode: an always-ending decoder still runs all max_len steps,
    and the first point is the one the normal sampler draws with the same seed."""
    z, _ = model.sample_prior(3, seed=0)
    outs = []
    for ignore_end in (False, True):
        sampler = Sampler(model, max_len=6, ignore_end=ignore_end)
        sampler.decoder = _FixedPen(model.decoder, PEN_END)
        outs.append(sampler.sample_stroke5(z, 0.24, seed=0).numpy())
    assert outs[0].shape[1] == 1 and outs[1].shape[1] == 6
    assert np.all(outs[1][..., 4] == 1)
    np.testing.assert_array_equal(outs[1][:, :1], outs[0])
