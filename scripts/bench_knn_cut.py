"""Memory and time of the flat dense search's cut (``retrieve.dense.exact_knn``) when a query block's lists come from
many parts: the Ray engine's workers search 4,096 queries over every object-store block of the index (16 blocks of
65,536 documents at 1M), and each block gives ``depth + TIE_PAD`` neighbours per query, which are merged and sorted.

The parts here return precomputed lists (random scores, sorted as faiss returns them; distinct document indices), so
only the cut is measured: its peak of traced memory (numpy's allocations, ``tracemalloc``) above what the parts
hold, and its time, with the rows merged ``CUT_ROWS`` at a time and with all rows at once (``--cut-rows 0``, the
cut before ``CUT_ROWS`` existed); the results are checked equal.

    python scripts/bench_knn_cut.py                       # 4,096 queries x 16 parts, depth 100
    python scripts/bench_knn_cut.py --parts 2 --queries 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from negmine.retrieve import dense  # noqa: E402


def parts(n_parts: int, n_queries: int, kk: int, block: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_parts):
        s = -np.sort(-rng.random((n_queries, kk), dtype=np.float32), axis=1)
        i = np.argsort(rng.random((n_queries, block)), axis=1)[:, :kk].astype(np.int64)
        out.append((p * block, block, lambda q, k, s=s, i=i: (s[:len(q), :k], i[:len(q), :k])))
    return out


def measure(ps: list, xq: np.ndarray, depth: int, cut_rows: int) -> dict:
    dense.CUT_ROWS = cut_rows or len(xq)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    idx, scores = dense.exact_knn(ps, xq, depth)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"cut_rows": cut_rows or len(xq), "peak_mib": round(peak / 2**20, 1), "wall_s": round(wall, 3),
            "result": (idx, scores)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--queries", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--block", type=int, default=65_536, help="documents per part")
    ap.add_argument("--cut-rows", type=int, default=dense.CUT_ROWS, help="rows merged at a time (0: all)")
    args = ap.parse_args()
    kk = args.depth + dense.TIE_PAD
    ps = parts(args.parts, args.queries, kk, min(args.block, 4 * kk))
    xq = np.zeros((args.queries, 1), dtype=np.float32)
    runs = [measure(ps, xq, args.depth, c) for c in (0, args.cut_rows, 0, args.cut_rows)]  # each twice, alternated
    same = all(np.array_equal(a, b) for r in runs[1:] for a, b in zip(runs[0]["result"], r["result"], strict=True))
    for r in runs:
        r.pop("result")
    print(json.dumps({"parts": args.parts, "queries": args.queries, "depth": args.depth, "kk": kk, "runs": runs,
                      "results_equal": same}, indent=1))


if __name__ == "__main__":
    main()
