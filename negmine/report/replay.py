"""Re-run negative selection in memory from a scores table (no re-mining): the margin sensitivity curve of
`negmine report` and what-if comparisons. Calls the select package's pure batch function, so the negatives are
exactly those `negmine select` would keep with the same parameters."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def reselect(scores: pa.Table, params: Any, duplicates: Collection[tuple[str, str]] = (),
             extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Negatives ``(query_id, doc_id, rank, teacher_score)`` that selection with ``params`` (a SelectParams)
    keeps from ``scores``. Near-duplicate detection needs document texts, which a scores table does not hold:
    pass the run's ``duplicates`` (pairs the select stage dropped as ``duplicate_of_positive``) to reproduce it.
    ``extra`` holds additional per-row arrays for registered signal rules (e.g. ``pos_sim``)."""
    from negmine.select.core import select_batch
    from negmine.select.sampling import query_seeds

    qids = scores["query_id"].to_pylist()
    dids = scores["doc_id"].to_pylist()
    uq = list(dict.fromkeys(qids))
    qmap = {q: i for i, q in enumerate(uq)}
    group = np.fromiter((qmap[q] for q in qids), dtype=np.int64, count=len(qids))
    ranks = pc.fill_null(scores["rank"], 0).to_numpy(zero_copy_only=False).astype(np.int64)
    s = scores["teacher_score"].to_numpy(zero_copy_only=False).astype(np.float64)
    is_pos = pc.fill_null(scores["is_positive"], False).to_numpy(zero_copy_only=False)
    dup = set(duplicates)
    is_dup = np.fromiter(((q, d) in dup for q, d in zip(qids, dids, strict=False)), dtype=bool, count=len(qids))
    doc_code = pc.rank(scores["doc_id"], sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64)
    kw: dict[str, Any] = dict(extra or {})
    sel = select_batch(group, len(uq), query_seeds(params.seed, uq), s, ranks, doc_code, is_pos, is_dup,
                       rules=params.rules(), k=params.num_negatives, sampling=params.sampling,
                       sampling_params={"temperature": params.temperature, "simans_a": params.simans_a,
                                        "simans_b": params.simans_b},
                       short_policy=params.short_policy, pos_ref=params.pos_ref, **kw)
    keep = sel.kept & ~sel.dropped_query[group]
    idx = pa.array(np.nonzero(keep)[0])
    return scores.select(["query_id", "doc_id", "rank", "teacher_score"]).take(idx)
