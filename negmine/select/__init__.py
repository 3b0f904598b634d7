"""Positive-aware negative selection: filters, near-duplicate detection and sampling (pure functions).

``from negmine.select import perc_pos, margin_pos, sample, ...`` works; the submodules (which import numpy) load
on first use, so importing the package (as the config does) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "filters": ("mask_positives", "rank_window", "abs_max", "abs_min", "margin_pos", "perc_pos", "perc_threshold",
                "pos_reference", "apply_rules", "register_rule", "RULES", "reasons", "fillable", "Batch"),
    "sampling": ("sample", "sample_keys", "group_topk", "register_sampler", "SAMPLERS", "query_seed",
                 "query_seeds", "row_uniforms"),
    "dedup": ("normalize_text", "shingles", "jaccard", "signature", "duplicate_of", "Signature"),
    "core": ("select_batch", "Selection", "SHORT_POLICIES"),
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
