"""Export writers: one per output format (triplet, n-tuple, labeled-pair, labeled-list, flagembedding, tevatron).

``from negmine.export import run_export, FORMATS`` works; submodules (numpy, pyarrow) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "writers": ("WRITERS", "Example", "Doc", "register_writer"),
    "stage": ("run_export",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'negmine.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"negmine.export.{mod}"), name)
