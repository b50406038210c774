"""Ret: top-k retrieval of a generated sketch's own reference in latent space (ALGORITHMS.md 3).

Each generated sketch is rendered, re-encoded to ``mu`` (the query code) and compared, by mean
squared distance, with the codes of *all* reference sketches pooled over categories. Retrieval at
``k`` succeeds when the sketch's own reference is among the ``k`` nearest.

Ranks are computed block by block over the queries, so memory is ``O(block_size * M)`` (float64)
instead of the ``N * M * Z`` arrays (~8 GB) that the reference implementation tiles. Within a block
the distances use ``(|q|^2 - 2 q.r + |r|^2) / Z`` in float64.

Ties: the rank of a query is the number of references *strictly* closer than its true reference,
so a reference at the same distance (a duplicate code, or one closer by no more than float64
rounding of the expansion above, see ``_tie_tolerance``) never pushes the true reference down.
The reference implementation breaks ties by index order instead (``np.argmin``); the two only
differ on exact duplicates.

``k`` larger than the number of references ``M`` is allowed: every query then succeeds
(``rank < M <= k``), which is the mathematical value; a warning is logged because such a number
says nothing about the model (it happens on tiny smoke-test sets).
"""

import numpy as np
from absl import logging

DEFAULT_KS = (1, 10, 50)


def _as_codes(codes, name):
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be a [num, z_size] array; got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    if not np.all(np.isfinite(codes)):
        # A NaN distance compares False with everything and would count as a perfect hit.
        raise ValueError(f"{name} holds {np.size(codes) - np.isfinite(codes).sum()} non-finite "
                         "value(s)")
    return codes


def _check_ks(ks):
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks must name at least one k")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1; got {list(ks)}")
    return ks


def _warn_large_ks(ks, num_references):
    large = [k for k in ks if k >= num_references]
    if large:
        logging.warning("retrieval: k=%s >= number of references (%d): top-k is trivially 1.0",
                        large, num_references)


def _tie_tolerance(query_sq, reference_sq_max, z_size):
    """Float64 rounding bound of the expanded (unscaled) squared distance, per query."""
    # |q|^2 - 2 q.r + |r|^2 loses about eps * (Z + 2) * (|q|^2 + |r|^2) to cancellation.
    eps = np.finfo(np.float64).eps
    return 4.0 * eps * (z_size + 2) * (query_sq + reference_sq_max)


def mean_squared_distances(query_codes, reference_codes):
    """Mean squared distance ``[n, M]`` (float64) between ``[n, Z]`` queries and ``[M, Z]`` refs.

    Direct pairwise formula for a single block; ``retrieval_ranks`` is the blocked version.
    """
    q = _as_codes(query_codes, "query_codes")
    r = _as_codes(reference_codes, "reference_codes")
    d = (q * q).sum(1)[:, None] - 2.0 * q @ r.T + (r * r).sum(1)[None, :]
    return np.maximum(d, 0.0) / q.shape[1]


def retrieval_ranks(query_codes, reference_codes, true_index, block_size=1024):
    """Rank of each query's true reference among all references (0 = nearest).

    Args:
      query_codes: ``[N, Z]`` codes of the re-encoded generated sketches.
      reference_codes: ``[M, Z]`` codes of the reference sketches (pooled over categories).
      true_index: ``[N]`` int, row of ``reference_codes`` that query ``i`` was generated from.
      block_size: queries per block; memory is about ``block_size * M * 8`` bytes per array.

    Returns:
      ``np.int64 [N]``: number of references strictly closer (mean squared distance) to the query
      than its true reference; ties count in favour of the true reference.

    Raises:
      ValueError: bad shapes, non-finite codes, ``true_index`` out of ``[0, M)`` or
        ``block_size < 1``.
    """
    q = _as_codes(query_codes, "query_codes")
    r = _as_codes(reference_codes, "reference_codes")
    num_queries, z_size = q.shape
    num_refs = r.shape[0]
    if r.shape[1] != z_size:
        raise ValueError(f"query_codes have z_size {z_size} but reference_codes have {r.shape[1]}")
    if num_refs == 0:
        raise ValueError("reference_codes is empty")
    true_index = np.asarray(true_index)
    if true_index.shape != (num_queries,) or not np.issubdtype(true_index.dtype, np.integer):
        raise ValueError(f"true_index must be an int array of shape ({num_queries},); got shape "
                         f"{true_index.shape} dtype {true_index.dtype}")
    if num_queries and (true_index.min() < 0 or true_index.max() >= num_refs):
        raise ValueError(f"true_index must lie in [0, {num_refs}); got range "
                         f"[{true_index.min()}, {true_index.max()}]")
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")

    r_sq = (r * r).sum(1)
    r_sq_max = r_sq.max()
    ranks = np.empty(num_queries, dtype=np.int64)
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        qb = q[start:stop]
        q_sq = (qb * qb).sum(1)
        # Unscaled squared distances [b, M]; dividing by Z does not change the order.
        d = q_sq[:, None] - 2.0 * (qb @ r.T) + r_sq[None, :]
        rows = np.arange(stop - start)
        d_true = d[rows, true_index[start:stop]]
        tol = _tie_tolerance(q_sq, r_sq_max, z_size)
        ranks[start:stop] = (d < (d_true - tol)[:, None]).sum(1)
    return ranks


def topk_from_ranks(ranks, ks=DEFAULT_KS, num_references=None):
    """``{"ret_top{k}": fraction of ranks < k}`` for each k; NaN when there are no ranks."""
    ranks = np.asarray(ranks)
    ks = _check_ks(ks)
    if num_references is not None:
        _warn_large_ks(ks, num_references)
    out = {}
    for k in ks:
        out[f"ret_top{int(k)}"] = float(np.mean(ranks < int(k))) if ranks.size else float("nan")
    return out


def retrieval_topk(query_codes, reference_codes, true_index, ks=DEFAULT_KS, block_size=1024,
                   return_ranks=False):
    """Ret at each k: fraction of queries whose own reference is among the k nearest.

    Args:
      query_codes: ``[N, Z]`` re-encoded codes (``mu``) of the generated sketches.
      reference_codes: ``[M, Z]`` codes of all reference sketches, pooled over categories.
      true_index: ``[N]`` int, the reference row each query was generated from.
      ks: the k values (>= 1; k >= M gives 1.0 and logs a warning).
      block_size: queries per block (memory ``O(block_size * M)``).
      return_ranks: also return the ``[N]`` ranks (see ``retrieval_ranks``).

    Returns:
      ``{"ret_top1": float, "ret_top10": float, "ret_top50": float}`` (one key per k, fractions in
      [0, 1]); with ``return_ranks``, the tuple ``(that dict, ranks)``.

    Example:
      >>> codes = np.random.default_rng(0).normal(size=(100, 8))
      >>> retrieval_topk(codes, codes, np.arange(100))["ret_top1"]
      1.0
    """
    ks = _check_ks(ks)
    ranks = retrieval_ranks(query_codes, reference_codes, true_index, block_size=block_size)
    num_refs = len(reference_codes)
    result = topk_from_ranks(ranks, ks, num_references=num_refs)
    logging.info("retrieval over %d queries, %d references: %s", ranks.size, num_refs, result)
    return (result, ranks) if return_ranks else result


def per_category_retrieval(query_codes, reference_codes, true_index, categories, ks=DEFAULT_KS,
                           block_size=1024):
    """Ret per category of the queries; references stay pooled over all categories.

    Args:
      query_codes, reference_codes, true_index, ks, block_size: as in ``retrieval_topk``.
      categories: ``[N]`` category (name or id) of each query.

    Returns:
      ``{category: {"ret_top1": ..., ...}}`` with categories in sorted order (plain Python keys).
    """
    categories = np.asarray(categories)
    if categories.shape != (np.asarray(query_codes).shape[0],):
        raise ValueError(f"categories must have shape ({np.asarray(query_codes).shape[0]},); got "
                         f"{categories.shape}")
    ks = _check_ks(ks)
    ranks = retrieval_ranks(query_codes, reference_codes, true_index, block_size=block_size)
    _warn_large_ks(ks, len(reference_codes))
    out = {}
    for category in np.unique(categories):
        key = category.item() if hasattr(category, "item") else category
        out[key] = topk_from_ranks(ranks[categories == category], ks)
    return out
