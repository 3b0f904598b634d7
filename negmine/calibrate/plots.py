"""The calibration's picture: reliability of the model (out-of-fold predictions against the judge's labels) and the
threshold trade-off (estimated FN rate and coverage of the resulting selection)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from negmine.report.plots import _empty, _plt, _save


def plot_calibration(rel: Sequence[dict[str, Any]], curve: Sequence[dict[str, Any]], threshold: float | None,
                     path: Path, measured: Sequence[dict[str, Any]] | None = None) -> Path:
    """Left: reliability (predicted probability that the judge flags a candidate vs the share it flagged, in
    equal-count bins). Right: estimated FN rate and coverage per threshold (``measured``: FN rate measured with
    qrels per threshold, when `negmine report --qrels` has them)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if rel:
        a.plot([0, 1], [0, 1], ls=":", color="#999999", label="perfect")
        a.plot([r["predicted"] for r in rel], [r["observed"] for r in rel], "o-", color="#e76f51",
               label="out-of-fold model")
        a.set_xlabel("predicted p(judge flags the candidate)")
        a.set_ylabel("share the judge flagged")
        a.legend(loc="upper left")
    else:
        _empty(a)
    a.set_title("reliability (judged sample)")
    pts = [c for c in curve if not math.isinf(c["threshold"]) and c["est_fn"] == c["est_fn"]]
    if pts:
        xs = [c["threshold"] for c in pts]
        b.plot(xs, [c["est_fn"] for c in pts], color="#e76f51", label="estimated FN rate")
        if measured:
            b.plot([m["threshold"] for m in measured], [m["fn_rate"] for m in measured], color="#264653",
                   label="measured FN rate (qrels)")
        b.plot(xs, [c["coverage"] for c in pts], color="#2a9d8f", ls="--", label="coverage (k negatives)")
        if threshold is not None:
            b.axvline(threshold, color="#777777", ls=":", label=f"chosen {threshold:.3f}")
        b.set_xlabel("threshold on p(false negative)")
        b.set_ylim(0, 1.02)
        b.legend(loc="center right", fontsize=8)
    else:
        _empty(b)
    b.set_title("trade-off")
    return _save(fig, path)
