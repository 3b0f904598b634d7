"""Parameters of `negmine export` (config section ``export``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from negmine.params_base import NoFP, Params, one_of

# the export formats: each has a writer registered under its name in negmine/export/writers.py
FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list", "flagembedding", "tevatron")


class ExportParams(Params):
    format: Annotated[str, one_of(FORMATS)] = "triplet"
    # output file; default RUN/export/<format>.parquet (.jsonl for flagembedding / tevatron). The four
    # sentence-transformers formats are written as Parquet, or as JSON lines when the name ends in .jsonl
    out: str | None = NoFP(None)
    with_ids: bool = False        # add id columns (query_id, positive_id, negative_id, ...)
    with_scores: bool = False     # add teacher scores (sentence-transformers: the `scores`/`score` label column)
    num_negatives: int | None = Field(None, ge=1)  # n-tuple width / cap per query (default: select's)
    include_filled: bool = True   # export negatives kept by short_policy "fill"
    prompt: str | None = None     # flagembedding: the "prompt" (query instruction) of every line
    use_relabel: bool = True      # apply RUN/relabel (removed negatives, promoted positives) when present
