"""RSS timeline of the dense retrieve stage's index build: where its peak is.

Runs ``run_retrieve`` in this process on the ingest of an existing ``bench_scale.py`` run (linked into a run
directory of its own, ``RUN-memory``, so the original run's candidates are left alone), with a thread that samples
``VmRSS`` every 0.2 s and labels it with the phase: the add of the block starting at document N (``add@N``), after it
(``added@N``), the search, the end. Prints the peak of each phase and the process' ``ru_maxrss``.

``--no-reserve`` builds the flat index without reserving its storage first (``retrieve.dense.reserve`` made a no-op):
the faiss vector then grows by doubling, as it did before the reservation.

    python scripts/bench_scale.py --docs 1000000 --queries 200 --method dense --stages ingest,retrieve \\
        --cache negmine-cache-cold-r3 --tag=-cold                       # the run (and its vectors in the cache)
    python scripts/bench_dense_memory.py .cache/bench_scale/runs/dense-1000000-200-cold --cache negmine-cache-cold-r3
    python scripts/bench_dense_memory.py .cache/bench_scale/runs/dense-1000000-200-cold --cache negmine-cache-cold-r3 \\
        --no-reserve
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) >> 10
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a bench_scale.py run directory (its RUN.yaml beside it)")
    ap.add_argument("--cache", required=True, help="the $NEGMINE_CACHE_DIR under .cache/bench_scale")
    ap.add_argument("--no-reserve", action="store_true", help="let the flat index grow by doubling")
    args = ap.parse_args()
    os.environ["NEGMINE_CACHE_DIR"] = str(ROOT / ".cache" / "bench_scale" / args.cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from negmine.config import load_config
    from negmine.retrieve import dense
    from negmine.retrieve.stage import run_retrieve

    src = args.run.resolve()
    run = src.with_name(src.name + "-memory")
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    (run / "ingest").symlink_to(src / "ingest")
    cfg = load_config(src.with_name(src.name + ".yaml"))
    if args.no_reserve:
        dense.reserve = lambda index, n_total: False

    phase = ["start"]
    peaks: dict[str, int] = {}

    def sample() -> None:
        while True:
            peaks[phase[0]] = max(peaks.get(phase[0], 0), _rss_mib())
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    encode, add, search = dense.DenseSearcher._encode, dense.FlatIndex.add, dense.DenseSearcher.search

    def timed_encode(self, texts):
        phase[0] = f"encode@{self.n_docs}"
        return encode(self, texts)

    def timed_add(self, vecs):
        n = 0 if self.cpu is None else self.cpu.ntotal
        phase[0] = f"add@{n}"
        add(self, vecs)
        phase[0] = f"added@{n + len(vecs)}"

    def timed_search(self, queries, k):
        phase[0] = "search"
        return search(self, queries, k)

    dense.DenseSearcher._encode, dense.FlatIndex.add, dense.DenseSearcher.search = timed_encode, timed_add, timed_search
    t0 = time.time()
    run_retrieve(run, cfg.retrieve)
    phase[0] = "end"
    time.sleep(0.5)
    print(f"{'phase':>16} {'peak RSS MiB':>13}")
    for name, mib in peaks.items():
        print(f"{name:>16} {mib:13d}")
    print(f"wall {time.time() - t0:.1f} s, ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.3f} GiB"
          f", reserve {'off' if args.no_reserve else 'on'}")
    shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
