"""Options shared by the stage commands and the config resolution they all do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (sections: input, retrieve, score, select, "
                         "export, relabel).", dir_okay=False)
SetOpt = typer.Option(None, "--set", help="Override a config key, e.g. --set select.max_pos_sim=0.6 (repeatable).")
RunArg = typer.Argument(..., help="Run directory (holds one sub-directory per stage).")


def resolve(config: Path | None, sets: list[str] | None, section: str, **flags: Any):
    """Effective config: defaults < YAML < --set < explicit flags (None = not given)."""
    from negmine.config import load_config

    return load_config(config, sets or [], {section: flags})
