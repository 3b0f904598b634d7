"""negmine eval: metrics on hand-made artifacts (hand-counted values), the CLI, relabel input, bad input."""

import json

import numpy as np
import pyarrow as pa
import pytest

from negmine.io import schemas
from negmine.io.store import Artifact, StageWriter
from negmine.report.eval import evaluate, markdown_table, metrics_markdown, topk_mean_per_query
from negmine.select.params import SelectParams

# Three queries, k = 2. Scores (teacher), ranks in brackets, * = relevant in the qrels.
#   q1: positive p1 0.9 [-];  d1* 0.8 [1], d2 0.7 [2], d3 0.6 [3], d4 0.5 [4]
#   q2: positive p2 0.8 [-];  e1 0.75 [1], e2* 0.6 [2], e3 0.4 [3]
#   q3: positive p3 0.7 [1];  f1 0.65 [2], f2 0.3 [3]
# Mined negatives: q1 → d1, d3;  q2 → e3;  q3 → none.
SCORES = [
    ("q1", "p1", None, 0.9, True), ("q1", "d1", 1, 0.8, False), ("q1", "d2", 2, 0.7, False),
    ("q1", "d3", 3, 0.6, False), ("q1", "d4", 4, 0.5, False),
    ("q2", "p2", None, 0.8, True), ("q2", "e1", 1, 0.75, False), ("q2", "e2", 2, 0.6, False),
    ("q2", "e3", 3, 0.4, False),
    ("q3", "p3", 1, 0.7, True), ("q3", "f1", 2, 0.65, False), ("q3", "f2", 3, 0.3, False),
]
NEGATIVES = [("q1", "d1", 1, 0.8), ("q1", "d3", 3, 0.6), ("q2", "e3", 3, 0.4)]
DROPPED = [("q1", "d2", 2, 0.7, "above_perc"), ("q1", "d4", 4, 0.5, "not_sampled"),
           ("q2", "e1", 1, 0.75, "above_perc"), ("q2", "e2", 2, 0.6, "above_perc"),
           ("q3", "p3", 1, 0.7, "positive"), ("q3", "f1", 2, 0.65, "above_perc"),
           ("q3", "f2", 3, 0.3, "below_abs")]
QRELS = [("q1", "p1", 3), ("q1", "d1", 2), ("q2", "p2", 1), ("q2", "e2", 1), ("q3", "p3", 2),
         ("q3", "f2", 0)]  # grade 0: judged, not relevant

# hand-counted
FN_RATE = 1 / 3                      # d1 is relevant; d3, e3 are not
FN_AT_QUERY = 1 / 2                  # q1 has one, q2 none; q3 has no negatives
COVERAGE = 1 / 3                     # only q1 got k = 2
H_Q1 = ((0.8 + 0.6) / 2) / ((0.7 + 0.6) / 2)   # reference: d2, d3 (d1 relevant, p1 positive)
H_Q2 = 0.4 / ((0.75 + 0.4) / 2)                # reference: e1, e3 (e2 relevant)
HARDNESS = (H_Q1 + H_Q2) / 2         # q3 kept nothing: left out
MEAN_RANK = (1 + 3 + 3) / 3


def table(rows, schema, names):
    cols = list(zip(*rows, strict=False)) if rows else [[] for _ in names]
    data = dict(zip(names, cols, strict=False))
    return pa.table({f.name: pa.array(list(data[f.name]), f.type) if f.name in data else pa.nulls(len(rows), f.type)
                     for f in schema}, schema=schema)


def scores_table():
    return table(SCORES, schemas.SCORES, ["query_id", "doc_id", "rank", "teacher_score", "is_positive"])


def negatives_table(rows=NEGATIVES):
    return table(rows, schemas.NEGATIVES, ["query_id", "doc_id", "rank", "teacher_score"])


def dropped_table():
    return table(DROPPED, schemas.DROPPED, ["query_id", "doc_id", "rank", "teacher_score", "reason_dropped"])


def qrels_table():
    return table(QRELS, schemas.POSITIVES, ["query_id", "doc_id", "grade"])


def write_run(run, num_negatives=2, extra_select=None):
    w = StageWriter(run / "scores", "score", {"teacher": "bi-encoder"}, {}, {"scores": schemas.SCORES},
                    main_table="scores")
    w.begin()
    w.write_shard("scores", 0, scores_table())
    w.finish()
    # the full parameter set, as the select stage records it: TopK-PercPos, document-similarity rule off
    params = {**SelectParams(filter="perc-pos", max_pos_sim=None).model_dump(mode="json"),
              "num_negatives": num_negatives, **(extra_select or {})}
    w = StageWriter(run / "negatives", "select", params, {"score": "x"},
                    {"negatives": schemas.NEGATIVES, "dropped": schemas.DROPPED}, main_table="negatives")
    w.begin()
    w.write_shard("negatives", 0, negatives_table())
    w.write_shard("dropped", 0, dropped_table())
    w.finish()
    return run


def write_qrels(path, rows=QRELS):
    path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows))
    return path


def test_metrics_hand_counted():
    m = evaluate(negatives_table(), scores_table(), qrels_table(), 2, dropped=dropped_table())
    assert m["queries"] == 3 and m["negatives"] == 3 and m["false_negatives"] == 1
    assert m["fn_rate"] == pytest.approx(FN_RATE)
    assert m["fn_at_query"] == pytest.approx(FN_AT_QUERY)
    assert m["queries_with_fn"] == 1 and m["queries_with_negatives"] == 2
    assert m["coverage"] == pytest.approx(COVERAGE)
    assert m["hardness"] == pytest.approx(HARDNESS, rel=1e-6)
    assert m["hardness_queries"] == 2 and m["hardness_queries_excluded"] == 1
    assert m["mean_rank"] == pytest.approx(MEAN_RANK)
    assert m["dropped"] == {"above_perc": 4, "below_abs": 1, "not_sampled": 1, "positive": 1}


def test_min_grade_and_k_change_the_counts():
    # grade >= 2 only: d1 (grade 2) stays relevant, e2 (grade 1) does not → q2's reference becomes e1, e2
    m = evaluate(negatives_table(), scores_table(), qrels_table(), 2, min_grade=2)
    assert m["fn_rate"] == pytest.approx(1 / 3)
    h_q2 = 0.4 / ((0.75 + 0.6) / 2)
    assert m["hardness"] == pytest.approx((H_Q1 + h_q2) / 2, rel=1e-6)
    # k = 1: every query with a negative is covered; reference = the single hardest non-relevant candidate
    m = evaluate(negatives_table(), scores_table(), qrels_table(), 1)
    assert m["coverage"] == pytest.approx(2 / 3)
    assert m["hardness"] == pytest.approx((0.7 / 0.7 + 0.4 / 0.75) / 2, rel=1e-6)


def test_no_negatives_and_nonpositive_reference():
    m = evaluate(negatives_table([]), scores_table(), qrels_table(), 2)
    assert m["negatives"] == 0 and m["fn_rate"] is None and m["fn_at_query"] is None
    assert m["coverage"] == 0.0 and m["hardness"] is None and m["mean_rank"] is None
    # logit-scale teacher: a reference mean <= 0 has no ratio (left out, counted)
    s = table([("q", "p", None, 1.0, True), ("q", "a", 1, -2.0, False), ("q", "b", 2, -3.0, False)],
              schemas.SCORES, ["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    n = negatives_table([("q", "b", 2, -3.0)])
    m = evaluate(n, s, table([("q", "p", 1)], schemas.POSITIVES, ["query_id", "doc_id", "grade"]), 2)
    assert m["hardness"] is None and m["hardness_queries_excluded"] == 1


def test_topk_mean_per_query():
    codes = np.array([0, 0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.4])
    means, counts = topk_mean_per_query(codes, scores, 2, 3)
    assert means[0] == pytest.approx(0.45) and means[1] == pytest.approx(0.55) and np.isnan(means[2])
    assert counts.tolist() == [2, 2, 0]


def test_markdown():
    m = evaluate(negatives_table(), scores_table(), qrels_table(), 2, dropped=dropped_table())
    md = metrics_markdown(m)
    assert "| false-negative rate | 0.333 |" in md and "| coverage (k=2) | 0.333 |" in md
    assert "| above_perc | 4 |" in md
    t = markdown_table({"naive": m})
    assert t.splitlines()[2].startswith("| naive | 0.333 | 0.500 | 0.333 |")


def test_eval_cli_writes_metrics(tmp_path, cli):
    run = write_run(tmp_path / "run")
    qrels = write_qrels(tmp_path / "qrels.tsv")
    code, out, err = cli("eval", run, "--qrels", qrels)
    assert code == 0, err
    assert "| false-negative rate | 0.333 |" in out
    m = json.loads((run / "report" / "metrics.json").read_text())
    assert m["negatives_from"] == "select" and m["metrics"]["k"] == 2  # k from the select manifest
    assert m["metrics"]["hardness"] == pytest.approx(HARDNESS, rel=1e-6)
    code, out, err = cli("eval", run, "--qrels", qrels, "--json", "--k", "1")
    assert code == 0, err
    assert json.loads(out)["coverage"] == pytest.approx(2 / 3)


def test_eval_reads_relabelled_negatives(tmp_path, cli):
    run = write_run(tmp_path / "run")
    # relabel removed the false negative d1 and refilled q2 with e1 (not a select negative: read from the scores)
    rel_schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string())])
    select_fp = Artifact.open(run / "negatives").fingerprint  # a relabel of the current selection
    w = StageWriter(run / "relabel", "relabel", {}, {"negatives": select_fp}, {"negatives": rel_schema},
                    main_table=None)
    w.begin()
    w.write_shard("negatives", 0, pa.table({"query_id": ["q1", "q2", "q2"], "doc_id": ["d3", "e3", "e1"]},
                                           schema=rel_schema))
    w.finish()
    code, out, err = cli("eval", run, "--qrels", write_qrels(tmp_path / "q.tsv"), "--json")
    assert code == 0, err
    m = json.loads(out)
    assert m["negatives"] == 3 and m["false_negatives"] == 0 and m["coverage"] == pytest.approx(1 / 3)
    # q1: 0.6 / 0.65; q2: (0.4 + 0.75) / 2 over (0.75 + 0.4) / 2 = 1
    assert m["hardness"] == pytest.approx((0.6 / 0.65 + 1.0) / 2, rel=1e-6)
    assert m["mean_rank"] == pytest.approx((3 + 3 + 1) / 3)


@pytest.mark.parametrize("case,expect", [
    ("no_run", "no finished score artifact"),
    ("bad_grade", "non-numeric grade"),
    ("bad_protocol", "unknown protocol"),
    ("missing_qrels", "qrels file not found"),
])
def test_eval_bad_input(tmp_path, cli, case, expect):
    run = tmp_path / "run"
    qrels = write_qrels(tmp_path / "q.tsv")
    args = ["eval", run, "--qrels", qrels]
    if case != "no_run":
        write_run(run)
    if case == "bad_grade":
        write_qrels(qrels, QRELS + [("q1", "d2", "high")])
    if case == "bad_protocol":
        args += ["--protocol", "hidden"]
    if case == "missing_qrels":
        args[3] = tmp_path / "nope.tsv"
    code, out, err = cli(*args)
    assert code == 2, err
    assert err.startswith("negmine: error: ") and expect in err and len(err.strip().splitlines()) == 1
    if case == "bad_grade":
        assert "q.tsv:8:" in err  # header + 6 rows → the bad row is line 8
