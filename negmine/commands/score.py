"""`negmine score RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def score(
    run: Path = RunArg,
    teacher: str | None = typer.Option(None, "--teacher", "-t", help="bi-encoder | cross-encoder [bi-encoder]."),
    model: str | None = typer.Option(None, "--model", "-m", help="Teacher model name or local path "
                                        "[all-MiniLM-L6-v2]; a CrossEncoder for --teacher cross-encoder."),
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

    Example: negmine score runs/scifact --teacher cross-encoder --model ./my-reranker --activation none
    """
    from negmine.commands.common import resolve
    from negmine.score.stage import run_score

    cfg = resolve(config, set_, "score", teacher=teacher, model=model, batch_size=batch_size, device=device,
                  max_length=max_length, activation=activation, query_prompt=query_prompt,
                  query_prompt_name=query_prompt_name, doc_prompt=doc_prompt, doc_prompt_name=doc_prompt_name,
                  max_seq_length=max_seq_length, shard_queries=shard_queries)
    res = run_score(run, cfg.score)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
