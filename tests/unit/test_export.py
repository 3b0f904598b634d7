"""Export round-trips for every format on a hand-made run (no model): Parquet loaded with `datasets`, JSONL parsed;
several positives, id/score columns, n-tuple width, relabel overlay, skip-if-unchanged, atomic output."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest
from test_select_helpers import DOCS, QUERIES, build_run, negmine_log, rule_params

from negmine.export.params import ExportParams
from negmine.export.stage import run_export
from negmine.io.store import StageWriter
from negmine.models import doc_text
from negmine.select.stage import run_select


def text(d: str) -> str:
    return doc_text(*DOCS[d])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("export"))
    run_select(run, rule_params(num_negatives=2))
    # kept: q1 -> n2, n3 (positives p1, p1b); q2 -> n9, n10 (p2); q3 -> n11, n12 (p3); q4: no negatives
    return run


def _load(path):
    import datasets

    return datasets.load_dataset("parquet", data_files=str(path), split="train")


def test_triplet_one_row_per_positive_and_negative(run, tmp_path):
    res = run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.parquet")))
    ds = _load(res.path)
    assert ds.column_names == ["anchor", "positive", "negative"]
    assert len(ds) == res.rows == 2 * 2 + 1 * 2 + 1 * 2  # q1 has two positives
    rows = ds.to_list()
    assert rows[0] == {"anchor": QUERIES["q1"], "positive": text("p1"), "negative": text("n2")}
    assert {r["positive"] for r in rows if r["anchor"] == QUERIES["q1"]} == {text("p1"), text("p1b")}
    assert QUERIES["q4"] not in {r["anchor"] for r in rows}
    assert res.info["counts"]["queries_without_negatives"] == 1
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no temporary left


def test_triplet_with_ids_and_scores(run, tmp_path):
    res = run_export(run, ExportParams(format="triplet", with_ids=True, with_scores=True,
                                       out=str(tmp_path / "t.parquet")))
    ds = _load(res.path)
    assert ds.column_names == ["anchor", "positive", "negative", "scores", "query_id", "positive_id",
                               "negative_id"]
    r = ds[0]
    assert (r["query_id"], r["positive_id"], r["negative_id"]) == ("q1", "p1", "n2")
    assert r["scores"] == pytest.approx([0.80, 0.66])


def test_ntuple_width_and_short_queries(run, tmp_path):
    res = run_export(run, ExportParams(format="n-tuple", out=str(tmp_path / "n.parquet")))
    ds = _load(res.path)
    assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert len(ds) == 4  # q1 x 2 positives, q2, q3
    assert ds[0]["negative_1"] == text("n2") and ds[0]["negative_2"] == text("n3")  # hardest first
    res3 = run_export(run, ExportParams(format="n-tuple", num_negatives=3, with_scores=True,
                                        out=str(tmp_path / "n3.parquet")))
    assert res3.rows == 0 and res3.info["counts"]["queries_short_for_n_tuple"] == 3
    import pyarrow.parquet as pq  # (`datasets` refuses an empty file; the schema is still right)

    assert pq.read_schema(res3.path).names == ["anchor", "positive", "negative_1", "negative_2", "negative_3",
                                               "scores"]
    res1 = run_export(run, ExportParams(format="n-tuple", num_negatives=1, with_ids=True,
                                        out=str(tmp_path / "n1.parquet")))
    ds1 = _load(res1.path)
    assert ds1.column_names == ["anchor", "positive", "negative_1", "query_id", "positive_id", "negative_1_id"]
    assert ds1[0]["negative_1_id"] == "n2"


def test_labeled_pair_and_list(run, tmp_path):
    ds = _load(run_export(run, ExportParams(format="labeled-pair", out=str(tmp_path / "p.parquet"))).path)
    assert ds.column_names == ["query", "passage", "label"]
    q1 = [r for r in ds.to_list() if r["query"] == QUERIES["q1"]]
    assert [(r["passage"], r["label"]) for r in q1] == [(text("p1"), 1), (text("p1b"), 1), (text("n2"), 0),
                                                        (text("n3"), 0)]
    ds = _load(run_export(run, ExportParams(format="labeled-pair", with_scores=True, with_ids=True,
                                            out=str(tmp_path / "ps.parquet"))).path)
    assert ds.column_names == ["query", "passage", "score", "query_id", "doc_id"]
    p1b = next(r for r in ds.to_list() if r["doc_id"] == "p1b")
    assert p1b["score"] == pytest.approx(0.70)
    ds = _load(run_export(run, ExportParams(format="labeled-list", out=str(tmp_path / "l.parquet"))).path)
    assert ds.column_names == ["query", "docs", "labels"] and len(ds) == 3
    assert ds[0]["docs"] == [text("p1"), text("p1b"), text("n2"), text("n3")]
    assert ds[0]["labels"] == [1, 1, 0, 0]
    ds = _load(run_export(run, ExportParams(format="labeled-list", with_scores=True, with_ids=True,
                                            out=str(tmp_path / "ls.parquet"))).path)
    assert ds.column_names == ["query", "docs", "scores", "query_id", "doc_ids"]
    assert ds[1]["doc_ids"] == ["p2", "n9", "n10"] and ds[1]["scores"] == pytest.approx([-1.0, -1.2, -3.0])


def test_st_format_as_jsonl_and_bad_suffix(run, tmp_path):
    res = run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.jsonl")))
    rows = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert list(rows[0]) == ["anchor", "positive", "negative"] and len(rows) == 8
    from negmine.errors import InputError

    with pytest.raises(InputError):
        run_export(run, ExportParams(format="triplet", out=str(tmp_path / "t.csv")))


def test_flagembedding_and_tevatron(run, tmp_path):
    res = run_export(run, ExportParams(format="flagembedding", prompt="Represent this query: ",
                                       out=str(tmp_path / "fe.jsonl")))
    rows = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert len(rows) == 3
    assert rows[0] == {"query": QUERIES["q1"], "pos": [text("p1"), text("p1b")], "neg": [text("n2"), text("n3")],
                       "pos_scores": pytest.approx([0.8, 0.7]), "neg_scores": pytest.approx([0.66, 0.6]),
                       "prompt": "Represent this query: "}
    res = run_export(run, ExportParams(format="tevatron", with_scores=True))
    assert res.path == run / "export" / "tevatron.jsonl"
    rows = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert rows[1]["query_id"] == "q2" and rows[1]["query"] == QUERIES["q2"]
    assert rows[1]["positive_passages"] == [{"docid": "p2", "title": DOCS["p2"][0], "text": DOCS["p2"][1],
                                             "score": pytest.approx(-1.0)}]
    assert [p["docid"] for p in rows[1]["negative_passages"]] == ["n9", "n10"]


def test_skip_when_unchanged_and_rewrite_when_needed(run, tmp_path, caplog):
    out = tmp_path / "t.parquet"
    first = run_export(run, ExportParams(format="triplet", out=str(out)))
    with negmine_log(caplog, logging.INFO):
        again = run_export(run, ExportParams(format="triplet", out=str(out)))
    assert again.skipped and "up to date" in caplog.text and again.rows == first.rows
    assert json.loads((tmp_path / ".t.parquet.negmine.json").read_text())["rows"] == first.rows
    assert not run_export(run, ExportParams(format="triplet", out=str(out), with_ids=True)).skipped
    out.write_bytes(b"tampered")
    assert not run_export(run, ExportParams(format="triplet", out=str(out))).skipped
    assert len(_load(out)) == first.rows


def _relabel(run, select_fp, negatives, promoted):
    """A relabel artifact as negmine relabel writes it (its schemas), made from the select run ``select_fp``."""
    from negmine.judge.schemas import RELABEL_NEGATIVES, RELABEL_POSITIVES

    w = StageWriter(run / "relabel", "relabel", {"hand_made": True}, {"negatives": select_fp},
                    {"negatives": RELABEL_NEGATIVES, "positives": RELABEL_POSITIVES}, main_table="negatives")
    w.begin()
    w.write_shard("negatives", 0, pa.Table.from_pylist(
        [{"query_id": q, "doc_id": d, "teacher_score": s, "reason_kept": "refill" if r else "sampled",
          "filled": False, "refill_round": r} for q, d, s, r in negatives], schema=RELABEL_NEGATIVES))
    w.write_shard("positives", 0, pa.Table.from_pylist(
        [{"query_id": q, "doc_id": d, "label": "relevant", "tier": 1} for q, d in promoted],
        schema=RELABEL_POSITIVES))
    return w.finish()


def test_relabel_overlay_and_stale_relabel(tmp_path, caplog):
    run = build_run(tmp_path)
    sel = run_select(run, rule_params(num_negatives=2)).artifact
    # relabel: n3 of q1 promoted to positive, n10 of q2 removed (false negative) and refilled with n5, q3 dropped
    _relabel(run, sel.fingerprint, [("q1", "n2", 0.66, 0), ("q2", "n9", -1.2, 0), ("q2", "n5", -2.5, 1)],
             [("q1", "n3")])
    res = run_export(run, ExportParams(format="labeled-list", with_ids=True, with_scores=True,
                                       out=str(tmp_path / "l.parquet")))
    ds = _load(res.path).to_list()
    assert len(ds) == 2  # q3: relabel left it no negative
    assert ds[0]["doc_ids"] == ["p1", "p1b", "n3", "n2"] and ds[0]["scores"] == pytest.approx([0.8, 0.7, 0.6, 0.66])
    assert ds[1]["doc_ids"] == ["p2", "n9", "n5"] and ds[1]["scores"][-1] == pytest.approx(-2.5)
    c = res.info["counts"]
    assert res.info["relabel_applied"] and c["negatives_removed_by_relabel"] == 1 + 2  # n10; q3's n11, n12
    assert c["positives_promoted_by_relabel"] == 1 and c["negatives_added_by_relabel"] == 1
    fe = run_export(run, ExportParams(format="flagembedding", out=str(tmp_path / "f.jsonl")))
    row = json.loads(fe.path.read_text().splitlines()[0])
    assert row["pos"][-1] == text("n3") and row["pos_scores"][-1] == pytest.approx(0.60)
    assert run_export(run, ExportParams(format="labeled-list", with_ids=True, use_relabel=False,
                                        out=str(tmp_path / "l.parquet"))).info["relabel_applied"] is False
    # select re-run with other params: the relabel artifact is stale and ignored, loudly
    run_select(run, rule_params(num_negatives=3))
    with negmine_log(caplog, logging.WARNING):
        res = run_export(run, ExportParams(format="labeled-list", with_ids=True, out=str(tmp_path / "l.parquet")))
    assert "older select run" in caplog.text and not res.info["relabel_applied"]
    assert _load(res.path)[0]["doc_ids"] == ["p1", "p1b", "n2", "n3", "n4"]


def test_filled_negatives_can_be_left_out(tmp_path):
    run = build_run(tmp_path)
    run_select(run, rule_params(num_negatives=4, short_policy="fill"))
    full = run_export(run, ExportParams(format="n-tuple", num_negatives=4, with_ids=True))
    assert [r["query_id"] for r in _load(full.path).to_list()] == ["q1", "q1", "q2"]
    part = run_export(run, ExportParams(format="triplet", include_filled=False))
    assert part.info["counts"]["filled_left_out"] == 2  # q2's two (q1 has 5 eligible, q3 nothing to fill with)


def test_cli_export(run, cli, tmp_path):
    out = tmp_path / "cli.parquet"
    code, stdout, err = cli("export", run, "--format", "triplet", "--out", out)
    assert code == 0, err
    assert str(out) in stdout and "8 rows" in stdout
    code, stdout, err = cli("export", run, "--format", "triplet", "--out", out)
    assert code == 0 and "up to date" in stdout
    code, stdout, err = cli("export", run, "--format", "csv")
    assert code == 2
    code, stdout, err = cli("export", tmp_path / "nowhere", "--format", "triplet")
    assert code == 2 and "negmine select" in err


@pytest.mark.parametrize("parts", [True, False])
def test_export_texts_render_each_document_once(tmp_path, parts):
    """The export's document texts: the model string (``doc_text``) made once per document (Arrow), and title and
    text kept apart only for a writer that reads them (Tevatron, ids): the others hold the rendered string alone."""
    from negmine.export.stage import _Texts
    from negmine.export.writers import WRITERS
    from negmine.io.store import Artifact

    ingest = Artifact.open(build_run(tmp_path) / "ingest", stage="ingest")
    texts = _Texts(ingest, set(DOCS), parts=parts)
    for d, (title, body) in DOCS.items():
        doc = texts.doc(d, 0.5)
        assert doc.full == doc_text(title, body) and doc.score == 0.5 and doc.doc_id == d
        assert (doc.title, doc.text) == ((title, body) if parts else ("", ""))
    assert {n for n, w in WRITERS.items() if w.parts} == {"tevatron", "ids"}
    with pytest.raises(Exception, match="1 selected document"):
        _Texts(ingest, {"p1", "not-in-corpus"}, parts=parts)


def test_rendered_is_doc_text():
    from negmine.export.stage import rendered

    titles = pa.chunked_array([["A title", "", None, "T"], [None]], pa.string())
    bodies = pa.chunked_array([["body one", "body two", "body three", None], ["x"]], pa.string())
    _t, _x, full = rendered(titles, bodies)
    pairs = zip(titles.to_pylist(), bodies.to_pylist(), strict=True)
    assert full.to_pylist() == [doc_text(a or "", b or "") for a, b in pairs]


def test_card_features_spelled_as_datasets_spells_them():
    """The card's features for every export schema are written without importing ``datasets`` (a second of a
    small export), and are what ``datasets`` itself gives for them."""
    datasets = pytest.importorskip("datasets")
    from negmine.export import card
    from negmine.export.writers import IDS_CORPUS, IDS_QUERIES, WRITERS, Options

    if int(datasets.__version__.split(".")[0]) < 4:
        pytest.skip("datasets < 4 spells lists `sequence:`; features_yaml asks datasets itself then")
    schemas = [IDS_CORPUS, IDS_QUERIES] + [
        w.schema(Options(num_negatives=3, with_scores=ws, with_ids=wi))
        for w in WRITERS.values() if w.schema is not None for ws in (False, True) for wi in (False, True)]
    for schema in schemas:
        direct = card._features_direct(schema)
        assert direct is not None and direct == datasets.Features.from_arrow_schema(schema)._to_yaml_list(), schema
        assert card.features_yaml(schema) == direct
    odd = pa.schema([("small", pa.int8()), ("s", pa.struct([("a", pa.string())]))])
    assert card._features_direct(odd) is None
    assert card.features_yaml(odd) == datasets.Features.from_arrow_schema(odd)._to_yaml_list()


def test_export_does_not_import_datasets(run, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from negmine.export.stage import run_export; from negmine.export.params import "
            f"ExportParams; run_export({str(run)!r}, ExportParams(out={str(tmp_path / 'x.parquet')!r})); "
            "print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
@pytest.mark.parametrize("split", [None, "test=0.5"])
@pytest.mark.parametrize("include_filled", [True, False])
def test_columnar_tables_are_the_example_paths_bytes(tmp_path, monkeypatch, fmt, split, include_filled):
    """A table format's columnar path (Arrow takes, no Example / Doc per row) writes the very file, and counts, of
    the Example path: several positives, filled negatives kept or left out, a query without negatives, n-tuples
    short of negatives, a held-out split, every column option, two select shards."""
    import hashlib

    import negmine.export.stage as stage
    from negmine.export.writers import WRITERS

    run = build_run(tmp_path, shards=2)
    run_select(run, rule_params(num_negatives=4, short_policy="fill"))
    real, made = stage._Texts, []

    def counting(*a, **k):
        made.append(1)
        return real(*a, **k)

    monkeypatch.setattr(stage, "_Texts", counting)
    writer = WRITERS[fmt]
    columns = writer.columns
    assert columns is not None
    for with_ids in (False, True):
        for with_scores in (False, True):
            out = {}
            for path, fn in (("columnar", columns), ("examples", None)):
                monkeypatch.setattr(writer, "columns", fn)
                res = run_export(run, ExportParams(format=fmt, with_ids=with_ids, with_scores=with_scores,
                                                   include_filled=include_filled, split=split,
                                                   out=str(tmp_path / path / "t.parquet")))
                out[path] = ([hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(res.paths.values())],
                             res.info["counts"], res.rows)
            assert out["columnar"] == out["examples"], (with_ids, with_scores)
            counts = out["columnar"][1]
            assert out["columnar"][2] > 0 and counts["queries_without_negatives"] == 1
            assert (counts["filled_left_out"] > 0) != include_filled
            assert (counts["queries_short_for_n_tuple"] > 0) == (fmt == "n-tuple")  # q3: nothing to fill with
    assert len(made) == 4  # the Example path's texts: built only when the columnar path was off


def test_score_column_nulls_nan_and_none():
    from negmine.export.writers import score_column

    col = score_column(pa.chunked_array([pa.array([0.5, float("nan"), None], pa.float64())]))
    assert col.type == pa.float32() and col.to_pylist() == [0.5, None, None]


def test_columnar_texts_past_2_gib_are_held_as_large_strings(tmp_path, monkeypatch):
    """A string array's offsets are 32-bit: the export's texts past 2 GiB (MS MARCO's 8.8M passages are 3 GB) are
    held as a large_string array and each shard's rows cast back; the file is the same (threshold lowered to 0)."""
    import hashlib

    import negmine.export.stage as stage

    run = build_run(tmp_path)
    run_select(run, rule_params(num_negatives=2))
    made = []
    real = stage._DocColumns.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        made.append(self.full.type)

    monkeypatch.setattr(stage._DocColumns, "__init__", spy)
    digests = []
    for limit in (stage.STRING_BYTES, 0):
        monkeypatch.setattr(stage, "STRING_BYTES", limit)
        res = run_export(run, ExportParams(format="triplet", with_ids=True, out=str(tmp_path / f"{limit}.parquet")))
        digests.append(hashlib.sha256(res.path.read_bytes()).hexdigest())
    assert made == [pa.string(), pa.large_string()] and digests[0] == digests[1]
