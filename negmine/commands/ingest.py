"""`negmine ingest INPUT --out RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from negmine.commands.common import ConfigOpt, SetOpt


def ingest(
    input: Optional[Path] = typer.Argument(None, help="BEIR directory, or a pairs / Tevatron / FlagEmbedding file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; writes RUN/ingest/."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="beir | pairs | tevatron | flagembedding "
                                         "(default: detected)."),
    split: Optional[str] = typer.Option(None, "--split", help="BEIR qrels split [train]."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Separate corpus file for pairs input."),
    min_grade: Optional[float] = typer.Option(None, "--min-grade", help="Qrels grade for a positive [1]."),
    skip_unknown: Optional[bool] = typer.Option(None, "--skip-unknown", help="Skip (and count) qrels rows "
                                                "naming an unknown query or doc instead of failing."),
    strict: Optional[bool] = typer.Option(None, "--strict", help="Empty texts are errors, not skipped."),
    query_column: Optional[str] = typer.Option(None, "--query-column", help="Pairs input: query text column."),
    positive_column: Optional[str] = typer.Option(None, "--positive-column",
                                                  help="Pairs input: positive text column."),
    query_id_column: Optional[str] = typer.Option(None, "--query-id-column", help="Pairs input: query id column."),
    positive_id_column: Optional[str] = typer.Option(None, "--positive-id-column",
                                                     help="Pairs input: positive doc id column."),
    shard_rows: Optional[int] = typer.Option(None, "--shard-rows", help="Rows per Parquet shard [100000]."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Read an input into canonical corpus / queries / positives artifacts.

    Example: negmine ingest ../shared/data/scifact --split train --out runs/scifact
    """
    from negmine.commands.common import resolve
    from negmine.io.ingest import run_ingest

    cfg = resolve(config, set_, "input", path=str(input) if input else None, format=format, split=split,
                  corpus=str(corpus) if corpus else None, min_grade=min_grade, skip_unknown=skip_unknown,
                  strict=strict, query_column=query_column, positive_column=positive_column,
                  query_id_column=query_id_column, positive_id_column=positive_id_column, shard_rows=shard_rows)
    res = run_ingest(cfg.input, out)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
