"""`negmine report RUN [--qrels FILE]`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import RunArg, finite


def report(
    run: Path = RunArg,
    qrels: Path | None = typer.Option(None, "--qrels", help="BEIR qrels TSV: adds the false-negative metrics "
                                      "and the perc_pos sensitivity curve.", dir_okay=False),
    k: int | None = typer.Option(None, "--k", help="Negatives asked per query [select.num_negatives]."),
    min_grade: float = typer.Option(1.0, "--min-grade", callback=finite, help="Qrels grade from which a document is relevant."),
) -> None:
    """Write RUN/report/report.md with PNG plots: teacher-score histograms (positives, kept, dropped),
    drops per reason, negatives per query, stage timings and, with --qrels, the perc_pos sensitivity curve
    re-selected from the cached scores.

    Example: negmine report runs/cran --qrels ../shared/data/cranfield/qrels/test.tsv
    """
    from negmine.errors import InputError
    from negmine.report.run import build_report

    if k is not None and k < 1:
        raise InputError(f"--k must be >= 1, got {k}", "--k")
    path = build_report(run, qrels, k=k, min_grade=min_grade)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
