"""Benchmark negmine's BM25 stage (bm25s) against rank-bm25's BM25Okapi on a synthetic corpus.

100,000 documents of ~60 words from a Zipf vocabulary (the generator of ``scripts/bench_ingest.py``) and 1,000
queries of 8 words. In one process:

* negmine: ``run_retrieve(method=bm25, depth=100)`` on the ingested run, first with an empty BM25 index cache
  (tokenise + index + search, "cold"), then twice with the cached index ("warm"; best of two). Queries/s are
  reported for the stage's search time (manifest ``timings.search_bm25``) and for the whole stage wall time.
* rank-bm25: ``BM25Okapi`` over the same tokens (negmine's tokenizer), same k1/b. It scores every document in
  Python for each query (~seconds per query here), so it is timed on a subset of queries (``--okapi-queries``,
  default 40) between the two warm negmine runs and its per-query time is extrapolated to 1,000 queries.
* the overlap of the two top-100 lists on that subset (bm25s' lucene idf vs Okapi's idf with its ε floor).

    python scripts/bench_bm25.py [--docs 100000] [--queries 1000] [--okapi-queries 40]

Target (issue 3): negmine queries/s >= 100 × rank-bm25 queries/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPTH = 100


def _generator():
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "scripts" / "bench_ingest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.generate


def _stage(run: Path, params) -> tuple[float, float, float, dict[str, list[str]]]:
    """(wall s, search s, CPU s, top lists) of one BM25 stage run."""
    from negmine.retrieve.stage import run_retrieve

    shutil.rmtree(run / "candidates", ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    art = run_retrieve(run, params).artifact
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t = art.read(columns=["query_id", "doc_id"])
    top: dict[str, list[str]] = {}
    for q, d in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), strict=True):
        top.setdefault(q, []).append(d)
    return wall, art.manifest["timings"]["search_bm25"], cpu, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--okapi-queries", type=int, default=40)
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "bench_bm25")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_bm25.json")
    args = ap.parse_args()

    import numpy as np
    from rank_bm25 import BM25Okapi

    data = _generator()(args.data_dir / f"synthetic-{args.docs}-{args.queries}q", args.docs,
                        n_queries=args.queries)
    work = Path(tempfile.mkdtemp(prefix="bench_bm25_"))
    os.environ["NEGMINE_CACHE_DIR"] = str(work / "cache")  # empty BM25 index cache: the first run is cold
    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams
    from negmine.io.store import Artifact
    from negmine.models import doc_text
    from negmine.retrieve.bm25 import tokenize
    from negmine.retrieve.params import RetrieveParams
    from negmine.retrieve.ranking import topk_rows

    run = work / "run"
    run_ingest(run, IngestParams(path=str(data), split="train"))
    params = RetrieveParams(method="bm25", depth=DEPTH)
    cfg = params.resolved()[0]
    ingest = Artifact.open(run / "ingest")
    n_q = ingest.num_rows("queries")

    cold_wall, cold_search, cold_cpu, top = _stage(run, params)
    print(f"negmine cold (tokenise + index + search): {cold_wall:.2f} s", flush=True)
    warm = [_stage(run, params)[:3]]

    # rank-bm25 on the same tokens, timed on a subset of queries
    corpus = ingest.read("corpus")
    texts = [doc_text(a, b) for a, b in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist(), strict=True)]
    ids = np.asarray(corpus["doc_id"].to_pylist(), dtype=object)
    doc_tokens = tokenize(texts, cfg)
    t0 = time.perf_counter()
    okapi = BM25Okapi(doc_tokens, k1=cfg.k1, b=cfg.b)
    okapi_index_s = time.perf_counter() - t0
    queries = ingest.read("queries")
    sub = list(range(0, n_q, max(1, n_q // args.okapi_queries)))[: args.okapi_queries]
    qtok = tokenize([queries["text"][i].as_py() for i in sub], cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    okapi_top = []
    for toks in qtok:
        idx, _ = topk_rows(okapi.get_scores(toks)[None, :], DEPTH)
        okapi_top.append(ids[idx[0][idx[0] >= 0]].tolist())
    okapi_search_s, okapi_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(f"rank-bm25: index {okapi_index_s:.1f} s, {len(sub)} queries in {okapi_search_s:.1f} s", flush=True)

    warm.append(_stage(run, params)[:3])
    warm_wall, warm_search, warm_cpu = (min(w[i] for w in warm) for i in range(3))
    qids = queries["query_id"].to_pylist()
    overlap = [len(set(top[qids[i]]) & set(o)) / DEPTH for i, o in zip(sub, okapi_top, strict=True)]
    top1 = np.mean([top[qids[i]][0] == o[0] for i, o in zip(sub, okapi_top, strict=True)])

    okapi_qps = len(sub) / okapi_search_s
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python scripts/bench_bm25.py " + " ".join(sys.argv[1:]),
        "docs": ingest.num_rows("corpus"), "queries": n_q, "depth": DEPTH,
        "params": {"bm25_method": cfg.bm25_method, "k1": cfg.k1, "b": cfg.b, "stopwords": cfg.stopwords,
                   "stemmer": cfg.stemmer},
        "negmine": {"cold_stage_s": round(cold_wall, 3), "cold_search_s": round(cold_search, 3),
                    "warm_stage_s": round(warm_wall, 3), "warm_search_s": round(warm_search, 3),
                    "search_qps": round(n_q / warm_search, 1), "warm_stage_qps": round(n_q / warm_wall, 1),
                    "cold_stage_qps": round(n_q / cold_wall, 1), "cold_stage_cpu_s": round(cold_cpu, 3),
                    "warm_stage_cpu_s": round(warm_cpu, 3)},
        "rank_bm25": {"index_s": round(okapi_index_s, 3), "timed_queries": len(sub),
                      "search_s": round(okapi_search_s, 3), "search_cpu_s": round(okapi_cpu_s, 3),
                      "qps": round(okapi_qps, 3),
                      "extrapolated_s_for_all_queries": round(n_q / okapi_qps, 1)},
        "ratio_search_qps": round(n_q / warm_search / okapi_qps, 1),
        "ratio_warm_stage_qps": round(n_q / warm_wall / okapi_qps, 1),
        "ratio_warm_stage_cpu_per_query": round((okapi_cpu_s / len(sub)) / (warm_cpu / n_q), 1),
        "ratio_cold_stage_vs_okapi_index_plus_search": round((okapi_index_s + n_q / okapi_qps) / cold_wall, 1),
        "top100_overlap_mean": round(float(np.mean(overlap)), 4),
        "top100_overlap_min": round(float(np.min(overlap)), 4),
        "top1_agreement": round(float(top1), 4),
        "target_ratio": 100,
    }
    res["pass"] = res["ratio_search_qps"] >= 100 and res["ratio_warm_stage_qps"] >= 100
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    n, r = res["negmine"], res["rank_bm25"]
    print()
    print(f"{'':<34}{'queries/s':>12}")
    print(f"{'negmine bm25s, search only':<34}{n['search_qps']:>12,.1f}")
    print(f"{'negmine stage, warm index':<34}{n['warm_stage_qps']:>12,.1f}   (whole stage, {n['warm_stage_s']} s)")
    print(f"{'negmine stage, cold (with index)':<34}{n['cold_stage_qps']:>12,.1f}   ({n['cold_stage_s']} s)")
    print(f"{'rank-bm25 BM25Okapi':<34}{r['qps']:>12,.2f}   ({r['timed_queries']} queries timed, "
          f"extrapolated {r['extrapolated_s_for_all_queries']} s for {n_q})")
    print(f"ratio: search {res['ratio_search_qps']}x, warm stage {res['ratio_warm_stage_qps']}x, cold stage vs "
          f"Okapi index+search {res['ratio_cold_stage_vs_okapi_index_plus_search']}x (target >= 100x)")
    print(f"CPU per query: rank-bm25 {okapi_cpu_s / len(sub) * 1000:.1f} ms, negmine warm stage "
          f"{warm_cpu / n_q * 1000:.2f} ms ({res['ratio_warm_stage_cpu_per_query']}x)")
    print(f"top-100 overlap: mean {res['top100_overlap_mean']}, min {res['top100_overlap_min']}; "
          f"top-1 agreement {res['top1_agreement']}")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
