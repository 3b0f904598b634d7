"""Benchmark `negmine ingest` on a synthetic 1M-document BEIR corpus (about 60 words a document).

The corpus is generated once (Zipf-distributed vocabulary, fixed seed) and cached under
``.cache/bench_ingest/``; each measured run ingests it into a fresh run directory in a child process, and the
wall time and the child's peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) are recorded.

    python scripts/bench_ingest.py [--docs 1000000] [--repeat 2]

Targets (issue 2): >= 50,000 docs/s and peak RSS <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_DOCS_PER_S = 50_000
TARGET_RSS_GIB = 1.5


def _vocabulary(rng, size: int) -> list[str]:
    """``size`` distinct pseudo-words of 2-12 letters."""
    import numpy as np

    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    words: set[str] = set()
    while len(words) < size:
        lengths = rng.integers(2, 13, size=size)
        chars = letters[rng.integers(0, 26, size=int(lengths.sum()))].tobytes().decode()
        pos = 0
        for n in lengths:
            words.add(chars[pos:pos + n])
            pos += n
    return sorted(words)[:size]


def generate(dst: Path, n_docs: int, words_per_doc: int = 60, n_queries: int = 10_000, seed: int = 0) -> Path:
    """Write a BEIR directory (corpus.jsonl, queries.jsonl, qrels/train.tsv) unless it is already cached."""
    import numpy as np

    done = dst / ".complete"
    if done.is_file():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "qrels").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    vocab = np.array(_vocabulary(rng, 50_000), dtype=object)
    # Zipf-ish word frequencies: p(rank) ∝ 1 / (rank + 2.7)
    p = 1.0 / (np.arange(len(vocab)) + 2.7)
    p /= p.sum()
    t0 = time.time()
    block = 20_000
    with open(dst / "corpus.jsonl", "w", encoding="utf-8") as f:
        for start in range(0, n_docs, block):
            n = min(block, n_docs - start)
            lengths = rng.integers(words_per_doc // 2, words_per_doc * 3 // 2 + 1, size=n)
            toks = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
            ends = np.cumsum(lengths)
            titles = vocab[rng.choice(len(vocab), size=(n, 4), p=p)]
            lines = []
            pos = 0
            for i in range(n):
                text = " ".join(toks[pos:ends[i]])
                pos = ends[i]
                title = " ".join(titles[i])
                lines.append(f'{{"_id": "d{start + i}", "title": "{title}", "text": "{text}"}}\n')
            f.write("".join(lines))
            print(f"\rgenerating corpus: {start + n:,}/{n_docs:,} docs", end="", file=sys.stderr)
    print(f" ({time.time() - t0:.0f} s)", file=sys.stderr)
    with open(dst / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in range(n_queries):
            words = " ".join(vocab[rng.choice(len(vocab), size=8, p=p)])
            f.write(json.dumps({"_id": f"q{q}", "text": words}) + "\n")
    with open(dst / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in range(n_queries):
            for d in rng.choice(n_docs, size=int(rng.integers(1, 4)), replace=False):
                f.write(f"q{q}\td{d}\t1\n")
    done.touch()
    return dst


def ingest_once(data: Path, run_dir: Path) -> dict:
    """One `negmine ingest` in a child process: wall seconds and the child's peak RSS. Called in a fresh
    process per measured run (``--child``), so ``RUSAGE_CHILDREN`` covers exactly this one ingest."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "negmine", "-q", "ingest", str(data), "--split", "train", "--out", str(run_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"ingest failed ({proc.returncode}): {proc.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.loads((run_dir / "ingest" / "_manifest.json").read_text())
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_kib": usage.ru_maxrss,
            "docs": manifest["tables"]["corpus"]["rows"], "stats": manifest["stats"],
            "timings": manifest["timings"], "corpus_shards": len(manifest["tables"]["corpus"]["shards"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="measured runs (the best wall time is reported)")
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "bench_ingest")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_ingest.json")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = generate(args.data_dir / f"synthetic-{args.docs}", args.docs)
    if args.child is not None:  # one measured run in its own process, so RUSAGE_CHILDREN is this run's
        print(json.dumps(ingest_once(data, args.child)))
        return
    size = (data / "corpus.jsonl").stat().st_size
    runs = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        for i in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--docs", str(args.docs), "--data-dir",
                                  str(args.data_dir), "--child", str(Path(tmp) / f"run{i}")],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(r)
            print(f"run {i + 1}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                  f"{args.docs / r['wall_s']:,.0f} docs/s, peak RSS {r['peak_rss_kib'] / 2**20:.2f} GiB",
                  file=sys.stderr)
    best = min(runs, key=lambda r: r["wall_s"])
    peak = max(r["peak_rss_kib"] for r in runs) / 2**20
    docs_per_s = args.docs / best["wall_s"]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "scripts/bench_ingest.py"] + sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "docs": args.docs,
        "corpus_bytes": size,
        "queries": best["stats"].get("queries"),
        "positives": best["stats"].get("positives"),
        "corpus_shards": best["corpus_shards"],
        "wall_s_runs": [round(r["wall_s"], 2) for r in runs],
        "cpu_s_runs": [round(r["cpu_s"], 2) for r in runs],
        "stage_timings_best": best["timings"],
        "load_average_1_5_15min_at_start": [round(x, 2) for x in load_start],
        "load_average_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s_best": round(best["wall_s"], 2),
        "docs_per_s": round(docs_per_s),
        "mb_per_s": round(size / best["wall_s"] / 1e6, 1),
        "peak_rss_gib": round(peak, 3),
        "target_docs_per_s": TARGET_DOCS_PER_S,
        "target_peak_rss_gib": TARGET_RSS_GIB,
        "meets_targets": docs_per_s >= TARGET_DOCS_PER_S and peak <= TARGET_RSS_GIB,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| docs | corpus MB | wall s (best of {args.repeat}) | CPU s | docs/s | MB/s | peak RSS GiB | "
          "targets met |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.docs:,} | {size / 1e6:,.0f} | {result['wall_s_best']} | {round(best['cpu_s'], 2)} | "
          f"{result['docs_per_s']:,} | {result['mb_per_s']} | {result['peak_rss_gib']} | {result['meets_targets']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
