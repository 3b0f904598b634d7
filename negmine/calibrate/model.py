"""The false-negative model: a logistic regression over :mod:`negmine.calibrate.features`, fitted on judged
candidates, cross-validated by query, stored as portable JSON and applied with numpy alone (select does not import
scikit-learn).

* :func:`fold_of` assigns whole queries to folds (seeded), so no query is ever scored by a model that saw its
  labels; :func:`fit` picks the L2 strength by the folds' log-loss and returns the out-of-fold probabilities.
* :class:`FNModel` holds standardisation, weights and the chosen threshold; ``predict`` maps a feature matrix to
  p(false negative). NaN features are replaced by the training mean (0 after standardisation).
* :func:`reliability` bins predictions against outcomes (the reliability curve); :func:`auc` is the ROC AUC.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FORMAT = "negmine-fn-model/1"
C_GRID = (0.03, 0.1, 0.3, 1.0)


@dataclass
class FNModel:
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def standardise(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.where(np.isfinite(Z), Z, 0.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """p(false negative) per row of ``X`` (columns in ``self.features`` order)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected a (n, {len(self.features)}) feature matrix, got {X.shape}")
        if not len(X):
            return np.zeros(0)
        z = self.standardise(X) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    def to_dict(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "kind": "logistic", "features": list(self.features),
                "mean": [float(x) for x in self.mean], "scale": [float(x) for x in self.scale],
                "coef": [float(x) for x in self.coef], "intercept": float(self.intercept),
                "threshold": None if self.threshold is None else float(self.threshold), "meta": self.meta,
                "formula": "p = 1 / (1 + exp(-(sum_i coef_i * z_i + intercept))), z_i = (x_i - mean_i) / scale_i, "
                           "missing x_i -> z_i = 0"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FNModel:
        if d.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a negmine false-negative model (format {d.get('format')!r}, want {MODEL_FORMAT})")
        n = len(d["features"])
        arrs = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (n,) for a in arrs) or not all(np.isfinite(a).all() for a in arrs):
            raise ValueError("model arrays do not match its feature list (or hold non-finite values)")
        if not math.isfinite(float(d["intercept"])):
            raise ValueError("model intercept is not finite")
        from negmine.calibrate.features import FEATURES

        unknown = [f for f in d["features"] if f not in FEATURES]
        if unknown:
            raise ValueError(f"model uses unknown feature(s) {unknown} (made by a newer negmine?)")
        t = d.get("threshold")
        return cls(list(d["features"]), arrs[0], arrs[1], arrs[2], float(d["intercept"]), None if t is None else float(t),
                   dict(d.get("meta") or {}))

    def save(self, path: Path) -> None:
        from negmine.io.store import write_json_atomic

        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path) -> FNModel:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def fold_of(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index of each row: the distinct ``groups`` (queries) in a seeded random order, dealt round-robin."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[order] = np.arange(len(uniq)) % n_folds
    return fold_of_group[np.searchsorted(uniq, groups)]


@dataclass
class JudgeNoise:
    """What the judge says of a candidate whose true p(false negative) is pi: flagged with probability
    ``fpr + (sensitivity - fpr) * pi``. Estimated jointly with the model (controls anchor ``fpr``, known
    positives anchor ``sensitivity``)."""

    fpr: float = 0.0
    sensitivity: float = 1.0

    def flag_prob(self, pi: np.ndarray) -> np.ndarray:
        return self.fpr + (self.sensitivity - self.fpr) * np.asarray(pi, dtype=np.float64)

    def posterior(self, flagged: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """p(true false negative | the judge's label, prior pi)."""
        pi = np.clip(np.asarray(pi, dtype=np.float64), 0.0, 1.0)
        f, s = self.fpr, self.sensitivity
        yes = s * pi / np.maximum(s * pi + f * (1 - pi), 1e-12)
        no = (1 - s) * pi / np.maximum((1 - s) * pi + (1 - f) * (1 - pi), 1e-12)
        return np.where(np.asarray(flagged, dtype=bool), yes, no)


FPR_BOUNDS = (1e-4, 0.45)
SENS_BOUNDS = (0.55, 1 - 1e-4)


def _fit_one(X: np.ndarray, y: np.ndarray, C: float, features: list[str], controls: np.ndarray | None = None,
             positives: np.ndarray | None = None, noise: bool = True) -> tuple[FNModel, JudgeNoise]:
    """Logistic model of the *true* false-negative probability pi(x) under a noisy judge: the judge flags a
    candidate with probability ``fpr + (sens - fpr) * pi(x)``; ``controls`` (judge labels of documents known not to
    be relevant) and ``positives`` (labels of known positives) enter the likelihood with pi = 0 and pi = 1. Maximum
    likelihood with an L2 penalty 1/(2C) on the weights (L-BFGS-B). ``noise=False`` fixes fpr=0, sens=1 (plain
    logistic regression)."""
    from scipy.optimize import minimize

    Xf = np.where(np.isfinite(X), X, np.nan)
    mean = np.nanmean(Xf, axis=0) if len(X) else np.zeros(len(features))
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.nanstd(Xf, axis=0) if len(X) else np.ones(len(features))
    scale = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
    m = FNModel(features, mean, scale, np.zeros(len(features)), 0.0)
    Z = m.standardise(X)
    y = np.asarray(y, dtype=np.float64)
    yc = np.zeros(0) if controls is None else np.asarray(controls, dtype=np.float64)
    yp = np.zeros(0) if positives is None else np.asarray(positives, dtype=np.float64)
    n_all = max(1, len(y) + len(yc) + len(yp))
    nf = len(features)
    lam = 1.0 / (C * n_all)
    eps = 1e-9

    def split(theta):
        return theta[:nf], theta[nf], theta[nf + 1], theta[nf + 2]

    def nll(theta):
        w, b, f, s = split(theta)
        z = Z @ w + b
        sig = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        p = np.clip(f + (s - f) * sig, eps, 1 - eps)
        dldp = -(y / p - (1 - y) / (1 - p))
        loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
        dz = dldp * (s - f) * sig * (1 - sig)
        gw = Z.T @ dz
        gb = dz.sum()
        gf = np.sum(dldp * (1 - sig))
        gs = np.sum(dldp * sig)
        if len(yc):
            fc = min(max(f, eps), 1 - eps)
            loss -= np.sum(yc * np.log(fc) + (1 - yc) * np.log(1 - fc))
            gf += np.sum(-(yc / fc - (1 - yc) / (1 - fc)))
        if len(yp):
            sp = min(max(s, eps), 1 - eps)
            loss -= np.sum(yp * np.log(sp) + (1 - yp) * np.log(1 - sp))
            gs += np.sum(-(yp / sp - (1 - yp) / (1 - sp)))
        loss = loss / n_all + 0.5 * lam * float(w @ w)
        grad = np.concatenate([gw / n_all + lam * w, [gb / n_all, gf / n_all, gs / n_all]])
        return loss, grad

    prior = float(np.clip(y.mean() if len(y) else 0.1, 0.01, 0.99))
    theta0 = np.concatenate([np.zeros(nf), [np.log(prior / (1 - prior)), 0.05 if noise else 0.0,
                                            0.95 if noise else 1.0]])
    bounds = [(None, None)] * (nf + 1) + ([FPR_BOUNDS, SENS_BOUNDS] if noise else [(0.0, 0.0), (1.0, 1.0)])
    res = minimize(nll, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000})
    w, b, f, s = split(res.x)
    m.coef = np.asarray(w, dtype=np.float64)
    m.intercept = float(b)
    return m, JudgeNoise(float(f), float(s))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half); NaN without both classes."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sp = np.asarray(p)[order]
    # average ranks over ties
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass
class FitResult:
    model: FNModel
    noise: JudgeNoise
    oof: np.ndarray              # out-of-fold pi(x) (true false-negative probability) per training row
    folds: np.ndarray
    cv: list[dict[str, float]]   # per C: log_loss (of the judge's labels), auc of the out-of-fold predictions
    C: float


def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, features: list[str], n_folds: int = 5, seed: int = 0,
        Cs=C_GRID, controls: np.ndarray | None = None, control_groups: np.ndarray | None = None,
        positives: np.ndarray | None = None, positive_groups: np.ndarray | None = None,
        noise: bool = True) -> FitResult:
    """Cross-validated fit (see :func:`_fit_one`): for each C the out-of-fold predictions of ``n_folds``
    query-disjoint folds (controls and positives follow their query's fold); the C with the lowest out-of-fold
    log-loss of the judge's labels is refitted on everything."""
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    folds = fold_of(groups, n_folds, seed)
    uniq = np.unique(groups)

    def fold_rows(g):
        if g is None or not len(g):
            return np.zeros(0, dtype=np.int64)
        ff = fold_of(uniq, n_folds, seed)  # the same deal as fold_of(groups): by sorted unique group
        lookup = dict(zip(uniq.tolist(), ff.tolist(), strict=True))
        return np.array([lookup.get(x, -1) for x in np.asarray(g).tolist()], dtype=np.int64)

    cf, pf = fold_rows(control_groups), fold_rows(positive_groups)
    yc = np.zeros(0) if controls is None else np.asarray(controls, dtype=np.float64)
    yp = np.zeros(0) if positives is None else np.asarray(positives, dtype=np.float64)
    cv = []
    best: tuple[float, float, np.ndarray] | None = None
    for C in Cs:
        oof = np.empty(len(y))
        oof_flag = np.empty(len(y))
        for f in range(n_folds):
            test = folds == f
            m, nz = _fit_one(X[~test], y[~test], C, features, yc[cf != f] if len(yc) else None,
                             yp[pf != f] if len(yp) else None, noise)
            oof[test] = m.predict(X[test])
            oof_flag[test] = nz.flag_prob(oof[test])
        row = {"C": C, "log_loss": round(log_loss(y, oof_flag), 6), "auc": round(auc(y, oof), 6)}
        cv.append(row)
        if best is None or row["log_loss"] < best[0]:
            best = (row["log_loss"], C, oof)
    assert best is not None  # Cs is never empty
    _, C, oof = best
    model, nz = _fit_one(X, y, C, features, yc if len(yc) else None, yp if len(yp) else None, noise)
    return FitResult(model, nz, oof, folds, cv, C)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-count bins of predictions: mean predicted vs observed rate (the reliability curve)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(p):
        return []
    order = np.argsort(p, kind="mergesort")
    out = []
    for part in np.array_split(order, min(bins, len(p))):
        if len(part):
            out.append({"n": int(len(part)), "predicted": round(float(p[part].mean()), 6),
                        "observed": round(float(y[part].mean()), 6)})
    return out
