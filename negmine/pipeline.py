"""`negmine mine`: the stage graph ingest → retrieve → score → select → export, run in one process.

Each stage is visited once, in order. A stage whose fingerprint (its params + its inputs' fingerprints) matches the
artifact on disk is skipped, so changing only a select key re-runs select and export; the log says, per stage,
"up to date, skipped" or "ran in X s". The effective config (no secrets: keys live only in environment variables)
is recorded in the manifest of every stage that ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negmine.config import Config, effective_config
from negmine.engine import use_engine
from negmine.errors import InputError

log = logging.getLogger("negmine")


@dataclass(frozen=True)
class Stage:
    name: str
    section: str                    # config section holding its params (docs/ARCHITECTURE.md: the one mapping)


STAGES: tuple[Stage, ...] = (Stage("ingest", "input"), Stage("retrieve", "retrieve"), Stage("score", "score"),
                             Stage("select", "select"), Stage("export", "export"))


def stage_functions() -> dict[str, Callable[[Path, Any], Any]]:
    """The stage function of each stage, ``run_<stage>(run_dir, params)``; imported on call, so that importing
    this module (and `negmine --help`) stays light."""
    from negmine.export.stage import run_export
    from negmine.io.ingest import run_ingest
    from negmine.retrieve.stage import run_retrieve
    from negmine.score.stage import run_score
    from negmine.select.stage import run_select

    return {"ingest": run_ingest, "retrieve": run_retrieve, "score": run_score, "select": run_select,
            "export": run_export}


@dataclass
class StageRun:
    name: str
    skipped: bool
    seconds: float
    result: Any


@dataclass
class MineResult:
    run_dir: Path
    stages: list[StageRun] = field(default_factory=list)
    export_path: Path | None = None


def run_stage(cfg: Config, name: str, run_dir: str | Path) -> Any:
    """Run one stage of the graph with its section of ``cfg`` (skipped by the stage itself when up to date)."""
    stage = next(s for s in STAGES if s.name == name)
    return stage_functions()[name](Path(run_dir), getattr(cfg, stage.section))


def _record_config(result: Any, config: dict[str, Any]) -> None:
    """Add the effective config to the manifest of a stage that just ran (not part of its fingerprint)."""
    from negmine.io.store import MANIFEST, write_json_atomic

    art = getattr(result, "artifact", None)
    if art is None or not hasattr(art, "manifest"):
        return
    mf = Path(art.path) / MANIFEST
    if mf.is_file() and art.manifest.get("config") != config:
        art.manifest["config"] = config
        write_json_atomic(mf, art.manifest)


def run_mine(cfg: Config, run_dir: str | Path | None = None) -> MineResult:
    """Run every stage of ``cfg`` into ``run_dir`` (default: the config's ``run_dir``)."""
    rd = run_dir if run_dir is not None else cfg.run_dir
    if not rd:
        raise InputError("no run directory: give --out RUN or set run_dir in the config", "--out")
    rd = Path(rd)
    config = effective_config(cfg)
    out = MineResult(rd)
    n = len(STAGES)
    with use_engine(cfg.engine):  # one engine (one Ray connection, its worker pools) for every stage
        _run_stages(cfg, rd, config, out, n)
    return out


def _run_stages(cfg: Config, rd: Path, config: dict[str, Any], out: MineResult, n: int) -> None:
    for i, stage in enumerate(STAGES, 1):
        t0 = time.time()
        res = run_stage(cfg, stage.name, rd)
        secs = time.time() - t0
        skipped = bool(getattr(res, "skipped", False))
        if skipped:
            log.info("[%d/%d] %s: up to date, skipped", i, n, stage.name)
        else:
            _record_config(res, config)
            log.info("[%d/%d] %s: ran in %.1f s", i, n, stage.name, secs)
        out.stages.append(StageRun(stage.name, skipped, secs, res))
        if stage.name == "export":
            out.export_path = Path(res.path)  # export.out, default RUN/export/<format>.parquet | .jsonl


def summary_text(res: MineResult) -> str:
    """What `negmine mine` prints: per-stage status, the select summary, and the exported file."""
    lines = [f"run: {res.run_dir}"]
    for s in res.stages:
        status = "up to date, skipped" if s.skipped else f"ran in {s.seconds:.1f} s"
        lines.append(f"  {s.name:<9} {status}")
    sel = next((s for s in res.stages if s.name == "select"), None)
    art = getattr(sel.result, "artifact", None) if sel else None
    if art is not None:
        from negmine.select.stage import format_summary

        lines += ["", "select summary:", format_summary(art.stats).rstrip("\n")]
    if res.export_path is not None:
        lines += ["", f"exported: {res.export_path}"]
    return "\n".join(lines)
