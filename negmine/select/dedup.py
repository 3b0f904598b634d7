"""Near-duplicates of a positive: pure functions over texts and numpy arrays.

A candidate is a duplicate of one of its query's positives when

* their *normalised* texts are equal (NFKC, case-folded, every run of non-alphanumerics a single space), or
* the Jaccard similarity of their character-shingle sets is ``>= threshold`` (default 0.9).

Shingles are the ``k``-byte windows (k <= 8, default 5) of the UTF-8 normalised text packed into a uint64, so a
shingle set is an exact sorted ``np.unique`` array (no hashing, no collisions) built in one vectorised pass per
document. Only (candidate, positive) pairs of the same query are compared, and a pair is intersected only if the
size bound ``min(|A|, |B|) / max(|A|, |B|) >= threshold`` allows it, so the cost is a few set intersections per
query rather than anything quadratic in the corpus.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation and whitespace runs collapsed to one space, stripped."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(norm: str) -> int:
    """64-bit hash of an (already normalised) text."""
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little")


def shingles(norm: str, k: int = 5) -> np.ndarray:
    """Sorted unique ``k``-byte shingles of an (already normalised) text, packed into uint64 (k <= 8).
    A text shorter than ``k`` bytes is one shingle (itself, zero-padded)."""
    if not 1 <= k <= 8:
        raise ValueError("shingle length must be 1..8 bytes")
    b = np.frombuffer(norm.encode("utf-8"), dtype=np.uint8)
    if len(b) == 0:
        return np.zeros(0, dtype=np.uint64)
    if len(b) < k:
        b = np.concatenate([b, np.zeros(k - len(b), dtype=np.uint8)])
    n = len(b) - k + 1
    packed = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        packed |= b[j:j + n].astype(np.uint64) << np.uint64(8 * j)
    packed.sort()
    return packed[np.r_[True, packed[1:] != packed[:-1]]]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique arrays (1.0 for two empty sets)."""
    if len(a) == 0 or len(b) == 0:
        return 1.0 if len(a) == len(b) else 0.0
    i = np.searchsorted(b, a)
    i[i == len(b)] = 0
    inter = int(np.count_nonzero(b[i] == a))
    return inter / (len(a) + len(b) - inter)


@dataclass
class Signature:
    """What duplicate detection needs to know about one document."""

    hash: int
    shingles: np.ndarray


def signature(text: str, k: int = 5) -> Signature:
    norm = normalize_text(text)
    return Signature(text_hash(norm), shingles(norm, k))


def duplicate_of(cand_docs: Sequence[str], cand_query: np.ndarray, pos_docs: Sequence[str],
                 pos_query: np.ndarray, sigs: Mapping[str, Signature], threshold: float = 0.9
                 ) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """For each candidate row (doc id + query index), whether it near-duplicates a positive of the same query.

    Returns ``(is_dup, of_positive, similarity)``: ``of_positive[i]`` is the best-matching positive's doc id
    (None if not a duplicate), ``similarity[i]`` the best Jaccard computed (1.0 for equal normalised texts; NaN
    when the size bound ruled every pair out without computing). A candidate whose id is itself one of the
    query's positives is not compared (it is masked as a positive). Documents without a signature never match.
    """
    n = len(cand_docs)
    is_dup = np.zeros(n, dtype=bool)
    sim = np.full(n, np.nan)
    of: list[str | None] = [None] * n
    names = sorted(set(sigs))
    index = {d: i for i, d in enumerate(names)}
    size = np.array([len(sigs[d].shingles) for d in names], dtype=np.int64)
    hashes = np.array([sigs[d].hash for d in names], dtype=np.uint64)
    c_doc = np.fromiter((index.get(d, -1) for d in cand_docs), dtype=np.int64, count=n)
    p_doc = np.fromiter((index.get(d, -1) for d in pos_docs), dtype=np.int64, count=len(pos_docs))
    pq = np.asarray(pos_query, dtype=np.int64)
    keep = p_doc >= 0
    p_doc, pq = p_doc[keep], pq[keep]
    if n == 0 or len(p_doc) == 0:
        return is_dup, of, sim
    # every (candidate row, positive of the same query) pair, without a Python loop
    o = np.argsort(pq, kind="stable")
    p_doc, pq = p_doc[o], pq[o]
    cq = np.asarray(cand_query, dtype=np.int64)
    lo = np.searchsorted(pq, cq, side="left")
    cnt = np.where(c_doc >= 0, np.searchsorted(pq, cq, side="right") - lo, 0)
    row = np.repeat(np.arange(n), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    pi = np.repeat(lo, cnt) + (np.arange(len(row)) - first)
    a, b = c_doc[row], p_doc[pi]
    # a candidate that is one of its query's positives is not a duplicate candidate
    self_pos = np.zeros(n, dtype=bool)
    self_pos[row[a == b]] = True
    ok = ~self_pos[row]
    row, a, b = row[ok], a[ok], b[ok]
    s = np.full(len(row), np.nan)
    s[hashes[a] == hashes[b]] = 1.0
    lo_sz, hi_sz = np.minimum(size[a], size[b]), np.maximum(size[a], size[b])
    todo = np.flatnonzero(np.isnan(s) & (lo_sz >= threshold * hi_sz) & (hi_sz > 0))
    for j in todo.tolist():
        s[j] = jaccard(sigs[names[a[j]]].shingles, sigs[names[b[j]]].shingles)
    done = ~np.isnan(s)
    row, b, s = row[done], b[done], s[done]
    if len(row) == 0:
        return is_dup, of, sim
    best = np.lexsort((b, -s, row))
    row, b, s = row[best], b[best], s[best]
    head = np.r_[True, row[1:] != row[:-1]]
    row, b, s = row[head], b[head], s[head]
    sim[row] = s
    hit = s >= threshold
    is_dup[row[hit]] = True
    for r, d in zip(row[hit].tolist(), b[hit].tolist(), strict=True):
        of[r] = names[d]
    return is_dup, of, sim
