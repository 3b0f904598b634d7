"""The vectorised near-duplicate path (sketches over document rows, negmine.select.dedup.duplicate_rows) decides
exactly as the per-document reference (duplicate_of over signatures)."""

from __future__ import annotations

import numpy as np
import pytest

from negmine.select.dedup import (
    duplicate_of,
    duplicate_rows,
    normalize_many,
    normalize_text,
    shingle_sets,
    shingles,
    signature,
    sketch,
)


def _corpus(seed: int = 0, n: int = 60) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "Über", "straße", "ﬁsh", "x", "rivers", "lakes", "the", "of"]
    base = [" ".join(rng.choice(words, size=int(rng.integers(0, 40)))) for _ in range(n // 2)]
    out = list(base)
    for t in base:  # near and exact variants of the first half, some punctuated or upper-cased
        r = rng.random()
        out.append(t.upper() + "!!" if r < 0.3 else t.replace("a", "e", 1) if r < 0.7 else t + " gamma")
    out += ["", "ab", "a", "ABC!", "  "]
    return out


def test_normalize_many_and_shingle_sets_equal_the_per_text_functions():
    texts = _corpus()
    norms = normalize_many(texts)
    assert norms == [normalize_text(t) for t in texts]
    for k in (1, 3, 5, 8):
        values, offsets = shingle_sets(norms, k)
        for i, t in enumerate(norms):
            assert np.array_equal(values[offsets[i]:offsets[i + 1]], shingles(t, k))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_duplicate_rows_equals_duplicate_of(seed, threshold):
    texts = _corpus(seed)
    rng = np.random.default_rng(seed + 10)
    ids = [f"d{i:03d}" for i in range(len(texts))]
    perm = rng.permutation(len(ids))  # corpus row order differs from doc-id order (the tie-break)
    ids = [ids[i] for i in perm]
    n_q = 12
    cand_rows = rng.integers(0, len(texts), size=300)
    cand_query = rng.integers(0, n_q, size=300)
    pos_rows = rng.integers(0, len(texts), size=20)
    pos_query = rng.integers(0, n_q, size=20)
    sigs = {d: signature(t) for d, t in zip(ids, texts, strict=True)}
    ref_dup, ref_of, ref_sim = duplicate_of([ids[r] for r in cand_rows], cand_query, [ids[r] for r in pos_rows],
                                            pos_query, sigs, threshold)
    norms = normalize_many(texts)
    sk = sketch(norms)
    order = np.argsort(np.argsort(np.array(ids)))

    def shingles_of(rows):
        return {int(r): shingles(norms[r]) for r in rows}

    dup, of, sim = duplicate_rows(cand_rows, cand_query, pos_rows, pos_query, sk, shingles_of, threshold, order)
    assert ref_dup.any() and np.array_equal(dup, ref_dup)
    assert [ids[o] if o >= 0 else None for o in of] == ref_of
    assert np.array_equal(sim[dup], ref_sim[ref_dup])


def test_duplicate_rows_missing_documents_never_match():
    norms = normalize_many(["same text here", "same text here"])
    sk = sketch(norms)
    dup, of, _ = duplicate_rows(np.array([-1, 1]), np.array([0, 0]), np.array([0, -1]), np.array([0, 0]), sk,
                                lambda rows: {}, 0.9)
    assert dup.tolist() == [False, True] and of.tolist() == [-1, 0]


def test_corpus_sketches_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """select sketches the corpus once per corpus (cached like the BM25 index); a later run reads the sketches
    back instead of re-reading every document, and only the undecided pairs' documents are read."""
    from test_select_helpers import build_run

    import negmine.select.dedup_index as di
    from negmine.io.store import Artifact

    monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / "cache"))
    run = build_run(tmp_path)
    ingest = Artifact.open(run / "ingest", stage="ingest")
    first = di.CorpusDedup(ingest)
    monkeypatch.setattr(di, "sketch", lambda *a, **k: pytest.fail("sketched the corpus again"))
    second = di.CorpusDedup(ingest)
    for f in ("hash", "size", "counts", "exact"):
        assert np.array_equal(getattr(first.sketches, f), getattr(second.sketches, f))
    rows = second.corpus.rows(ingest.read("corpus", columns=["doc_id"])["doc_id"].combine_chunks())
    assert rows.tolist() == list(range(len(rows))) and second.corpus.rows(["not-a-doc"]).tolist() == [-1]
    texts = ingest.read("corpus", columns=["title", "text"])
    norms = normalize_many([f"{a} {b}" if a else b for a, b in zip(texts["title"].to_pylist(),
                                                                 texts["text"].to_pylist(), strict=True)])
    got = second.shingles_of(np.array([1, 0]))
    assert sorted(got) == [0, 1] and all(np.array_equal(got[r], shingles(norms[r])) for r in got)


def test_sort_order_packs_integer_keys_into_the_same_permutation_as_lexsort():
    from negmine.select.sampling import sort_order

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 200))
        keys = [rng.integers(-5, int(rng.integers(1, 10 ** int(rng.integers(1, 19)))), size=n)
                for _ in range(int(rng.integers(1, 4)))]
        if rng.random() < 0.3:
            keys.append(rng.random(n) > 0.5)
        if rng.random() < 0.5:  # a float key (its dense rank is packed), with NaN, infinities and signed zeros
            f = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0]), size=n) if rng.random() < 0.5 \
                else rng.random(n)
            keys.insert(int(rng.integers(0, len(keys) + 1)), f)
        assert np.array_equal(sort_order(keys), np.lexsort(tuple(reversed(keys))))


def test_bucket_bound_sums_only_the_minima_and_decides_as_the_two_sided_bound():
    """The bucket bound over pairs: sum(max) is size_a + size_b - sum(min) where the counts are exact; inexact
    counts always pass; computed by blocks of pairs."""
    import negmine.select.dedup as dd

    norms = normalize_many(_corpus(3, 200))
    sk = sketch(norms)
    sk.exact[::17] = False
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, len(norms), 5000), rng.integers(0, len(norms), 5000)
    ca, cb = sk.counts[a].astype(np.int64), sk.counts[b].astype(np.int64)
    for t in (0.3, 0.5, 0.9):
        ref = (np.minimum(ca, cb).sum(1) >= t * np.maximum(ca, cb).sum(1)) | ~(sk.exact[a] & sk.exact[b])
        old = dd._BOUND_BLOCK
        try:
            dd._BOUND_BLOCK = 777  # several blocks
            got = dd._bucket_bound_passes(sk, a, b, t)
        finally:
            dd._BOUND_BLOCK = old
        assert ref.any() and (~ref).any() and np.array_equal(got, ref)


@pytest.mark.parametrize("per_query", [1, 3])
def test_query_pairs_every_candidate_with_each_positive_of_its_query(per_query):
    """(candidate row, positive) pairs, by the one-positive fast path and by the general one: the same pairs as a
    double loop; a candidate that is itself a positive of its query, or unknown (-1), pairs with nothing."""
    from negmine.select.dedup import _query_pairs

    rng = np.random.default_rng(per_query)
    n_q = 30
    pos_query = np.repeat(np.arange(n_q), per_query)[rng.permutation(n_q * per_query)]
    pos_doc = rng.integers(0, 50, len(pos_query))
    cand_query = rng.integers(0, n_q + 2, 400)  # two queries without positives
    cand_doc = rng.integers(-1, 50, 400)
    row, a, b = _query_pairs(cand_doc, cand_query, pos_doc, pos_query)
    ref = []
    for i, (d, q) in enumerate(zip(cand_doc.tolist(), cand_query.tolist(), strict=True)):
        mine = [p for p, pq in zip(pos_doc.tolist(), pos_query.tolist(), strict=True) if pq == q]
        if d < 0 or d in mine:
            continue
        ref += [(i, d, p) for p in mine]
    assert sorted(zip(row.tolist(), a.tolist(), b.tolist(), strict=True)) == sorted(ref) and len(ref) > 100


def test_corpus_sketches_built_in_threads_equal_the_one_by_one_build(tmp_path, monkeypatch):
    from test_select_helpers import build_run

    import negmine.select.dedup_index as di
    from negmine.io.store import Artifact

    run = build_run(tmp_path)
    ingest = Artifact.open(run / "ingest", stage="ingest")
    monkeypatch.setattr(di, "BUILD_DOCS", 3)  # many blocks
    got = {}
    for threads in (1, 2):
        monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / f"cache{threads}"))
        monkeypatch.setattr(di, "BUILD_THREADS", threads)
        got[threads] = di.CorpusDedup(ingest).sketches
    for f in ("hash", "size", "counts", "exact"):
        assert np.array_equal(getattr(got[1], f), getattr(got[2], f)), f
    assert len(got[1].hash) == ingest.num_rows("corpus")
