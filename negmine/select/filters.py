"""Positive-aware candidate filters: pure, element-wise functions over numpy arrays.

Every rule returns a boolean *keep* mask. They work on one query's candidates or, with a per-row ``pos_score``
array (the query's reference positive score broadcast to its rows), on a whole shard of queries at once.

The rules that use them, their order and their config keys are declared in :mod:`negmine.select.rules`.

TopK-PercPos (NV-Retriever, arXiv 2407.15831) is written ``s < s+ * perc`` for positive similarity scores. That
form is wrong when scores can be negative (cross-encoder logits, some dot products): for ``s+ = -2`` it would
keep only ``s < -1.9``, i.e. negatives scored *above* the positive. negmine uses the equivalent-for-positive-scores
form ``s < s+ - |s+| * (1 - perc)``, which is always "a relative margin below the positive": identical to
``s+ * perc`` when ``s+ >= 0`` and ``s+ * (2 - perc)`` when ``s+ < 0``.

The reference ``s+`` is the minimum positive score of the query by default (``pos_ref``: min | mean | max); a
query with no scored positive has ``s+ = NaN`` and every positive-relative rule drops all of its candidates
(nothing can be proven to score below an unknown positive).

All comparisons are strict (``s < threshold`` keeps): a candidate scoring exactly the threshold is dropped.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------------------------
# element-wise rules (public API: `from negmine.select import perc_pos`)


def mask_positives(doc_ids: np.ndarray, positive_ids) -> np.ndarray:
    """Keep mask: False where ``doc_ids[i]`` is one of ``positive_ids`` (one query's candidates)."""
    pos = np.asarray(list(positive_ids), dtype=object)
    if len(doc_ids) == 0 or len(pos) == 0:
        return np.ones(len(doc_ids), dtype=bool)
    return ~np.isin(np.asarray(doc_ids, dtype=object), pos)


def rank_window(ranks: np.ndarray, min_rank: int | None = None, max_rank: int | None = None) -> np.ndarray:
    """Keep mask: ``min_rank <= rank <= max_rank`` (1-based, inclusive; a bound that is None is open).
    Missing ranks (encoded as a value <= 0) are outside every closed window."""
    r = np.asarray(ranks)
    keep = np.ones(r.shape, dtype=bool)
    if min_rank is not None:
        keep &= r >= min_rank
    if max_rank is not None:
        keep &= (r <= max_rank) & (r > 0)
    return keep


def abs_max(scores: np.ndarray, max_score: float) -> np.ndarray:
    """TopK-Abs keep mask: ``s < max_score``."""
    return np.asarray(scores) < max_score


def abs_min(scores: np.ndarray, min_score: float) -> np.ndarray:
    """Keep mask: ``s >= min_score`` (removes negatives that are too easy)."""
    return np.asarray(scores) >= min_score


def margin_pos(scores: np.ndarray, pos_score, margin: float) -> np.ndarray:
    """TopK-MarginPos keep mask: ``s < s+ - margin`` (NaN s+ keeps nothing)."""
    return np.asarray(scores) < np.asarray(pos_score) - margin


def perc_threshold(pos_score, perc: float) -> np.ndarray:
    """The TopK-PercPos threshold ``s+ - |s+| * (1 - perc)`` (= ``s+ * perc`` for ``s+ >= 0``)."""
    p = np.asarray(pos_score, dtype=np.float64)
    return p - np.abs(p) * (1.0 - perc)


def perc_pos(scores: np.ndarray, pos_score, perc: float = 0.95) -> np.ndarray:
    """TopK-PercPos keep mask: ``s < s+ - |s+| * (1 - perc)``; correct for negative scores (see module doc)."""
    return np.asarray(scores, dtype=np.float64) < perc_threshold(pos_score, perc)


# ----------------------------------------------------------------------------------------------------------------
# positive reference


def pos_reference(group: np.ndarray, scores: np.ndarray, is_positive: np.ndarray, n_groups: int,
                  how: str = "min") -> np.ndarray:
    """Per-group reference positive score s+ (``min | mean | max`` over the group's positive rows); NaN for a
    group without a scored positive. ``group`` holds each row's group index in ``[0, n_groups)``."""
    g = np.asarray(group)[is_positive]
    s = np.asarray(scores, dtype=np.float64)[is_positive]
    ok = ~np.isnan(s)
    g, s = g[ok], s[ok]
    counts = np.bincount(g, minlength=n_groups)
    if how == "mean":
        ref = np.bincount(g, weights=s, minlength=n_groups) / np.maximum(counts, 1)
    elif how == "min":
        ref = np.full(n_groups, np.inf)
        np.minimum.at(ref, g, s)
    elif how == "max":
        ref = np.full(n_groups, -np.inf)
        np.maximum.at(ref, g, s)
    else:
        raise ValueError(f"unknown pos_ref {how!r} (min | mean | max)")
    ref[counts == 0] = np.nan
    return ref

