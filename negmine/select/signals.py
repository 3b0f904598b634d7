"""Signals beyond the teacher's query-document score, as registered select rules.

``similar_to_positive`` (``select.max_pos_sim``): drop a candidate whose document embedding has cosine similarity
>= ``max_pos_sim`` with one of the query's positive documents.

``lexical_agreement`` (``select.max_lexical_rank``): drop a candidate that BM25 also ranks in its top
``max_lexical_rank`` for the query. When a dense teacher and a lexical retriever both put a document near the top,
it is more often relevant than a hard negative (Cranfield, hidden positives: see docs/BENCHMARKS.md).

Why: margin rules (TopK-MarginPos / PercPos, ``mine_hard_negatives``' relative_margin) compare the candidate with
the *query*. A false negative is a document that answers the query as well as the positive does, and such a
document usually talks about the same thing as the positive – its similarity to the positive *document* is
high even when its similarity to the (short, underspecified) query is not. With hidden positives
(scripts/bench_quality.py; the figures are in docs/BENCHMARKS.md "Mining quality") this rule removes false
negatives while every query keeps its k negatives, where the margin rules leave many queries short.

The similarity uses a bi-encoder's document embeddings: by default the packaged all-MiniLM-L6-v2 (``max_pos_sim:
auto`` sets the threshold on the run's own cosine scale; a fixed number is on MiniLM's) – when the teacher is that
model its vectors are already in the embedding cache and nothing is encoded. ``select.pos_sim_model: teacher``
uses the bi-encoder teacher's own vectors (a fixed threshold must then be re-calibrated for it, e.g. with
`negmine report --qrels` on a labelled subset: models whose similarities live on a different scale would otherwise
drop far too much or too little); any other value names a model.

The pure part is :func:`max_sim_to_positives`; :func:`block_pos_sim` fetches texts and vectors for a block of the
select stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_POS_SIM_MODEL = "all-MiniLM-L6-v2"


def max_sim_to_positives(vecs: np.ndarray, group: np.ndarray, is_positive: np.ndarray) -> np.ndarray:
    """Per row: the maximum dot product of ``vecs[row]`` with the vectors of the positive rows of the same group
    (a positive row is compared with the *other* positives only). NaN for a row whose group has no (other)
    positive. ``vecs`` are row-aligned, L2-normalised (dot = cosine)."""
    group = np.asarray(group, dtype=np.int64)
    is_pos = np.asarray(is_positive, dtype=bool)
    n = len(group)
    out = np.full(n, np.nan)
    if n == 0 or not is_pos.any():
        return out
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    bounds = np.flatnonzero(np.diff(g_sorted)) + 1
    for rows in np.split(order, bounds):
        prow = rows[is_pos[rows]]
        if not len(prow):
            continue
        sims = vecs[rows] @ vecs[prow].T                      # (rows, positives)
        self_hit = rows[:, None] == prow[None, :]
        sims = np.where(self_hit, -np.inf, sims)
        best = sims.max(axis=1)
        out[rows] = np.where(np.isfinite(best), best, np.nan)
    return out


def similar_to_positive(pos_sim: np.ndarray, max_pos_sim: float) -> np.ndarray:
    """Keep mask: ``pos_sim < max_pos_sim``; a row without a positive to compare with (NaN) is kept."""
    ps = np.asarray(pos_sim, dtype=np.float64)
    return ~(ps >= max_pos_sim)


AUTO_MAX_QUERIES = 2000  # queries whose candidates set the per-run threshold of max_pos_sim: auto
AUTO_MAX_RANK = 100      # candidates ranked deeper do not count (the threshold does not depend on a deeper pool)


def quantile_threshold(pos_sim: np.ndarray, candidate: np.ndarray, quantile: float) -> float | None:
    """The ``quantile`` of the candidates' similarities to their positives (NaN ignored); None without any."""
    ps = np.asarray(pos_sim, dtype=np.float64)[np.asarray(candidate, dtype=bool)]
    ps = ps[np.isfinite(ps)]
    return float(np.quantile(ps, quantile)) if len(ps) else None


def query_rows(ingest, scores, qids: Sequence[str], columns: Sequence[str]):
    """The scored rows of ``qids`` (a run's scores artifact), grouped in the order of ``qids`` and by rank, with
    each row's query index and whether it is a positive (flagged by score, or a positive of the ingest).
    Returns ``(table, group, is_positive)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = list(dict.fromkeys([*columns, "query_id", "doc_id", "rank", "is_positive"]))
    want = pa.array(list(qids), pa.string())
    parts = [t.filter(pc.is_in(t["query_id"], value_set=want)) for t in scores.iter_shards(None, columns=cols)]
    t = pa.concat_tables(parts)
    index = {q: i for i, q in enumerate(qids)}
    group = np.fromiter((index[q] for q in t["query_id"].to_pylist()), dtype=np.int64, count=t.num_rows)
    order = np.lexsort((pc.fill_null(t["rank"], 1 << 30).to_numpy(zero_copy_only=False), group))
    t = t.take(pa.array(order))
    group = group[order]
    pos = ingest.read("positives", columns=["query_id", "doc_id"])
    pos_pairs = set(zip(pos["query_id"].to_pylist(), pos["doc_id"].to_pylist(), strict=True))
    is_pos = pc.fill_null(t["is_positive"], False).to_numpy(zero_copy_only=False).astype(bool) | np.fromiter(
        ((q, d) in pos_pairs for q, d in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), strict=True)),
        dtype=bool, count=t.num_rows)
    return t, group, is_pos


def auto_pos_sim_threshold(ingest, scores, spec: Mapping[str, Any], quantile: float, seed: int = 0,
                           max_queries: int = AUTO_MAX_QUERIES, max_rank: int = AUTO_MAX_RANK) -> dict[str, Any]:
    """``max_pos_sim: auto``: the threshold is the ``quantile`` of the candidate-positive document similarities of
    a seeded sample of up to ``max_queries`` queries (candidates ranked 1..``max_rank``). A fixed cosine means
    different things for different corpora and encoders (measured: the separation sits near 0.55 on Cranfield
    and 0.40-0.45 on CISI with the same model); a quantile of the run's own similarities follows them."""
    import pyarrow.compute as pc

    qids: list[str] = []
    for t in scores.iter_shards(None, columns=["query_id"]):
        qids.extend(pc.unique(t["query_id"]).to_pylist())
    qids = list(dict.fromkeys(qids))
    if len(qids) > max_queries:
        rng = np.random.default_rng(seed)
        qids = [qids[i] for i in np.sort(rng.choice(len(qids), size=max_queries, replace=False))]
    t, group, is_pos = query_rows(ingest, scores, qids, [])
    ranks = pc.fill_null(t["rank"], 0).to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(is_pos | ((ranks > 0) & (ranks <= max_rank)))
    d_list = t["doc_id"].to_pylist()
    d_keep = [d_list[i] for i in idx]
    ps = block_pos_sim(corpus_texts(ingest, set(d_keep)), d_keep, group[idx], is_pos[idx], spec) if len(idx) \
        else np.zeros(0)
    cand = ~is_pos[idx]
    return {"threshold": quantile_threshold(ps, cand, quantile), "quantile": quantile, "queries": len(qids),
            "candidates": int(np.isfinite(ps[cand]).sum()) if len(idx) else 0}


def lexical_agreement(lex_rank: np.ndarray, max_lexical_rank: int) -> np.ndarray:
    """Keep mask: drop a row whose BM25 rank for its query is within ``1..max_lexical_rank`` (0 = not ranked)."""
    r = np.asarray(lex_rank, dtype=np.int64)
    return ~((r > 0) & (r <= max_lexical_rank))


def predicted_false_negative(fn_prob: np.ndarray, threshold: float) -> np.ndarray:
    """Keep mask: drop a row whose calibrated p(false negative) is >= ``threshold`` (NaN: kept)."""
    return ~(np.asarray(fn_prob, dtype=np.float64) >= threshold)


class LexicalRanker:
    """BM25 top-N lists of a run's queries over its corpus, for ``lexical_agreement``: the retrieve stage's BM25
    (bm25s, default settings, index cached by corpus fingerprint: built once, then loaded). Documents with a BM25
    score of 0 (no query term) are not ranked."""

    def __init__(self, ingest) -> None:
        from negmine.io.corpus import Corpus
        from negmine.retrieve.bm25 import open_bm25
        from negmine.retrieve.params import RetrieverConfig

        self.corpus = Corpus(ingest)
        self.searcher = open_bm25(RetrieverConfig(method="bm25"), self.corpus.fingerprint,
                                  self.corpus.text_chunks)
        q = ingest.read("queries", columns=["query_id", "text"])
        self.query_text = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist(), strict=True))

    def ranks(self, row_queries: Sequence[str], row_docs: Sequence[str], n: int) -> np.ndarray:
        """Per row: the 1-based BM25 rank of the row's doc for its query within the top ``n``, 0 when absent."""
        from negmine.retrieve.ranking import rank_of

        out = np.zeros(len(row_docs), dtype=np.int64)
        qids = [q for q in dict.fromkeys(row_queries) if q in self.query_text]
        if not qids:
            return out
        idx, _ = self.searcher.search([self.query_text[q] for q in qids], n)  # -1 where no term matched
        qpos = {q: i for i, q in enumerate(qids)}
        qp = np.fromiter((qpos.get(q, -1) for q in row_queries), dtype=np.int64, count=len(row_queries))
        dp = self.corpus.rows(row_docs)
        ok = (qp >= 0) & (dp >= 0)
        out[ok] = rank_of(qp[ok], dp[ok], idx)
        return out


# ----------------------------------------------------------------------------------------------------------------
# embedding side (the select stage calls this; vectors come through the embedding cache)


def embedding_spec(score_params: Mapping[str, Any], model: str | None = None,
                   backend: str = "auto") -> dict[str, Any]:
    """Which document encoder to compare candidates and positives with.

    ``model`` None: the packaged default model, on whose cosine scale the default threshold is calibrated; when the
    score stage's bi-encoder teacher *is* that model, with the teacher's exact prompt / max_seq_length (cache hits,
    nothing encoded). ``"teacher"``: the bi-encoder teacher's own vectors whatever the model (the threshold must then
    be re-calibrated for it); a cross-encoder teacher has no document vectors, so the default model is used. Any
    other value: that model name or path. ``backend``: the encoder runtime when the teacher's vectors are not
    reused (then the teacher's own ``encoder_backend``)."""
    teacher = None
    if score_params.get("teacher") == "bi-encoder" and score_params.get("model"):
        teacher = {"model": score_params["model"], "prompt": score_params.get("doc_prompt"),
                   "prompt_name": score_params.get("doc_prompt_name"),
                   "max_seq_length": score_params.get("max_seq_length"),
                   "backend": score_params.get("encoder_backend", "auto")}
    if model == "teacher" and teacher is not None:
        return teacher
    if model in (None, "teacher") and teacher is not None and _same_model(teacher["model"], DEFAULT_POS_SIM_MODEL):
        return teacher
    chosen = DEFAULT_POS_SIM_MODEL if model in (None, "teacher") else model
    return {"model": chosen, "prompt": None, "prompt_name": None, "max_seq_length": None, "backend": backend}


def _same_model(a: str, b: str) -> bool:
    from negmine.models import resolve_model

    return a == b or resolve_model(a) == resolve_model(b)


def block_pos_sim(doc_text_of: Mapping[str, str], doc_ids: Sequence[str], group: np.ndarray,
                  is_positive: np.ndarray, spec: Mapping[str, Any], batch_size: int = 64,
                  device: str | None = None) -> np.ndarray:
    """``max_sim_to_positives`` for one block of rows. ``doc_text_of`` maps every doc id of the block to the
    string its model sees (``negmine.models.doc_text``); a doc without text gets NaN."""
    from negmine.encode.embed import encode_texts

    uniq = list(dict.fromkeys(d for d in doc_ids if d in doc_text_of))
    if not uniq:
        return np.full(len(doc_ids), np.nan)
    vecs = encode_texts([doc_text_of[d] for d in uniq], model=spec["model"], kind="doc", prompt=spec.get("prompt"),
                        prompt_name=spec.get("prompt_name"), max_seq_length=spec.get("max_seq_length"),
                        batch_size=batch_size, device=device, normalize=True, desc="positive similarity",
                        backend=spec.get("backend", "auto"))
    index = {d: i for i, d in enumerate(uniq)}
    rows = np.fromiter((index.get(d, -1) for d in doc_ids), dtype=np.int64, count=len(doc_ids))
    aligned = np.zeros((len(doc_ids), vecs.shape[1]), dtype=np.float32)
    ok = rows >= 0
    aligned[ok] = vecs[rows[ok]]
    out = max_sim_to_positives(aligned, group, np.asarray(is_positive, dtype=bool) & ok)
    out[~ok] = np.nan
    return out


def corpus_texts(ingest, doc_ids: set[str]) -> dict[str, str]:
    """``doc_id → doc_text(title, text)`` for ``doc_ids`` from an ingest artifact (one scan of its corpus)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from negmine.models import doc_text

    want = pa.array(sorted(doc_ids), pa.string())
    out: dict[str, str] = {}
    for t in ingest.iter_shards("corpus", columns=["doc_id", "title", "text"]):
        t = t.filter(pc.is_in(t["doc_id"], value_set=want))
        for d, ti, tx in zip(t["doc_id"].to_pylist(), t["title"].to_pylist(), t["text"].to_pylist(), strict=True):
            out[d] = doc_text(ti, tx or "")
    return out
