"""Parameters of `negmine score` (config section ``score``)."""

from __future__ import annotations

from typing import Literal

from negmine.params_base import NoFP, Params
from negmine.retrieve.params import DEFAULT_MODEL


class ScoreParams(Params):
    # bi-encoder: any sentence-transformers model (cosine of normalised embeddings, through the shared embedding
    # cache: when it is the retriever's model nothing is encoded twice); cross-encoder: a sentence-transformers
    # CrossEncoder (name or local path) scoring every (query, document) pair.
    teacher: Literal["bi-encoder", "cross-encoder"] = "bi-encoder"
    model: str = DEFAULT_MODEL
    # bi-encoder only. Unset prompts / max_seq_length / normalize are taken from the retrieve stage when the teacher is the
    # retriever's dense model (so the teacher scores what the retriever embedded, from the cache).
    query_prompt: str | None = None
    query_prompt_name: str | None = None
    doc_prompt: str | None = None
    doc_prompt_name: str | None = None
    max_seq_length: int | None = None
    normalize: bool = True                         # cosine (normalised vectors); false = raw inner product
    # cross-encoder only
    max_length: int | None = None                  # tokens of query + document (None: the model's own limit)
    activation: Literal["default", "none", "sigmoid"] = "default"  # default = the model's own (Sigmoid for 1 label)
    batch_size: int = NoFP(64, gt=0)
    device: str | None = NoFP(None)
    shard_queries: int = NoFP(10_000, gt=0)        # queries per output shard (the unit of resume)
