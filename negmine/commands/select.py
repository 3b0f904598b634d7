"""`negmine select RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt
from negmine.commands.options import Flag, stage_options
from negmine.select.params import SelectParams


@stage_options(SelectParams, Flag("max_pos_sim", as_type=str), Flag("num_negatives", "--num-negatives", "-k"),
               every_field=True)
def select(
    run: Path = RunArg,
    no_calibration: bool = typer.Option(False, "--no-calibration", help="Same as --calibration off."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Filter and sample hard negatives from RUN/scores → RUN/negatives, and print a summary.

    \b
    Examples:
      negmine select runs/scifact                         # defaults: top 8, minus documents too like a positive
      negmine select runs/scifact --max-lexical-rank 20 --max-pos-sim 0.65           # configs/low-fn.yaml rules
      negmine select runs/scifact --filter perc-pos --perc-pos 0.95 --max-pos-sim off -k 4     # NV-Retriever

    Every decision is recorded: kept negatives in RUN/negatives, every other candidate with its reason
    (positive, duplicate_of_positive, out_of_window, above_abs, below_abs, above_margin, above_perc,
    similar_to_positive, lexical_agreement, predicted_false_negative, not_sampled, query_short) in
    RUN/negatives/dropped. When RUN/calibration exists (`negmine calibrate`), its model and threshold apply.
    """
    from negmine.commands.common import resolve
    from negmine.select.stage import format_summary, run_select

    if no_calibration:
        flags["calibration"] = "off"
    cfg = resolve(config, set_, "select", run=run, **flags)
    res = run_select(run, cfg.select)
    typer.echo(format_summary(res.artifact.stats))
    typer.echo(f"\n{'up to date: ' if res.skipped else ''}{res.artifact.path}")


def register(app: typer.Typer) -> None:
    app.command("select")(select)
