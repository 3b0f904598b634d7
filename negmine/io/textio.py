"""Line-oriented reading of (optionally compressed) text files with 1-based line numbers in every error."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from negmine.errors import InputError

BOM = b"\xef\xbb\xbf"


def open_binary(path: str | os.PathLike) -> IO[bytes]:
    """Open a file for binary reading, decompressing ``.gz`` and ``.zst``/``.zstd`` by suffix."""
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", p)
    if p.is_dir():
        raise InputError("is a directory, expected a file", p)
    suffix = p.suffix.lower()
    if suffix == ".gz":
        return gzip.open(p, "rb")  # type: ignore[return-value]
    if suffix in (".zst", ".zstd"):
        import zstandard

        raw = open(p, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True),
                                 buffer_size=1 << 20)
    return open(p, "rb", buffering=1 << 20)


def base_suffix(path: str | os.PathLike) -> str:
    """The suffix that names the format, ignoring a compression suffix: ``x.jsonl.gz`` → ``.jsonl``."""
    p = Path(path)
    if p.suffix.lower() in (".gz", ".zst", ".zstd"):
        p = p.with_suffix("")
    return p.suffix.lower()


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` without the line ending; accepts CRLF and a UTF-8 BOM.

    Raises InputError for an empty file and for invalid UTF-8 (naming the line).
    """
    n = 0
    with open_binary(path) as f:
        try:
            for n, raw in enumerate(f, 1):
                if n == 1 and raw.startswith(BOM):
                    raw = raw[3:]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"invalid UTF-8 at byte {e.start + 1} of the line", path, line=n) from None
                yield n, line.rstrip("\r\n")
        except (OSError, EOFError) as e:  # corrupt gzip/zstd stream
            if isinstance(e, InputError):
                raise
            raise InputError(f"cannot read compressed stream: {e}", path, line=n + 1 if n else None) from None
    if n == 0:
        raise InputError("file is empty", path)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every line must be a JSON object."""
    any_rows = False
    loads = json.loads
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON: {e.msg} (column {e.colno})", path, line=n) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, line=n)
        any_rows = True
        yield n, obj
    if not any_rows:
        raise InputError("file has no records (only blank lines)", path)
