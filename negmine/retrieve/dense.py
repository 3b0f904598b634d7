"""Dense retrieval: sentence-transformers embeddings (through the embedding cache) + a faiss index.

* ``index: flat`` (default) is exact inner product (``IndexFlatIP``; cosine with normalised vectors);
  ``ivf`` (``IndexIVFFlat``: ``ivf_nlist``, ``ivf_nprobe``) and ``hnsw`` (``IndexHNSWFlat``: ``hnsw_m``,
  ``hnsw_ef_construction``, ``hnsw_ef_search``) trade exactness for speed on large corpora.
* When faiss reports GPU support and sees a GPU, flat and IVF indexes are copied to all GPUs; the log says which.
  faiss GPU search returns at most ``GPU_K_LIMIT`` neighbours, so a deeper search (depth + ``TIE_PAD`` beyond
  it) runs on the CPU copy of the index (same results, slower) instead of crashing.
* A flat search keeps, of documents tied at the depth cut, the lower corpus index (:func:`exact_knn`), as every
  other retriever does; where a flat index's vectors live is the engine's (``engine.flat_index``).
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
ADD_BLOCK = 65_536  # documents encoded and added to a flat index at a time (bounds the float32 vectors held; a
#                     multiple of 1,024, faiss's tiles, so the Ray engine's object-store blocks search bit for bit
#                     like one index; 131,072 until round 4: 2.93 GiB cold at 1M documents, 2.63 GiB with this)


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


TIE_PAD = 16  # neighbours asked of faiss beyond the depth, so that ties at the cut are settled by document index
CUT_ROWS = 256  # queries whose lists from every part are merged and sorted at a time (a row's result does not depend
#                 on it; it bounds the sort's temporaries: 365 MiB for 4,096 queries over 16 parts at once, 38 MiB)

Part = tuple[int, int, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]]  # (first row, rows, search)


def exact_knn(parts: Sequence[Part], xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (indices, scores) of each query over the documents of ``parts``, sorted by (score desc, index asc)
    (:func:`sort_hits`) *including at the cut*: of documents tied at the ``k``-th score the lower indices are kept.
    faiss alone keeps whichever its heap met first, so its list depends on how the documents are split; here a
    part is a ``(first row, rows, search)`` with ``search(xq, kk)`` faiss's ``(scores, local indices)``, asked for
    ``TIE_PAD`` more than ``k``; a query whose ``k``-th and ``k + TIE_PAD``-th scores are equal (the tie may go on
    past what faiss returned) is asked again with twice as many. Whether a query is asked again depends on the
    scores only, not on the split, so one index and the same vectors in blocks give the same rows to the last bit
    (the blocks starting at multiples of 1024, faiss's own tiles; see the Ray engine)."""
    n_total = sum(n for _, n, _ in parts)
    k = min(k, n_total)
    idx = np.full((len(xq), k), -1, dtype=np.int64)
    scores = np.zeros((len(xq), k), dtype=np.float32)
    todo = np.arange(len(xq))
    kk = k + TIE_PAD
    while len(todo) and k:
        q = xq if len(todo) == len(xq) else np.ascontiguousarray(xq[todo])
        got: list[tuple[int, np.ndarray, np.ndarray]] = []
        for first, n, search in parts:
            if n:
                s, i = search(q, min(kk, n))
                got.append((first, i, s))
        keep = min(kk, sum(pi.shape[1] for _, pi, _ in got))  # (kk in all, unless the parts hold fewer documents)
        i = np.empty((len(q), keep), dtype=np.int64)
        s = np.empty((len(q), keep), dtype=np.float32)
        for r in range(0, len(q), CUT_ROWS):  # the merge and sort, a few rows at a time
            rows = slice(r, r + CUT_ROWS)
            ci, cs = sort_hits(np.concatenate([np.where(pi[rows] >= 0, pi[rows] + first, -1) for first, pi, _ in got],
                                              axis=1),
                               np.concatenate([ps[rows] for _, _, ps in got], axis=1), drop_nonpositive=False)
            i[rows], s[rows] = ci[:, :keep], cs[:, :keep]
        again = (s[:, k - 1] == s[:, kk - 1]) & (i[:, kk - 1] >= 0) if n_total > kk else np.zeros(len(q), bool)
        done = ~again
        idx[todo[done]], scores[todo[done]] = i[done, :k], s[done, :k]
        todo, kk = todo[again], 2 * kk
    return idx, scores


@dataclass
class FaissSearch:
    """Searches ``accel`` (the GPU copy) when present and ``k <= k_limit``, else the CPU index. ``exact``: a flat
    index, whose lists are cut by :func:`exact_knn` (an approximate one's as faiss returns them)."""

    cpu: Any
    accel: Any | None = None
    k_limit: int = GPU_K_LIMIT
    gpu_ok: bool = False  # the index type has a GPU implementation (an engine's workers may copy it to theirs)
    exact: bool = True

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (indices, scores) of each query vector, sorted (``sort_hits``), one faiss call per
        ``SEARCH_BATCH`` queries: rows are independent up to the last bit of a score, which depends on how many
        queries one call holds, so an engine that searches elsewhere searches the same blocks."""
        from negmine.progress import tqdm

        k = min(k, self.cpu.ntotal)
        want = k + TIE_PAD if self.exact else k
        index = self.accel if self.accel is not None and want <= self.k_limit else self.cpu
        if self.accel is not None and index is self.cpu:
            log.warning("faiss: depth %d exceeds the GPU limit of %d, searching the CPU index", k, self.k_limit)
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        idx = np.empty((len(xq), k), dtype=np.int64)
        scores = np.empty((len(xq), k), dtype=np.float32)
        cpu, accel, limit = self.cpu, self.accel, self.k_limit

        def search(q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:  # (a tie re-asked past the GPU limit)
            return (accel if accel is not None and kk <= limit else cpu).search(q, kk)

        parts: list[Part] = [(0, self.cpu.ntotal, search)]
        for s in tqdm(range(0, len(xq), SEARCH_BATCH), desc="faiss search", unit="batch", disable=None,
                      leave=False):
            q = xq[s:s + SEARCH_BATCH]
            if self.exact:  # (sorted already)
                idx[s:s + SEARCH_BATCH], scores[s:s + SEARCH_BATCH] = exact_knn(parts, q, k)
            else:
                bs, bi = index.search(q, k)
                idx[s:s + SEARCH_BATCH], scores[s:s + SEARCH_BATCH] = sort_hits(bi, bs, drop_nonpositive=False)
        return idx, scores


class FlatIndex:
    """The local engine's flat index: vectors added block by block to one ``IndexFlatIP`` (room reserved for
    ``n_total``), searched by :class:`FaissSearch` (on the GPUs when ``use_gpu`` and faiss sees some)."""

    def __init__(self, cfg: RetrieverConfig, n_total: int, use_gpu: bool) -> None:
        self.cfg, self.n_total, self.use_gpu = cfg, n_total, use_gpu
        self.cpu: Any = None

    def add(self, vecs: np.ndarray) -> None:
        if self.cpu is None:
            self.cpu = build_index(vecs, self.cfg, self.n_total)
        else:
            self.cpu.add(np.ascontiguousarray(vecs, dtype=np.float32))

    def finish(self) -> FaissSearch:
        return FaissSearch(self.cpu, to_gpu(self.cpu, self.cfg) if self.use_gpu else None, gpu_ok=self.use_gpu)


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
        self.n_total = n_docs if n_docs is not None else (0 if callable(doc_texts) else len(doc_texts))
        self.n_docs = 0
        if cfg.index == "flat":
            # a flat index grows block by block: neither the corpus' strings nor its float32 vectors (1.5 GB at
            # 1M x 384) are ever held whole, and never beside the index's own copy; where the vectors go is the
            # engine's (this process' faiss index, or the Ray object store)
            flat = engine.flat_index(cfg, self.n_total, use_gpu)
            for block in _blocks(doc_texts, ADD_BLOCK):
                flat.add(self._encode(block))
            if not self.n_docs:  # an empty corpus
                flat.add(self._encode([]))
            self.faiss = flat.finish()
        else:  # an IVF / HNSW index trains on every vector at once
            cpu = build_index(self._encode([t for block in _blocks(doc_texts, ADD_BLOCK) for t in block]), cfg)
            self.faiss = FaissSearch(cpu, to_gpu(cpu, cfg) if use_gpu else None,
                                     gpu_ok=use_gpu and cfg.index != "hnsw", exact=False)

    def _encode(self, texts: list[str] | Sequence[str]) -> np.ndarray:
        cfg = self.cfg
        vecs = engine.encode(texts, model=cfg.model, kind="doc", prompt=cfg.doc_prompt,
                             prompt_name=cfg.doc_prompt_name, max_seq_length=cfg.max_seq_length,
                             batch_size=self.batch_size, device=self.device, normalize=cfg.normalize, desc="corpus",
                             backend=cfg.encoder_backend)
        self.n_docs += len(texts)
        return vecs

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        c = self.cfg
        return engine.encode(queries, model=c.model, kind="query", prompt=c.query_prompt,
                            prompt_name=c.query_prompt_name, max_seq_length=c.max_seq_length,
                            batch_size=self.batch_size, device=self.device, normalize=c.normalize, desc="queries",
                            backend=c.encoder_backend)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return engine.search(self.faiss, self.encode_queries(queries), k)
