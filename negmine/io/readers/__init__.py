"""Input readers, one module per format. Each module exposes ``input_files(src, params)`` (the files whose
content fingerprints the input) and ``read(src, params, canon)`` (push records into an ingest ``Canon``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from negmine.errors import InputError

FORMATS = {"beir": "beir", "pairs": "pairs", "tevatron": "tevatron", "flagembedding": "flagembedding"}


def get_reader(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise InputError(f"unknown input format '{fmt}' (known: {', '.join(FORMATS)})", "--format")
    return importlib.import_module(f"negmine.io.readers.{FORMATS[fmt]}")


def sniff_file_format(path: Path) -> str:
    """Guess the format of a single input file from its suffix and first record."""
    from negmine.io.textio import base_suffix, iter_jsonl

    suffix = base_suffix(path)
    if suffix in (".parquet", ".arrow", ".csv", ".tsv"):
        from negmine.io.textio import columns_of

        cols = columns_of(path) or []
        return "tevatron" if "positive_document_ids" in cols or "positive_passages" in cols else "pairs"
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise InputError(f"unknown input format for suffix '{suffix or '(none)'}' "
                         "(expected a BEIR directory, a Hugging Face dataset folder, .jsonl, .parquet, .arrow or .csv; or pass "
                         "--format)", path)
    for _n, obj in iter_jsonl(path):
        if "positive_passages" in obj or "positive_document_ids" in obj:
            return "tevatron"
        if "pos" in obj and "query" in obj:
            return "flagembedding"
        return "pairs"
    raise InputError("file has no records", path)
