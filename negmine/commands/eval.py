"""`negmine eval RUN --qrels FILE [--protocol hidden-positives]`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt, finite

PROTOCOLS = ("plain", "hidden-positives")


def eval_(
    run: Path = RunArg,
    qrels: Path = typer.Option(..., "--qrels", help="BEIR qrels TSV (query-id, corpus-id, score) that says "
                               "which documents are relevant. With --protocol hidden-positives: the FULL "
                               "qrels of the dataset (e.g. DATA/qrels/test.tsv).", dir_okay=False),
    protocol: str = typer.Option("plain", "--protocol", help="plain: evaluate the negatives already in RUN. "
                                 "hidden-positives: build the input from the BEIR dataset of --qrels (per "
                                 "query, the best-graded relevant doc is the given positive, the others are "
                                 "hidden), mine it into RUN with the config, then evaluate against the full "
                                 "qrels."),
    data: Path | None = typer.Option(None, "--data", help="hidden-positives: BEIR directory [the directory "
                                     "two levels above --qrels]."),
    k: int | None = typer.Option(None, "--k", help="Negatives asked per query, for coverage and hardness "
                                 "[select.num_negatives from the run's manifest]."),
    min_grade: float = typer.Option(1.0, "--min-grade", callback=finite, help="Qrels grade from which a document is relevant."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a markdown table."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Measure mined negatives against qrels: false-negative rate, FN@query, coverage, hardness, mean rank and
    drops per reason. Writes RUN/report/metrics.json and prints a markdown table.

    Example: negmine eval runs/cran --qrels ../shared/data/cranfield/qrels/test.tsv --protocol hidden-positives
    """
    import json

    from negmine.errors import InputError
    from negmine.report.eval import metrics_markdown
    from negmine.report.run import evaluate_run

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol '{protocol}' ({' | '.join(PROTOCOLS)})", "--protocol")
    if k is not None and k < 1:
        raise InputError(f"--k must be >= 1, got {k}", "--k")
    extra = None
    if protocol == "hidden-positives":
        from negmine.commands.common import resolve
        from negmine.report.protocol import mine_hidden_positives

        extra = mine_hidden_positives(run, qrels, resolve(config, set_, "input"), data, min_grade)
    out = evaluate_run(run, qrels, k=k, min_grade=min_grade, extra=extra)
    if as_json:
        typer.echo(json.dumps(out["metrics"], indent=2))
    else:
        typer.echo(metrics_markdown(out["metrics"]))
        typer.echo(f"\nwritten: {Path(run) / 'report' / 'metrics.json'}")



def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
