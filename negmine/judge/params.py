"""Parameters of `negmine relabel` (config section ``relabel``)."""

from __future__ import annotations

from negmine.params_base import Params


class RelabelParams(Params):
    max_false_negatives: int = 8
