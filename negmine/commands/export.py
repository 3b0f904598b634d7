"""`negmine export RUN --format F --out PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt
from negmine.commands.options import Flag, stage_options
from negmine.export.params import ExportParams


@stage_options(ExportParams, Flag("format", "--format", "-f"), Flag("out", "--out", "-o"),
               Flag("with_ids", "--with-ids"), Flag("with_scores", "--with-scores"),
               Flag("num_negatives", "--num-negatives", "-k"),
               Flag("include_filled", "--include-filled/--exclude-filled"), "prompt", "split", "license",
               Flag("use_relabel", "--relabel/--no-relabel"))
def export(
    run: Path = RunArg,
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Write the selected negatives as a training file.

    Example: negmine export runs/scifact --format triplet --out data/scifact-triplets.parquet

    Then: datasets.load_dataset("parquet", data_files="data/scifact-triplets.parquet")["train"] trains with
    SentenceTransformerTrainer + MultipleNegativesRankingLoss as is.
    """
    from negmine.commands.common import resolve
    from negmine.export.stage import run_export

    cfg = resolve(config, set_, "export", run=run, **flags)
    res = run_export(run, cfg.export)
    typer.echo(f"{'up to date: ' if res.skipped else ''}{res.path} ({res.rows:,} rows)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
