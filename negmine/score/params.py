"""Parameters of `negmine score` (config section ``score``)."""

from __future__ import annotations

from typing import Literal

from negmine.params_base import NoFP, Params
from negmine.retrieve.params import DEFAULT_MODEL


class ScoreParams(Params):
    teacher: Literal["bi-encoder", "cross-encoder"] = "bi-encoder"
    model: str = DEFAULT_MODEL
    batch_size: int = NoFP(64, gt=0)
    device: str | None = NoFP(None)
