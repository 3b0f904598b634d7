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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negmine.cache import cache_dir
from negmine.errors import InputError
from negmine.retrieve.params import RetrieverConfig
from negmine.retrieve.ranking import exact_topk, sort_hits, topk_rows

log = logging.getLogger("negmine")


def _stemmer(cfg: RetrieverConfig) -> Callable[[list[str]], list[str]] | None:
    if not cfg.stemmer:
        return None
    import Stemmer

    try:
        return Stemmer.Stemmer(cfg.stemmer).stemWords
    except KeyError:
        raise InputError(f"unknown stemmer language '{cfg.stemmer}' (PyStemmer: "
                         f"{', '.join(Stemmer.algorithms()[:8])}, ...)", "retrieve.stemmer") from None


def _stopwords(cfg: RetrieverConfig) -> list[str]:
    from bm25s.tokenization import _infer_stopwords

    try:
        return list(_infer_stopwords(cfg.stopwords or []))
    except ValueError as e:
        raise InputError(f"bad stopwords '{cfg.stopwords}': {e}", "retrieve.stopwords") from None


def tokenize(texts: Sequence[str], cfg: RetrieverConfig, ids: bool = False) -> Any:
    """bm25s tokens: lists of strings, or (``ids``) a ``bm25s.tokenization.Tokenized`` (ids + vocabulary, the
    fast input for indexing)."""
    import bm25s

    stem = _stemmer(cfg)
    try:
        return bm25s.tokenize(list(texts), stopwords=cfg.stopwords or [], stemmer=stem, return_ids=ids,
                              show_progress=_progress(len(texts)))
    except ValueError as e:
        raise InputError(f"bad stopwords '{cfg.stopwords}': {e}", "retrieve.stopwords") from None


TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s.tokenize's default, which :func:`tokenize` uses


def tokenize_chunks(chunks: Iterable[Sequence[str]], cfg: RetrieverConfig) -> Any:
    """``tokenize(all texts, cfg, ids=True)`` for texts that come in chunks, with its ids packed as
    :class:`CompactDocs`: the same token ids and vocabulary (same order), without a list of every text or a
    Python list of every document's ids at once (together most of the tokenising peak at a million documents).

    Words get ids in order of first occurrence over the whole corpus, as bm25s numbers them; the distinct words are
    stemmed at the end, all at once, and the stems numbered exactly as bm25s does (so the vocabulary is the one
    bm25s builds in this process), then the packed ids are mapped word → stem."""
    import re

    from bm25s.tokenization import Tokenized

    findall = re.compile(TOKEN_PATTERN).findall
    stop = frozenset(_stopwords(cfg))
    stem = _stemmer(cfg)
    words: dict[str, int] = {}
    add = words.setdefault
    parts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for chunk in chunks:
        flat: list[int] = []
        lens = np.empty(len(chunk), dtype=np.int64)
        for j, text in enumerate(chunk):
            doc = [add(w, len(words)) for w in findall(text.lower()) if w not in stop]
            lens[j] = len(doc)
            flat.extend(doc)
        parts.append(np.array(flat, dtype=np.int32))
        lengths.append(lens)
        del flat
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64), out=offsets[1:])
    del lengths
    if stem is None:
        vocab, lut = words, None
    else:
        unique = list(words)
        stems = stem(unique)
        # numbered like bm25s.tokenize: in the iteration order of the set of stems (built from the same list)
        vocab = {t: i for i, t in enumerate(set(stems))}
        lut = np.fromiter((vocab[s] for s in stems), dtype=np.int32, count=len(stems))
        del unique, stems
    ids = np.empty(int(offsets[-1]), dtype=np.int32)
    pos = 0
    while parts:  # each chunk's ids freed once copied
        part = parts.pop(0)
        ids[pos:pos + len(part)] = part if lut is None else lut[part]
        pos += len(part)
    return Tokenized(ids=CompactDocs.from_arrays(ids, offsets), vocab=vocab)


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
            return csc_by_column(data, rows, cols, shape[1])

        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True,
                                 leave_progress=False):
            if not isinstance(corpus_token_ids, CompactDocs) or self.csc_backend != "numpy":
                return super().build_index_from_ids(unique_token_ids, corpus_token_ids,
                                                    show_progress=show_progress, leave_progress=leave_progress)
            return _build_index(self, unique_token_ids, corpus_token_ids, show_progress, leave_progress)

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
    (one document's list at a time). Indexing with negmine's bm25s class consumes it (:meth:`release`)."""

    def __init__(self, docs: Sequence[Sequence[int]]):
        import itertools

        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        self.offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(self.offsets[-1]))

    @classmethod
    def from_arrays(cls, flat: np.ndarray, offsets: np.ndarray) -> CompactDocs:
        self = cls.__new__(cls)
        self.flat, self.offsets = flat, offsets
        return self

    def release(self) -> None:
        """Drop the arrays (an empty corpus from now on): the index build no longer needs them once it has each
        (document, token) score, and they would add to its peak."""
        self.flat = np.zeros(0, dtype=np.int32)
        self.offsets = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.flat[self.offsets[i]:self.offsets[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self.flat[self.offsets[i]:self.offsets[i + 1]].tolist()


CSC_CHUNK = 1 << 22  # entries placed per step of csc_by_column


def csc_by_column(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_cols: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC arrays (data, row indices, indptr) of the COO entries, ordered by column and, within a column, in input
    order (bm25s emits one entry per (document, token) in document order, so this is its (column, row) order).

    A counting sort placed ``CSC_CHUNK`` entries at a time: each entry's slot is its column's next free one, so the
    peak is the inputs and the two outputs, without a permutation of every entry (an int64 array, about 0.4 GB at
    1M documents) or a sort's buffer."""
    counts = np.bincount(cols, minlength=n_cols)
    indptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    out_data = np.empty(len(data), dtype=data.dtype)
    out_rows = np.empty(len(rows), dtype=rows.dtype)
    nxt = indptr[:-1].copy()  # each column's next free slot
    for s in range(0, len(cols), CSC_CHUNK):
        c = cols[s:s + CSC_CHUNK]
        order = np.argsort(c, kind="stable")
        cs = c[order]
        n_c = np.bincount(c, minlength=n_cols)
        first = np.cumsum(n_c) - n_c  # where each column's run starts in the chunk's sorted order
        slot = nxt[cs] + (np.arange(len(cs)) - first[cs])
        out_data[slot] = data[s:s + CSC_CHUNK][order]
        out_rows[slot] = rows[s:s + CSC_CHUNK][order]
        nxt += n_c
    return out_data, out_rows, indptr


def _build_index(model: Any, unique_token_ids: list[int], docs: CompactDocs, show_progress: bool,
                 leave_progress: bool) -> dict[str, Any]:
    """bm25s' ``build_index_from_ids`` for :class:`CompactDocs`, by its own scoring functions (so the same scores,
    bit for bit), with less held at its peak: the packed ids are released once every (document, token) score is
    computed, the COO arrays as soon as the CSC arrays exist, and the CSC is :func:`csc_by_column`."""
    from bm25s.scoring import (
        _build_idf_array,
        _build_nonoccurrence_array,
        _build_scores_and_indices_for_matrix,
        _calculate_doc_freqs,
        _select_idf_scorer,
        _select_tfc_scorer,
    )

    n_docs, n_vocab = len(docs), len(unique_token_ids)
    avg_doc_len = np.diff(docs.offsets).mean()  # bm25s: np.array(the documents' lengths).mean()
    doc_freqs = _calculate_doc_freqs(corpus_tokens=docs, unique_tokens=unique_token_ids,
                                     show_progress=show_progress, leave_progress=leave_progress)
    idf_fn = _select_idf_scorer(model.idf_method)
    model.nonoccurrence_array = None
    if model.method in model.methods_requiring_nonoccurrence:
        model.nonoccurrence_array = _build_nonoccurrence_array(
            doc_frequencies=doc_freqs, n_docs=n_docs, compute_idf_fn=idf_fn,
            calculate_tfc_fn=_select_tfc_scorer(model.method), l_d=avg_doc_len, l_avg=avg_doc_len, k1=model.k1,
            b=model.b, delta=model.delta, dtype=model.dtype)
    idf = _build_idf_array(doc_frequencies=doc_freqs, n_docs=n_docs, compute_idf_fn=idf_fn, dtype=model.dtype)
    data, rows, cols = _build_scores_and_indices_for_matrix(
        corpus_token_ids=docs, idf_array=idf, avg_doc_len=avg_doc_len, doc_frequencies=doc_freqs, k1=model.k1,
        b=model.b, delta=model.delta, show_progress=show_progress, leave_progress=leave_progress, dtype=model.dtype,
        int_dtype=model.int_dtype, method=model.method, nonoccurrence_array=model.nonoccurrence_array)
    del doc_freqs, idf
    docs.release()
    data, rows, indptr = csc_by_column(data, rows, cols, n_vocab)
    del cols
    return {"data": data.astype(model.dtype, copy=False), "indices": rows, "indptr": indptr, "num_docs": n_docs}


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
              doc_chunks: Callable[[], Iterable[Sequence[str]]]) -> BM25Searcher:
    """The searcher for ``cfg``: bm25s from the index cache (built and cached on a miss), or rank-bm25 (built
    in memory: it has no persistent form). ``doc_chunks`` (the corpus' texts, in order, a chunk at a time) is
    called only when an index must be built; bm25s tokenises the chunks as they come (:func:`tokenize_chunks`)."""
    if cfg.backend == "rank-bm25":
        log.info("bm25: building rank-bm25 BM25Okapi index (reference backend, slow)")
        return RankBm25Searcher(tokenize([t for c in doc_chunks() for t in c], cfg), cfg)
    path = cache_dir("bm25") / index_key(cfg, corpus_fingerprint)
    if (path / "params.index.json").is_file():
        try:
            retriever = _bm25s_class().load(path, mmap=True, show_progress=False)
            log.info("bm25: index loaded from cache %s", path.name[:12])
            return Bm25sSearcher(retriever, cfg)
        except Exception as e:  # a damaged cache entry is rebuilt, not fatal
            log.warning("bm25: cached index %s unreadable (%s), rebuilding", path.name[:12], e)
            shutil.rmtree(path, ignore_errors=True)
    tokens = tokenize_chunks(doc_chunks(), cfg)
    n = len(tokens.ids)
    log.info("bm25: indexing %d documents (bm25s %s, k1=%g, b=%g)", n, cfg.bm25_method, cfg.k1, cfg.b)
    retriever = _bm25s_class()(method=cfg.bm25_method, k1=cfg.k1, b=cfg.b, delta=cfg.delta)
    retriever.index(tokens, show_progress=_progress(n))  # consumes tokens.ids (CompactDocs.release)
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
