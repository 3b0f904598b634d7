"""Bad input: every case gives exactly one line ``negmine: error: FILE:LINE: what is wrong`` (``FILE:row N`` for
Parquet/CSV), exit code 2, and publishes nothing (RUN/ingest absent, or unchanged when it existed before)."""

import gzip
import hashlib
import json
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from negmine.io.store import Artifact

ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^negmine: error: (?P<where>[^:]+?)(?::(?P<loc>\d+|row \d+))?: (?P<msg>.+)$")


def jl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


CORPUS = jl({"_id": "d1", "title": "", "text": "one"}, {"_id": "d2", "title": "t", "text": "two"},
            {"_id": "d3", "text": "three"})
QUERIES = jl({"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"})
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n"


def beir(tmp: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS, name="beir") -> Path:
    d = tmp / name
    (d / "qrels").mkdir(parents=True)
    for rel, data in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/train.tsv", qrels)):
        if data is not None:
            (d / rel).write_bytes(data if isinstance(data, bytes) else data.encode())
    return d


def write(tmp: Path, name: str, data) -> Path:
    p = tmp / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def parquet(tmp: Path, name: str, cols: dict) -> Path:
    p = tmp / name
    pq.write_table(pa.table(cols), p)
    return p


# Each case: (build(tmp) -> list of CLI args after "ingest" (without --out), expected file suffix, expected
# location ("3", "row 2" or None for a file-level error), a fragment of the message).
CASES = {
    "malformed_json": (lambda t: [beir(t, corpus=CORPUS + '{"_id": "d4", "text": "x"\n')],
                       "corpus.jsonl", "4", "malformed JSON"),
    "json_line_not_an_object": (lambda t: [beir(t, queries=QUERIES + '["q3", "x"]\n')],
                                "queries.jsonl", "3", "expected a JSON object"),
    "missing_id": (lambda t: [beir(t, corpus=CORPUS + jl({"text": "no id"}))], "corpus.jsonl", "4",
                   "missing field '_id'"),
    "missing_text": (lambda t: [beir(t, corpus=jl({"_id": "d1", "title": "only a title"}) + CORPUS)],
                     "corpus.jsonl", "1", "missing field 'text'"),
    "non_string_id": (lambda t: [beir(t, queries=QUERIES + jl({"_id": 3.5, "text": "third"}))],
                      "queries.jsonl", "3", "must be a string id"),
    "non_string_text": (lambda t: [beir(t, corpus=CORPUS + jl({"_id": "d4", "text": ["a", "b"]}))],
                        "corpus.jsonl", "4", "field 'text' must be a string"),
    "duplicate_doc_id_different_text": (lambda t: [beir(t, corpus=CORPUS + jl({"_id": "d2", "text": "other"}))],
                                        "corpus.jsonl", "4", "duplicate doc id 'd2' with different text"),
    "duplicate_query_id_different_text": (lambda t: [beir(t, queries=QUERIES + jl({"_id": "q1", "text": "x"}))],
                                          "queries.jsonl", "3", "duplicate query id 'q1'"),
    "qrels_unknown_query": (lambda t: [beir(t, qrels=QRELS + "q7\td1\t1\n")], "train.tsv", "4",
                            "unknown query id 'q7'"),
    "qrels_unknown_doc": (lambda t: [beir(t, qrels=QRELS + "q1\td9\t1\n")], "train.tsv", "4",
                          "unknown doc id 'd9'"),
    "non_numeric_grade": (lambda t: [beir(t, qrels=QRELS + "q1\td2\thigh\n")], "train.tsv", "4",
                          "non-numeric grade 'high'"),
    "qrels_too_few_columns": (lambda t: [beir(t, qrels=QRELS + "q1\td2\n")], "train.tsv", "4",
                              "expected 3 tab-separated columns"),
    "no_query_has_a_positive": (lambda t: [beir(t, qrels="query-id\tcorpus-id\tscore\nq1\td1\t0\n")], "beir",
                                None, "no query has a positive"),
    "empty_file": (lambda t: [beir(t, queries="")], "queries.jsonl", None, "file is empty"),
    "only_blank_lines": (lambda t: [beir(t, corpus="\n  \n\n")], "corpus.jsonl", None, "no records"),
    "empty_text_strict": (lambda t: [beir(t, corpus=CORPUS + jl({"_id": "d4", "title": "", "text": " "})),
                                     "--strict"], "corpus.jsonl", "4", "empty text (--strict)"),
    "invalid_utf8": (lambda t: [beir(t, corpus=CORPUS.encode() + b'{"_id": "d4", "text": "caf\xe9"}\n')],
                     "corpus.jsonl", "4", "invalid UTF-8"),
    "missing_corpus_jsonl": (lambda t: [beir(t, corpus=None)], "corpus.jsonl", None, "missing file"),
    "missing_qrels_split": (lambda t: [beir(t), "--split", "dev"], "dev.tsv", None,
                            "no qrels for split 'dev' (available splits: train)"),
    "unknown_input_format": (lambda t: [write(t, "data.txt", "query,positive\n")], "data.txt", None,
                             "unknown input format"),
    "unknown_format_option": (lambda t: [beir(t), "--format", "msmarco"], "--format", None,
                              "'input.format': Input should be"),
    "config_key_does_not_exist": (lambda t: [beir(t), "--config",
                                             write(t, "c.yaml", "input:\n  split: train\nselect:\n  percpos: 0.9\n")],
                                  "c.yaml", "4", "unknown config key 'select.percpos'"),
    "config_value_wrong_type": (lambda t: [beir(t), "--config", write(t, "c.yaml", "input:\n  min_grade: high\n")],
                                "c.yaml", "2", "'input.min_grade'"),
    "config_invalid_yaml": (lambda t: [beir(t), "--config", write(t, "c.yaml", "input:\n  split: [train\n")],
                            "c.yaml", "3", "invalid YAML"),
    "bad_set_without_equals": (lambda t: [beir(t), "--set", "select.perc_pos"], "--set", None,
                               "expected key=value"),
    "bad_set_unknown_key": (lambda t: [beir(t), "--set", "input.nope=1"], "--set", None,
                            "unknown config key 'input.nope'"),
    "bad_option_value": (lambda t: [beir(t), "--shard-rows", "0"], "--shard-rows", None, "greater than 0"),
    "truncated_gz": (lambda t: [_truncated_gz(t)], "corpus.jsonl.gz", None, "truncated compressed file after"),
    "corrupt_zst": (lambda t: [_corrupt_zst(t)], "pairs.jsonl.zst", None, "corrupt compressed file"),
    "pairs_csv_wrong_column": (lambda t: [write(t, "p.csv", "question,answer\nq,a\n")], "p.csv", "1",
                               "no column 'query' (columns: question, answer); set --query-column"),
    "pairs_csv_ragged_row": (lambda t: [write(t, "p.csv", "query,positive\nq,a\nq2,a2,extra\n")], "p.csv",
                             "row 2", "expected 2 columns"),
    "pairs_parquet_null_query": (lambda t: [parquet(t, "p.parquet", {"query": ["a", None],
                                                                     "positive": ["x", "y"]})],
                                 "p.parquet", "row 2", "missing field 'query'"),
    "pairs_parquet_non_string_text": (lambda t: [parquet(t, "p.parquet", {"query": ["a", "b"],
                                                                          "positive": [1.5, 2.5]})],
                                      "p.parquet", "row 1", "field 'positive' must be a string"),
    "pairs_parquet_wrong_column": (lambda t: [parquet(t, "p.parquet", {"q": ["a"], "positive": ["x"]})],
                                   "p.parquet", None, "no column 'query'"),
    "pairs_csv_bad_grade": (lambda t: [write(t, "p.csv", "query,positive,g\nq,a,1\nq,b,n/a\n"),
                                       "--grade-column", "g"], "p.csv", "row 2", "non-numeric grade 'n/a'"),
    "pairs_unknown_positive_id": (lambda t: [write(t, "p.jsonl", jl({"query": "q", "pid": "zz"})),
                                             "--positive-id-column", "pid", "--corpus",
                                             write(t, "c.jsonl", jl({"_id": "a", "text": "x"}))],
                                  "p.jsonl", "1", "unknown doc id 'zz'"),
    "pairs_missing_corpus_file": (lambda t: [write(t, "p.jsonl", jl({"query": "q", "positive": "p"})),
                                             "--corpus", t / "nope.jsonl"], "nope.jsonl", None,
                                  "corpus file not found"),
    "beir_with_corpus_option": (lambda t: [beir(t), "--corpus", write(t, "c.jsonl", jl({"_id": "a", "text": "x"}))],
                                "--corpus", None, "a BEIR directory has its own corpus.jsonl"),
    "tevatron_passage_not_object": (lambda t: [write(t, "tev.jsonl", jl(
        {"query_id": "1", "query": "q", "positive_passages": ["just text"], "negative_passages": []}))],
        "tev.jsonl", "1", "must hold passage objects"),
    "flagembedding_scores_mismatch": (lambda t: [write(t, "fe.jsonl", jl(
        {"query": "q", "pos": ["a"], "neg": ["b"]},
        {"query": "q2", "pos": ["a", "c"], "neg": [], "pos_scores": [0.5]}))],
        "fe.jsonl", "2", "'pos_scores' has 1 scores for 2 passages"),
    "flagembedding_pos_not_list": (lambda t: [write(t, "fe.jsonl", jl({"query": "q", "pos": 3, "neg": []})),
                                              "--format", "flagembedding"], "fe.jsonl", "1",
                                   "field 'pos' must be a list"),
}


def _truncated_gz(tmp: Path) -> Path:
    d = beir(tmp)
    data = gzip.compress((d / "corpus.jsonl").read_bytes() * 50)
    (d / "corpus.jsonl").unlink()
    (d / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    return d


def _corrupt_zst(tmp: Path) -> Path:
    data = bytearray(zstandard.ZstdCompressor().compress(jl({"query": "q", "positive": "p"}).encode() * 200))
    data[len(data) // 2:] = b"\x00" * (len(data) - len(data) // 2)
    return write(tmp, "pairs.jsonl.zst", bytes(data))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A run directory holding a finished ingest artifact (from a good input)."""
    from negmine.cli import run

    tmp = tmp_path_factory.mktemp("good")
    assert run(["ingest", str(beir(tmp)), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, cli, good_run):
    build, where, loc, fragment = CASES[case]
    args = build(tmp_path)
    for run, existed in ((tmp_path / "fresh", False), (tmp_path / "existing", True)):
        if existed:
            shutil.copytree(good_run, run)
        before = _snapshot(run) if existed else None
        code, out, err = cli("ingest", *args, "--out", run)
        assert code == 2, (case, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        m = ERROR_LINE.match(lines[0])
        assert m, lines[0]
        assert m["where"].endswith(where), lines[0]
        assert m["loc"] == loc, lines[0]
        assert fragment in m["msg"], lines[0]
        # nothing published: RUN/ingest absent (fresh) or byte-identical (existing); no staging left behind
        if existed:
            assert _snapshot(run) == before
            Artifact.open(run / "ingest", stage="ingest")
        else:
            assert not (run / "ingest").exists()
        leftovers = [p.name for p in run.iterdir()] if run.exists() else []
        assert leftovers == (["ingest"] if existed else []), leftovers


def test_at_least_twenty_cases():
    assert len(CASES) >= 20


# ---- behaviours of the bad-input cases that are not errors ----------------------------------------------------


def test_duplicate_doc_identical_text_is_kept_once_and_counted(tmp_path, cli):
    src = beir(tmp_path, corpus=CORPUS + jl({"_id": "d2", "title": "t", "text": "two"}))
    assert cli("ingest", src, "--out", tmp_path / "run")[0] == 0
    art = Artifact.open(tmp_path / "run" / "ingest")
    assert art.num_rows("corpus") == 3 and art.stats["duplicate_docs_identical"] == 1


def test_unknown_qrels_rows_skipped_with_flag_and_counted(tmp_path, cli):
    src = beir(tmp_path, qrels=QRELS + "q7\td1\t1\nq1\td9\t1\n")
    code, _, err = cli("ingest", src, "--out", tmp_path / "run", "--skip-unknown")
    assert code == 0, err
    art = Artifact.open(tmp_path / "run" / "ingest")
    assert art.stats["unknown_skipped"] == 2 and art.num_rows("positives") == 2


def test_empty_text_counted_and_skipped_without_strict(tmp_path, cli):
    src = beir(tmp_path, corpus=CORPUS + jl({"_id": "d4", "title": "", "text": "\t "}),
               queries=QUERIES + jl({"_id": "q3", "text": ""}))
    assert cli("ingest", src, "--out", tmp_path / "run")[0] == 0
    st = Artifact.open(tmp_path / "run" / "ingest").stats
    assert st["empty_docs_skipped"] == 1 and st["empty_queries_skipped"] == 1 and st["docs"] == 3


def test_runtime_failure_exits_1_and_resumes(tmp_path, cli):
    """A failure that is not the input's fault (here: the disk refuses writes beyond a file-size limit, as with a
    full disk or quota) exits 1 with one line, publishes nothing, and keeps finished shards for a re-run."""
    # two shards of short documents, then one of long incompressible ones that exceeds the file-size limit
    rows = [{"_id": f"d{i}", "title": "", "text": f"document number {i}" if i < 2000 else
             " ".join(hashlib.sha256(f"{i}-{j}".encode()).hexdigest() for j in range(30))} for i in range(3000)]
    src = beir(tmp_path, corpus=jl(*rows), qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "negmine", "ingest", str(src), "--out", str(run), "--shard-rows", "1000"]

    def limit_file_size():  # short-document shards are ~10 KB, the long-document shard ~1 MB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit_file_size, env=env)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("negmine: error: I/O error during ingest:"), lines
    assert not (run / "ingest").exists()
    code, _, err = cli(*cmd[3:])  # the re-run (in-process) resumes
    assert code == 0, err
    art = Artifact.open(run / "ingest")
    assert art.num_rows("corpus") == 3000 and art.manifest["resumed_shards"] == 2


def test_out_path_that_is_a_file_is_bad_input(tmp_path, cli):
    out = write(tmp_path, "run", "not a directory")
    code, _, err = cli("ingest", beir(tmp_path), "--out", out)
    assert code == 2 and err.strip() == f"negmine: error: {out}: output path exists and is not a directory"
    assert out.read_text() == "not a directory"
