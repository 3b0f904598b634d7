"""Near-duplicate sketches of a whole corpus, built once per corpus and cached (like the BM25 index).

The select stage compares each candidate with its query's positives (negmine.select.dedup). Building every
candidate's shingle set block after block cost most of a select run; instead the :class:`~negmine.select.dedup.Sketches`
of every corpus document (text hash, number of distinct shingles, distinct shingles per bucket) are computed in one
vectorised pass over the corpus, kept under ``cache_dir("dedup")`` keyed by the corpus content and the shingle
length, and read back memory-mapped by later runs. Only the pairs these cannot decide read their documents' texts.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from negmine.cache import cache_dir
from negmine.io.corpus import CorpusRows
from negmine.io.store import Artifact, hash_json
from negmine.select.dedup import SKETCH_BUCKETS, Sketches, normalize_many, shingle_sets, sketch

log = logging.getLogger("negmine")

INDEX_VERSION = 1
BUILD_DOCS = 20_000  # documents per vectorised sketch pass (bounds its temporary arrays)
BUILD_THREADS = 2  # sketch passes at a time
_FIELDS = ("hash", "size", "counts", "exact")


def _doc_texts(t: pa.Table) -> list[str]:
    from negmine.models import doc_text

    return [doc_text(a, b or "") for a, b in zip(t["title"].to_pylist(), t["text"].to_pylist(), strict=True)]


class CorpusDedup:
    """Sketches of every document of an ingest artifact's corpus, by corpus row, and shingle sets on demand."""

    def __init__(self, ingest: Artifact, k: int = 5, corpus: CorpusRows | None = None) -> None:
        self.ingest, self.k = ingest, k
        self.corpus = corpus or CorpusRows.read(ingest)
        shards = [s["sha256"] for s in ingest.manifest["tables"]["corpus"]["shards"]]
        self.key = hash_json({"corpus": shards, "k": k, "buckets": SKETCH_BUCKETS, "version": INDEX_VERSION})[:32]
        self.sketches = self._load_or_build()

    def _load_or_build(self) -> Sketches:
        path = cache_dir("dedup") / self.key
        if (path / "exact.npy").is_file():
            try:
                return Sketches(*(np.load(path / f"{f}.npy", mmap_mode="r") for f in _FIELDS))
            except (OSError, ValueError) as e:  # a damaged cache entry is rebuilt
                log.warning("dedup: cached sketches %s unreadable (%s), rebuilding", path.name[:12], e)
                shutil.rmtree(path, ignore_errors=True)
        log.info("dedup: sketching %d documents (shingle %d bytes)", len(self.corpus), self.k)
        from negmine.engine import ThreadedShards

        def blocks():
            i = 0
            for p in self.corpus.paths:
                t = pq.ParquetFile(p).read(columns=["title", "text"])
                for s in range(0, t.num_rows, BUILD_DOCS):
                    yield i, t.slice(s, BUILD_DOCS), False
                    i += 1

        def one(i: int, block: pa.Table) -> dict[str, Sketches]:
            return {"sketches": sketch(normalize_many(_doc_texts(block)), self.k)}

        # blocks are independent and their sorts and gathers release the GIL: BUILD_THREADS at a time (reading
        # ahead no further), concatenated in order
        parts = [out["sketches"] for _, _, out, _ in ThreadedShards(BUILD_THREADS).map_shards(one, blocks())
                 if out is not None]
        sk = Sketches.concat(parts) if parts else sketch([], self.k)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        for f in _FIELDS:
            np.save(tmp / f"{f}.npy", getattr(sk, f))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached the same sketches meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        return sk

    def doc_order(self) -> np.ndarray:
        """Per corpus row: the rank of its doc id in string order (the tie-break of equally similar positives)."""
        return self.corpus.doc_order()

    def shingles_of(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        """Shingle sets of the documents at corpus ``rows`` (reads only the shards that hold them)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        out: dict[int, np.ndarray] = {}
        for pos, t in self.corpus.read_rows(rows, ["title", "text"]):
            values, offsets = shingle_sets(normalize_many(_doc_texts(t)), self.k)
            for i, r in enumerate(rows[pos].tolist()):
                out[r] = values[offsets[i]:offsets[i + 1]]
        return out
