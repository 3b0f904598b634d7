"""Unit tests of the pure select functions (filters, dedup, samplers, short-query policies) on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from negmine.select import (
    abs_max,
    abs_min,
    apply_rules,
    duplicate_of,
    group_topk,
    jaccard,
    margin_pos,
    mask_positives,
    normalize_text,
    perc_pos,
    perc_threshold,
    pos_reference,
    rank_window,
    reasons,
    row_uniforms,
    sample,
    select_batch,
    shingles,
    signature,
)
from negmine.select.rules import Batch
from negmine.select.sampling import query_seeds

# ---------------------------------------------------------------------------------------------------------------
# filters


def test_perc_pos_positive_scores_is_s_plus_times_perc():
    s = np.array([0.75, 0.76, 0.77, 0.5])
    assert perc_threshold(0.8, 0.95) == pytest.approx(0.76)
    assert perc_pos(s, 0.8, 0.95).tolist() == [True, False, False, True]  # strict: 0.76 is dropped


def test_perc_pos_negative_scores_stays_below_the_positive():
    # s+ = -2: the naive s < s+ * perc = -1.9 would keep -1.95, a negative scored ABOVE the positive
    s = np.array([-1.95, -2.0, -2.05, -2.11, -5.0])
    keep = perc_pos(s, -2.0, 0.95)
    assert perc_threshold(-2.0, 0.95) == pytest.approx(-2.1)
    assert keep.tolist() == [False, False, False, True, True]
    assert (s[keep] < -2.0).all()
    # zero positive score: only strictly negative scores stay
    assert perc_pos(np.array([0.0, -0.01, 0.01]), 0.0, 0.95).tolist() == [False, True, False]


def test_perc_pos_per_row_reference_and_nan_reference_keeps_nothing():
    s = np.array([0.5, 0.5, -3.0])
    ref = np.array([1.0, 0.5, np.nan])
    assert perc_pos(s, ref, 0.9).tolist() == [True, False, False]


def test_margin_abs_window_and_positive_mask():
    s = np.array([0.9, 0.75, 0.7, 0.1])
    assert margin_pos(s, 0.8, 0.05).tolist() == [False, False, True, True]  # keep s < 0.75 (strict)
    assert margin_pos(np.array([-1.2, -1.0]), -1.0, 0.1).tolist() == [True, False]
    assert abs_max(s, 0.75).tolist() == [False, False, True, True]
    assert abs_min(s, 0.7).tolist() == [True, True, True, False]
    ranks = np.array([1, 5, 10, 11, 0])  # 0 = not retrieved
    assert rank_window(ranks, 5, 10).tolist() == [False, True, True, False, False]
    assert rank_window(ranks, None, 10).tolist() == [True, True, True, False, False]
    assert rank_window(ranks).all()
    assert mask_positives(np.array(["a", "b", "c"], dtype=object), {"b"}).tolist() == [True, False, True]
    assert mask_positives(np.array([], dtype=object), {"b"}).tolist() == []
    assert mask_positives(np.array(["a"], dtype=object), set()).tolist() == [True]


def test_pos_reference_min_mean_max_and_missing():
    group = np.array([0, 0, 0, 1, 1, 2])
    s = np.array([0.9, 0.5, 0.1, 0.3, 0.2, 0.8])
    is_pos = np.array([True, True, False, True, False, False])
    assert pos_reference(group, s, is_pos, 4, "min")[:2].tolist() == [0.5, 0.3]
    assert pos_reference(group, s, is_pos, 4, "max")[:2].tolist() == [0.9, 0.3]
    assert pos_reference(group, s, is_pos, 4, "mean")[:2].tolist() == pytest.approx([0.7, 0.3])
    ref = pos_reference(group, s, is_pos, 4, "min")
    assert np.isnan(ref[2]) and np.isnan(ref[3])  # no positive / no rows at all
    with pytest.raises(ValueError):
        pos_reference(group, s, is_pos, 4, "median")


def _batch(scores, ranks, ref, is_pos=None, is_dup=None):
    n = len(scores)
    return Batch(np.asarray(scores, float), np.asarray(ranks), np.full(n, ref, float),
                 np.zeros(n, bool) if is_pos is None else np.asarray(is_pos, bool),
                 np.zeros(n, bool) if is_dup is None else np.asarray(is_dup, bool))


def test_first_failing_rule_wins_in_documented_order():
    names = reasons()
    assert names[:7] == ("positive", "duplicate_of_positive", "out_of_window", "above_abs", "below_abs",
                         "above_margin", "above_perc") and names[-1] == "not_sampled"
    b = _batch([0.99, 0.99, 0.99, 0.95, 0.01, 0.78, 0.77, 0.5], [1, 2, 30, 3, 4, 5, 6, 7], 0.8,
               is_pos=[1, 1, 0, 0, 0, 0, 0, 0], is_dup=[0, 1, 1, 0, 0, 0, 0, 0])
    rules = {"min_rank": None, "max_rank": 20, "max_score": 0.9, "min_score": 0.05, "margin": 0.02,
             "perc_pos": 0.95}
    got = [names[i] if i >= 0 else "kept" for i in apply_rules(b, rules)]
    assert got == ["positive", "positive", "duplicate_of_positive", "above_abs", "below_abs", "above_margin",
                   "above_perc", "kept"]
    # rules that are not configured do not fire
    assert (apply_rules(b, {}) == np.array([0, 0, 1, -1, -1, -1, -1, -1])).all()


def test_apply_rules_empty():
    assert apply_rules(_batch([], [], 0.5), {"perc_pos": 0.9}).tolist() == []


# ---------------------------------------------------------------------------------------------------------------
# dedup


def test_normalize_and_exact_duplicate_by_hash():
    assert normalize_text("  Hello,   WORLD!\n") == "hello world"
    assert normalize_text("Ｃａｆé—au_lait") == "café au lait"  # NFKC, case-folded, punctuation → space
    assert signature("Cats: purr!").hash == signature("cats purr").hash


def test_shingles_and_jaccard():
    a = shingles("abcdefgh", 5)
    assert len(a) == 4 and (np.diff(a.astype(np.float64)) > 0).all()  # sorted unique
    assert len(shingles("abc", 5)) == 1  # shorter than k: one shingle
    assert len(shingles("", 5)) == 0
    assert jaccard(a, a) == 1.0
    assert jaccard(a, shingles("zzzzzzzz", 5)) == 0.0
    assert jaccard(np.zeros(0, np.uint64), np.zeros(0, np.uint64)) == 1.0
    x, y = shingles("abcdef", 3), shingles("abcdxy", 3)  # {abc,bcd,cde,def} vs {abc,bcd,cdx,dxy}
    assert jaccard(x, y) == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        shingles("abc", 9)


TEXT = " ".join(f"Sentence {i} says that item {i * 37 % 101} weighs {i * 13 % 17} grams." for i in range(12))


def test_duplicate_of_near_exact_and_distinct():
    sigs = {
        "pos": signature(TEXT),
        "near": signature(TEXT.replace("weighs", "weights", 1)),   # one word changed in ~500 chars
        "same": signature(TEXT.upper() + "!!!"),
        "other": signature("A completely different passage about rivers and lakes. " * 6),
        "pos2": signature("Short second positive."),
    }
    docs = ["near", "same", "other", "pos", "near", "missing"]
    cq = np.array([0, 0, 0, 0, 1, 0])
    dup, of, sim = duplicate_of(docs, cq, ["pos", "pos2"], np.array([0, 0]), sigs, 0.9)
    assert dup.tolist() == [True, True, False, False, False, False]
    assert of[:2] == ["pos", "pos"] and of[2] is None
    assert 0.9 <= sim[0] < 1.0 and sim[1] == 1.0
    assert np.isnan(sim[3])  # a candidate that is itself a positive of the query is not compared
    assert np.isnan(sim[4])  # query 1 has no positive
    # threshold is inclusive and configurable
    dup2, _, _ = duplicate_of(["near"], np.array([0]), ["pos"], np.array([0]), sigs, sim[0])
    assert dup2.tolist() == [True]
    dup3, _, _ = duplicate_of(["near"], np.array([0]), ["pos"], np.array([0]), sigs, min(1.0, sim[0] + 1e-6))
    assert dup3.tolist() == [False]


def test_duplicate_of_empty_inputs():
    dup, of, sim = duplicate_of([], np.zeros(0, np.int64), [], np.zeros(0, np.int64), {}, 0.9)
    assert len(dup) == 0 and of == [] and len(sim) == 0


# ---------------------------------------------------------------------------------------------------------------
# sampling


def test_top_sampling_ties_and_k_larger_than_candidates():
    s = np.array([0.5, 0.9, 0.9, 0.1])
    assert sample(s, 2).tolist() == [1, 2]  # tie 0.9/0.9: better rank first
    assert sample(s, 10).tolist() == [1, 2, 0, 3]
    assert sample(np.array([]), 3).tolist() == []
    assert sample(s, 2, eligible=np.array([True, False, True, True])).tolist() == [2, 0]


def test_random_samplers_are_seeded_per_query():
    s = np.linspace(0, 1, 50)
    a = sample(s, 5, "uniform", seed=1, query_id="q1")
    assert a.tolist() == sample(s, 5, "uniform", seed=1, query_id="q1").tolist()
    assert a.tolist() != sample(s, 5, "uniform", seed=2, query_id="q1").tolist()
    assert a.tolist() != sample(s, 5, "uniform", seed=1, query_id="q2").tolist()
    assert len(set(a.tolist())) == 5


def test_row_uniforms_in_open_interval_and_stable():
    seeds = query_seeds(0, ["a", "b"])
    u = row_uniforms(np.repeat(seeds, 1000), np.tile(np.arange(1000), 2))
    assert ((u > 0) & (u < 1)).all()
    assert abs(u.mean() - 0.5) < 0.03
    assert (row_uniforms(np.repeat(seeds, 1000), np.tile(np.arange(1000), 2)) == u).all()
    assert query_seeds(0, ["a"])[0] == seeds[0]  # independent of the other queries (sharding)


def _frequencies(method, scores, n_groups=4000, **params):
    """Empirical probability of each candidate being the single sample (k=1) over many queries."""
    m = len(scores)
    group = np.repeat(np.arange(n_groups), m)
    s = np.tile(scores, n_groups)
    from negmine.select.sampling import gumbel, sample_keys

    seeds = query_seeds(7, [f"q{i}" for i in range(n_groups)])
    noise = gumbel(row_uniforms(seeds[group], np.tile(np.arange(m), n_groups)))
    key = sample_keys(method, s, params.pop("pos_score", 0.0), noise, params)
    taken = group_topk(group, key, np.ones(len(s), bool), 1)
    return np.bincount(np.tile(np.arange(m), n_groups)[taken], minlength=m) / n_groups


def test_uniform_softmax_simans_follow_their_distributions():
    scores = np.array([2.0, 1.0, 0.0, -1.0])
    f = _frequencies("uniform", scores)
    assert np.allclose(f, 0.25, atol=0.03)
    f = _frequencies("softmax", scores, temperature=1.0)
    p = np.exp(scores) / np.exp(scores).sum()
    assert np.allclose(f, p, atol=0.03)
    f = _frequencies("softmax", scores, temperature=0.01)  # T -> 0: top
    assert f[0] > 0.99
    # SimANS: p ~ exp(-a (s - s+ - b)^2), peaked at s = s+ + b
    a, b, sp = 1.0, -1.0, 1.0
    f = _frequencies("simans", scores, simans_a=a, simans_b=b, pos_score=sp)
    w = np.exp(-a * (scores - sp - b) ** 2)
    assert np.allclose(f, w / w.sum(), atol=0.03)
    assert f.argmax() == 2  # s = 0 = s+ + b


def test_group_topk_per_group_quota_and_empty():
    group = np.array([0, 0, 0, 1, 1])
    key = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert group_topk(group, key, np.ones(5, bool), 2).tolist() == [False, True, True, True, True]
    assert group_topk(group, key, np.ones(5, bool), np.array([1, 1, 1, 0, 0])).tolist() == \
        [False, True, False, False, False]
    assert group_topk(np.zeros(0, int), np.zeros(0), np.zeros(0, bool), 3).tolist() == []


# ---------------------------------------------------------------------------------------------------------------
# select_batch: sampling + short-query policies


def _select(policy, k=3, rules=None, scores=None, ranks=None, is_pos=None, is_dup=None, sampling="top"):
    # one query, s+ = 1.0 at rank 1; candidates ranks 2..9
    scores = np.array([1.0, 0.99, 0.97, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]) if scores is None else scores
    n = len(scores)
    ranks = np.arange(1, n + 1) if ranks is None else ranks
    is_pos = np.r_[True, np.zeros(n - 1, bool)] if is_pos is None else is_pos
    is_dup = np.zeros(n, bool) if is_dup is None else is_dup
    return select_batch(np.zeros(n, np.int64), 1, query_seeds(0, ["q"]), scores, ranks, np.arange(n), is_pos,
                        is_dup, rules=rules if rules is not None else {"perc_pos": 0.95}, k=k,
                        sampling=sampling, short_policy=policy)


def test_select_keep_takes_top_and_marks_not_sampled():
    sel = _select("keep", k=3)
    names = reasons()
    got = [names[i] if i >= 0 else "kept" for i in sel.reason]
    assert got == ["positive", "above_perc", "above_perc", "kept", "kept", "kept", "not_sampled", "not_sampled",
                   "not_sampled"]
    assert not sel.short[0] and sel.n_kept[0] == 3 and not sel.filled.any()


def test_select_short_keep_drop_fill():
    rules = {"perc_pos": 0.95, "max_rank": 6}  # eligible: ranks 4..6 (3 candidates)
    keep = _select("keep", k=5, rules=rules)
    assert keep.short[0] and keep.n_kept[0] == 3 and not keep.dropped_query[0]
    drop = _select("drop", k=5, rules=rules)
    assert drop.dropped_query[0]
    fill = _select("fill", k=5, rules=rules)
    assert fill.n_kept[0] == 5
    # the next ranks after the last eligible one (7, 8), flagged and with the rule they failed
    assert np.flatnonzero(fill.filled).tolist() == [6, 7]
    names = reasons()
    assert [names[i] for i in fill.fill_reason[fill.filled]] == ["out_of_window", "out_of_window"]
    assert (fill.reason[fill.filled] == -1).all()


def test_fill_goes_back_to_the_nearest_above_and_never_to_positives_or_duplicates():
    # eligible: only rank 4 (0.5); ranks 5.. are below min_score; rank 2 is a duplicate of the positive
    is_dup = np.zeros(9, bool)
    is_dup[1] = True
    sel = _select("fill", k=8, rules={"perc_pos": 0.95, "min_score": 0.45}, is_dup=is_dup)
    taken = np.flatnonzero(sel.reason < 0).tolist()
    assert 0 not in taken and 1 not in taken  # positive, duplicate
    assert sel.n_kept[0] == 7  # 9 rows - positive - duplicate
    # after the last eligible (rank 4) first: ranks 5..9, then before it, nearest first: rank 3
    assert np.flatnonzero(sel.filled).tolist() == [2, 4, 5, 6, 7, 8]


def test_select_empty_and_all_positive_queries():
    sel = select_batch(np.zeros(0, np.int64), 2, query_seeds(0, ["a", "b"]), np.zeros(0), np.zeros(0, int),
                       np.zeros(0, int), np.zeros(0, bool), np.zeros(0, bool), rules={"perc_pos": 0.9}, k=4,
                       short_policy="fill")
    assert sel.n_kept.tolist() == [0, 0] and sel.short.tolist() == [True, True]
    only_pos = _select("fill", k=2, scores=np.array([0.9]), is_pos=np.array([True]))
    assert only_pos.n_kept[0] == 0 and only_pos.short[0]


def test_select_k_larger_than_candidates_and_several_positives():
    # two positives 0.9 and 0.6: s+ = min = 0.6 -> threshold 0.57
    scores = np.array([0.9, 0.6, 0.58, 0.5, 0.2])
    is_pos = np.array([True, True, False, False, False])
    sel = _select("keep", k=10, scores=scores, is_pos=is_pos)
    assert sel.pos_ref[0] == pytest.approx(0.6)
    assert np.flatnonzero(sel.reason < 0).tolist() == [3, 4]
    assert sel.short[0]


def test_select_random_sampling_independent_of_other_queries():
    rng = np.random.default_rng(0)
    s = rng.random(40)
    ranks = np.tile(np.arange(1, 21), 2)
    group = np.repeat([0, 1], 20)
    both = select_batch(group, 2, query_seeds(3, ["a", "b"]), s, ranks, np.arange(40), np.zeros(40, bool),
                        np.zeros(40, bool), rules={}, k=5, sampling="uniform")
    alone = select_batch(np.zeros(20, np.int64), 1, query_seeds(3, ["b"]), s[20:], ranks[20:], np.arange(20),
                         np.zeros(20, bool), np.zeros(20, bool), rules={}, k=5, sampling="uniform")
    assert ((both.reason[20:] < 0) == (alone.reason < 0)).all()


def test_unknown_names_raise():
    with pytest.raises(ValueError):
        _select("pad")
    with pytest.raises(ValueError):
        _select("keep", sampling="bogus")
