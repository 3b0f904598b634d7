#!/usr/bin/env python
"""Mining quality with hidden positives on Cranfield AND CISI: negmine configurations (with and without a
calibration) vs sentence-transformers ``mine_hard_negatives``, all measured by the same functions
(negmine.report.eval.evaluate). Defaults are chosen on both collections; the table reports the worse of the two.

Protocol (negmine.report.protocol): per query the best-graded relevant document is the given positive; the other
relevant documents are hidden and only used to score. 8 negatives per query, all-MiniLM-L6-v2 as retriever and
teacher. Metrics per configuration: false-negative rate, FN@query, coverage (share of queries with 8 negatives),
hardness (kept teacher scores / the 8 hardest non-relevant candidates' scores), mean rank.

negmine configurations run the real select stage (``run_select``) on one shared run directory per candidate pool
(dense depth 100, dense depth 300, hybrid BM25+dense); ingest / retrieve / score run once per pool and the
embedding cache ($NEGMINE_CACHE_DIR) is shared, so only the first run embeds a collection.

Calibration rows: `negmine calibrate` (the real stage, default settings: 50 sampled queries, 1,500 judged pairs)
against a `negmine judge-server` that answers from the FULL qrels with accuracy 0.9 (each wrong answer seeded per
model, query and passage), one row per seed (the seed moves both the sample and the judge's errors), then
`negmine select` with no select keys (the calibration applies automatically). Metrics over all queries, and over
the held-out queries the calibration never judged.

    python scripts/bench_quality.py                 # writes scripts/results/bench_quality.json
    python scripts/bench_quality.py --datasets cranfield cisi --no-st --calibration-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

K = 8
MODEL = "all-MiniLM-L6-v2"
BACKEND = "torch"  # the encoder backend of retrieve, score and select (--backend; negmine/encode/backends.py)

# name → (candidate pool, select overrides). "dedup" variants are added for each (near-duplicate removal on/off).
NEGMINE_CONFIGS: dict[str, tuple[str, dict]] = {
    "naive top-8": ("dense100", {"filter": "none"}),
    "abs max_score=0.6": ("dense100", {"filter": "abs", "max_score": 0.6}),
    "margin 0.05": ("dense100", {"filter": "margin-pos", "margin": 0.05}),
    "perc 0.95": ("dense100", {"filter": "perc-pos", "perc_pos": 0.95}),
    "perc 0.90": ("dense100", {"filter": "perc-pos", "perc_pos": 0.90}),
    "simans a=50": ("dense100", {"filter": "none", "sampling": "simans", "simans_a": 50.0}),
    "hybrid + perc 0.95": ("hybrid100", {"filter": "perc-pos", "perc_pos": 0.95}),
    # deeper candidate pool behind a margin: more candidates below the margin → coverage
    "perc 0.95, depth 300": ("dense300", {"filter": "perc-pos", "perc_pos": 0.95}),
    # new signal: similarity of the candidate to the positive document (negmine.select.signals)
    "pos_sim < 0.65": ("dense100", {"filter": "none", "max_pos_sim": 0.65}),
    "pos_sim < 0.60": ("dense100", {"filter": "none", "max_pos_sim": 0.60}),
    "pos_sim < 0.55": ("dense100", {"filter": "none", "max_pos_sim": 0.55}),
    "pos_sim < 0.60 + perc 1.0": ("dense100", {"filter": "perc-pos", "perc_pos": 1.0, "max_pos_sim": 0.60}),
    # retriever agreement as a select rule (select.max_lexical_rank, negmine.select.signals.lexical_agreement)
    "lexical top-10": ("dense100", {"filter": "none", "max_lexical_rank": 10}),
    "lexical top-20": ("dense100", {"filter": "none", "max_lexical_rank": 20}),
    "lexical top-10 + pos_sim < 0.65": ("dense100", {"filter": "none", "max_lexical_rank": 10, "max_pos_sim": 0.65}),
    "lexical top-20 + pos_sim < 0.65": ("dense100", {"filter": "none", "max_lexical_rank": 20, "max_pos_sim": 0.65}),
    "lexical top-20 + pos_sim < 0.55": ("dense100", {"filter": "none", "max_lexical_rank": 20, "max_pos_sim": 0.55}),
    # the per-run threshold (max_pos_sim auto = the q quantile of the run's candidate-positive cosines)
    "pos_sim auto q0.60": ("dense100", {"filter": "none", "max_pos_sim": "auto", "pos_sim_quantile": 0.60}),
    "pos_sim auto q0.65": ("dense100", {"filter": "none", "max_pos_sim": "auto", "pos_sim_quantile": 0.65}),
    "pos_sim auto q0.70": ("dense100", {"filter": "none", "max_pos_sim": "auto", "pos_sim_quantile": 0.70}),
    "pos_sim auto q0.80": ("dense100", {"filter": "none", "max_pos_sim": "auto", "pos_sim_quantile": 0.80}),
    # what `negmine select` does with no select keys at all (SelectParams() defaults except k, no calibration)
    "negmine default (no select keys)": ("dense100", None),
}

# the same retriever-agreement signal emulated offline (re-selecting from the dense100 scores with the pairs BM25
# ranks in its top N removed, BM25 taken from a separate bm25 retrieve run): a cross-check of the select rule above
AGREEMENT = {f"[offline] drop BM25 top-{n} agreement{'' if ps is None else f' + pos_sim < {ps:.2f}'}": (n, ps)
             for n in (10, 20) for ps in (None, 0.65)}

POOLS = {
    "dense100": {"retrieve.method": "dense", "retrieve.depth": 100},
    "dense300": {"retrieve.method": "dense", "retrieve.depth": 300},
    "hybrid100": {"retrieve.method": "hybrid", "retrieve.depth": 100},
    "bm25_100": {"retrieve.method": "bm25", "retrieve.depth": 100},
}

ST_CONFIGS = {
    "ST mine_hard_negatives defaults": {},
    "ST relative_margin=0.05": {"relative_margin": 0.05},
    "ST relative_margin=0.05, range_max=50": {"relative_margin": 0.05, "range_max": 50},
    "ST absolute_margin=0.05": {"absolute_margin": 0.05},
}


def build_pool(name: str, proto: Path, work: Path) -> Path:
    from negmine.config import load_config
    from negmine.pipeline import run_mine

    run = work / name
    sets = [f"input.path={proto}", "input.format=beir", "input.split=test", f"retrieve.model={MODEL}",
            "score.teacher=bi-encoder", f"score.model={MODEL}", f"select.num_negatives={K}",
            f"retrieve.encoder_backend={BACKEND}", f"score.encoder_backend={BACKEND}",
            f"select.encoder_backend={BACKEND}"]
    sets += [f"{k}={v}" for k, v in POOLS[name].items()]
    t = time.time()
    run_mine(load_config(None, sets), run)
    print(f"pool {name}: ready in {time.time() - t:.1f} s", flush=True)
    return run


def negmine_config(run: Path, overrides: dict, qrels):
    from negmine.io.store import Artifact
    from negmine.report.eval import evaluate
    from negmine.select.params import SelectParams
    from negmine.select.stage import run_select

    # every row states its rules: the document-similarity rule is off unless the row sets max_pos_sim; overrides
    # None = the product defaults untouched
    params = (SelectParams(num_negatives=K, calibration="off", encoder_backend=BACKEND) if overrides is None
              else SelectParams.model_validate({"num_negatives": K, "max_pos_sim": None, "calibration": "off",
                                                "encoder_backend": BACKEND, **overrides}))
    t = time.time()
    run_select(run, params)
    secs = time.time() - t
    sel = Artifact.open(run / "negatives", stage="select")
    scores = Artifact.open(run / "scores", stage="score").read(
        columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    m = evaluate(sel.read("negatives"), scores, qrels, K, dropped=sel.read("dropped"))
    m["select_seconds"] = round(secs, 2)
    return m


def agreement_configs(dense: Path, bm25: Path, qrels) -> dict[str, dict]:
    import pyarrow.compute as pc

    from negmine.io.store import Artifact
    from negmine.report.eval import evaluate
    from negmine.report.replay import reselect
    from negmine.report.run import scores_pos_sim
    from negmine.select.params import SelectParams

    scores = Artifact.open(dense / "scores", stage="score").read(
        columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    cands = Artifact.open(bm25 / "candidates", stage="retrieve").read(columns=["query_id", "doc_id", "rank"])
    extra = scores_pos_sim(dense, scores, {})
    out = {}
    for name, (n, ps) in AGREEMENT.items():
        top = cands.filter(pc.less_equal(cands["rank"], n))
        agree = set(zip(top["query_id"].to_pylist(), top["doc_id"].to_pylist(), strict=True))
        p = SelectParams(num_negatives=K, filter="none", max_pos_sim=ps, dedup=False, calibration="off")
        m = evaluate(reselect(scores, p, agree, extra), scores, qrels, K)
        m.update({"pool": "dense100", "select": {"bm25_agreement_top": n, "max_pos_sim": ps}})
        out[name] = m
        print(f"{name}: FN {m['fn_rate']:.3f} coverage {m['coverage']:.3f} hardness {m['hardness']:.3f}", flush=True)
    return out


def st_configs(run: Path, proto: Path, qrels, work: Path, names: list[str]) -> dict[str, dict]:
    """sentence-transformers mine_hard_negatives on the same queries, given positives and corpus; its negatives
    are mapped back to doc ids and scored by negmine's evaluate against the same scores table."""
    import pyarrow as pa
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from negmine.encode.models import load_bi_encoder
    from negmine.io.store import Artifact
    from negmine.models import doc_text
    from negmine.report.eval import evaluate
    from negmine.report.protocol import read_qrels

    ingest = Artifact.open(run / "ingest", stage="ingest")
    corpus = ingest.read("corpus")
    texts = [doc_text(t, x) for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist(), strict=True)]
    text_to_id: dict[str, str] = {}
    for d, t in zip(corpus["doc_id"].to_pylist(), texts, strict=True):
        text_to_id.setdefault(t, d)
    queries = dict(zip(*[ingest.read("queries")[c].to_pylist() for c in ("query_id", "text")], strict=True))
    given = read_qrels(proto / "qrels" / "test.tsv")
    doc_of = dict(zip(corpus["doc_id"].to_pylist(), texts, strict=True))
    qids = given["query_id"].to_pylist()
    ds = Dataset.from_dict({"query": [queries[q] for q in qids],
                            "positive": [doc_of[d] for d in given["doc_id"].to_pylist()]})
    q_of_text = {queries[q]: q for q in qids}
    scores = Artifact.open(run / "scores", stage="score").read(
        columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
    rank_of = {(q, d): r for q, d, r in zip(scores["query_id"].to_pylist(), scores["doc_id"].to_pylist(),
                                            scores["rank"].to_pylist(), strict=True)}
    model = load_bi_encoder(MODEL)
    out = {}
    for name in names:
        kw = ST_CONFIGS[name]
        t = time.time()
        res = mine_hard_negatives(ds, model, corpus=texts, num_negatives=K, sampling_strategy="top",
                                  output_format="triplet", output_scores=True, batch_size=64,
                                  cache_folder=str(work / "st_cache"), verbose=False, **kw)
        secs = time.time() - t
        rows = {"query_id": [], "doc_id": [], "rank": [], "teacher_score": []}
        for a, n, s in zip(res["query"], res["negative"], res["scores"], strict=True):
            q, d = q_of_text[a], text_to_id[n]
            rows["query_id"].append(q)
            rows["doc_id"].append(d)
            rows["rank"].append(rank_of.get((q, d)))
            rows["teacher_score"].append(float(s[1]))
        neg = pa.table({"query_id": pa.array(rows["query_id"], pa.string()),
                        "doc_id": pa.array(rows["doc_id"], pa.string()),
                        "rank": pa.array(rows["rank"], pa.int32()),
                        "teacher_score": pa.array(rows["teacher_score"], pa.float32())})
        m = evaluate(neg, scores, qrels, K)
        m["seconds"] = round(secs, 2)
        out[name] = m
        print(f"{name}: FN {m['fn_rate']:.3f} coverage {m['coverage']:.3f} hardness {m['hardness']:.3f} "
              f"({secs:.1f} s)", flush=True)
    return out


def calibration_rows(pool: Path, data: Path, work: Path, qrels, seeds: list[int],
                     overrides: list[str] | None = None) -> dict[str, dict]:
    """`negmine calibrate` (defaults) against a judge-server at accuracy 0.9, then `negmine select` (defaults)."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc

    from negmine.calibrate.stage import run_calibrate
    from negmine.config import load_config
    from negmine.io.store import Artifact
    from negmine.report.eval import evaluate
    from negmine.report.replay import reselect
    from negmine.select.params import SelectParams
    from negmine.select.stage import run_select
    from negmine.testing.judge_server import JudgeServer, ServerState, Truth

    truth = Truth.from_files(data / "qrels" / "test.tsv")
    out = {}
    for seed in seeds:
        run = work / f"calibrated-{seed}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        for d in ("ingest", "candidates", "scores"):
            shutil.copytree(pool / d, run / d)
        with JudgeServer(ServerState(truth, accuracy=0.9, seed=seed)) as srv:
            cfg = load_config(None, [f"calibrate.tiers=[{{model: judge, base_url: '{srv.base_url}'}}]",
                                     f"calibrate.seed={seed}", f"select.num_negatives={K}", *(overrides or [])])
            t = time.time()
            cal = run_calibrate(run, cfg, progress=False).artifact
            secs = time.time() - t
        run_select(run, cfg.select)
        sel = Artifact.open(run / "negatives", stage="select")
        scores = Artifact.open(run / "scores", stage="score").read(
            columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"])
        neg = sel.read("negatives")
        m = evaluate(neg, scores, qrels, K, dropped=sel.read("dropped"))
        sample = pa.array(sorted(set(cal.read("judged", columns=["query_id"])["query_id"].to_pylist())), pa.string())
        held_s = scores.filter(pc.invert(pc.is_in(scores["query_id"], value_set=sample)))
        held_n = neg.filter(pc.invert(pc.is_in(neg["query_id"], value_set=sample)))
        h = evaluate(held_n, held_s, qrels, K)
        naive = reselect(held_s, SelectParams(num_negatives=K, max_pos_sim=None, dedup=False, calibration="off"))
        h["naive_fn_rate"] = evaluate(naive, held_s, qrels, K)["fn_rate"]
        h["fn_vs_naive"] = h["fn_rate"] / h["naive_fn_rate"] if h["naive_fn_rate"] else None
        st = cal.stats
        m.update({"pool": "dense100", "select": "defaults + calibration", "calibration_seed": seed,
                  "pairs_judged": st["pairs_judged"], "threshold": st["threshold"],
                  "estimated_fn": st["estimated_fn"], "estimated_fn_ci95": st["estimated_fn_ci95"],
                  "estimated_fn_ratio": st["estimated_fn_ratio"], "judge_fpr": st["judge_fpr"],
                  "cv_auc": st["cv_auc"], "calibrate_seconds": round(secs, 1), "requests": st["requests_sent"],
                  "held_out": {k: h[k] for k in ("fn_rate", "naive_fn_rate", "fn_vs_naive", "coverage",
                                                 "hardness")} | {
                      "queries": len(held_s["query_id"].unique())},
                  "warnings": st["warnings"]})
        name = f"negmine default + calibration (judge 0.9, seed {seed})"
        out[name] = m
        print(f"{name}: FN {m['fn_rate']:.3f} coverage {m['coverage']:.3f} hardness {m['hardness']:.3f}; held-out "
              f"FN {h['fn_rate']:.3f} ({h['fn_vs_naive']:.3f}x naive) cov {h['coverage']:.3f} hard {h['hardness']:.3f}; {st['pairs_judged']} pairs, "
              f"est FN {st['estimated_fn']:.3f}, {secs:.0f} s", flush=True)
    return out


def run_dataset(data: Path, work: Path, args) -> tuple[dict, dict]:
    from negmine.report.protocol import hidden_positives, read_qrels

    proto = work / "protocol"
    summary = hidden_positives(data, "test", proto)
    qrels = read_qrels(data / "qrels" / "test.tsv")
    names = args.only or list(NEGMINE_CONFIGS)
    pools: dict[str, Path] = {}
    results: dict[str, dict] = {}
    for name in names:
        pool, overrides = NEGMINE_CONFIGS[name]
        if pool not in pools:
            pools[pool] = build_pool(pool, proto, work)
        for dedup in ((None,) if overrides is None else (False, True)):
            if dedup and not args.dedup_variants:
                continue
            label = f"{name}{' + dedup' if dedup else ''}"
            ov = None if overrides is None else {**overrides, "dedup": dedup}
            m = negmine_config(pools[pool], ov, qrels)
            m.update({"pool": pool, "select": ov if ov is not None else "defaults"})
            results[label] = m
            print(f"{data.name} {label}: FN {m['fn_rate']:.3f} coverage {m['coverage']:.3f} hardness "
                  f"{m['hardness']:.3f} mean rank {m['mean_rank']:.1f}", flush=True)
    if "dense100" not in pools:
        pools["dense100"] = build_pool("dense100", proto, work)
    if not args.only:
        if "bm25_100" not in pools:
            pools["bm25_100"] = build_pool("bm25_100", proto, work)
        results.update(agreement_configs(pools["dense100"], pools["bm25_100"], qrels))
    if args.calibration_seeds:
        results.update(calibration_rows(pools["dense100"], data, work, qrels, args.calibration_seeds,
                                        args.calibration_set))
    if not args.no_st:
        results.update(st_configs(pools["dense100"], proto, qrels, work, list(ST_CONFIGS)))
    naive = results.get("naive top-8", {}).get("fn_rate")
    for m in results.values():
        m["fn_vs_naive"] = round(m["fn_rate"] / naive, 3) if naive and m.get("fn_rate") is not None else None
        m["meets_target"] = bool(naive and m["fn_rate"] is not None and m["fn_rate"] <= 0.5 * naive
                                 and m["coverage"] >= 0.95 and (m["hardness"] or 0) >= 0.90)
    return summary, results


def worse_of(per_ds: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per configuration: the worse value of each metric over the collections (FN ratio: higher; coverage and
    hardness: lower), and whether it meets all three targets on every collection."""
    names = [n for n in next(iter(per_ds.values())) if all(n in r for r in per_ds.values())]
    out = {}
    for n in names:
        rows = [r[n] for r in per_ds.values()]
        out[n] = {"fn_vs_naive": max((m["fn_vs_naive"] for m in rows), default=None),
                  "coverage": min(m["coverage"] for m in rows),
                  "hardness": min((m["hardness"] or 0) for m in rows),
                  "meets_target_on_all": all(m["meets_target"] for m in rows)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["cranfield", "cisi"])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_quality")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_quality.json")
    ap.add_argument("--no-st", action="store_true", help="skip sentence-transformers mine_hard_negatives")
    ap.add_argument("--only", nargs="*", help="run only these negmine configuration names")
    ap.add_argument("--dedup-variants", action="store_true", help="also run every row with near-duplicate removal")
    ap.add_argument("--calibration-seeds", type=int, nargs="*", default=[0, 1, 2],
                    help="one calibrated row per seed (none: skip calibration)")
    ap.add_argument("--calibration-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for the calibration rows, e.g. calibrate.queries=75")
    ap.add_argument("--backend", default="torch", help="encoder backend of retrieve, score and select: torch (fp32, "
                    "the reference) | auto | onnx | onnx-int8 | openvino | openvino-int8")
    args = ap.parse_args()
    global BACKEND
    BACKEND = args.backend

    from negmine.cli import setup_logging
    from negmine.report.eval import markdown_table

    setup_logging(30)
    t0 = time.time()
    per_ds: dict[str, dict] = {}
    protocols = {}
    tables = {}
    for ds in args.datasets:
        protocols[ds], per_ds[ds] = run_dataset(args.data_root / ds, args.work / ds, args)
        tables[ds] = markdown_table(per_ds[ds], ("fn_rate", "fn_vs_naive", "fn_at_query", "coverage", "hardness",
                                                 "mean_rank", "negatives", "meets_target"))
        print(f"\n## {ds}\n\n{tables[ds]}", flush=True)
    worse = worse_of(per_ds)
    tables["worse of the collections"] = markdown_table(worse, ("fn_vs_naive", "coverage", "hardness",
                                                                "meets_target_on_all"))
    print(f"\n## worse of {', '.join(args.datasets)}\n\n{tables['worse of the collections']}")
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
           "load_average_end": os.getloadavg(),
           "command": "python scripts/bench_quality.py " + " ".join(sys.argv[1:]),
           "datasets": args.datasets, "protocols": protocols, "k": K, "model": MODEL, "backend": BACKEND,
           "wall_seconds": round(time.time() - t0, 1), "results": per_ds, "worse": worse, "tables": tables}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.out} ({out['wall_seconds']} s)")


if __name__ == "__main__":
    main()
