"""`negmine retrieve` on real data (Cranfield, BEIR layout): recall, cross-checks, skip/resume, bad input.

BM25 runs on full Cranfield (1,398 non-empty docs, 225 queries, 1,611 graded positives). Dense and hybrid run on
the `cranfield_small` subset (500 docs, 50 queries, 361 positives) so a cold CI embeds only ~600 texts with the
packaged MiniLM; the embedding cache ($NEGMINE_CACHE_DIR) serves every later test."""

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from negmine.encode import embed
from negmine.io.store import MANIFEST, PENDING, Artifact
from negmine.retrieve.params import RetrieveParams
from negmine.retrieve.stage import run_retrieve


def _ingest(src: Path, run: Path) -> Path:
    from negmine.io.ingest import run_ingest
    from negmine.io.params import IngestParams

    run_ingest(run, IngestParams(path=str(src), split="test"))
    return run


@pytest.fixture(scope="session")
def cran_run(shared_data, tmp_path_factory) -> Path:
    return _ingest(shared_data / "cranfield", tmp_path_factory.mktemp("cran") / "run")


@pytest.fixture(scope="session")
def small_run(cranfield_small, tmp_path_factory) -> Path:
    return _ingest(cranfield_small, tmp_path_factory.mktemp("cran_small") / "run")


def _copy(run: Path, dst: Path) -> Path:
    """A new run directory sharing `run`'s ingest (so runs with other params do not replace each other)."""
    shutil.copytree(run / "ingest", dst / "ingest")
    return dst


def _retrieve(run: Path, tmp: Path, **kw) -> Artifact:
    return run_retrieve(_copy(run, tmp), RetrieveParams(**kw)).artifact


@pytest.fixture(scope="session")
def small_results(small_run, tmp_path_factory) -> dict[str, Artifact]:
    return {m: _retrieve(small_run, tmp_path_factory.mktemp(m) / "run", method=m, depth=100)
            for m in ("bm25", "dense", "hybrid")}


def _top(art: Artifact, k: int) -> dict[str, list[str]]:
    t = art.read()
    out: dict[str, list[str]] = {}
    for q, d, r in zip(*(t.column(c).to_pylist() for c in ("query_id", "doc_id", "rank")), strict=True):
        if r <= k:
            out.setdefault(q, []).append(d)
    return out


# ---------------------------------------------------------------------------------------------------------------
# recall on Cranfield


def test_bm25_recall_full_cranfield(cran_run, tmp_path):
    """Measured 2026-11-23: bm25s lucene, k1=1.2, b=0.75, English stopwords + Snowball stemmer, doc = title + text:
    recall@100 = 0.6884 (1,109 of 1,611 positives; k1=1.5 gives 0.6935, no stemming 0.6644, rank-bm25 0.6890).
    Tolerance 0.005: BM25 is deterministic; it only guards against float summation differences."""
    art = _retrieve(cran_run, tmp_path, method="bm25", depth=100)
    assert art.stats["positives"] == 1611
    assert art.stats["recall@100"] == pytest.approx(0.6884, abs=0.005)


def test_recall_at_100_small(small_results):
    """cranfield_small, depth 100 (measured 2026-11-23): bm25 0.7701, MiniLM-L6 dense 0.8283, RRF hybrid 0.8366
    (of 361 positives). On full Cranfield: bm25 0.6884, dense 0.7337, hybrid 0.7436. Dense bound 0.01 for
    torch/BLAS numeric drift (a few positives near rank 100); hybrid must not lose what either retriever found."""
    bm25, dense, hybrid = (small_results[m].stats["recall@100"] for m in ("bm25", "dense", "hybrid"))
    assert bm25 == pytest.approx(0.7701, abs=0.005)
    assert dense == pytest.approx(0.8283, abs=0.01)
    assert hybrid == pytest.approx(0.8366, abs=0.01)
    assert hybrid >= max(bm25, dense)
    assert small_results["hybrid"].stats["recall_by_retriever"] == {"bm25": bm25, "dense": dense}


def test_candidates_contract(small_results):
    art = small_results["hybrid"]
    t = art.read()
    assert t.schema.names == ["query_id", "doc_id", "rank", "retriever", "retriever_score", "retrievers"]
    assert art.stage == "retrieve" and art.num_rows() == 50 * 100
    per_q = t.group_by("query_id").aggregate([("rank", "min"), ("rank", "max"), ("doc_id", "count_distinct")])
    assert set(per_q.column("rank_min").to_pylist()) == {1} and set(per_q.column("rank_max").to_pylist()) == {100}
    assert set(per_q.column("doc_id_count_distinct").to_pylist()) == {100}
    assert set(t.column("retriever").to_pylist()) == {"hybrid"}
    found = {tuple(x) for x in t.column("retrievers").to_pylist()}
    assert found == {("bm25",), ("dense",), ("bm25", "dense")}  # both retrievers contribute, and overlap
    # positives are kept in the candidates; the side table gives their final ranks
    pr = art.read("positive_ranks")
    assert pr.num_rows == art.stats["positives"] == 361
    cand = {(q, d): r for q, d, r in zip(*(t.column(c).to_pylist() for c in ("query_id", "doc_id", "rank")), strict=True)}
    ranks = list(zip(*(pr.column(c).to_pylist() for c in ("query_id", "doc_id", "rank")), strict=True))
    assert all(cand.get((q, d)) == r for q, d, r in ranks)
    assert sum(r is not None for _q, _d, r in ranks) == art.stats["positives_found"] > 0
    assert art.stats["positives_not_found"] == pr.column("rank").null_count > 0


# ---------------------------------------------------------------------------------------------------------------
# cross-checks


def test_dense_topk_equals_bruteforce_cosine(small_results, small_run, minilm):
    """negmine's dense top-10 (embedding cache, fp16 storage, faiss) vs sentence-transformers' own float32
    embeddings ranked by numpy cosine, on 12 queries over 80 of the small run's documents."""
    from negmine.encode.models import load_bi_encoder
    from negmine.models import doc_text

    ingest = Artifact.open(small_run / "ingest")
    corpus = ingest.read("corpus").slice(0, 80)
    queries = ingest.read("queries").slice(0, 12)
    sub = small_run.parent / "sub"
    if not (sub / "candidates").exists():
        from negmine.io.store import StageWriter

        w = StageWriter(sub / "ingest", "ingest", {}, {"sub": "80 docs"}, {
            t: ingest.read(t).schema for t in ("corpus", "queries", "positives")})
        w.begin()
        w.write_shard("corpus", 0, corpus)
        w.write_shard("queries", 0, queries)
        w.write_shard("positives", 0, ingest.read("positives").slice(0, 0))
        w.finish()
    art = run_retrieve(sub, RetrieveParams(method="dense", depth=10)).artifact
    got = _top(art, 10)
    model = load_bi_encoder(minilm)
    docs = [doc_text(a, b) for a, b in zip(corpus.column("title").to_pylist(), corpus.column("text").to_pylist(), strict=True)]
    xd = model.encode(docs, normalize_embeddings=True)
    xq = model.encode(queries.column("text").to_pylist(), normalize_embeddings=True)
    sims = xq @ xd.T
    ids = corpus.column("doc_id").to_pylist()
    same = total = 0
    for qi, q in enumerate(queries.column("query_id").to_pylist()):
        ref = np.argsort(-sims[qi], kind="stable")[:10]
        for pos, (mine, theirs) in enumerate(zip(got[q], [ids[j] for j in ref], strict=True)):
            total += 1
            if mine == theirs:
                same += 1
            else:  # a swap is allowed only between near-ties (fp16 storage moves cosines by < 1e-3)
                assert abs(sims[qi, ids.index(mine)] - sims[qi, ref[pos]]) < 2e-3, (q, pos)
    assert total == 120 and same / total >= 0.95


def test_bm25s_and_rank_bm25_agree(cran_run, tmp_path):
    """Top-1 agreement of bm25s (lucene idf) with rank-bm25 BM25Okapi (idf floor ε=0.25) on full Cranfield,
    same tokens: measured 201/225 = 0.893 (bm25s robertson: 211/225 = 0.938); top-10 overlap 0.919."""
    a = _top(_retrieve(cran_run, tmp_path / "a", method="bm25", depth=10), 10)
    b = _retrieve(cran_run, tmp_path / "b", method="bm25", depth=10, backend="rank-bm25")
    assert b.params["backend"] == "rank-bm25"
    b = _top(b, 10)
    top1 = sum(a[q][0] == b[q][0] for q in b) / len(b)
    overlap = sum(len(set(a[q]) & set(b[q])) for q in b) / (10 * len(b))
    assert top1 == pytest.approx(0.893, abs=0.02) and overlap > 0.9


# ---------------------------------------------------------------------------------------------------------------
# skip, resume, encode once


def test_skip_when_up_to_date_and_resume(cran_run, tmp_path):
    run = _copy(cran_run, tmp_path / "run")
    p = RetrieveParams(method="bm25", depth=20, shard_queries=50)  # 5 shards
    first = run_retrieve(run, p)
    assert not first.skipped and len(first.artifact.shard_paths()) == 5
    again = run_retrieve(run, p)
    assert again.skipped and again.artifact.fingerprint == first.artifact.fingerprint
    assert not run_retrieve(run, p.model_copy(update={"k1": 1.0})).skipped  # a changed param re-runs
    # what a kill after three shards leaves: a staging directory with 3 finished shards per table, no manifest
    ref = run_retrieve(run, p).artifact
    expected = ref.read()
    staging = run / f".candidates.staging-{ref.fingerprint[:12]}"
    os.replace(run / "candidates", staging)
    (staging / MANIFEST).unlink()
    for d in (staging, staging / "positive_ranks"):
        for i in (3, 4):
            (d / f"part-0000{i}.parquet").unlink()
    (staging / PENDING).write_text(f'{{"stage": "retrieve", "fingerprint": "{ref.fingerprint}"}}')
    kept = (staging / "part-00000.parquet").stat().st_mtime_ns
    res = run_retrieve(run, p)
    assert not res.skipped and res.artifact.manifest["resumed_shards"] == 6
    assert (run / "candidates" / "part-00000.parquet").stat().st_mtime_ns == kept  # not recomputed
    assert res.artifact.read().equals(expected)
    assert res.artifact.stats == ref.stats


def test_corpus_encoded_once_per_run(small_results, small_run, tmp_path):
    """Five query shards: the corpus goes through encode_texts once (500 docs + 50 queries, from the cache)."""
    before = embed.COUNTERS["cached"] + embed.COUNTERS["encoded"]
    art = _retrieve(small_run, tmp_path, method="dense", depth=100, shard_queries=10)
    assert embed.COUNTERS["cached"] + embed.COUNTERS["encoded"] - before == 500 + 50
    assert len(art.shard_paths()) == 5
    assert art.read().equals(small_results["dense"].read())  # sharding does not change the candidates


# ---------------------------------------------------------------------------------------------------------------
# CLI and bad input


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    import json

    src = tmp_path / "beir"
    (src / "qrels").mkdir(parents=True)
    docs = ["supersonic flow over a wedge", "boundary layer transition", "heat transfer in laminar flow",
            "shock wave interaction with a boundary layer", "wing flutter at transonic speeds"]
    (src / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                              for i, t in enumerate(docs)))
    (src / "queries.jsonl").write_text('{"_id": "q1", "text": "boundary layer"}\n'
                                       '{"_id": "q2", "text": "flutter"}\n')
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\n")
    return _ingest(src, tmp_path / "run")


def test_cli_depth_clamped(cli, tiny_run):
    code, out, err = cli("retrieve", tiny_run, "--method", "dense", "--depth", "50")
    assert code == 0, err
    assert "larger than the corpus (5 documents), clamped to 5" in err
    art = Artifact.open(tiny_run / "candidates")
    assert art.num_rows() == 10 and art.stats["depth"] == 5 and art.stats["recall@5"] == 1.0
    code, _, err = cli("retrieve", tiny_run, "--method", "bm25", "--depth", "50", "--set", "retrieve.k1=0.9")
    assert code == 0 and "clamped" in err
    t = Artifact.open(tiny_run / "candidates").read()
    # BM25 returns only documents that share a term with the query
    assert t.column("doc_id").to_pylist() == ["d1", "d3", "d4"]
    assert Artifact.open(tiny_run / "candidates").params["k1"] == 0.9


def test_cli_help_has_example(cli):
    code, out, _ = cli("retrieve", "--help")
    assert code == 0 and "Example: negmine retrieve" in out and "--method" in out


@pytest.mark.parametrize("model", ["no-such-org/no-such-model", "DIR"])
def test_cli_unknown_model(cli, tiny_run, capsys, model):
    """A hub name (offline: never downloaded) or a directory that holds no model: one line, exit 2, no artifact."""
    if model == "DIR":
        model = tiny_run.parent / "not-a-model"
        model.mkdir()
        (model / "config.json").write_text("{}")
    capsys.readouterr()  # the fixture's ingest log
    code, out, err = cli("retrieve", tiny_run, "--model", model)
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1, err
    assert f"--model: unknown model '{model}'" in err and "not downloaded when offline" in err
    assert not (tiny_run / "candidates").exists()
    assert not list(tiny_run.glob(".candidates.staging-*"))


def test_cli_missing_ingest(cli, tmp_path):
    code, _, err = cli("retrieve", tmp_path / "nothing")
    assert code == 2 and "no finished ingest artifact" in err and "negmine ingest" in err


@pytest.mark.parametrize("empty", ["corpus", "queries"])
def test_empty_corpus_or_queries(cli, tiny_run, empty):
    """An ingest artifact written by another tool (negmine ingest refuses both cases itself)."""
    from negmine.io.store import StageWriter

    src = Artifact.open(tiny_run / "ingest")
    tables = {t: src.read(t) for t in src.tables}
    tables[empty] = tables[empty].slice(0, 0)
    run = tiny_run.parent / f"run_{empty}"
    w = StageWriter(run / "ingest", "ingest", {}, {"test": empty}, {t: v.schema for t, v in tables.items()})
    w.begin()
    for t, v in tables.items():
        w.write_shard(t, 0, v)
    w.finish()
    code, _, err = cli("retrieve", run, "--method", "bm25")
    assert code == 2 and f"ingest/{empty}: " in err and "nothing to retrieve" in err


def test_configured_retriever_list(tiny_run, tmp_path):
    cfg = {"retrievers": [{"method": "bm25", "depth": 3}, {"method": "bm25", "name": "bm25-plain", "stemmer": None,
                                                            "stopwords": None, "depth": 2}], "fusion": "score"}
    art = run_retrieve(tiny_run, RetrieveParams(depth=4, **cfg)).artifact
    assert art.stats["retrievers"] == ["bm25", "bm25-plain"]
    t = art.read()
    assert set(t.column("retriever").to_pylist()) == {"hybrid"}
    assert {x for xs in t.column("retrievers").to_pylist() for x in xs} == {"bm25", "bm25-plain"}
    assert pa.compute.max(t.column("rank")).as_py() <= 4


def test_unknown_model_offline_python_api():
    from negmine.encode.models import load_bi_encoder
    from negmine.errors import InputError

    with pytest.raises(InputError, match="not downloaded when offline"):
        load_bi_encoder("no-such-model-anywhere")
