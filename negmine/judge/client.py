"""The judge client: the only module of negmine that speaks HTTP.

It uses the ``openai`` SDK's ``AsyncOpenAI`` against any OpenAI-compatible ``base_url`` (OpenAI, vLLM, llama.cpp
server, Ollama, the local ``negmine judge-server``). The SDK's own retries are switched off: this module retries
429 / 5xx / timeouts / connection errors / malformed bodies itself, with exponential backoff and jitter, honouring
``retry-after-ms`` and ``Retry-After``, so the behaviour is explicit and tested. Concurrency is bounded by a
semaphore; each request has a timeout. Answers are cached (see cache.py) before they are used.

Keys: read from the environment variable a tier names (``api_key_env``, default ``OPENAI_API_KEY``) when the
SDK client is built; they are never logged, stored, hashed into cache keys or written into any artifact.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from negmine.errors import InputError, RuntimeFailure
from negmine.judge.cache import ResponseCache, request_key
from negmine.judge.params import Tier
from negmine.judge.prompts import LISTWISE_SCHEMA

log = logging.getLogger("negmine")

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "no-key"  # local servers need none; the SDK refuses an empty key
BATCH_DISCOUNT = 0.5  # OpenAI's Batch API price relative to the online price


@dataclass
class Request:
    tier: int
    kind: str                       # listwise | pointwise
    messages: list[dict[str, str]]
    key: str
    body: dict[str, Any]            # model, messages, sampling params (response_format is added per tier)
    est_prompt_tokens: int
    est_completion_tokens: int


@dataclass
class Answer:
    key: str
    content: str | None = None
    finish_reason: str | None = None
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    attempts: int = 0
    error: str | None = None        # set ⇒ no answer (transport failure after retries, budget, not sent)


@dataclass
class TierStats:
    requests: int = 0               # HTTP attempts sent
    answered: int = 0               # new answers received
    cached: int = 0                 # answers taken from the cache
    failed: int = 0                 # gave up after retries
    not_sent: int = 0               # planned (dry run / batch) or stopped by the budget
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0           # new spending in this run
    est_prompt_tokens: int = 0      # planned requests (dry run / batch)
    est_completion_tokens: int = 0
    est_cost_usd: float = 0.0


def tier_cost(tier: Tier, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * tier.price_input + completion_tokens * tier.price_output) / 1e6


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _logprob_tokens(choice: dict[str, Any]) -> list[tuple[str, float, list[tuple[str, float]]]] | None:
    lp = choice.get("logprobs") or {}
    content = lp.get("content") if isinstance(lp, dict) else None
    if not content:
        return None
    return [(t.get("token", ""), t.get("logprob", 0.0),
             [(a.get("token", ""), a.get("logprob", 0.0)) for a in (t.get("top_logprobs") or [])])
            for t in content]


class JudgeClient:
    """Sends chat-completion requests for the tiers of a cascade, with cache, retries, concurrency and budget.

    ``plan=True`` (dry run, batch submit) sends nothing: a cache miss is recorded in ``pending`` and answered with
    ``error="not sent"``.
    """

    def __init__(self, tiers: list[Tier], cache: ResponseCache, *, concurrency: int = 16, timeout: float = 60.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 budget_usd: float | None = None, plan: bool = False, seed: int | None = None):
        self.tiers = tiers
        self.cache = cache
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.budget_usd = budget_usd
        self.plan = plan
        self.stats = [TierStats() for _ in tiers]
        self.pending: list[dict[str, Request]] = [{} for _ in tiers]
        self.spent = 0.0
        self._reserved = 0.0
        self.budget_hit = False
        self._sdk: dict[int, Any] = {}
        self._sem: asyncio.Semaphore | None = None
        self._format = [t.structured for t in tiers]  # "auto" settles on the first format the server accepts
        self._rng = random.Random(seed)
        self.last_error: str | None = None  # the last request that got no answer, for a failure's message

    # -- requests -----------------------------------------------------------------------------------------------
    def make_request(self, tier_idx: int, kind: str, messages: list[dict[str, str]], prompt_version: str,
                     est_prompt_tokens: int, m: int) -> Request:
        tier = self.tiers[tier_idx]
        params: dict[str, Any] = {"temperature": tier.temperature}
        if kind == "pointwise":
            params["max_tokens"] = 1
            est_out = 1
        else:
            params["max_tokens"] = tier.max_tokens
            est_out = min(tier.max_tokens, 6 + 12 * m)
        if tier.logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = 5
        key = request_key(tier.model, messages, params, prompt_version)
        body = {"model": tier.model, "messages": messages, **params}
        return Request(tier_idx, kind, messages, key, body, est_prompt_tokens, est_out)

    def _with_format(self, req: Request) -> dict[str, Any]:
        body = dict(req.body)
        fmt = self._format[req.tier]
        if req.kind == "listwise":
            if fmt in ("auto", "json_schema"):
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "judgments", "schema": LISTWISE_SCHEMA, "strict": True}}
            elif fmt == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    def sdk(self, tier_idx: int) -> Any:
        if tier_idx not in self._sdk:
            from openai import AsyncOpenAI

            tier = self.tiers[tier_idx]
            env = tier.api_key_env or DEFAULT_KEY_ENV
            key = os.environ.get(env)
            if not key:
                if tier.api_key_env:
                    raise InputError(f"environment variable {env} (api_key_env of tier {tier_idx + 1}) is not set",
                                     "relabel.tiers")
                key = NO_KEY
            base_url = tier.base_url or os.environ.get("OPENAI_BASE_URL") or None
            if base_url and (urlsplit(base_url).username or urlsplit(base_url).password):
                raise InputError(f"the base_url of tier {tier_idx + 1} holds credentials (user:password@): give the "
                                 "key through the tier's api_key_env instead", "relabel.tiers")
            self._sdk[tier_idx] = AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout,
                                              http_client=_http_client(self.timeout))
        return self._sdk[tier_idx]

    def endpoint(self, tier_idx: int) -> str:
        return tier_endpoint(self.tiers[tier_idx])

    async def aclose(self) -> None:
        for c in self._sdk.values():
            await c.close()
        self._sdk.clear()

    # -- answers ------------------------------------------------------------------------------------------------
    def _answer(self, req: Request, data: dict[str, Any], cached: bool, attempts: int, cost: float | None) -> Answer:
        choice = (data.get("choices") or [{}])[0]
        msg = choice.get("message") or {}
        usage = data.get("usage") or {}
        content = msg.get("content")
        pt = usage.get("prompt_tokens")
        ct = usage.get("completion_tokens")
        if pt is None:
            pt = req.est_prompt_tokens
        if ct is None:
            ct = max(1, len(content or "") // 4)
        tier = self.tiers[req.tier]
        return Answer(req.key, content, choice.get("finish_reason"), _logprob_tokens(choice), int(pt), int(ct),
                      tier_cost(tier, pt, ct) if cost is None else cost, cached, attempts)

    def _estimate(self, req: Request, worst: bool) -> float:
        tier = self.tiers[req.tier]
        out = req.body.get("max_tokens", req.est_completion_tokens) if worst else req.est_completion_tokens
        return tier_cost(tier, req.est_prompt_tokens, out)

    async def complete(self, req: Request) -> Answer:
        st = self.stats[req.tier]
        hit = self.cache.get(req.key)
        if hit is not None:
            st.cached += 1
            return self._answer(req, hit, True, 0, hit.get("_cost_usd"))
        if self.plan:
            if req.key not in self.pending[req.tier]:
                self.pending[req.tier][req.key] = req
                st.not_sent += 1
                st.est_prompt_tokens += req.est_prompt_tokens
                st.est_completion_tokens += req.est_completion_tokens
                st.est_cost_usd += self._estimate(req, worst=False)
            return Answer(req.key, error="not sent (dry run / batch)")
        worst = self._estimate(req, worst=True)
        if self.budget_usd is not None and self.spent + self._reserved + worst > self.budget_usd:
            self.budget_hit = True
            st.not_sent += 1
            return Answer(req.key, error=f"not sent: budget of ${self.budget_usd:g} reached")
        self._reserved += worst
        try:
            data, attempts, err = await self._send(req)
        finally:
            self._reserved -= worst
        if data is None:
            st.failed += 1
            self.last_error = f"tier {req.tier + 1} ({self.tiers[req.tier].model} at {self.endpoint(req.tier)}): {err}"
            return Answer(req.key, error=err, attempts=attempts)
        ans = self._answer(req, data, False, attempts, None)
        st.prompt_tokens += ans.prompt_tokens
        st.completion_tokens += ans.completion_tokens
        st.cost_usd += ans.cost_usd
        self.spent += ans.cost_usd  # paid for, whether usable or not
        if not self.cache.put(req.key, req.body["model"], data, ans.prompt_tokens, ans.completion_tokens,
                              ans.cost_usd):
            st.failed += 1
            err = (f"answer larger than the cache's cap of {self.cache.max_answer_bytes:,} bytes "
                   f"({len(json.dumps(data)):,} bytes): not stored, not used")
            self.last_error = f"tier {req.tier + 1} ({self.tiers[req.tier].model} at {self.endpoint(req.tier)}): {err}"
            return Answer(req.key, error=err, attempts=attempts)
        st.answered += 1
        return ans

    def _delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * (0.5 + 0.5 * self._rng.random())

    async def _send(self, req: Request) -> tuple[dict[str, Any] | None, int, str]:
        """(response dict, attempts, last error). Retries transient failures; fatal ones raise RuntimeFailure."""
        import openai

        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        sdk = self.sdk(req.tier)
        tier = self.tiers[req.tier]
        st = self.stats[req.tier]
        err = "no attempt"
        attempt = 0
        while attempt <= self.max_retries:
            delay: float | None = None
            try:
                async with self._sem:
                    st.requests += 1
                    # the SDK's generic post (auth, base_url, timeouts, typed errors) without building pydantic
                    # models: the raw JSON is what we cache, and this halves the client's CPU per request
                    text = await sdk.post("/chat/completions", body=self._with_format(req), cast_to=str)
                data = json.loads(text)
                if not isinstance(data, dict) or not data.get("choices"):
                    raise ValueError("response without choices")
                return data, attempt + 1, ""
            except openai.BadRequestError as e:
                if self._downgrade_format(req, e):
                    continue
                return None, attempt + 1, f"http 400: {_short(e)}"
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
                raise RuntimeFailure(f"tier {req.tier + 1} ({tier.model} at {self.endpoint(req.tier)}): "
                                     f"http {e.status_code}: {_short(e)}") from None
            except openai.RateLimitError as e:
                err = "http 429 (rate limited)"
                delay = parse_retry_after(getattr(e.response, "headers", None))
            except openai.APIConnectionError as e:  # APITimeoutError too: the SDK calls a refused connection a
                err = transport_error(e, self.timeout)  # timeout, so the cause decides
            except openai.APIStatusError as e:
                if self._downgrade_format(req, e):  # llama.cpp's server rejects json_schema with a 500
                    continue
                if e.status_code < 500 and e.status_code not in (408, 409, 425):
                    return None, attempt + 1, f"http {e.status_code}: {_short(e)}"
                err = f"http {e.status_code}"
                delay = parse_retry_after(getattr(e.response, "headers", None))
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, TypeError) as e:
                err = f"malformed response body ({type(e).__name__})"
            log.debug("tier %d: %s (attempt %d)", req.tier + 1, err, attempt + 1)
            if attempt < self.max_retries:
                await asyncio.sleep(min(self.max_backoff, delay) if delay is not None else self._delay(attempt))
            attempt += 1
        return None, attempt, f"{err}; gave up after {attempt} attempts"

    def _downgrade_format(self, req: Request, e: Exception) -> bool:
        """A server that rejects our structured output: json_schema → json_object → plain text (strict parser)."""
        fmt = self._format[req.tier]
        tier = self.tiers[req.tier]
        if req.kind != "listwise" or tier.structured != "auto" or fmt == "none" or not _about_format(e):
            return False
        self._format[req.tier] = "json_object" if fmt == "auto" else "none"
        log.info("tier %d (%s): response_format not supported, falling back to %s", req.tier + 1, tier.model,
                 self._format[req.tier])
        return True

    # -- OpenAI Batch API ----------------------------------------------------------------------------------------
    async def batch_submit(self, tier_idx: int, requests: list[Request]) -> dict[str, Any]:
        lines = [json.dumps({"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions",
                             "body": self._with_format(r)}, ensure_ascii=False) for r in requests]
        sdk = self.sdk(tier_idx)
        f = await sdk.files.create(file=("negmine-relabel.jsonl", ("\n".join(lines) + "\n").encode("utf-8")),
                                   purpose="batch")
        b = await sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                     completion_window="24h", metadata={"source": "negmine relabel"})
        return {"id": b.id, "tier": tier_idx, "model": self.tiers[tier_idx].model, "input_file_id": f.id,
                "requests": len(requests), "status": b.status, "collected": False}

    async def batch_status(self, info: dict[str, Any]) -> dict[str, Any]:
        b = await self.sdk(info["tier"]).batches.retrieve(info["id"])
        counts = b.request_counts.model_dump() if b.request_counts is not None else {}
        return {"status": b.status, "counts": counts, "output_file_id": b.output_file_id}

    async def batch_collect(self, info: dict[str, Any]) -> tuple[int, int] | None:
        """Store a completed batch's answers in the cache under their custom_id. None if not completed yet."""
        sdk = self.sdk(info["tier"])
        b = await sdk.batches.retrieve(info["id"])
        if b.status != "completed" or not b.output_file_id:
            return None
        content = await sdk.files.content(b.output_file_id)
        tier = self.tiers[info["tier"]]
        ok = bad = 0
        for line in content.text.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            resp = row.get("response") or {}
            body = resp.get("body") or {}
            if resp.get("status_code") != 200 or not body.get("choices"):
                bad += 1
                continue
            usage = body.get("usage") or {}
            pt, ct = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            cost = tier_cost(tier, pt, ct) * BATCH_DISCOUNT
            if self.cache.put(row["custom_id"], tier.model, body, pt, ct, cost, source="batch"):
                ok += 1
            else:
                bad += 1  # larger than the cache's cap
        return ok, bad


def _http_client(timeout: float) -> Any:
    """The SDK's aiohttp transport when available (openai[aiohttp]): at 64 requests in flight the default httpx
    pool spends its time assigning requests to connections (~100 requests/s here vs ~700 with aiohttp)."""
    try:
        from openai import DefaultAioHttpClient

        return DefaultAioHttpClient(timeout=timeout)
    except (ImportError, RuntimeError):
        return None


def _about_format(e: Exception) -> bool:
    text = str(e).lower()
    return "response_format" in text or "json_schema" in text or "structured" in text


def tier_endpoint(tier: Tier) -> str:
    """Where a tier's requests go, without credentials (for messages and fingerprints)."""
    return public_url(tier.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")


def public_url(url: str) -> str:
    """``url`` without ``user:password@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def transport_error(e: BaseException, timeout: float) -> str:
    """What went wrong under an SDK connection error, from the chain of causes: connection refused, TLS, name
    resolution, reset, or a real timeout."""
    import socket
    import ssl

    chain: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and len(chain) < 12:
        chain.append(x)
        x = x.__cause__ or x.__context__
    names = " ".join(type(c).__name__ for c in chain)
    for c in chain:
        if isinstance(c, ConnectionRefusedError):
            return "connection refused (is the judge server running?)"
        if isinstance(c, ssl.SSLError) or "SSL" in type(c).__name__ or "Certificate" in type(c).__name__:
            return f"TLS error: {_short(c)}"
        if isinstance(c, socket.gaierror):
            return f"cannot resolve the host name: {_short(c)}"
        if isinstance(c, ConnectionResetError):
            return "connection reset by the server"
    if "Timeout" in names or isinstance(e, TimeoutError):
        return f"timeout after {timeout:g}s"
    return f"connection error: {_short(chain[-1])}"


def _short(e: BaseException) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg.splitlines()[0][:200] if msg else type(e).__name__
