"""`negmine relabel RUN --config FILE [--dry-run] [--budget-usd X] [--batch submit|status|collect]`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def relabel(
    run: Path = RunArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print calls, estimated tokens and cost per tier; send "
                                 "nothing."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="Stop cleanly before new spending would "
                                               "pass this many USD (exit 3; re-run to continue)."),
    batch: str | None = typer.Option(None, "--batch", help="OpenAI Batch API: submit | status | collect."),
    prompt: str | None = typer.Option(None, "--prompt", help="listwise | pointwise [listwise]."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Requests in flight [16]."),
    refill: bool | None = typer.Option(None, "--refill/--no-refill", help="Replace removed and promoted "
                                          "negatives with the next candidates of RUN/scores (judged too), round "
                                          "after round until each query keeps k or its pool is exhausted [on]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
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
    cfg = resolve(config, set_, "relabel", budget_usd=budget_usd, prompt=prompt, concurrency=concurrency,
                  refill=refill)
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
