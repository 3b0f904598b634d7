"""The hidden-positives protocol: the given-positive rule (grade, then smallest id) and the BEIR directory it
writes, on hand-made qrels and on the real Cranfield subset."""

import json

import pyarrow as pa
import pytest

from negmine.io import schemas
from negmine.report.protocol import hidden_positives, id_sort_key, read_qrels, split_hidden


def qrels(rows):
    q, d, g = zip(*rows, strict=False)
    return pa.table({"query_id": list(q), "doc_id": list(d), "grade": [float(x) for x in g]},
                    schema=schemas.POSITIVES)


def given_of(t):
    return dict(zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), strict=False))


def test_best_grade_then_smallest_numeric_id():
    t = qrels([
        ("1", "184", 3), ("1", "29", 3), ("1", "31", 3), ("1", "12", 2),   # tie at 3: numeric 29 < 31 < 184
        ("2", "9", 1), ("2", "10", 1),                                       # numeric: 9 < 10 (string: "10")
        ("3", "b", 2), ("3", "a10", 2), ("3", "a9", 2),                      # strings: "a10" < "a9" < "b"
        ("4", "x", 4), ("4", "7", 4),                                        # an integer id sorts first
        ("5", "50", 1), ("5", "60", 4),                                      # grade beats id
        ("6", "1", 0),                                                       # grade 0 is not relevant
    ])
    given, hidden = split_hidden(t)
    assert given_of(given) == {"1": "29", "2": "9", "3": "a10", "4": "7", "5": "60"}
    assert len(hidden) == 3 + 1 + 2 + 1 + 1
    assert ("1", "184") in set(zip(hidden["query_id"].to_pylist(), hidden["doc_id"].to_pylist(), strict=False))
    assert sorted(["10", "9", "a", "007"], key=id_sort_key) == ["007", "9", "10", "a"]


def test_unusable_docs_are_never_given():
    t = qrels([("1", "5", 4), ("1", "8", 3), ("2", "5", 2)])
    given, hidden = split_hidden(t, usable_docs={"8"})
    assert given_of(given) == {"1": "8"}         # doc 5 has no text: the next best is given
    assert len(hidden) == 2                       # 1/5 stays hidden; query 2 has no usable doc


def test_hidden_positives_on_cranfield(cranfield_small, tmp_path, cli):
    full = read_qrels(cranfield_small / "qrels" / "test.tsv")
    summary = hidden_positives(cranfield_small, "test", tmp_path / "hp")
    # hand-checked from the qrels file: query 1 has docs 184, 29, 31 at grade 3 (and lower grades) → 29
    reduced = read_qrels(tmp_path / "hp" / "qrels" / "test.tsv")
    assert given_of(reduced)["1"] == "29"
    assert len(reduced) == summary["given_positives"] == 50           # one per query of the subset
    assert summary["given_positives"] + summary["hidden_positives"] == len(full)
    hidden = read_qrels(tmp_path / "hp" / "hidden.tsv")
    assert not set(zip(*[hidden[c].to_pylist() for c in ("query_id", "doc_id")], strict=False)) & \
        set(zip(*[reduced[c].to_pylist() for c in ("query_id", "doc_id")], strict=False))
    # every given positive has the query's best grade
    best = {}
    for q, g in zip(full["query_id"].to_pylist(), full["grade"].to_pylist(), strict=False):
        best[q] = max(best.get(q, 0), g)
    assert all(g == best[q] for q, g in zip(reduced["query_id"].to_pylist(), reduced["grade"].to_pylist(), strict=False))
    assert json.loads((tmp_path / "hp" / "protocol.json").read_text())["queries"] == 50
    # the directory ingests like any BEIR dataset
    code, _out, err = cli("ingest", tmp_path / "hp", "--split", "test", "--out", tmp_path / "run")
    assert code == 0, err


def test_read_qrels_errors(tmp_path):
    from negmine.errors import InputError

    p = tmp_path / "q.tsv"
    p.write_text("query-id\tcorpus-id\tscore\n1\t2\n")
    with pytest.raises(InputError, match="expected 3 tab-separated columns") as e:
        read_qrels(p)
    assert e.value.line == 2
    p.write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(InputError, match="no qrels rows"):
        read_qrels(p)
