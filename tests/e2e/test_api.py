"""The Python API: negmine.mine / negmine.select / negmine.load return `datasets.Dataset`s of the exported rows;
importing negmine and reaching the API loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_select_helpers import QUERIES, build_run, rule_params

import negmine
from negmine.errors import InputError
from negmine.export.params import ExportParams
from negmine.export.stage import run_export
from negmine.select.stage import run_select


def test_the_api_is_importable_without_heavy_libraries():
    code = ("import sys, negmine; negmine.mine, negmine.load, negmine.select; import negmine.select.params; "
            "assert callable(negmine.select) and callable(negmine.mine) and callable(negmine.load); "
            "heavy = [m for m in ('numpy', 'pyarrow', 'torch', 'datasets', 'sentence_transformers') "
            "if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_select_and_load_return_datasets(tmp_path):
    import datasets

    run = build_run(tmp_path)
    run_select(run, rule_params(num_negatives=2))
    run_export(run, ExportParams(format="triplet", split="eval=0.3"))
    train = negmine.load(run)
    held = negmine.load(run, split="eval")
    assert isinstance(train, datasets.Dataset) and train.column_names == ["anchor", "positive", "negative"]
    assert len(train) + len(held) == 8 and not set(train["anchor"]) & set(held["anchor"])
    # re-select with one negative per query: the run's recorded select parameters + the change, re-exported
    ds = negmine.select(run, num_negatives=1)
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) + len(negmine.load(run, split="eval")) == 4  # q1 (2 positives) x 1, q2, q3
    assert set(ds["anchor"]) <= {QUERIES[q] for q in QUERIES}
    with pytest.raises(InputError, match="no split 'test'"):
        negmine.load(run, split="test")
    with pytest.raises(InputError, match="no export"):
        negmine.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_mine_returns_the_train_split(scifact_small, tmp_path):
    from test_hf_end_to_end import _hf_folder

    src, corpus = _hf_folder(scifact_small, tmp_path / "hf")
    ds = negmine.mine(src, tmp_path / "run", input={"corpus": str(corpus)}, retrieve={"depth": 20},
                      select={"num_negatives": 2}, export={"split": "eval=0.1"})
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) > 50
    assert len(negmine.load(tmp_path / "run", split="eval")) > 0
    with pytest.raises(InputError, match="unknown config section"):
        negmine.mine(src, tmp_path / "run", selct={"num_negatives": 2})


def test_load_without_datasets_gives_an_arrow_table(tmp_path, monkeypatch):
    import pyarrow as pa

    run = build_run(tmp_path)
    run_select(run, rule_params(num_negatives=2))
    run_export(run, ExportParams(format="flagembedding"))
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    table = negmine.load(run)
    assert isinstance(table, pa.Table) and table.num_rows == 3 and "neg" in table.column_names
