"""Tests for sketchtk.metrics.latent_plot."""

import os

import numpy as np
import pytest
from PIL import Image

from sketchtk.metrics.latent_plot import fit_pca, plot_latent_space, project


def _clustered_codes(rng, num_per=80, z_size=16, num_categories=3):
    centres = rng.normal(scale=3.0, size=(num_categories, z_size))
    codes = np.concatenate([c + rng.normal(size=(num_per, z_size)) for c in centres])
    labels = np.repeat(np.arange(num_categories), num_per)
    return codes, labels, centres


def test_pca_matches_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    # Anisotropic data so the top two eigenvalues are well separated.
    codes = rng.normal(size=(500, 10)) * np.array([5.0, 3.0] + [1.0] * 8) @ np.linalg.qr(
        rng.normal(size=(10, 10)))[0]
    mean, components, ratio = fit_pca(codes)
    eigval, eigvec = np.linalg.eigh(np.cov(codes, rowvar=False))
    top = eigvec[:, ::-1][:, :2].T
    for got, want in zip(components, top):
        sign = np.sign(got @ want)  # eigenvectors are defined up to sign
        np.testing.assert_allclose(got, sign * want, atol=1e-8)
    expected_projection = (codes - codes.mean(0)) @ top.T
    projection = project(codes, mean, components)
    for j in range(2):
        sign = np.sign(projection[:, j] @ expected_projection[:, j])
        np.testing.assert_allclose(projection[:, j], sign * expected_projection[:, j], atol=1e-8)
    np.testing.assert_allclose(ratio, eigval[::-1][:2] / eigval.sum(), rtol=1e-8)


def test_pca_of_rank_one_codes_pads_a_zero_component():
    mean, components, ratio = fit_pca(np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))
    np.testing.assert_allclose(components, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ratio, [1.0, 0.0])


def test_plot_writes_a_png_with_gmm_components(tmp_path):
    rng = np.random.default_rng(1)
    codes, labels, centres = _clustered_codes(rng)
    gmm_mu = np.concatenate([centres, rng.normal(size=(2, 16))])
    gmm_alpha = np.array([0.4, 0.35, 0.25 - 1e-4, 1e-4, 0.0])
    path = os.path.join(str(tmp_path), "plots", "latent.png")
    out = plot_latent_space(codes, labels, ["cat", "bus", "bee"], path, gmm_mu=gmm_mu,
                            gmm_alpha=gmm_alpha, title="test latent")
    assert out["path"] == path and out["num_active"] == 3
    assert out["projected"].shape == (len(codes), 2)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 20_000
    with Image.open(path) as img:
        img.load()
        pixels = np.asarray(img.convert("RGB"))
    assert img.size[0] > 500 and img.size[1] > 500
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank canvas


def test_plot_without_gmm_and_with_subsampling(tmp_path):
    rng = np.random.default_rng(2)
    codes, labels, _ = _clustered_codes(rng, num_per=50, num_categories=12)
    path = os.path.join(str(tmp_path), "latent.png")
    out = plot_latent_space(codes, labels, [f"c{i}" for i in range(12)], path, max_points=100)
    assert out["num_active"] is None and os.path.getsize(path) > 10_000


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": np.array([0, 5])}, r"labels must lie in \[0, 2\)"),
    ({"labels": np.array([0])}, "shape"),
    ({"gmm_mu": np.zeros((2, 4))}, "gmm_mu"),
    ({"gmm_mu": np.zeros((2, 3)), "gmm_alpha": np.ones(3)}, "gmm_alpha"),
])
def test_bad_inputs_raise(tmp_path, kwargs, message):
    args = {"codes": np.random.default_rng(0).normal(size=(2, 3)), "labels": np.array([0, 1]),
            "category_names": ["a", "b"], "path_png": os.path.join(str(tmp_path), "x.png")}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        plot_latent_space(**args)
