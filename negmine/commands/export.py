"""`negmine export RUN --format F --out PATH`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def export(
    run: Path = RunArg,
    format: str | None = typer.Option(None, "--format", "-f", help="triplet | n-tuple | labeled-pair | "
                                      "labeled-list (Parquet, sentence-transformers) | flagembedding | tevatron "
                                      "(JSON lines) [triplet]."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file [RUN/export/<format>.parquet|jsonl]; "
                                    "a .jsonl name writes the sentence-transformers formats as JSON lines."),
    with_ids: bool | None = typer.Option(None, "--with-ids", help="Add id columns (drop them before training: "
                                         "the trainer reads every non-label column as text)."),
    with_scores: bool | None = typer.Option(None, "--with-scores", help="Add teacher scores (a `scores` label "
                                            "column for MarginMSE; `score` instead of `label` for "
                                            "labeled-pair)."),
    num_negatives: int | None = typer.Option(None, "--num-negatives", "-k", help="n-tuple width / negatives "
                                             "per query [select's]."),
    include_filled: bool | None = typer.Option(None, "--include-filled/--exclude-filled",
                                               help="Export negatives added by short_policy fill [include]."),
    prompt: str | None = typer.Option(None, "--prompt", help="flagembedding: the query instruction "
                                      "(\"prompt\" key)."),
    use_relabel: bool | None = typer.Option(None, "--relabel/--no-relabel", help="Apply RUN/relabel when "
                                            "present [on]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Write the selected negatives as a training file.

    Example: negmine export runs/scifact --format triplet --out data/scifact-triplets.parquet

    Then: datasets.load_dataset("parquet", data_files="data/scifact-triplets.parquet")["train"] trains with
    SentenceTransformerTrainer + MultipleNegativesRankingLoss as is.
    """
    from negmine.commands.common import resolve
    from negmine.export.stage import run_export

    cfg = resolve(config, set_, "export", format=format, out=str(out) if out else None, with_ids=with_ids,
                  with_scores=with_scores, num_negatives=num_negatives, include_filled=include_filled,
                  prompt=prompt, use_relabel=use_relabel)
    res = run_export(run, cfg.export)
    typer.echo(f"{'up to date: ' if res.skipped else ''}{res.path} ({res.rows:,} rows)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
