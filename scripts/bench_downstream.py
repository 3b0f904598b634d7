#!/usr/bin/env python
"""Does the model trained on the mined negatives get better? Fine-tune all-MiniLM-L6-v2 for one epoch with
MultipleNegativesRankingLoss on SciFact-train (fixed seed) from four training sets and report nDCG@10 on
SciFact-test:

  (a) in-batch negatives only: (query, positive) pairs;
  (b) sentence-transformers ``mine_hard_negatives`` defaults (3 negatives, range_max 3 + max positives);
  (c) ``mine_hard_negatives`` with relative_margin=0.05 (range_max 30 + max positives);
  (d) negmine's default configuration (dense top-100, MiniLM teacher, select.max_pos_sim 0.55, no margin rule),
      with num_negatives=3 like (b) and (c);
  (e) configs/low-fn.yaml's rules (max_pos_sim 0.65 + lexical_agreement top-20), num_negatives=3.

``--seeds`` trains every arm once per seed (nDCG@10 averaged per query over the seeds); the last column of the table
is each arm minus arm (d) with a paired bootstrap interval over the test queries.

Every arm trains on the same rows (one per (query, positive): anchor, positive, negative_1..3 – the n-tuple
format; a query the miner could not give 3 negatives is left out, as it would be for a user), the same
hyper-parameters (batch 32, lr 5e-5, warmup 10%, BatchSamplers.NO_DUPLICATES, seed 12) and the same number of
epochs, so the arms differ only in their negatives.

Budget on a shared 2-core CPU: texts are truncated to 128 tokens for training AND evaluation (the base model is
evaluated both at 128 and at its default 256, where it scores 0.645). Caches (``--work``): base-model embeddings
(negmine's embedding cache, reused to pre-fill mine_hard_negatives' cache_folder), each fine-tuned model, and
each model's corpus embeddings, so a re-run only redoes what is missing.

    nohup python scripts/bench_downstream.py [--seeds 12 13 14] > runs/bench_downstream.log 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
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
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "all-MiniLM-L6-v2"
SEED = 12
NUM_NEG = 3
MAX_LEN = 128
BATCH = 32
LR = 5e-5
NEGMINE_SELECT = {"filter": "none", "max_pos_sim": 0.55}  # negmine's default (see bench_quality)
LOWFN_SELECT = {"filter": "none", "max_pos_sim": 0.65, "max_lexical_rank": 20}  # configs/low-fn.yaml
ARMS = ("a in-batch only", "b ST mine_hard_negatives defaults", "c ST relative_margin=0.05", "d negmine default",
        "e negmine low-fn")


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def read_qrels(p: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in p.read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        if float(s) > 0:
            out.setdefault(q, {})[d] = float(s)
    return out


class Data:
    def __init__(self, src: Path) -> None:
        from negmine.models import doc_text

        corpus = read_jsonl(src / "corpus.jsonl")
        self.doc_ids = [d["_id"] for d in corpus]
        self.doc_texts = [doc_text(d.get("title") or "", d["text"]) for d in corpus]
        self.doc_of = dict(zip(self.doc_ids, self.doc_texts, strict=True))
        self.queries = {q["_id"]: q["text"] for q in read_jsonl(src / "queries.jsonl")}
        self.train = read_qrels(src / "qrels" / "train.tsv")
        self.test = read_qrels(src / "qrels" / "test.tsv")
        self.pairs = [(q, d) for q, rel in self.train.items() for d in rel]  # qrels order


# ----------------------------------------------------------------------------------------------------------------
# training sets


def mine_negmine(data: Data, src: Path, work: Path, select: dict, name: str):
    from datasets import Dataset

    from negmine.config import load_config
    from negmine.pipeline import run_mine

    run = work / name
    sets = [f"input.path={src}", "input.format=beir", "input.split=train", "retrieve.method=dense",
            f"retrieve.model={MODEL}", "retrieve.depth=100", "score.teacher=bi-encoder", f"score.model={MODEL}",
            f"select.num_negatives={NUM_NEG}", "export.format=n-tuple"]
    sets += [f"select.{k}={v}" for k, v in select.items()]
    t = time.time()
    res = run_mine(load_config(None, sets), run)
    log(f"negmine mine: {time.time() - t:.1f} s → {res.export_path}")
    ds = Dataset.from_parquet(str(res.export_path))
    keep = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, NUM_NEG + 1)]
    return ds.select_columns(keep), {"seconds": round(time.time() - t, 1), "select": select,
                                     "select_stats": next(s for s in res.stages if s.name == "select").result.artifact.stats}


def prefill_st_cache(data: Data, ds, folder: Path) -> None:
    """Write the base model's query / corpus embeddings (from negmine's embedding cache) under the file names
    mine_hard_negatives' cache_folder looks for, so it does not embed SciFact again. If the naming ever differs,
    mine_hard_negatives simply embeds (slower, same result)."""
    import numpy as np

    from negmine.encode.embed import encode_texts

    folder.mkdir(parents=True, exist_ok=True)
    queries = list(dict.fromkeys(ds["query"]))
    corpus = list(dict.fromkeys(data.doc_texts + list(ds["positive"])))
    for kind, texts in (("query", queries), ("corpus", corpus)):
        h = hashlib.sha256(repr(("", None, None, texts)).encode()).hexdigest()
        f = folder / f"{kind}_embeddings_{h}.npy"
        if not f.exists():
            vec = encode_texts(texts, model=MODEL, kind="query" if kind == "query" else "doc", normalize=True)
            np.save(f, vec.astype(np.float32))


def mine_st(data: Data, work: Path, kw: dict):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from negmine.encode.models import load_bi_encoder

    ds = Dataset.from_dict({"query": [data.queries[q] for q, _ in data.pairs],
                            "positive": [data.doc_of[d] for _, d in data.pairs]})
    prefill_st_cache(data, ds, work / "st_cache")
    model = load_bi_encoder(MODEL)
    t = time.time()
    out = mine_hard_negatives(ds, model, corpus=data.doc_texts, num_negatives=NUM_NEG, output_format="n-tuple",
                              batch_size=64, cache_folder=str(work / "st_cache"), verbose=False, **kw)
    cols = {"query": "anchor"}
    out = out.rename_columns(cols)
    log(f"mine_hard_negatives {kw}: {len(out)} rows in {time.time() - t:.1f} s")
    return out, {"seconds": round(time.time() - t, 1), "kwargs": kw}


def training_set(arm: str, data: Data, src: Path, work: Path):
    from datasets import Dataset

    if arm.startswith("a "):
        return Dataset.from_dict({"anchor": [data.queries[q] for q, _ in data.pairs],
                                  "positive": [data.doc_of[d] for _, d in data.pairs]}), {}
    if arm.startswith("b "):
        return mine_st(data, work, {})
    if arm.startswith("c "):
        return mine_st(data, work, {"relative_margin": 0.05})
    if arm.startswith("e "):
        return mine_negmine(data, src, work, LOWFN_SELECT, "negmine_lowfn_run")
    return mine_negmine(data, src, work, NEGMINE_SELECT, "negmine_run")


# ----------------------------------------------------------------------------------------------------------------
# training and evaluation


def train(ds, out_dir: Path, seed: int = SEED) -> float:
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import set_seed

    from negmine.models import resolve_model

    set_seed(seed)
    model = SentenceTransformer(resolve_model(MODEL), device="cpu")
    model.max_seq_length = MAX_LEN
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir.with_name(out_dir.name + ".trainer")), num_train_epochs=1,
        per_device_train_batch_size=BATCH, learning_rate=LR, warmup_ratio=0.1, seed=seed, data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", logging_steps=10, report_to="none",
        dataloader_num_workers=0, use_cpu=True, disable_tqdm=True)
    t = time.time()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                               loss=losses.MultipleNegativesRankingLoss(model)).train()
    model.save(str(out_dir))
    return time.time() - t


def evaluate_model(path: str, data: Data, emb_file: Path, max_len: int) -> tuple[dict[str, float], float]:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from negmine.report.ir import per_query_ndcg, top_k

    t = time.time()
    qids = list(data.test)
    if emb_file.exists():
        dv = np.load(emb_file)
        model = None
    else:
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = max_len
        dv = model.encode(data.doc_texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=True).astype(np.float32)
        np.save(emb_file, dv)
    if model is None:
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = max_len
    qv = model.encode([data.queries[q] for q in qids], batch_size=64, normalize_embeddings=True,
                      convert_to_numpy=True)
    ranked = top_k(qv, dv, data.doc_ids, 10)
    return per_query_ndcg(dict(zip(qids, ranked, strict=True)), data.test, 10), time.time() - t


def evaluate_base(data: Data, max_len: int) -> tuple[dict[str, float], float]:
    """The untuned model through negmine's embedding cache (the 256-token corpus vectors are the ones mining
    uses, so this pass is shared with arms b–d)."""
    from negmine.encode.embed import encode_texts
    from negmine.report.ir import per_query_ndcg, top_k

    t = time.time()
    seq = None if max_len == 256 else max_len  # None = the model's own 256, the cache key the pipeline uses
    dv = encode_texts(data.doc_texts, model=MODEL, kind="doc", max_seq_length=seq, normalize=True)
    qids = list(data.test)
    qv = encode_texts([data.queries[q] for q in qids], model=MODEL, kind="query", max_seq_length=seq,
                      normalize=True)
    ranked = top_k(qv, dv, data.doc_ids, 10)
    return per_query_ndcg(dict(zip(qids, ranked, strict=True)), data.test, 10), time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_downstream")
    ap.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_downstream.json")
    ap.add_argument("--arms", nargs="*", default=list(ARMS), help="subset of the arms (by letter: a b c d e)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[SEED],
                    help="training seeds; each arm is trained once per seed and its nDCG@10 averaged")
    args = ap.parse_args()
    import numpy as np
    import torch

    from negmine.report.ir import paired_bootstrap

    torch.set_num_threads(2)
    from negmine.cli import setup_logging
    setup_logging(30)
    t0 = time.time()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = Data(args.data)
    arms = [a for a in ARMS if a in args.arms or a.split()[0] in args.arms]
    log(f"SciFact: {len(data.doc_ids)} docs, {len(data.pairs)} train pairs, {len(data.test)} test queries; "
        f"arms {[a.split()[0] for a in arms]}")
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python "
                      f"{platform.python_version()}, torch {torch.__version__}",
           "command": "python scripts/bench_downstream.py " + " ".join(sys.argv[1:]),
           "settings": {"model": MODEL, "seed": SEED, "epochs": 1, "loss": "MultipleNegativesRankingLoss",
                        "seeds": args.seeds, "batch_size": BATCH, "learning_rate": LR, "max_seq_length": MAX_LEN,
                        "num_negatives": NUM_NEG, "batch_sampler": "NO_DUPLICATES"},
           "base": {}, "arms": {}}

    def save() -> None:
        out["wall_seconds"] = round(time.time() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")

    # the untuned model, at the evaluation length and at its default (256)
    per_query: dict[str, list[float]] = {}  # system → nDCG@10 of each test query (qrels order)
    for max_len in (256, MAX_LEN):
        pq, secs = evaluate_base(data, max_len)
        ndcg = float(np.mean(list(pq.values())))
        if max_len == MAX_LEN:
            per_query["untuned"] = list(pq.values())
        out["base"][f"ndcg@10 (max_seq_length {max_len})"] = round(ndcg, 4)
        log(f"base model, max_seq_length {max_len}: nDCG@10 {ndcg:.4f} ({secs:.0f} s)")
        save()
    for arm in arms:
        tag = arm.split()[0]
        info: dict = {}
        ds, mined = training_set(arm, data, args.data, work)
        info.update({"mining": mined, "rows": len(ds), "columns": ds.column_names, "ndcg@10_per_seed": {}})
        runs = []
        for seed in args.seeds:
            suffix = "" if seed == SEED else f"_s{seed}"  # the first seed keeps the cache names of earlier runs
            model_dir = work / f"model_{tag}{suffix}"
            if not (model_dir / "config.json").exists():
                secs = train(ds, model_dir, seed)
                info.setdefault("train_seconds", {})[str(seed)] = round(secs, 1)
                log(f"{arm} (seed {seed}): trained on {len(ds)} rows in {secs:.0f} s")
            pq, secs = evaluate_model(str(model_dir), data, work / f"emb_{tag}{suffix}.npy", MAX_LEN)
            runs.append(list(pq.values()))
            info["ndcg@10_per_seed"][str(seed)] = round(float(np.mean(runs[-1])), 4)
            log(f"{arm} (seed {seed}): nDCG@10 {info['ndcg@10_per_seed'][str(seed)]:.4f}")
        per_query[arm] = np.mean(np.asarray(runs), axis=0).tolist()  # per query, averaged over the seeds
        ndcg = float(np.mean(per_query[arm]))
        info.update({"ndcg@10": round(ndcg, 4)})
        out["arms"][arm] = info
        log(f"{arm}: nDCG@10 {ndcg:.4f} (mean of {len(args.seeds)} seed(s))")
        save()
    # is the difference to negmine's arm more than test-set noise? paired bootstrap over the 300 test queries
    ref = next((a for a in arms if a.startswith("d ")), None)
    diffs = {}
    if ref is not None:
        for other, scores in per_query.items():
            if other != ref:
                diffs[other] = {k: round(v, 4) if isinstance(v, float) else v
                                for k, v in paired_bootstrap(per_query[ref], scores, seed=SEED).items()}
    out["per_query_ndcg@10"] = {"queries": list(data.test), **{k: [round(x, 5) for x in v]
                                                              for k, v in per_query.items()}}
    out["negmine_minus_other"] = diffs

    def cell(name: str) -> str:
        d = diffs.get(name)
        return "–" if d is None else f"{-d['diff']:+.4f} [{-d['ci_high']:+.4f}, {-d['ci_low']:+.4f}]"

    rows = [f"| untuned (max_seq_length {MAX_LEN}) | – | {out['base'][f'ndcg@10 (max_seq_length {MAX_LEN})']:.4f} "
            f"| {cell('untuned')} |"]
    seeds = ", ".join(str(x) for x in args.seeds)
    rows += [f"| {a} | {v['rows']} | {' / '.join(f'{x:.4f}' for x in v['ndcg@10_per_seed'].values())} | "
             f"{v['ndcg@10']:.4f} | {cell(a)} |" for a, v in out["arms"].items()]
    rows[0] = rows[0].replace(" | – | ", " | – | – | ", 1)
    out["table"] = "\n".join([f"| training data | rows | nDCG@10 per seed ({seeds}) | mean | "
                              "this arm − (d), 95% paired-bootstrap CI |", "|---|---:|---|---:|---|", *rows])
    save()
    print()
    print(out["table"])
    print(f"\nwritten {args.out} ({out['wall_seconds']} s)")


if __name__ == "__main__":
    main()
