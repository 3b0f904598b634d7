"""Text embeddings with a persistent, append-only embedding cache.

``encode_texts`` is the one entry point for dense vectors (retrieve and score both use it), so a text embedded by
one stage or run is free for the next.

Cache layout: ``cache_dir("embeddings")/<key>/`` where ``<key>`` hashes (model identity, model revision, kind,
prompt / prompt_name, max_seq_length, normalize); ``key.json`` says what the key is. Rows are keyed by the
16-byte blake2b hash of the exact text given to the model. Each write adds one *chunk*:

* ``chunk-<id>.f16.npy`` – float16 vectors ``(n, dim)``, read memory-mapped;
* ``chunk-<id>.keys.npy`` – the rows' text hashes ``(n,)`` of dtype ``V16``.

Both are written to temporary names and renamed; the keys file is renamed last and is the commit marker, so a
reader (another process, a later run) never sees a partial chunk, and a killed encode keeps every finished chunk.
Concurrent writers may both add a text; lookups take either copy (the vectors are the same model output).

A warm call returns bit-identically what the cold call returned: vectors always go through float16 and are
re-normalised after, so a cached re-run reproduces a fresh run's rankings exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from negmine.cache import cache_dir

log = logging.getLogger("negmine")

KEY_DTYPE = np.dtype("V16")
CHUNK_ROWS = 4096  # texts encoded between two cache writes (the unit of resume for a killed encode)
# process-wide counters (texts given to a model / served from the cache): for logs, benchmarks and tests
COUNTERS = {"encoded": 0, "cached": 0}


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def text_keys(texts: Sequence[str]) -> np.ndarray:
    return np.frombuffer(b"".join(text_key(t) for t in texts), dtype=KEY_DTYPE)


@functools.lru_cache(maxsize=32)
def model_identity(model: str) -> tuple[str, str]:
    """(name, revision) that identify a model's weights independent of how it was named: the packaged default
    given by alias or by its path is the same model."""
    from negmine.models import PACKAGED_ALIASES, model_revision, resolve_model

    resolved = resolve_model(model)
    for alias in PACKAGED_ALIASES:
        if model.lower() == alias or resolve_model(alias) == resolved:
            return alias, model_revision(alias)
    if Path(resolved).is_dir():
        return "dir", model_revision(model)  # content hash of the directory: path independent
    return model, model_revision(model)


def cache_key(model: str, kind: str, prompt: str | None, prompt_name: str | None,
              max_seq_length: int | None, normalize: bool) -> dict[str, Any]:
    name, rev = model_identity(model)
    return {"model": name, "revision": rev, "kind": kind, "prompt": prompt, "prompt_name": prompt_name,
            "max_seq_length": max_seq_length, "normalize": bool(normalize), "format": 1}


@dataclass
class EmbeddingCache:
    """One cache directory (one key). Appends are atomic chunks; lookups are vectorised over ``V16`` keys."""

    path: Path

    @classmethod
    def for_key(cls, key: dict[str, Any], root: Path | None = None) -> EmbeddingCache:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        path = (root or cache_dir("embeddings")) / digest
        path.mkdir(parents=True, exist_ok=True)
        kf = path / "key.json"
        if not kf.is_file():
            _atomic_write(kf, json.dumps(key, indent=2, sort_keys=True).encode())
        return cls(path)

    def chunks(self) -> list[str]:
        """Committed chunk ids (those whose keys file exists), in a stable order."""
        return sorted(p.name[: -len(".keys.npy")] for p in self.path.glob("chunk-*.keys.npy"))

    def _load(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """(memmapped vector chunks, sorted keys, chunk index per sorted key, row per sorted key)."""
        vecs, keys, chunk_of, row_of = [], [], [], []
        for cid in self.chunks():
            k = np.load(self.path / f"{cid}.keys.npy")
            v = np.load(self.path / f"{cid}.f16.npy", mmap_mode="r")
            if len(k) != len(v):  # cannot happen with atomic writes; ignore a damaged chunk rather than crash
                log.warning("embedding cache: chunk %s is damaged (keys %d != rows %d), ignored", cid, len(k), len(v))
                continue
            vecs.append(v)
            keys.append(k.view(KEY_DTYPE).reshape(-1))
            chunk_of.append(np.full(len(k), len(vecs) - 1, dtype=np.int32))
            row_of.append(np.arange(len(k), dtype=np.int64))
        if not keys:
            empty = np.empty(0, dtype=KEY_DTYPE)
            return [], empty, np.empty(0, np.int32), np.empty(0, np.int64)
        allk = np.concatenate(keys)
        order = np.argsort(allk, kind="stable")
        return vecs, allk[order], np.concatenate(chunk_of)[order], np.concatenate(row_of)[order]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(found mask, float32 vectors for the found rows in order) for the query ``keys``."""
        vecs, sk, ch, rw = self._load()
        if len(sk) == 0:
            return np.zeros(len(keys), dtype=bool), None
        pos = np.searchsorted(sk, keys)
        pos_c = np.minimum(pos, len(sk) - 1)
        found = (pos < len(sk)) & (sk[pos_c] == keys)
        idx = pos_c[found]
        out = np.empty((len(idx), vecs[0].shape[1]), dtype=np.float32)
        chunk_ids, rows = ch[idx], rw[idx]
        for c in np.unique(chunk_ids):
            sel = np.nonzero(chunk_ids == c)[0]
            r = rows[sel]
            order = np.argsort(r)  # read each memmap in row order
            out[sel[order]] = vecs[c][r[order]]
        return found, out

    def append(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows as one new chunk: vectors first, keys (the commit marker) last, each via rename."""
        if len(keys) == 0:
            return
        cid = f"chunk-{uuid.uuid4().hex}"
        _atomic_save(self.path / f"{cid}.f16.npy", np.ascontiguousarray(vectors, dtype=np.float16))
        _atomic_save(self.path / f"{cid}.keys.npy", np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finish(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """float16 round trip (what the cache stores) then re-normalise: cold and warm paths give equal output."""
    out = np.asarray(vectors, dtype=np.float16).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, np.maximum(norms, 1e-12), out=out)
    return out


def _encode_fn(model: Any, kind: str):
    """The model's kind-specific encode (routes asymmetric models, applies their query/document prompt)."""
    fn = getattr(model, "encode_query" if kind == "query" else "encode_document", None)
    return fn if fn is not None else model.encode


def encode_texts(texts: Sequence[str], *, model: str, kind: Literal["query", "doc"], prompt: str | None = None,
                 prompt_name: str | None = None, max_seq_length: int | None = None, batch_size: int = 64,
                 device: str | None = None, normalize: bool = True, use_cache: bool = True,
                 desc: str | None = None) -> np.ndarray:
    """Embed ``texts`` (queries, or documents already formatted with ``negmine.models.doc_text``).

    Returns float32 ``(n, dim)``, L2-normalised when ``normalize``. Cached rows are read back; only missing
    (distinct) texts are encoded, longest first, and appended to the cache in chunks of ``CHUNK_ROWS``. The model is
    loaded only when something is missing, so a fully cached call costs no model load.
    """
    if kind not in ("query", "doc"):
        raise ValueError(f"kind must be 'query' or 'doc', not {kind!r}")
    n = len(texts)
    keys = text_keys(texts)
    cache = None
    found = np.zeros(n, dtype=bool)
    cached = None
    if use_cache and n:
        cache = EmbeddingCache.for_key(cache_key(model, kind, prompt, prompt_name, max_seq_length, normalize))
        found, cached = cache.lookup(keys)
    missing = np.nonzero(~found)[0]
    # distinct missing texts (a corpus may repeat a text): encode each once
    uniq_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
    todo = missing[first]
    COUNTERS["cached"] += int(found.sum())
    COUNTERS["encoded"] += len(todo)
    log.info("embed %s: %d texts, %d cached, %d to encode (%s)", desc or kind, n, int(found.sum()), len(todo),
             model)
    new = np.empty((len(todo), 0), dtype=np.float16)
    if len(todo):
        new = _encode_missing([texts[i] for i in todo], uniq_keys, model=model, kind=kind, prompt=prompt,
                              prompt_name=prompt_name, max_seq_length=max_seq_length, batch_size=batch_size,
                              device=device, normalize=normalize, cache=cache, desc=desc)
    dim = cached.shape[1] if cached is not None and len(cached) else new.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    if cached is not None and found.any():
        out[found] = cached
    if len(todo):
        out[missing] = new[inverse.reshape(-1)]
    return _finish(out, normalize)


def _encode_missing(texts: list[str], keys: np.ndarray, *, model: str, kind: str, prompt: str | None,
                    prompt_name: str | None, max_seq_length: int | None, batch_size: int, device: str | None,
                    normalize: bool, cache: EmbeddingCache | None, desc: str | None) -> np.ndarray:
    from negmine.models import load_bi_encoder
    from negmine.progress import tqdm

    st = load_bi_encoder(model, device, max_seq_length)
    encode = _encode_fn(st, kind)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: least padding
    out: np.ndarray | None = None
    step = max(batch_size * 4, 1)
    pending: list[int] = []
    with tqdm(total=len(texts), desc=f"embed {desc or kind}", unit="text", disable=None) as bar:
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            vec = encode([texts[i] for i in idx], prompt=prompt, prompt_name=prompt_name, batch_size=batch_size,
                         show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=normalize)
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float16)
            out[idx] = vec.astype(np.float16)
            pending.extend(idx)
            bar.update(len(idx))
            if cache is not None and (len(pending) >= CHUNK_ROWS or start + step >= len(order)):
                p = np.asarray(pending)
                cache.append(keys[p], out[p])
                pending = []
    assert out is not None
    return out  # raw float16: the caller finishes cached and new rows alike
