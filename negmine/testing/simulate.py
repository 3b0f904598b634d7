"""Hidden-positives simulation helpers (tests, scripts/sim_cascade.py, dry runs on a labelled dataset).

Hide all but the best-graded relevant document of each query (ties: smallest id), so the hidden ones are known
false negatives when they are mined as negatives; build RUN/negatives by hand with the select stage's schemas (for
tests, before or without the select stage) and measure false-negative rates against the full qrels."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow as pa

from negmine.io import schemas
from negmine.io.store import StageWriter


def read_qrels(path: Path) -> list[tuple[str, str, float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [(q, d, float(s)) for q, d, s in rows]


def best_only(qrels: list[tuple[str, str, float]]) -> dict[str, str]:
    """The best-graded relevant document of each query (ties: smallest id) — the one positive left visible."""
    best: dict[str, tuple[float, str]] = {}
    for q, d, s in qrels:
        cur = best.get(q)
        if cur is None or s > cur[0] or (s == cur[0] and _id_key(d) < _id_key(cur[1])):
            best[q] = (s, d)
    return {q: d for q, (_, d) in best.items()}


def _id_key(d: str) -> tuple:
    return (0, int(d), "") if d.isdigit() else (1, 0, d)


def hidden_copy(src: Path, dst: Path, split: str = "test") -> Path:
    """A BEIR dir whose qrels keep only the best-graded document of each query."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "qrels").mkdir(exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        shutil.copyfile(src / name, dst / name)
    best = best_only(read_qrels(src / "qrels" / f"{split}.tsv"))
    with open(dst / "qrels" / f"{split}.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d in best.items():
            f.write(f"{q}\t{d}\t1\n")
    return dst


def write_negatives(run: Path, ingest_fp: str, negs: dict[str, list[str]], inputs: dict | None = None,
                    positives: dict[str, list[str]] | None = None) -> None:
    """RUN/negatives as the select stage writes it: main table negatives, side tables dropped (empty), positives
    (each query's positives, as export reads them) and the per-query summary."""
    n_rows = sum(len(v) for v in negs.values())
    rows: dict[str, list] = {f.name: [None] * n_rows for f in schemas.NEGATIVES}  # columns select may add: null
    i = 0
    for q, docs in negs.items():
        for r, d in enumerate(docs, start=1):
            for k, v in (("query_id", q), ("doc_id", d), ("rank", r), ("teacher_score", 1.0 - r / 100),
                         ("pos_score", 1.0), ("reason_kept", "sampled"), ("filled", False)):
                rows[k][i] = v
            i += 1
    tables = {"negatives": schemas.NEGATIVES, "dropped": schemas.DROPPED, "positives": schemas.SELECT_POSITIVES,
              "queries": schemas.SELECT_QUERIES}
    w = StageWriter(run / "negatives", "select", {"hand_made": True}, inputs or {"ingest": ingest_fp}, tables,
                    main_table="negatives")
    w.begin()
    w.write_shard("negatives", 0, pa.table(rows, schema=schemas.NEGATIVES))
    pos = [(q, d) for q in negs for d in (positives or {}).get(q, [])]
    w.write_shard("positives", 0, pa.table({"query_id": [q for q, _ in pos], "doc_id": [d for _, d in pos],
                                            "rank": [None] * len(pos), "teacher_score": [1.0] * len(pos),
                                            "grade": [1.0] * len(pos)}, schema=schemas.SELECT_POSITIVES))
    qs = list(negs)
    summary: dict[str, list] = {f.name: [None] * len(qs) for f in schemas.SELECT_QUERIES}
    summary.update({"query_id": qs, "pos_score": [1.0] * len(qs), "kept": [len(negs[q]) for q in qs]})
    w.write_shard("queries", 0, pa.table(summary, schema=schemas.SELECT_QUERIES))
    w.finish()


def build_hidden_run(src: Path, work: Path, n_queries: int, per_query: int = 8, max_hidden: int = 3,
                     seed: int = 0) -> tuple[Path, dict[str, list[str]], set[tuple[str, str]]]:
    """RUN with ingest of the hidden-positives copy of ``src`` and, per query, ``per_query`` negatives of which up to
    ``max_hidden`` are hidden relevant documents. Returns (run dir, negatives, hidden (q, d) pairs)."""
    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams

    hidden_dir = hidden_copy(src, work / "hidden")
    run = work / "run"
    ing = run_ingest(run, IngestParams(path=str(hidden_dir), split="test")).artifact
    qrels = read_qrels(src / "qrels" / "test.tsv")
    best = best_only(qrels)
    rel: dict[str, list[str]] = {}
    for q, d, _s in qrels:
        if d != best[q]:
            rel.setdefault(q, []).append(d)
    docs = ing.read("corpus", columns=["doc_id"])["doc_id"].to_pylist()
    all_rel = {(q, d) for q, d, _ in qrels}
    rng = random.Random(seed)
    negs: dict[str, list[str]] = {}
    hidden: set[tuple[str, str]] = set()
    for q in sorted(best, key=_id_key)[:n_queries]:
        h = [d for d in rel.get(q, []) if d in set(docs)][:max_hidden]
        others = [d for d in rng.sample(docs, per_query * 3) if (q, d) not in all_rel][: per_query - len(h)]
        lst = h + others
        rng.shuffle(lst)
        negs[q] = lst
        hidden.update((q, d) for d in h)
    write_negatives(run, ing.fingerprint, negs, positives={q: [best[q]] for q in negs})
    return run, negs, hidden


def main(argv: list[str] | None = None) -> None:
    """``python -m negmine.testing.simulate BEIR_DIR OUT [--queries N]``: a hidden-positives run with hand-made
    negatives (no model needed), to try `negmine relabel` against a judge (make test-llm-local uses it)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m negmine.testing.simulate", description=main.__doc__)
    ap.add_argument("beir_dir", type=Path, help="BEIR directory with qrels/test.tsv (e.g. ../shared/data/cranfield)")
    ap.add_argument("out", type=Path, help="work directory; the run is OUT/run")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=8)
    args = ap.parse_args(argv)
    run, negs, hidden = build_hidden_run(args.beir_dir, args.out, args.queries, per_query=args.negatives)
    print(f"{run}: {sum(len(v) for v in negs.values())} negatives of {len(negs)} queries, "
          f"{len(hidden)} of them hidden relevant documents")


if __name__ == "__main__":
    main()
