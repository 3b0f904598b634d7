"""BEIR directory: ``corpus.jsonl`` (_id, title, text), ``queries.jsonl`` (_id, text), ``qrels/<split>.tsv``."""

from __future__ import annotations

import json
from pathlib import Path

from negmine.errors import InputError
from negmine.io.params import IngestParams
from negmine.io.readers.fields import get_id, get_text, parse_number
from negmine.io.textio import fast_json_loads, iter_jsonl, iter_lines, iter_raw_lines, parse_json_line
from negmine.progress import tqdm


def _find(src: Path, stem: str) -> Path:
    for suffix in ("", ".gz", ".zst", ".zstd"):
        p = src / f"{stem}{suffix}"
        if p.is_file():
            return p
    return src / stem


def _qrels(src: Path, split: str) -> Path:
    for ext in ("tsv", "tsv.gz", "tsv.zst"):
        p = src / "qrels" / f"{split}.{ext}"
        if p.is_file():
            return p
    avail = sorted(p.name.split(".")[0] for p in (src / "qrels").glob("*.tsv*")) if (src / "qrels").is_dir() else []
    hint = f" (available splits: {', '.join(avail)})" if avail else ""
    raise InputError(f"no qrels for split '{split}'{hint}", src / "qrels" / f"{split}.tsv")


def input_files(src: Path, params: IngestParams) -> list[Path]:
    if params.corpus:
        raise InputError("--corpus is for file inputs; a BEIR directory has its own corpus.jsonl", "--corpus")
    corpus, queries = _find(src, "corpus.jsonl"), _find(src, "queries.jsonl")
    for p in (corpus, queries):
        if not p.is_file():
            raise InputError("missing file (BEIR layout needs corpus.jsonl, queries.jsonl, qrels/<split>.tsv)", p)
    return [corpus, queries, _qrels(src, params.split)]


def read(src: Path, params: IngestParams, canon) -> None:
    corpus, queries, qrels = input_files(src, params)
    read_corpus_jsonl(corpus, canon)
    for n, obj in tqdm(iter_jsonl(queries), desc="queries", unit=" queries", disable=None, leave=False):
        loc = {"line": n}
        canon.add_query(get_id(obj, "_id", queries, loc), get_text(obj, "text", queries, loc), queries, n)
    read_qrels(qrels, params, canon)


def read_corpus_jsonl(path: Path, canon, id_keys: tuple[str, ...] = ("_id",)) -> None:
    """A JSONL corpus (BEIR: ``_id``, ``title``, ``text``; other fields ignored) into ``canon``. The id field is
    the first of ``id_keys`` present in the first record.

    This loop is the hot path of ingest (millions of lines): the common case (a JSON object with a string id,
    string ``text``, string or absent ``title``) is handled inline; anything else goes through the validating
    ``iter_jsonl`` helpers and accessors, which name the line of the problem.
    """
    add = canon.add_doc
    key = None
    loads = fast_json_loads or json.loads
    records = 0
    bar = tqdm(desc="corpus", unit=" docs", unit_scale=True, disable=None, leave=False)
    for n, raw in iter_raw_lines(path):
        try:
            obj = loads(raw)
        except ValueError:
            obj = None
        if type(obj) is not dict:
            if not raw.strip():
                continue
            obj = parse_json_line(raw, path, n)  # raises with the exact message
            if type(obj) is not dict:
                raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, line=n)
        records += 1
        if key is None:
            key = next((k for k in id_keys if k in obj), id_keys[0])
        elif not records & 0x3FFF:
            bar.update(0x4000)
        doc_id = obj.get(key)
        text = obj.get("text")
        title = obj.get("title", "")
        if type(doc_id) is str and type(text) is str and type(title) is str and doc_id and not doc_id.isspace():
            add(doc_id, title, text, path, n)
            continue
        loc = {"line": n}
        add(get_id(obj, key, path, loc), get_text(obj, "title", path, loc, required=False),
            get_text(obj, "text", path, loc), path, n)
    bar.close()
    if not records:
        raise InputError("file has no records (only blank lines)", path)


def read_qrels(path: Path, params: IngestParams, canon) -> None:
    """``query-id<TAB>corpus-id<TAB>score`` with a header line.

    BEIR's own loader drops the first row unconditionally, losing a pair when the header is missing. Here the
    first row is a header only when its third column is not a number (``score``); a first row with a numeric
    score is data (counted as ``qrels_without_header``). The format is decided once, by the first row: a file
    with a header is BEIR (query-id, corpus-id, score; later columns ignored), a file without one whose first row
    has 4 columns, the second and the fourth numbers, is TREC (query-id, iteration, doc-id, score).
    """
    trec: bool | None = None
    for n, line in tqdm(iter_lines(path), desc="qrels", unit=" rows", disable=None, leave=False):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) == 1 and len(line.split()) >= 3:
            parts = line.split()  # space-separated qrels
        if len(parts) < 3:
            raise InputError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}",
                             path, line=n)
        if trec is None:  # the first row: a header (BEIR), or TREC's numeric iteration and score columns
            trec = (len(parts) == 4 and parse_number(parts[1].strip()) is not None
                    and parse_number(parts[3].strip()) is not None)
        if trec:
            if len(parts) != 4:
                raise InputError(f"expected 4 columns (TREC qrels: query-id, iteration, doc-id, score, as on the "
                                 f"first line), got {len(parts)}", path, line=n)
            parts = [parts[0], parts[2], parts[3]]
        qid, did, raw = parts[0].strip(), parts[1].strip(), parts[2].strip()
        grade = parse_number(raw)
        if n == 1 and grade is None:
            continue  # the header line
        if n == 1:
            canon.counts["qrels_without_header"] = 1
        if grade is None:
            raise InputError(f"non-numeric grade '{raw}'", path, line=n)
        if not qid or not did:
            raise InputError("empty query-id or corpus-id", path, line=n)
        if grade < params.min_grade:
            canon.counts["positives_below_min_grade"] += 1
            continue
        canon.add_positive(qid, did, grade, path, n)
