"""Peak RSS of one embedding-cache lookup: random rows of a large cache, with and without dropping each vector
file's pages after its rows are copied out (negmine.encode.cache._release).

    python scripts/bench_cache_peak.py                       # 1M x 384 vectors in 16 files, 131,072 rows looked up

Builds the cache once under .cache/bench_cache_peak/ (768 MB), then measures each mode in a fresh process
(RSS before the lookup, the process' peak ``ru_maxrss``), twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import resource, sys, time
import numpy as np
from pathlib import Path
import negmine.encode.cache as C
from negmine.encode.embed import text_keys
n, rows, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cache = C.EmbeddingCache.for_key({"model": "bench-cache-peak"}, root=Path(sys.argv[1]))
if mode == "keep-pages":
    C._release = lambda arr: None
keys = text_keys([f"t{i}" for i in np.random.default_rng(1).choice(n, rows, replace=False)])
import os
rss_before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
t = time.perf_counter()
found, out = cache.lookup(keys, dtype=np.float16)
dt = time.perf_counter() - t
assert found.all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{mode:12s} RSS before the lookup {rss_before:5.0f} MiB, process peak {peak:5.0f} MiB, "
      f"lookup result {out.nbytes / 2**20:.0f} MiB, {dt:.2f} s")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--rows", type=int, default=131_072)
    args = ap.parse_args()
    import numpy as np

    from negmine.encode.cache import EmbeddingCache
    from negmine.encode.embed import text_keys

    root = ROOT / ".cache" / "bench_cache_peak" / f"{args.vectors}x{args.dim}x{args.files}"
    if not (root / ".complete").is_file():
        cache = EmbeddingCache.for_key({"model": "bench-cache-peak"}, root=root)
        keys = text_keys([f"t{i}" for i in range(args.vectors)])
        per = args.vectors // args.files
        for f in range(args.files):
            part = slice(f * per, (f + 1) * per if f < args.files - 1 else args.vectors)
            vec = np.random.default_rng(f).standard_normal((len(keys[part]), args.dim), np.float32)
            cache.append(keys[part], vec.astype(np.float16))
        (root / ".complete").touch()
    for _ in range(2):
        for mode in ("release", "keep-pages"):
            subprocess.run([sys.executable, "-c", CHILD, str(root), str(args.vectors), str(args.rows), mode],
                           check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


if __name__ == "__main__":
    main()
