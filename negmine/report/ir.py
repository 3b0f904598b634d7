"""Retrieval effectiveness: nDCG@k (pure functions, used by scripts/bench_downstream.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k of one ranked list: DCG = Σ_{i<k} (2^rel_i − 1) / log2(i + 2), normalised by the DCG of the ideal
    ordering of ``relevance`` (graded; grade <= 0 counts as not relevant). 0.0 when nothing is relevant
    (BEIR / pytrec_eval convention for binary qrels is the same exponential gain, which equals rel for 0/1)."""
    gains = np.array([max(float(relevance.get(d, 0.0)), 0.0) for d in list(ranked)[:k]])
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(((2.0 ** gains - 1.0) * disc[:len(gains)]).sum())
    ideal = np.sort(np.array([max(float(g), 0.0) for g in relevance.values()]))[::-1][:k]
    idcg = float(((2.0 ** ideal - 1.0) * disc[:len(ideal)]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def mean_ndcg_at_k(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]], k: int = 10) -> float:
    """Mean nDCG@k over the queries of ``qrels`` (a query missing from ``run`` scores 0)."""
    if not qrels:
        raise ValueError("no queries in qrels")
    return float(np.mean([ndcg_at_k(run.get(q, ()), rel, k) for q, rel in qrels.items()]))


def top_k(query_vecs: np.ndarray, doc_vecs: np.ndarray, doc_ids: Sequence[str], k: int = 10,
          block: int = 1024) -> list[list[str]]:
    """Exact top-k doc ids per query by inner product (normalised vectors: cosine), in blocks of queries."""
    out: list[list[str]] = []
    ids = np.asarray(doc_ids, dtype=object)
    kk = min(k, len(doc_ids))
    for s in range(0, len(query_vecs), block):
        sims = query_vecs[s:s + block] @ doc_vecs.T
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable"),
                                   axis=1)
        out.extend(ids[row].tolist() for row in order)
    return out


def per_query_ndcg(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]],
                   k: int = 10) -> dict[str, float]:
    """nDCG@k per query of ``qrels`` (a query missing from ``run`` scores 0); the mean is :func:`mean_ndcg_at_k`."""
    return {q: ndcg_at_k(run.get(q, ()), rel, k) for q, rel in qrels.items()}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of the per-query differences ``a - b`` with a percentile bootstrap confidence interval (queries
    resampled with replacement, the same resample for both systems), and the share of resamples in which the
    difference is <= 0 (a one-sided bootstrap p-value for "a is better than b")."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or not len(d):
        raise ValueError("need two equally long, non-empty per-query score lists")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "p_le_0": float((means <= 0).mean()), "queries": int(len(d))}
