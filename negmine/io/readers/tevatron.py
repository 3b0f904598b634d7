"""Tevatron JSONL: one query a line, ``{"query_id", "query", "positive_passages": [{"docid", "title", "text"}],
"negative_passages": [...]}``; or Tevatron's newer id layout, ``{"query_id", "query_text",
"positive_document_ids": [...], "negative_document_ids": [...]}`` with the documents in ``--corpus`` (a file or a
Hugging Face folder with ``docid``, ``title``, ``text``). Either may be JSONL, Parquet or a Hugging Face folder.

Every passage goes into the corpus under its ``docid`` (a passage seen on several lines is kept once; the same
docid with a different text is an error). ``positive_passages`` become positives (grade 1),
``negative_passages`` become ``given_negatives`` (the input's own hard negatives, kept for comparison and
export, never trusted blindly as negatives). A missing ``query_id`` / ``docid`` gets a content-hash id; with
``--corpus``, a passage without ``docid`` whose text is in the corpus is that corpus document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from negmine.errors import InputError
from negmine.io.ingest import text_id
from negmine.io.params import IngestParams
from negmine.io.readers.corpus import corpus_file, read_extra_corpus, text_doc
from negmine.io.readers.fields import get_id, get_list, get_text
from negmine.io.textio import iter_records
from negmine.progress import tqdm

ID_LAYOUT = "positive_document_ids"  # the column that marks Tevatron's newer layout


def _sources(src: Path, params: IngestParams) -> list[Path]:
    from negmine.io.readers.pairs import _sources as sources

    return sources(src, params)


def input_files(src: Path, params: IngestParams) -> list[Path]:
    return [*_sources(src, params), *corpus_file(params)]


def _read_ids(rec: dict, path: Path, loc: dict[str, int], canon: Any) -> None:
    """One record of the id layout: documents must be in the corpus (unknown ids: errors naming the line/row)."""
    query = get_text(rec, "query_text" if "query_text" in rec else "query", path, loc)
    qid = get_id(rec, "query_id", path, loc) if rec.get("query_id") is not None else text_id("q", query)
    canon.add_query(qid, query, path, **loc)
    for d in get_list(rec, ID_LAYOUT, path, loc):
        canon.add_positive(qid, get_id({"docid": d}, "docid", path, loc), 1.0, path, **loc)
    for d in get_list(rec, "negative_document_ids", path, loc, required=False):
        canon.add_given_negative(qid, get_id({"docid": d}, "docid", path, loc), path, **loc)


def _passage(p: Any, field: str, canon: Any, by_text: dict[int, str], where: Path, loc: dict[str, int]) -> str:
    if type(p) is not dict:
        raise InputError(f"'{field}' must hold passage objects {{docid, title, text}}, got {type(p).__name__}",
                         where, **loc)
    title = get_text(p, "title", where, loc, required=False)
    text = get_text(p, "text", where, loc, required=False)
    if p.get("docid") is None:
        if not text and not title:
            raise InputError(f"a passage in '{field}' has neither docid nor text", where, **loc)
        return text_doc(canon, by_text, title, text, where, loc)
    doc_id = get_id(p, "docid", where, loc)
    if text or title or not canon.has_doc(doc_id):
        canon.add_doc(doc_id, title, text, where, **loc)
    return doc_id


def read(src: Path, params: IngestParams, canon: Any) -> None:
    by_text = read_extra_corpus(params, canon)
    for path in _sources(src, params):
        _read_file(path, params, canon, by_text)


def _read_file(src: Path, params: IngestParams, canon: Any, by_text: dict[int, str]) -> None:
    for loc, obj in tqdm(iter_records(src), desc="tevatron", unit=" queries", unit_scale=True, disable=None,
                         leave=False):
        if ID_LAYOUT in obj:
            if not params.corpus:
                raise InputError("Tevatron's id layout (positive_document_ids) needs --corpus: the documents "
                                 "(docid, title, text)", src, **loc)
            _read_ids(obj, src, loc, canon)
            continue
        query = get_text(obj, "query", src, loc)
        qid = get_id(obj, "query_id", src, loc) if obj.get("query_id") is not None else text_id("q", query)
        canon.add_query(qid, query, src, **loc)
        for p in get_list(obj, "positive_passages", src, loc):
            canon.add_positive(qid, _passage(p, "positive_passages", canon, by_text, src, loc), 1.0, src, **loc)
        for p in get_list(obj, "negative_passages", src, loc, required=False):
            canon.add_given_negative(qid, _passage(p, "negative_passages", canon, by_text, src, loc), src, **loc)
