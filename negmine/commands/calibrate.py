"""`negmine calibrate RUN [--config FILE] [--dry-run] [--budget-usd X]`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def calibrate(
    run: Path = RunArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print calls, estimated tokens and cost; send nothing."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="Stop cleanly before new spending would "
                                               "pass this many USD (exit 3; re-run to continue)."),
    queries: int | None = typer.Option(None, "--queries", help="Queries in the judged sample [75]."),
    top: int | None = typer.Option(None, "--top", help="Top candidates judged per sampled query [12] (plus "
                                   "calibrate.deep deeper ones, the positives and calibrate.controls random "
                                   "documents)."),
    target_ratio: float | None = typer.Option(None, "--target-ratio", help="Estimated FN rate at most this "
                                              "fraction of naive top-k [0.4]."),
    target_fn: float | None = typer.Option(None, "--target-fn", help="Estimated FN rate at most this (overrides "
                                           "--target-ratio)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sample, controls and folds [0]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
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

    cfg = resolve(config, set_, "calibrate", budget_usd=budget_usd, queries=queries, top=top,
                  target_ratio=target_ratio, target_fn=target_fn, seed=seed)
    if dry_run:
        from negmine.judge.stage import format_plan

        info = run_calibrate(run, cfg, dry_run=True)
        text = format_plan(info)
        first, _, rest = text.partition("\n")
        typer.echo(f"dry run: {info['negatives']} pairs of {info['queries']} sampled queries to judge; nothing was "
                   f"sent.\n{rest}")
        return
    res = run_calibrate(run, cfg)
    typer.echo(format_summary(res.artifact.stats))
    typer.echo(f"\n{'up to date: ' if res.skipped else ''}{res.artifact.path}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
