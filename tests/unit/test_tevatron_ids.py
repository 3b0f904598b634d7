"""Tevatron's newer layout (query_id, query_text, positive_document_ids, negative_document_ids + a corpus), as JSONL
and as a Hugging Face folder of Parquet shards with a Parquet corpus folder."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from test_ingest_formats import tables, write_jsonl

CORPUS = [{"docid": "d1", "title": "Cats", "text": "A cat is a small mammal."},
          {"docid": "d2", "title": "", "text": "Dogs bark."},
          {"docid": 3, "title": "Birds", "text": "Most birds fly."}]
TRAIN = [{"query_id": "q1", "query_text": "what is a cat", "positive_document_ids": ["d1"],
          "negative_document_ids": ["d2", 3]},
         {"query_id": 2, "query_text": "which birds fly", "positive_document_ids": [3], "negative_document_ids": []}]


def _check(run):
    t = tables(run)
    assert sorted((p["query_id"], p["doc_id"]) for p in t["positives"]) == [("2", "3"), ("q1", "d1")]
    assert sorted((n["query_id"], n["doc_id"]) for n in t["given_negatives"]) == [("q1", "3"), ("q1", "d2")]
    assert {q["query_id"]: q["text"] for q in t["queries"]} == {"q1": "what is a cat", "2": "which birds fly"}


def test_jsonl_with_a_corpus_file(tmp_path, cli):
    src = write_jsonl(tmp_path / "train.jsonl", TRAIN)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    code, _out, err = cli("ingest", src, "--corpus", corpus, "--out", tmp_path / "run")
    assert code == 0, err
    _check(tmp_path / "run")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run2")  # the documents are elsewhere: say so
    assert code == 2 and "needs --corpus" in err and "train.jsonl:1:" in err


def test_hf_folders_of_parquet(tmp_path, cli):
    (tmp_path / "train" / "data").mkdir(parents=True)
    rows = [dict(r, query_id=str(r["query_id"]),
                 positive_document_ids=[str(d) for d in r["positive_document_ids"]],
                 negative_document_ids=[str(d) for d in r["negative_document_ids"]]) for r in TRAIN]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train" / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "corpus" / "data").mkdir(parents=True)
    docs = [dict(d, docid=str(d["docid"])) for d in CORPUS]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "corpus" / "data" / "train-00000-of-00001.parquet")
    code, _out, err = cli("ingest", tmp_path / "train", "--corpus", tmp_path / "corpus", "--out", tmp_path / "run")
    assert code == 0, err
    _check(tmp_path / "run")
    bad = [dict(rows[0], positive_document_ids=["d9"])]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "train" / "data" / "train-00000-of-00001.parquet")
    code, _out, err = cli("ingest", tmp_path / "train", "--corpus", tmp_path / "corpus", "--out", tmp_path / "r3")
    assert code == 2 and "unknown doc id 'd9'" in err and "row 1" in err and "train-00000-of-00001" in err
