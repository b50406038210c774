"""Sample-quality metrics shared by every model family: FID and k-NN precision / recall.

Both compare two sets of feature vectors, real and generated, in the feature space of the
toolkit's Sketch-a-Net classifier (its penultimate layer, ``classifier_features``), computed on
images rendered by the same renderer as the training images (``render_sketches``, "fast").

- **FID** (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two sets,
  ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})``. The trace of the matrix square
  root is computed as ``tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})``: that product is symmetric positive
  semi-definite and has the same eigenvalues as ``S_a S_b``, so two ``numpy.linalg.eigh`` calls give
  it without the complex parts and the ill-conditioning of a general ``sqrtm`` (scipy is not a
  dependency). Eigenvalues that rounding makes slightly negative are clipped to 0. (The TTUR /
  pytorch-fid code takes ``scipy.linalg.sqrtm`` of the non-symmetric ``S_a S_b``, adds ``eps * I``
  when it is singular and drops an imaginary part; the values agree where both are accurate.)
- **Precision / recall** (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models"): the real manifold is the union of balls around every real feature
  with radius its distance to its k-th nearest real neighbour (k = 3); precision is the fraction of
  generated features inside it, recall the fraction of real features inside the generated manifold
  built the same way. As in the authors' code (kynkaat/improved-precision-and-recall-metric,
  ``precision_recall.py``: ``ManifoldEstimator.__init__`` takes ``np.partition(...)[:, k]`` of the
  squared distances, the point itself at distance 0 included, i.e. the ``k + 1``-th smallest, and
  ``evaluate`` tests ``distance <= radius``), but in float64. Distances are computed in row
  blocks, so memory is ``O(block_size * N)``.

**Not comparable to published numbers.** Papers report FID / precision / recall in the feature
space of an ImageNet Inception-v3 network on large renders (e.g. 256 px); these are in the
feature space of a small Sketch-a-Net trained on the run's own categories at 48 px. They rank
models evaluated with the *same* classifier on the same data, nothing more. FID is also biased
upwards for small sets (it needs many more samples than feature dimensions to settle), so compare
only numbers computed from the same set sizes.
"""

import numpy as np
from absl import logging

from sketchtk.models.sketch_a_net import penultimate_features

DEFAULT_K = 3


def _as_features(feats, name, min_rows=1):
    """float64 ``[N, D]`` copy of ``feats``; ValueError for bad shapes, dtypes, non-finite values."""
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be a [num, dim] feature array; got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {feats.dtype}")
    if feats.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} feature vectors; got {feats.shape[0]}")
    feats = feats.astype(np.float64)
    if not np.all(np.isfinite(feats)):
        bad = feats.size - np.isfinite(feats).sum()
        raise ValueError(f"{name} holds {bad} non-finite value(s)")
    return feats


def feature_statistics(feats):
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of features ``[N, D]``, N >= 2."""
    feats = _as_features(feats, "feats", min_rows=2)
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], -1)


def _psd_sqrt(matrix):
    """Symmetric square root of a symmetric PSD matrix by ``eigh`` (negative eigenvalues -> 0)."""
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma_a, sigma_b):
    """``tr((S_a S_b)^{1/2})`` of symmetric PSD ``[D, D]`` matrices via ``S_a^{1/2} S_b S_a^{1/2}``."""
    root_a = _psd_sqrt(np.asarray(sigma_a, np.float64))
    inner = root_a @ np.asarray(sigma_b, np.float64) @ root_a
    values = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b):
    """Frechet distance between ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)`` (float).

    Args:
      mu_a, mu_b: means ``[D]``.
      sigma_a, sigma_b: symmetric positive semi-definite covariances ``[D, D]``.

    Returns:
      ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})`` in float64, clipped at 0 (it
      is a squared Wasserstein-2 distance; rounding can make it about -1e-12 for equal inputs).
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    dim = mu_a.shape[0]
    if mu_a.shape != (dim,) or mu_b.shape != (dim,):
        raise ValueError(f"means must both have shape ({dim},); got {mu_a.shape} and {mu_b.shape}")
    if sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
        raise ValueError(f"covariances must be [{dim}, {dim}]; got {sigma_a.shape} and "
                         f"{sigma_b.shape}")
    diff = mu_a - mu_b
    value = (diff @ diff + np.trace(sigma_a) + np.trace(sigma_b)
             - 2.0 * trace_sqrt_product(sigma_a, sigma_b))
    return float(max(value, 0.0))


def frechet_distance(feats_a, feats_b):
    """FID-style Frechet distance between two feature sets ``[N_a, D]`` and ``[N_b, D]`` (N >= 2).

    Each set is summarised by its mean and unbiased covariance (float64); see
    ``frechet_distance_from_stats``. The value is in squared feature units.

    Example:
      >>> x = np.random.default_rng(0).normal(size=(500, 4))
      >>> frechet_distance(x, x) < 1e-9
      True
    """
    mu_a, sigma_a = feature_statistics(feats_a)
    mu_b, sigma_b = feature_statistics(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sets have different dimensions: {mu_a.shape[0]} and "
                         f"{mu_b.shape[0]}")
    return frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b)


def _squared_distances(block, points, points_sq):
    """Squared Euclidean distances ``[b, M]`` (float64, >= 0) between ``block`` and ``points``."""
    block_sq = (block * block).sum(axis=1)
    return np.maximum(block_sq[:, None] - 2.0 * (block @ points.T) + points_sq[None, :], 0.0)


def knn_radii(feats, k=DEFAULT_K, block_size=1024):
    """Squared distance ``[N]`` from each feature to its k-th nearest neighbour in the same set.

    The point itself (distance 0) counts as the first neighbour, as in the authors' code, so this
    is the ``k + 1``-th smallest distance of each row. Needs ``N > k``.
    """
    feats = _as_features(feats, "feats")
    k = _check_k(k)
    if len(feats) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} feature vectors; got "
                         f"{len(feats)}")
    block_size = _check_block(block_size)
    sq = (feats * feats).sum(axis=1)
    radii = np.empty(len(feats))
    for start in range(0, len(feats), block_size):
        d = _squared_distances(feats[start:start + block_size], feats, sq)
        radii[start:start + block_size] = np.partition(d, k, axis=1)[:, k]
    return radii


def manifold_coverage(manifold_feats, manifold_radii, query_feats, block_size=1024):
    """Fraction of ``query_feats [Q, D]`` in the union of balls around ``manifold_feats [M, D]``.

    A query is inside when its squared distance to some manifold point ``j`` is at most
    ``manifold_radii[j]`` (squared radii, ``knn_radii``). Returns NaN for no queries.
    """
    manifold = _as_features(manifold_feats, "manifold_feats")
    queries = _as_features(query_feats, "query_feats", min_rows=0)
    radii = np.asarray(manifold_radii, np.float64)
    if radii.shape != (len(manifold),):
        raise ValueError(f"manifold_radii must have shape ({len(manifold)},); got {radii.shape}")
    if queries.shape[1] != manifold.shape[1]:
        raise ValueError(f"query features have dimension {queries.shape[1]} but the manifold's "
                         f"have {manifold.shape[1]}")
    if not len(queries):
        return float("nan")
    block_size = _check_block(block_size)
    sq = (manifold * manifold).sum(axis=1)
    inside = 0
    for start in range(0, len(queries), block_size):
        d = _squared_distances(queries[start:start + block_size], manifold, sq)
        inside += int(np.count_nonzero((d <= radii[None, :]).any(axis=1)))
    return inside / len(queries)


def precision_recall(real_feats, fake_feats, k=DEFAULT_K, block_size=1024):
    """Improved precision and recall (Kynkaanniemi et al. 2019) of generated features.

    Args:
      real_feats: ``[N, D]`` features of real sketches (N > k).
      fake_feats: ``[M, D]`` features of generated sketches (M > k).
      k: neighbourhood size of the manifold balls (3 in the paper).
      block_size: rows per distance block (memory ``O(block_size * max(N, M))``).

    Returns:
      ``(precision, recall)``: the fraction of generated features inside the real manifold, and
      of real features inside the generated manifold, each in [0, 1].

    Example:
      >>> real = np.random.default_rng(0).normal(size=(200, 8))
      >>> precision_recall(real, real[:50])[0]
      1.0
    """
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets have different dimensions: {real.shape[1]} and "
                         f"{fake.shape[1]}")
    precision = manifold_coverage(real, knn_radii(real, k, block_size), fake, block_size)
    recall = manifold_coverage(fake, knn_radii(fake, k, block_size), real, block_size)
    return precision, recall


def sample_quality(real_feats, fake_feats, k=DEFAULT_K, block_size=1024):
    """FID, precision and recall of generated features against real ones.

    Args:
      real_feats: ``[N, D]`` features of real sketches.
      fake_feats: ``[M, D]`` features of generated sketches (N, M > k).
      k, block_size: as in ``precision_recall``.

    Returns:
      ``{"fid": float, "precision": float, "recall": float, "num_real": N, "num_fake": M, "k": k}``.
    """
    fid = frechet_distance(real_feats, fake_feats)
    precision, recall = precision_recall(real_feats, fake_feats, k=k, block_size=block_size)
    out = {"fid": fid, "precision": precision, "recall": recall,
           "num_real": int(len(real_feats)), "num_fake": int(len(fake_feats)), "k": int(k)}
    logging.info("sample quality: %s", out)
    return out


def classifier_features(classifier_model, images_uint8, batch_size=256):
    """Penultimate-layer features ``float32 [N, D]`` of a trained classifier on sketch images.

    Args:
      classifier_model: a trained Keras classifier, e.g. ``SketchANet`` (D = ``dense_units``); the
        features are the input of its final (logits) layer, in inference mode (no dropout).
      images_uint8: uint8 ``[N, W, W]`` (or ``[N, W, W, 1]``), black strokes on white, rendered
        like the classifier's training images.
      batch_size: prediction batch size.
    """
    return penultimate_features(classifier_model, images_uint8, batch_size=batch_size)


def _check_k(k):
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    return k


def _check_block(block_size):
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    return block_size
