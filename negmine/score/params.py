"""Parameters of `negmine score` (config section ``score``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from negmine.judge.params import RelabelParams, Tier
from negmine.params_base import BatchSize, Device, NoFP, Params, ShardQueries, one_of
from negmine.retrieve.params import DEFAULT_MODEL, ENCODER_BACKENDS, EncoderBackend

# the teachers: each has a class registered under its name in negmine/score/stage.py:TEACHERS
TEACHER_NAMES = ("bi-encoder", "cross-encoder", "llm")
# the LLM teacher's keys: left out of the fingerprint of the encoder teachers (whose output they do not change)
LLM_KEYS = ("llm", "llm_mode", "passage_tokens", "query_tokens")


class ScoreParams(Params):
    # bi-encoder: any sentence-transformers model (cosine of normalised embeddings, through the shared embedding
    # cache: when it is the retriever's model nothing is encoded twice); cross-encoder: a sentence-transformers
    # CrossEncoder (name or local path) scoring every (query, document) pair; llm: an OpenAI-compatible chat model
    # through the judge client and its response cache (see negmine/score/llm.py).
    teacher: Annotated[str, one_of(TEACHER_NAMES)] = Field("bi-encoder", description=" | ".join(TEACHER_NAMES) + ".")
    model: str = Field(DEFAULT_MODEL, description=(
        "Teacher model name or local path; a CrossEncoder for --teacher cross-encoder; the chat model "
        "(score.llm.model) for --teacher llm."))
    # bi-encoder and cross-encoder: the runtime (negmine/encode/backends.py)
    encoder_backend: Annotated[str, one_of(ENCODER_BACKENDS)] = EncoderBackend()
    # bi-encoder only. Unset prompts / max_seq_length / normalize are taken from the retrieve stage when the teacher is the
    # retriever's dense model (so the teacher scores what the retriever embedded, from the cache).
    query_prompt: str | None = Field(None, description="Bi-encoder: text prepended to queries [the retriever's, for the same model].")
    query_prompt_name: str | None = Field(None, description="Bi-encoder: a prompt name of the model for queries.")
    doc_prompt: str | None = Field(None, description="Bi-encoder: text prepended to documents.")
    doc_prompt_name: str | None = Field(None, description="Bi-encoder: a prompt name of the model for documents.")
    max_seq_length: int | None = Field(None, description="Bi-encoder: max tokens per text [model's].")
    normalize: bool = True                         # cosine (normalised vectors); false = raw inner product
    # cross-encoder only
    max_length: int | None = Field(None, description="Cross-encoder: max tokens of a (query, document) pair "
                                   "[model's].")
    activation: Literal["default", "none", "sigmoid"] = Field("default", description=(
        "Cross-encoder: default | none | sigmoid, applied to the logit [default = the model's own: Sigmoid for one "
        "label]."))
    batch_size: int = BatchSize()
    device: str | None = Device()
    shard_queries: int = ShardQueries()
    # llm only. The model: a relabel tier (model, base_url, api_key_env, prices); None = relabel's default first
    # tier (gpt-4o-mini at $OPENAI_BASE_URL with $OPENAI_API_KEY), also the base of keys given without a model
    # (e.g. --set score.llm.base_url=...). Keys never go here: api_key_env names a variable.
    llm: Tier | None = None
    # logprobs: P(yes) of a yes/no answer from the first token's top logprobs; graded: a 0-3 grade / 3 (servers
    # without logprobs); auto: logprobs when the server returns them (tried on the first pair), else graded
    llm_mode: Literal["auto", "logprobs", "graded"] = "auto"
    passage_tokens: int = Field(256, ge=32)        # each passage is truncated to this many tokens
    query_tokens: int = Field(128, ge=8)
    concurrency: int = NoFP(16, ge=1)              # requests in flight
    timeout: float = NoFP(60.0, gt=0)              # seconds per request
    max_retries: int = NoFP(4, ge=0)               # retries after the first attempt (429, 5xx, timeouts)
    backoff: float = NoFP(1.0, ge=0)               # first backoff in seconds; doubles, with jitter
    max_backoff: float = NoFP(30.0, ge=0)
    budget_usd: float | None = NoFP(None, gt=0, description=(
        "LLM teacher: stop before new spending would pass this many USD (exit 3; answers are cached, re-run to "
        "continue)."))
    cache_path: str | None = NoFP(None)            # SQLite response cache; default RUN/.judge-cache.sqlite
    max_unscored: float = NoFP(0.05, ge=0, le=1)   # fail when more than this share of pairs gets no usable answer

    @field_validator("llm", mode="before")
    @classmethod
    def _llm_defaults(cls, v: object) -> object:
        if isinstance(v, dict) and "model" not in v:
            return RelabelParams().tiers[0].model_dump() | v
        return v
