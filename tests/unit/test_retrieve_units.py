"""Pure parts of negmine.retrieve: fusion, hit ordering, faiss index kinds and the GPU k-limit routing, params."""

import logging

import numpy as np
import pytest

from negmine.retrieve.fusion import found_labels, fuse
from negmine.retrieve.params import RetrieveParams, RetrieverConfig
from negmine.retrieve.ranking import rank_of, sort_hits, topk_rows


def test_sort_hits_orders_and_drops():
    idx, s = sort_hits(np.array([[3, 1, 2, -1]]), np.array([[1.0, 2.0, 2.0, 5.0]]))
    assert idx.tolist() == [[1, 2, 3, -1]] and s.tolist() == [[2.0, 2.0, 1.0, 0.0]]  # tie → lower index first
    idx, _ = sort_hits(np.array([[4, 5]]), np.array([[0.0, 0.5]]))  # BM25 score 0 = no term matched
    assert idx.tolist() == [[5, -1]]
    idx, s = sort_hits(np.array([[4, 5]]), np.array([[-0.5, -0.2]]), drop_nonpositive=False)  # cosine may be < 0
    assert idx.tolist() == [[5, 4]]
    idx, s = topk_rows(np.array([[0.0, 3, 1, 3], [1, 0, 0, 0]]), 3)
    assert idx.tolist() == [[1, 3, 2], [0, -1, -1]]


def test_rank_of():
    idx = np.array([[7, 3, -1], [3, 9, 8]])
    # (query row, doc) → 1-based rank, 0 when the doc is not in that row
    assert rank_of(np.array([0, 0, 1, 1, 0]), np.array([3, 9, 3, 8, 7]), idx).tolist() == [2, 0, 1, 3, 1]
    assert rank_of(np.array([0]), np.array([1]), np.full((1, 3), -1)).tolist() == [0]


def test_rrf_by_hand():
    bm25 = (np.array([[10, 11, 12]]), np.array([[9.0, 8.0, 7.0]]))
    dense = (np.array([[12, 13, -1]]), np.array([[0.9, 0.8, 0.0]]))
    idx, score, found = fuse([bm25, dense], depth=3, method="rrf", k=60)
    # doc 12: 1/63 + 1/61 beats doc 10: 1/61, then doc 11 (1/62) and doc 13 (1/62) tie → lower index first
    assert idx.tolist() == [[12, 10, 11]]
    np.testing.assert_allclose(score[0], [1 / 63 + 1 / 61, 1 / 61, 1 / 62], rtol=1e-6)
    assert found_labels(found[0], ["bm25", "dense"]) == [["bm25", "dense"], ["bm25"], ["bm25"]]
    # weights scale a run's contribution
    idx, _, _ = fuse([bm25, dense], depth=2, method="rrf", k=60, weights=[1.0, 3.0])
    assert idx.tolist() == [[12, 13]]


def test_score_fusion_minmax():
    a = (np.array([[1, 2, 3], [7, -1, -1]]), np.array([[10.0, 5.0, 0.0], [4.0, 0.0, 0.0]]))
    b = (np.array([[3, 1, -1], [8, 7, -1]]), np.array([[0.5, 0.1, 0.0], [0.9, 0.8, 0.0]]))
    idx, score, found = fuse([a, b], depth=4, method="score")
    # query 0: doc1 = 1 + 0, doc3 = 0 + 1, doc2 = 0.5 → tie of 1 and 3 broken by index
    assert idx[0].tolist() == [1, 3, 2, -1]
    np.testing.assert_allclose(score[0, :3], [1.0, 1.0, 0.5])
    # query 1: a single hit normalises to 1; doc 7: 1 + 0 (b's minimum), doc 8: 1
    assert idx[1].tolist() == [7, 8, -1, -1] and found[1, 0] == 3 and found[1, 1] == 2


def test_fuse_depth_cut_and_empty_rows():
    r = (np.array([[5, 6, 7], [-1, -1, -1]]), np.array([[3.0, 2.0, 1.0], [0, 0, 0]]))
    idx, _, found = fuse([r, r], depth=2)
    assert idx.tolist() == [[5, 6], [-1, -1]] and found[1].tolist() == [0, 0]


def _vectors(n=400, dim=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_index_kinds_against_numpy():
    from negmine.retrieve.dense import FaissSearch, build_index

    xb, xq = _vectors(), _vectors(20, seed=1)
    exact = np.argsort(-(xq @ xb.T), axis=1, kind="stable")[:, :10]
    idx, s = FaissSearch(build_index(xb, RetrieverConfig(index="flat"))).search(xq, 10)
    assert (idx == exact).mean() > 0.99
    for cfg in (RetrieverConfig(index="hnsw"), RetrieverConfig(index="ivf", ivf_nlist=8, ivf_nprobe=8)):
        idx, _ = FaissSearch(build_index(xb, cfg)).search(xq, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx.tolist(), exact.tolist(), strict=True)])
        assert recall > 0.95, (cfg.index, recall)  # nprobe = nlist: IVF is exhaustive here


def test_gpu_k_limit_routes_deep_searches_to_cpu(caplog):
    """The GPU k limit, exercised with CPU indexes: `accel` holds doubled vectors so its scores are doubled and
    we can see which index answered."""
    from negmine.retrieve.dense import FaissSearch, build_index

    xb, xq = _vectors(), _vectors(5, seed=2)
    cfg = RetrieverConfig(index="flat")
    fs = FaissSearch(build_index(xb, cfg), accel=build_index(2 * xb, cfg), k_limit=32)  # 10 + TIE_PAD fit, 40 not
    idx_shallow, s_shallow = fs.search(xq, 10)
    logger = logging.getLogger("negmine")
    logger.addHandler(caplog.handler)  # the CLI's setup may have stopped propagation to the root logger
    try:
        idx_deep, s_deep = fs.search(xq, 40)
    finally:
        logger.removeHandler(caplog.handler)
    assert "exceeds the GPU limit" in caplog.text
    ref = xq @ xb.T
    np.testing.assert_allclose(s_shallow, 2 * np.sort(ref, axis=1)[:, ::-1][:, :10], rtol=1e-5)  # accel
    np.testing.assert_allclose(s_deep, np.sort(ref, axis=1)[:, ::-1][:, :40], rtol=1e-5)  # cpu, not crashed
    assert (idx_deep[:, :10] == idx_shallow).all()


def test_flat_search_keeps_the_lower_document_index_at_a_tied_cut():
    """Two documents tied at the k-th score: faiss keeps the one its heap met last (here document 1), the flat
    search the lower index, as every other retriever does (`sort_hits`)."""
    import faiss

    from negmine.retrieve.dense import FaissSearch

    def unit(s):
        return [s, np.sqrt(1 - s * s)]

    xb = np.array([unit(.5), unit(.5), unit(.1), unit(.9), unit(.9)], dtype=np.float32)
    index = faiss.IndexFlatIP(2)
    index.add(xb)
    for nq in (1, 30):  # faiss' one-by-one path and its BLAS path
        xq = np.tile(np.array([[1, 0]], dtype=np.float32), (nq, 1))
        assert sorted(index.search(xq, 3)[1][0]) == [1, 3, 4]  # faiss alone
        idx, _ = FaissSearch(index).search(xq, 3)
        assert (idx == [3, 4, 0]).all()


def test_exact_knn_is_the_same_whole_or_in_blocks_to_the_last_bit():
    """One flat index and the same vectors as blocks of 1,024 (the Ray engine's layout, searched by `faiss.knn`
    block by block) give the same rows, bit for bit, with ties at the cut longer than `TIE_PAD` (a query asked
    again) and ties across blocks; the kept rows are the lowest indices of every tie."""
    import faiss

    from negmine.retrieve.dense import TIE_PAD, FaissSearch, exact_knn

    xb = _vectors(5000, 32, seed=3)
    dup = np.r_[10:20, 1500:1530, 4000:4020]  # 60 copies of one vector, in three blocks
    xb[dup] = xb[2500]
    xq = np.concatenate([np.repeat(xb[2500:2501], 5, axis=0), _vectors(35, 32, seed=4)])
    index = faiss.IndexFlatIP(32)
    index.add(xb)
    k = 40
    assert len(dup) + 1 > k + TIE_PAD
    whole = FaissSearch(index).search(xq, k)
    parts = [(s, len(xb[s:s + 1024]), lambda q, kk, b=xb[s:s + 1024]: faiss.knn(q, b, kk, faiss.METRIC_INNER_PRODUCT))
             for s in range(0, len(xb), 1024)]
    blocked = exact_knn(parts, xq, k)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])
    assert whole[0][0].tolist() == sorted([2500, *dup.tolist()])[:k]
    all_s, all_i = index.search(xq, len(xb))  # every score, then (score desc, index asc)
    order = np.lexsort((all_i, -all_s), axis=1)[:, :k]
    assert np.array_equal(np.take_along_axis(all_i, order, axis=1), whole[0])


def test_exact_knn_merges_many_parts_in_row_chunks_with_the_same_rows(monkeypatch):
    """A Ray worker cuts 4,096 queries' lists from 16 object-store blocks (1M documents): merged and sorted all at
    once, the temporaries reached 365 MiB per worker; `CUT_ROWS` rows at a time they stay under 64 MiB, and any
    chunking gives the same rows (a row's sort does not depend on the others)."""
    import tracemalloc

    from negmine.retrieve import dense

    rng = np.random.default_rng(5)
    nq, kk, n_parts, block = 4096, 100 + dense.TIE_PAD, 16, 1000
    lists = [(-np.sort(-rng.random((nq, kk), dtype=np.float32), axis=1),
              np.argsort(rng.random((nq, block)), axis=1)[:, :kk]) for _ in range(n_parts)]
    lists[3][0][:, 5] = lists[9][0][:, 5]  # ties across parts
    parts = [(p * block, block, lambda q, k, sc=sc, ix=ix: (sc[:len(q), :k], ix[:len(q), :k]))
             for p, (sc, ix) in enumerate(lists)]
    xq = np.zeros((nq, 1), dtype=np.float32)
    results, default = {}, dense.CUT_ROWS
    for rows in (nq, 7, default):
        monkeypatch.setattr(dense, "CUT_ROWS", rows)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        results[rows] = dense.exact_knn(parts, xq, 100)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        assert (peak < 64 * 2**20) == (rows != nq), (rows, peak)
    for got in results.values():
        assert all(np.array_equal(a, b) for a, b in zip(got, results[nq], strict=True))


def test_the_blocks_a_flat_index_is_added_in_start_on_faiss_tiles():
    """The Ray engine's object-store blocks are the blocks dense retrieval adds (`ADD_BLOCK` documents each), and
    they search bit for bit like one index only when each starts where faiss starts a tile of its brute-force search
    (`distance_compute_blas_database_bs` rows). Another alignment can change scores in the last bit (seen here with
    4,096 queries over blocks of 1,500 documents)."""
    import faiss

    from negmine.retrieve.dense import ADD_BLOCK

    assert ADD_BLOCK % faiss.cvar.distance_compute_blas_database_bs == 0


def test_params_resolution():
    assert [r.label for r in RetrieveParams().resolved()] == ["dense"]
    hyb = RetrieveParams(method="hybrid", depth=50).resolved()
    assert [(r.method, r.depth) for r in hyb] == [("bm25", 50), ("dense", 50)]
    rs = RetrieveParams(k1=0.9, retrievers=[{"method": "bm25", "depth": 200}, {"method": "dense", "model": "m"},
                                            {"method": "dense", "name": "big", "weight": 2}]).resolved()
    assert [(r.label, r.depth, r.k1, r.model) for r in rs] == [
        ("bm25", 200, 0.9, "all-MiniLM-L6-v2"), ("dense", 100, 0.9, "m"), ("big", 100, 0.9, "all-MiniLM-L6-v2")]
    # the fingerprint holds only what changes a retriever's output
    a, b = RetrieveParams(method="bm25"), RetrieveParams(method="bm25", model="other", batch_size=8)
    assert a.fingerprint_dict() == b.fingerprint_dict()
    assert a.fingerprint_dict() != RetrieveParams(method="bm25", k1=2.0).fingerprint_dict()


@pytest.mark.parametrize("bad", [
    {"retrievers": [{"depth": 3}]},
    {"retrievers": [{"method": "bm25", "no_such_key": 1}]},
    {"retrievers": [{"method": "bm25", "k1": -1}]},
    {"retrievers": [{"method": "bm25", "name": "x"}, {"method": "dense", "name": "x"}]},
])
def test_bad_retriever_lists_are_config_errors(bad, cli, tmp_path):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"retrieve": bad}))
    code, _out, err = cli("retrieve", tmp_path / "run", "--config", cfg)
    assert code == 2 and err.count("\n") == 1 and "retrievers" in err, err


def test_corpus_texts_are_not_kept(tmp_path):
    """The corpus strings are read when a retriever builds its index and not held after (at 1M documents they
    are about a gigabyte of the retrieve stage's peak)."""
    from test_select_helpers import build_run

    from negmine.io.corpus import Corpus
    from negmine.io.store import Artifact

    corpus = Corpus(Artifact.open(build_run(tmp_path) / "ingest", stage="ingest"))
    a = corpus.texts()
    assert a == corpus.texts() and a is not corpus.texts() and len(a) == len(corpus)
    assert not any(isinstance(v, list) for v in vars(corpus).values())
    assert [t for c in corpus.text_chunks(size=3) for t in c] == a
    assert max(len(c) for c in corpus.text_chunks(size=3)) == 3


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_bm25_index_from_compact_token_ids_is_identical(method):
    """The index is built from packed int32 token ids (a fifth of the memory of bm25s' Python lists at 1M
    documents) and is the same index, array for array."""
    import bm25s

    from negmine.retrieve.bm25 import _bm25s_class, compact_tokens, tokenize
    from negmine.retrieve.params import RetrieverConfig

    texts = ["The cat sat on the mat", "", "dogs and cats", "a mat for a dog", "the the the", "Zebra crossing"] * 7
    cfg = RetrieverConfig(method="bm25")
    ref = bm25s.BM25(method=method)
    ref.index(tokenize(texts, cfg, ids=True), show_progress=False)
    tokens = tokenize(texts, cfg, ids=True)
    new = _bm25s_class()(method=method)  # also its leaner CSC build
    new.index(compact_tokens(tokens), show_progress=False)
    assert tokens.ids == []  # the lists were released before indexing
    for k in ("data", "indices", "indptr"):
        assert np.array_equal(ref.scores[k], new.scores[k]) and ref.scores[k].dtype == new.scores[k].dtype
    assert ref.vocab_dict == new.vocab_dict


def _token_texts() -> list[str]:
    rng = np.random.default_rng(3)
    words = ["The", "cat", "cats", "running", "runs", "ran", "ΣΟΦΟΣ", "naïve", "a", "and", "x", "über", "dog's",
             "12", "3d", "it's"] + [f"w{i}" for i in range(150)]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 25)))) for _ in range(300)]
    return ["", "the a and", *texts[:150], "", "x y z", *texts[150:], ""]  # empty documents first, inside, last


@pytest.mark.parametrize("stemmer,stopwords", [("english", "en"), (None, "en"), ("english", None), (None, None)])
def test_chunked_tokenisation_is_bm25s_tokenize(stemmer, stopwords):
    """Texts tokenised chunk by chunk (a shard at a time, never a list of every text or every document's id list)
    give bm25s.tokenize's ids and vocabulary, in the same order, whatever the chunk size."""
    from negmine.retrieve.bm25 import CompactDocs, tokenize, tokenize_chunks
    from negmine.retrieve.params import RetrieverConfig

    texts = _token_texts()
    cfg = RetrieverConfig(method="bm25", stemmer=stemmer, stopwords=stopwords)
    ref = tokenize(texts, cfg, ids=True)
    for size in (1, 7, 100, len(texts)):
        got = tokenize_chunks((texts[i:i + size] for i in range(0, len(texts), size)), cfg)
        assert isinstance(got.ids, CompactDocs) and got.ids.flat.dtype == np.int32
        assert list(got.vocab.items()) == list(ref.vocab.items())
        assert list(got.ids) == ref.ids
    empty = tokenize_chunks(iter([]), cfg)
    assert len(empty.ids) == 0 and empty.vocab == {}


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_bm25_index_from_chunks_is_identical(method, monkeypatch):
    """The stage's build (chunked tokenisation, packed ids released once scored, CSC placed a few entries at a
    time) is bm25s' index of bm25s' tokens, array for array."""
    import bm25s

    import negmine.retrieve.bm25 as bm25
    from negmine.retrieve.params import RetrieverConfig

    monkeypatch.setattr(bm25, "CSC_CHUNK", 37)  # many placement steps
    texts = _token_texts()
    cfg = RetrieverConfig(method="bm25")
    ref = bm25s.BM25(method=method)
    ref.index(bm25.tokenize(texts, cfg, ids=True), show_progress=False)
    tokens = bm25.tokenize_chunks([texts[:50], texts[50:51], texts[51:]], cfg)
    new = bm25._bm25s_class()(method=method)
    new.index(tokens, show_progress=False)
    assert len(tokens.ids) == 0  # released by the build
    for k in ("data", "indices", "indptr"):
        assert np.array_equal(ref.scores[k], new.scores[k]) and ref.scores[k].dtype == new.scores[k].dtype
    assert ref.scores["num_docs"] == new.scores["num_docs"] == len(texts)
    assert list(ref.vocab_dict.items()) == list(new.vocab_dict.items())
    if method == "bm25+":
        assert np.array_equal(ref.nonoccurrence_array, new.nonoccurrence_array)


def test_csc_by_column_is_the_stable_column_sort(monkeypatch):
    import negmine.retrieve.bm25 as bm25

    rng = np.random.default_rng(4)
    for chunk in (1, 5, 64, 1 << 20):
        monkeypatch.setattr(bm25, "CSC_CHUNK", chunk)
        n, n_cols = int(rng.integers(0, 400)), int(rng.integers(1, 30))
        cols = rng.integers(0, n_cols, size=n).astype(np.int32)
        rows, data = np.arange(n, dtype=np.int32), rng.random(n).astype(np.float32)
        order = np.argsort(cols, kind="stable")
        d, r, indptr = bm25.csc_by_column(data, rows, cols, n_cols)
        assert np.array_equal(d, data[order]) and np.array_equal(r, rows[order])
        assert np.array_equal(indptr, np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n_cols))]))


def test_exact_topk_is_the_sort_hits_cut(monkeypatch):
    """The per-query top-k (bounded by chunk maxima instead of partitioning every score) keeps exactly the k rows
    that (score desc, index asc) puts first, ties at the cut included."""
    import negmine.retrieve.ranking as ranking

    rng = np.random.default_rng(0)
    for _ in range(500):
        monkeypatch.setattr(ranking, "TOPK_CHUNK", int(rng.integers(1, 64)))
        n, k = int(rng.integers(1, 3000)), int(rng.integers(1, 150))
        s = (rng.integers(0, int(rng.integers(1, 30)), size=n).astype(np.float32) if rng.random() < 0.5
             else rng.random(n).astype(np.float32))
        want = np.lexsort((np.arange(n), -s))[:k]
        assert np.array_equal(np.sort(ranking.exact_topk(s, k)), np.sort(want))


def test_bm25s_search_with_exact_topk_matches_bm25s():
    import bm25s

    from negmine.retrieve.bm25 import _bm25s_class, tokenize
    from negmine.retrieve.params import RetrieverConfig

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(5, 40)))) for _ in range(3000)]
    queries = [" ".join(rng.choice(words, size=4)) for _ in range(50)] + ["nothing matches"]
    cfg = RetrieverConfig(method="bm25")
    ref, new = bm25s.BM25(), _bm25s_class()()
    ref.index(tokenize(texts, cfg, ids=True), show_progress=False)
    new.index(tokenize(texts, cfg, ids=True), show_progress=False)
    q = tokenize(queries, cfg)
    a = sort_hits(*ref.retrieve(q, k=40, show_progress=False))
    b = sort_hits(*new.retrieve(q, k=40, show_progress=False))
    assert np.array_equal(a[1], b[1])  # the same scores at every rank
    # the same documents except where bm25s cut a tie at the 40th score arbitrarily (negmine: by document order)
    differ = (a[0] != b[0]).any(axis=1)
    assert differ.mean() < 0.5
    for r in np.flatnonzero(differ):
        tie = a[1][r][-1]
        assert set(a[0][r][a[1][r] > tie]) == set(b[0][r][b[1][r] > tie])


def test_dense_flat_index_built_block_by_block_is_the_same_index(monkeypatch):
    """A flat index is filled block by block (the corpus' float32 vectors never sit beside faiss' copy): the same
    vectors in the same order, so the same search results."""
    import negmine.retrieve.dense as dense
    from negmine.retrieve.params import RetrieverConfig

    def fake_encode(texts, **kw):
        rows = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts]) \
            if len(texts) else np.zeros((0, 16))
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    monkeypatch.setattr(dense.engine, "encode", fake_encode)  # the stage encodes through the engine seam
    docs = [f"doc {i}" for i in range(50)]
    queries = [f"query {i}" for i in range(9)]
    cfg = RetrieverConfig(method="dense")
    monkeypatch.setattr(dense, "ADD_BLOCK", 1 << 20)
    whole = dense.DenseSearcher(cfg, docs, use_gpu=False)
    monkeypatch.setattr(dense, "ADD_BLOCK", 7)
    blocks = dense.DenseSearcher(cfg, docs, use_gpu=False)
    assert blocks.faiss.cpu.ntotal == 50
    a, b = whole.search(queries, 10), blocks.search(queries, 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # from a chunk function (the stage's Corpus.text_chunks: the strings are never all held): the same blocks
    seen = []

    def text_chunks(size):
        for s in range(0, len(docs), 3):
            seen.append(size)
            yield docs[s:s + 3]

    sizes = []
    real = fake_encode
    monkeypatch.setattr(dense.engine, "encode", lambda texts, **kw: sizes.append(len(texts)) or real(texts, **kw))
    chunked = dense.DenseSearcher(cfg, text_chunks, use_gpu=False)
    assert chunked.n_docs == 50 and set(seen) == {7} and sizes == [7] * 7 + [1]
    c = chunked.search(queries, 10)
    assert np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])


def test_corpus_rows_is_the_one_doc_id_lookup(tmp_path):
    """Doc id ↔ corpus row for every stage (retrieve's positive ranks and candidates, score's texts, select's
    joins): Arrow ids in corpus order, -1 for an unknown id, the string order of the ids, shard starts."""
    import pyarrow as pa
    from test_select_helpers import DOCS, build_run

    from negmine.io.corpus import Corpus, CorpusRows
    from negmine.io.store import Artifact

    ingest = Artifact.open(build_run(tmp_path) / "ingest", stage="ingest")
    rows = CorpusRows.read(ingest)
    ids = ingest.read("corpus", columns=["doc_id"])["doc_id"].to_pylist()
    assert sorted(ids) == sorted(DOCS) and rows.ids.to_pylist() == ids and len(rows) == len(ids)
    assert rows.starts[0] == 0 and rows.starts[-1] == len(ids) and len(rows.paths) == len(rows.starts) - 1
    assert rows.rows([ids[2], "nope", ids[0]]).tolist() == [2, -1, 0]
    assert rows.rows(pa.chunked_array([[ids[1]], [ids[3]]])).tolist() == [1, 3]
    assert rows.rows([]).dtype == "int64" and rows.rows([]).size == 0
    assert rows.ids_at([3, 0]).to_pylist() == [ids[3], ids[0]]
    by_order = [ids[i] for i in sorted(range(len(ids)), key=lambda i: rows.doc_order()[i])]
    assert by_order == sorted(ids)
    corpus = Corpus(ingest)
    assert corpus.ids.equals(rows.ids) and corpus.rows(["nope", ids[4]]).tolist() == [-1, 4]
    assert CorpusRows(pa.array(ids, pa.large_string())).ids.type == pa.string()


def test_corpus_doc_order_is_cached_by_corpus_content(tmp_path, monkeypatch):
    """The ids' string order (select's tie-break) is sorted once per corpus and read back after: a second reader
    of the same corpus does not sort; a damaged cache file is recomputed."""
    import numpy as np
    import pyarrow.compute as pc
    from test_select_helpers import build_run

    from negmine.io import corpus as corpus_mod
    from negmine.io.store import Artifact

    monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / "cache"))
    ingest = Artifact.open(build_run(tmp_path) / "ingest", stage="ingest")
    first = corpus_mod.CorpusRows.read(ingest)
    expected = np.argsort(np.argsort(np.array(first.ids.to_pylist(), dtype=object), kind="stable"), kind="stable")
    assert first.doc_order().tolist() == expected.tolist()
    files = list((tmp_path / "cache" / "corpus").glob("*-doc_order.npy"))
    assert len(files) == 1 and files[0].name.startswith(first.fingerprint[:32])

    sorted_ = []
    real_sort = pc.sort_indices
    monkeypatch.setattr(corpus_mod.pc, "sort_indices", lambda a: sorted_.append(len(a)) or real_sort(a))
    again = corpus_mod.CorpusRows.read(ingest).doc_order()
    assert again.tolist() == expected.tolist() and again.dtype == np.int64 and sorted_ == []

    files[0].write_bytes(b"not an array")
    assert corpus_mod.CorpusRows.read(ingest).doc_order().tolist() == expected.tolist() and len(sorted_) == 1
    assert corpus_mod.CorpusRows(first.ids).doc_order().tolist() == expected.tolist()  # ids alone: not cached
    assert len(sorted_) == 2


def test_flat_index_storage_is_reserved_for_the_whole_corpus(monkeypatch):
    """A flat index built block by block gets room for every vector first: its storage is never reallocated (a
    doubling copy holds the old and new buffers at once: the dense retrieve's peak at 1M documents), and it
    searches the same."""
    import faiss
    import numpy as np

    from negmine.retrieve import dense
    from negmine.retrieve.params import RetrieverConfig

    rng = np.random.default_rng(0)
    x = rng.random((1000, 8), dtype=np.float32)
    kept, grown = faiss.IndexFlatIP(8), faiss.IndexFlatIP(8)
    assert dense.reserve(kept, len(x)) and not dense.reserve(faiss.IndexHNSWFlat(8, 4), 10)
    buffers = {"kept": set(), "grown": set()}
    for s in range(0, len(x), 100):
        for name, index in (("kept", kept), ("grown", grown)):
            index.add(x[s:s + 100])
            buffers[name].add(int(index.codes.data()))
    assert len(buffers["kept"]) == 1 and len(buffers["grown"]) > 1
    assert np.array_equal(kept.search(x[:5], 7)[1], grown.search(x[:5], 7)[1])

    # the searcher reserves the corpus size it is told (a chunk function has no length of its own)
    made = []
    real = dense.reserve
    monkeypatch.setattr(dense, "reserve", lambda index, n: made.append(n) or real(index, n))
    monkeypatch.setattr(dense, "ADD_BLOCK", 7)
    monkeypatch.setattr(dense.engine, "encode", lambda texts, **kw: rng.random((len(texts), 8), dtype=np.float32))
    docs = [f"doc {i}" for i in range(30)]
    s = dense.DenseSearcher(RetrieverConfig(method="dense"), lambda size: iter([docs[:20], docs[20:]]),
                            use_gpu=False, n_docs=30)
    assert made == [30] and s.faiss.cpu.ntotal == 30
