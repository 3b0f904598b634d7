#!/usr/bin/env python
"""Encoder backends on this machine: throughput, agreement with torch fp32 and mining quality.

Per backend (negmine/encode/backends.py), all in ONE process so every ratio compares figures of the same run:

* passages/s embedding the first ``--docs`` SciFact documents (``title + " " + text``, truncated by the tokenizer at
  the model's max_seq_length as sentence-transformers does) through ``negmine.encode.encode_texts`` (embedding cache
  off, batch size ``--batch-size``); the export / quantisation is built before timing (its time is reported apart);
* the reference: sentence-transformers' default ``SentenceTransformer(model).encode(docs)`` (torch fp32, its default
  batch size 32), timed before AND after the backends (the mean is the ratio's denominator; both are reported);
* dense retrieval over those documents with the SciFact test queries: top-100 overlap and top-1 agreement with
  torch fp32 (negmine's torch path, i.e. sentence-transformers' vectors);
* with ``--quality``: ``scripts/bench_quality.py --backend B`` per backend (a subprocess, its own work directory)
  and the difference of every row's FN rate, coverage and hardness to the torch rows.

    python scripts/bench_encode.py --data ../shared/data/scifact --docs 2000 [--quality [--quality-backends auto]]

Writes scripts/results/bench_encode.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "all-MiniLM-L6-v2"
QUALITY_ROWS = ["naive top-8", "perc 0.95", "pos_sim < 0.65", "negmine default (no select keys)"]
QUALITY_METRICS = ("fn_rate", "coverage", "hardness")


def load_scifact(root: Path, n_docs: int) -> tuple[list[str], list[str]]:
    docs = []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d['title']} {d['text']}" if d.get("title") else d["text"])
            if len(docs) >= n_docs:
                break
    test_q = {line.split("\t")[0] for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = []
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in test_q:
                queries.append(q["text"])
    return docs, queries


def st_default(docs: list[str]) -> float:
    """passages/s of sentence-transformers' default encode (torch fp32, batch size 32)."""
    from sentence_transformers import SentenceTransformer

    from negmine.models import resolve_model

    st = SentenceTransformer(resolve_model(MODEL), device="cpu")
    st.encode(docs[:32])  # warm-up
    t = time.perf_counter()
    st.encode(docs)
    return len(docs) / (time.perf_counter() - t)


def topk(qv, dv, k: int):
    import numpy as np

    s = qv @ dv.T
    idx = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, idx, axis=1), axis=1)
    return np.take_along_axis(idx, order, axis=1)


def run_backend(backend: str, docs: list[str], queries: list[str], batch_size: int) -> dict:
    from negmine.encode.backends import ensure_built, resolve_backend
    from negmine.encode.embed import encode_texts

    t = time.perf_counter()
    concrete = resolve_backend(backend, MODEL, "cpu", "bi")
    gate = ensure_built(MODEL, concrete, "bi")
    build = time.perf_counter() - t
    common = {"model": MODEL, "batch_size": batch_size, "device": "cpu", "use_cache": False, "backend": concrete}
    encode_texts(docs[:32], kind="doc", **common)  # warm-up: load the model / compile
    t = time.perf_counter()
    dv = encode_texts(docs, kind="doc", **common)
    secs = time.perf_counter() - t
    qv = encode_texts(queries, kind="query", **common)
    return {"backend": backend, "concrete": concrete, "passages_per_s": len(docs) / secs, "seconds": secs,
            "build_seconds": build, "gate": gate, "dv": dv, "qv": qv}


def quality(backend: str, args: argparse.Namespace) -> dict:
    out = ROOT / "scripts" / "results" / f"bench_encode_quality_{backend}.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_quality.py"), "--data-root", str(args.data.parent),
           "--no-st", "--calibration-seeds", "--backend", backend, "--work", str(args.work / backend),
           "--out", str(out), "--only", *QUALITY_ROWS]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    res = json.loads(out.read_text())["results"]
    print(f"bench_quality --backend {backend}: {time.perf_counter() - t:.0f} s", flush=True)
    return {ds: {row: {m: res[ds][row][m] for m in QUALITY_METRICS} for row in QUALITY_ROWS} for ds in res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64, help="negmine's batch size (its default: 64)")
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8", "openvino", "openvino-int8",
                                                      "auto"])
    ap.add_argument("--quality", action="store_true", help="also run bench_quality.py for torch and the backends "
                    "of --quality-backends")
    ap.add_argument("--quality-backends", nargs="+", default=["auto"])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_encode")
    ap.add_argument("--json", type=Path, default=ROOT / "scripts" / "results" / "bench_encode.json")
    args = ap.parse_args()

    import numpy as np

    from negmine.cli import setup_logging
    from negmine.encode.backends import BackendUnavailable

    setup_logging(30)
    load_start = os.getloadavg()
    t0 = time.time()
    docs, queries = load_scifact(args.data, args.docs)
    st_before = st_default(docs)
    print(f"sentence-transformers default encode: {st_before:.1f} passages/s", flush=True)
    runs = {}
    for b in args.backends:
        try:
            runs[b] = run_backend(b, docs, queries, args.batch_size)
        except BackendUnavailable as e:
            runs[b] = {"backend": b, "error": str(e)}
            print(f"{b}: unavailable ({e})", flush=True)
            continue
        print(f"{b} ({runs[b]['concrete']}): {runs[b]['passages_per_s']:.1f} passages/s", flush=True)
    st_after = st_default(docs)
    st = (st_before + st_after) / 2
    ref = runs.get("torch")
    rows = []
    for b, r in runs.items():
        row = {"backend": b, "concrete": r.get("concrete"), "error": r.get("error")}
        if "dv" in r:
            row |= {"passages_per_s": round(r["passages_per_s"], 1), "ratio_to_st": round(r["passages_per_s"] / st, 2),
                    "build_seconds": round(r["build_seconds"], 1),
                    "gate": {k: v for k, v in r["gate"].items() if k != "identity"}}
            if ref is not None and "dv" in ref:
                k = min(100, len(docs))
                a, bb = topk(ref["qv"], ref["dv"], k), topk(r["qv"], r["dv"], k)
                row["top100_overlap"] = round(float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, bb,
                                                                                                  strict=True)])), 4)
                row["top1_agreement"] = round(float(np.mean(a[:, 0] == bb[:, 0])), 4)
                row["min_doc_cosine"] = round(float(np.min(np.sum(ref["dv"] * r["dv"], axis=1))), 4)
        rows.append(row)
    qual = {}
    if args.quality:
        wanted = ["torch"]
        for b in args.quality_backends:
            c = runs.get(b, {}).get("concrete")
            if c and c not in wanted:
                wanted.append(c)
        for c in wanted:
            qual[c] = quality(c, args)
        base = qual["torch"]
        for row in rows:
            q = qual.get(row["concrete"])
            if q is None:
                continue
            diffs = [abs(q[ds][n][m] - base[ds][n][m]) for ds in q for n in QUALITY_ROWS for m in QUALITY_METRICS]
            row["quality_max_abs_diff"] = round(max(diffs), 4)
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
           "load_average_start": load_start, "load_average_end": os.getloadavg(),
           "command": "python scripts/bench_encode.py " + " ".join(sys.argv[1:]), "model": MODEL,
           "docs": len(docs), "queries": len(queries), "st_default_passages_per_s": [round(st_before, 1),
                                                                                   round(st_after, 1)],
           "wall_seconds": round(time.time() - t0, 1), "rows": rows, "quality": qual, "quality_rows": QUALITY_ROWS}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nST default encode (torch fp32, batch 32): {st_before:.1f} / {st_after:.1f} passages/s (before / after)\n")
    print("| backend | runs as | passages/s | × ST default | top-100 overlap | top-1 agreement | min doc cosine | "
          "gate | quality max |Δ| | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("error"):
            print(f"| {r['backend']} | unavailable: {r['error']} | | | | | | | | |")
            continue
        g = r["gate"]
        gate = f"{'pass' if g.get('passed') else 'fail'} {g.get('min_cosine', '')}".strip()
        print(f"| {r['backend']} | {r['concrete']} | {r['passages_per_s']} | {r['ratio_to_st']} | "
              f"{r.get('top100_overlap', '')} | {r.get('top1_agreement', '')} | {r.get('min_doc_cosine', '')} | "
              f"{gate} | {r.get('quality_max_abs_diff', '')} | {r['build_seconds']} |")
    print(f"\nwritten {args.json} ({out['wall_seconds']} s)")


if __name__ == "__main__":
    main()
