"""Soak test of negmine's fault handling on Cranfield: N rounds, each one fault drawn at random.

    python scripts/soak_faults.py [--rounds 50] [--seed 0] [--data ../shared/data/cranfield]

Faults (one per round, uniformly):
* ``kill``: ``kill -9`` a stage (ingest, retrieve, score, select, export) at a random point of its run, then re-run
  it: it must exit 0 with output byte-identical to an uninterrupted run and leave no staging / trash / temp / lock.
* ``corrupt``: flip a byte in, or truncate, a random shard of a random artifact: the next stage must refuse it
  (exit 2, not 0 = a silent corruption, not 1 = a raw crash), ``negmine verify`` must flag it, and re-running the
  damaged stage must restore the reference output.
* ``race``: two processes of one stage at once: each exits 0 or 2 (the lock), at least one 0, output identical.
* ``judge``: the judge server goes away in the middle of a relabel: the run exits 1 and publishes nothing (or, if
  it finished first, has at most relabel.max_unjudged unjudged); with the judge back the re-run exits 0; no
  request is answered (paid) twice across the two runs.

Counts: silent corruptions (a damaged or stale input accepted, or output differing from the reference), unrecovered
runs (a re-run that does not exit 0 or does not restore the reference), duplicated paid requests, leftovers.
The JSON goes to ``scripts/results/soak_faults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
STAGES = ("ingest", "retrieve", "score", "select", "export")
DIRS = {"ingest": "ingest", "retrieve": "candidates", "score": "scores", "select": "negatives", "export": "export"}
NEXT = {"ingest": "retrieve", "retrieve": "score", "score": "select", "select": "export"}


def args_of(stage: str, run: Path, data: Path) -> list[str]:
    return {"ingest": ["ingest", str(data), "--split", "test", "--out", str(run)],
            "retrieve": ["retrieve", str(run), "--method", "bm25", "--depth", "50"],
            "score": ["score", str(run)],
            "select": ["select", str(run), "-k", "8"],
            "export": ["export", str(run)]}[stage]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "negmine", "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)


def run(args: list[str]) -> tuple[int, str]:
    p = start(args)
    _out, err = p.communicate()
    return p.returncode, err.strip()


def digest(run_dir: Path, stage: str) -> object:
    """What must be identical to the reference: the shards' sha256 per table (the export file's sha256)."""
    if stage == "export":
        f = run_dir / "export" / "triplet.parquet"
        from negmine.io.store import sha256_file

        return sha256_file(f) if f.is_file() else None
    mf = run_dir / DIRS[stage] / "_manifest.json"
    if not mf.is_file():
        return None
    m = json.loads(mf.read_text())
    return {t: [s["sha256"] for s in v["shards"]] for t, v in m["tables"].items()}


def leftovers(run_dir: Path) -> list[str]:
    pats = (".*.staging-*", ".*.trash-*", ".*.lock", "export/.*.tmp-*", "export/.*.lock", "*/.*.tmp-*")
    return sorted(str(p.relative_to(run_dir)) for pat in pats for p in run_dir.glob(pat))


def fresh(reference: Path, work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(reference, work, symlinks=True)
    return work


def remove_output(run_dir: Path, stage: str) -> None:
    shutil.rmtree(run_dir / DIRS[stage], ignore_errors=True)


def trial_kill(rng, ref, work, data, ref_digest, seconds, out):
    stage = rng.choice(STAGES)
    run_dir = fresh(ref, work)
    remove_output(run_dir, stage)
    p = start(args_of(stage, run_dir, data))
    delay = rng.uniform(0.0, 1.2 * seconds[stage])
    time.sleep(delay)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    code, err = run(args_of(stage, run_dir, data))
    ok = code == 0 and digest(run_dir, stage) == ref_digest[stage]
    left = leftovers(run_dir)
    out.update(kind="kill", stage=stage, delay_s=round(delay, 2), rerun_exit=code, identical=ok, leftovers=left,
               error=err.splitlines()[-1] if code and err else None)
    return {"unrecovered": not ok, "leftovers": len(left)}


def trial_corrupt(rng, ref, work, data, ref_digest, seconds, out):
    stage = rng.choice(STAGES[:-1])
    run_dir = fresh(ref, work)
    from negmine.io.store import Artifact

    art = Artifact.open(run_dir / DIRS[stage])
    shard = rng.choice([p for t in art.tables for p in art.shard_paths(t)])
    data_b = bytearray(shard.read_bytes())
    how = rng.choice(("flip", "truncate"))
    if how == "flip":
        i = rng.randrange(len(data_b))
        data_b[i] ^= 1 << rng.randrange(8)
    else:
        data_b = data_b[: rng.randrange(len(data_b))]
    shard.write_bytes(bytes(data_b))
    nxt = NEXT[stage]
    remove_output(run_dir, nxt)
    code_next, err_next = run(args_of(nxt, run_dir, data))
    code_verify, _ = run(["verify", str(run_dir)])
    code_fix, err_fix = run(args_of(stage, run_dir, data))
    code_next2, _ = run(args_of(nxt, run_dir, data))
    code_verify2, _ = run(["verify", str(run_dir)])
    restored = (code_fix == 0 and code_next2 == 0 and code_verify2 == 0
                and digest(run_dir, stage) == ref_digest[stage] and digest(run_dir, nxt) == ref_digest[nxt])
    out.update(kind="corrupt", stage=stage, shard=str(shard.relative_to(run_dir)), how=how, next=nxt,
               next_exit=code_next, verify_exit=code_verify, repair_exit=code_fix, restored=restored,
               next_error=err_next.splitlines()[-1] if err_next else None)
    return {"silent": code_next == 0 or code_verify == 0, "raw_crash": code_next == 1, "unrecovered": not restored}


def trial_race(rng, ref, work, data, ref_digest, seconds, out):
    stage = rng.choice(("retrieve", "score", "select", "export"))
    run_dir = fresh(ref, work)
    remove_output(run_dir, stage)
    procs = [start(args_of(stage, run_dir, data)) for _ in range(2)]
    codes = []
    errs = []
    for p in procs:
        _o, e = p.communicate()
        codes.append(p.returncode)
        errs.append(e.strip().splitlines()[-1] if e.strip() else "")
    same = digest(run_dir, stage) == ref_digest[stage]
    left = leftovers(run_dir)
    out.update(kind="race", stage=stage, exits=codes, identical=same, leftovers=left,
               errors=[e for c, e in zip(codes, errs, strict=True) if c])
    bad = not (set(codes) <= {0, 2} and 0 in codes)
    return {"unrecovered": bad or not same, "raw_crash": 1 in codes, "leftovers": len(left)}


def trial_judge(rng, ref, work, data, ref_digest, seconds, out):
    import yaml

    from negmine.testing.judge_server import JudgeServer, ServerState, Truth

    run_dir = fresh(ref, work)
    truth = Truth.from_files(data / "qrels" / "test.tsv")
    srv = JudgeServer(ServerState(truth, accuracy=0.9, latency_ms=15, seed=rng.randrange(1 << 30))).start()
    port = srv.port
    cfg = work.parent / "relabel.yaml"
    tier = {"model": "judge", "base_url": srv.base_url, "price_input": 1.0, "price_output": 2.0, "logprobs": True}
    cfg.write_text(yaml.safe_dump({"relabel": {"tiers": [tier], "list_size": 10, "timeout": 2, "max_retries": 1,
                                               "backoff": 0.05, "concurrency": 4, "shard_queries": 60}}))
    p = start(["relabel", str(run_dir), "--config", str(cfg)])
    delay = rng.uniform(0.2, 1.2 * seconds["relabel"])
    time.sleep(delay)
    srv.close()
    _o, err = p.communicate()
    code1 = p.returncode
    silent = False
    if code1 == 0:
        from negmine.io.store import Artifact

        st = Artifact.open(run_dir / "relabel").stats
        silent = st.get("label_unjudged", 0) > 0.05 * max(1, st.get("negatives_in", 1))
    elif (run_dir / "relabel").exists() and not (ref / "relabel").exists():
        silent = True  # something was published by a failed run
    srv2 = JudgeServer(ServerState(truth, accuracy=0.9, seed=rng.randrange(1 << 30)), port=port).start()
    try:
        code2, err2 = run(["relabel", str(run_dir), "--config", str(cfg)])
    finally:
        srv2.close()
    answered = Counter(srv.state.answered_keys) + Counter(srv2.state.answered_keys)
    dup = sum(n - 1 for n in answered.values() if n > 1)
    left = leftovers(run_dir)
    out.update(kind="judge", delay_s=round(delay, 2), first_exit=code1,
               first_error=err.strip().splitlines()[-1] if code1 and err.strip() else None, rerun_exit=code2,
               duplicated_paid=dup, answered=sum(answered.values()), leftovers=left,
               rerun_error=err2.splitlines()[-1] if code2 and err2 else None)
    return {"silent": silent, "unrecovered": code2 != 0, "duplicated_paid": dup, "raw_crash": code1 not in (0, 1),
            "leftovers": len(left)}


TRIALS = {"kill": trial_kill, "corrupt": trial_corrupt, "race": trial_race, "judge": trial_judge}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("NEGMINE_SHARED_DATA") or ROOT.parent / "shared"
                                                      / "data") / "cranfield")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "soak_faults.json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = os.getloadavg()
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        ref = Path(tmp) / "reference" / "run"
        seconds: dict[str, float] = {}
        for stage in STAGES:  # the uninterrupted reference run, timing each stage
            t0 = time.time()
            code, err = run(args_of(stage, ref, a.data))
            if code != 0:
                sys.exit(f"reference {stage} failed: {err}")
            seconds[stage] = time.time() - t0
        ref_digest = {s: digest(ref, s) for s in STAGES}
        # relabel timing (the judge trials kill the server within it)
        from negmine.testing.judge_server import JudgeServer, ServerState, Truth

        tmp_run = fresh(ref, Path(tmp) / "timing" / "run")
        with JudgeServer(ServerState(Truth.from_files(a.data / "qrels" / "test.tsv"), latency_ms=15)) as srv:
            cfg = tmp_run.parent / "relabel.yaml"
            cfg.write_text(json.dumps({"relabel": {"tiers": [{"model": "judge", "base_url": srv.base_url}],
                                                   "list_size": 10, "concurrency": 4, "shard_queries": 60}}))
            t0 = time.time()
            code, err = run(["relabel", str(tmp_run), "--config", str(cfg)])
            seconds["relabel"] = time.time() - t0
            if code != 0:
                sys.exit(f"reference relabel failed: {err}")
        totals: Counter = Counter()
        rounds = []
        work = Path(tmp) / "work" / "run"
        work.parent.mkdir(parents=True)
        for i in range(a.rounds):
            kind = rng.choice(sorted(TRIALS))
            rec: dict = {"round": i + 1}
            t0 = time.time()
            res = TRIALS[kind](rng, ref, work, a.data, ref_digest, seconds, rec)
            rec["seconds"] = round(time.time() - t0, 1)
            for k, v in res.items():
                totals[k] += int(v)
            totals[f"rounds_{kind}"] += 1
            rounds.append(rec)
            flag = [k for k, v in res.items() if v]
            print(f"round {i + 1}/{a.rounds}: {kind} {rec.get('stage', '')} → {', '.join(flag) or 'ok'}",
                  file=sys.stderr, flush=True)
    result = {
        "date": started, "command": "python scripts/soak_faults.py " + " ".join(sys.argv[1:]),
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - t_all, 1), "rounds": a.rounds, "seed": a.seed,
        "reference_stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "silent_corruptions": totals["silent"], "unrecovered_runs": totals["unrecovered"],
        "duplicated_paid_requests": totals["duplicated_paid"], "raw_crashes": totals["raw_crash"],
        "leftovers": totals["leftovers"],
        "rounds_by_kind": {k: totals[f"rounds_{k}"] for k in sorted(TRIALS)},
        "trials": rounds,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=2))


if __name__ == "__main__":
    main()
