"""`--engine ray` on a local Ray cluster of 2 CPUs (one for the module): the Ray engine's candidates equal the local
engine's, scores agree within fp16 tolerance, manifests and fingerprints are the same; a worker killed with SIGKILL
mid-stage is replaced and the stage completes with no lost or duplicated row; a driver killed mid-stage resumes to
the same output. Models are tiny (random BERTs built from a config with the packaged tokenizer), so the time goes to
Ray, not to the models."""

from __future__ import annotations

import contextlib
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

from negmine.engine import use_engine
from negmine.engine.params import EngineParams
from negmine.io.ingest import run_ingest
from negmine.io.params import IngestParams
from negmine.io.store import MANIFEST, Artifact
from negmine.retrieve.params import RetrieveParams
from negmine.retrieve.stage import run_retrieve
from negmine.score.params import ScoreParams
from negmine.score.stage import run_score

# `make install` installs the [ray] extra: in CI a missing ray is a failure, not a silent skip
ray = __import__("ray") if os.environ.get("CI") else pytest.importorskip("ray")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RAY = EngineParams(kind="ray", batch_size=16)
TIMES = ("started", "finished", "seconds", "timings")  # what differs between any two runs of a stage


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray cluster (2 CPUs) for the module; its address for subprocesses. A fresh embedding cache, so
    the Ray engine really embeds."""
    cache = tmp_path_factory.mktemp("ray_cache")
    old = os.environ.get("NEGMINE_CACHE_DIR")
    os.environ["NEGMINE_CACHE_DIR"] = str(cache)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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
    return ScoreParams(teacher="cross-encoder", model=ce, shard_queries=16, activation="none")


def same_manifest(a: Artifact, b: Artifact, *, shards: bool = True) -> None:
    ma = {k: v for k, v in a.manifest.items() if k not in TIMES}
    mb = {k: v for k, v in b.manifest.items() if k not in TIMES}
    if not shards:
        for m in (ma, mb):
            for t in m["tables"].values():
                t["shards"] = [s["rows"] for s in t["shards"]]
            m["stats"] = {k: v for k, v in m["stats"].items() if "score" not in k}
    assert ma == mb


@pytest.fixture(scope="module")
def ray_engine(cluster):
    """One Ray engine (one pool of workers) for the in-process tests of the module."""
    from negmine.engine.ray import RayEngine

    eng = RayEngine(RAY)
    yield eng
    eng.close()


@contextlib.contextmanager
def on(engine):
    """Run the enclosed stages on ``engine`` without closing it after (``use_engine`` would)."""
    import negmine.engine

    token = negmine.engine._CURRENT.set(engine)
    try:
        yield engine
    finally:
        negmine.engine._CURRENT.reset(token)


@pytest.fixture(scope="module")
def both(ray_engine, ingested, tiny_models, tmp_path_factory):
    """The same retrieve + score run by the Ray engine (cold embedding cache: the workers embed) and by the local
    engine."""
    bi, ce = tiny_models
    root = tmp_path_factory.mktemp("ray_vs_local")
    runs = {}
    for kind in ("ray", "local"):
        run = copy_run(ingested, root / kind)
        with on(ray_engine) if kind == "ray" else use_engine(EngineParams()):
            run_retrieve(run, retrieve_params(bi))
            run_score(run, score_params(ce))
        runs[kind] = run
    return runs


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
    """`negmine score --engine ray` (one shard per 2 queries) killed with SIGKILL once a shard is staged, then run
    again: the same artifact as an uninterrupted local run."""
    ray_engine.close()  # its workers hold the cluster's 2 CPUs: the child's workers would wait for them
    run = tmp_path / "run"
    shutil.copytree(both["local"], run, ignore=shutil.ignore_patterns("scores", ".*"))
    env = dict(os.environ, RAY_ADDRESS=cluster, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "negmine", "score", str(run), "--engine", "ray", "--teacher", "cross-encoder",
           "--model", tiny_models[1], "--activation", "none", "--shard-queries", "2", "--set", "engine.workers=1"]
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
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    art = Artifact.open(run / "scores")
    assert art.manifest["resumed_shards"] >= 2
    ref = tmp_path / "ref"
    shutil.copytree(both["local"], ref, ignore=shutil.ignore_patterns("scores", ".*"))
    want = run_score(ref, score_params(tiny_models[1]).model_copy(update={"shard_queries": 2})).artifact
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
    r = subprocess.run([sys.executable, "-m", "negmine", "retrieve", str(run), "--method", "dense", "--engine",
                        "ray", "--engine-address", "127.0.0.1:1"], env=env, capture_output=True, text=True,
                       timeout=120)
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
