"""Features of a candidate for the false-negative model: pure numpy over the rows of several queries.

Every feature is computed from signals the select stage already has for a block of rows (teacher score, the
query's reference positive score s+, candidate rank, the retriever's score, cosine of the candidate document with
the nearest positive document, the candidate's BM25 rank for the query) plus per-query context (how the
candidate compares with the other candidates of its query). Calibration (fit) and select (apply) call the same
:func:`feature_matrix`, so a model always sees the features it was fitted on.

Rows that are positives are given features too (they are simply never used: positives are not candidates).
Missing values stay NaN; the model replaces them with the training mean (see model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

LEX_ABSENT = 1000.0  # BM25 rank given to a candidate outside BM25's top list (log scale: far behind)


@dataclass
class Signals:
    """Row-aligned arrays of one block (``group`` = query index of each row, 0..n_groups-1)."""

    group: np.ndarray
    n_groups: int
    scores: np.ndarray           # teacher score
    ranks: np.ndarray            # 1-based candidate rank, 0 = not retrieved
    is_positive: np.ndarray      # bool
    pos_ref: np.ndarray          # per row: the query's reference positive score s+ (NaN: none)
    pos_sim: np.ndarray | None = None         # cosine with the nearest positive document (NaN: none)
    lex_rank: np.ndarray | None = None        # BM25 rank within its top N, 0 = not in it
    retriever_score: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def cand(self) -> np.ndarray:
        return ~np.asarray(self.is_positive, dtype=bool)


def _col(sig: Signals, name: str) -> np.ndarray:
    """A signal as float64, NaN when the block does not have it."""
    a = getattr(sig, name)
    return np.full(len(sig.scores), np.nan) if a is None else np.asarray(a, dtype=np.float64)


def _group_stat(sig: Signals, name: str, how: str, top: int | None = None) -> np.ndarray:
    """Per-row value of a per-query statistic (max | mean | std) of the signal ``name`` over the query's candidate
    rows (``top``: only those ranked 1..top); NaN values are ignored. Cached on ``sig`` by (name, how, top)."""
    key = (name, how, top)
    if key in sig._cache:
        return sig._cache[key]
    values = _col(sig, name)
    g = np.asarray(sig.group, dtype=np.int64)
    m = sig.cand() & ~np.isnan(values)
    if top is not None:
        r = np.asarray(sig.ranks)
        m &= (r > 0) & (r <= top)
    n = np.bincount(g[m], minlength=sig.n_groups).astype(np.float64)
    if how == "max":
        out = np.full(sig.n_groups, -np.inf)
        np.maximum.at(out, g[m], values[m])
        out[n == 0] = np.nan
    else:
        s1 = np.bincount(g[m], weights=values[m], minlength=sig.n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / n
            if how == "mean":
                out = mean
            else:
                s2 = np.bincount(g[m], weights=values[m] ** 2, minlength=sig.n_groups)
                out = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    row = out[g] if len(g) else np.zeros(0)
    sig._cache[key] = row
    return row


def _z(sig: Signals, name: str) -> np.ndarray:
    mean = _group_stat(sig, name, "mean")
    sd = _group_stat(sig, name, "std")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 1e-9, (_col(sig, name) - mean) / sd, 0.0)


def _rank_feat(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    return np.where(r > 0, np.log(np.maximum(r, 1.0)), np.nan)


def _lex(sig: Signals) -> np.ndarray:
    lr = _col(sig, "lex_rank")
    return np.log(np.where(lr > 0, lr, LEX_ABSENT))


def _ratio_pos(sig: Signals) -> np.ndarray:
    ref = _col(sig, "pos_ref")
    return np.where(np.abs(ref) > 1e-9, _col(sig, "scores") / ref, np.nan)


Feature = Callable[[Signals], np.ndarray]

# name → (needs, function). ``needs`` names the optional signal a feature reads (None: always available).
FEATURES: dict[str, tuple[str | None, Feature]] = {
    "score": (None, lambda s: _col(s, "scores")),
    "score_minus_pos": (None, lambda s: _col(s, "scores") - _col(s, "pos_ref")),
    "score_ratio_pos": (None, _ratio_pos),
    "log_rank": (None, lambda s: _rank_feat(s.ranks)),
    "score_gap_top": (None, lambda s: _col(s, "scores") - _group_stat(s, "scores", "max")),
    "score_z": (None, lambda s: _z(s, "scores")),
    "pos_ref": (None, lambda s: _col(s, "pos_ref")),
    "retriever_score_z": ("retriever_score", lambda s: _z(s, "retriever_score")),
    "pos_sim": ("pos_sim", lambda s: _col(s, "pos_sim")),
    "pos_sim_sq": ("pos_sim", lambda s: _col(s, "pos_sim") ** 2),
    "pos_sim_z": ("pos_sim", lambda s: _z(s, "pos_sim")),
    "pos_sim_x_score": ("pos_sim", lambda s: _col(s, "pos_sim") * _col(s, "scores")),
    # query-level density: how close the query's top-10 candidates are to its positive (many relevant documents
    # per query show up as a high value)
    "query_pos_sim_top10": ("pos_sim", lambda s: _group_stat(s, "pos_sim", "mean", top=10)),
    "log_lex_rank": ("lex_rank", _lex),
}
DEFAULT_FEATURES = tuple(FEATURES)


def signals_of(rows, retriever_score: np.ndarray | None, pos_ref: str, pos_sim: np.ndarray | None = None,
               lex_rank: np.ndarray | None = None) -> Signals:
    """The Signals of a block of scored rows (``rows``: a ``negmine.select.core.Rows``), its reference positive score
    s+ taken as select takes it (``pos_ref``: min | mean | max)."""
    from negmine.select.filters import pos_reference

    n_q = len(rows.qids)
    ref = pos_reference(rows.group, rows.scores, rows.is_positive, n_q, pos_ref)[rows.group] if len(rows.group) \
        else np.zeros(0)
    return Signals(rows.group, n_q, rows.scores, rows.ranks, rows.is_positive, ref, pos_sim, lex_rank,
                   retriever_score)


def needed_signals(names) -> set[str]:
    """The optional signals (pos_sim, lex_rank, retriever_score) the named features read."""
    return {s for n in names if (s := FEATURES[n][0]) is not None}


def feature_matrix(sig: Signals, names=DEFAULT_FEATURES) -> np.ndarray:
    """``(rows, len(names))`` float64 matrix; NaN where a value is undefined."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown calibration feature(s) {unknown} (known: {', '.join(FEATURES)})")
    n = len(sig.scores)
    if n == 0:
        return np.zeros((0, len(names)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = [np.asarray(FEATURES[name][1](sig), dtype=np.float64) for name in names]
    return np.column_stack(cols)
