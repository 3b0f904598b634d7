"""What a calibration looks like against qrels (for `negmine eval` / `negmine report` when qrels are given): the
judge's measured error rates next to the ones the model estimated, the model's reliability against the qrels (its
out-of-fold p(false negative) is a probability of *true* relevance, so qrels can check it directly), and the
estimated FN rate of the selection next to the measured one. Pure: Arrow tables and a set of relevant pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from negmine.calibrate.model import auc, reliability


def calibration_check(judged: pa.Table, stats: dict[str, Any], relevant: set[tuple[str, str]],
                      measured_fn: float | None = None) -> dict[str, Any]:
    """``judged``: the calibration's judged table; ``stats``: its manifest stats; ``relevant``: qrels pairs;
    ``measured_fn``: the FN rate the qrels give for the run's negatives (the selection that applied it)."""
    rows = judged.select(["query_id", "doc_id", "kind", "flagged", "p_oof"]).to_pylist()
    rel = np.array([(r["query_id"], r["doc_id"]) in relevant for r in rows], dtype=bool)
    flagged = np.array([bool(r["flagged"]) for r in rows])
    judged_ok = np.array([r["flagged"] is not None for r in rows])
    kinds = np.array([r["kind"] for r in rows])
    not_rel = judged_ok & ~rel
    is_rel = judged_ok & rel
    out: dict[str, Any] = {
        "judge_fpr_estimated": stats.get("judge_fpr"),
        "judge_fpr_measured": float(flagged[not_rel].mean()) if not_rel.any() else None,
        "judge_sensitivity_estimated": stats.get("judge_sensitivity"),
        "judge_sensitivity_measured": float(flagged[is_rel].mean()) if is_rel.any() else None,
        "judged_candidates_relevant": int((is_rel & (kinds == "candidate")).sum()),
        "estimated_fn": stats.get("estimated_fn"),
        "estimated_fn_ci95": stats.get("estimated_fn_ci95"),
        "measured_fn": measured_fn,
    }
    cand = (kinds == "candidate") & judged_ok
    p = np.array([np.nan if r["p_oof"] is None else r["p_oof"] for r in rows], dtype=np.float64)
    ok = cand & np.isfinite(p)
    if ok.any():
        out["model_auc_vs_qrels"] = auc(rel[ok], p[ok])
        out["reliability_vs_qrels"] = reliability(rel[ok].astype(float), p[ok])
    return out


def check_markdown(c: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    ci = c.get("estimated_fn_ci95") or []
    lines = ["| calibration | estimated | measured (qrels) |", "|---|---:|---:|",
             f"| FN rate of the selection | {f(c.get('estimated_fn'))}"
             + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + f" | {f(c.get('measured_fn'))} |",
             f"| judge false-positive rate | {f(c.get('judge_fpr_estimated'))} | {f(c.get('judge_fpr_measured'))} |",
             f"| judge sensitivity | {f(c.get('judge_sensitivity_estimated'))} | "
             f"{f(c.get('judge_sensitivity_measured'))} |"]
    if c.get("model_auc_vs_qrels") is not None:
        lines.append(f"| model AUC (out-of-fold, vs qrels) | | {f(c['model_auc_vs_qrels'])} |")
    if c.get("reliability_vs_qrels"):
        lines += ["", "| predicted p(false negative) | relevant in the qrels | candidates |", "|---:|---:|---:|"]
        lines += [f"| {b['predicted']:.3f} | {b['observed']:.3f} | {b['n']} |" for b in c["reliability_vs_qrels"]]
    return "\n".join(lines)
