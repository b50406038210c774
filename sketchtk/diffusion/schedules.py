"""Noise schedules: ``beta_t`` and the derived ``alphabar_t`` for any number of steps T.

Index convention (the whole package): ``t`` is an integer in ``[0, T)``; ``t = 0`` is the least
noisy step, ``alphabar[t] = prod_{s <= t} (1 - beta_s)``, and ``alphabar[-1]`` (conceptually
``t = -1``) is 1: the data.
"""

import dataclasses
import math

import numpy as np

SCHEDULES = ("linear", "cosine")


def linear_betas(num_steps, low=1e-4, high=2e-2):
    """DDPM's linear betas, scaled by ``1000 / T`` so any T spans the same noise range.

    ChiroDiff ``main.py:201-206`` passes ``low * 1000 / T`` and ``high * 1000 / T`` to
    ``utils.py:72-74`` (``np.linspace``); SketchKnitter ``gaussian_diffusion.py:11-14`` the same.
    Betas are capped at 0.999 so a very small T cannot produce ``beta >= 1``.
    """
    scale = 1000.0 / num_steps
    return np.minimum(np.linspace(low * scale, high * scale, num_steps, dtype=np.float64), 0.999)


def cosine_betas(num_steps, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal's cosine schedule: ``alphabar(t) = cos^2(((t/T + s) / (1 + s)) pi / 2)``.

    As ChiroDiff ``utils.py:55-69`` and SketchKnitter ``gaussian_diffusion.py:28-33``: betas from
    ratios of consecutive alphabar values, clipped at ``max_beta``.
    """
    def f(t):
        return math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    ab = np.array([f(t) / f(0) for t in range(num_steps + 1)], np.float64)
    return np.clip(1.0 - ab[1:] / ab[:-1], 0.0, max_beta)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``betas`` and derived float64 arrays, all ``[T]``."""

    betas: np.ndarray

    @property
    def num_steps(self):
        return len(self.betas)

    @property
    def alphas(self):
        return 1.0 - self.betas

    @property
    def alphabar(self):
        return np.cumprod(self.alphas)

    @property
    def alphabar_prev(self):
        """``alphabar[t - 1]``, with 1 at ``t = 0``."""
        return np.concatenate([[1.0], self.alphabar[:-1]])

    @property
    def posterior_variance(self):
        """Variance of ``q(x_{t-1} | x_t, x_0)``: ``beta_t (1 - alphabar_{t-1}) / (1 - alphabar_t)``
        (0 at ``t = 0``; ChiroDiff's ``utils.py:79-83`` copies entry 1 into entry 0 instead)."""
        return self.betas * (1.0 - self.alphabar_prev) / (1.0 - self.alphabar)


def make_schedule(name, num_steps):
    """The ``Schedule`` called ``name`` (``linear`` or ``cosine``) with ``num_steps`` steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name == "linear":
        return Schedule(linear_betas(num_steps))
    if name == "cosine":
        return Schedule(cosine_betas(num_steps))
    raise ValueError(f"unknown schedule {name!r}; choose one of {list(SCHEDULES)}")


def respaced_timesteps(num_steps, count):
    """``count`` timesteps from ``T - 1`` down to 0, evenly spaced (DDIM respacing), descending.

    ``count = T`` gives every step. The last one is always 0 so sampling ends on the data.
    """
    if not 1 <= count <= num_steps:
        raise ValueError(f"sampling steps must be in [1, {num_steps}], got {count}")
    steps = np.unique(np.round(np.linspace(0, num_steps - 1, count)).astype(np.int64))
    return steps[::-1].copy()
