"""Simulate the relabel cascade on Cranfield with hidden positives; compare negmine's per-negative routing with
RLHN's whole-example routing.

1. Hidden positives: ingest keeps only the best-graded relevant document of each query (ties: smallest id); the
   other relevant documents are hidden, so a hidden one mined as a negative is a known false negative.
2. Mining with negmine: `negmine retrieve --method bm25 --depth 100` → `negmine score` (bi-encoder teacher,
   all-MiniLM-L6-v2) → `negmine select` (TopK-PercPos 0.95, 8 negatives, top).
3. Judges: two `negmine judge-server`s answering from the full qrels — cheap at 80% accuracy, strong at 95%
   (each wrong answer is seeded per model, query and passage; a wrong answer comes with lower confidence, which
   the logprobs show). Listwise prompts, 10 candidates per request.
4. Variants: per_negative (only the flagged negatives go to the strong tier), per_negative+band (also those the
   cheap tier labelled not_relevant with P(relevant) in [0.2, 0.8], from logprobs), rlhn_example (any flag sends the
   whole example to the strong tier), and cheap-only / strong-only references. Three server seeds each.

    python scripts/sim_cascade.py [--seeds 0 1 2]

Prices used for the cost column: gpt-4o-mini $0.15/$0.60 and gpt-4o $2.50/$10 per 1M input/output tokens (token
counts as the local server reports them: ~4 characters a token).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "cranfield"
WORK = ROOT / ".cache" / "sim_cascade"
CHEAP = {"model": "cheap-judge", "price_input": 0.15, "price_output": 0.60}
STRONG = {"model": "strong-judge", "price_input": 2.50, "price_output": 10.0}


def mine(run: Path) -> None:
    """Hidden-positives ingest + BM25 → bi-encoder teacher → TopK-PercPos select (each stage skipped when done)."""
    from negmine.cli import run as cli
    from negmine.judge.simulate import hidden_copy

    hidden = hidden_copy(DATA, WORK / "cranfield-hidden")
    steps = [["ingest", hidden, "--split", "test", "--out", run],
             ["retrieve", run, "--method", "bm25", "--depth", "100"],
             ["score", run, "--teacher", "bi-encoder", "--model", "all-MiniLM-L6-v2"],
             ["select", run, "--filter", "perc-pos", "--perc-pos", "0.95", "--num-negatives", "8", "--sampling", "top"]]
    for s in steps:
        t = time.time()
        code = cli(["-q", *map(str, s)])
        if code != 0:
            raise SystemExit(f"negmine {s[0]} failed ({code})")
        print(f"  negmine {s[0]}: {time.time() - t:.1f}s", flush=True)


def relevant_pairs() -> set[tuple[str, str]]:
    rows = [line.split("\t") for line in (DATA / "qrels" / "test.tsv").read_text().splitlines()[1:] if line.strip()]
    return {(q, d) for q, d, s in rows if float(s) >= 1}


def pairs(table) -> set[tuple[str, str]]:
    return set(zip(table["query_id"].to_pylist(), table["doc_id"].to_pylist(), strict=True))


def variant_run(base: Path, name: str) -> Path:
    dst = WORK / "variants" / name
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for d in ("ingest", "negatives"):
        shutil.copytree(base / d, dst / d)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "scripts" / "results" / "sim_cascade.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NEGMINE_CACHE_DIR", str(ROOT / ".cache" / "bench"))
    from negmine.cli import setup_logging

    setup_logging(logging.WARNING)

    from negmine.io.store import Artifact
    from negmine.judge.params import RelabelParams, Tier
    from negmine.judge.server import JudgeServer, ServerState, Truth
    from negmine.judge.stage import run_relabel

    base = WORK / "run"
    print("mining with negmine (hidden positives, BM25 → MiniLM teacher → perc-pos 0.95, k=8):", flush=True)
    mine(base)
    rel = relevant_pairs()
    mined = pairs(Artifact.open(base / "negatives").read("negatives", columns=["query_id", "doc_id"]))
    fn_before = len(mined & rel)
    truth = Truth.from_files(DATA / "qrels" / "test.tsv")
    variants = {
        "cheap only": {"tiers": ["cheap"]},
        "strong only": {"tiers": ["strong"]},
        "per_negative": {"tiers": ["cheap", "strong"], "routing": "per_negative"},
        "per_negative+band": {"tiers": ["cheap", "strong"], "routing": "per_negative", "logprobs": True},
        "rlhn_example": {"tiers": ["cheap", "strong"], "routing": "rlhn_example"},
    }
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in args.seeds:
        with JudgeServer(ServerState(truth, accuracy=0.80, seed=seed)) as cheap, \
                JudgeServer(ServerState(truth, accuracy=0.95, seed=seed)) as strong:
            urls = {"cheap": (cheap, CHEAP), "strong": (strong, STRONG)}
            for name, v in variants.items():
                run = variant_run(base, f"{name.replace(' ', '_').replace('+', '_')}-{seed}")
                tiers = [Tier(base_url=urls[t][0].base_url, logprobs=v.get("logprobs", False), **urls[t][1])
                         for t in v["tiers"]]
                p = RelabelParams(tiers=tiers, routing=v.get("routing", "per_negative"), list_size=10,
                                  concurrency=32, timeout=30, band=(0.2, 0.8) if v.get("logprobs") else (1.0, 1.0))
                t0 = time.time()
                art = run_relabel(run, p, progress=False).artifact
                kept = pairs(art.read("negatives"))
                promoted = pairs(art.read("positives"))
                removed = mined - kept - promoted
                st = art.stats
                tiers_st = st["tiers"]
                strong_j = st.get(f"judgments_tier{len(tiers)}", 0) if len(tiers) > 1 else 0
                results[name].append({
                    "seed": seed,
                    "fn_rate_after": len(kept & rel) / max(1, len(kept)),
                    "fn_left": len(kept & rel),
                    "negatives_kept": len(kept),
                    "fn_found": fn_before - len(kept & rel),
                    "promoted": len(promoted), "promoted_correct": len(promoted & rel),
                    "true_negatives_lost": len((promoted | removed) - rel),
                    "strong_judgment_share": strong_j / max(1, st.get("judgments_tier1", 1)),
                    "strong_requests": tiers_st[-1]["requests"] if len(tiers) > 1 else 0,
                    "requests": st["requests_sent"],
                    "cost_usd": sum(t["cost_usd"] for t in tiers_st),
                    "queries_dropped": st.get("queries_dropped", 0),
                    "unjudged": st.get("label_unjudged", 0),
                    "seconds": round(time.time() - t0, 2)})
    summary = []
    for name, rs in results.items():
        def mean(k, rs=rs):
            return statistics.mean(r[k] for r in rs)

        def sd(k, rs=rs):
            return statistics.pstdev(r[k] for r in rs)

        summary.append({"variant": name, **{k: round(mean(k), 5) for k in rs[0] if k != "seed"},
                        "fn_rate_after_sd": round(sd("fn_rate_after"), 5),
                        "strong_judgment_share_sd": round(sd("strong_judgment_share"), 5)})
    n = len(mined)
    print(f"\nCranfield hidden positives: {n} mined negatives of {len({q for q, _ in mined})} queries; "
          f"false negatives before relabel: {fn_before} ({fn_before / n:.2%})")
    print(f"judges: cheap 80%, strong 95% accuracy; mean over seeds {args.seeds}")
    hdr = (f"{'variant':<19} {'FN rate after':>13} {'FN left':>7} {'promoted (correct)':>18} {'TN lost':>7} "
           f"{'strong share':>12} {'requests':>8} {'cost $':>8}")
    print(hdr)
    for s in summary:
        print(f"{s['variant']:<19} {s['fn_rate_after']:>12.2%} {s['fn_left']:>7.1f} "
              f"{s['promoted']:>10.1f} ({s['promoted_correct']:>5.1f}) {s['true_negatives_lost']:>7.1f} "
              f"{s['strong_judgment_share']:>12.1%} {s['requests']:>8.1f} {s['cost_usd']:>8.4f}")
    out = {"script": "sim_cascade.py", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "mining": "negmine retrieve bm25 depth 100 → score bi-encoder all-MiniLM-L6-v2 → select perc-pos 0.95 k=8 top",
           "negatives": n, "fn_before": fn_before, "fn_rate_before": fn_before / n, "seeds": args.seeds,
           "summary": summary, "runs": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
