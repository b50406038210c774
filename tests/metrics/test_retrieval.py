"""Tests for sketchtk.metrics.retrieval (Ret)."""

import numpy as np
import pytest

from sketchtk.metrics import retrieval


def brute_force_ranks(query, reference, true_index):
    """Direct [N, M, Z] mean squared distances; rank = references strictly closer than the true."""
    d = ((query[:, None, :].astype(np.float64) - reference[None, :, :]) ** 2).mean(-1)
    d_true = d[np.arange(len(query)), true_index]
    return (d < d_true[:, None]).sum(1)


def test_queries_equal_to_references_retrieve_themselves():
    codes = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    result = retrieval.retrieval_topk(codes, codes, np.arange(300), block_size=64)
    assert result == {"ret_top1": 1.0, "ret_top10": 1.0, "ret_top50": 1.0}


def test_shuffled_codes_are_near_chance():
    rng = np.random.default_rng(1)
    num_refs, num_queries = 2000, 1000
    references = rng.normal(size=(num_refs, 32))
    queries = rng.normal(size=(num_queries, 32))  # unrelated to their "true" reference
    true_index = rng.permutation(num_refs)[:num_queries]
    result = retrieval.retrieval_topk(queries, references, true_index)
    assert result["ret_top1"] < 0.01
    chance = 50 / num_refs  # 0.025; binomial std over 1000 queries ~0.005
    assert 0.3 * chance < result["ret_top50"] < 2.5 * chance
    assert result["ret_top1"] <= result["ret_top10"] <= result["ret_top50"]


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000])
def test_matches_brute_force(block_size):
    rng = np.random.default_rng(2)
    references = rng.normal(size=(150, 8)).astype(np.float32)
    # Noisy copies of their references, so ranks spread over 0..M.
    true_index = rng.integers(0, 150, size=101)
    queries = references[true_index] + rng.normal(scale=0.8, size=(101, 8)).astype(np.float32)
    expected = brute_force_ranks(queries, references, true_index)
    assert 0 < expected.max() and expected.min() == 0  # the test exercises several ranks
    result, ranks = retrieval.retrieval_topk(queries, references, true_index, ks=(1, 5, 20),
                                             block_size=block_size, return_ranks=True)
    np.testing.assert_array_equal(ranks, expected)
    for k in (1, 5, 20):
        assert result[f"ret_top{k}"] == pytest.approx(np.mean(expected < k))


def test_block_distances_agree_with_direct_computation():
    rng = np.random.default_rng(3)
    q = rng.normal(loc=3.0, size=(20, 128))
    r = rng.normal(loc=3.0, size=(30, 128))
    direct = ((q[:, None] - r[None]) ** 2).mean(-1)
    np.testing.assert_allclose(retrieval.mean_squared_distances(q, r), direct, rtol=1e-10,
                               atol=1e-12)


def test_ties_count_for_the_true_reference():
    references = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    queries = np.array([[1.0, 0.0], [1.0, 0.0]])
    # Both queries sit exactly on the duplicated references 1 and 2: rank 0 either way.
    ranks = retrieval.retrieval_ranks(queries, references, np.array([1, 2]))
    np.testing.assert_array_equal(ranks, [0, 0])
    ranks = retrieval.retrieval_ranks(queries, references, np.array([0, 3]))
    np.testing.assert_array_equal(ranks, [2, 3])


def test_k_larger_than_references_is_trivially_one():
    rng = np.random.default_rng(4)
    references = rng.normal(size=(20, 4))
    queries = rng.normal(size=(10, 4))
    result = retrieval.retrieval_topk(queries, references, np.arange(10), ks=(1, 20, 50))
    assert result["ret_top20"] == 1.0 and result["ret_top50"] == 1.0


def test_per_category_splits_queries_but_pools_references():
    rng = np.random.default_rng(5)
    references = rng.normal(size=(40, 6))
    true_index = np.arange(40)
    queries = references.copy()
    queries[20:] = rng.normal(size=(20, 6))  # category "b" queries are unrelated
    categories = np.array(["a"] * 20 + ["b"] * 20)
    out = retrieval.per_category_retrieval(queries, references, true_index, categories,
                                           ks=(1, 10))
    assert list(out) == ["a", "b"] and all(type(k) is str for k in out)
    assert out["a"] == {"ret_top1": 1.0, "ret_top10": 1.0}
    overall, ranks = retrieval.retrieval_topk(queries, references, true_index, ks=(1, 10),
                                              return_ranks=True)
    assert out["b"]["ret_top10"] == pytest.approx(np.mean(ranks[20:] < 10))
    assert overall["ret_top1"] == pytest.approx((1.0 + out["b"]["ret_top1"]) / 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"ks": (0, 10)}, "k must be >= 1"),
    ({"block_size": 0}, "block_size"),
    ({"true_index": np.array([0, 99])}, r"true_index must lie in \[0, 5\)"),
    ({"true_index": np.array([0.0, 1.0])}, "int array"),
    ({"query_codes": np.full((2, 3), np.nan)}, "non-finite"),
    ({"query_codes": np.zeros((2, 4))}, "z_size"),
])
def test_bad_inputs_raise(kwargs, message):
    args = {"query_codes": np.zeros((2, 3)), "reference_codes": np.ones((5, 3)),
            "true_index": np.array([0, 1])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        retrieval.retrieval_topk(**args)
