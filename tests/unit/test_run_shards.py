"""`run_shards`, the one shard loop of every stage, and its executor seam: resume, order, discard on bad input, and
that an engine which computes elsewhere only has to supply ``map_shards``."""

from __future__ import annotations

import pyarrow as pa
import pytest

from negmine.engine import LocalEngine, current, use_engine
from negmine.engine.params import EngineParams
from negmine.errors import InputError
from negmine.io.store import StageWriter, run_shards

SCHEMA = pa.schema([("x", pa.int64())])
TABLES = {"a": SCHEMA, "b": SCHEMA}


def writer(tmp_path):
    return StageWriter(tmp_path / "out", "test", {"p": 1}, {}, TABLES, main_table="a")


def compute_for(calls):
    def compute(i, unit):
        calls.append(i)
        return {"a": pa.table({"x": [unit]}, schema=SCHEMA), "b": pa.table({"x": [unit * 10]}, schema=SCHEMA)}
    return compute


def test_every_shard_is_computed_written_and_reported_in_order(tmp_path):
    w, calls, seen = writer(tmp_path), [], []
    run_shards(w, enumerate([5, 6, 7]), compute_for(calls),
               on_shard=lambda i, u, t, resumed: seen.append((i, u, t["b"]["x"][0].as_py(), resumed)))
    art = w.finish()
    assert calls == [0, 1, 2]
    assert seen == [(0, 5, 50, False), (1, 6, 60, False), (2, 7, 70, False)]
    assert art.read("a")["x"].to_pylist() == [5, 6, 7] and art.read("b")["x"].to_pylist() == [50, 60, 70]


def test_a_resumed_run_computes_only_the_unfinished_shards(tmp_path):
    w = writer(tmp_path)
    calls: list[int] = []

    def dies_at_2(i, unit):
        if i == 2:
            raise RuntimeError("killed")
        return compute_for(calls)(i, unit)

    with pytest.raises(RuntimeError):
        run_shards(w, enumerate([5, 6, 7, 8]), dies_at_2)
    calls.clear()
    w2, seen = writer(tmp_path), []
    run_shards(w2, enumerate([5, 6, 7, 8]), compute_for(calls), read_resumed=True,
               on_shard=lambda i, u, t, resumed: seen.append((i, resumed, t["a"]["x"][0].as_py())))
    art = w2.finish()
    assert calls == [2, 3]  # shards 0 and 1 were kept
    assert seen == [(0, True, 5), (1, True, 6), (2, False, 7), (3, False, 8)]
    assert art.manifest["resumed_shards"] == 4  # two shards of two tables
    assert art.read("a")["x"].to_pylist() == [5, 6, 7, 8]


def test_a_shard_with_one_table_missing_is_computed_again(tmp_path):
    w = writer(tmp_path)
    w.begin()
    w.write_shard("a", 0, pa.table({"x": [5]}, schema=SCHEMA))  # killed between the two tables of shard 0
    calls: list[int] = []
    run_shards(w, enumerate([5]), compute_for(calls))
    assert calls == [0] and w.finish().read("b")["x"].to_pylist() == [50]


def test_bad_input_discards_the_staging_directory(tmp_path):
    w = writer(tmp_path)

    def bad(i, unit):
        if i == 1:
            raise InputError("bad row", "x")
        return compute_for([])(i, unit)

    with pytest.raises(InputError):
        run_shards(w, enumerate([1, 2]), bad)
    assert not w.staging.exists()


class RecordingEngine(LocalEngine):
    """An engine that computes every pending shard itself (here: in reverse, then yields them in order), as an
    engine that computes elsewhere would: the stage does not change."""

    name = "recording"

    def __init__(self):
        self.computed = []

    def map_shards(self, compute, plan):
        plan = list(plan)
        done = {i: compute(i, u) for i, u, resumed in reversed(plan) if not resumed}
        self.computed += sorted(done)
        for i, u, resumed in plan:
            yield i, u, done.get(i), resumed


def test_the_executor_is_the_seam(tmp_path):
    eng = RecordingEngine()
    w, calls = writer(tmp_path), []
    run_shards(w, enumerate([1, 2, 3]), compute_for(calls), executor=eng)
    assert calls == [2, 1, 0] and eng.computed == [0, 1, 2]
    assert w.finish().read("a")["x"].to_pylist() == [1, 2, 3]


def test_run_shards_uses_the_current_engine(tmp_path, monkeypatch):
    eng = RecordingEngine()
    monkeypatch.setattr("negmine.engine.make_engine", lambda params: eng)
    with use_engine(EngineParams(kind="ray")):
        assert current() is eng
        w = writer(tmp_path)
        run_shards(w, enumerate([1, 2]), compute_for([]))
    assert eng.computed == [0, 1] and current().name == "local"


def test_engine_params_check_the_address():
    assert EngineParams(address="10.0.0.1:6379").address == "10.0.0.1:6379"
    assert EngineParams(address="ray://head:10001").address == "ray://head:10001"
    for bad in ("nonsense", "host:port", "host:0", "http://x/y:1"):
        with pytest.raises(ValueError):
            EngineParams(address=bad)


def test_mine_names_a_bad_engine_flag(tmp_path, cli):
    code, _, err = cli("mine", "--config", "configs/demo.yaml", "--out", tmp_path / "run", "--engine", "spark")
    assert code == 2 and "--engine" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("mine", "--config", "configs/demo.yaml", "--out", tmp_path / "run", "--set",
                       "engine.kind=spark")
    assert code == 2 and "--set" in err and "engine.kind" in err
    assert not (tmp_path / "run").exists()


def test_the_engine_is_not_part_of_the_recorded_config():
    from negmine.config import Config, effective_config

    assert "engine" not in effective_config(Config(engine=EngineParams(kind="ray")))


def test_threaded_shards_compute_concurrently_and_yield_in_order(tmp_path):
    """select's executor: two shards are computed at once (each compute waits for the other at a barrier, which
    one thread at a time could never pass), written and reported in order, resumed shards not recomputed, the
    output the same as the one-by-one loop's."""
    import threading

    from negmine.engine import ThreadedShards

    barrier = threading.Barrier(2, timeout=20)
    calls = []

    def compute(i, unit):
        calls.append(i)
        if i < 2:
            barrier.wait()  # BrokenBarrierError after 20 s unless shards 0 and 1 run at the same time
        return {"a": pa.table({"x": [unit]}, schema=SCHEMA), "b": pa.table({"x": [unit * 10]}, schema=SCHEMA)}

    w, seen = writer(tmp_path), []
    run_shards(w, enumerate([5, 6, 7, 8]), compute, executor=ThreadedShards(2),
               on_shard=lambda i, u, t, resumed: seen.append((i, u, resumed)))
    art = w.finish()
    assert sorted(calls) == [0, 1, 2, 3] and seen == [(0, 5, False), (1, 6, False), (2, 7, False), (3, 8, False)]
    assert art.read("a")["x"].to_pylist() == [5, 6, 7, 8] and art.read("b")["x"].to_pylist() == [50, 60, 70, 80]

    plan = [(0, 5, True), (1, 6, False), (2, 7, True)]
    out = list(ThreadedShards(2).map_shards(lambda i, u: {"u": u}, iter(plan)))
    assert out == [(0, 5, None, True), (1, 6, {"u": 6}, False), (2, 7, None, True)]


def test_threaded_shards_raise_the_failure_of_a_shard():
    from negmine.engine import ThreadedShards

    def compute(i, unit):
        if i == 1:
            raise ValueError("shard 1 broke")
        return {"u": unit}

    got = []
    with pytest.raises(ValueError, match="shard 1 broke"):
        for item in ThreadedShards(2).map_shards(compute, iter([(i, i, False) for i in range(5)])):
            got.append(item[0])
    assert got == [0]
