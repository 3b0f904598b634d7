"""`negmine verify RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import RunArg


def verify(run: Path = RunArg) -> None:
    """Check a whole run: every shard of every artifact against the checksum its manifest recorded, and every
    artifact's inputs against the artifacts now in the run (an artifact built from an older ingest, candidates,
    scores, ... is stale). Prints one line per artifact; exits 2 naming the first problem and the command that
    repairs it, 0 when the run is intact.

    Example: negmine verify runs/sf
    """
    from negmine.errors import InputError
    from negmine.io.store import verify_run

    results = verify_run(run)
    for path, problem in results:
        typer.echo(f"{'ok' if problem is None else 'FAILED':<7}{path}" + ("" if problem is None else f": {problem}"))
    bad = [(p, why) for p, why in results if why is not None]
    if bad:
        more = f" ({len(bad)} artifacts failed)" if len(bad) > 1 else ""
        raise InputError(f"{bad[0][1]}{more}", bad[0][0])
    if not results:
        raise InputError("no finished artifact in this run directory", run)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
