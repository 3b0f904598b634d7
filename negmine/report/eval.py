"""Quality metrics of mined negatives against qrels. Pure functions over Arrow tables: no file access.

Definitions (``k`` = the number of negatives asked for, ``select.num_negatives``; a document is *relevant* to a
query when the qrels give it a grade >= ``min_grade``):

* **fn_rate** – false-negative rate: mined negatives that the qrels call relevant / all mined negatives.
* **fn_at_query** – share of the queries *that received at least one negative* whose negatives include at least
  one relevant document (a query without negatives cannot carry a false negative; it shows up in coverage).
* **coverage** – share of the evaluated queries (every query of the scores table, i.e. every query that was
  mined) that received ``k`` negatives or more.
* **hardness** – per query: mean teacher score of the kept negatives / mean teacher score of the ``k`` hardest
  candidates of the scores table that are neither labelled positives nor relevant in the qrels (what a perfect
  judge would have kept; fewer than ``k`` when the pool holds fewer). 1.0 = as hard as the perfect judge; it can
  exceed 1 when a miner keeps relevant documents (they score high) or fewer than ``k`` negatives. Averaged over
  the queries with at least one kept negative: a query with **0 kept negatives has no hardness and is left out of
  the mean** (it is already counted against coverage; counting it as 0 would mix the two measures).
  A query whose reference mean is <= 0 (possible with logit-scale teachers) is also left out; both exclusions
  are counted in ``hardness_queries_excluded``. The ratio is meant for similarity-scale teachers (cosine).
* **mean_rank** – mean candidate rank of the kept negatives (1 = the retriever's top document).
* **dropped** – counts per ``reason_dropped`` of the select stage's side table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

METRIC_KEYS = ("fn_rate", "fn_at_query", "coverage", "hardness", "mean_rank")


def relevant_pairs(qrels: pa.Table, min_grade: float = 1.0) -> set[tuple[str, str]]:
    """``(query_id, doc_id)`` pairs whose grade is >= ``min_grade`` (qrels columns: query_id, doc_id, grade)."""
    t = qrels.filter(pc.greater_equal(qrels["grade"], min_grade)) if "grade" in qrels.column_names else qrels
    return set(zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), strict=False))


def _mask_relevant(table: pa.Table, relevant: set[tuple[str, str]]) -> np.ndarray:
    q = table["query_id"].to_pylist()
    d = table["doc_id"].to_pylist()
    return np.fromiter(((a, b) in relevant for a, b in zip(q, d, strict=False)), dtype=bool, count=len(q))


def _group_codes(values: list[str], universe: list[str]) -> np.ndarray:
    index = {v: i for i, v in enumerate(universe)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def topk_mean_per_query(codes: np.ndarray, scores: np.ndarray, k: int, n_groups: int) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Mean of the ``k`` highest ``scores`` within each group ``codes`` (0..n_groups-1).

    Returns ``(means, counts)``; a group without rows has mean NaN and count 0."""
    order = np.lexsort((-scores, codes))
    c, s = codes[order], scores[order]
    starts = np.searchsorted(c, np.arange(n_groups), side="left")
    pos = np.arange(len(c)) - starts[c] if len(c) else np.zeros(0, dtype=np.int64)
    take = pos < k
    sums = np.bincount(c[take], weights=s[take], minlength=n_groups)
    counts = np.bincount(c[take], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, counts


def hardness_per_query(negatives: pa.Table, scores: pa.Table, relevant: set[tuple[str, str]], k: int,
                       queries: list[str]) -> np.ndarray:
    """Per query (in the order of ``queries``): mean kept teacher score / mean of the k hardest non-relevant
    candidates. NaN where undefined (no kept negative, no reference candidate, or reference mean <= 0)."""
    nq = len(queries)
    neg_codes = _group_codes(negatives["query_id"].to_pylist(), queries)
    neg_scores = negatives["teacher_score"].to_numpy(zero_copy_only=False).astype(np.float64)
    kept_sum = np.bincount(neg_codes, weights=neg_scores, minlength=nq)
    kept_n = np.bincount(neg_codes, minlength=nq)

    pool = _candidate_pool(scores)
    pool = pool.filter(pa.array(~_mask_relevant(pool, relevant)))
    codes = _group_codes(pool["query_id"].to_pylist(), queries)
    ref, _ = topk_mean_per_query(codes, pool["teacher_score"].to_numpy(zero_copy_only=False).astype(np.float64),
                                 k, nq)
    with np.errstate(invalid="ignore", divide="ignore"):
        kept_mean = np.where(kept_n > 0, kept_sum / np.maximum(kept_n, 1), np.nan)
        ratio = np.where((kept_n > 0) & (ref > 0), kept_mean / ref, np.nan)
    return ratio


def _candidate_pool(scores: pa.Table) -> pa.Table:
    """The rows of a scores table that are candidates (not labelled positives)."""
    if "is_positive" in scores.column_names:
        return scores.filter(pc.invert(pc.fill_null(scores["is_positive"], False)))
    return scores


def evaluate(negatives: pa.Table, scores: pa.Table, qrels: pa.Table, k: int, *,
             dropped: pa.Table | None = None, queries: Iterable[str] | None = None,
             min_grade: float = 1.0) -> dict[str, Any]:
    """All metrics of the module docstring for one set of mined negatives.

    ``negatives``: query_id, doc_id, teacher_score (and rank, optional); ``scores``: the score stage's table
    (query_id, doc_id, teacher_score, is_positive); ``qrels``: query_id, doc_id, grade. ``queries`` is the set of
    evaluated queries (default: every query of ``scores``)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if queries is None:
        queries = scores["query_id"].unique().to_pylist()
    queries = sorted(set(queries) | set(negatives["query_id"].unique().to_pylist()))
    nq = len(queries)
    relevant = relevant_pairs(qrels, min_grade)

    is_fn = _mask_relevant(negatives, relevant)
    codes = _group_codes(negatives["query_id"].to_pylist(), queries)
    n_per_q = np.bincount(codes, minlength=nq)
    fn_per_q = np.bincount(codes, weights=is_fn, minlength=nq)
    with_neg = n_per_q > 0
    n_neg = int(len(negatives))

    hard = hardness_per_query(negatives, scores, relevant, k, queries)
    defined = ~np.isnan(hard)

    mean_rank = None
    if "rank" in negatives.column_names and n_neg:
        r = pc.mean(negatives["rank"]).as_py()  # nulls (no rank) are ignored
        mean_rank = None if r is None else float(r)

    drops: dict[str, int] = {}
    if dropped is not None and len(dropped):
        vc = pc.value_counts(dropped["reason_dropped"])
        drops = {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}
        drops = dict(sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "k": int(k),
        "queries": nq,
        "queries_with_negatives": int(with_neg.sum()),
        "negatives": n_neg,
        "false_negatives": int(is_fn.sum()),
        "fn_rate": float(is_fn.mean()) if n_neg else None,
        "queries_with_fn": int((fn_per_q > 0).sum()),
        "fn_at_query": float((fn_per_q[with_neg] > 0).mean()) if with_neg.any() else None,
        "coverage": float((n_per_q >= k).mean()) if nq else None,
        "negatives_per_query": float(n_neg / nq) if nq else None,
        "hardness": float(np.mean(hard[defined])) if defined.any() else None,
        "hardness_queries": int(defined.sum()),
        "hardness_queries_excluded": int(nq - defined.sum()),
        "mean_rank": mean_rank,
        "dropped": drops,
    }


# ----------------------------------------------------------------------------------------------------------------
# presentation


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def markdown_table(rows: Mapping[str, Mapping[str, Any]], columns: Iterable[str] = (
        "fn_rate", "fn_at_query", "coverage", "hardness", "mean_rank", "negatives", "queries")) -> str:
    """A markdown table: one row per named result (e.g. per configuration), one column per metric."""
    cols = list(columns)
    lines = ["| config | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def metrics_markdown(m: Mapping[str, Any]) -> str:
    """One result as a two-column markdown table, followed by the drop counts."""
    labels = [
        ("fn_rate", "false-negative rate"), ("fn_at_query", "FN@query"), ("coverage", f"coverage (k={m['k']})"),
        ("hardness", "hardness"), ("mean_rank", "mean rank"), ("queries", "queries"),
        ("queries_with_negatives", "queries with negatives"), ("negatives", "negatives"),
        ("false_negatives", "false negatives"), ("queries_with_fn", "queries with a false negative"),
        ("hardness_queries_excluded", "queries without hardness"),
    ]
    lines = ["| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {_fmt(m.get(key))} |" for key, label in labels]
    if m.get("dropped"):
        lines += ["", "| dropped because | candidates |", "|---|---:|"]
        lines += [f"| {r} | {n} |" for r, n in m["dropped"].items()]
    if m.get("calibration"):
        from negmine.calibrate.check import check_markdown

        lines += ["", check_markdown(m["calibration"])]
    return "\n".join(lines)
