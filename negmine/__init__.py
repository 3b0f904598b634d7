"""negmine: mine, filter, relabel and export hard negatives for retrieval training.

The Python API (``negmine/api.py``, imported on first use so that ``import negmine`` and ``negmine --help`` stay
instant): ``negmine.mine(data, run_dir, ...)``, ``negmine.select(run_dir, ...)`` and ``negmine.load(run_dir)``,
each returning the exported training rows as a ``datasets.Dataset``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "mine", "select"]


def __getattr__(name: str) -> Any:
    if name in ("mine", "load"):
        from negmine import api

        return getattr(api, name)
    if name == "select":  # the subpackage, callable as the API's select (negmine/select/__init__.py)
        import importlib

        return importlib.import_module("negmine.select")
    raise AttributeError(f"module 'negmine' has no attribute {name!r}")
