"""`negmine push` uploads an export's data files and card through huggingface_hub, here to a local stand-in of
the Hub (never the network); the uploaded folder loads with `datasets`."""

from __future__ import annotations

import pytest
from hub_standin import HubStandIn
from test_select_helpers import build_run, rule_params

from negmine.export.params import ExportParams
from negmine.export.stage import run_export
from negmine.select.stage import run_select


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("push"))
    run_select(run, rule_params(num_negatives=2))
    run_export(run, ExportParams(format="triplet", split="eval=0.3"))
    return run


def test_push_uploads_data_files_and_card(run, tmp_path, cli, monkeypatch):
    import datasets

    with HubStandIn(tmp_path / "hub") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
        code, out, err = cli("push", run, "--repo-id", "me/hard-negatives", "--private")
    assert code == 0, err
    assert "pushed 3 files to me/hard-negatives" in out
    assert len(hub.validated) == 1 and "hard-negatives" in hub.validated[0]  # the card's metadata was checked
    created = hub.repos["me/hard-negatives"]
    assert created["type"] == "dataset" and (created.get("private") is True or created.get("visibility") == "private")
    repo = tmp_path / "hub" / "me" / "hard-negatives"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "triplet-eval.parquet", "triplet-train.parquet"]
    ds = datasets.load_dataset(str(repo))
    assert set(ds) == {"train", "eval"} and len(ds["train"]) + len(ds["eval"]) == 8


def test_push_without_an_export_is_bad_input(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    code, _out, err = cli("push", tmp_path / "empty", "--repo-id", "me/x")
    assert code == 2 and "no negmine export here" in err and err.count("\n") == 1


def test_push_to_an_unreachable_hub_is_one_line_exit_1(run, cli, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
    code, _out, err = cli("push", run, "--repo-id", "me/x")
    assert code == 1 and "push to me/x failed" in err and err.count("\n") == 1


def test_push_then_ingest_the_hub_dataset_by_name(run, tmp_path, cli, monkeypatch):
    from huggingface_hub import constants

    with HubStandIn(tmp_path / "hub") as hub:
        for var, value in (("HF_ENDPOINT", hub.url), ("HF_TOKEN", "hf_standin_token"),
                           ("HF_HOME", str(tmp_path / "hf_home"))):
            monkeypatch.setenv(var, value)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf_home" / "hub"), raising=False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"), raising=False)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}", raising=False)
        assert cli("push", run, "--repo-id", "me/hn")[0] == 0
        # the pushed triplets are (anchor, positive, negative) rows: pairs with a given negative
        code, _out, err = cli("ingest", "me/hn", "--out", tmp_path / "from_hub")
        assert code == 0, err
        code, _out, err = cli("ingest", "me/missing", "--out", tmp_path / "nope")
    assert code == 2 and "no such Hugging Face dataset" in err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    code, _out, err = cli("ingest", "me/hn", "--out", tmp_path / "offline")
    assert code == 2 and "HF_HUB_OFFLINE" in err
