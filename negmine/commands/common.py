"""Options shared by the stage commands and the config resolution they all do."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (sections: input, retrieve, score, select, "
                         "export, relabel).", dir_okay=False)
SetOpt = typer.Option(None, "--set", help="Override a config key, e.g. --set select.max_pos_sim=0.6 (repeatable).")
RunArg = typer.Argument(..., help="Run directory (holds one sub-directory per stage).")
EngineOpt = typer.Option(None, "--engine", help="Where models run: local | ray (config engine.kind) [local].")
EngineAddressOpt = typer.Option(None, "--engine-address", help="Ray cluster address, host:port or ray://host:port "
                                "(config engine.address) [$RAY_ADDRESS, else a local cluster].")
# the options of the engine section whose names are not --KEY
ENGINE_FLAGS = {("engine", "kind"): "--engine", ("engine", "address"): "--engine-address"}


def engine_flags(engine: str | None, address: str | None) -> dict[str, Any]:
    return {"kind": engine, "address": address}


def resolve(config: Path | None, sets: list[str] | None, section: str, run: Path | None = None,
            engine: dict[str, Any] | None = None, **flags: Any):
    """Effective config: defaults < YAML < --set < explicit flags (None = not given). On a run directory without
    ``--config``, the run's recorded config (the last manifest holding one) replaces the defaults, and the values of
    ``section`` that the flags and ``--set`` change are logged."""
    from negmine.config import load_config

    recorded = recorded_config(run) if run is not None and config is None else None
    given = {section: flags} | ({"engine": engine} if engine else {})
    cfg = load_config(config, sets or [], given, base=recorded[1] if recorded else None, flag_names=ENGINE_FLAGS)
    problems = getattr(getattr(cfg, section), "problems", None)
    if recorded is not None and not (problems and problems()):  # (bad input stays one line: the stage says it)
        _say_changes(section, recorded, cfg)
    _RESOLVED[:] = [(run, section, cfg)] if run is not None else []
    return cfg


# (run, effective config) of the stage command being run: the CLI records it into the stage's manifest afterwards
_RESOLVED: list[tuple[Path, str, Any]] = []
# config section -> the run sub-directory whose manifest records the config of a stage run alone
SECTION_DIRS = {"input": "ingest", "retrieve": "candidates", "score": "scores", "calibrate": "calibration",
                "select": "negatives", "relabel": "relabel"}


def recorded_config(run: Path) -> tuple[Path, dict[str, Any]] | None:
    """(manifest, config) of the run's most recently written manifest that records a config, or None."""
    import json

    best: tuple[float, Path, dict[str, Any]] | None = None
    for mf in Path(run).glob("*/_manifest.json"):
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
            mtime = mf.stat().st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and isinstance(m.get("config"), dict) and (best is None or mtime > best[0]):
            best = (mtime, mf, m["config"])
    return (best[1], _sparse(best[2])) if best is not None else None


def _sparse(config: dict[str, Any]) -> dict[str, Any]:
    """The recorded config without the values that equal the defaults (a manifest records every key; setting
    them all explicitly would trip checks on keys given out of context, e.g. perc_pos without filter perc-pos)."""
    from negmine.config import Config

    defaults = Config().model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in config.items():
        dflt = defaults.get(key)
        if isinstance(value, dict) and isinstance(dflt, dict):
            kept = {k: v for k, v in value.items() if k not in dflt or dflt[k] != v}
            if kept:
                out[key] = kept
        elif key in defaults and value != dflt:
            out[key] = value
    return out


def _say_changes(section: str, recorded: tuple[Path, dict[str, Any]], cfg: Any) -> None:
    import logging

    log = logging.getLogger("negmine")
    from negmine.config import Config

    before = {**(Config().model_dump(mode="json").get(section) or {}), **(recorded[1].get(section) or {})}
    after = getattr(cfg, section).model_dump(mode="json")
    changed = [f"{k} {before.get(k)!r} → {v!r}" for k, v in after.items() if k in before and before.get(k) != v]
    log.info("%s: starting from the run's recorded config (%s)%s", section, recorded[0],
             f"; changed: {', '.join(changed)}" if changed else "")


def forget_resolved() -> None:
    _RESOLVED.clear()


def record_resolved() -> None:
    """Write the effective config of the stage command that just succeeded into its artifact's manifest, so the
    next stage run alone starts from it (called by the CLI; export has no manifest and records nothing)."""
    if not _RESOLVED:
        return
    import json

    from negmine.config import effective_config
    from negmine.io.store import MANIFEST, write_json_atomic

    run, section, cfg = _RESOLVED.pop()
    mf = Path(run) / SECTION_DIRS.get(section, "-") / MANIFEST
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    full = effective_config(cfg)
    if isinstance(m, dict) and m.get("config") != full:
        m["config"] = full
        write_json_atomic(mf, m)


def finite(value: float | None) -> float | None:
    """Callback of a float flag that is not a config field: NaN and infinity are bad input (click's own range check
    lets NaN through, since every comparison with NaN is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value
