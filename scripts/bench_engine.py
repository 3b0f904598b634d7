"""Overhead of the Ray engine against the local engine on the encode stage (docs/BENCHMARKS.md, "Engines").

Embeds the first ``--docs`` documents of a BEIR corpus with the packaged all-MiniLM-L6-v2 through
``negmine.engine.encode`` (what `negmine retrieve --method dense` does for the corpus), once per engine, each with
a fresh embedding cache so every text is really embedded. The Ray engine starts a local cluster with ``--num-cpus``
CPUs (one worker per CPU, one model per worker); its time is reported with and without the cluster start.

    python scripts/bench_engine.py --data ../shared/data/scifact --docs 1500
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def texts_of(data: Path, n: int) -> list[str]:
    from negmine.models import doc_text

    out = []
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(doc_text(d.get("title") or "", d.get("text") or ""))
            if len(out) == n:
                break
    return out


def run(kind: str, texts: list[str], args: argparse.Namespace) -> dict[str, float]:
    from negmine.encode.embed import COUNTERS
    from negmine.engine import use_engine
    from negmine.engine.params import EngineParams
    from negmine.models import resolve_model

    os.environ["NEGMINE_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"bench_engine_{kind}_")
    model = resolve_model("all-MiniLM-L6-v2")
    out: dict[str, float] = {}
    params = EngineParams(kind=kind, batch_size=args.block)
    with use_engine(params) as eng:
        if kind == "ray":
            import ray

            t0 = time.time()
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
            eng._owns_cluster = True  # (started here so that its time is measured apart)
            out["cluster_start_s"] = round(time.time() - t0, 2)
        before = COUNTERS["encoded"]
        t0 = time.time()
        vecs = eng.encode(texts, model=model, kind="doc", batch_size=args.batch_size)
        out["encode_s"] = round(time.time() - t0, 2)
        assert COUNTERS["encoded"] - before == len(set(texts)) and vecs.shape[0] == len(texts)
    out["total_s"] = round(out["encode_s"] + out.get("cluster_start_s", 0.0), 2)
    out["texts_per_s"] = round(len(texts) / out["encode_s"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64, help="model batch size (both engines)")
    ap.add_argument("--block", type=int, default=256, help="Ray engine: rows per block sent to a worker")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--engines", default="local,ray")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    texts = texts_of(args.data, args.docs)
    res = {}
    for kind in args.engines.split(","):
        res[kind] = run(kind, texts, args)
        print(f"{kind:>5}: {json.dumps(res[kind])}", flush=True)
    if "local" in res and "ray" in res:
        loc = res["local"]["encode_s"]
        print(f"ray overhead vs local: {100 * (res['ray']['encode_s'] / loc - 1):+.1f} % on a running cluster, "
              f"{100 * (res['ray']['total_s'] / loc - 1):+.1f} % including the cluster start "
              f"({len(texts)} texts, {args.num_cpus} CPUs)")


if __name__ == "__main__":
    main()
