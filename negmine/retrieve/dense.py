"""Dense retrieval: sentence-transformers embeddings (through the embedding cache) + a faiss index.

* ``index: flat`` (default) is exact inner product (``IndexFlatIP``; cosine with normalised vectors);
  ``ivf`` (``IndexIVFFlat``: ``ivf_nlist``, ``ivf_nprobe``) and ``hnsw`` (``IndexHNSWFlat``: ``hnsw_m``,
  ``hnsw_ef_construction``, ``hnsw_ef_search``) trade exactness for speed on large corpora.
* When faiss reports GPU support and sees a GPU, flat and IVF indexes are copied to all GPUs; the log says which.
  faiss GPU search returns at most ``GPU_K_LIMIT`` neighbours, so a deeper search runs on the CPU copy of the
  index (same results, slower) instead of crashing.
* Documents are encoded once per run (when the searcher is opened); queries per shard.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from negmine import engine
from negmine.retrieve.params import RetrieverConfig
from negmine.retrieve.ranking import sort_hits

log = logging.getLogger("negmine")

GPU_K_LIMIT = 2048  # faiss GPU k-selection limit (k and nprobe)
SEARCH_BATCH = 4096  # queries per faiss call (bounds the distance buffers; progress granularity)
ADD_BLOCK = 131_072  # documents encoded and added to a flat index at a time (bounds the float32 vectors held)


def reserve(index: Any, n_total: int) -> bool:
    """Give a flat index's storage room for ``n_total`` vectors before they are added block by block. Its vector
    otherwise grows by doubling: the copy that crosses each power of two holds the old and the new buffer at once
    (at 1M x 384, 0.75 + 0.94 GiB at 655,360 vectors: the retrieve stage's peak), and a corpus just past a power of
    two gets a buffer of twice its size. Returns whether the room was made (an index without flat ``codes``, or a
    faiss without the accessor, is left alone)."""
    codes = getattr(index, "codes", None)
    if codes is None or not hasattr(codes, "resize") or n_total <= index.ntotal:
        return False
    keep = index.ntotal * index.code_size
    try:
        codes.resize(n_total * index.code_size)  # allocate (and touch) the whole buffer once...
        codes.resize(keep)                       # ...and shrink the size only: a vector keeps its capacity
    except Exception as e:  # noqa: BLE001 (a faiss build whose vector wrapper differs)
        log.debug("faiss: could not reserve %d vectors (%s)", n_total, e)
        return False
    return True


def build_index(vectors: np.ndarray, cfg: RetrieverConfig, n_total: int = 0) -> Any:
    """A CPU faiss index over ``vectors`` (float32, ``(n, dim)``) as ``cfg.index`` says; a flat index gets room
    for ``n_total`` vectors when more are to be added (:func:`reserve`)."""
    import faiss

    n, dim = vectors.shape
    xb = np.ascontiguousarray(vectors, dtype=np.float32)
    index: Any
    if cfg.index == "flat":
        index = faiss.IndexFlatIP(dim)
        reserve(index, n_total)
    elif cfg.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    else:
        # faiss wants >= 39 training points per centroid
        nlist = cfg.ivf_nlist or max(1, int(4 * math.sqrt(n)))
        nlist = max(1, min(nlist, n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(xb)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
        log.info("faiss: IVF index, nlist=%d, nprobe=%d", nlist, index.nprobe)
    index.add(xb)
    return index


def to_gpu(index: Any, cfg: RetrieverConfig) -> Any | None:
    """The index copied to all visible GPUs, or None (logged either way)."""
    import faiss

    ngpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if ngpu <= 0:
        log.info("faiss: CPU index (no GPU)")
        return None
    if cfg.index == "hnsw":
        log.info("faiss: CPU index (HNSW has no GPU implementation; %d GPU(s) unused)", ngpu)
        return None
    log.info("faiss: index on %d GPU(s)", ngpu)
    return faiss.index_cpu_to_all_gpus(index)


@dataclass
class FaissSearch:
    """Searches ``accel`` (the GPU copy) when present and ``k <= k_limit``, else the CPU index."""

    cpu: Any
    accel: Any | None = None
    k_limit: int = GPU_K_LIMIT
    gpu_ok: bool = False  # the index type has a GPU implementation (an engine's workers may copy it to theirs)

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (indices, scores) of each query vector, sorted (``sort_hits``)."""
        return sort_hits(*self.raw_search(xq, k), drop_nonpositive=False)

    def raw_search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's (indices, scores) as it returns them, one faiss call per ``SEARCH_BATCH`` queries. Rows are
        independent up to the last bit of a score, which depends on how many queries one call holds: the Ray engine
        searches the same blocks on its workers, so its hits are these, bit for bit."""
        from negmine.progress import tqdm

        k = min(k, self.cpu.ntotal)
        index = self.accel if self.accel is not None and k <= self.k_limit else self.cpu
        if self.accel is not None and index is self.cpu:
            log.warning("faiss: depth %d exceeds the GPU limit of %d, searching the CPU index", k, self.k_limit)
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        idx = np.empty((len(xq), k), dtype=np.int64)
        scores = np.empty((len(xq), k), dtype=np.float32)
        for s in tqdm(range(0, len(xq), SEARCH_BATCH), desc="faiss search", unit="batch", disable=None,
                      leave=False):
            scores[s:s + SEARCH_BATCH], idx[s:s + SEARCH_BATCH] = index.search(xq[s:s + SEARCH_BATCH], k)
        return idx, scores


def _blocks(doc_texts: Sequence[str] | Callable[[int], Iterable[list[str]]], size: int) -> Iterator[list[str]]:
    """The texts in order, ``size`` at a time (whatever the chunks of a chunk function: the blocks, so the encoder's
    batches, are the same as those of the whole list)."""
    if not callable(doc_texts):
        for s in range(0, len(doc_texts), size):
            yield list(doc_texts[s:s + size])
        return
    buf: list[str] = []
    for chunk in doc_texts(size):
        buf.extend(chunk)
        while len(buf) >= size:
            yield buf[:size]
            buf = buf[size:]
    if buf:
        yield buf


class DenseSearcher:
    """Encodes the corpus once (``doc_texts`` already formatted by ``negmine.models.doc_text``) and answers
    query batches."""

    def __init__(self, cfg: RetrieverConfig, doc_texts: Sequence[str] | Callable[[int], Iterable[list[str]]], *,
                 batch_size: int = 64, device: str | None = None, use_gpu: bool = True, n_docs: int | None = None):
        """``doc_texts``: the corpus' model strings, or a function giving them in order ``size`` at a time
        (``Corpus.text_chunks``), so that a flat index is built without ever holding every string. ``n_docs``: how
        many texts the function gives (the flat index reserves room for them; a sequence's own length otherwise)."""
        self.cfg, self.batch_size, self.device = cfg, batch_size, device
        cpu = None
        self.n_total = n_docs if n_docs is not None else (0 if callable(doc_texts) else len(doc_texts))
        self.n_docs = 0
        # a flat index grows block by block: neither the corpus' strings nor its float32 vectors (1.5 GB at 1M x 384)
        # are ever held whole, and never beside faiss' own copy; an IVF / HNSW index trains on every vector at once
        blocks = _blocks(doc_texts, ADD_BLOCK) if cfg.index == "flat" else \
            [[t for block in _blocks(doc_texts, ADD_BLOCK) for t in block]]
        for block in blocks:
            cpu = self._add(cpu, block)
        if cpu is None:  # an empty corpus
            cpu = self._add(None, [])
        self.faiss = FaissSearch(cpu, to_gpu(cpu, cfg) if use_gpu else None, gpu_ok=use_gpu and cfg.index != "hnsw")

    def _add(self, cpu: Any, texts: list[str] | Sequence[str]) -> Any:
        cfg = self.cfg
        vecs = engine.encode(texts, model=cfg.model, kind="doc", prompt=cfg.doc_prompt,
                             prompt_name=cfg.doc_prompt_name, max_seq_length=cfg.max_seq_length,
                             batch_size=self.batch_size, device=self.device, normalize=cfg.normalize, desc="corpus",
                             backend=cfg.encoder_backend)
        self.n_docs += len(texts)
        if cpu is None:
            return build_index(vecs, cfg, self.n_total)
        cpu.add(np.ascontiguousarray(vecs, dtype=np.float32))
        return cpu

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        c = self.cfg
        return engine.encode(queries, model=c.model, kind="query", prompt=c.query_prompt,
                            prompt_name=c.query_prompt_name, max_seq_length=c.max_seq_length,
                            batch_size=self.batch_size, device=self.device, normalize=c.normalize, desc="queries",
                            backend=c.encoder_backend)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return engine.search(self.faiss, self.encode_queries(queries), k)
