"""BEIR directory: ``corpus.jsonl`` (_id, title, text), ``queries.jsonl`` (_id, text), ``qrels/<split>.tsv``."""

from __future__ import annotations

from pathlib import Path

from negmine.errors import InputError
from negmine.io.params import IngestParams
from negmine.io.textio import iter_jsonl, iter_lines

HEADER_NAMES = {"query-id", "query_id", "qid", "query"}


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
    corpus, queries = _find(src, "corpus.jsonl"), _find(src, "queries.jsonl")
    for p in (corpus, queries):
        if not p.is_file():
            raise InputError("missing file (BEIR layout needs corpus.jsonl, queries.jsonl, qrels/<split>.tsv)", p)
    return [corpus, queries, _qrels(src, params.split)]


def _str_id(obj: dict, key: str, path: Path, n: int) -> str:
    if key not in obj:
        raise InputError(f"missing field '{key}'", path, line=n)
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise InputError(f"field '{key}' must be a string id, got {type(v).__name__}", path, line=n)
    if isinstance(v, int):
        raise InputError(f"field '{key}' must be a string id, got a number ({v}); quote it", path, line=n)
    if not v:
        raise InputError(f"field '{key}' is empty", path, line=n)
    return v


def _str_field(obj: dict, key: str, path: Path, n: int, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise InputError(f"missing field '{key}'", path, line=n)
        return ""
    v = obj[key]
    if not isinstance(v, str):
        raise InputError(f"field '{key}' must be a string, got {type(v).__name__}", path, line=n)
    return v


def read(src: Path, params: IngestParams, canon) -> None:
    corpus, queries, qrels = input_files(src, params)
    for n, obj in iter_jsonl(corpus):
        canon.add_doc(_str_id(obj, "_id", corpus, n), _str_field(obj, "title", corpus, n, False),
                      _str_field(obj, "text", corpus, n, True), corpus, n)
    for n, obj in iter_jsonl(queries):
        canon.add_query(_str_id(obj, "_id", queries, n), _str_field(obj, "text", queries, n, True), queries, n)
    read_qrels(qrels, params, canon)


def read_qrels(path: Path, params: IngestParams, canon) -> None:
    """``query-id<TAB>corpus-id<TAB>score`` with a header line. BEIR's own loader drops the first row
    unconditionally; here a first row whose score is numeric and whose ids are known is data, not a header."""
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise InputError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}",
                             path, line=n)
        qid, did, raw = parts[0].strip(), parts[1].strip(), parts[2].strip()
        if n == 1:
            if qid.lower() in HEADER_NAMES or not _is_number(raw):
                continue  # header line
            canon.counts["qrels_without_header"] = 1
        if not _is_number(raw):
            raise InputError(f"non-numeric grade '{raw}'", path, line=n)
        grade = float(raw)
        if grade < params.min_grade:
            canon.counts["positives_below_min_grade"] += 1
            continue
        canon.add_positive(qid, did, grade, path, n)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf")
