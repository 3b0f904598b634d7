"""One pass of selection over a batch of queries: rules → sampling → short-query policy. Pure numpy, no I/O.

Rows are the scored candidates (and scored positives) of several queries; ``group`` gives each row's query index.
The result says, for every row, whether it is kept (sampled or filled) or why it was dropped.

:func:`select_table` is the one entry point from a table of scored rows with a ``SelectParams``: the select stage
(per block), the report's re-selection and its sensitivity curves all call it (or :func:`table_rows` +
:func:`select_rows` when the stage adds the ingest positives), so they keep exactly the same negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from negmine.select.filters import pos_reference
from negmine.select.params import SHORT_POLICIES, SelectParams
from negmine.select.rules import NOT_SAMPLED, Batch, apply_rules, fillable, reasons
from negmine.select.sampling import group_order, group_topk, gumbel, query_seeds, row_uniforms, sample_keys

_NO_RANK = np.iinfo(np.int64).max // 4
_SIGNALS = {f.name for f in fields(Batch)} - {"scores", "ranks", "pos_score", "is_positive", "is_duplicate"}


@dataclass
class Selection:
    reason: np.ndarray       # per row: index into rules.reasons() of the drop reason, -1 if kept
    filled: np.ndarray       # per row: kept only to fill a short query (its would-be reason in `fill_reason`)
    fill_reason: np.ndarray  # per row: index into rules.reasons() the filled row failed, -1 otherwise
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
                 short_policy: str = "keep", pos_ref: str = "min", **signals: np.ndarray | None) -> Selection:
    """Select up to ``k`` negatives per group.

    ``ranks`` are 1-based (0 = not retrieved); ``doc_code`` is any integer order of the doc ids (ties of equal
    scores and ranks are broken by it); ``query_seeds`` holds one uint64 per group (see sampling.query_seeds).
    ``signals``: the per-row arrays rules need besides scores and ranks (``pos_sim``, ``lex_rank``, ``fn_prob``:
    fields of rules.Batch).
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
                  is_duplicate=np.asarray(is_duplicate, dtype=bool))
    for name, values in signals.items():
        if name not in _SIGNALS:
            raise TypeError(f"unknown signal {name!r} (known: {', '.join(sorted(_SIGNALS))})")
        setattr(batch, name, values)
    reason = apply_rules(batch, rules)
    eligible = reason < 0

    # per-row noise from (query seed, position in the query's rank order): independent of sharding and filters
    r_small = np.minimum(r_sort, r.max(initial=0) + 1)  # same order as r_sort, in a range sort_order can pack
    order, pos = group_order(group, [r_small, doc_code])
    position = np.empty(n, dtype=np.int64)
    position[order] = pos
    noise = gumbel(row_uniforms(np.asarray(query_seeds, dtype=np.uint64)[group], position)) if n else np.zeros(0)
    key = sample_keys(sampling, s, row_ref, noise, dict(sampling_params or {}))
    taken = group_topk(group, key, eligible, k, tiebreak=(r_small, doc_code))
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


# ----------------------------------------------------------------------------------------------------------------
# a table of scored rows


@dataclass
class Rows:
    """Scored rows (columns query_id, doc_id, rank, teacher_score, is_positive) as the arrays selection reads."""

    qids: list[str]           # group index -> query id
    group: np.ndarray         # per row: index into qids
    scores: np.ndarray        # teacher scores, float64 (NaN = unscored)
    ranks: np.ndarray         # int64, 0 = not retrieved
    is_positive: np.ndarray   # bool
    doc_code: np.ndarray      # dense rank of the doc id: the last tie-break


def doc_codes(doc_ids: Any) -> np.ndarray:
    """The dense rank of each doc id (an Arrow string array) in string order: the last tie-break of selection."""
    import pyarrow.compute as pc

    return pc.rank(doc_ids, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64)


def table_rows(table: Any, qids: Sequence[str] | None = None, group: np.ndarray | None = None,
               doc_code: np.ndarray | None = None) -> Rows:
    """The arrays of ``table`` (a pyarrow Table); ``qids`` orders the groups (default: order of first appearance;
    it may list queries without rows). ``group`` (each row's index into ``qids``) and ``doc_code`` (an integer
    order of the doc ids) may be given when the caller already has them (the select stage: from its block reader
    and the corpus rows), which spares a string lookup and a string sort; with both given (and ``qids``) the
    table needs no ``query_id`` / ``doc_id`` columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = list(dict.fromkeys(table["query_id"].to_pylist())) if qids is None else list(qids)
    n = table.num_rows
    if not n:
        return Rows(order, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool),
                    np.zeros(0, np.int64))
    if group is None:
        q_col = table["query_id"]
        found = pc.index_in(q_col, value_set=pa.array(order, pa.string()))
        if found.null_count:
            missing = pc.filter(q_col, pc.is_null(found))[0].as_py()
            raise KeyError(missing)
        group = found.to_numpy().astype(np.int64)
    if doc_code is None:
        doc_code = doc_codes(table["doc_id"])
    return Rows(order, np.asarray(group, dtype=np.int64),
                table["teacher_score"].to_numpy().astype(np.float64),
                pc.fill_null(table["rank"], 0).to_numpy().astype(np.int64),
                pc.fill_null(table["is_positive"], False).to_numpy().astype(bool),
                np.asarray(doc_code, dtype=np.int64))


def select_rows(rows: Rows, params: SelectParams, signals: Mapping[str, np.ndarray | None] | None = None,
                rule_values: Mapping[str, Any] | None = None) -> Selection:
    """:func:`select_batch` as ``params`` say. ``signals``: ``is_duplicate`` (default none) and the per-row arrays
    the rules in force need; ``rule_values``: values of rules that are not select keys (a calibration's
    ``fn_threshold``)."""
    extra = dict(signals or {})
    is_dup = extra.pop("is_duplicate", None)
    return select_batch(rows.group, len(rows.qids), query_seeds(params.seed, rows.qids), rows.scores, rows.ranks,
                        rows.doc_code, rows.is_positive,
                        np.zeros(len(rows.group), dtype=bool) if is_dup is None else is_dup,
                        rules={**params.rules(), **(rule_values or {})}, k=params.num_negatives,
                        sampling=params.sampling,
                        sampling_params={"temperature": params.temperature, "simans_a": params.simans_a,
                                         "simans_b": params.simans_b},
                        short_policy=params.short_policy, pos_ref=params.pos_ref, **extra)


def select_table(table: Any, params: SelectParams, signals: Mapping[str, np.ndarray | None] | None = None,
                 qids: Sequence[str] | None = None) -> tuple[Rows, Selection]:
    """Select from a table of scored rows with ``params``: the rows' arrays and the selection."""
    rows = table_rows(table, qids)
    return rows, select_rows(rows, params, signals)
