"""`negmine calibrate RUN [--config FILE] [--dry-run] [--budget-usd X]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.calibrate.params import CalibrateParams
from negmine.commands.common import ConfigOpt, RunArg, SetOpt
from negmine.commands.options import stage_options


@stage_options(CalibrateParams, "budget_usd", "queries", "top", "target_ratio", "target_fn", "seed")
def calibrate(
    run: Path = RunArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print calls, estimated tokens and cost; send nothing."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Judge a seeded sample of queries with an LLM judge, fit p(false negative) over select's signals, and choose
    the threshold select then applies (rule predicted_false_negative) → RUN/calibration.

    \b
    The judge: calibrate.tiers, default the first relabel tier (OPENAI_BASE_URL with OPENAI_API_KEY); prompt,
    cache (RUN/.judge-cache.sqlite), concurrency and retries as relabel.
    \b
    Examples:
      negmine calibrate runs/sf --dry-run                     # calls and cost first
      negmine calibrate runs/sf && negmine select runs/sf     # the whole recipe
      negmine calibrate runs/sf --target-fn 0.05 --config configs/rlhn-cascade.yaml
    """
    from negmine.calibrate.stage import format_summary, run_calibrate
    from negmine.commands.common import resolve

    cfg = resolve(config, set_, "calibrate", run=run, **flags)
    if dry_run:
        from negmine.judge.stage import format_plan

        info = run_calibrate(run, cfg, dry_run=True)
        typer.echo(format_plan(info, "pairs", "sampled queries"))
        return
    res = run_calibrate(run, cfg)
    typer.echo(format_summary(res.artifact.stats))
    typer.echo(f"\n{'up to date: ' if res.skipped else ''}{res.artifact.path}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
