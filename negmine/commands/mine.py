"""`negmine mine --config FILE [--set key=value ...] [--out RUN]`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, EngineAddressOpt, EngineOpt, SetOpt


def mine(
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory [the config's run_dir]."),
    engine: str | None = EngineOpt,
    engine_address: str | None = EngineAddressOpt,
) -> None:
    """Run ingest → retrieve → score → select → export in one process; stages whose inputs and parameters
    are unchanged are skipped ("up to date"), so changing a select key re-runs only select and export.

    Example: negmine mine --config configs/demo.yaml --set select.max_pos_sim=0.6
    """
    from negmine.commands.common import ENGINE_FLAGS, engine_flags
    from negmine.config import load_config
    from negmine.pipeline import run_mine, summary_text

    cfg = load_config(config, set_ or [], {"engine": engine_flags(engine, engine_address)}, flag_names=ENGINE_FLAGS)
    res = run_mine(cfg, out)
    typer.echo(summary_text(res))


def register(app: typer.Typer) -> None:
    app.command("mine")(mine)
