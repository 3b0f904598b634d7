"""Errors with an exit-code contract: bad input or config exits 2, runtime failures exit 1."""

from __future__ import annotations

from os import PathLike


class NegmineError(Exception):
    """Base class. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(NegmineError):
    """Bad input or configuration: one line naming the file and line (or row), exit code 2.

    ``where`` is a file path or a pseudo-source such as ``--set``; ``line`` is a 1-based line number,
    ``row`` a 1-based row number for tabular inputs (Parquet/CSV).
    """

    exit_code = 2

    def __init__(self, message: str, where: str | PathLike | None = None, *, line: int | None = None,
                 row: int | None = None):
        self.message = message
        self.where = None if where is None else str(where)
        self.line = line
        self.row = row
        super().__init__(self.format())

    def format(self) -> str:
        loc = ""
        if self.where is not None:
            loc = self.where
            if self.line is not None:
                loc += f":{self.line}"
            elif self.row is not None:
                loc += f":row {self.row}"
            loc += ": "
        return f"{loc}{self.message}"


class RuntimeFailure(NegmineError):
    """A failure that is not the user's input (a model that crashes, a disk that fills)."""

    exit_code = 1
