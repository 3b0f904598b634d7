"""`negmine ingest INPUT --out RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, SetOpt
from negmine.commands.options import Flag, stage_options
from negmine.io.params import IngestParams


@stage_options(IngestParams, Flag("format", "--format", "-f"), "split", "corpus", "min_grade",
               Flag("skip_unknown", "--skip-unknown"), Flag("strict", "--strict"), "query_column",
               "positive_column", "query_id_column", "positive_id_column", "positive_title_column",
               "negative_column", "grade_column", "shard_rows")
def ingest(
    input: Path | None = typer.Argument(None, help="BEIR directory, or a pairs / Tevatron / FlagEmbedding file "
                                           "(.jsonl, .parquet, .csv, .tsv; .gz / .zst compressed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; writes RUN/ingest/."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Read an input into canonical corpus / queries / positives (/ given_negatives) artifacts in RUN/ingest.

    \b
    Examples:
      negmine ingest ../shared/data/scifact --split train --out runs/scifact
      negmine ingest pairs.csv --query-column question --positive-column answer --out runs/qa
      negmine ingest triplets.parquet --query-column anchor --negative-column negative --out runs/t
      negmine ingest train.jsonl.gz --format flagembedding --corpus corpus.jsonl --out runs/fe

    Re-running with unchanged inputs and options is skipped ("up to date"); a killed run resumes from its
    finished shards. Bad input exits 2 with one line naming the file and line (or row).
    """
    from negmine.commands.common import resolve
    from negmine.io.ingest import run_ingest

    cfg = resolve(config, set_, "input", path=str(input) if input else None, **flags)
    res = run_ingest(out, cfg.input)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
