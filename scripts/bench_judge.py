"""Benchmark the judge path of `negmine relabel`: client + cache + parsing against `negmine judge-server` with 50 ms
latency per request, concurrency 64.

The server runs in its own process (as a real judge would), the relabel stage in this one, with a fresh response
cache for every measured run, on a hidden-positives Cranfield run (all 225 queries, 16 mined negatives each =
3,600 (query, negative) judgments). One tier, so every negative is judged exactly once. Modes: listwise with 10 and
with 4 candidates per request, and pointwise (one request per negative — the request-bound worst case).

    python scripts/bench_judge.py [--latency-ms 50] [--concurrency 64] [--repeat 2]

Target (issue 5): >= 200 judgments/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "cranfield"
TARGET = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, latency_ms: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "negmine", "judge-server", "--qrels", str(DATA / "qrels" / "test.tsv"),
                             "--port", str(port), "--latency-ms", str(latency_ms), "--accuracy", "0.9"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("judge-server exited") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("judge-server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--negatives", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "scripts" / "results" / "bench_judge.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("negmine").setLevel(logging.WARNING)

    from negmine.judge.params import RelabelParams, Tier
    from negmine.judge.stage import run_relabel
    from negmine.testing.simulate import build_hidden_run

    work = Path(tempfile.mkdtemp(prefix="bench_judge_"))
    port = free_port()
    server = start_server(port, args.latency_ms)
    rows = []
    try:
        base, negs, _hidden = build_hidden_run(DATA, work / "base", n_queries=10_000, per_query=args.negatives)
        n_judgments = sum(len(v) for v in negs.values())
        modes = [("listwise m=10", "listwise", 10), ("listwise m=4", "listwise", 4), ("pointwise", "pointwise", 1)]
        for name, prompt, m in modes:
            runs = []
            for rep in range(args.repeat):
                run = work / f"run-{prompt}-{m}-{rep}"
                shutil.copytree(base, run)
                p = RelabelParams(tiers=[Tier(model="bench", base_url=f"http://127.0.0.1:{port}/v1")],
                                  prompt=prompt, list_size=m, concurrency=args.concurrency, timeout=30,
                                  cache_path=str(run / "cache.sqlite"))
                t = time.perf_counter()
                res = run_relabel(run, p, progress=False)
                dt = time.perf_counter() - t
                st = res.artifact.stats
                judged = st.get("judgments_tier1", 0)
                assert judged == n_judgments, (judged, n_judgments)
                runs.append({"seconds": dt, "judgments": judged, "requests": st["requests_sent"],
                             "unjudged": st.get("label_unjudged", 0)})
            secs = statistics.median(r["seconds"] for r in runs)
            r0 = runs[0]
            rows.append({"mode": name, "judgments": r0["judgments"], "requests": r0["requests"],
                         "seconds_median": round(secs, 3), "seconds_all": [round(r["seconds"], 3) for r in runs],
                         "judgments_per_s": round(r0["judgments"] / secs, 1),
                         "requests_per_s": round(r0["requests"] / secs, 1),
                         "unjudged": r0["unjudged"], "meets_target": r0["judgments"] / secs >= TARGET})
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"judge throughput: server latency {args.latency_ms:g} ms/request, concurrency {args.concurrency}, "
          f"median of {args.repeat} runs (whole relabel stage, fresh cache)")
    print(f"{'mode':<15} {'judgments':>9} {'requests':>8} {'seconds':>8} {'judg/s':>8} {'req/s':>8}  target>={TARGET:g}")
    for r in rows:
        print(f"{r['mode']:<15} {r['judgments']:>9} {r['requests']:>8} {r['seconds_median']:>8.2f} "
              f"{r['judgments_per_s']:>8.1f} {r['requests_per_s']:>8.1f}  {'yes' if r['meets_target'] else 'NO'}")
    out = {"script": "bench_judge.py", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "latency_ms": args.latency_ms, "concurrency": args.concurrency, "target_judgments_per_s": TARGET,
           "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
