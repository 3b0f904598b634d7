"""`negmine push RUN_OR_EXPORT --repo-id NAME`."""

from __future__ import annotations

from pathlib import Path

import typer


def push(
    path: Path = typer.Argument(..., help="Run directory (its export/), export directory or exported file."),
    repo_id: str = typer.Option(..., "--repo-id", help="Dataset repository, e.g. me/scifact-hard-negatives."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to commit to [main]."),
    message: str | None = typer.Option(None, "--message", "-m", help="Commit message."),
) -> None:
    """Upload an export (data files + dataset card README.md) to a Hugging Face dataset repository.

    Example: negmine push runs/scifact --repo-id me/scifact-hard-negatives

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub. Then:
    datasets.load_dataset("me/scifact-hard-negatives").
    """
    from negmine.export.push import push as run_push

    res = run_push(path, repo_id, private=private, revision=revision, message=message)
    typer.echo(f"pushed {len(res.files)} files to {res.repo_id}: {res.url}")


def register(app: typer.Typer) -> None:
    app.command("push")(push)
