"""PNG plots for `negmine report` (matplotlib with the Agg backend, imported inside each function)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"positives": "#2a9d8f", "kept": "#e76f51", "filtered": "#264653", "not sampled": "#b0b0b0"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    tmp.replace(path)
    return path


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def score_histograms(groups: Mapping[str, np.ndarray], path: Path, title: str = "Teacher scores") -> Path:
    """Overlaid density histograms of teacher scores per group (positives, kept, filtered, not sampled)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    nonempty = {k: v for k, v in groups.items() if len(v)}
    if not nonempty:
        _empty(ax)
    else:
        lo = min(float(np.min(v)) for v in nonempty.values())
        hi = max(float(np.max(v)) for v in nonempty.values())
        if hi <= lo:
            hi = lo + 1e-3
        bins = np.linspace(lo, hi, 41)
        for name, v in nonempty.items():
            ax.hist(v, bins=bins, density=True, alpha=0.45 if name != "positives" else 0.6,
                    color=COLORS.get(name), label=f"{name} (n={len(v):,}, median {np.median(v):.3f})",
                    histtype="stepfilled", edgecolor=COLORS.get(name), linewidth=1.0)
        ax.set_xlabel("teacher score")
        ax.set_ylabel("density")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title)
    return _save(fig, path)


def bar_counts(counts: Mapping[str, float], path: Path, title: str, xlabel: str, fmt: str = "{:,.0f}") -> Path:
    """Horizontal bars (e.g. dropped candidates per reason, seconds per stage), values printed at the bars."""
    plt = _plt()
    names = list(counts)
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.45 * len(names) + 1.2)))
    if not names:
        _empty(ax)
    else:
        vals = [float(counts[n]) for n in names]
        y = np.arange(len(names))
        ax.barh(y, vals, color="#457b9d")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        for yi, v in zip(y, vals, strict=False):
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlim(0, max(vals) * 1.18 if max(vals) > 0 else 1)
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def negatives_per_query(counts: np.ndarray, k: int, path: Path) -> Path:
    """Histogram of the number of kept negatives per query, with k marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if not len(counts):
        _empty(ax)
    else:
        top = int(max(int(counts.max()), k))
        bins = np.arange(-0.5, top + 1.5, 1.0)
        n, _, _ = ax.hist(counts, bins=bins, color="#e76f51", edgecolor="white")
        for x, c in enumerate(n):
            if c:
                ax.text(x, c, f"{int(c)}", ha="center", va="bottom", fontsize=8)
        ax.axvline(k, color="#264653", linestyle="--", linewidth=1, label=f"k = {k}")
        short = int((counts < k).sum())
        ax.set_ylim(0, max(n) * 1.12 if len(n) else 1)
        ax.set_xlabel("kept negatives per query")
        ax.set_ylabel("queries")
        ax.set_xticks(range(0, top + 1, max(1, (top + 1) // 12)))
        ax.legend(title=f"{short} of {len(counts)} queries short of k", fontsize=8, title_fontsize=8)
    ax.set_title("Negatives per query")
    return _save(fig, path)


def sensitivity(rows: Sequence[Mapping[str, Any]], path: Path, param: str = "perc_pos",
                current: float | None = None) -> Path:
    """False-negative rate, coverage and hardness as one select parameter varies."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    if not rows:
        _empty(ax)
    else:
        x = [r["value"] for r in rows]

        def col(key: str) -> list[float]:
            return [np.nan if r.get(key) is None else r[key] for r in rows]

        ax.plot(x, col("fn_rate"), marker="o", ms=3, color="#e63946", label="false-negative rate")
        ax.set_xlabel(param)
        ax.set_ylabel("false-negative rate", color="#e63946")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(x, col("hardness"), marker="s", ms=3, color="#1d3557", label="hardness")
        ax2.plot(x, col("coverage"), marker="^", ms=3, color="#2a9d8f", label="coverage")
        ax2.set_ylabel("hardness / coverage")
        ax2.set_ylim(0, max(1.05, np.nanmax(col("hardness") + [1.0]) * 1.02))
        if current is not None:
            ax.axvline(current, color="#777777", linestyle=":", linewidth=1)
        lines = ax.get_lines()[:1] + ax2.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    ax.set_title(f"Sensitivity to {param} (re-selected from cached scores)")
    return _save(fig, path)
