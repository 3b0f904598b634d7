"""`--engine ray` on a local Ray cluster (one for the module): `negmine mine --engine ray` (its model work done by Ray
worker actors) writes the same candidates, negatives and export as `negmine mine` on the local engine, scores agree
within fp16 tolerance, manifests and fingerprints are the same; a worker killed with SIGKILL mid-stage is replaced
and the stage completes with no lost or duplicated row; a driver killed mid-stage resumes to the same output. Models
are tiny (random BERTs built from a config with the packaged tokenizer), so the time goes to Ray, not to the models.

Where the time goes is Ray: starting a worker actor (a Python process that imports torch and loads a model) costs
seconds on a loaded 2-core box, so the module starts as few as it can. The two `negmine mine` runs are the data of
every comparison test; the Ray engine the mine run made is kept open (its close deferred to the module's end), so the
in-process tests reuse its two warm workers; the cluster has one logical CPU more than those two workers hold, for
the one worker of the `negmine score` child that the driver-kill test starts while they are alive."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from negmine.io.ingest import run_ingest
from negmine.io.params import IngestParams
from negmine.io.store import MANIFEST, Artifact
from negmine.retrieve.params import RetrieveParams
from negmine.score.params import ScoreParams
from negmine.score.stage import run_score

# `make install` installs the [ray] extra: in CI a missing ray is a failure, not a silent skip
ray = __import__("ray") if os.environ.get("CI") else pytest.importorskip("ray")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENGINE = {"batch_size": 16, "workers": 2}  # the config's engine section (kind from --engine): 2 workers, many blocks
CLUSTER_CPUS = ENGINE["workers"] + 1      # + 1 for the driver-kill test's child (engine.workers=1)
TIMES = ("started", "finished", "seconds", "timings")  # what differs between any two runs of a stage


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray cluster for the module; its address for subprocesses. A fresh embedding cache, so the Ray
    engine really embeds."""
    cache = tmp_path_factory.mktemp("ray_cache")
    old = os.environ.get("NEGMINE_CACHE_DIR")
    os.environ["NEGMINE_CACHE_DIR"] = str(cache)
    ray.init(num_cpus=CLUSTER_CPUS, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("NEGMINE_CACHE_DIR", None)
        else:
            os.environ["NEGMINE_CACHE_DIR"] = old


def _tiny_bert(out: Path, minilm: str, *, labels: int | None) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tok = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, initializer_range=0.5,
                     **({"num_labels": labels} if labels else {}))
    (BertForSequenceClassification(cfg) if labels else BertModel(cfg)).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, minilm):
    """(bi-encoder dir, cross-encoder dir): 2-layer BERTs with random weights; the bi-encoder mean-pools."""
    from sentence_transformers import SentenceTransformer, models

    root = tmp_path_factory.mktemp("tiny_models")
    bert = _tiny_bert(root / "bert", minilm, labels=None)
    st = SentenceTransformer(modules=[models.Transformer(bert, max_seq_length=128),
                                      models.Pooling(32, pooling_mode="mean")], device="cpu")
    st.save(str(root / "bi"))
    return str(root / "bi"), _tiny_bert(root / "ce", minilm, labels=1)


@pytest.fixture(scope="module")
def ingested(cranfield_small, tmp_path_factory):
    run = tmp_path_factory.mktemp("ray_base") / "run"
    run_ingest(run, IngestParams(path=str(cranfield_small), split="test"))
    return run


def copy_run(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    return dst


def retrieve_params(bi: str) -> RetrieveParams:
    return RetrieveParams(method="dense", model=bi, depth=20, shard_queries=16)


def score_params(ce: str) -> ScoreParams:
    """max_length 128: Cranfield pairs run to ~400 tokens, a quarter of the model work for the same checks. Backend
    onnx (an exported runner on the workers), not auto: auto would also build and gate OpenVINO and int8 exports of
    the random model, which fail its gate here (the bi-encoder's auto is still resolved on the driver)."""
    return ScoreParams(teacher="cross-encoder", model=ce, shard_queries=16, activation="none", max_length=128,
                       encoder_backend="onnx")


def mine_config(path: Path, data: Path, bi: str, ce: str) -> Path:
    """The config both `negmine mine` runs take (the Ray one adds --engine ray): retrieve and score as
    :func:`retrieve_params` / :func:`score_params`; select's similarity rule on the tiny bi-encoder's cached vectors."""
    import yaml

    path.write_text(yaml.safe_dump({
        "input": {"path": str(data), "split": "test"},
        "retrieve": retrieve_params(bi).model_dump(exclude_defaults=True),
        "score": score_params(ce).model_dump(exclude_defaults=True),
        "select": {"num_negatives": 4, "pos_sim_model": bi},
        "export": {"format": "triplet"},
        "engine": ENGINE,
    }))
    return path


def same_manifest(a: Artifact, b: Artifact, *, shards: bool = True) -> None:
    ma = {k: v for k, v in a.manifest.items() if k not in TIMES}
    mb = {k: v for k, v in b.manifest.items() if k not in TIMES}
    if not shards:
        for m in (ma, mb):
            for t in m["tables"].values():
                t["shards"] = [s["rows"] for s in t["shards"]]
            m["stats"] = {k: v for k, v in m["stats"].items() if "score" not in k}
    assert ma == mb


class Recording:
    """A kernel that notes ``KIND PID`` in a file for each block it computes, then computes it with the real
    kernel: the proof that blocks were computed by Ray workers (processes other than the driver)."""

    kind = real = path = ""

    def __init__(self, spec):
        self.inner = self.real(spec)

    def __call__(self, block):
        with open(self.path, "a") as f:
            f.write(f"{self.kind} {os.getpid()}\n")
        return self.inner(block)


@dataclasses.dataclass
class Mined:
    runs: dict[str, Path]     # engine kind -> run directory of `negmine mine`
    logs: dict[str, str]      # engine kind -> its stderr (log lines)
    calls: list[tuple[str, int]]  # (kernel, pid) of every block the Ray workers computed
    engine: object            # the Ray engine the Ray run made, still open


@pytest.fixture(scope="module")
def mined(cluster, cranfield_small, tiny_models, tmp_path_factory):
    """`negmine mine --engine ray` (cold embedding cache: the workers embed) and `negmine mine` on the local engine,
    same config, in-process (the module's cluster is the one Ray connects to). The Ray engine is kept open for the
    other tests (its close is deferred to the module's end)."""
    from ray import cloudpickle

    import negmine.engine.ray as engine_ray
    from negmine.cli import run as negmine

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    root = tmp_path_factory.mktemp("ray_vs_local")
    cfg = mine_config(root / "mine.yaml", cranfield_small, *tiny_models)
    calls = root / "worker-calls"
    made: list = []
    real_close = engine_ray.RayEngine.close
    runs, logs = {}, {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_ray, "KERNELS", {k: type(f"Recording_{k.replace('-', '_')}", (Recording,), {
            "kind": k, "real": v, "path": str(calls)}) for k, v in engine_ray.KERNELS.items()})
        mp.setattr(engine_ray.RayEngine, "close", lambda self: made.append(self))
        for kind in ("ray", "local"):
            runs[kind] = root / kind
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = negmine(["mine", "--config", str(cfg), "--out", str(runs[kind]),
                                *(["--engine", "ray"] if kind == "ray" else [])])
            logs[kind] = err.getvalue()
            assert code == 0, logs[kind][-3000:]
    assert len(made) == 1, "the Ray run made no Ray engine, or the local run made one"
    seen = [(line.split()[0], int(line.split()[1])) for line in calls.read_text().splitlines()] \
        if calls.exists() else []
    try:
        yield Mined(runs, logs, seen, made[0])
    finally:
        real_close(made[0])


@pytest.fixture(scope="module")
def both(mined):
    """engine kind -> the run `negmine mine` wrote with it."""
    return mined.runs


@pytest.fixture(scope="module")
def ray_engine(mined):
    """The Ray engine (two warm workers) of the mine run, for the in-process tests."""
    return mined.engine


@contextlib.contextmanager
def on(engine):
    """Run the enclosed stages on ``engine`` without closing it after (``use_engine`` would)."""
    import negmine.engine

    token = negmine.engine._CURRENT.set(engine)
    try:
        yield engine
    finally:
        negmine.engine._CURRENT.reset(token)


def test_mine_on_ray_has_its_model_work_done_by_ray_workers(mined):
    """Every kind of model work ran on the workers, in two processes that are not the driver: without
    `--engine ray` (or with the option ignored) nothing is computed on Ray and this fails."""
    assert {k for k, _ in mined.calls} == {"encode", "flat-search", "cross-encode"}, mined.calls
    pids = {p for _, p in mined.calls}
    assert len(pids) == ENGINE["workers"] and os.getpid() not in pids
    assert "embed corpus on ray" in mined.logs["ray"] and "on ray" not in mined.logs["local"]
    # the ray run embedded every text (cold cache); the local run after it read them back, computing nothing new
    assert sum(1 for k, _ in mined.calls if k == "encode") >= 500 // ENGINE["batch_size"]


def test_mine_on_ray_selects_and_exports_what_the_local_engine_does(both):
    for stage in ("ingest", "negatives"):
        ray_a, local_a = (Artifact.open(both[k] / stage) for k in ("ray", "local"))
        for table in ray_a.manifest["tables"]:
            assert ray_a.read(table).equals(local_a.read(table)), (stage, table)
        assert ray_a.fingerprint == local_a.fingerprint
    neg = Artifact.open(both["ray"] / "negatives")
    assert neg.num_rows() > 0 and neg.stats["dropped"].get("similar_to_positive", 0) > 0, neg.stats
    ray_x, local_x = (pq.read_table(both[k] / "export" / "triplet.parquet") for k in ("ray", "local"))
    assert ray_x.num_rows > 0 and ray_x.equals(local_x)
    sidecars = [json.loads((both[k] / "export" / ".triplet.parquet.negmine.json").read_text()) for k in ("ray", "local")]
    assert sidecars[0]["fingerprint"] == sidecars[1]["fingerprint"]


def test_ray_candidates_and_manifests_equal_the_local_engines(both):
    ray_c, local_c = (Artifact.open(both[k] / "candidates") for k in ("ray", "local"))
    assert ray_c.num_rows() == 50 * 20
    assert ray_c.read().equals(local_c.read())
    assert ray_c.read("positive_ranks").equals(local_c.read("positive_ranks"))
    same_manifest(ray_c, local_c)  # fingerprint, params, inputs, stats and the shards' checksums


def test_ray_scores_equal_the_local_engines_within_fp16(both):
    ray_s, local_s = (Artifact.open(both[k] / "scores") for k in ("ray", "local"))
    a, b = ray_s.read(), local_s.read()
    assert a.drop(["teacher_score"]).equals(b.drop(["teacher_score"]))
    np.testing.assert_allclose(a["teacher_score"].to_numpy(), b["teacher_score"].to_numpy(), rtol=1e-3, atol=1e-3)
    assert ray_s.fingerprint == local_s.fingerprint
    same_manifest(ray_s, local_s, shards=False)


def test_ray_embeddings_equal_a_local_encode_within_fp16(both, tiny_models):
    """What the workers embedded (now in the cache) against the model run here without the cache."""
    from negmine.encode.embed import encode_texts
    from negmine.io.corpus import Corpus

    texts = Corpus(Artifact.open(both["ray"] / "ingest")).texts()[:40]
    cached = encode_texts(texts, model=tiny_models[0], kind="doc")
    fresh = encode_texts(texts, model=tiny_models[0], kind="doc", use_cache=False)
    np.testing.assert_allclose(cached, fresh, atol=2e-3)


def test_ray_search_returns_the_local_engines_hits_bit_for_bit(ray_engine):
    """The same (index, score) rows as the local engine's search, not only the same within float rounding: faiss's
    scores depend in the last bit on how many queries one call holds, so the workers must search the blocks the
    local engine searches (at 20k docs x 2k queries, blocks of 256 changed 11 of 200,000 candidates at the depth cut
    and 1,740 ranks among ties). The local engine's one index against the Ray engine's vectors, added as the stage
    adds them (blocks in the object store, here of 1,024), with a tie across blocks at the top and at the cut."""
    import faiss

    from negmine.engine.ray import RayFlatIndex
    from negmine.retrieve.dense import FaissSearch
    from negmine.retrieve.params import RetrieverConfig

    rng = np.random.default_rng(0)
    docs = rng.standard_normal((3000, 384)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[[5, 1100, 2900]] = docs[2000]
    xq = rng.standard_normal((400, 384)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    xq[:30] = docs[2000]
    cpu = faiss.IndexFlatIP(384)
    cpu.add(docs)
    want_i, want_s = FaissSearch(cpu).search(xq, 50)  # the local engine
    flat = ray_engine.flat_index(RetrieverConfig(method="dense"), len(docs), False)
    for s in range(0, len(docs), 1024):
        flat.add(docs[s:s + 1024])
    assert isinstance(flat.finish(), RayFlatIndex) and len(flat.refs) == 3
    got_i, got_s = ray_engine.search(flat.finish(), xq, 50)
    assert np.array_equal(got_s, want_s) and np.array_equal(got_i, want_i)
    assert (got_i[0, :4] == [5, 1100, 2000, 2900]).all()
    # four documents in three blocks tied at the cut of a depth-2 search: both engines keep the two lowest
    want_i, want_s = FaissSearch(cpu).search(xq[:30], 2)
    got_i, got_s = ray_engine.search(flat.finish(), xq[:30], 2)
    assert np.array_equal(got_s, want_s) and np.array_equal(got_i, want_i) and (got_i == [5, 1100]).all()
    # an approximate index is built on the driver and sent whole: the rows faiss gives locally
    ivf = FaissSearch(faiss.index_factory(384, "IVF8,Flat", faiss.METRIC_INNER_PRODUCT), exact=False)
    ivf.cpu.train(docs)
    ivf.cpu.add(docs)
    ivf.cpu.nprobe = 2
    want_i, want_s = ivf.search(xq, 20)
    got_i, got_s = ray_engine.search(ivf, xq, 20)
    assert np.array_equal(got_s, want_s) and np.array_equal(got_i, want_i)


def test_a_query_block_left_alone_is_searched_by_every_worker_over_part_of_the_documents(ray_engine, monkeypatch):
    """One query block and two workers: each worker searches some of the object-store blocks and the driver cuts
    their lists (one worker searched all of them before: 31 s against the local engine's 14.5 s at 1M documents x
    200 queries). The rows are the local engine's bit for bit, also when a tie at the cut is longer than the margin
    (a document and 41 copies across the blocks, at depth 2: asked again, block by block, twice). With more query
    blocks than workers, each goes whole to one worker, and only the last one is split when it would be alone."""
    import faiss

    import negmine.retrieve.dense as dense
    from negmine.retrieve.dense import FaissSearch
    from negmine.retrieve.params import RetrieverConfig

    rng = np.random.default_rng(1)
    docs = rng.standard_normal((3000, 384)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    copies = np.arange(7, 3000, 73)
    docs[copies] = docs[2000]
    xq = rng.standard_normal((400, 384)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    xq[:30] = docs[2000]
    cpu = faiss.IndexFlatIP(384)
    cpu.add(docs)
    flat = ray_engine.flat_index(RetrieverConfig(method="dense"), len(docs), False)
    for s in range(0, len(docs), 1024):
        flat.add(docs[s:s + 1024])
    sent: list[tuple[int, int]] = []  # (query rows, document blocks) of every raw task
    real_map = ray_engine._map

    def recording_map(kind, spec, blocks, hold=None):
        sent.extend((len(b["xq"]), len(b["vectors"])) for b in blocks if b.get("raw"))
        return real_map(kind, spec, blocks, hold)

    monkeypatch.setattr(ray_engine, "_map", recording_map)
    for depth in (50, 2):
        sent.clear()
        want_i, want_s = FaissSearch(cpu).search(xq, depth)
        got_i, got_s = ray_engine.search(flat.finish(), xq, depth)
        assert np.array_equal(got_s, want_s) and np.array_equal(got_i, want_i)
        assert sent[:2] == [(400, 2), (400, 1)]  # blocks 0-1 to one worker, block 2 to the other
        # then the queries whose tie at the cut outruns depth + TIE_PAD are asked again, block by block: at depth 50
        # one random query, whose 42 tied documents straddle its cut (once); at depth 2 the 30 queries that are the
        # document (42 tied: twice, with 18 and with 36)
        assert sent[2:] == ([(1, 1)] * 3 if depth == 50 else [(30, 1)] * 6)
    assert (got_i[:30] == copies[:2]).all()
    # three query blocks of 150, 150 and 100 queries: the first two go whole to one worker each, the last is split
    monkeypatch.setattr(dense, "SEARCH_BATCH", 150)
    sent.clear()
    want_i, want_s = FaissSearch(cpu).search(xq, 50)
    got_i, got_s = ray_engine.search(flat.finish(), xq, 50)
    assert np.array_equal(got_s, want_s) and np.array_equal(got_i, want_i) and sent == [(100, 2), (100, 1)]


class KillingCrossEncode:
    """The cross-encoder kernel, but the worker computing the third block of the stage SIGKILLs itself (once:
    a marker file says it happened)."""

    marker = ""

    def __init__(self, spec):
        from negmine.engine.ray import CrossEncodeKernel

        self.inner = CrossEncodeKernel(spec)
        self.calls = 0

    def __call__(self, block):
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(block)


def test_a_worker_killed_mid_stage_is_replaced_and_no_row_is_lost_or_doubled(both, ray_engine, tiny_models,
                                                                             tmp_path, monkeypatch):
    from ray import cloudpickle

    import negmine.engine.ray as engine_ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    KillingCrossEncode.marker = str(tmp_path / "killed")
    monkeypatch.setitem(engine_ray.KERNELS, "cross-encode", KillingCrossEncode)
    run = tmp_path / "run"
    shutil.copytree(both["local"], run, ignore=shutil.ignore_patterns("scores", ".*"))
    params = score_params(tiny_models[1]).model_copy(update={"batch_size": 8})  # (a new kernel in the workers)
    with on(ray_engine):
        res = run_score(run, params)
    assert Path(KillingCrossEncode.marker).exists(), "no worker was killed"
    assert ray_engine._pool_ is not None and ray_engine._pool_.restarts >= 1  # a new actor replaced the dead one
    a, b = res.artifact.read(), Artifact.open(both["local"] / "scores").read()
    assert a.num_rows == b.num_rows and a.drop(["teacher_score"]).equals(b.drop(["teacher_score"]))
    np.testing.assert_allclose(a["teacher_score"].to_numpy(), b["teacher_score"].to_numpy(), rtol=1e-3, atol=1e-3)


def test_a_killed_driver_resumes_to_the_same_output(cluster, both, ray_engine, tiny_models, tmp_path):
    """`negmine score --engine ray` (one shard per 2 queries) killed with SIGKILL once two shards are staged, then
    resumed by another driver (this process, on the module's Ray engine): the same artifact as the uninterrupted
    local run (its shards hold 16 queries: shard_queries changes no row and no fingerprint)."""
    run = tmp_path / "run"
    shutil.copytree(both["local"], run, ignore=shutil.ignore_patterns("scores", ".*"))
    env = dict(os.environ, RAY_ADDRESS=cluster, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "negmine", "score", str(run), "--engine", "ray", "--teacher", "cross-encoder",
           "--model", tiny_models[1], "--activation", "none", "--max-length", "128", "--encoder-backend", "onnx",
           "--shard-queries", "2", "--set", "engine.workers=1"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    staged = 0
    while p.poll() is None and time.time() < deadline:
        staged = sum(1 for s in run.glob(".scores.staging-*/part-*.parquet"))
        if staged >= 2:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    else:
        p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL and staged >= 2, f"not killed mid-stage: {p.stderr.read()[-2000:]}"
    assert not (run / "scores" / MANIFEST).exists()
    params = score_params(tiny_models[1]).model_copy(update={"shard_queries": 2})
    with on(ray_engine):
        art = run_score(run, params).artifact
    assert art.manifest["resumed_shards"] >= 2 and len(art.manifest["tables"]["scores"]["shards"]) == 25
    want = Artifact.open(both["local"] / "scores")
    a, b = art.read(), want.read()
    assert a.drop(["teacher_score"]).equals(b.drop(["teacher_score"]))
    np.testing.assert_allclose(a["teacher_score"].to_numpy(), b["teacher_score"].to_numpy(), rtol=1e-3, atol=1e-3)
    assert art.fingerprint == want.fingerprint
    assert json.loads((run / "scores" / MANIFEST).read_text())["rows"] == want.num_rows()


def test_bad_engine_options_name_the_flag(ingested, tmp_path, cli):
    run = copy_run(ingested, tmp_path / "run")
    code, _, err = cli("retrieve", run, "--engine", "spark")
    assert code == 2 and "--engine" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("retrieve", run, "--engine", "ray", "--engine-address", "nonsense")
    assert code == 2 and "--engine-address" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_cluster_is_bad_input(ingested, tmp_path):
    run = copy_run(ingested, tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("RAY_ADDRESS", None)
    # (--encoder-backend torch: the default auto would first build and gate an exported MiniLM, 20 s of no interest)
    r = subprocess.run([sys.executable, "-m", "negmine", "retrieve", str(run), "--method", "dense", "--encoder-backend",
                        "torch", "--engine", "ray", "--engine-address", "127.0.0.1:1"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--engine-address" in r.stderr and "127.0.0.1:1" in r.stderr
    assert not (run / "candidates").exists()


def test_the_cli_does_not_import_ray():
    code = ("import sys, negmine.cli, negmine.engine, negmine.config, negmine.pipeline; "
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ,
                       PYTHONPATH=str(ROOT)))
    assert r.stdout.strip() == "False", r.stderr


def test_the_engine_is_not_recorded_in_the_manifests(both):
    for kind in ("ray", "local"):
        for d in ("candidates", "scores"):
            m = json.loads((both[kind] / d / MANIFEST).read_text())
            assert "engine" not in json.dumps(m.get("params")) and "engine" not in (m.get("config") or {})


def test_both_engines_write_the_same_shard_layout(both):
    """Both engines wrote the same shard layout (same files, same row counts)."""
    for d in ("candidates", "scores"):
        a = sorted(p.name for p in (both["ray"] / d).glob("part-*.parquet"))
        b = sorted(p.name for p in (both["local"] / d).glob("part-*.parquet"))
        assert a == b and all(pq.ParquetFile(both["ray"] / d / n).metadata.num_rows
                              == pq.ParquetFile(both["local"] / d / n).metadata.num_rows for n in a)


def test_the_encoder_backend_is_resolved_for_the_workers_device(monkeypatch):
    """`auto` means fp16 torch when the workers get GPUs, even on a driver without one (it was resolved for the
    driver's device: a CPU backend sent to GPU workers), and the CPU choice otherwise, the local engine's."""
    import negmine.encode.backends as backends
    from negmine.engine.params import EngineParams
    from negmine.engine.ray import RayEngine

    asked = []
    monkeypatch.setattr(backends, "ensure_built", lambda model, cand, kind: asked.append(cand) or {"passed": True})
    backends.resolve_backend.cache_clear()
    try:
        for gpus, want in ((1.0, "torch-fp16"), (0.0, backends.CPU_PREFERENCE[0])):
            eng = RayEngine(EngineParams(kind="ray"))
            monkeypatch.setattr(eng, "_options", lambda gpus=gpus: {"num_cpus": 1, "num_gpus": gpus})
            assert eng._backend("auto", "some-model", None, "bi") == want
            assert eng._backend("torch", "some-model", None, "bi") == "torch"
        assert asked == [backends.CPU_PREFERENCE[0]]  # the CPU candidates were built only for the CPU cluster
    finally:
        backends.resolve_backend.cache_clear()


def test_gpu_checks_ray_section_runs_against_the_engine(cluster):
    """scripts/gpu_check.sh's Ray section, which a GPU machine runs with its worker on the GPU, here on a CPU worker
    (GPU_CHECK_RAY_ON_CPU=1): the script drives the engine as a retrieve does (vectors put in the object store in
    blocks, searched by the worker; texts embedded by the worker) and finds the CPU's own top-100 and vectors."""
    env = dict(os.environ, GPU_CHECK_RAY_ON_CPU="1", N_DOCS="20000", N_QUERIES="50", N_ENCODE="32",
               RAY_ADDRESS=cluster, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if "ray engine, one worker on the CPU" in x)
    assert "3 object-store blocks" in line and "overlap with the CPU 1.0000" in line, line
    assert "all checks passed" in r.stdout and "FAIL" not in r.stdout
