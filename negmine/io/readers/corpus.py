"""A separate corpus file (``--corpus``) for file inputs, and documents that arrive as text only.

Corpus file: JSONL (BEIR ``_id`` or ``doc_id``, ``title`` optional, ``text``), Parquet or CSV/TSV with columns
``doc_id`` (or ``_id``), ``text`` and optionally ``title``.

A document given only as text (a pair's positive, a FlagEmbedding ``pos``/``neg`` string) is the corpus document
with exactly that text when there is one (so it keeps the corpus id and is never duplicated under a second id,
which would turn it into a false negative); otherwise it is added to the corpus under a content-hash id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from negmine.errors import InputError
from negmine.io.ingest import text_id
from negmine.io.params import IngestParams
from negmine.io.readers.fields import get_id, get_text
from negmine.io.textio import columns_of, iter_records, record_kind
from negmine.progress import tqdm

ID_COLUMNS = ("_id", "doc_id", "docid", "id")


class TextIndex:
    """Wraps a Canon while the corpus is read and remembers text → doc id for later text-only documents."""

    def __init__(self, canon: Any):
        self.canon = canon
        self.by_text: dict[int, str] = {}

    def add_doc(self, doc_id: str, title: str, text: str, where: Any, line: int | None = None,
                row: int | None = None) -> bool:
        added = self.canon.add_doc(doc_id, title, text, where, line=line, row=row)
        if added:
            self.by_text.setdefault(hash(text), doc_id)
        return added


def corpus_file(params: IngestParams) -> list[Path]:
    """The ``--corpus`` file as a list (empty without one; a Hugging Face dataset folder: its data files), for the
    input fingerprint."""
    if not params.corpus:
        return []
    p = Path(params.corpus)
    if p.is_dir():
        from negmine.io.readers.hf import data_files

        files = data_files(p, "train")
        if not files:
            raise InputError("no corpus data files (.parquet, .arrow, .jsonl) in the folder", p)
        return files
    if not p.is_file():
        raise InputError("corpus file not found", p)
    return [p]


def read_extra_corpus(params: IngestParams, canon: Any) -> dict[int, str]:
    """Read ``--corpus`` into ``canon``; returns the text → doc id index (empty without a corpus)."""
    files = corpus_file(params)
    if not files:
        return {}
    idx = TextIndex(canon)
    for path in files:
        _read_corpus_file(path, idx)
    return idx.by_text


def _read_corpus_file(path: Path, idx: TextIndex) -> None:
    if record_kind(path) == "jsonl":
        from negmine.io.readers.beir import read_corpus_jsonl

        read_corpus_jsonl(path, idx, id_keys=ID_COLUMNS)
        return
    cols = columns_of(path) or []
    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    if id_col is None or "text" not in cols:
        raise InputError(f"a corpus needs columns doc_id and text (has: {', '.join(cols)})", path,
                         line=1 if record_kind(path) in ("csv", "tsv") else None)
    typed = record_kind(path) in ("parquet", "arrow")
    want = [c for c in (id_col, "title", "text") if c in cols]
    for loc, rec in tqdm(iter_records(path, columns=want), desc="corpus", unit=" docs", unit_scale=True,
                         disable=None, leave=False):
        idx.add_doc(get_id(rec, id_col, path, loc, typed_ints=typed),
                    get_text(rec, "title", path, loc, required=False), get_text(rec, "text", path, loc),
                    path, **loc)


def text_doc(canon: Any, by_text: dict[int, str], title: str, text: str, where: Any, loc: dict[str, int]) -> str:
    """The doc id of a document given as text: the corpus document with this text, else a new content-hash
    document (added to ``canon``)."""
    doc_id = by_text.get(hash(text)) if by_text else None
    if doc_id is None:
        doc_id = text_id("d", f"{title}\n{text}" if title else text)
        canon.add_doc(doc_id, title, text, where, **loc)
    return doc_id
