"""`negmine relabel RUN --config FILE [--dry-run] [--budget-usd X] [--batch submit|status|collect]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt
from negmine.commands.options import stage_options
from negmine.judge.params import RelabelParams


@stage_options(RelabelParams, "budget_usd", "prompt", "concurrency", "refill")
def relabel(
    run: Path = RunArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print calls, estimated tokens and cost per tier; send "
                                 "nothing."),
    batch: str | None = typer.Option(None, "--batch", help="OpenAI Batch API: submit | status | collect."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Judge mined negatives with a cascade of LLMs (any OpenAI-compatible server); promote or remove false
    negatives, refill what they replace to keep k per query, and print coverage before / after and what the
    drop rule (relabel.max_false_negatives, off by default) dropped. Reads OPENAI_API_KEY / OPENAI_BASE_URL (or
    each tier's api_key_env / base_url).

    Example: negmine relabel runs/demo --config configs/rlhn-cascade.yaml --dry-run
    """
    from negmine.commands.common import resolve
    from negmine.errors import InputError

    if batch is not None and batch not in ("submit", "status", "collect"):
        raise InputError(f"--batch must be submit, status or collect, not {batch!r}", "--batch")
    cfg = resolve(config, set_, "relabel", run=run, **flags)
    if dry_run:
        from negmine.judge.stage import format_plan, plan_requests

        _client, info = plan_requests(run, cfg.relabel)
        typer.echo(format_plan(info))
        return
    if batch is not None:
        from negmine.judge.stage import run_batch

        typer.echo(run_batch(run, cfg.relabel, batch))
        return
    from negmine.judge.stage import format_summary, run_relabel

    res = run_relabel(run, cfg.relabel)
    typer.echo(format_summary(res.artifact.stats))
    typer.echo(f"\n{'up to date: ' if res.skipped else ''}{res.artifact.path}")


def register(app: typer.Typer) -> None:
    app.command("relabel")(relabel)
