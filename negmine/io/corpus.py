"""The corpus of an ingest artifact as the retrievers and select's lexical signal see it: ids, and the model strings
(``doc_text(title, text)``) read on first use."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from negmine.io.store import Artifact, hash_json

TEXT_CHUNK = 20_000  # documents' strings made at a time by Corpus.text_chunks


class Corpus:
    """The ingest corpus: ids always, model strings (``doc_text(title, text)``) read when asked for."""

    def __init__(self, ingest: Artifact):
        self.ingest = ingest
        self.ids = np.asarray(ingest.read("corpus", columns=["doc_id"]).column("doc_id").to_pylist(), dtype=object)
        self._index: dict[str, int] | None = None
        # the corpus content alone (not queries or qrels) keys the BM25 index cache
        self.fingerprint = hash_json([s["sha256"] for s in ingest.manifest["tables"]["corpus"]["shards"]])

    def __len__(self) -> int:
        return len(self.ids)

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

    def index_of(self) -> dict[str, int]:
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.ids.tolist())}
        return self._index
