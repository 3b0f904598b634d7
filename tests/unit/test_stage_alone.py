"""A stage run alone on a run directory starts from the run's recorded config (the last manifest holding one), with
flags and --set on top, and says which values it changed."""

from __future__ import annotations

import json

from test_select_helpers import build_run


def _select_params(run):
    return json.loads((run / "negatives" / "_manifest.json").read_text())["params"]


def test_select_alone_keeps_the_recorded_config(tmp_path, cli):
    run = build_run(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("select:\n  filter: perc-pos\n  max_pos_sim: null\n  num_negatives: 1\n")
    code, _out, err = cli("select", run, "--config", cfg)
    assert code == 0, err
    assert _select_params(run)["num_negatives"] == 1
    code, _out, err = cli("select", run, "--dedup-threshold", "0.8")  # no --config: the recorded one, not defaults
    assert code == 0, err
    p = _select_params(run)
    assert (p["num_negatives"], p["filter"], p["max_pos_sim"], p["dedup_threshold"]) == (1, "perc-pos", None, 0.8)
    assert "select: starting from the run's recorded config" in err
    assert "changed: dedup_threshold 0.9 → 0.8" in err
    code, _out, err = cli("select", run, "--set", "select.num_negatives=2")
    assert code == 0, err
    assert (_select_params(run)["num_negatives"], _select_params(run)["dedup_threshold"]) == (2, 0.8)
    assert "changed: num_negatives 1 → 2" in err


def test_without_a_recorded_config_the_defaults_apply(tmp_path, cli):
    run = build_run(tmp_path)
    code, _out, err = cli("select", run, "--filter", "perc-pos", "--max-pos-sim", "off")
    assert code == 0, err
    assert _select_params(run)["num_negatives"] == 8 and "recorded config" not in err
