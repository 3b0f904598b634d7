"""The corpus of an ingest artifact as the retrievers and select's lexical signal see it: ids, and the model strings
(``doc_text(title, text)``) read on first use."""

from __future__ import annotations

import numpy as np

from negmine.io.store import Artifact, hash_json


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
        from negmine.models import doc_text

        out: list[str] = []
        for t in self.ingest.iter_shards("corpus", columns=["title", "text"]):
            out.extend(doc_text(a, b) for a, b in zip(t.column("title").to_pylist(), t.column("text").to_pylist(),
                                                      strict=True))
        return out

    def index_of(self) -> dict[str, int]:
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.ids.tolist())}
        return self._index
