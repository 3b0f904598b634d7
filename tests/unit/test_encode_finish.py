"""encode_texts' finishing step (float16 round trip + re-normalisation) works in place, in row blocks, and gives
exactly the values of the whole-array formula (cold and warm runs stay bit-identical)."""

from __future__ import annotations

import numpy as np
import pytest

from negmine.encode import embed


def _reference(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float16).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, np.maximum(norms, 1e-12), out=out)
    return out


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_finish_in_place_equals_whole_array_formula(monkeypatch, n, normalize):
    monkeypatch.setattr(embed, "FINISH_ROWS", 64)  # several blocks
    x = (np.random.default_rng(n).normal(size=(n, 24)) * 3).astype(np.float32)
    want = _reference(x, normalize)
    buf = x.copy()
    got = embed._finish(buf, normalize)
    assert got is buf and np.array_equal(got, want)  # no second full-size array
    assert np.array_equal(embed._finish(x.astype(np.float16), normalize), want)


def test_cache_lookup_in_float16_returns_the_stored_values(tmp_path):
    """encode_texts reads cached rows as the stored float16 (half the memory of a float32 copy) and the float32
    lookup holds exactly the same values."""
    from negmine.encode.cache import EmbeddingCache, text_keys

    cache = EmbeddingCache(tmp_path)
    vecs = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float16)
    cache.append(text_keys([f"t{i}" for i in range(5)]), vecs)
    keys = text_keys(["t3", "nope", "t0"])
    found16, v16 = cache.lookup(keys, dtype=np.float16)
    found32, v32 = cache.lookup(keys)
    assert found16.tolist() == found32.tolist() == [True, False, True]
    assert v16.dtype == np.float16 and np.array_equal(v16, vecs[[3, 0]])
    assert v32.dtype == np.float32 and np.array_equal(v32, v16.astype(np.float32))



_PEAK = """
import resource, sys
import numpy as np
from pathlib import Path
import negmine.encode.cache as C
from negmine.encode.embed import text_keys
cache = C.EmbeddingCache.for_key({"model": "peak"}, root=Path(sys.argv[1]))
if sys.argv[2] == "off":
    C._release = lambda arr: None
keys = text_keys([f"t{i}" for i in np.random.default_rng(1).choice(160_000, 80_000, replace=False)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
found, out = cache.lookup(keys, dtype=np.float16)
assert found.all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise")
def test_cache_lookup_holds_one_vector_file_at_a_time(tmp_path):
    """A lookup copies each chunk file's rows out, then drops that memmap's pages: the peak grows by the rows read
    and one file, not by every file it touched (at a million cached vectors, 875 vs 188 MiB for 131k rows)."""
    import subprocess
    import sys

    from negmine.encode.cache import EmbeddingCache
    from negmine.encode.embed import text_keys

    cache = EmbeddingCache.for_key({"model": "peak"}, root=tmp_path)
    keys = text_keys([f"t{i}" for i in range(160_000)])
    for f in range(8):  # 8 files of 20,000 x 256 float16: 80 MiB in all
        part = slice(f * 20_000, (f + 1) * 20_000)
        cache.append(keys[part], np.random.default_rng(f).standard_normal((20_000, 256), np.float32).astype(np.float16))

    def growth_mib(mode):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path), mode], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.split()[-1]) / 1024

    on, off = growth_mib("on"), growth_mib("off")
    assert off - on > 40, (on, off)  # rows read: 40 MiB, + every file (80 MiB) without the release, + one (10) with
