"""Text embeddings with a persistent, append-only embedding cache.

``encode_texts`` is the one entry point for dense vectors (retrieve and score both use it), so a text embedded by
one stage or run is free for the next.

Cache layout: ``cache_dir("embeddings")/<key>/`` where ``<key>`` hashes (model identity, model revision, kind,
prompt / prompt_name, max_seq_length, normalize, and for a backend other than torch fp32 the concrete backend, its
quantisation and inference precision: vectors of different backends never mix); ``key.json`` says what the key is. Rows are keyed by the
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
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from negmine.encode.cache import EmbeddingCache, text_keys

log = logging.getLogger("negmine")

CHUNK_ROWS = 4096  # texts encoded between two cache writes (the unit of resume for a killed encode)
# process-wide counters (texts given to a model / served from the cache): for logs, benchmarks and tests
COUNTERS = {"encoded": 0, "cached": 0}


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
              max_seq_length: int | None, normalize: bool, backend: str = "torch") -> dict[str, Any]:
    """``backend`` is a concrete backend (``negmine.encode.backends.resolve_backend``); torch fp32 adds nothing to
    the key, so caches written before backends existed stay valid."""
    from negmine.encode.backends import backend_identity

    if backend == "auto":
        raise ValueError("cache_key takes a concrete backend, not 'auto'")
    name, rev = model_identity(model)
    return {"model": name, "revision": rev, "kind": kind, "prompt": prompt, "prompt_name": prompt_name,
            "max_seq_length": max_seq_length, "normalize": bool(normalize), "format": 1} | backend_identity(backend)


FINISH_ROWS = 65_536  # rows finished at a time (in place: no second full-size copy of a large block's vectors)


def _finish(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """float16 round trip (what the cache stores) then re-normalise: cold and warm paths give equal output.
    A float32 array is finished in place (the caller's own buffer), in row blocks (a row's result does not depend
    on the blocking)."""
    out = np.asarray(vectors, dtype=np.float32)
    for s in range(0, len(out), FINISH_ROWS):
        block = out[s:s + FINISH_ROWS]
        block[...] = block.astype(np.float16)
        if normalize:
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            np.divide(block, np.maximum(norms, 1e-12), out=block)
    return out


def _encode_fn(model: Any, kind: str):
    """The model's kind-specific encode (routes asymmetric models, applies their query/document prompt)."""
    fn = getattr(model, "encode_query" if kind == "query" else "encode_document", None)
    return fn if fn is not None else model.encode


def encode_texts(texts: Sequence[str], *, model: str, kind: Literal["query", "doc"], prompt: str | None = None,
                 prompt_name: str | None = None, max_seq_length: int | None = None, batch_size: int = 64,
                 device: str | None = None, normalize: bool = True, use_cache: bool = True,
                 desc: str | None = None, backend: str = "auto") -> np.ndarray:
    """Embed ``texts`` (queries, or documents already formatted with ``negmine.models.doc_text``).

    Returns float32 ``(n, dim)``, L2-normalised when ``normalize``. Cached rows are read back; only missing
    (distinct) texts are encoded, longest first, and appended to the cache in chunks of ``CHUNK_ROWS``. The model is
    loaded only when something is missing, so a fully cached call costs no model load. ``backend``: see
    :mod:`negmine.encode.backends` (``auto`` resolves once per process from the stored export and quality gate).
    """
    from negmine.encode.backends import resolve_backend

    if kind not in ("query", "doc"):
        raise ValueError(f"kind must be 'query' or 'doc', not {kind!r}")
    backend = resolve_backend(backend, model, device, "bi")
    n = len(texts)
    keys = text_keys(texts)
    cache = None
    found = np.zeros(n, dtype=bool)
    cached = None
    if use_cache and n:
        cache = EmbeddingCache.for_key(cache_key(model, kind, prompt, prompt_name, max_seq_length, normalize,
                                                   backend))
        found, cached = cache.lookup(keys, dtype=np.float16)  # what is stored: half the memory of float32
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
                              device=device, normalize=normalize, cache=cache, desc=desc, backend=backend)
    dim = cached.shape[1] if cached is not None and len(cached) else new.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    if cached is not None and found.any():
        out[found] = cached
    del cached
    inverse = inverse.reshape(-1)
    for s in range(0, len(missing), FINISH_ROWS):  # row blocks: no full-size float16 temporary
        out[missing[s:s + FINISH_ROWS]] = new[inverse[s:s + FINISH_ROWS]]
    del new
    return _finish(out, normalize)


def _encode_missing(texts: list[str], keys: np.ndarray, *, model: str, kind: str, prompt: str | None,
                    prompt_name: str | None, max_seq_length: int | None, batch_size: int, device: str | None,
                    normalize: bool, cache: EmbeddingCache | None, desc: str | None,
                    backend: str = "torch") -> np.ndarray:
    from negmine.encode.models import load_bi_encoder
    from negmine.progress import tqdm

    if backend in ("torch", "torch-fp16"):
        st = load_bi_encoder(model, device, max_seq_length, fp16=backend == "torch-fp16")
        encode = _encode_fn(st, kind)
    else:
        from negmine.encode.backends import load_runner

        runner = load_runner(model, backend, "bi", max_seq_length)
        log.info("encoder: %s via %s", model, backend)

        def encode(batch: list[str], *, prompt: str | None, prompt_name: str | None, batch_size: int,
                   normalize_embeddings: bool, **_: Any) -> np.ndarray:
            return runner.encode(batch, kind=kind, prompt=prompt, prompt_name=prompt_name, batch_size=batch_size,
                                 normalize=normalize_embeddings)
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
