"""The Python API: ``negmine.mine``, ``negmine.select`` and ``negmine.load``.

::

    import negmine

    train = negmine.mine("data/my-hf-folder", "runs/mine", select={"num_negatives": 4})  # a datasets.Dataset
    train = negmine.select("runs/mine", max_pos_sim=0.5)   # re-select from the cached scores, re-export
    eval_ = negmine.load("runs/mine", split="eval")        # after export={"split": "eval=0.05"}

Each call runs the same stages as the command line (skipped when up to date) and returns the exported training
rows as a ``datasets.Dataset`` (a ``pyarrow.Table`` when ``datasets`` is not installed). Heavy libraries are
imported on first use, so ``import negmine`` stays cheap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SECTIONS = ("input", "retrieve", "score", "select", "export", "relabel", "calibrate")


def mine(data: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None, *,
         config: str | os.PathLike | None = None, sets: list[str] | None = None,
         **sections: dict[str, Any]) -> Any:
    """Ingest ``data`` (any input ``negmine ingest`` reads: a Hugging Face dataset folder, pairs, BEIR, ...), then
    retrieve, score, select and export into ``run_dir``; returns the exported train split.

    ``config`` is a YAML file, ``sets`` its ``section.key=value`` overrides, and keyword sections override both,
    e.g. ``select={"num_negatives": 4}, export={"format": "n-tuple", "split": "eval=0.05"}``."""
    from negmine.config import load_config
    from negmine.errors import InputError
    from negmine.pipeline import run_mine

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise InputError(f"unknown config section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})",
                         "negmine.mine")
    flags = {name: dict(values) for name, values in sections.items()}
    if data is not None:
        flags.setdefault("input", {})["path"] = str(data)
    cfg = load_config(config, sets or [], flags)
    res = run_mine(cfg, Path(run_dir) if run_dir is not None else None)
    return load(res.export_path if res.export_path is not None else res.run_dir)


def select(run_dir: str | os.PathLike, **params: Any) -> Any:
    """Re-run select on ``run_dir`` from its recorded select parameters with ``params`` on top (e.g.
    ``num_negatives=4``, ``max_pos_sim=0.5``), re-export with the run's last export parameters, and return the
    exported train split. Only select and export run: the scores are cached in the run."""
    from negmine.export.params import ExportParams
    from negmine.export.stage import run_export
    from negmine.select.params import SelectParams
    from negmine.select.stage import run_select

    run = Path(run_dir)
    recorded = _manifest(run / "negatives").get("params") or {}
    defaults = SelectParams().model_dump(mode="json")
    # the recorded values that are not the defaults (setting every key explicitly would trip the checks of keys
    # given out of context, e.g. perc_pos without filter perc-pos)
    kept = {k: v for k, v in recorded.items() if k in defaults and defaults[k] != v}
    sel = SelectParams.model_validate(kept | params)
    run_select(run, sel)
    last = _last_export(run)
    exp = ExportParams.model_validate((last or {}).get("params") or {})
    res = run_export(run, exp)
    return load(res.path)


def load(path: str | os.PathLike, split: str = "train", *, format: str | None = None) -> Any:
    """The exported rows of a run directory (its last export, or the export of ``format``), of an export directory
    or of an exported file, as a ``datasets.Dataset`` (``split``: train, or the held-out split's name); a
    ``pyarrow.Table`` without ``datasets``."""
    from negmine.errors import InputError
    from negmine.export import card

    p = Path(path)
    if p.is_file():
        file = p
    else:
        directory = p / "export" if (p / "export").is_dir() else p
        infos = card.read_sidecars(directory) if directory.is_dir() else []
        if format is not None:
            infos = [i for i in infos if i.get("format") == format or i.get("export") == format]
        if not infos:
            raise InputError("no export here: run `negmine export` (or negmine.mine) first"
                             + (f" with format {format}" if format else ""), p)
        newest = max(infos, key=lambda i: (directory / card.sidecar_path(Path(i["file"])).name).stat().st_mtime)
        chosen = [i for i in infos if i.get("export") == newest.get("export") and i.get("split") == split]
        if not chosen:
            have = sorted({str(i.get("split")) for i in infos if i.get("export") == newest.get("export")})
            raise InputError(f"export {newest.get('export')} has no split '{split}' (splits: {', '.join(have)})", p)
        file = directory / chosen[0]["file"]
        if not int(chosen[0].get("rows", 1)):
            raise InputError("the export has no rows (no query kept both a positive and a negative: see the "
                             "export's warning and the select summary)", file)
    parquet = card.full_suffix(file) == ".parquet"
    try:
        import datasets
    except ImportError:
        return _arrow_table(file, parquet)
    return datasets.load_dataset("parquet" if parquet else "json", data_files=str(file), split="train")


def _arrow_table(file: Path, parquet: bool) -> Any:
    import pyarrow as pa

    if parquet:
        import pyarrow.parquet as pq

        return pq.read_table(file)
    from negmine.io.textio import iter_jsonl

    return pa.Table.from_pylist([obj for _n, obj in iter_jsonl(file)])


def _manifest(art_dir: Path) -> dict[str, Any]:
    from negmine.io.store import MANIFEST

    try:
        return json.loads((art_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _last_export(run: Path) -> dict[str, Any] | None:
    from negmine.export import card

    directory = run / "export"
    infos = card.read_sidecars(directory) if directory.is_dir() else []
    if not infos:
        return None
    return max(infos, key=lambda i: (directory / card.sidecar_path(Path(i["file"])).name).stat().st_mtime)
