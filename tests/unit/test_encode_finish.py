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
import sys
import numpy as np
from pathlib import Path
import negmine.encode.cache as C
from negmine.encode.embed import text_keys
root, mode = sys.argv[1], sys.argv[2]


def mapped_mib():  # resident pages of this process' mappings of the cache's files (/proc/self/smaps)
    total, mine = 0, False
    for line in open("/proc/self/smaps"):
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            mine = root in line
        elif mine and parts and parts[0] == "Rss:":
            total += int(parts[1])
    return total / 1024


real, seen = C._release, []


def spy(arr):  # called once per vector file, after its rows are copied out
    seen.append(mapped_mib())
    if mode == "on":
        real(arr)


C._release = spy
cache = C.EmbeddingCache.for_key({"model": "peak"}, root=Path(root))
keys = text_keys([f"t{i}" for i in np.random.default_rng(1).choice(80_000, 40_000, replace=False)])
found, out = cache.lookup(keys, dtype=np.float16)
assert found.all() and len(seen) == 8
print(max(seen))
"""


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED") or not __import__("os").path.exists(
    "/proc/self/smaps"), reason="needs madvise and /proc")
def test_cache_lookup_holds_one_vector_file_at_a_time(tmp_path):
    """A lookup copies each chunk file's rows out, then drops that memmap's pages: at any time one file's pages are
    resident, not every file it touched (at a million cached vectors: a 254 vs 940 MiB peak for 131k rows,
    scripts/bench_cache_peak.py)."""
    import subprocess
    import sys

    from negmine.encode.cache import EmbeddingCache
    from negmine.encode.embed import text_keys

    cache = EmbeddingCache.for_key({"model": "peak"}, root=tmp_path)
    keys = text_keys([f"t{i}" for i in range(80_000)])
    for f in range(8):  # 8 files of 10,000 x 256 float16: 4.9 MiB each
        part = slice(f * 10_000, (f + 1) * 10_000)
        cache.append(keys[part], np.random.default_rng(f).standard_normal((10_000, 256), np.float32).astype(np.float16))

    def resident_mib(mode):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path), mode], capture_output=True, text=True,
                             check=True)
        return float(out.stdout.split()[-1])

    on, off = resident_mib("on"), resident_mib("off")
    assert on < 12 and off > 30, (on, off)  # one file (+ the next's start) vs all eight (39 MiB)
