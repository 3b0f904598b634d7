"""Positive-aware candidate filters: pure, element-wise functions over numpy arrays.

Every rule returns a boolean *keep* mask. They work on one query's candidates or, with a per-row ``pos_score``
array (the query's reference positive score broadcast to its rows), on a whole shard of queries at once.

Rules, in the order in which they explain a drop (the first failing rule is the candidate's drop reason):

=========================  ====================================================================================
``positive``               the candidate is a labelled positive of the query (masked by id)
``duplicate_of_positive``  its normalised text equals a positive's, or their shingle Jaccard >= threshold
``out_of_window``          rank outside ``[min_rank, max_rank]`` (1-based, inclusive)
``above_abs``              TopK-Abs: ``s >= max_score``
``below_abs``              ``s < min_score`` (too easy)
``above_margin``           TopK-MarginPos: ``s >= s+ - margin``
``above_perc``             TopK-PercPos: ``s >= s+ - |s+| * (1 - perc)``
=========================  ====================================================================================

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


# ----------------------------------------------------------------------------------------------------------------
# rule registry: name (= drop reason) -> rule over a batch of candidates


@dataclass
class Batch:
    """Candidate rows of one or more queries (the arrays a rule needs). ``rank`` uses 0 for a missing rank."""

    scores: np.ndarray        # teacher scores (float)
    ranks: np.ndarray         # int, 0 = not retrieved
    pos_score: np.ndarray     # per-row reference positive score s+
    is_positive: np.ndarray   # bool
    is_duplicate: np.ndarray  # bool: near-duplicate of one of the query's positives
    pos_sim: np.ndarray | None = None  # optional: candidate-positive document similarity (signals.py)
    lex_rank: np.ndarray | None = None  # optional: BM25 rank of the candidate for its query, 0 = not in its top-N
    fn_prob: np.ndarray | None = None  # optional: calibrated p(false negative) (negmine.calibrate)


Rule = Callable[[Batch, dict[str, Any]], "np.ndarray | None"]
RULES: dict[str, Rule] = {}


def register_rule(reason: str) -> Callable[[Rule], Rule]:
    """Register a rule under its drop reason; rules are evaluated in registration order."""

    def deco(fn: Rule) -> Rule:
        RULES[reason] = fn
        return fn

    return deco


@register_rule("positive")
def _rule_positive(b: Batch, _p: dict[str, Any]) -> np.ndarray:
    return ~b.is_positive


@register_rule("duplicate_of_positive")
def _rule_duplicate(b: Batch, _p: dict[str, Any]) -> np.ndarray:
    return ~b.is_duplicate


@register_rule("out_of_window")
def _rule_window(b: Batch, p: dict[str, Any]) -> np.ndarray | None:
    if p.get("min_rank") is None and p.get("max_rank") is None:
        return None
    return rank_window(b.ranks, p.get("min_rank"), p.get("max_rank"))


@register_rule("above_abs")
def _rule_above_abs(b: Batch, p: dict[str, Any]) -> np.ndarray | None:
    return None if p.get("max_score") is None else abs_max(b.scores, p["max_score"])


@register_rule("below_abs")
def _rule_below_abs(b: Batch, p: dict[str, Any]) -> np.ndarray | None:
    return None if p.get("min_score") is None else abs_min(b.scores, p["min_score"])


@register_rule("above_margin")
def _rule_margin(b: Batch, p: dict[str, Any]) -> np.ndarray | None:
    return None if p.get("margin") is None else margin_pos(b.scores, b.pos_score, p["margin"])


@register_rule("above_perc")
def _rule_perc(b: Batch, p: dict[str, Any]) -> np.ndarray | None:
    return None if p.get("perc_pos") is None else perc_pos(b.scores, b.pos_score, p["perc_pos"])


NOT_SAMPLED = "not_sampled"
_PROTECTED = ("positive", "duplicate_of_positive")


def reasons() -> tuple[str, ...]:
    """Every drop reason a rule index can name: the registered rules in order, then ``not_sampled``."""
    return (*RULES, NOT_SAMPLED)


def fillable() -> tuple[str, ...]:
    """Reasons whose candidates may fill a short query (never positives or their duplicates)."""
    return tuple(r for r in RULES if r not in _PROTECTED)


def apply_rules(batch: Batch, rules: dict[str, Any]) -> np.ndarray:
    """Index into :func:`reasons` of each row's first failing rule, or -1 when the row passes every rule."""
    n = len(batch.scores)
    reason = np.full(n, -1, dtype=np.int8)
    for i, fn in enumerate(RULES.values()):
        keep = fn(batch, rules)
        if keep is None:
            continue
        reason[(reason < 0) & ~keep] = i
    return reason


from negmine.select import signals as _signals  # noqa: E402,F401  (registers similar_to_positive after the above)
