"""Parameters of `negmine select` (config section ``select``)."""

from __future__ import annotations

from typing import Literal

from negmine.params_base import Params


class SelectParams(Params):
    num_negatives: int = 8
    perc_pos: float | None = 0.95
    sampling: Literal["top", "uniform", "softmax", "simans"] = "top"
    seed: int = 0
