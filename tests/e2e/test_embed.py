"""Embedding cache of negmine.encode.embed with the real packaged MiniLM (a handful of texts)."""

import numpy as np
import pytest

from negmine.encode import embed
from negmine.encode.embed import EmbeddingCache, encode_texts

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["Hard negatives make contrastive training harder.", "The boundary layer separates at high Mach numbers.",
         "BM25 is a bag-of-words ranking function.", "Cats sleep most of the day."]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


def _encoded(fn):
    before = embed.COUNTERS["encoded"]
    out = fn()
    return out, embed.COUNTERS["encoded"] - before


def _chunks(root):
    return sorted(p.name for p in root.rglob("chunk-*.keys.npy"))


def test_miss_hit_partial(fresh_cache, minilm):
    a, n = _encoded(lambda: encode_texts(TEXTS, model=MODEL, kind="doc"))
    assert n == 4 and a.shape == (4, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert len(_chunks(fresh_cache)) == 1
    # the vectors are the model's own (fp16 storage costs < 1e-3 in cosine)
    from negmine.encode.models import load_bi_encoder

    ref = load_bi_encoder(MODEL).encode(TEXTS, normalize_embeddings=True)
    assert (np.sum(a * ref, axis=1) > 0.999).all()
    # full hit: nothing encoded, identical output
    b, n = _encoded(lambda: encode_texts(TEXTS, model=MODEL, kind="doc"))
    assert n == 0 and np.array_equal(a, b)
    # partial: only the two new texts are encoded, appended as a new chunk; the packaged model named by its path
    # shares the cache with its alias
    more = ["A brand new sentence.", TEXTS[2], "Another unseen one.", TEXTS[0]]
    c, n = _encoded(lambda: encode_texts(more, model=minilm, kind="doc"))
    assert n == 2 and len(_chunks(fresh_cache)) == 2
    assert np.array_equal(c[1], a[2]) and np.array_equal(c[3], a[0])
    d, n = _encoded(lambda: encode_texts(more, model=MODEL, kind="doc", use_cache=False))
    # without the cache: the same vectors up to batch-composition numerics and fp16
    assert n == 4 and (np.sum(c * d, axis=1) > 0.9999).all()
    # a warm call returns bit-identically what the cold call returned (rankings of a re-run are reproduced)
    e, n = _encoded(lambda: encode_texts(more, model=MODEL, kind="doc"))
    assert n == 0 and np.array_equal(c, e)


def test_duplicates_encoded_once(fresh_cache):
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0]]
    a, n = _encoded(lambda: encode_texts(texts, model=MODEL, kind="query"))
    assert n == 2 and np.array_equal(a[0], a[2]) and np.array_equal(a[0], a[3])


def test_key_separation(fresh_cache):
    long = [TEXTS[1] + " " + " ".join(["supersonic flow over a flat plate"] * 10)]
    base, _ = _encoded(lambda: encode_texts(long, model=MODEL, kind="doc"))
    # a prompt changes the key (and the vector)
    p, n = _encoded(lambda: encode_texts(long, model=MODEL, kind="doc", prompt="passage: "))
    assert n == 1 and float(p[0] @ base[0]) < 0.9999
    # so does max_seq_length (the long text is truncated at 16 tokens)
    m, n = _encoded(lambda: encode_texts(long, model=MODEL, kind="doc", max_seq_length=16))
    assert n == 1 and float(m[0] @ base[0]) < 0.99
    # queries and documents live apart (asymmetric models embed them differently)
    _, n = _encoded(lambda: encode_texts(long, model=MODEL, kind="query"))
    assert n == 1
    # each variant is now cached
    for kw in ({}, {"prompt": "passage: "}, {"max_seq_length": 16}):
        again, n = _encoded(lambda kw=kw: encode_texts(long, model=MODEL, kind="doc", **kw))
        assert n == 0
    assert len({p.parent for p in fresh_cache.rglob("key.json")}) == 4


def test_partial_chunks_are_invisible(fresh_cache):
    a = encode_texts(TEXTS[:2], model=MODEL, kind="doc")
    (cdir,) = {p.parent for p in fresh_cache.rglob("key.json")}
    # a writer killed after its vectors but before its keys file (the commit marker), and a stray temporary
    np.save(cdir / "chunk-deadbeef.f16.npy", np.ones((3, 384), dtype=np.float16))
    (cdir / ".chunk-x.keys.npy.tmp-1234").write_bytes(b"garbage")
    cache = EmbeddingCache(cdir)
    assert len(cache.chunks()) == 1
    found, vecs = cache.lookup(embed.text_keys(TEXTS))
    assert found.tolist() == [True, True, False, False]
    b, n = _encoded(lambda: encode_texts(TEXTS, model=MODEL, kind="doc"))
    assert n == 2 and np.array_equal(a, b[:2])
