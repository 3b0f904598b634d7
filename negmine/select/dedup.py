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
from collections.abc import Callable, Mapping, Sequence
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
    row, a, b = _query_pairs(c_doc, cand_query, p_doc, pos_query)
    s = np.full(len(row), np.nan)
    s[hashes[a] == hashes[b]] = 1.0
    lo_sz, hi_sz = np.minimum(size[a], size[b]), np.maximum(size[a], size[b])
    todo = np.flatnonzero(np.isnan(s) & (lo_sz >= threshold * hi_sz) & (hi_sz > 0))
    for j in todo.tolist():
        s[j] = jaccard(sigs[names[a[j]]].shingles, sigs[names[b[j]]].shingles)
    row, b, s = _best_pairs(row, b, s, b, threshold, is_dup, sim)
    for r, d in zip(row.tolist(), b.tolist(), strict=True):
        of[r] = names[d]
    return is_dup, of, sim


def _query_pairs(c_doc: np.ndarray, cand_query: np.ndarray, p_doc: np.ndarray, pos_query: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (candidate row, positive of the same query) pair, without a Python loop: ``(row, candidate doc,
    positive doc)``. Documents < 0 (unknown) take part in no pair, nor does a candidate that is itself one of its
    query's positives (it is masked as a positive)."""
    n = len(c_doc)
    c_doc = np.asarray(c_doc, dtype=np.int64)
    p_doc = np.asarray(p_doc, dtype=np.int64)
    pq = np.asarray(pos_query, dtype=np.int64)
    keep = p_doc >= 0
    p_doc, pq = p_doc[keep], pq[keep]
    empty = np.zeros(0, dtype=np.int64)
    if n == 0 or len(p_doc) == 0:
        return empty, empty, empty
    o = np.argsort(pq, kind="stable")
    p_doc, pq = p_doc[o], pq[o]
    cq = np.asarray(cand_query, dtype=np.int64)
    if len(cq) and cq.min() >= 0 and (pq.min() >= 0):  # query indices: per-query start and count by a gather
        n_q = int(max(cq.max(), pq.max())) + 1
        per_q = np.bincount(pq, minlength=n_q)
        first_q = np.cumsum(per_q) - per_q
        if per_q.max() == 1:  # one positive a query (the usual case): each candidate pairs with it or nothing
            row = np.flatnonzero((c_doc >= 0) & (per_q[cq] == 1))
            a, b = c_doc[row], p_doc[first_q[cq[row]]]
            ok = a != b
            return row[ok], a[ok], b[ok]
        lo = first_q[cq]
        cnt = np.where(c_doc >= 0, per_q[cq], 0)
    else:
        lo = np.searchsorted(pq, cq, side="left")
        cnt = np.where(c_doc >= 0, np.searchsorted(pq, cq, side="right") - lo, 0)
    row = np.repeat(np.arange(n), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    pi = np.repeat(lo, cnt) + (np.arange(len(row)) - first)
    a, b = c_doc[row], p_doc[pi]
    self_pos = np.zeros(n, dtype=bool)
    self_pos[row[a == b]] = True
    ok = ~self_pos[row]
    return row[ok], a[ok], b[ok]


def _best_pairs(row: np.ndarray, b: np.ndarray, s: np.ndarray, order_b: np.ndarray, threshold: float,
                is_dup: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's most similar computed pair (ties: the lowest ``order_b``): its similarity goes into ``sim``, and
    ``is_dup`` is set where it reaches ``threshold``. Returns the duplicates' ``(row, positive, similarity)``."""
    done = ~np.isnan(s)
    row, b, s, order_b = row[done], b[done], s[done], order_b[done]
    best = np.lexsort((order_b, -s, row))
    row, b, s = row[best], b[best], s[best]
    head = np.r_[True, row[1:] != row[:-1]] if len(row) else np.zeros(0, dtype=bool)
    row, b, s = row[head], b[head], s[head]
    sim[row] = s
    hit = s >= threshold
    is_dup[row[hit]] = True
    return row[hit], b[hit], s[hit]


# ----------------------------------------------------------------------------------------------------------------
# the same decision over whole arrays of documents: sketches that rule pairs out without their shingle sets

SKETCH_BUCKETS = 64  # per-document counts of distinct shingles by bucket: an exact upper bound of the Jaccard
_SKETCH_MAX = np.iinfo(np.uint16).max
_FIB = np.uint64(0x9E3779B97F4A7C15)


def normalize_many(texts: Sequence[str | None]) -> list[str]:
    """:func:`normalize_text` of every text (None = empty). Pure-ASCII texts take a vectorised path (Arrow string
    kernels; for ASCII, NFKC is the identity, casefold is lower-casing and ``[\\W_]`` is ``[^a-z0-9]`` after it),
    the others the Python one: the results are equal."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array([t or "" for t in texts], pa.string()) if not isinstance(texts, (pa.Array, pa.ChunkedArray)) \
        else pc.fill_null(texts, "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    fast = pc.utf8_trim(pc.replace_substring_regex(pc.ascii_lower(arr), "[^a-z0-9]+", " "), " ").to_pylist()
    ascii_ = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    if not ascii_.all():
        for i in np.flatnonzero(~ascii_).tolist():
            fast[i] = normalize_text(arr[i].as_py())
    return fast


@dataclass
class Sketches:
    """Row-aligned arrays over documents (normalised texts): what :func:`duplicate_rows` needs to decide most
    pairs. ``hash``: :func:`text_hash`; ``size``: number of distinct shingles; ``counts``: distinct shingles per
    bucket (``SKETCH_BUCKETS`` columns; ``exact`` False where a count did not fit, so the bound is not used)."""

    hash: np.ndarray    # uint64
    size: np.ndarray    # int64
    counts: np.ndarray  # (n, SKETCH_BUCKETS) uint16
    exact: np.ndarray   # bool

    @classmethod
    def concat(cls, parts: Sequence[Sketches]) -> Sketches:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("hash", "size", "counts", "exact")))


def shingle_sets(norms: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The :func:`shingles` of every normalised text in one vectorised pass: ``(values, offsets)``, text ``i``'s
    sorted unique shingles being ``values[offsets[i]:offsets[i + 1]]``."""
    if not 1 <= k <= 8:
        raise ValueError("shingle length must be 1..8 bytes")
    enc = [t.encode("utf-8") for t in norms]
    n = len(enc)
    lengths = np.fromiter((len(b) for b in enc), dtype=np.int64, count=n)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    buf = np.frombuffer(b"".join(enc) + b"\0" * 8, dtype=np.uint8)
    # windows that lie inside their text (texts shorter than k: one zero-padded window, done below)
    nwin = np.where(lengths >= k, lengths - k + 1, 0)
    doc = np.repeat(np.arange(n, dtype=np.int64), nwin)
    pos = np.arange(len(doc), dtype=np.int64) + np.repeat(starts[:-1] - (np.cumsum(nwin) - nwin), nwin)
    # the 8 bytes at every offset as one little-endian word (an overlapping strided view), masked to k bytes
    words = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, offset=0, strides=(1,))
    packed = words[pos].astype(np.uint64)
    if k < 8:
        packed &= np.uint64((1 << (8 * k)) - 1)
    short = np.flatnonzero((lengths > 0) & (lengths < k))
    if len(short):
        extra = np.array([int(shingles(norms[i], k)[0]) for i in short.tolist()], dtype=np.uint64)
        doc = np.concatenate([doc, short])
        packed = np.concatenate([packed, extra])
    del pos
    if k < 8 and max(n - 1, 1).bit_length() + 8 * k <= 64:  # one sort of (text, shingle) packed in 64 bits
        key = (doc.astype(np.uint64) << np.uint64(8 * k)) | packed
        key.sort()
        doc = (key >> np.uint64(8 * k)).astype(np.int64)
        packed = key & np.uint64((1 << (8 * k)) - 1)
        del key
    else:
        order = np.lexsort((packed, doc))
        doc, packed = doc[order], packed[order]
    keep = np.ones(len(doc), dtype=bool)
    keep[1:] = (doc[1:] != doc[:-1]) | (packed[1:] != packed[:-1])
    doc, packed = doc[keep], packed[keep]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc, minlength=n), out=offsets[1:])
    return packed, offsets


def sketch(norms: Sequence[str], k: int = 5) -> Sketches:
    """:class:`Sketches` of normalised texts."""
    values, offsets = shingle_sets(norms, k)
    n = len(norms)
    size = np.diff(offsets)
    doc = np.repeat(np.arange(n, dtype=np.int64), size)
    with np.errstate(over="ignore"):
        bucket = ((values * _FIB) >> np.uint64(64 - 6)).astype(np.int64)  # SKETCH_BUCKETS = 2**6
    counts = np.bincount(doc * SKETCH_BUCKETS + bucket, minlength=n * SKETCH_BUCKETS).reshape(n, SKETCH_BUCKETS)
    exact = counts.max(axis=1, initial=0) <= _SKETCH_MAX
    hashes = np.fromiter((text_hash(t) for t in norms), dtype=np.uint64, count=n)
    return Sketches(hashes, size.astype(np.int64), np.minimum(counts, _SKETCH_MAX).astype(np.uint16), exact)


_BOUND_BLOCK = 1 << 16  # pairs per step of the bucket bound (bounds its (pairs, buckets) temporaries)


def _bucket_bound_passes(sk: Sketches, a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Per pair of document rows: whether the bucket bound leaves a Jaccard >= ``threshold`` possible.

    The bound is ``sum(min(counts)) / sum(max(counts))``; where both documents' counts are exact,
    ``sum(max) = size_a + size_b - sum(min)``, so only the minima are summed (in the counts' own uint16, by blocks
    of pairs), which is what makes this cheap over a million pairs. A pair with an inexact count always passes."""
    out = np.ones(len(a), dtype=bool)
    for s in range(0, len(a), _BOUND_BLOCK):
        ia, ib = a[s:s + _BOUND_BLOCK], b[s:s + _BOUND_BLOCK]
        inter_max = np.minimum(sk.counts[ia], sk.counts[ib]).sum(axis=1, dtype=np.int64)
        union_min = sk.size[ia] + sk.size[ib] - inter_max
        out[s:s + len(ia)] = (inter_max >= threshold * union_min) | ~(sk.exact[ia] & sk.exact[ib])
    return out


def duplicate_rows(cand_doc: np.ndarray, cand_query: np.ndarray, pos_doc: np.ndarray, pos_query: np.ndarray,
                   sk: Sketches, shingles_of: Callable[[np.ndarray], Mapping[int, np.ndarray]],
                   threshold: float = 0.9, doc_order: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`duplicate_of` over document *rows* of ``sk`` (-1 = no document) instead of ids and signatures.

    A pair is decided without shingle sets when the texts' hashes are equal (1.0), or when the size bound or the
    bucket bound ``sum(min(counts)) / sum(max(counts)) < threshold`` (an upper bound of the Jaccard) rules it out;
    ``shingles_of(rows)`` gives the shingle sets of the documents of the remaining pairs. ``doc_order``: per
    document row, the order in which equally similar positives are preferred (default: the row; ``duplicate_of``
    prefers the smaller doc id). Returns ``(is_dup, of_positive_row (-1 if none), similarity)``: the same
    duplicates, positives and duplicate similarities as :func:`duplicate_of`; the similarity of a row that is not a
    duplicate may be NaN where :func:`duplicate_of` computed a value below the threshold."""
    n = len(cand_doc)
    is_dup = np.zeros(n, dtype=bool)
    sim = np.full(n, np.nan)
    of = np.full(n, -1, dtype=np.int64)
    row, a, b = _query_pairs(cand_doc, cand_query, pos_doc, pos_query)
    s = np.full(len(row), np.nan)
    s[sk.hash[a] == sk.hash[b]] = 1.0
    sa, sb = sk.size[a], sk.size[b]
    lo_sz, hi_sz = np.minimum(sa, sb), np.maximum(sa, sb)
    todo = np.flatnonzero(np.isnan(s) & (lo_sz >= threshold * hi_sz) & (hi_sz > 0))
    if len(todo):
        todo = todo[_bucket_bound_passes(sk, a[todo], b[todo], threshold)]
    if len(todo):
        sets = shingles_of(np.unique(np.concatenate([a[todo], b[todo]])))
        for j in todo.tolist():
            s[j] = jaccard(sets[int(a[j])], sets[int(b[j])])
    rows, pos, _ = _best_pairs(row, b, s, b if doc_order is None else np.asarray(doc_order)[b], threshold, is_dup,
                               sim)
    of[rows] = pos
    return is_dup, of, sim
