"""`negmine ingest INPUT --out RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, SetOpt


def ingest(
    input: Path | None = typer.Argument(None, help="BEIR directory, or a pairs / Tevatron / FlagEmbedding file "
                                           "(.jsonl, .parquet, .csv, .tsv; .gz / .zst compressed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; writes RUN/ingest/."),
    format: str | None = typer.Option(None, "--format", "-f", help="beir | pairs | tevatron | flagembedding "
                                         "(default: detected)."),
    split: str | None = typer.Option(None, "--split", help="BEIR qrels split [train]."),
    corpus: Path | None = typer.Option(None, "--corpus", help="Separate corpus (JSONL/Parquet/CSV with "
                                          "doc_id, title, text) for file inputs."),
    min_grade: float | None = typer.Option(None, "--min-grade", help="Qrels grade for a positive [1]."),
    skip_unknown: bool | None = typer.Option(None, "--skip-unknown", help="Skip (and count) qrels rows "
                                                "naming an unknown query or doc instead of failing."),
    strict: bool | None = typer.Option(None, "--strict", help="Empty texts are errors, not skipped."),
    query_column: str | None = typer.Option(None, "--query-column", help="Pairs input: query text column "
                                               "[query]."),
    positive_column: str | None = typer.Option(None, "--positive-column",
                                                  help="Pairs input: positive text column [positive]."),
    query_id_column: str | None = typer.Option(None, "--query-id-column", help="Pairs input: query id column "
                                                  "(default: a hash of the query text)."),
    positive_id_column: str | None = typer.Option(None, "--positive-id-column",
                                                     help="Pairs input: positive doc id column."),
    positive_title_column: str | None = typer.Option(None, "--positive-title-column",
                                                        help="Pairs input: positive title column."),
    negative_column: str | None = typer.Option(None, "--negative-column",
                                                  help="Pairs input: given negative column (e.g. negative)."),
    grade_column: str | None = typer.Option(None, "--grade-column", help="Pairs input: grade column [1]."),
    shard_rows: int | None = typer.Option(None, "--shard-rows", help="Rows per Parquet shard [100000]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
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

    cfg = resolve(config, set_, "input", path=str(input) if input else None, format=format, split=split,
                  corpus=str(corpus) if corpus else None, min_grade=min_grade, skip_unknown=skip_unknown,
                  strict=strict, query_column=query_column, positive_column=positive_column,
                  query_id_column=query_id_column, positive_id_column=positive_id_column,
                  positive_title_column=positive_title_column, negative_column=negative_column,
                  grade_column=grade_column, shard_rows=shard_rows)
    res = run_ingest(cfg.input, out)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
