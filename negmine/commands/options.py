"""Command-line options derived from a stage's ``Params`` class, so each option is declared once: the field gives
its name (``--snake-case`` of the field), its type, its default (shown as ``[default]`` in the help) and its help
text (the field's ``description``). A command lists the fields it exposes::

    @stage_options(SelectParams, "filter", "perc_pos", Flag("num_negatives", "--num-negatives", "-k"))
    def select(run: Path = RunArg, config=ConfigOpt, set_=SetOpt, *, flags: dict[str, Any]) -> None:
        cfg = resolve(config, set_, "select", **flags)

``flags`` holds every exposed field (None = not given), ready for ``resolve``. Only pydantic and typer are
imported here, so ``negmine --help`` stays instant.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from pydantic.fields import FieldInfo

from negmine.params_base import Params


@dataclass(frozen=True)
class Flag:
    """A field exposed under other option names than ``--field-name`` (``decls``), or with another command-line
    type than the field's (``as_type``, e.g. ``str`` for a field that also takes a keyword such as ``off``)."""

    field: str
    decls: tuple[str, ...] = ()
    as_type: type | None = None

    def __init__(self, field: str, *decls: str, as_type: type | None = None) -> None:
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "decls", decls)
        object.__setattr__(self, "as_type", as_type)


def _scalar(annotation: Any) -> type:
    """The command-line type of a field: bool, int, float or str (anything else is given as a string)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar(args[0]) if len(args) == 1 else str
    return annotation if annotation in (bool, int, float) else str


def _shown_default(f: FieldInfo) -> str | None:
    d = f.default
    if d is None or d is ... or isinstance(d, (list, dict)) or (isinstance(d, str) and not d):
        return None
    if isinstance(d, bool):
        return "on" if d else "off"
    return str(d)


def help_text(f: FieldInfo) -> str:
    """The field's description, followed by ``[its default]`` unless the description already ends with one."""
    text = (f.description or "").strip()
    shown = _shown_default(f)
    if shown is None or text.rstrip(".").endswith("]"):
        return text
    return f"{text} [{shown}]".strip()


def option(cls: type[Params], spec: str | Flag) -> inspect.Parameter:
    """The keyword parameter (annotation + ``typer.Option``) of one field of ``cls``."""
    flag = spec if isinstance(spec, Flag) else Flag(spec)
    f = cls.model_fields[flag.field]
    kind = flag.as_type or _scalar(f.annotation)
    dashed = "--" + flag.field.replace("_", "-")
    decls = flag.decls or ((f"{dashed}/--no-{flag.field.replace('_', '-')}",) if kind is bool else (dashed,))
    return inspect.Parameter(flag.field, inspect.Parameter.KEYWORD_ONLY, annotation=kind | None,
                             default=typer.Option(None, *decls, help=help_text(f), show_default=False))


def stage_options(cls: type[Params], *specs: str | Flag, every_field: bool = False,
                  exclude: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command whose signature ends with ``*, flags``: the listed fields of ``cls`` (with
    ``every_field``: all its fields but ``exclude``, in declaration order, a listed ``Flag`` overriding its field's
    default spelling) become its options and reach it as ``flags`` (field name → value, None when not given)."""
    if every_field:
        given = {s.field if isinstance(s, Flag) else s: s for s in specs}
        specs = tuple(given.get(name, name) for name in cls.model_fields if name not in exclude)

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name != "flags"]
        generated = [option(cls, s) for s in specs]
        names = [p.name for p in generated]

        def command(**kwargs: Any) -> Any:
            flags = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, flags=flags)

        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        tail = next((i for i, p in enumerate(own) if p.name in ("config", "set_")), len(own))
        params = own[:tail] + generated + own[tail:]  # the stage's options before --config / --set
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__doc__, command.__module__ = fn.__name__, fn.__doc__, fn.__module__
        return command

    return deco
