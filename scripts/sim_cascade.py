"""Simulate the relabel cascade on Cranfield and CISI with hidden positives: FN before / after, coverage of k,
strong-tier share and cost, for negmine's default cascade and the routing variants.

1. Hidden positives (`negmine.testing.simulate.hidden_copy`): ingest keeps only the best-graded relevant document of
   each query (ties: smallest id); the other relevant documents are hidden, so a hidden one mined as a negative is
   a known false negative.
2. Mining with negmine: `negmine retrieve --method bm25 --depth 100` → `negmine score` (bi-encoder teacher,
   all-MiniLM-L6-v2) → `negmine select` with negmine's default rules (no select keys, k = 8). Naive top-8 is
   measured on the same pool: `negmine select --filter none --max-pos-sim off --no-dedup` (plain top 8 by the
   teacher), on a copy of the run.
3. Judges: two `negmine judge-server`s answering from the full qrels — cheap at 80% accuracy, strong at 95%
   (each wrong answer is seeded per model, query and passage; a wrong answer comes with lower confidence, which
   the logprobs show — an assumption of the simulation).
4. Variants: `default` (RelabelParams() with only the two tiers, logprobs on: routing confidence, band
   [0.3, 0.9], on_unsure remove, refill until k), the same without logprobs, with refill off, with on_unsure keep
   and with RLHN's drop rule at 4; the previous default routing (per_negative, band [0.2, 0.8] on not_relevant
   labels only), rlhn_example (whole example on any flag), `configs/rlhn-cascade.yaml` as shipped (refill off,
   drop rule 8, no logprobs) and with refill, and cheap-only / strong-only references. Seeds 0 1 2 by default;
   the summary has means and sds. The drop-rule counterfactual (queries RLHN's rule would drop at 2 / 4 / 8 false
   negatives, counted on the mined negatives or on everything judged including refill, and the positives those
   queries received) is computed from the default runs' audits.

    python scripts/sim_cascade.py [--datasets cranfield cisi] [--seeds 0 1 2] [--variants default ...]

Acceptance (issue 10): default cascade FN ≤ 0.1 × naive top-8 FN, coverage ≥ 0.95 (queries with 8 negatives
after relabel) and strong-tier share ≤ 30 % (strong judgments / cheap judgments) on both collections.
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
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("NEGMINE_SHARED_DATA") or ROOT.parent / "shared" / "data")
WORK = ROOT / ".cache" / "sim_cascade"
K = 8
CHEAP = {"model": "cheap-judge", "price_input": 0.15, "price_output": 0.60}
STRONG = {"model": "strong-judge", "price_input": 2.50, "price_output": 10.0}
TIERS = {"cheap": CHEAP, "strong": STRONG}
TWO = ["cheap", "strong"]
# name → tiers, logprobs on the tiers, RelabelParams overrides (everything else: the shipped defaults)
VARIANTS: dict[str, dict] = {
    "default": {"tiers": TWO, "logprobs": True},
    "default, no logprobs": {"tiers": TWO, "logprobs": False},
    "default, refill off": {"tiers": TWO, "logprobs": True, "params": {"refill": False}},
    "default, on_unsure keep": {"tiers": TWO, "logprobs": True, "params": {"on_unsure": "keep"}},
    "default + drop rule 4": {"tiers": TWO, "logprobs": True, "params": {"max_false_negatives": 4}},
    "per_negative [0.2, 0.8]": {"tiers": TWO, "logprobs": True,
                                "params": {"routing": "per_negative", "band": [0.2, 0.8], "on_unsure": "keep"}},
    "rlhn_example": {"tiers": TWO, "logprobs": True, "params": {"routing": "rlhn_example"}},
    "rlhn-cascade.yaml": {"tiers": TWO, "logprobs": False, "config": "configs/rlhn-cascade.yaml"},
    "rlhn-cascade.yaml + refill": {"tiers": TWO, "logprobs": False, "config": "configs/rlhn-cascade.yaml",
                                   "params": {"refill": True}},
    "cheap only": {"tiers": ["cheap"], "logprobs": True},
    "strong only": {"tiers": ["strong"], "logprobs": True},
}


def cli(*args) -> None:
    from negmine.cli import run as negmine

    t = time.time()
    code = negmine(["-q", *map(str, args)])
    if code != 0:
        raise SystemExit(f"negmine {args[0]} failed ({code})")
    print(f"  negmine {args[0]} {Path(str(args[1])).name}: {time.time() - t:.1f}s", flush=True)


def mine(name: str) -> tuple[Path, Path]:
    """Hidden-positives ingest + BM25 → bi-encoder teacher → default select; the naive top-8 selection on a copy
    of the same pool. Each stage is skipped when done."""
    from negmine.testing.simulate import hidden_copy

    hidden = hidden_copy(SHARED / name, WORK / name / "hidden")
    run = WORK / name / "run"
    cli("ingest", hidden, "--split", "test", "--out", run)
    cli("retrieve", run, "--method", "bm25", "--depth", "100")
    cli("score", run, "--teacher", "bi-encoder", "--model", "all-MiniLM-L6-v2")
    cli("select", run, "--num-negatives", K)  # negmine's default rules
    naive = WORK / name / "naive"
    for d in ("ingest", "candidates", "scores"):
        if not (naive / d).exists():
            shutil.copytree(run / d, naive / d)
    cli("select", naive, "--filter", "none", "--max-pos-sim", "off", "--no-dedup", "--num-negatives", K)
    return run, naive


def qrels_table(name: str):
    import pyarrow as pa

    rows = [line.split("\t") for line in (SHARED / name / "qrels" / "test.tsv").read_text().splitlines()[1:]
            if line.strip()]
    return pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                     "grade": [float(r[2]) for r in rows]})


def measure(negatives, scores, qrels) -> dict:
    from negmine.report.eval import evaluate

    m = evaluate(negatives, scores, qrels, K)
    return {k: m[k] for k in ("fn_rate", "false_negatives", "negatives", "coverage", "hardness", "mean_rank",
                              "queries")}


def pairs(table) -> set[tuple[str, str]]:
    return set(zip(table["query_id"].to_pylist(), table["doc_id"].to_pylist(), strict=True))


def variant_run(base: Path, ds: str, name: str) -> Path:
    dst = WORK / ds / "variants" / name
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for d in ("ingest", "negatives", "scores"):
        shutil.copytree(base / d, dst / d)
    return dst


def variant_params(v: dict, urls: dict):
    from negmine.config import load_config
    from negmine.judge.params import RelabelParams, Tier

    tiers = [Tier(base_url=urls[t], logprobs=v["logprobs"], **TIERS[t]) for t in v["tiers"]]
    common = {"concurrency": 32, "timeout": 30}
    if "config" in v:
        base = load_config(ROOT / v["config"]).relabel.model_dump()
        base.update(tiers=tiers, **common, **v.get("params", {}))
        return RelabelParams(**base)
    return RelabelParams(tiers=tiers, **common, **v.get("params", {}))


def run_variant(base: Path, ds: str, vname: str, v: dict, seed: int, urls: dict, rel: set, scores, qrels,
                mined: set, naive_fn: float) -> dict:
    from negmine.judge.stage import run_relabel

    run = variant_run(base, ds, f"{vname.replace(' ', '_').replace(',', '').replace('+', 'plus')}-{seed}")
    p = variant_params(v, urls)
    t0 = time.time()
    art = run_relabel(run, p, progress=False).artifact
    kept_t = art.read("negatives")
    kept = pairs(kept_t)
    promoted = pairs(art.read("positives"))
    judged = pairs(art.read("audit"))
    removed = judged - kept - promoted
    st = art.stats
    m = measure(kept_t, scores, qrels)
    n_tiers = len(p.tiers)
    j1 = st.get("judgments_tier1", 0)
    strong_j = st.get(f"judgments_tier{n_tiers}", 0) if n_tiers > 1 else 0
    return {
        "seed": seed,
        "fn_rate_after": m["fn_rate"], "fn_ratio_to_naive": m["fn_rate"] / naive_fn,
        "fn_left": m["false_negatives"], "negatives_kept": m["negatives"],
        "coverage_before": st["coverage_before"], "coverage_after": m["coverage"],
        "coverage_after_stats": st["coverage_after"], "hardness_after": m["hardness"],
        "mean_rank_after": m["mean_rank"],
        "fn_found": len(mined & rel) - len(kept & rel & mined),
        "promoted": len(promoted), "promoted_correct": len(promoted & rel),
        "true_negatives_lost": len((promoted | removed) - rel),
        "strong_judgment_share": strong_j / max(1, j1), "judgments_tier1": j1, "judgments_strong": strong_j,
        "refill_judged": st.get("refill_judged", 0), "refill_rounds": st.get("refill_rounds", 0),
        "strong_requests": st["tiers"][-1]["requests"] if n_tiers > 1 else 0,
        "requests": st["requests_sent"], "cost_usd": sum(t["cost_usd"] for t in st["tiers"]),
        "queries_dropped": st.get("queries_dropped", 0), "unjudged": st.get("label_unjudged", 0),
        "short_after": st.get("short_after", {}),
        "drop_counterfactual": drop_counterfactual(art) if vname == "default" else None,
        "seconds": round(time.time() - t0, 2)}


def drop_counterfactual(art, thresholds=(2, 4, 8)) -> dict:
    """What RLHN's drop rule would have dropped in this run: per threshold N, queries with more than N relevant
    final verdicts among the mined negatives (negmine's count) or among everything judged, refill included (the
    count before this change), and the promoted positives those queries hold (the supervision dropped with them)."""
    from collections import Counter

    mined_rel, all_rel, promoted = Counter(), Counter(), Counter()
    for r in art.read("audit").to_pylist():
        if r["action"] is None:
            continue
        if r["label"] == "relevant":
            all_rel[r["query_id"]] += 1
            mined_rel[r["query_id"]] += r["refill_round"] == 0
        promoted[r["query_id"]] += r["action"] == "promote"
    nq = art.stats["queries"]
    out = {}
    for n in thresholds:
        for name, cnt in (("mined", mined_rel), ("all_judged", all_rel)):
            qs = [q for q, c in cnt.items() if c > n]
            out[f"max_fn_{n}_{name}"] = {"queries": len(qs), "share": len(qs) / nq,
                                         "promoted_positives": sum(promoted[q] for q in qs)}
    out["promoted_positives_total"] = sum(promoted.values())
    return out


def summarize(rs: list[dict]) -> dict:
    out = {}
    for k, v in rs[0].items():
        if k == "seed" or not isinstance(v, (int, float)) or v is None:
            continue
        vals = [r[k] for r in rs if r[k] is not None]
        out[k] = round(statistics.mean(vals), 5) if vals else None
    for k in ("fn_rate_after", "fn_ratio_to_naive", "coverage_after", "strong_judgment_share"):
        out[k + "_sd"] = round(statistics.pstdev(r[k] for r in rs), 5)
    return out


def accepted(s: dict) -> bool:
    return (s["fn_ratio_to_naive"] <= 0.1 and s["coverage_after"] >= 0.95 and s["strong_judgment_share"] <= 0.30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["cranfield", "cisi"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    ap.add_argument("--try", dest="extra", action="append", default=[], metavar="NAME=JSON",
                    help='an extra variant, e.g. \'tight={"tiers": ["cheap", "strong"], "logprobs": true, '
                         '"params": {"band": [0.3, 0.9]}}\' (repeatable; runs with --variants)')
    ap.add_argument("--out", default=str(ROOT / "scripts" / "results" / "sim_cascade.json"))
    args = ap.parse_args()
    for item in args.extra:
        name, _, spec = item.partition("=")
        VARIANTS[name] = json.loads(spec)
        args.variants.append(name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NEGMINE_CACHE_DIR", str(ROOT / ".cache" / "bench"))
    from negmine.cli import setup_logging

    setup_logging(logging.WARNING)

    from negmine.io.store import Artifact
    from negmine.testing.judge_server import JudgeServer, ServerState, Truth

    t_start = time.time()
    load = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out_ds = {}
    for ds in args.datasets:
        print(f"{ds}: mining with negmine (hidden positives, BM25 → MiniLM teacher → default select, k={K}):",
              flush=True)
        base, naive = mine(ds)
        qrels = qrels_table(ds)
        rel = {(q, d) for q, d, g in zip(qrels["query_id"].to_pylist(), qrels["doc_id"].to_pylist(),
                                           qrels["grade"].to_pylist(), strict=True) if g >= 1}
        scores = Artifact.open(base / "scores").read(None, columns=["query_id", "doc_id", "teacher_score",
                                                                    "is_positive", "rank"])
        neg_t = Artifact.open(base / "negatives").read("negatives")
        mined = pairs(neg_t)
        before = measure(neg_t, scores, qrels)
        nv = measure(Artifact.open(naive / "negatives").read("negatives"), scores, qrels)
        truth = Truth.from_files(SHARED / ds / "qrels" / "test.tsv")
        results: dict[str, list[dict]] = {v: [] for v in args.variants}
        for seed in args.seeds:
            with JudgeServer(ServerState(truth, accuracy=0.80, seed=seed)) as cheap, \
                    JudgeServer(ServerState(truth, accuracy=0.95, seed=seed)) as strong:
                urls = {"cheap": cheap.base_url, "strong": strong.base_url}
                for name in args.variants:
                    results[name].append(run_variant(base, ds, name, VARIANTS[name], seed, urls, rel, scores,
                                                     qrels, mined, nv["fn_rate"]))
        summary = [{"variant": name, "accepted": accepted(summarize(rs)), **summarize(rs)}
                   for name, rs in results.items()]
        cf = [r["drop_counterfactual"] for r in results.get("default", []) if r["drop_counterfactual"]]
        cf_mean = {}
        if cf:
            for key, v in cf[0].items():
                cf_mean[key] = (statistics.mean(c[key] for c in cf) if not isinstance(v, dict) else
                                {f: round(statistics.mean(c[key][f] for c in cf), 4) for f in v})
        sel = Artifact.open(base / "negatives")
        before["select_params"] = sel.params  # the default rules in force when this ran
        before["select_dropped"] = sel.stats.get("dropped")
        before["select_max_pos_sim"] = sel.stats.get("max_pos_sim", sel.params.get("max_pos_sim"))
        out_ds[ds] = {"queries": before["queries"], "naive_top8": nv, "default_select": before,
                      "summary": summary, "drop_rule_counterfactual": cf_mean, "runs": results}
        print(f"\n{ds} (hidden positives): {before['queries']} queries; naive top-8 FN {nv['fn_rate']:.4f} "
              f"(target ≤ {0.1 * nv['fn_rate']:.4f}); default select FN {before['fn_rate']:.4f}, coverage "
              f"{before['coverage']:.3f}, {before['negatives']} negatives; mean over seeds {args.seeds}")
        print(f"{'variant':<24} {'FN after':>8} {'÷naive':>6} {'cov':>5} {'hard':>5} {'strong':>6} "
              f"{'promo(ok)':>11} {'TN lost':>7} {'refill':>6} {'rnds':>4} {'req':>6} {'cost $':>7}  ok")
        for s in summary:
            print(f"{s['variant']:<24} {s['fn_rate_after']:>8.4f} {s['fn_ratio_to_naive']:>6.3f} "
                  f"{s['coverage_after']:>5.3f} {s['hardness_after']:>5.3f} {s['strong_judgment_share']:>6.1%} "
                  f"{s['promoted']:>5.1f}({s['promoted_correct']:>5.1f}) {s['true_negatives_lost']:>7.1f} "
                  f"{s['refill_judged']:>6.1f} {s['refill_rounds']:>4.1f} {s['requests']:>6.1f} "
                  f"{s['cost_usd']:>7.4f}  {'yes' if s['accepted'] else 'no'}", flush=True)
        if cf_mean:
            print(f"drop rule counterfactual on the default runs (of {cf_mean['promoted_positives_total']:.1f} "
                  "promoted positives):")
            for key, v in cf_mean.items():
                if isinstance(v, dict):
                    print(f"  {key:<22} {v['queries']:>6.1f} queries ({v['share']:.1%}), "
                          f"{v['promoted_positives']:>6.1f} promoted positives dropped with them")
    out = {"script": "sim_cascade.py", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "python " + " ".join(["scripts/sim_cascade.py", *sys.argv[1:]]),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "uptime_at_start": uptime,
                       "loadavg_at_start": load},
           "seconds": round(time.time() - t_start, 1),
           "mining": "hidden_copy → negmine ingest → retrieve bm25 depth 100 → score bi-encoder "
                     "all-MiniLM-L6-v2 → select (default rules) k=8; naive: select --filter none "
                     "--max-pos-sim off --no-dedup",
           "judges": "judge-server cheap accuracy 0.80, strong 0.95, listwise",
           "seeds": args.seeds, "datasets": out_ds}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out} ({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
