"""nDCG@k and exact top-k (negmine.report.ir), against hand-computed values."""

import numpy as np
import pytest

from negmine.report.ir import mean_ndcg_at_k, ndcg_at_k, top_k


def test_ndcg_hand_computed():
    l3 = np.log2(3)
    # binary: one of two relevant docs, at rank 2
    assert ndcg_at_k(["d1", "d2", "d3"], {"d2": 1, "d4": 1}) == pytest.approx((1 / l3) / (1 + 1 / l3))
    # graded: the grade-1 doc first, the grade-2 doc second (gain 2^g - 1)
    assert ndcg_at_k(["d3", "d1"], {"d1": 2, "d3": 1}) == pytest.approx((1 + 3 / l3) / (3 + 1 / l3))
    assert ndcg_at_k(["d1", "d3"], {"d1": 2, "d3": 1}) == pytest.approx(1.0)
    # cut at k: the relevant doc at rank 3 does not count for k = 2
    assert ndcg_at_k(["x", "y", "d2"], {"d2": 1}, k=2) == 0.0
    assert ndcg_at_k(["x"], {}) == 0.0 and ndcg_at_k(["x"], {"x": 0}) == 0.0
    # mean over the qrels' queries; a query missing from the run scores 0
    assert mean_ndcg_at_k({"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}}) == pytest.approx(0.5)


def test_top_k_matches_argsort():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)), rng.normal(size=(40, 5))
    ids = [f"d{i}" for i in range(40)]
    got = top_k(q, d, ids, k=10, block=3)
    want = [[ids[j] for j in np.argsort(-(q[i] @ d.T))[:10]] for i in range(7)]
    assert got == want
    assert [len(r) for r in top_k(q, d[:4], ids[:4], k=10)] == [4] * 7
