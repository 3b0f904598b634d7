"""Fusion of several retrievers' candidate lists: pure numpy functions, no I/O.

A *run* is a pair ``(idx, scores)`` of arrays ``(n_queries, k_r)``: document indices best first (-1 = no hit)
and the retriever's scores. Fusion returns ``(idx, scores, found)`` of shape ``(n_queries, depth)``; ``found`` is
a bit mask per candidate (bit r set when run r returned the document), which the stage turns into the
``retrievers`` column.

* ``rrf``: score(d) = Σ_r w_r / (k + rank_r(d)), k = 60 (Cormack et al., 2009).
* ``score``: score(d) = Σ_r w_r · minmax_r(s_r(d)), each run's scores min-max normalised per query
  (a run's single hit, or all-equal scores, normalise to 1); a document a run did not return adds 0.
Ties are broken by document index, so fusion is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Run = tuple[np.ndarray, np.ndarray]


def rrf_contrib(idx: np.ndarray, scores: np.ndarray, k: float = 60.0) -> np.ndarray:
    ranks = np.arange(1, idx.shape[1] + 1, dtype=np.float64)[None, :]
    return np.broadcast_to(1.0 / (k + ranks), idx.shape)


def minmax_contrib(idx: np.ndarray, scores: np.ndarray, k: float = 0.0) -> np.ndarray:
    valid = idx >= 0
    s = scores.astype(np.float64)
    lo = np.where(valid, s, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, s, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, out, 0.0)


FUSIONS: dict[str, Callable[..., np.ndarray]] = {"rrf": rrf_contrib, "score": minmax_contrib}


def fuse(runs: Sequence[Run], depth: int, method: str = "rrf", k: float = 60.0,
         weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse ``runs`` (see the module doc) into the top ``depth`` documents per query."""
    if not runs:
        raise ValueError("fuse needs at least one run")
    if len(runs) > 32:
        raise ValueError("at most 32 runs can be fused")
    contrib_fn = FUSIONS[method]
    weights = [1.0] * len(runs) if weights is None else list(weights)
    n_q = runs[0][0].shape[0]
    n_docs = 1 + max(int(r[0].max(initial=-1)) for r in runs)
    qs, ds, cs, bits = [], [], [], []
    for r, ((idx, scores), w) in enumerate(zip(runs, weights, strict=True)):
        if idx.shape[0] != n_q:
            raise ValueError("all runs must cover the same queries")
        valid = idx >= 0
        q = np.nonzero(valid)[0]
        qs.append(q.astype(np.int64))
        ds.append(idx[valid].astype(np.int64))
        cs.append(w * contrib_fn(idx, scores, k)[valid])
        bits.append(np.full(len(q), 1 << r, dtype=np.uint32))
    keys = np.concatenate(qs) * max(n_docs, 1) + np.concatenate(ds)
    uniq, inv = np.unique(keys, return_inverse=True)
    fused = np.bincount(inv, weights=np.concatenate(cs), minlength=len(uniq))
    found = np.zeros(len(uniq), dtype=np.uint32)
    np.bitwise_or.at(found, inv, np.concatenate(bits))
    q_u, d_u = uniq // max(n_docs, 1), uniq % max(n_docs, 1)
    order = np.lexsort((d_u, -fused, q_u))
    q_s = q_u[order]
    starts = np.searchsorted(q_s, np.arange(n_q))
    pos = np.arange(len(q_s)) - starts[q_s]
    keep = pos < depth
    out_idx = np.full((n_q, depth), -1, dtype=np.int64)
    out_score = np.zeros((n_q, depth), dtype=np.float32)
    out_found = np.zeros((n_q, depth), dtype=np.uint32)
    rows, cols = q_s[keep], pos[keep]
    out_idx[rows, cols] = d_u[order][keep]
    out_score[rows, cols] = fused[order][keep]
    out_found[rows, cols] = found[order][keep]
    return out_idx, out_score, out_found


def found_labels(found: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """Bit masks → the list of retriever labels for each mask (in ``labels`` order)."""
    cache: dict[int, list[str]] = {}
    out = []
    for m in found.tolist():
        if m not in cache:
            cache[m] = [lab for r, lab in enumerate(labels) if m >> r & 1]
        out.append(cache[m])
    return out
