"""Parameters of `negmine ingest` (config section ``input``)."""

from __future__ import annotations

from typing import Annotated

from negmine.io.readers import FORMATS
from negmine.params_base import NoFP, Params, one_of


class IngestParams(Params):
    path: str | None = None                       # BEIR dir, or a pairs / Tevatron / FlagEmbedding file
    format: Annotated[str, one_of(("auto", *FORMATS))] = "auto"  # auto: detected; else a reader of negmine.io.readers
    split: str = "train"                          # BEIR qrels split
    corpus: str | None = None                     # separate corpus file (JSONL/Parquet/CSV) for file inputs
    min_grade: float = 1.0                        # qrels rows below this grade are not positives
    skip_unknown: bool = False                    # qrels naming unknown query/doc: skip (counted) instead of error
    strict: bool = False                          # empty texts are errors instead of counted and skipped
    # column names for pairs input
    query_column: str = "query"
    positive_column: str = "positive"
    query_id_column: str | None = None            # default: id = content hash of the query text
    positive_id_column: str | None = None         # default: id = content hash (or the --corpus doc's id)
    positive_title_column: str | None = None
    negative_column: str | None = None            # e.g. "negative" for (anchor, positive, negative) triplets
    grade_column: str | None = None               # default: every pair has grade 1
    shard_rows: int = NoFP(100_000, gt=0)         # rows per Parquet shard
