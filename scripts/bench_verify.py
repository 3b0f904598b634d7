"""What shard verification costs: xxh3-128 of every shard recorded when a stage publishes, checked (with the
lineage of its inputs) before the next stage reads them, on the synthetic 1M-document corpus of bench_ingest.

    python scripts/bench_verify.py [--docs 1000000]

Measured, each stage in its own child process (wall time of the child):
* ingest of the corpus, and the xxh3 of its written shards (the write-side cost, paid once in ``finish``);
* ``check_inputs(ingest)`` as retrieve calls it (lineage + xxh3 of every ingest shard; page cache warm, as it is
  right after ingest);
* retrieve (BM25, depth 100) of the 10,000 queries: cold (index built), then warm (index cached:
  the cheapest retrieve, where the check weighs most);
* ``negmine verify RUN`` on the whole run.

Target (issue 13): verification <= 5 % of the stage that pays it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_ingest import generate  # noqa: E402


def _child(args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "negmine", "-q", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"negmine {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return wall


def _timed_check(run: Path) -> dict[str, float]:
    code = ("import json, sys, time; from negmine.io.store import Artifact, check_inputs, xxh3_file; "
            "a = Artifact.open(sys.argv[1] + '/ingest'); t = time.perf_counter(); check_inputs(a); "
            "c = time.perf_counter() - t; t = time.perf_counter(); "
            "[xxh3_file(p) for tb in a.tables for p in a.shard_paths(tb)]; "
            "print(json.dumps({'check_inputs_s': c, 'xxh3_s': time.perf_counter() - t}))")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "bench_ingest")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_verify.json")
    args = ap.parse_args()
    data = generate(args.data_dir / f"synthetic-{args.docs}", args.docs)
    load = os.getloadavg()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        run = Path(tmp) / "run"
        cache = Path(tmp) / "cache"
        os.environ["NEGMINE_CACHE_DIR"] = str(cache)  # a cold BM25 index, then a cached one
        ingest_s = _child(["ingest", str(data), "--split", "train", "--out", str(run)])
        m = json.loads((run / "ingest" / "_manifest.json").read_text())
        size = sum((run / "ingest" / t["dir"] / s["file"]).stat().st_size
                   for t in m["tables"].values() for s in t["shards"])
        check = _timed_check(run)
        retrieve_cold_s = _child(["retrieve", str(run), "--method", "bm25", "--depth", "100"])
        retrieve_warm_s = _child(["retrieve", str(run), "--method", "bm25", "--depth", "99"])
        verify_s = _child(["verify", str(run)])
    result = {
        "date": started,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "command": "python scripts/bench_verify.py " + " ".join(sys.argv[1:]),
        "load_average_at_start": [round(x, 2) for x in load],
        "docs": args.docs, "queries": int(m["tables"]["queries"]["rows"]), "ingest_bytes": size,
        "ingest_s": round(ingest_s, 2), "ingest_xxh3_s": round(check["xxh3_s"], 3),
        "check_inputs_s": round(check["check_inputs_s"], 3),
        "xxh3_gb_per_s": round(size / check["xxh3_s"] / 1e9, 2),
        "retrieve_cold_s": round(retrieve_cold_s, 2), "retrieve_warm_s": round(retrieve_warm_s, 2),
        "verify_run_s": round(verify_s, 2),
        "share_of_ingest": round(check["xxh3_s"] / ingest_s, 4),
        "share_of_retrieve_cold": round(check["check_inputs_s"] / retrieve_cold_s, 4),
        "share_of_retrieve_warm": round(check["check_inputs_s"] / retrieve_warm_s, 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
