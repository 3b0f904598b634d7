"""Parameters of `negmine export` (config section ``export``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from negmine.params_base import NoFP, Params, one_of

# the export formats: each has a writer registered under its name in negmine/export/writers.py
FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list", "ids", "flagembedding", "tevatron")


class ExportParams(Params):
    format: Annotated[str, one_of(FORMATS)] = Field("triplet", description=(
        f"{' | '.join(FORMATS)}: the first four for sentence-transformers (Parquet), ids for id-resolving "
        "trainers (ids only, with NAME-queries and NAME-corpus tables beside it), flagembedding and tevatron "
        "as JSON lines."))
    # default RUN/export/<format>.parquet (.jsonl for flagembedding / tevatron)
    out: str | None = NoFP(None, description="Output file [RUN/export/<format>.parquet|jsonl]; a .jsonl, .jsonl.gz "
                           "or .jsonl.zst name writes JSON lines (compressed), also for the sentence-transformers "
                           "formats. A dataset card README.md is written beside it.")
    with_ids: bool = Field(False, description="Add id columns (query_id, positive_id, negative_id, ...; drop them "
                           "before training: the trainer reads every non-label column as text).")
    with_scores: bool = Field(False, description="Add teacher scores (a `scores` label column for MarginMSE; "
                              "`score` instead of `label` for labeled-pair).")
    num_negatives: int | None = Field(None, ge=1, description="n-tuple width / negatives per query [select's].")
    include_filled: bool = Field(True, description="Export negatives added by short_policy fill.")
    prompt: str | None = Field(None, description="flagembedding: the query instruction (\"prompt\" key) of every "
                               "line.")
    split: str | None = Field(None, description="Hold out a seeded fraction of the queries as a second split, "
                              "e.g. eval=0.05: writes NAME-train and NAME-eval files (by query: no query in both).")
    license: str | None = NoFP(None, description="The dataset card's license field (an SPDX id such as cc-by-4.0) "
                               "[unknown].")
    use_relabel: bool = Field(True, description="Apply RUN/relabel (removed negatives, promoted positives) when "
                              "present.")
