"""Positive-aware negative selection: rules (``rules``: what drops a candidate, in order, with its config key and
signal), their keep masks (``filters``, ``signals``), near-duplicate detection (``dedup``), sampling (``sampling``)
and the selection itself (``core.select_table``), all pure functions; ``stage`` is `negmine select`.

``from negmine.select import perc_pos, margin_pos, sample, ...`` works; the submodules (which import numpy) load
on first use, so importing the package (as the config does) stays light.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "filters": ("mask_positives", "rank_window", "abs_max", "abs_min", "margin_pos", "perc_pos", "perc_threshold",
                "pos_reference"),
    "rules": ("Rule", "RULES", "Batch", "apply_rules", "reasons", "fillable", "NOT_SAMPLED"),
    "sampling": ("sample", "sample_keys", "group_topk", "register_sampler", "SAMPLERS", "query_seed",
                 "query_seeds", "row_uniforms"),
    "dedup": ("normalize_text", "shingles", "jaccard", "signature", "duplicate_of", "Signature"),
    "core": ("select_table", "select_rows", "table_rows", "Rows", "select_batch", "Selection", "SHORT_POLICIES"),
    "stage": ("run_select",),
}


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __all__)`` for a package whose public names live in submodules imported on first use."""
    where = {name: mod for mod, names in exports.items() for name in names}

    def getattr_(name: str) -> Any:
        mod = where.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{mod}"), name)

    return getattr_, sorted(where)


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)


class _SelectPackage(types.ModuleType):
    """``negmine.select`` is this package and also the API call ``negmine.select(RUN, **params)``
    (``negmine/api.py``): the package is imported by the config, so the name cannot be a plain function."""

    def __call__(self, run_dir: Any, **params: Any) -> Any:
        from negmine.api import select

        return select(run_dir, **params)


sys.modules[__name__].__class__ = _SelectPackage
