"""Reading (optionally compressed) input files with the position of every record in every error.

* ``iter_lines`` / ``iter_jsonl``: text and JSON Lines, 1-based line numbers; ``.gz`` / ``.zst`` decompressed by
  suffix; CRLF and a UTF-8 byte-order mark accepted; invalid UTF-8 and corrupt or truncated compressed streams are
  input errors naming the line.
* ``iter_records``: one dict per record from JSONL, CSV/TSV or Parquet, with its location (``{"line": n}`` for
  JSONL, ``{"row": n}`` for CSV and Parquet, where ``n`` counts data rows from 1, the CSV header not included).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from negmine.errors import InputError

fast_json_loads: Callable[[bytes | str], Any] | None
try:  # orjson parses JSON lines 2-3x faster than the standard library; json is the exact fallback
    import orjson

    fast_json_loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a core dependency
    fast_json_loads = None

BOM = b"\xef\xbb\xbf"
COMPRESSED = (".gz", ".zst", ".zstd")
_STREAM_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
try:
    import zstandard

    _STREAM_ERRORS += (zstandard.ZstdError,)
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]


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
        if zstandard is None:  # pragma: no cover
            raise InputError("reading .zst needs the 'zstandard' package", p)
        raw = open(p, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True),
                                 buffer_size=1 << 20)
    return open(p, "rb", buffering=1 << 20)


def base_suffix(path: str | os.PathLike) -> str:
    """The suffix that names the format, ignoring a compression suffix: ``x.jsonl.gz`` → ``.jsonl``."""
    p = Path(path)
    if p.suffix.lower() in COMPRESSED:
        p = p.with_suffix("")
    return p.suffix.lower()


def _stream_error(path: Any, e: BaseException, lines_read: int) -> InputError:
    """A corrupt or truncated compressed stream. Decompression is buffered, so the exact line is not known;
    the message says how many complete lines were read before the stream broke."""
    if isinstance(e, EOFError):
        what = "truncated compressed file"
    elif Path(path).suffix.lower() in COMPRESSED:
        what = f"corrupt compressed file ({e})"
    else:
        what = f"cannot read ({e})"
    return InputError(f"{what} after {lines_read} complete line(s)", path)


def iter_raw_lines(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw bytes)`` without the ``\\n`` (a ``\\r`` before it is kept), BOM removed.

    Reads big chunks and splits them (much faster than iterating a file line by line). Empty file → InputError.
    """
    n = 0
    carry = b""
    with open_binary(path) as f:
        read = f.read
        first = True
        while True:
            try:
                chunk = read(chunk_bytes)
            except _STREAM_ERRORS as e:
                raise _stream_error(path, e, n) from None
            if not chunk:
                break
            if first:
                first = False
                if chunk.startswith(BOM):
                    chunk = chunk[3:]
            lines = (carry + chunk if carry else chunk).split(b"\n")
            carry = lines.pop()
            for raw in lines:
                n += 1
                yield n, raw
    if carry:
        n += 1
        yield n, carry
    if n == 0:
        raise InputError("file is empty", path)


def decode_line(raw: bytes, path: Any, n: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"invalid UTF-8 at byte {e.start + 1} of the line", path, line=n) from None


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` without the line ending; accepts CRLF and a UTF-8 BOM.

    Raises InputError for an empty file, for invalid UTF-8 and for a corrupt compressed stream (naming the line).
    """
    for n, raw in iter_raw_lines(path):
        yield n, decode_line(raw, path, n).rstrip("\r")


def parse_json_line(raw: bytes, path: Any, n: int) -> Any:
    """Parse one JSON line; errors name the line (invalid UTF-8 and JSON syntax are told apart)."""
    if fast_json_loads is not None:
        try:
            return fast_json_loads(raw)
        except ValueError:
            pass  # re-parse with the standard library for the exact message (or a value orjson rejects)
    text = decode_line(raw, path, n)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON: {e.msg} (column {e.colno})", path, line=n) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", path, line=n) from None
    if _has_lone_surrogate(obj):
        raise InputError("invalid JSON string: an escape such as \\ud800 names half of a UTF-16 pair, not a "
                         "character", path, line=n)
    return obj


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a parsed JSON value holds a string that cannot be UTF-8 (a lone surrogate escape)."""
    todo = [obj]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(x, dict):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, list):
            todo.extend(x)
    return False


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every line must be a JSON object."""
    any_rows = False
    loads = fast_json_loads
    for n, raw in iter_raw_lines(path):
        obj = None
        if loads is not None:
            try:
                obj = loads(raw)
            except ValueError:
                obj = None
        if obj is None:
            if not raw.strip():
                continue
            obj = parse_json_line(raw, path, n)
        if type(obj) is not dict:
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, line=n)
        any_rows = True
        yield n, obj
    if not any_rows:
        raise InputError("file has no records (only blank lines)", path)


# ----------------------------------------------------------------------------------------------------------------
# tabular records: JSONL, CSV/TSV, Parquet

TABULAR_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow")


def record_kind(path: str | os.PathLike) -> str:
    """``jsonl`` | ``csv`` | ``tsv`` | ``parquet`` | ``arrow`` from the file's suffix (compression suffix
    ignored; ``.arrow`` is an Arrow IPC stream or file, as ``datasets`` writes them)."""
    s = base_suffix(path)
    if s in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if s in (".csv", ".tsv", ".parquet", ".arrow"):
        return s[1:]
    raise InputError(f"unknown file type '{s or '(no suffix)'}' (expected .jsonl, .csv, .tsv, .parquet or .arrow)",
                     path)


def columns_of(path: str | os.PathLike) -> list[str] | None:
    """Column names of a CSV/TSV header or a Parquet schema; None for JSONL (fields vary by line)."""
    kind = record_kind(path)
    if kind == "parquet":
        return _parquet_file(path).schema_arrow.names
    if kind == "arrow":
        return list(_arrow_batches(path, schema_only=True).names)
    if kind in ("csv", "tsv"):
        for _n, header in _csv_rows(path, kind):
            return header
        raise InputError("file is empty", path)
    return None


def require_columns(path: str | os.PathLike, needed: dict[str, str]) -> None:
    """Fail early (CSV: naming line 1, the header) when a configured column is missing.

    ``needed`` maps a column name to the option that names it, e.g. ``{"question": "--query-column"}``.
    """
    cols = columns_of(path)
    if cols is None:
        return
    for col, option in needed.items():
        if col not in cols:
            line = 1 if record_kind(path) in ("csv", "tsv") else None
            raise InputError(f"no column '{col}' (columns: {', '.join(cols) or 'none'}); set {option}", path,
                             line=line)


def _csv_rows(path: str | os.PathLike, kind: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a CSV/TSV file as lists, with the physical line each row ends on (quoted fields may span
    lines). Fields may be long (whole documents): the csv module's 128 KiB field limit is raised."""
    if csv.field_size_limit() < 1 << 30:
        csv.field_size_limit(1 << 30)
    lines = iter_lines(path)
    current = [0]

    def feed() -> Iterator[str]:
        for n, line in lines:
            current[0] = n
            yield line + "\n"

    # TSV (MS MARCO, BEIR qrels style) has no quoting: a text may start with a double quote
    # strict: an unclosed quote is an error, not a field that swallows the rows after it
    reader = (csv.reader(feed(), delimiter="\t", quoting=csv.QUOTE_NONE) if kind == "tsv"
              else csv.reader(feed(), strict=True))
    ended = 0  # the line the previous row ended on
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"malformed CSV: {e} (the row starting here has an unclosed or stray quote)", path,
                             line=ended + 1) from None
        ended = current[0]
        if row:
            yield current[0], row


def _parquet_file(path: str | os.PathLike):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", p)
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file: {e}", p) from None


def _arrow_batches(path: str | os.PathLike, schema_only: bool = False) -> Any:
    """The record batches of an Arrow IPC stream or file (``datasets``' cache / ``save_to_disk`` files are
    streams); with ``schema_only`` its schema."""
    import pyarrow as pa

    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", p)
    errors = []
    for opener in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            src = pa.memory_map(str(p))
            reader = opener(src)
        except (pa.ArrowInvalid, OSError) as e:
            errors.append(str(e))
            continue
        if schema_only:
            return reader.schema
        if hasattr(reader, "num_record_batches"):
            return (reader.get_batch(i) for i in range(reader.num_record_batches))
        return iter(reader)
    raise InputError(f"not a readable Arrow file: {errors[-1]}", p)


def iter_records(path: str | os.PathLike, columns: list[str] | None = None
                 ) -> Iterator[tuple[dict[str, int], dict[str, Any]]]:
    """Yield ``(location, record)``: location is ``{"line": n}`` (JSONL) or ``{"row": n}`` (CSV, Parquet).

    CSV values are strings (an empty cell is ``""``); Parquet values keep their Arrow types. ``columns`` limits
    what is read from Parquet (all must exist: check with ``require_columns`` first).
    """
    kind = record_kind(path)
    if kind == "jsonl":
        for n, obj in iter_jsonl(path):
            yield {"line": n}, obj
    elif kind in ("csv", "tsv"):
        header: list[str] | None = None
        r = 0
        for _n, row in _csv_rows(path, kind):
            if header is None:
                header = [h.strip() for h in row]
                continue
            r += 1
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} columns like the header, got {len(row)}", path, row=r)
            yield {"row": r}, dict(zip(header, row, strict=True))
        if header is None:
            raise InputError("file is empty", path)
        if r == 0:
            raise InputError("file has a header but no rows", path)
    elif kind == "arrow":
        r = 0
        for batch in _arrow_batches(path):
            if columns is not None:
                batch = batch.select(columns)
            for rec in batch.to_pylist():
                r += 1
                yield {"row": r}, rec
        if r == 0:
            raise InputError("Arrow file has no rows", path)
    else:
        pf = _parquet_file(path)
        if pf.metadata.num_rows == 0:
            raise InputError("Parquet file has no rows", path)
        r = 0
        for batch in pf.iter_batches(batch_size=65_536, columns=columns):
            for rec in batch.to_pylist():
                r += 1
                yield {"row": r}, rec
