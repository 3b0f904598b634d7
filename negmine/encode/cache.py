"""The persistent, append-only embedding cache (see :mod:`negmine.encode.embed` for its layout and guarantees)."""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negmine.cache import cache_dir

log = logging.getLogger("negmine")

KEY_DTYPE = np.dtype("V16")


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def text_keys(texts: Sequence[str]) -> np.ndarray:
    return np.frombuffer(b"".join(text_key(t) for t in texts), dtype=KEY_DTYPE)


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

    def lookup(self, keys: np.ndarray, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray | None]:
        """(found mask, vectors for the found rows in order) for the query ``keys``; ``dtype`` float16 returns the
        stored values at half the memory (float32 holds them exactly)."""
        vecs, sk, ch, rw = self._load()
        if len(sk) == 0:
            return np.zeros(len(keys), dtype=bool), None
        pos = np.searchsorted(sk, keys)
        pos_c = np.minimum(pos, len(sk) - 1)
        found = (pos < len(sk)) & (sk[pos_c] == keys)
        idx = pos_c[found]
        out = np.empty((len(idx), vecs[0].shape[1]), dtype=dtype)
        chunk_ids, rows = ch[idx], rw[idx]
        for c in np.unique(chunk_ids):
            sel = np.nonzero(chunk_ids == c)[0]
            r = rows[sel]
            order = np.argsort(r)  # read each memmap in row order
            out[sel[order]] = vecs[c][r[order]]
            _release(vecs[c])
        return found, out

    def append(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows as one new chunk: vectors first, keys (the commit marker) last, each via rename."""
        if len(keys) == 0:
            return
        cid = f"chunk-{uuid.uuid4().hex}"
        from negmine.io.store import save_npy_atomic  # (here: the encoder alone does not import pyarrow)

        save_npy_atomic(self.path / f"{cid}.f16.npy", np.ascontiguousarray(vectors, dtype=np.float16))
        save_npy_atomic(self.path / f"{cid}.keys.npy", np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16))


def _release(arr: np.ndarray) -> None:
    """Drop a read memmap's pages from this process (they stay in the page cache): a lookup's rows are copied out,
    and at a million cached vectors the mapped file would otherwise stay resident (0.77 GB at 384 dimensions, counted
    in the process' RSS) for as long as the cache is open."""
    m = getattr(arr, "_mmap", None)
    if m is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a closed map, or a platform without madvise: only memory is at stake
            pass


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


