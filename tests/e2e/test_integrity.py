"""Never go on with data that cannot be trusted: stale upstream artifacts (the lineage check), damaged shards
(verification on read, repair by re-running, `negmine verify`), two processes on one stage (the run lock).

A small real run: BEIR input → bm25 retrieve → bi-encoder score (the packaged MiniLM) → select → export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from negmine.io.store import Artifact, acquire_lock, release_lock, verify_run

ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^negmine: error: (?P<where>[^:]+?)(?::(?P<loc>\d+|row \d+))?: (?P<msg>.+)$")

WORDS = ("protein cell gene virus tumor immune blood brain heart liver enzyme receptor membrane signal insulin "
         "kinase neuron muscle bone skin").split()


def _dataset(root: Path, name: str, offset: int = 0) -> Path:
    """20 queries, 60 documents; query i has doc i (grade 3) and doc i+20 (grade 1) relevant."""
    d = root / name
    (d / "qrels").mkdir(parents=True)
    docs = [{"_id": f"{name}{j}", "title": "", "text": " ".join(WORDS[(j + k + offset) % 20] for k in range(6))}
            for j in range(60)]
    queries = [{"_id": f"{name}q{i}", "text": " ".join(WORDS[(i + k + offset) % 20] for k in range(3))}
               for i in range(20)]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in queries))
    qrels = ["query-id\tcorpus-id\tscore"] + [f"{name}q{i}\t{name}{i}\t3\n{name}q{i}\t{name}{i + 20}\t1"
                                               for i in range(20)]
    (d / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n")
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm):
    from negmine.cli import run

    tmp = tmp_path_factory.mktemp("integrity")
    src = _dataset(tmp, "a")
    other = _dataset(tmp, "b", offset=7)
    r = tmp / "run"
    for args in (["ingest", src, "--out", r], ["retrieve", r, "--method", "bm25", "--depth", "10"],
                 ["score", r, "--model", minilm], ["select", r, "-k", "3", "--max-pos-sim", "off"], ["export", r]):
        assert run([str(a) for a in args]) == 0, args
    return {"run": r, "src": src, "other": other}


@pytest.fixture
def run_dir(base, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(base["run"], dst)
    return dst


def _one_error(err: str) -> re.Match:
    lines = [line for line in err.strip().splitlines() if line.startswith("negmine: error:")]
    assert len(lines) == 1, err
    m = ERROR_LINE.match(lines[0])
    assert m, lines[0]
    return m


def _manifest(art_dir: Path) -> dict:
    return json.loads((art_dir / "_manifest.json").read_text())


def _flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0x5A
    path.write_bytes(bytes(data))


# ---- stale upstream artifacts ---------------------------------------------------------------------------------

def test_select_after_reingest_with_other_positives_refuses_stale_scores(cli, run_dir, base):
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    before = _manifest(run_dir / "negatives")
    code, _out, err = cli("select", run_dir, "-k", "2")
    assert code == 2, err
    m = _one_error(err)
    # the most upstream stale artifact, and the command that rebuilds it
    assert m["where"].endswith("candidates") and "older ingest" in m["msg"], err
    assert f"negmine retrieve {run_dir}" in m["msg"], err
    assert _manifest(run_dir / "negatives") == before  # nothing published


def test_export_after_reingest_refuses_stale_negatives(cli, run_dir, base):
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    out = run_dir / "again.parquet"
    code, _out, err = cli("export", run_dir, "--out", out)
    assert code == 2, err
    assert "older ingest" in _one_error(err)["msg"] and not out.exists()


def test_score_after_reingesting_another_dataset_is_exit_2_not_keyerror(cli, run_dir, base):
    assert cli("ingest", base["other"], "--out", run_dir)[0] == 0
    code, _out, err = cli("score", run_dir)
    assert code == 2, err
    m = _one_error(err)
    assert m["where"].endswith("candidates") and "negmine retrieve" in m["msg"], err


def test_select_after_rescore_from_stale_candidates_names_scores(cli, run_dir, base, minilm):
    # re-retrieve with other params: scores (built from the old candidates) are stale, the ingest is not
    assert cli("retrieve", run_dir, "--method", "bm25", "--depth", "5")[0] == 0
    code, _out, err = cli("select", run_dir)
    assert code == 2, err
    m = _one_error(err)
    assert m["where"].endswith("scores") and "older candidates" in m["msg"] and "negmine score" in m["msg"], err


def test_rerunning_stale_stages_in_order_succeeds_on_the_new_positives(cli, run_dir, base, minilm):
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    for args in (["retrieve", run_dir, "--method", "bm25", "--depth", "10"], ["score", run_dir, "--model", minilm],
                 ["select", run_dir, "-k", "3", "--max-pos-sim", "off"]):
        code, _out, err = cli(*args)
        assert code == 0, (args, err)
    pos = Artifact.open(run_dir / "negatives").read("positives")
    assert set(pos["doc_id"].to_pylist()) <= {f"a{i}" for i in range(20)}  # grade-1 docs a20..a39 are not
    assert verify_run(run_dir)[0][1] is None


def test_mine_reruns_what_is_stale(cli, run_dir, base, minilm, tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(f"input: {{path: {base['src']}}}\nretrieve: {{method: bm25, depth: 10}}\n"
                   f"score: {{model: {minilm}}}\nselect: {{num_negatives: 3, max_pos_sim: off}}\n")
    assert cli("mine", "--config", cfg, "--out", run_dir)[0] == 0
    # the ingest changes behind mine's back; mine brings every stage after it up to date
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    code, out, err = cli("mine", "--config", cfg, "--out", run_dir)
    assert code == 0, err
    assert all(p is None for _a, p in verify_run(run_dir)), verify_run(run_dir)


# ---- damaged shards -------------------------------------------------------------------------------------------

def test_bitflip_in_scores_shard_is_refused_then_rebuilt_by_rerun(cli, run_dir, minilm):
    shard = run_dir / "scores" / "part-00000.parquet"
    good = shard.read_bytes()
    _flip_byte(shard)
    code, _out, err = cli("select", run_dir, "-k", "2")
    assert code == 2, err
    m = _one_error(err)
    assert m["where"] == str(shard) and "damaged score shard" in m["msg"], err
    assert f"negmine score {run_dir}" in m["msg"], err
    # the stage re-run is not "up to date": it rebuilds the damaged shard, byte-identical to the original
    code, _out, err = cli("score", run_dir, "--model", minilm)
    assert code == 0 and "up to date" not in err, err
    assert shard.read_bytes() == good
    assert cli("select", run_dir, "-k", "2")[0] == 0


def test_truncated_candidates_shard_names_stage_shard_and_fix_not_arrow_error(cli, run_dir):
    shard = run_dir / "candidates" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    code, _out, err = cli("score", run_dir)
    assert code == 2, err
    m = _one_error(err)
    assert m["where"] == str(shard) and "damaged retrieve shard" in m["msg"] and "negmine retrieve" in m["msg"]
    assert "ArrowInvalid" not in err
    assert cli("retrieve", run_dir, "--method", "bm25", "--depth", "10")[0] == 0
    assert verify_run(run_dir)[1][1] is None  # candidates intact again


def test_damaged_corpus_is_noticed_although_the_bm25_index_is_cached(cli, run_dir):
    shard = run_dir / "ingest" / "corpus" / "part-00000.parquet"
    _flip_byte(shard, 0.3)
    code, _out, err = cli("retrieve", run_dir, "--method", "bm25", "--depth", "7")
    assert code == 2, err
    m = _one_error(err)
    assert m["where"] == str(shard) and "damaged ingest shard" in m["msg"] and "negmine ingest" in m["msg"], err


def test_rerun_rebuilds_only_the_damaged_shards(tmp_path):
    import pyarrow as pa

    from negmine.io.store import StageWriter

    schema = pa.schema([("x", pa.int64())])

    def run_once(compute: list[int]) -> Artifact:
        w = StageWriter(tmp_path / "out", "test", {"k": 1}, {}, {"t": schema}, main_table="t")
        if (done := w.up_to_date()) is not None:
            return done
        w.begin()
        for i in range(3):
            if not w.has_shard("t", i):
                compute.append(i)
                w.write_shard("t", i, pa.table({"x": [i, i + 1]}, schema=schema))
        return w.finish()

    first: list[int] = []
    art = run_once(first)
    assert first == [0, 1, 2]
    _flip_byte(art.shard_paths()[1])
    again: list[int] = []
    art = run_once(again)
    assert again == [1] and art.damaged() == []
    skipped: list[int] = []
    run_once(skipped)
    assert skipped == []


def test_verify_command_reports_damage_and_staleness(cli, run_dir, base):
    code, out, err = cli("verify", run_dir)
    assert code == 0, err
    assert out.count("ok ") == 5 and "FAILED" not in out  # ingest, candidates, scores, negatives, export
    _flip_byte(run_dir / "negatives" / "part-00000.parquet")
    code, out, err = cli("verify", run_dir)
    assert code == 2
    assert "FAILED" in out and "damaged shard part-00000.parquet" in out and "negmine select" in out
    m = _one_error(err)
    assert m["where"].endswith("negatives")
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    code, out, _err = cli("verify", run_dir)
    assert code == 2 and re.search(r"FAILED .*candidates: built from an older ingest", out), out


def test_export_output_damaged_is_rewritten(cli, run_dir):
    out = run_dir / "export" / "triplet.parquet"
    _flip_byte(out)
    code, _o, err = cli("verify", run_dir)
    assert code == 2 and "triplet.parquet" in err, err
    assert cli("export", run_dir)[0] == 0
    assert cli("verify", run_dir)[0] == 0


# ---- two processes on one stage ------------------------------------------------------------------------------

def _hold_lock(lock: Path, seconds: float) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from negmine.io.store import acquire_lock; "
            f"acquire_lock(Path({str(lock)!r}), 'select'); print('locked', flush=True); time.sleep({seconds})")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_second_process_on_same_stage_exits_2_with_holder_pid(cli, run_dir):
    holder = _hold_lock(run_dir / ".negatives.lock", 60)
    try:
        before = _manifest(run_dir / "negatives")
        code, _out, err = cli("select", run_dir, "-k", "2")
        assert code == 2, err
        m = _one_error(err)
        assert f"pid {holder.pid}" in m["msg"] and "negmine select" in m["msg"], err
        assert _manifest(run_dir / "negatives") == before
        assert not list(run_dir.glob(".negatives.staging-*"))
    finally:
        holder.kill()
        holder.wait()


def test_second_process_waits_for_the_lock_with_negmine_lock_wait(cli, run_dir, monkeypatch):
    holder = _hold_lock(run_dir / ".negatives.lock", 1.5)
    monkeypatch.setenv("NEGMINE_LOCK_WAIT", "30")
    t0 = time.time()
    try:
        code, _out, err = cli("select", run_dir, "-k", "2")
    finally:
        holder.wait()
    assert code == 0, err
    assert time.time() - t0 >= 1.0
    assert not (run_dir / ".negatives.lock").exists()  # the lock file does not outlive the stage


def test_lock_released_and_retaken_in_one_process(tmp_path):
    lock = tmp_path / ".x.lock"
    acquire_lock(lock, "x")
    acquire_lock(lock, "x")  # a stage of this process that failed without releasing: taken over
    release_lock(lock)
    assert not lock.exists()
    assert os.listdir(tmp_path) == []


# ---- no leftovers ---------------------------------------------------------------------------------------------

def test_kill_between_publish_renames_keeps_the_finished_artifact_and_removes_trash(tmp_path, monkeypatch):
    import pyarrow as pa

    from negmine.io import store
    from negmine.io.store import StageWriter

    schema = pa.schema([("x", pa.int64())])

    def writer(k: int) -> StageWriter:
        return StageWriter(tmp_path / "out", "test", {"k": k}, {}, {"t": schema}, main_table="t")

    def build(k: int) -> Artifact:
        w = writer(k)
        w.begin()
        w.write_shard("t", 0, pa.table({"x": [k]}, schema=schema))
        return w.finish()

    build(1)
    real_replace = os.replace

    def killed_after_first_rename(src, dst):
        if Path(dst) == tmp_path / "out" and ".staging-" in str(src):
            raise KeyboardInterrupt  # the kill: the old artifact is in .trash-*, the new one still staged
        return real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt):
        build(2)
    monkeypatch.setattr(store.os, "replace", real_replace)
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out.trash-*"))
    done = writer(2).up_to_date()  # the next run publishes the finished staging directory instead of redoing it
    assert done is not None and done.read()["x"].to_pylist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_killed_export_temp_file_is_removed_at_the_next_export(cli, run_dir):
    out = run_dir / "export" / "triplet.parquet"
    stale = out.with_name(f".{out.name}.tmp-deadbeef")
    stale.write_bytes(b"x" * 1000)  # what a kill -9 during the write leaves
    code, _o, err = cli("export", run_dir)
    assert code == 0 and "up to date" in err, err
    assert not stale.exists()
    stale.write_bytes(b"x" * 1000)
    assert cli("export", run_dir, "--with-ids")[0] == 0
    assert not stale.exists() and not list(out.parent.glob(".*.lock"))


def test_export_out_naming_a_directory_is_bad_input(cli, run_dir):
    code, _o, err = cli("export", run_dir, "--out", run_dir / "negatives")
    assert code == 2, err
    m = _one_error(err)
    assert m["where"] == "--out" and "directory" in m["msg"]


def test_select_refuses_a_calibration_fitted_on_older_scores(cli, run_dir):
    import pyarrow as pa

    from negmine.io.store import StageWriter

    ingest = Artifact.open(run_dir / "ingest")
    schema = pa.schema([("query_id", pa.string())])
    scores = Artifact.open(run_dir / "scores")
    w = StageWriter(run_dir / "calibration", "calibrate", {}, {"ingest": ingest.fingerprint,
                                                               "scores": scores.fingerprint},
                    {"judged": schema}, main_table="judged")
    w.begin()
    w.finish()
    mf = run_dir / "calibration" / "_manifest.json"  # as if fitted on scores that were re-computed since
    m = json.loads(mf.read_text())
    m["inputs"]["scores"] = "0" * 64
    mf.write_text(json.dumps(m))
    code, _out, err = cli("select", run_dir, "-k", "2")
    assert code == 2, err
    m = _one_error(err)
    assert m["where"].endswith("calibration") and "older scores" in m["msg"] and "negmine calibrate" in m["msg"]
    code, _out, err = cli("select", run_dir, "-k", "2", "--no-calibration")
    assert code == 0, err


@pytest.mark.parametrize("shards, kept", [(0, False), (1, True)], ids=["nothing_done", "one_shard_done"])
def test_failed_stage_removes_its_staging_dir_unless_it_has_shards_to_resume(tmp_path, shards, kept):
    code = f"""
import pyarrow as pa
from pathlib import Path
from negmine.io.store import StageWriter
schema = pa.schema([("x", pa.int64())])
w = StageWriter(Path({str(tmp_path / "out")!r}), "test", {{}}, {{}}, {{"t": schema}}, main_table="t")
w.begin()
for i in range({shards}):
    w.write_shard("t", i, pa.table({{"x": [i]}}, schema=schema))
raise RuntimeError("the stage failed")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1 and "the stage failed" in p.stderr
    staging = list(tmp_path.glob(".out.staging-*"))
    assert bool(staging) is kept  # kept only when a re-run has finished shards to resume from
    assert not (tmp_path / ".out.lock").exists() and not (tmp_path / "out").exists()


def test_calibrate_refuses_scores_built_from_an_older_ingest_before_asking_a_judge(cli, run_dir, base):
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    code, _out, err = cli("calibrate", run_dir, "--set", "calibrate.tiers=[{model: m, base_url: 'http://127.0.0.1:9/v1'}]")
    assert code == 2, err
    m = _one_error(err)
    assert m["where"].endswith("candidates") and "older ingest" in m["msg"] and "negmine retrieve" in m["msg"], err
    assert not (run_dir / "calibration").exists()


def test_eval_refuses_negatives_selected_from_an_older_ingest(cli, run_dir, base):
    qrels = base["src"] / "qrels" / "train.tsv"
    assert cli("eval", run_dir, "--qrels", qrels)[0] == 0
    assert cli("ingest", base["src"], "--out", run_dir, "--min-grade", "3")[0] == 0
    code, _out, err = cli("eval", run_dir, "--qrels", qrels)
    assert code == 2, err
    assert "older ingest" in _one_error(err)["msg"]


def test_eval_refuses_a_damaged_negatives_shard(cli, run_dir, base):
    _flip_byte(run_dir / "negatives" / "part-00000.parquet")
    code, _out, err = cli("eval", run_dir, "--qrels", base["src"] / "qrels" / "train.tsv")
    assert code == 2, err
    assert "damaged select shard" in _one_error(err)["msg"]


def test_eval_ignores_a_relabel_made_from_an_older_select(cli, run_dir, base):
    import pyarrow as pa

    from negmine.io.store import StageWriter

    qrels = base["src"] / "qrels" / "train.tsv"
    code, before, _err = cli("eval", run_dir, "--qrels", qrels, "--json")
    assert code == 0
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string())])
    w = StageWriter(run_dir / "relabel", "relabel", {}, {"negatives": Artifact.open(run_dir / "negatives").fingerprint},
                    {"negatives": schema}, main_table="negatives")
    w.begin()
    w.write_shard("negatives", 0, pa.table({"query_id": ["aq0"], "doc_id": ["a1"]}, schema=schema))
    w.finish()
    mf = run_dir / "relabel" / "_manifest.json"  # as if made from a select run that was re-run since
    m = json.loads(mf.read_text())
    m["inputs"]["negatives"] = "0" * 64
    mf.write_text(json.dumps(m))
    code, after, err = cli("eval", run_dir, "--qrels", qrels, "--json")
    assert code == 0, err
    assert json.loads(after) == json.loads(before) and "older select run and is ignored" in err


def test_stage_refuses_to_publish_when_an_input_changed_while_it_ran(run_dir):
    """issue 13, locks across stages: each stage locks only its own output, so another process may re-run an
    upstream stage while a stage runs; publishing then would mix old and new inputs under a manifest naming the old
    ones. The writer re-checks its inputs' fingerprints before publishing: RuntimeFailure, nothing published."""
    import pyarrow as pa

    from negmine.errors import RuntimeFailure
    from negmine.io.store import StageWriter

    scores = Artifact.open(run_dir / "scores")
    before = sorted(p.name for p in run_dir.iterdir())
    schema = pa.schema([("query_id", pa.string())])
    w = StageWriter(run_dir / "calibration", "calibrate", {}, {"scores": scores.fingerprint}, {"judged": schema},
                    main_table="judged")
    w.begin()
    w.write_shard("judged", 0, pa.table({"query_id": ["q"]}, schema=schema))
    mf = run_dir / "scores" / "_manifest.json"  # another process re-ran `negmine score` meanwhile
    m = json.loads(mf.read_text())
    m["fingerprint"] = "f" * 64
    mf.write_text(json.dumps(m))
    with pytest.raises(RuntimeFailure, match="scores changed while calibrate was running"):
        w.finish()
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing published, no staging left
