"""The select stage on hand-made scores: drop reasons, summary, skip / re-run / resume, byte-identical output."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_select_helpers import SCORE_ROWS, build_run, negmine_log, rule_params, scores_table, write_scores

from negmine.io.schemas import SCORES
from negmine.io.store import Artifact, StageWriter, sha256_file
from negmine.select import stage as st
from negmine.select.stage import format_summary, run_select


def _reasons(art: Artifact) -> dict[tuple[str, str], str]:
    d = art.read("dropped")
    return dict(zip(zip(d["query_id"].to_pylist(), d["doc_id"].to_pylist(), strict=True),
                    d["reason_dropped"].to_pylist(), strict=True))


def _kept(art: Artifact) -> list[tuple[str, str]]:
    n = art.read("negatives")
    return list(zip(n["query_id"].to_pylist(), n["doc_id"].to_pylist(), strict=True))


@pytest.fixture
def run(tmp_path):
    return build_run(tmp_path)


def test_reasons_every_candidate_once_and_summary(run):
    res = run_select(run, rule_params(num_negatives=2))
    art = res.artifact
    assert not res.skipped and art.stage == "select"
    assert _kept(art) == [("q1", "n2"), ("q1", "n3"), ("q2", "n9"), ("q2", "n10"), ("q3", "n11"), ("q3", "n12")]
    r = _reasons(art)
    assert r[("q1", "d_dup")] == "duplicate_of_positive"       # near-duplicate wins over above_perc
    assert r[("q1", "p1")] == "positive"
    assert r[("q1", "n1")] == "above_perc"
    assert r[("q1", "n4")] == "not_sampled"                    # tie with n3 at 0.60: n3 has the better rank
    assert r[("q2", "d_same")] == "duplicate_of_positive"      # equal after normalisation
    assert r[("q2", "n7")] == "above_perc" and r[("q2", "n8")] == "above_perc"  # negative scores
    # every scored row is in exactly one place: negatives, dropped, or (unretrieved positive) positives
    pos = art.read("positives")
    unretrieved = sum(x["rank"] is None and x["teacher_score"] is not None for x in pos.to_pylist())
    assert len(_kept(art)) + len(r) + unretrieved == len(SCORE_ROWS)
    assert {x["doc_id"]: x["teacher_score"] for x in pos.to_pylist() if x["query_id"] == "q4"} == {"p3": None}
    d = art.read("dropped").to_pylist()
    dup = next(x for x in d if x["doc_id"] == "d_dup")
    assert dup["duplicate_of"] == "p1" and 0.9 <= dup["similarity"] < 1.0
    n = art.read("negatives").to_pylist()
    assert [x["pos_score"] for x in n if x["query_id"] == "q1"] == pytest.approx([0.70, 0.70])  # min(0.8, 0.7)
    assert all(x["reason_kept"] == "sampled" and not x["filled"] for x in n)
    q = {x["query_id"]: x for x in art.read("queries").to_pylist()}
    assert q["q4"]["candidates"] == 0 and q["q4"]["short"] and q["q4"]["pos_score"] is None  # nothing scored
    assert q["q1"]["eligible"] == 5 and q["q1"]["kept"] == 2
    s = art.stats
    assert s["queries"] == 4 and s["kept"] == 6 and s["queries_without_candidates"] == 1
    assert s["queries_without_positive_score"] == 1
    assert s["candidates"] == len(SCORE_ROWS) - 2          # two positives were not retrieved
    assert s["dropped"] == {"positive": 2, "duplicate_of_positive": 2, "above_perc": 3, "not_sampled": 3}
    assert s["queries_short"] == 1                          # q4 (no candidates)
    assert s["score_quantiles"]["positives"]["n"] == 4  # scored positives (q4's was never scored)
    assert s["score_quantiles"]["kept"]["q50"] < s["score_quantiles"]["positives"]["q50"]
    text = format_summary(s)
    assert "dropped: duplicate_of_positive" in text and "queries short of 2" in text and "positives" in text


def test_skip_when_up_to_date_and_rerun_reuses_duplicates(run, caplog):
    first = run_select(run, rule_params(num_negatives=2))
    again = run_select(run, rule_params(num_negatives=2, shard_queries=1))  # NoFP: still up to date
    assert again.skipped and again.artifact.fingerprint == first.artifact.fingerprint
    with negmine_log(caplog, logging.INFO):
        new = run_select(run, rule_params(num_negatives=2, filter="margin-pos", margin=0.3))
    assert not new.skipped and new.artifact.stats["duplicates_reused"] is True
    assert "reusing 2 near-duplicate(s)" in caplog.text
    # reused duplicates = freshly computed ones
    fresh = build_run(run.parent / "fresh")
    ref = run_select(fresh, rule_params(num_negatives=2, filter="margin-pos", margin=0.3))
    assert ref.artifact.stats["duplicates_reused"] is False
    assert new.artifact.read("dropped").equals(ref.artifact.read("dropped"))
    r = _reasons(new.artifact)
    assert r[("q1", "n2")] == "above_margin"                   # 0.66 >= 0.70 - 0.3
    # a damaged previous artifact is not trusted: duplicates are recomputed
    for p in new.artifact.shard_paths("dropped"):
        p.write_bytes(b"not parquet")
    again = run_select(run, rule_params(num_negatives=2, filter="margin-pos", margin=0.25))
    assert again.artifact.stats["duplicates_reused"] is False
    assert _reasons(again.artifact)[("q1", "d_dup")] == "duplicate_of_positive"
    # changing the dedup threshold recomputes
    other = run_select(run, rule_params(num_negatives=2, dedup_threshold=0.999))
    assert other.artifact.stats["duplicates_reused"] is False
    assert _reasons(other.artifact)[("q1", "d_dup")] == "above_perc"  # no longer a duplicate


def test_upstream_change_invalidates(run):
    first = run_select(run, rule_params(num_negatives=2))
    rows = [r if r[1] != "n9" else ("q2", "n9", 5, -0.2, False) for r in SCORE_ROWS]  # n9 now above perc
    write_scores(run, scores_table(rows))
    res = run_select(run, rule_params(num_negatives=2))
    assert not res.skipped and res.artifact.fingerprint != first.artifact.fingerprint
    assert _reasons(res.artifact)[("q2", "n9")] == "above_perc"


def _concat(art: Artifact, table: str) -> pa.Table:
    return art.read(table)


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """Two identical runs, and a third whose scores artifact is split into 3 shards."""
    tmp = tmp_path_factory.mktemp("twins")
    return build_run(tmp / "a"), build_run(tmp / "b"), build_run(tmp / "c", shards=3)


@pytest.mark.parametrize("sampling", ["uniform", "softmax", "simans"])
def test_byte_identical_and_independent_of_sharding(twin_runs, sampling):
    params = dict(num_negatives=2, sampling=sampling, seed=5, filter="none", temperature=0.5)
    a = run_select(twin_runs[0], rule_params(**params)).artifact
    b = run_select(twin_runs[1], rule_params(**params)).artifact
    for t in ("negatives", "dropped", "positives", "queries"):
        assert [sha256_file(p) for p in a.shard_paths(t)] == [sha256_file(p) for p in b.shard_paths(t)]
    # other output shard size and other upstream sharding: same rows in the same order
    c = run_select(twin_runs[2], rule_params(**params, shard_queries=1)).artifact
    assert len(c.shard_paths("negatives")) == 4
    for t in ("negatives", "dropped", "positives", "queries"):
        assert _concat(a, t).equals(_concat(c, t)), t
    # a different seed gives a different sample (the random samplers are random)
    seeds = {tuple(_kept(run_select(twin_runs[0], rule_params(**{**params, "seed": s})).artifact))
             for s in range(4)}
    assert len(seeds) > 1


def test_queries_spanning_upstream_shards_are_processed_together(tmp_path):
    ref = run_select(build_run(tmp_path / "ref"), rule_params(num_negatives=2)).artifact
    run = build_run(tmp_path / "split")
    table = scores_table()
    ingest = Artifact.open(run / "ingest", stage="ingest")
    w = StageWriter(run / "scores", "score", {"split": True}, {"ingest": ingest.fingerprint}, {"scores": SCORES},
                    main_table="scores")
    w.begin()
    w.write_shard("scores", 0, table.slice(0, 4))   # q1's rows are in both shards
    w.write_shard("scores", 1, table.slice(4))
    w.finish()
    got = run_select(run, rule_params(num_negatives=2)).artifact
    for t in ("negatives", "dropped", "queries"):
        assert got.read(t).equals(ref.read(t)), t


def test_short_policies_on_the_stage(run):
    fill = run_select(run, rule_params(num_negatives=4, short_policy="fill")).artifact
    n = fill.read("negatives").to_pylist()
    q3 = [x for x in n if x["query_id"] == "q3"]
    assert len(q3) == 2  # q3 has only two non-positive candidates: nothing else to fill with
    q2 = [x for x in n if x["query_id"] == "q2"]
    assert [x["doc_id"] for x in q2] == ["n9", "n10", "n7", "n8"]  # sampled, then filled, each hardest first
    assert [x["filled"] for x in q2] == [False, False, True, True]
    assert [x["fill_reason"] for x in q2] == [None, None, "above_perc", "above_perc"]
    assert all(x["doc_id"] not in ("d_same", "p2") for x in q2)  # never a duplicate or a positive
    assert fill.stats["filled"] == 2
    drop = run_select(run, rule_params(num_negatives=3, short_policy="drop")).artifact
    kept_q = {q for q, _ in _kept(drop)}
    assert kept_q == {"q1"}  # q2 (2 eligible), q3 (2), q4 (0) dropped
    r = _reasons(drop)
    assert r[("q2", "n9")] == "query_short" and r[("q2", "d_same")] == "duplicate_of_positive"
    assert drop.stats["queries_dropped"] == 3


def test_rank_window_abs_and_pos_ref(run):
    art = run_select(run, rule_params(num_negatives=8, filter="abs", max_score=0.65, min_score=0.1,
                                       min_rank=2, max_rank=6)).artifact
    r = _reasons(art)
    assert r[("q1", "d_dup")] == "duplicate_of_positive"
    assert r[("q1", "n1")] == "above_abs" and r[("q1", "n2")] == "above_abs"
    assert r[("q1", "n5")] == "out_of_window"
    assert r[("q2", "n10")] == "below_abs" and r[("q3", "n12")] == "below_abs"
    assert r[("q3", "n11")] == "out_of_window"
    mx = run_select(run, rule_params(num_negatives=8, pos_ref="max")).artifact
    assert ("q1", "n1") in _kept(mx)  # s+ = max = 0.80 -> threshold 0.76 > 0.69


def test_resume_after_a_crash(run, monkeypatch, caplog):
    import negmine.select.stage as st

    real = st.select_block
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(st, "select_block", flaky)
    with pytest.raises(RuntimeError):
        run_select(run, rule_params(num_negatives=2, shard_queries=1))
    assert not (run / "negatives").exists()  # nothing half-written where export reads
    monkeypatch.setattr(st, "select_block", real)
    with negmine_log(caplog, logging.INFO):
        res = run_select(run, rule_params(num_negatives=2, shard_queries=1))
    assert "resuming, 8 finished shard(s)" in caplog.text  # 2 blocks x 4 tables
    ref = run_select(build_run(run.parent / "ref"), rule_params(num_negatives=2)).artifact
    assert res.artifact.read("negatives").equals(ref.read("negatives"))
    assert res.artifact.stats["kept"] == ref.stats["kept"]


def test_missing_scores_is_an_input_error(tmp_path, cli):
    run = build_run(tmp_path)
    import shutil

    shutil.rmtree(run / "scores")
    code, out, err = cli("select", run)
    assert code == 2 and "negmine score" in err


def test_cli_select_prints_summary_and_validates(run, cli):
    code, out, err = cli("select", run, "--num-negatives", "2", "--filter", "margin-pos", "--margin", "0.05",
                         "--sampling", "top", "--max-pos-sim", "off")
    assert code == 0, err
    assert "kept negatives" in out and "dropped: above_margin" in out and "teacher score" in out
    mf = json.loads((run / "negatives" / "_manifest.json").read_text())
    assert mf["params"]["margin"] == 0.05 and mf["params"]["filter"] == "margin-pos"
    assert mf["params"]["max_pos_sim"] is None                          # --max-pos-sim off
    code, out, err = cli("select", run, "--perc-pos", "0.9")             # perc_pos without its filter: not ignored
    assert code == 2 and "select.filter=perc-pos" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("select", run, "--min-rank", "10", "--max-rank", "5")
    assert code == 2 and "min_rank" in err
    # (a select run alone starts from the run's recorded config, which holds margin 0.05 now: unset it)
    code, out, err = cli("select", run, "--filter", "margin-pos", "--set", "select.margin=null")
    assert code == 2 and "margin" in err
    code, out, err = cli("select", run, "--set", "select.short_policy=pad")
    assert code == 2
    # --set overrides are validated one by one: a combination is checked as a whole, in any order
    code, out, err = cli("select", run, "--set", "select.filter=margin-pos", "--set", "select.margin=0.1",
                         "--max-pos-sim", "off")
    assert code == 0, err
    code, out, err = cli("select", run, "--filter", "abs")
    assert code == 2 and "max_score" in err


def test_unknown_pos_sim_model_blames_its_own_flag_before_any_work(run, monkeypatch, cli):
    """issue 13: `--pos-sim-model` with an unknown model was reported as `--model` and only after the stage had
    started encoding; now a one-line error naming the flag typed, exit 2, nothing published."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _out, err = cli("select", run, "--max-pos-sim", "0.5", "--pos-sim-model", "no-such-model-anywhere")
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("negmine: error: --pos-sim-model: unknown model 'no-such-model-anywhere'"), err
    assert "embed" not in err  # nothing was encoded before the check
    assert not (run / "negatives").exists()


def test_rows_of_a_query_apart_and_documents_outside_the_corpus(tmp_path):
    """The block reader slices query-grouped scores and regroups interleaved ones to the same output; a block with a
    document that is not in the corpus (joined by string keys instead of corpus rows) still selects it, and a row
    flagged positive by the score stage that is no labelled positive is listed once among the positives."""
    extra = [("q3", "zz_not_in_corpus", 3, 0.04, False), ("q3", "n1", 4, 0.5, True)]
    ref = run_select(build_run(tmp_path / "ref", SCORE_ROWS + extra), rule_params(num_negatives=3)).artifact
    interleaved = sorted(SCORE_ROWS + extra, key=lambda r: (r[2] or 99, r[0]))  # q1, q2, q3, q1, q2, ...
    assert [r[0] for r in interleaved[:3]] == ["q1", "q2", "q3"]
    got = run_select(build_run(tmp_path / "mixed", interleaved), rule_params(num_negatives=3)).artifact
    for t in ("negatives", "dropped", "positives", "queries"):
        assert got.read(t).equals(ref.read(t)), t
    assert ("q3", "zz_not_in_corpus") in _kept(ref) and ("q3", "n11") in _kept(ref)
    assert _reasons(ref)[("q3", "n1")] == "positive"
    pos = [(x["query_id"], x["doc_id"], x["rank"], x["grade"]) for x in ref.read("positives").to_pylist()]
    assert pos == [("q1", "p1", 2, 1.0), ("q1", "p1b", None, 1.0), ("q2", "p2", 4, 1.0), ("q3", "p3", None, 1.0),
                   ("q3", "n1", 4, None), ("q4", "p3", None, 1.0)]
    # the other queries' blocks joined by corpus rows: the same decisions as before the extra rows
    base = run_select(build_run(tmp_path / "base"), rule_params(num_negatives=3)).artifact
    assert [k for k in _kept(ref) if k[0] != "q3"] == [k for k in _kept(base) if k[0] != "q3"]


def test_select_joins_by_the_score_stages_corpus_rows_when_it_wrote_them(tmp_path, monkeypatch):
    """Scores that carry ``corpus_row`` (what the score stage writes) are not looked up in the corpus again: the
    only lookup is the ingest positives', once; the selection is the one of scores without the column."""
    from negmine.io.corpus import CorpusRows

    ref = run_select(build_run(tmp_path / "ref"), rule_params(num_negatives=2)).artifact
    run = build_run(tmp_path / "rows")
    ids = Artifact.open(run / "ingest", stage="ingest").read("corpus", columns=["doc_id"])["doc_id"].to_pylist()
    t = scores_table()
    t = t.set_column(t.schema.get_field_index("corpus_row"), "corpus_row",
                     pa.array([ids.index(d) for d in t["doc_id"].to_pylist()], pa.int32()))
    import shutil

    shutil.rmtree(run / "scores")
    write_scores(run, t)
    looked_up, columns_read = [], []
    real = CorpusRows.rows
    monkeypatch.setattr(CorpusRows, "rows", lambda self, d: looked_up.append(len(d)) or real(self, d))
    real_read = st.read_parquet
    monkeypatch.setattr(st, "read_parquet", lambda paths, columns=None: columns_read.append(
        (Path(paths[0]).parent.name, tuple(columns or ()))) or real_read(paths, columns))
    got = run_select(run, rule_params(num_negatives=2)).artifact
    assert looked_up == [len(Artifact.open(run / "ingest", stage="ingest").read("positives"))]
    # the scores' id strings are not decoded: query ids come as dictionary codes, doc ids from the corpus rows
    scores_cols = {c for d, cols in columns_read if d == "scores" for c in cols}
    assert "corpus_row" in scores_cols and not scores_cols & {"doc_id", "query_id"}, columns_read
    for name in ("negatives", "dropped", "positives", "queries"):
        assert got.read(name).equals(ref.read(name)), name

    # a corpus_row column with a null (a document outside the corpus): the doc ids are read after all
    run2 = build_run(tmp_path / "rows_null")
    shutil.rmtree(run2 / "scores")
    rows = t["corpus_row"].to_pylist()
    write_scores(run2, t.set_column(t.schema.get_field_index("corpus_row"), "corpus_row",
                                    pa.array([None, *rows[1:]], pa.int32())))
    columns_read.clear()
    got2 = run_select(run2, rule_params(num_negatives=2)).artifact
    assert any("doc_id" in cols for d, cols in columns_read if d == "scores")
    for name in ("negatives", "dropped", "positives", "queries"):
        assert got2.read(name).equals(ref.read(name)), name


@pytest.mark.parametrize("case", ["in_order", "chunks", "unused_and_out_of_order", "empty"])
def test_query_codes_from_a_dictionary_column_are_first_appearance_codes(case):
    """The block reader's query codes (from the Parquet dictionary, not the strings) are what dictionary-encoding
    the strings gives: first-appearance order, whatever the dictionary's own order, chunks or unused entries."""
    def col(indices, dictionary):
        return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(dictionary, pa.string()))

    chunks = {
        "in_order": [col([0, 0, 1, 2, 2, 1], ["a", "b", "c"])],
        "chunks": [col([0, 1, 1], ["a", "b"]), col([0, 1, 0], ["c", "a"])],
        "unused_and_out_of_order": [col([2, 2, 0, 3, 0], ["x", "unused", "y", "z"])],
        "empty": [],
    }[case]
    got_q, got_i = st._query_codes(pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string())))
    strings = [v for c in chunks for v in c.cast(pa.string()).to_pylist()]
    enc = pc.dictionary_encode(pa.array(strings, pa.string()))
    assert got_q == enc.dictionary.to_pylist() and got_i.tolist() == enc.indices.to_pylist()
    assert got_i.dtype == np.int64


def test_query_codes_refuse_a_row_without_query_id():
    from negmine.errors import InputError

    col = pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array([0, None], pa.int32()), pa.array(["a"]))])
    with pytest.raises(InputError, match="without query_id") as err:
        st._query_codes(col, "scores/part-00003.parquet")
    assert str(err.value).startswith("scores/part-00003.parquet:row 2")
