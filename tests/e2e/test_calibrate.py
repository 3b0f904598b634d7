"""`negmine calibrate` end to end against the real local judge server: calibrate → select → export on a
hidden-positives Cranfield subset (one given positive per query, the other relevant documents hidden: the
judge, answering from the full qrels, finds them as false negatives)."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from negmine.io.store import Artifact
from negmine.testing.judge_server import Truth

pytestmark = pytest.mark.slow
K = 4


@pytest.fixture(scope="module")
def mined(cranfield_small, tmp_path_factory):
    """ingest → dense retrieve (MiniLM, depth 40) → bi-encoder score, once per module; select/calibrate per test."""
    from negmine.config import load_config
    from negmine.pipeline import run_mine
    from negmine.report.protocol import hidden_positives

    work = tmp_path_factory.mktemp("calibrate")
    proto = work / "proto"
    hidden_positives(cranfield_small, "test", proto)
    run = work / "run"
    run_mine(load_config(None, [f"input.path={proto}", "input.split=test", "retrieve.depth=40",
                                f"select.num_negatives={K}"]), run)
    return {"run": run, "truth": Truth.from_files(cranfield_small / "qrels" / "test.tsv"), "src": cranfield_small}


@pytest.fixture
def run_dir(mined, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(mined["run"], dst, symlinks=True)
    shutil.rmtree(dst / "negatives", ignore_errors=True)
    return dst


@pytest.fixture
def server(mined, judge_servers):
    return lambda truth=None, **kw: judge_servers(truth or mined["truth"], **kw)


def sets(srv_url: str, **kw) -> list[str]:
    base = {"calibrate.queries": 30, "calibrate.top": 10, "calibrate.deep": 3, "calibrate.controls": 4,
            "calibrate.folds": 3, "relabel.list_size": 10, "relabel.timeout": 2, "relabel.max_retries": 1,
            "relabel.backoff": 0.02, "select.num_negatives": K}
    base.update(kw)
    out = [f"calibrate.tiers=[{{model: judge, base_url: '{srv_url}', price_input: 1.0, price_output: 2.0}}]"]
    return out + [f"{k}={v}" for k, v in base.items()]


def args(*a):
    out = []
    for s in a:
        out += ["--set", s]
    return out


def fn_rate(run: Path, src: Path) -> float:
    from negmine.report.eval import evaluate
    from negmine.report.protocol import read_qrels

    sel = Artifact.open(run / "negatives")
    scores = Artifact.open(run / "scores").read(columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    return evaluate(sel.read("negatives"), scores, read_qrels(src / "qrels" / "test.tsv"), K)["fn_rate"]


def test_calibrate_select_export_end_to_end(mined, run_dir, server, cli, tmp_path):
    from negmine.calibrate.model import FNModel

    srv = server(accuracy=0.9, seed=1)
    code, out, err = cli("calibrate", str(run_dir), *args(*sets(srv.base_url)))
    assert code == 0, err
    assert "threshold" in out and "estimated FN rate" in out
    art = Artifact.open(run_dir / "calibration", stage="calibrate")
    st = art.stats
    judged = art.read("judged")
    assert st["sample_queries"] == 30 and st["pairs"] == judged.num_rows == st["pairs_judged"]
    kinds = judged["kind"].to_pylist()
    assert kinds.count("control") == 30 * 4 and kinds.count("candidate") == 30 * (10 + 3)
    assert st["candidates_flagged"] > 0 and 0 < st["judge_fpr"] < 0.3 and st["judge_sensitivity"] > 0.6
    assert st["requests_sent"] == srv.state.requests > 0
    model = FNModel.load(run_dir / "calibration" / "model.json")
    assert model.threshold == st["threshold"] and model.meta["k"] == K
    assert (run_dir / "calibration" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert art.read("audit").num_rows == judged.num_rows  # one tier: one audit row per judged pair
    assert art.read("curve").num_rows > 10

    # select applies it automatically, and says so
    code, out, err = cli("select", str(run_dir))
    assert code == 0, err
    assert "calibration:" in out and "predicted_false_negative" in out
    sel = Artifact.open(run_dir / "negatives")
    assert sel.stats["calibration"]["threshold"] == model.threshold
    assert sel.params["max_pos_sim"] is None  # the calibrated model replaces the fixed default rule
    dropped = sel.read("dropped").to_pylist()
    assert sum(r["reason_dropped"] == "predicted_false_negative" for r in dropped) > 0
    calibrated = fn_rate(run_dir, mined["src"])

    # ... and --no-calibration goes back to the default rules: more false negatives than calibrated
    code, out, err = cli("select", str(run_dir), "--no-calibration")
    assert code == 0, err
    assert "calibration: none" in out
    assert all(r["reason_dropped"] != "predicted_false_negative" for r in Artifact.open(run_dir / "negatives")
               .read("dropped").to_pylist())
    assert calibrated < fn_rate(run_dir, mined["src"])

    # eval and report show the calibration next to what the qrels measure
    # (select alone starts from the run's recorded config, which --no-calibration left off: turn it back on)
    assert cli("select", str(run_dir), "--calibration", "auto")[0] == 0
    qrels = mined["src"] / "qrels" / "test.tsv"
    code, out, err = cli("eval", str(run_dir), "--qrels", str(qrels), "--json")
    assert code == 0, err
    import json

    c = json.loads(out)["calibration"]
    assert c["estimated_fn"] == st["estimated_fn"] and c["measured_fn"] == pytest.approx(calibrated)
    # the judge-server errs on 10 % of the pairs: measured and estimated error rates are both near that
    assert 0.03 < c["judge_fpr_measured"] < 0.2 and c["judge_sensitivity_measured"] > 0.75
    assert c["model_auc_vs_qrels"] > 0.6 and c["reliability_vs_qrels"]
    code, out, err = cli("report", str(run_dir), "--qrels", str(qrels))
    assert code == 0, err
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Calibration" in md and "judge false-positive rate" in md
    assert (run_dir / "report" / "calibration.png").read_bytes()[:4] == b"\x89PNG"

    # export of the calibrated selection loads as triplets
    out_file = tmp_path / "train.parquet"
    code, out, err = cli("export", str(run_dir), "--format", "triplet", "--out", str(out_file))
    assert code == 0, err
    t = pq.read_table(out_file)
    assert t.column_names[:3] == ["anchor", "positive", "negative"] and t.num_rows > 0


def test_rerun_is_cached_and_reproducible(run_dir, server, cli):
    srv = server(accuracy=0.9, seed=2)
    s = args(*sets(srv.base_url))
    assert cli("calibrate", str(run_dir), *s)[0] == 0
    model1 = (run_dir / "calibration" / "model.json").read_bytes()
    first = srv.state.requests
    code, out, _ = cli("calibrate", str(run_dir), *s)
    assert code == 0 and "up to date" in out and srv.state.requests == first
    shutil.rmtree(run_dir / "calibration")
    assert cli("calibrate", str(run_dir), *s)[0] == 0
    assert srv.state.requests == first  # every answer from the response cache
    assert (run_dir / "calibration" / "model.json").read_bytes() == model1
    # another judge behind the same model name is another calibration (answers cached by content are reused)
    other = server(accuracy=0.9, seed=2)
    code, out, _ = cli("calibrate", str(run_dir), *args(*sets(other.base_url)))
    assert code == 0 and "up to date" not in out


def test_dry_run_sends_nothing(run_dir, server, cli):
    srv = server(accuracy=0.9)
    code, out, err = cli("calibrate", str(run_dir), "--dry-run", *args(*sets(srv.base_url)))
    assert code == 0, err
    assert "dry run" in out and "cost" in out and "30 sampled queries" in out
    assert srv.state.requests == 0 and not (run_dir / "calibration").exists()


def test_budget_stops_cleanly(run_dir, server, cli):
    srv = server(accuracy=0.9)
    code, _, err = cli("calibrate", str(run_dir), "--budget-usd", "0.001", *args(*sets(srv.base_url)))
    assert code == 3 and "budget" in err
    assert not (run_dir / "calibration").exists()


def test_dead_judge_is_a_failure_and_writes_nothing(run_dir, cli):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    code, _, err = cli("calibrate", str(run_dir), *args(*sets(f"http://127.0.0.1:{port}/v1")))
    assert code == 1
    assert [ln for ln in err.splitlines() if "error" in ln] == [err.strip().splitlines()[-1]]
    assert "no usable label" in err and "127.0.0.1" in err
    assert not (run_dir / "calibration").exists()


def test_sample_smaller_than_folds_is_bad_input(run_dir, server, cli):
    srv = server(accuracy=0.9)
    code, _, err = cli("calibrate", str(run_dir), *args(*sets(srv.base_url, **{"calibrate.queries": 2})))
    assert code == 2 and "calibrate.folds" in err.strip().splitlines()[-1]
    assert srv.state.requests == 0


def test_judge_that_calls_everything_relevant_is_refused(run_dir, server, cli):
    srv = server(accuracy=0.0)  # every label wrong: irrelevant text is called relevant
    code, _, err = cli("calibrate", str(run_dir), *args(*sets(srv.base_url)))
    assert code == 2 and "cannot tell relevant" in err
    assert not (run_dir / "calibration").exists()


def test_no_false_negatives_in_the_sample_drops_nothing(run_dir, server, cli, tmp_path, mined):
    """A judge (here: qrels that say nothing is relevant) that flags no candidate: a warning, and a calibration
    that drops nothing — never a silent model."""
    src = mined["src"]
    q = tmp_path / "q" / "qrels"
    q.mkdir(parents=True)
    (q / "test.tsv").write_text("query-id\tcorpus-id\tscore\nnone\tnone\t1\n")
    truth = Truth.from_files(q / "test.tsv", corpus=src / "corpus.jsonl", queries=src / "queries.jsonl")
    srv = server(truth=truth, accuracy=1.0)
    code, out, err = cli("calibrate", str(run_dir), *args(*sets(srv.base_url)))
    assert code == 0, err
    assert "no false negatives" in out + err
    assert Artifact.open(run_dir / "calibration").stats["threshold"] is None
    code, out, _ = cli("select", str(run_dir))
    assert code == 0 and "drops nothing" in out


def test_no_config_uses_the_default_judge_from_the_environment(run_dir, server, cli, monkeypatch):
    """`negmine calibrate RUN` with no judge configured talks to relabel's first tier at $OPENAI_BASE_URL."""
    srv = server(accuracy=0.9, seed=4)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    small = [s for s in sets(srv.base_url) if not s.startswith("calibrate.tiers")]
    code, out, err = cli("calibrate", str(run_dir), *args(*small))
    assert code == 0, err
    st = Artifact.open(run_dir / "calibration").stats
    assert st["tiers"][0]["model"] == "gpt-4o-mini" and srv.state.requests == st["requests_sent"] > 0
    assert "sk-test" not in (run_dir / "calibration" / "_manifest.json").read_text()
