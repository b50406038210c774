"""Picture of the latent space: codes projected to 2-D by PCA, coloured by category, with the GMM.

The RPCL-pix2seq paper shows its self-organised latent space this way: each sketch's code as a dot
coloured by its category, and the learned Gaussian components as marked points, the components
that RPCL pruned (alpha near 0) told apart from the active ones. The PCA is fitted on the codes
only; the component means go through the same projection.

Matplotlib is driven through ``Figure`` + the Agg canvas directly (no ``pyplot``), so no display,
global figure state or backend switch is involved.
"""

import colorsys
import os

import matplotlib
import numpy as np
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def fit_pca(codes, num_components=2):
    """PCA of ``codes [N, Z]`` by SVD: ``(mean [Z], components [num_components, Z], ratio)``.

    Components are unit rows ordered by explained variance (``ratio``), each signed so that its
    largest-magnitude entry is positive (SVD signs are arbitrary). Missing components (rank <
    ``num_components``) are zero rows with ratio 0.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise ValueError(f"codes must be a non-empty [N, Z] array; got shape {codes.shape}")
    mean = codes.mean(axis=0)
    centred = codes - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((num_components, codes.shape[1]))
    ratio = np.zeros(num_components)
    # Directions with a zero singular value are arbitrary: leave them as zero rows.
    rank_tol = (singular.max(initial=0.0) * max(codes.shape) * np.finfo(np.float64).eps)
    n = min(num_components, int((singular > rank_tol).sum()))
    components[:n] = vt[:n]
    total = float((singular ** 2).sum())
    if total > 0:
        ratio[:n] = singular[:n] ** 2 / total
    for row in components:
        pivot = np.argmax(np.abs(row))
        if row[pivot] < 0:
            row *= -1.0
    return mean, components, ratio


def project(points, mean, components):
    """``(points - mean) @ components.T``: ``[N, Z] -> [N, num_components]``."""
    return (np.asarray(points, dtype=np.float64) - mean) @ components.T


def plot_latent_space(codes, labels, category_names, path_png, gmm_mu=None, gmm_alpha=None,
                      title="Latent space (PCA)", alpha_threshold=1e-2, max_points=5000, seed=0,
                      dpi=120):
    """Save a PNG of the codes in the first two principal components, with the GMM components.

    Args:
      codes: float ``[N, Z]`` latent codes (e.g. encoder ``mu`` of test sketches).
      labels: int ``[N]`` category index of each code, into ``category_names``.
      category_names: list of names; one colour and legend entry each.
      path_png: output file (parent folders are created).
      gmm_mu: optional ``[K, Z]`` component means, projected with the codes' PCA.
      gmm_alpha: optional ``[K]`` mixing weights; marker area grows with alpha, and a component with
        alpha below ``alpha_threshold`` (``HParams.gmm_active_threshold``) is drawn hollow and grey
        as pruned. Without it every component counts as active.
      title: figure title (the number of active components is appended when ``gmm_mu`` is given).
      alpha_threshold: alpha below which a component counts as inactive.
      max_points: at most this many codes are drawn (a seeded random subset; the PCA still uses
        all of them).
      seed: seed of that subset.
      dpi: resolution of the PNG.

    Returns:
      ``{"path": path_png, "mean": [Z], "components": [2, Z], "explained_variance_ratio": [2],
      "projected": [N, 2], "num_active": int or None}``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    category_names = [str(c) for c in category_names]
    if codes.ndim != 2 or not len(codes):
        raise ValueError(f"codes must be a non-empty [N, Z] array; got shape {codes.shape}")
    if labels.shape != (len(codes),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an int array of shape ({len(codes)},); got shape "
                         f"{labels.shape} dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= len(category_names):
        raise ValueError(f"labels must lie in [0, {len(category_names)}); got "
                         f"[{labels.min()}, {labels.max()}]")

    mean, components, ratio = fit_pca(codes)
    projected = project(codes, mean, components)

    fig = Figure(figsize=(8, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = np.arange(len(codes))
    if max_points is not None and len(codes) > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(len(codes), max_points, replace=False))
    for index, name in enumerate(category_names):
        idx = shown[labels[shown] == index]
        color = _category_color(index, len(category_names))
        ax.scatter(projected[idx, 0], projected[idx, 1], s=8, alpha=0.6, color=color,
                   edgecolors="none", label=f"{name} ({int((labels == index).sum())})")

    num_active = None
    if gmm_mu is not None:
        num_active = _draw_components(ax, gmm_mu, gmm_alpha, mean, components, alpha_threshold)
        title = f"{title}: {num_active} of {len(np.asarray(gmm_mu))} components active"

    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}% variance)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, markerscale=1.5, framealpha=0.8)
    ax.grid(True, alpha=0.2)
    fig.tight_layout()

    directory = os.path.dirname(os.path.abspath(path_png))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path_png, dpi=dpi, format="png")
    logging.info("latent plot: %d codes, %d categories -> %s", len(codes), len(category_names),
                 path_png)
    return {"path": path_png, "mean": mean, "components": components,
            "explained_variance_ratio": ratio, "projected": projected, "num_active": num_active}


def _category_color(index, num_categories):
    """Qualitative colour for category ``index`` (tab10 / tab20; HSV spacing beyond 20)."""
    if num_categories <= 20:
        cmap = matplotlib.colormaps["tab10" if num_categories <= 10 else "tab20"]
        return cmap(index % cmap.N)
    return colorsys.hsv_to_rgb(index / num_categories, 0.75, 0.85)


def _draw_components(ax, gmm_mu, gmm_alpha, mean, components, alpha_threshold):
    """Mark the projected GMM means on ``ax``; returns the number of active components."""
    gmm_mu = np.asarray(gmm_mu, dtype=np.float64)
    if gmm_mu.ndim != 2 or gmm_mu.shape[1] != len(mean):
        raise ValueError(f"gmm_mu must be [K, {len(mean)}]; got shape {gmm_mu.shape}")
    num = len(gmm_mu)
    if gmm_alpha is None:
        alpha = np.full(num, np.nan)
        active = np.ones(num, dtype=bool)
    else:
        alpha = np.asarray(gmm_alpha, dtype=np.float64)
        if alpha.shape != (num,):
            raise ValueError(f"gmm_alpha must have shape ({num},); got {alpha.shape}")
        active = alpha >= alpha_threshold
    points = project(gmm_mu, mean, components)
    # Marker area proportional to alpha (a fixed size without alphas).
    sizes = np.where(np.isnan(alpha), 160.0, 40.0 + 900.0 * np.nan_to_num(alpha))
    if active.any():
        ax.scatter(points[active, 0], points[active, 1], s=sizes[active], marker="*",
                   color="black", edgecolors="white", linewidths=0.8, zorder=3,
                   label="GMM component (active)")
    if (~active).any():
        ax.scatter(points[~active, 0], points[~active, 1], s=sizes[~active], marker="o",
                   facecolors="none", edgecolors="grey", linewidths=1.2, zorder=3,
                   label=f"GMM component (alpha < {alpha_threshold:g})")
    for k in range(num):
        text = f"{k}" if np.isnan(alpha[k]) else f"{k}: {alpha[k]:.2f}"
        ax.annotate(text, points[k], xytext=(6, 6), textcoords="offset points", fontsize=8,
                    color="black" if active[k] else "grey", zorder=4)
    return int(active.sum())
