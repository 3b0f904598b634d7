"""Where negmine keeps caches that outlive a run directory (embeddings, BM25 indexes, judge responses)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$NEGMINE_CACHE_DIR/<kind>`` (default ``~/.cache/negmine/<kind>``), created on demand."""
    base = os.environ.get("NEGMINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "negmine")
    p = Path(base) / kind
    p.mkdir(parents=True, exist_ok=True)
    return p
