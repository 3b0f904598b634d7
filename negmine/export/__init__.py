"""Export writers: one per output format (triplet, n-tuple, labeled-pair, labeled-list, flagembedding, tevatron).

``from negmine.export import run_export, FORMATS`` works; submodules (numpy, pyarrow) load on first use.
"""

from __future__ import annotations

from negmine.select import lazy_exports

_EXPORTS = {
    "params": ("FORMATS", "ExportParams"),
    "writers": ("WRITERS", "Example", "Doc", "register_writer"),
    "stage": ("run_export",),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
