"""negmine report: statistics (hand-counted), plots, the perc_pos sensitivity curve re-selected from scores."""

import json

import numpy as np
import pytest
from test_eval import dropped_table, negatives_table, scores_table, write_qrels, write_run

from negmine.report import stats

PNG = b"\x89PNG\r\n\x1a\n"


def test_stats_hand_counted():
    g = stats.score_groups(scores_table(), negatives_table(), dropped_table())
    assert sorted(g["positives"].round(2).tolist()) == [0.7, 0.8, 0.9]
    assert sorted(g["kept"].round(2).tolist()) == [0.4, 0.6, 0.8]
    # filtered = every drop except "positive" and "not_sampled": d2, e1, e2, f1 (above_perc), f2 (below_abs)
    assert sorted(g["filtered"].round(2).tolist()) == [0.3, 0.6, 0.65, 0.7, 0.75]
    assert g["not sampled"].round(2).tolist() == [0.5]
    assert stats.negatives_per_query(negatives_table(), ["q1", "q2", "q3"]).tolist() == [2, 1, 0]
    assert stats.drops_per_reason(dropped_table()) == {"above_perc": 4, "below_abs": 1, "not_sampled": 1,
                                                       "positive": 1}
    assert stats.stage_timings({"scores": {"stage": "score", "seconds": 2.5}, "x": {"stage": "x"}}) == \
        [("score", 2.5)]


def test_sensitivity_reselects_from_scores(tmp_path):
    from negmine.report.protocol import read_qrels
    from negmine.report.run import load_run, sensitivity_rows

    run = write_run(tmp_path / "run")
    t = load_run(run)
    rows = sensitivity_rows(t, read_qrels(write_qrels(tmp_path / "q.tsv")), 2, values=(0.8, 1.0))
    # perc 0.80 (threshold s+ * 0.8; s+ = the query's only positive):
    #   q1: 0.72 → d2 0.7, d3 0.6 kept (d4 not sampled)      q2: 0.64 → e2* 0.6, e3 0.4 kept
    #   q3: 0.56 → f2 0.3 kept
    # → 5 negatives, 1 false negative (e2), FN@query 1/3, coverage 2/3
    r = rows[0]
    assert r["value"] == 0.8 and r["fn_rate"] == pytest.approx(1 / 5) and r["fn_at_query"] == pytest.approx(1 / 3)
    assert r["coverage"] == pytest.approx(2 / 3)
    h = ((0.65 / 0.65) + ((0.6 + 0.4) / 2) / ((0.75 + 0.4) / 2) + 0.3 / ((0.65 + 0.3) / 2)) / 3
    assert r["hardness"] == pytest.approx(h, rel=1e-6)
    # perc 1.00 (below the positive): q1 d1* d2; q2 e1 e2*; q3 f1 f2 → 2 FN of 6, every query covered
    r = rows[1]
    assert r["fn_rate"] == pytest.approx(2 / 6) and r["coverage"] == 1.0


def test_report_cli_writes_markdown_and_plots(tmp_path, cli):
    run = write_run(tmp_path / "run")
    code, out, err = cli("report", run)
    assert code == 0, err
    rep = run / "report"
    md = (rep / "report.md").read_text()
    assert "3 queries, 3 kept negatives (1.00 per query); 2 queries short of k, 1 with none." in md
    assert "| above_perc | 4 |" in md and "Sensitivity" not in md      # no qrels: no sensitivity
    for name in ("scores", "drops", "negatives_per_query", "timings"):
        data = (rep / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
        assert f"({name}.png)" in md
    assert not (rep / "sensitivity.png").exists()

    code, out, err = cli("report", run, "--qrels", write_qrels(tmp_path / "q.tsv"))
    assert code == 0, err
    md = (rep / "report.md").read_text()
    assert "| false-negative rate | 0.333 |" in md and "| 0.800 | 0.200 | 0.333 | 0.667 |" in md
    assert (rep / "sensitivity.png").read_bytes().startswith(PNG)
    rows = json.loads((rep / "sensitivity.json").read_text())["perc_pos"]
    assert [r["value"] for r in rows] == pytest.approx(np.arange(0.80, 1.001, 0.01).round(2).tolist())


def test_plots_handle_empty_data(tmp_path):
    from negmine.report import plots

    for p in (plots.score_histograms({"kept": np.zeros(0)}, tmp_path / "a.png"),
              plots.bar_counts({}, tmp_path / "b.png", "t", "x"),
              plots.negatives_per_query(np.zeros(0, dtype=int), 8, tmp_path / "c.png"),
              plots.sensitivity([], tmp_path / "d.png")):
        assert p.read_bytes().startswith(PNG)
