"""nDCG@k and exact top-k (negmine.report.ir), against hand-computed values."""

import numpy as np
import pytest

from negmine.report.ir import mean_ndcg_at_k, ndcg_at_k, paired_bootstrap, per_query_ndcg, top_k


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


def test_per_query_ndcg_means_to_the_mean():
    run = {"q1": ["d1", "x"], "q2": ["x", "d2"]}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    per = per_query_ndcg(run, qrels, 10)
    assert per == pytest.approx({"q1": 1.0, "q2": 1 / np.log2(3), "q3": 0.0})
    assert np.mean(list(per.values())) == pytest.approx(mean_ndcg_at_k(run, qrels, 10))


def test_paired_bootstrap_hand_made():
    # identical systems: difference 0, interval [0, 0], every resample <= 0
    same = paired_bootstrap([0.5, 0.2, 0.9], [0.5, 0.2, 0.9], n_resamples=200)
    assert same == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_le_0": 1.0, "queries": 3}
    # a beats b by exactly 0.1 on every query: every resample has mean 0.1
    const = paired_bootstrap([0.6, 0.3, 1.0], [0.5, 0.2, 0.9], n_resamples=200)
    assert const["diff"] == pytest.approx(0.1) and const["ci_low"] == pytest.approx(0.1)
    assert const["ci_high"] == pytest.approx(0.1) and const["p_le_0"] == 0.0
    # one query of 100 differs by +1: the mean is 0.01 and the interval covers 0 (the query is often left out)
    a = np.zeros(100)
    a[0] = 1.0
    r = paired_bootstrap(a, np.zeros(100), n_resamples=2000, seed=1)
    assert r["diff"] == pytest.approx(0.01) and r["ci_low"] == 0.0 and r["ci_high"] > 0.01
    assert 0.2 < r["p_le_0"] < 0.5  # P(query 0 never drawn in 100 draws) = 0.99^100 ≈ 0.37
    # deterministic under a seed
    assert paired_bootstrap(a, np.zeros(100), seed=3) == paired_bootstrap(a, np.zeros(100), seed=3)
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
