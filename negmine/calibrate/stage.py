"""`negmine calibrate`: judge a seeded sample of queries, fit p(false negative), choose the threshold select applies.

Reads RUN/ingest and RUN/scores; writes RUN/calibration (stage ``calibrate``):

* ``judged`` (main table): every judged pair of the sample — the top ``calibrate.top`` candidates of each sampled
  query, ``calibrate.deep`` random candidates ranked below them, its known positives and ``calibrate.controls``
  random documents from outside its candidate pool — with
  the judge's label, the candidate's features, its fold and its out-of-fold prediction;
* ``audit``: one row per (pair, tier) exactly as relabel's audit (model, label, tokens, cost, cache, errors);
* ``curve``: for each threshold, the estimated false-negative rate of the resulting selection on the sample, the
  estimate for naive top-k, coverage and a hardness proxy (what `negmine report` plots);
* ``model.json`` (the portable model and the chosen threshold) and ``reliability.png``.

The judge is relabel's client and response cache (``RUN/.judge-cache.sqlite``): a re-run sends no request, a
killed run resumes from the cache, ``--dry-run`` prints calls and cost, ``--budget-usd`` stops cleanly (exit 3).

How the threshold is chosen: selection is simulated with select's own batch function over the sample queries
(with out-of-fold predictions, as for a query the model never saw) and up to ``coverage_queries`` other queries
(for coverage). The FN rate of a simulated selection is estimated on the sample from the judge's labels where a
kept candidate was judged (corrected for the judge's measured error rates) and from the model where it was not.
The least aggressive threshold that meets the target while ``min_coverage`` of the queries keep k negatives wins.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.calibrate.features import Signals, feature_matrix, needed_signals, signals_of
from negmine.calibrate.model import FNModel, JudgeNoise, fit, reliability
from negmine.calibrate.params import CalibrateParams
from negmine.errors import InputError, RuntimeFailure
from negmine.io.store import Artifact, StageResult, StageWriter, check_inputs

log = logging.getLogger("negmine")

STAGE = "calibrate"
DIR = "calibration"
MODEL_FILE = "model.json"
KINDS = ("candidate", "positive", "control")
BOOTSTRAP = 1000
CURVE = pa.schema([("threshold", pa.float64()), ("est_fn", pa.float64()), ("est_fn_ratio", pa.float64()),
                   ("coverage", pa.float64()), ("kept", pa.int64()), ("hardness_proxy", pa.float64())])


def judged_schema(features: list[str]) -> pa.Schema:
    return pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("kind", pa.string()),
                      ("rank", pa.int32()), ("teacher_score", pa.float32()), ("label", pa.string()),
                      ("flagged", pa.bool_()), ("error", pa.string()), ("fold", pa.int16()),
                      ("p_oof", pa.float32()), ("p_model", pa.float32()), ("p_posterior", pa.float32()),
                      *[(f"f_{n}", pa.float32()) for n in features]])


def tables(features: list[str]) -> dict[str, pa.Schema]:
    from negmine.judge.schemas import RELABEL_AUDIT

    return {"judged": judged_schema(features), "audit": RELABEL_AUDIT, "curve": CURVE}


# ---- config glue ---------------------------------------------------------------------------------------------------

def judge_params(cfg) -> Any:
    """The relabel section with calibrate's tiers (default: relabel's first tier) and budget."""
    c: CalibrateParams = cfg.calibrate
    tiers = c.tiers if c.tiers else cfg.relabel.tiers[:1]
    return cfg.relabel.model_copy(update={"tiers": tiers, "budget_usd": c.budget_usd})


def select_params_for(sel, calibrated: bool):
    """Select params as select applies them with a calibration: the fixed document-similarity default
    (``max_pos_sim``) gives way to the calibrated model unless the user set it explicitly."""
    if calibrated and "max_pos_sim" not in sel.model_fields_set and sel.max_pos_sim is not None:
        return sel.model_copy(update={"max_pos_sim": None})
    return sel


# ---- rows and signals ------------------------------------------------------------------------------------------------

@dataclass
class Rows:
    table: pa.Table            # scored rows of the loaded queries (query_id, doc_id, rank, retriever_score, ...)
    arrays: Any                # select.core.Rows: what select's own selection reads (positives include ingest's)
    sig: Signals               # every signal the features read

    @property
    def qids(self) -> list[str]:
        return self.arrays.qids

    @property
    def group(self) -> np.ndarray:
        return self.arrays.group

    @property
    def is_pos(self) -> np.ndarray:
        return self.arrays.is_positive


def load_rows(ingest: Artifact, scores: Artifact, qids: list[str], sel, pos_sim_spec: dict[str, Any] | None,
              lexical_depth: int | None, lexical: Any = None) -> Rows:
    """Scored rows of ``qids`` (in that order) with every signal the features need."""
    from negmine.select.core import table_rows
    from negmine.select.signals import block_pos_sim, corpus_texts, query_rows

    t, _group, is_pos = query_rows(ingest, scores, qids, ["retriever_score", "teacher_score"])
    arrays = table_rows(t, qids)
    arrays.is_positive = is_pos
    group = arrays.group
    d_list = t["doc_id"].to_pylist()
    rs = t["retriever_score"].to_numpy(zero_copy_only=False).astype(np.float64)
    pos_sim = None
    if pos_sim_spec is not None and len(group):
        pos_sim = block_pos_sim(corpus_texts(ingest, set(d_list)), d_list, group, is_pos, pos_sim_spec)
    lex = None
    if lexical_depth is not None and len(group):
        if lexical is None:
            from negmine.select.signals import LexicalRanker

            lexical = LexicalRanker(ingest)
        lex = lexical.ranks(t["query_id"].to_pylist(), d_list, lexical_depth)
    return Rows(t, arrays, signals_of(arrays, rs, sel.pos_ref, pos_sim, lex))


def simulate(rows: Rows, sel, k: int, fn_prob: np.ndarray | None, threshold: float | None, naive: bool = False):
    """select's own selection (select.core.select_rows) over the loaded rows with ``k`` negatives and the
    calibrated ``threshold`` (no near-duplicate check: a scores table has no texts); ``naive``: no select rule and
    short queries kept (naive top-k)."""
    from negmine.select.core import select_rows

    params = sel.model_copy(update={"num_negatives": k, "short_policy": "keep" if naive else sel.short_policy})
    values = dict.fromkeys(sel.rules(), None) if naive else {}  # every select rule off
    return select_rows(rows.arrays, params, {"pos_sim": rows.sig.pos_sim, "lex_rank": rows.sig.lex_rank,
                                             "fn_prob": fn_prob}, values | {"fn_threshold": threshold})


# ---- sampling and judging -------------------------------------------------------------------------------------

def sample_queries(scores: Artifact, ingest: Artifact, params: CalibrateParams) -> tuple[list[str], list[str]]:
    """(sample, other queries for coverage): queries that have candidates and a scored positive, seeded."""
    q_has_cand: set[str] = set()
    q_has_pos: set[str] = set()
    for t in scores.iter_shards(None, columns=["query_id", "rank", "teacher_score", "is_positive"]):
        isp = pc.fill_null(t["is_positive"], False)
        cand = t.filter(pc.and_(pc.invert(isp), pc.is_valid(t["rank"])))
        q_has_cand.update(pc.unique(cand["query_id"]).to_pylist())
        pos = t.filter(pc.and_(isp, pc.is_valid(t["teacher_score"])))
        q_has_pos.update(pc.unique(pos["query_id"]).to_pylist())
    order = ingest.read("queries", columns=["query_id"])["query_id"].to_pylist()
    eligible = [q for q in order if q in q_has_cand and q in q_has_pos]
    if not eligible:
        raise InputError("no query has both candidates and a scored positive: nothing to calibrate on",
                         scores.path)
    n = math.ceil(params.fraction * len(eligible)) if params.fraction is not None else params.queries
    n = min(n, len(eligible))
    if n < params.folds:
        raise InputError(f"the judged sample would hold {n} queries (of {len(eligible)} with candidates and a "
                         f"scored positive), fewer than calibrate.folds={params.folds}: raise calibrate.queries "
                         "or lower calibrate.folds", "calibrate")
    rng = np.random.default_rng(params.seed)
    pick = np.sort(rng.choice(len(eligible), size=n, replace=False))
    sample = [eligible[i] for i in pick]
    picked = set(pick.tolist())
    rest = [q for i, q in enumerate(eligible) if i not in picked]
    if len(rest) > params.coverage_queries:
        keep = np.sort(rng.choice(len(rest), size=params.coverage_queries, replace=False))
        rest = [rest[i] for i in keep]
    return sample, rest


def plan_items(rows: Rows, n_sample: int, params: CalibrateParams, corpus_ids: list[str]) -> dict[str, list]:
    """Per sampled query: [(doc_id, kind, row index or -1)] — its top candidates, positives and controls, in a
    seeded order (controls and positives spread among the candidates)."""
    rng = np.random.default_rng(params.seed + 1)
    out: dict[str, list] = {}
    for gi in range(n_sample):
        q = rows.qids[gi]
        idx = np.flatnonzero(rows.group == gi)
        docs = rows.table["doc_id"].take(pa.array(idx)).to_pylist()
        ranks = rows.sig.ranks[idx]
        items = []
        cand = [(i, d) for i, d, r, p in zip(idx.tolist(), docs, ranks.tolist(), rows.is_pos[idx].tolist(),
                                               strict=True) if not p and r > 0]
        items += [(d, "candidate", i) for i, d in cand[: params.top]]
        below = cand[params.top:]
        if params.deep and below:
            for j in np.sort(rng.choice(len(below), size=min(params.deep, len(below)), replace=False)):
                items.append((below[j][1], "candidate", below[j][0]))
        if params.judge_positives:
            items += [(d, "positive", i) for i, d, p in zip(idx.tolist(), docs, rows.is_pos[idx].tolist(),
                                                             strict=True) if p]
        if params.controls and corpus_ids:
            pool = set(docs)
            picks: list[str] = []
            tries = 0
            while len(picks) < params.controls and tries < 20 * params.controls:
                d = corpus_ids[int(rng.integers(len(corpus_ids)))]
                tries += 1
                if d not in pool and d not in picks:
                    picks.append(d)
            items += [(d, "control", -1) for d in picks]
        perm = rng.permutation(len(items))
        out[q] = [items[i] for i in perm]
    return out


def judge_items(run_dir: Path, cfg, items: dict[str, list], ingest: Artifact, plan: bool,
                progress: bool = True) -> tuple[dict, Any, Any]:
    """Run the judge cascade over the items; returns (history {(q, d): [Judgment]}, client, judge params)."""
    from negmine.judge.engine import Judge, Work
    from negmine.judge.stage import _client, passage_chars, positives_by_grade
    from negmine.judge.tokens import get_tokenizer
    from negmine.select.signals import corpus_texts

    jp = judge_params(cfg)
    tok = get_tokenizer()
    qids = list(items)
    qtab = ingest.read("queries", columns=["query_id", "text"])
    qtext = dict(zip(qtab["query_id"].to_pylist(), qtab["text"].to_pylist(), strict=True))
    shown = positives_by_grade(ingest, set(qids))
    need = {d for v in items.values() for d, _, _ in v} | {d for q in qids for d in shown.get(q, [])[:jp.max_positives]}
    chars = passage_chars(jp)
    texts = {d: t[:chars] for d, t in corpus_texts(ingest, need).items()}
    work = Work({q: qtext[q] for q in qids},
                {q: [texts[d] for d in shown.get(q, [])[:jp.max_positives] if d in texts] for q in qids},
                {q: [(d, texts[d]) for d, _, _ in v if d in texts] for q, v in items.items()})
    client, cache = _client(jp, run_dir, plan=plan)
    bar = None
    if progress and not plan:
        from negmine.progress import tqdm

        bar = tqdm(total=sum(len(v) for v in work.items.values()), desc="calibrate: judge", unit="pair",
                   disable=None)

    async def main() -> dict:
        try:
            judge = Judge(client, jp, tok, progress=bar)
            if plan or not qids:
                return await judge.cascade(work)
            # one query first: a judge that answers nothing fails here, after one request's retries
            first = Work(work.queries, work.positives, {qids[0]: work.items[qids[0]]})
            got = await judge.cascade(first)
            if not any(hs and hs[-1].label is not None for hs in got.values()) and not client.budget_hit:
                err = next((hs[-1].error for hs in got.values() if hs and hs[-1].error), "no answer")
                raise RuntimeFailure(f"calibrate: the judge at {client.endpoint(0)} gave no usable label (first "
                                     f"error: {err}); nothing was written")
            rest = Work(work.queries, work.positives, {q: v for q, v in work.items.items() if q != qids[0]})
            return got | await judge.cascade(rest)
        finally:
            await client.aclose()

    try:
        history = asyncio.run(main())
    finally:
        cache.close()
        if bar is not None:
            bar.close()
    client.tokenizer = tok
    return history, client, jp


# ---- the stage -------------------------------------------------------------------------------------------------

def _fingerprint_params(cfg, sel, features: list[str]) -> dict[str, Any]:
    """What makes a calibration: its own keys, the features, the judge (models, prompts and where it answers from,
    without credentials: another judge behind the same model name is another calibration) and select's rules."""
    from negmine.judge.client import tier_endpoint

    jp = judge_params(cfg)
    judge = {"tiers": [{"model": t.model, "logprobs": t.logprobs, "max_tokens": t.max_tokens,
                        "temperature": t.temperature, "endpoint": tier_endpoint(t)} for t in jp.tiers],
             **{k: getattr(jp, k) for k in ("prompt", "list_size", "max_positives", "passage_tokens",
                                              "query_tokens", "band", "routing", "escalate_unjudged")}}
    return {"calibrate": cfg.calibrate.fingerprint_dict(), "features": features, "judge": judge,
            "select": sel.fingerprint_dict()}


@dataclass
class Labels:
    """The judge's usable labels by kind: candidates (row index into Rows, flagged), controls and positives (their
    query index, flagged)."""

    cand_rows: np.ndarray
    y: np.ndarray
    ctl_y: np.ndarray
    ctl_g: np.ndarray
    pos_y: np.ndarray
    pos_g: np.ndarray


def collect_labels(items: dict[str, list], verdict: dict, flagged_labels: tuple[str, ...],
                   qpos: dict[str, int]) -> Labels:
    """Usable final verdicts of the judged items, split by kind (an unjudged pair is left out)."""
    out: dict[str, list] = {"cand_rows": [], "y": [], "ctl_y": [], "ctl_g": [], "pos_y": [], "pos_g": []}
    for q, v in items.items():
        for d, kind, i in v:
            j = verdict.get((q, d))
            if j is None or j.label is None:
                continue
            f = j.label in flagged_labels
            if kind == "candidate":
                out["cand_rows"].append(i)
                out["y"].append(f)
            elif kind == "control":
                out["ctl_y"].append(f)
                out["ctl_g"].append(qpos[q])
            else:
                out["pos_y"].append(f)
                out["pos_g"].append(qpos[q])
    return Labels(np.asarray(out["cand_rows"], dtype=np.int64), np.asarray(out["y"], dtype=np.float64),
                  np.asarray(out["ctl_y"], dtype=np.float64), np.asarray(out["ctl_g"], dtype=np.int64),
                  np.asarray(out["pos_y"], dtype=np.float64), np.asarray(out["pos_g"], dtype=np.int64))


def threshold_curve(rows: Rows, sel, k: int, p_sel: np.ndarray, p_all: np.ndarray, est_row: np.ndarray,
                    in_sample: np.ndarray, naive, naive_est: float) -> list[dict[str, Any]]:
    """For each threshold (quantiles of the candidates' predictions, then off = inf): the estimated FN rate of the
    simulated selection on the sample, its ratio to naive top-k's, the coverage over every loaded query and the
    hardness proxy (mean kept teacher score ÷ naive top-k's)."""
    cands = ~rows.is_pos
    naive_score = float(rows.sig.scores[naive.kept].mean()) if naive.kept.any() else float("nan")
    has_cand = np.bincount(rows.group[cands], minlength=len(rows.qids)) > 0
    grid = np.unique(np.quantile(p_all[cands], np.linspace(0, 1, 101))) if cands.any() else np.zeros(0)
    curve = []
    for t in [*grid.tolist(), math.inf]:
        selx = simulate(rows, sel, k, p_sel, None if math.isinf(t) else t)
        ks = selx.kept & in_sample
        est = float(est_row[ks].mean()) if ks.any() else float("nan")
        cov = float((selx.n_kept[has_cand] >= k).mean()) if has_cand.any() else 0.0
        hard = float(rows.sig.scores[selx.kept].mean() / naive_score) if selx.kept.any() and naive_score > 0 \
            else float("nan")
        curve.append({"threshold": t, "est_fn": est, "est_fn_ratio": est / naive_est if naive_est > 0 else math.nan,
                      "coverage": cov, "kept": int(selx.kept.sum()), "hardness_proxy": hard})
    return curve


def choose_threshold(curve: list[dict[str, Any]], target: float, min_coverage: float, min_hardness: float | None,
                     any_flagged: bool) -> tuple[dict[str, Any], str | None]:
    """The least aggressive threshold (highest) whose estimate meets ``target`` within the coverage and hardness
    limits; when none does, the lowest estimate within the limits, with the warning to give ({k} = k)."""
    if not any_flagged:
        return curve[-1], None
    feasible = [c for c in curve if c["coverage"] >= min_coverage and (
        min_hardness is None or math.isnan(c["hardness_proxy"]) or c["hardness_proxy"] >= min_hardness)]
    meets = [c for c in feasible if c["est_fn"] <= target + 1e-12]
    if meets:
        return max(meets, key=lambda c: c["threshold"]), None
    chosen = min(feasible or curve, key=lambda c: (c["est_fn"], -c["threshold"]))
    floor = "" if min_hardness is None else f" and the negatives keep {min_hardness:g} of naive top-k's mean score"
    return chosen, (f"no threshold meets the target (estimated FN <= {target:.3f}) while {min_coverage:.0%} of the "
                    f"queries keep {{k}} negatives{floor}; chose the lowest estimate within those limits "
                    f"({chosen['est_fn']:.3f}, coverage {chosen['coverage']:.3f}, hardness "
                    f"{chosen['hardness_proxy']:.3f})")


def run_calibrate(run_dir: str | Path, cfg, *, dry_run: bool = False, progress: bool = True):
    """The stage. Returns a StageResult, or with ``dry_run`` the plan dict (calls, tokens, cost per tier)."""
    from negmine.judge.stage import BudgetExhausted, _public_params, _tier_stats
    from negmine.select.signals import embedding_spec

    run_dir = Path(run_dir)
    params: CalibrateParams = cfg.calibrate
    t0 = time.time()
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    scores = Artifact.open(run_dir / "scores", stage="score", hint="run `negmine score` first")
    check_inputs(ingest, scores)
    features = params.feature_names()
    sel = select_params_for(cfg.select, calibrated=True)
    if problems := sel.problems():
        raise InputError("; ".join(problems), "select")
    k = sel.num_negatives
    writer = StageWriter(run_dir / DIR, STAGE,
                         {"calibrate": params.model_dump(mode="json"), "judge": _public_params(judge_params(cfg)),
                          "select": sel.model_dump(mode="json")},
                         {"ingest": ingest.fingerprint, "scores": scores.fingerprint}, tables(features),
                         main_table="judged", fingerprint_params=_fingerprint_params(cfg, sel, features))
    if not dry_run and (done := writer.up_to_date()) is not None:
        log.info("calibrate: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True)

    sample, rest = sample_queries(scores, ingest, params)
    needs = needed_signals(features)
    spec = None
    if "pos_sim" in needs or sel.max_pos_sim is not None:
        spec = embedding_spec(scores.params, sel.pos_sim_model, sel.encoder_backend)
    lex_depth = max(params.lexical_depth, sel.max_lexical_rank or 0) if ("lex_rank" in needs or
                                                                          sel.max_lexical_rank) else None
    if sel.max_pos_sim == "auto":  # set explicitly next to a calibration: resolve it as select will
        from negmine.select.signals import auto_pos_sim_threshold

        assert spec is not None  # max_pos_sim is set, so the encoder spec is

        sel = sel.model_copy(update={"max_pos_sim": auto_pos_sim_threshold(
            ingest, scores, spec, sel.pos_sim_quantile, sel.seed)["threshold"]})
    rows = load_rows(ingest, scores, sample + rest, sel, spec, lex_depth)
    corpus_ids = ingest.read("corpus", columns=["doc_id"])["doc_id"].to_pylist() if params.controls else []
    items = plan_items(rows, len(sample), params, corpus_ids)
    history, client, jp = judge_items(run_dir, cfg, items, ingest, plan=dry_run, progress=progress)
    if dry_run:
        first = next((i for i, p in enumerate(client.pending) if p), None)
        return {"tokenizer": client.tokenizer.name, "exact_tokens": client.tokenizer.exact,
                "negatives": sum(len(v) for v in items.values()), "queries": len(items),
                "first_pending_tier": first, "tiers": _tier_stats(client, jp)}
    if client.budget_hit:
        raise BudgetExhausted(f"budget of ${params.budget_usd:g} reached after spending ${client.spent:.4f}; the "
                              "answers so far are cached: re-run to continue", "--budget-usd")

    flagged_labels = ("relevant", "partial") if params.flagged == "relevant_or_partial" else ("relevant",)
    verdict: dict[tuple[str, str], Any] = {key: hs[-1] for key, hs in history.items() if hs}
    n_items = sum(len(v) for v in items.values())
    n_judged = sum(1 for j in verdict.values() if j.label is not None)
    if n_judged == 0:
        err = next((j.error for j in verdict.values() if j.error), "no answer")
        raise RuntimeFailure(f"calibrate: the judge gave no usable label for any of the {n_items} pairs "
                             f"(first error: {err}); nothing was written")
    if n_judged < 0.5 * n_items:
        log.warning("calibrate: only %d of %d judged pairs got a usable label", n_judged, n_items)

    lab = collect_labels(items, verdict, flagged_labels, {q: i for i, q in enumerate(rows.qids)})
    cand_rows_a, y, ctl_y, ctl_g, pos_y, pos_g = lab.cand_rows, lab.y, lab.ctl_y, lab.ctl_g, lab.pos_y, lab.pos_g
    if len(ctl_y) >= 10 and np.mean(ctl_y) > 0.5:
        raise InputError(f"the judge called {int(np.sum(ctl_y))} of {len(ctl_y)} random control documents "
                         "relevant: it cannot tell relevant from irrelevant text, so no model is fitted (try a "
                         "stronger judge model)", "calibrate.tiers")
    if len(pos_y) >= 10 and np.mean(pos_y) < 0.5:
        log.warning("calibrate: the judge called only %d of %d known positives relevant: its labels are weak",
                    int(np.sum(pos_y)), len(pos_y))
    X_all = feature_matrix(rows.sig, features)
    groups = rows.group[cand_rows_a]
    if len(np.unique(groups)) < params.folds:
        raise InputError(f"only {len(np.unique(groups))} sampled queries have judged candidates, fewer than "
                         f"calibrate.folds={params.folds}", "calibrate")
    warnings: list[str] = []
    if y.sum() == 0:
        warnings.append(f"the judge labelled none of the {len(y)} judged candidates relevant: there are no false "
                        "negatives to learn from, so the calibration drops nothing")
        for w in warnings:
            log.warning("calibrate: %s", w)
    fr = fit(X_all[cand_rows_a], y, groups, features, params.folds, params.seed,
             controls=np.asarray(ctl_y, dtype=np.float64), control_groups=np.asarray(ctl_g),
             positives=np.asarray(pos_y, dtype=np.float64), positive_groups=np.asarray(pos_g),
             noise=params.judge_noise)
    noise = fr.noise
    p_all = fr.model.predict(X_all)
    p_sel = p_all.copy()
    p_sel[cand_rows_a] = fr.oof

    # estimates per threshold on the sample (judged: posterior from the judge's label; else the model)
    n_s = len(sample)
    in_sample = rows.group < n_s
    judged_flag = np.zeros(len(p_all), dtype=bool)
    is_judged = np.zeros(len(p_all), dtype=bool)
    judged_flag[cand_rows_a] = y > 0
    is_judged[cand_rows_a] = True
    est_row = np.where(is_judged, noise.posterior(judged_flag, p_sel), p_all)
    naive = simulate(rows, sel, k, None, None, naive=True)
    nk = naive.kept & in_sample
    naive_est = float(est_row[nk].mean()) if nk.any() else float("nan")
    target = params.target_fn if params.target_fn is not None else cast(float, params.target_ratio) * naive_est
    curve = threshold_curve(rows, sel, k, p_sel, p_all, est_row, in_sample, naive, naive_est)
    chosen, why = choose_threshold(curve, target, params.min_coverage, params.min_hardness, bool(y.sum()))
    if why:
        warnings.append(why.replace("{k}", str(k)))
        log.warning("calibrate: %s", warnings[-1])
    threshold = None if math.isinf(chosen["threshold"]) else float(chosen["threshold"])
    ci, ratio_ci = _bootstrap(rows, sel, k, p_sel, threshold, est_row, n_s, naive, params.seed)

    # outputs
    flag_oof = noise.flag_prob(fr.oof)
    rel_curve = reliability(y, flag_oof)
    model = fr.model
    model.threshold = threshold
    model.meta = {
        "k": k, "target": {"fn": params.target_fn, "ratio": params.target_ratio, "value": target},
        "min_coverage": params.min_coverage, "lexical_depth": params.lexical_depth,
        "pos_sim_encoder": spec, "select_rules": {kk: v for kk, v in sel.rules().items() if v is not None},
        "judge": {"tiers": [t.model for t in jp.tiers], "fpr": round(noise.fpr, 6),
                  "sensitivity": round(noise.sensitivity, 6)},
        "C": fr.C, "cv": fr.cv, "sample_queries": n_s, "judged_candidates": int(len(y)),
        "estimated_fn": chosen["est_fn"], "estimated_fn_ci95": ci, "naive_estimated_fn": naive_est,
        "estimated_fn_ratio": chosen["est_fn_ratio"], "estimated_fn_ratio_ci95": ratio_ci,
        "coverage": chosen["coverage"], "run": str(run_dir.resolve()),
    }
    writer.begin()
    judged = _judged_table(rows, items, verdict, flagged_labels, X_all, features, fr, p_all, cand_rows_a)
    writer.write_shard("judged", 0, judged)
    audit = _audit_table(items, history, jp.prompt)
    writer.write_shard("audit", 0, audit)
    writer.write_shard("curve", 0, pa.Table.from_pylist(curve, schema=CURVE))
    model.save(writer.staging / MODEL_FILE)
    try:
        from negmine.calibrate.plots import plot_calibration

        plot_calibration(rel_curve, curve, threshold, writer.staging / "reliability.png")
    except Exception as e:  # a plot never fails the stage
        log.warning("calibrate: reliability plot not written (%s)", e)
    tier_stats = _tier_stats(client, jp)
    stats = {
        "sample_queries": n_s, "coverage_queries": len(rest), "pairs": n_items, "pairs_judged": n_judged,
        "candidates_judged": int(len(y)), "candidates_flagged": int(y.sum()),
        "controls_judged": len(ctl_y), "controls_flagged": int(np.sum(ctl_y)),
        "positives_judged": len(pos_y), "positives_flagged": int(np.sum(pos_y)),
        "judge_fpr": round(noise.fpr, 6), "judge_sensitivity": round(noise.sensitivity, 6),
        "cv_auc": next(c["auc"] for c in fr.cv if c["C"] == fr.C), "C": fr.C,
        "threshold": threshold, "target_fn": target, "estimated_fn": chosen["est_fn"],
        "estimated_fn_ci95": ci, "naive_estimated_fn": naive_est, "estimated_fn_ratio": chosen["est_fn_ratio"],
        "estimated_fn_ratio_ci95": ratio_ci, "coverage": chosen["coverage"],
        "hardness_proxy": chosen["hardness_proxy"], "reliability": rel_curve, "warnings": warnings,
        "tiers": tier_stats, "requests_sent": sum(s.requests for s in client.stats),
        "cost_usd": round(sum(s.cost_usd for s in client.stats), 6),
        "cost_usd_all_runs": round(float(pc.sum(audit["cost_usd"]).as_py() or 0.0), 6),
    }
    art = writer.finish(stats=stats, timings={"calibrate": round(time.time() - t0, 3)})
    log.info("calibrate: %s", format_summary(stats).replace("\n", "; "))
    return StageResult(art, False, time.time() - t0)


def _bootstrap(rows: Rows, sel, k: int, p_sel: np.ndarray, threshold: float | None, est_row: np.ndarray,
               n_s: int, naive, seed: int) -> tuple[list[float], list[float]]:
    """95% intervals of the estimated FN rate and of its ratio to naive top-k, resampling the sample queries."""
    selx = simulate(rows, sel, k, p_sel, threshold)
    g = rows.group
    m = selx.kept & (g < n_s)
    fn_q = np.bincount(g[m], weights=est_row[m], minlength=n_s)[:n_s]
    n_q = np.bincount(g[m], minlength=n_s)[:n_s].astype(np.float64)
    mn = naive.kept & (g < n_s)
    fn0 = np.bincount(g[mn], weights=est_row[mn], minlength=n_s)[:n_s]
    n0 = np.bincount(g[mn], minlength=n_s)[:n_s].astype(np.float64)
    rng = np.random.default_rng(seed + 2)
    idx = rng.integers(0, n_s, size=(BOOTSTRAP, n_s))
    with np.errstate(invalid="ignore", divide="ignore"):
        est = fn_q[idx].sum(1) / n_q[idx].sum(1)
        ratio = est / (fn0[idx].sum(1) / n0[idx].sum(1))

    def iv(a: np.ndarray) -> list[float]:
        a = a[np.isfinite(a)]
        return [round(float(np.quantile(a, 0.025)), 6), round(float(np.quantile(a, 0.975)), 6)] if len(a) else []

    return iv(est), iv(ratio)


def _judged_table(rows: Rows, items, verdict, flagged_labels, X_all, features, fr, p_all, cand_rows) -> pa.Table:
    oof_of = dict(zip(cand_rows.tolist(), fr.oof.tolist(), strict=True))
    fold_of = dict(zip(cand_rows.tolist(), fr.folds.tolist(), strict=True))
    out: dict[str, list] = {f.name: [] for f in judged_schema(features)}
    for q, v in items.items():
        for d, kind, i in v:
            j = verdict.get((q, d))
            label = None if j is None else j.label
            out["query_id"].append(q)
            out["doc_id"].append(d)
            out["kind"].append(kind)
            out["rank"].append(int(rows.sig.ranks[i]) if i >= 0 and rows.sig.ranks[i] > 0 else None)
            out["teacher_score"].append(float(rows.sig.scores[i]) if i >= 0 else None)
            out["label"].append(label)
            out["flagged"].append(None if label is None else label in flagged_labels)
            out["error"].append(None if j is None else j.error)
            out["fold"].append(fold_of.get(i))
            out["p_oof"].append(oof_of.get(i))
            cand = i >= 0 and kind == "candidate"
            out["p_model"].append(float(p_all[i]) if cand else None)
            post = None
            if cand and label is not None:
                post = float(fr.noise.posterior(np.array([label in flagged_labels]), np.array([p_all[i]]))[0])
            out["p_posterior"].append(post)
            for c, n in enumerate(features):
                x = float(X_all[i, c]) if i >= 0 else float("nan")
                out[f"f_{n}"].append(x if math.isfinite(x) else None)
    return pa.table(out, schema=judged_schema(features))


def _audit_table(items, history, mode: str) -> pa.Table:
    from negmine.judge.prompts import VERSIONS, prompt_hash
    from negmine.judge.schemas import RELABEL_AUDIT

    version, phash = VERSIONS[mode], prompt_hash(mode)
    rows = [j.audit_row(q, d, 0, version, phash, f"calibration:{kind}")
            for q, v in items.items() for d, kind, _ in v for j in history.get((q, d), [])]
    return pa.Table.from_pylist(rows, schema=RELABEL_AUDIT)


def format_summary(stats: dict[str, Any]) -> str:
    ci = stats.get("estimated_fn_ci95") or []
    rci = stats.get("estimated_fn_ratio_ci95") or []
    t = stats.get("threshold")
    lines = [
        f"judged {stats['pairs_judged']:,} of {stats['pairs']:,} pairs over {stats['sample_queries']} queries "
        f"({stats['candidates_flagged']} of {stats['candidates_judged']} candidates flagged as false negatives)",
        f"judge: false-positive rate {stats['judge_fpr']:.3f} (controls {stats['controls_flagged']}/"
        f"{stats['controls_judged']}), sensitivity {stats['judge_sensitivity']:.3f} (positives "
        f"{stats['positives_flagged']}/{stats['positives_judged']})",
        f"model: cross-validated AUC {stats['cv_auc']:.3f} (C={stats['C']:g})",
        "threshold: " + ("none (drops nothing)" if t is None else f"p(false negative) >= {t:.4f}"),
        f"estimated FN rate {stats['estimated_fn']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        + f" vs naive top-k {stats['naive_estimated_fn']:.3f} (ratio {stats['estimated_fn_ratio']:.2f}"
        + (f" [{rci[0]:.2f}, {rci[1]:.2f}]" if rci else "") + f"), coverage {stats['coverage']:.3f}",
        f"cost ${stats['cost_usd']:.4f} ({stats['requests_sent']} requests sent)",
    ]
    lines += [f"warning: {w}" for w in stats.get("warnings", [])]
    return "\n".join(lines)


# ---- what select uses ------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    model: FNModel
    path: Path
    fingerprint: str
    stats: dict[str, Any]
    # "query_id\x1fdoc_id" → p(false negative) given the judge's label, for the pairs the calibration judged
    # (select uses it instead of the model's prediction: a judged pair's label is better evidence)
    posterior: dict[str, float] = field(default_factory=dict)

    @property
    def needs(self) -> set[str]:
        return needed_signals(self.model.features)

    @property
    def lexical_depth(self) -> int:
        return int(self.model.meta.get("lexical_depth") or 100)

    @property
    def pos_sim_spec(self) -> dict[str, Any] | None:
        return self.model.meta.get("pos_sim_encoder")

    def summary(self, k: int) -> dict[str, Any]:
        """What select records and prints about the calibration it applied."""
        m = self.model.meta
        return {"path": str(self.path), "threshold": self.model.threshold, "estimated_fn": m.get("estimated_fn"),
                "estimated_fn_ci95": m.get("estimated_fn_ci95"), "estimated_fn_ratio": m.get("estimated_fn_ratio"),
                "k": m.get("k"), "k_mismatch": m.get("k") is not None and m.get("k") != k}


def find_calibration(run_dir: Path, setting: str | None) -> Calibration | None:
    """The calibration select applies: ``auto`` = RUN/calibration when it exists, ``off`` = none, else a path (a
    calibration directory or its model.json)."""
    if setting is None or str(setting).lower() in ("off", "none", "false"):
        return None
    if str(setting).lower() == "auto":
        d = Path(run_dir) / DIR
        if not (d / "_manifest.json").is_file():
            return None
    else:
        d = Path(setting)
        if d.is_file():
            d = d.parent
        if not (d / "_manifest.json").is_file():
            raise InputError("not a calibration (no _manifest.json; run `negmine calibrate` there)", d)
    art = Artifact.open(d, stage=STAGE)
    if str(setting).lower() == "auto":  # the run's own calibration: not fitted on older scores, shards intact
        check_inputs(art)
    try:
        model = FNModel.load(d / MODEL_FILE)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"unreadable calibration model: {e}", d / MODEL_FILE) from None
    judged = art.read("judged", columns=["query_id", "doc_id", "kind", "p_posterior"])
    judged = judged.filter(pc.is_valid(judged["p_posterior"]))
    posterior = dict(zip(pc.binary_join_element_wise(judged["query_id"], judged["doc_id"], "\x1f").to_pylist(),
                         judged["p_posterior"].to_pylist(), strict=True))
    return Calibration(model, d, art.fingerprint, art.stats, posterior)


def fn_probabilities(cal: Calibration, sig: Signals, keys: pa.Array | None = None) -> np.ndarray:
    """p(false negative) of every row: the model's prediction, or for a pair the calibration judged (``keys``:
    ``query_id\x1fdoc_id`` per row) the posterior given the judge's label."""
    p = cal.model.predict(feature_matrix(sig, cal.model.features))
    if keys is not None and cal.posterior and len(keys):
        hit = np.flatnonzero(pc.is_in(keys, value_set=pa.array(list(cal.posterior), pa.string())).to_numpy(
            zero_copy_only=False))
        if len(hit):
            vals = pc.take(keys, pa.array(hit)).to_pylist()
            p[hit] = [cal.posterior[v] for v in vals]
    return p


__all__ = ["Calibration", "JudgeNoise", "find_calibration", "fn_probabilities", "run_calibrate"]
