"""Relabel keeps k negatives: refill rounds until k or the pool is exhausted, coverage before / after, the drop
rule's report and its default (off), the confidence routing and the on_unsure policy.

Hand-made runs on a hidden-positives Cranfield subset (ingest keeps the best-graded relevant document of each
query, so the others are known false negatives) with a hand-made RUN/scores as the refill pool, judged by the real
local judge server at accuracy 1.0 (it answers from the full qrels).
"""

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from negmine.io.store import Artifact, StageWriter
from negmine.judge.cascade import Policy, Verdict, decide_query, get_router
from negmine.judge.params import RelabelParams, Tier
from negmine.testing.judge_server import Truth
from negmine.testing.simulate import best_only, hidden_copy, read_qrels, write_negatives

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(cranfield_small, tmp_path_factory):
    """Ingested hidden-positives subset + per query its hidden relevant docs and some non-relevant docs."""
    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams

    work = tmp_path_factory.mktemp("refill")
    src = hidden_copy(cranfield_small, work / "hidden")
    run = work / "base"
    ing = run_ingest(run, IngestParams(path=str(src), split="test")).artifact
    qrels = read_qrels(cranfield_small / "qrels" / "test.tsv")
    best = best_only(qrels)
    rel_all = {(q, d) for q, d, _ in qrels}
    docs = ing.read("corpus", columns=["doc_id"])["doc_id"].to_pylist()
    hidden: dict[str, list[str]] = {}
    for q, d, _ in qrels:
        if d != best[q] and d in set(docs):
            hidden.setdefault(q, []).append(d)
    qs = sorted((q for q in hidden if len(hidden[q]) >= 5), key=int)[:4]
    assert len(qs) == 4
    others = {q: [d for d in docs if (q, d) not in rel_all] for q in qs}
    return {"run": run, "qs": qs, "hidden": hidden, "others": others, "best": best, "src": cranfield_small,
            "truth": Truth.from_files(cranfield_small / "qrels" / "test.tsv")}


@pytest.fixture
def server(data, judge_servers):
    return lambda **kw: judge_servers(data["truth"], **kw)


def params(srv, **kw) -> RelabelParams:
    tiers = [Tier(model="cheap", base_url=srv.base_url, price_input=1.0, price_output=2.0),
             Tier(model="strong", base_url=srv.base_url, price_input=10.0, price_output=20.0)]
    return RelabelParams(tiers=tiers, **({"timeout": 2.0, "backoff": 0.02, "max_retries": 2, "list_size": 4} | kw))


def make_run(data, tmp_path, mined: dict[str, list[str]], pool: dict[str, list[str]], scores: bool = True) -> Path:
    """RUN with the shared ingest, ``mined`` as select's negatives and, per query, scores ranking the positive,
    then the mined negatives, then ``pool`` (the refill candidates, in this order)."""
    import shutil

    from negmine.io import schemas

    run = tmp_path / "run"
    shutil.copytree(data["run"] / "ingest", run / "ingest")
    ing = Artifact.open(run / "ingest")
    write_negatives(run, ing.fingerprint, mined, positives={q: [data["best"][q]] for q in mined})
    if scores:
        rows = {f.name: [] for f in schemas.SCORES}
        for q in mined:
            for r, d in enumerate([data["best"][q], *mined[q], *pool.get(q, [])], start=1):
                for k, v in (("query_id", q), ("doc_id", d), ("rank", r), ("retriever_score", 1.0 / r),
                             ("teacher_score", 1.0 - r / 100), ("is_positive", d == data["best"][q])):
                    rows[k].append(v)
        rows["corpus_row"] = [None] * len(rows["query_id"])  # not known to a hand-made table
        w = StageWriter(run / "scores", "score", {"hand_made": True}, {"ingest": ing.fingerprint},
                        {"scores": schemas.SCORES}, main_table="scores")
        w.begin()
        w.write_shard("scores", 0, pa.table(rows, schema=schemas.SCORES))
        w.finish()
    return run


def scenario(data):
    """q0: 1 hidden mined, pool = 3 more hidden then clean docs → needs 4 refill rounds (one hidden per round).
    q1: 2 hidden mined, pool = 2 hidden + 1 clean → exhausted one short (8 - 2 + 1 = 7 kept).
    q2: 6 clean mined (short before), pool of clean docs → topped up to 8 in one round.
    q3: 3 hidden mined (the drop-rule query), pool of clean docs."""
    q0, q1, q2, q3 = data["qs"]
    h, o = data["hidden"], data["others"]
    mined = {q0: [h[q0][0], *o[q0][:7]], q1: [*h[q1][:2], *o[q1][:6]], q2: o[q2][:6],
             q3: [*h[q3][:3], *o[q3][:5]]}
    pool = {q0: [*h[q0][1:4], *o[q0][7:20]], q1: [*h[q1][2:4], o[q1][6]], q2: o[q2][6:20], q3: o[q3][5:20]}
    return mined, pool


def test_refill_runs_until_k_and_stops_when_the_pool_is_exhausted(data, server, tmp_path, cli):
    mined, pool = scenario(data)
    q0, q1, q2, q3 = data["qs"]
    run = make_run(data, tmp_path, mined, pool)
    srv = server(accuracy=1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"relabel": params(srv).model_dump(mode="json")}))
    code, out, err = cli("relabel", run, "--config", cfg)  # defaults: refill on, no round cap, no drop rule
    assert code == 0, err
    art = Artifact.open(run / "relabel")
    negs: dict[str, list[dict]] = {}
    for r in art.read("negatives").to_pylist():
        negs.setdefault(r["query_id"], []).append(r)
    hidden = {(q, d) for q in data["qs"] for d in data["hidden"][q]}
    assert not any((q, r["doc_id"]) in hidden for q, rs in negs.items() for r in rs)  # judge at 100 %: all caught
    # q0 needed 4 rounds (more than the old cap of 2): one hidden document per round, then a clean one
    assert len(negs[q0]) == 8 and max(r["refill_round"] for r in negs[q0]) == 4
    assert [r["doc_id"] for r in negs[q0] if r["refill_round"] > 0] == [pool[q0][3]]
    promoted = {(r["query_id"], r["doc_id"]) for r in art.read("positives").to_pylist()}
    assert {(q0, d) for d in data["hidden"][q0][:4]} <= promoted
    # q1: its whole pool was judged, then it stopped short: 6 clean mined + the one clean pool document
    judged_q1 = {r["doc_id"] for r in art.read("audit").to_pylist() if r["query_id"] == q1}
    assert set(pool[q1]) <= judged_q1 and len(negs[q1]) == 7
    # q2 was short before relabel and is topped up to k; q3 keeps its 5 clean + 3 refills (no drop rule)
    assert len(negs[q2]) == 8 and len(negs[q3]) == 8
    qrows = {r["query_id"]: r for r in art.read("queries").to_pylist()}
    assert qrows[q1]["short_reason"] == "pool_exhausted" and qrows[q1]["negatives_after"] == 7
    assert qrows[q0]["refill_rounds"] == 4 and qrows[q0]["short_reason"] is None
    assert qrows[q2]["negatives_before"] == 6 and qrows[q2]["negatives_after"] == 8
    st = art.stats
    assert st["num_negatives"] == 8 and st["refill"] == "on" and st["refill_rounds"] == 4
    assert st["queries_full_before"] == 3 and st["coverage_before"] == 0.75
    assert st["queries_full_after"] == 3 and st["coverage_after"] == 0.75
    assert st["short_after"] == {"pool_exhausted": 1} and st["queries_dropped"] == 0
    assert st["max_false_negatives"] is None
    assert "coverage (queries with 8 negatives): before 3/4 (75.0%), after 3/4 (75.0%); short after: 1 pool " \
           "exhausted" in out
    assert "drop rule (max_false_negatives): off" in out and "4 round(s) used" in out

    # a cap on the rounds is kept for those who want one: q0 stops after 2 rounds, short for that reason
    srv2 = server(accuracy=1.0)
    run2 = make_run(data, tmp_path / "capped", mined, pool)
    from negmine.judge.stage import run_relabel

    st2 = run_relabel(run2, params(srv2, refill_rounds=2), progress=False).artifact
    q2rows = {r["query_id"]: r for r in st2.read("queries").to_pylist()}
    assert q2rows[q0]["short_reason"] == "round_cap" and q2rows[q0]["negatives_after"] == 7
    assert st2.stats["short_after"] == {"pool_exhausted": 1, "round_cap": 1} and st2.stats["refill_rounds"] == 2


def test_drop_rule_reports_what_it_drops_and_counts_only_mined_negatives(data, server, tmp_path, cli):
    mined, pool = scenario(data)
    q0, q1, q2, q3 = data["qs"]
    run = make_run(data, tmp_path, mined, pool)
    srv = server(accuracy=1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"relabel": params(srv, max_false_negatives=2).model_dump(mode="json")}))
    code, out, err = cli("relabel", run, "--config", cfg)
    assert code == 0, err
    art = Artifact.open(run / "relabel")
    dq = art.read("dropped_queries").to_pylist()
    # q3 has 3 hidden documents among its mined negatives → dropped; q0 found 4 relevant documents but 3 of them
    # were refill candidates, which the rule does not count
    assert [(r["query_id"], r["false_negatives"]) for r in dq] == [(q3, 3)]
    assert not any(r["query_id"] == q3 for r in art.read("negatives").to_pylist())
    assert not any(r["query_id"] == q3 and r["refill_round"] > 0 for r in art.read("audit").to_pylist())  # no refill
    st = art.stats
    assert st["queries_dropped"] == 1 and st["dropped_false_negatives"] == 3 and st["dropped_negatives"] == 5
    assert st["short_after"] == {"dropped": 1, "pool_exhausted": 1} and st["coverage_after"] == 0.5
    assert ("drop rule (max_false_negatives=2): 1 queries dropped with 3 false negatives and 5 other negatives"
            in out)
    assert "queries dropped 1 (3 false negatives, 5 negatives discarded)" in err  # the log line
    assert "coverage (queries with 8 negatives) 75.0% before → 50.0% after, 2 short (1 dropped, 1 pool " \
           "exhausted)" in err


def test_defaults_refill_without_cap_no_drop_rule_and_rlhn_config_pins_its_keys():
    from negmine.config import load_config

    p = RelabelParams()
    assert p.refill is True and p.refill_rounds is None and p.max_false_negatives is None
    assert p.routing == "confidence" and p.on_unsure == "remove" and all(t.logprobs for t in p.tiers)
    many = decide_query({d: Verdict("relevant") for d in "abcdefghij"}, Policy())
    assert not many.dropped and set(many.actions.values()) == {"promote"}
    rlhn = load_config(ROOT / "configs" / "rlhn-cascade.yaml").relabel
    assert rlhn.max_false_negatives == 8 and rlhn.refill is False and rlhn.routing == "per_negative"
    assert rlhn.on_unsure == "keep" and rlhn.band == (0.2, 0.8)


def test_confidence_routing_and_on_unsure():
    band = (0.3, 0.9)
    v = {("q", "a"): Verdict("not_relevant", 0.1), ("q", "b"): Verdict("not_relevant", 0.4),
         ("q", "c"): Verdict("relevant", 0.95), ("q", "d"): Verdict("relevant", 0.8),
         ("q", "e"): Verdict("partial"), ("q", "f"): Verdict("not_relevant"), ("q", "g"): Verdict(None, None, "x")}
    # sure either way → final; unsure (inside the band), flagged without a probability, or unjudged → next tier
    assert sorted(get_router("confidence")(v, band)) == [("q", "b"), ("q", "d"), ("q", "e"), ("q", "g")]
    pol = Policy(on_unsure="remove", band=band)
    d = decide_query({k[1]: x for k, x in v.items()}, pol)
    assert d.actions == {"a": "keep", "b": "remove", "c": "promote", "d": "remove", "e": "remove", "f": "keep",
                         "g": "keep"}
    assert decide_query({"b": Verdict("not_relevant", 0.4)}, Policy(on_unsure="keep", band=band)).actions == \
        {"b": "keep"}


def test_refill_on_by_default_without_scores_warns_and_says_why_short(data, server, tmp_path, cli):
    mined, pool = scenario(data)
    run = make_run(data, tmp_path, mined, pool, scores=False)
    srv = server(accuracy=1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"relabel": params(srv).model_dump(mode="json")}))
    code, out, err = cli("relabel", run, "--config", cfg)
    assert code == 0, err
    st = Artifact.open(run / "relabel").stats
    assert "no RUN/scores to refill from" in err and "refill: no scores" in out
    assert st["refill"] == "no_scores" and st["short_after"] == {"no_scores": 4} and st["refill_judged"] == 0


def test_batch_mode_plans_refill_rounds_from_cached_answers(data, server, tmp_path, cli):
    """--batch submit plans the refill of every query whose answers are all collected, so submit / collect until
    nothing is left, then `negmine relabel` sends no chat request and keeps k where the pool allows."""
    mined, pool = scenario(data)
    q0 = data["qs"][0]
    run = make_run(data, tmp_path, mined, pool)
    srv = server(accuracy=1.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"relabel": params(srv).model_dump(mode="json")}))
    for _ in range(30):
        code, out, err = cli("relabel", run, "--config", cfg, "--batch", "submit")
        assert code == 0, err
        if "nothing to submit" in out:
            break
        code, out, err = cli("relabel", run, "--config", cfg, "--batch", "collect")
        assert code == 0 and "answers cached" in out, err
    else:
        pytest.fail("batch submit never ran out of requests")
    code, out, err = cli("relabel", run, "--config", cfg)
    assert code == 0, err
    assert srv.state.requests == 0  # refill rounds too were answered by the batches
    art = Artifact.open(run / "relabel")
    assert art.stats["refill_rounds"] == 4 and art.stats["queries_full_after"] == 3
    assert len([r for r in art.read("negatives").to_pylist() if r["query_id"] == q0]) == 8


def test_query_select_left_without_negatives_is_filled_from_its_pool(data, server, tmp_path):
    from negmine.judge.stage import run_relabel

    q = data["qs"][2]
    pool = {q: data["others"][q][:12]}
    run = make_run(data, tmp_path, {q: []}, pool)
    srv = server(accuracy=1.0)
    art = run_relabel(run, params(srv, num_negatives=8), progress=False).artifact
    assert [r["doc_id"] for r in art.read("negatives").to_pylist()] == pool[q][:8]
    assert art.read("queries").to_pylist()[0] == {
        "query_id": q, "negatives_before": 0, "negatives_after": 8, "promoted": 0, "removed": 0, "refill_judged": 8,
        "refill_rounds": 1, "short_reason": None}
    assert art.stats["coverage_before"] == 0.0 and art.stats["coverage_after"] == 1.0
