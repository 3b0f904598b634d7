"""negmine mine vs sentence-transformers ``mine_hard_negatives`` on SciFact train (809 queries, full corpus).

Both sides run as fresh processes on the same machine, interleaved A B B A per round so load from other processes
hits both alike, with the same model (packaged all-MiniLM-L6-v2), the same strings (queries; documents as
``title + " " + text``), batch size 64 and the same mining settings:

* ST: ``relative_margin=0.05``, ``num_negatives=8``, ``sampling_strategy="top"``, ``range_max`` left to ST's
  default (``10 * num_negatives + max_positives``), exact search; the triplet dataset is written to Parquet.
* negmine: ``perc_pos=0.95`` (≙ relative_margin 0.05, same s⁺ = min positive score), top-8, dense retrieval depth =
  ST's search depth (``range_max + max_positives``), bi-encoder teacher = the retriever's model (read from the
  embedding cache), near-duplicate removal off (ST has none), triplet Parquet export.

Cold = negmine starts with an empty embedding cache (``NEGMINE_CACHE_DIR`` a new empty directory) and both sides
embed the whole corpus. After the timed rounds, ``negmine mine --set select.perc_pos=0.9`` on the last run directory
(then 0.85, then back to 0.95) measures re-runs with a new margin from cached scores. The overlap of the mined (query, negative) pairs is reported.

    python scripts/bench_vs_st.py [--rounds 1] [--data ../shared/data/scifact]

Prints a table and writes scripts/results/bench_vs_st.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUM_NEGATIVES = 8
BATCH_SIZE = 64


def _read_jsonl(p: Path) -> list[dict]:
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_beir(data: Path) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]]]:
    """(query text by id, document text by id as a model sees it, positive (query id, doc id) pairs)."""
    from negmine.models import doc_text

    queries = {q["_id"]: q["text"] for q in _read_jsonl(data / "queries.jsonl")}
    docs = {d["_id"]: doc_text(d.get("title"), d["text"]) for d in _read_jsonl(data / "corpus.jsonl")}
    lines = (data / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [(q, d) for q, d, s in (line.split("\t") for line in lines if line.strip()) if float(s) > 0]
    return queries, docs, pairs


def st_worker(data: Path, out: Path) -> None:
    """The sentence-transformers side (runs in its own process): read, embed, mine, write Parquet."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from negmine.models import resolve_model

    queries, docs, pairs = load_beir(data)
    ds = Dataset.from_dict({"anchor": [queries[q] for q, _ in pairs], "positive": [docs[d] for _, d in pairs]})
    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    mined = mine_hard_negatives(ds, model, corpus=list(docs.values()), relative_margin=0.05,
                                num_negatives=NUM_NEGATIVES, sampling_strategy="top", output_format="triplet",
                                batch_size=BATCH_SIZE, verbose=True)
    mined.to_parquet(str(out))


def negmine_config(work: Path, data: Path, depth: int) -> Path:
    cfg = work / "bench_vs_st.yaml"
    cfg.write_text(f"""# bench_vs_st: TopK-PercPos (NV-Retriever, arXiv 2407.15831) configured like mine_hard_negatives
input: {{path: {data}, split: train}}
retrieve: {{method: dense, model: all-MiniLM-L6-v2, depth: {depth}, batch_size: {BATCH_SIZE}}}
score: {{teacher: bi-encoder, model: all-MiniLM-L6-v2, batch_size: {BATCH_SIZE}}}
select: {{filter: perc-pos, perc_pos: 0.95, max_pos_sim: null, pos_ref: min, num_negatives: {NUM_NEGATIVES},
          sampling: top, dedup: false}}
export: {{format: triplet}}
""", encoding="utf-8")
    return cfg


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return secs


def pair_set(path: Path) -> set[tuple[str, str]]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["anchor", "negative"])
    return set(zip(t["anchor"].to_pylist(), t["negative"].to_pylist(), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--rounds", type=int, default=1, help="A B B A rounds (each: 2 runs of each side)")
    ap.add_argument("--work", type=Path, default=None, help="working directory [a new temporary directory]")
    ap.add_argument("--json", type=Path, default=ROOT / "scripts" / "results" / "bench_vs_st.json")
    ap.add_argument("--st-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.st_worker is not None:
        st_worker(args.data, args.st_worker)
        return

    _q, _d, pairs = load_beir(args.data)
    per_q: dict[str, int] = {}
    for q, _ in pairs:
        per_q[q] = per_q.get(q, 0) + 1
    max_pos = max(per_q.values())
    range_max = 10 * NUM_NEGATIVES + max_pos          # ST's default when a margin is set
    depth = range_max + max_pos                       # ST searches range_max + max_positives documents
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_vs_st-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = negmine_config(work, args.data, depth)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    py = sys.executable
    times: dict[str, list[float]] = {"st": [], "negmine": []}
    last_run = None
    n = 0

    def run_st() -> None:
        nonlocal n
        n += 1
        out = work / f"st-{n}.parquet"
        times["st"].append(timed([py, __file__, "--data", str(args.data), "--st-worker", str(out)], env,
                                 work / f"st-{n}.log"))
        print(f"  st       run {n}: {times['st'][-1]:7.1f} s", flush=True)

    def run_negmine() -> None:
        nonlocal n, last_run
        n += 1
        cache = work / f"cache-{n}"  # cold: an empty embedding cache
        cache.mkdir()
        last_run = work / f"run-{n}"
        times["negmine"].append(timed([py, "-m", "negmine", "mine", "--config", str(cfg), "--out", str(last_run)],
                                      env | {"NEGMINE_CACHE_DIR": str(cache)}, work / f"negmine-{n}.log"))
        print(f"  negmine  run {n}: {times['negmine'][-1]:7.1f} s", flush=True)

    print(f"SciFact train: {len(per_q)} queries, {len(pairs)} positives, {len(_d)} docs; "
          f"k={NUM_NEGATIVES}, range_max={range_max}, search depth={depth}; work dir {work}", flush=True)
    for _ in range(args.rounds):
        run_st()
        run_negmine()
        run_negmine()
        run_st()
    assert last_run is not None
    cache = sorted(work.glob("cache-*"))[-1]
    renv = env | {"NEGMINE_CACHE_DIR": str(cache)}
    # new margins from cached scores, then back to 0.95 (whose export is compared with ST's)
    rerun = [timed([py, "-m", "negmine", "mine", "--config", str(cfg), "--out", str(last_run), "--set",
                    f"select.perc_pos={p}"], renv, work / f"rerun-{p}.log") for p in (0.9, 0.85, 0.95)]
    rerun_log = (work / "rerun-0.9.log").read_text()
    ours = pair_set(last_run / "export" / "triplet.parquet")
    theirs = pair_set(sorted(work.glob("st-*.parquet"))[-1])
    shared = len(ours & theirs)
    st_t, ng_t = sum(times["st"]), sum(times["negmine"])
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "data": "SciFact train (BEIR): 809 queries, 919 positives, 5,183 docs",
        "settings": {"num_negatives": NUM_NEGATIVES, "relative_margin": 0.05, "perc_pos": 0.95, "sampling": "top",
                     "range_max": range_max, "search_depth": depth, "batch_size": BATCH_SIZE},
        "rounds": args.rounds,
        "st_seconds": [round(x, 1) for x in times["st"]],
        "negmine_seconds": [round(x, 1) for x in times["negmine"]],
        "ratio_negmine_over_st": round(ng_t / st_t, 3),
        "rerun_new_margin_seconds": [round(x, 2) for x in rerun],
        "rerun_stages_skipped": rerun_log.count("up to date, skipped"),
        "pairs_negmine": len(ours), "pairs_st": len(theirs), "pairs_shared": shared,
        "overlap_jaccard": round(shared / max(1, len(ours | theirs)), 4),
        "work_dir": str(work),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print()
    print(f"{'measure':<44} {'value':>14}")
    print(f"{'mine_hard_negatives wall time (s), each run':<44} {', '.join(map(str, res['st_seconds'])):>14}")
    print(f"{'negmine mine cold wall time (s), each run':<44} {', '.join(map(str, res['negmine_seconds'])):>14}")
    print(f"{'ratio negmine / ST (sum of runs)':<44} {res['ratio_negmine_over_st']:>14}")
    print(f"{'re-run with a new margin (s)':<44} {', '.join(map(str, res['rerun_new_margin_seconds'])):>14}")
    print(f"{'(query, negative) pairs negmine / ST':<44} {f'{len(ours)} / {len(theirs)}':>14}")
    jac = res["overlap_jaccard"]
    print(f"{'shared pairs (Jaccard)':<44} {f'{shared} ({jac})':>14}")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
