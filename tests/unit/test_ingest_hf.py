"""Ingest of what Hugging Face users have on disk: sharded Parquet dataset folders, save_to_disk output and .arrow
files (written by the real `datasets`), sentence-transformers' anchor/positive and query/answer columns without
flags, and integer ids read as strings consistently."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from test_ingest_formats import make_beir, tables, write_jsonl

from negmine.io.ingest import text_id


def _shards(root, split, rows, n):
    (root / "data").mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // n)
    for i in range(n):
        pq.write_table(pa.Table.from_pylist(rows[i * size:(i + 1) * size]),
                       root / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet")


def test_sharded_parquet_folder_with_anchor_positive(tmp_path, cli):
    train = [{"anchor": f"question {i}", "positive": f"answer {i}", "negative": f"wrong {i}"} for i in range(5)]
    _shards(tmp_path / "hf", "train", train, 2)
    _shards(tmp_path / "hf", "test", [{"anchor": "held out", "positive": "not read"}], 1)
    code, _out, err = cli("ingest", tmp_path / "hf", "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert sorted(q["text"] for q in t["queries"]) == [f"question {i}" for i in range(5)]  # train shards only
    docs = {d["doc_id"]: d["text"] for d in t["corpus"]}
    assert {docs[p["doc_id"]] for p in t["positives"]} == {f"answer {i}" for i in range(5)}
    assert {docs[n["doc_id"]] for n in t["given_negatives"]} == {f"wrong {i}" for i in range(5)}
    code, _out, err = cli("ingest", tmp_path / "hf", "--split", "test", "--out", tmp_path / "run_test")
    assert code == 0, err
    assert [q["text"] for q in tables(tmp_path / "run_test")["queries"]] == ["held out"]


def test_bad_row_in_a_shard_names_the_shard_and_row(tmp_path, cli):
    rows = [{"anchor": f"q{i}", "positive": f"p{i}"} for i in range(4)]
    rows[3]["anchor"] = None
    _shards(tmp_path / "hf", "train", rows, 2)
    code, _out, err = cli("ingest", tmp_path / "hf", "--out", tmp_path / "run")
    assert code == 2
    assert err.count("\n") == 1 and "train-00001-of-00002.parquet" in err and "row 2" in err


def test_save_to_disk_dataset_dict_and_arrow_file_with_query_answer(tmp_path, cli):
    import datasets

    rows = {"query": ["what is a cat", "which birds fly"], "answer": ["A small mammal.", "Most birds."]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                               "dev": datasets.Dataset.from_dict({"query": ["x"], "answer": ["y"]})})
    dd.save_to_disk(str(tmp_path / "saved"))
    code, _out, err = cli("ingest", tmp_path / "saved", "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert {q["query_id"]: q["text"] for q in t["queries"]} == {text_id("q", q): q for q in rows["query"]}
    assert sorted(d["text"] for d in t["corpus"]) == sorted(rows["answer"])
    arrow = next((tmp_path / "saved" / "train").glob("*.arrow"))
    code, _out, err = cli("ingest", arrow, "--out", tmp_path / "run_arrow")
    assert code == 0, err
    assert tables(tmp_path / "run_arrow")["positives"] == t["positives"]
    code, _out, err = cli("ingest", tmp_path / "saved", "--split", "validation", "--out", tmp_path / "run_bad")
    assert code == 2 and "no split 'validation'" in err and "dev" in err


def test_integer_ids_are_strings_consistently(tmp_path, cli):
    beir = make_beir(tmp_path / "beir")
    write_jsonl(beir / "corpus.jsonl", [{"_id": 7, "text": "A cat is a small mammal."},
                                        {"_id": "8", "text": "Dogs bark."}])
    write_jsonl(beir / "queries.jsonl", [{"_id": 1, "text": "what is a cat"}, {"_id": 2, "text": "dogs"}])
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\t7\t1\n2\t8\t1\n")
    code, _out, err = cli("ingest", beir, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert sorted(d["doc_id"] for d in t["corpus"]) == ["7", "8"]
    assert sorted((p["query_id"], p["doc_id"]) for p in t["positives"]) == [("1", "7"), ("2", "8")]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"qid": 3, "query": "q", "pid": 7, "positive": "p"}])
    code, _out, err = cli("ingest", pairs, "--query-id-column", "qid", "--positive-id-column", "pid",
                          "--out", tmp_path / "run_pairs")
    assert code == 0, err
    t = tables(tmp_path / "run_pairs")
    assert (t["positives"][0]["query_id"], t["positives"][0]["doc_id"]) == ("3", "7")
