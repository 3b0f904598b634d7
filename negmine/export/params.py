"""Parameters of `negmine export` (config section ``export``)."""

from __future__ import annotations

from typing import Literal

from negmine.params_base import Params


class ExportParams(Params):
    format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list", "flagembedding", "tevatron"] = "triplet"
    out: str | None = None
