"""The `negmine` command line. Thin: parse options, build the config, call the stage.

Each subcommand lives in ``negmine/commands/<name>.py`` with a ``register(app)`` function, imported below;
command modules import only typer, pydantic (the params classes their options come from) and the standard
library at module level, so ``negmine --help`` stays instant. Heavy libraries (numpy, pyarrow, torch,
sentence-transformers, faiss) are imported inside the command and stage functions.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer

from negmine import __version__
from negmine.commands import (
    calibrate,
    export,
    ingest,
    judge_server,
    mine,
    push,
    relabel,
    report,
    retrieve,
    score,
    select,
    verify,
)
from negmine.commands import eval as eval_
from negmine.errors import NegmineError

COMMANDS = (ingest, retrieve, score, calibrate, select, export, mine, relabel, eval_, report, verify, push,
            judge_server)

HELP = """Mine, filter, relabel and export hard negatives for training retrieval and reranking models.

Example:

  negmine mine --config configs/demo.yaml --out runs/demo

Stages (each also runs alone on a run directory): ingest → retrieve → score → select → [relabel] → export.
"""

app = typer.Typer(name="negmine", help=HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None, context_settings={
                      "help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"negmine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True,
                                        help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    setup_logging(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (follows redirection in tests)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    logger = logging.getLogger("negmine")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("negmine: %(message)s"))
        logger.addHandler(h)
        logger.propagate = False


for _command in COMMANDS:  # in the order `negmine --help` lists them
    _command.register(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (used by `main` and by tests)."""

    # typer >= 0.29 raises the exceptions of its vendored click (typer._click); older typer raises click's own
    usage, exits, aborts = _click_exceptions()
    try:
        from negmine.commands.common import forget_resolved, record_resolved

        forget_resolved()
        rv = app(args=argv, prog_name="negmine", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == 0:
            record_resolved()  # a stage run alone: its effective config into its manifest, for the next one
        return code
    except NegmineError as e:
        print(f"negmine: error: {e}", file=sys.stderr)
        return e.exit_code
    except exits as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except aborts:
        print("negmine: aborted", file=sys.stderr)
        return 130
    except usage as e:
        err: Any = e
        if type(e).__name__ == "NoArgsIsHelpError" and not argv:  # a bare `negmine`: the help, on stdout
            typer.echo(err.format_message())
            return 0
        print(_usage_line(err), file=sys.stderr)
        return 2  # usage errors are bad input
    except KeyboardInterrupt:
        print("negmine: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # runtime failure: one line, traceback with NEGMINE_DEBUG=1
        if os.environ.get("NEGMINE_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"negmine: runtime error: {type(e).__name__}: {msg} (set NEGMINE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


def _usage_line(err: Any) -> str:
    """A usage error as one line naming the command and what the user typed wrong, with where help is:
    ``negmine select: error: Invalid value for '--seed': ... (see 'negmine select -h')``."""
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or "negmine"
    msg = " ".join(str(err.format_message()).split())  # click's messages may wrap; one line
    return f"{path}: error: {msg} (see '{path} -h')"


def _click_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """(usage errors, exits, aborts) of click and of the click that typer vendors, when it does."""
    import click

    usage: list[type[BaseException]] = [click.ClickException]
    exits: list[type[BaseException]] = [click.exceptions.Exit]
    aborts: list[type[BaseException]] = [click.exceptions.Abort]
    try:
        from typer import _click as vendored
        from typer import exceptions as typer_exc
    except ImportError:
        pass
    else:
        usage.append(vendored.exceptions.ClickException)
        exits.append(getattr(typer_exc, "Exit", click.exceptions.Exit))
        aborts.append(getattr(typer_exc, "Abort", click.exceptions.Abort))
    return tuple(usage), tuple(exits), tuple(aborts)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
