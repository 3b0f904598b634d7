"""Paths in a YAML config are relative to the config file, so a config works from any working directory;
`--set` values stay relative to the working directory; model names are left alone."""

from __future__ import annotations

import json
from pathlib import Path

from negmine.config import load_config


def _setup(tmp_path: Path) -> Path:
    cfgdir = tmp_path / "project" / "configs"
    (cfgdir / "models" / "mini").mkdir(parents=True)
    data = tmp_path / "project" / "data"
    data.mkdir()
    (data / "pairs.jsonl").write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n"
                                              for i in range(3)))
    cfg = cfgdir / "mine.yaml"
    cfg.write_text("run_dir: ../runs/r\ninput:\n  path: ../data/pairs.jsonl\nretrieve:\n  model: models/mini\n"
                   "score:\n  model: all-MiniLM-L6-v2\nexport:\n  out: ../out/t.parquet\n"
                   "select:\n  calibration: auto\n")
    (tmp_path / "elsewhere").mkdir()
    return cfg


def test_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    cfg = _setup(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    c = load_config(cfg)
    project = (tmp_path / "project").resolve()
    assert c.input.path == str(project / "data" / "pairs.jsonl")
    assert Path(c.run_dir).resolve() == project / "runs" / "r"
    assert Path(c.export.out).resolve() == project / "out" / "t.parquet"
    assert Path(c.retrieve.model).resolve() == project / "configs" / "models" / "mini"  # an existing local model
    assert c.score.model == "all-MiniLM-L6-v2" and c.select.calibration == "auto"  # names and keywords untouched
    c = load_config(cfg, ["input.path=rel/pairs.jsonl"])
    assert c.input.path == "rel/pairs.jsonl"  # --set: relative to the working directory


def test_ingest_with_a_config_from_another_directory(tmp_path, monkeypatch, cli):
    cfg = _setup(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _out, err = cli("ingest", "--config", cfg, "--out", tmp_path / "run")
    assert code == 0, err
