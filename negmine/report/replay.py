"""Re-run negative selection in memory from a scores table (no re-mining): the sensitivity curves of
`negmine report` and what-if comparisons. Calls the select stage's own selection function
(negmine.select.core.select_table), so the negatives are exactly those `negmine select` would keep with the same
parameters."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa


def reselect(scores: pa.Table, params: Any, duplicates: Collection[tuple[str, str]] = (),
             extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Negatives ``(query_id, doc_id, rank, teacher_score)`` that selection with ``params`` (a SelectParams)
    keeps from ``scores``. Near-duplicate detection needs document texts, which a scores table does not hold:
    pass the run's ``duplicates`` (pairs the select stage dropped as ``duplicate_of_positive``) to reproduce it.
    ``extra`` holds additional per-row arrays for registered signal rules (e.g. ``pos_sim``)."""
    from negmine.select.core import select_table

    qids = scores["query_id"].to_pylist()
    dids = scores["doc_id"].to_pylist()
    dup = set(duplicates)
    is_dup = np.fromiter(((q, d) in dup for q, d in zip(qids, dids, strict=False)), dtype=bool, count=len(qids))
    rows, sel = select_table(scores, params, {"is_duplicate": is_dup, **(extra or {})})
    keep = sel.kept & ~sel.dropped_query[rows.group]
    idx = pa.array(np.nonzero(keep)[0])
    return scores.select(["query_id", "doc_id", "rank", "teacher_score"]).take(idx)
