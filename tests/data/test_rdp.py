"""Tests for sketchtk.data.rdp (Ramer-Douglas-Peucker)."""

import sys

import numpy as np
import pytest

from sketchtk.data.rdp import rdp, rdp_mask


def _reference_rdp(points, epsilon):
    """Textbook recursive RDP with the same segment distance, for cross-checking."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3:
        return points
    start, end = points[0], points[-1]
    d = end - start
    best, best_i = -1.0, 0
    for i in range(1, len(points) - 1):
        rel = points[i] - start
        t = 0.0 if not d.any() else min(1.0, max(0.0, rel @ d / (d @ d)))
        dist = np.linalg.norm(rel - t * d)
        if dist > best:
            best, best_i = dist, i
    if best > epsilon:
        left = _reference_rdp(points[:best_i + 1], epsilon)
        right = _reference_rdp(points[best_i:], epsilon)
        return np.concatenate([left[:-1], right])
    return points[[0, -1]]


def _max_deviation(original, simplified):
    """Largest distance from an original point to the simplified polyline."""
    worst = 0.0
    for p in np.asarray(original, dtype=np.float64):
        best = np.inf
        for a, b in zip(simplified[:-1], simplified[1:]):
            d = b - a
            t = 0.0 if not d.any() else np.clip((p - a) @ d / (d @ d), 0.0, 1.0)
            best = min(best, np.linalg.norm(p - a - t * d))
        worst = max(worst, best)
    return worst


def test_collinear_points_collapse_to_endpoints():
    line = np.stack([np.arange(10.0), 2.0 * np.arange(10.0)], axis=1)
    np.testing.assert_array_equal(rdp(line, 0.5), line[[0, -1]])


def test_corner_survives():
    corner = np.array([[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]], dtype=float)
    np.testing.assert_array_equal(rdp(corner, 1.0), [[0, 0], [10, 0], [10, 10]])


def test_small_wiggle_removed_large_kept():
    points = np.array([[0, 0], [5, 0.4], [10, 0], [15, 3], [20, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(points, 1.0), [[0, 0], [10, 0], [15, 3], [20, 0]])


def test_epsilon_zero_keeps_all_distinct_points():
    zigzag = np.array([[0, 0], [1, 1], [2, 0], [3, 1], [4, 0], [5, 2]], dtype=float)
    np.testing.assert_array_equal(rdp(zigzag, 0.0), zigzag)
    # Only points lying exactly on the simplified line go: a repeat and a collinear midpoint.
    with_redundant = np.array([[0, 0], [0, 0], [1, 1], [2, 2], [3, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(with_redundant, 0.0), [[0, 0], [2, 2], [3, 0]])


def test_endpoints_always_kept_and_tiny_inputs():
    assert rdp(np.zeros((0, 2)), 2.0).shape == (0, 2)
    np.testing.assert_array_equal(rdp([[3, 4]], 2.0), [[3, 4]])
    np.testing.assert_array_equal(rdp([[3, 4], [3.1, 4]], 2.0), [[3, 4], [3.1, 4]])
    loop = np.array([[0, 0], [0.5, 0.5], [0, 0]])
    np.testing.assert_array_equal(rdp(loop, 2.0), [[0, 0], [0, 0]])


def test_reversal_tip_is_kept():
    # Out and back along one line: the infinite-line distance of the tip is 0, the segment one is 9.
    back_and_forth = np.array([[0, 0], [10, 0], [1, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(back_and_forth, 2.0), back_and_forth)


def test_closed_loop_keeps_its_shape():
    t = np.linspace(0, 2 * np.pi, 50)
    circle = np.stack([50 * np.cos(t), 50 * np.sin(t)], axis=1)
    circle[-1] = circle[0]
    out = rdp(circle, 2.0)
    assert 5 < len(out) < len(circle)
    assert _max_deviation(circle, out) <= 2.0 + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_matches_recursive_reference_and_tolerance(seed):
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(60, 2)) * 3.0, axis=0)
    out = rdp(walk, 2.0)
    np.testing.assert_array_equal(out, _reference_rdp(walk, 2.0))
    assert _max_deviation(walk, out) <= 2.0 + 1e-9
    mask = rdp_mask(walk, 2.0)
    assert mask[0] and mask[-1] and mask.sum() == len(out)


def test_long_stroke_needs_no_recursion():
    # A zigzag whose swings widen: every split peels off one point, so a recursive RDP would
    # nest once per point, past Python's recursion limit. Other libraries loaded in the same
    # test process (TensorFlow) raise the limit, so pin it low for this test.
    n = 3000
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        k = np.arange(n, dtype=float)
        widening = np.stack([k, (-1.0) ** k * k], axis=1)
        np.testing.assert_array_equal(rdp(widening, 0.5), widening)
    finally:
        sys.setrecursionlimit(old_limit)


@pytest.mark.parametrize("points,epsilon", [
    (np.zeros((4, 3)), 1.0),
    (np.zeros(4), 1.0),
    (np.zeros((4, 2)), -1.0),
    (np.zeros((4, 2)), float("nan")),
])
def test_bad_arguments_raise(points, epsilon):
    with pytest.raises(ValueError):
        rdp(points, epsilon)
