"""The public surface: package exports resolve, each registry of names matches its implementations, every CLI option
of a stage command is a field of its Params class, and `negmine --help` stays light."""

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["negmine.select", "negmine.export"])
def test_lazy_exports_resolve(package):
    mod = importlib.import_module(package)
    assert mod.__all__
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_registries_match_their_names():
    from negmine.export.params import FORMATS
    from negmine.export.writers import WRITERS
    from negmine.io.readers import FORMATS as READERS
    from negmine.io.readers import get_reader
    from negmine.score.params import TEACHER_NAMES
    from negmine.score.stage import TEACHERS
    from negmine.select.params import SAMPLINGS
    from negmine.select.sampling import SAMPLERS

    assert tuple(WRITERS) == FORMATS
    assert tuple(SAMPLERS) == SAMPLINGS
    assert tuple(TEACHERS) == TEACHER_NAMES
    for name in READERS:
        reader = get_reader(name)
        assert callable(reader.read) and callable(reader.input_files), name
    import negmine.export

    assert negmine.export.FORMATS == FORMATS


def test_undeclared_names_are_refused():
    from negmine.export.writers import register_writer
    from negmine.select.sampling import register_sampler

    with pytest.raises(ValueError, match="FORMATS"):
        register_writer("my-format", "jsonl")
    with pytest.raises(ValueError, match="SAMPLINGS"):
        register_sampler("my-sampler")


@pytest.mark.parametrize("command, cls", [
    ("ingest", "negmine.io.params:IngestParams"), ("retrieve", "negmine.retrieve.params:RetrieveParams"),
    ("score", "negmine.score.params:ScoreParams"), ("select", "negmine.select.params:SelectParams"),
    ("export", "negmine.export.params:ExportParams"), ("calibrate", "negmine.calibrate.params:CalibrateParams"),
    ("relabel", "negmine.judge.params:RelabelParams")])
def test_stage_options_are_params_fields(command, cls):
    """Each derived option names a field, carries its description, and shows the field's default."""
    import typer.main

    from negmine.cli import app
    from negmine.commands.options import help_text

    mod, _, name = cls.partition(":")
    params = getattr(importlib.import_module(mod), name)
    group = typer.main.get_command(app)
    cmd = group.commands[command]
    fields = [p for p in cmd.params if p.name in params.model_fields]
    assert len(fields) >= 4
    for p in fields:
        assert p.help == help_text(params.model_fields[p.name]), (command, p.name)
        assert p.default is None  # not given = the config's value


def test_help_imports_no_heavy_library():
    code = ("import sys; from negmine.cli import run; run(['--help']); "
            "print(sorted(m for m in ('numpy', 'pyarrow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _module_imports() -> dict[str, set[str]]:
    """Module -> the negmine modules it imports at module level (what runs when it is imported)."""
    import ast
    from pathlib import Path

    import negmine

    root = Path(negmine.__file__).parent
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in names:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def test_no_import_circle():
    graph = _module_imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
