"""One pass of selection over a batch of queries: rules → sampling → short-query policy. Pure numpy, no I/O.

Rows are the scored candidates (and scored positives) of several queries; ``group`` gives each row's query index.
The result says, for every row, whether it is kept (sampled or filled) or why it was dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from negmine.select.filters import NOT_SAMPLED, Batch, apply_rules, fillable, pos_reference, reasons
from negmine.select.params import SHORT_POLICIES
from negmine.select.sampling import group_order, group_topk, gumbel, row_uniforms, sample_keys

_NO_RANK = np.iinfo(np.int64).max // 4


@dataclass
class Selection:
    reason: np.ndarray       # per row: index into filters.reasons() of the drop reason, -1 if kept
    filled: np.ndarray       # per row: kept only to fill a short query (its would-be reason in `fill_reason`)
    fill_reason: np.ndarray  # per row: index into filters.reasons() the filled row failed, -1 otherwise
    pos_ref: np.ndarray      # per group: reference positive score s+ (NaN without a scored positive)
    n_kept: np.ndarray       # per group: kept negatives (sampled + filled)
    short: np.ndarray        # per group: fewer than k eligible negatives
    dropped_query: np.ndarray  # per group: dropped by short_policy "drop"

    @property
    def kept(self) -> np.ndarray:
        return self.reason < 0


def select_batch(group: np.ndarray, n_groups: int, query_seeds: np.ndarray, scores: np.ndarray,
                 ranks: np.ndarray, doc_code: np.ndarray, is_positive: np.ndarray, is_duplicate: np.ndarray,
                 *, rules: dict[str, Any], k: int, sampling: str = "top", sampling_params: dict[str, Any] | None = None,
                 short_policy: str = "keep", pos_ref: str = "min", pos_sim: np.ndarray | None = None,
                 lex_rank: np.ndarray | None = None, fn_prob: np.ndarray | None = None) -> Selection:
    """Select up to ``k`` negatives per group.

    ``ranks`` are 1-based (0 = not retrieved); ``doc_code`` is any integer order of the doc ids (ties of equal
    scores and ranks are broken by it); ``query_seeds`` holds one uint64 per group (see sampling.query_seeds).
    """
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"unknown short_policy {short_policy!r} ({' | '.join(SHORT_POLICIES)})")
    group = np.asarray(group, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(ranks, dtype=np.int64)
    r_sort = np.where(r > 0, r, _NO_RANK)
    is_pos = np.asarray(is_positive, dtype=bool)
    n = len(s)

    ref = pos_reference(group, s, is_pos, n_groups, pos_ref)
    row_ref = ref[group] if n else np.zeros(0)
    batch = Batch(scores=s, ranks=r, pos_score=row_ref, is_positive=is_pos,
                  is_duplicate=np.asarray(is_duplicate, dtype=bool), pos_sim=pos_sim, lex_rank=lex_rank,
                  fn_prob=fn_prob)
    reason = apply_rules(batch, rules)
    eligible = reason < 0

    # per-row noise from (query seed, position in the query's rank order): independent of sharding and filters
    order, pos = group_order(group, [r_sort, doc_code])
    position = np.empty(n, dtype=np.int64)
    position[order] = pos
    noise = gumbel(row_uniforms(np.asarray(query_seeds, dtype=np.uint64)[group], position)) if n else np.zeros(0)
    key = sample_keys(sampling, s, row_ref, noise, dict(sampling_params or {}))
    taken = group_topk(group, key, eligible, k, tiebreak=(r_sort, doc_code))
    n_eligible = np.bincount(group[eligible], minlength=n_groups)
    short = n_eligible < k
    names = reasons()
    reason[eligible & ~taken] = names.index(NOT_SAMPLED)

    filled = np.zeros(n, dtype=bool)
    fill_reason = np.full(n, -1, dtype=np.int8)
    dropped_query = np.zeros(n_groups, dtype=bool)
    if short_policy == "fill" and short.any():
        can_fill = np.isin(reason, [names.index(x) for x in fillable()]) & short[group]
        filled = group_topk(group, -fill_order(group, n_groups, r_sort, eligible, rules), can_fill,
                            (k - n_eligible)[group], tiebreak=(doc_code,))
        fill_reason[filled] = reason[filled]
        reason[filled] = -1
    elif short_policy == "drop":
        dropped_query = short.copy()
    n_kept = np.bincount(group[reason < 0], minlength=n_groups)
    return Selection(reason, filled, fill_reason, ref, n_kept, short, dropped_query)


def fill_order(group: np.ndarray, n_groups: int, r_sort: np.ndarray, eligible: np.ndarray,
               rules: dict[str, Any]) -> np.ndarray:
    """Fill priority (lower first) for the filtered-out candidates of a short query: "the next ranks", i.e.
    first the candidates ranked after the last eligible one (ascending rank), then those ranked before it,
    nearest first (descending rank). Without any eligible candidate the boundary is ``max_rank`` if set,
    otherwise the end of the list: the lowest-ranked, least similar, candidates come first."""
    cap = np.int64(1 << 31)  # keeps the composite key exact in float64
    rc = np.minimum(r_sort, cap)
    bound = np.full(n_groups, -1, dtype=np.int64)
    if eligible.any():
        np.maximum.at(bound, group[eligible], rc[eligible])
    default = min(rules.get("max_rank") or cap, cap)
    bound = np.where(bound < 0, default, bound)[group]
    after = rc > bound
    return np.where(after, rc - bound, 2 * cap + (bound - rc)).astype(np.float64)
