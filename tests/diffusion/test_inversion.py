"""DDIM inversion on real sketches with the exact denoiser of Gaussian data (a linear ODE)."""

import numpy as np
import pytest
import tensorflow as tf

from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
from sketchtk.data.point_sequences import padded_length, to_points
from sketchtk.diffusion.inversion import DDIMInverter
from sketchtk.diffusion.process import GaussianProcess
from sketchtk.diffusion.samplers import ReverseSampler, sampling_timesteps


@pytest.fixture(scope="module")
def real():
    data = load_sketch_data(None, DEFAULT_CATEGORIES, splits=("test",), scale_factor=40.0)
    rows = [to_points(s, "delta") for s in data["test"].sketches[:4]]
    length = padded_length(max(len(r) for r in rows))
    x0 = np.zeros((4, length, 3), np.float32)
    mask = np.zeros((4, length), np.float32)
    for i, r in enumerate(rows):
        x0[i, :len(r)] = r
        mask[i, :len(r)] = 1.0
    x0[..., 2] = (2 * x0[..., 2] - 1) * mask  # the pen as the model diffuses it
    return x0, mask


def _gaussian_eps(process, s2):
    """The exact eps-prediction when the data are N(0, s2): ``sqrt(1-ab) x / (ab s2 + 1 - ab)``."""
    def fn(x, t, mask, context):
        ab = process.alphabar(t)[:, None, None]
        return tf.sqrt(1 - ab) * x / (ab * s2 + 1 - ab), tf.zeros_like(x[..., :0])
    return fn


def test_ddim_inversion_maps_data_to_its_noise_and_back(real):
    x0, mask = real
    process = GaussianProcess(100, "linear")
    s2 = float((x0 ** 2).sum() / (mask.sum() * 3))
    fn = _gaussian_eps(process, s2)
    inverter, sampler = DDIMInverter(fn, process), ReverseSampler(fn, process)
    errors, factors = [], []
    for steps in (10, 100):
        ts = sampling_timesteps(process, steps)
        x_T = inverter.invert(x0, mask, ts).numpy()
        assert np.all(x_T[mask == 0] == 0)
        real_points = mask > 0
        factors.append(float(np.median(x_T[real_points][x0[real_points] != 0]
                                       / x0[real_points][x0[real_points] != 0])))
        back, _, _ = sampler.sample(x_T, mask, ts, "ddim", eta=0.0)
        errors.append(float(np.abs(back.numpy() - x0).max()))
    # the probability-flow ODE of N(0, s2) data scales x_0 by sqrt((ab s2 + 1 - ab) / s2)
    ab_T = float(process.alphabar(99))
    exact = np.sqrt((ab_T * s2 + 1 - ab_T) / s2)
    assert abs(factors[1] - exact) < 0.02 * exact, (factors, exact)
    assert abs(factors[1] - exact) < abs(factors[0] - exact)
    # with all 100 steps the round trip is close; the discretisation error shrinks with the step
    assert errors[1] < 0.03 * np.abs(x0).max() and errors[1] < errors[0] / 5, errors


def test_inversion_rejects_bad_timesteps(real):
    x0, mask = real
    process = GaussianProcess(10)
    inverter = DDIMInverter(_gaussian_eps(process, 1.0), process)
    with pytest.raises(ValueError, match="descending"):
        inverter.invert(x0, mask, [0, 5, 9])
