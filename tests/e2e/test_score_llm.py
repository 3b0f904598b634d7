"""`negmine score --teacher llm` against the real local judge server over HTTP (a free loopback port per test).

The run: a Cranfield subset (12 queries, 150 documents), BM25 candidates (depth 8, no embedding model), so every
query has candidates the qrels call relevant and many they do not; the server judges from the qrels with seeded
mistakes (accuracy 0.9) and a lower confidence when it is wrong, which its logprobs show.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from negmine.io.store import Artifact
from negmine.judge.params import Tier
from negmine.score.params import ScoreParams
from negmine.testing.judge_server import Truth

N_QUERIES = 12


@pytest.fixture(scope="module")
def base(cranfield_small, tmp_path_factory, make_beir_subset):
    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams
    from negmine.retrieve.params import RetrieveParams
    from negmine.retrieve.stage import run_retrieve

    work = tmp_path_factory.mktemp("score_llm")
    data = make_beir_subset(cranfield_small, work / "data", "test", N_QUERIES, 150)
    run = work / "run"
    run_ingest(run, IngestParams(path=str(data), split="test"))
    run_retrieve(run, RetrieveParams(method="bm25", depth=8))
    qrels = {}
    for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels[(q, d)] = float(g)
    return {"run": run, "truth": Truth.from_files(data / "qrels" / "test.tsv"), "qrels": qrels}


@pytest.fixture
def run_dir(base, tmp_path):
    dst = tmp_path / "run"
    for d in ("ingest", "candidates"):
        shutil.copytree(base["run"] / d, dst / d)
    return dst


@pytest.fixture
def server(base, judge_servers):
    return lambda **kw: judge_servers(base["truth"], **kw)


def llm_params(base_url: str, **kw) -> ScoreParams:
    tier = kw.pop("llm", None) or Tier(model="judge-small", base_url=base_url, price_input=1.0, price_output=2.0)
    kw = {"timeout": 2.0, "backoff": 0.02, "max_backoff": 0.1, "max_retries": 2, "concurrency": 16} | kw
    return ScoreParams(teacher="llm", llm=tier, **kw)


def write_config(path: Path, p: ScoreParams) -> Path:
    path.write_text(yaml.safe_dump({"score": p.model_dump(mode="json", exclude_unset=True)}))
    return path


def scored(art: Artifact) -> tuple[list[dict], np.ndarray]:
    rows = art.read().to_pylist()
    return rows, np.array([np.nan if r["teacher_score"] is None else r["teacher_score"] for r in rows])


def margin(rows: list[dict], s: np.ndarray, qrels: dict) -> tuple[float, float]:
    rel = np.array([(r["query_id"], r["doc_id"]) in qrels for r in rows])
    assert 30 < rel.sum() < len(rows) - 30  # both kinds are there in numbers
    return float(np.nanmean(s[rel])), float(np.nanmean(s[~rel]))


def test_logprobs_scores_are_probabilities_and_rank_relevant_docs_higher(base, run_dir, server, monkeypatch):
    from negmine.score.stage import run_score

    secret = "sk-negmine-score-SECRET-5e6f7a"
    monkeypatch.setenv("NEGMINE_SCORE_KEY", secret)
    srv = server(accuracy=0.9)
    tier = Tier(model="judge-small", base_url=srv.base_url, api_key_env="NEGMINE_SCORE_KEY", price_input=1.0,
                price_output=2.0)
    res = run_score(run_dir, llm_params(srv.base_url, llm=tier))
    rows, s = scored(res.artifact)
    n = len(rows)
    assert n > 100 and np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert len(np.unique(s.round(3))) > 20  # probabilities from logprobs, not 0/1 labels
    assert {r["is_positive"] for r in rows} == {True, False} and any(r["rank"] is None for r in rows)
    rel_mean, non_mean = margin(rows, s, base["qrels"])
    assert rel_mean - non_mean > 0.45, (rel_mean, non_mean)
    # the mistakes (10 %) are what keeps it from perfect: most relevant pairs above 0.5, most others below
    rel = np.array([(r["query_id"], r["doc_id"]) in base["qrels"] for r in rows])
    assert (s[rel] > 0.5).mean() > 0.8 and (s[~rel] < 0.5).mean() > 0.8
    st = res.artifact.stats["llm"]
    assert st["llm_mode"] == "logprobs" and st["pairs"] == n and st["unscored"] == 0
    assert st["requests_sent"] == srv.state.requests == n  # one request per pair (the probe is the first one)
    assert st["spent_usd"] > 0 and res.artifact.stats["model"] == "judge-small"
    assert res.artifact.params["llm"]["model"] == "judge-small"
    # the key was used, and is in no file of the run (the manifest names its variable only)
    assert srv.state.auth_headers == {f"Bearer {secret}"}
    assert not any(secret.encode() in f.read_bytes() for f in run_dir.rglob("*") if f.is_file())
    assert res.artifact.params["llm"]["api_key_env"] == "NEGMINE_SCORE_KEY"


def test_graded_when_the_server_returns_no_logprobs(base, run_dir, server, cli, tmp_path):
    from negmine.score.stage import run_score

    srv = server(accuracy=0.9, logprobs=False)
    # llm_mode logprobs against a server without logprobs: a one-line config error, nothing published
    cfg = write_config(tmp_path / "c.yaml", llm_params(srv.base_url, llm_mode="logprobs"))
    code, _out, err = cli("score", run_dir, "--config", cfg)
    assert code == 2 and "returned no logprobs" in err and "score.llm_mode" in err, err
    assert len(err.strip().splitlines()) == 1 and not (run_dir / "scores").exists()
    srv.state.reset_counters()
    res = run_score(run_dir, llm_params(srv.base_url))  # auto
    rows, s = scored(res.artifact)
    st = res.artifact.stats["llm"]
    assert st["llm_mode"] == "graded"
    assert set(np.unique(s.round(4))) <= {0.0, 0.3333, 0.6667, 1.0} and np.isfinite(s).all()
    rel_mean, non_mean = margin(rows, s, base["qrels"])
    assert rel_mean - non_mean > 0.45, (rel_mean, non_mean)
    # the probe (asked with logprobs) came from the cache of the failed run: one graded request per pair
    assert srv.state.requests == len(rows) and st["cached"] == 1


def test_rerun_sends_zero_requests_and_fingerprint_follows_the_model(base, run_dir, server):
    from negmine.score.stage import run_score

    srv = server(accuracy=0.9)
    p = llm_params(srv.base_url)
    first = run_score(run_dir, p)
    n = srv.state.requests
    assert n == first.artifact.num_rows()
    assert run_score(run_dir, p).skipped and srv.state.requests == n
    # endpoint and prices are not part of the fingerprint; a re-run elsewhere is still up to date
    moved = llm_params("http://127.0.0.1:9/v1", llm=Tier(model="judge-small", base_url="http://127.0.0.1:9/v1"))
    assert run_score(run_dir, moved).skipped
    # without the artifact, the response cache answers every pair: 0 requests, the same scores
    shutil.rmtree(run_dir / "scores")
    again = run_score(run_dir, p)
    assert not again.skipped and srv.state.requests == n
    assert again.artifact.read().equals(first.artifact.read())
    st = again.artifact.stats["llm"]
    assert st["requests_sent"] == 0 and st["cached"] == n
    # another model is another teacher: re-scored
    other = llm_params(srv.base_url, llm=Tier(model="judge-large", base_url=srv.base_url))
    assert not run_score(run_dir, other).skipped and srv.state.requests == 2 * n


def test_dry_run_sends_nothing_and_prints_calls_and_cost(base, run_dir, server, cli, tmp_path):
    srv = server(accuracy=0.9)
    cfg = write_config(tmp_path / "c.yaml", llm_params(srv.base_url))
    code, out, err = cli("score", run_dir, "--config", cfg, "--teacher", "llm", "--dry-run")
    assert code == 0, err
    assert srv.state.requests == 0 and not (run_dir / "scores").exists()
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("judge-small"))
    cands = Artifact.open(run_dir / "candidates").num_rows()
    pairs = int(out.split()[2])
    assert pairs > cands and int(row[2]) == pairs and int(row[3]) == 0  # calls, cached
    in_tok, out_tok, cost = int(row[4].replace(",", "")), int(row[5].replace(",", "")), float(row[6])
    assert in_tok > 100 * pairs and out_tok == pairs  # max_tokens 1: one output token per call
    assert cost == pytest.approx((in_tok * 1.0 + out_tok * 2.0) / 1e6, abs=1e-4) and cost > 0
    assert "total estimated cost" in out and "tiktoken cl100k_base" in out
    assert "assumed the server returns logprobs" in out
    code, out2, _ = cli("score", run_dir, "--config", cfg, "--teacher", "llm", "--model", "judge-large", "--dry-run")
    assert code == 0 and any(ln.startswith("judge-large ") for ln in out2.splitlines())  # --model names the LLM
    code, _, err = cli("score", run_dir, "--config", cfg, "--teacher", "llm")
    assert code == 0, err
    sent = srv.state.requests
    assert sent == pairs
    code, out, _ = cli("score", run_dir, "--config", cfg, "--teacher", "llm", "--dry-run")
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("judge-small"))
    assert (int(row[2]), int(row[3]), float(row[6])) == (0, pairs, 0.0) and srv.state.requests == sent


def test_unreachable_server_fails_and_publishes_nothing(run_dir, cli, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write_config(tmp_path / "c.yaml", llm_params(f"http://127.0.0.1:{port}/v1", max_retries=1))
    code, out, err = cli("score", run_dir, "--config", cfg)
    assert code == 1 and "got no answer" in err and f"127.0.0.1:{port}" in err, err
    assert "nothing was published" in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "scores").exists() and out == ""


def test_unusable_answers_get_one_reask_then_nan_and_too_many_fail(base, run_dir, server):
    from negmine.errors import RuntimeFailure
    from negmine.score.stage import run_score

    srv = server(accuracy=0.9, faults=0.3, fault_kinds=("bad_json", "truncated"))
    p = llm_params(srv.base_url, llm_mode="graded")
    res = run_score(run_dir, p.model_copy(update={"max_unscored": 0.5}))
    sent = srv.state.requests
    rows, s = scored(res.artifact)
    st = res.artifact.stats["llm"]
    nan = int(np.isnan(s).sum())
    assert 0.03 * len(rows) < nan == st["unscored"] < st["reasked"] < 0.5 * len(rows)
    assert sent == len(rows) + st["reasked"]  # one re-ask per unusable first answer, never a second
    assert set(np.unique(s[~np.isnan(s)].round(4))) <= {0.0, 0.3333, 0.6667, 1.0}
    rel_mean, non_mean = margin(rows, s, base["qrels"])
    assert rel_mean - non_mean > 0.4
    # the default max_unscored (5 %) is exceeded (~9 %): the stage fails, nothing published, nothing re-sent
    shutil.rmtree(run_dir / "scores")
    with pytest.raises(RuntimeFailure, match="no usable answer"):
        run_score(run_dir, p)
    assert not (run_dir / "scores").exists() and srv.state.requests == sent


def test_budget_stops_with_exit_3_and_resumes(run_dir, server, cli, tmp_path):
    srv = server(accuracy=0.9)
    tier = Tier(model="judge-small", base_url=srv.base_url, price_input=10_000.0, price_output=10_000.0)
    cfg = write_config(tmp_path / "c.yaml", llm_params(srv.base_url, llm=tier, concurrency=4))
    code, _out, err = cli("score", run_dir, "--config", cfg, "--budget-usd", "60")
    assert code == 3 and "budget of $60" in err and "re-run to continue" in err, err
    assert not (run_dir / "scores").exists()
    answered = set(srv.state.answered_keys)
    assert 0 < len(answered) < 100
    srv.state.reset_counters()
    code, _out, err = cli("score", run_dir, "--config", cfg)
    assert code == 0, err
    assert not (set(srv.state.received_keys) & answered)  # nothing paid for is asked again


def test_llm_scores_export_as_soft_labels(base, run_dir, server, cli, tmp_path):
    from negmine.models import doc_text
    from negmine.score.stage import run_score

    srv = server(accuracy=0.9)
    scores = run_score(run_dir, llm_params(srv.base_url)).artifact.read().to_pylist()
    by_key = {(r["query_id"], r["doc_id"]): r["teacher_score"] for r in scores}
    code, _o, err = cli("select", run_dir, "--max-pos-sim", "off", "-k", "4")
    assert code == 0, err
    out = tmp_path / "ll.jsonl"
    code, _o, err = cli("export", run_dir, "--format", "labeled-list", "--with-scores", "--with-ids", "--out", out)
    assert code == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == N_QUERIES
    ing = Artifact.open(run_dir / "ingest")
    text = {r["doc_id"]: doc_text(r["title"], r["text"]) for r in ing.read("corpus").to_pylist()}
    positives = {(r["query_id"], r["doc_id"]) for r in ing.read("positives").to_pylist()}
    pos_s, neg_s = [], []
    for row in lines:
        assert len(row["docs"]) == len(row["scores"]) == len(row["doc_ids"]) > 1
        flags = [(row["query_id"], d) in positives for d in row["doc_ids"]]
        assert flags == sorted(flags, reverse=True)  # positives first, then the mined negatives
        for d, t, sc, is_pos in zip(row["doc_ids"], row["docs"], row["scores"], flags, strict=True):
            assert 0.0 <= sc <= 1.0 and t == text[d]
            assert sc == pytest.approx(by_key[(row["query_id"], d)], abs=1e-6)
            (pos_s if is_pos else neg_s).append(sc)
    # as soft labels the positives score high on average, the mined negatives lower
    assert len(pos_s) > N_QUERIES and len(neg_s) > 3 * N_QUERIES and np.mean(pos_s) - np.mean(neg_s) > 0.3
    # relabel's pointwise judge with logprobs on the same model sends exactly these requests: all from the cache
    from negmine.judge.params import RelabelParams
    from negmine.judge.stage import run_relabel

    sent = srv.state.requests
    tier = Tier(model="judge-small", base_url=srv.base_url, logprobs=True)
    rel = run_relabel(run_dir, RelabelParams(tiers=[tier], prompt="pointwise"), progress=False)
    assert srv.state.requests == sent and rel.artifact.stats["tiers"][0]["cached"] >= len(neg_s)


def test_bad_teacher_and_dry_run_without_llm_are_one_line_config_errors(run_dir, cli):
    code, _o, err = cli("score", run_dir, "--teacher", "gpt")
    assert code == 2 and "--teacher" in err and "llm" in err and len(err.strip().splitlines()) == 1, err
    code, _o, err = cli("score", run_dir, "--dry-run")
    assert code == 2 and "--teacher llm" in err and len(err.strip().splitlines()) == 1, err
    code, _o, err = cli("score", run_dir, "--teacher", "llm", "--set", "score.llm.api_key_env=sk-not-a-name")
    assert code == 2 and "NAME of an environment variable" in err, err
    assert not (run_dir / "scores").exists()
