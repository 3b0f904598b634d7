"""Report statistics: pure functions over the stage tables and manifests (no file access, no plotting)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.report.eval import evaluate

# reasons that are not a filter's decision: the candidate is a labelled positive, or it passed every filter and
# simply was not among the k sampled
NOT_FILTERED = ("positive", "not_sampled")

# stage directories of a run, in pipeline order (RUN/<dir>/_manifest.json)
STAGE_DIRS = ("ingest", "candidates", "scores", "negatives", "relabel")


def _f64(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.drop_null(col).to_numpy(zero_copy_only=False), dtype=np.float64)


def score_groups(scores: pa.Table, negatives: pa.Table, dropped: pa.Table | None) -> dict[str, np.ndarray]:
    """Teacher scores by what happened to the document: ``positives`` (labelled positives), ``kept`` (mined
    negatives), ``filtered`` (dropped by a filter: margin, duplicate, window, ...), ``not sampled`` (passed the
    filters but was not among the k kept)."""
    pos = scores.filter(pc.fill_null(scores["is_positive"], False))
    out = {"positives": _f64(pos["teacher_score"]), "kept": _f64(negatives["teacher_score"])}
    if dropped is not None and len(dropped):
        reasons = dropped["reason_dropped"]
        filt = dropped.filter(pc.invert(pc.is_in(reasons, pa.array(list(NOT_FILTERED)))))
        ns = dropped.filter(pc.equal(reasons, "not_sampled"))
        out["filtered"] = _f64(filt["teacher_score"])
        out["not sampled"] = _f64(ns["teacher_score"])
    return out


def drops_per_reason(dropped: pa.Table | None) -> dict[str, int]:
    """Dropped candidates per reason, most frequent first."""
    if dropped is None or not len(dropped):
        return {}
    vc = pc.value_counts(dropped["reason_dropped"]).to_pylist()
    return dict(sorted(((str(v["values"]), int(v["counts"])) for v in vc), key=lambda kv: (-kv[1], kv[0])))


def negatives_per_query(negatives: pa.Table, queries: Iterable[str]) -> np.ndarray:
    """Number of kept negatives of every query in ``queries`` (0 for a query that got none)."""
    counts = {str(v["values"]): int(v["counts"]) for v in pc.value_counts(negatives["query_id"]).to_pylist()} \
        if len(negatives) else {}
    return np.array([counts.get(q, 0) for q in queries], dtype=np.int64)


def stage_timings(manifests: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, float]]:
    """``(stage, seconds)`` from stage manifests (``seconds`` = wall time of the stage's last run), in the order
    given; manifests without a time are skipped."""
    out = []
    for name, m in manifests.items():
        sec = m.get("seconds")
        if sec is not None:
            out.append((str(m.get("stage", name)), float(sec)))
    return out


def quantiles(values: np.ndarray, qs: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95)) -> dict[str, float | None]:
    if not len(values):
        return {f"p{int(q * 100)}": None for q in qs}
    return {f"p{int(q * 100)}": float(v) for q, v in zip(qs, np.quantile(values, qs), strict=False)}


def sensitivity_curve(scores: pa.Table, qrels: pa.Table, k: int, values: Iterable[float],
                      mine: Callable[[pa.Table, float], pa.Table], min_grade: float = 1.0) -> list[dict[str, Any]]:
    """Metrics of the negatives that ``mine(scores, value)`` selects, for each value of one select parameter
    (e.g. ``perc_pos``): re-selection from the cached scores, no re-mining. Each row: value, fn_rate,
    fn_at_query, coverage, hardness, mean_rank."""
    rows = []
    for v in values:
        m = evaluate(mine(scores, float(v)), scores, qrels, k, min_grade=min_grade)
        rows.append({"value": float(v), **{key: m[key] for key in
                                           ("fn_rate", "fn_at_query", "coverage", "hardness", "mean_rank")}})
    return rows
