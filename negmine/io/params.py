"""Parameters of `negmine ingest` (config section ``input``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from negmine.io.readers import FORMATS
from negmine.params_base import NoFP, Params, one_of


class IngestParams(Params):
    path: str | None = Field(None, description="BEIR directory, or a pairs / Tevatron / FlagEmbedding file.")
    format: Annotated[str, one_of(("auto", *FORMATS))] = Field("auto", description=(
        f"{' | '.join(FORMATS)}, or auto: detected from the input."))
    split: str = Field("train", description="BEIR qrels split.")
    corpus: str | None = Field(None, description="Separate corpus (JSONL/Parquet/CSV with doc_id, title, text) for "
                               "file inputs.")
    min_grade: float = Field(1.0, description="Qrels grade for a positive (lower rows are not positives).")
    skip_unknown: bool = Field(False, description="Skip (and count) qrels rows naming an unknown query or doc "
                               "instead of failing.")
    strict: bool = Field(False, description="Empty texts are errors, not skipped (and counted).")
    # column names for pairs input
    query_column: str = Field("query", description="Pairs input: query text column.")
    positive_column: str = Field("positive", description="Pairs input: positive text column.")
    query_id_column: str | None = Field(None, description="Pairs input: query id column (default: a hash of the "
                                        "query text).")
    positive_id_column: str | None = Field(None, description="Pairs input: positive doc id column (default: a "
                                           "hash of its text, or the --corpus doc's id).")
    positive_title_column: str | None = Field(None, description="Pairs input: positive title column.")
    negative_column: str | None = Field(None, description="Pairs input: given negative column (e.g. negative).")
    grade_column: str | None = Field(None, description="Pairs input: grade column [every pair has grade 1].")
    shard_rows: int = NoFP(100_000, gt=0, description="Rows per Parquet shard.")
