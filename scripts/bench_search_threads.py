"""The local engine's flat search: one faiss call at a time over all cores, or one call per core at a time?

The 1M x 100k dense runs of round 6 found the Ray engine's search (two workers, one faiss thread each, one query
block each) 17 % faster than the local engine's (one process, faiss's OpenMP threads over one query block at a
time) on the same two cores. This script measures the two ways in one process, on the same vectors, alternating:

* ``omp``: the local engine's :class:`negmine.retrieve.dense.FaissSearch` as it is: one query block
  (``SEARCH_BATCH`` rows) at a time, faiss with ``--threads`` OpenMP threads;
* ``blocks``: the same blocks through the same ``FaissSearch``, ``--threads`` of them at a time, each in its own
  Python thread whose faiss runs one OpenMP thread (faiss releases the GIL): what the Ray workers do.

Every run must return the same rows to the last bit (asserted). Random unit vectors (seed 0), dimension 384.

    python scripts/bench_search_threads.py --docs 262144 --queries 8192 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _blocks(fs, xq, k: int, threads: int):
    """``fs.search`` block by block, ``threads`` blocks at a time, one faiss thread each."""
    from concurrent.futures import ThreadPoolExecutor

    import faiss
    import numpy as np

    from negmine.retrieve.dense import SEARCH_BATCH

    idx = np.empty((len(xq), k), dtype=np.int64)
    scores = np.empty((len(xq), k), dtype=np.float32)

    def one(s: int) -> None:
        faiss.omp_set_num_threads(1)  # (this thread's OpenMP setting only)
        idx[s:s + SEARCH_BATCH], scores[s:s + SEARCH_BATCH] = fs.search(xq[s:s + SEARCH_BATCH], k)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(0, len(xq), SEARCH_BATCH)))
    return idx, scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=262_144)
    ap.add_argument("--queries", type=int, default=8192)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", default="omp,blocks")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import faiss
    import numpy as np

    import negmine.retrieve.dense as dense

    started, load_at_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((args.docs, 384), dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = rng.standard_normal((args.queries, 384), dtype=np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(384)
    index.add(xb)
    fs = dense.FaissSearch(index)
    ref = None
    rows: list[dict] = []
    for rep in range(args.repeat):
        for mode in args.modes.split(","):
            faiss.omp_set_num_threads(args.threads)
            t0, c0 = time.perf_counter(), time.process_time()
            got = fs.search(xq, args.depth) if mode == "omp" else _blocks(fs, xq, args.depth, args.threads)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if ref is None:
                ref = got
            same = bool(np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1]))
            rows.append({"mode": mode, "repeat": rep, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "same_rows": same})
            print(f"{mode:7s} run {rep}: wall {wall:7.2f} s  CPU {cpu:7.2f} s  same rows: {same}", flush=True)
            if not same:
                return 1
    modes = args.modes.split(",")
    for mode in modes:
        w = [r["wall_s"] for r in rows if r["mode"] == mode]
        c = [r["cpu_s"] for r in rows if r["mode"] == mode]
        print(f"{mode:7s} wall best {min(w):.2f} s, median {float(np.median(w)):.2f} s; "
              f"CPU median {float(np.median(c)):.2f} s")
    if len(modes) == 2:  # each repeat runs both modes back to back: their ratio is least moved by the box's drift
        ratio = [b["wall_s"] / a["wall_s"] for a, b in zip(rows[::2], rows[1::2], strict=True)]
        print(f"{modes[1]} / {modes[0]} wall, per repeat: " + ", ".join(f"{r:.2f}" for r in ratio)
              + f"; median {float(np.median(ratio)):.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "date": started, "ended": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_at_start": load_at_start, "load_at_end": os.getloadavg()[0],
            "args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
