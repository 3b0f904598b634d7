"""Pure parts of `negmine calibrate`: features, the noise-aware model, its JSON form, and the select rule that
applies it — on hand-made rows whose expected values are worked out by hand."""

import json
import math

import numpy as np
import pytest

from negmine.calibrate.features import LEX_ABSENT, Signals, feature_matrix, needed_signals
from negmine.calibrate.model import FNModel, JudgeNoise, auc, fit, fold_of, reliability
from negmine.select.core import select_batch
from negmine.select.rules import reasons


def _sig(**kw):
    # two queries: q0 rows 0-3 (row 0 the positive), q1 rows 4-6 (row 4 the positive)
    base = dict(group=np.array([0, 0, 0, 0, 1, 1, 1]), n_groups=2,
                scores=np.array([0.9, 0.8, 0.6, 0.4, 0.5, 0.7, 0.3]),
                ranks=np.array([2, 1, 3, 4, 0, 1, 2]),
                is_positive=np.array([True, False, False, False, True, False, False]),
                pos_ref=np.array([0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5]),
                pos_sim=np.array([np.nan, 0.7, 0.2, 0.5, np.nan, 0.9, 0.1]),
                lex_rank=np.array([1, 3, 0, 10, 0, 0, 2]),
                retriever_score=np.array([0.9, 0.8, 0.6, 0.4, np.nan, 0.7, 0.3]))
    base.update(kw)
    return Signals(**base)


def test_features_by_hand():
    names = ["score_minus_pos", "score_ratio_pos", "log_rank", "score_gap_top", "score_z", "pos_sim",
             "query_pos_sim_top10", "log_lex_rank"]
    X = feature_matrix(_sig(), names)
    col = {n: X[:, i] for i, n in enumerate(names)}
    assert col["score_minus_pos"][1] == pytest.approx(0.8 - 0.9)
    assert col["score_ratio_pos"][5] == pytest.approx(0.7 / 0.5)
    assert col["log_rank"][3] == pytest.approx(math.log(4))
    assert math.isnan(col["log_rank"][4])                       # not retrieved
    # per-query statistics are over the query's candidates only (the positive row 0 scores 0.9: not the top)
    assert col["score_gap_top"][2] == pytest.approx(0.6 - 0.8)
    c = np.array([0.8, 0.6, 0.4])
    assert col["score_z"][3] == pytest.approx((0.4 - c.mean()) / c.std())
    assert col["query_pos_sim_top10"][1] == pytest.approx((0.7 + 0.2 + 0.5) / 3)
    assert col["query_pos_sim_top10"][6] == pytest.approx((0.9 + 0.1) / 2)
    assert col["log_lex_rank"][1] == pytest.approx(math.log(3))
    assert col["log_lex_rank"][2] == pytest.approx(math.log(LEX_ABSENT))  # not in BM25's list: far behind
    assert needed_signals(names) == {"pos_sim", "lex_rank"}
    with pytest.raises(ValueError, match="unknown calibration feature"):
        feature_matrix(_sig(), ["nope"])


def test_model_json_round_trip_and_formula(tmp_path):
    m = FNModel(["score", "pos_sim"], np.array([0.5, 0.4]), np.array([0.2, 0.1]), np.array([1.5, -2.0]), -0.3,
                threshold=0.42, meta={"k": 8})
    X = np.array([[0.7, 0.6], [0.5, np.nan]])
    by_hand = [1 / (1 + math.exp(-(1.5 * (0.7 - 0.5) / 0.2 - 2.0 * (0.6 - 0.4) / 0.1 - 0.3))),
               1 / (1 + math.exp(-(0.0 - 0.3)))]  # a missing value counts as the training mean
    assert m.predict(X) == pytest.approx(by_hand)
    m.save(tmp_path / "model.json")
    d = json.loads((tmp_path / "model.json").read_text())
    assert d["format"] == "negmine-fn-model/1" and d["threshold"] == 0.42 and "formula" in d
    back = FNModel.load(tmp_path / "model.json")
    assert back.predict(X) == pytest.approx(by_hand) and back.threshold == 0.42 and back.meta == {"k": 8}
    d["coef"] = [1.0]
    with pytest.raises(ValueError, match="do not match"):
        FNModel.from_dict(d)
    d["coef"], d["features"] = [1.0, 1.0], ["score", "made_up"]
    with pytest.raises(ValueError, match="unknown feature"):
        FNModel.from_dict(d)


def test_folds_keep_queries_together():
    g = np.repeat(np.arange(20), 7)
    f = fold_of(g, 5, seed=3)
    for q in range(20):
        assert len(set(f[g == q])) == 1
    assert sorted(np.bincount(f[::7])) == [4, 4, 4, 4, 4]
    assert (fold_of(g, 5, seed=3) == f).all()


def test_noise_aware_fit_recovers_the_signal_and_the_judges_error_rates():
    """Synthetic judged sample: true p(FN) = sigmoid(3x - 2); a judge that flags irrelevant text 10 % of the time and
    relevant text 90 %. The fitted model ranks by x, and its false-positive estimate is near 0.10 (a plain logistic
    fit on the judge's labels would put the 10 % floor into the model instead)."""
    rng = np.random.default_rng(0)
    n_q, per = 120, 25
    groups = np.repeat(np.arange(n_q), per)
    x = rng.normal(size=n_q * per)
    truth = rng.random(n_q * per) < 1 / (1 + np.exp(-(3 * x - 2)))
    flip = rng.random(n_q * per) < 0.1
    y = np.where(flip, ~truth, truth).astype(float)
    ctl = (rng.random(480) < 0.1).astype(float)
    pos = (rng.random(n_q) < 0.9).astype(float)
    res = fit(x[:, None], y, groups, ["score"], n_folds=5, seed=0, controls=ctl,
              control_groups=np.repeat(np.arange(n_q), 4), positives=pos, positive_groups=np.arange(n_q))
    assert res.noise.fpr == pytest.approx(0.10, abs=0.035)
    assert res.noise.sensitivity == pytest.approx(0.90, abs=0.08)
    assert auc(truth, res.oof) > 0.85
    assert res.model.coef[0] > 0
    # the out-of-fold predictions estimate the true rate, not the judge's noisy one
    assert res.oof.mean() == pytest.approx(truth.mean(), abs=0.04)
    plain = fit(x[:, None], y, groups, ["score"], n_folds=5, seed=0, noise=False)
    assert plain.oof.mean() > res.oof.mean() + 0.03


def test_posterior_uses_the_judges_error_rates():
    nz = JudgeNoise(fpr=0.1, sensitivity=0.9)
    # flagged with prior 0.2: 0.9*0.2 / (0.9*0.2 + 0.1*0.8) = 0.6923
    assert nz.posterior(np.array([True]), np.array([0.2]))[0] == pytest.approx(0.18 / 0.26)
    # not flagged: 0.1*0.2 / (0.1*0.2 + 0.9*0.8)
    assert nz.posterior(np.array([False]), np.array([0.2]))[0] == pytest.approx(0.02 / 0.74)
    assert JudgeNoise(0.0, 1.0).posterior(np.array([True, False]), np.array([0.3, 0.3])).tolist() == [1.0, 0.0]


def test_reliability_bins():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    rel = reliability(y, p, bins=2)
    assert rel == [{"n": 4, "predicted": 0.25, "observed": 0.5}, {"n": 4, "predicted": 0.75, "observed": 0.75}]


def test_rule_drops_exactly_the_rows_at_or_above_the_threshold():
    """select_batch with a calibrated threshold: a candidate is dropped as predicted_false_negative iff its
    p(false negative) >= threshold; the rest are sampled top-k."""
    group = np.zeros(6, dtype=np.int64)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    ranks = np.arange(1, 7)
    is_pos = np.array([True, False, False, False, False, False])
    p = np.array([0.99, 0.5, 0.2, 0.3, 0.05, 0.31])
    sel = select_batch(group, 1, np.array([7], dtype=np.uint64), scores, ranks, np.arange(6), is_pos,
                       np.zeros(6, bool), rules={"fn_threshold": 0.3}, k=2, fn_prob=p)
    names = reasons()
    got = [names[r] if r >= 0 else "kept" for r in sel.reason]
    assert got == ["positive", "predicted_false_negative", "kept", "predicted_false_negative", "kept",
                   "predicted_false_negative"]
    # no threshold: the rule is off
    off = select_batch(group, 1, np.array([7], dtype=np.uint64), scores, ranks, np.arange(6), is_pos,
                       np.zeros(6, bool), rules={"fn_threshold": None}, k=2, fn_prob=p)
    assert [names[r] if r >= 0 else "kept" for r in off.reason][:3] == ["positive", "kept", "kept"]
    with pytest.raises(ValueError, match="fn_prob"):
        select_batch(group, 1, np.array([7], dtype=np.uint64), scores, ranks, np.arange(6), is_pos,
                     np.zeros(6, bool), rules={"fn_threshold": 0.3}, k=2)


def test_calibrated_rule_drops_what_its_model_predicts_on_hand_made_rows(tmp_path):
    """A hand-made model.json applied the way select applies it (features -> p -> rule): exactly the candidates
    whose p, worked out by hand from the formula, reaches the threshold are dropped as predicted_false_negative;
    a pair the calibration judged uses its posterior instead of the model."""
    import pyarrow as pa

    from negmine.calibrate.stage import Calibration, fn_probabilities

    model = FNModel(["score", "pos_sim"], np.array([0.5, 0.5]), np.array([0.1, 0.1]), np.array([1.0, 2.0]), -1.0,
                    threshold=0.5)
    sig = _sig()
    cal = Calibration(model, tmp_path, "fp", {}, posterior={"q1\x1fd6": 0.99})
    keys = pa.array(["q0\x1fd0", "q0\x1fd1", "q0\x1fd2", "q0\x1fd3", "q1\x1fd4", "q1\x1fd5", "q1\x1fd6"])
    p = fn_probabilities(cal, sig, keys)

    def by_hand(s, ps):
        z = 1.0 * (s - 0.5) / 0.1 + 2.0 * (0.0 if math.isnan(ps) else (ps - 0.5) / 0.1) - 1.0
        return 1 / (1 + math.exp(-z))

    expected = [by_hand(s, ps) for s, ps in zip(sig.scores, sig.pos_sim, strict=True)]
    expected[6] = 0.99  # judged: the posterior
    assert p == pytest.approx(expected)
    sel = select_batch(sig.group, 2, np.array([1, 2], dtype=np.uint64), sig.scores, sig.ranks, np.arange(7),
                       sig.is_positive, np.zeros(7, bool), rules={"fn_threshold": 0.5}, k=8, fn_prob=p)
    names = reasons()
    dropped = {i for i, r in enumerate(sel.reason) if r >= 0 and names[r] == "predicted_false_negative"}
    assert dropped == {i for i in range(7) if not sig.is_positive[i] and expected[i] >= 0.5}
    assert dropped == {1, 5, 6}


def test_choose_threshold_takes_the_least_aggressive_one_within_the_limits():
    from negmine.calibrate.stage import choose_threshold

    def c(t, est, cov=1.0, hard=0.95):
        return {"threshold": t, "est_fn": est, "coverage": cov, "hardness_proxy": hard}

    curve = [c(0.1, 0.02, cov=0.90), c(0.2, 0.05, hard=0.85), c(0.3, 0.08), c(0.4, 0.10), c(0.5, 0.14),
             c(math.inf, 0.2)]
    chosen, why = choose_threshold(curve, 0.11, 0.95, 0.88, True)
    assert chosen["threshold"] == 0.4 and why is None          # the highest threshold whose estimate meets 0.11
    chosen, why = choose_threshold(curve, 0.04, 0.95, 0.88, True)
    assert chosen["threshold"] == 0.3 and "no threshold meets" in why  # 0.1 and 0.2 break coverage / hardness
    chosen, why = choose_threshold(curve, 0.04, 0.95, None, True)
    assert chosen["threshold"] == 0.2                           # without the hardness floor
    chosen, why = choose_threshold(curve, 0.04, 0.95, 0.88, False)
    assert math.isinf(chosen["threshold"]) and why is None      # no false negatives flagged: drop nothing
