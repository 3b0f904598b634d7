"""A judge that answers nothing usable is a failure, not a finished relabel: exit 1, nothing published, the
re-run retries; the fingerprint of what was judged includes where; transport errors say what happened; stored
answers have a size cap; spent_usd counts every resumed run."""

import asyncio
import socket

import pyarrow.compute as pc
import pytest
from test_relabel import base, params, run_dir, server, write_config  # noqa: F401  (fixtures)

from negmine.io.store import Artifact
from negmine.judge.cache import ResponseCache
from negmine.judge.client import JudgeClient
from negmine.judge.params import Tier


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    return port


def _errors(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.startswith("negmine: error:")]


def test_dead_judge_relabel_exits_1_publishes_nothing_and_rerun_retries(run_dir, server, tmp_path, cli):  # noqa: F811
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    p = params(None, tiers=[Tier(model="cheap", base_url=dead)], max_retries=1)
    code, _out, err = cli("relabel", run_dir, "--config", write_config(tmp_path / "dead.yaml", p))
    assert code == 1, err
    (line,) = _errors(err)
    assert "no usable answer" in line and "connection refused" in line and "timeout" not in line, line
    assert "127.0.0.1" in line and "nothing published" in line
    assert not (run_dir / "relabel").exists() and not list(run_dir.glob(".relabel.staging-*"))
    # export applies no relabel (there is none); once a judge is there, relabel runs instead of "up to date"
    srv = server(accuracy=1.0)
    p = params(srv, tiers=[Tier(model="cheap", base_url=srv.base_url)])
    code, _out, err = cli("relabel", run_dir, "--config", write_config(tmp_path / "live.yaml", p))
    assert code == 0 and "up to date" not in err, err
    stats = Artifact.open(run_dir / "relabel").stats
    assert stats.get("label_unjudged", 0) == 0 and stats["requests_sent"] > 0


def test_mostly_unjudged_shard_is_a_failure_over_max_unjudged(run_dir, server):  # noqa: F811
    from negmine.judge.stage import JudgeFailure, run_relabel

    srv = server(faults=0.5, fault_kinds=("bad_json",))  # half the answers unusable (even after the re-ask)
    with pytest.raises(JudgeFailure, match=r"no usable answer .* more than relabel.max_unjudged=0.05"):
        run_relabel(run_dir, params(srv, tiers=[Tier(model="cheap", base_url=srv.base_url)]), progress=False)
    assert not (run_dir / "relabel").exists()
    res = run_relabel(run_dir, params(srv, tiers=[Tier(model="cheap", base_url=srv.base_url)], max_unjudged=1.0),
                      progress=False)
    assert res.artifact.stats["label_unjudged"] > 0  # allowed when configured


def test_relabel_fingerprint_includes_the_judge_base_url_from_the_environment(run_dir, server,  # noqa: F811
                                                                              monkeypatch):
    from negmine.judge.stage import run_relabel

    a, b = server(accuracy=1.0), server(accuracy=1.0)
    p = params(a, tiers=[Tier(model="cheap")])  # no base_url: $OPENAI_BASE_URL says where it is judged
    monkeypatch.setenv("OPENAI_BASE_URL", a.base_url)
    first = run_relabel(run_dir, p, progress=False)
    same = run_relabel(run_dir, p, progress=False)
    monkeypatch.setenv("OPENAI_BASE_URL", b.base_url)
    other = run_relabel(run_dir, p, progress=False)
    assert not first.skipped and same.skipped
    assert not other.skipped and other.artifact.fingerprint != first.artifact.fingerprint
    assert b.state.requests == 0  # answers come from the cache: nothing is paid twice


def test_base_url_with_credentials_is_bad_input_and_never_printed(run_dir, server, tmp_path, cli):  # noqa: F811
    srv = server(accuracy=1.0)
    url = srv.base_url.replace("http://", "http://user:s3cret@")
    p = params(srv, tiers=[Tier(model="cheap", base_url=url)])
    code, _out, err = cli("relabel", run_dir, "--config", write_config(tmp_path / "c.yaml", p))
    assert code == 2, err
    (line,) = _errors(err)
    assert "relabel.tiers" in line and "credentials" in line and "s3cret" not in err
    assert not (run_dir / "relabel").exists()


def _one_answer(url: str, tmp_path, timeout: float = 2.0, cache_cap: int | None = None):
    cache = ResponseCache(tmp_path / "c.sqlite", **({"max_answer_bytes": cache_cap} if cache_cap else {}))
    client = JudgeClient([Tier(model="m", base_url=url)], cache, max_retries=0, timeout=timeout)

    async def go():
        try:
            return await client.complete(client.make_request(0, "pointwise", [{"role": "user", "content": "hi"}],
                                                             "v1", 5, 1))
        finally:
            await client.aclose()

    try:
        return asyncio.run(go()), client, len(cache)
    finally:
        cache.close()


def test_connection_refused_is_not_reported_as_timeout(tmp_path):
    ans, client, _ = _one_answer(f"http://127.0.0.1:{_free_port()}/v1", tmp_path)
    assert ans.error.startswith("connection refused"), ans.error
    assert "connection refused" in client.last_error and "127.0.0.1" in client.last_error


def test_tls_to_a_plain_http_server_is_reported_as_tls(server, tmp_path):  # noqa: F811
    srv = server(accuracy=1.0)
    ans, _c, _ = _one_answer(srv.base_url.replace("http://", "https://"), tmp_path)
    assert ans.error.startswith("TLS error"), ans.error


def test_stalled_server_is_reported_as_timeout(server, tmp_path):  # noqa: F811
    srv = server(faults=1.0, fault_kinds=("stall",), stall_seconds=5)
    ans, _c, _ = _one_answer(srv.base_url, tmp_path, timeout=0.5)
    assert ans.error.startswith("timeout after 0.5s"), ans.error


def test_oversized_answer_is_not_stored_nor_used(server, tmp_path):  # noqa: F811
    srv = server(accuracy=1.0)
    ans, client, stored = _one_answer(srv.base_url, tmp_path, cache_cap=64)
    assert ans.content is None and "larger than the cache's cap" in ans.error
    assert stored == 0 and client.spent >= 0  # paid (counted), but neither stored nor used
    c = ResponseCache(tmp_path / "d.sqlite", max_answer_bytes=10)
    assert c.put("k", "m", {"choices": ["x" * 100]}, 1, 1, 0.0) is False and len(c) == 0
    c.close()


def test_spent_usd_accumulates_across_budget_resumed_runs(run_dir, server, tmp_path, cli):  # noqa: F811
    srv = server(accuracy=0.9)
    p = params(srv, tiers=[Tier(model="cheap", base_url=srv.base_url, price_input=2000.0, price_output=2000.0)],
               concurrency=2, list_size=4, shard_queries=6)
    cfg = write_config(tmp_path / "c.yaml", p)
    code, _out, err = cli("relabel", run_dir, "--config", cfg, "--budget-usd", "25")
    assert code == 3, err
    code, _out, err = cli("relabel", run_dir, "--config", cfg)
    assert code == 0, err
    cache = ResponseCache(run_dir / ".judge-cache.sqlite")
    paid = cache.db.execute("SELECT SUM(cost_usd) FROM responses").fetchone()[0]
    cache.close()
    art = Artifact.open(run_dir / "relabel")
    assert art.stats["spent_usd"] == pytest.approx(paid, rel=1e-6)  # every run's spending, not the last one's
    assert not list((run_dir / "relabel").rglob("_spent.json"))
    assert int(pc.sum(pc.is_null(art.read("audit")["label"])).as_py() or 0) == 0


def test_budget_stop_message_is_a_sentence_not_a_tuple(run_dir, server, tmp_path, cli):  # noqa: F811
    srv = server(accuracy=0.9)
    p = params(srv, tiers=[Tier(model="cheap", base_url=srv.base_url, price_input=2000.0, price_output=2000.0)],
               concurrency=2, list_size=4)
    code, _out, err = cli("relabel", run_dir, "--config", write_config(tmp_path / "c.yaml", p), "--budget-usd", "25")
    assert code == 3, err
    (line,) = _errors(err)
    assert line.startswith("negmine: error: --budget-usd: budget of $25 reached after spending $"), line
    assert "('" not in line and "re-run to continue" in line
