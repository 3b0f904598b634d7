"""`negmine eval` / `negmine report` on a run directory: read the stage artifacts, compute (eval.py, stats.py),
plot (plots.py) and write ``RUN/report/{metrics.json, report.md, *.png}``.

This module does the reading and writing; the metrics themselves are pure functions in eval.py and stats.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from negmine.errors import InputError
from negmine.io.store import MANIFEST, Artifact, check_inputs, write_json_atomic

log = logging.getLogger("negmine")

REPORT_DIR = "report"
DEFAULT_PERC_VALUES = tuple(round(0.80 + 0.01 * i, 2) for i in range(21))  # 0.80 .. 1.00
DEFAULT_POS_SIM_VALUES = tuple(round(0.40 + 0.025 * i, 3) for i in range(17))  # 0.40 .. 0.80


@dataclass
class RunTables:
    """What eval and report read from a run: scores, the kept negatives (after relabel when present), the
    dropped candidates and the select parameters."""

    scores: pa.Table
    negatives: pa.Table
    dropped: pa.Table | None
    select_params: dict[str, Any]
    source: str  # "relabel" | "select"
    manifests: dict[str, dict[str, Any]]


def _manifests(run_dir: Path) -> dict[str, dict[str, Any]]:
    from negmine.report.stats import STAGE_DIRS

    out = {}
    for name in STAGE_DIRS:
        if (run_dir / name / MANIFEST).is_file():
            out[name] = Artifact.open(run_dir / name).manifest
    return out


def load_run(run_dir: str | os.PathLike) -> RunTables:
    run_dir = Path(run_dir)
    scores_art = Artifact.open(run_dir / "scores", stage="score", hint="run `negmine score` first")
    sel = Artifact.open(run_dir / "negatives", stage="select", hint="run `negmine select` first")
    check_inputs(sel, scores_art)  # not a selection of older scores, no damaged shard
    scores = scores_art.read(columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    negatives = sel.read("negatives")
    dropped = sel.read("dropped") if sel.has_table("dropped") else None
    source = "select"
    if (run_dir / "relabel" / MANIFEST).is_file():
        rel = Artifact.open(run_dir / "relabel", stage="relabel")
        if sel.fingerprint not in (rel.manifest.get("inputs") or {}).values():
            log.warning("RUN/relabel was made from an older select run and is ignored (re-run `negmine relabel`)")
        elif rel.has_table("negatives"):
            negatives = _with_scores(rel.read("negatives", columns=["query_id", "doc_id"]), negatives, scores)
            source = "relabel"
    return RunTables(scores, negatives, dropped, dict(sel.params), source, _manifests(run_dir))


def _with_scores(pairs: pa.Table, selected: pa.Table, scores: pa.Table) -> pa.Table:
    """``(query_id, doc_id)`` pairs with rank and teacher score: from the select stage's negatives, else (a
    refilled candidate) from the scores table."""
    cols = ["query_id", "doc_id", "rank", "teacher_score"]
    t = pairs.join(selected.select(cols), keys=["query_id", "doc_id"], join_type="left outer")
    missing = t.filter(pc.is_null(t["teacher_score"]))
    if len(missing):
        found = missing.select(["query_id", "doc_id"]).join(
            scores.select(cols), keys=["query_id", "doc_id"], join_type="left outer")
        t = pa.concat_tables([t.filter(pc.is_valid(t["teacher_score"])).select(cols), found.select(cols)])
    return t.select(cols)


def k_of(tables: RunTables, k: int | None) -> int:
    if k is not None:
        return k
    n = tables.select_params.get("num_negatives")
    if not isinstance(n, int):
        raise InputError("the select manifest has no num_negatives; give --k", "negatives/_manifest.json")
    return n


def evaluate_run(run_dir: str | os.PathLike, qrels_path: str | os.PathLike, k: int | None = None,
                 min_grade: float = 1.0, write: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of the run's negatives against the qrels (see negmine.report.eval), written to
    ``RUN/report/metrics.json`` when ``write``."""
    from negmine.report.eval import evaluate
    from negmine.report.protocol import read_qrels

    run_dir = Path(run_dir)
    t = load_run(run_dir)
    qrels = read_qrels(qrels_path)
    kk = k_of(t, k)
    m = evaluate(t.negatives, t.scores, qrels, kk, dropped=t.dropped, min_grade=min_grade)
    cal = calibration_vs_qrels(run_dir, qrels, m.get("fn_rate"), min_grade)
    if cal is not None:
        m["calibration"] = cal
    out = {"run": str(run_dir), "qrels": str(qrels_path), "negatives_from": t.source, "min_grade": min_grade,
           "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "metrics": m,
           "select": t.select_params, **(extra or {})}
    if write:
        d = run_dir / REPORT_DIR
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / "metrics.json", out)
    return out


def calibration_vs_qrels(run_dir: Path, qrels: pa.Table, measured_fn: float | None,
                         min_grade: float = 1.0) -> dict[str, Any] | None:
    """The calibration the run's selection applied (if any), checked against the qrels (negmine.calibrate.check)."""
    from negmine.calibrate.check import calibration_check
    from negmine.report.eval import relevant_pairs

    _applied, art = applied_calibration(run_dir)
    if art is None:
        return None
    out = calibration_check(art.read("judged"), art.stats, relevant_pairs(qrels, min_grade), measured_fn)
    out["path"] = str(art.path)
    return out


def applied_calibration(run_dir: Path) -> tuple[dict[str, Any] | None, Artifact | None]:
    """What the run's selection recorded about the calibration it applied (None: none applied), and that
    calibration's artifact (None when none was applied or it no longer exists)."""
    sel = Artifact.open(run_dir / "negatives", stage="select")
    applied = (sel.stats or {}).get("calibration")
    if not applied:
        return None, None
    d = Path(applied["path"])
    return applied, (Artifact.open(d, stage="calibrate") if (d / MANIFEST).is_file() else None)


# ----------------------------------------------------------------------------------------------------------------
# report


def _duplicates(dropped: pa.Table | None) -> set[tuple[str, str]]:
    if dropped is None or not len(dropped):
        return set()
    d = dropped.filter(pc.equal(dropped["reason_dropped"], "duplicate_of_positive"))
    return set(zip(d["query_id"].to_pylist(), d["doc_id"].to_pylist(), strict=False))


def scores_lex_rank(run_dir: Path, scores: pa.Table, max_lexical_rank: int) -> dict[str, Any]:
    """``{"lex_rank": array}`` aligned with ``scores`` (BM25 rank of each row's doc for its query, 0 = not in the
    top ``max_lexical_rank``), for re-selection with ``max_lexical_rank``."""
    from negmine.select.signals import LexicalRanker

    ranker = LexicalRanker(Artifact.open(run_dir / "ingest", stage="ingest"))
    return {"lex_rank": ranker.ranks(scores["query_id"].to_pylist(), scores["doc_id"].to_pylist(),
                                     max_lexical_rank)}


def scores_pos_sim(run_dir: Path, scores: pa.Table, select_params: dict[str, Any]) -> dict[str, Any]:
    """``{"pos_sim": array}`` aligned with ``scores`` (candidate-positive document similarity, through the
    embedding cache, with the encoder the select stage used), for re-selection with ``max_pos_sim``."""
    import numpy as np

    from negmine.select.signals import block_pos_sim, corpus_texts, embedding_spec

    ingest = Artifact.open(run_dir / "ingest", stage="ingest")
    score_params = Artifact.open(run_dir / "scores", stage="score").params
    qids = scores["query_id"].to_pylist()
    index = {q: i for i, q in enumerate(dict.fromkeys(qids))}
    group = np.fromiter((index[q] for q in qids), dtype=np.int64, count=len(qids))
    doc_ids = scores["doc_id"].to_pylist()
    is_pos = pc.fill_null(scores["is_positive"], False).to_numpy(zero_copy_only=False)
    spec = embedding_spec(score_params, select_params.get("pos_sim_model"),
                          select_params.get("encoder_backend", "auto"))
    return {"pos_sim": block_pos_sim(corpus_texts(ingest, set(doc_ids)), doc_ids, group, is_pos, spec)}


def sensitivity_rows(t: RunTables, qrels: pa.Table, k: int, values=DEFAULT_PERC_VALUES, param: str = "perc_pos",
                     extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """FN rate / coverage / hardness as ``param`` (perc_pos or max_pos_sim) varies, everything else as the run
    was selected (``extra``: the per-row arrays a signal rule needs, see :func:`scores_pos_sim`)."""
    from negmine.report.replay import reselect
    from negmine.report.stats import sensitivity_curve
    from negmine.select.params import SelectParams

    base = SelectParams.model_validate(t.select_params)
    dups = _duplicates(t.dropped)
    update = {"filter": "perc-pos"} if param == "perc_pos" else {}

    def mine(scores: pa.Table, v: float) -> pa.Table:
        return reselect(scores, base.model_copy(update={**update, param: v}), dups, extra)

    return sensitivity_curve(t.scores, qrels, k, values, mine)


def _calibration_section(run_dir: Path, out: Path, pngs: dict[str, Path]) -> list[str]:
    """The calibration the selection applied: its summary, reliability plot and trade-off curve."""
    import shutil

    from negmine.calibrate.stage import format_summary

    applied, art = applied_calibration(run_dir)
    if not applied:
        return ["## Calibration", "", "None applied (`negmine calibrate RUN` fits one from a judged sample).", ""]
    d = Path(applied["path"])
    if art is None:
        return ["## Calibration", "", f"Applied from `{d}`, which no longer exists.", ""]
    md = ["## Calibration", "", f"Applied from `{d}`: p(false negative) >= {applied['threshold']} is dropped "
          "(`predicted_false_negative`)." if applied.get("threshold") is not None else
          f"Applied from `{d}`: its sample showed no false negatives, it drops nothing.", "", "```",
          format_summary(art.stats), "```", ""]
    if (d / "reliability.png").is_file():
        shutil.copyfile(d / "reliability.png", out / "calibration.png")
        pngs["calibration"] = out / "calibration.png"
        md += ["Left: reliability of the model's out-of-fold predictions against the judge's labels; right: the "
               "estimated FN rate and coverage of the selection per threshold (the chosen one dotted).", "",
               "![calibration](calibration.png)", ""]
    return md


def build_report(run_dir: str | os.PathLike, qrels_path: str | os.PathLike | None = None, k: int | None = None,
                 min_grade: float = 1.0) -> Path:
    """Write ``RUN/report/report.md`` and its PNG plots; with qrels also metrics.json and the sensitivity curve."""
    from negmine.report import plots, stats
    from negmine.report.eval import evaluate, metrics_markdown
    from negmine.report.protocol import read_qrels

    run_dir = Path(run_dir)
    t = load_run(run_dir)
    kk = k_of(t, k)
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    queries = t.scores["query_id"].unique().to_pylist()
    groups = stats.score_groups(t.scores, t.negatives, t.dropped)
    drops = stats.drops_per_reason(t.dropped)
    per_q = stats.negatives_per_query(t.negatives, queries)
    timings = stats.stage_timings(t.manifests)

    pngs = {
        "scores": plots.score_histograms(groups, out / "scores.png"),
        "drops": plots.bar_counts(drops, out / "drops.png", "Dropped candidates per reason", "candidates"),
        "per_query": plots.negatives_per_query(per_q, kk, out / "negatives_per_query.png"),
        "timings": plots.bar_counts(dict(timings), out / "timings.png", "Stage wall time (last run)", "seconds",
                                    fmt="{:,.1f} s"),
    }
    md = [f"# negmine report: {run_dir.name}", "",
          f"Run `{run_dir}`; negatives from the {t.source} stage; k = {kk}; "
          f"generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.", "",
          "## Negatives", "",
          f"{len(queries):,} queries, {len(t.negatives):,} kept negatives "
          f"({len(t.negatives) / max(1, len(queries)):.2f} per query); "
          f"{int((per_q < kk).sum()):,} queries short of k, {int((per_q == 0).sum()):,} with none.", "",
          "![negatives per query](negatives_per_query.png)", "",
          "## Teacher scores", "", "| group | n | p05 | p25 | median | p75 | p95 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in groups.items():
        q = stats.quantiles(v)
        md.append(f"| {name} | {len(v):,} | " + " | ".join("–" if x is None else f"{x:.3f}" for x in q.values()) + " |")
    md += ["", "![teacher scores](scores.png)", "", "## Dropped candidates", "", "| reason | candidates |",
           "|---|---:|"] + [f"| {r} | {n:,} |" for r, n in drops.items()]
    md += ["", "![drops](drops.png)", "", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
    md += [f"| {s} | {sec:,.1f} |" for s, sec in timings] + ["", "![timings](timings.png)", ""]
    sel_line = ", ".join(f"{key}={val}" for key, val in t.select_params.items() if key != "shard_queries")
    md += ["## Select parameters", "", f"`{sel_line}`", ""]
    md += _calibration_section(run_dir, out, pngs)

    if qrels_path is not None:
        qrels = read_qrels(qrels_path)
        m = evaluate(t.negatives, t.scores, qrels, kk, dropped=t.dropped, min_grade=min_grade)
        write_json_atomic(out / "metrics.json", {"run": str(run_dir), "qrels": str(qrels_path),
                                                 "negatives_from": t.source, "metrics": m,
                                                 "select": t.select_params})
        cal_check = calibration_vs_qrels(run_dir, qrels, m.get("fn_rate"), min_grade)
        if cal_check is not None:
            m["calibration"] = cal_check
        md += ["## Against the qrels", "", f"Qrels `{qrels_path}`.", "", metrics_markdown(m), ""]
        sp = t.select_params
        extra = scores_pos_sim(run_dir, t.scores, sp) if sp.get("max_pos_sim") is not None else None
        if sp.get("max_lexical_rank") is not None:  # the run's lexical_agreement rule, re-applied when re-selecting
            extra = {**(extra or {}), **scores_lex_rank(run_dir, t.scores, sp["max_lexical_rank"])}
        curves = [("perc_pos", DEFAULT_PERC_VALUES, sp.get("perc_pos") if sp.get("filter") == "perc-pos" else None,
                   "sensitivity", "with `filter=perc-pos` and that `perc_pos`")]
        if extra is not None and "pos_sim" in extra:
            curves.append(("max_pos_sim", DEFAULT_POS_SIM_VALUES, sp.get("max_pos_sim"), "sensitivity_pos_sim",
                           "with that `max_pos_sim` (similar_to_positive)"))
        sens = {}
        for param, values, cur, name, how in curves:
            rows = sensitivity_rows(t, qrels, kk, values, param, extra)
            sens[param] = rows
            pngs[name] = plots.sensitivity(rows, out / f"{name}.png", param, cur)
            md += [f"### Sensitivity to {param}", "",
                   f"Each point re-selects from the cached scores {how} (every other select parameter as in "
                   "this run); nothing is re-mined.", "",
                   f"| {param} | FN rate | FN@query | coverage | hardness |", "|---:|---:|---:|---:|---:|"]
            f3 = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
            md += [f"| {r['value']:.3f} | {f3(r['fn_rate'])} | {f3(r['fn_at_query'])} | {f3(r['coverage'])} | "
                   f"{f3(r['hardness'])} |" for r in rows]
            md += ["", f"![{name}]({name}.png)", ""]
        write_json_atomic(out / "sensitivity.json", sens)
    path = out / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(md), encoding="utf-8")
    tmp.replace(path)
    log.info("report: %s (%d plots)", path, len(pngs))
    return path
