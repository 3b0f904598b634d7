"""Parameters of `negmine relabel` (config section ``relabel``).

A cascade is an ordered list of tiers. Tier 1 judges every mined negative; with the default routing
(``confidence``) a negative moves to the next tier only when the tier before was unsure about it (probability of
relevance inside ``band``, from logprobs, whatever the label; without logprobs: labelled relevant/partial) or could
not judge it. A negative is kept only when its last judge is confident it is not relevant (``on_unsure``), and
``refill`` replaces what is removed or promoted with the next candidates until the query keeps k or its pool is
exhausted. The band needs ``logprobs: true`` on every tier but the last. Keys are never part of the config: a
tier names the environment variable that holds its key (``api_key_env``), default ``OPENAI_API_KEY``; a tier
without ``base_url`` uses ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from negmine.params_base import NoFP, Params


class Tier(Params):
    """One judge of the cascade. Prices are USD per 1M tokens (used for --dry-run, --budget-usd and the audit)."""

    model: str
    base_url: str | None = NoFP(None)          # None → $OPENAI_BASE_URL (then the SDK default)
    api_key_env: str | None = NoFP(None)       # name of the env var holding the key; None → OPENAI_API_KEY
    price_input: float = NoFP(0.0, ge=0)          # USD per 1M input tokens
    price_output: float = NoFP(0.0, ge=0)         # USD per 1M output tokens
    structured: Literal["auto", "json_schema", "json_object", "none"] = NoFP("auto")
    logprobs: bool = False                        # ask for logprobs → probability of relevance
    max_tokens: int = Field(512, ge=1)            # listwise answers; pointwise uses 1
    temperature: float = 0.0

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or not all(c.isalnum() or c == "_" for c in v)):
            raise ValueError("must be the NAME of an environment variable (the key itself never goes in a config)")
        return v


class RelabelParams(Params):
    tiers: list[Tier] = Field(default_factory=lambda: [
        Tier(model="gpt-4o-mini", price_input=0.15, price_output=0.60, logprobs=True),
        Tier(model="gpt-4o", price_input=2.50, price_output=10.0, logprobs=True)])
    prompt: Literal["listwise", "pointwise"] = Field("listwise", description="listwise | pointwise.")
    list_size: int = Field(10, ge=1, le=50)        # m: candidates per listwise request (local ids 1..m)
    max_positives: int = Field(2, ge=0)            # known positives shown as reference in a listwise prompt
    passage_tokens: int = Field(256, ge=32)        # each passage is truncated to this many tokens
    query_tokens: int = Field(512, ge=8)           # long queries (CISI: up to ~380 tokens) are kept whole
    routing: str = "confidence"                    # confidence (only what tier i was unsure about goes on) |
    #                                                per_negative (every flag goes on) | rlhn_example (the whole
    #                                                example on any flag)
    band: tuple[float, float] = (0.3, 0.9)         # a judge is unsure when low <= P(relevant) <= high (logprobs)
    escalate_unjudged: bool = True                 # a negative tier i could not judge goes to tier i+1
    on_relevant: Literal["promote", "remove"] = "promote"
    on_partial: Literal["remove", "keep"] = "remove"
    on_unjudged: Literal["keep", "remove"] = "keep"
    on_unsure: Literal["keep", "remove"] = "remove"  # the LAST judge was unsure (prob inside band): neither keep
    #                                                   it as a negative nor promote it (refill replaces it)
    canary: bool = True                            # slip one unrelated passage (another query's negative) into
    #                                                each listwise request; a judge that calls it relevant along
    #                                                with >= canary_share of the candidates is distrusted for that
    #                                                request (injected instructions) once it fails a second canary
    #                                                too: its verdicts become unjudged (the next tier judges them;
    #                                                after the last tier they are removed and refilled, never promoted)
    canary_share: float = Field(0.75, ge=0, le=1)  # chosen with scripts/bench_injection_guard.py (BENCHMARKS)
    canary_min_group: int = Field(2, ge=1)         # requests with fewer candidates go without a canary
    max_false_negatives: int | None = Field(None, ge=0)
    # ^ RLHN's drop rule: a query whose MINED negatives (refill candidates do not count) hold more relevant labels
    #   than this is dropped; None = off: its relevant documents are promoted (on_relevant) and the query kept
    num_negatives: int | None = Field(None, ge=1)  # k to keep per query; None = select's num_negatives
    refill: bool = Field(True, description=(     # replace removed / promoted negatives with the next candidates
        "Replace removed and promoted negatives with the next candidates of RUN/scores (judged too), round after "
        "round until each query keeps k or its pool is exhausted."))
    refill_rounds: int | None = Field(None, ge=0)  # refill candidates are judged too; None = as many rounds as it
    #                                                takes to reach k or exhaust the pool (an int caps the rounds)
    refill_depth: int | None = Field(None, ge=1)   # candidates per query (by rank) the refill may take; None = all
    #                                                that `negmine score` scored (the retrieve depth)
    refill_skip_reasons: list[str] = Field(default_factory=lambda: [
        "positive", "duplicate_of_positive", "above_abs", "below_abs", "above_margin", "above_perc",
        "out_of_window"])
    # ^ select's drop reasons that make a candidate unfit for refill (a positive or its duplicate, outside the
    #   user's score margins or rank window); the candidates select's heuristic signals dropped
    #   (similar_to_positive, lexical_agreement, predicted_false_negative) may refill, in rank order, because the
    #   judge vets every refill: skipping them made the negatives easier (docs/BENCHMARKS.md, cascade section)
    shard_queries: int = NoFP(2000, ge=1)          # queries per output shard (the unit of resume)
    concurrency: int = NoFP(16, ge=1, description="Requests in flight.")
    timeout: float = NoFP(60.0, gt=0)              # seconds per request
    max_retries: int = NoFP(4, ge=0)               # retries after the first attempt (429, 5xx, timeouts)
    backoff: float = NoFP(1.0, ge=0)               # first backoff in seconds; doubles, with jitter
    max_backoff: float = NoFP(30.0, ge=0)
    cache_path: str | None = NoFP(None)         # SQLite response cache; default RUN/.judge-cache.sqlite
    budget_usd: float | None = NoFP(None, gt=0, description=(
        "Stop cleanly before new spending would pass this many USD (exit 3; re-run to continue)."))
    max_unjudged: float = NoFP(0.05, ge=0, le=1, description=(
        "Fail (exit 1, nothing published) when the judge gives no usable answer for more than this share of a "
        "shard's negatives (an unreachable or broken judge); re-run to retry."))

    @field_validator("routing")
    @classmethod
    def _routing(cls, v: str) -> str:
        from negmine.judge.cascade import ROUTERS  # pure stdlib module: cheap to import

        if v not in ROUTERS:
            raise ValueError(f"unknown routing {v!r} (known: {', '.join(sorted(ROUTERS))})")
        return v

    @field_validator("band")
    @classmethod
    def _band(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 <= lo <= hi <= 1.0):
            raise ValueError("band must be [low, high] with 0 <= low <= high <= 1")
        return v

    @model_validator(mode="after")
    def _tiers(self) -> RelabelParams:
        if not self.tiers:
            raise ValueError("relabel.tiers: at least one tier is needed")
        return self
