"""The corpus of an ingest artifact as the stages see it.

:class:`CorpusRows` is the one doc id ↔ corpus row lookup of the code base (retrieve's candidates and positive
ranks, score's document texts, select's joins, dedup sketches and BM25 signal all go through it): the ids in one
Arrow string array, looked up with Arrow (no dict of a million Python strings). :class:`Corpus` adds the model
strings (``doc_text(title, text)``) that the retrievers read chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.io.store import Artifact, hash_json, save_npy_atomic

TEXT_CHUNK = 20_000  # documents' strings made at a time by Corpus.text_chunks


def corpus_fingerprint(ingest: Artifact) -> str:
    """The corpus content alone (not queries or qrels): its shards' checksums."""
    return hash_json([s["sha256"] for s in ingest.manifest["tables"]["corpus"]["shards"]])


class CorpusRows:
    """The corpus' doc ids by row (one Arrow string array), the row of any doc id, and the ids' string order.
    ``paths`` / ``starts``: the corpus shards and the first row of each, then the number of rows (built from ids
    alone: no paths, starts ``[0, n]``)."""

    def __init__(self, ids: pa.Array, paths: Sequence[Path] = (), starts: np.ndarray | None = None,
                 fingerprint: str | None = None) -> None:
        self.ids = ids.cast(pa.string()) if ids.type != pa.string() else ids
        self.paths = tuple(paths)
        self.starts = np.array([0, len(ids)], dtype=np.int64) if starts is None else starts
        self.fingerprint = fingerprint  # the corpus content's (keys the cached doc order); None: not cached
        self._order: np.ndarray | None = None

    @classmethod
    def read(cls, ingest: Artifact) -> CorpusRows:
        """The doc ids of an ingest artifact's corpus shards (only their ``doc_id`` column is read)."""
        import pyarrow.parquet as pq

        paths = ingest.shard_paths("corpus")
        parts = [pq.ParquetFile(p).read(columns=["doc_id"])["doc_id"].combine_chunks() for p in paths]
        starts = np.concatenate([[0], np.cumsum([len(a) for a in parts])]).astype(np.int64)
        return cls(pa.concat_arrays(parts) if parts else pa.array([], pa.string()), paths, starts,
                   corpus_fingerprint(ingest))

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, doc_ids: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
        """Corpus row (int64) of each doc id, -1 for a document not in the corpus."""
        arr = doc_ids if isinstance(doc_ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(doc_ids), pa.string())
        if not len(arr):
            return np.zeros(0, dtype=np.int64)
        return pc.fill_null(pc.index_in(arr, value_set=self.ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def ids_at(self, rows: np.ndarray) -> pa.Array:
        """The doc ids at corpus ``rows`` (all >= 0), as an Arrow string array."""
        return self.ids.take(pa.array(np.asarray(rows, dtype=np.int64)))

    def read_rows(self, rows: np.ndarray, columns: list[str]) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """``columns`` of the documents at corpus ``rows`` (all >= 0; needs ``paths``), shard by shard, reading only
        the shards that hold them: ``(positions in rows, their table)`` per shard, positions in row order."""
        import pyarrow.parquet as pq

        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        shard = np.searchsorted(self.starts, rows[order], side="right") - 1
        for s in np.unique(shard).tolist():
            pos = order[shard == s]
            yield pos, pq.ParquetFile(self.paths[s]).read(columns=columns).take(pa.array(rows[pos] - self.starts[s]))

    def doc_order(self) -> np.ndarray:
        """Per corpus row: the rank of its doc id in string order (ids are unique, so it is also their dense
        rank: the order ``pc.rank`` of the ids gives). Sorting a million ids costs about half a second, so a
        corpus read from an ingest artifact keeps its order in ``cache_dir("corpus")``, keyed by its content."""
        if self._order is None:
            path = None
            if self.fingerprint is not None:
                from negmine.cache import cache_dir

                path = cache_dir("corpus") / f"{self.fingerprint[:32]}-doc_order.npy"
                try:
                    cached = np.load(path)
                    if cached.shape == (len(self.ids),):
                        self._order = cached.astype(np.int64, copy=False)
                        return self._order
                except (OSError, ValueError):  # absent or damaged: computed and written again
                    pass
            order = pc.sort_indices(self.ids).to_numpy()
            self._order = np.empty(len(order), dtype=np.int64)
            self._order[order] = np.arange(len(order))
            if path is not None:
                save_npy_atomic(path, self._order.astype(np.int32) if len(order) < 2**31 else self._order)
        return self._order


class Corpus(CorpusRows):
    """The ingest corpus: ids always (:class:`CorpusRows`), model strings (``doc_text(title, text)``) read when
    asked for."""

    def __init__(self, ingest: Artifact):
        rows = CorpusRows.read(ingest)
        assert rows.fingerprint is not None  # (read from an artifact: always; it also keys the BM25 index cache)
        super().__init__(rows.ids, rows.paths, rows.starts, rows.fingerprint)
        self.ingest = ingest
        self.fingerprint: str = rows.fingerprint

    def texts(self) -> list[str]:
        """The model strings of every document, read anew on each call: not kept, since a retriever needs them
        only while it builds its index (a million documents' strings are about a gigabyte)."""
        out: list[str] = []
        for chunk in self.text_chunks():
            out.extend(chunk)
        return out

    def text_chunks(self, size: int = TEXT_CHUNK) -> Iterator[list[str]]:
        """:meth:`texts` in corpus order, ``size`` documents (at most) at a time: one shard's Arrow table and one
        chunk's strings are held at once, not the whole corpus'."""
        from negmine.models import doc_text

        for t in self.ingest.iter_shards("corpus", columns=["title", "text"]):
            for s in range(0, t.num_rows, size):
                part = t.slice(s, size)
                yield [doc_text(a, b) for a, b in zip(part.column("title").to_pylist(),
                                                      part.column("text").to_pylist(), strict=True)]
