"""Bad values are refused where they are parsed (NaN / inf in flags, --set and YAML; a YAML key given twice), and
valid input is not misread (qrels format decided by the header). One line naming the file and line or the
option, exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from negmine.io.store import Artifact

ERROR_LINE = re.compile(r"^negmine: error: (?P<where>[^:]+?)(?::(?P<loc>\d+|row \d+))?: (?P<msg>.+)$")


def _error(err: str) -> re.Match:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    m = ERROR_LINE.match(lines[0])
    assert m, lines[0]
    return m


def _beir(tmp: Path, qrels: str) -> Path:
    d = tmp / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n"
                                            for i in range(1, 5)))
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n"
                                             for i in (1, 2)))
    (d / "qrels" / "train.tsv").write_text(qrels)
    return d


@pytest.mark.parametrize("flag, value", [("--margin", "nan"), ("--max-score", "inf"), ("--perc-pos", "-inf"),
                                         ("--max-pos-sim", "nan"), ("--temperature", "nan")])
def test_nan_or_inf_flag_is_bad_input(cli, tmp_path, flag, value):
    code, _out, err = cli("select", tmp_path / "run", flag, value)
    assert code == 2, err
    m = _error(err)
    assert m["where"] == flag and "finite number" in m["msg"], err


def test_min_grade_nan_is_bad_input_not_every_qrel_a_positive(cli, tmp_path):
    src = _beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run", "--min-grade", "nan")
    assert code == 2, err
    assert _error(err)["where"] == "--min-grade" and not (tmp_path / "run" / "ingest").exists()


def test_nan_in_set_is_bad_input(cli, tmp_path):
    code, _out, err = cli("select", tmp_path / "run", "--set", "select.simans_b=.nan")
    assert code == 2, err
    m = _error(err)
    assert m["where"] == "--set" and "simans_b" in m["msg"] and "finite" in m["msg"]


def test_nan_in_yaml_is_bad_input_with_its_line(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("select:\n  num_negatives: 4\n  simans_b: .nan\n")
    code, _out, err = cli("select", tmp_path / "run", "--config", cfg)
    assert code == 2, err
    m = _error(err)
    assert m["where"] == str(cfg) and m["loc"] == "3" and "finite" in m["msg"]


@pytest.mark.parametrize("text, line, key", [
    ("select:\n  margin: 0.1\n  num_negatives: 4\n  margin: 0.2\n", "4", "select.margin"),
    ("select:\n  num_negatives: 4\nexport:\n  format: triplet\nselect:\n  margin: 0.1\n", "5", "select"),
])
def test_duplicate_yaml_key_is_bad_input_with_its_line(cli, tmp_path, text, line, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    code, _out, err = cli("select", tmp_path / "run", "--config", cfg)
    assert code == 2, err
    m = _error(err)
    assert m["where"] == str(cfg) and m["loc"] == line and f"duplicate key '{key}'" in m["msg"], err


def _positives(run: Path) -> set[tuple[str, str, float]]:
    t = Artifact.open(run / "ingest").read("positives")
    return set(zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["grade"].to_pylist(), strict=True))


def test_qrels_with_header_and_fourth_numeric_column_is_beir_not_trec(cli, tmp_path):
    src = _beir(tmp_path, "query-id\tcorpus-id\tscore\tconfidence\nq1\td1\t1\t0.5\nq2\td3\t2\t1\n")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    assert _positives(tmp_path / "run") == {("q1", "d1", 1.0), ("q2", "d3", 2.0)}


def test_trec_qrels_without_header_still_read_as_trec(cli, tmp_path):
    src = _beir(tmp_path, "q1\t0\td1\t1\nq2\t0\td3\t2\n")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    assert _positives(tmp_path / "run") == {("q1", "d1", 1.0), ("q2", "d3", 2.0)}


@pytest.mark.parametrize("line, fragment", [
    ('{"_id": "d9", "text": "bad \\ud800 half"}', "half of a UTF-16 pair"),
    # orjson refuses the NaN literal, so the standard library parses the line (and used to overflow the stack)
    ('{"_id": "d9", "x": NaN, "text": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
], ids=["lone_surrogate", "nested_100000_deep"])
def test_lone_surrogate_or_deep_nesting_in_jsonl_is_exit_2_with_line(cli, tmp_path, line, fragment):
    src = _beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with open(src / "corpus.jsonl", "a") as f:
        f.write(line + "\n")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 2, err
    m = _error(err)
    assert m["where"].endswith("corpus.jsonl") and m["loc"] == "5" and fragment in m["msg"], err
    assert not (tmp_path / "run" / "ingest").exists()


@pytest.mark.parametrize("text, line", [
    ("query,positive\nq1,p1\nq2,\"unclosed p2\nq3,p3\nq4,p4\n", "3"),
    ("query,positive\nq1,\"p1\" tail\nq2,p2\n", "2"),
], ids=["unclosed_quote_swallowing_rows", "stray_text_after_quote"])
def test_csv_quote_error_is_bad_input_naming_the_row_not_swallowed(cli, tmp_path, text, line):
    src = tmp_path / "pairs.csv"
    src.write_text(text)
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 2, err
    m = _error(err)
    assert m["where"] == str(src) and m["loc"] == line and "quote" in m["msg"], err
