"""Validated access to the fields of one input record; every error names the file and the line or row.

``loc`` is the record's location as ``textio.iter_records`` gives it: ``{"line": n}`` or ``{"row": n}``.
"""

from __future__ import annotations

from typing import Any

from negmine.errors import InputError


def get_id(obj: dict, key: str, where: Any, loc: dict[str, int], *, typed_ints: bool = False) -> str:
    """A required, non-empty string id. Integers (JSON numbers without a fraction, Parquet integer columns) are
    written in decimal, the way every reader and the BEIR qrels (text) spell them, so ``7`` and ``"7"`` are one
    id; other numbers are refused. ``typed_ints`` is kept for callers that pass it."""
    if key not in obj or obj[key] is None:
        raise InputError(f"missing field '{key}'", where, **loc)
    v = obj[key]
    if type(v) is str:
        if not v.strip():
            raise InputError(f"field '{key}' is empty", where, **loc)
        return v
    if type(v) is int:
        return str(v)
    if type(v) in (int, float):
        raise InputError(f"field '{key}' must be a string id, got a number ({v}); quote it", where, **loc)
    raise InputError(f"field '{key}' must be a string id, got {type(v).__name__}", where, **loc)


def get_text(obj: dict, key: str, where: Any, loc: dict[str, int], *, required: bool = True) -> str:
    """A string field; a missing optional field (or null) is ``""``."""
    v = obj.get(key)
    if v is None:
        if required:
            raise InputError(f"missing field '{key}'", where, **loc)
        return ""
    if type(v) is not str:
        raise InputError(f"field '{key}' must be a string, got {type(v).__name__}", where, **loc)
    return v


def get_grade(obj: dict, key: str, where: Any, loc: dict[str, int]) -> float:
    """A finite number; strings holding a number (CSV cells) are accepted."""
    v = obj.get(key)
    if v is None or v == "":
        raise InputError(f"missing grade '{key}'", where, **loc)
    if type(v) is bool:
        raise InputError(f"grade '{key}' must be a number, got a boolean", where, **loc)
    g = parse_number(v)
    if g is None:
        raise InputError(f"non-numeric grade {v!r} in '{key}'", where, **loc)
    return g


def parse_number(v: Any) -> float | None:
    """A finite float from an int, float or numeric string; None otherwise."""
    if type(v) in (int, float):
        g = float(v)
    elif type(v) is str:
        try:
            g = float(v.strip())
        except ValueError:
            return None
    else:
        return None
    return g if g - g == 0.0 else None  # rejects nan and ±inf


def get_list(obj: dict, key: str, where: Any, loc: dict[str, int], *, required: bool = True) -> list:
    v = obj.get(key)
    if v is None:
        if required:
            raise InputError(f"missing field '{key}'", where, **loc)
        return []
    if type(v) is not list:
        raise InputError(f"field '{key}' must be a list, got {type(v).__name__}", where, **loc)
    return v
