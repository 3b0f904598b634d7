"""`negmine score RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, EngineAddressOpt, EngineOpt, RunArg, SetOpt
from negmine.commands.options import Flag, help_text, stage_options
from negmine.score.params import ScoreParams


@stage_options(ScoreParams, Flag("teacher", "--teacher", "-t"), "encoder_backend", "budget_usd", "batch_size", "device", "max_length",
               "activation", "query_prompt", "query_prompt_name", "doc_prompt", "doc_prompt_name", "max_seq_length",
               "shard_queries")
def score(
    run: Path = RunArg,
    # --model is resolved here, not by the config: for --teacher llm it names the chat model (score.llm.model)
    model: str | None = typer.Option(None, "--model", "-m", help=help_text(ScoreParams.model_fields["model"])),
    dry_run: bool = typer.Option(False, "--dry-run", help="LLM teacher: print calls, estimated tokens and cost; "
                                 "send nothing."),
    engine: str | None = EngineOpt,
    engine_address: str | None = EngineAddressOpt,
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Score every candidate and every positive of each query with a teacher model → RUN/scores.

    The llm teacher asks any OpenAI-compatible server (config score.llm: model, base_url, api_key_env, prices;
    default gpt-4o-mini at OPENAI_BASE_URL with OPENAI_API_KEY) for P(relevant): P(yes) from logprobs, or a 0-3
    grade / 3 when the server returns none. Answers are cached in RUN/.judge-cache.sqlite (shared with relabel).

    \b
    Examples:
      negmine score runs/scifact --teacher cross-encoder --model ./my-reranker --activation none
      negmine score runs/small --teacher llm --model gpt-4o-mini --dry-run    # calls, tokens, cost
      negmine score runs/small --teacher llm --budget-usd 2
    """
    from negmine.commands.common import engine_flags, resolve
    from negmine.engine import use_engine

    cfg = resolve(config, set_, "score", run=run, engine=engine_flags(engine, engine_address), **flags)
    params = cfg.score
    if model is not None:
        if params.teacher == "llm":
            from negmine.score.llm import llm_tier

            params.llm = llm_tier(params).model_copy(update={"model": model})
        else:
            params.model = model
    if dry_run:
        from negmine.score.llm import format_plan
        from negmine.score.stage import plan_score

        typer.echo(format_plan(plan_score(run, params)))
        return
    from negmine.score.stage import run_score

    with use_engine(cfg.engine):
        res = run_score(run, params)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
