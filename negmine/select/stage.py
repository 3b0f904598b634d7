"""`negmine select`: scores → ``RUN/negatives`` (positive-aware filters, near-duplicate removal, sampling).

Tables of the artifact (stage ``select``):

* ``negatives`` (main): the kept negatives, per query hardest first (filled rows last);
* ``dropped``: every other scored candidate with the reason it was not kept (first failing rule wins);
* ``positives``: each query's positives with their teacher scores (what export pairs with the negatives);
* ``queries``: one summary row per query (reference s+, candidates, eligible, kept, short, dropped).

Every scored row of a query ends up in exactly one of ``negatives``, ``dropped`` (reason ``positive`` for a
retrieved positive) or ``positives`` (a positive the retriever did not return), so each decision is explainable.

Work is sharded by query: a unit is one scores shard (queries never span units; if an upstream artifact has a
query in several shards those shards are processed together), split into blocks of ``shard_queries`` queries.
The selection itself is vectorised over a whole block (numpy); only near-duplicate detection loops over the
(candidate, positive) pairs that the shingle-set size bound cannot rule out.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.errors import InputError
from negmine.io import schemas
from negmine.io.corpus import CorpusRows
from negmine.io.store import Artifact, StageResult, StageWriter, check_inputs, hash_json, run_shards
from negmine.progress import tqdm
from negmine.select.core import doc_codes, select_rows, table_rows
from negmine.select.dedup import duplicate_rows
from negmine.select.dedup_index import CorpusDedup
from negmine.select.params import SelectParams
from negmine.select.rules import NOT_SAMPLED, reasons
from negmine.select.sampling import sort_order

log = logging.getLogger("negmine")

STAGE = "select"
QUERY_SHORT = "query_short"  # candidates of a query removed by short_policy "drop"
TABLES = {"negatives": schemas.NEGATIVES, "dropped": schemas.DROPPED, "positives": schemas.SELECT_POSITIVES,
          "queries": schemas.SELECT_QUERIES}
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
_SCORE_COLS = ["query_id", "doc_id", "rank", "retriever_score", "teacher_score", "is_positive"]
_KEY_SEP = "\x1f"
DEDUP_VERSION = 1  # bump when duplicate detection changes (invalidates reuse of a previous run's duplicates)
_MAX_QUANTILE_SAMPLE = 200_000  # per block and category: bounded memory for the summary quantiles


# ----------------------------------------------------------------------------------------------------------------
# inputs


def read_parquet(paths: list[Path], columns: list[str] | None = None) -> pa.Table:
    """Read and concatenate Parquet files (``ParquetFile.read``: avoids importing pyarrow.dataset, which
    ``pq.read_table`` does and which costs ~0.5 s of a select re-run)."""
    import pyarrow.parquet as pq

    parts = [pq.ParquetFile(p).read(columns=columns) for p in paths]
    if not parts:
        raise ValueError("no Parquet files to read")
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _pair_keys(q: pa.Array, d: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(q, d, _KEY_SEP)


class _Ingest:
    """Positives (all in memory: small) and the corpus near-duplicate sketches (built or loaded on first use)."""

    def __init__(self, art: Artifact, params: SelectParams) -> None:
        self.art = art
        self.params = params
        pos = read_parquet(art.shard_paths("positives"), ["query_id", "doc_id", "grade"])
        self.positives = pos
        self.query_order = read_parquet(art.shard_paths("queries"), ["query_id"])["query_id"].to_pylist()
        self._dedup: CorpusDedup | None = None
        self._corpus: CorpusRows | None = None
        self._pos_rows: np.ndarray | None = None

    @functools.cached_property
    def pos_keys(self) -> pa.Array:
        """``query_id \x1f doc_id`` of every ingest positive: only a block joined by string keys needs them."""
        pos = self.positives
        return _pair_keys(pos["query_id"], pos["doc_id"]).combine_chunks() if pos.num_rows else \
            pa.array([], pa.string())

    def corpus(self) -> CorpusRows:
        """The corpus' doc ids by row (rows replace doc id strings in the block's joins and tie-breaks)."""
        if self._corpus is None:
            self._corpus = CorpusRows.read(self.art)
        return self._corpus

    def positive_rows(self) -> np.ndarray:
        """Corpus row of every ingest positive (aligned with ``positives``; -1 outside the corpus), looked up once."""
        if self._pos_rows is None:
            self._pos_rows = self.corpus().rows(self.positives["doc_id"].combine_chunks().cast(pa.string())) \
                if self.positives.num_rows else np.zeros(0, dtype=np.int64)
        return self._pos_rows

    def dedup_index(self) -> CorpusDedup:
        """The corpus' near-duplicate sketches (negmine.select.dedup_index: built once per corpus, cached)."""
        if self._dedup is None:
            self._dedup = CorpusDedup(self.art, self.params.dedup_shingle, self.corpus())
        return self._dedup


def _query_column(paths: list[Path]) -> pa.ChunkedArray:
    """The ``query_id`` column of scores shards, read as a dictionary column (Parquet stores it as one: reading
    the codes is ~20x cheaper than decoding a million strings)."""
    import pyarrow.parquet as pq

    return pa.chunked_array([c for p in paths for c in
                             pq.ParquetFile(p, read_dictionary=["query_id"]).read(columns=["query_id"])["query_id"]
                             .chunks], pa.dictionary(pa.int32(), pa.string()))


def _query_codes(col: pa.ChunkedArray, where: Path | str = "scores") -> tuple[list[str], np.ndarray]:
    """The distinct values of a dictionary ``query_id`` column in order of first appearance, and each row's index
    into them (what ``pc.dictionary_encode`` of the strings gives, from the codes). ``where``: the shard(s) read,
    named by the error about a row without a query id."""
    if not len(col):
        return [], np.zeros(0, dtype=np.int64)
    arr = col.unify_dictionaries().combine_chunks() if col.num_chunks > 1 else col.chunk(0)
    if arr.null_count:  # (the SCORES schema does not allow it: a damaged or hand-made artifact)
        raise InputError("a row without query_id", where, row=pc.index(pc.is_null(arr), True).as_py() + 1)
    codes = arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    seen = np.maximum.accumulate(codes)
    if seen[0] == 0 and seen[-1] == len(arr.dictionary) - 1 and bool((np.diff(seen) <= 1).all()):
        # every entry used, each first seen after the one before it (a Parquet dictionary of one row group is
        # built in order of first appearance): the codes are the answer
        return arr.dictionary.cast(pa.string()).to_pylist(), codes
    used, first = np.unique(codes, return_index=True)
    used = used[np.argsort(first, kind="stable")]  # dictionary entries in order of first appearance
    remap = np.full(len(arr.dictionary), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return arr.dictionary.take(pa.array(used)).cast(pa.string()).to_pylist(), remap[codes]


def _units(scores: Artifact) -> list[list[Path]]:
    """Groups of scores shards to process together: one shard each unless a query spans shards."""
    paths = scores.shard_paths()
    if len(paths) <= 1:
        return [paths]

    owner: dict[str, int] = {}
    parent = list(range(len(paths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, p in enumerate(paths):
        for q in _query_codes(_query_column([p]), p)[0]:
            j = owner.setdefault(q, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[Path]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(find(i), []).append(p)
    out = sorted(groups.values(), key=lambda g: paths.index(g[0]))
    if len(out) < len(paths):
        log.warning("select: some queries span several scores shards; %d shards processed as %d units",
                    len(paths), len(out))
    return out


def _blocks(scores: Artifact, ingest: _Ingest, shard_queries: int
            ) -> Iterator[tuple[list[str], pa.Table, np.ndarray]]:
    """(query ids, their scored rows, each row's index into the query ids) in blocks of at most ``shard_queries``
    queries, in scores order; ingest queries that have no scored row at all come last (their block has no rows).

    The rows come without their id strings where the block has them otherwise: ``query_id`` is the block's query
    ids at each row's index, and ``doc_id`` the corpus' id at the row's ``corpus_row`` (read only for scores
    without it, or with a document outside the corpus). Decoding those two columns' ten million strings was a fifth
    of a select run at 1M documents × 100k queries."""

    import pyarrow.parquet as pq

    seen: set[str] = set()
    values = [c for c in _SCORE_COLS if c not in ("query_id", "doc_id")]
    for unit in _units(scores):
        has_rows = "corpus_row" in pq.ParquetFile(unit[0]).schema_arrow.names  # scores written before it: no
        t = read_parquet(unit, [*values, "corpus_row"] if has_rows else [*values, "doc_id"])
        if has_rows and t["corpus_row"].null_count:  # a document outside the corpus: the doc ids are needed
            t = t.append_column("doc_id", read_parquet(unit, ["doc_id"])["doc_id"])
        qids, idx = _query_codes(_query_column(unit), unit[0] if len(unit) == 1 else scores.path)
        # the score stage writes each query's rows together, so codes (by first appearance) are already sorted
        # and a block is a slice; otherwise the rows are regrouped by one stable sort
        contiguous = bool(len(idx) < 2 or (idx[1:] >= idx[:-1]).all())
        order = None if contiguous else np.argsort(idx, kind="stable")
        sorted_idx = idx if order is None else idx[order]
        starts = np.searchsorted(sorted_idx, np.arange(len(qids) + 1))
        seen.update(qids)
        for s in range(0, len(qids), shard_queries):
            e = min(s + shard_queries, len(qids))
            a, b = int(starts[s]), int(starts[e])
            rows = t.slice(a, b - a) if order is None else t.take(pa.array(order[a:b]))
            yield qids[s:e], rows, sorted_idx[a:b] - s
    rest = [q for q in ingest.query_order if q not in seen]
    empty = pa.schema([(c, schemas.SCORES.field(c).type) for c in _SCORE_COLS]).empty_table()
    for s in range(0, len(rest), shard_queries):
        yield rest[s:s + shard_queries], empty, np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# one block


def _names_at(names: np.ndarray, idx: np.ndarray) -> pa.Array:
    """The string column ``names[idx]`` (None = null), built by one Arrow take instead of a Python list per row."""
    return pc.take(pa.array(names.tolist(), pa.string()), pa.array(np.asarray(idx, dtype=np.int64)))


def _f32(a: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(a, dtype=np.float32), pa.float32(), mask=np.isnan(a))


def _pos_sim(ingest: _Ingest, params: SelectParams, spec: dict[str, Any] | None, d_arr: pa.Array,
             group: np.ndarray, is_pos: np.ndarray, needed: bool = False) -> np.ndarray | None:
    """Candidate-positive document similarity for ``select.max_pos_sim`` (negmine.select.signals) or a
    calibration's features (``needed``), else None."""
    if (params.max_pos_sim is None and not needed) or not len(group):
        return None
    from negmine.select.signals import block_pos_sim, corpus_texts, embedding_spec

    doc_ids = d_arr.to_pylist()
    return block_pos_sim(corpus_texts(ingest.art, set(doc_ids)), doc_ids, group, is_pos,
                         spec or embedding_spec({}, params.pos_sim_model, params.encoder_backend), params.batch_size, params.device)


def _lex_rank(ingest: _Ingest, params: SelectParams, lexical: Any, q_arr: pa.Array,
              d_arr: pa.Array, depth: int | None = None) -> np.ndarray | None:
    """BM25 rank of every row's doc for its query (0 = not in BM25's top ``depth``, default
    ``max_lexical_rank``), else None."""
    depth = depth or params.max_lexical_rank
    if depth is None:
        return None
    if lexical is None:
        from negmine.select.signals import LexicalRanker

        lexical = LexicalRanker(ingest.art)
    return lexical.ranks(q_arr.to_pylist(), d_arr.to_pylist(), depth)


def _fn_prob(cal: Any, params: SelectParams, arrays: Any, rows: pa.Table, pos_sim: np.ndarray | None,
             lex_rank: np.ndarray | None, keys: pa.Array | None = None) -> np.ndarray | None:
    """The calibrated p(false negative) of every row (negmine.calibrate), else None."""
    if cal is None:
        return None
    from negmine.calibrate.features import signals_of
    from negmine.calibrate.stage import fn_probabilities

    rs = rows["retriever_score"].to_numpy(zero_copy_only=False).astype(np.float64) if rows.num_rows else np.zeros(0)
    return fn_probabilities(cal, signals_of(arrays, rs, params.pos_ref, pos_sim, lex_rank), keys)


def _duplicates(ingest: _Ingest, params: SelectParams, keys: Any, group: np.ndarray, is_pos: np.ndarray,
                doc_row: np.ndarray, p_row: np.ndarray, p_group: np.ndarray,
                known_dups: dict[str, tuple[str, float]] | None) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Per row: near-duplicate of one of its query's positives (corpus rows ``p_row`` of queries ``p_group``),
    which positive, and the similarity (from ``known_dups`` when a previous run found them, else computed from the
    documents' sketches). ``keys()`` gives the rows' ``query_id \x1f doc_id`` keys."""
    dup_of: list[str | None] = [None] * len(group)
    sim = np.full(len(group), np.nan)
    is_dup = np.zeros(len(group), dtype=bool)
    if params.dedup and len(group) and known_dups is not None:
        for i, k in enumerate(keys().to_pylist()):
            hit = known_dups.get(k)
            if hit is not None and not is_pos[i]:
                is_dup[i] = True
                dup_of[i], sim[i] = hit
    elif params.dedup and len(group):
        index = ingest.dedup_index()
        c_idx = np.flatnonzero(~is_pos)
        dup, of, s = duplicate_rows(doc_row[c_idx], group[c_idx], p_row, p_group,
                                    index.sketches, index.shingles_of, params.dedup_threshold, index.doc_order())
        is_dup[c_idx] = dup
        sim[c_idx] = s
        hits = np.flatnonzero(dup)
        for i, o in zip(c_idx[hits].tolist(), index.corpus.ids_at(of[hits]).to_pylist(), strict=True):
            dup_of[i] = o
    return is_dup, dup_of, sim


def _is_positive_pair(group: np.ndarray, doc_row: np.ndarray, p_group: np.ndarray, p_row: np.ndarray,
                      n_docs: int) -> np.ndarray:
    """Per row: whether (its query, its document) is one of the (query, positive) pairs; by corpus row (>= 0).
    The few positives' keys are sorted and the rows' keys searched in them (``np.isin`` would sort both)."""
    if not len(p_row) or not len(group):
        return np.zeros(len(group), dtype=bool)
    keys = group * np.int64(n_docs) + doc_row
    pos = np.sort(p_group * np.int64(n_docs) + p_row)
    at = np.minimum(np.searchsorted(pos, keys), len(pos) - 1)
    return pos[at] == keys


def select_block(qids: list[str], rows: pa.Table, ingest: _Ingest, params: SelectParams,
                 known_dups: dict[str, tuple[str, float]] | None = None,
                 pos_sim_spec: dict[str, Any] | None = None, lexical: Any = None,
                 cal: Any = None, group: np.ndarray | None = None) -> dict[str, pa.Table]:
    """Select the negatives of one block of queries; returns the four output tables. ``known_dups`` maps
    ``query_id \x1f doc_id`` of every duplicate to (positive, similarity) when a previous run already found
    them for the same inputs and dedup settings (None = compute). ``lexical``: a signals.LexicalRanker when
    ``select.max_lexical_rank`` is set or a calibration needs BM25 ranks (opened once per stage run); ``cal``: the
    calibration to apply (negmine.calibrate.stage.Calibration) or None. ``group``: each row's index into ``qids``
    (from the block reader; looked up when None).

    Documents are joined by their corpus row (one lookup of the block's doc ids): the row gives the tie-break
    order of the ids (their rank in the corpus' string order), the positive test and the near-duplicate sketches.
    A block with a document that is not in the corpus falls back to the string keys for those."""
    n_q = len(qids)
    qpos = {q: i for i, q in enumerate(qids)}
    want = pa.array(qids, pa.string())
    corpus = ingest.corpus()
    if "query_id" in rows.column_names or group is None:
        q_arr = rows["query_id"].combine_chunks() if rows.num_rows else pa.array([], pa.string())
    else:  # rows from the block reader, without the strings
        q_arr = want.take(pa.array(np.asarray(group, dtype=np.int64)))
    if "doc_id" in rows.column_names:
        d_arr = rows["doc_id"].combine_chunks() if rows.num_rows else pa.array([], pa.string())
    else:
        d_arr = corpus.ids_at(rows["corpus_row"].to_numpy())
    keys = functools.cache(lambda: _pair_keys(q_arr, d_arr))  # string keys, built only where a path needs them

    # positives of the block (ingest positives + any row flagged positive), with their scores
    mine = pc.is_in(ingest.positives["query_id"], value_set=want)
    ipos = ingest.positives.filter(mine)
    p_group = np.fromiter((qpos[q] for q in ipos["query_id"].to_pylist()), dtype=np.int64, count=ipos.num_rows)
    p_row = ingest.positive_rows()[mine.to_numpy(zero_copy_only=False).astype(bool)] if ipos.num_rows else \
        np.zeros(0, dtype=np.int64)
    if "corpus_row" in rows.column_names and rows["corpus_row"].null_count == 0:  # the score stage's lookup
        doc_row = rows["corpus_row"].to_numpy().astype(np.int64)
    else:
        doc_row = corpus.rows(d_arr) if rows.num_rows else np.zeros(0, dtype=np.int64)
    by_row = bool((doc_row >= 0).all() and (p_row >= 0).all())
    arrays = table_rows(rows, qids, group, corpus.doc_order()[doc_row] if by_row else doc_codes(d_arr))
    group, scores, ranks, is_pos, doc_code = (arrays.group, arrays.scores, arrays.ranks, arrays.is_positive,
                                              arrays.doc_code)
    if by_row:
        is_pos |= _is_positive_pair(group, doc_row, p_group, p_row, len(corpus.ids))
    else:
        is_pos |= pc.is_in(keys(), value_set=ingest.pos_keys).to_numpy(zero_copy_only=False).astype(bool)
    is_dup, dup_of, sim = _duplicates(ingest, params, keys, group, is_pos, doc_row, p_row, p_group, known_dups)
    needs = set() if cal is None else cal.needs
    pos_sim = _pos_sim(ingest, params, pos_sim_spec, d_arr, group, is_pos, "pos_sim" in needs)
    lex_rank = _lex_rank(ingest, params, lexical, q_arr, d_arr,
                         max(params.max_lexical_rank or 0, cal.lexical_depth) if "lex_rank" in needs else None)
    fn_prob = _fn_prob(cal, params, arrays, rows, pos_sim, lex_rank, keys() if cal is not None else None)
    sel = select_rows(arrays, params, {"is_duplicate": is_dup, "pos_sim": pos_sim, "lex_rank": lex_rank,
                                       "fn_prob": fn_prob},
                      None if cal is None else {"fn_threshold": cal.model.threshold})
    names = (*reasons(), QUERY_SHORT)
    reason = sel.reason.astype(np.int64)
    kept = reason < 0
    if sel.dropped_query.any():
        gone = sel.dropped_query[group] & kept
        reason[gone] = names.index(QUERY_SHORT)
        kept = reason < 0
    row_ref = sel.pos_ref[group] if len(group) else np.zeros(0)
    reason_names = np.array(names, dtype=object)
    unretrieved_pos = is_pos & (ranks <= 0)

    # negatives: per query, sampled before filled, hardest first
    ki = np.flatnonzero(kept)
    ki = ki[sort_order([group[ki], sel.filled[ki], -scores[ki], ranks[ki], doc_code[ki]])]
    filled = sel.filled[ki]
    fr = sel.fill_reason[ki]

    def common(idx: np.ndarray) -> dict[str, pa.Array]:
        take = pa.array(idx, pa.int64())
        return {"query_id": pc.take(q_arr, take), "doc_id": pc.take(d_arr, take),
                "rank": pa.array(ranks[idx], pa.int32(), mask=ranks[idx] <= 0),
                "teacher_score": _f32(scores[idx]), "pos_score": _f32(row_ref[idx])}

    negatives = pa.table({
        **common(ki),
        "reason_kept": pa.array(np.where(filled, "filled", "sampled").tolist(), pa.string()),
        "filled": pa.array(filled, pa.bool_()),
        "fill_reason": pa.array([names[x] if x >= 0 else None for x in fr.tolist()], pa.string()),
    }, schema=schemas.NEGATIVES)

    di = np.flatnonzero(~kept & ~unretrieved_pos)
    di = di[sort_order([group[di], np.where(ranks[di] > 0, ranks[di], ranks.max(initial=0) + 1), doc_code[di]])]
    d_is_dup = reason[di] == names.index("duplicate_of_positive")
    dropped = pa.table({
        **common(di),
        "reason_dropped": _names_at(reason_names, reason[di]),
        "duplicate_of": _names_at(np.array([None, *(dup_of[i] for i in di[d_is_dup].tolist())], dtype=object),
                                  np.where(d_is_dup, np.cumsum(d_is_dup), 0)),
        "similarity": _f32(np.where(d_is_dup, sim[di], np.nan)),
    }, schema=schemas.DROPPED)

    positives = _positives_table(ipos, p_group, q_arr, d_arr, is_pos, ranks, scores, group)
    n_cand = np.bincount(group[~unretrieved_pos], minlength=n_q)
    n_elig = np.bincount(group[(sel.reason < 0) & ~sel.filled | (sel.reason == names.index(NOT_SAMPLED))],
                         minlength=n_q)
    n_fill = np.bincount(group[sel.filled & kept], minlength=n_q)
    queries = pa.table({
        "query_id": pa.array(qids, pa.string()),
        "pos_score": _f32(sel.pos_ref),
        "candidates": pa.array(n_cand, pa.int32()),
        "eligible": pa.array(n_elig, pa.int32()),
        "kept": pa.array(np.bincount(group[kept], minlength=n_q), pa.int32()),
        "filled": pa.array(n_fill, pa.int32()),
        "short": pa.array(sel.short, pa.bool_()),
        "dropped": pa.array(sel.dropped_query, pa.bool_()),
    }, schema=schemas.SELECT_QUERIES)
    return {"negatives": negatives, "dropped": dropped, "positives": positives, "queries": queries}


def _positives_table(ipos: pa.Table, p_group: np.ndarray, q_arr: pa.Array, d_arr: pa.Array, is_pos: np.ndarray,
                     ranks: np.ndarray, scores: np.ndarray, group: np.ndarray) -> pa.Table:
    """Ingest positives of the block (``ipos``, of queries ``p_group``) with the rank and score of their scored row
    (the last one if a pair was scored twice), then the rows flagged positive by the score stage that are not
    ingest positives (once each); ordered by query, stably."""
    pi = np.flatnonzero(is_pos)
    take = pa.array(pi, pa.int64())
    pi_q, pi_d = pc.take(q_arr, take), pc.take(d_arr, take)
    pi_keys = _pair_keys(pi_q, pi_d)
    ip_keys = _pair_keys(ipos["query_id"].combine_chunks().cast(pa.string()),
                         ipos["doc_id"].combine_chunks().cast(pa.string()))
    n = len(pi)
    last = pc.fill_null(pc.index_in(ip_keys, value_set=pc.take(pi_keys, pa.array(np.arange(n)[::-1]))), -1)
    j = last.to_numpy(zero_copy_only=False).astype(np.int64)
    j = np.where(j >= 0, n - 1 - j, -1)
    found = j >= 0
    p_rank = np.where(found, ranks[pi][np.maximum(j, 0)] if n else 0, 0)
    p_score = np.where(found, scores[pi][np.maximum(j, 0)] if n else np.nan, np.nan)
    first = pc.index_in(pi_keys, value_set=pi_keys).to_numpy(zero_copy_only=False) == np.arange(n)
    ex = np.flatnonzero(first & ~pc.is_in(pi_keys, value_set=ip_keys).to_numpy(zero_copy_only=False).astype(bool))
    ex_take = pa.array(ex, pa.int64())
    e_rank, e_score = ranks[pi][ex], scores[pi][ex]
    t = pa.table({
        "query_id": pa.concat_arrays([ipos["query_id"].combine_chunks().cast(pa.string()), pc.take(pi_q, ex_take)]),
        "doc_id": pa.concat_arrays([ipos["doc_id"].combine_chunks().cast(pa.string()), pc.take(pi_d, ex_take)]),
        "rank": pa.array(np.concatenate([p_rank, e_rank]), pa.int32(),
                         mask=np.concatenate([p_rank, e_rank]) <= 0),
        "teacher_score": _f32(np.concatenate([p_score, e_score])),
        "grade": pa.concat_arrays([ipos["grade"].combine_chunks().cast(pa.float32()),
                                   pa.nulls(len(ex), pa.float32())]),
    }, schema=schemas.SELECT_POSITIVES)
    order = np.argsort(np.concatenate([p_group, group[pi][ex]]), kind="stable")
    return t.take(pa.array(order, pa.int64()))


# ----------------------------------------------------------------------------------------------------------------
# summary


class _Summary:
    def __init__(self, k: int) -> None:
        self.k = k
        self.counts = {"queries": 0, "candidates": 0, "kept": 0, "filled": 0, "queries_short": 0,
                       "queries_dropped": 0, "queries_without_candidates": 0,
                       "queries_without_positive_score": 0}
        self.reasons = dict.fromkeys((*reasons(), QUERY_SHORT), 0)
        self.samples: dict[str, list[np.ndarray]] = {"positives": [], "kept": [], "dropped": []}

    def _sample(self, name: str, col: pa.ChunkedArray) -> None:
        a = col.drop_null().to_numpy().astype(np.float32)
        a = a[~np.isnan(a)]
        if len(a) > _MAX_QUANTILE_SAMPLE:
            a = a[:: -(-len(a) // _MAX_QUANTILE_SAMPLE)]
        self.samples[name].append(a)

    def add(self, t: dict[str, pa.Table]) -> None:
        q = t["queries"]
        c = self.counts
        c["queries"] += q.num_rows
        c["candidates"] += int(pc.sum(q["candidates"]).as_py() or 0)
        c["kept"] += t["negatives"].num_rows
        c["filled"] += int(pc.sum(q["filled"]).as_py() or 0)
        c["queries_short"] += int(pc.sum(q["short"]).as_py() or 0)
        c["queries_dropped"] += int(pc.sum(q["dropped"]).as_py() or 0)
        c["queries_without_candidates"] += int(pc.sum(pc.equal(q["candidates"], 0)).as_py() or 0)
        c["queries_without_positive_score"] += q["pos_score"].null_count
        vc = pc.value_counts(t["dropped"]["reason_dropped"])
        for item in vc.to_pylist():
            self.reasons[item["values"]] = self.reasons.get(item["values"], 0) + item["counts"]
        self._sample("positives", t["positives"]["teacher_score"])
        self._sample("kept", t["negatives"]["teacher_score"])
        d = t["dropped"]
        self._sample("dropped", pc.filter(d["teacher_score"], pc.not_equal(d["reason_dropped"], "positive")))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        out["num_negatives"] = self.k
        out["dropped"] = {r: n for r, n in self.reasons.items() if n}
        quant: dict[str, Any] = {}
        for name, parts in self.samples.items():
            a = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            quant[name] = {"n": int(len(a)), **({f"q{int(round(p * 100)):02d}": round(float(v), 6)
                                                for p, v in zip(QUANTILES, np.quantile(a, QUANTILES), strict=True)}
                                               if len(a) else {})}
        out["score_quantiles"] = quant
        return out


def format_summary(stats: dict[str, Any]) -> str:
    """The end-of-stage summary as a plain-text table (what `negmine select` prints)."""
    lines = []
    rows = [("queries", stats.get("queries", 0)), ("candidates", stats.get("candidates", 0)),
            ("kept negatives", stats.get("kept", 0)), ("  of which filled", stats.get("filled", 0))]
    for r, n in stats.get("dropped", {}).items():
        rows.append((f"dropped: {r}", n))
    k = stats.get("num_negatives", "k")
    rows += [(f"queries short of {k}", stats.get("queries_short", 0)),
             ("queries dropped", stats.get("queries_dropped", 0)),
             ("queries without candidates", stats.get("queries_without_candidates", 0)),
             ("queries without positive score", stats.get("queries_without_positive_score", 0))]
    w = max(len(a) for a, _ in rows)
    lines += [f"{a:<{w}}  {b:>10,}" for a, b in rows]
    if stats.get("max_pos_sim_auto"):
        a = stats["max_pos_sim_auto"]
        t = a.get("threshold")
        lines.append(f"max_pos_sim auto: {'off' if t is None else f'{t:.4f}'} (the {a['quantile']:.2f} quantile of "
                     f"{a['candidates']:,} candidates' cosine with their positive)")
    if "calibration" in stats:
        c = stats["calibration"]
        if c is None:
            lines.append("calibration: none (rule predicted_false_negative off; `negmine calibrate RUN` fits one)")
        elif c.get("threshold") is None:
            lines.append(f"calibration: {c['path']} (its sample showed no false negatives: drops nothing)")
        else:
            ci = c.get("estimated_fn_ci95") or []
            est = "" if c.get("estimated_fn") is None else f", estimated FN rate {c['estimated_fn']:.3f}" + (
                f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            lines.append(f"calibration: {c['path']} (drops p(false negative) >= {c['threshold']:.4f}{est})")
    quant = stats.get("score_quantiles", {})
    if quant:
        cols = [f"q{int(round(p * 100)):02d}" for p in QUANTILES]
        lines.append("")
        lines.append(f"{'teacher score':<16}{'n':>9}" + "".join(f"{c:>10}" for c in cols))
        for name in ("positives", "kept", "dropped"):
            qd = quant.get(name, {})
            vals = "".join(f"{qd[c]:>10.4f}" if c in qd else f"{'-':>10}" for c in cols)
            lines.append(f"{name:<16}{qd.get('n', 0):>9,}" + vals)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# stage


def _dedup_key(inputs: dict[str, str], params: SelectParams) -> str | None:
    if not params.dedup:
        return None
    return hash_json({"inputs": inputs, "threshold": params.dedup_threshold, "shingle": params.dedup_shingle,
                      "version": DEDUP_VERSION})


def _previous_duplicates(out_dir: Path, key: str | None) -> dict[str, tuple[str, float]] | None:
    """The duplicates found by the previous select run on the same inputs with the same dedup settings (they
    are the ``duplicate_of_positive`` rows of its ``dropped`` table), so that re-running with a new margin does
    not re-read the corpus; None when there is no such run."""
    if key is None or not (out_dir / "_manifest.json").is_file():
        return None
    try:
        prev = Artifact.open(out_dir, stage=STAGE)
    except InputError:
        return None
    if prev.manifest.get("dedup_key") != key:
        return None
    out: dict[str, tuple[str, float]] = {}
    try:
        for path in prev.shard_paths("dropped"):
            t = read_parquet([path], ["query_id", "doc_id", "reason_dropped", "duplicate_of", "similarity"])
            t = t.filter(pc.equal(t["reason_dropped"], "duplicate_of_positive"))
            for k, o, s in zip(_pair_keys(t["query_id"], t["doc_id"]).to_pylist(), t["duplicate_of"].to_pylist(),
                               t["similarity"].to_pylist(), strict=True):
                out[k] = (o, float("nan") if s is None else s)
    except (OSError, KeyError, pa.ArrowException) as e:  # damaged previous artifact: just recompute
        log.debug("select: previous duplicates unreadable (%s); recomputing", e)
        return None
    log.info("select: reusing %d near-duplicate(s) found by the previous run (same inputs and dedup settings)",
             len(out))
    return out


SELECT_THREADS = 2  # blocks selected at once (numpy / Arrow release the GIL; the caller's thread writes meanwhile)


def _executor(ingest: _Ingest, params: SelectParams, pos_sim_spec: Any, lexical: Any) -> Any:
    """Threads for the blocks when a block is pure numpy / Arrow work over shared read-only state (the corpus
    rows and sketches, built here before the threads start); the engine's loop, one block at a time, when a block
    also encodes documents (``max_pos_sim``) or reads the BM25 index (``max_lexical_rank``)."""
    from negmine.engine import ThreadedShards, current

    if pos_sim_spec is not None or lexical is not None or SELECT_THREADS < 2:
        return current()
    ingest.corpus().doc_order()
    ingest.positive_rows()
    if params.dedup:
        ingest.dedup_index()
    return ThreadedShards(SELECT_THREADS)


def run_select(run_dir: str | Path, params: SelectParams | None = None) -> StageResult:
    """Read ``RUN/scores`` (+ ``RUN/ingest``) and write ``RUN/negatives``; skipped when up to date."""
    params = params or SelectParams()
    if problems := params.problems():
        raise InputError("; ".join(problems), "select")
    run_dir = Path(run_dir)
    t0 = time.time()
    ingest_art = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    scores = Artifact.open(run_dir / "scores", stage="score", hint="run `negmine score` first")
    check_inputs(ingest_art, scores)
    inputs = {"ingest": ingest_art.fingerprint, "scores": scores.fingerprint}
    from negmine.calibrate.stage import find_calibration, select_params_for

    cal = find_calibration(run_dir, params.calibration)
    if cal is not None:
        params = select_params_for(params, calibrated=True)
        inputs["calibration"] = cal.fingerprint
    writer = StageWriter(run_dir / "negatives", STAGE, params.model_dump(mode="json"), inputs, TABLES,
                         main_table="negatives", fingerprint_params=params.fingerprint_dict())
    done = writer.up_to_date()
    if done is not None:
        log.info("select: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True)
    dedup_key = _dedup_key(inputs, params)
    known_dups = _previous_duplicates(run_dir / "negatives", dedup_key)
    if params.max_pos_sim is not None and params.pos_sim_model not in (None, "teacher") and \
            (cal is None or cal.pos_sim_spec is None):
        from negmine.models import check_model

        check_model(params.pos_sim_model, "--pos-sim-model")  # before any work, blaming the flag the user typed
    writer.begin()
    ingest = _Ingest(ingest_art, params)
    pos_sim_spec = None
    if cal is not None and cal.pos_sim_spec is not None:
        pos_sim_spec = cal.pos_sim_spec  # the encoder the model was fitted with
    elif params.max_pos_sim is not None:
        from negmine.select.signals import embedding_spec

        pos_sim_spec = embedding_spec(scores.params, params.pos_sim_model, params.encoder_backend)
    auto = None
    if params.max_pos_sim == "auto":
        from negmine.select.signals import auto_pos_sim_threshold

        assert pos_sim_spec is not None  # max_pos_sim is set, so the encoder spec is
        auto = auto_pos_sim_threshold(ingest_art, scores, pos_sim_spec, params.pos_sim_quantile, params.seed)
        params = params.model_copy(update={"max_pos_sim": auto["threshold"]})
        writer.params = params.model_dump(mode="json")  # the manifest records the threshold this run used
        log.info("select: max_pos_sim auto = %s (the %.2f quantile of %d candidates' similarity to their positive, "
                 "%d queries)", "off (no similarities)" if auto["threshold"] is None else f"{auto['threshold']:.4f}",
                 auto["quantile"], auto["candidates"], auto["queries"])
    lexical = None
    if params.max_lexical_rank is not None or (cal is not None and "lex_rank" in cal.needs):
        from negmine.select.signals import LexicalRanker

        lexical = LexicalRanker(ingest_art)
    summary = _Summary(params.num_negatives)
    n_queries = len(ingest.query_order)
    with tqdm(total=n_queries, desc="select", unit="q", disable=None) as bar:
        def compute(i: int, block: tuple[list[str], Any, np.ndarray]) -> dict[str, pa.Table]:
            return select_block(block[0], block[1], ingest, params, known_dups, pos_sim_spec, lexical, cal,
                                group=block[2])

        def shard_done(i: int, block: tuple[list[str], Any, np.ndarray], tables: Any, resumed: bool) -> None:
            summary.add(tables)
            bar.update(len(block[0]))

        run_shards(writer, enumerate(_blocks(scores, ingest, params.shard_queries)), compute, on_shard=shard_done,
                   read_resumed=True, executor=_executor(ingest, params, pos_sim_spec, lexical))
    stats = summary.as_dict()
    stats["duplicates_reused"] = known_dups is not None
    stats["max_pos_sim"] = params.max_pos_sim
    if auto is not None:
        stats["max_pos_sim_auto"] = auto
    stats["calibration"] = None if cal is None else cal.summary(params.num_negatives)
    if cal is not None and cal.summary(params.num_negatives).get("k_mismatch"):
        log.warning("select: the calibration's threshold was chosen for k=%s, this selection keeps k=%d (re-run "
                    "`negmine calibrate` with the same select settings)", cal.model.meta.get("k"),
                    params.num_negatives)
    art = writer.finish(stats=stats, timings={"select": round(time.time() - t0, 3)},
                        extra={"dedup_key": dedup_key})
    log.info("select: %d queries, %d negatives kept (%d filled), %d queries short of %d, %d dropped",
             stats["queries"], stats["kept"], stats["filled"], stats["queries_short"], params.num_negatives,
             stats["queries_dropped"])
    return StageResult(art, False, time.time() - t0)
