"""Parameters of `negmine retrieve` (config section ``retrieve``)."""

from __future__ import annotations

from typing import Literal

from negmine.params_base import NoFP, Params

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class RetrieveParams(Params):
    method: Literal["bm25", "dense", "hybrid"] = "dense"
    depth: int = 100
    model: str = DEFAULT_MODEL
    batch_size: int = NoFP(64, gt=0)
    device: str | None = NoFP(None)
    shard_queries: int = NoFP(10_000, gt=0)
