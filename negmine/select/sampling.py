"""Sampling ``num_negatives`` from each query's eligible candidates: pure functions over numpy arrays.

Every sampler turns a candidate into a *key*; a query keeps its ``k`` eligible candidates with the highest keys.
For the random samplers the key is ``log w + Gumbel noise``, and the top-k of such keys is exactly a sample of k
items without replacement with probabilities proportional to ``w`` drawn one after the other (the Gumbel-top-k
trick), so the whole shard is sampled with one sort instead of a Python loop per query.

========  ============================================  ==================================================
name      weight ``w`` (sampled without replacement)    source
========  ============================================  ==================================================
top       deterministic: highest teacher score          NV-Retriever "TopK" (ties: better rank, doc id)
uniform   1                                             FlagEmbedding ``hn_mine`` (uniform in a window)
softmax   ``exp(s / T)``                                temperature sampling
simans    ``exp(-a * (s - s+ - b)^2)``                  SimANS (microsoft/SimXNS), a ≈ 0.5, b ≈ 0
========  ============================================  ==================================================

Randomness is a counter-based hash (splitmix64) of ``(seed, blake2b(query_id), position of the candidate in the
query's rank order)``: the same config gives byte-identical output whatever the shard size or the order in which
queries are processed, and changing a filter never re-draws the noise of the other candidates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from negmine.select.params import SAMPLINGS

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def query_seed(seed: int, query_id: str) -> int:
    """A 64-bit seed for one query, stable across runs, machines and Python hash randomisation."""
    h = hashlib.blake2b(f"{seed}\x00{query_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def query_seeds(seed: int, query_ids: Sequence[str]) -> np.ndarray:
    return np.fromiter((query_seed(seed, q) for q in query_ids), dtype=np.uint64, count=len(query_ids))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def row_uniforms(row_seed: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Uniform(0, 1) draws (open interval) for rows given their query's seed and their position in the query."""
    with np.errstate(over="ignore"):
        x = np.asarray(row_seed, dtype=np.uint64) ^ (
            np.asarray(position, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03))
    bits = _splitmix64(_splitmix64(x)) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def gumbel(u: np.ndarray) -> np.ndarray:
    return -np.log(-np.log(u))


# ----------------------------------------------------------------------------------------------------------------
# samplers: key(scores, pos_score, noise, params) -> float key (higher = taken first); `noise` is Gumbel(0, 1)

Sampler = Callable[[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]
SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Register the sampler ``name`` (declared in ``negmine.select.params.SAMPLINGS``, which the config and the
    CLI validate against)."""
    if name not in SAMPLINGS:
        raise ValueError(f"sampling {name!r} is not declared in negmine.select.params.SAMPLINGS")

    def deco(fn: Sampler) -> Sampler:
        SAMPLERS[name] = fn
        return fn

    return deco


@register_sampler("top")
def top_key(scores, pos_score, noise, p):
    return np.asarray(scores, dtype=np.float64)


@register_sampler("uniform")
def uniform_key(scores, pos_score, noise, p):
    return np.asarray(noise, dtype=np.float64)


@register_sampler("softmax")
def softmax_key(scores, pos_score, noise, p):
    return np.asarray(scores, dtype=np.float64) / float(p.get("temperature", 1.0)) + noise


@register_sampler("simans")
def simans_key(scores, pos_score, noise, p):
    a = float(p.get("simans_a", 0.5))
    b = float(p.get("simans_b", 0.0))
    d = np.asarray(scores, dtype=np.float64) - np.asarray(pos_score, dtype=np.float64) - b
    return -a * d * d + noise


def sample_keys(method: str, scores: np.ndarray, pos_score, noise: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    try:
        fn = SAMPLERS[method]
    except KeyError:
        raise ValueError(f"unknown sampling {method!r} ({' | '.join(SAMPLERS)})") from None
    key = fn(scores, np.broadcast_to(np.asarray(pos_score, dtype=np.float64), np.shape(scores)), noise, params)
    return np.where(np.isnan(key), -np.inf, key)


# ----------------------------------------------------------------------------------------------------------------
# grouped top-k


def sort_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort`` of ``keys`` given most significant first (stable). When the keys' value ranges fit in 63 bits
    together they are packed into one int64 and sorted once (several times faster on large blocks, the same
    permutation); a float key takes part as its dense rank (``np.unique``: NaN last and equal to each other,
    -0.0 equal to 0.0, as a sort orders them)."""
    arrays = [np.asarray(k) for k in keys]
    n = len(arrays[0]) if arrays else 0
    if n:
        is_int = [a.dtype.kind in "iub" for a in arrays]
        lows = [int(a.min()) if i else 0 for a, i in zip(arrays, is_int, strict=True)]
        bits = [max(int(a.max()) - lo, 1).bit_length() if i else max(n - 1, 1).bit_length()
                for a, lo, i in zip(arrays, lows, is_int, strict=True)]
        if sum(bits) <= 63:
            packed = np.zeros(n, dtype=np.int64)
            for a, lo, b, i in zip(arrays, lows, bits, is_int, strict=True):
                v = a.astype(np.int64) - np.int64(lo) if i else np.unique(a, return_inverse=True)[1].reshape(-1)
                packed <<= np.int64(b)
                packed |= v
            return np.argsort(packed, kind="stable")
    return np.lexsort(tuple(reversed(arrays)))


def group_order(group: np.ndarray, primary: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of rows by group, then by the ``primary`` keys (ascending; first key most significant).
    Returns ``(order, position_in_group)`` with position given for the sorted rows."""
    order = sort_order([group, *primary])
    g = np.asarray(group)[order]
    n = len(g)
    if n == 0:
        return order, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    run = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, run)
    return order, pos


def group_topk(group: np.ndarray, key: np.ndarray, eligible: np.ndarray, k, tiebreak: Sequence[np.ndarray] = ()
               ) -> np.ndarray:
    """Boolean mask of the ``k`` eligible rows with the highest ``key`` in each group (ties: ``tiebreak`` keys,
    ascending). ``k`` is an int or a per-row array (the group's quota)."""
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order, pos = group_order(group, [~np.asarray(eligible), -np.asarray(key, dtype=np.float64), *tiebreak])
    kk = np.asarray(k)[order] if np.ndim(k) else k
    take_sorted = np.asarray(eligible)[order] & (pos < kk)
    out = np.zeros(n, dtype=bool)
    out[order] = take_sorted
    return out


def sample(scores: np.ndarray, k: int, method: str = "top", *, pos_score: float = np.nan, seed: int = 0,
           query_id: str = "", eligible: np.ndarray | None = None, **params: Any) -> np.ndarray:
    """One query: indices of the ``k`` sampled candidates, best key first. ``scores`` must be in rank order
    (position = rank - 1), which is also the tie-break."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    elig = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    u = row_uniforms(np.full(n, query_seed(seed, query_id), dtype=np.uint64), np.arange(n))
    key = sample_keys(method, s, pos_score, gumbel(u), params)
    idx = np.flatnonzero(elig)
    idx = idx[np.lexsort((idx, -key[idx]))]
    return idx[:k]
