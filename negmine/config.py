"""Configuration: one pydantic section per stage, YAML files, ``--set key=value`` overrides.

Precedence: defaults < YAML config < ``--set`` < explicit command-line flags. Every validation error becomes an
InputError naming the file and line (``--set`` for overrides), so the CLI exits 2 with one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from negmine.calibrate.params import CalibrateParams
from negmine.engine.params import EngineParams
from negmine.errors import InputError
from negmine.export.params import ExportParams
from negmine.io.params import IngestParams
from negmine.judge.params import RelabelParams
from negmine.params_base import NoFP, Params
from negmine.retrieve.params import RetrieveParams
from negmine.score.params import ScoreParams
from negmine.select.params import SelectParams


class Config(Params):
    """The whole pipeline. Section names are the config file's top-level keys."""

    run_dir: str | None = NoFP(None)  # where `negmine mine` writes its stage directories
    input: IngestParams = IngestParams()
    retrieve: RetrieveParams = RetrieveParams()
    score: ScoreParams = ScoreParams()
    select: SelectParams = SelectParams()
    export: ExportParams = ExportParams()
    relabel: RelabelParams = RelabelParams()
    calibrate: CalibrateParams = CalibrateParams()
    engine: EngineParams = NoFP(EngineParams())  # where models run: never part of a fingerprint or a manifest


# ----------------------------------------------------------------------------------------------------------------


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map every dotted key path of a composed YAML mapping to its 1-based line."""
    out: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = prefix + (k.value,)
            out[key] = k.start_mark.line + 1
            out.update(_key_lines(v, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            key = prefix + (i,)
            out[key] = v.start_mark.line + 1
            out.update(_key_lines(v, key))
    return out


def _check_duplicate_keys(node: yaml.Node, path: Path, prefix: tuple = ()) -> None:
    """A key given twice in one mapping is an error naming its second line (YAML itself keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = prefix + (k.value,)
            if k.value in seen and k.value != "<<":
                raise InputError(f"duplicate key '{'.'.join(map(str, key))}' (first given on line {seen[k.value]})",
                                 path, line=k.start_mark.line + 1)
            seen[k.value] = k.start_mark.line + 1
            _check_duplicate_keys(v, path, key)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicate_keys(v, path, prefix + (i,))


def _describe(err: Mapping[str, Any]) -> tuple[tuple, str]:
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    dotted = ".".join(str(x) for x in loc)
    if err["type"] == "extra_forbidden":
        return loc, f"unknown config key '{dotted}'"
    return loc, f"'{dotted}': {err['msg']}"


def _validate(data: dict[str, Any], where: str, lines: dict[tuple, int] | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        loc, msg = _describe(e.errors()[0])
        line = None
        if lines:
            for n in range(len(loc), 0, -1):
                if loc[:n] in lines:
                    line = lines[loc[:n]]
                    break
        raise InputError(msg, where, line=line) from None


def read_yaml(path: str | os.PathLike) -> tuple[dict[str, Any], dict[tuple, int]]:
    p = Path(path)
    if not p.is_file():
        raise InputError("config file not found", p)
    text = p.read_text(encoding="utf-8-sig")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"invalid YAML: {problem}", p, line=line) from None
    if node is not None:
        _check_duplicate_keys(node, p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("config must be a mapping of sections (input, retrieve, score, select, export, relabel)",
                         p, line=1)
    return data, (_key_lines(node) if node is not None else {})


# config keys holding a file or directory, resolved against the config file's directory when relative
PATH_KEYS = (("run_dir",), ("input", "path"), ("input", "corpus"), ("export", "out"), ("select", "calibration"),
             ("score", "cache_path"), ("relabel", "cache_path"))
# keys holding a model name or a local path: resolved only when the config-relative path exists
MODEL_KEYS = (("retrieve", "model"), ("score", "model"), ("select", "pos_sim_model"))
_NOT_PATHS = ("auto", "off", "none", "null")


def relative_to_config(data: dict[str, Any], base: Path) -> None:
    """Make the relative paths of a YAML config relative to the config file's directory (``base``), so a config
    works from any working directory. ``--set`` values and flags stay relative to the working directory."""
    for keys in PATH_KEYS + MODEL_KEYS:
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(keys[-1])
        if not isinstance(value, str) or not value or value.lower() in _NOT_PATHS:
            continue
        p = Path(value).expanduser()
        if p.is_absolute():
            node[keys[-1]] = str(p)
            continue
        candidate = base / p
        if keys in MODEL_KEYS and not candidate.exists():
            continue  # a model name such as all-MiniLM-L6-v2
        node[keys[-1]] = os.path.normpath(candidate)


def parse_set(items: list[str]) -> list[tuple[list[str], Any, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise InputError(f"'{item}': expected key=value (e.g. select.perc_pos=0.9)", "--set")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise InputError(f"'{item}': empty key", "--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.append((key.split("."), value, item))
    return out


def _assign(data: dict[str, Any], path: list[str], value: Any) -> None:
    cur = data
    for part in path[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[path[-1]] = value


def load_config(path: str | os.PathLike | None = None, sets: list[str] | None = None,
                flags: dict[str, dict[str, Any]] | None = None, base: dict[str, Any] | None = None,
                flag_names: dict[tuple[str, str], str] | None = None) -> Config:
    """Build the effective config. ``flags`` maps section → {key: value}; ``None`` values are ignored. ``base``
    (a run's recorded config) replaces the defaults when no ``path`` is given. ``flag_names`` names the option of a
    (section, key) whose option is not ``--key`` (e.g. ``--engine`` for engine.kind), for its error messages."""
    data: dict[str, Any] = {}
    where, lines = "<defaults>", None
    if path is None and base:
        import copy

        data = copy.deepcopy(base)
        where = "the run's recorded config"
    if path is not None:
        data, lines = read_yaml(path)
        where = str(path)
        relative_to_config(data, Path(path).resolve().parent)
        _validate(data, where, lines)  # errors in the file name the file's line
    for keypath, value, item in parse_set(sets or []):
        _assign(data, keypath, value)
        try:
            Config.model_validate(data)
        except ValidationError as e:
            _loc, msg = _describe(e.errors()[0])
            raise InputError(f"'{item}': {msg}", "--set") from None
    given: dict[tuple, str] = {}
    for section, values in (flags or {}).items():
        for k, v in values.items():
            if v is not None:
                _assign(data, [section, k], v)
                given[(section, k)] = (flag_names or {}).get((section, k)) or "--" + k.replace("_", "-")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        loc, msg = _describe(e.errors()[0])
        flag = given.get(tuple(loc[:2]))
        if flag is not None:  # a bad command-line option: name the option
            raise InputError(msg, flag) from None
        return _validate(data, where, lines)


def effective_config(cfg: Config) -> dict[str, Any]:
    """The config as written into manifests (no secrets: keys live only in environment variables). The engine is
    left out: an artifact is the same whichever engine built it, and a later command on the run does not inherit
    it."""
    return cfg.model_dump(mode="json", exclude={"engine"})
