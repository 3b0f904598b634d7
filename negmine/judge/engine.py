"""Runs a cascade over in-memory negatives: prompts → client → strict parse → one re-ask → routing.

No artifact I/O here (stage.py does that) and no HTTP (client.py does that): this module glues the pure pieces
(prompts, parse, cascade) to the client, and produces one :class:`Judgment` per (query, negative, tier).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from negmine.judge import parse as P
from negmine.judge.cascade import Verdict, get_router, group
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
                          docs: Sequence[tuple[str, str]]) -> list[Judgment]:
        m = len(docs)
        messages = self._messages(qtext, positives, [t for _, t in docs])
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
        out = []
        for i, (_doc_id, _t) in enumerate(docs, start=1):
            label = parsed.labels.get(i)
            error = None
            if label is None:
                why = parsed.error or parsed.problems.get(i) or "no label"
                error = f"after re-ask: {why}" if reasked else why
            out.append(Judgment(tier, model, label, parsed.probs.get(i) if label else None, error, first.key,
                                all(a.cached for a in answers), pt, ct, m, cost / m, answers[-1].finish_reason,
                                sum(a.attempts for a in answers), reasked))
        if self.progress is not None:
            self.progress.update(m)
        return out

    # -- one tier, then the cascade -----------------------------------------------------------------------------
    async def judge_tier(self, tier: int, work: Work, keys: dict[str, list[tuple[str, str]]]) -> dict[Key, Judgment]:
        size = 1 if self.mode == "pointwise" else self.params.list_size
        jobs = []
        for qid, docs in keys.items():
            for chunk in group(docs, size):
                jobs.append((qid, chunk))

        async def run(qid: str, chunk: list[tuple[str, str]]) -> list[tuple[Key, Judgment]]:
            res = await self.judge_group(tier, work.queries[qid], work.positives.get(qid, []), chunk)
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
