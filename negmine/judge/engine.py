"""Runs a cascade over in-memory negatives: prompts → client → strict parse → one re-ask → routing.

No artifact I/O here (stage.py does that) and no HTTP (client.py does that): this module glues the pure pieces
(prompts, parse, cascade) to the client, and produces one :class:`Judgment` per (query, negative, tier).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from negmine.judge import parse as P
from negmine.judge.cascade import DISTRUSTED, FLAGGED, Verdict, get_router, group, is_distrusted
from negmine.judge.client import Answer, JudgeClient
from negmine.judge.params import RelabelParams
from negmine.judge.prompts import VERSIONS, listwise_messages, pointwise_messages, prompt_hash, reask_messages
from negmine.judge.tokens import Tokenizer, message_tokens

Key = tuple[str, str]


@dataclass
class Judgment:
    """What one tier said about one negative (one audit row)."""

    tier: int
    model: str
    label: str | None
    prob: float | None
    error: str | None
    key: str                  # cache key of the (first) request = batch custom_id
    cached: bool
    prompt_tokens: int        # of the request(s) this negative was part of
    completion_tokens: int
    group_size: int           # negatives judged by that request
    cost_usd: float           # this negative's share of the request cost
    finish_reason: str | None
    attempts: int
    reasked: bool

    def verdict(self) -> Verdict:
        return Verdict(self.label, self.prob, self.error)

    def audit_row(self, query_id: str, doc_id: str, refill_round: int, prompt_version: str, prompt_hash: str,
                  action: str | None) -> dict[str, Any]:
        """This judgment as a row of the audit table (``negmine.judge.schemas.RELABEL_AUDIT``)."""
        return {"query_id": query_id, "doc_id": doc_id, "refill_round": refill_round, "tier": self.tier + 1,
                "model": self.model, "label": self.label, "prob": self.prob,
                "status": "judged" if self.label else "unjudged", "error": self.error,
                "prompt_version": prompt_version, "prompt_hash": prompt_hash, "request_key": self.key,
                "cached": self.cached, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "group_size": self.group_size,
                "cost_usd": self.cost_usd, "finish_reason": self.finish_reason, "attempts": self.attempts,
                "reasked": self.reasked, "action": action}


@dataclass
class Work:
    """The texts a cascade needs: query texts, the positives shown as reference, and the negatives to judge."""

    queries: dict[str, str]
    positives: dict[str, list[str]]
    items: dict[str, list[tuple[str, str]]]  # query_id → [(doc_id, passage text)] in rank order
    # canary passages (``relabel.canary``): (doc_id, text); one is slipped into each listwise request, never a
    # passage of the request's own query nor one in ``canary_exclude[query]``
    canary_pool: Sequence[tuple[str, str]] = ()
    canary_exclude: dict[str, set[str]] | None = None


def pick_canary(pool: Sequence[tuple[str, str]], qid: str, exclude: set[str], seed_parts: Sequence[str],
                m: int, query: str = "", draws: int = 8) -> tuple[str, int] | None:
    """(text, 0-based position among m + 1 passages) of the canary for one request, or None when the pool has
    no usable passage. Of ``draws`` seeded draws from the pool (none of ``exclude``, the query's own documents), the
    one sharing the fewest words with the query: a random document is rarely relevant, one with no word of the
    query even more rarely. Deterministic in the request's content, so a re-run sends the same request (its cached
    answer is reused)."""
    if not pool:
        return None
    h = hashlib.blake2b("\x1f".join([qid, *seed_parts]).encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(h, "big"))
    words = _words(query)
    best: tuple[int, str] | None = None
    for _ in range(draws):
        doc_id, text = pool[rng.randrange(len(pool))]
        if doc_id in exclude:
            continue
        overlap = len(words & _words(text))
        if best is None or overlap < best[0]:
            best = (overlap, text)
    return None if best is None else (best[1], rng.randrange(m + 1))


def _distrusted(res: Sequence[Judgment]) -> bool:
    return bool(res) and all(is_distrusted(j.error) for j in res)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{3,}", text.lower())}


class Judge:
    def __init__(self, client: JudgeClient, params: RelabelParams, tok: Tokenizer, progress=None):
        self.client = client
        self.params = params
        self.tok = tok
        self.mode = params.prompt
        self.version = VERSIONS[self.mode]
        self.prompt_hash = prompt_hash(self.mode)
        self.progress = progress  # a tqdm-like object with update(n), or None

    # -- one request (+ its re-ask) -------------------------------------------------------------------------------
    def _messages(self, qtext: str, positives: list[str], texts: list[str]) -> list[dict[str, str]]:
        p = self.params
        if self.mode == "pointwise":
            return pointwise_messages(qtext, texts[0], self.tok, p.passage_tokens, p.query_tokens)
        return listwise_messages(qtext, positives[:p.max_positives], texts, self.tok, p.passage_tokens,
                                 p.query_tokens)

    def _request(self, tier: int, messages: list[dict[str, str]], m: int):
        return self.client.make_request(tier, self.mode, messages, self.version,
                                        message_tokens(self.tok, messages), m)

    def _parse(self, ans: Answer, m: int) -> P.Parsed:
        if ans.error is not None:
            return P.Parsed(error=ans.error)
        if self.mode == "pointwise":
            out = P.parse_pointwise(ans.content, ans.finish_reason)
            if out.error is None and ans.logprobs:
                prob = P.pointwise_prob(ans.logprobs)
                if prob is not None:
                    out.probs[1] = prob
            return out
        out = P.parse_listwise(ans.content, m, ans.finish_reason)
        if out.error is None and ans.logprobs:
            out.probs = P.listwise_probs(ans.content or "", ans.logprobs, out.labels)
        return out

    async def judge_group(self, tier: int, qtext: str, positives: list[str],
                          docs: Sequence[tuple[str, str]], canary: tuple[str, int] | None = None) -> list[Judgment]:
        """One listwise (or pointwise) request and its re-ask. ``canary`` = (text, position): an unrelated passage
        slipped in at that position; when the judge calls it relevant together with at least
        ``canary_share`` of the real candidates (what an instruction injected into a passage makes a gullible
        judge do), every verdict of the request is distrusted: unjudged, so the next tier judges them again and the
        last tier neither promotes nor trusts them."""
        texts = [t for _, t in docs]
        if canary is not None:
            texts.insert(canary[1], canary[0])
        m = len(texts)
        messages = self._messages(qtext, positives, texts)
        first = await self.client.complete(self._request(tier, messages, m))
        parsed = self._parse(first, m)
        answers = [first]
        reasked = False
        if first.error is None and not parsed.complete(m):
            reasked = True
            again = reask_messages(messages, first.content, parsed.reason(m), self.mode, m)
            second = await self.client.complete(self._request(tier, again, m))
            answers.append(second)
            p2 = self._parse(second, m)
            if second.error is not None:
                p2 = P.Parsed(error=f"re-ask not answered: {second.error}")
            parsed = P.merge(parsed, p2)
        pt = sum(a.prompt_tokens for a in answers)
        ct = sum(a.completion_tokens for a in answers)
        cost = sum(a.cost_usd for a in answers)
        model = self.params.tiers[tier].model
        ids = list(range(1, m + 1))  # local ids of the real candidates, in order
        distrust = None
        if canary is not None:
            cid = ids.pop(canary[1])
            flagged = sum(parsed.labels.get(i) in FLAGGED for i in ids)
            if parsed.labels.get(cid) in FLAGGED and flagged >= self.params.canary_share * len(ids):
                distrust = (f"{DISTRUSTED}: the judge called the canary (an unrelated passage) relevant, and {flagged} "
                            f"of {len(ids)} candidates (instructions injected into a passage?)")
        n = len(ids)
        out = []
        for i in ids:
            label = parsed.labels.get(i)
            error = None
            if label is None:
                why = parsed.error or parsed.problems.get(i) or "no label"
                error = f"after re-ask: {why}" if reasked else why
            elif distrust is not None:
                label, error = None, distrust
            out.append(Judgment(tier, model, label, parsed.probs.get(i) if label else None, error, first.key,
                                all(a.cached for a in answers), pt, ct, n, cost / n, answers[-1].finish_reason,
                                sum(a.attempts for a in answers), reasked))
        if self.progress is not None:
            self.progress.update(n)
        return out

    # -- one tier, then the cascade -----------------------------------------------------------------------------
    async def judge_tier(self, tier: int, work: Work, keys: dict[str, list[tuple[str, str]]]) -> dict[Key, Judgment]:
        size = 1 if self.mode == "pointwise" else self.params.list_size
        jobs = []
        for qid, docs in keys.items():
            for chunk in group(docs, size):
                jobs.append((qid, chunk))

        async def run(qid: str, chunk: list[tuple[str, str]]) -> list[tuple[Key, Judgment]]:
            qtext, pos = work.queries[qid], work.positives.get(qid, [])
            if not (self.params.canary and self.mode == "listwise" and len(chunk) >= self.params.canary_min_group):
                res = await self.judge_group(tier, qtext, pos, chunk)
                return [((qid, d), j) for (d, _), j in zip(chunk, res, strict=True)]
            own = {d for d, _ in work.items.get(qid, ())} | (work.canary_exclude or {}).get(qid, set())
            ids = [d for d, _ in chunk]
            canary = pick_canary(work.canary_pool, qid, own, ids, len(chunk), qtext)
            res = await self.judge_group(tier, qtext, pos, chunk, canary)
            if canary is not None and _distrusted(res):
                # once more with another canary: an honest judge that erred on the first one passes it, a judge
                # that obeys an injected instruction flags everything again (the second request's verdicts stand)
                again = pick_canary(work.canary_pool, qid, own, [*ids, "again"], len(chunk), qtext)
                if again is not None:
                    first = res[0]
                    res = await self.judge_group(tier, qtext, pos, chunk, again)
                    for j in res:  # the audit keeps the cost of both requests
                        j.prompt_tokens += first.prompt_tokens
                        j.completion_tokens += first.completion_tokens
                        j.cost_usd += first.cost_usd
                        j.attempts += first.attempts
                        j.cached = j.cached and first.cached
            return [((qid, d), j) for (d, _), j in zip(chunk, res, strict=True)]

        results = await asyncio.gather(*(run(q, c) for q, c in jobs))
        return {k: j for part in results for k, j in part}

    async def cascade(self, work: Work) -> dict[Key, list[Judgment]]:
        """Every negative through tier 1; the routed ones through the next tiers. Returns the judgments per key."""
        route = get_router(self.params.routing)
        history: dict[Key, list[Judgment]] = {(q, d): [] for q, docs in work.items.items() for d, _ in docs}
        todo = work.items
        for t in range(len(self.params.tiers)):
            if not todo:
                break
            res = await self.judge_tier(t, work, todo)
            for k, j in res.items():
                history[k].append(j)
            if t == len(self.params.tiers) - 1:
                break
            nxt = set(route({k: j.verdict() for k, j in res.items()}, self.params.band,
                            self.params.escalate_unjudged))
            todo = {}
            for q, docs in work.items.items():
                sel = [(d, txt) for d, txt in docs if (q, d) in nxt]
                if sel:
                    todo[q] = sel
        return history
