"""An export directory is a Hugging Face dataset: `datasets.load_dataset(EXPORT_DIR)` loads it (hidden sidecar,
dataset card with configs / features / splits), `--split eval=F` holds out queries, JSON lines honour .jsonl /
.jsonl.gz / .jsonl.zst, and queries left out are counted in a warning line."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
import yaml
from test_select_helpers import QUERIES, build_run, negmine_log, rule_params

from negmine.errors import InputError
from negmine.export.params import ExportParams
from negmine.export.stage import run_export
from negmine.select.stage import run_select


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("export_hf"))
    run_select(run, rule_params(num_negatives=2))  # q1, q2, q3 keep negatives; q4 keeps none
    return run


def _front_matter(card):
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_load_dataset_on_the_export_directory_with_its_card(run, tmp_path):
    import datasets

    out = tmp_path / "exp" / "triplet.parquet"
    res = run_export(run, ExportParams(format="triplet", out=str(out), license="cc-by-4.0"))
    assert (out.parent / ".triplet.parquet.negmine.json").is_file()
    assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] == ["README.md", "triplet.parquet"] \
        or sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == ["README.md",
                                                                                          "triplet.parquet"]
    ds = datasets.load_dataset(str(out.parent))
    assert list(ds) == ["train"] and len(ds["train"]) == res.rows == 8
    assert ds["train"].column_names == ["anchor", "positive", "negative"]
    front, text = _front_matter(out.parent / "README.md")
    assert front["license"] == "cc-by-4.0"
    assert front["tags"] == ["sentence-transformers", "hard-negatives"]
    assert front["size_categories"] == ["n<1K"]
    assert front["configs"] == [{"config_name": "triplet", "default": True,
                                 "data_files": [{"split": "train", "path": "triplet.parquet"}]}]
    info = front["dataset_info"][0]
    assert [f["name"] for f in info["features"]] == ["anchor", "positive", "negative"]
    assert info["splits"] == [{"name": "train", "num_bytes": out.stat().st_size, "num_examples": 8}]
    assert "## How it was mined" in text and "num_negatives: 2" in text and "queries_without_negatives: 1" in text


def test_split_eval_by_query_loads_train_and_eval(run, tmp_path):
    import datasets

    out = tmp_path / "exp" / "triplet.parquet"
    res = run_export(run, ExportParams(format="triplet", out=str(out), split="eval=0.3"))
    assert set(res.paths) == {"train", "eval"}
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == \
        ["README.md", "triplet-eval.parquet", "triplet-train.parquet"]
    ds = datasets.load_dataset(str(out.parent))
    assert set(ds) == {"train", "eval"}
    train, held = set(ds["train"]["anchor"]), set(ds["eval"]["anchor"])
    assert len(held) == 1 and not train & held and train | held == {QUERIES[q] for q in ("q1", "q2", "q3")}
    assert len(ds["train"]) + len(ds["eval"]) == res.rows == 8
    again = run_export(run, ExportParams(format="triplet", out=str(out), split="eval=0.3"))
    assert again.skipped and again.rows == 8
    # without --split again: the split files are replaced by the single file
    run_export(run, ExportParams(format="triplet", out=str(out)))
    assert not (out.parent / "triplet-eval.parquet").exists()
    assert set(datasets.load_dataset(str(out.parent))) == {"train"}


@pytest.mark.parametrize("spec", ["eval", "eval=0", "eval=1.5", "train=0.1", "e v=0.1"])
def test_bad_split_is_bad_input(run, tmp_path, spec):
    with pytest.raises(InputError, match="NAME=FRACTION"):
        run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.parquet"), split=spec))


def test_jsonl_suffixes_compress_and_others_are_refused(run, tmp_path, cli):
    import datasets
    import zstandard

    gz = run_export(run, ExportParams(format="tevatron", out=str(tmp_path / "gz" / "tev.jsonl.gz")))
    rows = [json.loads(x) for x in gzip.decompress(gz.path.read_bytes()).decode().splitlines()]
    assert [r["query_id"] for r in rows] == ["q1", "q2", "q3"]
    zst = run_export(run, ExportParams(format="flagembedding", out=str(tmp_path / "zst" / "fe.jsonl.zst")))
    with zstandard.open(zst.path, "rb") as f:
        assert len(f.read().decode().splitlines()) == 3
    tri = run_export(run, ExportParams(format="triplet", out=str(tmp_path / "tz" / "t.jsonl.gz")))
    assert len(datasets.load_dataset(str(tri.path.parent))["train"]) == 8
    assert len(datasets.load_dataset(str(gz.path.parent))["train"]) == 3
    for fmt, name in (("tevatron", "x.parquet"), ("flagembedding", "x.json"), ("triplet", "x.txt"),
                      ("triplet", "x.gz")):
        with pytest.raises(InputError):
            run_export(run, ExportParams(format=fmt, out=str(tmp_path / name)))
    code, _out, err = cli("export", run, "--format", "tevatron", "--out", tmp_path / "t.parquet")
    assert code == 2 and err.splitlines()[-1] == ("negmine: error: --out: format tevatron is written as .jsonl, "
                                                  ".jsonl.gz, .jsonl.zst, not .parquet")


def test_left_out_queries_are_a_warning_line_with_the_count(run, tmp_path, caplog):
    with negmine_log(caplog, logging.WARNING):
        run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.parquet")))
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert lines == [f"export: 1 queries left out of {tmp_path / 't.parquet'} (1 with no negative left)"]


def test_a_foreign_readme_is_not_overwritten(run, tmp_path, caplog):
    (tmp_path / "README.md").write_text("# mine\n")
    with negmine_log(caplog, logging.WARNING):
        run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.parquet")))
    assert (tmp_path / "README.md").read_text() == "# mine\n" and "not written by negmine" in caplog.text


def test_verify_checks_the_hidden_sidecar(run):
    from negmine.io.store import verify_run

    res = run_export(run, ExportParams(format="triplet"))
    assert (res.path, None) in verify_run(run)
    res.path.write_bytes(b"tampered")
    assert any(p == res.path and "damaged" in (why or "") for p, why in verify_run(run))
    run_export(run, ExportParams(format="triplet"))


def test_ids_format_with_queries_and_corpus_tables(run, tmp_path):
    import datasets
    from test_select_helpers import DOCS

    out = tmp_path / "ids" / "ids.parquet"
    res = run_export(run, ExportParams(format="ids", out=str(out), with_scores=True))
    ds = datasets.load_dataset(str(out.parent))["train"]  # the default config: the ids table
    assert ds.column_names == ["query_id", "positive_document_ids", "negative_document_ids", "positive_scores",
                               "negative_scores"]
    assert len(ds) == res.rows == 3 and ds[0]["query_id"] == "q1"
    assert ds[0]["positive_document_ids"] == ["p1", "p1b"] and ds[0]["negative_document_ids"] == ["n2", "n3"]
    queries = datasets.load_dataset(str(out.parent), "ids-queries")["train"]
    corpus = datasets.load_dataset(str(out.parent), "ids-corpus")["train"]
    assert {q["query_id"]: q["text"] for q in queries} == {q: QUERIES[q] for q in ("q1", "q2", "q3")}
    docs = {d["docid"]: (d["title"], d["text"]) for d in corpus}
    named = {d for r in ds for d in r["positive_document_ids"] + r["negative_document_ids"]}
    assert named <= set(docs) and all(docs[d] == tuple(DOCS[d]) for d in named)
    front, _text = _front_matter(out.parent / "README.md")
    assert {c["config_name"] for c in front["configs"]} == {"ids", "ids-queries", "ids-corpus"}
