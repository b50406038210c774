"""Noise schedules: alphabar monotone with the right endpoints, any T; respacing."""

import numpy as np
import pytest

from sketchtk.diffusion import schedules


@pytest.mark.parametrize("num_steps", [10, 35, 100, 1000])
def test_linear_schedule_scaled_by_1000_over_T_with_right_endpoints(num_steps):
    s = schedules.make_schedule("linear", num_steps)
    scale = 1000.0 / num_steps
    assert s.num_steps == num_steps
    np.testing.assert_allclose(s.betas[0], min(1e-4 * scale, 0.999))
    np.testing.assert_allclose(s.betas[-1], min(2e-2 * scale, 0.999))
    ab = s.alphabar
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1
    np.testing.assert_allclose(ab[0], 1 - s.betas[0])
    # the scaling keeps the total noise of T = 1000: alphabar_T ~ exp(-sum beta) ~ 4e-5
    assert ab[-1] < 1e-3


@pytest.mark.parametrize("num_steps", [10, 35, 100, 1000])
def test_cosine_schedule_follows_the_cosine_formula(num_steps):
    s = schedules.make_schedule("cosine", num_steps)
    ab = s.alphabar
    assert np.all(np.diff(ab) < 0)
    f = lambda t: np.cos((t / num_steps + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    expected = f(np.arange(1, num_steps + 1)) / f(0)
    # equal until the 0.999 beta cap bites at the very end
    np.testing.assert_allclose(ab[:-1], expected[:-1], rtol=1e-9)
    assert ab[-1] < 1e-3 and ab[0] > 1 - 3.0 / num_steps


def test_posterior_variance_zero_at_first_step_and_below_beta():
    s = schedules.make_schedule("linear", 100)
    pv = s.posterior_variance
    assert pv[0] == 0 and np.all(pv[1:] > 0) and np.all(pv <= s.betas)


def test_respaced_timesteps_descend_to_zero():
    np.testing.assert_array_equal(schedules.respaced_timesteps(100, 100), np.arange(99, -1, -1))
    steps = schedules.respaced_timesteps(1000, 30)
    assert len(steps) == 30 and steps[0] == 999 and steps[-1] == 0 and np.all(np.diff(steps) < 0)
    with pytest.raises(ValueError, match="sampling steps"):
        schedules.respaced_timesteps(10, 11)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.make_schedule("quadratic", 10)
