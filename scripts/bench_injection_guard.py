#!/usr/bin/env python
"""How often would an HONEST judge trip relabel's canary check? Canary relevance and per-request false-negative share.

The check (``relabel.canary``, ``relabel.canary_share``) distrusts a listwise request whose answer calls the canary
(a sampled corpus passage slipped in) relevant AND flags at least ``canary_share`` of its candidates (what an
instruction injected into one passage makes a gullible judge do): the request's verdicts become unjudged, so the next
tier judges them and the last tier never promotes them. An honest judge trips it only when the canary really is
relevant (or the judge errs on it) and the request really holds that many false negatives. This script measures that on the hidden-positives runs of
``scripts/bench_quality.py`` (Cranfield and CISI, dense depth 100, MiniLM teacher): per query the mined negatives are
grouped in rank order into requests of ``list_size`` as relabel groups them, and each request's share of hidden
positives (true false negatives) is what a perfect judge would flag. Two negative sets: naive top-k (the 8 hardest
non-positive candidates: the worst case) and what the default select kept (what relabel is given).

    python scripts/bench_injection_guard.py            # needs runs/bench_quality/* (python scripts/bench_quality.py)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from negmine.io.store import Artifact
from negmine.judge.engine import pick_canary
from negmine.judge.params import RelabelParams
from negmine.judge.stage import canary_rows, passage_chars
from negmine.models import doc_text

ROOT = Path(__file__).resolve().parents[1]


def requests(negs: dict[str, list[str]], size: int) -> list[tuple[str, list[str]]]:
    return [(q, docs[i:i + size]) for q, docs in negs.items() for i in range(0, len(docs), size)]


def shares(reqs: list[tuple[str, list[str]]], hidden: set[tuple[str, str]], min_group: int) -> np.ndarray:
    return np.array([sum((q, d) in hidden for d in docs) / len(docs) for q, docs in reqs if len(docs) >= min_group])


def canary_relevant(reqs: list[tuple[str, list[str]]], relevant: set[tuple[str, str]], corpus: dict[str, str],
                    queries: dict[str, str], exclude: dict[str, set[str]]) -> float:
    """Share of requests whose canary (picked exactly as relabel picks it) is relevant to the query by the qrels."""
    ids = list(corpus)  # the ingest corpus' order, in which relabel samples its canaries
    sample = [ids[i] for i in sorted(canary_rows(len(ids)))]
    keep = passage_chars(RelabelParams())  # the stage keeps this prefix of each passage
    pool = [(d, corpus[d][:keep]) for d in sample]
    by_text = {t: d for d, t in pool}
    hits = n = 0
    for q, docs in reqs:
        got = pick_canary(pool, q, exclude.get(q, set()) | set(docs), docs, len(docs), queries[q])
        if got is not None:
            n += 1
            hits += (q, by_text[got[0]]) in relevant
    return hits / n if n else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_quality")
    ap.add_argument("--datasets", nargs="+", default=["cranfield", "cisi"])
    ap.add_argument("--pool", default="dense100")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--list-size", type=int, default=10)
    ap.add_argument("--min-group", type=int, default=4, help="the guard applies to requests of at least this size")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    args = ap.parse_args()
    out: dict = {}
    for ds in args.datasets:
        base = args.work / ds
        hidden = set()
        for line in (base / "protocol" / "hidden.tsv").read_text().splitlines()[1:]:
            q, d, _ = line.split("\t")
            hidden.add((q, d))
        ing = Artifact.open(base / args.pool / "ingest")
        corpus = {r["doc_id"]: doc_text(r["title"], r["text"]) for r in ing.read("corpus").to_pylist()}
        queries = {r["query_id"]: r["text"] for r in ing.read("queries").to_pylist()}
        given = {(r["query_id"], r["doc_id"]) for r in ing.read("positives").to_pylist()}
        scores = Artifact.open(base / args.pool / "scores").read()
        pool_of: dict[str, set[str]] = defaultdict(set)
        for q, d in zip(scores["query_id"].to_pylist(), scores["doc_id"].to_pylist(), strict=True):
            pool_of[q].add(d)
        scores = scores.filter(pc.invert(scores["is_positive"]))
        by_q: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for q, d, s in zip(scores["query_id"].to_pylist(), scores["doc_id"].to_pylist(),
                           scores["teacher_score"].to_pylist(), strict=True):
            by_q[q].append((-s, d))
        naive = {q: [d for _, d in sorted(v)[:args.k]] for q, v in by_q.items()}
        kept = Artifact.open(base / args.pool / "negatives").read("negatives")
        sel: dict[str, list[str]] = defaultdict(list)
        for q, d in zip(kept["query_id"].to_pylist(), kept["doc_id"].to_pylist(), strict=True):
            sel[q].append(d)
        out[ds] = {}
        for name, negs in (("naive_topk", naive), ("default_select", sel)):
            reqs = requests(negs, args.list_size)
            sh = shares(reqs, hidden, args.min_group)
            # the stage excludes the query's positives, candidates and negatives from its canaries
            cr = canary_relevant(reqs, hidden | given, corpus, queries, pool_of)
            row = {"requests": int(len(sh)), "mean_share": round(float(sh.mean()), 4),
                   "p99_share": round(float(np.quantile(sh, 0.99)), 4), "max_share": round(float(sh.max()), 4),
                   "share_at_least": {str(t): round(float((sh >= t).mean()), 4) for t in args.thresholds},
                   "canary_relevant": round(cr, 4)}
            out[ds][name] = row
            print(f"{ds:10s} {name:15s} requests {row['requests']:4d}  mean share {row['mean_share']:.3f}  "
                  f"p99 {row['p99_share']:.3f}  max {row['max_share']:.3f}  canary relevant {cr:.3f}  share >=: " +
                  "  ".join(f"{t}: {v:.3f}" for t, v in row["share_at_least"].items()))
    res = ROOT / "scripts" / "results" / "bench_injection_guard.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
