"""Hugging Face dataset folders as ingest input: the data files of one split.

Recognised layouts (``split`` is ``input.split``, default ``train``):

* ``save_to_disk`` output: a ``DatasetDict`` folder (``dataset_dict.json`` + one folder per split) or a
  ``Dataset`` folder (``state.json`` listing its ``data-0000x-of-0000n.arrow`` files);
* a Hub snapshot or ``push_to_hub`` layout: ``data/train-0000x-of-0000n.parquet`` (or ``.arrow``, ``.jsonl``),
  ``data/train/*.parquet``, ``train.parquet`` or ``train-*.parquet`` at the top;
* a folder whose only data files have no split in their names (all of them are the split).

The files are read in name order (``-00000-of-`` first) by the pairs reader, so ``anchor``/``positive`` and
``query``/``answer`` columns work as they do for a single file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from negmine.errors import InputError, RuntimeFailure

DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".csv", ".tsv")


def _is_data(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and not name.startswith((".", "_")) and name.endswith(DATA_SUFFIXES) \
        and name not in ("dataset_info.json", "state.json", "dataset_dict.json")


def _split_of(rel: Path) -> str | None:
    """The split a data file's path names (``data/train-00000-of-00002.parquet`` → train), or None."""
    for part in rel.parts[:-1]:
        if re.fullmatch(r"[A-Za-z][\w]*", part) and part not in ("data", "default"):
            return part
    m = re.match(r"([A-Za-z][A-Za-z0-9]*)(?:[-_.]\d{5}-of-\d{5}|[-_.]\d+)?\.", rel.name)
    return m.group(1) if m else None


def data_files(src: Path, split: str) -> list[Path] | None:
    """The data files of ``split`` in the dataset folder ``src``; None when ``src`` is not such a folder. A folder
    with data files of other splits only is an InputError naming them."""
    if (src / "dataset_dict.json").is_file():
        try:
            splits = json.loads((src / "dataset_dict.json").read_text(encoding="utf-8")).get("splits") or []
        except (OSError, ValueError) as e:
            raise InputError(f"unreadable dataset_dict.json: {e}", src / "dataset_dict.json") from None
        if split not in splits or not (src / split).is_dir():
            raise InputError(f"the dataset has no split '{split}' (splits: {', '.join(splits)}); set --split",
                             src / "dataset_dict.json")
        return data_files(src / split, split)
    if (src / "state.json").is_file():
        try:
            state = json.loads((src / "state.json").read_text(encoding="utf-8"))
            names = [f["filename"] for f in state.get("_data_files", [])]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"unreadable state.json: {e}", src / "state.json") from None
        files = [src / n for n in names] or sorted(src.glob("*.arrow"))
        if not files:
            raise InputError("save_to_disk folder without .arrow files", src)
        return files
    found = sorted(p for p in src.rglob("*") if _is_data(p) and not any(
        part.startswith((".", "_")) for part in p.relative_to(src).parts))
    if not found:
        return None
    by_split: dict[str | None, list[Path]] = {}
    for p in found:
        by_split.setdefault(_split_of(p.relative_to(src)), []).append(p)
    if split in by_split:
        return by_split[split]
    named = sorted(s for s in by_split if s is not None)
    if len(by_split) == 1 and None in by_split:
        return by_split[None]
    if len(named) == 1 and None not in by_split:  # one split only, named otherwise (e.g. a folder of "data-*")
        return by_split[named[0]]
    raise InputError(f"no data files of split '{split}' (found: {', '.join(str(s) for s in named)}); set --split",
                     src)


def hub_snapshot(name: str) -> Path | None:
    """A local snapshot of the Hub dataset ``name`` (``owner/name``) through ``huggingface_hub`` (its cache and
    ``HF_ENDPOINT``), or None when ``name`` is not shaped like a dataset name. Offline
    (``HF_HUB_OFFLINE=1``), or a name the Hub does not know: an InputError."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) or name.endswith((".jsonl", ".parquet", ".csv")):
        return None
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:
        return None
    if constants.HF_HUB_OFFLINE:
        raise InputError("input not found (no such path; as a Hugging Face dataset name it needs the network, and "
                         "HF_HUB_OFFLINE is set)", name)
    try:
        return Path(snapshot_download(name, repo_type="dataset"))
    except RepositoryNotFoundError:
        raise InputError("input not found (no such path, and no such Hugging Face dataset)", name) from None
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        raise RuntimeFailure(f"downloading the Hugging Face dataset {name} failed: {type(e).__name__}: {first}") \
            from None
