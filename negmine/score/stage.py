"""`negmine score`: teacher scores for every candidate and every positive of each query → ``RUN/scores``.

Output rows (schema ``SCORES``), grouped by query: the query's candidates in rank order, then the positives the
retriever did not return (``rank`` and ``retriever_score`` null). A positive that the retriever returned appears
once, at its rank, with ``is_positive`` true. Work is sharded by query (``shard_queries``); a finished shard is the
unit of resume, and an unchanged fingerprint (ingest + candidates + teacher params + model revision) skips the stage.
"""

from __future__ import annotations

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
from negmine.io.store import Artifact, StageResult, StageWriter, check_inputs, run_shards
from negmine.retrieve.params import RetrieveParams, RetrieverConfig
from negmine.score.bi_encoder import BiEncoderTeacher
from negmine.score.cross_encoder import CrossEncoderTeacher
from negmine.score.llm import LLMTeacher
from negmine.score.params import LLM_KEYS, ScoreParams

log = logging.getLogger("negmine")

STAGE = "score"
TABLE = "scores"
TEACHERS = {"bi-encoder": BiEncoderTeacher, "cross-encoder": CrossEncoderTeacher, "llm": LLMTeacher}
# bi-encoder settings a teacher inherits from the retrieve stage when it is the retriever's dense model
INHERITED = ("query_prompt", "query_prompt_name", "doc_prompt", "doc_prompt_name", "max_seq_length", "normalize")


def _dense_retrievers(retrieve_params: dict[str, Any]) -> list[RetrieverConfig]:
    """The dense retrievers of the retrieve stage whose params a candidates manifest recorded, resolved as that
    stage resolved them (``RetrieveParams.resolved``: list entries inherit the top-level keys). Params that are
    not a retrieve stage's (a hand-made candidates artifact) name no dense retriever."""
    from pydantic import ValidationError

    try:
        resolved = RetrieveParams.model_validate(retrieve_params).resolved()
    except ValidationError:
        return []
    return [r for r in resolved if r.method == "dense"]


def effective_params(params: ScoreParams, retrieve_params: dict[str, Any]) -> ScoreParams:
    """``params`` with unset bi-encoder prompts / max_seq_length / normalize taken from the retriever's, when the
    teacher is the retriever's dense model: the teacher then scores exactly what the retriever embedded."""
    if params.teacher != "bi-encoder":
        return params
    from negmine.encode.embed import model_identity

    mine = model_identity(params.model)
    given = params.model_dump(exclude_unset=True)
    for spec in _dense_retrievers(retrieve_params):
        if model_identity(spec.model) == mine:
            inherit = {k: getattr(spec, k) for k in INHERITED if k not in given}
            return params.model_copy(update=inherit) if inherit else params
    return params


class _Inputs:
    """What the stage needs from ingest, held in memory once: query texts, positives, the corpus id index."""

    def __init__(self, ingest: Artifact) -> None:
        from negmine.models import doc_text

        q = ingest.read("queries")
        self.query_ids: list[str] = q["query_id"].to_pylist()
        self.query_text = dict(zip(self.query_ids, q["text"].to_pylist(), strict=False))
        pos = ingest.read("positives", columns=["query_id", "doc_id"])
        self.positives: dict[str, list[str]] = {}
        for qid, did in zip(pos["query_id"].to_pylist(), pos["doc_id"].to_pylist(), strict=False):
            self.positives.setdefault(qid, []).append(did)
        corpus = ingest.read("corpus", columns=["doc_id", "title", "text"])
        self.corpus = CorpusRows(corpus["doc_id"].combine_chunks())
        self._titles = corpus["title"]
        self._texts = corpus["text"]
        self._doc_text = doc_text

    def rows(self, doc_ids: list[str], where: Path) -> np.ndarray:
        """The corpus row of each doc id (an input error naming ``where`` for one not in the corpus)."""
        rows = self.corpus.rows(doc_ids)
        if len(rows) and rows.min() < 0:
            missing = doc_ids[int(np.argmin(rows))]
            raise InputError(f"candidate document {missing!r} is not in the ingested corpus; re-run retrieve",
                             where)
        return rows

    def texts_at(self, rows: np.ndarray) -> list[str]:
        """The documents' texts (``doc_text`` of title and text) at corpus ``rows``."""
        take = pa.array(rows, pa.int64())
        titles = self._titles.take(take).to_pylist()
        texts = self._texts.take(take).to_pylist()
        return [self._doc_text(t, x) for t, x in zip(titles, texts, strict=False)]


def _groups(cands: Artifact, inputs: _Inputs, shard_queries: int) -> Iterator[tuple[list[str], pa.Table]]:
    """(query ids, their candidate rows) in blocks of at most ``shard_queries`` queries: in candidate-shard order,
    then the queries the retriever returned nothing for (their positives still get scored)."""
    seen: set[str] = set()
    cols = ["query_id", "doc_id", "rank", "retriever_score"]
    for table in cands.iter_shards(columns=cols):
        qids = pc.unique(table["query_id"]).to_pylist()
        for s in range(0, len(qids), shard_queries):
            group = qids[s:s + shard_queries]
            seen.update(group)
            rows = table if len(group) == len(qids) else table.filter(pc.is_in(table["query_id"],
                                                                              pa.array(group, pa.string())))
            yield group, rows
    rest = [q for q in inputs.query_ids if q not in seen]
    empty = pa.table({c: pa.array([], schemas.SCORES.field(c).type) for c in cols})
    for s in range(0, len(rest), shard_queries):
        yield rest[s:s + shard_queries], empty


def _shard_rows(group: list[str], cand: pa.Table, inputs: _Inputs) -> dict[str, Any]:
    """Candidate rows (by query, then rank) plus the positives not retrieved, before scoring."""
    qpos = {q: i for i, q in enumerate(group)}
    c_q = cand["query_id"].to_pylist()
    c_d = cand["doc_id"].to_pylist()
    c_rank = cand["rank"].to_numpy(zero_copy_only=False)
    order = np.lexsort((c_rank, np.fromiter((qpos[q] for q in c_q), dtype=np.int64, count=len(c_q))))
    retrieved = set(zip(c_q, c_d, strict=False))
    pos_set = {(q, d) for q in group for d in inputs.positives.get(q, ())}
    extra = {q: [d for d in inputs.positives.get(q, ()) if (q, d) not in retrieved] for q in group}
    qids: list[str] = []
    dids: list[str] = []
    ranks: list[int | None] = []
    rscores: list[float | None] = []
    c_rs = cand["retriever_score"].to_pylist()
    it = iter(order.tolist())
    nxt = next(it, None)
    for q in group:  # candidates of q (already ordered), then q's unretrieved positives
        while nxt is not None and c_q[nxt] == q:
            qids.append(q)
            dids.append(c_d[nxt])
            ranks.append(int(c_rank[nxt]))
            rscores.append(c_rs[nxt])
            nxt = next(it, None)
        for d in extra[q]:
            qids.append(q)
            dids.append(d)
            ranks.append(None)
            rscores.append(None)
    return {"query_id": qids, "doc_id": dids, "rank": ranks, "retriever_score": rscores,
            "is_positive": [(q, d) in pos_set for q, d in zip(qids, dids, strict=False)]}


DOC_CHUNK = 131_072  # distinct documents whose texts and vectors an encoder teacher holds at a time


def _score_pairs(teacher: Any, queries: list[str], ud_rows: np.ndarray, qi: np.ndarray, di: np.ndarray,
                 inputs: _Inputs) -> np.ndarray:
    """The teacher's scores of the pairs ``(queries[qi[r]], corpus document ud_rows[di[r]])``. A pairwise teacher
    (bi- or cross-encoder: a pair's score depends on that pair alone) gets the documents ``DOC_CHUNK`` at a time, so
    a shard of a million candidates over a large corpus never holds every text and vector at once; the LLM teacher,
    which judges a query's candidates together, gets them all."""
    if isinstance(teacher, LLMTeacher) or len(ud_rows) <= DOC_CHUNK:
        return teacher.score(queries, inputs.texts_at(ud_rows), qi, di)
    out = np.empty(len(qi), dtype=np.float32)
    order = np.argsort(di, kind="stable")
    bounds = np.searchsorted(di[order], np.arange(0, len(ud_rows) + DOC_CHUNK, DOC_CHUNK))
    for c, s in enumerate(range(0, len(ud_rows), DOC_CHUNK)):
        rows = order[bounds[c]:bounds[c + 1]]
        out[rows] = teacher.score(queries, inputs.texts_at(ud_rows[s:s + DOC_CHUNK]), qi[rows], di[rows] - s)
    return out


def _score_shard(rows: dict[str, Any], inputs: _Inputs, teacher: Any, where: Path) -> pa.Table:
    qids, dids = rows["query_id"], rows["doc_id"]
    uq = list(dict.fromkeys(qids))
    ud = list(dict.fromkeys(dids))
    qmap = {q: i for i, q in enumerate(uq)}
    dmap = {d: i for i, d in enumerate(ud)}
    qi = np.fromiter((qmap[q] for q in qids), dtype=np.int64, count=len(qids))
    di = np.fromiter((dmap[d] for d in dids), dtype=np.int64, count=len(dids))
    del dmap
    ud_rows = inputs.rows(ud, where)
    scores = _score_pairs(teacher, [inputs.query_text[q] for q in uq], ud_rows, qi, di, inputs)
    return pa.table({
        "query_id": pa.array(qids, pa.string()),
        "doc_id": pa.array(dids, pa.string()),
        "rank": pa.array(rows["rank"], pa.int32()),
        "retriever_score": pa.array(rows["retriever_score"], pa.float32()),
        "teacher_score": pa.array(scores, pa.float32()),
        "is_positive": pa.array(rows["is_positive"], pa.bool_()),
        "corpus_row": pa.array(ud_rows[di].astype(np.int32) if len(di) else np.zeros(0, np.int32), pa.int32()),
    }, schema=schemas.SCORES)


class _Stats:
    def __init__(self) -> None:
        self.queries = self.rows = self.candidates = self.positives = self.positives_retrieved = 0
        self.pos_scores: list[np.ndarray] = []
        self.neg_sum = 0.0
        self.neg_scored = 0  # candidates with a score (an LLM teacher leaves a pair it got no answer for NaN)
        self.unscored = 0    # rows with a NaN score

    def add(self, t: pa.Table, n_queries: int) -> None:
        rank_valid = t["rank"].is_valid().to_numpy(zero_copy_only=False)
        is_pos = t["is_positive"].to_numpy(zero_copy_only=False)
        s = t["teacher_score"].to_numpy(zero_copy_only=False)
        self.queries += n_queries
        self.rows += t.num_rows
        self.candidates += int(rank_valid.sum())
        self.positives += int(is_pos.sum())
        self.positives_retrieved += int((is_pos & rank_valid).sum())
        self.pos_scores.append(s[is_pos & ~np.isnan(s)])
        neg = s[~is_pos]
        self.neg_sum += float(np.nansum(neg))
        self.neg_scored += int((~np.isnan(neg)).sum())
        self.unscored += int(np.isnan(s).sum())

    def as_dict(self) -> dict[str, Any]:
        pos = np.concatenate(self.pos_scores) if self.pos_scores else np.empty(0)
        negs = self.neg_scored
        q = np.quantile(pos, [0.05, 0.5, 0.95]).round(4).tolist() if len(pos) else None
        return {"queries": self.queries, "rows": self.rows, "candidates": self.candidates,
                "positives": self.positives, "positives_retrieved": self.positives_retrieved,
                "positives_not_retrieved": self.positives - self.positives_retrieved,
                "mean_positive_score": round(float(pos.mean()), 4) if len(pos) else None,
                "positive_score_p05_p50_p95": q,
                "mean_candidate_score": round(self.neg_sum / negs, 4) if negs else None}


def cache_path(run_dir: Path, params: ScoreParams) -> Path:
    """The judge's response cache (shared with relabel)."""
    return Path(params.cache_path) if params.cache_path else run_dir / ".judge-cache.sqlite"


def _fingerprint(params: ScoreParams) -> dict[str, Any]:
    """Params that change the scores: an encoder's model revision, or the LLM's model, prompts and tokenizer (never
    its endpoint or key); the LLM keys are left out for the encoder teachers."""
    fp = params.fingerprint_dict()
    if params.teacher != "llm":
        from negmine.models import model_revision

        return {k: v for k, v in fp.items() if k not in LLM_KEYS} | {"model_revision": model_revision(params.model)}
    from negmine.judge.tokens import get_tokenizer
    from negmine.score.llm import llm_tier, prompt_info

    fp.pop("model")
    return fp | {"llm": llm_tier(params).fingerprint_dict(), "llm_prompts": prompt_info(),
                 "tokenizer": get_tokenizer().name}


def _public_params(params: ScoreParams) -> dict[str, Any]:
    """Params for the manifest: a base_url without user:password (keys are never in params: env var names only)."""
    from negmine.judge.client import public_url

    out = params.model_dump(mode="json")
    llm = out.get("llm")
    if llm and llm.get("base_url"):
        llm["base_url"] = public_url(llm["base_url"])
    return out


def _teacher(params: ScoreParams, run_dir: Path, plan: bool = False) -> Any:
    if params.teacher == "llm":
        return LLMTeacher(params, cache_path(run_dir, params), plan=plan)
    return TEACHERS[params.teacher](params)


def run_score(run_dir: str | Path, params: ScoreParams) -> StageResult:
    """Score ``RUN/candidates`` (and the positives) with the configured teacher into ``RUN/scores``."""
    t0 = time.time()
    run_dir = Path(run_dir)
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    cands = Artifact.open(run_dir / "candidates", stage="retrieve", hint="run `negmine retrieve` first")
    check_inputs(ingest, cands)
    params = effective_params(params, cands.params)
    fp = _fingerprint(params)
    writer = StageWriter(run_dir / "scores", STAGE, _public_params(params),
                         {"ingest": ingest.fingerprint, "candidates": cands.fingerprint},
                         {TABLE: schemas.SCORES}, main_table=TABLE, fingerprint_params=fp)
    done = writer.up_to_date()
    if done is not None:
        log.info("score: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True)
    teacher = _teacher(params, run_dir)  # an LLM teacher checks its key variable here, before any work
    writer.begin()
    inputs = _Inputs(ingest)
    stats = _Stats()
    timer = {"teacher": 0.0}

    def compute(i: int, unit: tuple[list[str], pa.Table]) -> dict[str, pa.Table]:
        group, cand = unit
        rows = _shard_rows(group, cand, inputs)
        t1 = time.time()
        table = _score_shard(rows, inputs, teacher, cands.path)
        timer["teacher"] += time.time() - t1
        return {TABLE: table}

    def shard_done(i: int, unit: tuple[list[str], pa.Table], tables: Any, resumed: bool) -> None:
        stats.add(tables[TABLE], len(unit[0]))

    try:
        run_shards(writer, enumerate(_groups(cands, inputs, params.shard_queries)), compute, on_shard=shard_done,
                   read_resumed=True)
        if isinstance(teacher, LLMTeacher):
            teacher.check_unscored(stats.unscored, stats.rows)
    except InputError:
        writer.discard()
        raise
    finally:
        if isinstance(teacher, LLMTeacher):
            teacher.close()
    t_teacher = timer["teacher"]
    st = stats.as_dict() | {"teacher": params.teacher, "model": params.model}
    if isinstance(teacher, LLMTeacher):
        st |= {"model": teacher.tier.model, "llm": teacher.stats() | {"unscored": stats.unscored}}
        log.info("score: %s", ", ".join(f"{k} {v}" for k, v in st["llm"].items()))
    art = writer.finish(stats=st, timings={"teacher": round(t_teacher, 3), "score": round(time.time() - t0, 3)})
    log.info("score: %s %s → %d rows (%d queries, %d positives, %d of them retrieved)", params.teacher,
             st["model"], st["rows"], st["queries"], st["positives"], st["positives_retrieved"])
    return StageResult(art, False, time.time() - t0)


def plan_score(run_dir: str | Path, params: ScoreParams) -> dict[str, Any]:
    """``--dry-run`` of the LLM teacher: walk every pair the stage would score without sending anything (cached
    answers are used; misses are counted with their estimated tokens and cost)."""
    run_dir = Path(run_dir)
    if params.teacher != "llm":
        raise InputError(f"--dry-run plans the requests of an LLM teacher; teacher is {params.teacher!r} "
                         "(use --teacher llm)", "--dry-run")
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    cands = Artifact.open(run_dir / "candidates", stage="retrieve", hint="run `negmine retrieve` first")
    check_inputs(ingest, cands)
    inputs = _Inputs(ingest)
    teacher = _teacher(params, run_dir, plan=True)
    n_q = n_rows = n_cand = 0
    try:
        for group, cand in _groups(cands, inputs, params.shard_queries):
            rows = _shard_rows(group, cand, inputs)
            _score_shard(rows, inputs, teacher, cands.path)
            n_q += len(group)
            n_rows += len(rows["query_id"])
            n_cand += sum(r is not None for r in rows["rank"])
    finally:
        teacher.close()
    return {"queries": n_q, "pairs": n_rows, "candidates": n_cand, "positives_not_retrieved": n_rows - n_cand,
            "model": teacher.tier.model, "mode": teacher.mode or params.llm_mode, "mode_assumed": teacher.mode_assumed,
            "totals": teacher.totals, "tokenizer": teacher.tok.name, "exact_tokens": teacher.tok.exact}
