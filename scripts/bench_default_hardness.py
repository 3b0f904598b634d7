#!/usr/bin/env python
"""What the no-judge default rule costs on a collection with few unlabelled relevant documents: SciFact train
(809 claims, ~1.1 labelled positive each), dense top-100 with the packaged all-MiniLM-L6-v2 as retriever and teacher.
No qrels measure its false negatives, so this reports what the rule does to the negatives: mean teacher score and
rank of the kept negatives (hardness proxy: ÷ naive top-8's), queries short of 8, candidates dropped, for naive
top-8, the fixed `max_pos_sim: 0.55` and `max_pos_sim: auto` (the shipped default).

    NEGMINE_CACHE_DIR=.cache/bench python scripts/bench_default_hardness.py   # scripts/results/bench_default_hardness.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS = {"naive top-8": {"max_pos_sim": None, "dedup": False},
            "fixed max_pos_sim 0.55": {"max_pos_sim": 0.55},
            "max_pos_sim auto (default)": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--split", default="train")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_default_hardness")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_default_hardness.json")
    args = ap.parse_args()

    import pyarrow.compute as pc

    from negmine.cli import setup_logging
    from negmine.config import load_config
    from negmine.pipeline import run_mine
    from negmine.select.params import SelectParams
    from negmine.select.stage import run_select

    setup_logging(30)
    t0 = time.time()
    run = args.work / args.data.name
    run_mine(load_config(None, [f"input.path={args.data}", "input.format=beir", f"input.split={args.split}",
                                "retrieve.depth=100", "select.max_pos_sim=null", "select.calibration=off"]), run)
    rows = {}
    for name, kw in SETTINGS.items():
        art = run_select(run, SelectParams(num_negatives=8, calibration="off", **kw)).artifact
        neg = art.read("negatives")
        st = art.stats
        rows[name] = {"kept": neg.num_rows, "mean_score": pc.mean(neg["teacher_score"]).as_py(),
                      "mean_rank": pc.mean(neg["rank"]).as_py(), "queries": st["queries"],
                      "queries_short": st["queries_short"],
                      "dropped_similar_to_positive": st["dropped"].get("similar_to_positive", 0),
                      "threshold": st.get("max_pos_sim")}
    base = rows["naive top-8"]["mean_score"]
    print(f"{args.data.name} {args.split}: {rows['naive top-8']['queries']} queries, dense top-100, MiniLM\n")
    print("| setting | threshold | mean score (÷ naive) | mean rank | queries short of 8 | dropped as similar |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        r["score_vs_naive"] = r["mean_score"] / base
        t = "–" if r["threshold"] is None else f"{r['threshold']:.3f}"
        print(f"| {name} | {t} | {r['mean_score']:.4f} ({r['score_vs_naive']:.3f}) | {r['mean_rank']:.1f} | "
              f"{r['queries_short']} | {r['dropped_similar_to_positive']:,} |")
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_average": os.getloadavg(),
           "command": "python scripts/bench_default_hardness.py " + " ".join(sys.argv[1:]),
           "dataset": str(args.data), "split": args.split, "rows": rows, "seconds": round(time.time() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
