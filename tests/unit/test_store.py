"""The artifact store: atomic shards, manifest last, skip when up to date, resume from finished shards."""

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from negmine import __version__
from negmine.errors import InputError
from negmine.io.store import (
    MANIFEST,
    SCHEMA_VERSION,
    Artifact,
    StageWriter,
    hash_json,
    input_fingerprint,
    write_parquet_atomic,
)
from negmine.params_base import NoFP, Params

SCHEMA = pa.schema([("query_id", pa.string()), ("score", pa.float32())])
SIDE = pa.schema([("query_id", pa.string()), ("why", pa.string())])


def part(i: int, n: int = 3) -> pa.Table:
    return pa.table({"query_id": [f"q{i}-{j}" for j in range(n)], "score": [float(j) for j in range(n)]},
                    schema=SCHEMA)


def writer(root: Path, params=None, inputs=None, **kw) -> StageWriter:
    return StageWriter(root / "stage", "test", params if params is not None else {"k": 1},
                       inputs if inputs is not None else {"up": "abc"},
                       {"main": SCHEMA, "side": SIDE}, main_table="main", **kw)


def run_stage(root: Path, n_shards: int = 3, **kw) -> Artifact:
    w = writer(root, **kw)
    w.begin()
    for i in range(n_shards):
        w.write_shard("main", i, part(i))
    w.write_shard("side", 0, pa.table({"query_id": ["q0-0"], "why": ["because"]}, schema=SIDE))
    return w.finish(stats={"n": n_shards}, timings={"work": 0.5})


def test_manifest_contents(tmp_path):
    art = run_stage(tmp_path)
    m = json.loads((tmp_path / "stage" / MANIFEST).read_text())
    assert m["stage"] == "test" and m["schema_version"] == SCHEMA_VERSION and m["negmine_version"] == __version__
    assert m["params"] == {"k": 1} and m["inputs"] == {"up": "abc"} and len(m["fingerprint"]) == 64
    assert m["timings"] == {"work": 0.5} and m["stats"] == {"n": 3} and m["started"] and m["finished"]
    assert m["rows"] == 10 and m["resumed_shards"] == 0
    shards = m["tables"]["main"]["shards"]
    assert [s["rows"] for s in shards] == [3, 3, 3] and m["tables"]["main"]["rows"] == 9
    for s in shards:  # sha256 of the shard file's bytes
        assert s["sha256"] == hashlib.sha256((tmp_path / "stage" / s["file"]).read_bytes()).hexdigest()
    assert m["tables"]["side"]["dir"] == "side" and (tmp_path / "stage" / "side" / "part-00000.parquet").is_file()
    assert art.read("main").num_rows == 9 and art.read("main").column("query_id")[3].as_py() == "q1-0"
    assert [t.num_rows for t in art.iter_shards("side")] == [1]


def test_empty_table_gets_one_empty_shard(tmp_path):
    w = writer(tmp_path)
    w.begin()
    w.write_shard("main", 0, part(0))
    art = w.finish()
    assert art.num_rows("side") == 0 and art.read("side").schema == SIDE


def test_skip_when_up_to_date_and_rerun_when_params_or_inputs_change(tmp_path):
    art = run_stage(tmp_path)
    same = writer(tmp_path).up_to_date()
    assert same is not None and same.fingerprint == art.fingerprint
    assert writer(tmp_path, params={"k": 2}).up_to_date() is None
    assert writer(tmp_path, inputs={"up": "abd"}).up_to_date() is None
    # a missing shard makes the artifact stale too
    (tmp_path / "stage" / "part-00001.parquet").unlink()
    assert writer(tmp_path).up_to_date() is None


def test_fingerprint_ignores_nofp_params_and_key_order():
    class P(Params):
        depth: int = 10
        batch_size: int = NoFP(32)

    a, b = P(), P(batch_size=256)
    assert a.fingerprint_dict() == b.fingerprint_dict() == {"depth": 10}
    assert P(depth=11).fingerprint_dict() != a.fingerprint_dict()
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})


def test_resume_keeps_finished_shards(tmp_path):
    w = writer(tmp_path)
    w.begin()
    w.write_shard("main", 0, part(0))
    w.write_shard("main", 1, part(1))
    (w.staging / ".part-00002.parquet.tmp-dead").write_bytes(b"half a shard")  # a kill mid-write
    kept = {i: os.stat(w.staging / f"part-0000{i}.parquet").st_ino for i in (0, 1)}
    assert not (tmp_path / "stage").exists()  # nothing published before finish
    # "killed" here; a new process with the same fingerprint resumes
    w2 = writer(tmp_path)
    w2.begin()
    assert w2.resumed_shards == 2 and w2.has_shard("main", 0) and w2.has_shard("main", 1)
    assert not w2.has_shard("main", 2) and not list(w2.staging.glob(".*.tmp-*"))
    assert w2.read_shard("main", 1).equals(part(1))
    w2.write_shard("main", 2, part(2))
    art = w2.finish()
    assert art.manifest["resumed_shards"] == 2 and art.num_rows("main") == 9
    assert {i: os.stat(tmp_path / "stage" / f"part-0000{i}.parquet").st_ino for i in (0, 1)} == kept


@pytest.mark.parametrize("change", ["fingerprint", "resume_params"])
def test_stale_staging_is_discarded(tmp_path, change):
    w = writer(tmp_path, resume_params={"shard_rows": 10})
    w.begin()
    w.write_shard("main", 0, part(0))
    kw = {"params": {"k": 2}} if change == "fingerprint" else {"resume_params": {"shard_rows": 20}}
    w2 = writer(tmp_path, **({"resume_params": {"shard_rows": 10}} | kw))
    w2.begin()
    assert w2.resumed_shards == 0 and not w2.has_shard("main", 0)
    assert [p.name for p in tmp_path.iterdir() if p != w2.lock_path] == [w2.staging.name]  # + the run lock


def test_directory_without_manifest_is_never_read(tmp_path):
    w = writer(tmp_path)
    w.begin()
    w.write_shard("main", 0, part(0))
    # a directory with shards but no manifest (e.g. copied by hand, or a foreign half-written one)
    d = tmp_path / "stage"
    d.mkdir()
    write_parquet_atomic(part(0), d / "part-00000.parquet")
    with pytest.raises(InputError, match="no finished test artifact"):
        Artifact.open(d, stage="test", hint="run `negmine test` first")
    with pytest.raises(InputError):
        Artifact.open(w.staging)  # the staging directory has no manifest either
    assert writer(tmp_path).up_to_date() is None


def test_open_checks_stage_and_schema_version(tmp_path):
    run_stage(tmp_path)
    with pytest.raises(InputError, match="expected a 'retrieve' artifact"):
        Artifact.open(tmp_path / "stage", stage="retrieve")
    mf = tmp_path / "stage" / MANIFEST
    m = json.loads(mf.read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    mf.write_text(json.dumps(m))
    with pytest.raises(InputError, match="schema version"):
        Artifact.open(tmp_path / "stage")
    mf.write_text("{not json")
    with pytest.raises(InputError, match="unreadable manifest"):
        Artifact.open(tmp_path / "stage")


def test_swap_leaves_no_staging_or_trash(tmp_path):
    first = run_stage(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    second = run_stage(tmp_path, params={"k": 2}, n_shards=2)  # replaces the existing artifact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    assert second.fingerprint != first.fingerprint
    assert Artifact.open(tmp_path / "stage").num_rows("main") == 6
    assert not list((tmp_path / "stage").rglob(".*"))  # no temporaries inside either


def test_discard_removes_staging(tmp_path):
    w = writer(tmp_path)
    w.begin()
    w.write_shard("main", 0, part(0))
    w.discard()
    assert list(tmp_path.iterdir()) == []


def test_input_fingerprint_is_content_based(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    b.parent.mkdir()
    a.write_bytes(b"same bytes\n" * 1000)
    b.write_bytes(b"same bytes\n" * 1000)
    assert input_fingerprint([a]) == input_fingerprint([b])
    b.write_bytes(b"same bytes\n" * 999 + b"Same bytes\n")
    assert input_fingerprint([a]) != input_fingerprint([b])
    assert input_fingerprint([a, b]) != input_fingerprint([b, a])


def test_ingest_skip_rerun_and_nofp(tmp_path, cli):
    src = tmp_path / "pairs.jsonl"
    src.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "p2"}\n')
    run = tmp_path / "run"
    assert cli("ingest", src, "--out", run)[0] == 0
    fp = Artifact.open(run / "ingest").fingerprint
    code, _, err = cli("ingest", src, "--out", run, "--shard-rows", "1")  # NoFP: same content, skipped
    assert code == 0 and "up to date" in err
    code, _, err = cli("ingest", src, "--out", run, "--min-grade", "0.5")  # a param that matters: re-run
    assert code == 0 and "up to date" not in err
    fp2 = Artifact.open(run / "ingest").fingerprint
    assert fp2 != fp
    src.write_text('{"query": "q1", "positive": "p1"}\n')  # changed input: re-run
    code, _, err = cli("ingest", src, "--out", run, "--min-grade", "0.5")
    assert code == 0 and "up to date" not in err and Artifact.open(run / "ingest").num_rows("queries") == 1
    moved = tmp_path / "moved.jsonl"  # same bytes elsewhere: up to date (paths are not fingerprinted)
    moved.write_bytes(src.read_bytes())
    code, _, err = cli("ingest", moved, "--out", run, "--min-grade", "0.5")
    assert code == 0 and "up to date" in err
