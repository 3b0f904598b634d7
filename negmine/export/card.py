"""What sits beside an exported file so that ``datasets.load_dataset(EXPORT_DIR)`` and the Hub take the directory
as a dataset: the hidden sidecar (``.<file>.negmine.json``: ``datasets`` ignores dot-files), output file names
(suffixes, ``--split``) and the dataset card (``README.md`` with YAML front matter).

The card lists every export of the directory as a config (named after the file, ``triplet`` for
``triplet.parquet``; the export written last is the default), each with its splits, features and row counts, plus
the mining parameters and counts recorded in the run's manifests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from negmine.errors import InputError

log = logging.getLogger("negmine")

SIDECAR_SUFFIX = ".negmine.json"
CARD_MARKER = "<!-- written by negmine export: re-running the export rewrites this file -->"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
TAGS = ["sentence-transformers", "hard-negatives"]
# run sub-directories whose manifests the card summarises, in pipeline order
STAGE_DIRS = ("ingest", "candidates", "scores", "calibration", "negatives", "relabel")


def sidecar_path(path: Path) -> Path:
    """The sidecar of an exported file: a dot-file beside it, which ``datasets`` and the Hub loader skip."""
    return path.with_name(f".{path.name}{SIDECAR_SUFFIX}")


def full_suffix(path: Path) -> str:
    """``.jsonl.gz``, ``.jsonl.zst``, ``.jsonl``, ``.parquet`` or whatever single suffix the name has."""
    name = path.name.lower()
    for s in (*JSONL_SUFFIXES[::-1], ".parquet"):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def container(path: Path, jsonl_only: bool, fmt: str) -> str:
    """``parquet`` | ``jsonl`` | ``jsonl.gz`` | ``jsonl.zst`` from the output name (an InputError on --out for
    any other suffix)."""
    suffix = full_suffix(path)
    if suffix in JSONL_SUFFIXES:
        return suffix[1:]
    if suffix == ".parquet" and not jsonl_only:
        return "parquet"
    allowed = ", ".join(JSONL_SUFFIXES if jsonl_only else (".parquet", *JSONL_SUFFIXES))
    raise InputError(f"format {fmt} is written as {allowed}, not {suffix or 'a file without suffix'}", "--out")


def export_name(path: Path) -> str:
    """The config name of an export: its file name without the suffix."""
    return path.name[: len(path.name) - len(full_suffix(path))] or path.name


def split_path(out: Path, split: str) -> Path:
    return out.with_name(f"{export_name(out)}-{split}{full_suffix(out)}")


def parse_split(spec: str) -> tuple[str, float]:
    """``eval=0.05`` → ("eval", 0.05): the held-out split's name and fraction of the queries."""
    name, eq, frac = spec.partition("=")
    name = name.strip()
    try:
        fraction = float(frac)
    except ValueError:
        fraction = -1.0
    if not eq or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name == "train" or not 0 < fraction < 1:
        raise InputError(f"'{spec}' is not NAME=FRACTION with a split name other than train and 0 < FRACTION < 1 "
                         "(e.g. eval=0.05)", "--split")
    return name, fraction


def held_out(query_ids: list[str], fraction: float, seed: int) -> set[str]:
    """The queries of the held-out split: the ``round(fraction * n)`` queries (at least one when there are two or
    more) first in a seeded hash order, so the split depends on neither sharding nor query order."""
    n = len(query_ids)
    if n < 2:
        return set()
    want = min(n - 1, max(1, round(fraction * n)))
    ranked = sorted(query_ids, key=lambda q: hashlib.blake2b(f"{seed}\0{q}".encode(), digest_size=8).digest())
    return set(ranked[:want])


# Arrow scalar types and their `datasets` dtype names (the types negmine's export schemas use)
_DTYPES = {"string": "string", "large_string": "string", "float": "float32", "double": "float64",
           "int64": "int64", "int32": "int32", "bool": "bool"}


def _datasets_major() -> int | None:
    """The installed `datasets`' major version, read from its metadata (importing it costs about a second)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("datasets").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None


def _features_direct(schema: Any) -> list[dict[str, Any]] | None:
    """What ``Features.from_arrow_schema(schema)._to_yaml_list()`` gives for scalar and list-of-scalar columns
    (``datasets`` >= 4 spells a list ``list:``); None for any other type."""
    import pyarrow as pa

    out: list[dict[str, Any]] = []
    for f in schema:
        if pa.types.is_list(f.type) and str(f.type.value_type) in _DTYPES:
            out.append({"name": f.name, "list": _DTYPES[str(f.type.value_type)]})
        elif str(f.type) in _DTYPES:
            out.append({"name": f.name, "dtype": _DTYPES[str(f.type)]})
        else:
            return None
    return out


def features_yaml(schema: Any) -> list[dict[str, Any]] | None:
    """The card's ``features`` for an Arrow schema, as ``datasets`` writes them (None without ``datasets``).
    negmine's own column types are spelled directly (importing ``datasets`` was half of a 100k-query export);
    anything else goes through ``datasets``."""
    major = _datasets_major()
    if major is None:
        return None
    if major >= 4 and (direct := _features_direct(schema)) is not None:
        return direct
    try:
        from datasets import Features
    except ImportError:
        return None
    try:
        return Features.from_arrow_schema(schema)._to_yaml_list()
    except Exception:  # a type datasets cannot express: the card goes without features
        return None


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if n < bound), "n>1T" if n >= 10**12 else "1B<n<10B")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_sidecars(directory: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(directory.glob(f".*{SIDECAR_SUFFIX}")):
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        file = info.get("file")
        if isinstance(info, dict) and file and (directory / file).is_file():
            out.append(info)
    return out


def _mining(run_dir: Path) -> dict[str, Any]:
    """Per stage present in the run: its parameters and counts (from the manifests)."""
    mined: dict[str, Any] = {}
    for name in STAGE_DIRS:
        mf = run_dir / name / "_manifest.json"
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        params = {k: v for k, v in (m.get("params") or {}).items() if v is not None and k not in ("path", "corpus")}
        stats = {k: v for k, v in (m.get("stats") or {}).items() if isinstance(v, (int, float, str))}
        mined[m.get("stage", name)] = {"parameters": params, "counts": stats}
    return mined


def write_card(directory: Path, run_dir: Path, default: str, license: str | None = None) -> Path | None:
    """(Re)write ``directory/README.md`` from the sidecars of the exports in ``directory``; a README.md that
    negmine did not write is left alone (with a warning). Returns the card's path, or None."""
    import yaml

    card = directory / "README.md"
    if card.is_file() and CARD_MARKER not in card.read_text(encoding="utf-8", errors="replace"):
        log.warning("export: %s exists and was not written by negmine: no dataset card written", card)
        return None
    infos = read_sidecars(directory)
    by_export: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        by_export.setdefault(info.get("export") or export_name(Path(info["file"])), []).append(info)
    if not by_export:
        return None
    configs, dataset_info = [], []
    total = 0
    for name, files in sorted(by_export.items()):
        files.sort(key=lambda i: (i.get("split") != "train", i.get("split", "")))
        entry: dict[str, Any] = {"config_name": name}
        if name == default:
            entry["default"] = True
        entry["data_files"] = [{"split": i.get("split", "train"), "path": i["file"]} for i in files]
        configs.append(entry)
        feats = files[0].get("features")
        di: dict[str, Any] = {"config_name": name}
        if feats:
            di["features"] = feats
        di["splits"] = [{"name": i.get("split", "train"), "num_bytes": _size(directory / i["file"]),
                         "num_examples": int(i.get("rows", 0))} for i in files]
        dataset_info.append(di)
        total += sum(int(i.get("rows", 0)) for i in files)
    front = {
        "license": license or next((i["params"].get("license") for i in infos
                                    if (i.get("params") or {}).get("license")), None) or "unknown",
        "tags": TAGS,
        "task_categories": ["sentence-similarity"],
        "size_categories": [_size_category(total)],
        "configs": configs,
        "dataset_info": dataset_info,
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", CARD_MARKER, "",
             f"# Hard negatives mined with negmine ({default})", "",
             "Load it with `datasets.load_dataset(\"<this directory or repo id>\")`"
             + (f" (config `{default}` is the default)." if len(configs) > 1 else "."), "",
             "| config | format | split | rows | file |", "|---|---|---|---|---|"]
    for name, files in sorted(by_export.items()):
        for i in files:
            lines.append(f"| {name} | {i.get('format', '')} | {i.get('split', 'train')} | {int(i.get('rows', 0)):,} "
                         f"| `{i['file']}` |")
    counts = next((i.get("counts") for i in infos if (i.get("export") or "") == default), None)
    if counts:
        lines += ["", "Export counts:", "", "```yaml", yaml.safe_dump(counts, sort_keys=True).rstrip(), "```"]
    mined = _mining(run_dir)
    if mined:
        lines += ["", "## How it was mined", "",
                  "The parameters and counts each stage recorded in its manifest (`negmine` run directory):", "",
                  "```yaml", yaml.safe_dump(mined, sort_keys=False, allow_unicode=True).rstrip(), "```"]
    if front["license"] == "unknown":
        lines += ["", "The license is `unknown` (give `negmine export --license ID`): the data inherit the license of "
                  "the corpus and queries they were mined from."]
    lines.append("")
    tmp = card.with_name(".README.md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(card)
    return card
