"""`negmine retrieve`: RUN/ingest → RUN/candidates (stage "retrieve").

Tables: ``candidates`` (main; schema CANDIDATES) and ``positive_ranks`` (schema POSITIVE_RANKS: the final rank of
every given positive, null when not found, and which retrievers found it). Positives are *not* removed from the
candidates: selection masks them.

Work is sharded by query (``shard_queries``); a shard is the unit of resume. Retrievers are opened lazily, once
per run (the corpus is tokenised / embedded once, not once per shard), and only if a shard still needs work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from negmine.errors import InputError
from negmine.io import schemas
from negmine.io.corpus import Corpus, CorpusRows
from negmine.io.store import Artifact, StageResult, StageWriter, check_inputs, run_shards
from negmine.retrieve.params import RetrieveParams, RetrieverConfig
from negmine.retrieve.ranking import rank_of

log = logging.getLogger("negmine")

STAGE = "retrieve"
TABLES = {"candidates": schemas.CANDIDATES, "positive_ranks": schemas.POSITIVE_RANKS}


def open_searcher(cfg: RetrieverConfig, corpus: Corpus, params: RetrieveParams) -> Any:
    t0 = time.time()
    s: Any
    if cfg.method == "bm25":
        from negmine.retrieve.bm25 import open_bm25

        s = open_bm25(cfg, corpus.fingerprint, corpus.text_chunks)
    else:
        from negmine.retrieve.dense import DenseSearcher

        s = DenseSearcher(cfg, corpus.text_chunks, batch_size=params.batch_size, device=params.device,
                          n_docs=len(corpus))
    log.info("retrieve: %s ready in %.1fs", cfg.label, time.time() - t0)
    return s


def _clamp_depths(params: RetrieveParams, n_docs: int) -> tuple[list[RetrieverConfig], int]:
    rs = params.resolved()
    depth = params.depth
    for cfg in rs:
        if cfg.depth > n_docs:
            log.warning("retrieve: %s depth %d is larger than the corpus (%d documents), clamped to %d",
                        cfg.label, cfg.depth, n_docs, n_docs)
    if depth > n_docs and len(rs) > 1:
        log.warning("retrieve: depth %d is larger than the corpus (%d documents), clamped", depth, n_docs)
    rs = [r.model_copy(update={"depth": min(r.depth, n_docs)}) for r in rs]
    return rs, min(depth, n_docs)


def candidates_table(qids: Sequence[str], corpus: CorpusRows, idx: np.ndarray, scores: np.ndarray,
                     retriever: str, found: list[list[str]] | None = None) -> pa.Table:
    """Rows of the (query, candidate) matrix ``idx`` (-1 = no hit, holes only at the end of a row)."""
    valid = idx >= 0
    rows, cols = np.nonzero(valid)
    n = len(rows)
    q = np.asarray(qids, dtype=object)[rows]
    if found is None:
        found_col = pa.array([[retriever]] * n, type=pa.list_(pa.string()))
    else:
        found_col = pa.array(found, type=pa.list_(pa.string()))
    return pa.table({
        "query_id": pa.array(q, type=pa.string()),
        "doc_id": corpus.ids_at(idx[valid]),
        "rank": pa.array((cols + 1).astype(np.int32)),
        "retriever": pa.array([retriever] * n, type=pa.string()),
        "retriever_score": pa.array(scores[valid].astype(np.float32)),
        "retrievers": found_col,
    }, schema=schemas.CANDIDATES)


def positive_ranks_table(qids: Sequence[str], positives: dict[str, list[str]], corpus: CorpusRows,
                         final_idx: np.ndarray, runs: dict[str, np.ndarray]) -> pa.Table:
    pq_ids, pd_ids, qpos = [], [], []
    for i, q in enumerate(qids):
        for d in positives.get(q, ()):
            pq_ids.append(q)
            pd_ids.append(d)
            qpos.append(i)
    qp = np.asarray(qpos, dtype=np.int64)
    dp = corpus.rows(pd_ids)  # -1: a positive outside the corpus is never found
    ok = dp >= 0
    final = np.zeros(len(qp), dtype=np.int64)
    final[ok] = rank_of(qp[ok], dp[ok], final_idx)
    by = {}
    for label, idx in runs.items():
        r = np.zeros(len(qp), dtype=np.int64)
        r[ok] = rank_of(qp[ok], dp[ok], idx)
        by[label] = r > 0
    found_by = [[lab for lab in runs if by[lab][j]] for j in range(len(qp))]
    return pa.table({
        "query_id": pa.array(pq_ids, type=pa.string()),
        "doc_id": pa.array(pd_ids, type=pa.string()),
        "rank": pa.array(np.where(final > 0, final, 0).astype(np.int32), mask=final == 0),
        "found_by": pa.array(found_by, type=pa.list_(pa.string())),
    }, schema=schemas.POSITIVE_RANKS)


def positive_stats(table: pa.Table, labels: Sequence[str], depth: int) -> dict[str, Any]:
    """Recall of the given positives at ``depth`` (final list) and per retriever (within its own depth)."""
    ranks = table.column("rank").to_numpy(zero_copy_only=False)
    ranks = np.asarray(ranks, dtype=np.float64)  # nulls → nan
    found = ~np.isnan(ranks)
    n = len(ranks)
    fb = table.column("found_by").to_pylist()
    out: dict[str, Any] = {
        "positives": n, "positives_found": int(found.sum()), "positives_not_found": int(n - found.sum()),
        f"recall@{depth}": round(float(found.mean()), 4) if n else None,
        "positive_mean_rank": round(float(ranks[found].mean()), 2) if found.any() else None,
        "positive_median_rank": float(np.median(ranks[found])) if found.any() else None,
    }
    if len(labels) > 1:
        out["recall_by_retriever"] = {lab: round(sum(lab in f for f in fb) / n, 4) if n else None for lab in labels}
    return out


def run_retrieve(run_dir: str | Path, params: RetrieveParams) -> StageResult:
    """Retrieve ``depth`` candidates for every query of ``RUN/ingest``; skipped when up to date."""
    from negmine.models import check_model, model_revision

    run_dir = Path(run_dir)
    t0 = time.time()
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    check_inputs(ingest)
    retrievers = params.resolved()
    for r in retrievers:
        if r.method == "dense":
            check_model(r.model, "--model" if r.model == params.model else "retrieve.retrievers")
    revisions = {r.label: model_revision(r.model) for r in retrievers if r.method == "dense"}
    fp_params = params.fingerprint_dict() | {"model_revisions": revisions}
    writer = StageWriter(run_dir / "candidates", STAGE, params.model_dump(mode="json"),
                         {"ingest": ingest.fingerprint}, TABLES, main_table="candidates", fingerprint_params=fp_params)
    done = writer.up_to_date()
    if done is not None:
        log.info("retrieve: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True)

    corpus = Corpus(ingest)
    queries = ingest.read("queries")
    qids_all = queries.column("query_id").to_pylist()
    qtexts_all = queries.column("text").to_pylist()
    if len(corpus) == 0:
        raise InputError("the corpus is empty: nothing to retrieve", run_dir / "ingest" / "corpus")
    if not qids_all:
        raise InputError("there are no queries: nothing to retrieve", run_dir / "ingest" / "queries")
    pos_t = ingest.read("positives", columns=["query_id", "doc_id"])
    positives: dict[str, list[str]] = {}
    for q, d in zip(pos_t.column("query_id").to_pylist(), pos_t.column("doc_id").to_pylist(), strict=True):
        positives.setdefault(q, []).append(d)
    retrievers, depth = _clamp_depths(params, len(corpus))
    labels = [r.label for r in retrievers]
    out_name = labels[0] if len(retrievers) == 1 else "hybrid"

    searchers: dict[str, Any] = {}
    timings: dict[str, float] = {}
    step = params.shard_queries
    n_shards = (len(qids_all) + step - 1) // step

    def compute(shard: int, start: int) -> dict[str, pa.Table]:
        qids, qtexts = qids_all[start:start + step], qtexts_all[start:start + step]
        runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for cfg in retrievers:
            if cfg.label not in searchers:
                searchers[cfg.label] = open_searcher(cfg, corpus, params)
            t1 = time.time()
            runs[cfg.label] = searchers[cfg.label].search(qtexts, cfg.depth)
            timings[f"search_{cfg.label}"] = round(timings.get(f"search_{cfg.label}", 0.0) + time.time() - t1, 3)
        if len(retrievers) == 1:
            idx, scores = runs[labels[0]]
            table = candidates_table(qids, corpus, idx, scores, out_name)
        else:
            from negmine.retrieve.fusion import found_labels, fuse

            idx, scores, found = fuse(list(runs.values()), depth, params.fusion, params.rrf_k,
                                      [r.weight for r in retrievers])
            table = candidates_table(qids, corpus, idx, scores, out_name,
                                     found_labels(found[idx >= 0], labels))
        return {"positive_ranks": positive_ranks_table(qids, positives, corpus, idx,
                                                       {k: v[0] for k, v in runs.items()}),
                "candidates": table}

    def shard_done(shard: int, start: int, tables: Any, resumed: bool) -> None:
        if not resumed:
            log.info("retrieve: shard %d/%d done (%d queries, %d candidates)", shard + 1, n_shards,
                     len(qids_all[start:start + step]), tables["candidates"].num_rows)

    run_shards(writer, enumerate(range(0, len(qids_all), step)), compute, on_shard=shard_done)
    ranks = pa.concat_tables([writer.read_shard("positive_ranks", i) for i in range(n_shards)])
    stats = {"queries": len(qids_all), "docs": len(corpus), "depth": depth, "retrievers": labels,
             "shards": n_shards} | positive_stats(ranks, labels, depth)
    timings["total"] = round(time.time() - t0, 3)
    art = writer.finish(stats=stats, timings=timings)
    log.info("retrieve: %s → %d candidates for %d queries; recall@%d of the positives %s (%d not found)",
             out_name, art.num_rows(), len(qids_all), depth, stats.get(f"recall@{depth}"),
             stats["positives_not_found"])
    return StageResult(art, False, time.time() - t0)
