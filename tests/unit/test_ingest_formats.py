"""negmine ingest: every input format, compression, CRLF/BOM, format detection, counts."""

import csv
import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from negmine.errors import InputError
from negmine.io.ingest import text_id
from negmine.io.readers import sniff_file_format
from negmine.io.store import Artifact


def write_jsonl(path: Path, rows: list[dict], newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join(json.dumps(r, ensure_ascii=False) for r in rows) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def make_beir(root: Path, *, newline: str = "\n", bom: bool = False, header: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    write_jsonl(root / "corpus.jsonl", [
        {"_id": "d1", "title": "Cats", "text": "A cat is a small carnivorous mammal."},
        {"_id": "d2", "title": "", "text": "Dogs bark at strangers."},
        {"_id": "d3", "text": "Birds can fly; penguins cannot. Ünïcödé ✓"},
        {"_id": "d4", "title": "Fish", "text": "Fish live in water.", "metadata": {"x": 1}},
    ], newline, bom)
    write_jsonl(root / "queries.jsonl", [
        {"_id": "q1", "text": "what is a cat"}, {"_id": "q2", "text": "which birds fly"},
        {"_id": "q3", "text": "a query without positives"},
    ], newline, bom)
    rows = (["query-id\tcorpus-id\tscore"] if header else []) + ["q1\td1\t1", "q2\td3\t2", "q2\td4\t0"]
    (root / "qrels" / "train.tsv").write_bytes(
        (b"\xef\xbb\xbf" if bom else b"") + (newline.join(rows) + newline).encode())
    return root


def tables(run: Path) -> dict[str, list[dict]]:
    art = Artifact.open(run / "ingest", stage="ingest")
    return {t: art.read(t).to_pylist() for t in art.tables}


def content(run: Path) -> dict[str, str]:
    """Shard sha256 per table: equal content ⇔ equal hashes."""
    m = json.loads((run / "ingest" / "_manifest.json").read_text())
    return {t: [s["sha256"] for s in v["shards"]] for t, v in m["tables"].items()}


def test_beir_reader(tmp_path, cli):
    src = make_beir(tmp_path / "beir")
    code, out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert [d["doc_id"] for d in t["corpus"]] == ["d1", "d2", "d3", "d4"]
    assert t["corpus"][2] == {"doc_id": "d3", "title": "", "text": "Birds can fly; penguins cannot. Ünïcödé ✓"}
    assert t["queries"] == [{"query_id": "q1", "text": "what is a cat"}, {"query_id": "q2", "text": "which birds fly"}]
    assert t["positives"] == [{"query_id": "q1", "doc_id": "d1", "grade": 1.0},
                              {"query_id": "q2", "doc_id": "d3", "grade": 2.0}]
    assert t["given_negatives"] == []
    st = Artifact.open(tmp_path / "run" / "ingest").stats
    assert st["positives_below_min_grade"] == 1 and st["queries_without_positive_dropped"] == 1


def test_min_grade(tmp_path, cli):
    src = make_beir(tmp_path / "beir")
    assert cli("ingest", src, "--out", tmp_path / "run", "--min-grade", "2")[0] == 0
    assert tables(tmp_path / "run")["positives"] == [{"query_id": "q2", "doc_id": "d3", "grade": 2.0}]


@pytest.mark.parametrize("variant", ["crlf", "bom", "crlf+bom"])
def test_crlf_and_bom_give_identical_artifacts(tmp_path, cli, variant):
    make_beir(tmp_path / "plain")
    make_beir(tmp_path / "v", newline="\r\n" if "crlf" in variant else "\n", bom="bom" in variant)
    assert cli("ingest", tmp_path / "plain", "--out", tmp_path / "r1")[0] == 0
    code, _, err = cli("ingest", tmp_path / "v", "--out", tmp_path / "r2")
    assert code == 0, err
    assert content(tmp_path / "r1") == content(tmp_path / "r2")


@pytest.mark.parametrize("comp", ["gz", "zst"])
def test_compressed_inputs(tmp_path, cli, comp):
    plain = make_beir(tmp_path / "plain")
    packed = tmp_path / "packed"
    shutil.copytree(plain, packed)
    for p in [packed / "corpus.jsonl", packed / "queries.jsonl", packed / "qrels" / "train.tsv"]:
        data = p.read_bytes()
        packed_bytes = gzip.compress(data) if comp == "gz" else zstandard.ZstdCompressor().compress(data)
        p.with_name(p.name + "." + comp).write_bytes(packed_bytes)
        p.unlink()
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q a", "positive": "p a"}])
    packed_pairs = tmp_path / f"pairs.jsonl.{comp}"
    packed_pairs.write_bytes(gzip.compress(pairs.read_bytes()) if comp == "gz"
                             else zstandard.ZstdCompressor().compress(pairs.read_bytes()))
    for a, b in [(plain, packed), (pairs, packed_pairs)]:
        assert cli("ingest", a, "--out", tmp_path / "ra")[0] == 0
        code, _, err = cli("ingest", b, "--out", tmp_path / "rb")
        assert code == 0, err
        assert content(tmp_path / "ra") == content(tmp_path / "rb")
        shutil.rmtree(tmp_path / "ra")
        shutil.rmtree(tmp_path / "rb")


def test_qrels_without_header_keeps_first_row(tmp_path, cli):
    """BEIR's loader drops the first qrels row unconditionally; negmine keeps it when it is data."""
    src = make_beir(tmp_path / "beir", header=False)
    code, _, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert {"query_id": "q1", "doc_id": "d1", "grade": 1.0} in t["positives"]
    assert Artifact.open(tmp_path / "run" / "ingest").stats["qrels_without_header"] == 1


def test_duplicates_empty_texts_and_skip_unknown(tmp_path, cli):
    src = make_beir(tmp_path / "beir")
    with open(src / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "d2", "title": "", "text": "Dogs bark at strangers."}) + "\n")  # identical
        f.write(json.dumps({"_id": "d5", "title": " ", "text": "  "}) + "\n")                      # empty
    with open(src / "qrels" / "train.tsv", "a") as f:
        f.write("q1\td5\t1\nq9\td1\t1\nq1\td99\t1\n")
    code, _, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 2 and "train.tsv:6: unknown query id 'q9'" in err
    code, _, err = cli("ingest", src, "--out", tmp_path / "run", "--skip-unknown")
    assert code == 0, err
    st = Artifact.open(tmp_path / "run" / "ingest").stats
    assert st["docs"] == 4 and st["duplicate_docs_identical"] == 1 and st["empty_docs_skipped"] == 1
    assert st["positives_to_empty_docs_skipped"] == 1 and st["unknown_skipped"] == 2
    assert "d5" not in {d["doc_id"] for d in tables(tmp_path / "run")["corpus"]}


def test_pairs_jsonl_merges_identical_queries_and_hashes_ids(tmp_path, cli):
    src = write_jsonl(tmp_path / "pairs.jsonl", [
        {"query": "what is a cat", "positive": "A cat is a small animal."},
        {"query": "what is a cat", "positive": "Cats purr."},
        {"query": "dogs?", "positive": ["Dogs bark.", "Dogs wag tails."], "negative": "Cats purr."},
    ])
    code, _, err = cli("ingest", src, "--out", tmp_path / "run", "--negative-column", "negative")
    assert code == 0, err
    t = tables(tmp_path / "run")
    q_cat = text_id("q", "what is a cat")
    assert q_cat == "q" + __import__("hashlib").blake2b(b"what is a cat", digest_size=8).hexdigest()
    assert [q["query_id"] for q in t["queries"]] == [q_cat, text_id("q", "dogs?")]
    assert [p["doc_id"] for p in t["positives"] if p["query_id"] == q_cat] == [
        text_id("d", "A cat is a small animal."), text_id("d", "Cats purr.")]
    assert len(t["corpus"]) == 4  # "Cats purr." is one document, positive of q1 and given negative of q2
    assert t["given_negatives"] == [{"query_id": text_id("q", "dogs?"), "doc_id": text_id("d", "Cats purr.")}]
    # ids are stable: a second run in a new directory gives byte-identical shards
    assert cli("ingest", src, "--out", tmp_path / "run2", "--negative-column", "negative")[0] == 0
    assert content(tmp_path / "run") == content(tmp_path / "run2")


def test_pairs_csv_custom_columns_crlf_bom_and_grades(tmp_path, cli):
    p = tmp_path / "qa.csv"
    with open(p, "w", newline="", encoding="utf-8-sig") as f:  # BOM; csv writes CRLF by default
        w = csv.writer(f)
        w.writerow(["question", "answer", "label"])
        w.writerow(["who wrote hamlet", "Hamlet was written by Shakespeare,\nin about 1600.", "2"])
        w.writerow(["who wrote hamlet", "Marlowe was a contemporary.", "0"])
        w.writerow(["capital of france", "Paris is the capital of France.", "1"])
    assert b"\r\n" in p.read_bytes() and p.read_bytes().startswith(b"\xef\xbb\xbf")
    code, _, err = cli("ingest", p, "--out", tmp_path / "run", "--query-column", "question",
                       "--positive-column", "answer", "--grade-column", "label")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert len(t["queries"]) == 2 and len(t["positives"]) == 2
    assert t["corpus"][0]["text"] == "Hamlet was written by Shakespeare,\nin about 1600."
    assert sorted(p["grade"] for p in t["positives"]) == [1.0, 2.0]
    assert Artifact.open(tmp_path / "run" / "ingest").stats["positives_below_min_grade"] == 1


def test_pairs_parquet_with_ids_and_parquet_corpus(tmp_path, cli):
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"doc_id": ["a", "b", "c"], "title": ["T", "", ""],
                             "text": ["alpha doc", "beta doc", "gamma doc"]}), corpus)
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"qid": [7, 8], "q": ["first", "second"], "pid": ["b", "d"],
                             "positive": [None, "delta doc"]}), pairs)
    code, _, err = cli("ingest", pairs, "--corpus", corpus, "--out", tmp_path / "run", "--query-column", "q",
                       "--query-id-column", "qid", "--positive-id-column", "pid")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert [d["doc_id"] for d in t["corpus"]] == ["a", "b", "c", "d"]  # "d" given with its text: added
    assert t["queries"] == [{"query_id": "7", "text": "first"}, {"query_id": "8", "text": "second"}]
    assert [(p["query_id"], p["doc_id"]) for p in t["positives"]] == [("7", "b"), ("8", "d")]


def test_pairs_positive_text_found_in_jsonl_corpus_keeps_corpus_id(tmp_path, cli):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "doc-1", "title": "", "text": "the known passage"},
                                                     {"_id": "doc-2", "title": "", "text": "other"}])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q1", "positive": "the known passage"},
                                                   {"query": "q2", "positive": "a new passage"}])
    code, _, err = cli("ingest", pairs, "--corpus", corpus, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert [p["doc_id"] for p in t["positives"]] == ["doc-1", text_id("d", "a new passage")]
    assert [d["doc_id"] for d in t["corpus"]] == ["doc-1", "doc-2", text_id("d", "a new passage")]


def test_tevatron(tmp_path, cli):
    src = write_jsonl(tmp_path / "train.jsonl", [
        {"query_id": "1", "query": "what is bm25",
         "positive_passages": [{"docid": "p1", "title": "BM25", "text": "BM25 is a ranking function."}],
         "negative_passages": [{"docid": "n1", "title": "", "text": "TF-IDF weighs terms."},
                               {"docid": "n2", "title": "", "text": "Dense retrieval uses embeddings."}]},
        {"query_id": "2", "query": "what is dense retrieval",
         "positive_passages": [{"docid": "n2", "title": "", "text": "Dense retrieval uses embeddings."}],
         "negative_passages": [{"docid": "p1", "title": "BM25", "text": "BM25 is a ranking function."}]},
    ])
    assert sniff_file_format(src) == "tevatron"
    code, _, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert [d["doc_id"] for d in t["corpus"]] == ["p1", "n1", "n2"]
    assert [(p["query_id"], p["doc_id"]) for p in t["positives"]] == [("1", "p1"), ("2", "n2")]
    assert [(n["query_id"], n["doc_id"]) for n in t["given_negatives"]] == [("1", "n1"), ("1", "n2"), ("2", "p1")]


def test_flagembedding(tmp_path, cli):
    src = write_jsonl(tmp_path / "fe.jsonl", [
        {"query": "how do plants eat", "pos": ["Photosynthesis makes sugar."], "neg": ["Cows eat grass.", "x y"],
         "pos_scores": [0.9], "neg_scores": [0.2, 0.1], "prompt": "Represent this query: "},
        {"query": "how do plants eat", "pos": ["Roots take up water."], "neg": [], "prompt": "Represent this query: "},
    ])
    assert sniff_file_format(src) == "flagembedding"
    code, _, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert t["queries"] == [{"query_id": text_id("q", "how do plants eat"), "text": "how do plants eat"}]
    assert [p["doc_id"] for p in t["positives"]] == [text_id("d", "Photosynthesis makes sugar."),
                                                     text_id("d", "Roots take up water.")]
    assert len(t["given_negatives"]) == 2 and len(t["corpus"]) == 4
    assert Artifact.open(tmp_path / "run" / "ingest").stats["prompts"] == [
        {"prompt": "Represent this query: ", "rows": 2}]


@pytest.mark.parametrize("name,content_,expected", [
    ("a.jsonl", {"query": "q", "positive": "p"}, "pairs"),
    ("a.jsonl.gz", {"query": "q", "positive": "p"}, "pairs"),
    ("a.ndjson", {"query_id": "1", "query": "q", "positive_passages": []}, "tevatron"),
    ("a.jsonl.zst", {"query": "q", "pos": ["p"], "neg": []}, "flagembedding"),
    ("a.csv", "query,positive\nq,p\n", "pairs"),
    ("a.tsv", "query\tpositive\nq\tp\n", "pairs"),
    ("a.parquet", None, "pairs"),
])
def test_sniff_file_format(tmp_path, name, content_, expected):
    p = tmp_path / name
    if content_ is None:
        pq.write_table(pa.table({"query": ["q"], "positive": ["p"]}), p)
    else:
        data = (json.dumps(content_) + "\n" if isinstance(content_, dict) else content_).encode()
        if name.endswith(".gz"):
            data = gzip.compress(data)
        elif name.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        p.write_bytes(data)
    assert sniff_file_format(p) == expected


def test_sniff_unknown_suffix(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("hello\n")
    with pytest.raises(InputError, match="unknown input format"):
        sniff_file_format(p)


def test_shard_rows_splits_every_table(tmp_path, cli):
    src = make_beir(tmp_path / "beir")
    code, _, err = cli("ingest", src, "--out", tmp_path / "run", "--shard-rows", "2")
    assert code == 0, err
    art = Artifact.open(tmp_path / "run" / "ingest")
    assert [s["rows"] for s in art.manifest["tables"]["corpus"]["shards"]] == [2, 2]
    assert art.num_rows("corpus") == 4 and len(art.shard_paths("positives")) == 1


def test_ingest_help_shows_examples(cli):
    code, out, _ = cli("ingest", "--help")
    assert code == 0 and "Examples:" in out
    assert "negmine ingest ../shared/data/scifact --split train --out runs/scifact" in out


def test_pairs_tsv_with_csv_corpus_and_titles(tmp_path, cli):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("doc_id,title,text\nx1,Paris,Paris is the capital of France.\nx2,,Berlin is in Germany.\n")
    pairs = tmp_path / "pairs.tsv.gz"
    pairs.write_bytes(gzip.compress(b"q\tpos\nwhere is paris\tParis is the capital of France.\n"
                                    b"where is rome\tRome is in Italy.\n"))
    code, _, err = cli("ingest", pairs, "--corpus", corpus, "--query-column", "q", "--positive-column", "pos",
                       "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert [p["doc_id"] for p in t["positives"]] == ["x1", text_id("d", "Rome is in Italy.")]
    assert t["corpus"][0] == {"doc_id": "x1", "title": "Paris", "text": "Paris is the capital of France."}


def test_tsv_has_no_quoting(tmp_path, cli):
    p = tmp_path / "pairs.tsv"
    p.write_text('query\tpositive\n"quoted" query\t"He said", she wrote.\n')
    code, _, err = cli("ingest", p, "--out", tmp_path / "run")
    assert code == 0, err
    t = tables(tmp_path / "run")
    assert t["queries"][0]["text"] == '"quoted" query' and t["corpus"][0]["text"] == '"He said", she wrote.'


def test_gc_is_paused_only_while_reading(tmp_path, monkeypatch):
    """Ingest pauses the cyclic GC while reading (speed) and always restores it, also after bad input."""
    import gc

    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams
    from negmine.io.readers import beir as beir_reader

    seen = []
    real = beir_reader.read_qrels
    monkeypatch.setattr(beir_reader, "read_qrels", lambda *a: (seen.append(gc.isenabled()), real(*a)))
    src = make_beir(tmp_path / "beir")
    run_ingest(tmp_path / "run", IngestParams(path=str(src)))
    assert seen == [False] and gc.isenabled()
    (src / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    with pytest.raises(InputError):
        run_ingest(tmp_path / "run", IngestParams(path=str(src)))
    assert gc.isenabled()
