"""`negmine retrieve RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from negmine.commands.common import ConfigOpt, EngineAddressOpt, EngineOpt, RunArg, SetOpt
from negmine.commands.options import Flag, stage_options
from negmine.retrieve.params import RetrieveParams


@stage_options(RetrieveParams, Flag("method", "--method", "-m"), "depth", "model", "encoder_backend", "backend", "index", "fusion",
               "query_prompt", "doc_prompt", "max_seq_length", "batch_size", "device", "shard_queries")
def retrieve(
    run: Path = RunArg,
    engine: str | None = EngineOpt,
    engine_address: str | None = EngineAddressOpt,
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    *,
    flags: dict[str, Any],
) -> None:
    """Retrieve candidate documents for every query (RUN/ingest → RUN/candidates).

    Positives are kept (selection masks them); the manifest's stats give the rank at which each positive was
    found (table positive_ranks) and recall@depth. Several fused retrievers: config key retrieve.retrievers.

    Example: negmine retrieve runs/scifact --method hybrid --depth 200
    """
    from negmine.commands.common import engine_flags, resolve
    from negmine.engine import use_engine
    from negmine.retrieve.stage import run_retrieve

    cfg = resolve(config, set_, "retrieve", run=run, engine=engine_flags(engine, engine_address), **flags)
    with use_engine(cfg.engine):
        res = run_retrieve(run, cfg.retrieve)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
