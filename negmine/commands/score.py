"""`negmine score RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def score(
    run: Path = RunArg,
    teacher: str | None = typer.Option(None, "--teacher", "-t", help="bi-encoder | cross-encoder | llm "
                                          "[bi-encoder]."),
    model: str | None = typer.Option(None, "--model", "-m", help="Teacher model name or local path "
                                        "[all-MiniLM-L6-v2]; a CrossEncoder for --teacher cross-encoder; the chat "
                                        "model (score.llm.model) for --teacher llm."),
    dry_run: bool = typer.Option(False, "--dry-run", help="LLM teacher: print calls, estimated tokens and cost; "
                                 "send nothing."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="LLM teacher: stop before new spending "
                                               "would pass this many USD (exit 3; answers are cached, re-run to "
                                               "continue)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Encode / predict batch size [64]."),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda | cuda:N [auto]."),
    max_length: int | None = typer.Option(None, "--max-length", help="Cross-encoder: max tokens of a "
                                             "(query, document) pair [model's]."),
    activation: str | None = typer.Option(None, "--activation", help="Cross-encoder: default | none | "
                                             "sigmoid, applied to the logit [default = the model's own]."),
    query_prompt: str | None = typer.Option(None, "--query-prompt", help="Bi-encoder: text prepended to "
                                               "queries [the retriever's, for the same model]."),
    query_prompt_name: str | None = typer.Option(None, "--query-prompt-name",
                                                    help="Bi-encoder: a prompt name of the model for queries."),
    doc_prompt: str | None = typer.Option(None, "--doc-prompt", help="Bi-encoder: text prepended to "
                                             "documents."),
    doc_prompt_name: str | None = typer.Option(None, "--doc-prompt-name",
                                                  help="Bi-encoder: a prompt name of the model for documents."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Bi-encoder: max tokens per "
                                                 "text [model's]."),
    shard_queries: int | None = typer.Option(None, "--shard-queries", help="Queries per output shard "
                                                "(unit of resume) [10000]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
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
    from negmine.commands.common import resolve

    cfg = resolve(config, set_, "score", teacher=teacher, batch_size=batch_size, device=device,
                  max_length=max_length, activation=activation, query_prompt=query_prompt,
                  query_prompt_name=query_prompt_name, doc_prompt=doc_prompt, doc_prompt_name=doc_prompt_name,
                  max_seq_length=max_seq_length, shard_queries=shard_queries, budget_usd=budget_usd)
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

    res = run_score(run, params)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
