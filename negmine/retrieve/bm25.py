"""BM25 retrieval: bm25s (default, sparse matrix scoring) or rank-bm25's BM25Okapi (slow reference).

Both backends see the same tokens (bm25s' tokenizer: lower-case, ``\\w\\w+`` words, stopwords, PyStemmer stems), so
they differ only in scoring. The bm25s index is built once per (corpus artifact fingerprint, BM25 parameters) and
kept under ``cache_dir("bm25")``; a later run (or a re-run with another depth) loads it memory-mapped.

Search returns ``(doc_index, score)`` arrays of shape ``(n_queries, k)``, best first, ties broken by document order;
documents that match no query term (score 0) are not candidates and are returned as index -1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negmine.cache import cache_dir
from negmine.errors import InputError
from negmine.retrieve.params import RetrieverConfig
from negmine.retrieve.ranking import exact_topk, sort_hits, topk_rows

log = logging.getLogger("negmine")


def tokenize(texts: Sequence[str], cfg: RetrieverConfig, ids: bool = False) -> Any:
    """bm25s tokens: lists of strings, or (``ids``) a ``bm25s.tokenization.Tokenized`` (ids + vocabulary, the
    fast input for indexing)."""
    import bm25s

    stem = None
    if cfg.stemmer:
        import Stemmer

        try:
            stem = Stemmer.Stemmer(cfg.stemmer).stemWords
        except KeyError:
            raise InputError(f"unknown stemmer language '{cfg.stemmer}' (PyStemmer: "
                             f"{', '.join(Stemmer.algorithms()[:8])}, ...)", "retrieve.stemmer") from None
    try:
        return bm25s.tokenize(list(texts), stopwords=cfg.stopwords or [], stemmer=stem, return_ids=ids,
                              show_progress=_progress(len(texts)))
    except ValueError as e:
        raise InputError(f"bad stopwords '{cfg.stopwords}': {e}", "retrieve.stopwords") from None


def _progress(n: int) -> bool:
    import sys

    return n > 10_000 and sys.stderr.isatty()


class BM25Searcher:
    """A built BM25 index over ``n_docs`` documents."""

    n_docs: int

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def _bm25s_class() -> Any:
    """bm25s' ``BM25`` whose per-query top-k is :func:`~negmine.retrieve.ranking.exact_topk` instead of a
    partition of every document's score (most of a query's time at a million documents); scoring, query-token
    handling and threading stay bm25s'. Ties at the k-th score are cut by document order, as :func:`sort_hits`
    orders them."""
    import bm25s

    class BM25(bm25s.BM25):
        @staticmethod
        def _np_csc(data, rows, cols, shape):
            # bm25s emits one entry per (document, token) in document order, so a stable sort by column alone is
            # its (column, row) order, without the three int64 temporaries of its packed-key sort (about 1 GB at
            # 1M documents, the peak of the build)
            order = np.argsort(cols, kind="stable")
            indptr = np.zeros(shape[1] + 1, dtype=np.int64)
            np.cumsum(np.bincount(cols, minlength=shape[1]), out=indptr[1:])
            return data[order], rows[order], indptr

        def _get_top_k_results(self, query_tokens_single, k=1000, backend="auto", sorted=False,
                               weight_mask=None):
            if len(query_tokens_single) == 0:
                scores = np.zeros(self.scores["num_docs"], dtype=self.dtype)
            else:
                scores = self.get_scores(query_tokens_single, weight_mask=weight_mask)
            idx = exact_topk(scores, k)
            return scores[idx], idx

    return BM25


class Bm25sSearcher(BM25Searcher):
    def __init__(self, retriever: Any, cfg: RetrieverConfig):
        self.retriever, self.cfg = retriever, cfg
        self.n_docs = int(retriever.scores["num_docs"])

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = tokenize(queries, self.cfg)
        k = min(k, self.n_docs)
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=_progress(len(queries)),
                                               n_threads=(os.cpu_count() or 1) if len(queries) >= 1000 else 0)
        return sort_hits(docs, scores)


class RankBm25Searcher(BM25Searcher):
    def __init__(self, doc_tokens: list[list[str]], cfg: RetrieverConfig):
        from rank_bm25 import BM25Okapi

        self.cfg = cfg
        self.n_docs = len(doc_tokens)
        # BM25Okapi divides by zero on an all-empty corpus and skips nothing: give empty docs a placeholder token
        self.okapi = BM25Okapi([t or ["\x00"] for t in doc_tokens], k1=cfg.k1, b=cfg.b)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from negmine.progress import tqdm

        tokens = tokenize(queries, self.cfg)
        k = min(k, self.n_docs)
        idx = np.full((len(tokens), k), -1, dtype=np.int64)
        scores = np.zeros((len(tokens), k), dtype=np.float32)
        for i, q in enumerate(tqdm(tokens, desc="rank-bm25", unit="query", disable=None)):
            if q:
                idx[i], scores[i] = (a[0] for a in topk_rows(self.okapi.get_scores(q)[None, :], k))
        return idx, scores


class CompactDocs:
    """Documents' token ids as one int32 array and offsets (instead of a Python list of int lists: about a fifth
    of the memory at a million documents). bm25s reads it as its list of token-id lists: ``len`` and iteration
    (one document's list at a time)."""

    def __init__(self, docs: Sequence[Sequence[int]]):
        import itertools

        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        self.offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.flat[self.offsets[i]:self.offsets[i + 1]].tolist()

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self.flat[self.offsets[i]:self.offsets[i + 1]].tolist()


def compact_tokens(tokens: Any) -> Any:
    """A ``bm25s.tokenization.Tokenized`` whose ids are :class:`CompactDocs`; the lists of ``tokens`` are emptied
    as they are packed, so their memory is returned before indexing."""
    from bm25s.tokenization import Tokenized

    docs = CompactDocs(tokens.ids)
    tokens.ids.clear()
    return Tokenized(ids=docs, vocab=tokens.vocab)


def index_key(cfg: RetrieverConfig, corpus_fingerprint: str) -> str:
    import bm25s

    params = {k: getattr(cfg, k) for k in ("bm25_method", "k1", "b", "delta", "stopwords", "stemmer")}
    key = {"corpus": corpus_fingerprint, "params": params, "bm25s": bm25s.__version__, "doc_text": 1}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def open_bm25(cfg: RetrieverConfig, corpus_fingerprint: str,
              doc_texts: Callable[[], Sequence[str]]) -> BM25Searcher:
    """The searcher for ``cfg``: bm25s from the index cache (built and cached on a miss), or rank-bm25 (built
    in memory: it has no persistent form). ``doc_texts`` is called only when an index must be built."""
    if cfg.backend == "rank-bm25":
        log.info("bm25: building rank-bm25 BM25Okapi index (reference backend, slow)")
        return RankBm25Searcher(tokenize(doc_texts(), cfg), cfg)
    path = cache_dir("bm25") / index_key(cfg, corpus_fingerprint)
    if (path / "params.index.json").is_file():
        try:
            retriever = _bm25s_class().load(path, mmap=True, show_progress=False)
            log.info("bm25: index loaded from cache %s", path.name[:12])
            return Bm25sSearcher(retriever, cfg)
        except Exception as e:  # a damaged cache entry is rebuilt, not fatal
            log.warning("bm25: cached index %s unreadable (%s), rebuilding", path.name[:12], e)
            shutil.rmtree(path, ignore_errors=True)
    texts = doc_texts()
    log.info("bm25: indexing %d documents (bm25s %s, k1=%g, b=%g)", len(texts), cfg.bm25_method, cfg.k1, cfg.b)
    retriever = _bm25s_class()(method=cfg.bm25_method, k1=cfg.k1, b=cfg.b, delta=cfg.delta)
    n = len(texts)
    tokens = tokenize(texts, cfg, ids=True)
    del texts  # the strings are not needed once tokenised: they would add to the peak while indexing
    retriever.index(compact_tokens(tokens), show_progress=_progress(n))
    del tokens
    _save_atomic(retriever, path)
    return Bm25sSearcher(retriever, cfg)


def _save_atomic(retriever: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    retriever.save(tmp, show_progress=False)
    try:
        os.replace(tmp, path)
    except OSError:  # another process cached the same index meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
