"""Ranked hit lists as ``(idx, scores)`` arrays of shape ``(n_queries, k)``: pure numpy, no I/O.

Every retriever returns rows best first, ties broken by document index (deterministic across backends and
re-runs), missing entries as index -1 at the end of the row.
"""

from __future__ import annotations

import numpy as np


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of every row of ``scores`` (best first, ties by column), non-positive scores → -1."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    return sort_hits(part, np.take_along_axis(scores, part, axis=1))


TOPK_CHUNK = 1024  # scores per chunk whose maximum bounds the k-th best score from below (exact_topk)


def exact_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best ``scores`` of one row (any order), ties at the cut taken by lower index: the rows
    :func:`sort_hits` keeps, found without partitioning the whole row. The k-th largest of the chunk maxima is a
    lower bound of the k-th best score (k chunks reach it), so only the scores at or above it are partitioned."""
    s = np.asarray(scores)
    n = len(s)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    m = n // TOPK_CHUNK
    if m >= k:
        maxes = s[: m * TOPK_CHUNK].reshape(m, TOPK_CHUNK).max(axis=1)
        cand = np.flatnonzero(s >= np.partition(maxes, m - k)[m - k])
    else:
        cand = np.arange(n)
    sc = s[cand]
    if len(cand) == k:
        return cand.astype(np.int64)
    kth = np.partition(sc, len(sc) - k)[len(sc) - k]
    above = cand[sc > kth]
    tied = cand[sc == kth]  # ascending: the lowest indices fill the cut
    return np.concatenate([above, tied[: k - len(above)]]).astype(np.int64)


def sort_hits(idx: np.ndarray, scores: np.ndarray, drop_nonpositive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by (score desc, index asc); missing entries (index < 0, and score <= 0 when
    ``drop_nonpositive``: a BM25 score of 0 means no term matched) become (-1, 0) at the end of the row."""
    idx = np.asarray(idx, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    bad = idx < 0
    if drop_nonpositive:
        bad |= scores <= 0
    s = np.where(bad, -np.inf, scores)
    i = np.where(bad, np.iinfo(np.int64).max, idx)
    order = np.lexsort((i, -s), axis=1)
    idx = np.take_along_axis(np.where(bad, -1, idx), order, axis=1)
    scores = np.take_along_axis(np.where(bad, 0, scores), order, axis=1).astype(np.float32)
    return idx, scores


def rank_of(qpos: np.ndarray, dpos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """1-based rank of doc ``dpos[i]`` in row ``qpos[i]`` of ``idx``, 0 when absent (vectorised)."""
    n_q, k = idx.shape
    valid = idx.reshape(-1) >= 0
    if len(qpos) == 0 or not valid.any():
        return np.zeros(len(qpos), dtype=np.int64)
    big = int(max(idx.max(), dpos.max())) + 1
    keys = (np.repeat(np.arange(n_q, dtype=np.int64), k) * big + idx.reshape(-1))[valid]
    ranks = np.tile(np.arange(1, k + 1), n_q)[valid]
    order = np.argsort(keys)
    keys, ranks = keys[order], ranks[order]
    want = qpos * big + dpos
    pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[pos] == want, ranks[pos], 0)
